/*
 * health.c - a single HTTP GET probe on the loop (see health.h).
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
    char request[1024];
    char rbuf[4096];
    asr_probe_cb cb;
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
    if (--p->open_handles == 0)
        free(p);
}

static void finish(struct asr_probe *p, bool ok, int status, const char *why)
{
    if (p->done)
        return;
    p->done = true;
    if (p->cb != NULL)
        p->cb(ok, status, why, asr_time_mono_us() - p->started_us, p->data);
    uv_close((uv_handle_t *)&p->timer, closed_cb);
    uv_close((uv_handle_t *)&p->tcp, closed_cb);
}

void asr_probe_cancel(struct asr_probe *p)
{
    if (p == NULL)
        return;
    p->cb = NULL;
    finish(p, false, 0, "cancelled");
}

static int on_headers_complete(http_parser *hp)
{
    struct asr_probe *p = hp->data;
    int st = (int)hp->status_code;
    finish(p, st >= 200 && st < 400, st, st >= 200 && st < 400 ? NULL : "bad status");
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
    uv_buf_t b = uv_buf_init(p->request, (unsigned)strlen(p->request));
    p->write_req.data = p;
    uv_write(&p->write_req, (uv_stream_t *)&p->tcp, &b, 1, write_cb);
    uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, read_cb);
}

static void timeout_cb(uv_timer_t *t)
{
    struct asr_probe *p = t->data;
    finish(p, false, p->local ? -1 : 0, p->fail_why ? p->fail_why : "timed out");
}

struct asr_probe *asr_probe_start(uv_loop_t *loop, const char *host, int port, const char *path,
                                  int timeout_ms, const char *extra_headers, asr_probe_cb cb,
                                  void *data)
{
    settings.on_headers_complete = on_headers_complete;
    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0)
        return NULL;
    struct asr_probe *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->cb = cb;
    p->data = data;
    p->started_us = asr_time_mono_us();
    snprintf(
        p->request, sizeof(p->request),
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: asr-health\r\n%sConnection: close\r\n\r\n",
        path, host, port, extra_headers ? extra_headers : "");
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
