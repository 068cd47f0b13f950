/*
 * kb.c - the knowledge base on SQLite FTS5 (see kb.h for the ranking layers).
 *
 * Part of STRATEGY; its tables are migration 3 of the store. It uses the store's statement
 * helpers (store/store_int.h): the knowledge base is a store module that happens to live with
 * the planner that reads it.
 */
#include "strategy/kb.h"

#include "store/store_int.h"
#include "strategy/playbook.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TERMS 64       /* distinct words taken from a query */
#define MAX_QUERY_TERMS 8  /* the rarest of them that go into the MATCH */
#define DF_BUDGET 100      /* postings the MATCH may visit (the sum of its words' frequencies) */
#define TEXT_CANDIDATES 40 /* documents taken from the text index before re-ranking */
/* bm25 at which the text layer gives half its weight (0.2). Text alone reaches the planner's
 * threshold of 0.25 at bm25 = 5/3 x TEXT_SCALE, about 11.7: above the ~10 that the best
 * line no playbook covers reached by sharing words with one (bench/retrieval.md), since
 * proposing a wrong fix costs more than asking a person or the model. */
#define TEXT_SCALE 7.0

/* Column weights of bm25(): title, symptoms, template, message, fields, route, service. */
#define BM25_WEIGHTS "bm25(kb_fts, 2.0, 4.0, 3.0, 2.0, 1.0, 1.5, 0.5)"

static const char sql_doc_upsert[] =
    "INSERT INTO kb_docs (kind, ref, service, fingerprint, title, body, source, updated_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (kind, ref) DO UPDATE SET "
    "service = excluded.service, fingerprint = excluded.fingerprint, title = excluded.title, "
    "body = excluded.body, source = excluded.source, updated_at = excluded.updated_at "
    "RETURNING id";
static const char sql_sig_clear[] = "DELETE FROM kb_signatures WHERE doc_id = ?1";
static const char sql_sig_add[] =
    "INSERT OR IGNORE INTO kb_signatures (doc_id, signature) VALUES (?1, ?2)";
static const char sql_fts_del[] = "DELETE FROM kb_fts WHERE rowid = ?1";
static const char sql_fts_add[] =
    "INSERT INTO kb_fts (rowid, title, symptoms, template, message, fields, route, service) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char sql_doc_id[] = "SELECT id FROM kb_docs WHERE kind = ?1 AND ref = ?2";
static const char sql_doc_del[] = "DELETE FROM kb_docs WHERE id = ?1";
static const char sql_by_sig[] =
    "SELECT d.id FROM kb_signatures s JOIN kb_docs d ON d.id = s.doc_id WHERE s.signature = ?1 "
    "AND (d.service IS NULL OR ?2 IS NULL OR d.service = ?2) AND (?3 IS NULL OR d.kind = ?3) "
    "LIMIT 50";
static const char sql_by_fp[] =
    "SELECT id FROM kb_docs WHERE fingerprint = ?1 AND (?2 IS NULL OR kind = ?2) "
    "ORDER BY id DESC LIMIT 20";
/* The index alone ranks (a join would look up every match's document); the service and kind
 * of the best TEXT_CANDIDATES are checked afterwards (sql_doc_ok). */
static const char sql_text[] = "SELECT rowid, -" BM25_WEIGHTS " FROM kb_fts WHERE kb_fts MATCH ?1 "
                               "ORDER BY " BM25_WEIGHTS " LIMIT 40";
static const char sql_doc_ok[] =
    "SELECT 1 FROM kb_docs WHERE id = ?1 AND (service IS NULL OR ?2 IS NULL OR service = ?2) "
    "AND (?3 IS NULL OR kind = ?3)";
static const char sql_vocab[] =
    "SELECT term, df FROM kb_terms WHERE term IN (SELECT value FROM json_each(?1))";
static const char sql_terms_of[] = "SELECT terms FROM kb_docs WHERE kind = ?1 AND ref = ?2";
static const char sql_term_add[] =
    "INSERT INTO kb_terms (term, df) VALUES (?1, 1) ON CONFLICT (term) DO UPDATE SET df = df + 1";
static const char sql_term_sub[] = "UPDATE kb_terms SET df = max(df - 1, 0) WHERE term = ?1";
static const char sql_set_terms[] = "UPDATE kb_docs SET terms = ?2 WHERE id = ?1";
static const char sql_doc_get[] =
    "SELECT kind, ref, title, body, source FROM kb_docs WHERE id = ?1";
static const char sql_outcomes_of[] =
    "SELECT doc_id, successes, failures FROM kb_outcomes WHERE signature = ?1 LIMIT 1000";
static const char sql_outcome_add[] =
    "INSERT INTO kb_outcomes (doc_id, signature, successes, failures, last_mttr_ms, updated_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (signature, doc_id) DO UPDATE SET "
    "successes = successes + excluded.successes, failures = failures + excluded.failures, "
    "last_mttr_ms = coalesce(excluded.last_mttr_ms, last_mttr_ms), "
    "updated_at = excluded.updated_at";
static const char sql_list[] =
    "SELECT id FROM kb_docs WHERE ?1 IS NULL OR kind = ?1 ORDER BY kind, ref";
static const char sql_count[] = "SELECT count(*) FROM kb_docs";

_Static_assert(TEXT_CANDIDATES == 40, "sql_text's LIMIT");

static size_t next_word(const char **pp, char w[65]);

#define MAX_DOC_TERMS 4096 /* distinct words of one document counted in kb_terms */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The distinct words of a document's text columns, sorted and joined by spaces (malloc'd), or
 * NULL when out of memory. */
static char *doc_terms(const char *const *cols, size_t ncols)
{
    char **v = calloc(MAX_DOC_TERMS, sizeof(*v));
    size_t n = 0, total = 1;
    char w[65];
    if (v == NULL)
        return NULL;
    for (size_t c = 0; c < ncols; c++) {
        const char *p = cols[c];
        while (n < MAX_DOC_TERMS && next_word(&p, w) > 0) {
            if ((v[n] = strdup(w)) == NULL)
                goto fail;
            total += strlen(w) + 1;
            n++;
        }
    }
    qsort(v, n, sizeof(*v), cmp_str);
    char *out = malloc(total);
    if (out == NULL)
        goto fail;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(v[i], v[i - 1]) == 0)
            continue;
        size_t l = strlen(v[i]);
        if (len > 0)
            out[len++] = ' ';
        memcpy(out + len, v[i], l);
        len += l;
    }
    out[len] = '\0';
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return out;
fail:
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return NULL;
}

/* Adds 1 to (or takes 1 from) the document count of every word of a space-separated list. */
static int bump_terms(struct asr_store *st, const char *list, bool add, const char *op,
                      struct asr_err *err)
{
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *e = strchr(p, ' ');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        sqlite3_stmt *s = asr_store_prepare(st, add ? sql_term_add : sql_term_sub, op, err);
        if (s == NULL)
            return ASR_EDB;
        sqlite3_bind_text(s, 1, p, (int)l, SQLITE_TRANSIENT);
        int rc = asr_store_run(st, s, op, err);
        if (rc != 0)
            return rc;
        p = e != NULL ? e + 1 : p + l;
    }
    return 0;
}

/* The word list stored for (kind, ref), or NULL when there is no such document. */
static char *old_terms(struct asr_store *st, const char *kind, const char *ref, const char *op,
                       struct asr_err *err, int *rc)
{
    *rc = 0;
    sqlite3_stmt *s = asr_store_prepare(st, sql_terms_of, op, err);
    if (s == NULL) {
        *rc = ASR_EDB;
        return NULL;
    }
    asr_store_bind_str(s, 1, kind);
    asr_store_bind_str(s, 2, ref);
    char *t = NULL;
    if (sqlite3_step(s) == SQLITE_ROW && asr_store_col_dup(s, 0, &t) != 0)
        *rc = asr_err_set(err, ASR_ENOMEM, "kb: out of memory");
    asr_store_reset(s);
    return t;
}

int asr_kb_put(struct asr_store *st, const struct asr_kb_doc *d, int64_t *id, struct asr_err *err)
{
    const char *op = "kb put";
    if (d == NULL || d->kind == NULL || d->ref == NULL || d->title == NULL || d->ref[0] == '\0')
        return asr_err_set(err, ASR_EINVAL, "kb: a document needs a kind, a ref and a title");
    if (strcmp(d->kind, ASR_KB_PLAYBOOK) != 0 && strcmp(d->kind, ASR_KB_INCIDENT) != 0)
        return asr_err_set(err, ASR_EINVAL, "kb: kind must be playbook or incident, not '%.32s'",
                           d->kind);
    const char *cols[] = {d->title,  d->symptoms, d->tmpl,   d->message,
                          d->fields, d->route,    d->service};
    char *terms = doc_terms(cols, 7);
    if (terms == NULL)
        return asr_err_set(err, ASR_ENOMEM, "kb: out of memory");
    int rc = asr_store_begin(st, op, err);
    if (rc != 0) {
        free(terms);
        return rc;
    }
    int64_t doc = 0;
    /* Word counts: the replaced version's words out, this version's in. */
    char *was = old_terms(st, d->kind, d->ref, op, err, &rc);
    if (rc == 0 && was != NULL)
        rc = bump_terms(st, was, false, op, err);
    free(was);
    if (rc == 0)
        rc = bump_terms(st, terms, true, op, err);
    if (rc != 0)
        goto out;
    sqlite3_stmt *s = asr_store_prepare(st, sql_doc_upsert, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
        goto out;
    }
    if (asr_store_bind_str(s, 1, d->kind) || asr_store_bind_str(s, 2, d->ref) ||
        asr_store_bind_str(s, 3, d->service) || asr_store_bind_str(s, 4, d->fingerprint) ||
        asr_store_bind_str(s, 5, d->title) ||
        asr_store_bind_str(s, 6, d->body != NULL ? d->body : "{}") ||
        asr_store_bind_str(s, 7, d->source) || sqlite3_bind_int64(s, 8, asr_store_now(st))) {
        asr_store_reset(s);
        rc = asr_store_fail(st, op, err);
        goto out;
    }
    if (sqlite3_step(s) != SQLITE_ROW) {
        rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        goto out;
    }
    doc = sqlite3_column_int64(s, 0);
    asr_store_reset(s);
    /* Replace its signatures and its text. */
    const char *clear[] = {sql_sig_clear, sql_fts_del};
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        sqlite3_stmt *c = asr_store_prepare(st, clear[i], op, err);
        if (c == NULL) {
            rc = ASR_EDB;
            goto out;
        }
        sqlite3_bind_int64(c, 1, doc);
        rc = asr_store_run(st, c, op, err);
    }
    for (size_t i = 0; rc == 0 && d->signatures != NULL && d->signatures[i] != NULL; i++) {
        sqlite3_stmt *a = asr_store_prepare(st, sql_sig_add, op, err);
        if (a == NULL) {
            rc = ASR_EDB;
            goto out;
        }
        sqlite3_bind_int64(a, 1, doc);
        asr_store_bind_str(a, 2, d->signatures[i]);
        rc = asr_store_run(st, a, op, err);
    }
    if (rc == 0) {
        sqlite3_stmt *f = asr_store_prepare(st, sql_fts_add, op, err);
        if (f == NULL) {
            rc = ASR_EDB;
            goto out;
        }
        sqlite3_bind_int64(f, 1, doc);
        for (int i = 0; i < 7; i++)
            asr_store_bind_str(f, i + 2, cols[i] != NULL ? cols[i] : "");
        rc = asr_store_run(st, f, op, err);
    }
    if (rc == 0) {
        sqlite3_stmt *t = asr_store_prepare(st, sql_set_terms, op, err);
        if (t == NULL) {
            rc = ASR_EDB;
            goto out;
        }
        sqlite3_bind_int64(t, 1, doc);
        asr_store_bind_str(t, 2, terms);
        rc = asr_store_run(st, t, op, err);
    }
out:
    free(terms);
    rc = asr_store_finish(st, rc, op, err);
    if (rc == 0 && id != NULL)
        *id = doc;
    return rc;
}

int asr_kb_delete(struct asr_store *st, const char *kind, const char *ref, struct asr_err *err)
{
    const char *op = "kb delete";
    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    int64_t doc = 0;
    sqlite3_stmt *s = asr_store_prepare(st, sql_doc_id, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
        goto out;
    }
    asr_store_bind_str(s, 1, kind);
    asr_store_bind_str(s, 2, ref);
    if (sqlite3_step(s) == SQLITE_ROW)
        doc = sqlite3_column_int64(s, 0);
    asr_store_reset(s);
    if (doc == 0) {
        rc = asr_err_set(err, ASR_ENOENT, "kb: no %s '%.128s'", kind, ref);
        goto out;
    }
    char *was = old_terms(st, kind, ref, op, err, &rc);
    if (rc == 0 && was != NULL)
        rc = bump_terms(st, was, false, op, err);
    free(was);
    if (rc != 0)
        goto out;
    const char *dels[] = {sql_fts_del, sql_doc_del};
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        sqlite3_stmt *c = asr_store_prepare(st, dels[i], op, err);
        if (c == NULL) {
            rc = ASR_EDB;
            goto out;
        }
        sqlite3_bind_int64(c, 1, doc);
        rc = asr_store_run(st, c, op, err);
    }
out:
    return asr_store_finish(st, rc, op, err);
}

/* ---- search -------------------------------------------------------------------------------- */

/* A query word and how many documents hold it. */
struct term {
    char w[65];
    int64_t df;
};

struct terms {
    struct term v[MAX_TERMS];
    size_t n;
};

/*
 * The next word of *p into w (ASCII folded to lower case), or 0 at the end. A word is a run of
 * letters, digits and '_' (the index tokenizer's own notion), 2 to 64 bytes, not only digits;
 * bytes of non-ASCII characters count as letters. Indexing and queries cut words alike, so a
 * word's count in kb_terms is the count of documents the index finds it in.
 */
static size_t next_word(const char **pp, char w[65])
{
    const char *p = *pp;
    while (p != NULL && *p != '\0') {
        while (*p != '\0' &&
               !(isalnum((unsigned char)*p) || *p == '_' || (unsigned char)*p >= 0x80))
            p++;
        const char *start = p;
        bool digits = true;
        while (*p != '\0' &&
               (isalnum((unsigned char)*p) || *p == '_' || (unsigned char)*p >= 0x80)) {
            digits = digits && isdigit((unsigned char)*p);
            p++;
        }
        size_t wl = (size_t)(p - start);
        if (wl < 2 || wl > 64 || digits)
            continue;
        for (size_t i = 0; i < wl; i++)
            w[i] = (char)tolower((unsigned char)start[i]);
        w[wl] = '\0';
        *pp = p;
        return wl;
    }
    *pp = p;
    return 0;
}

/*
 * Words a query leaves out, sorted for bsearch. They say nothing about which fault a line is:
 * English function words ("to", "in", "for"), and the words nearly every log line carries
 * whatever went wrong: levels ("error", "warn"), the keys of structured logs ("level", "msg",
 * "ts", "caller"), HTTP methods and schemes ("get", "https"), "api". In a large knowledge base
 * the frequency bound of match_expr drops them anyway, as common; but with a few dozen playbooks
 * every word looks rare, and these would take the places of the words that matter and add score
 * to whichever document happens to use them most. Kept short on purpose: words that carry
 * meaning in a fault line ("no", "not", "out", "down", "up", "could", "too", "time", "fatal")
 * are not in it.
 */
static const char *const stopwords[] = {
    "about", "am",    "an",      "and",   "api",    "are",   "as",    "at",   "be",
    "been",  "being", "but",     "by",    "caller", "debug", "did",   "do",   "does",
    "err",   "error", "for",     "from",  "get",    "had",   "has",   "have", "he",
    "her",   "his",   "http",    "https", "if",     "in",    "info",  "into", "is",
    "it",    "its",   "level",   "lvl",   "msg",    "of",    "on",    "onto", "or",
    "our",   "post",  "put",     "she",   "so",     "than",  "that",  "the",  "their",
    "them",  "then",  "there",   "these", "they",   "this",  "those", "to",   "trace",
    "ts",    "warn",  "warning", "was",   "we",     "were",  "what",  "when", "where",
    "which", "while", "who",     "whom",  "will",   "with",  "would", "you",  "your",
};

static int cmp_word(const void *a, const void *b)
{
    return strcmp((const char *)a, *(const char *const *)b);
}

static bool is_stopword(const char *w)
{
    return bsearch(w, stopwords, sizeof(stopwords) / sizeof(stopwords[0]), sizeof(stopwords[0]),
                   cmp_word) != NULL;
}

/* Adds the distinct words of text to t, less the stopwords. Quotes and operators are never
 * copied into a query, so a hostile text cannot change its syntax. */
static void add_terms(struct terms *t, const char *text)
{
    const char *p = text;
    while (t->n < MAX_TERMS && next_word(&p, t->v[t->n].w) > 0) {
        bool dup = is_stopword(t->v[t->n].w);
        for (size_t i = 0; i < t->n && !dup; i++)
            dup = strcmp(t->v[i].w, t->v[t->n].w) == 0;
        if (!dup)
            t->n++;
    }
}

static int cmp_df(const void *a, const void *b)
{
    const struct term *x = a, *y = b;
    return x->df < y->df ? -1 : x->df > y->df;
}

/*
 * Keeps the words that can rank: each one's document frequency from the index's vocabulary, the
 * words no document holds dropped, and of the rest the rarest, while their frequencies add up to
 * at most DF_BUDGET postings (and MAX_QUERY_TERMS words); when even the rarest is above that,
 * it alone if it is in at most 10 x DF_BUDGET documents, else no text search at all (the exact
 * layers still work). A common word adds almost nothing to BM25 (its IDF is near zero) but makes
 * the index score every document holding it (FTS5 costs ~4 us a posting here): this bound is
 * what keeps a query fast with 100,000 documents.
 * Writes the MATCH expression into buf and returns the number of words in it.
 */
static int match_expr(struct asr_store *st, struct terms *t, char *buf, size_t cap,
                      struct asr_err *err)
{
    /* One query for every word's frequency: the words go in as a JSON array. */
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < t->n; i++)
        json_array_append_new(arr, json_string(t->v[i].w));
    char *list = arr != NULL ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    if (list == NULL)
        return asr_err_set(err, ASR_ENOMEM, "kb: out of memory");
    sqlite3_stmt *s = asr_store_prepare(st, sql_vocab, "kb search", err);
    if (s == NULL) {
        free(list);
        return ASR_EDB;
    }
    asr_store_bind_str(s, 1, list);
    for (size_t i = 0; i < t->n; i++)
        t->v[i].df = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *w = (const char *)sqlite3_column_text(s, 0);
        for (size_t i = 0; w != NULL && i < t->n; i++)
            if (strcmp(t->v[i].w, w) == 0)
                t->v[i].df = sqlite3_column_int64(s, 1);
    }
    asr_store_reset(s);
    free(list);
    size_t keep = 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].df > 0)
            t->v[keep++] = t->v[i];
    t->n = keep;
    qsort(t->v, t->n, sizeof(t->v[0]), cmp_df);
    size_t use = 0;
    int64_t visits = 0;
    while (use < t->n && use < MAX_QUERY_TERMS && visits + t->v[use].df <= DF_BUDGET) {
        visits += t->v[use].df;
        use++;
    }
    if (use == 0 && t->n > 0 && t->v[0].df <= 10 * DF_BUDGET)
        use = 1; /* only common words: the least common one, if it is not everywhere */
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < use; i++) {
        int w = snprintf(buf + len, cap - len, "%s\"%s\"", i ? " OR " : "", t->v[i].w);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
    }
    return (int)use;
}

struct cand {
    int64_t id;
    double bm25;
    bool sig, fp;
};

static struct cand *cand_get(struct cand *v, size_t *n, size_t cap, int64_t id)
{
    for (size_t i = 0; i < *n; i++)
        if (v[i].id == id)
            return &v[i];
    if (*n == cap)
        return NULL;
    v[*n] = (struct cand){.id = id};
    return &v[(*n)++];
}

static int cmp_hit(const void *a, const void *b)
{
    const struct asr_kb_hit *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return x->doc_id < y->doc_id ? -1 : x->doc_id > y->doc_id;
}

void asr_kb_hits_free(struct asr_kb_hit *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i].kind);
        free(v[i].ref);
        free(v[i].title);
        free(v[i].body);
        free(v[i].source);
    }
    free(v);
}

/* Fills a hit's document columns. */
static int load_doc(struct asr_store *st, struct asr_kb_hit *h, struct asr_err *err)
{
    const char *op = "kb search";
    sqlite3_stmt *s = asr_store_prepare(st, sql_doc_get, op, err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, h->doc_id);
    int rc = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        if (asr_store_col_dup(s, 0, &h->kind) || asr_store_col_dup(s, 1, &h->ref) ||
            asr_store_col_dup(s, 2, &h->title) || asr_store_col_dup(s, 3, &h->body) ||
            asr_store_col_dup(s, 4, &h->source))
            rc = asr_err_set(err, ASR_ENOMEM, "kb: out of memory");
    } else {
        rc = asr_store_fail(st, op, err);
    }
    asr_store_reset(s);
    return rc;
}

/* The learned record of every candidate for signature, in one query (a signature has few). */
static void load_outcomes(struct asr_store *st, const char *signature, struct asr_kb_hit *h,
                          size_t n)
{
    if (signature == NULL)
        return;
    sqlite3_stmt *s = asr_store_prepare(st, sql_outcomes_of, "kb search", NULL);
    if (s == NULL)
        return;
    asr_store_bind_str(s, 1, signature);
    while (sqlite3_step(s) == SQLITE_ROW) {
        int64_t doc = sqlite3_column_int64(s, 0);
        for (size_t i = 0; i < n; i++)
            if (h[i].doc_id == doc) {
                h[i].successes = sqlite3_column_int64(s, 1);
                h[i].failures = sqlite3_column_int64(s, 2);
            }
    }
    asr_store_reset(s);
}

/*
 * The score, 0..1. An exact signature or fingerprint match is strong evidence (0.6, 0.7 for
 * both; a generic detector's signature 0.1); text adds up to 0.4 (bm25 / (bm25 + TEXT_SCALE)), so
 * text alone tops out at 0.4 and a threshold around 0.25 keeps weak text matches out; the record
 * moves a document up by 0.05 per verified fix (at most 0.15) and down by 0.45 times the share of
 * its tries that failed: a fix that failed its only try drops below an untried alternative with
 * the same exact evidence whatever the text says (text is worth at most 0.4), while one failure
 * among many successes costs little.
 */
static double score_of(struct asr_kb_hit *h, const char *signature)
{
    /* A built-in detector's signature ("generic:fatal" for any FATAL line) says little about
     * which fault it is: as evidence it weighs 0.1, not 0.6, and the text decides. */
    bool generic = signature != NULL && strncmp(signature, "generic:", 8) == 0;
    double sig = h->exact_signature ? (generic ? 0.1 : 0.6) : 0.0;
    double exact = h->exact_fingerprint ? (sig > 0 ? 0.7 : 0.6) : sig;
    double text = h->bm25 > 0 ? 0.4 * h->bm25 / (h->bm25 + TEXT_SCALE) : 0.0;
    double tried = (double)(h->successes + h->failures);
    double learned = 0.05 * (double)(h->successes < 3 ? h->successes : 3) -
                     (tried > 0 ? 0.45 * (double)h->failures / tried : 0.0);
    double s = exact + text + learned;
    return s < 0 ? 0 : s > 1 ? 1 : s;
}

int asr_kb_search(struct asr_store *st, const struct asr_kb_query *q, struct asr_kb_hit **out,
                  size_t *n, struct asr_err *err)
{
    const char *op = "kb search";
    *out = NULL;
    *n = 0;
    enum { CAP = 50 + 20 + TEXT_CANDIDATES };
    struct cand c[CAP];
    size_t nc = 0;
    int limit = q->limit > 0 ? q->limit : 5;
    if (q->signature != NULL) {
        sqlite3_stmt *s = asr_store_prepare(st, sql_by_sig, op, err);
        if (s == NULL)
            return ASR_EDB;
        asr_store_bind_str(s, 1, q->signature);
        asr_store_bind_str(s, 2, q->service);
        asr_store_bind_str(s, 3, q->kind);
        while (sqlite3_step(s) == SQLITE_ROW) {
            struct cand *x = cand_get(c, &nc, CAP, sqlite3_column_int64(s, 0));
            if (x != NULL)
                x->sig = true;
        }
        asr_store_reset(s);
    }
    if (q->fingerprint != NULL) {
        sqlite3_stmt *s = asr_store_prepare(st, sql_by_fp, op, err);
        if (s == NULL)
            return ASR_EDB;
        asr_store_bind_str(s, 1, q->fingerprint);
        asr_store_bind_str(s, 2, q->kind);
        while (sqlite3_step(s) == SQLITE_ROW) {
            struct cand *x = cand_get(c, &nc, CAP, sqlite3_column_int64(s, 0));
            if (x != NULL)
                x->fp = true;
        }
        asr_store_reset(s);
    }
    struct terms t = {.n = 0};
    const char *texts[] = {q->text, q->tmpl, q->message, q->fields, q->route, q->signature};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        add_terms(&t, texts[i]);
    char expr[MAX_QUERY_TERMS * 72];
    int nterms = t.n > 0 ? match_expr(st, &t, expr, sizeof(expr), err) : 0;
    if (nterms < 0)
        return nterms;
    if (nterms > 0) {
        sqlite3_stmt *s = asr_store_prepare(st, sql_text, op, err);
        if (s == NULL)
            return ASR_EDB;
        asr_store_bind_str(s, 1, expr);
        sqlite3_stmt *ok = asr_store_prepare(st, sql_doc_ok, op, err);
        if (ok == NULL) {
            asr_store_reset(s);
            return ASR_EDB;
        }
        int step;
        while ((step = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(s, 0);
            sqlite3_bind_int64(ok, 1, id);
            asr_store_bind_str(ok, 2, q->service);
            asr_store_bind_str(ok, 3, q->kind);
            bool fits = sqlite3_step(ok) == SQLITE_ROW;
            asr_store_reset(ok);
            struct cand *x = fits ? cand_get(c, &nc, CAP, id) : NULL;
            if (x != NULL)
                x->bm25 = sqlite3_column_double(s, 1);
        }
        int failed = step != SQLITE_DONE;
        if (failed)
            asr_store_fail(st, op, err);
        asr_store_reset(s);
        if (failed)
            return ASR_EDB;
    }
    if (nc == 0)
        return 0;
    struct asr_kb_hit *h = calloc(nc, sizeof(*h));
    if (h == NULL)
        return asr_err_set(err, ASR_ENOMEM, "kb: out of memory");
    int rc = 0;
    for (size_t i = 0; i < nc && rc == 0; i++) {
        h[i].doc_id = c[i].id;
        h[i].bm25 = c[i].bm25;
        h[i].exact_signature = c[i].sig;
        h[i].exact_fingerprint = c[i].fp;
    }
    load_outcomes(st, q->signature, h, nc);
    for (size_t i = 0; i < nc; i++)
        h[i].score = score_of(&h[i], q->signature);
    qsort(h, nc, sizeof(*h), cmp_hit);
    size_t keep = nc < (size_t)limit ? nc : (size_t)limit;
    for (size_t i = 0; i < keep && rc == 0; i++) {
        rc = load_doc(st, &h[i], err);
        int w = 0;
        if (h[i].exact_signature)
            w += snprintf(h[i].why + w, sizeof(h[i].why) - (size_t)w, "signature %.80s; ",
                          q->signature);
        if (h[i].exact_fingerprint)
            w += snprintf(h[i].why + w, sizeof(h[i].why) - (size_t)w, "same fingerprint; ");
        if (h[i].bm25 > 0)
            w +=
                snprintf(h[i].why + w, sizeof(h[i].why) - (size_t)w, "text bm25 %.2f; ", h[i].bm25);
        if (h[i].successes > 0 || h[i].failures > 0)
            w += snprintf(h[i].why + w, sizeof(h[i].why) - (size_t)w,
                          "history %lld verified, %lld failed; ", (long long)h[i].successes,
                          (long long)h[i].failures);
        if (w >= 2 && (size_t)w < sizeof(h[i].why))
            h[i].why[w - 2] = '\0';
    }
    for (size_t i = keep; i < nc; i++)
        memset(&h[i], 0, sizeof(h[i]));
    if (rc != 0) {
        asr_kb_hits_free(h, keep);
        return rc;
    }
    *out = h;
    *n = keep;
    return 0;
}

int asr_kb_list(struct asr_store *st, const char *kind, struct asr_kb_hit **out, size_t *n,
                struct asr_err *err)
{
    const char *op = "kb list";
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = asr_store_prepare(st, sql_list, op, err);
    if (s == NULL)
        return ASR_EDB;
    asr_store_bind_str(s, 1, kind);
    size_t cap = 0, len = 0;
    struct asr_kb_hit *v = NULL;
    int rc = 0;
    while (rc == 0 && sqlite3_step(s) == SQLITE_ROW) {
        if (len == cap) {
            size_t nc = cap != 0 ? cap * 2 : 32;
            struct asr_kb_hit *p = realloc(v, nc * sizeof(*p));
            if (p == NULL) {
                rc = asr_err_set(err, ASR_ENOMEM, "kb: out of memory");
                break;
            }
            v = p;
            cap = nc;
        }
        memset(&v[len], 0, sizeof(v[len]));
        v[len++].doc_id = sqlite3_column_int64(s, 0);
    }
    asr_store_reset(s);
    for (size_t i = 0; rc == 0 && i < len; i++)
        rc = load_doc(st, &v[i], err);
    if (rc != 0) {
        asr_kb_hits_free(v, len);
        return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

int asr_kb_record_outcome(struct asr_store *st, int64_t doc_id, const char *signature, bool success,
                          int64_t mttr_ms, struct asr_err *err)
{
    const char *op = "kb outcome";
    if (signature == NULL || doc_id <= 0)
        return asr_err_set(err, ASR_EINVAL, "kb: an outcome needs a document and a signature");
    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    sqlite3_stmt *s = asr_store_prepare(st, sql_outcome_add, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
    } else {
        sqlite3_bind_int64(s, 1, doc_id);
        asr_store_bind_str(s, 2, signature);
        sqlite3_bind_int64(s, 3, success ? 1 : 0);
        sqlite3_bind_int64(s, 4, success ? 0 : 1);
        if (mttr_ms > 0)
            sqlite3_bind_int64(s, 5, mttr_ms);
        else
            sqlite3_bind_null(s, 5);
        sqlite3_bind_int64(s, 6, asr_store_now(st));
        rc = asr_store_run(st, s, op, err);
    }
    return asr_store_finish(st, rc, op, err);
}

int64_t asr_kb_count(struct asr_store *st)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_count, "kb count", NULL);
    if (s == NULL)
        return -1;
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    asr_store_reset(s);
    return n;
}

int asr_kb_optimize(struct asr_store *st, struct asr_err *err)
{
    /* FTS5 adds a segment per transaction and merges them gradually; a query reads every
     * segment, so after a bulk load one full merge makes queries several times cheaper. */
    if (sqlite3_exec(asr_store_db(st), "INSERT INTO kb_fts (kb_fts) VALUES ('optimize')", NULL,
                     NULL, NULL) != SQLITE_OK)
        return asr_store_fail(st, "kb optimize", err);
    return 0;
}

/* Indexes one playbook. Its text columns: the title, the symptoms, match.template and
 * match.text (as the message an operator expects to see). */
int asr_kb_put_playbook(struct asr_store *st, const struct asr_playbook *pb, struct asr_err *err)
{
    json_t *j = asr_playbook_json(pb);
    char *body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (body == NULL)
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    char **sigs = calloc(pb->nsignatures + 1, sizeof(char *));
    if (sigs == NULL) {
        free(body);
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < pb->nsignatures; i++)
        sigs[i] = pb->signatures[i];
    struct asr_kb_doc d = {.kind = ASR_KB_PLAYBOOK,
                           .ref = pb->id,
                           .service = pb->service,
                           .title = pb->title,
                           .signatures = (const char *const *)sigs,
                           .symptoms = pb->symptoms,
                           .tmpl = pb->template,
                           .message = pb->text,
                           .body = body,
                           .source = pb->file};
    int rc = asr_kb_put(st, &d, NULL, err);
    free(sigs);
    free(body);
    return rc;
}
