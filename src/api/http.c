/*
 * http.c - the HTTP server on the loop (see http.h).
 *
 * libmicrohttpd (MHD) is started with MHD_USE_EPOLL and no thread of its own: its epoll
 * descriptor is watched by a uv_poll, and mhd.run() does the work when it is readable or when
 * MHD's next timeout (idle connections) is due. MHD_ALLOW_SUSPEND_RESUME gives each daemon an
 * inter-thread channel in that epoll set, so resuming a connection from any loop callback wakes
 * the poll by itself.
 *
 * A request's life: MHD calls access_cb first with no body (we check the declared length), then
 * once per body chunk (we append, up to the cap), then once with nothing left: the handler runs.
 * If it did not answer, the connection is suspended; asr_http_reply stores the response and
 * resumes it, and MHD calls access_cb again, which queues it. MHD's completion callback frees the
 * request, unless the handler still holds it (a deploy in flight): then it is freed at the reply.
 *
 * A stream is a response of unknown length whose reader copies out of a queue. When the queue is
 * empty the reader suspends the connection (so MHD does not poll it) and a write resumes it.
 */
#include "api/http.h"

#include "asr/buf.h"
#include "asr/log.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/*
 * libmicrohttpd is loaded when the first server starts, not linked: Debian's build initialises
 * GnuTLS when it loads, which keeps 2.4 MB resident (libgnutls, p11-kit, nettle, gmp, ...) in
 * every process that links it, and asr's idle target is 10 MB (bench/idle.sh). A daemon without
 * an `api` block, and every other asr command, never loads it.
 */
#define MHD_FN(f) __typeof__(&MHD_##f) f
static struct {
    void *lib;
    MHD_FN(add_response_header);
    MHD_FN(create_response_from_buffer);
    MHD_FN(create_response_from_callback);
    MHD_FN(destroy_response);
    MHD_FN(get_connection_info);
    MHD_FN(get_daemon_info);
    MHD_FN(get_timeout);
    MHD_FN(lookup_connection_value);
    MHD_FN(queue_response);
    MHD_FN(resume_connection);
    MHD_FN(run);
    MHD_FN(start_daemon);
    MHD_FN(stop_daemon);
    MHD_FN(suspend_connection);
} mhd;

static int mhd_load(struct asr_err *err)
{
    if (mhd.lib != NULL)
        return 0;
    static const char *const names[] = {"libmicrohttpd.so.12", "libmicrohttpd.so"};
    void *lib = NULL;
    for (size_t i = 0; lib == NULL && i < sizeof(names) / sizeof(names[0]); i++)
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return asr_err_set(err, ASR_EIO,
                           "api: cannot load libmicrohttpd (%s); install the libmicrohttpd12 "
                           "package",
                           dlerror());
#define MHD_SYM(f)                                                                                 \
    if ((*(void **)&mhd.f = dlsym(lib, "MHD_" #f)) == NULL) {                                      \
        dlclose(lib);                                                                              \
        return asr_err_set(err, ASR_EIO, "api: libmicrohttpd has no MHD_%s", #f);                  \
    }
    MHD_SYM(add_response_header);
    MHD_SYM(create_response_from_buffer);
    MHD_SYM(create_response_from_callback);
    MHD_SYM(destroy_response);
    MHD_SYM(get_connection_info);
    MHD_SYM(get_daemon_info);
    MHD_SYM(get_timeout);
    MHD_SYM(lookup_connection_value);
    MHD_SYM(queue_response);
    MHD_SYM(resume_connection);
    MHD_SYM(run);
    MHD_SYM(start_daemon);
    MHD_SYM(stop_daemon);
    MHD_SYM(suspend_connection);
#undef MHD_SYM
    mhd.lib = lib; /* never unloaded: a later server reuses it */
    return 0;
}

#define MAX_CONNECTIONS 256
#define IDLE_TIMEOUT_S 60
#define STREAM_MAX_QUEUED (4 * 1024 * 1024)
#define MAX_EXTRA_HEADERS 4

struct asr_http {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    int port;
    size_t max_body;
    asr_http_handler handler;
    void *data;
    struct asr_http_req *reqs; /* every request not yet freed */
    int closed;                /* of the poll and the timer, once stopping */
};

struct asr_http_stream {
    struct asr_http_req *req;
    struct asr_buf queue;
    size_t sent; /* bytes of queue already handed to MHD */
    bool ended;
    void (*on_close)(void *data);
    void (*on_drain)(void *data);
    void *data;
};

struct asr_http_req {
    struct asr_http *h;
    struct MHD_Connection *conn;
    struct asr_http_req *prev, *next;
    const char *method;
    char *path;
    struct asr_buf body;
    bool too_large;
    bool dispatched; /* the handler has run */
    bool held;       /* the handler holds r: no reply yet */
    bool suspended;
    bool completed; /* MHD is done with the connection */
    struct MHD_Response *response;
    int status;
    struct {
        char *name, *value;
    } extra[MAX_EXTRA_HEADERS];
    int nextra;
    struct asr_http_stream *stream;
};

static void req_free(struct asr_http_req *r)
{
    struct asr_http *h = r->h;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    asr_buf_free(&r->body);
    free(r->path);
    for (int i = 0; i < r->nextra; i++) {
        free(r->extra[i].name);
        free(r->extra[i].value);
    }
    if (r->response != NULL)
        mhd.destroy_response(r->response);
    free(r);
}

/* ---- driving MHD from the loop ------------------------------------------------------------- */

static void run_mhd(struct asr_http *h);

static void poll_cb(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

static void timer_cb(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void run_mhd(struct asr_http *h)
{
    if (h->mhd == NULL)
        return;
    mhd.run(h->mhd);
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (mhd.get_timeout(h->mhd, &ms) == MHD_YES)
        uv_timer_start(&h->timer, timer_cb, ms > 60000 ? 60000 : ms, 0);
    else
        uv_timer_stop(&h->timer);
}

/* ---- requests ---------------------------------------------------------------------------- */

static void queue_stored(struct asr_http_req *r)
{
    if (r->response == NULL)
        return;
    mhd.queue_response(r->conn, (unsigned int)r->status, r->response);
    mhd.destroy_response(r->response);
    r->response = NULL;
}

static void reply_too_large(struct asr_http_req *r)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "the request body is larger than the limit of %zu bytes",
             r->h->max_body);
    asr_http_reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, msg);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    struct asr_http *h = cls;
    struct asr_http_req *r = *con_cls;
    (void)version;
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL || (r->path = strdup(url)) == NULL) {
            free(r);
            return MHD_NO;
        }
        r->h = h;
        r->conn = conn;
        r->method = method;
        asr_buf_init(&r->body, h->max_body + 1);
        r->next = h->reqs;
        if (h->reqs != NULL)
            h->reqs->prev = r;
        h->reqs = r;
        *con_cls = r;
        const char *cl = mhd.lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > h->max_body) {
            /* Answered before the body is read: MHD then closes the connection without it. */
            r->too_large = r->dispatched = true;
            reply_too_large(r);
            queue_stored(r);
        }
        return MHD_YES;
    }
    if (r->dispatched) {
        /* Resumed: the handler has answered (or the server is stopping); or a body refused
         * early still arriving, which is dropped. */
        *upload_size = 0;
        queue_stored(r);
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!r->too_large && r->body.len + *upload_size <= h->max_body)
            r->too_large = asr_buf_append(&r->body, upload, *upload_size) != 0;
        else
            r->too_large = true;
        *upload_size = 0;
        return MHD_YES;
    }
    r->dispatched = true;
    if (r->too_large) {
        reply_too_large(r);
        queue_stored(r);
        return MHD_YES;
    }
    r->held = true;
    h->handler(r, h->data);
    if (r->held && r->stream == NULL) {
        r->suspended = true;
        mhd.suspend_connection(conn);
    } else {
        queue_stored(r);
    }
    return MHD_YES;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct asr_http_req *r = *con_cls;
    if (r == NULL)
        return;
    *con_cls = NULL;
    r->completed = true;
    if (!r->held && r->stream == NULL)
        req_free(r);
}

const char *asr_http_method(const struct asr_http_req *r)
{
    return r->method;
}

const char *asr_http_path(const struct asr_http_req *r)
{
    return r->path;
}

const char *asr_http_query(const struct asr_http_req *r, const char *key)
{
    return mhd.lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *asr_http_header(const struct asr_http_req *r, const char *name)
{
    return mhd.lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

bool asr_http_loopback(const struct asr_http_req *r)
{
    const union MHD_ConnectionInfo *ci =
        mhd.get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL)
        return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

const char *asr_http_body(const struct asr_http_req *r, size_t *len)
{
    *len = r->body.len;
    return r->body.data != NULL ? r->body.data : "";
}

void asr_http_add_header(struct asr_http_req *r, const char *name, const char *value)
{
    if (r->nextra == MAX_EXTRA_HEADERS)
        return;
    r->extra[r->nextra].name = strdup(name);
    r->extra[r->nextra].value = strdup(value);
    r->nextra++;
}

static void add_common_headers(struct asr_http_req *r, struct MHD_Response *resp, const char *ctype)
{
    mhd.add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    mhd.add_response_header(resp, "X-Content-Type-Options", "nosniff");
    mhd.add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (int i = 0; i < r->nextra; i++)
        if (r->extra[i].name != NULL && r->extra[i].value != NULL)
            mhd.add_response_header(resp, r->extra[i].name, r->extra[i].value);
}

/* Resumes a suspended connection, and has MHD look at it on the next loop turn (MHD's own
 * wake-up through its epoll set is not relied on). */
static void resume(struct asr_http_req *r)
{
    r->suspended = false;
    mhd.resume_connection(r->conn);
    uv_timer_start(&r->h->timer, timer_cb, 0, 0);
}

/* The handler is done with r: if MHD already finished the connection (the client left while a
 * deploy ran), r goes now; if the connection waits suspended, it is resumed. */
static void release(struct asr_http_req *r)
{
    r->held = false;
    if (r->completed) {
        req_free(r);
        return;
    }
    if (r->suspended)
        resume(r);
}

void asr_http_reply(struct asr_http_req *r, int status, const char *ctype, const char *body,
                    size_t len)
{
    if (r == NULL)
        return;
    struct MHD_Response *resp =
        mhd.create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp != NULL) {
        add_common_headers(r, resp, ctype != NULL ? ctype : "application/json");
        if (r->response != NULL)
            mhd.destroy_response(r->response);
        r->response = resp;
        r->status = status;
    }
    if (r->held)
        release(r);
}

void asr_http_reply_json(struct asr_http_req *r, int status, json_t *j)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL) {
        static const char oom[] = "{\"error\":\"out of memory\",\"status\":500}";
        asr_http_reply(r, 500, NULL, oom, sizeof(oom) - 1);
        return;
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room: the NUL */
    asr_http_reply(r, status, NULL, text, n + 1);
    free(text);
}

void asr_http_reply_error(struct asr_http_req *r, int status, const char *msg)
{
    asr_http_reply_json(r, status, json_pack("{s:s, s:i}", "error", msg, "status", status));
}

/* ---- streams ----------------------------------------------------------------------------- */

static ssize_t stream_read_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct asr_http_stream *s = cls;
    (void)pos;
    size_t avail = s->queue.len - s->sent;
    if (avail == 0) {
        if (s->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (!s->req->suspended) {
            s->req->suspended = true;
            mhd.suspend_connection(s->req->conn);
        }
        /* The client has taken everything: the writer may have more for it. */
        if (s->on_drain != NULL)
            s->on_drain(s->data);
        return 0;
    }
    size_t n = avail < max ? avail : max;
    memcpy(buf, s->queue.data + s->sent, n);
    s->sent += n;
    if (s->sent == s->queue.len) {
        asr_buf_reset(&s->queue);
        s->sent = 0;
    }
    return (ssize_t)n;
}

/* MHD is done with the response: the client left, or the stream ended. */
static void stream_free_cb(void *cls)
{
    struct asr_http_stream *s = cls;
    struct asr_http_req *r = s->req;
    if (s->on_close != NULL)
        s->on_close(s->data);
    asr_buf_free(&s->queue);
    r->stream = NULL;
    free(s);
    if (r->completed)
        req_free(r);
}

struct asr_http_stream *asr_http_stream_open(struct asr_http_req *r, const char *ctype,
                                             void (*on_close)(void *data),
                                             void (*on_drain)(void *data), void *data)
{
    struct asr_http_stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        asr_http_reply_error(r, 500, "out of memory");
        return NULL;
    }
    asr_buf_init(&s->queue, STREAM_MAX_QUEUED);
    s->req = r;
    s->on_close = on_close;
    s->on_drain = on_drain;
    s->data = data;
    struct MHD_Response *resp = mhd.create_response_from_callback(
        MHD_SIZE_UNKNOWN, 16 * 1024, stream_read_cb, s, stream_free_cb);
    if (resp == NULL) {
        asr_buf_free(&s->queue);
        free(s);
        asr_http_reply_error(r, 500, "out of memory");
        return NULL;
    }
    add_common_headers(r, resp, ctype);
    r->stream = s;
    r->response = resp;
    r->status = 200;
    r->held = false; /* queued by access_cb when the handler returns */
    return s;
}

int asr_http_stream_write(struct asr_http_stream *s, const char *p, size_t n)
{
    if (s == NULL || s->ended)
        return -1;
    /* The cap is on what waits: the bytes MHD already took go first. */
    if (s->sent > 0 && s->queue.len + n > STREAM_MAX_QUEUED) {
        asr_buf_consume(&s->queue, s->sent);
        s->sent = 0;
    }
    if (s->queue.len - s->sent + n > STREAM_MAX_QUEUED || asr_buf_append(&s->queue, p, n) != 0) {
        asr_warn("api: an event stream's client reads too slowly (%zu bytes waiting); closing it",
                 s->queue.len - s->sent);
        s->ended = true;
    }
    if (s->req->suspended)
        resume(s->req);
    return s->ended ? -1 : 0;
}

size_t asr_http_stream_queued(const struct asr_http_stream *s)
{
    return s != NULL ? s->queue.len - s->sent : 0;
}

/* ---- the server -------------------------------------------------------------------------- */

int asr_http_start(uv_loop_t *loop, const struct asr_http_opts *o, struct asr_http **out,
                   struct asr_err *err)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    if (strchr(o->host, ':') != NULL) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET6, o->host, &a->sin6_addr) != 1)
            return asr_err_set(err, ASR_EINVAL, "api: '%s' is not a numeric IPv6 address", o->host);
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET, o->host, &a->sin_addr) != 1)
            return asr_err_set(err, ASR_EINVAL, "api: '%s' is not a numeric IPv4 address", o->host);
    }
    int rc = mhd_load(err);
    if (rc != 0)
        return rc;
    struct asr_http *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return asr_err_set(err, ASR_ENOMEM, "api: out of memory");
    h->loop = loop;
    h->max_body = o->max_body;
    h->handler = o->handler;
    h->data = o->data;
    h->mhd =
        mhd.start_daemon(flags, (uint16_t)o->port, NULL, NULL, access_cb, h, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, h,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned int)MAX_CONNECTIONS,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)IDLE_TIMEOUT_S,
                         MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1, MHD_OPTION_END);
    if (h->mhd == NULL) {
        free(h);
        return asr_err_set(err, ASR_EIO,
                           "api: cannot listen on %s:%d (is the port in use, or the address not "
                           "on this machine?)",
                           o->host, o->port);
    }
    const union MHD_DaemonInfo *di = mhd.get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di != NULL ? di->port : o->port;
    di = mhd.get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (di == NULL || uv_poll_init(loop, &h->poll, di->epoll_fd) != 0) {
        mhd.stop_daemon(h->mhd);
        free(h);
        return asr_err_set(err, ASR_EIO, "api: cannot watch the server's epoll descriptor");
    }
    h->poll.data = h;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_poll_start(&h->poll, UV_READABLE, poll_cb);
    run_mhd(h);
    *out = h;
    return 0;
}

int asr_http_port(const struct asr_http *h)
{
    return h->port;
}

/* libuv runs close callbacks newest first (the timer's before the poll's): h goes with the
 * second, whichever it is. */
static void closed_cb(uv_handle_t *hd)
{
    struct asr_http *h = hd->data;
    if (++h->closed == 2)
        free(h);
}

void asr_http_stop(struct asr_http *h)
{
    if (h == NULL)
        return;
    /* Everything suspended is answered or ended, so MHD can close it. */
    for (struct asr_http_req *r = h->reqs, *next; r != NULL; r = next) {
        next = r->next;
        if (r->stream != NULL) {
            r->stream->ended = true;
            if (r->suspended) {
                r->suspended = false;
                mhd.resume_connection(r->conn);
            }
        } else if (r->held) {
            asr_http_reply_error(r, 503, "asr is stopping");
        }
    }
    mhd.run(h->mhd);
    uv_poll_stop(&h->poll);
    mhd.stop_daemon(h->mhd);
    h->mhd = NULL;
    /* Requests a handler still held (none should remain after the replies above). */
    while (h->reqs != NULL)
        req_free(h->reqs);
    uv_close((uv_handle_t *)&h->poll, closed_cb);
    uv_close((uv_handle_t *)&h->timer, closed_cb);
}
