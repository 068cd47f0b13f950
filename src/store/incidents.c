/*
 * incidents.c - incidents, their timelines, mined templates and tailed-file positions in asr.db.
 *
 * Part of the store (src/store/). The detector writes through asr_store_incident_write(), one
 * transaction per batch (include/asr/incident.h says why); everything else reads. The schema is
 * migration 2 in migrate.c; docs/store.md and docs/detection.md describe the columns.
 */
#include "asr/audit.h"
#include "asr/incident.h"
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INCIDENT_COLS                                                                              \
    "id, parent_id, fingerprint, service, kind, signature, severity, source, slot, "               \
    "release_commit, template_id, template, line, fields, context_before, context_after, "         \
    "context_done, status, count, verifications, first_seen, last_seen, received_us, opened_at, "  \
    "resolved_at, resolution"

static const char sql_insert[] =
    "INSERT INTO incidents (parent_id, fingerprint, service, kind, signature, severity, source, "
    "slot, release_commit, template_id, template, line, fields, context_before, context_after, "
    "context_done, count, verifications, first_seen, last_seen, received_us, opened_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
    "?19, ?20, ?21, ?22)";
static const char sql_update[] =
    "UPDATE incidents SET count = ?2, verifications = ?3, last_seen = max(last_seen, ?4), "
    "context_after = coalesce(?5, context_after), context_done = max(context_done, ?6) "
    "WHERE id = ?1";
static const char sql_note[] =
    "INSERT INTO incident_notes (incident_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)";
static const char sql_template[] =
    "INSERT INTO templates (service, cluster_id, template, count, error_hits, updated_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (service, cluster_id) DO UPDATE SET "
    "template = excluded.template, count = excluded.count, error_hits = excluded.error_hits, "
    "updated_at = excluded.updated_at";
static const char sql_position[] =
    "INSERT INTO log_positions (path, dev, ino, offset, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) "
    "ON CONFLICT (path) DO UPDATE SET dev = excluded.dev, ino = excluded.ino, "
    "offset = excluded.offset, updated_at = excluded.updated_at";
static const char sql_resolve[] =
    "UPDATE incidents SET status = 'resolved', resolved_at = ?2, resolution = ?3 "
    "WHERE id = ?1 AND status = 'open'";
static const char sql_status[] = "SELECT status FROM incidents WHERE id = ?1";
static const char sql_get[] = "SELECT " INCIDENT_COLS " FROM incidents WHERE id = ?1";
static const char sql_list[] =
    "SELECT " INCIDENT_COLS " FROM incidents WHERE (?1 IS NULL OR service = ?1) "
    "AND (?2 IS NULL OR status = ?2) AND (?4 IS NULL OR signature = ?4) "
    "AND (?5 IS NULL OR id < ?5) ORDER BY id DESC LIMIT ?3";
/* The newest incident of each fingerprint, if it is open or recently resolved. */
static const char sql_recent[] =
    "SELECT " INCIDENT_COLS " FROM incidents WHERE id IN (SELECT max(id) FROM incidents "
    "GROUP BY fingerprint) AND (status = 'open' OR resolved_at >= ?1) ORDER BY id";
static const char sql_notes[] =
    "SELECT id, incident_id, at, kind, detail FROM incident_notes WHERE incident_id = ?1 "
    "ORDER BY id";
static const char sql_templates[] =
    "SELECT service, cluster_id, template, count, error_hits FROM templates WHERE service = ?1 "
    "ORDER BY cluster_id";
static const char sql_get_position[] = "SELECT dev, ino, offset FROM log_positions WHERE path = ?1";

static int bind_id(sqlite3_stmt *s, int i, int64_t v)
{
    return v != 0 ? sqlite3_bind_int64(s, i, v) : sqlite3_bind_null(s, i);
}

static int insert_note(struct asr_store *st, int64_t incident, int64_t at, const char *kind,
                       const char *detail, const char *op, struct asr_err *err)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_note, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (sqlite3_bind_int64(s, 1, incident) != SQLITE_OK || sqlite3_bind_int64(s, 2, at) ||
        asr_store_bind_str(s, 3, kind) || asr_store_bind_str(s, 4, detail)) {
        asr_store_reset(s);
        return asr_store_fail(st, op, err);
    }
    return asr_store_run(st, s, op, err);
}

static int insert_incident(struct asr_store *st, struct asr_incident *inc, const char *op,
                           struct asr_err *err)
{
    if (inc->fingerprint == NULL || inc->service == NULL || inc->kind == NULL ||
        inc->signature == NULL || inc->severity == NULL || inc->source == NULL || inc->line == NULL)
        return asr_store_bad_arg(err, op,
                                 "incident without fingerprint, service, kind, signature, "
                                 "severity, source or line");
    sqlite3_stmt *s = asr_store_prepare(st, sql_insert, op, err);
    if (s == NULL)
        return ASR_EDB;
    int64_t now = asr_store_now(st);
    int b = bind_id(s, 1, inc->parent_id) || asr_store_bind_str(s, 2, inc->fingerprint) ||
            asr_store_bind_str(s, 3, inc->service) || asr_store_bind_str(s, 4, inc->kind) ||
            asr_store_bind_str(s, 5, inc->signature) || asr_store_bind_str(s, 6, inc->severity) ||
            asr_store_bind_str(s, 7, inc->source) || asr_store_bind_str(s, 8, inc->slot) ||
            asr_store_bind_str(s, 9, inc->release) || sqlite3_bind_int64(s, 10, inc->template_id) ||
            asr_store_bind_str(s, 11, inc->template) || asr_store_bind_str(s, 12, inc->line) ||
            asr_store_bind_str(s, 13, inc->fields != NULL ? inc->fields : "{}") ||
            asr_store_bind_str(s, 14, inc->context_before != NULL ? inc->context_before : "[]") ||
            asr_store_bind_str(s, 15, inc->context_after != NULL ? inc->context_after : "[]") ||
            sqlite3_bind_int(s, 16, inc->context_done) ||
            sqlite3_bind_int64(s, 17, inc->count > 0 ? inc->count : 1) ||
            sqlite3_bind_int64(s, 18, inc->verifications) ||
            sqlite3_bind_int64(s, 19, inc->first_seen) ||
            sqlite3_bind_int64(s, 20, inc->last_seen) ||
            sqlite3_bind_int64(s, 21, inc->received_us) || sqlite3_bind_int64(s, 22, now);
    if (b != SQLITE_OK) {
        asr_store_reset(s);
        return asr_store_fail(st, op, err);
    }
    int rc = asr_store_run(st, s, op, err);
    if (rc != 0)
        return rc;
    inc->id = sqlite3_last_insert_rowid(asr_store_db(st));
    inc->opened_at = now;
    /* The line itself is in the row; the note says where it came from. */
    char where[512];
    snprintf(where, sizeof(where), "%s %s%s%s", inc->kind, inc->source,
             inc->slot != NULL ? ", slot " : "", inc->slot != NULL ? inc->slot : "");
    rc = insert_note(st, inc->id, now, "opened", where, op, err);
    if (rc != 0)
        return rc;
    /* The event stream's copy (asr/store.h): what the dashboard shows before asking for more. */
    json_t *d =
        json_pack("{s:s, s:s, s:s, s:I}", "signature", inc->signature, "severity", inc->severity,
                  "source", inc->source, "first_seen_ms", (json_int_t)inc->first_seen);
    char *text = d != NULL ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    if (text == NULL)
        return asr_err_set(err, ASR_ENOMEM, "store: %s: out of memory", op);
    rc = asr_store_event_in_tx(st, now, inc->service, inc->id, "detector", "incident.opened", text,
                               op, err);
    free(text);
    return rc;
}

static int update_incident(struct asr_store *st, const struct asr_incident_update *u,
                           const char *op, struct asr_err *err)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_update, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (sqlite3_bind_int64(s, 1, u->id) || sqlite3_bind_int64(s, 2, u->count) ||
        sqlite3_bind_int64(s, 3, u->verifications) || sqlite3_bind_int64(s, 4, u->last_seen) ||
        asr_store_bind_str(s, 5, u->context_after) || sqlite3_bind_int(s, 6, u->context_done)) {
        asr_store_reset(s);
        return asr_store_fail(st, op, err);
    }
    return asr_store_run(st, s, op, err);
}

static int save_template(struct asr_store *st, const struct asr_template_row *t, const char *op,
                         struct asr_err *err)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_template, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (asr_store_bind_str(s, 1, t->service) || sqlite3_bind_int64(s, 2, t->cluster_id) ||
        asr_store_bind_str(s, 3, t->tmpl) || sqlite3_bind_int64(s, 4, t->count) ||
        sqlite3_bind_int64(s, 5, t->error_hits) || sqlite3_bind_int64(s, 6, asr_store_now(st))) {
        asr_store_reset(s);
        return asr_store_fail(st, op, err);
    }
    return asr_store_run(st, s, op, err);
}

static int save_position(struct asr_store *st, const struct asr_log_position *p, const char *op,
                         struct asr_err *err)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_position, op, err);
    if (s == NULL)
        return ASR_EDB;
    /* dev and ino are unsigned; SQLite keeps their bits in a signed 64-bit integer. */
    if (asr_store_bind_str(s, 1, p->path) || sqlite3_bind_int64(s, 2, (int64_t)p->dev) ||
        sqlite3_bind_int64(s, 3, (int64_t)p->ino) || sqlite3_bind_int64(s, 4, (int64_t)p->offset) ||
        sqlite3_bind_int64(s, 5, asr_store_now(st))) {
        asr_store_reset(s);
        return asr_store_fail(st, op, err);
    }
    return asr_store_run(st, s, op, err);
}

int asr_store_incident_write(struct asr_store *st, struct asr_incident_batch *b,
                             struct asr_err *err)
{
    const char *op = "write incidents";
    if (st == NULL || b == NULL)
        return asr_store_bad_arg(err, op, "no store or batch");
    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; rc == 0 && i < b->nopened; i++)
        rc = insert_incident(st, &b->opened[i], op, err);
    for (size_t i = 0; rc == 0 && i < b->nupdates; i++)
        rc = update_incident(st, &b->updates[i], op, err);
    for (size_t i = 0; rc == 0 && i < b->nnotes; i++) {
        const struct asr_incident_note *n = &b->notes[i];
        rc = insert_note(st, n->incident_id, n->at != 0 ? n->at : asr_store_now(st), n->kind,
                         n->detail, op, err);
    }
    for (size_t i = 0; rc == 0 && i < b->ntemplates; i++)
        rc = save_template(st, &b->templates[i], op, err);
    for (size_t i = 0; rc == 0 && i < b->npositions; i++)
        rc = save_position(st, &b->positions[i], op, err);
    rc = asr_store_finish(st, rc, op, err);
    if (rc != 0)
        for (size_t i = 0; i < b->nopened; i++)
            b->opened[i].id = 0;
    return rc;
}

int asr_store_incident_resolve(struct asr_store *st, int64_t id, const char *reason,
                               struct asr_err *err)
{
    const char *op = "resolve incident";
    if (st == NULL || id <= 0)
        return asr_store_bad_arg(err, op, "no store or no incident id");
    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    sqlite3_stmt *s = asr_store_prepare(st, sql_resolve, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
        goto out;
    }
    int64_t now = asr_store_now(st);
    if (sqlite3_bind_int64(s, 1, id) || sqlite3_bind_int64(s, 2, now) ||
        asr_store_bind_str(s, 3, reason)) {
        asr_store_reset(s);
        rc = asr_store_fail(st, op, err);
        goto out;
    }
    if ((rc = asr_store_run(st, s, op, err)) != 0)
        goto out;
    if (sqlite3_changes(asr_store_db(st)) == 0) {
        /* Say which: no such incident, or already resolved. */
        sqlite3_stmt *q = asr_store_prepare(st, sql_status, op, err);
        if (q == NULL) {
            rc = ASR_EDB;
            goto out;
        }
        sqlite3_bind_int64(q, 1, id);
        if (sqlite3_step(q) == SQLITE_ROW)
            rc = asr_err_set(err, ASR_EINVAL, "incident %lld is already resolved", (long long)id);
        else
            rc = asr_err_set(err, ASR_ENOENT, "no incident %lld", (long long)id);
        asr_store_reset(q);
        goto out;
    }
    rc = insert_note(st, id, now, "resolved", reason, op, err);
    json_t *d = json_pack("{s:s?}", "reason", reason);
    if (rc == 0)
        rc = asr_audit_append_json(st, ASR_AUDIT_ASR, "incident.resolved", id, 0, d, err);
    json_decref(d);
out:
    return asr_store_finish(st, rc, op, err);
}

/* ---- reading ------------------------------------------------------------------------------- */

static void incident_clear(struct asr_incident *inc)
{
    char **strs[] = {&inc->fingerprint,   &inc->service, &inc->kind,      &inc->signature,
                     &inc->severity,      &inc->source,  &inc->slot,      &inc->release,
                     &inc->template,      &inc->line,    &inc->fields,    &inc->context_before,
                     &inc->context_after, &inc->status,  &inc->resolution};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
}

void asr_incident_free(struct asr_incident *inc)
{
    if (inc != NULL)
        incident_clear(inc);
}

void asr_incident_list_free(struct asr_incident *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        incident_clear(&v[i]);
    free(v);
}

static int read_incident_cb(sqlite3_stmt *s, void *row)
{
    struct asr_incident *inc = row;
    inc->id = sqlite3_column_int64(s, 0);
    inc->parent_id = sqlite3_column_int64(s, 1);
    inc->template_id = sqlite3_column_int64(s, 10);
    inc->context_done = sqlite3_column_int(s, 16) != 0;
    inc->count = sqlite3_column_int64(s, 18);
    inc->verifications = sqlite3_column_int64(s, 19);
    inc->first_seen = sqlite3_column_int64(s, 20);
    inc->last_seen = sqlite3_column_int64(s, 21);
    inc->received_us = sqlite3_column_int64(s, 22);
    inc->opened_at = sqlite3_column_int64(s, 23);
    inc->resolved_at = sqlite3_column_int64(s, 24);
    struct {
        int col;
        char **dst;
    } strs[] = {{2, &inc->fingerprint},    {3, &inc->service},  {4, &inc->kind},
                {5, &inc->signature},      {6, &inc->severity}, {7, &inc->source},
                {8, &inc->slot},           {9, &inc->release},  {11, &inc->template},
                {12, &inc->line},          {13, &inc->fields},  {14, &inc->context_before},
                {15, &inc->context_after}, {17, &inc->status},  {25, &inc->resolution}};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (asr_store_col_dup(s, strs[i].col, strs[i].dst) != 0) {
            incident_clear(inc);
            return ASR_ENOMEM;
        }
    return 0;
}

static void free_incidents_cb(void *rows, size_t n)
{
    asr_incident_list_free(rows, n);
}

int asr_store_incident_get(struct asr_store *st, int64_t id, struct asr_incident *out,
                           struct asr_err *err)
{
    const char *op = "get incident";
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *s = asr_store_prepare(st, sql_get, op, err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, id);
    struct asr_incident *rows = NULL;
    size_t n = 0;
    int rc = asr_store_collect(st, s, op, sizeof(*rows), read_incident_cb, free_incidents_cb,
                               (void **)&rows, &n, err);
    if (rc != 0)
        return rc;
    if (n == 0) {
        free(rows);
        return asr_err_set(err, ASR_ENOENT, "no incident %lld", (long long)id);
    }
    *out = rows[0];
    free(rows);
    return 0;
}

int asr_store_incident_list(struct asr_store *st, const char *service, const char *status,
                            int limit, struct asr_incident **out, size_t *n, struct asr_err *err)
{
    struct asr_incident_query q = {.service = service, .status = status, .limit = limit};
    return asr_store_incident_query(st, &q, out, n, err);
}

int asr_store_incident_query(struct asr_store *st, const struct asr_incident_query *q,
                             struct asr_incident **out, size_t *n, struct asr_err *err)
{
    const char *op = "list incidents";
    sqlite3_stmt *s = asr_store_prepare(st, sql_list, op, err);
    if (s == NULL)
        return ASR_EDB;
    asr_store_bind_str(s, 1, q->service);
    asr_store_bind_str(s, 2, q->status);
    sqlite3_bind_int(s, 3, q->limit > 0 ? q->limit : -1);
    asr_store_bind_str(s, 4, q->signature);
    if (q->before_id > 0)
        sqlite3_bind_int64(s, 5, q->before_id);
    else
        sqlite3_bind_null(s, 5);
    return asr_store_collect(st, s, op, sizeof(**out), read_incident_cb, free_incidents_cb,
                             (void **)out, n, err);
}

int asr_store_incident_recent(struct asr_store *st, int64_t since_ms, struct asr_incident **out,
                              size_t *n, struct asr_err *err)
{
    const char *op = "recent incidents";
    sqlite3_stmt *s = asr_store_prepare(st, sql_recent, op, err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, since_ms);
    return asr_store_collect(st, s, op, sizeof(**out), read_incident_cb, free_incidents_cb,
                             (void **)out, n, err);
}

void asr_incident_notes_free(struct asr_incident_note *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i].kind);
        free(v[i].detail);
    }
    free(v);
}

static int read_note_cb(sqlite3_stmt *s, void *row)
{
    struct asr_incident_note *nt = row;
    nt->id = sqlite3_column_int64(s, 0);
    nt->incident_id = sqlite3_column_int64(s, 1);
    nt->at = sqlite3_column_int64(s, 2);
    if (asr_store_col_dup(s, 3, &nt->kind) || asr_store_col_dup(s, 4, &nt->detail)) {
        free(nt->kind);
        free(nt->detail);
        return ASR_ENOMEM;
    }
    return 0;
}

static void free_notes_cb(void *rows, size_t n)
{
    asr_incident_notes_free(rows, n);
}

int asr_store_incident_notes(struct asr_store *st, int64_t id, struct asr_incident_note **out,
                             size_t *n, struct asr_err *err)
{
    const char *op = "incident notes";
    sqlite3_stmt *s = asr_store_prepare(st, sql_notes, op, err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, id);
    return asr_store_collect(st, s, op, sizeof(**out), read_note_cb, free_notes_cb, (void **)out, n,
                             err);
}

int asr_store_templates_load(struct asr_store *st, const char *service,
                             int (*cb)(void *data, const struct asr_template_row *row), void *data,
                             struct asr_err *err)
{
    const char *op = "load templates";
    sqlite3_stmt *s = asr_store_prepare(st, sql_templates, op, err);
    if (s == NULL)
        return ASR_EDB;
    asr_store_bind_str(s, 1, service);
    int rc = 0, step;
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
        struct asr_template_row row = {
            .service = (const char *)sqlite3_column_text(s, 0),
            .cluster_id = sqlite3_column_int64(s, 1),
            .tmpl = (const char *)sqlite3_column_text(s, 2),
            .count = sqlite3_column_int64(s, 3),
            .error_hits = sqlite3_column_int64(s, 4),
        };
        if (row.service == NULL || row.tmpl == NULL)
            rc = asr_err_set(err, ASR_ENOMEM, "store: %s: out of memory", op);
        else
            rc = cb(data, &row);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = asr_store_fail(st, op, err);
    asr_store_reset(s);
    return rc;
}

int asr_store_log_position(struct asr_store *st, const char *path, struct asr_log_position *out,
                           struct asr_err *err)
{
    const char *op = "log position";
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *s = asr_store_prepare(st, sql_get_position, op, err);
    if (s == NULL)
        return ASR_EDB;
    asr_store_bind_str(s, 1, path);
    int rc, step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        out->path = path;
        out->dev = (uint64_t)sqlite3_column_int64(s, 0);
        out->ino = (uint64_t)sqlite3_column_int64(s, 1);
        out->offset = (uint64_t)sqlite3_column_int64(s, 2);
        rc = 0;
    } else if (step == SQLITE_DONE) {
        rc = asr_err_set(err, ASR_ENOENT, "no saved position for %s", path);
    } else {
        rc = asr_store_fail(st, op, err);
    }
    asr_store_reset(s);
    return rc;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

/* Stored JSON text back into a value; a column that somehow is not JSON stays a string. */
static json_t *json_column(const char *text, const char *fallback)
{
    json_t *v = json_loads(text != NULL ? text : fallback, JSON_DECODE_ANY, NULL);
    return v != NULL ? v : json_string(text);
}

static json_t *str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

json_t *asr_incident_json(const struct asr_incident *inc, const struct asr_incident_note *notes,
                          size_t nnotes)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    int bad = 0;
    bad |= json_object_set_new(o, "id", json_integer(inc->id));
    bad |= json_object_set_new(o, "parent_id",
                               inc->parent_id != 0 ? json_integer(inc->parent_id) : json_null());
    bad |= json_object_set_new(o, "status", str_or_null(inc->status));
    bad |= json_object_set_new(o, "service", str_or_null(inc->service));
    bad |= json_object_set_new(o, "kind", str_or_null(inc->kind));
    bad |= json_object_set_new(o, "signature", str_or_null(inc->signature));
    bad |= json_object_set_new(o, "severity", str_or_null(inc->severity));
    bad |= json_object_set_new(o, "fingerprint", str_or_null(inc->fingerprint));
    bad |= json_object_set_new(o, "source", str_or_null(inc->source));
    bad |= json_object_set_new(o, "slot", str_or_null(inc->slot));
    bad |= json_object_set_new(o, "release", str_or_null(inc->release));
    bad |= json_object_set_new(o, "template_id", json_integer(inc->template_id));
    bad |= json_object_set_new(o, "template", str_or_null(inc->template));
    bad |= json_object_set_new(o, "count", json_integer(inc->count));
    bad |= json_object_set_new(o, "verifications", json_integer(inc->verifications));
    bad |= json_object_set_new(o, "first_seen_ms", json_integer(inc->first_seen));
    bad |= json_object_set_new(o, "last_seen_ms", json_integer(inc->last_seen));
    bad |= json_object_set_new(o, "received_us", json_integer(inc->received_us));
    bad |= json_object_set_new(o, "opened_at_ms", json_integer(inc->opened_at));
    bad |= json_object_set_new(
        o, "resolved_at_ms", inc->resolved_at != 0 ? json_integer(inc->resolved_at) : json_null());
    bad |= json_object_set_new(o, "resolution", str_or_null(inc->resolution));
    bad |= json_object_set_new(o, "fields", json_column(inc->fields, "{}"));
    bad |= json_object_set_new(o, "line", str_or_null(inc->line));
    bad |= json_object_set_new(o, "context_before", json_column(inc->context_before, "[]"));
    bad |= json_object_set_new(o, "context_after", json_column(inc->context_after, "[]"));
    bad |= json_object_set_new(o, "context_complete", json_boolean(inc->context_done));
    if (notes != NULL) {
        json_t *tl = json_array();
        bad |= json_object_set_new(o, "timeline", tl);
        for (size_t i = 0; tl != NULL && i < nnotes; i++) {
            json_t *e = json_pack("{s:I, s:s, s:o}", "at_ms", (json_int_t)notes[i].at, "kind",
                                  notes[i].kind != NULL ? notes[i].kind : "", "detail",
                                  str_or_null(notes[i].detail));
            bad |= json_array_append_new(tl, e);
        }
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}
