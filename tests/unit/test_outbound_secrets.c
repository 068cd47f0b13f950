/*
 * test_outbound_secrets.c - no secret leaves the host in a webhook event or a pull request, and
 * the token never crosses argv, a file or a body.
 *
 * The 3,500 lines of synth_secrets.h (1,100 synthetic secrets in 22 formats, written plain,
 * JSON-escaped, URL-encoded and split across lines; the corpus test_redact.c and
 * test_redact_wire.c use) are put into incident text: the summary, reason and message of
 * webhook events (asr_notify_event), and the title, incident, plan and verification of pull
 * requests (asr_github_pr_text). Every event is sent through the real asr-post helper to
 * tests/webhook_server.py, every pull request to tests/github_server.py, each with a bearer
 * token. Both servers record every request they receive (headers and body); the test reads
 * every byte back, in three views (as sent, its JSON strings decoded, and those decoded again
 * until no JSON escape or percent-encoding is left), and no 10-byte window of any secret's random
 * part may appear in any view in any of its forms (raw, JSON-escaped, URL-encoded, without line
 * breaks). The checker is the one of test_redact_wire.c, reduced.
 *
 * So that the test cannot pass by sending nothing: every event and every pull request must
 * arrive, and each line's tag (the non-secret "wNNNNN" in front of it) must be in what arrived.
 * So that it cannot pass by looking badly: test_checker_catches_unredacted runs the same checker
 * over the unredacted corpus, and it must find every secret.
 *
 * The token: while a helper waits on a receiver that never answers, its /proc/<pid>/cmdline and
 * the request file it was given hold no token; in the records it appears only in the
 * Authorization header, never in a body, a path or a query.
 */
#include "asr/buf.h"
#include "asr/error.h"
#include "asr/fsutil.h"
#include "asr/spawn.h"
#include "execute/github.h"
#include "execute/notify.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdint.h>
#include <strings.h>

#include "pyserver.h"
#include "synth_secrets.h"

#define WEBHOOK_TOKEN_VAR "ASR_TEST_OUT_WEBHOOK_TOKEN"
#define GITHUB_TOKEN_VAR "ASR_TEST_OUT_GITHUB_TOKEN"

/* Raw bytes of lines per field, well below the field's cap after redaction (redaction can grow a
 * line: a short secret becomes a longer marker), so no line is cut and every tag must arrive. */
enum { EV_SUMMARY = 2200, EV_REASON = 450, EV_MESSAGE = 2200 };
enum { PR_SUMMARY = 4400, PR_PLAN = 8800, PR_VERIFY = 2200 };
enum { IN_FLIGHT = 4 };

/* --- the corpus ------------------------------------------------------------------------------ */

struct sec {
    char *distinct;
};

struct item {
    char *line; /* "wNNNNN " + the generator's encoded line */
    int secret;
};

struct corpus {
    struct sec *secs;
    size_t nsecs;
    struct item *items;
    size_t nitems;
};

static struct corpus C;

static void add_item(const char *line, const struct secret *s, int enc, void *arg)
{
    (void)arg;
    if (enc == ENC_PLAIN) {
        C.secs[C.nsecs].distinct = strdup(s->distinct);
        assert_non_null(C.secs[C.nsecs].distinct);
        C.nsecs++;
    }
    struct item *it = &C.items[C.nitems];
    size_t n = strlen(line) + 16;
    it->line = malloc(n);
    assert_non_null(it->line);
    snprintf(it->line, n, "w%05zu %s", C.nitems, line);
    it->secret = (int)C.nsecs - 1;
    C.nitems++;
}

static void corpus_build(void)
{
    if (C.items != NULL)
        return;
    C.secs = calloc(NFORMATS * PER_FORMAT + 1, sizeof(*C.secs));
    C.items = calloc(NFORMATS * PER_FORMAT * NENC, sizeof(*C.items));
    assert_non_null(C.secs);
    assert_non_null(C.items);
    for_each_secret_line(add_item, NULL);
}

/* Lines from *next on, joined by "\n", up to budget bytes (at least one line). */
static char *take(size_t *next, size_t budget)
{
    struct asr_buf b;
    asr_buf_init(&b, 1u << 20);
    while (*next < C.nitems) {
        const char *l = C.items[*next].line;
        if (b.len > 0 && b.len + strlen(l) + 1 > budget)
            break;
        if (b.len > 0)
            assert_int_equal(asr_buf_puts(&b, "\n"), 0);
        assert_int_equal(asr_buf_puts(&b, l), 0);
        (*next)++;
    }
    char *s = asr_buf_steal(&b);
    return s != NULL ? s : strdup("");
}

/* --- the checker (test_redact_wire.c's, reduced) --------------------------------------------- */

enum { WIN = 10, NFORMS = 4 };

struct win {
    uint64_t h;
    uint32_t secret, off;
    uint16_t form, len;
};

static struct {
    char **form;
    struct win *slot;
    size_t mask;
    bool has_len[WIN + 1];
} K;

static uint64_t win_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ n;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h | 1;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* One round of decoding: JSON string escapes and %XX. Returns the new length. */
static size_t decode_round(const char *in, size_t n, char *out)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '%' && i + 2 < n && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            out[j++] = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 2;
        } else if (c == '\\' && i + 5 < n && in[i + 1] == 'u' && hexval(in[i + 2]) >= 0 &&
                   hexval(in[i + 3]) >= 0 && hexval(in[i + 4]) >= 0 && hexval(in[i + 5]) >= 0) {
            unsigned cp = (unsigned)(hexval(in[i + 2]) << 12 | hexval(in[i + 3]) << 8 |
                                     hexval(in[i + 4]) << 4 | hexval(in[i + 5]));
            if (cp < 0x80) {
                out[j++] = (char)cp;
            } else if (cp < 0x800) {
                out[j++] = (char)(0xC0 | cp >> 6);
                out[j++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[j++] = (char)(0xE0 | cp >> 12);
                out[j++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[j++] = (char)(0x80 | (cp & 0x3F));
            }
            i += 5;
        } else if (c == '\\' && i + 1 < n && strchr("\"\\/nrtbf", in[i + 1]) != NULL) {
            char e = in[i + 1];
            out[j++] = e == 'n'   ? '\n'
                       : e == 'r' ? '\r'
                       : e == 't' ? '\t'
                       : e == 'b' ? '\b'
                       : e == 'f' ? '\f'
                                  : e;
            i++;
        } else {
            out[j++] = c;
        }
    }
    out[j] = '\0';
    return j;
}

static void checker_add(uint32_t secret, uint16_t form, const char *text)
{
    size_t n = strlen(text), w = n < WIN ? n : WIN;
    K.has_len[w] = true;
    for (size_t i = 0; i + w <= n; i++) {
        uint64_t h = win_hash(text + i, w);
        size_t k = (size_t)h & K.mask;
        while (K.slot[k].h != 0)
            k = (k + 1) & K.mask;
        K.slot[k] = (struct win){h, secret, (uint32_t)i, form, (uint16_t)w};
    }
}

static void checker_build(void)
{
    if (K.form != NULL)
        return;
    K.form = calloc(C.nsecs * NFORMS, sizeof(char *));
    assert_non_null(K.form);
    size_t windows = 0;
    for (size_t s = 0; s < C.nsecs; s++) {
        const char *d = C.secs[s].distinct;
        size_t n = strlen(d);
        char **f = &K.form[s * NFORMS];
        for (int i = 0; i < NFORMS; i++) {
            f[i] = calloc(6 * n + 1, 1);
            assert_non_null(f[i]);
        }
        memcpy(f[0], d, n);
        json_escape(d, f[1], 6 * n + 1);
        url_encode(d, f[2], 6 * n + 1);
        size_t j = 0;
        for (const char *p = d; *p; p++)
            if (*p != '\n' && *p != '\r')
                f[3][j++] = *p;
        for (int i = 0; i < NFORMS; i++)
            windows += strlen(f[i]);
    }
    size_t cap = 1;
    while (cap < 2 * windows + 16)
        cap <<= 1;
    K.slot = calloc(cap, sizeof(*K.slot));
    assert_non_null(K.slot);
    K.mask = cap - 1;
    for (size_t s = 0; s < C.nsecs; s++)
        for (int i = 0; i < NFORMS; i++)
            checker_add((uint32_t)s, (uint16_t)i, K.form[s * NFORMS + i]);
}

struct scan {
    bool *found;
    size_t hits, printed;
    const char *where;
};

static void scan_view(struct scan *sc, const char *view, size_t n, const char *vname)
{
    for (size_t w = 1; w <= WIN; w++) {
        if (!K.has_len[w])
            continue;
        for (size_t i = 0; i + w <= n; i++) {
            uint64_t h = win_hash(view + i, w);
            for (size_t k = (size_t)h & K.mask; K.slot[k].h != 0; k = (k + 1) & K.mask) {
                const struct win *o = &K.slot[k];
                if (o->h != h || o->len != w ||
                    memcmp(K.form[o->secret * NFORMS + o->form] + o->off, view + i, w) != 0)
                    continue;
                if (!sc->found[o->secret]) {
                    sc->hits++;
                    if (sc->printed++ < 5) {
                        size_t from = i > 40 ? i - 40 : 0, to = i + w + 40 < n ? i + w + 40 : n;
                        print_error("leak in %s (%s view): secret %u: \"%.*s\"\n  around: %.*s\n",
                                    sc->where, vname, o->secret, (int)w, view + i, (int)(to - from),
                                    view + from);
                    }
                }
                sc->found[o->secret] = true;
            }
        }
    }
}

static void strings_of(const json_t *j, struct asr_buf *b)
{
    if (json_is_string(j)) {
        assert_int_equal(asr_buf_append(b, json_string_value(j), json_string_length(j)), 0);
        assert_int_equal(asr_buf_append(b, "\n", 1), 0);
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++)
            strings_of(json_array_get(j, i), b);
    } else if (json_is_object(j)) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            assert_int_equal(asr_buf_puts(b, k), 0);
            assert_int_equal(asr_buf_append(b, "\n", 1), 0);
            strings_of(v, b);
        }
    }
}

/* Scans text in three views: as is; its JSON strings decoded (when it is JSON); decoded again
 * until nothing changes. The decoded view is appended to seen (for the tag check). */
static void check_text(struct scan *sc, const char *text, size_t n, struct asr_buf *seen)
{
    scan_view(sc, text, n, "sent");
    struct asr_buf b;
    asr_buf_init(&b, 64u << 20);
    json_t *j = json_loadb(text, n, 0, NULL);
    if (j != NULL)
        strings_of(j, &b);
    else
        assert_int_equal(asr_buf_append(&b, text, n), 0);
    json_decref(j);
    scan_view(sc, b.data != NULL ? b.data : "", b.len, "decoded");
    if (seen != NULL && b.len > 0)
        assert_int_equal(asr_buf_append(seen, b.data, b.len), 0);
    char *cur = malloc(b.len + 1), *next = malloc(b.len + 1);
    assert_non_null(cur);
    assert_non_null(next);
    memcpy(cur, b.data != NULL ? b.data : "", b.len + 1);
    size_t len = b.len;
    for (int round = 0; round < 8; round++) {
        size_t l2 = decode_round(cur, len, next);
        bool same = l2 == len && memcmp(cur, next, len) == 0;
        char *t = cur;
        cur = next;
        next = t;
        len = l2;
        if (same)
            break;
    }
    scan_view(sc, cur, len, "fully decoded");
    free(cur);
    free(next);
    asr_buf_free(&b);
}

/* --- the servers ----------------------------------------------------------------------------- */

static struct {
    struct pyserver hook, gh;
    char dir[64], state[128], hook_rec[128], gh_rec[128], post_exe[4096];
    char hook_token[64], gh_token[64];
    uv_loop_t loop;
} S;

static int setup(void **state)
{
    (void)state;
    if (!pys_helper("asr-post", S.post_exe, sizeof(S.post_exe))) {
        fprintf(stderr, "test_outbound_secrets: asr-post not found next to ASR_BIN\n");
        return -1;
    }
    snprintf(S.dir, sizeof(S.dir), "/tmp/asr-outsec-XXXXXX");
    if (mkdtemp(S.dir) == NULL)
        return -1;
    snprintf(S.state, sizeof(S.state), "%s/state", S.dir);
    snprintf(S.hook_rec, sizeof(S.hook_rec), "%s/webhook.jsonl", S.dir);
    snprintf(S.gh_rec, sizeof(S.gh_rec), "%s/github.jsonl", S.dir);
    snprintf(S.hook_token, sizeof(S.hook_token), "whsec%08lx%08lxZ", (unsigned long)getpid(),
             (unsigned long)asr_time_mono_us());
    snprintf(S.gh_token, sizeof(S.gh_token), "ghp_out%08lx%08lxQ", (unsigned long)getpid(),
             (unsigned long)asr_time_mono_us());
    setenv(WEBHOOK_TOKEN_VAR, S.hook_token, 1);
    setenv(GITHUB_TOKEN_VAR, S.gh_token, 1);
    char v1[128], v2[128];
    snprintf(v1, sizeof(v1), "WEBHOOK_TOKEN=%s", S.hook_token);
    snprintf(v2, sizeof(v2), "GITHUB_TEST_TOKEN=%s", S.gh_token);
    char *e1[] = {v1, NULL}, *e2[] = {v2, "GITHUB_TEST_REPO=acme/shop", NULL};
    if (pys_start(&S.hook, "webhook_server.py", "WEBHOOK_RECORD", S.hook_rec, e1) != 0 ||
        pys_start(&S.gh, "github_server.py", "GITHUB_RECORD", S.gh_rec, e2) != 0)
        return -1;
    uv_loop_init(&S.loop);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pys_loop_close(&S.loop);
    pys_stop(&S.hook);
    pys_stop(&S.gh);
    if (getenv("ASR_OUTSEC_KEEP") != NULL)
        fprintf(stderr, "test_outbound_secrets: kept %s\n", S.dir);
    else
        asr_rmtree(S.dir);
    return 0;
}

/* --- sending --------------------------------------------------------------------------------- */

static int in_flight, sent_ok, sent_failed;
static char last_error[512];

static void notify_cb(const struct asr_notify_result *r, void *data)
{
    (void)data;
    in_flight--;
    if (r->rc == 0)
        sent_ok++;
    else {
        sent_failed++;
        snprintf(last_error, sizeof(last_error), "%s", r->error);
    }
}

static void github_cb(const struct asr_github_pr_result *r, void *data)
{
    (void)data;
    in_flight--;
    if (r->rc == 0 && !r->existed)
        sent_ok++;
    else {
        sent_failed++;
        snprintf(last_error, sizeof(last_error), "%s", r->rc != 0 ? r->error : "existed");
    }
}

static void wait_room(int room)
{
    uint64_t deadline = asr_time_mono_ms() + 120000;
    while (in_flight > room && asr_time_mono_ms() < deadline)
        uv_run(&S.loop, UV_RUN_ONCE);
    assert_true(in_flight <= room);
}

/* Every item, as webhook events; returns how many were sent. */
static size_t send_events(void)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", S.hook.port);
    struct asr_notify_cfg cfg = {.url = url, .token_env = WEBHOOK_TOKEN_VAR, .timeout_ms = 20000};
    struct asr_notify_env env = {.post_exe = S.post_exe, .state_dir = S.state};
    size_t next = 0, n = 0;
    while (next < C.nitems) {
        char *summary = take(&next, EV_SUMMARY);
        char *reason = next < C.nitems ? take(&next, EV_REASON) : NULL;
        char *message = next < C.nitems ? take(&next, EV_MESSAGE) : NULL;
        struct asr_notify_info in = {.kind = (enum asr_notify_kind)(n % ASR_NOTIFY_KINDS),
                                     .incident = (int64_t)n + 1,
                                     .service = "shop",
                                     .signature = "FAULT_SECRET_LEAK",
                                     .summary = summary,
                                     .reason = reason,
                                     .message = message,
                                     .mttr_ms = -1};
        json_t *e = asr_notify_event(&in);
        assert_non_null(e);
        char key[64];
        assert_int_equal(asr_notify_key(in.kind, in.incident, 0, -1, key, sizeof(key)), 0);
        wait_room(IN_FLIGHT - 1);
        struct asr_err err = {0};
        if (asr_notify_send(&S.loop, &env, &cfg, e, key, notify_cb, NULL, NULL, &err) != 0)
            fail_msg("asr_notify_send: %s", err.msg);
        in_flight++;
        json_decref(e);
        free(summary);
        free(reason);
        free(message);
        n++;
    }
    wait_room(0);
    return n;
}

/* Every item, as pull requests (one branch each); returns how many were opened. The title of
 * each holds a whole line too: it is cut to one line of 72 bytes, after redaction. */
static size_t send_prs(void)
{
    char api[128];
    snprintf(api, sizeof(api), "http://127.0.0.1:%d", S.gh.port);
    size_t next = 0, n = 0;
    while (next < C.nitems) {
        const char *title_line = C.items[next].line;
        char *summary = take(&next, PR_SUMMARY);
        char *plan = next < C.nitems ? take(&next, PR_PLAN) : NULL;
        char *verify = next < C.nitems ? take(&next, PR_VERIFY) : NULL;
        struct asr_github_pr_info in = {.service = "shop",
                                        .incident = (int64_t)n + 1,
                                        .plan = (int64_t)n + 100,
                                        .strategy = "llm",
                                        .title = title_line,
                                        .summary = summary,
                                        .plan_text = plan,
                                        .verification = verify};
        char *title = NULL, *body = NULL;
        assert_int_equal(asr_github_pr_text(&in, &title, &body), 0);
        char branch[64];
        snprintf(branch, sizeof(branch), "asr/incident-%zu", n + 1);
        struct asr_github_pr_req q = {.post_exe = S.post_exe,
                                      .state_dir = S.state,
                                      .api_url = api,
                                      .repo = "acme/shop",
                                      .token_env = GITHUB_TOKEN_VAR,
                                      .branch = branch,
                                      .title = title,
                                      .body = body,
                                      .timeout_ms = 20000};
        wait_room(IN_FLIGHT - 1);
        struct asr_err err = {0};
        if (asr_github_open_pr(&S.loop, &q, github_cb, NULL, NULL, &err) != 0)
            fail_msg("asr_github_open_pr: %s", err.msg);
        in_flight++;
        free(title);
        free(body);
        free(summary);
        free(plan);
        free(verify);
        n++;
    }
    wait_room(0);
    return n;
}

/* Scans every recorded request of srv; the decoded bodies go to seen. Returns the requests. */
static size_t check_records(struct pyserver *srv, struct scan *sc, struct asr_buf *seen,
                            const char *token)
{
    json_t *recs = pys_records(srv);
    size_t n = json_array_size(recs);
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(recs, i);
        const char *body = json_string_value(json_object_get(r, "body"));
        assert_non_null(body);
        check_text(sc, body, strlen(body), seen);
        /* Every header, the path and the query too. */
        json_t *h = json_object_get(r, "headers");
        const char *k;
        json_t *v;
        json_object_foreach(h, k, v)
        {
            const char *s = json_string_value(v);
            check_text(sc, s, strlen(s), NULL);
            if (strcasecmp(k, "Authorization") != 0)
                assert_null(strstr(s, token));
        }
        const char *path = json_string_value(json_object_get(r, "path"));
        check_text(sc, path, strlen(path), NULL);
        assert_null(strstr(path, token));
        const char *query = json_string_value(json_object_get(r, "query"));
        if (query != NULL) {
            check_text(sc, query, strlen(query), NULL);
            assert_null(strstr(query, token));
        }
        /* The token is in no body. */
        assert_null(strstr(body, token));
    }
    json_decref(recs);
    return n;
}

static void test_no_secret_on_the_wire(void **state)
{
    (void)state;
    corpus_build();
    checker_build();
    size_t events = send_events();
    size_t prs = send_prs();
    if (sent_failed > 0)
        fail_msg("%d sends failed; last: %s", sent_failed, last_error);
    assert_int_equal((size_t)sent_ok, events + prs);
    print_message("sent %zu events and %zu pull requests holding %zu lines, %zu secrets\n", events,
                  prs, C.nitems, C.nsecs);

    struct scan sc = {.found = calloc(C.nsecs, sizeof(bool)), .where = "webhook"};
    struct asr_buf seen;
    asr_buf_init(&seen, 256u << 20);
    size_t hook_reqs = check_records(&S.hook, &sc, &seen, S.hook_token);
    sc.where = "github";
    size_t gh_reqs = check_records(&S.gh, &sc, &seen, S.gh_token);
    assert_int_equal(hook_reqs, events);
    assert_int_equal(gh_reqs, 2 * prs); /* a list and a create each */
    if (sc.hits > 0)
        fail_msg("%zu of %zu secrets reached a server", sc.hits, C.nsecs);

    /* Everything arrived: every line's tag is in what the servers got (twice: event and PR),
     * except those that were only a PR's title. */
    const char *all = asr_buf_cstr(&seen);
    size_t missing = 0;
    for (size_t i = 0; i < C.nitems; i++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "w%05zu ", i);
        if (strstr(all, tag) == NULL && missing++ < 5)
            print_error("line %zu's tag did not arrive\n", i);
    }
    assert_int_equal(missing, 0);
    free(sc.found);
    asr_buf_free(&seen);
}

/* The negative control: the same checker over the unredacted corpus finds every secret. */
static void test_checker_catches_unredacted(void **state)
{
    (void)state;
    corpus_build();
    checker_build();
    struct scan sc = {.found = calloc(C.nsecs, sizeof(bool)), .where = "control", .printed = 99};
    for (size_t i = 0; i < C.nitems; i++) {
        json_t *j = json_pack("{s:s}", "summary", C.items[i].line);
        char *text = json_dumps(j, JSON_COMPACT);
        check_text(&sc, text, strlen(text), NULL);
        free(text);
        json_decref(j);
    }
    assert_int_equal(sc.hits, C.nsecs);
    free(sc.found);
}

/* The token is read by the helper from its environment: it is in no argv and no request file. */
static void test_token_not_in_argv_or_files(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hang", S.hook.port);
    struct asr_notify_cfg cfg = {.url = url, .token_env = WEBHOOK_TOKEN_VAR, .timeout_ms = 60000};
    struct asr_notify_env env = {.post_exe = S.post_exe, .state_dir = S.state};
    struct asr_notify_info in = {.kind = ASR_NOTIFY_ESCALATED, .incident = 1, .mttr_ms = -1};
    json_t *e = asr_notify_event(&in);
    struct asr_notify_op *op = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_notify_send(&S.loop, &env, &cfg, e, "k-token", notify_cb, NULL, &op, &err),
                     0);
    json_decref(e);
    /* Wait until the receiver holds the request: the helper is then surely past its start. */
    for (int i = 0; i < 500; i++) {
        json_t *recs = pys_records(&S.hook);
        size_t n = json_array_size(recs);
        json_decref(recs);
        if (n > 0)
            break;
        uv_run(&S.loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    int pid = asr_notify_pid(op);
    assert_true(pid > 0);
    char path[128];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    char cmd[4096];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(cmd, 1, sizeof(cmd) - 1, f);
    fclose(f);
    cmd[n] = '\0';
    assert_true(n > 0);
    assert_non_null(strstr(cmd, "asr-post")); /* it is the helper */
    assert_false(pys_file_has(path, S.hook_token, strlen(S.hook_token)));
    /* Its one argument is the request file: no token in it either. */
    const char *arg = cmd + strlen(cmd) + 1;
    assert_true(arg < cmd + n);
    assert_non_null(strstr(arg, "/outbound/post-"));
    assert_true(pys_file_has(arg, "token_env", 9));
    assert_false(pys_file_has(arg, S.hook_token, strlen(S.hook_token)));
    /* The token is what the receiver got in its Authorization header. */
    json_t *recs = pys_records(&S.hook);
    json_t *h = json_object_get(json_array_get(recs, json_array_size(recs) - 1), "headers");
    char want[128];
    snprintf(want, sizeof(want), "Bearer %s", S.hook_token);
    assert_string_equal(json_string_value(json_object_get(h, "Authorization")), want);
    json_decref(recs);
    asr_notify_cancel(op);

    /* The same for a GitHub request. */
    char api[128], ctl[512], ctlpath[256];
    snprintf(api, sizeof(api), "http://127.0.0.1:%d", S.gh.port);
    snprintf(ctl, sizeof(ctl), "{\"url\": \"%s/_control\", \"body\": \"{\\\"hang\\\": true}\"}",
             api);
    snprintf(ctlpath, sizeof(ctlpath), "%s/control.json", S.dir);
    f = fopen(ctlpath, "w");
    fputs(ctl, f);
    fclose(f);
    char *argv[] = {S.post_exe, ctlpath, NULL};
    int status = -1;
    assert_int_equal(asr_proc_run_sync(argv, NULL, NULL, 10000, 4096, &status, NULL, &err), 0);
    assert_int_equal(status, 0);
    struct asr_github_pr_req q = {.post_exe = S.post_exe,
                                  .state_dir = S.state,
                                  .api_url = api,
                                  .repo = "acme/shop",
                                  .token_env = GITHUB_TOKEN_VAR,
                                  .branch = "asr/incident-999",
                                  .title = "fix(shop): t",
                                  .body = "b",
                                  .timeout_ms = 60000};
    struct asr_github_op *gop = NULL;
    assert_int_equal(asr_github_open_pr(&S.loop, &q, github_cb, NULL, &gop, &err), 0);
    int gpid = 0;
    for (int i = 0; i < 500 && gpid == 0; i++) {
        uv_run(&S.loop, UV_RUN_NOWAIT);
        gpid = asr_github_pid(gop);
        usleep(10000);
    }
    assert_true(gpid > 0);
    usleep(200000);
    snprintf(path, sizeof(path), "/proc/%d/cmdline", gpid);
    assert_false(pys_file_has(path, S.gh_token, strlen(S.gh_token)));
    f = fopen(path, "rb");
    assert_non_null(f);
    n = fread(cmd, 1, sizeof(cmd) - 1, f);
    fclose(f);
    cmd[n] = '\0';
    arg = cmd + strlen(cmd) + 1;
    assert_true(arg < cmd + n);
    assert_false(pys_file_has(arg, S.gh_token, strlen(S.gh_token)));
    asr_github_cancel(gop);
    /* Nothing is left in the outbound directory. */
    char d[256];
    snprintf(d, sizeof(d), "%s/outbound", S.state);
    DIR *dir = opendir(d);
    assert_non_null(dir);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(dir)) != NULL)
        files += de->d_name[0] != '.';
    closedir(dir);
    assert_int_equal(files, 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_secret_on_the_wire),
        cmocka_unit_test(test_checker_catches_unredacted),
        cmocka_unit_test(test_token_not_in_argv_or_files),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
