/*
 * metrics.c - `GET /metrics`: the store and the daemon's live status as Prometheus text
 * exposition format 0.0.4 (see metrics.h; every metric is described in docs/metrics.md).
 *
 * Part of the API stage (src/api/). The HTTP server calls asr_metrics_render() for each scrape;
 * nothing here keeps state between scrapes: counters are counts of store rows (which only grow)
 * or the daemon's own counters (which start again at 0 when asr restarts, as Prometheus
 * expects of a counter). The store is only read, with SELECTs prepared for the scrape and
 * finalized after it, in one read transaction, so a histogram's count and sum and the incident
 * counts next to it describe the same moment. Histograms are computed here from the rows, in
 * integer milliseconds, so a bucket's count and the sum are exact: the sum is the rows' sum in
 * ms written with three decimals.
 *
 * Label values come from config and from logs (a service named by a CloudWatch ingest, a
 * signature id); they are escaped as the format says (\\, \", \n), made valid UTF-8 and cut at
 * ASR_METRICS_MAX_LABEL bytes. A value that had to be changed gets "~" and 8 hex digits of the
 * SHA-256 of the original, so two values that differ stay two series.
 */
#include "api/metrics.h"
#include "asr/sha256.h"
#include "asr/utf8.h"
#include "store/store_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* One scrape being written. Every writer does nothing once rc is set, so a failure stops the
 * scrape at the first error and the callers need not check each line. */
struct render {
    struct asr_buf b; /* the text; appended to the caller's buffer only when complete */
    sqlite3 *db;      /* the store's connection, NULL without a store */
    int rc;           /* the first failure, 0 while all is well */
    struct asr_err *err;
};

static void fail_buf(struct render *r, int rc)
{
    if (r->rc != 0)
        return;
    r->rc = rc;
    if (rc == ASR_ETOOBIG)
        asr_err_set(r->err, rc, "metrics: the text would pass its cap of %zu bytes", r->b.cap);
    else
        asr_err_set(r->err, rc, "metrics: %s", asr_strerror(rc));
}

static void put_n(struct render *r, const char *s, size_t n)
{
    if (r->rc != 0)
        return;
    int rc = asr_buf_append(&r->b, s, n);
    if (rc < 0)
        fail_buf(r, rc);
}

static void put(struct render *r, const char *s)
{
    put_n(r, s, strlen(s));
}

/* Short formatted pieces only (numbers, static names): the text is cut at 64 bytes. */
static void putf(struct render *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct render *r, const char *fmt, ...)
{
    char s[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s, sizeof(s), fmt, ap);
    va_end(ap);
    if (n > 0)
        put_n(r, s, (size_t)n < sizeof(s) ? (size_t)n : sizeof(s) - 1);
}

/* Milliseconds as seconds with three decimals: exact, whatever the magnitude. */
static void put_seconds(struct render *r, int64_t ms)
{
    uint64_t a = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
    putf(r, "%s%" PRIu64 ".%03" PRIu64, ms < 0 ? "-" : "", a / 1000, a % 1000);
}

/* A bucket bound (ms) as le="S" with the shortest decimal number of seconds: "0.1", "600". */
static void fmt_le(char *out, size_t cap, int64_t ms)
{
    char frac[8];
    snprintf(frac, sizeof(frac), "%03d", (int)(ms % 1000));
    for (int i = 2; i >= 0 && frac[i] == '0'; i--)
        frac[i] = '\0';
    snprintf(out, cap, "le=\"%" PRId64 "%s%s\"", ms / 1000, frac[0] != '\0' ? "." : "", frac);
}

/* The # HELP and # TYPE lines that open a family. help is static text without \ or newline. */
static void family(struct render *r, const char *name, const char *type, const char *help)
{
    put(r, "# HELP ");
    put(r, name);
    put(r, " ");
    put(r, help);
    put(r, "\n# TYPE ");
    put(r, name);
    put(r, " ");
    put(r, type);
    put(r, "\n");
}

/* A label value: escaped, valid UTF-8, at most ASR_METRICS_MAX_LABEL bytes before its tag. */
static void put_label_value(struct render *r, const char *v)
{
    const unsigned char *p = (const unsigned char *)(v != NULL ? v : "");
    size_t len = strlen((const char *)p), off = 0, kept = 0;
    bool changed = false;
    while (off < len) {
        size_t n = asr_utf8_seq(p + off, len - off);
        const char *out = (const char *)p + off;
        size_t outn = n, valuen = n;
        if (n == 0) { /* not UTF-8: one byte becomes U+FFFD */
            out = "\xEF\xBF\xBD";
            outn = valuen = 3;
            n = 1;
            changed = true;
        } else if (p[off] == '\\') {
            out = "\\\\";
            outn = 2;
        } else if (p[off] == '"') {
            out = "\\\"";
            outn = 2;
        } else if (p[off] == '\n') {
            out = "\\n";
            outn = 2;
        }
        if (kept + valuen > ASR_METRICS_MAX_LABEL) {
            put(r, "...");
            changed = true;
            break;
        }
        put_n(r, out, outn);
        kept += valuen;
        off += n;
    }
    if (changed) {
        uint8_t d[ASR_SHA256_LEN];
        asr_sha256(p, len, d);
        putf(r, "~%02x%02x%02x%02x", d[0], d[1], d[2], d[3]);
    }
}

/*
 * A sample's name and labels: name{k1="v1",k2="v2"} from kv, pairs of label name and value
 * ending in NULL (kv may be NULL: no labels). extra is one more, already formatted pair
 * (le="0.5" of a bucket), or NULL. The value follows (sample_int, hist_write).
 */
static void put_series(struct render *r, const char *name, const char *const *kv, const char *extra)
{
    put(r, name);
    bool any = false;
    for (size_t i = 0; kv != NULL && kv[i] != NULL; i += 2) {
        put(r, any ? "," : "{");
        put(r, kv[i]);
        put(r, "=\"");
        put_label_value(r, kv[i + 1]);
        put(r, "\"");
        any = true;
    }
    if (extra != NULL) {
        put(r, any ? "," : "{");
        put(r, extra);
        any = true;
    }
    put(r, any ? "} " : " ");
}

static void sample_int(struct render *r, const char *name, const char *const *kv, int64_t v)
{
    put_series(r, name, kv, NULL);
    putf(r, "%" PRId64 "\n", v);
}

/* ---- the store -------------------------------------------------------------------------------
 */

static void db_fail(struct render *r, const char *what)
{
    if (r->rc != 0)
        return;
    int code = sqlite3_errcode(r->db) == SQLITE_NOMEM ? ASR_ENOMEM : ASR_EDB;
    r->rc = asr_err_set(r->err, code, "metrics: %s: %s", what, sqlite3_errmsg(r->db));
}

/* A statement for this scrape (finalized by the caller). Only reads are let through: the
 * store's rules (store_int.h) allow this module its connection on that condition. */
static sqlite3_stmt *query(struct render *r, const char *sql, const char *what)
{
    sqlite3_stmt *s = NULL;
    if (r->rc != 0)
        return NULL;
    if (sqlite3_prepare_v2(r->db, sql, -1, &s, NULL) != SQLITE_OK) {
        db_fail(r, what);
        return NULL;
    }
    if (!sqlite3_stmt_readonly(s)) {
        sqlite3_finalize(s);
        r->rc = asr_err_set(r->err, ASR_EINVAL, "metrics: %s: the query would write", what);
        return NULL;
    }
    return s;
}

/* Steps s: true for a row; false at the end or after a failure (then rc is set). */
static bool next_row(struct render *r, sqlite3_stmt *s, const char *what)
{
    if (s == NULL || r->rc != 0)
        return false;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        return true;
    if (rc != SQLITE_DONE)
        db_fail(r, what);
    return false;
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    const char *t = (const char *)sqlite3_column_text(s, i);
    return t != NULL ? t : "";
}

/*
 * A family of counts by labels from one GROUP BY query: its first nlabels columns are the label
 * values (named by labels), the next the count. At most ASR_METRICS_MAX_SERIES series; the
 * query must take the row limit as ?1.
 */
static void grouped(struct render *r, const char *name, const char *type, const char *help,
                    const char *sql, const char *const *labels, int nlabels)
{
    family(r, name, type, help);
    sqlite3_stmt *s = query(r, sql, name);
    if (s == NULL)
        return;
    sqlite3_bind_int(s, 1, ASR_METRICS_MAX_SERIES + 1);
    int rows = 0;
    while (next_row(r, s, name)) {
        if (++rows > ASR_METRICS_MAX_SERIES) {
            putf(r, "# asr: cut at %d series\n", ASR_METRICS_MAX_SERIES);
            break;
        }
        const char *kv[2 * 4 + 1];
        for (int i = 0; i < nlabels && i < 4; i++) {
            kv[2 * i] = labels[i];
            kv[2 * i + 1] = col_text(s, i);
        }
        kv[2 * (nlabels < 4 ? nlabels : 4)] = NULL;
        sample_int(r, name, kv, sqlite3_column_int64(s, nlabels));
    }
    sqlite3_finalize(s);
}

/* Histogram buckets: upper bounds in ms, ascending; +Inf is implied. */
#define MAX_BUCKETS 16
static const int64_t mttr_bounds[] = {100,   250,   500,   1000,   2500,   5000,  10000,
                                      15000, 30000, 60000, 120000, 300000, 600000};
static const int64_t latency_bounds[] = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
static const int64_t stage_bounds[] = {1,    5,    10,    50,    100,   250,    500,    1000,
                                       2500, 5000, 10000, 30000, 60000, 120000, 300000, 600000};
#define NBOUNDS(a) (sizeof(a) / sizeof((a)[0]))

struct hist {
    const int64_t *bounds;
    size_t nbounds;
    uint64_t in[MAX_BUCKETS]; /* observations <= bounds[i] and > bounds[i-1] (not cumulative) */
    uint64_t count;
    int64_t sum_ms;
};

static void hist_init(struct hist *h, const int64_t *bounds, size_t n)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->nbounds = n < MAX_BUCKETS ? n : MAX_BUCKETS;
}

static void hist_observe(struct hist *h, int64_t ms)
{
    for (size_t i = 0; i < h->nbounds; i++)
        if (ms <= h->bounds[i]) {
            h->in[i]++;
            break;
        }
    h->count++;
    h->sum_ms += ms;
}

/* Observes the first column (ms) of every row of sql in h, and in also (if not NULL). */
static void hist_fill(struct render *r, struct hist *h, struct hist *also, const char *sql,
                      const char *what)
{
    sqlite3_stmt *s = query(r, sql, what);
    while (next_row(r, s, what)) {
        int64_t ms = sqlite3_column_int64(s, 0);
        hist_observe(h, ms);
        if (also != NULL)
            hist_observe(also, ms);
    }
    sqlite3_finalize(s);
}

/* The _bucket, _sum and _count lines of one histogram series (its family already opened). */
static void hist_write(struct render *r, const char *name, const char *const *kv,
                       const struct hist *h)
{
    char series[96], le[48];
    uint64_t cum = 0;
    snprintf(series, sizeof(series), "%s_bucket", name);
    for (size_t i = 0; i < h->nbounds; i++) {
        cum += h->in[i];
        fmt_le(le, sizeof(le), h->bounds[i]);
        put_series(r, series, kv, le);
        putf(r, "%" PRIu64 "\n", cum);
    }
    put_series(r, series, kv, "le=\"+Inf\"");
    putf(r, "%" PRIu64 "\n", h->count);
    snprintf(series, sizeof(series), "%s_sum", name);
    put_series(r, series, kv, NULL);
    put_seconds(r, h->sum_ms);
    put(r, "\n");
    snprintf(series, sizeof(series), "%s_count", name);
    put_series(r, series, kv, NULL);
    putf(r, "%" PRIu64 "\n", h->count);
}

/* The labelled counts of the store. Each query takes the series limit as ?1. */
static const char sql_incidents[] =
    "SELECT service, signature, status, count(*) FROM incidents GROUP BY service, signature, "
    "status ORDER BY service, signature, status LIMIT ?1";
/* A remediation's action is its plan's first step that acts: a notify step removes no fault.
 * The first three steps are looked at (json_extract, not json_each over every step: a third of
 * the time on 20,000 remediations); a plan that only notifies in those is "none". */
static const char sql_remediations[] =
    "SELECT r.service, coalesce(nullif(json_extract(p.body, '$.steps[0].action'), 'notify'), "
    "nullif(json_extract(p.body, '$.steps[1].action'), 'notify'), "
    "nullif(json_extract(p.body, '$.steps[2].action'), 'notify'), 'none'), r.state, count(*) "
    "FROM remediations AS r LEFT JOIN plans AS p ON p.id = r.plan_id GROUP BY 1, 2, 3 "
    "ORDER BY 1, 2, 3 LIMIT ?1";
static const char sql_deployments[] =
    "SELECT service, kind, outcome, count(*) FROM deployments WHERE outcome <> 'running' "
    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LIMIT ?1";
static const char sql_deploying[] =
    "SELECT service, count(*) FROM deployments WHERE outcome = 'running' GROUP BY 1 ORDER BY 1 "
    "LIMIT ?1";

/* Durations in ms, one row per observation. The MTTR is `asr incident show`'s: an incident
 * resolved whose (latest) remediation succeeded, from its first fault line to its resolution. */
static const char sql_mttr[] =
    "SELECT i.resolved_at - i.first_seen FROM incidents AS i WHERE i.status = 'resolved' AND "
    "(SELECT r.state FROM remediations AS r WHERE r.incident_id = i.id ORDER BY r.id DESC "
    "LIMIT 1) = 'succeeded'";
static const char sql_detect[] = "SELECT opened_at - first_seen FROM incidents";

/* The stages of asr_stage_duration_seconds, in pipeline order (docs/metrics.md says what each
 * spans). "detect" is asr_detection_latency_seconds again, so the stages are all in one place. */
static const struct {
    const char *stage;
    const char *sql;
} stages[] = {
    {"detect", sql_detect},
    {"plan", "SELECT min(p.created_at) - i.opened_at FROM plans AS p JOIN incidents AS i ON "
             "i.id = p.incident_id GROUP BY p.incident_id"},
    {"build", "SELECT build_ms FROM releases WHERE build_status <> -1"},
    {"test", "SELECT test_ms FROM releases WHERE test_status <> -1"},
    {"deploy", "SELECT ended_at - started_at FROM deployments WHERE ended_at IS NOT NULL"},
    /* A verification's journal rows carry its step's action; the key says what they are. */
    {"verify", "SELECT r.at - i.at FROM journal AS i JOIN journal AS r ON r.idem_key = "
               "i.idem_key AND r.phase = 'result' WHERE i.phase = 'intent' AND i.idem_key GLOB "
               "'rem:*:verify:*'"},
    {"remediation", "SELECT finished_at - started_at FROM remediations WHERE started_at IS NOT "
                    "NULL AND finished_at IS NOT NULL"},
};

static const char sql_llm_calls[] =
    "SELECT coalesce(sum(json_type(body, '$.llm.error') IS NULL OR json_type(body, "
    "'$.llm.error') = 'null'), 0), coalesce(sum(json_type(body, '$.llm.error') IS NOT NULL AND "
    "json_type(body, '$.llm.error') <> 'null'), 0) FROM plans WHERE json_type(body, '$.llm') = "
    "'object'";
static const char sql_llm_tokens[] =
    "SELECT coalesce(sum(llm_prompt_tokens), 0), coalesce(sum(llm_completion_tokens), 0) FROM "
    "plans";
static const char sql_kb[] = "SELECT (SELECT count(*) FROM kb_docs WHERE kind = 'playbook'), "
                             "(SELECT count(*) FROM kb_docs WHERE kind = 'incident')";

/* A query of one row of two integers, written as two series of one family. */
static void pair(struct render *r, const char *name, const char *type, const char *help,
                 const char *sql, const char *label, const char *v0, const char *v1)
{
    family(r, name, type, help);
    sqlite3_stmt *s = query(r, sql, name);
    if (next_row(r, s, name)) {
        sample_int(r, name, (const char *[]){label, v0, NULL}, sqlite3_column_int64(s, 0));
        sample_int(r, name, (const char *[]){label, v1, NULL}, sqlite3_column_int64(s, 1));
    }
    sqlite3_finalize(s);
}

static void store_metrics(struct render *r)
{
    grouped(r, "asr_incidents", "gauge",
            "Incidents in the store by service, signature and state (open or resolved).",
            sql_incidents, (const char *[]){"service", "signature", "state"}, 3);
    grouped(r, "asr_remediations", "gauge",
            "Remediations by service, acting action (the plan's first step other than notify) "
            "and outcome (the remediation's state, in flight or final).",
            sql_remediations, (const char *[]){"service", "action", "outcome"}, 3);

    struct hist h;
    hist_init(&h, mttr_bounds, NBOUNDS(mttr_bounds));
    hist_fill(r, &h, NULL, sql_mttr, "asr_mttr_seconds");
    family(r, "asr_mttr_seconds", "histogram",
           "Time to recovery of remediated incidents: first fault line to resolved, for each "
           "resolved incident whose remediation succeeded.");
    hist_write(r, "asr_mttr_seconds", NULL, &h);

    /* One pass over the incidents for both: the latency's buckets and the detect stage's. */
    struct hist detect, detect_stage;
    hist_init(&detect, latency_bounds, NBOUNDS(latency_bounds));
    hist_init(&detect_stage, stage_bounds, NBOUNDS(stage_bounds));
    hist_fill(r, &detect, &detect_stage, sql_detect, "asr_detection_latency_seconds");
    family(r, "asr_detection_latency_seconds", "histogram",
           "Detection latency of every incident: its first fault line to the incident committed "
           "to the store.");
    hist_write(r, "asr_detection_latency_seconds", NULL, &detect);

    family(r, "asr_stage_duration_seconds", "histogram",
           "Duration of each stage of the pipeline, by stage (docs/metrics.md says what each "
           "spans).");
    for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++) {
        hist_init(&h, stage_bounds, NBOUNDS(stage_bounds));
        if (stages[i].sql == sql_detect)
            h = detect_stage;
        else
            hist_fill(r, &h, NULL, stages[i].sql, stages[i].stage);
        hist_write(r, "asr_stage_duration_seconds",
                   (const char *[]){"stage", stages[i].stage, NULL}, &h);
    }

    grouped(r, "asr_deployments_total", "counter",
            "Deployments that ended, by service, kind (deploy, rollback, start) and outcome.",
            sql_deployments, (const char *[]){"service", "kind", "outcome"}, 3);
    grouped(r, "asr_deployments_running", "gauge", "Deployments in progress, by service.",
            sql_deploying, (const char *[]){"service"}, 1);
    pair(r, "asr_llm_calls_total", "counter",
         "Questions put to the LLM for a plan, by outcome (ok: it answered; error: it failed).",
         sql_llm_calls, "outcome", "ok", "error");
    pair(r, "asr_llm_tokens_total", "counter",
         "LLM tokens used by plans, as the provider counted them, by kind.", sql_llm_tokens, "kind",
         "prompt", "completion");
    pair(r, "asr_knowledge_documents", "gauge", "Documents in the knowledge base, by kind.", sql_kb,
         "kind", "playbook", "incident");
}

/* ---- the daemon's live status ----------------------------------------------------------------
 */

/* An integer at o.k1 (or o.k1.k2); 0 when it is missing or not a number. */
static int64_t jint(json_t *o, const char *k1, const char *k2)
{
    json_t *v = json_object_get(o, k1);
    if (k2 != NULL)
        v = json_object_get(v, k2);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return 0;
}

static const char *const health_states[] = {"healthy", "starting", "unhealthy",
                                            "down",    "failed",   "stopped"};

/* A number of each service's status, one family. */
static const struct {
    const char *name, *type, *help, *k1, *k2;
} per_service[] = {
    {"asr_service_restarts_total", "counter",
     "Crash restarts of the service by asr's supervisor since asr started.", "restarts", NULL},
    {"asr_service_crash_streak", "gauge", "Crashes in a row without a healthy run between.",
     "crash_streak", NULL},
    {"asr_proxy_connections_open", "gauge", "Client connections open at the service's proxy.",
     "proxy", "connections_open"},
    {"asr_proxy_connections_total", "counter",
     "Client connections the service's proxy accepted since asr started.", "proxy",
     "connections_total"},
    {"asr_proxy_requests_total", "counter",
     "HTTP requests the service's proxy forwarded since asr started.", "proxy", "requests_total"},
    {"asr_proxy_error_responses_total", "counter",
     "502, 503 and 504 answers the proxy produced itself (no backend answered in time).", "proxy",
     "proxy_5xx"},
    {"asr_proxy_retries_total", "counter",
     "Requests the proxy held and sent again to a backend after a failure.", "proxy", "retries"},
};

/* The detector's counters (status daemon.detection), one family each. */
static const struct {
    const char *name, *key, *help;
} detection[] = {
    {"asr_detector_lines_total", "lines", "Log lines the detector read since asr started."},
    {"asr_detector_faults_total", "faults",
     "Lines and exits the detector judged faults since asr started."},
    {"asr_detector_incidents_opened_total", "opened",
     "Incidents the detector opened since asr started."},
    {"asr_detector_faults_absorbed_total", "absorbed",
     "Faults added to an incident already open since asr started."},
    {"asr_detector_faults_suppressed_total", "suppressed",
     "Faults not opened as incidents since asr started (cooldown, held)."},
};

static void status_metrics(struct render *r, json_t *status)
{
    json_t *daemon = json_object_get(status, "daemon");
    json_t *svcs = json_object_get(status, "services");
    size_t i;
    json_t *s;

    family(r, "asr_uptime_seconds", "gauge", "Seconds since the asr daemon started.");
    put(r, "asr_uptime_seconds ");
    put_seconds(r, jint(daemon, "uptime_ms", NULL));
    put(r, "\n");

    family(r, "asr_service_up", "gauge", "1 when the service is healthy, else 0.");
    json_array_foreach(svcs, i, s)
    {
        const char *name = json_string_value(json_object_get(s, "name"));
        const char *health = json_string_value(json_object_get(s, "health"));
        if (name != NULL)
            sample_int(r, "asr_service_up", (const char *[]){"service", name, NULL},
                       health != NULL && strcmp(health, "healthy") == 0);
    }
    family(r, "asr_service_health", "gauge",
           "The service's health: 1 for its current state, 0 for the others.");
    json_array_foreach(svcs, i, s)
    {
        const char *name = json_string_value(json_object_get(s, "name"));
        const char *health = json_string_value(json_object_get(s, "health"));
        for (size_t k = 0; name != NULL && k < sizeof(health_states) / sizeof(health_states[0]);
             k++)
            sample_int(r, "asr_service_health",
                       (const char *[]){"service", name, "health", health_states[k], NULL},
                       health != NULL && strcmp(health, health_states[k]) == 0);
    }
    for (size_t m = 0; m < sizeof(per_service) / sizeof(per_service[0]); m++) {
        family(r, per_service[m].name, per_service[m].type, per_service[m].help);
        json_array_foreach(svcs, i, s)
        {
            const char *name = json_string_value(json_object_get(s, "name"));
            if (name != NULL)
                sample_int(r, per_service[m].name, (const char *[]){"service", name, NULL},
                           jint(s, per_service[m].k1, per_service[m].k2));
        }
    }

    json_t *det = json_object_get(daemon, "detection");
    for (size_t m = 0; m < sizeof(detection) / sizeof(detection[0]); m++) {
        family(r, detection[m].name, "counter", detection[m].help);
        sample_int(r, detection[m].name, NULL, jint(det, detection[m].key, NULL));
    }
    family(r, "asr_detector_hits_total", "counter",
           "Lines that matched a detector since asr started, by kind (signature or generic).");
    sample_int(r, "asr_detector_hits_total", (const char *[]){"kind", "signature", NULL},
               jint(det, "signature_hits", NULL));
    sample_int(r, "asr_detector_hits_total", (const char *[]){"kind", "generic", NULL},
               jint(det, "generic_hits", NULL));
}

/* ---- the scrape ------------------------------------------------------------------------------
 */

int asr_metrics_render(struct asr_store *st, json_t *status, struct asr_buf *out,
                       struct asr_err *err)
{
    if (out == NULL)
        return asr_err_set(err, ASR_EINVAL, "metrics: no output buffer");
    struct render r = {.db = st != NULL ? asr_store_db(st) : NULL, .err = err};
    asr_buf_init(&r.b, out->cap > out->len ? out->cap - out->len : 0);
    bool own_txn = false;

    if (r.db != NULL) {
        /* One read transaction for every query, unless the caller has one open (then its). */
        if (sqlite3_get_autocommit(r.db)) {
            if (sqlite3_exec(r.db, "BEGIN DEFERRED", NULL, NULL, NULL) != SQLITE_OK)
                db_fail(&r, "begin a read transaction");
            else
                own_txn = true;
        }
        store_metrics(&r);
        if (own_txn && sqlite3_exec(r.db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            db_fail(&r, "end the read transaction");
            if (!sqlite3_get_autocommit(r.db))
                sqlite3_exec(r.db, "ROLLBACK", NULL, NULL, NULL);
        }
    }
    if (status != NULL)
        status_metrics(&r, status);

    int rc = r.rc;
    if (rc == 0 && r.b.len > 0) {
        rc = asr_buf_append(out, r.b.data, r.b.len);
        if (rc < 0) /* cannot happen for the cap (r.b had out's room); memory can run out */
            asr_err_set(err, rc, "metrics: %s", asr_strerror(rc));
    }
    asr_buf_free(&r.b);
    return rc;
}
