/*
 * test_kb.c - the knowledge base: indexing, the three ranking layers, learning, hostile queries.
 * Real SQLite files in a temporary directory.
 */
#include "strategy/kb.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

struct fx {
    char dir[64];
    char path[128];
    struct asr_store *st;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/asr-kb.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/asr.db", f->dir);
    struct asr_err err = {0};
    assert_int_equal(asr_store_open_file(f->path, &f->st, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    asr_store_close(f->st);
    char p[160];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", f->path, sfx[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static int64_t put_pb(struct fx *f, const char *ref, const char *sig, const char *service,
                      const char *title, const char *symptoms)
{
    const char *sigs[] = {sig, NULL};
    struct asr_kb_doc d = {.kind = ASR_KB_PLAYBOOK,
                           .ref = ref,
                           .service = service,
                           .title = title,
                           .signatures = sig != NULL ? sigs : NULL,
                           .symptoms = symptoms,
                           .body = "{\"id\":\"x\"}"};
    int64_t id = 0;
    struct asr_err err = {0};
    int rc = asr_kb_put(f->st, &d, &id, &err);
    if (rc != 0)
        fail_msg("put %s: %s", ref, err.msg);
    return id;
}

static void corpus(struct fx *f)
{
    put_pb(f, "sql-malformed", "FAULT_SQL_INJECTION_TEST", NULL,
           "Malformed SQL statement in a report query",
           "A query fails with a syntax error near FROM: the SELECT has no column list. "
           "sqlite prepare fails; the route answers 500.");
    put_pb(f, "upstream-timeout", "FAULT_EXTERNAL_API_LATENCY", NULL,
           "Upstream call times out before the dependency answers",
           "Calls to the upstream dependency time out: the client timeout is shorter than the "
           "dependency's response time. external_timeout, 504 from the route.");
    put_pb(f, "db-statement-limit", "FAULT_DB_TIMEOUT", NULL,
           "Database statement limit shorter than the query needs",
           "statement_timeout: the database statement limit interrupts a slow query; "
           "parse_request then fails with a timeout.");
    put_pb(f, "oom", NULL, NULL, "Process runs out of memory",
           "out of memory, Cannot allocate memory, OOMKilled, std::bad_alloc: the process is "
           "killed or aborts when an allocation fails.");
    put_pb(f, "disk-full", NULL, "billing", "Disk full on the data volume",
           "No space left on device (ENOSPC) while writing the database or logs.");
}

static void search(struct fx *f, const struct asr_kb_query *q, struct asr_kb_hit **h, size_t *n)
{
    struct asr_err err = {0};
    int rc = asr_kb_search(f->st, q, h, n, &err);
    if (rc != 0)
        fail_msg("search: %s", err.msg);
}

static void test_exact_signature_first(void **state)
{
    struct fx *f = *state;
    corpus(f);
    struct asr_kb_query q = {.signature = "FAULT_DB_TIMEOUT",
                             .message = "FAULT_DB_TIMEOUT route=/orders reason=statement_timeout",
                             .service = "shop"};
    struct asr_kb_hit *h;
    size_t n;
    search(f, &q, &h, &n);
    assert_true(n >= 1);
    assert_string_equal(h[0].ref, "db-statement-limit");
    assert_true(h[0].exact_signature);
    assert_true(h[0].score >= 0.6);
    assert_non_null(strstr(h[0].why, "signature FAULT_DB_TIMEOUT"));
    assert_non_null(strstr(h[0].why, "text bm25"));
    for (size_t i = 1; i < n; i++)
        assert_true(h[i].score < h[0].score);
    asr_kb_hits_free(h, n);
}

static void test_text_keeps_identifiers_whole(void **state)
{
    struct fx *f = *state;
    corpus(f);
    /* No signature: the identifier parse_request alone finds the playbook that names it. */
    struct asr_kb_query q = {.text = "parse_request"};
    struct asr_kb_hit *h;
    size_t n;
    search(f, &q, &h, &n);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].ref, "db-statement-limit");
    assert_false(h[0].exact_signature);
    assert_true(h[0].score > 0 && h[0].score <= 0.4);
    asr_kb_hits_free(h, n);
    /* "parse" alone is not the identifier. */
    q.text = "parse";
    search(f, &q, &h, &n);
    assert_int_equal(n, 0);
    asr_kb_hits_free(h, n);
}

static void test_paraphrase(void **state)
{
    struct fx *f = *state;
    corpus(f);
    struct asr_kb_query q = {
        .message = "payment gateway call exceeded client timeout waiting for dependency",
        .service = "shop"};
    struct asr_kb_hit *h;
    size_t n;
    search(f, &q, &h, &n);
    assert_true(n >= 1);
    assert_string_equal(h[0].ref, "upstream-timeout");
    asr_kb_hits_free(h, n);
}

static void test_service_restriction(void **state)
{
    struct fx *f = *state;
    corpus(f);
    struct asr_kb_query q = {.text = "No space left on device", .service = "shop"};
    struct asr_kb_hit *h;
    size_t n;
    search(f, &q, &h, &n);
    for (size_t i = 0; i < n; i++)
        assert_string_not_equal(h[i].ref, "disk-full");
    asr_kb_hits_free(h, n);
    q.service = "billing";
    search(f, &q, &h, &n);
    assert_true(n >= 1);
    assert_string_equal(h[0].ref, "disk-full");
    asr_kb_hits_free(h, n);
}

static void test_learning(void **state)
{
    struct fx *f = *state;
    /* Two playbooks answer to the same signature; the record decides between them. */
    int64_t a = put_pb(f, "restart-it", "FAULT_X", NULL, "Restart the service", "FAULT_X restart");
    int64_t b = put_pb(f, "patch-it", "FAULT_X", NULL, "Patch the query", "FAULT_X patch");
    struct asr_err err = {0};
    struct asr_kb_query q = {.signature = "FAULT_X"};
    struct asr_kb_hit *h;
    size_t n;
    search(f, &q, &h, &n);
    assert_int_equal(n, 2);
    double before = h[0].ref[0] == 'p' ? h[0].score : h[1].score;
    asr_kb_hits_free(h, n);
    assert_int_equal(asr_kb_record_outcome(f->st, b, "FAULT_X", true, 5000, &err), 0);
    search(f, &q, &h, &n);
    assert_string_equal(h[0].ref, "patch-it");
    assert_true(h[0].score > before);
    assert_int_equal(h[0].successes, 1);
    assert_non_null(strstr(h[0].why, "history 1 verified, 0 failed"));
    asr_kb_hits_free(h, n);
    /* The verified fix then fails twice: it ranks below the untried alternative. */
    assert_int_equal(asr_kb_record_outcome(f->st, b, "FAULT_X", false, 0, &err), 0);
    assert_int_equal(asr_kb_record_outcome(f->st, b, "FAULT_X", false, 0, &err), 0);
    search(f, &q, &h, &n);
    assert_string_equal(h[0].ref, "restart-it");
    assert_int_equal(h[0].doc_id, a);
    assert_string_equal(h[1].ref, "patch-it");
    assert_int_equal(h[1].failures, 2);
    asr_kb_hits_free(h, n);
}

static void test_hostile_query(void **state)
{
    struct fx *f = *state;
    corpus(f);
    const char *bad[] = {"\"unbalanced",
                         "NEAR(a b",
                         "title:x",
                         "* OR -",
                         "a AND OR NOT b",
                         "\\\"); DROP TABLE kb_docs; --",
                         "\xff\xfe",
                         "",
                         "   ",
                         "12345 678"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct asr_kb_query q = {.text = bad[i]};
        struct asr_kb_hit *h;
        size_t n;
        search(f, &q, &h, &n);
        asr_kb_hits_free(h, n);
    }
    assert_int_equal(asr_kb_count(f->st), 5);
}

static void test_replace_list_delete(void **state)
{
    struct fx *f = *state;
    corpus(f);
    int64_t id1 = put_pb(f, "oom", NULL, NULL, "Out of memory (v2)", "memory exhausted");
    int64_t id2 = put_pb(f, "oom", NULL, NULL, "Out of memory (v3)", "heap exhausted");
    assert_int_equal(id1, id2);
    assert_int_equal(asr_kb_count(f->st), 5);
    struct asr_kb_query q = {.text = "memory exhausted"};
    struct asr_kb_hit *h;
    size_t n;
    search(f, &q, &h, &n);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].title, "Out of memory (v3)");
    asr_kb_hits_free(h, n);
    struct asr_err err = {0};
    assert_int_equal(asr_kb_list(f->st, ASR_KB_PLAYBOOK, &h, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_string_equal(h[0].ref, "db-statement-limit");
    asr_kb_hits_free(h, n);
    assert_int_equal(asr_kb_delete(f->st, ASR_KB_PLAYBOOK, "oom", &err), 0);
    assert_int_equal(asr_kb_delete(f->st, ASR_KB_PLAYBOOK, "oom", &err), ASR_ENOENT);
    assert_string_equal(err.msg, "kb: no playbook 'oom'");
    assert_int_equal(asr_kb_count(f->st), 4);
    q.text = "heap exhausted";
    search(f, &q, &h, &n);
    assert_int_equal(n, 0);
    asr_kb_hits_free(h, n);
    struct asr_kb_doc bad = {.kind = "note", .ref = "x", .title = "t"};
    assert_int_equal(asr_kb_put(f->st, &bad, NULL, &err), ASR_EINVAL);
}

static void test_incident_fingerprint(void **state)
{
    struct fx *f = *state;
    corpus(f);
    const char *sigs[] = {"FAULT_DB_TIMEOUT", NULL};
    struct asr_kb_doc d = {.kind = ASR_KB_INCIDENT,
                           .ref = "12",
                           .service = "shop",
                           .fingerprint = "shop:FAULT_DB_TIMEOUT:route=/orders",
                           .title = "incident 12: FAULT_DB_TIMEOUT on /orders",
                           .signatures = sigs,
                           .message = "FAULT_DB_TIMEOUT route=/orders reason=statement_timeout",
                           .route = "/orders",
                           .body = "{\"plan\":\"patch\",\"verified\":true}"};
    struct asr_err err = {0};
    assert_int_equal(asr_kb_put(f->st, &d, NULL, &err), 0);
    struct asr_kb_query q = {.signature = "FAULT_DB_TIMEOUT",
                             .fingerprint = "shop:FAULT_DB_TIMEOUT:route=/orders",
                             .message = "FAULT_DB_TIMEOUT route=/orders reason=statement_timeout",
                             .service = "shop"};
    struct asr_kb_hit *h;
    size_t n;
    search(f, &q, &h, &n);
    assert_true(n >= 2);
    assert_string_equal(h[0].kind, ASR_KB_INCIDENT);
    assert_true(h[0].exact_fingerprint && h[0].exact_signature);
    assert_non_null(strstr(h[0].why, "same fingerprint"));
    asr_kb_hits_free(h, n);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exact_signature_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_keeps_identifiers_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paraphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_restriction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_learning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_list_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incident_fingerprint, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
