/*
 * fuzz_api.c - libFuzzer target for the API's router (src/api/api.c): asr_api_route(), the path
 * matcher, query arguments, JSON bodies, the views it reads from the store and the CloudWatch
 * ingest route.
 *
 * Input: byte 0 holds the flags: bits 0-2 pick the method (GET, POST, PUT, DELETE, HEAD, "get",
 * none, or 7: the first line of the rest), bit 3 the call is trusted, bit 4 the daemon is
 * stopping, bit 5 a deploy answers later from a uv timer (else at once, inside the hook), bit 6
 * the config has two services (else one), bit 7 the call has no query callback. The rest is
 * lines: [method], the path (arbitrary bytes), the query ("k=v&k=v", raw: the HTTP door hands
 * the router decoded values), and everything after the third newline is the body, in a buffer
 * of exactly its length (the HTTP door's body is not NUL-terminated either).
 *
 * The API runs on a uv loop over an in-memory store seeded once with incidents, plans,
 * remediations and a journal, as the detector, planner and executor write them. The daemon's
 * hooks answer deterministically: a fixed status, deploys that finish at once or on the next
 * loop turn, decide/resolve by incident id (0, ASR_EINVAL or ASR_ENOENT), ingest that checks what
 * the router hands it. The reply must come exactly once (the loop turns with UV_RUN_NOWAIT until
 * it has), with a status in 200..599 and a JSON object as body; an error body has "error" (a
 * string) and "status" equal to the status; progress never follows the reply. The seeds in
 * tests/fuzz/corpus/api/ are replayed by every ordinary test run (see replay_main.c).
 */
#include "api/api.h"
#include "asr/config.h"
#include "asr/incident.h"
#include "asr/log.h"
#include "asr/remediation.h"
#include "asr/store.h"
#include "asr/utf8.h"
#include "strategy/plan.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_QUERY 16
#define NINCIDENTS 6 /* ids 1..6, see seed() */

static const char CONFIG_ONE[] = "services:\n"
                                 "  - name: web\n"
                                 "    repo: app\n"
                                 "    start: [./web]\n"
                                 "    listen: 127.0.0.1:8000\n";
static const char CONFIG_TWO[] = "services:\n"
                                 "  - name: web\n"
                                 "    repo: app\n"
                                 "    start: [./web]\n"
                                 "    listen: 127.0.0.1:8000\n"
                                 "  - name: api\n"
                                 "    repo: api\n"
                                 "    start: [./api]\n"
                                 "    listen: 127.0.0.1:8001\n";

/* Everything that lives across inputs: built once, on the first. */
static struct {
    bool ready;
    uv_loop_t loop;
    struct asr_store *st;
    struct asr_config *one, *two, *cfg; /* cfg: the one this input uses */
    struct asr_api *api;
    bool stopping, deploy_later;
    bool verbose; /* FUZZ_API_VERBOSE set: print every reply to stderr (for writing seeds) */
    int timers;   /* deploy timers not yet closed */
} G;

/* One call: its query and what it was answered. */
struct fcall {
    struct {
        char *key, *value;
    } q[MAX_QUERY];
    size_t nq;
    int replies;
};

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_api: %s\n", what);
    abort();
}

/* The router hands the daemon text it may store and show again as JSON: it must be valid UTF-8
 * (a name or reason cut inside a character would make every later view of it fail). */
static void check_text(const char *s, size_t len, const char *what)
{
    if (s != NULL && asr_utf8_valid_prefix((const unsigned char *)s, len) != len)
        fail(what);
}

/* ---- the daemon's side ------------------------------------------------------------------- */

static json_t *status_hook(void *data)
{
    (void)data;
    json_t *s =
        json_pack("{s:b, s:{s:i, s:s}, s:[{s:s, s:s, s:i}]}", "ok", 1, "daemon", "pid", 1,
                  "version", "fuzz", "services", "name", "web", "state", "running", "restarts", 0);
    if (G.cfg == G.two)
        json_array_append_new(
            json_object_get(s, "services"),
            json_pack("{s:s, s:s, s:i}", "name", "api", "state", "failed", "restarts", 20));
    return s;
}

struct deploy_job {
    uv_timer_t timer;
    asr_api_progress_cb progress;
    asr_api_done_cb done;
    void *cb_data;
    int rc;
    char ref[64];
};

static void job_finish(struct deploy_job *j)
{
    j->progress("building", j->cb_data);
    json_t *result = json_pack("{s:s}", "ref", j->ref);
    j->done(j->rc, j->rc != 0 ? "the build failed" : NULL, result, j->cb_data);
    json_decref(result);
}

static void job_closed_cb(uv_handle_t *h)
{
    free(h->data);
    G.timers--;
}

static void job_timer_cb(uv_timer_t *t)
{
    struct deploy_job *j = t->data;
    job_finish(j);
    uv_close((uv_handle_t *)t, job_closed_cb);
}

/* Unknown service: ASR_ENOENT. ref "busy": ASR_EBUSY at once; ref "fail": done with an error. */
static int deploy_hook(void *data, const char *service, const char *ref, bool rollback,
                       asr_api_progress_cb progress, asr_api_done_cb done, void *cb_data,
                       struct asr_err *err)
{
    (void)data;
    if (service == NULL || progress == NULL || done == NULL)
        fail("deploy hook: NULL argument");
    if (rollback && ref != NULL)
        fail("deploy hook: a rollback with a ref");
    check_text(ref, ref != NULL ? strlen(ref) : 0, "deploy hook: a ref that is not UTF-8");
    if (asr_config_service(G.cfg, service) == NULL)
        return asr_err_set(err, ASR_ENOENT, "no service '%s'", service);
    if (ref != NULL && strcmp(ref, "busy") == 0)
        return asr_err_set(err, ASR_EBUSY, "a deploy of %s is running", service);
    struct deploy_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    j->progress = progress;
    j->done = done;
    j->cb_data = cb_data;
    j->rc = ref != NULL && strcmp(ref, "fail") == 0 ? ASR_EBUILD : 0;
    snprintf(j->ref, sizeof(j->ref), "%s", rollback ? "previous" : ref != NULL ? "given" : "HEAD");
    if (!G.deploy_later) {
        job_finish(j);
        free(j);
        return 0;
    }
    uv_timer_init(&G.loop, &j->timer);
    j->timer.data = j;
    G.timers++;
    uv_timer_start(&j->timer, job_timer_cb, 0, 0);
    return 0;
}

/* Incident 1 awaits approval; the others exist and do not; anything else does not exist. */
static int decide_hook(void *data, int64_t incident_id, bool approve, const char *who,
                       struct asr_err *err)
{
    (void)data;
    (void)approve;
    if (who == NULL || incident_id <= 0)
        fail("decide hook: no who, or an id that is not positive");
    check_text(who, strlen(who), "decide hook: who is not UTF-8");
    if (incident_id == 1)
        return 0;
    if (incident_id <= NINCIDENTS)
        return asr_err_set(err, ASR_EINVAL, "incident %lld has no plan awaiting approval",
                           (long long)incident_id);
    return asr_err_set(err, ASR_ENOENT, "no incident %lld", (long long)incident_id);
}

/* Incident 3 is resolved already. */
static int resolve_hook(void *data, int64_t incident_id, const char *reason, struct asr_err *err)
{
    (void)data;
    if (reason == NULL || incident_id <= 0)
        fail("resolve hook: no reason, or an id that is not positive");
    check_text(reason, strlen(reason), "resolve hook: the reason is not UTF-8");
    if (incident_id == 3)
        return asr_err_set(err, ASR_EINVAL, "incident 3 is resolved");
    if (incident_id <= NINCIDENTS)
        return 0;
    return asr_err_set(err, ASR_ENOENT, "no incident %lld", (long long)incident_id);
}

/* A line of a configured service, one line, never empty. "ingest-fail" in it: ASR_EIO. */
static int ingest_hook(void *data, const char *service, const char *source, const char *line,
                       size_t len, int64_t at_ms, struct asr_err *err)
{
    (void)data;
    (void)at_ms;
    if (service == NULL || asr_config_service(G.cfg, service) == NULL)
        fail("ingest hook: a service that is not configured");
    if (source == NULL || strncmp(source, "cloudwatch:", 11) != 0)
        fail("ingest hook: the source is not cloudwatch:GROUP/STREAM");
    if (line == NULL || len == 0 || memchr(line, '\n', len) != NULL)
        fail("ingest hook: an empty line or one holding a newline");
    check_text(source, strlen(source), "ingest hook: the source is not UTF-8");
    check_text(line, len, "ingest hook: the line is not UTF-8");
    if (len >= 11 && memmem(line, len, "ingest-fail", 11) != NULL)
        return asr_err_set(err, ASR_EIO, "the line could not be written");
    return 0;
}

static bool stopping_hook(void *data)
{
    (void)data;
    return G.stopping;
}

/* ---- the fixture ------------------------------------------------------------------------- */

static void must(int rc, const struct asr_err *err, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "fuzz_api: %s: %s\n", what, asr_err_msg(err, rc));
        abort();
    }
}

static int64_t open_incident(const char *service, const char *signature, const char *line,
                             int64_t at)
{
    char fp[128];
    snprintf(fp, sizeof(fp), "%s:%s", service, signature);
    struct asr_incident inc = {.fingerprint = fp,
                               .service = (char *)service,
                               .kind = "signature",
                               .signature = (char *)signature,
                               .severity = "error",
                               .source = "stderr",
                               .line = (char *)line,
                               .first_seen = at,
                               .last_seen = at,
                               .received_us = at * 1000 + 123};
    struct asr_incident_batch b = {.opened = &inc, .nopened = 1};
    struct asr_err err = {0};
    must(asr_store_incident_write(G.st, &b, &err), &err, "open an incident");
    return inc.id;
}

static int64_t save_plan(int64_t incident, json_t *steps, bool approval)
{
    struct asr_plan p = {.incident_id = incident,
                         .strategy = "playbook",
                         .confidence = 0.75,
                         .requires_approval = approval,
                         .rationale = "the playbook fits",
                         .steps = steps,
                         .sources = json_array(),
                         .verify = json_null()};
    int64_t id = 0;
    struct asr_err err = {0};
    must(asr_plan_save(G.st, &p, &id, &err), &err, "save a plan");
    json_decref(p.steps);
    json_decref(p.sources);
    json_decref(p.verify);
    return id;
}

static int64_t open_remediation(int64_t plan, int64_t incident, const char *service,
                                const char *state)
{
    struct asr_remediation r = {0};
    bool created = false;
    struct asr_err err = {0};
    must(asr_remediation_open(G.st, plan, incident, service, "fp", state, NULL, &r, &created, &err),
         &err, "open a remediation");
    int64_t id = r.id;
    asr_remediation_free(&r);
    return id;
}

/*
 * Incidents 1..6: 1 open with a patch plan awaiting approval; 2 open with a restart plan that
 * ran and succeeded (with its journal); 3 resolved, with a plan and no remediation; 4 of a
 * service named with bytes the next-page link must escape; 5 with a rejected plan; 6 with a
 * patch that was committed, built, tested (90 KB of output, more than the view's cap) and
 * verified.
 */
static void seed(void)
{
    struct asr_err err = {0};
    int64_t i1 = open_incident("web", "E1001", "ERROR E1001 database unreachable", 1000);
    int64_t i2 = open_incident("web", "generic:error", "panic: \"quoted\" \\ and \xc3\xa9", 2000);
    int64_t i3 = open_incident("web", "exit", "exited with status 1", 3000);
    int64_t i4 = open_incident("sh op/\xe2\x9c\x93=x?y#z", "sig%20a", "a\tline", 4000);
    int64_t i5 = open_incident("api", "E2002", "ERROR E2002 cache miss storm", 5000);
    int64_t i6 = open_incident("web", "E3003", "ERROR E3003 null deref in handler", 6000);
    if (i1 != 1 || i6 != NINCIDENTS)
        fail("seed: the incidents did not get ids 1..6");

    int64_t p1 = save_plan(i1,
                           json_pack("[{s:s, s:[{s:s, s:s, s:s}]}, {s:s}]", "action", "patch",
                                     "edits", "path", "src/db.c", "search", "timeout = 1",
                                     "replace", "timeout = 30", "action", "verify"),
                           true);
    open_remediation(p1, i1, "web", ASR_REM_AWAITING);

    int64_t p2 = save_plan(i2, json_pack("[{s:s}]", "action", "restart"), false);
    int64_t r2 = open_remediation(p2, i2, "web", ASR_REM_RUNNING);
    must(asr_journal_write(G.st, r2, 0, "restart", "intent", "rem:2:step:0", false, NULL, &err),
         &err, "journal");
    must(asr_journal_write(G.st, r2, 0, "restart", "result", "rem:2:step:0", true,
                           "{\"slot\":\"green\"}", &err),
         &err, "journal");
    must(asr_remediation_set(G.st, r2, ASR_REM_SUCCEEDED, "verified", NULL, &err), &err,
         "finish a remediation");

    save_plan(i3, json_pack("[{s:s, s:s}]", "action", "notify", "message", "look"), false);
    must(asr_store_incident_resolve(G.st, i3, "fixed by hand", &err), &err, "resolve");
    (void)i4;

    int64_t p5 = save_plan(i5, json_pack("[{s:s}]", "action", "rollback"), true);
    int64_t r5 = open_remediation(p5, i5, "api", ASR_REM_AWAITING);
    must(asr_remediation_set(G.st, r5, ASR_REM_REJECTED, "no", "an operator", &err), &err,
         "reject a remediation");

    static const char sha[] = "0123456789abcdef0123456789abcdef01234567";
    int64_t p6 =
        save_plan(i6,
                  json_pack("[{s:s, s:[{s:s, s:s, s:s}]}]", "action", "patch", "edits", "path",
                            "src/h.c", "search", "p->x", "replace", "p ? p->x : 0"),
                  false);
    int64_t r6 = open_remediation(p6, i6, "web", ASR_REM_RUNNING);
    char key[64], detail[200];
    snprintf(key, sizeof(key), "rem:%lld:step:1", (long long)r6);
    must(asr_journal_write(G.st, r6, 1, "patch", "intent", key, false, NULL, &err), &err,
         "journal");
    snprintf(key, sizeof(key), "rem:%lld:commit:1", (long long)r6);
    snprintf(detail, sizeof(detail), "{\"commit\":\"%s\",\"branch\":\"asr/fix-6\"}", sha);
    must(asr_journal_write(G.st, r6, 1, "patch", "result", key, true, detail, &err), &err,
         "journal");
    snprintf(key, sizeof(key), "rem:%lld:verify:1", (long long)r6);
    must(asr_journal_write(G.st, r6, 1, "verify", "result", key, true,
                           "{\"detail\":\"probe ok: 3/3\"}", &err),
         &err, "journal");
    must(asr_remediation_set(G.st, r6, ASR_REM_SUCCEEDED, "verified", NULL, &err), &err,
         "finish a remediation");
    struct asr_release rel = {0};
    must(asr_store_release_get_or_create(G.st, "web", sha, "/fuzz/releases/web", &rel, &err), &err,
         "release");
    must(asr_store_release_set_build(G.st, rel.id, 0, 1200, "cc -O2 h.c\n", &err), &err,
         "build output");
    /* 30,000 three-byte characters: the view keeps the last 64 KiB, a cut inside one. */
    size_t n = 30000 * 3;
    char *out = malloc(n + 1);
    if (out == NULL)
        fail("out of memory");
    for (size_t i = 0; i < n; i += 3)
        memcpy(out + i, "\xe2\x9c\x93", 3);
    out[n] = '\0';
    must(asr_store_release_set_test(G.st, rel.id, 1, 3400, out, &err), &err, "test output");
    free(out);
    asr_release_free(&rel);
}

static void setup(void)
{
    struct asr_err err = {0};
    asr_log_set_level(ASR_LOG_OFF);
    G.verbose = getenv("FUZZ_API_VERBOSE") != NULL;
    if (uv_loop_init(&G.loop) != 0)
        fail("uv_loop_init");
    must(asr_store_open_file(":memory:", &G.st, &err), &err, "open the store");
    must(asr_config_parse("one.yaml", "/fuzz", CONFIG_ONE, strlen(CONFIG_ONE), false, &G.one, &err),
         &err, "config one");
    must(asr_config_parse("two.yaml", "/fuzz", CONFIG_TWO, strlen(CONFIG_TWO), false, &G.two, &err),
         &err, "config two");
    G.cfg = G.one;
    seed();
    static const struct asr_api_hooks hooks = {.status = status_hook,
                                               .deploy = deploy_hook,
                                               .decide = decide_hook,
                                               .resolve = resolve_hook,
                                               .ingest = ingest_hook,
                                               .stopping = stopping_hook};
    must(asr_api_create(&G.loop, G.st, G.one, &hooks, &G.api, &err), &err, "asr_api_create");
    G.ready = true;
}

/* ---- the call ---------------------------------------------------------------------------- */

static const char *query_cb(void *ctx, const char *key)
{
    struct fcall *fc = ctx;
    if (key == NULL)
        fail("query: NULL key");
    for (size_t i = 0; i < fc->nq; i++)
        if (strcmp(fc->q[i].key, key) == 0)
            return fc->q[i].value;
    return NULL;
}

static void progress_cb(void *ctx, const char *msg)
{
    struct fcall *fc = ctx;
    if (msg == NULL || fc->replies != 0)
        fail("progress: NULL, or after the reply");
}

static void reply_cb(void *ctx, int status, json_t *body)
{
    struct fcall *fc = ctx;
    if (++fc->replies != 1)
        fail("reply: answered twice");
    if (status < 200 || status > 599)
        fail("reply: status outside 200..599");
    if (!json_is_object(body))
        fail("reply: the body is not a JSON object (NULL: json_pack failed)");
    if (status >= 400) {
        json_t *st = json_object_get(body, "status");
        if (!json_is_string(json_object_get(body, "error")))
            fail("reply: an error body without an \"error\" string");
        if (!json_is_integer(st) || json_integer_value(st) != status)
            fail("reply: an error body whose \"status\" is not the status");
    }
    /* Incident 6 ran tests (see seed()): its view shows them, whatever bytes they printed. */
    if (status == 200 && json_integer_value(json_object_get(body, "id")) == 6 &&
        json_object_get(body, "stages") != NULL && !json_is_object(json_object_get(body, "test")))
        fail("reply: incident 6's view lost its test output");
    /* A page of incidents links the next one (or null), under the API's prefix. */
    json_t *next = json_object_get(body, "next");
    if (status == 200 && json_is_array(json_object_get(body, "incidents")) && !json_is_null(next) &&
        (!json_is_string(next) ||
         strncmp(json_string_value(next), "/api/v1/incidents?limit=", 24) != 0))
        fail("reply: a page of incidents whose next link is not null or /api/v1/incidents?...");
    char *text = json_dumps(body, JSON_COMPACT);
    if (text == NULL)
        fail("reply: the body cannot be serialised");
    if (G.verbose)
        fprintf(stderr, "%d %s\n", status, text);
    free(text);
    json_decref(body);
}

/* The next line of [*p, end) as a new string (NUL-terminated; a NUL inside ends it early), or
 * NULL when the input has ended. */
static char *next_line(const uint8_t **p, const uint8_t *end)
{
    if (*p >= end)
        return NULL;
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl != NULL ? (size_t)(nl - *p) : (size_t)(end - *p);
    char *s = malloc(n + 1);
    if (s == NULL)
        fail("out of memory");
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += n + (nl != NULL ? 1 : 0);
    return s;
}

static void parse_query(struct fcall *fc, char *qs)
{
    for (char *tok = qs; tok != NULL && *tok != '\0' && fc->nq < MAX_QUERY;) {
        char *amp = strchr(tok, '&');
        if (amp != NULL)
            *amp = '\0';
        char *eq = strchr(tok, '=');
        if (eq != NULL)
            *eq = '\0';
        fc->q[fc->nq].key = tok;
        fc->q[fc->nq].value = eq != NULL ? eq + 1 : tok + strlen(tok);
        fc->nq++;
        tok = amp != NULL ? amp + 1 : NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "get"};
    if (!G.ready)
        setup();
    if (size == 0)
        return 0;
    uint8_t flags = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    unsigned m = flags & 7u;
    char *method = m == 7 ? next_line(&p, end) : NULL;
    char *path = next_line(&p, end);
    char *qs = next_line(&p, end);
    size_t body_len = p < end ? (size_t)(end - p) : 0;
    char *body = body_len > 0 ? malloc(body_len) : NULL;
    if (body_len > 0 && body == NULL)
        fail("out of memory");
    if (body_len > 0)
        memcpy(body, p, body_len);

    G.stopping = (flags & 0x10) != 0;
    G.deploy_later = (flags & 0x20) != 0;
    G.cfg = (flags & 0x40) != 0 ? G.two : G.one;
    asr_api_set_config(G.api, G.cfg);

    struct fcall fc = {0};
    parse_query(&fc, qs);
    struct asr_api_call c = {.method = m < 6 ? methods[m] : method,
                             .path = path,
                             .query = (flags & 0x80) != 0 ? NULL : query_cb,
                             .body = body,
                             .body_len = body_len,
                             .trusted = (flags & 0x08) != 0,
                             .progress = progress_cb,
                             .reply = reply_cb,
                             .ctx = &fc};
    asr_api_route(G.api, &c);
    /* A deploy answers from the loop; the loop turns until it has and its timer is closed. */
    for (int i = 0; i < 100 && (fc.replies == 0 || G.timers > 0); i++)
        uv_run(&G.loop, UV_RUN_NOWAIT);
    if (fc.replies != 1)
        fail("the call was never answered");
    if (G.timers != 0)
        fail("a deploy timer was left running");
    free(method);
    free(path);
    free(qs);
    free(body);
    return 0;
}
