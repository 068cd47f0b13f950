/*
 * kb_bench.c - retrieval speed of the knowledge base with many documents (issue 4: p99 <= 2 ms
 * per query with 100,000 documents).
 *
 *   kb_bench DIR [DOCS] [QUERIES]      defaults 100000 1000
 *
 * Fills DIR/asr.db with DOCS synthetic documents (playbooks and past incidents with log-like
 * text drawn from a vocabulary of ~2,000 words, identifiers such as FAULT_XXX_17 and routes),
 * then runs QUERIES incident-shaped queries (signature + fault line + template + route, as the
 * planner sends them) and prints per-query latency percentiles, next to two floors measured on
 * the same database in the same run: a primary-key lookup of one document, and the same FTS5
 * MATCH counted without ranking (what the text index costs before BM25 ordering).
 */
#include "strategy/kb.h"

#include "store/store_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static const char *const syll[] = {
    "con",   "nec",  "tion",  "time", "out",  "data",  "base",  "query", "pool", "lock",
    "disk",  "net",  "work",  "req",  "uest", "parse", "cache", "miss",  "heap", "page",
    "fault", "read", "write", "slow", "fail", "retry", "gate",  "way",   "auth", "token"};

static void word(char *w, size_t cap)
{
    size_t n = 1 + next() % 3, len = 0;
    w[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(w + len, cap - len, "%s", syll[next() % 30]);
}

static void sentence(char *out, size_t cap, int words)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < words && len + 40 < cap; i++) {
        char w[64];
        word(w, sizeof(w));
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "", w);
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    printf("%-46s p50 %8.3f  p90 %8.3f  p99 %8.3f  max %8.3f ms\n", what, v[n / 2] / 1e3,
           v[n * 9 / 10] / 1e3, v[n * 99 / 100] / 1e3, v[n - 1] / 1e3);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kb_bench DIR [DOCS] [QUERIES]\n");
        return 2;
    }
    int docs = argc > 2 ? atoi(argv[2]) : 100000;
    int queries = argc > 3 ? atoi(argv[3]) : 1000;
    char path[4096];
    snprintf(path, sizeof(path), "%s/asr.db", argv[1]);
    struct asr_store *st;
    struct asr_err err = {0};
    if (asr_store_open_file(path, &st, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* KB_CACHE_MB: a larger SQLite page cache for the run (default: the store's). */
    if (getenv("KB_CACHE_MB") != NULL) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA cache_size = -%d",
                 atoi(getenv("KB_CACHE_MB")) * 1024);
        sqlite3_exec(asr_store_db(st), pragma, NULL, NULL, NULL);
    }
    int64_t have = asr_kb_count(st);
    double t0 = now_us();
    sqlite3_exec(asr_store_db(st), "PRAGMA synchronous = OFF", NULL, NULL, NULL);
    for (int i = (int)have; i < docs; i++) {
        char ref[32], title[256], sym[1024], msg[512], tmpl[512], route[64], sig[40], fp[128];
        char *sigs[] = {sig, NULL};
        snprintf(ref, sizeof(ref), "%d", i);
        snprintf(sig, sizeof(sig), "FAULT_%s_%d", syll[next() % 30], (int)(next() % 500));
        snprintf(route, sizeof(route), "/%s/%d", syll[next() % 30], (int)(next() % 50));
        snprintf(fp, sizeof(fp), "svc%d:%s:route=%s", (int)(next() % 20), sig, route);
        sentence(title, sizeof(title), 6);
        sentence(sym, sizeof(sym), 40);
        sentence(msg, sizeof(msg), 12);
        sentence(tmpl, sizeof(tmpl), 10);
        bool pb = i % 20 == 0;
        struct asr_kb_doc d = {.kind = pb ? ASR_KB_PLAYBOOK : ASR_KB_INCIDENT,
                               .ref = ref,
                               .fingerprint = pb ? NULL : fp,
                               .title = title,
                               .signatures = (const char *const *)sigs,
                               .symptoms = pb ? sym : NULL,
                               .tmpl = tmpl,
                               .message = msg,
                               .route = route,
                               .body = "{}"};
        if (asr_kb_put(st, &d, NULL, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
    }
    sqlite3_exec(asr_store_db(st), "PRAGMA synchronous = FULL; PRAGMA optimize", NULL, NULL, NULL);
    if (docs > (int)have && asr_kb_optimize(st, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("kb_bench: %lld documents (%d added in %.1f s), %d queries\n",
           (long long)asr_kb_count(st), docs - (int)have, (now_us() - t0) / 1e6, queries);
    double *lat = calloc((size_t)queries, sizeof(double));
    double *pk = calloc((size_t)queries, sizeof(double));
    double *raw = calloc((size_t)queries, sizeof(double));
    size_t hits_total = 0;
    sqlite3_stmt *pks, *cnt;
    sqlite3_prepare_v2(asr_store_db(st), "SELECT title, body FROM kb_docs WHERE id = ?1", -1, &pks,
                       NULL);
    sqlite3_prepare_v2(asr_store_db(st), "SELECT count(*) FROM kb_fts WHERE kb_fts MATCH ?1", -1,
                       &cnt, NULL);
    for (int i = 0; i < queries; i++) {
        char msg[512], tmpl[512], route[64], sig[40], m2[1200];
        snprintf(sig, sizeof(sig), "FAULT_%s_%d", syll[next() % 30], (int)(next() % 500));
        snprintf(route, sizeof(route), "/%s/%d", syll[next() % 30], (int)(next() % 50));
        sentence(msg, sizeof(msg), 12);
        sentence(tmpl, sizeof(tmpl), 10);
        struct asr_kb_query q = {.signature = sig,
                                 .message = msg,
                                 .tmpl = tmpl,
                                 .route = route,
                                 .service = "svc3",
                                 .limit = 5};
        struct asr_kb_hit *h;
        size_t n;
        double a = now_us();
        if (asr_kb_search(st, &q, &h, &n, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        lat[i] = now_us() - a;
        hits_total += n;
        asr_kb_hits_free(h, n);
        a = now_us();
        sqlite3_bind_int64(pks, 1, 1 + (int64_t)(next() % (uint64_t)docs));
        while (sqlite3_step(pks) == SQLITE_ROW)
            ;
        sqlite3_reset(pks);
        pk[i] = now_us() - a;
        /* The unranked MATCH over the message's words. */
        size_t l = 0;
        m2[0] = '\0';
        for (char *w = strtok(msg, " "); w != NULL && l + 80 < sizeof(m2); w = strtok(NULL, " "))
            l += (size_t)snprintf(m2 + l, sizeof(m2) - l, "%s\"%s\"", l ? " OR " : "", w);
        a = now_us();
        sqlite3_bind_text(cnt, 1, m2, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(cnt) == SQLITE_ROW)
            ;
        sqlite3_reset(cnt);
        raw[i] = now_us() - a;
    }
    report("asr_kb_search (signature + text, top 5)", lat, queries);
    report("floor: one primary-key lookup", pk, queries);
    report("floor: unranked FTS5 MATCH count", raw, queries);
    printf("hits per query: %.2f\n", (double)hits_total / queries);
    qsort(lat, (size_t)queries, sizeof(*lat), cmp_d);
    double p99 = lat[queries * 99 / 100] / 1e3;
    printf("RESULT kb_bench: p99 %.3f ms <= 2 ms with %lld documents -> %s\n", p99,
           (long long)asr_kb_count(st), p99 <= 2.0 ? "PASS" : "FAIL");
    sqlite3_finalize(pks);
    sqlite3_finalize(cnt);
    asr_store_close(st);
    free(lat);
    free(pk);
    free(raw);
    return p99 <= 2.0 ? 0 : 1;
}
