/*
 * proxy.c - HTTP/1.1 reverse proxy with per-request routing and backend draining (see proxy.h).
 *
 * A client connection moves through READING (parsing one request into `in`), WAITING (no
 * active backend yet), PROXYING (the request was sent to an upstream connection and its response
 * is streamed back) and back to READING for the next keep-alive request. Requests on one
 * connection are handled one at a time; pipelined bytes wait in `in` and reading pauses.
 *
 * Messages are forwarded byte for byte; http_parser (nodejs/http-parser, a Debian package) only
 * finds where each request and response ends and whether the connection may be reused.
 */
#include "recover/proxy.h"
#include "asr/buf.h"
#include "asr/log.h"

#include <http_parser.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RETRIES 5
#define RETRY_BASE_MS 10 /* 10, 20, 40, 80, 160 ms: a crashed slot is noticed meanwhile */
#define WRITE_HIGH_WATER (1u << 20)
#define HEADER_TIMEOUT_MS 30000 /* a whole request must arrive within this, from its first byte */
#define LINGER_MS 10000         /* a closing connection gets this long to take our last bytes */

enum client_state { C_READING, C_WAITING, C_RETRY, C_PROXYING, C_CLOSING };

struct upstream {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    struct asr_backend *b;
    struct client *c; /* the client it serves, NULL while idle in the pool */
    http_parser parser;
    bool connected;
    bool closing;
    bool response_started;
    bool reused;
    bool paused_for_client; /* reading stopped: the client's write queue is full */
    bool broken;            /* sent bytes after its response: never reuse */
    struct upstream *next_idle;
};

struct asr_backend {
    struct asr_proxy *px;
    struct sockaddr_storage addr;
    int port;
    int refs;     /* upstream connections that point here */
    int inflight; /* requests attached right now */
    bool released;
    bool drained_reported;
    asr_backend_drained_cb drained_cb;
    void *drained_data;
    struct upstream *idle;
    struct asr_backend *next_all;
};

struct client {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct asr_proxy *px;
    http_parser parser;
    struct asr_buf in; /* received and not yet answered */
    size_t parsed;     /* bytes of `in` fed to the parser */
    enum client_state state;
    bool req_complete;
    bool keep_alive;
    bool is_head;
    bool idempotent;
    bool reading;
    int retries;
    int open_handles;
    struct upstream *up;
    /* Just enough header tracking to answer "Expect: 100-continue" (we buffer bodies). */
    char hdr[16];
    size_t hdr_len;
    bool in_value;
    bool expect_continue;
    bool too_large;             /* Content-Length over max_request: answer 413 at once */
    bool half_closed;           /* the client shut down its side after sending its request */
    uint64_t req_started;       /* loop time of the first byte of the current request, 0 if none */
    struct client *prev, *next; /* all clients */
    struct client *wait_prev, *wait_next; /* clients waiting for a backend */
};

struct asr_proxy {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct asr_proxy_opts opts;
    char name[64];
    struct asr_backend *active;
    struct asr_backend *backends;
    struct client *clients;
    struct client *waiting_head, *waiting_tail;
    struct asr_proxy_stats stats;
    bool destroying;
    bool listener_closing, listener_closed;
    bool unavailable; /* no backend is coming: answer 503 without waiting */
    uint64_t last_reject_log;
};

struct wreq {
    uv_write_t req;
    uv_buf_t buf;
    char data[];
};

static http_parser_settings request_settings;
static http_parser_settings response_settings;

static void client_close(struct client *c);
static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void client_process(struct client *c);
static void dispatch(struct client *c);
static void wait_remove(struct client *c);
static void upstream_close(struct upstream *up);
static void upstream_resume(struct upstream *up);
static void timer_cb(uv_timer_t *t);

/* ---- writing ---------------------------------------------------------------------------- */

static void write_done_cb(uv_write_t *req, int status);

/* Writes without copying when the socket takes it all (the common case); copies the rest. */
static int write_copy(uv_stream_t *s, const char *data, size_t len, void *owner)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = 0;
    if (uv_stream_get_write_queue_size(s) == 0) {
        n = uv_try_write(s, &b, 1);
        if (n == UV_EAGAIN)
            n = 0;
        if (n < 0)
            return n;
        if ((size_t)n == len)
            return 0;
    }
    size_t rest = len - (size_t)n;
    struct wreq *w = malloc(sizeof(*w) + rest);
    if (w == NULL)
        return UV_ENOMEM;
    memcpy(w->data, data + n, rest);
    w->buf = uv_buf_init(w->data, (unsigned)rest);
    w->req.data = owner;
    int rc = uv_write(&w->req, s, &w->buf, 1, write_done_cb);
    if (rc != 0)
        free(w);
    return rc;
}

static void client_shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)status;
    struct client *c = req->data;
    free(req);
    client_close(c);
}

/* Closes the client once everything queued has been written. */
static void client_finish(struct client *c)
{
    if (c->state == C_CLOSING)
        return;
    c->state = C_CLOSING;
    uv_read_stop((uv_stream_t *)&c->tcp);
    /* A client that never reads would hold the connection open forever: bound the wait. */
    uv_timer_start(&c->timer, timer_cb, LINGER_MS, 0);
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req == NULL || uv_shutdown(req, (uv_stream_t *)&c->tcp, client_shutdown_cb) != 0) {
        free(req);
        client_close(c);
        return;
    }
    req->data = c;
}

static void write_done_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    uv_stream_t *s = req->handle;
    struct client *c = req->data; /* set for writes to a client, NULL for writes to a backend */
    free(w);
    if (status != 0 || c == NULL || c->state != C_PROXYING || c->up == NULL)
        return;
    /* Resume a paused upstream once the client has caught up. */
    struct upstream *up = c->up;
    if (up->paused_for_client && uv_stream_get_write_queue_size(s) < WRITE_HIGH_WATER / 2) {
        up->paused_for_client = false;
        upstream_resume(up);
        uv_timer_start(&c->timer, timer_cb, (uint64_t)c->px->opts.response_timeout_ms,
                       (uint64_t)c->px->opts.response_timeout_ms);
    }
}

/* Answers the current request from the proxy itself and closes the connection after it. */
static void client_reply_error(struct client *c, int status, const char *reason)
{
    struct asr_proxy *px = c->px;
    if (status >= 500)
        px->stats.responses_proxy_5xx++;
    else
        px->stats.bad_requests++;
    char resp[512];
    char body[256];
    int bl =
        snprintf(body, sizeof(body), "{\"error\":\"%s\",\"proxy\":\"asr\",\"service\":\"%s\"}\n",
                 reason, px->name);
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, http_status_str((enum http_status)status), bl, body);
    uv_timer_stop(&c->timer);
    write_copy((uv_stream_t *)&c->tcp, resp, (size_t)n, c);
    client_finish(c);
}

/* ---- backends ----------------------------------------------------------------------------- */

static void backend_maybe_free(struct asr_backend *b)
{
    if (!(b->released && b->drained_reported && b->refs == 0))
        return;
    for (struct asr_backend **pp = &b->px->backends; *pp != NULL; pp = &(*pp)->next_all)
        if (*pp == b) {
            *pp = b->next_all;
            break;
        }
    free(b);
}

static void backend_check_drained(struct asr_backend *b)
{
    if (!b->released || b->drained_reported || b->inflight > 0)
        return;
    b->drained_reported = true;
    if (b->drained_cb != NULL)
        b->drained_cb(b, b->drained_data);
    backend_maybe_free(b);
}

struct asr_backend *asr_proxy_backend_new(struct asr_proxy *px, const char *host, int port)
{
    struct asr_backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->px = px;
    b->port = port;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&b->addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&b->addr) != 0) {
        free(b);
        return NULL;
    }
    b->next_all = px->backends;
    px->backends = b;
    return b;
}

int asr_backend_inflight(const struct asr_backend *b)
{
    return b->inflight;
}

int asr_backend_port(const struct asr_backend *b)
{
    return b->port;
}

struct asr_backend *asr_proxy_active(const struct asr_proxy *px)
{
    return px->active;
}

void asr_proxy_set_active(struct asr_proxy *px, struct asr_backend *b)
{
    px->active = b;
    if (b == NULL)
        return;
    px->unavailable = false;
    /* Hand every waiting request to the new backend, oldest first. */
    while (px->waiting_head != NULL && px->active != NULL) {
        struct client *c = px->waiting_head;
        px->waiting_head = c->wait_next;
        if (px->waiting_head != NULL)
            px->waiting_head->wait_prev = NULL;
        else
            px->waiting_tail = NULL;
        c->wait_next = c->wait_prev = NULL;
        dispatch(c);
    }
}

void asr_proxy_set_unavailable(struct asr_proxy *px)
{
    px->unavailable = true;
    px->active = NULL;
    while (px->waiting_head != NULL) {
        struct client *c = px->waiting_head;
        wait_remove(c);
        client_reply_error(c, 503, "service unavailable");
    }
}

void asr_proxy_backend_release(struct asr_proxy *px, struct asr_backend *b,
                               asr_backend_drained_cb cb, void *data)
{
    if (px->active == b)
        px->active = NULL;
    b->released = true;
    b->drained_cb = cb;
    b->drained_data = data;
    while (b->idle != NULL) {
        struct upstream *up = b->idle;
        b->idle = up->next_idle;
        up->next_idle = NULL;
        upstream_close(up);
    }
    backend_check_drained(b);
}

/* ---- upstream connections ------------------------------------------------------------------ */

static void upstream_closed_cb(uv_handle_t *h)
{
    struct upstream *up = h->data;
    struct asr_backend *b = up->b;
    b->refs--;
    free(up);
    if (b->px == NULL) {
        if (b->refs == 0)
            free(b);
        return;
    }
    backend_maybe_free(b);
}

static void idle_remove(struct upstream *up)
{
    struct upstream **pp = &up->b->idle;
    while (*pp != NULL && *pp != up)
        pp = &(*pp)->next_idle;
    if (*pp == up)
        *pp = up->next_idle;
    up->next_idle = NULL;
}

static void upstream_close(struct upstream *up)
{
    if (up->closing)
        return;
    up->closing = true;
    if (up->c == NULL)
        idle_remove(up);
    uv_close((uv_handle_t *)&up->tcp, upstream_closed_cb);
}

/* Detaches the upstream from its client, counting the request as finished at the backend. */
static void upstream_detach(struct upstream *up)
{
    struct client *c = up->c;
    if (c == NULL)
        return;
    c->up = NULL;
    up->c = NULL;
    up->b->inflight--;
}

/* Gives up on an upstream connection: the request no longer counts against its backend. */
static void upstream_abandon(struct upstream *up)
{
    struct asr_backend *b = up->b;
    upstream_detach(up);
    upstream_close(up);
    backend_check_drained(b);
}

static void up_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char slab[65536];
    buf->base = slab;
    buf->len = sizeof(slab);
}

/* The backend failed before answering: retry where safe, else answer 502. */
static void upstream_failed(struct upstream *up, const char *why)
{
    struct client *c = up->c;
    struct asr_backend *b = up->b; /* alive until the connection's close callback */
    bool never_connected = !up->connected;
    upstream_abandon(up);
    if (c == NULL)
        return;
    if ((never_connected || c->idempotent) && c->retries < MAX_RETRIES) {
        c->retries++;
        c->px->stats.retries++;
        asr_debug("proxy %s: retrying request (%s)", c->px->name, why);
        if (c->px->active != b) {
            /* Routing already moved on (or waits for a new slot): no need to back off. */
            dispatch(c);
            return;
        }
        c->state = C_RETRY;
        uv_timer_start(&c->timer, timer_cb, (uint64_t)RETRY_BASE_MS << (c->retries - 1), 0);
        return;
    }
    asr_warn("proxy %s: backend failed: %s", c->px->name, why);
    client_reply_error(c, 502, "bad gateway");
}

static void response_done(struct upstream *up)
{
    struct client *c = up->c;
    struct asr_backend *b = up->b;
    bool reusable = http_should_keep_alive(&up->parser) && !b->released && !up->broken;
    bool client_continue = c->keep_alive && http_should_keep_alive(&up->parser);
    upstream_detach(up);
    if (reusable) {
        up->reused = true;
        up->next_idle = b->idle;
        b->idle = up;
        if (up->paused_for_client) {
            up->paused_for_client = false;
            upstream_resume(up);
        }
    } else {
        upstream_close(up);
    }
    backend_check_drained(b);

    if (!client_continue || c->half_closed) {
        client_finish(c);
        return;
    }
    asr_buf_consume(&c->in, c->parsed);
    c->parsed = 0;
    c->req_started = 0;
    c->req_complete = false;
    c->retries = 0;
    c->state = C_READING;
    http_parser_pause(&c->parser, 0);
    uv_timer_stop(&c->timer);
    client_process(c);
}

static void up_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct upstream *up = s->data;
    if (nread == 0)
        return;
    struct client *c = up->c;
    if (c == NULL) {
        /* Idle pooled connection: the backend closed it or sent something unasked. */
        upstream_close(up);
        return;
    }
    if (nread < 0) {
        if (!up->response_started) {
            upstream_failed(up, nread == UV_EOF ? "connection closed before response"
                                                : uv_strerror((int)nread));
            return;
        }
        /* A response that ends with the connection (no length): EOF completes it. */
        http_parser_execute(&up->parser, &response_settings, NULL, 0);
        if (HTTP_PARSER_ERRNO(&up->parser) == HPE_PAUSED) {
            response_done(up);
            return;
        }
        upstream_abandon(up);
        client_finish(c);
        return;
    }
    up->response_started = true;
    uv_timer_again(&c->timer);
    size_t n = http_parser_execute(&up->parser, &response_settings, buf->base, (size_t)nread);
    enum http_errno e = HTTP_PARSER_ERRNO(&up->parser);
    /* Forward only the bytes of this response; anything after it is not ours to send. */
    size_t fwd = e == HPE_OK || e == HPE_PAUSED ? n : (size_t)nread;
    if (fwd > 0 && write_copy((uv_stream_t *)&c->tcp, buf->base, fwd, c) != 0) {
        upstream_abandon(up);
        client_close(c);
        return;
    }
    if (e == HPE_PAUSED) {
        /* Bytes after the response break the protocol: finish, but never reuse. */
        up->broken = n < (size_t)nread;
        response_done(up);
        return;
    }
    if (e != HPE_OK) {
        asr_warn("proxy %s: invalid response from backend: %s", c->px->name,
                 http_errno_description(e));
        upstream_abandon(up);
        client_finish(c);
        return;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > WRITE_HIGH_WATER) {
        up->paused_for_client = true;
        uv_read_stop(s);
        /* The backend is not silent, we stopped listening: time the client instead. */
        uv_timer_start(&c->timer, timer_cb, (uint64_t)c->px->opts.client_idle_ms, 0);
    }
}

static void upstream_resume(struct upstream *up)
{
    if (!up->closing)
        uv_read_start((uv_stream_t *)&up->tcp, up_alloc_cb, up_read_cb);
}

static int on_response_headers(http_parser *p)
{
    struct upstream *up = p->data;
    /* A response to HEAD has headers only, whatever its Content-Length says. */
    return up->c != NULL && up->c->is_head ? 1 : 0;
}

static int on_response_complete(http_parser *p)
{
    /* 1xx responses are followed by the real one. */
    if (p->status_code >= 100 && p->status_code < 200)
        return 0;
    http_parser_pause(p, 1);
    return 0;
}

static void send_request(struct upstream *up)
{
    struct client *c = up->c;
    http_parser_init(&up->parser, HTTP_RESPONSE);
    up->parser.data = up;
    up->response_started = false;
    int rc = write_copy((uv_stream_t *)&up->tcp, c->in.data, c->parsed, NULL);
    if (rc != 0) {
        upstream_failed(up, uv_strerror(rc));
        return;
    }
    c->px->stats.requests_total++;
}

static void timer_cb(uv_timer_t *t);

static void up_connect_cb(uv_connect_t *req, int status)
{
    struct upstream *up = req->data;
    if (up->closing)
        return;
    if (status != 0) {
        upstream_failed(up, uv_strerror(status));
        return;
    }
    up->connected = true;
    uv_tcp_nodelay(&up->tcp, 1);
    uv_read_start((uv_stream_t *)&up->tcp, up_alloc_cb, up_read_cb);
    if (up->c != NULL) {
        uv_timer_start(&up->c->timer, timer_cb, (uint64_t)up->c->px->opts.response_timeout_ms,
                       (uint64_t)up->c->px->opts.response_timeout_ms);
        send_request(up);
    } else {
        upstream_close(up);
    }
}

/* ---- clients ------------------------------------------------------------------------------- */

static void wait_remove(struct client *c)
{
    struct asr_proxy *px = c->px;
    if (c->wait_prev != NULL)
        c->wait_prev->wait_next = c->wait_next;
    else if (px->waiting_head == c)
        px->waiting_head = c->wait_next;
    if (c->wait_next != NULL)
        c->wait_next->wait_prev = c->wait_prev;
    else if (px->waiting_tail == c)
        px->waiting_tail = c->wait_prev;
    c->wait_next = c->wait_prev = NULL;
}

static void dispatch(struct client *c)
{
    struct asr_proxy *px = c->px;
    struct asr_backend *b = px->active;
    if (b == NULL && px->unavailable) {
        if (c->state == C_WAITING)
            wait_remove(c);
        client_reply_error(c, 503, "service unavailable");
        return;
    }
    if (b == NULL) {
        if (c->state != C_WAITING) {
            c->state = C_WAITING;
            c->wait_prev = px->waiting_tail;
            if (px->waiting_tail != NULL)
                px->waiting_tail->wait_next = c;
            else
                px->waiting_head = c;
            px->waiting_tail = c;
            uv_timer_start(&c->timer, timer_cb, (uint64_t)px->opts.wait_ms, 0);
        }
        return;
    }
    c->state = C_PROXYING;
    struct upstream *up = b->idle;
    if (up != NULL) {
        b->idle = up->next_idle;
        up->next_idle = NULL;
        up->c = c;
        c->up = up;
        b->inflight++;
        uv_timer_start(&c->timer, timer_cb, (uint64_t)px->opts.response_timeout_ms,
                       (uint64_t)px->opts.response_timeout_ms);
        send_request(up);
        return;
    }
    up = calloc(1, sizeof(*up));
    if (up == NULL) {
        client_reply_error(c, 503, "out of memory");
        return;
    }
    up->b = b;
    b->refs++;
    uv_tcp_init(px->loop, &up->tcp);
    up->tcp.data = up;
    up->connect_req.data = up;
    up->c = c;
    c->up = up;
    b->inflight++;
    int rc = uv_tcp_connect(&up->connect_req, &up->tcp, (struct sockaddr *)&b->addr, up_connect_cb);
    if (rc != 0) {
        upstream_failed(up, uv_strerror(rc));
        return;
    }
    uv_timer_start(&c->timer, timer_cb, (uint64_t)px->opts.connect_timeout_ms, 0);
}

static void timer_cb(uv_timer_t *t)
{
    struct client *c = t->data;
    switch (c->state) {
    case C_READING:
        /* Idle keep-alive or a slow request head: close quietly. */
        client_close(c);
        break;
    case C_WAITING:
        wait_remove(c);
        asr_warn("proxy %s: no healthy backend within %d ms", c->px->name, c->px->opts.wait_ms);
        client_reply_error(c, 503, "no healthy backend");
        break;
    case C_PROXYING:
        if (c->up != NULL && !c->up->connected) {
            upstream_failed(c->up, "connect timed out");
        } else if (c->up != NULL) {
            struct upstream *up = c->up;
            bool started = up->response_started;
            upstream_abandon(up);
            if (started)
                client_close(c);
            else
                client_reply_error(c, 504, "backend timed out");
        }
        break;
    case C_RETRY:
        dispatch(c);
        break;
    case C_CLOSING:
        client_close(c);
        break;
    }
}

static void client_closed_cb(uv_handle_t *h)
{
    struct client *c = h->data;
    if (--c->open_handles > 0)
        return;
    asr_buf_free(&c->in);
    free(c);
}

static void client_close(struct client *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    struct asr_proxy *px = c->px;
    if (c->state == C_WAITING)
        wait_remove(c);
    if (c->up != NULL) {
        struct upstream *up = c->up;
        upstream_abandon(up);
    }
    c->state = C_CLOSING;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        px->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    px->stats.connections_open--;
    uv_close((uv_handle_t *)&c->timer, client_closed_cb);
    uv_close((uv_handle_t *)&c->tcp, client_closed_cb);
}

static int on_request_begin(http_parser *p)
{
    struct client *c = p->data;
    c->hdr_len = 0;
    c->in_value = false;
    c->expect_continue = false;
    c->too_large = false;
    return 0;
}

/* Accumulates a header name or value (lower-cased, capped: we only compare short ones). */
static void hdr_append(struct client *c, const char *at, size_t len)
{
    for (size_t i = 0; i < len && c->hdr_len < sizeof(c->hdr) - 1; i++)
        c->hdr[c->hdr_len++] = (char)(at[i] >= 'A' && at[i] <= 'Z' ? at[i] + 32 : at[i]);
    c->hdr[c->hdr_len] = '\0';
}

static bool hdr_is(const struct client *c, const char *s)
{
    return c->hdr_len == strlen(s) && memcmp(c->hdr, s, c->hdr_len) == 0;
}

static int on_request_header_field(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;
    if (c->in_value) {
        c->in_value = false;
        c->hdr_len = 0;
    }
    hdr_append(c, at, len);
    return 0;
}

static int on_request_header_value(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;
    if (!c->in_value) {
        bool is_expect = hdr_is(c, "expect");
        c->in_value = true;
        c->hdr_len = is_expect ? 0 : sizeof(c->hdr); /* a full buffer ignores the value */
    }
    if (c->hdr_len < sizeof(c->hdr))
        hdr_append(c, at, len);
    if (c->hdr_len < sizeof(c->hdr) && hdr_is(c, "100-continue"))
        c->expect_continue = true;
    return 0;
}

static int on_request_headers_complete(http_parser *p)
{
    struct client *c = p->data;
    if (p->content_length != ULLONG_MAX && p->content_length > c->px->opts.max_request) {
        c->too_large = true;
        return 0;
    }
    /* The proxy reads the whole body before forwarding, so it must invite the body itself. */
    bool body =
        (p->flags & F_CHUNKED) != 0 || (p->content_length > 0 && p->content_length != ULLONG_MAX);
    if (c->expect_continue && body && p->http_major == 1 && p->http_minor >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        write_copy((uv_stream_t *)&c->tcp, cont, sizeof(cont) - 1, c);
    }
    return 0;
}

static int on_request_complete(http_parser *p)
{
    struct client *c = p->data;
    c->req_complete = true;
    c->keep_alive = http_should_keep_alive(p);
    c->is_head = p->method == HTTP_HEAD;
    c->idempotent = p->method == HTTP_GET || p->method == HTTP_HEAD || p->method == HTTP_PUT ||
                    p->method == HTTP_DELETE || p->method == HTTP_OPTIONS ||
                    p->method == HTTP_TRACE;
    http_parser_pause(p, 1);
    return 0;
}

/* Parses what has arrived; dispatches a complete request. */
static void client_process(struct client *c)
{
    if (c->state != C_READING)
        return;
    if (c->in.len > c->parsed) {
        size_t n = http_parser_execute(&c->parser, &request_settings, c->in.data + c->parsed,
                                       c->in.len - c->parsed);
        c->parsed += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e != HPE_OK && e != HPE_PAUSED) {
            client_reply_error(c, 400, "malformed request");
            return;
        }
        if (c->parser.upgrade) {
            client_reply_error(c, 501, "protocol upgrade is not supported by the asr proxy");
            return;
        }
        if (c->too_large) {
            client_reply_error(c, 413, "request too large");
            return;
        }
    }
    if (c->req_complete) {
        uv_timer_stop(&c->timer);
        dispatch(c);
        return;
    }
    if (c->in.truncated) {
        client_reply_error(c, 413, "request too large");
        return;
    }
    if (!c->reading) {
        uv_read_start((uv_stream_t *)&c->tcp, up_alloc_cb, client_read_cb);
        c->reading = true;
    }
    /* Idle between requests: client_idle_ms. Inside a request: what is left of a fixed deadline
     * from its first byte, so a client trickling a byte at a time cannot hold on forever. */
    uint64_t now = uv_now(c->px->loop), wait = (uint64_t)c->px->opts.client_idle_ms;
    if (c->in.len > 0) {
        if (c->req_started == 0)
            c->req_started = now;
        uint64_t spent = now - c->req_started;
        wait = spent < HEADER_TIMEOUT_MS ? HEADER_TIMEOUT_MS - spent : 0;
    }
    uv_timer_start(&c->timer, timer_cb, wait, 0);
}

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct client *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF && c->state == C_PROXYING) {
            /* Half-close after a request already sent: deliver the answer, then close. (A
             * request still waiting for a backend is dropped instead, like HAProxy's
             * abortonclose: nobody may be listening, and a recovering backend has better
             * things to do.) */
            c->half_closed = true;
            uv_read_stop(s);
            c->reading = false;
            return;
        }
        client_close(c);
        return;
    }
    asr_buf_append(&c->in, buf->base, (size_t)nread);
    if (c->state == C_READING) {
        client_process(c);
    } else if (c->in.len > c->parsed + 65536) {
        /* Pipelined requests pile up while one is in flight: stop reading for now. */
        uv_read_stop(s);
        c->reading = false;
    }
}

static void reject_closed_cb(uv_handle_t *h)
{
    free(h);
}

/* Accepts and closes at once: over the cap (or out of memory) the listener must keep going. */
static void reject_connection(struct asr_proxy *px, uv_stream_t *server)
{
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL)
        return;
    uv_tcp_init(px->loop, t);
    if (uv_accept(server, (uv_stream_t *)t) == 0)
        px->stats.connections_rejected++;
    uv_close((uv_handle_t *)t, reject_closed_cb);
    uint64_t now = uv_now(px->loop);
    if (now - px->last_reject_log >= 10000) {
        px->last_reject_log = now;
        asr_warn("proxy %s: %llu open connections, the cap: refusing new ones (%llu so far)",
                 px->name, (unsigned long long)px->stats.connections_open,
                 (unsigned long long)px->stats.connections_rejected);
    }
}

static void accept_cb(uv_stream_t *server, int status)
{
    struct asr_proxy *px = server->data;
    if (status != 0)
        return;
    if (px->stats.connections_open >= px->opts.max_connections) {
        reject_connection(px, server);
        return;
    }
    struct client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        reject_connection(px, server);
        return;
    }
    c->px = px;
    uv_tcp_init(px->loop, &c->tcp);
    uv_timer_init(px->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    asr_buf_init(&c->in, px->opts.max_request);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = px->clients;
    if (px->clients != NULL)
        px->clients->prev = c;
    px->clients = c;
    px->stats.connections_total++;
    px->stats.connections_open++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        client_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = C_READING;
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, up_alloc_cb, client_read_cb);
    uv_timer_start(&c->timer, timer_cb, (uint64_t)px->opts.client_idle_ms, 0);
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct asr_proxy *px = h->data;
    px->listener_closed = true;
    if (px->destroying)
        free(px);
}

void asr_proxy_stop_listening(struct asr_proxy *px)
{
    if (px == NULL || px->listener_closing)
        return;
    px->listener_closing = true;
    uv_close((uv_handle_t *)&px->listener, listener_closed_cb);
}

int asr_proxy_create(uv_loop_t *loop, const struct asr_proxy_opts *opts, struct asr_proxy **out,
                     struct asr_err *err)
{
    request_settings.on_message_begin = on_request_begin;
    request_settings.on_header_field = on_request_header_field;
    request_settings.on_header_value = on_request_header_value;
    request_settings.on_headers_complete = on_request_headers_complete;
    request_settings.on_message_complete = on_request_complete;
    response_settings.on_headers_complete = on_response_headers;
    response_settings.on_message_complete = on_response_complete;
    *out = NULL;
    struct asr_proxy *px = calloc(1, sizeof(*px));
    if (px == NULL)
        return asr_err_set(err, ASR_ENOMEM, "proxy: out of memory");
    px->loop = loop;
    px->opts = *opts;
    snprintf(px->name, sizeof(px->name), "%s", opts->name ? opts->name : "?");
    if (px->opts.wait_ms <= 0)
        px->opts.wait_ms = 5000;
    if (px->opts.max_request == 0)
        px->opts.max_request = 8u << 20;
    if (px->opts.connect_timeout_ms <= 0)
        px->opts.connect_timeout_ms =
            300; /* slots are local: a lost SYN is retried, not waited 1 s */
    if (px->opts.response_timeout_ms <= 0)
        px->opts.response_timeout_ms = 120000;
    if (px->opts.client_idle_ms <= 0)
        px->opts.client_idle_ms = 60000;
    if (px->opts.max_connections == 0)
        px->opts.max_connections = 1024;
    struct sockaddr_storage addr;
    if (uv_ip4_addr(opts->host, opts->port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(opts->host, opts->port, (struct sockaddr_in6 *)&addr) != 0) {
        free(px);
        return asr_err_set(err, ASR_EINVAL, "proxy: '%s' is not a numeric address", opts->host);
    }
    uv_tcp_init(loop, &px->listener);
    px->listener.data = px;
    int rc = uv_tcp_bind(&px->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&px->listener, 511, accept_cb);
    if (rc != 0) {
        px->destroying = true;
        uv_close((uv_handle_t *)&px->listener, listener_closed_cb);
        return asr_err_set(err, ASR_ENET, "proxy: cannot listen on %s:%d: %s", opts->host,
                           opts->port, uv_strerror(rc));
    }
    *out = px;
    return 0;
}

void asr_proxy_destroy(struct asr_proxy *px)
{
    if (px == NULL)
        return;
    px->destroying = true;
    while (px->clients != NULL)
        client_close(px->clients);
    struct asr_backend *b = px->backends;
    while (b != NULL) {
        struct asr_backend *next = b->next_all;
        b->released = true;
        b->drained_reported = true;
        b->drained_cb = NULL;
        while (b->idle != NULL) {
            struct upstream *up = b->idle;
            b->idle = up->next_idle;
            up->next_idle = NULL;
            upstream_close(up);
        }
        if (b->refs == 0)
            free(b);
        else
            b->px = NULL; /* freed by upstream_closed_cb */
        b = next;
    }
    px->backends = NULL;
    if (!px->listener_closing) {
        px->listener_closing = true;
        uv_close((uv_handle_t *)&px->listener, listener_closed_cb);
    } else if (px->listener_closed) {
        free(px);
    }
}

void asr_proxy_get_stats(const struct asr_proxy *px, struct asr_proxy_stats *out)
{
    *out = px->stats;
}
