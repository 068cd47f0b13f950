/*
 * test_notify.c - webhook notifications (src/execute/notify.c) through the real asr-post helper
 * (src/cli/asr_post.c, via post.c) on a real uv loop, against tests/webhook_server.py on a real
 * socket: delivered (the Idempotency-Key header and the body's "id" both carry the key), a 500,
 * a receiver that never answers (the timeout), a port nothing listens on, a redirect (not
 * followed), a bearer token accepted and refused (the token scrubbed from what is reported),
 * notifications off, bad keys, a cancel that kills the helper; and the events themselves: their
 * fields, caps, redaction, the keys.
 */
#include "asr/config.h"
#include "asr/error.h"
#include "asr/fsutil.h"
#include "execute/notify.h"
#include "execute/post.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <sys/stat.h>

#include "pyserver.h"

#define TOKEN_VAR "ASR_TEST_WEBHOOK_TOKEN"

/* hay holds needle; says both when it does not. */
#define assert_has(hay, needle)                                                                    \
    do {                                                                                           \
        const char *h_ = (hay);                                                                    \
        if (h_ == NULL || strstr(h_, (needle)) == NULL)                                            \
            fail_msg("expected \"%s\" in \"%s\"", (needle), h_ != NULL ? h_ : "(null)");           \
    } while (0)

struct fx {
    struct pyserver srv;
    char dir[64], state[128], record[128], post_exe[4096], token[64];
    uv_loop_t loop;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!pys_helper("asr-post", f->post_exe, sizeof(f->post_exe))) {
        fprintf(stderr, "test_notify: asr-post not found next to ASR_BIN\n");
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/asr-notify-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
    snprintf(f->record, sizeof(f->record), "%s/webhook.jsonl", f->dir);
    snprintf(f->token, sizeof(f->token), "whk-%08lx%08lx", (unsigned long)getpid(),
             (unsigned long)asr_time_mono_us());
    setenv(TOKEN_VAR, f->token, 1);
    char tokvar[128];
    snprintf(tokvar, sizeof(tokvar), "WEBHOOK_TOKEN=%s", f->token);
    char *env[] = {tokvar, NULL};
    if (pys_start(&f->srv, "webhook_server.py", "WEBHOOK_RECORD", f->record, env) != 0)
        return -1;
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
    bool done;
    int rc, status;
    char error[512];
};

static void done_cb(const struct asr_notify_result *r, void *data)
{
    struct got *g = data;
    g->done = true;
    g->rc = r->rc;
    g->status = r->status;
    snprintf(g->error, sizeof(g->error), "%s", r->error != NULL ? r->error : "");
}

static json_t *sample_event(void)
{
    struct asr_notify_info in = {.kind = ASR_NOTIFY_REMEDIATED,
                                 .incident = 12,
                                 .plan = 34,
                                 .remediation = 5,
                                 .service = "shop",
                                 .signature = "FAULT_DB_TIMEOUT",
                                 .summary = "FAULT_DB_TIMEOUT route=/test-fault/db-timeout",
                                 .mttr_ms = 3600};
    json_t *e = asr_notify_event(&in);
    assert_non_null(e);
    return e;
}

/* Sends event to path with cfg's token_env and timeout; runs until done. */
static struct got send_to(struct fx *f, const char *path, const char *token_env, int timeout_ms,
                          const char *key)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->srv.port, path);
    struct asr_notify_cfg cfg = {
        .url = url, .token_env = (char *)token_env, .timeout_ms = timeout_ms};
    struct asr_notify_env env = {.post_exe = f->post_exe, .state_dir = f->state};
    json_t *e = sample_event();
    struct got g = {0};
    struct asr_err err = {0};
    int rc = asr_notify_send(&f->loop, &env, &cfg, e, key, done_cb, &g, NULL, &err);
    json_decref(e);
    if (rc != 0)
        fail_msg("asr_notify_send: %s", err.msg);
    assert_true(pys_run_until(&f->loop, &g.done, 30000));
    return g;
}

/* The request files are gone once the helper is done. */
static void assert_outbound_empty(struct fx *f)
{
    char d[256];
    snprintf(d, sizeof(d), "%s/outbound", f->state);
    DIR *dir = opendir(d);
    assert_non_null(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dir)) != NULL)
        n += e->d_name[0] != '.';
    closedir(dir);
    assert_int_equal(n, 0);
    struct stat st;
    assert_int_equal(stat(d, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

/* ---- events ------------------------------------------------------------------------------- */

static void test_event_fields(void **state)
{
    (void)state;
    json_t *e = sample_event();
    assert_string_equal(json_string_value(json_object_get(e, "kind")), "remediated");
    assert_string_equal(json_string_value(json_object_get(e, "source")), "asr");
    assert_string_equal(json_string_value(json_object_get(e, "service")), "shop");
    assert_int_equal(json_integer_value(json_object_get(e, "incident")), 12);
    assert_int_equal(json_integer_value(json_object_get(e, "plan")), 34);
    assert_int_equal(json_integer_value(json_object_get(e, "remediation")), 5);
    assert_int_equal(json_integer_value(json_object_get(e, "mttr_ms")), 3600);
    assert_string_equal(json_string_value(json_object_get(e, "text")),
                        "asr: shop: incident 12 remediated in 3.6 s");
    const char *t = json_string_value(json_object_get(e, "time"));
    assert_non_null(t);
    assert_int_equal(strlen(t), 24);
    assert_int_equal(t[23], 'Z');
    /* Absent fields are left out, not null. */
    assert_null(json_object_get(e, "reason"));
    assert_null(json_object_get(e, "message"));
    assert_null(json_object_get(e, "pull_request"));
    json_decref(e);

    /* Every kind has its name; a notify step's event carries its message. */
    const char *names[] = {"remediated",        "failed", "escalated",
                           "awaiting_approval", "notify", "circuit_open"};
    for (int k = 0; k < ASR_NOTIFY_KINDS; k++) {
        assert_string_equal(asr_notify_kind_name((enum asr_notify_kind)k), names[k]);
        struct asr_notify_info in = {.kind = (enum asr_notify_kind)k,
                                     .service = "shop",
                                     .message = "the disk is 91% full",
                                     .mttr_ms = -1,
                                     .at_ms = 1710237601123};
        e = asr_notify_event(&in);
        assert_non_null(e);
        assert_string_equal(json_string_value(json_object_get(e, "kind")), names[k]);
        assert_string_equal(json_string_value(json_object_get(e, "time")),
                            "2024-03-12T10:00:01.123Z");
        assert_null(json_object_get(e, "incident"));
        assert_null(json_object_get(e, "mttr_ms"));
        json_decref(e);
    }
    struct asr_notify_info in = {.kind = ASR_NOTIFY_NOTIFY,
                                 .incident = 3,
                                 .service = "shop",
                                 .message = "restarted twice; please look"};
    e = asr_notify_event(&in);
    assert_string_equal(json_string_value(json_object_get(e, "text")),
                        "asr: shop: incident 3: restarted twice; please look");
    json_decref(e);
    in.kind = ASR_NOTIFY_KINDS;
    assert_null(asr_notify_event(&in));
    assert_null(asr_notify_kind_name(ASR_NOTIFY_KINDS));
}

static void test_event_redacted_and_capped(void **state)
{
    (void)state;
    /* A secret in attacker text, invalid UTF-8, control characters, a huge summary. */
    char *big = malloc(100000);
    memset(big, 'x', 99999);
    big[99999] = '\0';
    memcpy(big + 99000, " password=Hunter2Hunter2Secret ", 31);
    struct asr_notify_info in = {
        .kind = ASR_NOTIFY_FAILED,
        .incident = 7,
        .service = "shop",
        .summary = big,
        .reason = "db login failed: postgres://app:S3cretPassw0rd@db.internal:5432/shop "
                  "\x1b[31mred\x1b[0m caf\xe9",
        .message = NULL,
        .mttr_ms = -1};
    json_t *e = asr_notify_event(&in);
    assert_non_null(e);
    const char *reason = json_string_value(json_object_get(e, "reason"));
    assert_non_null(reason);
    assert_null(strstr(reason, "S3cretPassw0rd"));
    assert_has(reason, "[REDACTED:");
    assert_null(strchr(reason, '\x1b'));
    assert_has(reason, "caf?");
    const char *summary = json_string_value(json_object_get(e, "summary"));
    assert_true(strlen(summary) <= ASR_NOTIFY_SUMMARY_MAX);
    assert_string_equal(summary + strlen(summary) - 6, " [...]");
    const char *text = json_string_value(json_object_get(e, "text"));
    assert_null(strstr(text, "S3cretPassw0rd"));
    char *all = json_dumps(e, 0);
    assert_null(strstr(all, "S3cretPassw0rd"));
    assert_null(strstr(all, "Hunter2Hunter2Secret"));
    free(all);
    json_decref(e);
    /* The secret after the cap is not in it either way; one inside is redacted. */
    memcpy(big + 100, " password=Hunter2Hunter2Secret ", 31);
    in.summary = big;
    e = asr_notify_event(&in);
    all = json_dumps(e, 0);
    assert_null(strstr(all, "Hunter2Hunter2Secret"));
    free(all);
    json_decref(e);
    free(big);
}

static void test_keys(void **state)
{
    (void)state;
    char k[64];
    assert_int_equal(asr_notify_key(ASR_NOTIFY_REMEDIATED, 12, 5, -1, k, sizeof(k)), 0);
    assert_string_equal(k, "asr-rem5-remediated");
    assert_int_equal(asr_notify_key(ASR_NOTIFY_NOTIFY, 12, 5, 2, k, sizeof(k)), 0);
    assert_string_equal(k, "asr-rem5-notify-2");
    assert_int_equal(asr_notify_key(ASR_NOTIFY_ESCALATED, 12, 0, -1, k, sizeof(k)), 0);
    assert_string_equal(k, "asr-inc12-escalated");
    assert_int_equal(asr_notify_key(ASR_NOTIFY_CIRCUIT_OPEN, 0, 0, -1, k, sizeof(k)), 0);
    assert_int_equal(strncmp(k, "asr-circuit_open-", 17), 0);
    assert_int_equal(asr_notify_key(ASR_NOTIFY_KINDS, 1, 1, -1, k, sizeof(k)), ASR_EINVAL);
    assert_int_equal(asr_notify_key(ASR_NOTIFY_FAILED, 1, 1, -1, k, 8), ASR_EINVAL);
}

static void test_configured(void **state)
{
    (void)state;
    const char *base = "services:\n  - name: shop\n    repo: .\n    start: [./shop]\n"
                       "    listen: 127.0.0.1:18080\n";
    struct asr_config *cfg = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_config_parse("t.yaml", "/tmp", base, strlen(base), false, &cfg, &err), 0);
    assert_false(asr_notify_configured(cfg));
    assert_has(asr_notify_refusal(cfg), "no notify block");
    asr_config_free(cfg);
    char text[512];
    snprintf(text, sizeof(text), "%snotify: {url: 'https://hooks.example.com/asr'}\n", base);
    assert_int_equal(asr_config_parse("t.yaml", "/tmp", text, strlen(text), false, &cfg, &err), 0);
    assert_true(asr_notify_configured(cfg));
    assert_null(asr_notify_refusal(cfg));
    assert_int_equal(cfg->notify.timeout_ms, 5000);
    assert_null(cfg->notify.token_env);
    asr_config_free(cfg);
    assert_false(asr_notify_configured(NULL));
}

/* ---- sending ------------------------------------------------------------------------------ */

static void test_send_delivered(void **state)
{
    struct fx *f = *state;
    struct got g = send_to(f, "/hook", NULL, 5000, "asr-rem5-remediated");
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.status, 200);
    assert_string_equal(g.error, "");
    json_t *recs = pys_records(&f->srv);
    assert_int_equal(json_array_size(recs), 1);
    json_t *r = json_array_get(recs, 0);
    assert_string_equal(json_string_value(json_object_get(r, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(r, "path")), "/hook");
    json_t *h = json_object_get(r, "headers");
    assert_string_equal(json_string_value(json_object_get(h, "Idempotency-Key")),
                        "asr-rem5-remediated");
    assert_string_equal(json_string_value(json_object_get(h, "Content-Type")), "application/json");
    assert_string_equal(json_string_value(json_object_get(h, "User-Agent")), "asr/0.1.0");
    assert_null(json_object_get(h, "Authorization"));
    json_t *body = json_loads(json_string_value(json_object_get(r, "body")), 0, NULL);
    assert_non_null(body);
    assert_string_equal(json_string_value(json_object_get(body, "id")), "asr-rem5-remediated");
    assert_string_equal(json_string_value(json_object_get(body, "kind")), "remediated");
    assert_int_equal(json_integer_value(json_object_get(body, "incident")), 12);
    json_decref(body);
    json_decref(recs);
    assert_outbound_empty(f);
}

static void test_send_500(void **state)
{
    struct fx *f = *state;
    struct got g = send_to(f, "/status/500", NULL, 5000, "k-500");
    assert_int_equal(g.rc, ASR_ENET);
    assert_int_equal(g.status, 500);
    assert_has(g.error, "answered 500");
    assert_has(g.error, "the test asked for status 500");
    /* One attempt: nothing here retries. */
    json_t *recs = pys_records(&f->srv);
    assert_int_equal(json_array_size(recs), 1);
    json_decref(recs);
    g = send_to(f, "/status/404", NULL, 5000, "k-404");
    assert_int_equal(g.rc, ASR_ECONFIG);
    assert_int_equal(g.status, 404);
    assert_outbound_empty(f);
}

static void test_send_timeout(void **state)
{
    struct fx *f = *state;
    uint64_t t0 = asr_time_mono_ms();
    struct got g = send_to(f, "/hang", NULL, 700, "k-hang");
    uint64_t took = asr_time_mono_ms() - t0;
    assert_int_equal(g.rc, ASR_ETIMEOUT);
    assert_int_equal(g.status, 0);
    assert_has(g.error, "timed out");
    assert_true(took >= 600 && took < 5000);
    /* The message names the receiver's origin only, never its path. */
    assert_null(strstr(g.error, "/hang"));
    assert_outbound_empty(f);
}

static void test_send_unreachable(void **state)
{
    struct fx *f = *state;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", pys_dead_port());
    struct asr_notify_cfg cfg = {.url = url, .timeout_ms = 3000};
    struct asr_notify_env env = {.post_exe = f->post_exe, .state_dir = f->state};
    json_t *e = sample_event();
    struct got g = {0};
    struct asr_err err = {0};
    assert_int_equal(asr_notify_send(&f->loop, &env, &cfg, e, "k-dead", done_cb, &g, NULL, &err),
                     0);
    json_decref(e);
    assert_true(pys_run_until(&f->loop, &g.done, 20000));
    assert_int_equal(g.rc, ASR_ENET);
    assert_int_equal(g.status, 0);
    assert_has(g.error, "connect");
}

static void test_send_redirect_not_followed(void **state)
{
    struct fx *f = *state;
    struct got g = send_to(f, "/redirect", NULL, 5000, "k-redirect");
    assert_int_equal(g.rc, ASR_ENET);
    assert_int_equal(g.status, 302);
    assert_has(g.error, "redirects are not followed");
    json_t *recs = pys_records(&f->srv);
    assert_int_equal(json_array_size(recs), 1); /* /hook was never asked */
    json_decref(recs);
}

static void test_send_token(void **state)
{
    struct fx *f = *state;
    struct got g = send_to(f, "/auth", TOKEN_VAR, 5000, "k-auth");
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.status, 200);
    json_t *recs = pys_records(&f->srv);
    json_t *r = json_array_get(recs, 0);
    char want[128];
    snprintf(want, sizeof(want), "Bearer %s", f->token);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "headers"), "Authorization")), want);
    assert_null(strstr(json_string_value(json_object_get(r, "body")), f->token));
    json_decref(recs);

    /* A wrong token: 401, and the receiver's echo of it is scrubbed from the message. */
    setenv("ASR_TEST_WRONG_TOKEN", "wrong-token-0123456789", 1);
    g = send_to(f, "/auth", "ASR_TEST_WRONG_TOKEN", 5000, "k-auth2");
    assert_int_equal(g.rc, ASR_ECONFIG);
    assert_int_equal(g.status, 401);
    assert_null(strstr(g.error, "wrong-token-0123456789"));
    assert_has(g.error, "[token]");

    /* An unset variable: refused by the helper, nothing sent. */
    unsetenv("ASR_TEST_UNSET_TOKEN");
    g = send_to(f, "/auth", "ASR_TEST_UNSET_TOKEN", 5000, "k-auth3");
    assert_int_equal(g.rc, ASR_EINVAL);
    assert_has(g.error, "ASR_TEST_UNSET_TOKEN");
    recs = pys_records(&f->srv);
    assert_int_equal(json_array_size(recs), 2);
    json_decref(recs);
}

static void test_send_refused(void **state)
{
    struct fx *f = *state;
    struct asr_notify_env env = {.post_exe = f->post_exe, .state_dir = f->state};
    struct asr_notify_cfg off = {0}, on = {.url = "http://127.0.0.1:1/x", .timeout_ms = 1000};
    json_t *e = sample_event();
    struct got g = {0};
    struct asr_err err = {0};
    assert_int_equal(asr_notify_send(&f->loop, &env, &off, e, "k", done_cb, &g, NULL, &err),
                     ASR_ECONFIG);
    assert_has(err.msg, "notifications are off");
    assert_int_equal(asr_notify_send(&f->loop, &env, &on, e, "a key", done_cb, &g, NULL, &err),
                     ASR_EINVAL);
    assert_int_equal(asr_notify_send(&f->loop, &env, &on, e, "", done_cb, &g, NULL, &err),
                     ASR_EINVAL);
    json_t *arr = json_array();
    assert_int_equal(asr_notify_send(&f->loop, &env, &on, arr, "k", done_cb, &g, NULL, &err),
                     ASR_EINVAL);
    json_decref(arr);
    json_decref(e);
    assert_false(g.done);
    /* A token for plain http to another host is refused by the helper. */
    struct asr_notify_cfg plain = {
        .url = "http://hooks.example.com/x", .token_env = TOKEN_VAR, .timeout_ms = 1000};
    e = sample_event();
    assert_int_equal(asr_notify_send(&f->loop, &env, &plain, e, "k", done_cb, &g, NULL, &err), 0);
    json_decref(e);
    assert_true(pys_run_until(&f->loop, &g.done, 20000));
    assert_int_equal(g.rc, ASR_EINVAL);
    assert_has(g.error, "plain http");
}

static void test_cancel(void **state)
{
    struct fx *f = *state;
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hang", f->srv.port);
    struct asr_notify_cfg cfg = {.url = url, .timeout_ms = 60000};
    struct asr_notify_env env = {.post_exe = f->post_exe, .state_dir = f->state};
    json_t *e = sample_event();
    struct got g = {0};
    struct asr_err err = {0};
    struct asr_notify_op *op = NULL;
    assert_int_equal(asr_notify_send(&f->loop, &env, &cfg, e, "k-cancel", done_cb, &g, &op, &err),
                     0);
    json_decref(e);
    int pid = asr_notify_pid(op);
    assert_true(pid > 0);
    /* Wait until the receiver has the request, then cancel. */
    for (int i = 0; i < 300; i++) {
        json_t *recs = pys_records(&f->srv);
        size_t n = json_array_size(recs);
        json_decref(recs);
        if (n > 0)
            break;
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(20000);
    }
    asr_notify_cancel(op);
    for (int i = 0; i < 100 && kill(pid, 0) == 0; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(20000);
    }
    assert_int_equal(kill(pid, 0), -1);
    assert_false(g.done);
    assert_outbound_empty(f);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_fields),
        cmocka_unit_test(test_event_redacted_and_capped),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_configured),
        cmocka_unit_test_setup_teardown(test_send_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_redirect_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
