/*
 * llm_worker.c - the daemon's side of the asr-llm worker (see llm_worker.h).
 */
#include "strategy/llm_worker.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pending {
    int64_t id;
    asr_llm_answer_cb cb;
    void *data;
    struct pending *next;
};

/* One run of the worker process. A new one can start while a dead one's handles close. */
struct wproc {
    struct asr_llm_worker *w; /* NULL once detached */
    uv_process_t proc;
    uv_pipe_t in, out; /* its stdin (we write), its stdout (we read) */
    int open_handles;
    char *buf; /* a partial answer line */
    size_t len, cap;
};

struct asr_llm_worker {
    uv_loop_t *loop;
    char *exe;
    struct wproc *cur;
    struct pending *pending;
    size_t npending;
    int64_t next_id;
};

void asr_llm_reply_free(struct asr_llm_reply *r)
{
    if (r == NULL)
        return;
    free(r->text);
    free(r->finish_reason);
    memset(r, 0, sizeof(*r));
}

/* ---- answers ----------------------------------------------------------------------------------
 */

static void answer(asr_llm_answer_cb cb, void *data, int rc, struct asr_llm_reply *r,
                   const char *msg)
{
    cb(rc, r, rc != 0 ? (msg != NULL ? msg : "llm: failed") : NULL, data);
    asr_llm_reply_free(r);
}

/* Ends every pending question with rc and msg. */
static void fail_all(struct asr_llm_worker *w, int rc, const char *msg)
{
    while (w->pending != NULL) {
        struct pending *p = w->pending;
        w->pending = p->next;
        w->npending--;
        struct asr_llm_reply r = {.prompt_tokens = -1, .completion_tokens = -1};
        answer(p->cb, p->data, rc, &r, msg);
        free(p);
    }
}

static char *dup_str(json_t *v)
{
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

/* One answer line from the worker. Returns false when it is not one (the worker is then not to
 * be trusted with the other questions). */
static bool on_answer(struct asr_llm_worker *w, const char *line, size_t len)
{
    json_t *j = json_loadb(line, len, 0, NULL);
    json_t *id = json_object_get(j, "id"), *rc = json_object_get(j, "rc");
    if (!json_is_integer(id) || !json_is_integer(rc)) {
        json_decref(j);
        return false;
    }
    struct pending **pp = &w->pending;
    while (*pp != NULL && (*pp)->id != json_integer_value(id))
        pp = &(*pp)->next;
    struct pending *p = *pp;
    if (p == NULL) { /* a question cancelled meanwhile */
        json_decref(j);
        return true;
    }
    *pp = p->next;
    w->npending--;
    struct asr_llm_reply r = {
        .text = dup_str(json_object_get(j, "text")),
        .finish_reason = dup_str(json_object_get(j, "finish_reason")),
        .prompt_tokens = json_integer_value(json_object_get(j, "prompt_tokens")),
        .completion_tokens = json_integer_value(json_object_get(j, "completion_tokens")),
        .http_status = (int)json_integer_value(json_object_get(j, "http_status")),
        .attempts = (int)json_integer_value(json_object_get(j, "attempts")),
        .elapsed_ms = json_integer_value(json_object_get(j, "elapsed_ms")),
        .waited_ms = json_integer_value(json_object_get(j, "waited_ms"))};
    if (!json_is_integer(json_object_get(j, "prompt_tokens")))
        r.prompt_tokens = -1;
    if (!json_is_integer(json_object_get(j, "completion_tokens")))
        r.completion_tokens = -1;
    int code = (int)json_integer_value(rc);
    if (r.text != NULL)
        r.len = strlen(r.text);
    if (code == 0 && r.text == NULL)
        code = ASR_EPROTO;
    answer(p->cb, p->data, code, &r, json_string_value(json_object_get(j, "error")));
    free(p);
    json_decref(j);
    return true;
}

/* ---- the process ------------------------------------------------------------------------------
 */

static void handle_closed_cb(uv_handle_t *h)
{
    struct wproc *wp = h->data;
    if (--wp->open_handles == 0) {
        free(wp->buf);
        free(wp);
    }
}

/* Detaches a worker run: its questions end with rc and msg, its handles close; kill asks it to
 * go (it would otherwise finish the calls in flight first). */
static void detach(struct wproc *wp, int rc, const char *msg, bool kill)
{
    struct asr_llm_worker *w = wp->w;
    if (w == NULL)
        return;
    wp->w = NULL;
    w->cur = NULL;
    if (kill)
        uv_process_kill(&wp->proc, SIGTERM);
    uv_close((uv_handle_t *)&wp->in, handle_closed_cb);
    uv_close((uv_handle_t *)&wp->out, handle_closed_cb);
    uv_close((uv_handle_t *)&wp->proc, handle_closed_cb);
    fail_all(w, rc, msg);
}

static void exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    struct wproc *wp = proc->data;
    char msg[160];
    snprintf(msg, sizeof(msg), "llm: the asr-llm worker exited (status %lld, signal %d)",
             (long long)status, sig);
    detach(wp, ASR_EPROTO, msg, false);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char chunk[65536]; /* the loop is single-threaded; read_cb copies out at once */
    *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct wproc *wp = s->data;
    if (n < 0) {
        uv_read_stop(s); /* EOF: the exit callback follows */
        return;
    }
    for (ssize_t i = 0; i < n && wp->w != NULL; i++) {
        char c = buf->base[i];
        if (c == '\n') {
            if (!on_answer(wp->w, wp->buf, wp->len)) {
                detach(wp, ASR_EPROTO, "llm: the asr-llm worker sent a malformed answer", true);
                return;
            }
            wp->len = 0;
            continue;
        }
        if (wp->len + 1 > wp->cap) {
            size_t cap = wp->cap ? wp->cap * 2 : 65536;
            char *b = cap <= ASR_LLM_WORKER_MAX_LINE ? realloc(wp->buf, cap) : NULL;
            if (b == NULL) {
                detach(wp, ASR_ETOOBIG, "llm: an answer from the asr-llm worker is too long", true);
                return;
            }
            wp->buf = b;
            wp->cap = cap;
        }
        wp->buf[wp->len++] = c;
    }
}

static int start(struct asr_llm_worker *w, struct asr_err *err)
{
    struct wproc *wp = calloc(1, sizeof(*wp));
    if (wp == NULL)
        return asr_err_set(err, ASR_ENOMEM, "llm: out of memory");
    wp->w = w;
    uv_pipe_init(w->loop, &wp->in, 0);
    uv_pipe_init(w->loop, &wp->out, 0);
    wp->in.data = wp->out.data = wp->proc.data = wp;
    wp->open_handles = 2;
    char *args[] = {w->exe, NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&wp->in},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&wp->out},
        {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t o = {
        .exit_cb = exit_cb, .file = w->exe, .args = args, .stdio = stdio, .stdio_count = 3};
    int r = uv_spawn(w->loop, &wp->proc, &o);
    if (r != 0) {
        /* The process handle must be closed too after a failed spawn. */
        wp->open_handles = 3;
        wp->w = NULL;
        uv_close((uv_handle_t *)&wp->in, handle_closed_cb);
        uv_close((uv_handle_t *)&wp->out, handle_closed_cb);
        uv_close((uv_handle_t *)&wp->proc, handle_closed_cb);
        return asr_err_set(err, ASR_ESPAWN, "llm: cannot start %s: %s", w->exe, uv_strerror(r));
    }
    wp->open_handles = 3;
    uv_read_start((uv_stream_t *)&wp->out, alloc_cb, read_cb);
    w->cur = wp;
    return 0;
}

/* ---- questions --------------------------------------------------------------------------------
 */

int asr_llm_worker_create(uv_loop_t *loop, const char *exe, struct asr_llm_worker **out,
                          struct asr_err *err)
{
    struct asr_llm_worker *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->exe = strdup(exe)) == NULL) {
        free(w);
        return asr_err_set(err, ASR_ENOMEM, "llm: out of memory");
    }
    w->loop = loop;
    *out = w;
    return 0;
}

struct write_req {
    uv_write_t req;
    char *text;
};

static void write_cb(uv_write_t *req, int status)
{
    struct write_req *wr = (struct write_req *)req;
    struct wproc *wp = req->handle->data;
    free(wr->text);
    free(wr);
    if (status != 0 && status != UV_ECANCELED && wp->w != NULL)
        detach(wp, ASR_EPROTO, "llm: cannot write to the asr-llm worker", true);
}

int asr_llm_worker_ask(struct asr_llm_worker *w, const struct asr_llm_cfg *cfg, const char *system,
                       const char *user, asr_llm_answer_cb cb, void *data, struct asr_err *err)
{
    if (cfg == NULL || cfg->provider == NULL || user == NULL)
        return asr_err_set(err, ASR_EINVAL, "llm: a question needs a provider and a text");
    json_t *llm = json_pack(
        "{s:s, s:s?, s:s?, s:s?, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "provider", cfg->provider,
        "base_url", cfg->base_url, "model", cfg->model, "api_key_env", cfg->api_key_env,
        "timeout_ms", cfg->timeout_ms, "max_attempts", cfg->max_attempts, "max_tokens",
        cfg->max_tokens, "backoff_initial_ms", cfg->backoff_initial_ms, "backoff_max_ms",
        cfg->backoff_max_ms, "breaker_threshold", cfg->breaker_threshold, "breaker_cooldown_ms",
        cfg->breaker_cooldown_ms);
    int64_t id = ++w->next_id;
    json_t *q = llm != NULL ? json_pack("{s:I, s:o, s:s?, s:s}", "id", (json_int_t)id, "llm", llm,
                                        "system", system, "user", user)
                            : NULL;
    char *text = q != NULL ? json_dumps(q, JSON_COMPACT) : NULL;
    json_decref(q);
    struct pending *p = calloc(1, sizeof(*p));
    struct write_req *wr = calloc(1, sizeof(*wr));
    size_t len = text != NULL ? strlen(text) : 0;
    char *line = text != NULL ? realloc(text, len + 2) : NULL;
    if (line == NULL || p == NULL || wr == NULL) {
        free(line != NULL ? line : text);
        free(p);
        free(wr);
        return asr_err_set(err, ASR_ENOMEM, "llm: out of memory");
    }
    line[len] = '\n';
    line[len + 1] = '\0';
    int rc = w->cur == NULL ? start(w, err) : 0;
    if (rc != 0) {
        free(line);
        free(p);
        free(wr);
        return rc;
    }
    *p = (struct pending){.id = id, .cb = cb, .data = data, .next = w->pending};
    w->pending = p;
    w->npending++;
    wr->text = line;
    uv_buf_t b = uv_buf_init(line, (unsigned)(len + 1));
    int r = uv_write(&wr->req, (uv_stream_t *)&w->cur->in, &b, 1, write_cb);
    if (r != 0) {
        free(line);
        free(wr);
        /* The question is pending: detaching the worker answers it, on this call's stack, which
         * the contract forbids; so take it back out and report the error instead. */
        w->pending = p->next;
        w->npending--;
        free(p);
        struct wproc *wp = w->cur;
        detach(wp, ASR_EPROTO, "llm: cannot write to the asr-llm worker", true);
        return asr_err_set(err, ASR_EPROTO, "llm: cannot write to the asr-llm worker: %s",
                           uv_strerror(r));
    }
    return 0;
}

size_t asr_llm_worker_pending(const struct asr_llm_worker *w)
{
    return w != NULL ? w->npending : 0;
}

void asr_llm_worker_destroy(struct asr_llm_worker *w)
{
    if (w == NULL)
        return;
    if (w->cur != NULL)
        detach(w->cur, ASR_ECANCELED, "llm: cancelled", w->npending > 0);
    fail_all(w, ASR_ECANCELED, "llm: cancelled");
    free(w->exe);
    free(w);
}

/* ---- one question, synchronously --------------------------------------------------------------
 */

struct sync_state {
    bool done;
    int rc;
    struct asr_llm_reply *out;
    struct asr_err *err;
};

static void sync_cb(int rc, struct asr_llm_reply *reply, const char *errmsg, void *data)
{
    struct sync_state *s = data;
    s->done = true;
    s->rc = rc;
    *s->out = *reply;
    memset(reply, 0, sizeof(*reply)); /* the strings move to out */
    if (rc != 0)
        asr_err_set(s->err, rc, "%s", errmsg);
}

int asr_llm_ask_sync(const char *exe, const struct asr_llm_cfg *cfg, const char *system,
                     const char *user, struct asr_llm_reply *out, struct asr_err *err)
{
    memset(out, 0, sizeof(*out));
    out->prompt_tokens = out->completion_tokens = -1;
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return asr_err_set(err, ASR_ENOMEM, "llm: cannot create an event loop");
    struct asr_llm_worker *w = NULL;
    struct sync_state s = {.out = out, .err = err};
    int rc = asr_llm_worker_create(&loop, exe, &w, err);
    if (rc == 0)
        rc = asr_llm_worker_ask(w, cfg, system, user, sync_cb, &s, err);
    while (rc == 0 && !s.done)
        uv_run(&loop, UV_RUN_ONCE);
    if (rc == 0)
        rc = s.rc;
    asr_llm_worker_destroy(w);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}
