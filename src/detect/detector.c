/*
 * detector.c - where a log line becomes an incident (see detector.h for the steps).
 *
 * State, all bounded:
 *   - per service: its sigset, its template miner, per-template statistics (how often the
 *     template was flagged as an error, and its recent rate), and its sources;
 *   - per source: a ring of the last context_before lines (each cut at CTX_LINE_MAX bytes) and
 *     the incidents still collecting lines after their fault line;
 *   - per fingerprint: a track of the newest incident with that fingerprint (open, or resolved
 *     and maybe in its cooldown), at most MAX_TRACKS of them;
 *   - what the next flush writes: new incidents, dirty tracks, notes, templates, positions.
 */
#include "detect/detector.h"

#include "asr/framer.h"
#include "asr/log.h"
#include "asr/timeutil.h"
#include "detect/signature.h"
#include "detect/template.h"

#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTX_LINE_MAX 4096     /* bytes kept of each context line */
#define MAX_SOURCES 64        /* per service */
#define MAX_TRACKS 4096       /* fingerprints remembered; beyond, faults fold into overflow */
#define MAX_FIELD_VALUE 256   /* bytes of a captured value kept in a fingerprint and fields */
#define MAX_STATS 20000       /* per-template statistics kept per service */
#define FLUSH_INTERVAL_MS 100 /* how often counters, context and positions are written */
#define RATE_BUCKET_MS 10000  /* width of the rate buckets of generic error templates */
#define MARK_VERIFICATION "verification=1"
#define CUT_MARKER " [asr: cut]"
#define STORED_LINE_MAX (ASR_LINE_MAX + 64) /* the fault line itself: a framed line whole */

/* ---- small maps ---------------------------------------------------------------------------- */

/* Open addressing with linear probing; no deletion (maps are rebuilt when pruned). */
struct map {
    size_t cap, len; /* cap is a power of two or 0 */
    struct map_ent {
        uint64_t key; /* hash (string maps) or the key itself (id maps); 0 marks empty */
        void *val;
    } * e;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h != 0 ? h : 1;
}

static int map_grow(struct map *m)
{
    size_t cap = m->cap != 0 ? m->cap * 2 : 64;
    struct map_ent *e = calloc(cap, sizeof(*e));
    if (e == NULL)
        return ASR_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->e[i].key == 0)
            continue;
        size_t j = m->e[i].key & (cap - 1);
        while (e[j].key != 0)
            j = (j + 1) & (cap - 1);
        e[j] = m->e[i];
    }
    free(m->e);
    m->e = e;
    m->cap = cap;
    return 0;
}

/* Finds key; eq (may be NULL) tells entries with the same key apart. */
static void *map_get(const struct map *m, uint64_t key, bool (*eq)(const void *val, const void *k),
                     const void *k)
{
    if (m->cap == 0)
        return NULL;
    for (size_t j = key & (m->cap - 1); m->e[j].key != 0; j = (j + 1) & (m->cap - 1))
        if (m->e[j].key == key && (eq == NULL || eq(m->e[j].val, k)))
            return m->e[j].val;
    return NULL;
}

static int map_put(struct map *m, uint64_t key, void *val)
{
    if ((m->len + 1) * 4 > m->cap * 3 && map_grow(m) != 0)
        return ASR_ENOMEM;
    size_t j = key & (m->cap - 1);
    while (m->e[j].key != 0)
        j = (j + 1) & (m->cap - 1);
    m->e[j].key = key;
    m->e[j].val = val;
    m->len++;
    return 0;
}

static void map_free(struct map *m)
{
    free(m->e);
    memset(m, 0, sizeof(*m));
}

/* ---- state --------------------------------------------------------------------------------- */

struct service;
struct track;

/* A line kept for context. */
struct ctx_line {
    char *text;
    size_t len;
};

struct source {
    char *name;
    struct ctx_line *ring; /* context_before entries */
    size_t head, used;
    struct track **waiting; /* incidents collecting lines after their fault line */
    size_t nwaiting, waiting_cap;
};

/* Per-template statistics of a service. */
struct tstat {
    uint64_t id;
    uint64_t count, error_hits;
    int64_t bucket_start; /* ms; start of the current rate bucket */
    uint32_t bucket_hits; /* generic hits in the current bucket */
    double avg;           /* decayed mean of generic hits per earlier bucket */
    bool jumped;          /* a jump was reported in the current bucket */
    bool dirty;           /* to be saved */
    char *tmpl;           /* latest template text, for saving */
};

struct service {
    const struct asr_service_cfg *cfg;
    struct asr_sigset *sigs;
    struct asr_miner *miner;
    struct map stats; /* cluster id -> struct tstat */
    struct source *sources[MAX_SOURCES];
    size_t nsources;
    struct track *group_root; /* the open incident new ones are grouped under, if recent */
    int64_t group_last_ms;    /* when the group last took an incident */
};

struct track {
    char *fingerprint;
    struct service *svc;
    int64_t id; /* 0 until stored */
    bool open;
    int64_t resolved_at; /* wall ms; 0 while open */
    int64_t count, verifications, last_seen, first_seen;
    bool dirty;       /* counters changed since the last write */
    bool recur_noted; /* a "recurred" note was written during this cooldown */
    json_t *after;    /* context_after collected so far (NULL when none is collected) */
    bool after_done;  /* collection finished (written once more, then after = NULL) */
    bool after_dirty;
    int64_t after_deadline; /* wall ms */
    struct source *after_src;
    struct asr_incident *pending; /* not yet stored: the row to insert */
};

struct note {
    int64_t incident_id; /* the incident, when it was stored when the note was made... */
    struct track *t;     /* ...else by track, whose id the next flush knows */
    int64_t at;
    char *kind, *detail;
};

/* The last counters of an incident whose track was taken over by a new incident. */
struct retired {
    int64_t id, count, verifications, last_seen;
};

struct position {
    char *path;
    struct asr_log_position pos;
};

struct asr_detector {
    struct asr_detector_opts o;
    const struct asr_detection_cfg *dc;
    struct service *svcs;
    size_t nsvcs;
    struct map tracks;  /* fingerprint hash -> struct track */
    struct track **all; /* every track, for flushes and pruning */
    size_t ntracks, tracks_cap;
    struct note *notes;
    size_t nnotes, notes_cap;
    struct position *positions;
    size_t npositions;
    struct retired *retired;
    size_t nretired, retired_cap;
    bool need_flush;
    bool has_pending;      /* some track holds an incident not stored yet */
    int64_t last_write_ms; /* wall ms of the last batch written */
    uv_timer_t *timer;
    struct asr_detector_stats st;
};

/* ---- JSON strings -------------------------------------------------------------------------- */

/* len bytes as a JSON string; bytes that are not valid UTF-8 (from a caller that skipped the
 * framer) become '?', so a line is never lost to its encoding. */
static json_t *jstr(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len);
    if (v != NULL)
        return v;
    char *c = malloc(len + 1);
    if (c == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        c[i] = (unsigned char)s[i] >= 0x80 || s[i] == '\0' ? '?' : s[i];
    v = json_stringn(c, len);
    free(c);
    return v;
}

/* Copies at most cap bytes of s, cut at a UTF-8 character boundary with CUT_MARKER. */
static char *dup_capped(const char *s, size_t len, size_t cap, size_t *out_len)
{
    bool cut = len > cap;
    size_t n = len;
    if (cut) {
        n = cap;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* do not split a character */
    }
    size_t total = n + (cut ? sizeof(CUT_MARKER) - 1 : 0);
    char *p = malloc(total + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    if (cut)
        memcpy(p + n, CUT_MARKER, sizeof(CUT_MARKER) - 1);
    p[total] = '\0';
    *out_len = total;
    return p;
}

/* A stored JSON array back into a value, or an empty array. */
static json_t *json_column_or_empty(const char *text)
{
    json_t *v = text != NULL ? json_loads(text, 0, NULL) : NULL;
    if (v != NULL && json_is_array(v))
        return v;
    json_decref(v);
    return json_array();
}

static char *json_text(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return s;
}

/* ---- notes and positions ------------------------------------------------------------------- */

static int add_note(struct asr_detector *d, struct track *t, const char *kind, const char *fmt, ...)
{
    if (d->nnotes == d->notes_cap) {
        size_t cap = d->notes_cap != 0 ? d->notes_cap * 2 : 16;
        struct note *n = realloc(d->notes, cap * sizeof(*n));
        if (n == NULL)
            return ASR_ENOMEM;
        d->notes = n;
        d->notes_cap = cap;
    }
    char buf[CTX_LINE_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    struct note *n = &d->notes[d->nnotes];
    n->t = t;
    n->incident_id = t->id;
    n->at = asr_time_wall_ms();
    n->kind = strdup(kind);
    n->detail = strdup(buf);
    if (n->kind == NULL || n->detail == NULL) {
        free(n->kind);
        free(n->detail);
        return ASR_ENOMEM;
    }
    d->nnotes++;
    d->need_flush = true;
    return 0;
}

static int set_position(struct asr_detector *d, const struct asr_log_position *p)
{
    for (size_t i = 0; i < d->npositions; i++)
        if (strcmp(d->positions[i].path, p->path) == 0) {
            d->positions[i].pos.dev = p->dev;
            d->positions[i].pos.ino = p->ino;
            d->positions[i].pos.offset = p->offset;
            d->need_flush = true;
            return 0;
        }
    struct position *v = realloc(d->positions, (d->npositions + 1) * sizeof(*v));
    if (v == NULL)
        return ASR_ENOMEM;
    d->positions = v;
    struct position *np = &v[d->npositions];
    if ((np->path = strdup(p->path)) == NULL)
        return ASR_ENOMEM;
    np->pos = *p;
    np->pos.path = np->path;
    d->npositions++;
    d->need_flush = true;
    return 0;
}

/* ---- tracks -------------------------------------------------------------------------------- */

static bool track_eq(const void *val, const void *key)
{
    return strcmp(((const struct track *)val)->fingerprint, key) == 0;
}

static struct track *track_find(struct asr_detector *d, const char *fp)
{
    return map_get(&d->tracks, hash_bytes(fp, strlen(fp)), track_eq, fp);
}

static void incident_row_free(struct asr_incident *inc)
{
    if (inc != NULL) {
        asr_incident_free(inc);
        free(inc);
    }
}

static void track_free(struct track *t)
{
    if (t == NULL)
        return;
    free(t->fingerprint);
    json_decref(t->after);
    incident_row_free(t->pending);
    free(t);
}

static void source_unwait(struct source *src, struct track *t)
{
    for (size_t i = 0; i < src->nwaiting; i++)
        if (src->waiting[i] == t) {
            src->waiting[i] = src->waiting[--src->nwaiting];
            return;
        }
}

/*
 * Makes room when MAX_TRACKS fingerprints are remembered: forgets resolved incidents whose
 * cooldown is over (their rows stay in the store). Returns whether there is room now.
 */
static bool prune_tracks(struct asr_detector *d, int64_t now)
{
    if (d->ntracks < MAX_TRACKS)
        return true;
    size_t keep = 0;
    for (size_t i = 0; i < d->ntracks; i++) {
        struct track *t = d->all[i];
        bool drop = !t->open && t->id != 0 && !t->dirty && t->after == NULL &&
                    now - t->resolved_at >= d->dc->cooldown_ms;
        if (drop) {
            for (size_t k = 0; k < d->nsvcs; k++)
                if (d->svcs[k].group_root == t)
                    d->svcs[k].group_root = NULL;
            track_free(t);
        } else {
            d->all[keep++] = t;
        }
    }
    d->ntracks = keep;
    map_free(&d->tracks);
    for (size_t i = 0; i < d->ntracks; i++)
        if (map_put(&d->tracks, hash_bytes(d->all[i]->fingerprint, strlen(d->all[i]->fingerprint)),
                    d->all[i]) != 0)
            return false;
    return d->ntracks < MAX_TRACKS;
}

static struct track *track_new(struct asr_detector *d, struct service *svc, const char *fp)
{
    if (d->ntracks == d->tracks_cap) {
        size_t cap = d->tracks_cap != 0 ? d->tracks_cap * 2 : 64;
        struct track **v = realloc(d->all, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        d->all = v;
        d->tracks_cap = cap;
    }
    struct track *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->fingerprint = strdup(fp)) == NULL ||
        map_put(&d->tracks, hash_bytes(fp, strlen(fp)), t) != 0) {
        if (t != NULL)
            free(t->fingerprint);
        free(t);
        return NULL;
    }
    t->svc = svc;
    d->all[d->ntracks++] = t;
    return t;
}

/* ---- sources and context ------------------------------------------------------------------- */

static struct source *source_get(struct asr_detector *d, struct service *svc, const char *name)
{
    for (size_t i = 0; i < svc->nsources; i++)
        if (strcmp(svc->sources[i]->name, name) == 0)
            return svc->sources[i];
    if (svc->nsources == MAX_SOURCES)
        return svc->sources[MAX_SOURCES - 1]; /* shares the last ring rather than fail */
    struct source *s = calloc(1, sizeof(*s));
    size_t n = (size_t)d->dc->context_before;
    if (s == NULL || (s->name = strdup(name)) == NULL ||
        (n > 0 && (s->ring = calloc(n, sizeof(*s->ring))) == NULL)) {
        if (s != NULL)
            free(s->name);
        free(s);
        return NULL;
    }
    svc->sources[svc->nsources++] = s;
    return s;
}

static void source_free(struct source *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; s->ring != NULL && i < s->used; i++)
        free(s->ring[i].text);
    free(s->ring);
    free(s->waiting);
    free(s->name);
    free(s);
}

static void ring_push(struct asr_detector *d, struct source *s, const char *line, size_t len)
{
    size_t n = (size_t)d->dc->context_before;
    if (n == 0)
        return;
    size_t l;
    char *c = dup_capped(line, len, CTX_LINE_MAX, &l);
    if (c == NULL)
        return; /* context is best effort; the fault itself never depends on it */
    size_t slot = (s->head + s->used) % n;
    if (s->used == n) {
        free(s->ring[s->head].text);
        slot = s->head;
        s->head = (s->head + 1) % n;
    } else {
        s->used++;
    }
    s->ring[slot] = (struct ctx_line){c, l};
}

static json_t *ring_json(struct asr_detector *d, const struct source *s)
{
    json_t *a = json_array();
    size_t n = (size_t)d->dc->context_before;
    for (size_t i = 0; a != NULL && s != NULL && i < s->used; i++) {
        const struct ctx_line *l = &s->ring[(s->head + i) % n];
        json_array_append_new(a, jstr(l->text, l->len));
    }
    return a;
}

static void after_finish(struct asr_detector *d, struct track *t)
{
    if (t->after == NULL || t->after_done)
        return;
    t->after_done = true;
    t->after_dirty = true;
    d->need_flush = true;
    if (t->after_src != NULL)
        source_unwait(t->after_src, t);
    t->after_src = NULL;
}

/* Gives a line to the incidents of this source that are still collecting their context. */
static void feed_after(struct asr_detector *d, struct source *src, const char *line, size_t len)
{
    /* One JSON string, shared by every incident waiting on this source (jansson counts refs). */
    size_t l;
    char *c = dup_capped(line, len, CTX_LINE_MAX, &l);
    json_t *v = c != NULL ? jstr(c, l) : NULL;
    free(c);
    for (size_t i = 0; i < src->nwaiting;) {
        struct track *t = src->waiting[i];
        if (v != NULL)
            json_array_append(t->after, v);
        /* Written once, when complete (or when its wait is over): not line by line, which would
         * rewrite the same rows on every flush and slow the commits of new incidents (the
         * detection latency). A crash loses only an unfinished context. */
        if (json_array_size(t->after) >= (size_t)d->dc->context_after)
            after_finish(d, t); /* removes t from src->waiting: do not advance */
        else
            i++;
    }
    json_decref(v);
}

static int wait_after(struct asr_detector *d, struct source *src, struct track *t)
{
    json_decref(t->after);
    t->after = json_array();
    t->after_done = false;
    t->after_dirty = false;
    t->after_src = NULL;
    if (t->after == NULL)
        return ASR_ENOMEM;
    if (d->dc->context_after == 0 || src == NULL) {
        after_finish(d, t);
        return 0;
    }
    if (src->nwaiting == src->waiting_cap) {
        size_t cap = src->waiting_cap != 0 ? src->waiting_cap * 2 : 4;
        struct track **v = realloc(src->waiting, cap * sizeof(*v));
        if (v == NULL)
            return ASR_ENOMEM;
        src->waiting = v;
        src->waiting_cap = cap;
    }
    src->waiting[src->nwaiting++] = t;
    t->after_src = src;
    /* The wait is wall time (flushes compare it with asr_time_wall_ms()), whatever the line's time:
     * a CloudWatch event time may be long past. */
    t->after_deadline = asr_time_wall_ms() + d->dc->context_wait_ms;
    return 0;
}

/* ---- templates ----------------------------------------------------------------------------- */

static struct tstat *tstat_get(struct service *svc, uint64_t id)
{
    struct tstat *ts = map_get(&svc->stats, id, NULL, NULL);
    if (ts != NULL)
        return ts;
    if (svc->stats.len >= MAX_STATS)
        return NULL; /* statistics are full: the template still works, without rate history */
    if ((ts = calloc(1, sizeof(*ts))) == NULL)
        return NULL;
    ts->id = id;
    if (map_put(&svc->stats, id, ts) != 0) {
        free(ts);
        return NULL;
    }
    return ts;
}

static void tstat_set_tmpl(struct tstat *ts, const char *tmpl, size_t len)
{
    if (ts->tmpl != NULL && strlen(ts->tmpl) == len && memcmp(ts->tmpl, tmpl, len) == 0)
        return;
    char *c = strndup(tmpl, len);
    if (c != NULL) {
        free(ts->tmpl);
        ts->tmpl = c;
        ts->dirty = true;
    }
}

/*
 * Counts a generic hit of a template and says whether its rate jumped: at least rate_jump hits in
 * the current 10 s bucket and rate_jump times the decayed mean of the earlier buckets. Reported
 * once per bucket.
 */
static bool rate_jumped(struct asr_detector *d, struct tstat *ts, int64_t now)
{
    if (ts->bucket_start == 0)
        ts->bucket_start = now;
    int rolls = 0;
    while (now - ts->bucket_start >= RATE_BUCKET_MS && rolls < 64) {
        ts->avg = ts->avg * 0.8 + ts->bucket_hits * 0.2;
        ts->bucket_hits = 0;
        ts->jumped = false;
        ts->bucket_start += RATE_BUCKET_MS;
        rolls++;
    }
    if (rolls == 64)
        ts->bucket_start = now;
    ts->bucket_hits++;
    double base = ts->avg > 1.0 ? ts->avg : 1.0;
    if (!ts->jumped && ts->bucket_hits >= (uint32_t)d->dc->rate_jump &&
        ts->bucket_hits >= d->dc->rate_jump * base) {
        ts->jumped = true;
        return true;
    }
    return false;
}

static int restore_template_cb(void *data, const struct asr_template_row *row)
{
    struct service *svc = data;
    int rc = asr_miner_restore(svc->miner, (uint64_t)row->cluster_id, row->tmpl, strlen(row->tmpl));
    if (rc != 0 && rc != ASR_EINVAL)
        return rc;
    struct tstat *ts = tstat_get(svc, (uint64_t)row->cluster_id);
    if (ts != NULL) {
        ts->count = (uint64_t)row->count;
        ts->error_hits = (uint64_t)row->error_hits;
        ts->tmpl = strdup(row->tmpl);
    }
    return 0;
}

/* ---- flushing ------------------------------------------------------------------------------ */

/* The incident a note belongs to, or 0 while its incident is not stored yet. */
static int64_t note_id(const struct note *n)
{
    return n->incident_id != 0 ? n->incident_id : n->t->id;
}

static void note_free(struct note *n)
{
    free(n->kind);
    free(n->detail);
}

/* Every tstat of svc that changed, or all of them when all is set. */
static void collect_templates(struct service *svc, bool all, struct asr_template_row **rows,
                              size_t *n, size_t *cap)
{
    for (size_t i = 0; i < svc->stats.cap; i++) {
        struct tstat *ts = svc->stats.e[i].val;
        if (svc->stats.e[i].key == 0 || ts->tmpl == NULL || !(ts->dirty || all))
            continue;
        if (*n == *cap) {
            size_t c = *cap != 0 ? *cap * 2 : 64;
            struct asr_template_row *v = realloc(*rows, c * sizeof(*v));
            if (v == NULL)
                return; /* saved with the next flush */
            *rows = v;
            *cap = c;
        }
        (*rows)[(*n)++] = (struct asr_template_row){svc->cfg->name, (int64_t)ts->id, ts->tmpl,
                                                    (int64_t)ts->count, (int64_t)ts->error_hits};
    }
}

/*
 * One batch. urgent: the flush that commits a new incident (detection latency): it leaves
 * context that is still being collected for the next periodic flush.
 */
static int flush_batch(struct asr_detector *d, bool final, bool urgent, struct asr_err *err)
{
    int64_t now = asr_time_wall_ms();
    if (final)
        for (size_t i = 0; i < d->ntracks; i++)
            after_finish(d, d->all[i]);
    else
        for (size_t i = 0; i < d->ntracks; i++)
            if (d->all[i]->after != NULL && !d->all[i]->after_done &&
                now >= d->all[i]->after_deadline)
                after_finish(d, d->all[i]);

    /* Gather the batch. Strings stay owned by the tracks until the write has succeeded. */
    struct asr_incident *opened = NULL;
    struct track **opened_t = NULL;
    struct asr_incident_update *updates = NULL;
    struct track **updated_t = NULL;
    char **after_txt = NULL;
    struct asr_incident_note *notes = NULL;
    struct asr_template_row *tmpls = NULL;
    struct asr_log_position *pos = NULL;
    size_t nopened = 0, nupdates = 0, ntmpl = 0, tmpl_cap = 0;
    int rc = 0;
    size_t nt = d->ntracks, nopen_max = 0, nupd_max = d->nretired;
    /* Sized by what is pending, not by every track: a flush with thousands of tracks and one
     * new incident must not clear megabytes. */
    for (size_t i = 0; i < nt; i++) {
        const struct track *t = d->all[i];
        nopen_max += t->pending != NULL;
        nupd_max += t->dirty || t->after_dirty;
    }
    opened = calloc(nopen_max + 1, sizeof(*opened));
    opened_t = calloc(nopen_max + 1, sizeof(*opened_t));
    updates = calloc(nupd_max + 1, sizeof(*updates));
    updated_t = calloc(nupd_max + 1, sizeof(*updated_t));
    after_txt = calloc(nupd_max + 1, sizeof(*after_txt));
    notes = calloc(d->nnotes + 1, sizeof(*notes));
    pos = calloc(d->npositions + 1, sizeof(*pos));
    if (!opened || !opened_t || !updates || !updated_t || !after_txt || !notes || !pos) {
        rc = asr_err_set(err, ASR_ENOMEM, "detector: flush: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nt; i++) {
        struct track *t = d->all[i];
        if (t->pending != NULL) {
            /* The row to insert carries the counters as they are now. */
            t->pending->count = t->count;
            t->pending->verifications = t->verifications;
            t->pending->last_seen = t->last_seen;
            t->pending->context_done = t->after_done && !t->after_dirty;
            opened_t[nopened] = t;
            opened[nopened++] = *t->pending;
            t->dirty = false;
        }
        bool ctx = t->after_dirty && (!urgent || t->after_done);
        if (t->pending == NULL && (t->dirty || ctx) && t->id != 0) {
            struct asr_incident_update *u = &updates[nupdates];
            u->id = t->id;
            u->count = t->count;
            u->verifications = t->verifications;
            u->last_seen = t->last_seen;
            if (ctx && t->after != NULL) {
                after_txt[nupdates] = json_text(t->after);
                u->context_after = after_txt[nupdates];
                u->context_done = t->after_done;
            }
            updated_t[nupdates++] = t;
        }
    }
    for (size_t i = 0; i < d->nretired; i++)
        updates[nupdates++] =
            (struct asr_incident_update){.id = d->retired[i].id,
                                         .count = d->retired[i].count,
                                         .verifications = d->retired[i].verifications,
                                         .last_seen = d->retired[i].last_seen};
    /* Notes of incidents not stored yet wait for the next flush (after their insert). */
    size_t nn = 0;
    for (size_t i = 0; i < d->nnotes; i++)
        if (note_id(&d->notes[i]) != 0)
            notes[nn++] = (struct asr_incident_note){.incident_id = note_id(&d->notes[i]),
                                                     .at = d->notes[i].at,
                                                     .kind = d->notes[i].kind,
                                                     .detail = d->notes[i].detail};
    if (d->o.persist_templates)
        for (size_t i = 0; i < d->nsvcs; i++)
            collect_templates(&d->svcs[i], final, &tmpls, &ntmpl, &tmpl_cap);
    for (size_t i = 0; i < d->npositions; i++)
        pos[i] = d->positions[i].pos;
    if (nopened == 0 && nupdates == 0 && nn == 0 && ntmpl == 0 && d->npositions == 0)
        goto out;

    struct asr_incident_batch b = {opened, nopened, updates, nupdates, notes,
                                   nn,     tmpls,   ntmpl,   pos,      d->npositions};
    d->st.flushes++;
    rc = asr_store_incident_write(d->o.store, &b, err);
    if (rc != 0) {
        d->st.flush_errors++;
        goto out;
    }
    d->last_write_ms = asr_time_wall_ms();
    /* Written. Drop the notes that were in the batch (their track had an id when it was
     * gathered) before the opened tracks get their ids: the notes of those tracks were held
     * back and are written by the second round below. */
    size_t keep = 0;
    for (size_t i = 0; i < d->nnotes; i++) {
        if (note_id(&d->notes[i]) != 0)
            note_free(&d->notes[i]);
        else
            d->notes[keep++] = d->notes[i];
    }
    d->nnotes = keep;
    /* Move what was pending into the tracks' stored state. */
    for (size_t i = 0; i < nopened; i++) {
        struct track *t = opened_t[i];
        t->id = opened[i].id;
        if (d->o.on_incident != NULL) {
            opened[i].id = t->id;
            d->o.on_incident(d->o.data, &opened[i], true);
        }
        incident_row_free(t->pending);
        t->pending = NULL;
    }
    d->nretired = 0;
    for (size_t i = 0; i < nupdates; i++) {
        struct track *t = updated_t[i];
        if (t == NULL)
            continue; /* a retired incident's counters */
        t->dirty = false;
        if (updates[i].context_after != NULL) {
            t->after_dirty = false;
            if (t->after_done) {
                json_decref(t->after);
                t->after = NULL;
            }
        }
    }
    for (size_t i = 0; i < d->nsvcs; i++)
        for (size_t k = 0; k < d->svcs[i].stats.cap; k++)
            if (d->svcs[i].stats.e[k].key != 0)
                ((struct tstat *)d->svcs[i].stats.e[k].val)->dirty = false;
    for (size_t i = 0; i < d->npositions; i++)
        free(d->positions[i].path);
    d->npositions = 0;
out:
    d->need_flush = rc != 0 || d->nnotes > 0;
    d->has_pending = rc != 0 && nopened > 0;
    /* Tracks opened in this batch may have notes waiting: write them now. */
    bool again = rc == 0 && d->nnotes > 0 && nopened > 0;
    for (size_t i = 0; after_txt != NULL && i < nupdates; i++)
        free(after_txt[i]);
    free(opened);
    free(opened_t);
    free(updates);
    free(updated_t);
    free(after_txt);
    free(notes);
    free(tmpls);
    free(pos);
    if (again)
        return flush_batch(d, false, urgent, err);
    return rc;
}

int asr_detector_flush(struct asr_detector *d, bool final, struct asr_err *err)
{
    return flush_batch(d, final, false, err);
}

static void timer_cb(uv_timer_t *h)
{
    struct asr_detector *d = h->data;
    bool due = d->need_flush;
    int64_t now = asr_time_wall_ms();
    /* A batch went out less than an interval ago (new incidents carry everything pending that
     * is complete): skip this turn rather than add a commit that a new incident's commit could
     * have to wait behind. */
    if (now - d->last_write_ms < FLUSH_INTERVAL_MS)
        return;
    for (size_t i = 0; !due && i < d->ntracks; i++)
        due = d->all[i]->dirty || (d->all[i]->after != NULL &&
                                   (d->all[i]->after_dirty || now >= d->all[i]->after_deadline));
    if (!due)
        return;
    struct asr_err err = {0};
    if (asr_detector_flush(d, false, &err) != 0)
        asr_log(ASR_LOG_ERROR, "detect: could not write incidents (kept in memory, retried): %s",
                err.msg);
}

/* ---- faults -------------------------------------------------------------------------------- */

/* What a line (or an exit) turned out to be. */
struct fault {
    const char *kind;      /* "signature" | "generic" | "exit" */
    const char *signature; /* id */
    const char *severity;
    char fingerprint[1024];
    json_t *fields; /* owned */
    uint64_t template_id;
    const char *tmpl;
    size_t tmpl_len;
    bool may_open; /* generic faults open only when new or jumping */
};

/* Appends ":name=value" to the fingerprint, value cut at MAX_FIELD_VALUE bytes. */
static void fp_append(char *fp, size_t cap, const char *name, const char *v, size_t len)
{
    size_t used = strlen(fp);
    if (len > MAX_FIELD_VALUE)
        len = MAX_FIELD_VALUE;
    snprintf(fp + used, cap - used, ":%s=%.*s", name, (int)len, v);
}

/* Resolved less than cooldown_ms ago. Both times are asr's wall clock: the cooldown is about when
 * the fault was resolved here, whatever time an event says it happened. */
static bool in_cooldown(const struct asr_detector *d, const struct track *t)
{
    return !t->open && asr_time_wall_ms() - t->resolved_at < d->dc->cooldown_ms;
}

static int open_incident(struct asr_detector *d, struct service *svc, struct source *src,
                         const struct asr_line *ln, const char *line, size_t len, struct fault *f,
                         struct track *prev)
{
    int64_t now = ln->at_ms;
    struct track *t = prev;
    if (t == NULL) {
        if (!prune_tracks(d, asr_time_wall_ms())) {
            /* Too many distinct fingerprints at once (a flood of unique values): fold into one
             * overflow incident per service instead of growing without bound. */
            snprintf(f->fingerprint, sizeof(f->fingerprint), "%s:overflow", svc->cfg->name);
            f->kind = "signature";
            f->signature = "overflow";
            if ((t = track_find(d, f->fingerprint)) != NULL && (t->open || in_cooldown(d, t))) {
                t->count++;
                t->last_seen = now;
                t->dirty = true;
                d->need_flush = true;
                return 0;
            }
        }
        if (t == NULL && (t = track_new(d, svc, f->fingerprint)) == NULL)
            return ASR_ENOMEM;
    }
    struct asr_incident *inc = calloc(1, sizeof(*inc));
    if (inc == NULL)
        return ASR_ENOMEM;
    json_t *before = ring_json(d, src);
    size_t ll;
    inc->fingerprint = strdup(f->fingerprint);
    inc->service = strdup(svc->cfg->name);
    inc->kind = strdup(f->kind);
    inc->signature = strdup(f->signature);
    inc->severity = strdup(f->severity);
    inc->source = strdup(ln->source);
    inc->slot = ln->slot != NULL ? strdup(ln->slot) : NULL;
    inc->release = ln->release != NULL ? strdup(ln->release) : NULL;
    inc->template_id = (int64_t)f->template_id;
    inc->template = f->tmpl != NULL ? strndup(f->tmpl, f->tmpl_len) : NULL;
    inc->line = dup_capped(line, len, STORED_LINE_MAX, &ll);
    inc->fields = f->fields != NULL ? json_text(f->fields) : strdup("{}");
    inc->context_before = before != NULL ? json_text(before) : strdup("[]");
    json_decref(before);
    inc->first_seen = inc->last_seen = now;
    inc->received_us = ln->received_us;
    inc->count = 1;
    if (!inc->fingerprint || !inc->service || !inc->kind || !inc->signature || !inc->severity ||
        !inc->source || !inc->line || !inc->fields || !inc->context_before) {
        incident_row_free(inc);
        return ASR_ENOMEM;
    }
    /* Grouping: a service's faults close together share the first one as their parent. */
    struct track *root = svc->group_root;
    if (root != NULL && root != t && root->open && root->id != 0 && d->dc->group_window_ms > 0 &&
        now - svc->group_last_ms <= d->dc->group_window_ms) {
        inc->parent_id = root->id;
        add_note(d, root, "grouped", "incident for %s joined this group", f->fingerprint);
    } else {
        svc->group_root = t;
    }
    svc->group_last_ms = now;

    if (prev != NULL && prev->id != 0 && prev->dirty) {
        /* The resolved incident's last counters are not written yet: keep them for the next
         * flush, since the track now counts for the new incident. */
        if (d->nretired == d->retired_cap) {
            size_t cap = d->retired_cap != 0 ? d->retired_cap * 2 : 8;
            struct retired *v = realloc(d->retired, cap * sizeof(*v));
            if (v == NULL) {
                incident_row_free(inc);
                return ASR_ENOMEM;
            }
            d->retired = v;
            d->retired_cap = cap;
        }
        d->retired[d->nretired++] =
            (struct retired){prev->id, prev->count, prev->verifications, prev->last_seen};
    }
    incident_row_free(t->pending);
    t->pending = inc;
    int64_t prev_id = t->id;
    t->id = 0;
    t->open = true;
    if (prev != NULL && prev_id != 0)
        add_note(d, t, "recurrence", "recurrence of incident %lld (resolved %lld ms earlier)",
                 (long long)prev_id, (long long)(asr_time_wall_ms() - prev->resolved_at));
    t->resolved_at = 0;
    t->recur_noted = false;
    t->count = 1;
    t->verifications = 0;
    t->first_seen = t->last_seen = now;
    t->dirty = false;
    if (t->after_src != NULL)
        source_unwait(t->after_src, t);
    int rc = wait_after(d, src, t);
    if (rc != 0)
        return rc;
    d->st.opened++;
    d->need_flush = true;
    d->has_pending = true;
    return 0;
}

/* Applies a fault to its track: absorb, record in cooldown, or open. */
static int handle_fault(struct asr_detector *d, struct service *svc, struct source *src,
                        const struct asr_line *ln, const char *line, size_t len, struct fault *f,
                        bool verification)
{
    int64_t now = ln->at_ms;
    struct track *t = track_find(d, f->fingerprint);
    if (verification) {
        /* A verification probe's line never opens an incident; it is evidence on one. */
        if (t == NULL)
            return 0;
        t->verifications++;
        t->dirty = true;
        d->st.verifications++;
        return add_note(d, t, "verification", "%.*s", (int)(len < 2048 ? len : 2048), line);
    }
    d->st.faults++;
    if (t != NULL && t->open) {
        t->count++;
        if (now > t->last_seen)
            t->last_seen = now;
        t->dirty = true;
        d->need_flush = true;
        d->st.absorbed++;
        return 0;
    }
    if (t != NULL && in_cooldown(d, t)) {
        /* Resolved a moment ago: count it there instead of reopening at once. */
        t->count++;
        if (now > t->last_seen)
            t->last_seen = now;
        t->dirty = true;
        d->need_flush = true;
        d->st.suppressed++;
        if (!t->recur_noted) {
            t->recur_noted = true;
            return add_note(d, t, "recurred", "the fault recurred during the cooldown: %.*s",
                            (int)(len < 2048 ? len : 2048), line);
        }
        return 0;
    }
    if (!f->may_open)
        return 0;
    return open_incident(d, svc, src, ln, line, len, f, t);
}

/* ---- scanning ------------------------------------------------------------------------------ */

struct scan {
    bool sig_hit, generic_hit;
    size_t sig_index;
    char fp_tail[768];
    json_t *fields;
    const char *generic_severity;
    const char *generic_id;
};

static bool hit_cb(void *data, const struct asr_sig_hit *h)
{
    struct scan *sc = data;
    if (!h->generic) {
        if (sc->sig_hit)
            return true; /* the first configured signature wins */
        sc->sig_hit = true;
        sc->sig_index = h->index;
        sc->fields = json_object();
        sc->fp_tail[0] = '\0';
        for (size_t i = 0; i < h->ncaptures; i++) {
            size_t l = h->captures[i].len < MAX_FIELD_VALUE ? h->captures[i].len : MAX_FIELD_VALUE;
            if (sc->fields != NULL)
                json_object_set_new(sc->fields, h->captures[i].name, jstr(h->captures[i].value, l));
        }
        for (size_t k = 0; h->dedupe != NULL && h->dedupe[k] != NULL; k++) {
            const char *v = "";
            size_t l = 0;
            for (size_t i = 0; i < h->ncaptures; i++)
                if (strcmp(h->captures[i].name, h->dedupe[k]) == 0) {
                    v = h->captures[i].value;
                    l = h->captures[i].len;
                }
            fp_append(sc->fp_tail, sizeof(sc->fp_tail), h->dedupe[k], v, l);
        }
        return true;
    }
    if (!sc->generic_hit) {
        sc->generic_hit = true;
        sc->generic_severity = h->severity;
        sc->generic_id = h->id;
    }
    return true;
}

static struct service *find_service(struct asr_detector *d, const char *name)
{
    for (size_t i = 0; i < d->nsvcs; i++)
        if (strcmp(d->svcs[i].cfg->name, name) == 0)
            return &d->svcs[i];
    return NULL;
}

int asr_detector_line(struct asr_detector *d, const struct asr_line *ln, struct asr_err *err)
{
    struct service *svc = find_service(d, ln->service);
    if (svc == NULL)
        return asr_err_set(err, ASR_EINVAL, "detect: no service '%s' in the config", ln->service);
    struct source *src = source_get(d, svc, ln->source);
    if (src == NULL)
        return asr_err_set(err, ASR_ENOMEM, "detect: out of memory");
    d->st.lines++;
    if (src->nwaiting > 0)
        feed_after(d, src, ln->text, ln->len);
    if (ln->pos != NULL && set_position(d, ln->pos) != 0)
        return asr_err_set(err, ASR_ENOMEM, "detect: out of memory");

    struct scan sc = {0};
    int n = asr_sigset_scan(svc->sigs, ln->text, ln->len, hit_cb, &sc);
    if (n < 0) {
        json_decref(sc.fields);
        return asr_err_set(err, n, "detect: signature scan failed: %s", asr_strerror(n));
    }
    struct asr_match m = {0};
    int rc = asr_miner_add(svc->miner, ln->text, ln->len, &m);
    if (rc != 0) {
        json_decref(sc.fields);
        return asr_err_set(err, rc, "detect: template miner: %s", asr_strerror(rc));
    }
    struct tstat *ts = tstat_get(svc, m.cluster_id);
    if (ts != NULL) {
        ts->count++;
        if (m.changed || ts->tmpl == NULL)
            tstat_set_tmpl(ts, m.tmpl, m.tmpl_len);
    }
    bool verification =
        memmem(ln->text, ln->len, MARK_VERIFICATION, sizeof(MARK_VERIFICATION) - 1) != NULL;
    struct fault f = {.template_id = m.cluster_id, .tmpl = m.tmpl, .tmpl_len = m.tmpl_len};
    bool fault = false;
    if (sc.sig_hit) {
        const struct asr_signature_cfg *sig = &svc->cfg->signatures[sc.sig_index];
        d->st.signature_hits++;
        f.kind = "signature";
        f.signature = sig->id;
        f.severity = sig->severity != NULL ? sig->severity : "error";
        f.fields = sc.fields;
        f.may_open = true;
        snprintf(f.fingerprint, sizeof(f.fingerprint), "%s:%s%s", svc->cfg->name, sig->id,
                 sc.fp_tail);
        fault = true;
    } else if (sc.generic_hit && d->dc->generic) {
        d->st.generic_hits++;
        bool novel = ts == NULL || ts->error_hits == 0;
        bool jump = ts != NULL && !verification && rate_jumped(d, ts, ln->at_ms);
        if (ts != NULL && !verification) {
            ts->error_hits++;
            ts->dirty |= novel;
        }
        f.kind = "generic";
        f.signature = sc.generic_id;
        f.severity = sc.generic_severity;
        f.may_open = novel || jump;
        snprintf(f.fingerprint, sizeof(f.fingerprint), "%s:template:%llu", svc->cfg->name,
                 (unsigned long long)m.cluster_id);
        fault = true;
    }
    rc = 0;
    if (fault)
        rc = handle_fault(d, svc, src, ln, ln->text, ln->len, &f, verification);
    json_decref(sc.fields);
    ring_push(d, src, ln->text, ln->len);
    if (rc != 0)
        return asr_err_set(err, rc, "detect: %s", asr_strerror(rc));
    /* A new incident is committed before the line is done with: that is the latency. */
    if (d->has_pending)
        return flush_batch(d, false, true, err);
    return 0;
}

int asr_detector_exit(struct asr_detector *d, const char *service, const char *slot,
                      const char *release, int status, int term_signal, struct asr_err *err)
{
    struct service *svc = find_service(d, service);
    if (svc == NULL)
        return asr_err_set(err, ASR_EINVAL, "detect: no service '%s' in the config", service);
    char line[256];
    struct fault f = {.kind = "exit", .signature = "exit", .may_open = true};
    if (term_signal != 0) {
        const char *abbrev = sigabbrev_np(term_signal);
        snprintf(line, sizeof(line), "slot %s exited on signal %d (SIG%s: %s)",
                 slot != NULL ? slot : "-", term_signal, abbrev != NULL ? abbrev : "?",
                 strsignal(term_signal));
        snprintf(f.fingerprint, sizeof(f.fingerprint), "%s:exit:signal=%s", service,
                 abbrev != NULL ? abbrev : "?");
        f.severity = "critical";
    } else {
        snprintf(line, sizeof(line), "slot %s exited with status %d", slot != NULL ? slot : "-",
                 status);
        snprintf(f.fingerprint, sizeof(f.fingerprint), "%s:exit:code=%d", service, status);
        f.severity = "error";
    }
    f.fields = json_pack("{s:i, s:i}", "status", status, "signal", term_signal);
    int64_t now = asr_time_wall_ms();
    struct asr_line ln = {.service = service,
                          .source = "exit",
                          .slot = slot,
                          .release = release,
                          .text = line,
                          .len = strlen(line),
                          .at_ms = now,
                          .received_us = asr_time_wall_us()};
    /* The context of a crash is what the process last said on stderr. */
    struct source *ctx = NULL;
    for (size_t i = 0; i < svc->nsources; i++)
        if (strcmp(svc->sources[i]->name, "stderr") == 0)
            ctx = svc->sources[i];
    d->st.faults++;
    struct track *t = track_find(d, f.fingerprint);
    int rc;
    if (t != NULL && t->open) {
        t->count++;
        t->last_seen = now;
        t->dirty = true;
        d->need_flush = true;
        d->st.absorbed++;
        rc = 0;
    } else {
        rc = handle_fault(d, svc, NULL, &ln, line, ln.len, &f, false);
        /* open_incident took no context from src NULL; use stderr's ring instead (also when
         * the exit reopens a resolved fingerprint). */
        if (rc == 0 && (t = track_find(d, f.fingerprint)) != NULL && t->pending != NULL) {
            json_t *before = ring_json(d, ctx);
            char *txt = before != NULL ? json_text(before) : NULL;
            json_decref(before);
            if (txt != NULL) {
                free(t->pending->context_before);
                t->pending->context_before = txt;
            }
        }
    }
    json_decref(f.fields);
    if (rc != 0)
        return asr_err_set(err, rc, "detect: %s", asr_strerror(rc));
    return flush_batch(d, false, true, err);
}

int asr_detector_resolve(struct asr_detector *d, int64_t id, const char *reason,
                         struct asr_err *err)
{
    /* Whatever is pending for it is written first, so the resolution is the last word. */
    int rc = asr_detector_flush(d, false, err);
    if (rc != 0)
        return rc;
    if ((rc = asr_store_incident_resolve(d->o.store, id, reason, err)) != 0)
        return rc;
    for (size_t i = 0; i < d->ntracks; i++) {
        struct track *t = d->all[i];
        if (t->id == id && t->open) {
            t->open = false;
            t->resolved_at = asr_time_wall_ms();
            t->recur_noted = false;
            for (size_t k = 0; k < d->nsvcs; k++)
                if (d->svcs[k].group_root == t)
                    d->svcs[k].group_root = NULL;
        }
    }
    return 0;
}

void asr_detector_stats(const struct asr_detector *d, struct asr_detector_stats *out)
{
    *out = d->st;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

/* Loads the incidents a restarted detector must keep deduplicating against. */
static int load_tracks(struct asr_detector *d, struct asr_err *err)
{
    struct asr_incident *v = NULL;
    size_t n = 0;
    int rc =
        asr_store_incident_recent(d->o.store, asr_time_wall_ms() - d->dc->cooldown_ms, &v, &n, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct service *svc = find_service(d, v[i].service);
        if (svc == NULL)
            continue; /* a service no longer in the config */
        struct track *t = track_new(d, svc, v[i].fingerprint);
        if (t == NULL) {
            rc = asr_err_set(err, ASR_ENOMEM, "detect: out of memory");
            break;
        }
        t->id = v[i].id;
        t->open = strcmp(v[i].status, ASR_INCIDENT_OPEN) == 0;
        t->resolved_at = v[i].resolved_at;
        t->count = v[i].count;
        t->verifications = v[i].verifications;
        t->first_seen = v[i].first_seen;
        t->last_seen = v[i].last_seen;
        if (t->open && !v[i].context_done) {
            /* Its lines-after were cut short by the restart; say so and close the window. */
            t->after = json_column_or_empty(v[i].context_after);
            t->after_done = true;
            t->after_dirty = true;
            add_note(d, t, "context", "context after the fault was cut short by a restart of asr");
        }
    }
    asr_incident_list_free(v, n);
    return rc;
}

int asr_detector_create(const struct asr_detector_opts *opts, struct asr_detector **out,
                        struct asr_err *err)
{
    *out = NULL;
    if (opts == NULL || opts->cfg == NULL || opts->store == NULL)
        return asr_err_set(err, ASR_EINVAL, "detect: no config or store");
    struct asr_detector *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return asr_err_set(err, ASR_ENOMEM, "detect: out of memory");
    d->o = *opts;
    d->dc = &opts->cfg->detection;
    d->nsvcs = opts->cfg->nservices;
    int rc = 0;
    if ((d->svcs = calloc(d->nsvcs, sizeof(*d->svcs))) == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "detect: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < d->nsvcs; i++) {
        struct service *svc = &d->svcs[i];
        svc->cfg = &opts->cfg->services[i];
        struct asr_err e2 = {0};
        rc = asr_sigset_create(svc->cfg->signatures, svc->cfg->nsignatures,
                               (d->dc->generic ? ASR_SIGSET_GENERIC : 0) |
                                   (opts->compile_apart ? ASR_SIGSET_APART : 0),
                               &svc->sigs, &e2);
        if (rc != 0) {
            asr_err_set(err, rc, "%s: services[%zu] (%s, line %d): %s", opts->cfg->path, i,
                        svc->cfg->name, svc->cfg->line, e2.msg);
            goto fail;
        }
        if ((rc = asr_miner_create(NULL, &svc->miner)) != 0) {
            asr_err_set(err, rc, "detect: template miner: %s", asr_strerror(rc));
            goto fail;
        }
        if (opts->persist_templates &&
            (rc = asr_store_templates_load(opts->store, svc->cfg->name, restore_template_cb, svc,
                                           err)) != 0)
            goto fail;
    }
    if ((rc = load_tracks(d, err)) != 0)
        goto fail;
    if (opts->loop != NULL) {
        if ((d->timer = malloc(sizeof(*d->timer))) == NULL) {
            rc = asr_err_set(err, ASR_ENOMEM, "detect: out of memory");
            goto fail;
        }
        uv_timer_init(opts->loop, d->timer);
        d->timer->data = d;
        uv_timer_start(d->timer, timer_cb, FLUSH_INTERVAL_MS, FLUSH_INTERVAL_MS);
    }
    *out = d;
    return 0;
fail:
    asr_detector_destroy(d);
    return rc;
}

static void timer_close_cb(uv_handle_t *h)
{
    free(h);
}

void asr_detector_destroy(struct asr_detector *d)
{
    if (d == NULL)
        return;
    if (d->timer != NULL) {
        uv_timer_stop(d->timer);
        uv_close((uv_handle_t *)d->timer, timer_close_cb);
    }
    for (size_t i = 0; d->svcs != NULL && i < d->nsvcs; i++) {
        struct service *svc = &d->svcs[i];
        asr_sigset_destroy(svc->sigs);
        asr_miner_destroy(svc->miner);
        for (size_t k = 0; k < svc->stats.cap; k++)
            if (svc->stats.e[k].key != 0) {
                struct tstat *ts = svc->stats.e[k].val;
                free(ts->tmpl);
                free(ts);
            }
        map_free(&svc->stats);
        for (size_t k = 0; k < svc->nsources; k++)
            source_free(svc->sources[k]);
    }
    free(d->svcs);
    for (size_t i = 0; i < d->ntracks; i++)
        track_free(d->all[i]);
    free(d->all);
    map_free(&d->tracks);
    for (size_t i = 0; i < d->nnotes; i++)
        note_free(&d->notes[i]);
    free(d->notes);
    for (size_t i = 0; i < d->npositions; i++)
        free(d->positions[i].path);
    free(d->positions);
    free(d->retired);
    free(d);
}
