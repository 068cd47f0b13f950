/*
 * control.c - the control socket: server on the loop, and a blocking client for the CLI.
 */
#include "api/control.h"
#include "asr/buf.h"
#include "asr/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define REQUEST_TIMEOUT_MS 10000 /* a client must send its request line within this */

struct asr_control {
    uv_pipe_t pipe;
    uv_timer_t sweep; /* closes connections that never sent a request */
    struct asr_control_conn *conns;
    int open_handles;
    uv_loop_t *loop;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    asr_control_handler handler;
    void *data;
};

struct asr_control_conn {
    uv_pipe_t pipe;
    struct asr_control *ctl;
    struct asr_buf in;
    bool dispatched;
    bool replied;
    bool gone; /* client closed or errored */
    uint64_t accepted_at;
    struct asr_control_conn *prev, *next;
};

struct wreq {
    uv_write_t req;
    uv_buf_t buf;
};

static void conn_closed_cb(uv_handle_t *h)
{
    struct asr_control_conn *c = h->data;
    asr_buf_free(&c->in);
    free(c);
}

static void conn_close(struct asr_control_conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->pipe))
        return;
    if (c->ctl != NULL) {
        if (c->prev != NULL)
            c->prev->next = c->next;
        else
            c->ctl->conns = c->next;
        if (c->next != NULL)
            c->next->prev = c->prev;
        c->ctl = NULL;
    }
    uv_close((uv_handle_t *)&c->pipe, conn_closed_cb);
}

static void sweep_cb(uv_timer_t *t)
{
    struct asr_control *ctl = t->data;
    uint64_t now = uv_now(ctl->loop);
    struct asr_control_conn *c = ctl->conns, *next;
    for (; c != NULL; c = next) {
        next = c->next;
        if (!c->dispatched && now - c->accepted_at > REQUEST_TIMEOUT_MS)
            conn_close(c);
    }
}

static void write_cb(uv_write_t *req, int status)
{
    (void)status;
    struct wreq *w = (struct wreq *)req;
    free(w->buf.base);
    free(w);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)status;
    struct asr_control_conn *c = req->data;
    free(req);
    conn_close(c);
}

static void send_line(struct asr_control_conn *c, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    if (s == NULL || c->gone || uv_is_closing((uv_handle_t *)&c->pipe)) {
        free(s);
        return;
    }
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (line == NULL) {
        free(s);
        return;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    struct wreq *w = malloc(sizeof(*w));
    if (w == NULL) {
        free(line);
        return;
    }
    w->buf = uv_buf_init(line, (unsigned)(n + 1));
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1, write_cb) != 0) {
        free(line);
        free(w);
    }
}

void asr_control_progress(struct asr_control_conn *c, const char *msg)
{
    json_t *o = json_pack("{s:s}", "progress", msg);
    send_line(c, o);
    json_decref(o);
}

void asr_control_reply(struct asr_control_conn *c, json_t *reply)
{
    if (c->replied) {
        json_decref(reply);
        return;
    }
    c->replied = true;
    if (json_object_get(reply, "ok") == NULL)
        json_object_set_new(reply, "ok", json_true());
    send_line(c, reply);
    json_decref(reply);
    if (c->gone || uv_is_closing((uv_handle_t *)&c->pipe)) {
        conn_close(c);
        return;
    }
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req == NULL || uv_shutdown(req, (uv_stream_t *)&c->pipe, shutdown_cb) != 0) {
        free(req);
        conn_close(c);
        return;
    }
    req->data = c;
}

void asr_control_reply_error(struct asr_control_conn *c, const char *msg)
{
    asr_control_reply(c, json_pack("{s:b, s:s}", "ok", 0, "error", msg));
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char slab[16384];
    buf->base = slab;
    buf->len = sizeof(slab);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct asr_control_conn *c = s->data;
    if (nread < 0) {
        uv_read_stop(s);
        c->gone = true;
        /* A handler still working will reply into the void; close once it has. */
        if (!c->dispatched || c->replied)
            conn_close(c);
        return;
    }
    if (nread == 0 || c->dispatched)
        return;
    if (asr_buf_append(&c->in, buf->base, (size_t)nread) != 0) {
        c->dispatched = true;
        asr_control_reply_error(c, "request too large");
        return;
    }
    char *nl = memchr(c->in.data, '\n', c->in.len);
    if (nl == NULL)
        return;
    *nl = '\0';
    c->dispatched = true;
    struct asr_control *ctl = c->ctl;
    json_error_t jerr;
    json_t *req = json_loads(c->in.data, 0, &jerr);
    if (req == NULL || !json_is_object(req)) {
        char msg[256];
        snprintf(msg, sizeof(msg), "malformed request: %s", req ? "not an object" : jerr.text);
        json_decref(req);
        asr_control_reply_error(c, msg);
        return;
    }
    ctl->handler(c, req, ctl->data);
    json_decref(req);
}

static void accept_cb(uv_stream_t *server, int status)
{
    struct asr_control *ctl = server->data;
    if (status != 0)
        return;
    struct asr_control_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->ctl = ctl;
    c->accepted_at = uv_now(ctl->loop);
    c->next = ctl->conns;
    if (ctl->conns != NULL)
        ctl->conns->prev = c;
    ctl->conns = c;
    asr_buf_init(&c->in, ASR_CONTROL_MAX_REQUEST);
    uv_pipe_init(ctl->loop, &c->pipe, 0);
    c->pipe.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
        conn_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb);
}

int asr_control_listen(uv_loop_t *loop, const char *state_dir, asr_control_handler handler,
                       void *data, struct asr_control **out, struct asr_err *err)
{
    *out = NULL;
    struct asr_control *ctl = calloc(1, sizeof(*ctl));
    if (ctl == NULL)
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    int n = snprintf(ctl->path, sizeof(ctl->path), "%s/%s", state_dir, ASR_CONTROL_SOCKET);
    if (n < 0 || (size_t)n >= sizeof(ctl->path)) {
        free(ctl);
        return asr_err_set(err, ASR_EINVAL,
                           "control socket path %s/%s is longer than %zu bytes; use a shorter "
                           "--state-dir",
                           state_dir, ASR_CONTROL_SOCKET, sizeof(ctl->path) - 1);
    }
    ctl->loop = loop;
    ctl->handler = handler;
    ctl->data = data;
    /* The caller holds the state dir's lock, so a socket file left here is stale. */
    unlink(ctl->path);
    uv_pipe_init(loop, &ctl->pipe, 0);
    ctl->pipe.data = ctl;
    mode_t old = umask(077);
    int rc = uv_pipe_bind(&ctl->pipe, ctl->path);
    umask(old);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ctl->pipe, 64, accept_cb);
    if (rc == 0) {
        uv_timer_init(loop, &ctl->sweep);
        ctl->sweep.data = ctl;
        uv_timer_start(&ctl->sweep, sweep_cb, 1000, 1000);
        uv_unref((uv_handle_t *)&ctl->sweep);
    }
    if (rc != 0) {
        uv_close((uv_handle_t *)&ctl->pipe, NULL);
        asr_err_set(err, ASR_EIO, "cannot listen on %s: %s", ctl->path, uv_strerror(rc));
        ctl->pipe.data = NULL;
        /* The handle is freed with ctl once closed. */
        uv_run(loop, UV_RUN_NOWAIT);
        free(ctl);
        return ASR_EIO;
    }
    *out = ctl;
    return 0;
}

static void ctl_closed_cb(uv_handle_t *h)
{
    struct asr_control *ctl = h->data;
    if (--ctl->open_handles == 0)
        free(ctl);
}

void asr_control_close(struct asr_control *ctl)
{
    if (ctl == NULL)
        return;
    unlink(ctl->path);
    /* Connections still open (an idle client, a reply nobody reads) must not keep asr alive. */
    while (ctl->conns != NULL)
        conn_close(ctl->conns);
    ctl->open_handles = 2;
    ctl->sweep.data = ctl;
    uv_close((uv_handle_t *)&ctl->sweep, ctl_closed_cb);
    uv_close((uv_handle_t *)&ctl->pipe, ctl_closed_cb);
}

/* ---- client ----------------------------------------------------------------------------- */

int asr_control_call(const char *state_dir, json_t *request, void (*on_progress)(const char *msg),
                     json_t **reply, struct asr_err *err)
{
    *reply = NULL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", state_dir, ASR_CONTROL_SOCKET);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
        return asr_err_set(err, ASR_EINVAL, "control socket path under %s is too long", state_dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return asr_err_set(err, ASR_EIO, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        return asr_err_set(err, ASR_ENODAEMON, "no daemon is running for state dir %s (%s: %s)",
                           state_dir, sa.sun_path, strerror(e));
    }
    char *line = json_dumps(request, JSON_COMPACT);
    int rc = 0;
    if (line == NULL) {
        close(fd);
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    }
    size_t len = strlen(line);
    line[len] = '\n'; /* json_dumps leaves room for nothing more: write the NUL slot as newline */
    size_t off = 0;
    while (off < len + 1) {
        ssize_t w = write(fd, line + off, len + 1 - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = asr_err_set(err, ASR_EIO, "write to daemon: %s", strerror(errno));
            break;
        }
        off += (size_t)w;
    }
    free(line);
    struct asr_buf in;
    asr_buf_init(&in, 16u << 20);
    while (rc == 0) {
        char buf[8192];
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = asr_err_set(err, ASR_EIO, "read from daemon: %s", strerror(errno));
            break;
        }
        if (r > 0 && asr_buf_append(&in, buf, (size_t)r) != 0) {
            rc = asr_err_set(err, ASR_EPROTO, "reply from daemon too large");
            break;
        }
        /* Handle every complete line. */
        char *nl;
        while ((nl = memchr(in.data ? in.data : "", '\n', in.len)) != NULL) {
            *nl = '\0';
            json_error_t jerr;
            json_t *o = json_loads(in.data, 0, &jerr);
            size_t used = (size_t)(nl - in.data) + 1;
            asr_buf_consume(&in, used);
            if (o == NULL) {
                rc = asr_err_set(err, ASR_EPROTO, "malformed reply from daemon: %s", jerr.text);
                break;
            }
            json_t *p = json_object_get(o, "progress");
            if (p != NULL && json_object_get(o, "ok") == NULL) {
                if (on_progress != NULL)
                    on_progress(json_string_value(p));
                json_decref(o);
                continue;
            }
            *reply = o;
            break;
        }
        if (*reply != NULL || rc != 0)
            break;
        if (r == 0) {
            rc = asr_err_set(err, ASR_EPROTO, "daemon closed the connection without a reply");
            break;
        }
    }
    asr_buf_free(&in);
    close(fd);
    return rc;
}

int asr_control_api(const char *state_dir, const char *method, const char *path, json_t *body,
                    void (*on_progress)(const char *msg), json_t **out, struct asr_err *err)
{
    *out = NULL;
    json_t *req = json_pack("{s:s, s:s, s:O?}", "method", method, "path", path, "body", body);
    json_decref(body);
    if (req == NULL)
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    json_t *reply = NULL;
    int rc = asr_control_call(state_dir, req, on_progress, &reply, err);
    json_decref(req);
    if (rc != 0)
        return rc;
    json_t *b = json_object_get(reply, "body");
    json_int_t status = json_integer_value(json_object_get(reply, "status"));
    if (json_is_object(b)) {
        *out = json_incref(b);
    } else {
        /* The daemon refused the request itself (an older daemon, or a malformed request). */
        const char *e = json_string_value(json_object_get(reply, "error"));
        *out = json_pack("{s:s}", "error", e != NULL ? e : "the daemon's answer has no body");
        status = 400;
    }
    json_object_set_new(*out, "ok", json_boolean(status >= 200 && status < 300));
    json_object_set_new(*out, "status", json_integer(status));
    json_decref(reply);
    return 0;
}
