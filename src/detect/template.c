/*
 * template.c - online log template miner (Drain family); see template.h.
 *
 * Clusters live in two intrusive lists: a chained hash table keyed by the Drain route (token
 * count and first token, or `<*>` when the first token is a variable or has no cluster of its
 * own) and an LRU list used for eviction at the cap. A message is tokenised into scratch arrays
 * owned by the miner, so the steady state (a message joining a cluster without changing its
 * template) allocates nothing.
 */
#include "detect/template.h"

#include "asr/error.h"

#include <stdlib.h>
#include <string.h>

#define WILD 0ULL /* hash of a variable token */
#define NSLOTS 16384u

struct cluster {
    uint64_t id;
    uint64_t route; /* hash of the first token used for routing, or WILD */
    uint32_t ntok;
    uint32_t nwild;
    struct cluster *chain_next;
    struct cluster *lru_prev, *lru_next;
    char *tmpl;
    size_t tmpl_len;
    uint64_t toks[]; /* ntok token hashes, WILD for `<*>` */
};

struct asr_miner {
    struct asr_miner_opts o;
    struct cluster *slots[NSLOTS];
    struct cluster *lru_head, *lru_tail; /* head = most recently used */
    size_t count;
    uint64_t next_id;
    uint64_t evicted;
    /* scratch for one message */
    const char **tstart;
    uint32_t *tlen;
    uint64_t *thash;
};

void asr_miner_opts_default(struct asr_miner_opts *o)
{
    o->sim_threshold = 0.5;
    o->max_clusters = 10000;
    o->max_tokens = 256;
    o->max_token_len = 256;
    o->digits_are_variables = true;
}

int asr_miner_create(const struct asr_miner_opts *opts, struct asr_miner **out)
{
    *out = NULL;
    struct asr_miner_opts o;
    if (opts)
        o = *opts;
    else
        asr_miner_opts_default(&o);
    if (o.max_clusters == 0 || o.max_tokens == 0 || o.max_tokens > 65536 || o.max_token_len == 0 ||
        !(o.sim_threshold >= 0.0 && o.sim_threshold <= 1.0))
        return ASR_EINVAL;
    struct asr_miner *m = calloc(1, sizeof(*m));
    if (!m)
        return ASR_ENOMEM;
    m->o = o;
    m->next_id = 1;
    m->tstart = malloc(o.max_tokens * sizeof(*m->tstart));
    m->tlen = malloc(o.max_tokens * sizeof(*m->tlen));
    m->thash = malloc(o.max_tokens * sizeof(*m->thash));
    if (!m->tstart || !m->tlen || !m->thash) {
        asr_miner_destroy(m);
        return ASR_ENOMEM;
    }
    *out = m;
    return 0;
}

static void cluster_free(struct cluster *c)
{
    if (c) {
        free(c->tmpl);
        free(c);
    }
}

void asr_miner_destroy(struct asr_miner *m)
{
    if (!m)
        return;
    struct cluster *c = m->lru_head;
    while (c) {
        struct cluster *next = c->lru_next;
        cluster_free(c);
        c = next;
    }
    free(m->tstart);
    free(m->tlen);
    free(m->thash);
    free(m);
}

size_t asr_miner_count(const struct asr_miner *m)
{
    return m->count;
}
uint64_t asr_miner_evicted(const struct asr_miner *m)
{
    return m->evicted;
}

static inline bool is_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static inline bool is_hex(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/*
 * Hashes one token and decides whether it is a variable, in one pass over its bytes. The
 * hand-written rules cover what the issue lists: numbers, hex (0x1f, long hex), IPv4[:port],
 * UUIDs, block ids and anything else with a digit in it (when digits_are_variables), absolute
 * paths, `<*>` left by preprocessing masks, and tokens holding a NUL byte. Returns WILD for a
 * variable.
 */
static uint64_t classify(const struct asr_miner *m, const char *s, size_t n)
{
    if (n > m->o.max_token_len)
        return WILD;
    if (n == 3 && s[0] == '<' && s[1] == '*' && s[2] == '>')
        return WILD;
    if (n > 1 && s[0] == '/')
        return WILD;
    uint64_t h = 1469598103934665603ULL;
    bool digit = false, allhex = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\0')
            return WILD; /* keeps templates NUL-free C strings */
        if (ch >= '0' && ch <= '9')
            digit = true;
        else if (!is_hex(ch))
            allhex = false;
        h = (h ^ ch) * 1099511628211ULL;
    }
    if (digit && m->o.digits_are_variables)
        return WILD;
    if (allhex && n >= 8) /* long hex without a digit, e.g. "deadbeefcafe" */
        return WILD;
    return h == WILD ? 1 : h;
}

static inline uint64_t route_key(uint32_t ntok, uint64_t first)
{
    uint64_t k = first ^ ((uint64_t)ntok * 0x9E3779B97F4A7C15ULL);
    k ^= k >> 29;
    k *= 0xBF58476D1CE4E5B9ULL;
    k ^= k >> 32;
    return k;
}

static inline size_t slot_of(uint32_t ntok, uint64_t route)
{
    return (size_t)(route_key(ntok, route) & (NSLOTS - 1));
}

static void lru_unlink(struct asr_miner *m, struct cluster *c)
{
    if (c->lru_prev)
        c->lru_prev->lru_next = c->lru_next;
    else
        m->lru_head = c->lru_next;
    if (c->lru_next)
        c->lru_next->lru_prev = c->lru_prev;
    else
        m->lru_tail = c->lru_prev;
    c->lru_prev = c->lru_next = NULL;
}

static void lru_push(struct asr_miner *m, struct cluster *c)
{
    c->lru_prev = NULL;
    c->lru_next = m->lru_head;
    if (m->lru_head)
        m->lru_head->lru_prev = c;
    m->lru_head = c;
    if (!m->lru_tail)
        m->lru_tail = c;
}

/* Removes the least recently used cluster from both lists and frees it. */
static void evict_one(struct asr_miner *m)
{
    struct cluster *c = m->lru_tail;
    if (!c)
        return;
    lru_unlink(m, c);
    struct cluster **pp = &m->slots[slot_of(c->ntok, c->route)];
    while (*pp && *pp != c)
        pp = &(*pp)->chain_next;
    if (*pp)
        *pp = c->chain_next;
    cluster_free(c);
    m->count--;
    m->evicted++;
}

/* Whether any cluster is routed by (ntok, route). */
static bool route_exists(const struct asr_miner *m, uint32_t ntok, uint64_t route)
{
    for (const struct cluster *c = m->slots[slot_of(ntok, route)]; c; c = c->chain_next)
        if (c->ntok == ntok && c->route == route)
            return true;
    return false;
}

/* The best cluster of the route by Drain's similarity, or NULL if none reaches the threshold. */
static struct cluster *best_match(struct asr_miner *m, uint32_t ntok, uint64_t route)
{
    struct cluster *best = NULL;
    uint32_t best_same = 0, best_wild = 0;
    double best_sim = -1.0;
    uint32_t consts = 0;
    for (uint32_t i = 0; i < ntok; i++)
        consts += (m->thash[i] != WILD);
    bool mostly_vars = (double)consts < m->o.sim_threshold * (double)ntok;
    for (struct cluster *c = m->slots[slot_of(ntok, route)]; c; c = c->chain_next) {
        if (c->ntok != ntok || c->route != route)
            continue;
        /* Drain's similarity (constant positions that agree / length). A message that is
         * mostly variables could never reach the threshold that way and would start a new
         * cluster every time, so for it the positions where both the template and the message
         * have a variable are left out of the count (they say nothing either way) and all the
         * other positions must agree. */
        uint32_t same = 0, both = 0;
        for (uint32_t i = 0; i < ntok; i++) {
            uint64_t t = c->toks[i];
            same += (t != WILD && t == m->thash[i]);
            both += (t == WILD && m->thash[i] == WILD);
        }
        double sim = (double)same / (double)(ntok ? ntok : 1);
        if (ntok == 0 || mostly_vars) {
            sim = ntok > both ? (double)same / (double)(ntok - both) : 1.0;
            if (sim < 1.0)
                continue; /* little evidence: join only where every other position agrees */
        }
        if (!best || sim > best_sim || (sim == best_sim && c->nwild > best_wild)) {
            best = c;
            best_sim = sim;
            best_same = same;
            best_wild = c->nwild;
        }
    }
    (void)best_same;
    if (!best || best_sim < m->o.sim_threshold)
        return NULL;
    return best;
}

/* Builds a template string from the message tokens (variables as `<*>`). */
static int build_template(struct asr_miner *m, struct cluster *c)
{
    size_t n = 0;
    for (uint32_t i = 0; i < c->ntok; i++)
        n += (c->toks[i] == WILD ? 3 : m->tlen[i]) + 1;
    char *t = malloc(n + 1);
    if (!t)
        return ASR_ENOMEM;
    size_t off = 0;
    for (uint32_t i = 0; i < c->ntok; i++) {
        if (i)
            t[off++] = ' ';
        if (c->toks[i] == WILD) {
            memcpy(t + off, "<*>", 3);
            off += 3;
        } else {
            memcpy(t + off, m->tstart[i], m->tlen[i]);
            off += m->tlen[i];
        }
    }
    t[off] = '\0';
    free(c->tmpl);
    c->tmpl = t;
    c->tmpl_len = off;
    return 0;
}

/* Rewrites the template of c after some positions became variables: the constant tokens are
 * taken from the old template, whose tokens correspond one to one with c->toks. */
static int rebuild_template(struct cluster *c)
{
    char *t = malloc(c->tmpl_len + 3 * (size_t)c->ntok + 1);
    if (!t)
        return ASR_ENOMEM;
    const char *p = c->tmpl;
    size_t off = 0;
    for (uint32_t i = 0; i < c->ntok; i++) {
        const char *e = strchr(p, ' ');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (i)
            t[off++] = ' ';
        if (c->toks[i] == WILD) {
            memcpy(t + off, "<*>", 3);
            off += 3;
        } else {
            memcpy(t + off, p, n);
            off += n;
        }
        p += n + (e ? 1 : 0);
    }
    t[off] = '\0';
    free(c->tmpl);
    c->tmpl = t;
    c->tmpl_len = off;
    return 0;
}

int asr_miner_add(struct asr_miner *m, const char *msg, size_t len, struct asr_match *out)
{
    /* Tokenise and classify; tokens past the cap fold into one trailing variable. */
    uint32_t ntok = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && is_space((unsigned char)msg[i]))
            i++;
        if (i >= len)
            break;
        size_t s = i;
        while (i < len && !is_space((unsigned char)msg[i]))
            i++;
        if (ntok == m->o.max_tokens) {
            m->thash[ntok - 1] = WILD;
            break;
        }
        m->tstart[ntok] = msg + s;
        m->tlen[ntok] = (uint32_t)(i - s);
        m->thash[ntok] = classify(m, msg + s, i - s);
        ntok++;
    }

    /* Drain's route: the first token if it is a constant with clusters of its own, else `<*>`. */
    uint64_t route = ntok ? m->thash[0] : WILD;
    if (route != WILD && !route_exists(m, ntok, route) && route_exists(m, ntok, WILD))
        route = WILD;
    struct cluster *c = best_match(m, ntok, route);
    bool created = false, changed = false;
    if (c) {
        for (uint32_t k = 0; k < ntok; k++)
            if (c->toks[k] != WILD && c->toks[k] != m->thash[k]) {
                c->toks[k] = WILD;
                c->nwild++;
                changed = true;
            }
        if (changed && rebuild_template(c) != 0)
            return ASR_ENOMEM;
        if (m->lru_head != c) {
            lru_unlink(m, c);
            lru_push(m, c);
        }
    } else {
        if (m->count >= m->o.max_clusters)
            evict_one(m);
        c = calloc(1, sizeof(*c) + (size_t)ntok * sizeof(c->toks[0]));
        if (!c)
            return ASR_ENOMEM;
        c->id = m->next_id++;
        c->route = route;
        c->ntok = ntok;
        for (uint32_t k = 0; k < ntok; k++) {
            c->toks[k] = m->thash[k];
            c->nwild += (m->thash[k] == WILD);
        }
        if (build_template(m, c) != 0) {
            free(c);
            return ASR_ENOMEM;
        }
        size_t slot = slot_of(ntok, route);
        c->chain_next = m->slots[slot];
        m->slots[slot] = c;
        lru_push(m, c);
        m->count++;
        created = changed = true;
    }
    if (out) {
        out->cluster_id = c->id;
        out->tmpl = c->tmpl;
        out->tmpl_len = c->tmpl_len;
        out->created = created;
        out->changed = changed;
    }
    return 0;
}
