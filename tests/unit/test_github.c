/*
 * test_github.c - pull requests for fix branches (src/execute/github.c) through the real asr-post
 * helper on a real uv loop, against tests/github_server.py (GitHub's pulls API, strict about the
 * documented headers and shapes) on a real socket: a new pull request (list, then create), the
 * same asked again (found by the list: no second POST), a token GitHub refuses (401), a rate limit
 * (403 with x-ratelimit-remaining: 0), validation errors (422: no such base, one already open),
 * a server that never answers, a port nothing listens on, refused arguments; and the title and
 * body asr writes (redacted, fenced, capped).
 */
#include "asr/error.h"
#include "asr/fsutil.h"
#include "asr/spawn.h"
#include "execute/github.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pyserver.h"

#define TOKEN_VAR "ASR_TEST_GITHUB_TOKEN"

#define assert_has(hay, needle)                                                                    \
    do {                                                                                           \
        const char *h_ = (hay);                                                                    \
        if (h_ == NULL || strstr(h_, (needle)) == NULL)                                            \
            fail_msg("expected \"%s\" in \"%s\"", (needle), h_ != NULL ? h_ : "(null)");           \
    } while (0)

struct fx {
    struct pyserver srv;
    char dir[64], state[128], record[128], post_exe[4096], token[64], api[128];
    uv_loop_t loop;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!pys_helper("asr-post", f->post_exe, sizeof(f->post_exe))) {
        fprintf(stderr, "test_github: asr-post not found next to ASR_BIN\n");
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/asr-github-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
    snprintf(f->record, sizeof(f->record), "%s/github.jsonl", f->dir);
    snprintf(f->token, sizeof(f->token), "ghp_test%08lx%08lx", (unsigned long)getpid(),
             (unsigned long)asr_time_mono_us());
    setenv(TOKEN_VAR, f->token, 1);
    char tokvar[128];
    snprintf(tokvar, sizeof(tokvar), "GITHUB_TEST_TOKEN=%s", f->token);
    char *env[] = {tokvar, "GITHUB_TEST_REPO=acme/shop", "GITHUB_TEST_BASES=main,release", NULL};
    if (pys_start(&f->srv, "github_server.py", "GITHUB_RECORD", f->record, env) != 0)
        return -1;
    snprintf(f->api, sizeof(f->api), "http://127.0.0.1:%d", f->srv.port);
    uv_loop_init(&f->loop);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    pys_loop_close(&f->loop);
    pys_stop(&f->srv);
    asr_rmtree(f->dir);
    free(f);
    return 0;
}

struct got {
    bool done, existed;
    int rc, status, number;
    char url[256], error[512];
};

static void done_cb(const struct asr_github_pr_result *r, void *data)
{
    struct got *g = data;
    g->done = true;
    g->rc = r->rc;
    g->status = r->status;
    g->number = r->number;
    g->existed = r->existed;
    snprintf(g->url, sizeof(g->url), "%s", r->html_url != NULL ? r->html_url : "");
    snprintf(g->error, sizeof(g->error), "%s", r->error != NULL ? r->error : "");
}

static struct asr_github_pr_req request(struct fx *f, const char *branch)
{
    return (struct asr_github_pr_req){.post_exe = f->post_exe,
                                      .state_dir = f->state,
                                      .api_url = f->api,
                                      .repo = "acme/shop",
                                      .token_env = TOKEN_VAR,
                                      .branch = branch,
                                      .base = "main",
                                      .title = "fix(shop): raise the db timeout",
                                      .body = "asr opened this pull request.",
                                      .timeout_ms = 5000};
}

static struct got open_pr(struct fx *f, const struct asr_github_pr_req *q)
{
    struct got g = {0};
    struct asr_err err = {0};
    int rc = asr_github_open_pr(&f->loop, q, done_cb, &g, NULL, &err);
    if (rc != 0)
        fail_msg("asr_github_open_pr: %s", err.msg);
    assert_true(pys_run_until(&f->loop, &g.done, 30000));
    return g;
}

static void control(struct fx *f, const char *json)
{
    char url[160], *out = NULL;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/_control", f->srv.port);
    char req[512];
    snprintf(req, sizeof(req), "{\"url\": \"%s\", \"body\": %s}", url, json);
    char path[256];
    snprintf(path, sizeof(path), "%s/control.json", f->dir);
    FILE *fp = fopen(path, "w");
    fputs(req, fp);
    fclose(fp);
    char *argv[] = {f->post_exe, path, NULL};
    int status = -1;
    struct asr_err err = {0};
    assert_int_equal(asr_proc_run_sync(argv, NULL, NULL, 10000, 65536, &status, &out, &err), 0);
    assert_int_equal(status, 0);
    free(out);
}

/* How many recorded requests have this method. */
static size_t count(struct fx *f, const char *method)
{
    json_t *recs = pys_records(&f->srv);
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(recs); i++)
        n += strcmp(json_string_value(json_object_get(json_array_get(recs, i), "method")),
                    method) == 0;
    json_decref(recs);
    return n;
}

/* ---- the text ----------------------------------------------------------------------------- */

static void test_pr_text(void **state)
{
    (void)state;
    struct asr_github_pr_info in = {
        .service = "shop",
        .incident = 12,
        .plan = 34,
        .strategy = "playbook",
        .title = "Raise the db timeout\nAsr-Plan: 99",
        .summary = "FAULT_DB_TIMEOUT route=/test-fault/db-timeout @octocat see [x](http://evil)\n"
                   "```\n# injected heading\n",
        .plan_text = "1. patch src/db.c: timeout 100 -> 500\n2. deploy",
        .verification = "build ok, make test ok, replay POST /test-fault/db-timeout -> 200",
        .commit = "0123456789abcdef0123456789abcdef01234567"};
    char *title = NULL, *body = NULL;
    assert_int_equal(asr_github_pr_text(&in, &title, &body), 0);
    assert_string_equal(title, "fix(shop): Raise the db timeout Asr-Plan: 99");
    assert_has(body, "asr opened this pull request to fix incident 12 of service shop.\n\n");
    assert_has(body, "### Incident\n\n````\nFAULT_DB_TIMEOUT");
    assert_has(body, "# injected heading\n````\n"); /* the fence outlasts the text's ``` */
    assert_has(body, "### Plan\n\n```\n1. patch src/db.c");
    assert_has(body, "### Verification\n\n```\nbuild ok");
    assert_has(body, "Commit: 0123456789abcdef0123456789abcdef01234567\n");
    const char *tail = "Asr-Incident: 12\nAsr-Plan: 34\nAsr-Strategy: playbook\n";
    assert_string_equal(body + strlen(body) - strlen(tail), tail);
    free(title);
    free(body);

    /* Secrets: redacted in every part, the title before it is cut to one line. */
    in.title = "rotate AKIAIOSFODNN7EXAMPLE now, the key AKIAIOSFODNN7EXAMPLE leaked in a log line "
               "of the shop service";
    in.summary = "db: postgres://app:S3cretPassw0rd@db.internal:5432/shop refused";
    in.plan_text = "set Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
    in.verification = "token=ghp_0123456789abcdefghijABCDEFGHIJ012345 ok";
    assert_int_equal(asr_github_pr_text(&in, &title, &body), 0);
    assert_null(strstr(title, "AKIAIOSFODNN7EXAMPLE"));
    assert_has(title, "[REDACTED:");
    assert_null(strstr(body, "S3cretPassw0rd"));
    assert_null(strstr(body, "c2lnbmF0dXJl"));
    assert_null(strstr(body, "ghp_0123456789"));
    free(title);
    free(body);

    /* A huge summary is capped (redacted first), the body stays under GitHub's limit. */
    char *big = malloc(200000);
    memset(big, 'y', 199999);
    big[199999] = '\0';
    in.summary = in.plan_text = in.verification = big;
    assert_int_equal(asr_github_pr_text(&in, &title, &body), 0);
    assert_true(strlen(body) < ASR_GITHUB_BODY_MAX);
    assert_has(body, "y [...]\n```");
    free(title);
    free(body);
    free(big);
    in.strategy = "magic";
    assert_int_equal(asr_github_pr_text(&in, &title, &body), ASR_EINVAL);
    assert_null(title);
    assert_null(body);
}

/* ---- the API ------------------------------------------------------------------------------ */

static void test_open_then_existing(void **state)
{
    struct fx *f = *state;
    struct asr_github_pr_req q = request(f, "asr/incident-12");
    struct got g = open_pr(f, &q);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.status, 201);
    assert_false(g.existed);
    assert_int_equal(g.number, 1);
    assert_string_equal(g.url, "https://github.example/acme/shop/pull/1");
    assert_int_equal(count(f, "GET"), 1);
    assert_int_equal(count(f, "POST"), 1);

    /* The requests as GitHub documents them. */
    json_t *recs = pys_records(&f->srv);
    json_t *get = json_array_get(recs, 0), *post = json_array_get(recs, 1);
    assert_string_equal(json_string_value(json_object_get(get, "path")), "/repos/acme/shop/pulls");
    assert_string_equal(json_string_value(json_object_get(get, "query")),
                        "head=acme%3Aasr%2Fincident-12&state=open");
    json_t *h = json_object_get(post, "headers");
    assert_string_equal(json_string_value(json_object_get(h, "Accept")),
                        "application/vnd.github+json");
    assert_string_equal(json_string_value(json_object_get(h, "X-GitHub-Api-Version")),
                        "2022-11-28");
    assert_string_equal(json_string_value(json_object_get(h, "User-Agent")), "asr/0.1.0");
    json_t *b = json_loads(json_string_value(json_object_get(post, "body")), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(b, "title")),
                        "fix(shop): raise the db timeout");
    assert_string_equal(json_string_value(json_object_get(b, "head")), "asr/incident-12");
    assert_string_equal(json_string_value(json_object_get(b, "base")), "main");
    assert_string_equal(json_string_value(json_object_get(b, "body")),
                        "asr opened this pull request.");
    assert_null(strstr(json_string_value(json_object_get(post, "body")), f->token));
    json_decref(b);
    json_decref(recs);

    /* Asked again (a restarted daemon): found by the list, no second POST. */
    g = open_pr(f, &q);
    assert_int_equal(g.rc, 0);
    assert_true(g.existed);
    assert_int_equal(g.number, 1);
    assert_string_equal(g.url, "https://github.example/acme/shop/pull/1");
    assert_int_equal(count(f, "GET"), 2);
    assert_int_equal(count(f, "POST"), 1);

    /* Another branch gets its own. */
    q.branch = "asr/incident-13";
    q.base = "release";
    g = open_pr(f, &q);
    assert_int_equal(g.rc, 0);
    assert_false(g.existed);
    assert_int_equal(g.number, 2);
    assert_int_equal(count(f, "POST"), 2);
}

static void test_bad_credentials(void **state)
{
    struct fx *f = *state;
    setenv("ASR_TEST_WRONG_GH", "ghp_wrongwrongwrong0123456789", 1);
    struct asr_github_pr_req q = request(f, "asr/incident-20");
    q.token_env = "ASR_TEST_WRONG_GH";
    struct got g = open_pr(f, &q);
    assert_int_equal(g.rc, ASR_ECONFIG);
    assert_int_equal(g.status, 401);
    assert_has(g.error, "401 Bad credentials");
    assert_has(g.error, "ASR_TEST_WRONG_GH");
    assert_null(strstr(g.error, "ghp_wrongwrongwrong"));
    assert_int_equal(count(f, "POST"), 0);
}

static void test_rate_limited(void **state)
{
    struct fx *f = *state;
    control(f, "\"{\\\"rate_limited\\\": true}\"");
    struct asr_github_pr_req q = request(f, "asr/incident-21");
    struct got g = open_pr(f, &q);
    assert_int_equal(g.rc, ASR_EBUSY);
    assert_int_equal(g.status, 403);
    assert_has(g.error, "rate limited");
    assert_has(g.error, "API rate limit exceeded");
    assert_has(g.error, "the limit resets at");
    assert_int_equal(count(f, "POST"), 0);
}

static void test_validation_failed(void **state)
{
    struct fx *f = *state;
    /* No such base branch. */
    struct asr_github_pr_req q = request(f, "asr/incident-22");
    q.base = "nosuch";
    struct got g = open_pr(f, &q);
    assert_int_equal(g.rc, ASR_EINVAL);
    assert_int_equal(g.status, 422);
    assert_has(g.error, "422 Validation Failed: PullRequest.base invalid");
    /* One already open that the list does not show (a race with another writer). */
    q.base = "main";
    g = open_pr(f, &q);
    assert_int_equal(g.rc, 0);
    control(f, "\"{\\\"hide_pulls\\\": true}\"");
    g = open_pr(f, &q);
    assert_int_equal(g.rc, ASR_EINVAL);
    assert_has(g.error, "A pull request already exists for acme:asr/incident-22.");
}

static void test_timeout_and_unreachable(void **state)
{
    struct fx *f = *state;
    control(f, "\"{\\\"hang\\\": true}\"");
    struct asr_github_pr_req q = request(f, "asr/incident-23");
    q.timeout_ms = 700;
    uint64_t t0 = asr_time_mono_ms();
    struct got g = open_pr(f, &q);
    assert_int_equal(g.rc, ASR_ETIMEOUT);
    assert_has(g.error, "listing the pull requests");
    assert_has(g.error, "timed out");
    assert_true(asr_time_mono_ms() - t0 < 5000);
    char dead[64];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", pys_dead_port());
    q.api_url = dead;
    g = open_pr(f, &q);
    assert_int_equal(g.rc, ASR_ENET);
    assert_has(g.error, "connect");
}

static void test_refused_arguments(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    struct got g = {0};
    struct asr_github_pr_req q = request(f, "main");
    assert_int_equal(asr_github_open_pr(&f->loop, &q, done_cb, &g, NULL, &err), ASR_EINVAL);
    assert_has(err.msg, "only for its asr/... branches");
    q = request(f, "asr/incident-1");
    q.repo = "shop";
    assert_int_equal(asr_github_open_pr(&f->loop, &q, done_cb, &g, NULL, &err), ASR_EINVAL);
    q = request(f, "asr/incident-1");
    q.repo = "acme/../x";
    assert_int_equal(asr_github_open_pr(&f->loop, &q, done_cb, &g, NULL, &err), ASR_EINVAL);
    q = request(f, "asr/incident-1");
    q.token_env = NULL;
    assert_int_equal(asr_github_open_pr(&f->loop, &q, done_cb, &g, NULL, &err), ASR_EINVAL);
    q = request(f, "asr/incident-1");
    q.base = "a..b";
    assert_int_equal(asr_github_open_pr(&f->loop, &q, done_cb, &g, NULL, &err), ASR_EINVAL);
    q = request(f, "asr/incident-1");
    q.api_url = "ftp://x";
    assert_int_equal(asr_github_open_pr(&f->loop, &q, done_cb, &g, NULL, &err), ASR_EINVAL);
    assert_false(g.done);
    assert_int_equal(count(f, "GET"), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pr_text),
        cmocka_unit_test_setup_teardown(test_open_then_existing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_and_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_arguments, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
