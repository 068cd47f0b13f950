/*
 * service.c - releases, blue/green slots, health, deployments and crash restarts of one service
 * (see service.h for the lifecycle).
 *
 * Everything that blocks is a child process watched by the loop: the build and the tests, and
 * also git, which runs as `asr-git resolve|export` (cli/asr_git.c) so that the daemon never
 * loads libgit2 and its TLS stack, and a large checkout never stalls the proxy.
 */
#include "recover/service.h"
#include "asr/fsutil.h"
#include "asr/log.h"
#include "asr/spawn.h"
#include "asr/timeutil.h"
#include "recover/health.h"
#include "recover/proxy.h"
#include "recover/sandbox.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define OUTPUT_CAP (256 * 1024)
#define FAST_PROBE_MS 10 /* probe interval while a slot starts: every ms counts in a restart */
#define RESTART_LOG 256  /* restart timestamps kept for the budget window */
#define SLOT_WAIT_POLL_MS 20

enum slot_state { SLOT_EMPTY, SLOT_STARTING, SLOT_READY, SLOT_DRAINING, SLOT_STOPPING };
static const char *const slot_names[2] = {"blue", "green"};
static const char *const slot_state_names[] = {"empty", "starting", "ready", "draining",
                                               "stopping"};

struct slot;
typedef void (*slot_ready_cb)(struct slot *s, int rc, const char *why);
typedef void (*slot_stopped_cb)(struct slot *s, void *data);

struct slot {
    struct asr_service *svc;
    int idx;
    enum slot_state state;
    struct asr_proc *proc;
    int pid;
    int port;
    int64_t release_id;
    char commit[41];
    char *workdir;
    struct asr_backend *backend;
    struct asr_backend *draining; /* the backend whose drain this slot waits for */
    uv_timer_t health_timer;
    uv_timer_t stop_timer; /* drain deadline */
    struct asr_probe *probe;
    int ok_streak, fail_streak;
    bool healthy;
    uint64_t started_ms, healthy_since_ms;
    uint64_t probes_ok, probes_failed;
    bool stop_requested;
    slot_ready_cb ready_cb;
    slot_stopped_cb stopped_cb;
    void *stopped_data;
};

enum deploy_phase { D_RESOLVE, D_EXPORT, D_BUILD, D_TEST, D_WAIT_SLOT, D_START, D_DONE };

struct deploy {
    struct asr_service *svc;
    char kind[16];
    char ref[256];
    char sha[41];
    int64_t release_id, from_release, deployment_id;
    char *export_dir, *final_dir;
    bool need_build;
    enum deploy_phase phase;
    struct asr_proc *proc;
    uint64_t t0, phase_t0;
    int64_t build_ms, test_ms;
    char repo[4096];
    uv_timer_t timer;
    uint64_t wait_deadline;
    struct slot *target;
    bool cancelled;
    asr_op_progress_cb progress;
    asr_op_done_cb done;
    void *data;
};

struct asr_service {
    struct asr_runtime_ctx ctx;
    const struct asr_service_cfg *cfg;
    char name[64];
    char *repo_prefix;
    bool repo_prefix_known; /* repo_prefix came from a resolve of this config's repo */
    struct asr_proxy *proxy;
    struct slot slots[2];
    int active; /* index of the serving slot, -1 for none */
    struct deploy *deploy;
    uv_timer_t restart_timer;
    bool restart_pending;
    int restart_slot; /* the slot restart_timer restarts */
    int crash_streak;
    uint64_t restart_log[RESTART_LOG];
    size_t restart_log_n;
    int restarts_total;
    bool failed;
    char failed_reason[256];
    uint64_t last_crash_ms, last_recovered_ms;
    bool shutting_down;
    void (*shutdown_cb)(void *);
    void *shutdown_data;
    int open_timers;
};

static void slot_begin_probe(struct slot *s, uint64_t delay_ms);
static void handle_crash(struct asr_service *svc, struct slot *s, const char *why);
static void deploy_fail(struct deploy *d, int rc, const char *outcome, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void maybe_shutdown_done(struct asr_service *svc);

/* ---- helpers -------------------------------------------------------------------------------- */

static void event(struct asr_service *svc, const char *actor, const char *kind, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

static void event(struct asr_service *svc, const char *actor, const char *kind, const char *fmt,
                  ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    struct asr_err err = {0};
    if (asr_store_event_add(svc->ctx.store, svc->name, actor, kind, detail, &err) != 0)
        asr_warn("%s: cannot record event %s: %s", svc->name, kind, err.msg);
    /* Events that need an operator's eye stand out in the log. */
    bool bad = strstr(kind, "failed") != NULL || strstr(kind, "unhealthy") != NULL ||
               strstr(kind, "exited") != NULL;
    asr_log(bad ? ASR_LOG_WARN : ASR_LOG_INFO, "%s: %s: %s", svc->name, kind, detail);
}

/* Asks the kernel for a free port on loopback. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void free_strv(char **v)
{
    if (v == NULL)
        return;
    for (char **p = v; *p != NULL; p++)
        free(*p);
    free(v);
}

/* A copy of argv with every "${PORT}" replaced by port. */
static char **expand_argv(const asr_argv argv, int port)
{
    size_t n = asr_argv_len(argv);
    char **out = calloc(n + 1, sizeof(char *));
    if (out == NULL)
        return NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    for (size_t i = 0; i < n; i++) {
        struct asr_buf b;
        asr_buf_init(&b, 65536);
        const char *a = argv[i];
        const char *m;
        while ((m = strstr(a, "${PORT}")) != NULL) {
            asr_buf_append(&b, a, (size_t)(m - a));
            asr_buf_puts(&b, ps);
            a = m + 7;
        }
        asr_buf_puts(&b, a);
        out[i] = asr_buf_steal(&b);
    }
    return out;
}

/* The environment additions for build, test and start. */
static char **make_env(const struct asr_service *svc, const char *commit, int port,
                       const char *slot)
{
    size_t n = asr_argv_len(svc->cfg->env);
    char **env = calloc(n + 5, sizeof(char *));
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        env[k++] = strdup(svc->cfg->env[i]);
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "ASR_COMMIT=%s", commit);
    env[k++] = strdup(tmp);
    snprintf(tmp, sizeof(tmp), "ASR_SERVICE=%s", svc->name);
    env[k++] = strdup(tmp);
    if (port > 0) {
        snprintf(tmp, sizeof(tmp), "PORT=%d", port);
        env[k++] = strdup(tmp);
    }
    if (slot != NULL) {
        snprintf(tmp, sizeof(tmp), "ASR_SLOT=%s", slot);
        env[k++] = strdup(tmp);
    }
    return env;
}

static void progress(struct deploy *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void progress(struct deploy *d, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    asr_info("%s: %s", d->svc->name, msg);
    if (d->progress != NULL)
        d->progress(msg, d->data);
}

/* SIGTERM to SIGKILL for a slot. The config allows 0 ("kill at once"), which spawn.c would read
 * as "the default": 1 ms says what the operator meant. */
static int stop_grace(const struct asr_service *svc)
{
    return svc->cfg->deploy.stop_grace_ms > 0 ? svc->cfg->deploy.stop_grace_ms : 1;
}

static uint64_t now_ms(void)
{
    return asr_time_mono_ms();
}

/* ---- slots ---------------------------------------------------------------------------------- */

static void slot_line_cb(struct asr_proc *p, int stream, const char *line, size_t len, void *data)
{
    (void)p;
    struct slot *s = data;
    struct asr_service *svc = s->svc;
    if ((stream == 1 && !svc->cfg->log_stdout) || (stream == 2 && !svc->cfg->log_stderr))
        return;
    if (svc->ctx.on_line != NULL)
        svc->ctx.on_line(svc, slot_names[s->idx], s->commit[0] != '\0' ? s->commit : NULL, stream,
                         line, len, svc->ctx.on_line_data);
}

static void slot_clear(struct slot *s)
{
    uv_timer_stop(&s->health_timer);
    uv_timer_stop(&s->stop_timer);
    if (s->probe != NULL) {
        asr_probe_cancel(s->probe);
        s->probe = NULL;
    }
    s->state = SLOT_EMPTY;
    s->draining = NULL;
    s->pid = 0;
    s->port = 0;
    s->healthy = false;
    s->ok_streak = s->fail_streak = 0;
    s->stop_requested = false;
    s->ready_cb = NULL;
}

static void slot_exit_cb(struct asr_proc *p, int status, int sig, bool timed_out, void *data)
{
    (void)timed_out;
    struct slot *s = data;
    struct asr_service *svc = s->svc;
    asr_proc_free(p);
    s->proc = NULL;
    /* A slot on its way out (draining, stopping, or asr shutting down) that exits by itself
     * has done what we were about to ask: that is not a crash. */
    bool expected = s->stop_requested || s->state == SLOT_DRAINING || s->state == SLOT_STOPPING ||
                    svc->shutting_down;
    enum slot_state was = s->state;
    int pid = s->pid;
    slot_ready_cb ready = s->ready_cb;
    if (s->backend != NULL && svc->proxy != NULL) {
        /* The process is gone: stop routing to it. Requests in flight fail and are retried. */
        struct asr_backend *b = s->backend;
        s->backend = NULL;
        asr_proxy_backend_release(svc->proxy, b, NULL, NULL);
    }
    slot_stopped_cb stopped = s->stopped_cb;
    void *stopped_data = s->stopped_data;
    s->stopped_cb = NULL;
    char commit[sizeof(s->commit)];
    memcpy(commit, s->commit, sizeof(commit));
    slot_clear(s);
    if (expected) {
        event(svc, "supervisor", "slot.stopped", "slot=%s pid=%d status=%d", slot_names[s->idx],
              pid, status);
        if (stopped != NULL)
            stopped(s, stopped_data);
        maybe_shutdown_done(svc);
        return;
    }
    char why[128];
    if (sig != 0)
        snprintf(why, sizeof(why), "killed by signal %d (%s)", sig, strsignal(sig));
    else
        snprintf(why, sizeof(why), "exited with status %d", status);
    event(svc, "supervisor", "slot.exited", "slot=%s pid=%d %s (was %s)", slot_names[s->idx], pid,
          why, slot_state_names[was]);
    if (svc->ctx.on_exit != NULL)
        svc->ctx.on_exit(svc, slot_names[s->idx], commit[0] != '\0' ? commit : NULL, status, sig,
                         svc->ctx.on_line_data);
    if (was == SLOT_STARTING && ready != NULL) {
        ready(s, ASR_EEXIT, why);
        return;
    }
    if (svc->active == s->idx)
        handle_crash(svc, s, why);
}

static void probe_done_cb(bool ok, int status, const char *why, uint64_t latency_us, void *data)
{
    (void)latency_us;
    struct slot *s = data;
    struct asr_service *svc = s->svc;
    const struct asr_health_cfg *h = &svc->cfg->health;
    s->probe = NULL;
    if (!ok && status < 0) {
        /* asr itself could not probe (e.g. out of descriptors): no verdict on the service. */
        asr_warn("%s: health probe of slot %s not sent: %s", svc->name, slot_names[s->idx], why);
        slot_begin_probe(s, (uint64_t)h->interval_ms);
        return;
    }
    if (ok) {
        s->probes_ok++;
        s->ok_streak++;
        s->fail_streak = 0;
    } else {
        s->probes_failed++;
        s->fail_streak++;
        s->ok_streak = 0;
    }
    if (s->state == SLOT_STARTING) {
        if (s->ok_streak >= h->rise) {
            s->state = SLOT_READY;
            s->healthy = true;
            s->healthy_since_ms = now_ms();
            slot_ready_cb cb = s->ready_cb;
            s->ready_cb = NULL;
            slot_begin_probe(s, (uint64_t)h->interval_ms);
            if (cb != NULL)
                cb(s, 0, NULL);
            return;
        }
        slot_begin_probe(s, FAST_PROBE_MS);
        return;
    }
    if (s->state != SLOT_READY)
        return;
    if (!s->healthy && s->ok_streak >= h->rise) {
        s->healthy = true;
        s->healthy_since_ms = now_ms();
        event(svc, "health", "slot.healthy", "slot=%s port=%d", slot_names[s->idx], s->port);
    } else if (s->healthy && s->fail_streak >= h->fall) {
        s->healthy = false;
        event(svc, "health", "slot.unhealthy", "slot=%s port=%d after %d failed probes: %s%s%d",
              slot_names[s->idx], s->port, s->fail_streak, why ? why : "status ", why ? " " : "",
              status);
        if (svc->active == s->idx && s->proc != NULL) {
            /* A live but unhealthy serving slot is replaced like a crashed one. */
            s->stop_requested = false;
            asr_proc_signal(s->proc, SIGKILL);
            return;
        }
    }
    slot_begin_probe(s, (uint64_t)h->interval_ms);
}

static void health_timer_cb(uv_timer_t *t)
{
    struct slot *s = t->data;
    if (s->probe != NULL || (s->state != SLOT_STARTING && s->state != SLOT_READY))
        return;
    const struct asr_health_cfg *h = &s->svc->cfg->health;
    s->probe = asr_probe_start(s->svc->ctx.loop, "127.0.0.1", s->port, h->path, h->timeout_ms, NULL,
                               probe_done_cb, s);
    if (s->probe == NULL)
        slot_begin_probe(s, (uint64_t)h->interval_ms);
}

static void slot_begin_probe(struct slot *s, uint64_t delay_ms)
{
    uv_timer_start(&s->health_timer, health_timer_cb, delay_ms, 0);
}

/* Starts release (commit, workdir) in slot s; ready_cb runs when it is healthy or has failed. */
static int slot_start(struct slot *s, int64_t release_id, const char *commit, const char *workdir,
                      slot_ready_cb ready_cb, struct asr_err *err)
{
    struct asr_service *svc = s->svc;
    int port = free_port();
    if (port <= 0)
        return asr_err_set(err, ASR_ENET, "%s: no free port on 127.0.0.1", svc->name);
    char **argv = expand_argv(svc->cfg->start, port);
    char **env = make_env(svc, commit, port, slot_names[s->idx]);
    struct asr_proc_opts o = {.argv = argv,
                              .env_extra = env,
                              .cwd = workdir,
                              .kill_grace_ms = stop_grace(svc),
                              .on_line = slot_line_cb,
                              .on_exit = slot_exit_cb,
                              .data = s};
    int rc = argv && env ? asr_proc_start(svc->ctx.loop, &o, &s->proc, err) : ASR_ENOMEM;
    free_strv(argv);
    free_strv(env);
    if (rc != 0)
        return rc;
    s->state = SLOT_STARTING;
    s->port = port;
    s->pid = (int)asr_proc_pid(s->proc);
    s->release_id = release_id;
    if (commit != s->commit) /* a restart passes the slot's own fields */
        snprintf(s->commit, sizeof(s->commit), "%s", commit);
    if (s->workdir != workdir) {
        free(s->workdir);
        s->workdir = strdup(workdir);
    }
    s->ready_cb = ready_cb;
    s->started_ms = now_ms();
    s->healthy_since_ms = 0;
    s->backend = asr_proxy_backend_new(svc->proxy, "127.0.0.1", port);
    event(svc, "supervisor", "slot.started", "slot=%s pid=%d port=%d commit=%.12s",
          slot_names[s->idx], s->pid, port, commit);
    slot_begin_probe(s, FAST_PROBE_MS);
    return 0;
}

static void slot_stop_now(struct slot *s)
{
    if (s->proc == NULL) {
        slot_stopped_cb cb = s->stopped_cb;
        void *data = s->stopped_data;
        s->stopped_cb = NULL;
        slot_clear(s);
        if (cb != NULL)
            cb(s, data);
        maybe_shutdown_done(s->svc);
        return;
    }
    s->state = SLOT_STOPPING;
    s->stop_requested = true;
    asr_proc_stop(s->proc, stop_grace(s->svc));
}

static void slot_drained_cb(struct asr_backend *b, void *data)
{
    struct slot *s = data;
    if (s->state != SLOT_DRAINING || s->draining != b)
        return;
    s->draining = NULL;
    uv_timer_stop(&s->stop_timer);
    slot_stop_now(s);
}

static void drain_timeout_cb(uv_timer_t *t)
{
    struct slot *s = t->data;
    if (s->state != SLOT_DRAINING)
        return;
    asr_warn("%s: slot %s still has requests in flight after %d ms; stopping it", s->svc->name,
             slot_names[s->idx], s->svc->cfg->deploy.drain_timeout_ms);
    slot_stop_now(s);
}

/* Drains and stops a slot: no new requests, in-flight ones finish, then SIGTERM/SIGKILL. */
static void slot_stop(struct slot *s, slot_stopped_cb cb, void *data)
{
    struct asr_service *svc = s->svc;
    s->stopped_cb = cb;
    s->stopped_data = data;
    s->ready_cb = NULL;
    uv_timer_stop(&s->health_timer);
    if (s->probe != NULL) {
        asr_probe_cancel(s->probe);
        s->probe = NULL;
    }
    if (svc->active == s->idx)
        svc->active = -1;
    if (s->backend == NULL || svc->proxy == NULL) {
        slot_stop_now(s);
        return;
    }
    s->state = SLOT_DRAINING;
    struct asr_backend *b = s->backend;
    s->backend = NULL;
    s->draining = b;
    uv_timer_start(&s->stop_timer, drain_timeout_cb, (uint64_t)svc->cfg->deploy.drain_timeout_ms,
                   0);
    asr_proxy_backend_release(svc->proxy, b, slot_drained_cb, s);
}

/* ---- crash restarts -------------------------------------------------------------------------- */

static void restart_ready_cb(struct slot *s, int rc, const char *why);

static void restart_deadline_cb(uv_timer_t *t)
{
    struct slot *s = t->data;
    if (s->state != SLOT_STARTING || s->ready_cb != restart_ready_cb)
        return;
    char why[128];
    snprintf(why, sizeof(why), "restarted slot not healthy within %d ms",
             s->svc->cfg->deploy.healthy_timeout_ms);
    s->ready_cb = NULL;
    restart_ready_cb(s, ASR_ETIMEOUT, why);
}

static void restart_timer_cb(uv_timer_t *t)
{
    struct asr_service *svc = t->data;
    if (svc->shutting_down)
        return;
    struct slot *s = &svc->slots[svc->restart_slot];
    if (s->state != SLOT_EMPTY) {
        /* The previous attempt is still being killed; try again shortly. */
        uv_timer_start(&svc->restart_timer, restart_timer_cb, SLOT_WAIT_POLL_MS, 0);
        return;
    }
    svc->restart_pending = false;
    struct asr_err err = {0};
    svc->restarts_total++;
    /* Whatever happens to this attempt, it has not been healthy yet: a failure to even spawn
     * must count as part of a crash loop, not as a one-off crash. */
    s->healthy_since_ms = 0;
    if (svc->restart_log_n < RESTART_LOG)
        svc->restart_log[svc->restart_log_n++] = now_ms();
    int rc = slot_start(s, s->release_id, s->commit, s->workdir, restart_ready_cb, &err);
    if (rc != 0) {
        handle_crash(svc, s, err.msg);
        return;
    }
    /* The stop timer is idle while a slot starts: it bounds the restart attempt. */
    uv_timer_start(&s->stop_timer, restart_deadline_cb,
                   (uint64_t)svc->cfg->deploy.healthy_timeout_ms, 0);
}

static void restart_ready_cb(struct slot *s, int rc, const char *why)
{
    struct asr_service *svc = s->svc;
    uv_timer_stop(&s->stop_timer);
    if (rc != 0) {
        handle_crash(svc, s, why);
        return;
    }
    svc->last_recovered_ms = now_ms();
    asr_proxy_set_active(svc->proxy, s->backend);
    event(svc, "supervisor", "slot.recovered",
          "slot=%s pid=%d port=%d serving again %llu ms after the crash", slot_names[s->idx],
          s->pid, s->port, (unsigned long long)(svc->last_recovered_ms - svc->last_crash_ms));
}

static int restarts_in_window(struct asr_service *svc)
{
    uint64_t now = now_ms();
    uint64_t window = (uint64_t)svc->cfg->restart.window_ms;
    size_t k = 0;
    for (size_t i = 0; i < svc->restart_log_n; i++)
        if (now - svc->restart_log[i] <= window)
            svc->restart_log[k++] = svc->restart_log[i];
    svc->restart_log_n = k;
    return (int)k;
}

/*
 * The serving slot died (or never came back). A crash after the slot had been healthy for
 * stable_ms is a one-off: restart at once. Otherwise it is a crash loop: wait
 * backoff_initial_ms doubling to backoff_max_ms, with +-20% jitter so that many services do
 * not restart in lockstep. Past `budget` restarts within `window_ms` the service is failed.
 */
static void handle_crash(struct asr_service *svc, struct slot *s, const char *why)
{
    const struct asr_restart_cfg *r = &svc->cfg->restart;
    uint64_t now = now_ms();
    if (svc->shutting_down)
        return;
    if (s->state != SLOT_EMPTY) {
        /* Failed during a restart attempt that is still running (unhealthy at start). */
        s->stop_requested = true;
        s->ready_cb = NULL;
        asr_proc_signal(s->proc, SIGKILL);
    }
    svc->last_crash_ms = svc->last_recovered_ms >= svc->last_crash_ms ? now : svc->last_crash_ms;
    bool stable = s->healthy_since_ms != 0 && now - s->healthy_since_ms >= (uint64_t)r->stable_ms;
    svc->crash_streak = stable ? 0 : svc->crash_streak + 1;
    int budget = r->budget < RESTART_LOG ? r->budget : RESTART_LOG;
    if (restarts_in_window(svc) >= budget) {
        svc->failed = true;
        snprintf(svc->failed_reason, sizeof(svc->failed_reason),
                 "%d restarts within %d ms; last: %s", budget, r->window_ms, why);
        event(svc, "supervisor", "service.failed", "%s", svc->failed_reason);
        asr_proxy_set_unavailable(svc->proxy);
        return;
    }
    uint64_t delay = 0;
    if (svc->crash_streak > 0) {
        delay = (uint64_t)r->backoff_initial_ms;
        for (int i = 1; i < svc->crash_streak && delay < (uint64_t)r->backoff_max_ms; i++)
            delay *= 2;
        if (delay > (uint64_t)r->backoff_max_ms)
            delay = (uint64_t)r->backoff_max_ms;
        uint64_t jitter = delay / 5;
        if (jitter > 0)
            delay = delay - jitter + (uint64_t)(random() % (long)(2 * jitter + 1));
    }
    event(svc, "supervisor", "slot.restart_scheduled", "slot=%s in %llu ms (streak %d): %s",
          slot_names[s->idx], (unsigned long long)delay, svc->crash_streak, why);
    svc->restart_pending = true;
    svc->restart_slot = s->idx;
    uv_timer_start(&svc->restart_timer, restart_timer_cb, delay, 0);
}

/* ---- deployments ----------------------------------------------------------------------------- */

static void deploy_free(struct deploy *d)
{
    free(d->export_dir);
    free(d->final_dir);
    free(d);
}

static void deploy_timer_closed_cb(uv_handle_t *h)
{
    deploy_free(h->data);
}

static void deploy_finish(struct deploy *d, int rc, const char *msg, json_t *result)
{
    struct asr_service *svc = d->svc;
    d->phase = D_DONE;
    if (svc->deploy == d)
        svc->deploy = NULL;
    if (d->done != NULL)
        d->done(rc, msg, result, d->data);
    json_decref(result);
    uv_close((uv_handle_t *)&d->timer, deploy_timer_closed_cb);
    maybe_shutdown_done(svc);
}

static void deploy_fail(struct deploy *d, int rc, const char *outcome, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct asr_service *svc = d->svc;
    struct asr_err err = {0};
    if (d->deployment_id > 0)
        asr_store_deployment_end(svc->ctx.store, d->deployment_id, outcome, msg, &err);
    event(svc, "deployer", "deploy.failed", "deployment=%lld outcome=%s: %s",
          (long long)d->deployment_id, outcome, msg);
    json_t *res =
        json_pack("{s:s, s:s, s:I, s:s, s:s}", "service", svc->name, "commit", d->sha, "deployment",
                  (json_int_t)d->deployment_id, "outcome", outcome, "reason", msg);
    deploy_finish(d, rc, msg, res);
}

static void target_stopped_cb(struct slot *s, void *data)
{
    (void)s;
    (void)data;
}

static void deploy_switch(struct deploy *d)
{
    struct asr_service *svc = d->svc;
    struct slot *s = d->target;
    int old = svc->active;
    svc->active = s->idx;
    asr_proxy_set_active(svc->proxy, s->backend);
    /* A restart that was pending for the slot being replaced is moot now. */
    uv_timer_stop(&svc->restart_timer);
    svc->restart_pending = false;
    svc->failed = false;
    svc->crash_streak = 0;
    /* A new release gets a fresh restart budget. The same release again (asr's blue/green
     * restart, a redeploy) does not: the window goes on, so a remediation cannot hand a crash
     * storm a second budget (docs/execution.md, "Storms and the circuit"). */
    if (d->release_id != d->from_release)
        svc->restart_log_n = 0;
    if (old >= 0 && old != s->idx)
        slot_stop(&svc->slots[old], NULL, NULL);
    struct asr_err err = {0};
    asr_store_release_set_state(svc->ctx.store, d->release_id, ASR_RELEASE_GOOD, NULL, &err);
    asr_store_deployment_end(svc->ctx.store, d->deployment_id, ASR_DEPLOY_SUCCEEDED, NULL, &err);
    uint64_t total = now_ms() - d->t0;
    event(svc, "deployer", "deploy.switched",
          "deployment=%lld kind=%s commit=%.12s slot=%s port=%d in %llu ms",
          (long long)d->deployment_id, d->kind, d->sha, slot_names[s->idx], s->port,
          (unsigned long long)total);
    json_t *res = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:i, s:i, s:b, s:I, s:I, s:I}",
                            "service", svc->name, "kind", d->kind, "commit", d->sha, "release",
                            (json_int_t)d->release_id, "deployment", (json_int_t)d->deployment_id,
                            "slot", slot_names[s->idx], "port", s->port, "pid", s->pid, "built",
                            d->need_build, "build_ms", (json_int_t)d->build_ms, "test_ms",
                            (json_int_t)d->test_ms, "total_ms", (json_int_t)total);
    json_object_set_new(res, "outcome", json_string(ASR_DEPLOY_SUCCEEDED));
    char msg[256];
    snprintf(msg, sizeof(msg), "%s: %.12s serving from slot %s", svc->name, d->sha,
             slot_names[s->idx]);
    deploy_finish(d, 0, msg, res);
}

static void deploy_slot_ready_cb(struct slot *s, int rc, const char *why)
{
    struct asr_service *svc = s->svc;
    struct deploy *d = svc->deploy;
    if (d == NULL || d->target != s)
        return;
    uv_timer_stop(&d->timer);
    if (rc == 0) {
        progress(d, "slot %s healthy after %llu ms", slot_names[s->idx],
                 (unsigned long long)(now_ms() - d->phase_t0));
        deploy_switch(d);
        return;
    }
    struct asr_err err = {0};
    char reason[512];
    snprintf(reason, sizeof(reason), "new slot %s did not become healthy: %s", slot_names[s->idx],
             why);
    asr_store_release_set_state(svc->ctx.store, d->release_id, ASR_RELEASE_BAD, reason, &err);
    if (s->state != SLOT_EMPTY)
        slot_stop(s, target_stopped_cb, NULL);
    deploy_fail(d, ASR_EUNHEALTHY, svc->active >= 0 ? ASR_DEPLOY_ROLLED_BACK : ASR_DEPLOY_FAILED,
                "%s", reason);
}

static void start_deadline_cb(uv_timer_t *t)
{
    struct deploy *d = t->data;
    struct slot *s = d->target;
    char why[128];
    snprintf(why, sizeof(why), "not healthy within %d ms (%llu probes failed)",
             d->svc->cfg->deploy.healthy_timeout_ms, (unsigned long long)s->probes_failed);
    s->ready_cb = NULL;
    deploy_slot_ready_cb(s, ASR_ETIMEOUT, why);
}

static void deploy_start_slot(struct deploy *d)
{
    struct asr_service *svc = d->svc;
    struct slot *s = d->target;
    d->phase = D_START;
    d->phase_t0 = now_ms();
    char *workdir = asr_path_join(d->final_dir, svc->repo_prefix);
    struct asr_err err = {0};
    s->probes_failed = s->probes_ok = 0;
    int rc = workdir ? slot_start(s, d->release_id, d->sha, workdir, deploy_slot_ready_cb, &err)
                     : ASR_ENOMEM;
    free(workdir);
    if (rc != 0) {
        asr_store_release_set_state(svc->ctx.store, d->release_id, ASR_RELEASE_BAD, err.msg, &err);
        deploy_fail(d, rc, svc->active >= 0 ? ASR_DEPLOY_ROLLED_BACK : ASR_DEPLOY_FAILED,
                    "cannot start slot %s: %s", slot_names[s->idx], err.msg);
        return;
    }
    progress(d, "started %.12s in slot %s (pid %d, port %d); waiting for health", d->sha,
             slot_names[s->idx], s->pid, s->port);
    uv_timer_start(&d->timer, start_deadline_cb, (uint64_t)svc->cfg->deploy.healthy_timeout_ms, 0);
}

static void wait_slot_cb(uv_timer_t *t)
{
    struct deploy *d = t->data;
    struct asr_service *svc = d->svc;
    int idx = svc->active < 0 ? 0 : 1 - svc->active;
    struct slot *s = &svc->slots[idx];
    if (s->state == SLOT_EMPTY && !(svc->restart_pending && svc->restart_slot == idx)) {
        uv_timer_stop(&d->timer);
        d->target = s;
        deploy_start_slot(d);
        return;
    }
    if (now_ms() > d->wait_deadline) {
        uv_timer_stop(&d->timer);
        deploy_fail(d, ASR_EBUSY, ASR_DEPLOY_FAILED, "slot %s is still %s", slot_names[idx],
                    slot_state_names[s->state]);
    }
}

static void deploy_acquire_slot(struct deploy *d)
{
    struct asr_service *svc = d->svc;
    d->phase = D_WAIT_SLOT;
    d->wait_deadline = now_ms() + (uint64_t)svc->cfg->deploy.drain_timeout_ms +
                       (uint64_t)svc->cfg->deploy.stop_grace_ms + 1000;
    uv_timer_start(&d->timer, wait_slot_cb, 0, SLOT_WAIT_POLL_MS);
}

static void run_step(struct deploy *d, const char *what, asr_argv argv, int timeout_ms);

/* Built and tested: the release directory takes its final name, then a slot is acquired. */
static void publish_release(struct deploy *d)
{
    struct asr_service *svc = d->svc;
    struct asr_err err = {0};
    asr_rmtree(d->final_dir);
    if (rename(d->export_dir, d->final_dir) != 0) {
        deploy_fail(d, ASR_EIO, ASR_DEPLOY_FAILED, "cannot rename %s to %s: %s", d->export_dir,
                    d->final_dir, strerror(errno));
        return;
    }
    asr_store_release_set_state(svc->ctx.store, d->release_id, ASR_RELEASE_BUILT, NULL, &err);
    deploy_acquire_slot(d);
}

static void step_exit_cb(struct asr_proc *p, int status, int sig, bool timed_out, void *data)
{
    (void)sig;
    struct deploy *d = data;
    struct asr_service *svc = d->svc;
    d->proc = NULL;
    int64_t ms = (int64_t)(now_ms() - d->phase_t0);
    const char *out = asr_buf_cstr(asr_proc_output(p));
    bool truncated = asr_proc_output(p)->truncated;
    struct asr_err err = {0};
    struct asr_buf stored;
    asr_buf_init(&stored, OUTPUT_CAP + 64);
    asr_buf_puts(&stored, out);
    if (truncated)
        asr_buf_puts(&stored, "\n[asr: output cut at 256 KiB]\n");
    bool is_build = d->phase == D_BUILD;
    if (is_build) {
        d->build_ms = ms;
        asr_store_release_set_build(svc->ctx.store, d->release_id, status, ms,
                                    asr_buf_cstr(&stored), &err);
    } else {
        d->test_ms = ms;
        asr_store_release_set_test(svc->ctx.store, d->release_id, status, ms, asr_buf_cstr(&stored),
                                   &err);
    }
    asr_buf_free(&stored);
    asr_proc_free(p);
    if (d->cancelled) {
        deploy_fail(d, ASR_ECANCELED, ASR_DEPLOY_FAILED, "cancelled: asr is stopping");
        return;
    }
    if (status != 0 || timed_out) {
        char reason[256];
        snprintf(reason, sizeof(reason), "%s %s after %lld ms", is_build ? "build" : "test",
                 timed_out ? "timed out" : "failed", (long long)ms);
        if (!timed_out)
            snprintf(reason + strlen(reason), sizeof(reason) - strlen(reason), " (exit status %d)",
                     status);
        asr_store_release_set_state(svc->ctx.store, d->release_id, ASR_RELEASE_BAD, reason, &err);
        asr_rmtree(d->export_dir);
        deploy_fail(d, is_build ? ASR_EBUILD : ASR_ETEST, ASR_DEPLOY_FAILED, "%s", reason);
        return;
    }
    progress(d, "%s passed in %lld ms", is_build ? "build" : "test", (long long)ms);
    /* The end of each step is an event of its own: the stage timeline (asr demo, incident show)
     * reads when it ended, which releases.updated_at cannot keep. */
    event(svc, "deployer", is_build ? "build.passed" : "test.passed",
          "deployment=%lld commit=%.12s in %lld ms", (long long)d->deployment_id, d->sha,
          (long long)ms);
    if (is_build && svc->cfg->test != NULL) {
        d->phase = D_TEST;
        run_step(d, "test", svc->cfg->test, svc->cfg->deploy.test_timeout_ms);
        return;
    }
    publish_release(d);
}

/*
 * A build or test that may not run: deploy.sandbox is bwrap and bubblewrap is missing or cannot
 * create its namespaces here. Recorded as the step's failure (status 126, "cannot execute"),
 * with the fix, and the release is bad until a config or host that allows it builds it again.
 */
static void refuse_step(struct deploy *d, const char *what, const char *why)
{
    struct asr_service *svc = d->svc;
    const struct asr_deploy_cfg *dc = &svc->cfg->deploy;
    bool is_build = d->phase == D_BUILD;
    char reason[1024];
    snprintf(reason, sizeof(reason), "%s refused: %s, or set deploy.sandbox: none in %s", what, why,
             dc->config_path != NULL ? dc->config_path : "the config");
    struct asr_err err = {0};
    if (is_build)
        asr_store_release_set_build(svc->ctx.store, d->release_id, 126, 0, reason, &err);
    else
        asr_store_release_set_test(svc->ctx.store, d->release_id, 126, 0, reason, &err);
    asr_store_release_set_state(svc->ctx.store, d->release_id, ASR_RELEASE_BAD, reason, &err);
    asr_rmtree(d->export_dir);
    deploy_fail(d, is_build ? ASR_EBUILD : ASR_ETEST, ASR_DEPLOY_FAILED, "%s", reason);
}

/* Runs the build or test command of the release being deployed, in the sandbox that
 * deploy.sandbox names (recover/sandbox.h), with the step's timeout on the whole group. */
static void run_step(struct deploy *d, const char *what, asr_argv argv, int timeout_ms)
{
    struct asr_service *svc = d->svc;
    const struct asr_deploy_cfg *dc = &svc->cfg->deploy;
    bool boxed = dc->sandbox == ASR_SANDBOX_BWRAP;
    d->phase_t0 = now_ms();
    struct asr_err err = {0};
    if (boxed && asr_sandbox_probe(&err) != 0) {
        refuse_step(d, what, err.msg);
        return;
    }
    char *cwd = asr_path_join(d->export_dir, svc->repo_prefix);
    char **env = make_env(svc, d->sha, 0, NULL);
    char **sandboxed = NULL;
    int rc = cwd && env ? 0 : ASR_ENOMEM;
    if (rc == 0 && boxed)
        rc = asr_sandbox_argv(dc, asr_spawn_shim(), d->export_dir, cwd, argv, &sandboxed, &err);
    struct asr_proc_opts o = {.argv = sandboxed != NULL ? sandboxed : argv,
                              .env_extra = env,
                              .cwd = cwd,
                              .timeout_ms = timeout_ms,
                              .kill_grace_ms = 2000,
                              .capture_cap = OUTPUT_CAP,
                              .on_exit = step_exit_cb,
                              .data = d};
    if (rc == 0)
        rc = asr_proc_start(svc->ctx.loop, &o, &d->proc, &err);
    free(cwd);
    free_strv(env);
    asr_sandbox_argv_free(sandboxed);
    if (rc != 0) {
        struct asr_err e2 = {0};
        asr_store_release_set_state(svc->ctx.store, d->release_id, ASR_RELEASE_BAD, err.msg, &e2);
        deploy_fail(d, rc, ASR_DEPLOY_FAILED, "%s: %s", what, err.msg);
        return;
    }
    /* Every step says where it ran: in the log, in the events, and to the operator. */
    char where[192];
    asr_sandbox_describe(dc, where, sizeof(where));
    event(svc, "deployer", d->phase == D_BUILD ? "build.started" : "test.started",
          "commit=%.12s sandbox=%s", d->sha, where);
    if (!boxed)
        asr_warn("%s: unsandboxed %s of %s (deploy.sandbox: none)", svc->name, what, svc->name);
    progress(d, "running %s %s: %s ...", what, boxed ? "in the bwrap sandbox" : "unsandboxed",
             argv[0]);
}

/* Runs `asr-git ...` (see cli/asr_git.c) as a child with its output captured. */
static int run_git_helper(struct deploy *d, char *const *args, int timeout_ms,
                          asr_proc_exit_cb on_exit, struct asr_err *err)
{
    struct asr_service *svc = d->svc;
    char *argv[8] = {(char *)svc->ctx.git_exe};
    int n = 1;
    for (int i = 0; args[i] != NULL && n < 7; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    struct asr_proc_opts o = {.argv = argv,
                              .timeout_ms = timeout_ms,
                              .kill_grace_ms = 1000,
                              .capture_cap = 8192,
                              .on_exit = on_exit,
                              .data = d};
    d->phase_t0 = now_ms();
    return asr_proc_start(svc->ctx.loop, &o, &d->proc, err);
}

/*
 * A git helper exited: copies its output (without the trailing newline) into buf and frees it.
 * Returns false when the deployment was cancelled meanwhile (it has then been failed).
 */
static bool helper_done(struct deploy *d, struct asr_proc *p, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", asr_buf_cstr(asr_proc_output(p)));
    size_t l = strlen(buf);
    while (l > 0 && (buf[l - 1] == '\n' || buf[l - 1] == '\r'))
        buf[--l] = '\0';
    if (l == 0)
        snprintf(buf, cap, "git helper failed without a message");
    asr_proc_free(p);
    d->proc = NULL;
    if (d->cancelled) {
        deploy_fail(d, ASR_ECANCELED, ASR_DEPLOY_FAILED, "cancelled: asr is stopping");
        return false;
    }
    return true;
}

static void export_exit_cb(struct asr_proc *p, int status, int sig, bool timed_out, void *data)
{
    (void)sig;
    struct deploy *d = data;
    struct asr_service *svc = d->svc;
    char msg[1024];
    if (!helper_done(d, p, msg, sizeof(msg)))
        return;
    if (status != 0 || timed_out) {
        struct asr_err err = {0};
        if (timed_out)
            snprintf(msg, sizeof(msg), "export of %.12s timed out", d->sha);
        asr_store_release_set_state(svc->ctx.store, d->release_id, ASR_RELEASE_BAD, msg, &err);
        deploy_fail(d, ASR_EGIT, ASR_DEPLOY_FAILED, "%s", msg);
        return;
    }
    progress(d, "exported %.12s in %llu ms", d->sha, (unsigned long long)(now_ms() - d->phase_t0));
    if (svc->cfg->build != NULL) {
        d->phase = D_BUILD;
        run_step(d, "build", svc->cfg->build, svc->cfg->deploy.build_timeout_ms);
    } else if (svc->cfg->test != NULL) {
        d->phase = D_TEST;
        run_step(d, "test", svc->cfg->test, svc->cfg->deploy.test_timeout_ms);
    } else {
        /* Nothing to build or test: publish as is. */
        publish_release(d);
    }
}

/* The commit is known: record the release and the deployment, then build or start. */
static void deploy_resolved(struct deploy *d)
{
    struct asr_service *svc = d->svc;
    struct asr_err err = {0};
    char rel[512];
    snprintf(rel, sizeof(rel), "%s/releases/%s/%s", svc->ctx.state_dir, svc->name, d->sha);
    d->final_dir = strdup(rel);
    snprintf(rel, sizeof(rel), "%s/releases/%s/%s.partial", svc->ctx.state_dir, svc->name, d->sha);
    d->export_dir = strdup(rel);

    struct asr_release r = {0};
    int rc =
        asr_store_release_get_or_create(svc->ctx.store, svc->name, d->sha, d->final_dir, &r, &err);
    if (rc != 0) {
        deploy_fail(d, rc, ASR_DEPLOY_FAILED, "%s", err.msg);
        return;
    }
    d->release_id = r.id;
    /* A service without a build (or test) command has nothing to wait for there: its release is
     * built once exported. Without this, every deploy of it re-exported the release over the
     * directory its running slot serves from. */
    bool built_ok = (svc->cfg->build == NULL || r.build_status == 0) &&
                    (svc->cfg->test == NULL || r.test_status == 0);
    bool usable = strcmp(r.state, ASR_RELEASE_BUILDING) != 0 &&
                  (strcmp(r.state, ASR_RELEASE_BAD) != 0 || built_ok);
    d->need_build = !(usable && built_ok && asr_is_dir(d->final_dir));
    asr_release_free(&r);
    d->from_release = svc->active >= 0 ? svc->slots[svc->active].release_id : 0;
    rc = asr_store_deployment_begin(svc->ctx.store, svc->name, d->kind, d->from_release,
                                    d->release_id, &d->deployment_id, &err);
    if (rc != 0) {
        deploy_fail(d, rc, ASR_DEPLOY_FAILED, "%s", err.msg);
        return;
    }
    event(svc, "deployer", "deploy.started", "deployment=%lld kind=%s ref=%s commit=%.12s%s",
          (long long)d->deployment_id, d->kind, d->ref, d->sha,
          d->need_build ? "" : " (already built)");
    if (!d->need_build) {
        progress(d, "release %.12s is already built; skipping build and test", d->sha);
        deploy_acquire_slot(d);
        return;
    }
    snprintf(rel, sizeof(rel), "%s/releases/%s", svc->ctx.state_dir, svc->name);
    asr_mkdirs(rel, 0700);
    d->phase = D_EXPORT;
    progress(d, "exporting %.12s", d->sha);
    char *args[] = {"export", d->repo, d->sha, d->export_dir, NULL};
    rc = run_git_helper(d, args, svc->cfg->deploy.build_timeout_ms, export_exit_cb, &err);
    if (rc != 0)
        deploy_fail(d, rc, ASR_DEPLOY_FAILED, "%s", err.msg);
}

static void resolve_exit_cb(struct asr_proc *p, int status, int sig, bool timed_out, void *data)
{
    (void)sig;
    struct deploy *d = data;
    struct asr_service *svc = d->svc;
    char out[1024];
    if (!helper_done(d, p, out, sizeof(out)))
        return;
    char *tab = strchr(out, '\t');
    if (status != 0 || timed_out || tab == NULL || tab - out != 40) {
        deploy_fail(d, ASR_EGIT, ASR_DEPLOY_FAILED, "%s",
                    timed_out ? "resolving the ref timed out" : out);
        return;
    }
    *tab = '\0';
    memcpy(d->sha, out, 41);
    char *prefix = strdup(tab + 1);
    if (prefix == NULL) {
        deploy_fail(d, ASR_ENOMEM, ASR_DEPLOY_FAILED, "out of memory");
        return;
    }
    free(svc->repo_prefix);
    svc->repo_prefix = prefix;
    svc->repo_prefix_known = true;
    deploy_resolved(d);
}

static bool is_full_sha(const char *ref)
{
    size_t n = strspn(ref, "0123456789abcdef");
    return n == 40 && ref[40] == '\0';
}

static void resolved_soon_cb(uv_timer_t *t)
{
    deploy_resolved(t->data);
}

int asr_service_deploy(struct asr_service *svc, const char *ref, const char *kind,
                       asr_op_progress_cb progress_cb, asr_op_done_cb done, void *data,
                       struct asr_err *err)
{
    if (svc->shutting_down)
        return asr_err_set(err, ASR_ESTATE, "%s: asr is stopping", svc->name);
    if (svc->deploy != NULL)
        return asr_err_set(err, ASR_EBUSY, "%s: a deployment is already in progress (%s of %s)",
                           svc->name, svc->deploy->kind, svc->deploy->ref);
    struct deploy *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    d->svc = svc;
    snprintf(d->kind, sizeof(d->kind), "%s", kind);
    snprintf(d->ref, sizeof(d->ref), "%s", ref ? ref : "HEAD");
    snprintf(d->repo, sizeof(d->repo), "%s", svc->cfg->repo);
    d->progress = progress_cb;
    d->done = done;
    d->data = data;
    d->t0 = now_ms();
    d->phase = D_RESOLVE;
    uv_timer_init(svc->ctx.loop, &d->timer);
    d->timer.data = d;
    if (svc->repo_prefix_known && is_full_sha(d->ref)) {
        /* A full sha in a repository resolved before (a restart of the active release, a patch
         * asr-git just committed): nothing to resolve, and an asr-git run is 10-50 ms of a
         * crash's recovery. A sha that is not in the repository fails at the export. */
        memcpy(d->sha, d->ref, 41);
        svc->deploy = d;
        uv_timer_start(&d->timer, resolved_soon_cb, 0, 0);
        return 0;
    }
    char *args[] = {"resolve", d->repo, d->ref, NULL};
    int rc = run_git_helper(d, args, 30000, resolve_exit_cb, err);
    if (rc != 0) {
        uv_close((uv_handle_t *)&d->timer, deploy_timer_closed_cb);
        return rc;
    }
    svc->deploy = d;
    return 0;
}

int asr_service_rollback(struct asr_service *svc, asr_op_progress_cb progress_cb,
                         asr_op_done_cb done, void *data, struct asr_err *err)
{
    int64_t current = svc->active >= 0 ? svc->slots[svc->active].release_id : 0;
    struct asr_release r = {0};
    int rc = asr_store_release_last_good(svc->ctx.store, svc->name, current, &r, err);
    if (rc == ASR_ENOENT)
        return asr_err_set(err, ASR_ENOENT, "%s: no earlier good release to roll back to",
                           svc->name);
    if (rc != 0)
        return rc;
    char sha[41];
    snprintf(sha, sizeof(sha), "%s", r.commit);
    asr_release_free(&r);
    return asr_service_deploy(svc, sha, "rollback", progress_cb, done, data, err);
}

int asr_service_start(struct asr_service *svc, asr_op_done_cb done, void *data)
{
    /* Resume the newest release that served and is neither bad (a patch that did not remove its
     * fault is marked bad before it is rolled back) nor gone from disk; else deploy HEAD. */
    struct asr_deployment *list = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    char sha[41] = "";
    if (asr_store_deployment_list(svc->ctx.store, svc->name, 50, &list, &n, &err) == 0) {
        for (size_t i = 0; i < n && sha[0] == '\0'; i++) {
            if (strcmp(list[i].outcome, ASR_DEPLOY_SUCCEEDED) != 0)
                continue;
            struct asr_release r = {0};
            if (asr_store_release_get(svc->ctx.store, list[i].to_release, &r, &err) == 0) {
                if (r.dir != NULL && asr_is_dir(r.dir) && strcmp(r.state, ASR_RELEASE_BAD) != 0)
                    snprintf(sha, sizeof(sha), "%s", r.commit);
                asr_release_free(&r);
            }
        }
        asr_deployments_free(list, n);
    }
    int rc = asr_service_deploy(svc, sha[0] ? sha : NULL, "start", NULL, done, data, &err);
    if (rc != 0) {
        asr_error("%s: cannot start: %s", svc->name, err.msg);
        event(svc, "daemon", "service.start_failed", "%s", err.msg);
    }
    return rc;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int asr_service_create(const struct asr_runtime_ctx *ctx, const struct asr_service_cfg *cfg,
                       struct asr_service **out, struct asr_err *err)
{
    *out = NULL;
    struct asr_service *svc = calloc(1, sizeof(*svc));
    if (svc == NULL)
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    svc->ctx = *ctx;
    svc->cfg = cfg;
    svc->active = -1;
    snprintf(svc->name, sizeof(svc->name), "%s", cfg->name);
    svc->repo_prefix = strdup("");
    struct asr_proxy_opts po = {.host = cfg->listen_host,
                                .port = cfg->listen_port,
                                .name = svc->name,
                                .max_connections = ctx->max_connections};
    int rc = asr_proxy_create(ctx->loop, &po, &svc->proxy, err);
    if (rc != 0) {
        free(svc->repo_prefix);
        free(svc);
        return rc;
    }
    for (int i = 0; i < 2; i++) {
        struct slot *s = &svc->slots[i];
        s->svc = svc;
        s->idx = i;
        uv_timer_init(ctx->loop, &s->health_timer);
        uv_timer_init(ctx->loop, &s->stop_timer);
        s->health_timer.data = s;
        s->stop_timer.data = s;
    }
    uv_timer_init(ctx->loop, &svc->restart_timer);
    svc->restart_timer.data = svc;
    asr_store_service_upsert(ctx->store, svc->name, err);
    /* The daemon creates its services at start: bubblewrap is probed then, once, and a missing
     * one is in the log before any build is refused for it. */
    if (cfg->deploy.sandbox == ASR_SANDBOX_BWRAP)
        asr_sandbox_probe(NULL);
    *out = svc;
    return 0;
}

const char *asr_service_name(const struct asr_service *svc)
{
    return svc->name;
}

void asr_service_update_config(struct asr_service *svc, const struct asr_service_cfg *cfg)
{
    svc->cfg = cfg;
    svc->repo_prefix_known = false; /* the repo may have moved: resolve again */
    if (cfg->deploy.sandbox == ASR_SANDBOX_BWRAP)
        asr_sandbox_probe(NULL); /* a no-op once probed */
}

json_t *asr_service_status(const struct asr_service *svc)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(svc->name));
    char listen[128];
    snprintf(listen, sizeof(listen), "%s:%d", svc->cfg->listen_host, svc->cfg->listen_port);
    json_object_set_new(o, "listen", json_string(listen));
    const struct slot *a = svc->active >= 0 ? &svc->slots[svc->active] : NULL;
    const char *health = svc->proxy == NULL                     ? "stopped"
                         : svc->failed                          ? "failed"
                         : a == NULL                            ? "down"
                         : a->state == SLOT_READY && a->healthy ? "healthy"
                         : a->state == SLOT_STARTING            ? "starting"
                                                                : "unhealthy";
    json_object_set_new(o, "health", json_string(health));
    if (svc->failed)
        json_object_set_new(o, "failed_reason", json_string(svc->failed_reason));
    json_object_set_new(o, "active_slot", a ? json_string(slot_names[a->idx]) : json_null());
    json_object_set_new(o, "commit", a ? json_string(a->commit) : json_null());
    json_object_set_new(o, "release", a ? json_integer(a->release_id) : json_null());
    json_object_set_new(o, "pid", a && a->pid ? json_integer(a->pid) : json_null());
    json_object_set_new(o, "port", a && a->port ? json_integer(a->port) : json_null());
    json_object_set_new(o, "restarts", json_integer(svc->restarts_total));
    json_object_set_new(o, "crash_streak", json_integer(svc->crash_streak));
    json_t *slots = json_array();
    for (int i = 0; i < 2; i++) {
        const struct slot *s = &svc->slots[i];
        json_t *so = json_pack("{s:s, s:s, s:b, s:b}", "name", slot_names[i], "state",
                               slot_state_names[s->state], "healthy", s->healthy, "active",
                               svc->active == i);
        if (s->state != SLOT_EMPTY) {
            json_object_set_new(so, "pid", json_integer(s->pid));
            json_object_set_new(so, "port", json_integer(s->port));
            json_object_set_new(so, "commit", json_string(s->commit));
            json_object_set_new(so, "inflight",
                                json_integer(s->backend ? asr_backend_inflight(s->backend) : 0));
        }
        json_array_append_new(slots, so);
    }
    json_object_set_new(o, "slots", slots);
    if (svc->deploy != NULL)
        json_object_set_new(
            o, "deploying",
            json_pack("{s:s, s:s}", "kind", svc->deploy->kind, "commit", svc->deploy->sha));
    struct asr_proxy_stats ps = {0};
    if (svc->proxy != NULL) /* NULL once the service has stopped */
        asr_proxy_get_stats(svc->proxy, &ps);
    json_object_set_new(
        o, "proxy",
        json_pack("{s:I, s:I, s:I, s:I, s:I}", "connections_open", (json_int_t)ps.connections_open,
                  "connections_total", (json_int_t)ps.connections_total, "requests_total",
                  (json_int_t)ps.requests_total, "proxy_5xx", (json_int_t)ps.responses_proxy_5xx,
                  "retries", (json_int_t)ps.retries));
    return o;
}

static void maybe_shutdown_done(struct asr_service *svc)
{
    if (!svc->shutting_down || svc->shutdown_cb == NULL || svc->deploy != NULL)
        return;
    for (int i = 0; i < 2; i++)
        if (svc->slots[i].state != SLOT_EMPTY)
            return;
    void (*cb)(void *) = svc->shutdown_cb;
    svc->shutdown_cb = NULL;
    asr_proxy_destroy(svc->proxy);
    svc->proxy = NULL;
    cb(svc->shutdown_data);
}

void asr_service_shutdown(struct asr_service *svc, void (*cb)(void *data), void *data)
{
    svc->shutting_down = true;
    svc->shutdown_cb = cb;
    svc->shutdown_data = data;
    /* Free the address now (a reload may give it to another service); open connections stay. */
    asr_proxy_stop_listening(svc->proxy);
    uv_timer_stop(&svc->restart_timer);
    struct deploy *d = svc->deploy;
    if (d != NULL) {
        d->cancelled = true;
        if (d->proc != NULL)
            asr_proc_stop(d->proc, 2000);
        if (d->phase == D_WAIT_SLOT || d->phase == D_START) {
            uv_timer_stop(&d->timer);
            if (d->target != NULL)
                d->target->ready_cb = NULL;
            deploy_fail(d, ASR_ECANCELED, ASR_DEPLOY_FAILED, "cancelled: asr is stopping");
        }
    }
    for (int i = 0; i < 2; i++) {
        struct slot *s = &svc->slots[i];
        if (s->state == SLOT_STARTING || s->state == SLOT_READY)
            slot_stop(s, NULL, NULL);
    }
    maybe_shutdown_done(svc);
}

static void svc_handle_closed_cb(uv_handle_t *h)
{
    struct asr_service *svc = h->data;
    if (--svc->open_timers == 0) {
        for (int i = 0; i < 2; i++)
            free(svc->slots[i].workdir);
        free(svc->repo_prefix);
        free(svc);
    }
}

void asr_service_destroy(struct asr_service *svc)
{
    if (svc == NULL)
        return;
    svc->open_timers = 5;
    for (int i = 0; i < 2; i++) {
        svc->slots[i].health_timer.data = svc;
        svc->slots[i].stop_timer.data = svc;
        uv_close((uv_handle_t *)&svc->slots[i].health_timer, svc_handle_closed_cb);
        uv_close((uv_handle_t *)&svc->slots[i].stop_timer, svc_handle_closed_cb);
    }
    uv_close((uv_handle_t *)&svc->restart_timer, svc_handle_closed_cb);
}
