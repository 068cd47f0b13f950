/*
 * api.c - the operator's API: routes, auth, and the two doors (api.h, docs/api.md).
 *
 * Every request becomes a struct asr_api_call and goes through asr_api_route(), whatever door it
 * came in by. A route names its method, its path pattern ({id} a positive integer, {name} a
 * segment) and whether it acts; acting routes need trust (the token over HTTP, or the control
 * socket). Answers are JSON; errors are {"error", "status"} with the status that says what kind
 * of wrong it was: 400 malformed, 401 no or bad token, 403 refused, 404 no such thing, 405 wrong
 * method, 409 not in a state for it, 413 too large, 503 stopping.
 */
#include "api/api.h"

#include "api/assets.h"
#include "api/control.h"
#include "api/events.h"
#include "api/http.h"
#include "api/metrics.h"
#include "api/views.h"
#include "asr/audit.h"
#include "asr/buf.h"
#include "asr/incident.h"
#include "asr/log.h"
#include "asr/remediation.h"
#include "asr/timeutil.h"
#include "asr/utf8.h"
#include "detect/cloudwatch.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SEGMENTS 8
#define API_PREFIX "/api/v1"

struct pending; /* a deploy or rollback waiting to answer */

struct asr_api {
    uv_loop_t *loop;
    struct asr_store *st;
    const struct asr_config *cfg;
    struct asr_api_hooks hooks;
    struct asr_http *http;
    struct asr_events *events;
    char *token; /* NULL: none configured */
    struct pending *pending;
    struct asr_buf metrics; /* the store's part of /metrics, as last rendered */
    int64_t metrics_head, metrics_at;
};

/* The parsed path of a call: its segments after /api/v1, and the ids and names they hold. */
struct args {
    int64_t id;
    char name[128];
};

typedef void (*route_fn)(struct asr_api *api, const struct asr_api_call *c, const struct args *a);

struct route {
    const char *method;
    const char *pattern; /* after /api/v1 */
    bool acts;
    route_fn fn;
};

static void reply(const struct asr_api_call *c, int status, json_t *body)
{
    c->reply(c->ctx, status, body);
}

/*
 * Replaces each byte of s that is not part of valid UTF-8 with '?'. Text that goes into a JSON
 * answer or to the daemon must be UTF-8: json_pack fails on anything else (the answer would be
 * lost, and a stored name would break every later view of its row), and a path's bytes, or a
 * cut such as "%.200s" through a character, are not.
 */
static void make_utf8(char *s)
{
    size_t n = strlen(s), off = 0;
    while ((off += asr_utf8_valid_prefix((const unsigned char *)s + off, n - off)) < n)
        s[off++] = '?';
}

static void reply_error(const struct asr_api_call *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_error(const struct asr_api_call *c, int status, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    make_utf8(msg);
    reply(c, status, json_pack("{s:s, s:i}", "error", msg, "status", status));
}

/* An error code of the store or a hook as an HTTP status. */
static int status_of(int rc)
{
    switch (rc) {
    case ASR_ENOENT:
        return 404;
    case ASR_EINVAL:
    case ASR_EBUSY:
    case ASR_ESTATE:
        return 409;
    case ASR_ECANCELED:
        return 503; /* cut short: asr is stopping */
    default:
        return 500;
    }
}

/*
 * The body as a JSON object whose keys are all in allowed (NULL-terminated). An empty body is {}.
 * On failure answers 400 and returns NULL.
 */
static json_t *body_object(const struct asr_api_call *c, const char *const *allowed)
{
    if (c->body_len == 0)
        return json_object();
    json_error_t je;
    json_t *j = json_loadb(c->body, c->body_len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL) {
        reply_error(c, 400, "body: not valid JSON: %s (line %d, column %d)", je.text, je.line,
                    je.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        reply_error(c, 400, "body: expected a JSON object");
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok || !(json_is_string(v) || json_is_null(v))) {
            char known[200] = "";
            for (size_t i = 0; allowed[i] != NULL; i++)
                snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                         i > 0 ? ", " : "", allowed[i]);
            reply_error(c, 400,
                        ok ? "body: \"%.64s\" must be a string"
                           : "body: unknown field \"%.64s\" (expected: %s)",
                        key, known[0] ? known : "no fields");
            json_decref(j);
            return NULL;
        }
    }
    return j;
}

static const char *str_field(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* A query argument that must be a whole number in lo..hi; def when absent. false: answered 400. */
static bool query_int(const struct asr_api_call *c, const char *key, long long lo, long long hi,
                      long long def, long long *out)
{
    const char *v = c->query != NULL ? c->query(c->ctx, key) : NULL;
    if (v == NULL) {
        *out = def;
        return true;
    }
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || errno == ERANGE || n < lo || n > hi) {
        reply_error(c, 400, "query: %s must be a whole number in %lld..%lld, got '%.40s'", key, lo,
                    hi, v);
        return false;
    }
    *out = n;
    return true;
}

static const char *query(const struct asr_api_call *c, const char *key)
{
    return c->query != NULL ? c->query(c->ctx, key) : NULL;
}

/* ---- services ---------------------------------------------------------------------------- */

static void get_status(struct asr_api *api, const struct asr_api_call *c, const struct args *a)
{
    (void)a;
    json_t *s = api->hooks.status(api->hooks.data);
    json_object_del(s, "ok");
    reply(c, 200, s);
}

static void get_services(struct asr_api *api, const struct asr_api_call *c, const struct args *a)
{
    (void)a;
    json_t *s = api->hooks.status(api->hooks.data);
    reply(c, 200, json_pack("{s:O}", "services", json_object_get(s, "services")));
    json_decref(s);
}

static void get_service(struct asr_api *api, const struct asr_api_call *c, const struct args *a)
{
    json_t *s = api->hooks.status(api->hooks.data);
    size_t i;
    json_t *svc;
    json_array_foreach(json_object_get(s, "services"), i, svc)
    {
        const char *name = str_field(svc, "name");
        if (name != NULL && strcmp(name, a->name) == 0) {
            reply(c, 200, json_incref(svc));
            json_decref(s);
            return;
        }
    }
    json_decref(s);
    reply_error(c, 404, "no service '%s'", a->name);
}

/* A deploy or rollback in flight: its call, until done (call NULL once the API has stopped). */
struct pending {
    struct asr_api *api;
    struct asr_api_call call;
    char service[128];
    struct pending *prev, *next;
};

static void pending_unlink(struct pending *p)
{
    if (p->api == NULL)
        return;
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        p->api->pending = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    p->api = NULL;
}

static void deploy_progress(const char *msg, void *data)
{
    struct pending *p = data;
    if (p->api != NULL && p->call.progress != NULL)
        p->call.progress(p->call.ctx, msg);
}

static void deploy_done(int rc, const char *msg, json_t *result, void *data)
{
    struct pending *p = data;
    if (p->api != NULL) {
        if (rc == 0)
            reply(&p->call, 200, json_pack("{s:s, s:O?}", "service", p->service, "result", result));
        else
            reply(&p->call, 409,
                  json_pack("{s:s, s:i, s:s, s:O?}", "error", msg != NULL ? msg : "failed",
                            "status", 409, "service", p->service, "result", result));
        pending_unlink(p);
    }
    free(p);
}

static void post_deploy(struct asr_api *api, const struct asr_api_call *c, const struct args *a,
                        bool rollback)
{
    static const char *const deploy_fields[] = {"ref", NULL};
    static const char *const rollback_fields[] = {NULL};
    json_t *body = body_object(c, rollback ? rollback_fields : deploy_fields);
    if (body == NULL)
        return;
    struct pending *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        json_decref(body);
        reply_error(c, 500, "out of memory");
        return;
    }
    p->api = api;
    p->call = *c;
    snprintf(p->service, sizeof(p->service), "%s", a->name);
    p->next = api->pending;
    if (api->pending != NULL)
        api->pending->prev = p;
    api->pending = p;
    struct asr_err err = {0};
    int rc = api->hooks.deploy(api->hooks.data, a->name, str_field(body, "ref"), rollback,
                               deploy_progress, deploy_done, p, &err);
    json_decref(body);
    if (rc != 0) {
        pending_unlink(p);
        free(p);
        reply_error(c, status_of(rc), "%s", asr_err_msg(&err, rc));
    }
}

static void post_service_deploy(struct asr_api *api, const struct asr_api_call *c,
                                const struct args *a)
{
    post_deploy(api, c, a, false);
}

static void post_service_rollback(struct asr_api *api, const struct asr_api_call *c,
                                  const struct args *a)
{
    post_deploy(api, c, a, true);
}

/* ---- incidents and plans ----------------------------------------------------------------- */

static void get_incidents(struct asr_api *api, const struct asr_api_call *c, const struct args *a)
{
    (void)a;
    const char *state = query(c, "state");
    if (state != NULL && strcmp(state, ASR_INCIDENT_OPEN) != 0 &&
        strcmp(state, ASR_INCIDENT_RESOLVED) != 0) {
        reply_error(c, 400, "query: state must be open or resolved, got '%.40s'", state);
        return;
    }
    long long limit, before;
    if (!query_int(c, "limit", 1, 500, 50, &limit) ||
        !query_int(c, "before", 1, INT64_MAX, 0, &before))
        return;
    struct asr_incident_query q = {.service = query(c, "service"),
                                   .status = state,
                                   .signature = query(c, "signature"),
                                   .before_id = before,
                                   .limit = (int)limit};
    json_t *out = NULL;
    struct asr_err err = {0};
    int rc = asr_view_incidents(api->st, &q, &out, &err);
    if (rc != 0) {
        reply_error(c, status_of(rc), "%s", asr_err_msg(&err, rc));
        return;
    }
    /* The next page: the same filters, before the last id of this one. */
    json_t *list = json_object_get(out, "incidents");
    json_t *next = json_null();
    if ((long long)json_array_size(list) == limit) {
        json_int_t last = json_integer_value(
            json_object_get(json_array_get(list, json_array_size(list) - 1), "id"));
        char *u = NULL;
        json_t *args = json_pack("{s:s*, s:s*, s:s*}", "state", q.status, "service", q.service,
                                 "signature", q.signature);
        struct asr_buf b;
        asr_buf_init(&b, 4096);
        asr_buf_printf(&b, API_PREFIX "/incidents?limit=%lld&before=%lld", limit, (long long)last);
        const char *k;
        json_t *v;
        json_object_foreach(args, k, v)
        {
            const char *sv = json_string_value(v);
            if (sv == NULL)
                continue; /* a filter not given ("s?" packed it as null) */
            asr_buf_printf(&b, "&%s=", k);
            for (const unsigned char *p = (const unsigned char *)sv; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("-_.~:", *p) != NULL)
                    asr_buf_append(&b, p, 1);
                else
                    asr_buf_printf(&b, "%%%02X", *p);
            }
        }
        json_decref(args);
        if (asr_buf_append(&b, "", 1) == 0 && (u = asr_buf_steal(&b)) != NULL) {
            json_decref(next);
            next = json_string(u);
            free(u);
        }
        asr_buf_free(&b);
    }
    json_object_set_new(out, "next", next != NULL ? next : json_null());
    reply(c, 200, out);
}

static void get_incident(struct asr_api *api, const struct asr_api_call *c, const struct args *a)
{
    json_t *out = NULL;
    struct asr_err err = {0};
    int rc = asr_view_incident(api->st, a->id, &out, &err);
    if (rc == ASR_ENOENT)
        reply_error(c, 404, "no incident %lld", (long long)a->id);
    else if (rc != 0)
        reply_error(c, status_of(rc), "%s", asr_err_msg(&err, rc));
    else
        reply(c, 200, out);
}

static void post_incident_resolve(struct asr_api *api, const struct asr_api_call *c,
                                  const struct args *a)
{
    static const char *const fields[] = {"reason", NULL};
    json_t *body = body_object(c, fields);
    if (body == NULL)
        return;
    const char *reason = str_field(body, "reason");
    struct asr_err err = {0};
    int rc = api->hooks.resolve(api->hooks.data, a->id,
                                reason != NULL ? reason : "resolved by an operator", &err);
    if (rc != 0)
        reply_error(c, status_of(rc), "%s", asr_err_msg(&err, rc));
    else
        reply(c, 200, json_pack("{s:I, s:s}", "incident", (json_int_t)a->id, "status", "resolved"));
    json_decref(body);
}

/* Approves or rejects the plan awaiting approval of an incident. */
static void decide(struct asr_api *api, const struct asr_api_call *c, int64_t incident,
                   int64_t plan, bool approve)
{
    static const char *const fields[] = {"by", "reason", NULL};
    json_t *body = body_object(c, fields);
    if (body == NULL)
        return;
    const char *by = str_field(body, "by"), *reason = str_field(body, "reason");
    char who[400];
    snprintf(who, sizeof(who), "%s%s%s", by != NULL ? by : "an operator (API)",
             reason != NULL ? ": " : "", reason != NULL ? reason : "");
    make_utf8(who); /* the cut may fall inside a character */
    struct asr_err err = {0};
    int rc = api->hooks.decide(api->hooks.data, incident, approve, who, &err);
    json_decref(body);
    if (rc != 0) {
        reply_error(c, status_of(rc), "%s", asr_err_msg(&err, rc));
        return;
    }
    reply(c, 200,
          json_pack("{s:I, s:I, s:s}", "incident", (json_int_t)incident, "plan", (json_int_t)plan,
                    "decision", approve ? "approved" : "rejected"));
}

/* The plan of the incident's latest remediation, for the answer; 0 when it has none. */
static int64_t incident_plan(struct asr_api *api, int64_t incident)
{
    struct asr_remediation rem = {0};
    struct asr_err err = {0};
    if (asr_remediation_of_incident(api->st, incident, &rem, &err) != 0)
        return 0;
    int64_t plan = rem.plan_id;
    asr_remediation_free(&rem);
    return plan;
}

static void post_incident_approve(struct asr_api *api, const struct asr_api_call *c,
                                  const struct args *a)
{
    decide(api, c, a->id, incident_plan(api, a->id), true);
}

static void post_incident_reject(struct asr_api *api, const struct asr_api_call *c,
                                 const struct args *a)
{
    decide(api, c, a->id, incident_plan(api, a->id), false);
}

static void get_plans(struct asr_api *api, const struct asr_api_call *c, const struct args *a)
{
    (void)a;
    long long limit;
    if (!query_int(c, "limit", 1, 500, 50, &limit))
        return;
    static const char *const states[] = {ASR_REM_AWAITING, ASR_REM_RUNNING,   ASR_REM_SUCCEEDED,
                                         ASR_REM_FAILED,   ASR_REM_ESCALATED, ASR_REM_REJECTED,
                                         ASR_REM_SHADOWED, ASR_REM_REFUSED};
    const char *status = query(c, "status");
    bool known = status == NULL;
    for (size_t i = 0; !known && i < sizeof(states) / sizeof(states[0]); i++)
        known = strcmp(status, states[i]) == 0;
    if (!known) {
        reply_error(c, 400,
                    "query: status must be a remediation state (awaiting_approval, running, "
                    "succeeded, failed, escalated, rejected, shadowed, refused), got '%.40s'",
                    status);
        return;
    }
    json_t *out = NULL;
    struct asr_err err = {0};
    int rc = asr_view_plans(api->st, status, (int)limit, &out, &err);
    if (rc != 0)
        reply_error(c, status_of(rc), "%s", asr_err_msg(&err, rc));
    else
        reply(c, 200, out);
}

static void get_plan(struct asr_api *api, const struct asr_api_call *c, const struct args *a)
{
    json_t *out = NULL;
    struct asr_err err = {0};
    int rc = asr_view_plan(api->st, a->id, &out, &err);
    if (rc != 0)
        reply_error(c, status_of(rc), "%s", asr_err_msg(&err, rc));
    else
        reply(c, 200, out);
}

static void plan_decide(struct asr_api *api, const struct asr_api_call *c, const struct args *a,
                        bool approve)
{
    json_t *plan = NULL;
    struct asr_err err = {0};
    int rc = asr_view_plan(api->st, a->id, &plan, &err);
    if (rc != 0) {
        reply_error(c, status_of(rc), "%s", asr_err_msg(&err, rc));
        return;
    }
    const char *state = str_field(plan, "remediation_state");
    int64_t incident = json_integer_value(json_object_get(plan, "incident_id"));
    if (state == NULL || strcmp(state, "awaiting_approval") != 0)
        reply_error(c, 409, "plan %lld is not awaiting approval (its remediation is %s)",
                    (long long)a->id, state != NULL ? state : "not started");
    else
        decide(api, c, incident, a->id, approve);
    json_decref(plan);
}

static void post_plan_approve(struct asr_api *api, const struct asr_api_call *c,
                              const struct args *a)
{
    plan_decide(api, c, a, true);
}

static void post_plan_reject(struct asr_api *api, const struct asr_api_call *c,
                             const struct args *a)
{
    plan_decide(api, c, a, false);
}

/* ---- audit and ingest -------------------------------------------------------------------- */

static void get_audit(struct asr_api *api, const struct asr_api_call *c, const struct args *a)
{
    (void)a;
    long long nrows;
    if (!query_int(c, "rows", 0, 500, 0, &nrows))
        return;
    char *anchor = NULL;
    struct asr_err err = {0};
    struct asr_audit_check chk = {0};
    int rc = asr_audit_anchor_path(api->st, &anchor, &err);
    if (rc == 0 || rc == ASR_ENOENT)
        rc = asr_audit_verify(api->st, anchor, &chk, &err);
    free(anchor);
    if (rc != 0) {
        reply_error(c, 500, "%s", asr_err_msg(&err, rc));
        return;
    }
    json_t *out = json_pack("{s:b, s:I, s:I, s:s?, s:{s:I, s:s}, s:I, s:I}", "ok", chk.ok, "rows",
                            (json_int_t)chk.rows, "bad_seq", (json_int_t)chk.bad_seq, "problem",
                            chk.ok ? NULL : chk.why, "head", "seq", (json_int_t)chk.head_seq,
                            "hash", chk.head, "anchor_seq", (json_int_t)chk.anchor_seq,
                            "unanchored", (json_int_t)chk.unanchored);
    if (nrows > 0) {
        struct asr_audit_row *rows = NULL;
        size_t n = 0;
        json_t *list = json_array();
        if (asr_audit_list(api->st, 0, (int)nrows, &rows, &n, &err) == 0) {
            for (size_t i = 0; i < n; i++)
                json_array_append_new(list, asr_audit_row_json(&rows[i]));
            asr_audit_rows_free(rows, n);
        }
        json_object_set_new(out, "recent", list);
    }
    reply(c, 200, out);
}

static void post_ingest_cloudwatch(struct asr_api *api, const struct asr_api_call *c,
                                   const struct args *a)
{
    (void)a;
    struct asr_cw_batch b = {0};
    struct asr_err err = {0};
    int rc = asr_cw_decode_envelope(c->body, c->body_len, NULL, &b, &err);
    if (rc != 0) {
        reply_error(c, 400, "body: not a CloudWatch Logs subscription payload: %s", err.msg);
        return;
    }
    if (b.control) {
        reply(c, 200, json_pack("{s:i, s:b}", "accepted", 0, "control", 1));
        asr_cw_batch_free(&b);
        return;
    }
    const char *forced = query(c, "service");
    /* ?service= names a configured service; else the log group stands for one. */
    const char *svc = forced == NULL ? asr_cw_group_service(api->cfg, b.log_group)
                      : asr_config_service(api->cfg, forced) != NULL ? forced
                                                                     : NULL;
    if (svc == NULL) {
        if (forced != NULL)
            reply_error(c, 404, "no service '%.100s'", forced);
        else
            reply_error(c, 400, "log group '%.200s' names no service; add ?service=NAME to the URL",
                        b.log_group);
        asr_cw_batch_free(&b);
        return;
    }
    char source[600];
    snprintf(source, sizeof(source), "cloudwatch:%.280s/%.280s", b.log_group, b.log_stream);
    make_utf8(source); /* the cuts may fall inside a character */
    size_t lines = 0;
    for (size_t i = 0; rc == 0 && i < b.nevents; i++) {
        const struct asr_cw_event *e = &b.events[i];
        /* A message may hold several lines; each is a line of the service's log. */
        for (size_t off = 0; rc == 0 && off < e->message_len;) {
            const char *p = e->message + off;
            const char *nl = memchr(p, '\n', e->message_len - off);
            size_t len = nl != NULL ? (size_t)(nl - p) : e->message_len - off;
            if (len > 0 && p[len - 1] == '\r')
                len--;
            if (len > 0) {
                rc = api->hooks.ingest(api->hooks.data, svc, source, p, len, e->timestamp_ms, &err);
                lines++;
            }
            off += (size_t)(nl != NULL ? nl - p + 1 : (ptrdiff_t)(e->message_len - off));
        }
    }
    if (rc != 0)
        reply_error(c, 500, "ingest: %s", asr_err_msg(&err, rc));
    else
        reply(c, 200,
              json_pack("{s:I, s:I, s:s, s:s}", "accepted", (json_int_t)b.nevents, "lines",
                        (json_int_t)lines, "service", svc, "source", source));
    asr_cw_batch_free(&b);
}

/* ---- routing ----------------------------------------------------------------------------- */

static const struct route ROUTES[] = {
    {"GET", "/status", false, get_status},
    {"GET", "/services", false, get_services},
    {"GET", "/services/{name}", false, get_service},
    {"POST", "/services/{name}/deploy", true, post_service_deploy},
    {"POST", "/services/{name}/rollback", true, post_service_rollback},
    {"GET", "/incidents", false, get_incidents},
    {"GET", "/incidents/{id}", false, get_incident},
    {"POST", "/incidents/{id}/resolve", true, post_incident_resolve},
    {"POST", "/incidents/{id}/approve", true, post_incident_approve},
    {"POST", "/incidents/{id}/reject", true, post_incident_reject},
    {"GET", "/plans", false, get_plans},
    {"GET", "/plans/{id}", false, get_plan},
    {"POST", "/plans/{id}/approve", true, post_plan_approve},
    {"POST", "/plans/{id}/reject", true, post_plan_reject},
    {"GET", "/audit", false, get_audit},
    {"POST", "/ingest/cloudwatch", true, post_ingest_cloudwatch},
};
#define NROUTES (sizeof(ROUTES) / sizeof(ROUTES[0]))

/* Whether path (after the prefix) fits pattern; fills a. An {id} that is not a positive whole
 * number does not fit (the path is then unknown: 404). */
static bool match(const char *pattern, const char *path, struct args *a)
{
    while (*pattern != '\0') {
        if (*path != '/' || *pattern != '/')
            return false;
        pattern++;
        path++;
        const char *pe = strchr(pattern, '/');
        const char *se = strchr(path, '/');
        size_t pl = pe != NULL ? (size_t)(pe - pattern) : strlen(pattern);
        size_t sl = se != NULL ? (size_t)(se - path) : strlen(path);
        if (sl == 0)
            return false;
        if (pl == 4 && memcmp(pattern, "{id}", 4) == 0) {
            int64_t v = 0;
            for (size_t i = 0; i < sl; i++) {
                if (path[i] < '0' || path[i] > '9' || v > (INT64_MAX - (path[i] - '0')) / 10)
                    return false;
                v = v * 10 + (path[i] - '0');
            }
            if (v <= 0)
                return false;
            a->id = v;
        } else if (pl == 6 && memcmp(pattern, "{name}", 6) == 0) {
            if (sl >= sizeof(a->name))
                return false;
            memcpy(a->name, path, sl);
            a->name[sl] = '\0';
        } else if (pl != sl || memcmp(pattern, path, sl) != 0) {
            return false;
        }
        pattern += pl;
        path += sl;
    }
    return *path == '\0' || (path[0] == '/' && path[1] == '\0');
}

void asr_api_route(struct asr_api *api, const struct asr_api_call *c)
{
    size_t plen = strlen(API_PREFIX);
    if (c->path == NULL || strncmp(c->path, API_PREFIX, plen) != 0 ||
        (c->path[plen] != '/' && c->path[plen] != '\0')) {
        reply_error(c, 404, "no such endpoint: the API is under " API_PREFIX "/ (docs/api.md)");
        return;
    }
    const char *rest = c->path + plen;
    char allow[64] = "";
    for (size_t i = 0; i < NROUTES; i++) {
        struct args a = {0};
        if (!match(ROUTES[i].pattern, rest, &a))
            continue;
        if (c->method == NULL || strcmp(c->method, ROUTES[i].method) != 0) {
            snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
                     allow[0] ? ", " : "", ROUTES[i].method);
            continue;
        }
        if (ROUTES[i].acts && !c->trusted) {
            reply_error(c, 401, "this call changes things: it needs the API token");
            return;
        }
        if (ROUTES[i].acts && api->hooks.stopping(api->hooks.data)) {
            reply_error(c, 503, "asr is stopping");
            return;
        }
        ROUTES[i].fn(api, c, &a);
        return;
    }
    if (allow[0] != '\0')
        reply_error(c, 405, "%s is not allowed on %.200s (allowed: %s)",
                    c->method != NULL ? c->method : "?", c->path, allow);
    else
        reply_error(c, 404, "no such endpoint: %.200s (docs/api.md lists them)", c->path);
}

/* ---- the HTTP door ----------------------------------------------------------------------- */

static const char *http_query(void *ctx, const char *key)
{
    return asr_http_query(ctx, key);
}

static void http_reply(void *ctx, int status, json_t *body)
{
    asr_http_reply_json(ctx, status, body);
}

/* Constant-time comparison of the presented token with ours. */
static bool token_ok(const struct asr_api *api, const char *header)
{
    if (api->token == NULL || header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
        return false;
    const char *t = header + 7;
    size_t a = strlen(t), b = strlen(api->token);
    unsigned char diff = (unsigned char)(a != b);
    for (size_t i = 0; i < b; i++)
        diff |= (unsigned char)(t[i < a ? i : 0] ^ api->token[i]);
    return diff == 0;
}

/*
 * Whether the Host header names this machine's loopback: an address literal, "localhost", or the
 * configured listen host. Reads without a token are open to loopback clients only when it does:
 * otherwise a web page whose name an attacker points at 127.0.0.1 (DNS rebinding) could read the
 * API from the operator's own browser, as the same origin.
 */
static bool host_is_local(const struct asr_api *api, const char *host)
{
    if (host == NULL)
        return false;
    size_t n = strlen(host);
    const char *colon = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
    if (colon != NULL) {
        const char *port = colon + (host[0] == '[' ? 2 : 1);
        if (port[0] == '\0' || strspn(port, "0123456789") != strlen(port))
            return false;
        n = (size_t)(colon - host) + (host[0] == '[');
    }
    const char *names[] = {"localhost", "127.0.0.1", "[::1]", api->cfg->api.listen_host};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i] != NULL && strlen(names[i]) == n && strncasecmp(host, names[i], n) == 0)
            return true;
    return n > 4 && strncmp(host, "127.", 4) == 0 && strspn(host, "0123456789.") >= n;
}

/* Mutating: the token. Reading: loopback, or the token. Answers and returns false if refused. */
static bool http_allowed(struct asr_api *api, struct asr_http_req *r, bool acts, bool *trusted)
{
    const char *auth = asr_http_header(r, "Authorization");
    *trusted = token_ok(api, auth);
    if (*trusted)
        return true;
    if (!acts && asr_http_loopback(r)) {
        if (host_is_local(api, asr_http_header(r, "Host")))
            return true;
        asr_http_reply_error(r, 403,
                             "reads without the token are open to this machine only when the "
                             "request names it (Host: localhost or an address)");
        return false;
    }
    if (api->token == NULL) {
        asr_http_reply_error(r, 403,
                             acts ? "calls that change things are refused: no API token is "
                                    "configured (set api.token_env and that environment variable)"
                                  : "reads from other machines need the API token, and none is "
                                    "configured (api.token_env)");
        return false;
    }
    asr_http_add_header(r, "WWW-Authenticate", "Bearer realm=\"asr\"");
    asr_http_reply_error(r, 401,
                         auth == NULL ? "this call needs the API token: Authorization: Bearer TOKEN"
                                      : "the API token is not right");
    return false;
}

static void serve_asset(struct asr_http_req *r, const char *name)
{
    const struct asr_asset *a = asr_asset_find(name);
    if (a == NULL) {
        asr_http_reply_error(r, 404, "no such file in the dashboard");
        return;
    }
    asr_http_add_header(r, "Content-Security-Policy",
                        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                        "base-uri 'none'; form-action 'none'");
    asr_http_add_header(r, "Referrer-Policy", "no-referrer");
    asr_http_reply(r, 200, a->content_type, (const char *)a->data, a->len);
}

/*
 * The store's metrics are counted over all of history (150 ms at 10,000 incidents, bench/api.sh),
 * and they change only when the store does: every write they count also writes an event, so they
 * are rendered again only when the event head has moved, or after METRICS_MAX_AGE_MS (writes of
 * other processes, such as `asr kb add`, write no event here). The live part is rendered on every
 * scrape.
 */
#define METRICS_MAX_AGE_MS 30000

static void serve_metrics(struct asr_api *api, struct asr_http_req *r)
{
    struct asr_err err = {0};
    int64_t head = asr_store_event_head(api->st), now = (int64_t)asr_time_mono_ms();
    int rc = 0;
    if (api->metrics.data == NULL || head != api->metrics_head ||
        now - api->metrics_at > METRICS_MAX_AGE_MS) {
        asr_buf_reset(&api->metrics);
        rc = asr_metrics_render(api->st, NULL, &api->metrics, &err);
        api->metrics_head = head;
        api->metrics_at = now;
        if (rc != 0)
            asr_buf_free(&api->metrics);
    }
    json_t *status = api->hooks.status(api->hooks.data);
    struct asr_buf b;
    asr_buf_init(&b, 64u << 20);
    if (rc == 0 && api->metrics.len > 0)
        rc = asr_buf_append(&b, api->metrics.data, api->metrics.len);
    if (rc == 0)
        rc = asr_metrics_render(NULL, status, &b, &err);
    json_decref(status);
    if (rc != 0)
        asr_http_reply_error(r, 500, asr_err_msg(&err, rc));
    else
        asr_http_reply(r, 200, ASR_METRICS_CONTENT_TYPE, b.data != NULL ? b.data : "", b.len);
    asr_buf_free(&b);
}

static void serve_events(struct asr_api *api, struct asr_http_req *r)
{
    const char *last = asr_http_header(r, "Last-Event-ID");
    const char *after = asr_http_query(r, "after");
    const char *v = last != NULL ? last : after;
    long long from = -1;
    if (v != NULL) {
        char *end;
        errno = 0;
        from = strtoll(v, &end, 10);
        if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno == ERANGE) {
            asr_http_reply_error(r, 400,
                                 last != NULL
                                     ? "Last-Event-ID must be an event id (a whole number)"
                                     : "query: after must be an event id (a whole number)");
            return;
        }
    }
    asr_events_attach(api->events, r, from);
}

static void http_handler(struct asr_http_req *r, void *data)
{
    struct asr_api *api = data;
    const char *method = asr_http_method(r), *path = asr_http_path(r);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool trusted = false;
    if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0 ||
        strncmp(path, "/assets/", 8) == 0) {
        /* The dashboard's files are the same for everyone and hold no data. */
        if (!get)
            asr_http_reply_error(r, 405, "the dashboard's files are read with GET");
        else
            serve_asset(r, path[1] == 'a' ? path + 8 : "index.html");
        return;
    }
    if (strcmp(path, "/metrics") == 0 || strcmp(path, API_PREFIX "/events") == 0) {
        if (strcmp(method, "GET") != 0) {
            asr_http_reply_error(r, 405, "this endpoint is read with GET");
            return;
        }
        if (!http_allowed(api, r, false, &trusted))
            return;
        if (path[1] == 'm')
            serve_metrics(api, r);
        else
            serve_events(api, r);
        return;
    }
    bool acts = !get;
    if (!http_allowed(api, r, acts, &trusted))
        return;
    size_t len;
    const char *body = asr_http_body(r, &len);
    struct asr_api_call c = {.method = strcmp(method, "HEAD") == 0 ? "GET" : method,
                             .path = path,
                             .query = http_query,
                             .body = body,
                             .body_len = len,
                             .trusted = trusted,
                             .reply = http_reply,
                             .ctx = r};
    asr_api_route(api, &c);
}

/* ---- the control socket's door ----------------------------------------------------------- */

struct control_call {
    struct asr_control_conn *conn;
    json_t *query; /* object of strings, owned */
    char *body;
};

static const char *control_query(void *ctx, const char *key)
{
    struct control_call *cc = ctx;
    return json_string_value(json_object_get(cc->query, key));
}

static void control_progress(void *ctx, const char *msg)
{
    struct control_call *cc = ctx;
    asr_control_progress(cc->conn, msg);
}

static void control_reply(void *ctx, int status, json_t *body)
{
    struct control_call *cc = ctx;
    asr_control_reply(cc->conn, json_pack("{s:b, s:i, s:o}", "ok", status < 300, "status", status,
                                          "body", body != NULL ? body : json_null()));
    json_decref(cc->query);
    free(cc->body);
    free(cc);
}

void asr_api_control(struct asr_api *api, struct asr_control_conn *conn, json_t *req)
{
    const char *method = json_string_value(json_object_get(req, "method"));
    const char *path = json_string_value(json_object_get(req, "path"));
    json_t *body = json_object_get(req, "body");
    json_t *q = json_object_get(req, "query");
    if (method == NULL || path == NULL || (q != NULL && !json_is_object(q))) {
        asr_control_reply_error(conn, "a request is {\"method\", \"path\", \"query\"?, \"body\"?}");
        return;
    }
    struct control_call *cc = calloc(1, sizeof(*cc));
    if (cc == NULL) {
        asr_control_reply_error(conn, "out of memory");
        return;
    }
    cc->conn = conn;
    cc->query = q != NULL ? json_incref(q) : json_object();
    cc->body = body != NULL && !json_is_null(body) ? json_dumps(body, JSON_COMPACT) : NULL;
    struct asr_api_call c = {.method = method,
                             .path = path,
                             .query = control_query,
                             .body = cc->body,
                             .body_len = cc->body != NULL ? strlen(cc->body) : 0,
                             .trusted = true,
                             .progress = control_progress,
                             .reply = control_reply,
                             .ctx = cc};
    asr_api_route(api, &c);
}

/* ---- life -------------------------------------------------------------------------------- */

static void load_token(struct asr_api *api)
{
    free(api->token);
    api->token = NULL;
    const char *env = api->cfg->api.token_env;
    const char *v = env != NULL ? getenv(env) : NULL;
    if (v != NULL && v[0] != '\0')
        api->token = strdup(v);
    else if (env != NULL)
        asr_warn("api: the environment variable %s (api.token_env) is not set: calls that change "
                 "things are refused over HTTP",
                 env);
}

int asr_api_create(uv_loop_t *loop, struct asr_store *st, const struct asr_config *cfg,
                   const struct asr_api_hooks *hooks, struct asr_api **out, struct asr_err *err)
{
    struct asr_api *api = calloc(1, sizeof(*api));
    if (api == NULL)
        return asr_err_set(err, ASR_ENOMEM, "api: out of memory");
    api->loop = loop;
    api->st = st;
    api->cfg = cfg;
    api->hooks = *hooks;
    asr_buf_init(&api->metrics, 64u << 20);
    int rc = asr_events_create(loop, st, &api->events, err);
    if (rc != 0) {
        free(api);
        return rc;
    }
    *out = api;
    return 0;
}

void asr_api_set_config(struct asr_api *api, const struct asr_config *cfg)
{
    const struct asr_api_cfg *was = &api->cfg->api, *now = &cfg->api;
    bool moved = (was->listen_host == NULL) != (now->listen_host == NULL) ||
                 (was->listen_host != NULL && (strcmp(was->listen_host, now->listen_host) != 0 ||
                                               was->listen_port != now->listen_port));
    if (moved)
        asr_warn("api: api.listen changed; the API keeps its address until asr restarts");
    api->cfg = cfg;
    if (api->http != NULL)
        load_token(api);
}

int asr_api_listen(struct asr_api *api, struct asr_err *err)
{
    const struct asr_api_cfg *ac = &api->cfg->api;
    if (ac->listen_host == NULL)
        return 0;
    load_token(api);
    struct asr_http_opts o = {.host = ac->listen_host,
                              .port = ac->listen_port,
                              .max_body = (size_t)ac->max_body_bytes,
                              .handler = http_handler,
                              .data = api};
    int rc = asr_http_start(api->loop, &o, &api->http, err);
    if (rc != 0)
        return rc;
    asr_info("api: listening on http://%s%s%s:%d/ (dashboard at /, API under " API_PREFIX
             ", metrics at /metrics)",
             strchr(ac->listen_host, ':') ? "[" : "", ac->listen_host,
             strchr(ac->listen_host, ':') ? "]" : "", asr_http_port(api->http));
    return 0;
}

int asr_api_port(const struct asr_api *api)
{
    return api != NULL && api->http != NULL ? asr_http_port(api->http) : 0;
}

void asr_api_destroy(struct asr_api *api)
{
    if (api == NULL)
        return;
    /* Deploys still running answer nobody: their calls end with the server. */
    while (api->pending != NULL) {
        struct pending *p = api->pending;
        reply_error(&p->call, 503, "asr is stopping");
        pending_unlink(p);
    }
    asr_http_stop(api->http);
    asr_events_destroy(api->events);
    free(api->token);
    asr_buf_free(&api->metrics);
    free(api);
}
