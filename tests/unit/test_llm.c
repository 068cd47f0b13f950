/*
 * test_llm.c - the LLM client (src/strategy/llm.h, llm.c, llm_proto.c) against a local server.
 *
 * tests/llm_server.py is started once per test process on a free port. It speaks OpenAI Chat
 * Completions, Gemini generateContent and Anthropic Messages at their documented paths, rejects
 * with 400 any request whose headers or JSON differ from the documented shape (so a wrong
 * request fails the test with the server's reason in the message), and behaves as the model
 * name says ("ok", "ra429", "flaky503", "slow", "truncated", ...; see the server). A nonce after
 * a dot keeps each test's hit counters apart; GET /stats/MODEL tells how many requests arrived.
 *
 * Calls go through the real transport: the synchronous wrapper (a private uv loop) for most
 * cases, and a client on a test-owned loop for concurrency, the breaker and destroy, each ending
 * with uv_loop_close() == 0 (no handle left). Every error message is checked not to contain the
 * API key. test_live talks to a real provider only when ASR_LLM_LIVE_PROVIDER and its key are set.
 */
#include "asr/error.h"
#include "asr/timeutil.h"
#include "strategy/llm.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

static pid_t server_pid = -1;
static int server_port;
static char key[64];
static int nonce;

static const char *const protos[] = {"openai", "gemini", "anthropic"};

/* ---- the server ------------------------------------------------------------------------------ */

static int start_server(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT); /* for server_hits(); the client keeps its own */
    snprintf(key, sizeof(key), "sk-test-%08lx%08lx", (unsigned long)getpid(),
             (unsigned long)asr_time_mono_us());
    char script[4096];
    const char *src = getenv("ASR_SOURCE_DIR");
    if (src != NULL) {
        snprintf(script, sizeof(script), "%s/tests/llm_server.py", src);
    } else {
        snprintf(script, sizeof(script), "%s", __FILE__);
        char *slash = strstr(script, "/unit/test_llm.c");
        if (slash == NULL)
            return -1;
        snprintf(slash, sizeof(script) - (size_t)(slash - script), "/llm_server.py");
    }
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **envp = calloc(n + 2, sizeof(char *));
    char keyvar[100];
    snprintf(keyvar, sizeof(keyvar), "LLM_TEST_KEY=%s", key);
    for (size_t i = 0; i < n; i++)
        envp[i] = environ[i];
    envp[n] = keyvar;
    int fds[2];
    if (envp == NULL || pipe(fds) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    char *argv[] = {"python3", "-u", script, NULL};
    int rc = posix_spawnp(&server_pid, "python3", &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        fprintf(stderr, "test_llm: cannot start python3: %s\n", strerror(rc));
        return -1;
    }
    /* Wait (at most 10 s) for "listening PORT". */
    char line[64] = {0};
    size_t len = 0;
    uint64_t deadline = asr_time_mono_ms() + 10000;
    while (len < sizeof(line) - 1 && strchr(line, '\n') == NULL && asr_time_mono_ms() < deadline) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t got = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fds[0]);
    if (sscanf(line, "listening %d", &server_port) != 1) {
        fprintf(stderr, "test_llm: the test server did not start (got \"%s\")\n", line);
        return -1;
    }
    return 0;
}

static int stop_server(void **state)
{
    (void)state;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
    curl_global_cleanup();
    return 0;
}

static size_t collect_cb(char *p, size_t size, size_t n, void *ud)
{
    char *buf = ud;
    size_t have = strlen(buf), add = size * n;
    if (have + add < 4096) {
        memcpy(buf + have, p, add);
        buf[have + add] = '\0';
    }
    return add;
}

/* How many requests for model reached the server (a blocking GET is fine in a test). */
static int server_hits(const char *model)
{
    char url[256], body[4096] = {0};
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/stats/%s", server_port, model);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
    CURLcode r = curl_easy_perform(e);
    curl_easy_cleanup(e);
    int hits = -1;
    const char *h = strstr(body, "\"hits\": ");
    if (r == CURLE_OK && h != NULL)
        hits = atoi(h + 8);
    return hits;
}

/* ---- helpers --------------------------------------------------------------------------------- */

struct tcase {
    char model[96];
    char base[128];
    struct asr_llm_opts o;
};

/* Options for proto and scenario, with short test timings; model gets a fresh nonce. */
static void setup_case(struct tcase *t, const char *proto, const char *scenario)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->model, sizeof(t->model), "%s.%d-%d", scenario, (int)getpid(), ++nonce);
    snprintf(t->base, sizeof(t->base), "http://127.0.0.1:%d%s", server_port,
             strcmp(proto, "openai") == 0   ? "/v1"
             : strcmp(proto, "gemini") == 0 ? "/v1beta"
                                            : "");
    t->o.provider = proto;
    t->o.base_url = t->base;
    t->o.model = t->model;
    t->o.api_key = key;
    t->o.timeout_ms = 2000;
    t->o.max_attempts = 3;
    t->o.backoff_initial_ms = 20;
    t->o.backoff_max_ms = 3000;
    t->o.breaker_threshold = 5;
    t->o.breaker_cooldown_ms = 1000;
    t->o.max_reply_bytes = 64 * 1024;
    t->o.max_tokens = 256;
}

static const struct asr_llm_request question = {
    .system = "You are a test. Answer briefly.",
    .user = "say \"hi\"\n\tand \xc3\xbc \\ </end>",
};

/* Runs one synchronous call; checks the invariants every outcome must keep. */
static int run_sync(struct tcase *t, struct asr_llm_reply *r, struct asr_err *err)
{
    memset(err, 0, sizeof(*err));
    int rc = asr_llm_complete_sync(&t->o, &question, r, err);
    if (rc == 0) {
        assert_non_null(r->text);
        assert_int_equal(strlen(r->text), r->len);
    } else {
        assert_null(r->text);
        assert_int_equal(err->code, rc);
        assert_true(strncmp(err->msg, "llm: ", 5) == 0);
        assert_null(strchr(err->msg, '\n'));
    }
    assert_null(strstr(err->msg, key)); /* the key never reaches a message */
    return rc;
}

static void expect_text(const struct asr_llm_reply *r, const char *proto)
{
    char want[256];
    snprintf(want, sizeof(want), "hello from the test server (%s): %s", proto, question.user);
    assert_string_equal(r->text, want);
}

/* ---- success --------------------------------------------------------------------------------- */

static void test_success_each_protocol(void **state)
{
    (void)state;
    static const char *const finish[] = {"stop", "STOP", "end_turn"};
    for (int i = 0; i < 3; i++) {
        struct tcase t;
        struct asr_llm_reply r;
        struct asr_err err;
        setup_case(&t, protos[i], "ok");
        int rc = run_sync(&t, &r, &err);
        if (rc != 0)
            fail_msg("%s: %s", protos[i], err.msg);
        expect_text(&r, protos[i]);
        assert_string_equal(r.finish_reason, finish[i]);
        assert_int_equal(r.prompt_tokens, 11);
        /* Gemini's thoughts tokens are billed output: 7 + 3. */
        assert_int_equal(r.completion_tokens, i == 1 ? 10 : 7);
        assert_int_equal(r.http_status, 200);
        assert_int_equal(r.attempts, 1);
        assert_int_equal(r.waited_ms, 0);
        assert_true(r.elapsed_ms >= 0 && r.elapsed_ms < 2000);
        asr_llm_reply_free(&r);
        assert_int_equal(server_hits(t.model), 1);
    }
}

/* No system text (one message only), and a provider that reports no usage (-1 = unknown). */
static void test_success_no_system_no_usage(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        struct tcase t;
        struct asr_llm_reply r;
        struct asr_err err = {0};
        setup_case(&t, protos[i], "nousage");
        struct asr_llm_request q = {.system = NULL, .user = "only the user speaks"};
        int rc = asr_llm_complete_sync(&t.o, &q, &r, &err);
        if (rc != 0)
            fail_msg("%s: %s", protos[i], err.msg);
        assert_non_null(strstr(r.text, "only the user speaks"));
        assert_int_equal(r.prompt_tokens, -1);
        assert_int_equal(r.completion_tokens, -1);
        asr_llm_reply_free(&r);
    }
}

/* ---- retries --------------------------------------------------------------------------------- */

static void test_retry_after_seconds(void **state)
{
    (void)state;
    const char *cases[][2] = {{"openai", "ra429"}, {"anthropic", "ra429"}};
    for (int i = 0; i < 2; i++) {
        struct tcase t;
        struct asr_llm_reply r;
        struct asr_err err;
        setup_case(&t, cases[i][0], cases[i][1]);
        int rc = run_sync(&t, &r, &err);
        if (rc != 0)
            fail_msg("%s: %s", cases[i][0], err.msg);
        assert_int_equal(r.attempts, 2);
        /* Retry-After: 1 is honoured (plus at most 10% jitter), not the 20 ms back-off. */
        assert_true(r.waited_ms >= 1000 && r.waited_ms <= 1100);
        assert_true(r.elapsed_ms >= 1000 && r.elapsed_ms < 2500);
        asr_llm_reply_free(&r);
        assert_int_equal(server_hits(t.model), 2);
    }
}

static void test_retry_after_http_date(void **state)
{
    (void)state;
    struct tcase t;
    struct asr_llm_reply r;
    struct asr_err err;
    setup_case(&t, "openai", "radate429");
    t.o.backoff_max_ms = 5000;
    int rc = run_sync(&t, &r, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(r.attempts, 2);
    /* The date is 2 s ahead at one-second resolution, read against libcurl's clock: a wait of
     * 1 to 3 s (+10%). */
    if (r.waited_ms < 1000 || r.waited_ms > 3300)
        fail_msg("waited %lld ms", (long long)r.waited_ms);
    asr_llm_reply_free(&r);
}

/* Gemini's per-minute 429 carries RetryInfo.retryDelay in the body instead of a header. */
static void test_retry_gemini_retry_info(void **state)
{
    (void)state;
    struct tcase t;
    struct asr_llm_reply r;
    struct asr_err err;
    setup_case(&t, "gemini", "retryinfo429");
    int rc = run_sync(&t, &r, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(r.attempts, 2);
    assert_true(r.waited_ms >= 600 && r.waited_ms <= 700);
    asr_llm_reply_free(&r);
}

/* A Retry-After beyond backoff_max_ms: fail at once rather than retry early. */
static void test_retry_after_too_long(void **state)
{
    (void)state;
    struct tcase t;
    struct asr_llm_reply r;
    struct asr_err err;
    setup_case(&t, "anthropic", "ralong429");
    uint64_t t0 = asr_time_mono_ms();
    int rc = run_sync(&t, &r, &err);
    assert_int_equal(rc, ASR_ENET);
    assert_true(asr_time_mono_ms() - t0 < 1000);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.http_status, 429);
    assert_non_null(strstr(err.msg, "HTTP 429 (rate_limit_error)"));
    assert_non_null(strstr(err.msg, "asks to wait 120000 ms"));
    asr_llm_reply_free(&r);
}

static void test_retry_5xx_then_success(void **state)
{
    (void)state;
    const char *cases[][2] = {
        {"openai", "flaky500"}, {"gemini", "flaky503"}, {"anthropic", "flaky529"}};
    for (int i = 0; i < 3; i++) {
        struct tcase t;
        struct asr_llm_reply r;
        struct asr_err err;
        setup_case(&t, cases[i][0], cases[i][1]);
        int rc = run_sync(&t, &r, &err);
        if (rc != 0)
            fail_msg("%s: %s", cases[i][0], err.msg);
        expect_text(&r, cases[i][0]);
        assert_int_equal(r.attempts, 3);
        /* Jittered back-off: [10, 20] ms then [20, 40] ms. */
        assert_true(r.waited_ms >= 30 && r.waited_ms <= 60);
        asr_llm_reply_free(&r);
        assert_int_equal(server_hits(t.model), 3);
    }
}

static void test_5xx_exhausts_attempts(void **state)
{
    (void)state;
    struct tcase t;
    struct asr_llm_reply r;
    struct asr_err err;
    setup_case(&t, "openai", "down503");
    t.o.max_attempts = 4;
    int rc = run_sync(&t, &r, &err);
    assert_int_equal(rc, ASR_ENET);
    assert_int_equal(r.attempts, 4);
    assert_int_equal(r.http_status, 503);
    assert_true(r.waited_ms >= 70 && r.waited_ms <= 140); /* 10-20, 20-40, 40-80 */
    assert_non_null(strstr(err.msg, "HTTP 503"));
    assert_non_null(strstr(err.msg, "(after 4 attempts)"));
    asr_llm_reply_free(&r);
    assert_int_equal(server_hits(t.model), 4);
}

static void test_quota_not_retried(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        struct tcase t;
        struct asr_llm_reply r;
        struct asr_err err;
        setup_case(&t, protos[i], "quota429");
        int rc = run_sync(&t, &r, &err);
        assert_int_equal(rc, ASR_ENET);
        assert_int_equal(r.attempts, 1);
        assert_int_equal(r.http_status, 429);
        assert_non_null(strstr(err.msg, "quota or spend limit exhausted, not retried"));
        asr_llm_reply_free(&r);
        assert_int_equal(server_hits(t.model), 1);
    }
}

/* 401 with the key echoed back (as providers do): not retried, and the key is scrubbed. */
static void test_auth_error_not_retried_key_scrubbed(void **state)
{
    (void)state;
    char wrong[80];
    snprintf(wrong, sizeof(wrong), "%s-but-wrong", key);
    for (int i = 0; i < 3; i++) {
        struct tcase t;
        struct asr_llm_reply r;
        struct asr_err err;
        setup_case(&t, protos[i], "ok");
        t.o.api_key = wrong;
        int rc = run_sync(&t, &r, &err);
        assert_int_equal(rc, ASR_ECONFIG);
        assert_int_equal(r.attempts, 1);
        assert_int_equal(r.http_status, 401);
        assert_non_null(strstr(err.msg, "HTTP 401"));
        assert_non_null(strstr(err.msg, "Incorrect API key provided: [key]"));
        assert_null(strstr(err.msg, wrong));
        assert_null(strstr(err.msg, "sk-test"));
        asr_llm_reply_free(&r);
    }
}

static void test_bad_request_not_retried(void **state)
{
    (void)state;
    struct tcase t;
    struct asr_llm_reply r;
    struct asr_err err;
    setup_case(&t, "gemini", "bad400");
    int rc = run_sync(&t, &r, &err);
    assert_int_equal(rc, ASR_ENET);
    assert_int_equal(r.attempts, 1);
    assert_non_null(strstr(err.msg, "HTTP 400 (invalid_request_error): context too long"));
    asr_llm_reply_free(&r);
    assert_int_equal(server_hits(t.model), 1);
}

static void test_timeout(void **state)
{
    (void)state;
    struct tcase t;
    struct asr_llm_reply r;
    struct asr_err err;
    setup_case(&t, "anthropic", "slow");
    t.o.timeout_ms = 300;
    t.o.max_attempts = 2;
    int rc = run_sync(&t, &r, &err);
    assert_int_equal(rc, ASR_ETIMEOUT);
    assert_int_equal(r.attempts, 2);
    assert_true(r.elapsed_ms >= 600 && r.elapsed_ms < 1500);
    assert_non_null(strstr(err.msg, "no complete reply within 300 ms (after 2 attempts)"));
    asr_llm_reply_free(&r);

    /* A timeout is retried: the second attempt gets a prompt answer. */
    setup_case(&t, "openai", "slowonce");
    t.o.timeout_ms = 500;
    rc = run_sync(&t, &r, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(r.attempts, 2);
    asr_llm_reply_free(&r);
}

/* ---- bad replies ----------------------------------------------------------------------------- */

static void test_truncated_reply_not_used(void **state)
{
    (void)state;
    static const char *const finish[] = {"length", "MAX_TOKENS", "max_tokens"};
    for (int i = 0; i < 3; i++) {
        struct tcase t;
        struct asr_llm_reply r;
        struct asr_err err;
        setup_case(&t, protos[i], "truncated");
        int rc = run_sync(&t, &r, &err);
        assert_int_equal(rc, ASR_ETOOBIG);
        assert_null(r.text);
        assert_string_equal(r.finish_reason, finish[i]);
        assert_int_equal(r.prompt_tokens, 11); /* the spent tokens are still recorded */
        assert_int_equal(r.attempts, 1);
        assert_non_null(strstr(err.msg, "cut off by the token limit"));
        asr_llm_reply_free(&r);
        assert_int_equal(server_hits(t.model), 1);
    }
}

static void test_refused_reply(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        struct tcase t;
        struct asr_llm_reply r;
        struct asr_err err;
        setup_case(&t, protos[i], "refused");
        int rc = run_sync(&t, &r, &err);
        assert_int_equal(rc, ASR_EPROTO);
        assert_non_null(strstr(err.msg, "refused"));
        assert_int_equal(r.attempts, 1);
        asr_llm_reply_free(&r);
    }
}

static void test_malformed_replies(void **state)
{
    (void)state;
    static const char *const scen[] = {"malformed", "missing", "wrongtype", "badusage", "empty"};
    static const char *const missing[] = {"choices", "candidates", "content"};
    for (int i = 0; i < 3; i++) {
        for (size_t s = 0; s < sizeof(scen) / sizeof(scen[0]); s++) {
            struct tcase t;
            struct asr_llm_reply r;
            struct asr_err err;
            setup_case(&t, protos[i], scen[s]);
            int rc = run_sync(&t, &r, &err);
            if (rc != ASR_EPROTO)
                fail_msg("%s %s: rc %d: %s", protos[i], scen[s], rc, err.msg);
            assert_int_equal(r.attempts, 1); /* a malformed reply is not retried */
            if (s == 0)
                assert_non_null(strstr(err.msg, "not valid JSON"));
            if (s == 1)
                assert_non_null(strstr(err.msg, missing[i]));
            if (s == 4)
                assert_non_null(strstr(err.msg, "no text"));
            asr_llm_reply_free(&r);
        }
    }
}

static void test_oversize_reply(void **state)
{
    (void)state;
    static const char *const scen[] = {"oversize", "oversizechunked"};
    for (int i = 0; i < 3; i++) {
        for (int s = 0; s < 2; s++) {
            struct tcase t;
            struct asr_llm_reply r;
            struct asr_err err;
            setup_case(&t, protos[i], scen[s]);
            int rc = run_sync(&t, &r, &err);
            if (rc != ASR_ETOOBIG)
                fail_msg("%s %s: rc %d: %s", protos[i], scen[s], rc, err.msg);
            assert_int_equal(r.attempts, 1);
            assert_non_null(strstr(err.msg, "exceeds max_reply_bytes (65536 bytes)"));
            asr_llm_reply_free(&r);
        }
    }
}

static void test_redirect_not_followed(void **state)
{
    (void)state;
    struct tcase t;
    struct asr_llm_reply r;
    struct asr_err err;
    setup_case(&t, "openai", "redirect");
    int rc = run_sync(&t, &r, &err);
    assert_int_equal(rc, ASR_EPROTO);
    assert_int_equal(r.http_status, 307);
    assert_non_null(strstr(err.msg, "redirect not followed"));
    asr_llm_reply_free(&r);
}

static void test_connection_refused(void **state)
{
    (void)state;
    /* A port that was just free: bind, read it, close. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    struct tcase t;
    struct asr_llm_reply r;
    struct asr_err err;
    setup_case(&t, "anthropic", "ok");
    snprintf(t.base, sizeof(t.base), "http://127.0.0.1:%d", ntohs(a.sin_port));
    int rc = run_sync(&t, &r, &err);
    assert_int_equal(rc, ASR_ENET);
    assert_int_equal(r.attempts, 3); /* connect failures are retried */
    assert_int_equal(r.http_status, 0);
    assert_non_null(strstr(err.msg, "connect"));
    assert_non_null(strstr(err.msg, "(after 3 attempts)"));
    asr_llm_reply_free(&r);
}

/* ---- the client on a loop: concurrency, breaker, destroy ------------------------------------- */

struct result {
    bool done;
    int rc;
    int attempts;
    char msg[512];
    char text[256];
    struct asr_llm *destroy_me; /* destroyed from inside the callback when set */
};

static void result_cb(int rc, struct asr_llm_reply *reply, const char *errmsg, void *data)
{
    struct result *res = data;
    assert_false(res->done);
    res->done = true;
    res->rc = rc;
    res->attempts = reply->attempts;
    snprintf(res->msg, sizeof(res->msg), "%s", errmsg ? errmsg : "");
    snprintf(res->text, sizeof(res->text), "%s", reply->text ? reply->text : "");
    if (errmsg != NULL)
        assert_null(strstr(errmsg, key));
    if (res->destroy_me != NULL)
        asr_llm_destroy(res->destroy_me);
}

static void run_until_done(uv_loop_t *loop, struct result *res, size_t n, int ms)
{
    uint64_t deadline = asr_time_mono_ms() + (uint64_t)ms;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += res[i].done;
        if (done == n || asr_time_mono_ms() > deadline)
            break;
        uv_run(loop, UV_RUN_ONCE);
    }
    for (size_t i = 0; i < n; i++)
        assert_true(res[i].done);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void close_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Several calls in flight on one client, on every protocol, one of them slow. */
static void test_async_concurrent(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct asr_llm *c[3];
    struct tcase t[3];
    struct result res[6] = {0};
    struct asr_err err;
    for (int i = 0; i < 3; i++) {
        setup_case(&t[i], protos[i], "ok");
        assert_int_equal(asr_llm_create(&loop, &t[i].o, &c[i], &err), 0);
        assert_int_equal(asr_llm_complete(c[i], &question, result_cb, &res[2 * i]), 0);
        assert_int_equal(asr_llm_complete(c[i], &question, result_cb, &res[2 * i + 1]), 0);
    }
    assert_false(res[0].done); /* never from inside asr_llm_complete */
    run_until_done(&loop, res, 6, 5000);
    for (int i = 0; i < 6; i++) {
        if (res[i].rc != 0)
            fail_msg("call %d: %s", i, res[i].msg);
        assert_non_null(strstr(res[i].text, protos[i / 2]));
    }
    /* The same clients again: reused connections. */
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 3; i++)
        assert_int_equal(asr_llm_complete(c[i], &question, result_cb, &res[i]), 0);
    run_until_done(&loop, res, 3, 5000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].rc, 0);
        assert_int_equal(server_hits(t[i].model), 3);
        asr_llm_destroy(c[i]);
    }
    close_loop(&loop);
}

/* Runs one call on c and returns its result. */
static struct result one_call(uv_loop_t *loop, struct asr_llm *c)
{
    struct result res = {0};
    assert_int_equal(asr_llm_complete(c, &question, result_cb, &res), 0);
    run_until_done(loop, &res, 1, 5000);
    return res;
}

static void test_breaker_opens_and_reopens(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tcase t;
    struct asr_err err;
    struct asr_llm *c;
    setup_case(&t, "gemini", "down503");
    t.o.max_attempts = 1;
    t.o.breaker_threshold = 3;
    t.o.breaker_cooldown_ms = 300;
    assert_int_equal(asr_llm_create(&loop, &t.o, &c, &err), 0);
    for (int i = 0; i < 3; i++) {
        struct result res = one_call(&loop, c);
        assert_int_equal(res.rc, ASR_ENET);
    }
    assert_int_equal(server_hits(t.model), 3);
    /* Open: refused at once, nothing sent. */
    uint64_t t0 = asr_time_mono_ms();
    struct result res = one_call(&loop, c);
    assert_int_equal(res.rc, ASR_EBUSY);
    assert_int_equal(res.attempts, 0);
    assert_true(asr_time_mono_ms() - t0 < 100);
    assert_non_null(strstr(res.msg, "llm: circuit open after 3 consecutive failures; retry after"));
    assert_non_null(strstr(res.msg, "HTTP 503"));
    assert_int_equal(server_hits(t.model), 3);
    /* After the cooldown: one trial call; a second one meanwhile is refused. */
    sleep_ms(350);
    struct result two[2] = {0};
    assert_int_equal(asr_llm_complete(c, &question, result_cb, &two[0]), 0);
    assert_int_equal(asr_llm_complete(c, &question, result_cb, &two[1]), 0);
    run_until_done(&loop, two, 2, 5000);
    assert_int_equal(two[0].rc, ASR_ENET);
    assert_int_equal(two[1].rc, ASR_EBUSY);
    assert_non_null(strstr(two[1].msg, "half-open"));
    assert_int_equal(server_hits(t.model), 4);
    /* The trial failed: open again for another cooldown. */
    res = one_call(&loop, c);
    assert_int_equal(res.rc, ASR_EBUSY);
    assert_non_null(strstr(res.msg, "circuit open after 4 consecutive failures"));
    assert_int_equal(server_hits(t.model), 4);
    asr_llm_destroy(c);
    close_loop(&loop);
}

static void test_breaker_half_open_closes(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tcase t;
    struct asr_err err;
    struct asr_llm *c;
    setup_case(&t, "openai", "flaky503"); /* two 503s, then answers */
    t.o.max_attempts = 1;
    t.o.breaker_threshold = 2;
    t.o.breaker_cooldown_ms = 200;
    assert_int_equal(asr_llm_create(&loop, &t.o, &c, &err), 0);
    assert_int_equal(one_call(&loop, c).rc, ASR_ENET);
    assert_int_equal(one_call(&loop, c).rc, ASR_ENET);
    assert_int_equal(one_call(&loop, c).rc, ASR_EBUSY);
    sleep_ms(250);
    struct result res = one_call(&loop, c); /* the trial succeeds: closed */
    if (res.rc != 0)
        fail_msg("%s", res.msg);
    assert_int_equal(one_call(&loop, c).rc, 0);
    assert_int_equal(one_call(&loop, c).rc, 0);
    assert_int_equal(server_hits(t.model), 5);
    asr_llm_destroy(c);
    close_loop(&loop);
}

/* A truncated reply means the provider works: it never opens the breaker. */
static void test_breaker_ignores_truncated(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tcase t;
    struct asr_err err;
    struct asr_llm *c;
    setup_case(&t, "anthropic", "truncated");
    t.o.breaker_threshold = 1;
    assert_int_equal(asr_llm_create(&loop, &t.o, &c, &err), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(one_call(&loop, c).rc, ASR_ETOOBIG);
    assert_int_equal(server_hits(t.model), 3);
    asr_llm_destroy(c);
    close_loop(&loop);
}

static void test_destroy_in_flight(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tcase t, t2;
    struct asr_err err;
    struct asr_llm *c;
    /* 1: destroyed while two slow requests are pending. */
    setup_case(&t, "openai", "slow");
    assert_int_equal(asr_llm_create(&loop, &t.o, &c, &err), 0);
    struct result res[2] = {0};
    assert_int_equal(asr_llm_complete(c, &question, result_cb, &res[0]), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(asr_llm_complete(c, &question, result_cb, &res[1]), 0);
    uint64_t t0 = asr_time_mono_ms();
    while (asr_time_mono_ms() - t0 < 100)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_false(res[0].done);
    asr_llm_destroy(c);
    assert_true(res[0].done && res[1].done);
    assert_int_equal(res[0].rc, ASR_ECANCELED);
    assert_non_null(strstr(res[0].msg, "client destroyed"));
    assert_int_equal(asr_llm_complete(c, &question, result_cb, &res[0]), ASR_ECANCELED);
    close_loop(&loop);

    /* 2: destroyed from inside the done callback of a fast call while a slow one is in flight. */
    uv_loop_init(&loop);
    setup_case(&t, "gemini", "slow");
    setup_case(&t2, "gemini", "ok");
    struct asr_llm *slow, *fast;
    assert_int_equal(asr_llm_create(&loop, &t.o, &slow, &err), 0);
    assert_int_equal(asr_llm_create(&loop, &t2.o, &fast, &err), 0);
    struct result r2[3] = {0};
    r2[0].destroy_me = fast;
    r2[1].destroy_me = fast;
    assert_int_equal(asr_llm_complete(fast, &question, result_cb, &r2[0]), 0);
    assert_int_equal(asr_llm_complete(fast, &question, result_cb, &r2[1]), 0);
    assert_int_equal(asr_llm_complete(slow, &question, result_cb, &r2[2]), 0);
    run_until_done(&loop, r2, 2, 5000);
    /* One finished, the other was cancelled by the destroy in its sibling's callback. */
    assert_true((r2[0].rc == 0 && r2[1].rc == ASR_ECANCELED) ||
                (r2[1].rc == 0 && r2[0].rc == ASR_ECANCELED));
    asr_llm_destroy(slow);
    assert_int_equal(r2[2].rc, ASR_ECANCELED);
    close_loop(&loop);
}

/* ---- options and direct parser checks -------------------------------------------------------- */

static void test_invalid_options(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct asr_llm *c = NULL;
    struct asr_err err;
    struct {
        const char *provider, *base, *model, *key, *want;
    } bad[] = {
        {"mistral", NULL, "m", NULL, "not one of openai, gemini, anthropic"},
        {"openai", NULL, NULL, NULL, "model is missing"},
        {"gemini", NULL, "../../x", NULL, "may hold only letters"},
        {"openai", "ftp://example.com/v1", "m", NULL, "scheme must be https or http"},
        {"openai", "https://example.com/v1?key=SECRETQ", "m", NULL, "must not carry"},
        {"openai", "https://user:SECRETP@example.com/v1", "m", NULL, "must not carry"},
        {"anthropic", "http://api.example.com", "m", "sk-SECRET-1234", "plain http"},
        {"openai", NULL, "m", "sk-SECRET\r\nX-Evil: 1", "control characters"},
        {"openai", "not a url", "m", NULL, "not a valid URL"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct asr_llm_opts o = {.provider = bad[i].provider,
                                 .base_url = bad[i].base,
                                 .model = bad[i].model,
                                 .api_key = bad[i].key};
        memset(&err, 0, sizeof(err));
        assert_int_equal(asr_llm_create(&loop, &o, &c, &err), ASR_EINVAL);
        assert_null(c);
        if (strstr(err.msg, bad[i].want) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, bad[i].want);
        assert_null(strstr(err.msg, "SECRET"));
    }
    /* Loopback http with a key is fine (local servers), and so are the defaults. */
    struct asr_llm_opts ok = {.provider = "anthropic",
                              .base_url = "http://localhost:1",
                              .model = "m",
                              .api_key = "k-123456"};
    assert_int_equal(asr_llm_create(&loop, &ok, &c, &err), 0);
    assert_int_equal(asr_llm_complete(c, &(struct asr_llm_request){.user = ""}, result_cb, NULL),
                     ASR_EINVAL);
    asr_llm_destroy(c);
    struct asr_llm_opts def = {.provider = "gemini", .model = "models/gemini-2.0-flash"};
    assert_int_equal(asr_llm_create(&loop, &def, &c, &err), 0);
    asr_llm_destroy(c);
    close_loop(&loop);
}

static void test_parse_direct(void **state)
{
    (void)state;
    struct asr_llm_reply r;
    struct asr_err err;
    struct {
        enum asr_llm_provider p;
        const char *body;
        int rc;
        const char *want; /* in err.msg, or the text on success */
    } cases[] = {
        {ASR_LLM_OPENAI,
         "{\"choices\":[{\"message\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}", 0, "a"},
        {ASR_LLM_OPENAI,
         "{\"choices\":[{\"message\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]} x",
         ASR_EPROTO, "not valid JSON"},
        {ASR_LLM_OPENAI,
         "{\"choices\":[{\"message\":{\"content\":\"a\",\"content\":\"b\"},"
         "\"finish_reason\":\"stop\"}]}",
         ASR_EPROTO, "not valid JSON"},
        {ASR_LLM_OPENAI,
         "{\"choices\":[{\"message\":{\"content\":null,\"refusal\":\"no\"},"
         "\"finish_reason\":\"stop\"}]}",
         ASR_EPROTO, "refused"},
        {ASR_LLM_OPENAI,
         "{\"choices\":[{\"message\":{\"content\":\"a\"},\"finish_reason\":\"tool_calls\"}]}",
         ASR_EPROTO, "unexpected finish reason"},
        {ASR_LLM_OPENAI, "[1,2]", ASR_EPROTO, "not a JSON object"},
        {ASR_LLM_OPENAI, "{\"choices\":[{\"message\":{\"content\":\"a\\u0000b\"}}]}", ASR_EPROTO,
         "not valid JSON"},
        {ASR_LLM_GEMINI, "{\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}", ASR_EPROTO,
         "prompt blocked"},
        {ASR_LLM_GEMINI,
         "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\",\"thought\":true}]},"
         "\"finishReason\":\"STOP\"}]}",
         ASR_EPROTO, "no text"},
        {ASR_LLM_ANTHROPIC, "{\"type\":\"error\",\"content\":[],\"stop_reason\":\"end_turn\"}",
         ASR_EPROTO, "not \"message\""},
        {ASR_LLM_ANTHROPIC,
         "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"p\"},"
         "{\"type\":\"tool_use\"},{\"type\":\"text\",\"text\":\"q\"}],"
         "\"stop_reason\":\"stop_sequence\"}",
         0, "pq"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&err, 0, sizeof(err));
        int rc = asr_llm_parse_reply(cases[i].p, cases[i].body, strlen(cases[i].body), &r, &err);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d: %s", i, rc, err.msg);
        if (rc == 0)
            assert_string_equal(r.text, cases[i].want);
        else if (strstr(err.msg, cases[i].want) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].want);
        asr_llm_reply_free(&r);
    }
    struct asr_llm_error_info info;
    const char *g = "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\",\"details\":["
                    "{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":"
                    "\"12.5s\"}]}}";
    asr_llm_parse_error(ASR_LLM_GEMINI, g, strlen(g), &info);
    assert_int_equal(info.retry_delay_ms, 12500);
    assert_int_equal(info.quota, 0);
    assert_string_equal(info.kind, "RESOURCE_EXHAUSTED");
    const char *o = "{\"error\":{\"message\":\"bad\\u0007\\u00e9\",\"type\":\"x\","
                    "\"code\":\"insufficient_quota\"}}";
    asr_llm_parse_error(ASR_LLM_OPENAI, o, strlen(o), &info);
    assert_int_equal(info.quota, 1);
    assert_string_equal(info.message, "bad???"); /* printable ASCII only */
    asr_llm_parse_error(ASR_LLM_ANTHROPIC, "<html>", 6, &info);
    assert_string_equal(info.message, "");
    assert_int_equal(info.retry_delay_ms, -1);
}

/* ---- live ------------------------------------------------------------------------------------ */

static void test_live(void **state)
{
    (void)state;
    const char *provider = getenv("ASR_LLM_LIVE_PROVIDER");
    const char *key_env = getenv("ASR_LLM_LIVE_KEY_ENV");
    if (provider != NULL && key_env == NULL)
        key_env = strcmp(provider, "openai") == 0   ? "OPENAI_API_KEY"
                  : strcmp(provider, "gemini") == 0 ? "GEMINI_API_KEY"
                                                    : "ANTHROPIC_API_KEY";
    const char *live_key = key_env ? getenv(key_env) : NULL;
    if (provider == NULL || live_key == NULL || live_key[0] == '\0') {
        printf("skipped: set ASR_LLM_LIVE_PROVIDER (openai|gemini|anthropic) and its key "
               "(OPENAI_API_KEY, GEMINI_API_KEY, ANTHROPIC_API_KEY or the variable named by "
               "ASR_LLM_LIVE_KEY_ENV); optional ASR_LLM_LIVE_MODEL, ASR_LLM_LIVE_BASE_URL\n");
        return;
    }
    const char *model = getenv("ASR_LLM_LIVE_MODEL");
    if (model == NULL)
        model = strcmp(provider, "openai") == 0   ? "gpt-4o-mini"
                : strcmp(provider, "gemini") == 0 ? "gemini-2.0-flash"
                                                  : "claude-3-5-haiku-latest";
    struct asr_llm_opts o = {.provider = provider,
                             .base_url = getenv("ASR_LLM_LIVE_BASE_URL"),
                             .model = model,
                             .api_key = live_key,
                             .timeout_ms = 60000,
                             .max_tokens = 64};
    struct asr_llm_request q = {.system = "Reply with exactly one word.",
                                .user = "Say the word: pong"};
    struct asr_llm_reply r;
    struct asr_err err = {0};
    int rc = asr_llm_complete_sync(&o, &q, &r, &err);
    assert_null(strstr(err.msg, live_key));
    if (rc != 0)
        fail_msg("live %s %s: %s", provider, model, err.msg);
    printf("live %s %s: \"%s\" finish=%s tokens=%lld+%lld attempts=%d %lld ms\n", provider, model,
           r.text, r.finish_reason, (long long)r.prompt_tokens, (long long)r.completion_tokens,
           r.attempts, (long long)r.elapsed_ms);
    assert_true(r.len > 0);
    asr_llm_reply_free(&r);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success_each_protocol),
        cmocka_unit_test(test_success_no_system_no_usage),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_http_date),
        cmocka_unit_test(test_retry_gemini_retry_info),
        cmocka_unit_test(test_retry_after_too_long),
        cmocka_unit_test(test_retry_5xx_then_success),
        cmocka_unit_test(test_5xx_exhausts_attempts),
        cmocka_unit_test(test_quota_not_retried),
        cmocka_unit_test(test_auth_error_not_retried_key_scrubbed),
        cmocka_unit_test(test_bad_request_not_retried),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_truncated_reply_not_used),
        cmocka_unit_test(test_refused_reply),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_oversize_reply),
        cmocka_unit_test(test_redirect_not_followed),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_async_concurrent),
        cmocka_unit_test(test_breaker_opens_and_reopens),
        cmocka_unit_test(test_breaker_half_open_closes),
        cmocka_unit_test(test_breaker_ignores_truncated),
        cmocka_unit_test(test_destroy_in_flight),
        cmocka_unit_test(test_invalid_options),
        cmocka_unit_test(test_parse_direct),
        cmocka_unit_test(test_live),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
