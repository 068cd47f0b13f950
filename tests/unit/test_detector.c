/*
 * test_detector.c - unit tests of the detector (src/detect/detector.c).
 *
 * The detector runs offline (no loop: the tests call asr_detector_flush() themselves) on a real
 * SQLite file in a fresh temporary directory, with a config parsed from YAML text. Every
 * expectation is read back from the store, as the CLI and the planner would read it. Lines are
 * stamped with the wall clock (the detector compares their time with the time it resolved an
 * incident), or with a later time where a test needs time to pass.
 */
#include "asr/config.h"
#include "asr/incident.h"
#include "asr/store.h"
#include "asr/timeutil.h"
#include "detect/detector.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_TRACKS 4096 /* detector.c: fingerprints remembered before faults fold into overflow */

/* The services of every test; DETECTION is spliced in front. */
#define SERVICES                                                                                   \
    "services:\n"                                                                                  \
    "  - name: shop\n"                                                                             \
    "    repo: ./app\n"                                                                            \
    "    start: [./shop]\n"                                                                        \
    "    listen: 127.0.0.1:8080\n"                                                                 \
    "    signatures:\n"                                                                            \
    "      - id: FAULT_ROUTE\n"                                                                    \
    "        pattern: 'fault route=(?<route>\\S+) code=(?<code>\\d+)'\n"                           \
    "        severity: critical\n"                                                                 \
    "        dedupe: [route]\n"                                                                    \
    "      - id: MULTI\n"                                                                          \
    "        pattern: 'multi a=(?<a>\\w+) b=(?<b>\\w+)'\n"                                         \
    "        dedupe: [b, a]\n"                                                                     \
    "      - {id: PANIC, pattern: 'panic: (?<what>.*)'}\n"                                         \
    "  - name: cart\n"                                                                             \
    "    repo: ./cart\n"                                                                           \
    "    start: [./cart]\n"                                                                        \
    "    listen: 127.0.0.1:8081\n"

struct fx {
    char dir[256];
    char db[512];
    struct asr_config *cfg;
    struct asr_store *st;
    struct asr_detector *d;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 200)
        tmp = "/tmp";
    snprintf(f->dir, sizeof(f->dir), "%s/asr-test-detector-XXXXXX", tmp);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/asr.db", f->dir);
    struct asr_err err = {0};
    int rc = asr_store_open_file(f->db, &f->st, &err);
    if (rc != 0)
        fail_msg("asr_store_open_file: %s", asr_err_msg(&err, rc));
    *state = f;
    return 0;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    asr_detector_destroy(f->d);
    asr_store_close(f->st);
    asr_config_free(f->cfg);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------- */

/* Parses "detection: {DET}" + SERVICES into f->cfg. */
static void parse_cfg(struct fx *f, const char *det)
{
    char text[4096];
    snprintf(text, sizeof(text), "detection: {%s}\n%s", det, SERVICES);
    struct asr_err err = {0};
    int rc = asr_config_parse("t.yaml", "/tmp", text, strlen(text), false, &f->cfg, &err);
    if (rc != 0)
        fail_msg("config: %s", asr_err_msg(&err, rc));
}

static void create_det(struct fx *f, bool persist)
{
    struct asr_detector_opts o = {.cfg = f->cfg, .store = f->st, .persist_templates = persist};
    struct asr_err err = {0};
    int rc = asr_detector_create(&o, &f->d, &err);
    if (rc != 0)
        fail_msg("asr_detector_create: %s", asr_err_msg(&err, rc));
}

/* A config with these detection settings and a detector on it. */
static void start(struct fx *f, const char *det)
{
    parse_cfg(f, det);
    create_det(f, false);
}

static void feed_full(struct fx *f, const char *service, const char *source, const char *text,
                      int64_t at_ms)
{
    struct asr_line ln = {.service = service,
                          .source = source,
                          .slot = "blue",
                          .release = "0123456789abcdef0123456789abcdef01234567",
                          .text = text,
                          .len = strlen(text),
                          .at_ms = at_ms != 0 ? at_ms : asr_time_wall_ms(),
                          .received_us = asr_time_wall_ms() * 1000};
    struct asr_err err = {0};
    int rc = asr_detector_line(f->d, &ln, &err);
    if (rc != 0)
        fail_msg("asr_detector_line(%s): %s", text, asr_err_msg(&err, rc));
}

/* A line of shop, stamped now. */
static void feed(struct fx *f, const char *source, const char *text)
{
    feed_full(f, "shop", source, text, 0);
}

static void flush(struct fx *f, bool final)
{
    struct asr_err err = {0};
    int rc = asr_detector_flush(f->d, final, &err);
    if (rc != 0)
        fail_msg("flush: %s", asr_err_msg(&err, rc));
}

static void resolve(struct fx *f, int64_t id)
{
    struct asr_err err = {0};
    int rc = asr_detector_resolve(f->d, id, "test", &err);
    if (rc != 0)
        fail_msg("resolve: %s", asr_err_msg(&err, rc));
}

/* Every incident, newest first (the caller frees). */
static struct asr_incident *list_all(struct fx *f, size_t *n)
{
    struct asr_incident *v = NULL;
    struct asr_err err = {0};
    int rc = asr_store_incident_list(f->st, NULL, NULL, 0, &v, n, &err);
    if (rc != 0)
        fail_msg("list: %s", asr_err_msg(&err, rc));
    return v;
}

static size_t n_incidents(struct fx *f)
{
    size_t n = 0;
    struct asr_incident *v = list_all(f, &n);
    asr_incident_list_free(v, n);
    return n;
}

/* The newest incident with fingerprint fp into *out; fails the test if there is none. */
static void get_fp(struct fx *f, const char *fp, struct asr_incident *out)
{
    size_t n = 0;
    struct asr_incident *v = list_all(f, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].fingerprint, fp) == 0) {
            *out = v[i];
            memset(&v[i], 0, sizeof(v[i]));
            asr_incident_list_free(v, n);
            return;
        }
    asr_incident_list_free(v, n);
    fail_msg("no incident with fingerprint %s", fp);
}

static size_t n_with_fp(struct fx *f, const char *fp)
{
    size_t n = 0, k = 0;
    struct asr_incident *v = list_all(f, &n);
    for (size_t i = 0; i < n; i++)
        k += strcmp(v[i].fingerprint, fp) == 0;
    asr_incident_list_free(v, n);
    return k;
}

static void get_id(struct fx *f, int64_t id, struct asr_incident *out)
{
    struct asr_err err = {0};
    int rc = asr_store_incident_get(f->st, id, out, &err);
    if (rc != 0)
        fail_msg("get: %s", asr_err_msg(&err, rc));
}

/* How many notes of this kind the incident has. */
static size_t n_notes(struct fx *f, int64_t id, const char *kind)
{
    struct asr_incident_note *v = NULL;
    size_t n = 0, k = 0;
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_notes(f->st, id, &v, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        k += strcmp(v[i].kind, kind) == 0;
    asr_incident_notes_free(v, n);
    return k;
}

/* Checks that the JSON array text holds exactly the given strings (NULL-terminated). */
static void assert_lines(const char *json, ...)
{
    json_t *a = json_loads(json, 0, NULL);
    assert_non_null(a);
    assert_true(json_is_array(a));
    va_list ap;
    va_start(ap, json);
    size_t i = 0;
    for (const char *s; (s = va_arg(ap, const char *)) != NULL; i++) {
        if (i >= json_array_size(a))
            fail_msg("%s: missing element %zu (%s)", json, i, s);
        assert_string_equal(json_string_value(json_array_get(a, i)), s);
    }
    va_end(ap);
    if (json_array_size(a) != i)
        fail_msg("%s: %zu elements, expected %zu", json, json_array_size(a), i);
    json_decref(a);
}

/* ---- signatures ---------------------------------------------------------------------------- */

/* A hit is committed before the call returns, with its captures and its fingerprint. */
static void test_signature_opens_at_once(void **state)
{
    struct fx *f = *state;
    start(f, "context_before: 3");
    feed(f, "stderr", "GET /pay 200");
    feed(f, "stderr", "fault route=/pay code=500");
    /* No flush: the row must already be there. */
    size_t n = 0;
    struct asr_incident *v = list_all(f, &n);
    assert_int_equal(n, 1);
    struct asr_incident *inc = &v[0];
    assert_string_equal(inc->fingerprint, "shop:FAULT_ROUTE:route=/pay");
    assert_string_equal(inc->service, "shop");
    assert_string_equal(inc->kind, "signature");
    assert_string_equal(inc->signature, "FAULT_ROUTE");
    assert_string_equal(inc->severity, "critical");
    assert_string_equal(inc->source, "stderr");
    assert_string_equal(inc->slot, "blue");
    assert_string_equal(inc->release, "0123456789abcdef0123456789abcdef01234567");
    assert_string_equal(inc->line, "fault route=/pay code=500");
    assert_string_equal(inc->status, ASR_INCIDENT_OPEN);
    assert_int_equal(inc->count, 1);
    assert_int_equal(inc->parent_id, 0);
    assert_true(inc->template_id > 0);
    assert_lines(inc->context_before, "GET /pay 200", NULL);
    json_t *fields = json_loads(inc->fields, 0, NULL);
    assert_non_null(fields);
    assert_int_equal(json_object_size(fields), 2);
    assert_string_equal(json_string_value(json_object_get(fields, "route")), "/pay");
    assert_string_equal(json_string_value(json_object_get(fields, "code")), "500");
    json_decref(fields);
    assert_int_equal(n_notes(f, inc->id, "opened"), 1);
    asr_incident_list_free(v, n);

    /* Several dedupe fields: in the listed order. No dedupe: one fingerprint for all hits. */
    feed(f, "stderr", "multi a=one b=two");
    assert_int_equal(n_with_fp(f, "shop:MULTI:b=two:a=one"), 1);
    feed(f, "stderr", "panic: nil map");
    feed(f, "stderr", "panic: index out of range");
    assert_int_equal(n_with_fp(f, "shop:PANIC"), 1);
    struct asr_incident p;
    get_fp(f, "shop:PANIC", &p);
    assert_string_equal(p.severity, "error"); /* the default */
    flush(f, false);
    asr_incident_free(&p);
    get_fp(f, "shop:PANIC", &p);
    assert_int_equal(p.count, 2);
    asr_incident_free(&p);
    assert_int_equal(n_incidents(f), 3);
}

/* The same dedupe values are absorbed; other values open incidents grouped under the first. */
static void test_dedupe_and_grouping(void **state)
{
    struct fx *f = *state;
    start(f, "group_window_ms: 30s");
    feed(f, "stderr", "fault route=/a code=500");
    feed(f, "stderr", "fault route=/a code=501"); /* code is no dedupe field */
    feed(f, "stdout", "fault route=/a code=502");
    assert_int_equal(n_incidents(f), 1);
    feed(f, "stderr", "fault route=/b code=500");
    feed(f, "stderr", "fault route=/c code=500");
    assert_int_equal(n_incidents(f), 3);
    flush(f, false);
    struct asr_incident a, b, c;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    get_fp(f, "shop:FAULT_ROUTE:route=/b", &b);
    get_fp(f, "shop:FAULT_ROUTE:route=/c", &c);
    assert_int_equal(a.count, 3);
    assert_int_equal(b.count, 1);
    assert_int_equal(a.parent_id, 0);
    assert_int_equal(b.parent_id, a.id);
    assert_int_equal(c.parent_id, a.id);
    assert_int_equal(n_notes(f, a.id, "grouped"), 2);
    assert_true(a.last_seen >= a.first_seen);
    asr_incident_free(&a);
    asr_incident_free(&b);
    asr_incident_free(&c);

    /* Another service is another group. */
    feed_full(f, "cart", "stderr", "ERROR cart exploded", 0);
    size_t n = 0;
    struct asr_incident *v = list_all(f, &n);
    assert_int_equal(n, 4);
    assert_string_equal(v[0].service, "cart");
    assert_int_equal(v[0].parent_id, 0);
    asr_incident_list_free(v, n);
}

/* group_window_ms: 0s turns grouping off, even for faults in the same millisecond. */
static void test_no_grouping_window_zero(void **state)
{
    struct fx *f = *state;
    start(f, "group_window_ms: 0s");
    int64_t t = asr_time_wall_ms();
    feed_full(f, "shop", "stderr", "fault route=/a code=500", t);
    feed_full(f, "shop", "stderr", "fault route=/b code=500", t + 1);
    feed_full(f, "shop", "stderr", "fault route=/c code=500", t + 1);
    size_t n = 0;
    struct asr_incident *v = list_all(f, &n);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(v[i].parent_id, 0);
    asr_incident_list_free(v, n);
}

/* Outside the window (measured from the group's latest incident) a new group starts. */
static void test_grouping_window_expires(void **state)
{
    struct fx *f = *state;
    start(f, "group_window_ms: 1s");
    int64_t t = asr_time_wall_ms();
    feed_full(f, "shop", "stderr", "fault route=/a code=500", t);
    feed_full(f, "shop", "stderr", "fault route=/b code=500", t + 800);
    feed_full(f, "shop", "stderr", "fault route=/c code=500", t + 5000);
    struct asr_incident a, b, c;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    get_fp(f, "shop:FAULT_ROUTE:route=/b", &b);
    get_fp(f, "shop:FAULT_ROUTE:route=/c", &c);
    assert_int_equal(b.parent_id, a.id);
    assert_int_equal(c.parent_id, 0);
    asr_incident_free(&a);
    asr_incident_free(&b);
    asr_incident_free(&c);
}

/* ---- context ------------------------------------------------------------------------------- */

static void test_context_before_same_source(void **state)
{
    struct fx *f = *state;
    start(f, "context_before: 3");
    feed(f, "stdout", "o1");
    feed(f, "stderr", "e1");
    feed(f, "stderr", "e2");
    feed(f, "stdout", "o2");
    feed(f, "stderr", "e3");
    feed(f, "stderr", "e4");
    feed(f, "file:/var/log/shop.log", "f1");
    feed_full(f, "cart", "stderr", "c1", 0);
    feed(f, "stderr", "fault route=/a code=500");
    struct asr_incident a;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_lines(a.context_before, "e2", "e3", "e4", NULL);
    asr_incident_free(&a);
    /* The fault line itself becomes context for the next one. */
    feed(f, "stdout", "fault route=/b code=500");
    get_fp(f, "shop:FAULT_ROUTE:route=/b", &a);
    assert_lines(a.context_before, "o1", "o2", NULL);
    asr_incident_free(&a);
}

static void test_context_after(void **state)
{
    struct fx *f = *state;
    start(f, "context_after: 2, context_wait_ms: 60000");
    feed(f, "stderr", "fault route=/a code=500");
    feed(f, "stdout", "other source");
    feed(f, "stderr", "a1");
    struct asr_incident a;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_false(a.context_done);
    asr_incident_free(&a);
    feed(f, "stderr", "a2");
    feed(f, "stderr", "a3");
    flush(f, false);
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_lines(a.context_after, "a1", "a2", NULL);
    assert_true(a.context_done);
    json_t *o = asr_incident_json(&a, NULL, 0);
    assert_true(json_is_true(json_object_get(o, "context_complete")));
    json_decref(o);
    asr_incident_free(&a);
}

/* Fewer lines than context_after: a final flush completes the incident with what it has. */
static void test_context_after_final_flush(void **state)
{
    struct fx *f = *state;
    start(f, "context_after: 5, context_wait_ms: 60000");
    feed(f, "stderr", "fault route=/a code=500");
    feed(f, "stderr", "a1");
    flush(f, false);
    struct asr_incident a;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_false(a.context_done);
    asr_incident_free(&a);
    flush(f, true);
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_lines(a.context_after, "a1", NULL);
    assert_true(a.context_done);
    asr_incident_free(&a);
    /* Once complete it takes no more lines. */
    feed(f, "stderr", "a2");
    flush(f, true);
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_lines(a.context_after, "a1", NULL);
    asr_incident_free(&a);
}

/* The wait for context_after is measured on the wall clock, also for a line whose time is an
 * event time in the past (CloudWatch). */
static void test_context_after_event_time(void **state)
{
    struct fx *f = *state;
    start(f, "context_after: 2, context_wait_ms: 2000");
    int64_t old = asr_time_wall_ms() - 3600 * 1000;
    feed_full(f, "shop", "cloudwatch:g/s", "fault route=/a code=500", old);
    feed_full(f, "shop", "cloudwatch:g/s", "a1", old + 1);
    feed_full(f, "shop", "cloudwatch:g/s", "a2", old + 2);
    flush(f, false);
    struct asr_incident a;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_lines(a.context_after, "a1", "a2", NULL);
    assert_true(a.context_done);
    asr_incident_free(&a);
}

/* ---- verification -------------------------------------------------------------------------- */

static void test_verification(void **state)
{
    struct fx *f = *state;
    start(f, "");
    feed(f, "stderr", "fault route=/a code=500 verification=1");
    feed(f, "stderr", "ERROR probe failed verification=1");
    flush(f, true);
    assert_int_equal(n_incidents(f), 0);
    feed(f, "stderr", "fault route=/a code=500");
    feed(f, "stderr", "fault route=/a code=500 verification=1");
    feed(f, "stderr", "fault route=/a code=503 verification=1");
    feed(f, "stderr", "fault route=/b code=500 verification=1"); /* no incident /b */
    flush(f, false);
    assert_int_equal(n_incidents(f), 1);
    struct asr_incident a;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_int_equal(a.count, 1);
    assert_int_equal(a.verifications, 2);
    assert_int_equal(n_notes(f, a.id, "verification"), 2);
    asr_incident_free(&a);
    struct asr_detector_stats s;
    asr_detector_stats(f->d, &s);
    assert_int_equal(s.verifications, 2);
    assert_int_equal(s.opened, 1);
}

/* ---- generic detectors --------------------------------------------------------------------- */

static void test_generic_novel_and_absorbed(void **state)
{
    struct fx *f = *state;
    start(f, "rate_jump: 2");
    feed(f, "stderr", "ERROR db timeout after 30s on shard 4");
    size_t n = 0;
    struct asr_incident *v = list_all(f, &n);
    assert_int_equal(n, 1);
    char fp[128];
    snprintf(fp, sizeof(fp), "shop:template:%lld", (long long)v[0].template_id);
    assert_true(v[0].template_id > 0);
    assert_string_equal(v[0].fingerprint, fp);
    assert_string_equal(v[0].kind, "generic");
    assert_string_equal(v[0].signature, "generic:error");
    assert_string_equal(v[0].severity, "error");
    assert_non_null(v[0].template);
    assert_string_equal(v[0].fields, "{}");
    int64_t id = v[0].id;
    asr_incident_list_free(v, n);

    feed(f, "stderr", "ERROR db timeout after 45s on shard 7");
    flush(f, false);
    assert_int_equal(n_incidents(f), 1);
    struct asr_incident a;
    get_id(f, id, &a);
    assert_int_equal(a.count, 2);
    asr_incident_free(&a);

    /* A template never flagged before is a new incident. */
    feed(f, "stderr", "FATAL config file missing");
    assert_int_equal(n_incidents(f), 2);
    v = list_all(f, &n);
    assert_string_equal(v[0].signature, "generic:fatal");
    assert_string_equal(v[0].severity, "critical");
    assert_true(v[0].template_id != 0 && v[0].template_id != v[1].template_id);
    asr_incident_list_free(v, n);
}

/* After resolve and the cooldown, a known error template reopens only when its rate jumps. */
static void test_generic_known_template_rate_jump(void **state)
{
    struct fx *f = *state;
    start(f, "rate_jump: 2, cooldown_ms: 0s");
    int64_t t0 = asr_time_wall_ms();
    feed_full(f, "shop", "stderr", "ERROR db timeout after 30s", t0);
    feed_full(f, "shop", "stderr", "ERROR db timeout after 31s", t0); /* absorbed: 2 in bucket */
    assert_int_equal(n_incidents(f), 1);
    struct asr_incident a;
    get_fp(f, "shop:template:1", &a);
    int64_t first = a.id;
    asr_incident_free(&a);
    resolve(f, first);
    /* The bucket of t0 has had its jump: known lines there open nothing. */
    int64_t t1 = asr_time_wall_ms();
    for (int i = 0; i < 8; i++)
        feed_full(f, "shop", "stderr", "ERROR db timeout after 32s", t1);
    flush(f, true);
    assert_int_equal(n_incidents(f), 1);
    get_id(f, first, &a);
    assert_int_equal(a.count, 2); /* ignored, not counted on the resolved one */
    asr_incident_free(&a);
    /* The next 10 s bucket: 10 hits before -> decayed mean 2, so it takes 2 * 2 = 4 hits. */
    int64_t t2 = t0 + 10000;
    for (int i = 0; i < 3; i++)
        feed_full(f, "shop", "stderr", "ERROR db timeout after 33s", t2);
    assert_int_equal(n_incidents(f), 1);
    feed_full(f, "shop", "stderr", "ERROR db timeout after 34s", t2);
    assert_int_equal(n_incidents(f), 2);
    get_fp(f, "shop:template:1", &a);
    assert_true(a.id != first);
    assert_string_equal(a.status, ASR_INCIDENT_OPEN);
    assert_int_equal(n_notes(f, a.id, "recurrence"), 1);
    asr_incident_free(&a);
}

static void test_generic_disabled(void **state)
{
    struct fx *f = *state;
    start(f, "generic: false");
    feed(f, "stderr", "ERROR db timeout after 30s");
    feed(f, "stderr", "FATAL everything is on fire");
    feed(f, "stderr", "java.lang.OutOfMemoryError: Java heap space");
    flush(f, true);
    assert_int_equal(n_incidents(f), 0);
    feed(f, "stderr", "fault route=/a code=500");
    assert_int_equal(n_incidents(f), 1);
}

/* ---- cooldown ------------------------------------------------------------------------------ */

static void test_cooldown(void **state)
{
    struct fx *f = *state;
    start(f, "cooldown_ms: 400ms");
    feed(f, "stderr", "fault route=/a code=500");
    struct asr_incident a;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    int64_t first = a.id;
    asr_incident_free(&a);
    resolve(f, first);
    for (int i = 0; i < 3; i++)
        feed(f, "stderr", "fault route=/a code=500");
    flush(f, false);
    assert_int_equal(n_incidents(f), 1);
    get_id(f, first, &a);
    assert_string_equal(a.status, ASR_INCIDENT_RESOLVED);
    assert_int_equal(a.count, 4);
    asr_incident_free(&a);
    assert_int_equal(n_notes(f, first, "recurred"), 1);

    /* After the cooldown (on asr's clock: when it was resolved here), a repeat opens a new
     * incident. */
    usleep(450 * 1000);
    feed(f, "stderr", "fault route=/a code=500");
    assert_int_equal(n_incidents(f), 2);
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_true(a.id != first);
    assert_int_equal(a.count, 1);
    assert_string_equal(a.status, ASR_INCIDENT_OPEN);
    assert_int_equal(n_notes(f, a.id, "recurrence"), 1);
    asr_incident_free(&a);
    assert_int_equal(n_notes(f, first, "recurred"), 1);
    get_id(f, first, &a);
    assert_int_equal(a.count, 4);
    asr_incident_free(&a);
}

/* Resolve, a repeat in the cooldown and a reopen after it, with no flush in between: the old
 * incident keeps its count and its note, the new one gets its own. */
static void test_reopen_without_flush(void **state)
{
    struct fx *f = *state;
    start(f, "cooldown_ms: 300ms");
    feed(f, "stderr", "fault route=/a code=500");
    struct asr_incident a;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    int64_t first = a.id;
    asr_incident_free(&a);
    resolve(f, first);
    feed(f, "stderr", "fault route=/a code=500");
    usleep(350 * 1000);
    feed(f, "stderr", "fault route=/a code=500");
    flush(f, false);
    assert_int_equal(n_incidents(f), 2);
    get_id(f, first, &a);
    assert_int_equal(a.count, 2);
    asr_incident_free(&a);
    assert_int_equal(n_notes(f, first, "recurred"), 1);
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_true(a.id != first);
    assert_int_equal(a.count, 1);
    assert_int_equal(n_notes(f, a.id, "recurred"), 0);
    assert_int_equal(n_notes(f, a.id, "recurrence"), 1);
    asr_incident_free(&a);
}

static void test_cooldown_zero(void **state)
{
    struct fx *f = *state;
    start(f, "cooldown_ms: 0s");
    feed(f, "stderr", "fault route=/a code=500");
    struct asr_incident a;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    int64_t first = a.id;
    asr_incident_free(&a);
    resolve(f, first);
    usleep(2000);
    feed(f, "stderr", "fault route=/a code=500");
    assert_int_equal(n_incidents(f), 2);
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_true(a.id > first);
    assert_int_equal(n_notes(f, a.id, "recurrence"), 1);
    asr_incident_free(&a);
    get_id(f, first, &a);
    assert_int_equal(a.count, 1);
    asr_incident_free(&a);
    assert_int_equal(n_notes(f, first, "recurred"), 0);
}

/* ---- restart ------------------------------------------------------------------------------- */

static void test_restart(void **state)
{
    struct fx *f = *state;
    parse_cfg(f, "context_after: 5");
    create_det(f, true);
    feed(f, "stderr", "fault route=/a code=500");
    feed(f, "stderr", "ERROR db timeout after 30s");
    feed(f, "stderr", "ERROR cache miss storm on node 3");
    assert_int_equal(n_incidents(f), 3);
    struct asr_incident g;
    get_fp(f, "shop:template:2", &g);
    int64_t gid = g.id, gtemplate = g.template_id;
    asr_incident_free(&g);
    flush(f, true);
    asr_detector_destroy(f->d);
    f->d = NULL;

    create_det(f, true);
    feed(f, "stderr", "fault route=/a code=501");
    feed(f, "stderr", "ERROR db timeout after 99s");
    assert_int_equal(n_incidents(f), 3);
    flush(f, true);
    struct asr_incident a;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    assert_int_equal(a.count, 2);
    asr_incident_free(&a);
    get_id(f, gid, &g);
    assert_int_equal(g.template_id, gtemplate);
    assert_int_equal(g.count, 2);
    asr_incident_free(&g);
    /* No note about cut context: it was complete before the restart. */
    assert_int_equal(n_notes(f, gid, "context"), 0);

    /* A template first seen now gets an id above the saved ones. */
    feed(f, "stderr", "ERROR queue overflow in worker");
    size_t n = 0;
    struct asr_incident *v = list_all(f, &n);
    assert_int_equal(n, 4);
    assert_true(v[0].template_id > 3);
    asr_incident_list_free(v, n);
}

/* Context still being collected when asr stopped is closed at the restart, with a note. */
static void test_restart_cuts_context(void **state)
{
    struct fx *f = *state;
    parse_cfg(f, "context_after: 5, context_wait_ms: 60000");
    create_det(f, false);
    feed(f, "stderr", "fault route=/a code=500");
    feed(f, "stderr", "a1");
    flush(f, false);
    asr_detector_destroy(f->d);
    f->d = NULL;
    create_det(f, false);
    flush(f, false);
    struct asr_incident a;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    /* Context after the fault is written once complete: a restart (or crash) while it was
     * being collected closes it with what was written (nothing) and says so. */
    assert_true(a.context_done);
    assert_lines(a.context_after, NULL);
    assert_int_equal(n_notes(f, a.id, "context"), 1);
    asr_incident_free(&a);
}

/* A cooldown survives a restart too. */
static void test_restart_keeps_cooldown(void **state)
{
    struct fx *f = *state;
    parse_cfg(f, "cooldown_ms: 1m");
    create_det(f, false);
    feed(f, "stderr", "fault route=/a code=500");
    struct asr_incident a;
    get_fp(f, "shop:FAULT_ROUTE:route=/a", &a);
    resolve(f, a.id);
    flush(f, true);
    asr_detector_destroy(f->d);
    f->d = NULL;
    create_det(f, false);
    feed(f, "stderr", "fault route=/a code=500");
    flush(f, true);
    assert_int_equal(n_incidents(f), 1);
    struct asr_incident b;
    get_id(f, a.id, &b);
    assert_int_equal(b.count, 2);
    asr_incident_free(&b);
    assert_int_equal(n_notes(f, a.id, "recurred"), 1);
    asr_incident_free(&a);
}

/* ---- exits --------------------------------------------------------------------------------- */

static void test_exit_signal(void **state)
{
    struct fx *f = *state;
    start(f, "context_before: 3");
    feed(f, "stderr", "s1");
    feed(f, "stderr", "s2");
    feed(f, "stdout", "o1");
    feed(f, "stderr", "s3");
    feed(f, "stderr", "s4");
    feed(f, "stdout", "o2");
    struct asr_err err = {0};
    assert_int_equal(asr_detector_exit(f->d, "shop", "blue", NULL, 139, 11, &err), 0);
    struct asr_incident a;
    get_fp(f, "shop:exit:signal=SEGV", &a);
    assert_string_equal(a.kind, "exit");
    assert_string_equal(a.signature, "exit");
    assert_string_equal(a.severity, "critical");
    assert_string_equal(a.slot, "blue");
    assert_null(a.release);
    assert_non_null(strstr(a.line, "signal 11"));
    assert_lines(a.context_before, "s2", "s3", "s4", NULL);
    json_t *fields = json_loads(a.fields, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(fields, "signal")), 11);
    assert_int_equal(json_integer_value(json_object_get(fields, "status")), 139);
    json_decref(fields);
    int64_t id = a.id;
    asr_incident_free(&a);

    /* A second crash is absorbed; an exit code is its own fingerprint. */
    assert_int_equal(asr_detector_exit(f->d, "shop", "blue", NULL, 139, 11, &err), 0);
    assert_int_equal(asr_detector_exit(f->d, "shop", "green", NULL, 3, 0, &err), 0);
    flush(f, true);
    get_id(f, id, &a);
    assert_int_equal(a.count, 2);
    assert_true(a.context_done);
    asr_incident_free(&a);
    get_fp(f, "shop:exit:code=3", &a);
    assert_string_equal(a.severity, "error");
    assert_string_equal(a.slot, "green");
    asr_incident_free(&a);
    assert_int_equal(n_incidents(f), 2);
}

/* An exit that reopens after a resolution has its stderr context too. */
static void test_exit_reopen_context(void **state)
{
    struct fx *f = *state;
    start(f, "context_before: 2, cooldown_ms: 0s");
    feed(f, "stderr", "s1");
    struct asr_err err = {0};
    assert_int_equal(asr_detector_exit(f->d, "shop", "blue", NULL, 134, 6, &err), 0);
    struct asr_incident a;
    get_fp(f, "shop:exit:signal=ABRT", &a);
    assert_lines(a.context_before, "s1", NULL);
    resolve(f, a.id);
    int64_t first = a.id;
    asr_incident_free(&a);
    usleep(2000);
    feed(f, "stderr", "s2");
    feed(f, "stderr", "s3");
    assert_int_equal(asr_detector_exit(f->d, "shop", "blue", NULL, 134, 6, &err), 0);
    get_fp(f, "shop:exit:signal=ABRT", &a);
    assert_true(a.id != first);
    assert_lines(a.context_before, "s2", "s3", NULL);
    asr_incident_free(&a);
}

/* ---- errors -------------------------------------------------------------------------------- */

static void test_unknown_service(void **state)
{
    struct fx *f = *state;
    start(f, "");
    struct asr_line ln = {.service = "nope", .source = "stderr", .text = "x", .len = 1};
    struct asr_err err = {0};
    assert_int_equal(asr_detector_line(f->d, &ln, &err), ASR_EINVAL);
    assert_non_null(strstr(err.msg, "'nope'"));
    memset(&err, 0, sizeof(err));
    assert_int_equal(asr_detector_exit(f->d, "ghost", NULL, NULL, 1, 0, &err), ASR_EINVAL);
    assert_non_null(strstr(err.msg, "'ghost'"));
    assert_int_equal(n_incidents(f), 0);
}

static void test_bad_pattern(void **state)
{
    struct fx *f = *state;
    const char *text = "services:\n"
                       "  - name: shop\n"
                       "    repo: ./app\n"
                       "    start: [./shop]\n"
                       "    listen: 127.0.0.1:8080\n"
                       "    signatures:\n"
                       "      - {id: FINE, pattern: 'ok (?<x>\\d+)'}\n"
                       "      - {id: BROKEN, pattern: 'oops (unclosed'}\n";
    struct asr_err err = {0};
    int rc = asr_config_parse("t.yaml", "/tmp", text, strlen(text), false, &f->cfg, &err);
    if (rc != 0)
        fail_msg("config: %s", asr_err_msg(&err, rc));
    struct asr_detector_opts o = {.cfg = f->cfg, .store = f->st};
    struct asr_detector *d = (struct asr_detector *)1;
    rc = asr_detector_create(&o, &d, &err);
    assert_int_equal(rc, ASR_ECONFIG);
    assert_null(d);
    assert_non_null(strstr(err.msg, "shop"));
    assert_non_null(strstr(err.msg, "BROKEN"));
    assert_null(strchr(err.msg, '\n'));
}

/* ---- volume -------------------------------------------------------------------------------- */

/* A flood of distinct dedupe values stays within the track cap; the rest fold into overflow,
 * and every line is counted somewhere. */
static void test_overflow(void **state)
{
    struct fx *f = *state;
    start(f, "group_window_ms: 0s, context_after: 0");
    const int lines = 5000;
    char buf[128];
    for (int i = 0; i < lines; i++) {
        snprintf(buf, sizeof(buf), "fault route=/r%d code=500", i);
        feed(f, "stderr", buf);
    }
    flush(f, true);
    size_t n = 0;
    struct asr_incident *v = list_all(f, &n);
    int64_t total = 0;
    size_t overflow = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        total += v[i].count;
        if (strcmp(v[i].fingerprint, "shop:overflow") == 0) {
            overflow++;
            assert_string_equal(v[i].signature, "overflow");
            assert_true(v[i].count > 1);
        } else {
            other++;
            assert_int_equal(v[i].count, 1);
        }
    }
    asr_incident_list_free(v, n);
    assert_int_equal(overflow, 1);
    assert_int_equal(other, MAX_TRACKS); /* never more than the cap */
    assert_int_equal(total, lines);
}

/* Counts add up exactly for a burst over 10 dedupe keys mixed with noise. */
static void test_burst_counts(void **state)
{
    struct fx *f = *state;
    start(f, "context_after: 3");
    const int keys = 10, per_key = 150;
    char buf[128];
    for (int i = 0; i < keys * per_key; i++) {
        snprintf(buf, sizeof(buf), "fault route=/k%d code=%d", i % keys, 500 + i % 7);
        feed(f, i % 2 == 0 ? "stderr" : "stdout", buf);
        snprintf(buf, sizeof(buf), "GET /items/%d 200 in %dms", i, i % 13);
        feed(f, "stderr", buf);
        if (i % 97 == 0)
            flush(f, false);
    }
    flush(f, true);
    size_t n = 0;
    struct asr_incident *v = list_all(f, &n);
    assert_int_equal(n, (size_t)keys);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i].count, per_key);
        assert_true(v[i].context_done);
        total += v[i].count;
    }
    asr_incident_list_free(v, n);
    assert_int_equal(total, keys * per_key);
    struct asr_detector_stats s;
    asr_detector_stats(f->d, &s);
    assert_int_equal(s.lines, 2 * keys * per_key);
    assert_int_equal(s.opened, keys);
    assert_int_equal(s.absorbed, keys * per_key - keys);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signature_opens_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_and_grouping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_grouping_window_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grouping_window_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_before_same_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_after_final_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_after_event_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verification, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generic_novel_and_absorbed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generic_known_template_rate_jump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generic_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cooldown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_without_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cooldown_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_cuts_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_cooldown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_reopen_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_service, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_pattern, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_counts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
