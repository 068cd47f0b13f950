/*
 * test_metrics.c - GET /metrics (src/api/metrics.c) on a real SQLite store file.
 *
 * Each test gets a fresh store in a temporary directory, fills it with rows as the detector,
 * planner, executor and supervisor write them (plain SQL on the store's connection, with the
 * times chosen by the test), renders the metrics and checks the text: the MTTR histogram's
 * buckets, count and sum against the rows, the stage durations, label escaping with hostile
 * service and signature names, and that promtool (Debian's prometheus package) accepts the whole
 * scrape. promtool is run from here with the text on its stdin; without it the check says it was
 * skipped and passes.
 */
#include "api/metrics.h"
#include "asr/store.h"
#include "store/store_int.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROMTOOL "/usr/bin/promtool"

struct fx {
    char dir[256];
    char db[300];
    struct asr_store *st;
    int nincidents; /* incidents inserted so far (ids 1..n) */
    int nplans;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 200)
        tmp = "/tmp";
    snprintf(f->dir, sizeof(f->dir), "%s/asr-test-metrics-XXXXXX", tmp);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/asr.db", f->dir);
    struct asr_err err = {0};
    int rc = asr_store_open_file(f->db, &f->st, &err);
    if (rc != 0)
        fail_msg("asr_store_open_file: %s", asr_err_msg(&err, rc));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    asr_store_close(f->st);
    char p[400];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", f->db, sfx[i]);
        unlink(p);
    }
    snprintf(p, sizeof(p), "%s/audit.head", f->dir);
    unlink(p);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Runs SQL on the store's connection; the statement is built from the test's own values. */
static void sql(struct fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sql(struct fx *f, const char *fmt, ...)
{
    char q[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(q, sizeof(q), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(q));
    char *msg = NULL;
    if (sqlite3_exec(asr_store_db(f->st), q, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", q, msg);
}

/*
 * An incident of service/signature, first seen at first, opened detect_ms later, resolved
 * mttr_ms after first (mttr_ms < 0: still open). Bound as parameters: names may be hostile.
 * Returns its id.
 */
static int incident(struct fx *f, const char *service, const char *signature, int64_t first,
                    int64_t detect_ms, int64_t mttr_ms)
{
    sqlite3_stmt *s = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(asr_store_db(f->st),
                           "INSERT INTO incidents (fingerprint, service, kind, signature, "
                           "severity, source, line, first_seen, last_seen, received_us, "
                           "opened_at, status, resolved_at) VALUES (?1, ?2, 'signature', ?3, "
                           "'error', 'stdout', 'a line', ?4, ?4, 0, ?5, ?6, ?7)",
                           -1, &s, NULL),
        SQLITE_OK);
    char fp[64];
    snprintf(fp, sizeof(fp), "fp%d", f->nincidents + 1);
    sqlite3_bind_text(s, 1, fp, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, service, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, signature, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, first);
    sqlite3_bind_int64(s, 5, first + detect_ms);
    sqlite3_bind_text(s, 6, mttr_ms >= 0 ? "resolved" : "open", -1, SQLITE_STATIC);
    if (mttr_ms >= 0)
        sqlite3_bind_int64(s, 7, first + mttr_ms);
    else
        sqlite3_bind_null(s, 7);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    return ++f->nincidents;
}

/* A plan for the incident with body (JSON), created at; returns its id. */
static int plan(struct fx *f, int inc, int64_t at, const char *body, int prompt, int completion)
{
    char p[32] = "NULL", c[32] = "NULL";
    if (prompt >= 0)
        snprintf(p, sizeof(p), "%d", prompt);
    if (completion >= 0)
        snprintf(c, sizeof(c), "%d", completion);
    sql(f,
        "INSERT INTO plans (incident_id, created_at, strategy, confidence, requires_approval, "
        "llm_prompt_tokens, llm_completion_tokens, body) VALUES (%d, %lld, 'playbook', 0.5, 0, "
        "%s, %s, '%s')",
        inc, (long long)at, p, c, body);
    return ++f->nplans;
}

/* A remediation of the plan in state, run from started to finished (0: not). */
static void remediation(struct fx *f, int plan_id, int inc, const char *state, int64_t started,
                        int64_t finished)
{
    char s[32] = "NULL", e[32] = "NULL";
    if (started > 0)
        snprintf(s, sizeof(s), "%lld", (long long)started);
    if (finished > 0)
        snprintf(e, sizeof(e), "%lld", (long long)finished);
    sql(f,
        "INSERT INTO remediations (plan_id, incident_id, service, fingerprint, state, "
        "created_at, started_at, finished_at) VALUES (%d, %d, 'shop', 'fp', '%s', 1, %s, %s)",
        plan_id, inc, state, s, e);
}

/* Renders the metrics into a fresh string (caller frees). */
static char *render(struct fx *f, json_t *status)
{
    struct asr_buf b;
    asr_buf_init(&b, 4 << 20);
    struct asr_err err = {0};
    int rc = asr_metrics_render(f != NULL ? f->st : NULL, status, &b, &err);
    if (rc != 0)
        fail_msg("asr_metrics_render: %s", asr_err_msg(&err, rc));
    return asr_buf_steal(&b);
}

/* The value of the sample whose name and labels are exactly series, or NULL. */
static const char *value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return p + n + 1;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return NULL;
}

static void assert_sample(const char *text, const char *series, const char *want)
{
    const char *v = value_of(text, series);
    if (v == NULL)
        fail_msg("no sample %s in:\n%s", series, text);
    size_t n = strcspn(v, "\n");
    if (strlen(want) != n || strncmp(v, want, n) != 0)
        fail_msg("%s is %.*s, expected %s", series, (int)n, v, want);
}

/*
 * Runs promtool check metrics with text on stdin. Returns its exit status (0: accepted), its
 * output in out; -1 when promtool is not installed.
 */
static int promtool(const char *dir, const char *text, char *out, size_t cap)
{
    if (access(PROMTOOL, X_OK) != 0)
        return -1;
    char in_path[400], out_path[400];
    snprintf(in_path, sizeof(in_path), "%s/scrape.txt", dir);
    snprintf(out_path, sizeof(out_path), "%s/promtool.out", dir);
    FILE *fp = fopen(in_path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open(in_path, O_RDONLY);
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || o < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(o, 2) < 0)
            _exit(127);
        char *const argv[] = {(char *)PROMTOOL, (char *)"check", (char *)"metrics", NULL};
        execv(PROMTOOL, argv);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    out[0] = '\0';
    fp = fopen(out_path, "r");
    if (fp != NULL) {
        size_t n = fread(out, 1, cap - 1, fp);
        out[n] = '\0';
        fclose(fp);
    }
    unlink(in_path);
    unlink(out_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void assert_promtool_accepts(struct fx *f, const char *text)
{
    char out[4096];
    int rc = promtool(f->dir, text, out, sizeof(out));
    if (rc == -1) {
        printf("skipped: promtool check metrics: %s not found (Debian package prometheus)\n",
               PROMTOOL);
        return;
    }
    if (rc != 0 || out[0] != '\0') {
        fprintf(stderr, "%s\n", text);
        fail_msg("promtool check metrics exited %d on the text above:\n%s", rc, out);
    }
}

/* A live status as GET /api/v1/status has it (api-spec.md), with the names given. */
static json_t *status_json(const char *svc1, const char *svc2)
{
    json_t *s = json_pack(
        "{s:b, s:{s:i, s:s, s:s, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}}, s:[{s:s, s:s, s:I, "
        "s:I, s:{s:I, s:I, s:I, s:I, s:I}}, {s:s, s:s, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}}]}",
        "ok", 1, "daemon", "pid", 42, "config", "asr.yaml", "state_dir", ".asr", "uptime_ms",
        (json_int_t)12345, "detection", "lines", (json_int_t)1000, "signature_hits", (json_int_t)7,
        "generic_hits", (json_int_t)3, "faults", (json_int_t)9, "opened", (json_int_t)4, "absorbed",
        (json_int_t)5, "suppressed", (json_int_t)1, "services", "name", svc1, "health", "healthy",
        "restarts", (json_int_t)2, "crash_streak", (json_int_t)0, "proxy", "connections_open",
        (json_int_t)3, "connections_total", (json_int_t)40, "requests_total", (json_int_t)120,
        "proxy_5xx", (json_int_t)6, "retries", (json_int_t)2, "name", svc2, "health", "failed",
        "restarts", (json_int_t)20, "crash_streak", (json_int_t)5, "proxy", "connections_open",
        (json_int_t)0, "connections_total", (json_int_t)0, "requests_total", (json_int_t)0,
        "proxy_5xx", (json_int_t)0, "retries", (json_int_t)0);
    assert_non_null(s);
    return s;
}

/* ---- the MTTR histogram is the store's incidents, exactly ----------------------------------
 */

static void test_mttr_matches_store(void **state)
{
    struct fx *f = *state;
    const int64_t t0 = 1700000000000;
    /* Remediated: MTTRs 50, 100 (on the 0.1 bound), 250 (on 0.25), 3600 twice, 700000 (past
     * the last bound). */
    int64_t remediated[] = {50, 100, 250, 3600, 3600, 700000};
    for (size_t i = 0; i < sizeof(remediated) / sizeof(remediated[0]); i++) {
        int inc =
            incident(f, "shop", "FAULT_DB_TIMEOUT", t0 + (int64_t)i * 1000000, 3, remediated[i]);
        int p = plan(f, inc, t0, "{\"steps\":[{\"action\":\"restart\"}]}", -1, -1);
        remediation(f, p, inc, "succeeded", t0 + 10, t0 + 20);
    }
    /* Not counted: resolved after a failed remediation, resolved by hand, open with one
     * running, and resolved with a succeeded remediation followed by a failed one (its
     * remediation is the latest, as `asr incident show` says). */
    int inc = incident(f, "shop", "FAULT_X", t0, 3, 5000);
    remediation(f, plan(f, inc, t0, "{\"steps\":[]}", -1, -1), inc, "failed", t0, t0 + 1);
    incident(f, "shop", "FAULT_Y", t0, 3, 7000);
    inc = incident(f, "shop", "FAULT_Z", t0, 3, -1);
    remediation(f, plan(f, inc, t0, "{\"steps\":[]}", -1, -1), inc, "running", t0, 0);
    inc = incident(f, "shop", "FAULT_W", t0, 3, 9000);
    remediation(f, plan(f, inc, t0, "{\"steps\":[]}", -1, -1), inc, "succeeded", t0, t0 + 1);
    remediation(f, plan(f, inc, t0, "{\"steps\":[]}", -1, -1), inc, "failed", t0, t0 + 2);

    char *text = render(f, NULL);
    const char *want[][2] = {
        {"0.1", "2"}, {"0.25", "3"}, {"0.5", "3"}, {"1", "3"},    {"2.5", "3"},
        {"5", "5"},   {"10", "5"},   {"15", "5"},  {"30", "5"},   {"60", "5"},
        {"120", "5"}, {"300", "5"},  {"600", "5"}, {"+Inf", "6"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char series[64];
        snprintf(series, sizeof(series), "asr_mttr_seconds_bucket{le=\"%s\"}", want[i][0]);
        assert_sample(text, series, want[i][1]);
    }
    assert_sample(text, "asr_mttr_seconds_count", "6");
    assert_sample(text, "asr_mttr_seconds_sum", "707.600"); /* 50+100+250+3600*2+700000 ms */

    /* The same figures straight from SQL on a second connection, as the integration test does
     * with sqlite3: count and sum of resolved_at - first_seen. */
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "SELECT count(*), sum(i.resolved_at - i.first_seen) FROM incidents i "
                           "WHERE i.status = 'resolved' AND (SELECT state FROM remediations r "
                           "WHERE r.incident_id = i.id ORDER BY r.id DESC LIMIT 1) = 'succeeded'",
                           -1, &s, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(s, 0), 6);
    assert_int_equal(sqlite3_column_int64(s, 1), 707600);
    sqlite3_finalize(s);
    sqlite3_close(db);

    /* Every incident's detection latency is 3 ms: all ten in the 0.005 bucket, none below. */
    assert_sample(text, "asr_detection_latency_seconds_bucket{le=\"0.001\"}", "0");
    assert_sample(text, "asr_detection_latency_seconds_bucket{le=\"0.005\"}", "10");
    assert_sample(text, "asr_detection_latency_seconds_count", "10");
    assert_sample(text, "asr_detection_latency_seconds_sum", "0.030");
    assert_sample(text,
                  "asr_incidents{service=\"shop\",signature=\"FAULT_DB_TIMEOUT\","
                  "state=\"resolved\"}",
                  "6");
    assert_sample(text, "asr_incidents{service=\"shop\",signature=\"FAULT_Z\",state=\"open\"}",
                  "1");
    assert_promtool_accepts(f, text);
    free(text);
}

/* An empty store still has every family, and the histograms at zero. */
static void test_empty_store(void **state)
{
    struct fx *f = *state;
    char *text = render(f, NULL);
    assert_sample(text, "asr_mttr_seconds_bucket{le=\"+Inf\"}", "0");
    assert_sample(text, "asr_mttr_seconds_sum", "0.000");
    assert_sample(text, "asr_mttr_seconds_count", "0");
    assert_sample(text, "asr_stage_duration_seconds_count{stage=\"build\"}", "0");
    assert_sample(text, "asr_knowledge_documents{kind=\"playbook\"}", "0");
    assert_sample(text, "asr_llm_calls_total{outcome=\"ok\"}", "0");
    assert_non_null(strstr(text, "# TYPE asr_incidents gauge\n"));
    assert_null(strstr(text, "asr_service_up")); /* no daemon, no live status */
    assert_promtool_accepts(f, text);
    free(text);
}

/* ---- stages, deployments, remediations by action, LLM, knowledge base ----------------------
 */

static void test_stages_and_counts(void **state)
{
    struct fx *f = *state;
    const int64_t t0 = 1700000000000;
    sql(f, "INSERT INTO services (name, created_at) VALUES ('shop', 1)");
    /* Releases: one built in 2.5 s and tested in 0.8 s, one whose build never ran. */
    sql(f,
        "INSERT INTO releases (service, commit_sha, build_status, build_ms, test_status, "
        "test_ms, created_at, updated_at) VALUES ('shop', '%040d', 0, 2500, 0, 800, 1, 1), "
        "('shop', '%040d', -1, 0, -1, 0, 1, 1)",
        1, 2);
    /* Deployments: a deploy that took 4 s, a rollback of 1.2 s, one failed, one running. */
    sql(f, "INSERT INTO deployments (service, kind, to_release, started_at, ended_at, outcome) "
           "VALUES ('shop', 'deploy', 1, 1000, 5000, 'succeeded'), ('shop', 'rollback', 1, 6000, "
           "7200, 'succeeded'), ('shop', 'deploy', 2, 8000, 8100, 'failed'), ('shop', 'deploy', "
           "1, 9000, NULL, 'running')");
    /* Incidents planned 40 ms after they opened (the later plan of the same incident is not a
     * second observation), one remediation of each shape. */
    int a = incident(f, "shop", "FAULT_A", t0, 2, 4000);
    int pa = plan(f, a, t0 + 2 + 40,
                  "{\"steps\":[{\"action\":\"notify\",\"message\":\"m\"},{\"action\":"
                  "\"restart\"}],\"llm\":null}",
                  -1, -1);
    plan(f, a, t0 + 5000, "{\"steps\":[{\"action\":\"escalate\"}]}", -1, -1);
    remediation(f, pa, a, "succeeded", t0 + 100, t0 + 3100);
    int b = incident(f, "shop", "FAULT_B", t0, 2, -1);
    int pb = plan(f, b, t0 + 2 + 40,
                  "{\"steps\":[{\"action\":\"patch\"}],\"llm\":{\"prompt_tokens\":1200,"
                  "\"completion_tokens\":300,\"error\":null}}",
                  1200, 300);
    remediation(f, pb, b, "awaiting_approval", 0, 0);
    int c = incident(f, "shop", "FAULT_C", t0, 2, -1);
    int pc = plan(f, c, t0 + 2 + 40,
                  "{\"steps\":[{\"action\":\"escalate\"}],\"llm\":{\"prompt_tokens\":-1,"
                  "\"completion_tokens\":-1,\"error\":\"llm: timed out\"}}",
                  -1, -1);
    remediation(f, pc, c, "escalated", t0 + 50, t0 + 51);
    /* A plan that only notifies has no acting action. */
    int d = incident(f, "shop", "FAULT_D", t0, 2, -1);
    int pd =
        plan(f, d, t0 + 2 + 40, "{\"steps\":[{\"action\":\"notify\",\"message\":\"m\"}]}", -1, -1);
    remediation(f, pd, d, "refused", 0, t0 + 60);
    /* A verification journal of remediation 1 (its rows carry the step's action, as the
     * executor writes them): intent, then result 3.2 s later. */
    sql(f, "INSERT INTO journal (remediation_id, step, action, phase, idem_key, at, ok) VALUES "
           "(1, 2, 'restart', 'intent', 'rem:1:step:2', 100, NULL), (1, 2, 'restart', 'result', "
           "'rem:1:step:2', 200, 1), (1, 2, 'restart', 'intent', 'rem:1:verify:2', 300, NULL), "
           "(1, 2, 'restart', 'result', 'rem:1:verify:2', 3500, 1)");
    sql(f, "INSERT INTO kb_docs (kind, ref, title, body, updated_at) VALUES ('playbook', 'p1', "
           "'t', '{}', 1), ('playbook', 'p2', 't', '{}', 1), ('incident', 'i1', 't', '{}', 1)");

    char *text = render(f, NULL);
    assert_sample(text, "asr_stage_duration_seconds_count{stage=\"build\"}", "1");
    assert_sample(text, "asr_stage_duration_seconds_sum{stage=\"build\"}", "2.500");
    assert_sample(text, "asr_stage_duration_seconds_bucket{stage=\"build\",le=\"2.5\"}", "1");
    assert_sample(text, "asr_stage_duration_seconds_bucket{stage=\"build\",le=\"1\"}", "0");
    assert_sample(text, "asr_stage_duration_seconds_sum{stage=\"test\"}", "0.800");
    assert_sample(text, "asr_stage_duration_seconds_count{stage=\"deploy\"}", "3");
    assert_sample(text, "asr_stage_duration_seconds_sum{stage=\"deploy\"}", "5.300");
    assert_sample(text, "asr_stage_duration_seconds_count{stage=\"plan\"}", "4");
    assert_sample(text, "asr_stage_duration_seconds_sum{stage=\"plan\"}", "0.160");
    assert_sample(text, "asr_stage_duration_seconds_count{stage=\"verify\"}", "1");
    assert_sample(text, "asr_stage_duration_seconds_sum{stage=\"verify\"}", "3.200");
    assert_sample(text, "asr_stage_duration_seconds_count{stage=\"remediation\"}", "2");
    assert_sample(text, "asr_stage_duration_seconds_sum{stage=\"remediation\"}", "3.001");
    assert_sample(text, "asr_stage_duration_seconds_count{stage=\"detect\"}", "4");
    assert_sample(
        text, "asr_deployments_total{service=\"shop\",kind=\"deploy\",outcome=\"succeeded\"}", "1");
    assert_sample(
        text, "asr_deployments_total{service=\"shop\",kind=\"deploy\",outcome=\"failed\"}", "1");
    assert_sample(text,
                  "asr_deployments_total{service=\"shop\",kind=\"rollback\",outcome=\"succeeded\"}",
                  "1");
    assert_null(strstr(text, "outcome=\"running\""));
    assert_sample(text, "asr_deployments_running{service=\"shop\"}", "1");
    /* The acting action skips the notify step. */
    assert_sample(
        text, "asr_remediations{service=\"shop\",action=\"restart\",outcome=\"succeeded\"}", "1");
    assert_sample(
        text, "asr_remediations{service=\"shop\",action=\"patch\",outcome=\"awaiting_approval\"}",
        "1");
    assert_sample(
        text, "asr_remediations{service=\"shop\",action=\"escalate\",outcome=\"escalated\"}", "1");
    assert_sample(text, "asr_remediations{service=\"shop\",action=\"none\",outcome=\"refused\"}",
                  "1");
    assert_sample(text, "asr_llm_calls_total{outcome=\"ok\"}", "1");
    assert_sample(text, "asr_llm_calls_total{outcome=\"error\"}", "1");
    assert_sample(text, "asr_llm_tokens_total{kind=\"prompt\"}", "1200");
    assert_sample(text, "asr_llm_tokens_total{kind=\"completion\"}", "300");
    assert_sample(text, "asr_knowledge_documents{kind=\"playbook\"}", "2");
    assert_sample(text, "asr_knowledge_documents{kind=\"incident\"}", "1");
    assert_promtool_accepts(f, text);
    free(text);
}

/* ---- the live status -------------------------------------------------------------------------
 */

static void test_status(void **state)
{
    struct fx *f = *state;
    json_t *st = status_json("shop", "billing");
    char *text = render(f, st);
    assert_sample(text, "asr_uptime_seconds", "12.345");
    assert_sample(text, "asr_service_up{service=\"shop\"}", "1");
    assert_sample(text, "asr_service_up{service=\"billing\"}", "0");
    assert_sample(text, "asr_service_health{service=\"billing\",health=\"failed\"}", "1");
    assert_sample(text, "asr_service_health{service=\"billing\",health=\"healthy\"}", "0");
    assert_sample(text, "asr_service_health{service=\"shop\",health=\"healthy\"}", "1");
    assert_sample(text, "asr_service_restarts_total{service=\"billing\"}", "20");
    assert_sample(text, "asr_service_crash_streak{service=\"billing\"}", "5");
    assert_sample(text, "asr_proxy_connections_open{service=\"shop\"}", "3");
    assert_sample(text, "asr_proxy_connections_total{service=\"shop\"}", "40");
    assert_sample(text, "asr_proxy_requests_total{service=\"shop\"}", "120");
    assert_sample(text, "asr_proxy_error_responses_total{service=\"shop\"}", "6");
    assert_sample(text, "asr_proxy_retries_total{service=\"shop\"}", "2");
    assert_sample(text, "asr_detector_lines_total", "1000");
    assert_sample(text, "asr_detector_hits_total{kind=\"signature\"}", "7");
    assert_sample(text, "asr_detector_incidents_opened_total", "4");
    assert_promtool_accepts(f, text);
    free(text);

    /* Without a store: the status's families only. */
    text = render(NULL, st);
    assert_null(strstr(text, "asr_incidents"));
    assert_sample(text, "asr_proxy_requests_total{service=\"shop\"}", "120");
    assert_promtool_accepts(f, text);
    free(text);
    json_decref(st);
}

/* ---- hostile label values --------------------------------------------------------------------
 */

static void test_hostile_labels(void **state)
{
    struct fx *f = *state;
    /* A service named by a CloudWatch ingest and a generic signature can be anything. */
    const char *svc = "sh\"op\\x\nasr_up 1\r\t}";
    const char *sig = "bad\xff\xfe utf8 \xe2\x82"; /* two bad bytes, then a cut sequence */
    char longsig[600];
    memset(longsig, 'a', sizeof(longsig) - 1);
    longsig[sizeof(longsig) - 1] = '\0';
    char longsig2[600];
    memcpy(longsig2, longsig, sizeof(longsig));
    longsig2[598] = 'b'; /* differs only past the cut */
    incident(f, svc, "S", 1000, 1, -1);
    incident(f, "shop", sig, 1000, 1, -1);
    incident(f, "shop", longsig, 1000, 1, -1);
    incident(f, "shop", longsig2, 1000, 1, -1);

    /* JSON strings are valid UTF-8 (jansson refuses others), so the status has only escapes. */
    json_t *st = status_json(svc, "billing\u2028\\");
    char *text = render(f, st);
    /* Escaped as the format says; \r and \t are allowed as they are. */
    assert_sample(text,
                  "asr_incidents{service=\"sh\\\"op\\\\x\\nasr_up 1\r\t}\",signature=\"S\","
                  "state=\"open\"}",
                  "1");
    assert_sample(text, "asr_service_up{service=\"sh\\\"op\\\\x\\nasr_up 1\r\t}\"}", "1");
    /* Bad bytes become U+FFFD, and the value gets a tag of the original. */
    const char *bad = strstr(text, "signature=\"bad\xef\xbf\xbd\xef\xbf\xbd utf8 "
                                   "\xef\xbf\xbd\xef\xbf\xbd~");
    assert_non_null(bad);
    /* Long values are cut at 200 bytes, and two that differ after the cut stay apart. */
    char cut[300];
    snprintf(cut, sizeof(cut), "signature=\"%.200s...~", longsig);
    const char *one = strstr(text, cut);
    assert_non_null(one);
    const char *two = strstr(one + 1, cut);
    assert_non_null(two);
    assert_memory_not_equal(one + strlen(cut), two + strlen(cut), 8);
    /* No line starts with the injected sample. */
    assert_null(strstr(text, "\nasr_up 1"));
    assert_promtool_accepts(f, text);
    free(text);
    json_decref(st);
}

/* ---- errors ------------------------------------------------------------------------------------
 */

/* Past the buffer's cap: ASR_ETOOBIG, and the buffer as it was. */
static void test_cap(void **state)
{
    struct fx *f = *state;
    struct asr_buf b;
    asr_buf_init(&b, 600);
    asr_buf_puts(&b, "before\n");
    struct asr_err err = {0};
    assert_int_equal(asr_metrics_render(f->st, NULL, &b, &err), ASR_ETOOBIG);
    assert_non_null(strstr(err.msg, "cap"));
    assert_string_equal(asr_buf_cstr(&b), "before\n");
    asr_buf_free(&b);
    /* The store's connection is left without a transaction. */
    assert_true(sqlite3_get_autocommit(asr_store_db(f->st)));
}

/* A scrape in the middle of the caller's transaction reads inside it and leaves it open. */
static void test_inside_transaction(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    assert_int_equal(asr_store_begin(f->st, "test", &err), 0);
    incident(f, "shop", "FAULT_T", 1000, 1, -1);
    char *text = render(f, NULL);
    assert_sample(text, "asr_incidents{service=\"shop\",signature=\"FAULT_T\",state=\"open\"}",
                  "1");
    free(text);
    assert_false(sqlite3_get_autocommit(asr_store_db(f->st)));
    assert_int_equal(asr_store_commit(f->st, "test", &err), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mttr_matches_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stages_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inside_transaction, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
