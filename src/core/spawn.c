/*
 * spawn.c - child processes on the libuv loop (see spawn.h).
 *
 * A process handle owns: the uv_process_t, two read pipes (stdout, stderr), each with a line
 * framer when the caller wants lines (include/asr/framer.h), a timeout timer and a
 * kill-escalation timer. on_exit fires once the process has exited AND both pipes reached EOF,
 * so no output is lost. Freeing a running process kills its group and keeps the process handle
 * alive until libuv has reaped it (closing it earlier would leave a zombie).
 */
#include "asr/spawn.h"
#include "asr/error.h"
#include "asr/framer.h"
#include "asr/log.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PIPES_LINGER_MS 1000 /* after the exit, how long leftovers may keep the pipes open */

extern char **environ;

static const char *shim_exe; /* see asr_spawn_set_shim */

void asr_spawn_set_shim(const char *exe)
{
    shim_exe = exe;
}

const char *asr_spawn_shim(void)
{
    return shim_exe;
}

struct stream {
    uv_pipe_t pipe;
    struct asr_proc *proc;
    int fd_no;             /* 1 or 2 */
    bool open;             /* reading, not yet at EOF */
    struct asr_framer *fr; /* bytes to lines; NULL without on_line */
};

struct asr_proc {
    uv_loop_t *loop;
    uv_process_t process;
    struct stream out, err;
    uv_timer_t timeout_timer;
    uv_timer_t kill_timer;
    struct asr_proc_opts opts;
    struct asr_buf capture;
    char **env;
    bool running;
    bool exited;
    bool exit_reported;
    bool timed_out;
    bool freed;
    int exit_status, term_signal;
    int open_handles; /* handles not yet closed; the struct is freed when it reaches 0 */
};

static void free_env(char **env)
{
    if (env == NULL)
        return;
    for (char **e = env; *e != NULL; e++)
        free(*e);
    free(env);
}

/* The parent's environment with env_extra added; an extra NAME=... replaces the inherited one. */
static char **build_env(char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ[n] != NULL)
        n++;
    while (extra != NULL && extra[m] != NULL)
        m++;
    char **env = calloc(n + m + 1, sizeof(char *));
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool replaced = false;
        for (size_t j = 0; j < m && !replaced; j++)
            replaced = strncmp(extra[j], environ[i], nl) == 0 && extra[j][nl] == '=';
        if (replaced)
            continue;
        if ((env[k++] = strdup(environ[i])) == NULL)
            goto fail;
    }
    for (size_t j = 0; j < m; j++)
        if ((env[k++] = strdup(extra[j])) == NULL)
            goto fail;
    return env;
fail:
    free_env(env);
    return NULL;
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct asr_proc *p = h->data;
    if (--p->open_handles > 0)
        return;
    asr_framer_destroy(p->out.fr);
    asr_framer_destroy(p->err.fr);
    asr_buf_free(&p->capture);
    free_env(p->env);
    free(p);
}

static void close_handle(struct asr_proc *p, uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        h->data = p;
        uv_close(h, handle_closed_cb);
    }
}

static void close_all(struct asr_proc *p)
{
    close_handle(p, (uv_handle_t *)&p->timeout_timer);
    close_handle(p, (uv_handle_t *)&p->kill_timer);
    close_handle(p, (uv_handle_t *)&p->out.pipe);
    close_handle(p, (uv_handle_t *)&p->err.pipe);
    close_handle(p, (uv_handle_t *)&p->process);
}

static void maybe_report_exit(struct asr_proc *p)
{
    if (!p->exited || p->out.open || p->err.open || p->exit_reported)
        return;
    p->exit_reported = true;
    uv_timer_stop(&p->timeout_timer);
    uv_timer_stop(&p->kill_timer);
    if (p->freed) {
        close_all(p);
        return;
    }
    if (p->opts.on_exit != NULL)
        p->opts.on_exit(p, p->exit_status, p->term_signal, p->timed_out, p->opts.data);
}

/* The framer's line callback: lines are cut, cleaned and CRLF-stripped there (framer.h). */
static void emit_line_cb(void *data, const char *line, size_t len, bool cut, uint64_t end_offset)
{
    (void)cut;
    (void)end_offset;
    struct stream *s = data;
    struct asr_proc *p = s->proc;
    if (p->opts.on_line != NULL && !p->freed)
        p->opts.on_line(p, s->fd_no, line, len, p->opts.data);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char slab[65536];
    /* The loop is single threaded and each read is consumed before the next alloc. */
    buf->base = slab;
    buf->len = sizeof(slab);
}

/* Stops reading a stream for good, after passing on a final line that had no newline. */
static void stream_finish(struct stream *s)
{
    if (s->fr != NULL)
        asr_framer_flush(s->fr);
    uv_read_stop((uv_stream_t *)&s->pipe);
    s->open = false;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct stream *s = stream->data;
    struct asr_proc *p = s->proc;
    if (nread > 0) {
        if (p->opts.capture_cap > 0)
            asr_buf_append(&p->capture, buf->base, (size_t)nread);
        if (s->fr != NULL)
            asr_framer_feed(s->fr, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0)
        return;
    /* EOF or error. */
    stream_finish(s);
    maybe_report_exit(p);
}

/*
 * The process exited but something it started still holds its stdout or stderr: give the
 * output a moment to finish, then kill the rest of the group and report the exit anyway.
 * Without this, a build that leaves `sleep 120 &` behind would keep its step (and its timeout)
 * waiting for two minutes.
 */
static void pipes_linger_cb(uv_timer_t *t)
{
    struct asr_proc *p = t->data;
    kill(-p->process.pid, SIGKILL);
    if (p->out.open)
        stream_finish(&p->out);
    if (p->err.open)
        stream_finish(&p->err);
    maybe_report_exit(p);
}

static void exit_cb(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    struct asr_proc *p = proc->data;
    p->running = false;
    p->exited = true;
    p->term_signal = term_signal;
    p->exit_status = term_signal ? 128 + term_signal : (int)exit_status;
    if (p->out.open || p->err.open)
        uv_timer_start(&p->timeout_timer, pipes_linger_cb, PIPES_LINGER_MS, 0);
    maybe_report_exit(p);
}

static void kill_timer_cb(uv_timer_t *t)
{
    struct asr_proc *p = t->data;
    asr_proc_signal(p, SIGKILL);
}

static void timeout_cb(uv_timer_t *t)
{
    struct asr_proc *p = t->data;
    if (!p->running)
        return;
    p->timed_out = true;
    asr_proc_stop(p, 0);
}

int asr_proc_start(uv_loop_t *loop, const struct asr_proc_opts *opts, struct asr_proc **out,
                   struct asr_err *err)
{
    *out = NULL;
    if (opts->argv == NULL || opts->argv[0] == NULL)
        return asr_err_set(err, ASR_EINVAL, "spawn: empty argv");
    struct asr_proc *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return asr_err_set(err, ASR_ENOMEM, "spawn: out of memory");
    p->loop = loop;
    p->opts = *opts;
    if (p->opts.kill_grace_ms <= 0)
        p->opts.kill_grace_ms = 5000;
    asr_buf_init(&p->capture, opts->capture_cap);
    p->out.proc = p->err.proc = p;
    p->out.fd_no = 1;
    p->err.fd_no = 2;
    p->env = build_env(opts->env_extra);
    /* Framers only for line callers: builds that only capture need no 64 KiB line buffers. */
    if (p->env == NULL ||
        (opts->on_line != NULL &&
         (asr_framer_create(ASR_LINE_MAX, emit_line_cb, &p->out, &p->out.fr) != 0 ||
          asr_framer_create(ASR_LINE_MAX, emit_line_cb, &p->err, &p->err.fr) != 0))) {
        asr_framer_destroy(p->out.fr);
        free_env(p->env);
        free(p);
        return asr_err_set(err, ASR_ENOMEM, "spawn: out of memory");
    }
    uv_pipe_init(loop, &p->out.pipe, 0);
    uv_pipe_init(loop, &p->err.pipe, 0);
    uv_timer_init(loop, &p->timeout_timer);
    uv_timer_init(loop, &p->kill_timer);
    p->out.pipe.data = &p->out;
    p->err.pipe.data = &p->err;
    p->timeout_timer.data = p;
    p->kill_timer.data = p;
    p->open_handles = 4;

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&p->out.pipe;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&p->err.pipe;

    uv_process_options_t po;
    memset(&po, 0, sizeof(po));
    po.exit_cb = exit_cb;
    /* With a shim, the child is `SHIM PPID -- argv...`: it arranges to die with asr, then
     * execs argv (see asr_spawn_set_shim). */
    char *shimmed[ASR_SPAWN_MAX_ARGS + 4];
    char ppid[24];
    if (shim_exe != NULL) {
        size_t n = 0;
        while (opts->argv[n] != NULL && n < ASR_SPAWN_MAX_ARGS)
            n++;
        if (opts->argv[n] != NULL) {
            p->freed = true;
            close_all(p);
            return asr_err_set(err, ASR_EINVAL, "spawn '%s': more than %d arguments", opts->argv[0],
                               ASR_SPAWN_MAX_ARGS);
        }
        snprintf(ppid, sizeof(ppid), "%d", (int)getpid());
        shimmed[0] = (char *)shim_exe;
        shimmed[1] = ppid;
        shimmed[2] = "--";
        memcpy(shimmed + 3, opts->argv, (n + 1) * sizeof(char *));
        po.file = shim_exe;
        po.args = shimmed;
    } else {
        po.file = opts->argv[0];
        po.args = (char **)opts->argv;
    }
    po.env = p->env;
    po.cwd = opts->cwd;
    po.flags = UV_PROCESS_DETACHED; /* setsid(): its own process group */
    po.stdio_count = 3;
    po.stdio = stdio;
    p->process.data = p;
    int rc = uv_spawn(loop, &p->process, &po);
    if (rc != 0) {
        /* uv_spawn initialised the process handle even on failure; close everything. */
        p->open_handles++;
        p->freed = true;
        close_all(p);
        return asr_err_set(err, ASR_ESPAWN, "spawn '%s'%s%s: %s", opts->argv[0],
                           opts->cwd ? " in " : "", opts->cwd ? opts->cwd : "", uv_strerror(rc));
    }
    p->open_handles++;
    p->running = true;
    p->out.open = p->err.open = true;
    uv_read_start((uv_stream_t *)&p->out.pipe, alloc_cb, read_cb);
    uv_read_start((uv_stream_t *)&p->err.pipe, alloc_cb, read_cb);
    if (opts->timeout_ms > 0)
        uv_timer_start(&p->timeout_timer, timeout_cb, (uint64_t)opts->timeout_ms, 0);
    *out = p;
    return 0;
}

void asr_proc_signal(struct asr_proc *p, int sig)
{
    if (p == NULL || p->exit_reported)
        return;
    /* The child called setsid(), so its pid is its process group id. */
    if (kill(-p->process.pid, sig) != 0 && errno == ESRCH && p->running)
        kill(p->process.pid, sig);
}

void asr_proc_stop(struct asr_proc *p, int grace_ms)
{
    if (p == NULL || p->exit_reported)
        return;
    asr_proc_signal(p, SIGTERM);
    int g = grace_ms > 0 ? grace_ms : p->opts.kill_grace_ms;
    uv_timer_start(&p->kill_timer, kill_timer_cb, (uint64_t)g, 0);
}

pid_t asr_proc_pid(const struct asr_proc *p)
{
    return p->process.pid;
}

bool asr_proc_running(const struct asr_proc *p)
{
    return p != NULL && p->running;
}

const struct asr_buf *asr_proc_output(const struct asr_proc *p)
{
    return &p->capture;
}

void asr_proc_free(struct asr_proc *p)
{
    if (p == NULL || p->freed)
        return;
    p->freed = true;
    if (p->exit_reported) {
        close_all(p);
        return;
    }
    /* Still running or output still draining: kill, and close once reaped and drained. */
    asr_proc_signal(p, SIGKILL);
    if (p->exited && (p->out.open || p->err.open)) {
        /* Grandchildren may hold the pipes open; stop reading now. */
        uv_read_stop((uv_stream_t *)&p->out.pipe);
        uv_read_stop((uv_stream_t *)&p->err.pipe);
        p->out.open = p->err.open = false;
        p->exit_reported = true;
        close_all(p);
    }
}

struct sync_result {
    int status;
    bool timed_out;
    bool done;
    char *output;
};

static void sync_exit_cb(struct asr_proc *p, int exit_status, int term_signal, bool timed_out,
                         void *data)
{
    (void)term_signal;
    struct sync_result *r = data;
    r->status = exit_status;
    r->timed_out = timed_out;
    r->done = true;
    r->output = strdup(asr_buf_cstr(asr_proc_output(p)));
    asr_proc_free(p);
}

int asr_proc_run_sync(char *const *argv, char *const *env_extra, const char *cwd, int timeout_ms,
                      size_t cap, int *status, char **output, struct asr_err *err)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return asr_err_set(err, ASR_ENOMEM, "spawn: cannot create loop");
    struct sync_result r = {0};
    struct asr_proc_opts o = {.argv = argv,
                              .env_extra = env_extra,
                              .cwd = cwd,
                              .timeout_ms = timeout_ms,
                              .kill_grace_ms = 2000,
                              .capture_cap = cap > 0 ? cap : 1,
                              .on_exit = sync_exit_cb,
                              .data = &r};
    struct asr_proc *p;
    int rc = asr_proc_start(&loop, &o, &p, err);
    if (rc == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (rc != 0)
        return rc;
    if (status != NULL)
        *status = r.status;
    if (output != NULL)
        *output = r.output;
    else
        free(r.output);
    if (r.timed_out)
        return asr_err_set(err, ASR_ETIMEOUT, "'%s' timed out after %d ms", argv[0], timeout_ms);
    return 0;
}
