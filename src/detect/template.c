/*
 * template.c - online log template miner (Drain family); see template.h.
 *
 * Clusters live in two intrusive lists: a chained hash table keyed by the Drain route (token
 * count and first token, or `<*>` when the first token is not a plain word) and an LRU list used
 * for eviction at the cap. A message is tokenised into scratch arrays owned by the miner, so the
 * steady state (a message joining a cluster without changing its template) allocates nothing.
 *
 * Everything a cluster knows is a function of its template string (plus id, count and the
 * token count): each position holds the hash of its template token, so a cluster saved with
 * asr_miner_foreach() and restored with asr_miner_restore() matches exactly as before.
 */
#include "detect/template.h"

#include "asr/error.h"

#include <stdlib.h>
#include <string.h>

#define WILD 0ULL /* hash of a token that is wholly a variable, `<*>` */
#define NSLOTS 16384u
#define FNV_OFF 1469598103934665603ULL
#define FNV_MUL 1099511628211ULL
#define VAR_MARK 0x1ffu /* mixed into a shape hash where a `<*>` stands; no byte equals it */

/* A token hash has bit 0 clear for a plain word (no digit, no variable part): two different
 * words in one position keep messages apart. Bit 0 is set for every other constant shape. */
#define IS_WORD(h) ((h) != WILD && ((h)&1u) == 0)

struct cluster {
    uint64_t id;
    uint64_t route; /* hash of the first token when it is a word, else WILD */
    uint64_t count; /* messages absorbed */
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
    char *shape; /* one token's shape, 3 * max_token_len + 4 bytes */
    char *frame; /* a merged token, twice that */
};

/* Character classes for the token scanner. */
enum { C_SPACE = 1, C_DELIM = 2, C_DIGIT = 4, C_ALPHA = 8, C_HEX = 16 };
static unsigned char cls[256];

static void init_classes(void)
{
    if (cls['0'])
        return;
    for (int c = 0; c < 256; c++) {
        unsigned char v = 0;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f')
            v |= C_SPACE;
        if (strchr("=,;()[]{}<>'\":|", c) && c != 0)
            v |= C_DELIM;
        if (c >= '0' && c <= '9')
            v |= C_DIGIT | C_HEX;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            v |= C_ALPHA;
        if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
            v |= C_HEX;
        cls[c] = v;
    }
}

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
        o.max_token_len > 65536 || !(o.sim_threshold >= 0.0 && o.sim_threshold <= 1.0))
        return ASR_EINVAL;
    init_classes();
    struct asr_miner *m = calloc(1, sizeof(*m));
    if (!m)
        return ASR_ENOMEM;
    m->o = o;
    m->next_id = 1;
    m->tstart = malloc(o.max_tokens * sizeof(*m->tstart));
    m->tlen = malloc(o.max_tokens * sizeof(*m->tlen));
    m->thash = malloc(o.max_tokens * sizeof(*m->thash));
    m->shape = malloc(3 * o.max_token_len + 4);
    m->frame = malloc(6 * o.max_token_len + 8);
    if (!m->tstart || !m->tlen || !m->thash || !m->shape || !m->frame) {
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
    free(m->shape);
    free(m->frame);
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

/*
 * Whether a piece of a token (a run between delimiters) is a variable: an absolute path, a
 * piece with an alphanumeric run that starts with a digit (numbers, IPv4 addresses, 0x1f, 42ms,
 * blk_-123, attempt_1445_0020, but not eth1, alt0 or Slf4jLogger, which name things), a long
 * hex string, or a piece holding a NUL byte (templates stay NUL-free C strings).
 */
static bool piece_is_var(const struct asr_miner *m, const char *p, size_t n)
{
    if (n > 1 && p[0] == '/')
        return true;
    bool allhex = true, run_start = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char k = cls[(unsigned char)p[i]];
        if (p[i] == '\0')
            return true;
        if ((k & C_DIGIT) && run_start && m->o.digits_are_variables)
            return true;
        allhex &= (k & C_HEX) != 0;
        run_start = !(k & (C_DIGIT | C_ALPHA));
    }
    return allhex && n >= 8; /* long hex without a leading digit, e.g. "deadbeefcafe" */
}

/* Whether a token is the name of a month, a weekday or a common time zone (`Sep`, `Mon`, `EDT`):
 * words that are parts of dates, so values of a variable rather than constants. */
static bool is_date_word(const char *s, size_t n)
{
    static const char names[] = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec Mon Tue Wed Thu "
                                "Fri Sat Sun UTC GMT EST EDT CST CDT MST MDT PST PDT CET BST ";
    if (n != 3)
        return false;
    for (const char *p = names; *p; p += 4)
        if (memcmp(p, s, 3) == 0)
            return true;
    return false;
}

/*
 * Scans one token: splits it at delimiters (= , ; ( ) [ ] { } < > ' " : |), turns each variable
 * piece into `<*>` (adjacent ones merge into one) and returns the hash of the result, its shape.
 * WILD when the shape is just `<*>`; bit 0 clear when the token is a plain word (no digit, no
 * variable). When out is not NULL the shape is written there (at most 3 * n + 3 bytes, no NUL)
 * and its length stored in *olen. Scanning a shape again gives the same shape and hash, which is
 * what lets a restored template match as the original did.
 */
static uint64_t scan_token(const struct asr_miner *m, const char *s, size_t n, size_t cap,
                           char *out, size_t *olen)
{
    if (n > cap) {
        if (out) {
            memcpy(out, "<*>", 3);
            *olen = 3;
        }
        return WILD;
    }
    uint64_t h = FNV_OFF;
    /* Fast path for the commonest token, a plain word of letters: same hash as below. */
    size_t i = 0;
    unsigned char hex = C_HEX;
    for (; i < n && (cls[(unsigned char)s[i]] & C_ALPHA); i++) {
        hex &= cls[(unsigned char)s[i]];
        h = (h ^ (unsigned char)s[i]) * FNV_MUL;
    }
    if (i == n && n > 0 && !out && !(hex && n >= 8)) {
        if (is_date_word(s, n))
            return h | 1u;
        h &= ~(uint64_t)1;
        return h == WILD ? 2 : h;
    }
    h = FNV_OFF;
    size_t o = 0;
    bool last_var = false, any_var = false, digit = false, only_var = true;
    /* A `:` right after a variable, or a piece that is just `/`, waits here: if a variable
     * follows, it belongs to it (host:port and /address are one value). */
    char pend = 0;
#define FLUSH_PEND()                                                                               \
    do {                                                                                           \
        if (pend) {                                                                                \
            h = (h ^ (unsigned char)pend) * FNV_MUL;                                               \
            if (out)                                                                               \
                out[o++] = pend;                                                                   \
            last_var = only_var = false;                                                           \
            pend = 0;                                                                              \
        }                                                                                          \
    } while (0)
#define EMIT_VAR()                                                                                 \
    do {                                                                                           \
        pend = 0; /* a pending `:` follows a variable, so last_var is still true */                \
        if (!last_var) {                                                                           \
            h = (h ^ VAR_MARK) * FNV_MUL;                                                          \
            if (out)                                                                               \
                memcpy(out + o, "<*>", 3), o += 3;                                                 \
        }                                                                                          \
        last_var = any_var = true;                                                                 \
    } while (0)
    i = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '<' && i + 2 < n && s[i + 1] == '*' && s[i + 2] == '>') {
            EMIT_VAR();
            i += 3;
            continue;
        }
        if (cls[ch] & C_DELIM) {
            FLUSH_PEND();
            if (ch == ':' && last_var) {
                pend = ':';
            } else {
                h = (h ^ ch) * FNV_MUL;
                if (out)
                    out[o++] = (char)ch;
                last_var = only_var = false;
            }
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !(cls[(unsigned char)s[j]] & C_DELIM))
            digit |= (cls[(unsigned char)s[j++]] & C_DIGIT) != 0;
        if (piece_is_var(m, s + i, j - i)) {
            /* A name joined to a number by a hyphen or a dot keeps the name: node-12 ->
             * node-<*>, core.1234 -> core.<*> (but msra-sa-41 or rdd_2_3 go whole). */
            size_t w = i, d;
            while (w < j && (cls[(unsigned char)s[w]] & C_ALPHA))
                w++;
            for (d = w + 1; d < j && (cls[(unsigned char)s[d]] & C_DIGIT); d++)
                ;
            if (w > i && w + 1 < j && d == j && (s[w] == '-' || s[w] == '.') &&
                m->o.digits_are_variables) {
                FLUSH_PEND();
                for (size_t k = i; k <= w; k++)
                    h = (h ^ (unsigned char)s[k]) * FNV_MUL;
                if (out)
                    memcpy(out + o, s + i, w + 1 - i), o += w + 1 - i;
                last_var = only_var = false;
            }
            EMIT_VAR();
        } else if (j - i == 1 && s[i] == '/') {
            FLUSH_PEND();
            pend = '/';
        } else {
            FLUSH_PEND();
            for (size_t k = i; k < j; k++)
                h = (h ^ (unsigned char)s[k]) * FNV_MUL;
            if (out)
                memcpy(out + o, s + i, j - i), o += j - i;
            last_var = only_var = false;
        }
        i = j;
    }
    FLUSH_PEND();
#undef FLUSH_PEND
#undef EMIT_VAR
    if (out)
        *olen = o;
    if (only_var && n > 0)
        return WILD;
    if (digit || any_var || is_date_word(s, n))
        return h | 1u;
    h &= ~(uint64_t)1;
    return h == WILD ? 2 : h;
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

/* The route of a message or template whose first token hashes to first: Drain's first-token
 * layer, where only plain words get a child of their own. */
static inline uint64_t route_of(uint32_t ntok, uint64_t first)
{
    return ntok && IS_WORD(first) ? first : WILD;
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

/*
 * The best cluster of the route for the scratch message, or NULL if none qualifies. Drain's
 * similarity (constant positions that agree / length) must reach the threshold, with one
 * refinement: where template and message hold two different plain words (`ok` / `error`,
 * `bytes` / `values`), they are different events, so that cluster is not a candidate at all.
 * Variables are told apart from words by their digits, which is what keeps `Link ok` and
 * `Link error` apart while `Link 3` and `Link 4` join. Second refinement: where the template
 * has a plain word and the message a variable (or the template a variable other than a bare
 * `<*>` and the message a word), the position counts half against the similarity, so a message
 * that agrees on exactly half its tokens, by the threshold, does not turn constant words into
 * variables (`(root) CMD (run-parts X)` and `(root) CMD (/opt/y a)`).
 */
static struct cluster *best_match(struct asr_miner *m, uint32_t ntok, uint64_t route)
{
    struct cluster *best = NULL;
    uint32_t best_wild = 0;
    double best_sim = -1.0;
    uint32_t consts = 0;
    for (uint32_t i = 0; i < ntok; i++)
        consts += (m->thash[i] != WILD);
    bool mostly_vars = (double)consts < m->o.sim_threshold * (double)ntok;
    for (struct cluster *c = m->slots[slot_of(ntok, route)]; c; c = c->chain_next) {
        if (c->ntok != ntok || c->route != route)
            continue;
        /* A message that is mostly variables could never reach the threshold by Drain's
         * measure and would start a new cluster every time, so for it the positions where
         * both the template and the message have a variable are left out of the count (they
         * say nothing either way) and all the other positions must agree. */
        uint32_t same = 0, both = 0, half = 0;
        bool conflict = false;
        for (uint32_t i = 0; i < ntok; i++) {
            uint64_t t = c->toks[i], x = m->thash[i];
            if (t == x) {
                same += (t != WILD);
                both += (t == WILD);
            } else if (IS_WORD(t) && IS_WORD(x)) {
                conflict = true;
                break;
            } else {
                half += IS_WORD(t) || (IS_WORD(x) && t != WILD);
            }
        }
        if (conflict)
            continue;
        double sim = ((double)same - 0.5 * half) / (double)(ntok ? ntok : 1);
        if (ntok == 0 || mostly_vars) {
            sim = ntok > both ? (double)same / (double)(ntok - both) : 1.0;
            if (sim < 1.0)
                continue; /* little evidence: join only where every other position agrees */
        }
        /* Ties go to the template with more variables, then to the oldest cluster, so the
         * choice does not depend on the order of the chain (which a restore changes). */
        if (!best || sim > best_sim ||
            (sim == best_sim &&
             (c->nwild > best_wild || (c->nwild == best_wild && c->id < best->id)))) {
            best = c;
            best_sim = sim;
            best_wild = c->nwild;
        }
    }
    if (!best || best_sim < m->o.sim_threshold)
        return NULL;
    return best;
}

/* Splits a token or shape into items for frame(): `<*>`, a single delimiter, or a run of other
 * bytes. Returns the length of the item at s (n > 0). */
static size_t item_len(const char *s, size_t n)
{
    if (n >= 3 && s[0] == '<' && s[1] == '*' && s[2] == '>')
        return 3;
    if (cls[(unsigned char)s[0]] & C_DELIM)
        return 1;
    size_t i = 1;
    while (i < n && !(cls[(unsigned char)s[i]] & C_DELIM))
        i++;
    return i;
}

/* Length of the item that ends at s[n - 1]. */
static size_t item_len_back(const char *s, size_t n)
{
    if (n >= 3 && s[n - 3] == '<' && s[n - 2] == '*' && s[n - 1] == '>')
        return 3;
    if (cls[(unsigned char)s[n - 1]] & C_DELIM)
        return 1;
    size_t i = 1;
    while (i < n && !(cls[(unsigned char)s[n - 1 - i]] & C_DELIM))
        i++;
    return i;
}

/*
 * The template token for a position where a (the template's) and b (a message's shape)
 * differ: the items they share at the front and at the back are kept and what lies between
 * becomes one `<*>`, so `[node_A8]` and `[node_B8]` give `[<*>]`, `key=x1` and `key=y2` give
 * `key=<*>`, `12,` and `ab,` give `<*>,`. Writes into out (at least a_n + b_n + 3 bytes) and
 * returns the length.
 */
static size_t frame(const char *a, size_t an, const char *b, size_t bn, char *out)
{
    size_t pre = 0;
    while (pre < an && pre < bn) {
        size_t k = item_len(a + pre, an - pre);
        if (k > bn - pre || memcmp(a + pre, b + pre, k) != 0 || item_len(b + pre, bn - pre) != k)
            break;
        pre += k;
    }
    size_t suf = 0;
    while (suf < an - pre && suf < bn - pre) {
        size_t k = item_len_back(a, an - suf);
        if (k > an - pre - suf || k > bn - pre - suf || item_len_back(b, bn - suf) != k ||
            memcmp(a + an - suf - k, b + bn - suf - k, k) != 0)
            break;
        suf += k;
    }
    size_t o = 0;
    memcpy(out, a, pre);
    o = pre;
    bool var_before = pre >= 3 && memcmp(out + pre - 3, "<*>", 3) == 0;
    bool var_after = suf >= 3 && memcmp(a + an - suf, "<*>", 3) == 0;
    if (!var_before && !var_after) {
        memcpy(out + o, "<*>", 3);
        o += 3;
    }
    memcpy(out + o, a + an - suf, suf);
    return o + suf;
}

/* Appends one token to a template being built in t (offset *off). */
static void put_token(char *t, size_t *off, uint32_t i, const char *s, size_t n)
{
    if (i)
        t[(*off)++] = ' ';
    memcpy(t + *off, s, n);
    *off += n;
}

/* Builds the template of a new cluster from the scratch message: each token's shape. */
static int build_template(struct asr_miner *m, struct cluster *c)
{
    size_t n = 0;
    for (uint32_t i = 0; i < c->ntok; i++)
        n += 3 * (size_t)m->tlen[i] + 4;
    char *t = malloc(n + 1);
    if (!t)
        return ASR_ENOMEM;
    size_t off = 0;
    for (uint32_t i = 0; i < c->ntok; i++) {
        if (c->toks[i] == WILD) {
            put_token(t, &off, i, "<*>", 3);
        } else {
            size_t sl;
            scan_token(m, m->tstart[i], m->tlen[i], m->o.max_token_len, m->shape, &sl);
            put_token(t, &off, i, m->shape, sl);
        }
    }
    t[off] = '\0';
    free(c->tmpl);
    c->tmpl = t;
    c->tmpl_len = off;
    return 0;
}

/*
 * Joins the scratch message to c: every position where the template and the message differ
 * takes the frame of the two (often plain `<*>`), and its hash becomes that of the new token.
 * Sets *changed when the template string changed. 0 or ASR_ENOMEM (c is then unchanged).
 */
static int absorb(struct asr_miner *m, struct cluster *c, bool *changed)
{
    *changed = false;
    uint32_t k = 0;
    while (k < c->ntok && (c->toks[k] == WILD || c->toks[k] == m->thash[k]))
        k++;
    if (k == c->ntok)
        return 0;
    /* Each token grows by at most 3 bytes (one `<*>`). */
    char *t = malloc(c->tmpl_len + 3 * (size_t)c->ntok + 1);
    if (!t)
        return ASR_ENOMEM;
    const char *p = c->tmpl;
    size_t off = 0;
    uint32_t nwild = 0;
    for (uint32_t i = 0; i < c->ntok; i++) {
        const char *e = memchr(p, ' ', (size_t)(c->tmpl + c->tmpl_len - p));
        size_t n = e ? (size_t)(e - p) : (size_t)(c->tmpl + c->tmpl_len - p);
        uint64_t th = c->toks[i];
        if (th != WILD && th != m->thash[i]) {
            size_t sl, fl;
            if (m->thash[i] == WILD) {
                memcpy(m->shape, "<*>", 3);
                sl = 3;
            } else {
                scan_token(m, m->tstart[i], m->tlen[i], m->o.max_token_len, m->shape, &sl);
            }
            if (n + sl + 3 > 6 * m->o.max_token_len + 8) {
                memcpy(m->frame, "<*>", 3);
                fl = 3;
            } else {
                fl = frame(p, n, m->shape, sl, m->frame);
            }
            if (fl == 3 && memcmp(m->frame, "<*>", 3) == 0)
                th = WILD;
            else
                th = scan_token(m, m->frame, fl, SIZE_MAX, NULL, NULL);
            c->toks[i] = th;
            *changed |= fl != n || memcmp(m->frame, p, n) != 0;
            put_token(t, &off, i, m->frame, fl);
        } else {
            put_token(t, &off, i, p, n);
        }
        nwild += (th == WILD);
        p += n + (e ? 1 : 0);
    }
    t[off] = '\0';
    c->nwild = nwild;
    free(c->tmpl);
    c->tmpl = t;
    c->tmpl_len = off;
    return 0;
}

/* Links a new cluster into its route and the LRU list, evicting at the cap first. */
static void insert(struct asr_miner *m, struct cluster *c)
{
    size_t slot = slot_of(c->ntok, c->route);
    c->chain_next = m->slots[slot];
    m->slots[slot] = c;
    lru_push(m, c);
    m->count++;
}

int asr_miner_add(struct asr_miner *m, const char *msg, size_t len, struct asr_match *out)
{
    /* Tokenise and classify; tokens past the cap fold into one trailing variable. */
    uint32_t ntok = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && (cls[(unsigned char)msg[i]] & C_SPACE))
            i++;
        if (i >= len)
            break;
        size_t s = i;
        while (i < len && !(cls[(unsigned char)msg[i]] & C_SPACE))
            i++;
        if (ntok == m->o.max_tokens) {
            m->thash[ntok - 1] = WILD;
            break;
        }
        m->tstart[ntok] = msg + s;
        m->tlen[ntok] = (uint32_t)(i - s);
        m->thash[ntok] = scan_token(m, msg + s, i - s, m->o.max_token_len, NULL, NULL);
        ntok++;
    }

    /* Drain's route: the first token if it is a plain word, else `<*>`. A word with no
     * matching cluster of its own may still join a cluster that begins with a variable. */
    uint64_t route = route_of(ntok, ntok ? m->thash[0] : WILD);
    struct cluster *c = best_match(m, ntok, route);
    if (!c && route != WILD)
        c = best_match(m, ntok, WILD);
    bool created = false, changed = false;
    if (c) {
        int rc = absorb(m, c, &changed);
        if (rc)
            return rc;
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
        insert(m, c);
        created = changed = true;
    }
    c->count++;
    if (out) {
        out->cluster_id = c->id;
        out->tmpl = c->tmpl;
        out->tmpl_len = c->tmpl_len;
        out->created = created;
        out->changed = changed;
    }
    return 0;
}

int asr_miner_restore(struct asr_miner *m, uint64_t id, const char *tmpl, size_t len)
{
    if (id == 0)
        return ASR_EINVAL;
    for (const struct cluster *c = m->lru_head; c; c = c->lru_next)
        if (c->id == id)
            return ASR_EINVAL;
    /* Tokenise as asr_miner_add() does; the template's tokens are shapes already. */
    uint32_t ntok = 0;
    size_t chars = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && (cls[(unsigned char)tmpl[i]] & C_SPACE))
            i++;
        if (i >= len)
            break;
        size_t s = i;
        while (i < len && !(cls[(unsigned char)tmpl[i]] & C_SPACE))
            i++;
        if (ntok == m->o.max_tokens)
            return ASR_EINVAL;
        if (memchr(tmpl + s, '\0', i - s))
            return ASR_EINVAL;
        m->tstart[ntok] = tmpl + s;
        m->tlen[ntok] = (uint32_t)(i - s);
        chars += i - s + 1;
        ntok++;
    }
    if (ntok == 0)
        return ASR_EINVAL;
    struct cluster *c = calloc(1, sizeof(*c) + (size_t)ntok * sizeof(c->toks[0]));
    char *t = malloc(chars + 1);
    if (!c || !t) {
        free(c);
        free(t);
        return ASR_ENOMEM;
    }
    size_t off = 0;
    for (uint32_t k = 0; k < ntok; k++) {
        const char *s = m->tstart[k];
        size_t n = m->tlen[k];
        c->toks[k] =
            (n == 3 && memcmp(s, "<*>", 3) == 0) ? WILD : scan_token(m, s, n, SIZE_MAX, NULL, NULL);
        c->nwild += (c->toks[k] == WILD);
        put_token(t, &off, k, s, n);
    }
    t[off] = '\0';
    c->tmpl = t;
    c->tmpl_len = off;
    c->id = id;
    c->ntok = ntok;
    c->route = route_of(ntok, c->toks[0]);
    if (m->count >= m->o.max_clusters)
        evict_one(m);
    insert(m, c);
    if (id >= m->next_id)
        m->next_id = id + 1;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    const struct cluster *x = *(const struct cluster *const *)a;
    const struct cluster *y = *(const struct cluster *const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

void asr_miner_foreach(const struct asr_miner *m,
                       void (*cb)(void *data, uint64_t id, const char *tmpl, size_t len,
                                  uint64_t count),
                       void *data)
{
    if (m->count == 0)
        return;
    const struct cluster **v = malloc(m->count * sizeof(*v));
    size_t n = 0;
    for (const struct cluster *c = m->lru_head; c; c = c->lru_next)
        if (v)
            v[n++] = c;
        else
            cb(data, c->id, c->tmpl, c->tmpl_len, c->count);
    if (!v)
        return; /* out of memory: every cluster was still reported, in recency order */
    qsort(v, n, sizeof(*v), cmp_id);
    for (size_t i = 0; i < n; i++)
        cb(data, v[i]->id, v[i]->tmpl, v[i]->tmpl_len, v[i]->count);
    free(v);
}
