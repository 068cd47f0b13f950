/*
 * health.c - one HTTP request on the loop: the health probe (GET, status only), and the
 * verification replay (any method, with the body) (see health.h).
 */
#include "recover/health.h"
#include "asr/timeutil.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct asr_probe {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_write_t write_req;
    http_parser parser;
    char *request; /* the bytes to send (owned) */
    size_t request_len;
    char rbuf[4096];
    asr_probe_cb cb;
    asr_request_cb rcb; /* a request that wants the body (asr_request_start) */
    int status;
    char *body; /* the response body, up to body_cap bytes */
    size_t body_len, body_cap;
    bool body_cut;
    void *data;
    uint64_t started_us;
    int open_handles;
    bool done;
    const char *fail_why; /* set when the failure was found before the loop ran */
    bool local;           /* the failure is ours (no fd, no memory), not the service's */
};

static http_parser_settings settings;

static void closed_cb(uv_handle_t *h)
{
    struct asr_probe *p = h->data;
    if (--p->open_handles == 0) {
        free(p->request);
        free(p->body);
        free(p);
    }
}

static void finish(struct asr_probe *p, bool ok, int status, const char *why)
{
    if (p->done)
        return;
    p->done = true;
    if (p->cb != NULL)
        p->cb(ok, status, why, asr_time_mono_us() - p->started_us, p->data);
    if (p->rcb != NULL)
        p->rcb(status, p->body != NULL ? p->body : "", p->body_len, ok ? NULL : why, p->data);
    uv_close((uv_handle_t *)&p->timer, closed_cb);
    uv_close((uv_handle_t *)&p->tcp, closed_cb);
}

void asr_probe_cancel(struct asr_probe *p)
{
    if (p == NULL)
        return;
    p->cb = NULL;
    p->rcb = NULL;
    finish(p, false, 0, "cancelled");
}

static int on_headers_complete(http_parser *hp)
{
    struct asr_probe *p = hp->data;
    int st = (int)hp->status_code;
    if (p->rcb != NULL) { /* the body is wanted too */
        p->status = st;
        return 0;
    }
    finish(p, st >= 200 && st < 400, st, st >= 200 && st < 400 ? NULL : "bad status");
    return 1;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    struct asr_probe *p = hp->data;
    size_t room = p->body_cap - p->body_len;
    if (len > room) {
        len = room;
        p->body_cut = true;
    }
    memcpy(p->body + p->body_len, at, len);
    p->body_len += len;
    p->body[p->body_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct asr_probe *p = hp->data;
    finish(p, true, p->status, NULL);
    return 1;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct asr_probe *p = h->data;
    buf->base = p->rbuf;
    buf->len = sizeof(p->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct asr_probe *p = s->data;
    if (p->done || nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF && p->rcb != NULL && p->status > 0) {
            http_parser_execute(&p->parser, &settings, NULL, 0); /* a body ended by the close */
            if (!p->done)
                finish(p, true, p->status, NULL);
            return;
        }
        finish(p, false, 0, nread == UV_EOF ? "connection closed" : "read error");
        return;
    }
    http_parser_execute(&p->parser, &settings, buf->base, (size_t)nread);
    if (!p->done && HTTP_PARSER_ERRNO(&p->parser) != HPE_OK)
        finish(p, false, 0, "invalid response");
}

static void write_cb(uv_write_t *req, int status)
{
    struct asr_probe *p = req->data;
    if (status != 0 && !p->done)
        finish(p, false, 0, "write failed");
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct asr_probe *p = req->data;
    if (p->done)
        return;
    if (status != 0) {
        finish(p, false, 0, status == UV_ECONNREFUSED ? "connection refused" : "connect failed");
        return;
    }
    uv_buf_t b = uv_buf_init(p->request, (unsigned)p->request_len);
    p->write_req.data = p;
    uv_write(&p->write_req, (uv_stream_t *)&p->tcp, &b, 1, write_cb);
    uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, read_cb);
}

static void timeout_cb(uv_timer_t *t)
{
    struct asr_probe *p = t->data;
    finish(p, false, p->local ? -1 : 0, p->fail_why ? p->fail_why : "timed out");
}

static struct asr_probe *start(uv_loop_t *loop, const char *host, int port, char *request,
                               size_t request_len, int timeout_ms, void *data)
{
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    struct sockaddr_storage addr;
    if (request == NULL || (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
                            uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0)) {
        free(request);
        return NULL;
    }
    struct asr_probe *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        free(request);
        return NULL;
    }
    p->request = request;
    p->request_len = request_len;
    p->data = data;
    p->started_us = asr_time_mono_us();
    http_parser_init(&p->parser, HTTP_RESPONSE);
    p->parser.data = p;
    uv_tcp_init(loop, &p->tcp);
    uv_timer_init(loop, &p->timer);
    p->tcp.data = p;
    p->timer.data = p;
    p->connect_req.data = p;
    p->open_handles = 2;
    uv_timer_start(&p->timer, timeout_cb, (uint64_t)timeout_ms, 0);
    int rc = uv_tcp_connect(&p->connect_req, &p->tcp, (struct sockaddr *)&addr, connect_cb);
    if (rc != 0) {
        /* Report on the next loop turn, never from inside this call. */
        p->fail_why = "connect failed";
        if (rc == UV_EMFILE || rc == UV_ENFILE || rc == UV_ENOMEM || rc == UV_ENOBUFS) {
            p->local = true;
            p->fail_why = "asr is out of file descriptors or memory";
        }
        uv_timer_start(&p->timer, timeout_cb, 0, 0);
    }
    return p;
}

struct asr_probe *asr_probe_start(uv_loop_t *loop, const char *host, int port, const char *path,
                                  int timeout_ms, const char *extra_headers, asr_probe_cb cb,
                                  void *data)
{
    char *req = NULL;
    int n = asprintf(
        &req,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: asr-health\r\n%sConnection: close\r\n\r\n",
        path, host, port, extra_headers ? extra_headers : "");
    struct asr_probe *p =
        start(loop, host, port, n < 0 ? NULL : req, n < 0 ? 0 : (size_t)n, timeout_ms, data);
    if (p != NULL)
        p->cb = cb;
    return p;
}

struct asr_probe *asr_request_start(uv_loop_t *loop, const char *host, int port, const char *method,
                                    const char *path, const char *extra_headers, const char *body,
                                    size_t body_len, size_t body_cap, int timeout_ms,
                                    asr_request_cb cb, void *data)
{
    char *head = NULL;
    int n = asprintf(&head,
                     "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: asr-verify\r\n%s"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     method, path, host, port, extra_headers ? extra_headers : "", body_len);
    char *req = n >= 0 ? realloc(head, (size_t)n + body_len + 1) : NULL;
    if (req == NULL) {
        free(n >= 0 ? head : NULL);
        return NULL;
    }
    if (body_len > 0)
        memcpy(req + n, body, body_len);
    char *b = malloc(body_cap + 1);
    struct asr_probe *p =
        b != NULL ? start(loop, host, port, req, (size_t)n + body_len, timeout_ms, data) : NULL;
    if (p == NULL) {
        if (b == NULL)
            free(req);
        free(b);
        return NULL;
    }
    b[0] = '\0';
    p->body = b;
    p->body_cap = body_cap;
    p->rcb = cb;
    return p;
}
