/*
 * routes.c - what each URL does, including the fault routes asr heals.
 *
 * The route table below is the whole HTTP surface. Handlers run on
 * libmicrohttpd's per-connection threads, so a slow fault route never holds
 * up /health on another connection.
 *
 * FAULT 2 (/test-fault/external-api): UPSTREAM_TIMEOUT_MS below is shorter
 * than the upstream's delay (2000 ms in the demo). Its fix is a larger
 * timeout, e.g. 3000. Faults 1 and 3 live in db.c.
 */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "faultlog.h"

/* How long the upstream call may take, in ms. Too short on purpose: the fix for fault 2. */
static const int UPSTREAM_TIMEOUT_MS = 500;

/* Marks a request that access_cb has counted as in flight. */
static char REQUEST_MARK;

typedef enum MHD_Result (*handler_fn)(struct shop_app *app, struct MHD_Connection *conn,
                                      const char *route, bool verification);

struct route {
    const char *path;
    const char *method; /* "GET" also answers HEAD */
    handler_fn handler;
};

size_t shop_json_escape(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    for (; *src; src++) {
        unsigned char c = (unsigned char)*src;
        char esc[7];
        size_t len = 0;

        if (c == '"' || c == '\\') {
            esc[len++] = '\\';
            esc[len++] = (char)c;
        } else if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
        } else {
            esc[len++] = (char)c;
        }
        if (n + len + 4 > cap) {
            /* Keep room for "..." and the terminator; never split an escape. */
            if (n + 4 <= cap) {
                memcpy(dst + n, "...", 3);
                n += 3;
            }
            break;
        }
        memcpy(dst + n, esc, len);
        n += len;
    }
    dst[n] = '\0';
    return n;
}

/*
 * Queues a JSON answer. While the shop is stopping every answer carries
 * "Connection: close" so that keep-alive clients go away.
 */
static enum MHD_Result reply_with(struct shop_app *app, struct MHD_Connection *conn, int status,
                                  const char *body, size_t len, const char *allow)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (atomic_load_explicit(&app->stopping, memory_order_relaxed))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(conn, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply(struct shop_app *app, struct MHD_Connection *conn, int status,
                             const char *body, size_t len)
{
    return reply_with(app, conn, status, body, len, NULL);
}

static enum MHD_Result reply_str(struct shop_app *app, struct MHD_Connection *conn, int status,
                                 const char *body)
{
    return reply(app, conn, status, body, strlen(body));
}

static enum MHD_Result root_h(struct shop_app *app, struct MHD_Connection *conn, const char *route,
                              bool verification)
{
    (void)route;
    (void)verification;
    return reply_str(app, conn, MHD_HTTP_OK, app->root_body);
}

static enum MHD_Result health_h(struct shop_app *app, struct MHD_Connection *conn,
                                const char *route, bool verification)
{
    (void)route;
    (void)verification;
    return reply_str(app, conn, MHD_HTTP_OK, "{\"status\":\"ok\"}");
}

static enum MHD_Result version_h(struct shop_app *app, struct MHD_Connection *conn,
                                 const char *route, bool verification)
{
    (void)route;
    (void)verification;
    return reply_str(app, conn, MHD_HTTP_OK, app->version_body);
}

/* Answers 500 for a database failure that is not one of the planted faults. */
static enum MHD_Result db_error(struct shop_app *app, struct MHD_Connection *conn,
                                const char *route, bool verification, const char *err)
{
    char detail[320], body[400];

    shop_faultlog_write("DB_ERROR", route, "query_failed", NULL, verification);
    shop_json_escape(detail, sizeof(detail), err);
    snprintf(body, sizeof(body), "{\"error\":\"db_error\",\"detail\":\"%s\"}", detail);
    return reply_str(app, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, body);
}

static enum MHD_Result orders_h(struct shop_app *app, struct MHD_Connection *conn,
                                const char *route, bool verification)
{
    char err[256], body[64];
    long long count = 0;

    if (shop_db_count_orders(app->db_path, &count, err, sizeof(err)) < 0)
        return db_error(app, conn, route, verification, err);
    snprintf(body, sizeof(body), "{\"orders\":%lld}", count);
    return reply_str(app, conn, MHD_HTTP_OK, body);
}

/* Fault 1: the orders report runs ORDERS_REPORT_SQL (db.c). */
static enum MHD_Result run_h(struct shop_app *app, struct MHD_Connection *conn, const char *route,
                             bool verification)
{
    char err[256], detail[320], body[400];
    long long value = 0;
    int rc = shop_db_orders_report(app->db_path, &value, err, sizeof(err));

    if (rc == SHOP_DB_ESQL) {
        shop_faultlog_write("FAULT_SQL_INJECTION_TEST", route, "invalid_sql_executed", NULL,
                            verification);
        shop_json_escape(detail, sizeof(detail), err);
        snprintf(body, sizeof(body), "{\"error\":\"invalid_sql\",\"detail\":\"%s\"}", detail);
        return reply_str(app, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, body);
    }
    if (rc < 0)
        return db_error(app, conn, route, verification, err);
    snprintf(body, sizeof(body), "{\"report\":\"ok\",\"value\":%lld}", value);
    return reply_str(app, conn, MHD_HTTP_OK, body);
}

/* Fault 3: the slow statement runs under DB_STATEMENT_LIMIT_MS (db.c). */
static enum MHD_Result db_timeout_h(struct shop_app *app, struct MHD_Connection *conn,
                                    const char *route, bool verification)
{
    char err[256], body[128];
    long long value = 0;
    int limit_ms = 0;
    int rc = shop_db_slow_query(app->db_path, &value, &limit_ms, err, sizeof(err));

    if (rc == SHOP_DB_ETIMEOUT) {
        shop_faultlog_write("FAULT_DB_TIMEOUT", route, "statement_timeout", NULL, verification);
        snprintf(body, sizeof(body), "{\"error\":\"statement_timeout\",\"limit_ms\":%d}", limit_ms);
        return reply_str(app, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, body);
    }
    if (rc < 0)
        return db_error(app, conn, route, verification, err);
    snprintf(body, sizeof(body), "{\"status\":\"ok\",\"value\":%lld,\"limit_ms\":%d}", value,
             limit_ms);
    return reply_str(app, conn, MHD_HTTP_OK, body);
}

/* Fault 2: the upstream call is bounded by UPSTREAM_TIMEOUT_MS (above). */
static enum MHD_Result external_h(struct shop_app *app, struct MHD_Connection *conn,
                                  const char *route, bool verification)
{
    /* 64 KiB: too large for a comfortable stack frame, so it lives on the heap. */
    struct shop_fetch_result *res = malloc(sizeof(*res));
    char extra[64], body[160];
    const char *reason = NULL;
    enum MHD_Result ret;
    int rc;

    if (!res)
        return MHD_NO;
    rc = shop_fetch_get(&app->upstream, UPSTREAM_TIMEOUT_MS, res);
    switch (rc) {
    case SHOP_FETCH_OK:
        if (res->status == MHD_HTTP_OK) {
            ret = reply(app, conn, MHD_HTTP_OK, res->body, res->body_len);
            goto out;
        }
        snprintf(extra, sizeof(extra), "status=%d", res->status);
        shop_faultlog_write("UPSTREAM_ERROR", route, "bad_status", extra, verification);
        snprintf(body, sizeof(body), "{\"error\":\"upstream_status\",\"status\":%d}", res->status);
        ret = reply_str(app, conn, MHD_HTTP_BAD_GATEWAY, body);
        goto out;
    case SHOP_FETCH_TIMEOUT:
        snprintf(extra, sizeof(extra), "latency=%.3f", (double)res->elapsed_ms / 1000.0);
        shop_faultlog_write("FAULT_EXTERNAL_API_LATENCY", route, "external_timeout", extra,
                            verification);
        snprintf(body, sizeof(body),
                 "{\"error\":\"upstream_timeout\",\"timeout_ms\":%d,\"latency\":%.3f}",
                 UPSTREAM_TIMEOUT_MS, (double)res->elapsed_ms / 1000.0);
        ret = reply_str(app, conn, MHD_HTTP_GATEWAY_TIMEOUT, body);
        goto out;
    case SHOP_FETCH_CONNECT_FAILED:
        shop_faultlog_write("UPSTREAM_UNREACHABLE", route, "connect_failed", NULL, verification);
        ret = reply_str(app, conn, MHD_HTTP_BAD_GATEWAY, "{\"error\":\"upstream_unreachable\"}");
        goto out;
    case SHOP_FETCH_TOO_LARGE:
        reason = "too_large";
        break;
    case SHOP_FETCH_BAD_RESPONSE:
        reason = "bad_response";
        break;
    default:
        reason = "io_error";
        break;
    }
    shop_faultlog_write("UPSTREAM_ERROR", route, reason, NULL, verification);
    snprintf(body, sizeof(body), "{\"error\":\"upstream_error\",\"reason\":\"%s\"}", reason);
    ret = reply_str(app, conn, MHD_HTTP_BAD_GATEWAY, body);
out:
    free(res);
    return ret;
}

/* The crash fault has no fix in code: asr's answer is a restart. */
static enum MHD_Result crash_h(struct shop_app *app, struct MHD_Connection *conn, const char *route,
                               bool verification)
{
    (void)app;
    (void)conn;
    shop_faultlog_write("FAULT_CRASH", route, "abort", NULL, verification);
    abort();
}

static const struct route ROUTES[] = {
    {"/", "GET", root_h},
    {"/health", "GET", health_h},
    {"/version", "GET", version_h},
    {"/orders", "GET", orders_h},
    {"/test-fault/run", "POST", run_h},
    {"/test-fault/external-api", "POST", external_h},
    {"/test-fault/db-timeout", "POST", db_timeout_h},
    {"/test-fault/crash", "POST", crash_h},
};

int shop_app_init(struct shop_app *app, const char *commit_id, const char *db_path,
                  const char *upstream_url, char *err, size_t errlen)
{
    char commit[256];

    app->commit = commit_id;
    app->db_path = db_path;
    atomic_init(&app->in_flight, 0);
    atomic_init(&app->stopping, false);
    shop_json_escape(commit, sizeof(commit), app->commit);
    snprintf(app->root_body, sizeof(app->root_body), "{\"service\":\"shop\",\"version\":\"%s\"}",
             commit);
    snprintf(app->version_body, sizeof(app->version_body), "{\"commit\":\"%s\"}", commit);
    if (shop_url_parse(upstream_url, &app->upstream) < 0) {
        snprintf(err, errlen, "--upstream %s: not an http://host[:port]/path URL", upstream_url);
        return -1;
    }
    if (shop_db_init(db_path, err, errlen) < 0)
        return -1;
    return 0;
}

enum MHD_Result shop_routes_access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls)
{
    struct shop_app *app = cls;
    const char *hdr;
    size_t i;
    const char *allow = NULL;

    (void)version;
    (void)upload_data;
    if (*req_cls == NULL) {
        /* First call: headers are in. Count the request; answer on a later call. */
        *req_cls = &REQUEST_MARK;
        atomic_fetch_add(&app->in_flight, 1);
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        /* No route reads a body: discard it, keeping nothing. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    hdr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Asr-Verification");
    for (i = 0; i < sizeof(ROUTES) / sizeof(ROUTES[0]); i++) {
        const struct route *r = &ROUTES[i];

        if (strcmp(url, r->path) != 0)
            continue;
        if (strcmp(method, r->method) == 0 ||
            (strcmp(r->method, "GET") == 0 && strcmp(method, "HEAD") == 0))
            return r->handler(app, conn, r->path, hdr && strcmp(hdr, "1") == 0);
        allow = strcmp(r->method, "GET") == 0 ? "GET, HEAD" : r->method;
    }
    if (allow) {
        static const char body[] = "{\"error\":\"method_not_allowed\"}";

        return reply_with(app, conn, MHD_HTTP_METHOD_NOT_ALLOWED, body, sizeof(body) - 1, allow);
    }
    return reply_str(app, conn, MHD_HTTP_NOT_FOUND, "{\"error\":\"not_found\"}");
}

void shop_routes_completed_cb(void *cls, struct MHD_Connection *conn, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct shop_app *app = cls;

    (void)conn;
    (void)toe;
    if (*req_cls == &REQUEST_MARK) {
        atomic_fetch_sub(&app->in_flight, 1);
        *req_cls = NULL;
    }
}
