/*
 * cmd_run.c - `asr run`: the daemon. One libuv loop runs every service's proxy, slots, health
 * checks, deployments and restarts, plus the control socket the other commands talk to.
 *
 * Duties of the loop, in the manner of Redis' serverCron list:
 *   - services: proxy connections, health probes, crash restarts, deployments (service.c)
 *   - detection: every slot line and every line of the services' log_files goes through the
 *     detector (detect/detector.c), which commits new incidents at once and flushes counters,
 *     context and file positions every 100 ms; unexpected exits become incidents too
 *   - control socket: status, deploy, rollback, resolve requests from the CLI (api/control.c)
 *   - signals: SIGTERM/SIGINT stop everything cleanly; SIGHUP reloads the config, keeping the
 *     running one when the new one is invalid
 * The state dir is locked (flock on asr.lock) so two daemons never share one.
 */
#include "api/api.h"
#include "api/control.h"
#include "asr/config.h"
#include "asr/fsutil.h"
#include "asr/incident.h"
#include "asr/log.h"
#include "asr/remediation.h"
#include "asr/spawn.h"
#include "asr/store.h"
#include "asr/timeutil.h"
#include "cli/cli.h"
#include "detect/detector.h"
#include "detect/tail.h"
#include "recover/service.h"
#include "execute/executor.h"
#include "execute/policy.h"
#include "strategy/kb.h"
#include "strategy/plan.h"
#include "strategy/planner.h"
#include "strategy/playbook.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_SERVICES 64
#define MAX_LOG_FILES 256

static const char RUN_USAGE[] =
    "usage: asr run -c FILE [--state-dir DIR] [--log-level debug|info|warn|error]\n"
    "Runs the asr daemon in the foreground: builds, deploys, proxies, health-checks and\n"
    "restarts the configured services. SIGTERM stops it; SIGHUP reloads the config.\n";

struct daemon;

/* One followed log file of a service. */
struct file_source {
    struct daemon *d;
    struct asr_tail *tail;
    char *service;
    char *path;
    char *source; /* "file:PATH" */
};

struct daemon {
    uv_loop_t *loop;
    struct asr_detector *det;
    struct asr_planner *planner;   /* plans every incident the detector opens */
    char llm_exe[4096 + 16];       /* the asr-llm worker the planner asks */
    struct asr_executor *executor; /* carries out the plans (policy gate, journal, steps) */
    struct file_source *files[MAX_LOG_FILES];
    int nfiles;
    struct asr_config *cfg;
    struct retired *retired; /* older configs still referenced by services being removed */
    char *state_dir;
    struct asr_store *store;
    struct asr_control *control;
    struct asr_api *api; /* the HTTP API and what the control socket's requests go through */
    struct asr_runtime_ctx ctx;
    struct asr_service *services[MAX_SERVICES];
    int nservices;
    int started; /* services whose first start has ended, well or not */
    uv_signal_t sig_term, sig_int, sig_hup;
    int stopping; /* services still shutting down */
    bool stop_requested;
    int64_t started_at;
    int lock_fd;
    bool signals_started;
    bool state_dir_from_cli;
};

static void detect_line(struct daemon *d, const struct asr_line *ln)
{
    struct asr_err err = {0};
    if (d->det != NULL && asr_detector_line(d->det, ln, &err) != 0)
        asr_error("detect: %s", err.msg);
}

static void on_slot_line(struct asr_service *svc, const char *slot, const char *commit, int stream,
                         const char *line, size_t len, void *data)
{
    struct daemon *d = data;
    int64_t us = asr_time_wall_us();
    /* Service output is attacker-influenced text: print it as data, never as a format. */
    asr_info("[%s/%s %s] %.*s", asr_service_name(svc), slot, stream == 1 ? "out" : "err",
             (int)(len > 4096 ? 4096 : len), line);
    struct asr_line ln = {.service = asr_service_name(svc),
                          .source = stream == 1 ? "stdout" : "stderr",
                          .slot = slot,
                          .release = commit,
                          .text = line,
                          .len = len,
                          .at_ms = us / 1000,
                          .received_us = us};
    detect_line(d, &ln);
}

static void on_slot_exit(struct asr_service *svc, const char *slot, const char *commit, int status,
                         int term_signal, void *data)
{
    struct daemon *d = data;
    struct asr_err err = {0};
    if (d->det != NULL && asr_detector_exit(d->det, asr_service_name(svc), slot, commit, status,
                                            term_signal, &err) != 0)
        asr_error("detect: %s", err.msg);
}

/* After each commit of a new incident: one log line, with the commit time for latency checks. */
/* ---- playbooks --------------------------------------------------------------------------------
 */

/* Indexes the config's playbooks directory (if any) into the knowledge base, as `asr kb add`
 * does. A directory with an invalid playbook indexes nothing and says which file and why: the
 * knowledge base keeps what it had. */
static void load_playbooks(struct daemon *d)
{
    if (d->cfg->playbooks == NULL)
        return;
    struct asr_err err = {0};
    struct asr_playbook_set *set = NULL;
    if (asr_playbook_load_dir(d->cfg->playbooks, &set, &err) != 0) {
        asr_error("playbooks: %s; the knowledge base keeps what it had", err.msg);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < set->n; i++) {
        if (asr_kb_put_playbook(d->store, set->items[i], &err) != 0) {
            asr_error("playbooks: %s: %s", set->items[i]->file, err.msg);
            continue;
        }
        n++;
    }
    if (n > 0 && asr_kb_optimize(d->store, &err) != 0)
        asr_warn("playbooks: %s", err.msg);
    asr_info("playbooks: %zu of %zu indexed from %s", n, set->n, d->cfg->playbooks);
    asr_playbook_set_free(set);
}

/* ---- the executor's view of the daemon ------------------------------------------------------- */

static struct asr_service *find_service(struct daemon *d, const char *name);

static struct asr_service *exec_find(void *data, const char *name)
{
    return find_service(data, name);
}

static void exec_health(void *data, size_t *services, size_t *unhealthy)
{
    struct daemon *d = data;
    *services = (size_t)d->nservices;
    *unhealthy = 0;
    for (int i = 0; i < d->nservices; i++) {
        json_t *s = asr_service_status(d->services[i]);
        const char *h = json_string_value(json_object_get(s, "health"));
        *unhealthy += h == NULL || strcmp(h, "healthy") != 0;
        json_decref(s);
    }
}

static int exec_resolve(void *data, int64_t id, const char *reason, struct asr_err *err)
{
    struct daemon *d = data;
    return asr_detector_resolve(d->det, id, reason, err);
}

static void on_plan(void *data, int64_t plan_id, int64_t incident_id)
{
    struct daemon *d = data;
    if (d->executor != NULL && !d->stop_requested)
        asr_executor_plan(d->executor, plan_id, incident_id);
}

static void on_incident(void *data, const struct asr_incident *inc, bool opened)
{
    struct daemon *d = data;
    if (!opened)
        return;
    int64_t us = asr_time_wall_us();
    asr_warn("incident %lld opened: service=%s signature=%s severity=%s fingerprint=%.200s "
             "received_us=%lld committed_us=%lld",
             (long long)inc->id, inc->service, inc->signature, inc->severity, inc->fingerprint,
             (long long)inc->received_us, (long long)us);
    if (d->planner != NULL)
        asr_planner_incident(d->planner, inc->id);
}

/* ---- log files ------------------------------------------------------------------------------- */

static void file_line_cb(void *data, const char *line, size_t len, bool cut,
                         const struct asr_tail_pos *pos)
{
    struct file_source *f = data;
    int64_t us = asr_time_wall_us();
    struct asr_log_position lp = {f->path, pos->dev, pos->ino, pos->offset};
    /* A cut line's position is where its dropped rest starts; saving it would make a restart
     * read that rest as a line. The next whole line saves a position past both. */
    struct asr_line ln = {.service = f->service,
                          .source = f->source,
                          .text = line,
                          .len = len,
                          .at_ms = us / 1000,
                          .received_us = us,
                          .pos = cut ? NULL : &lp};
    detect_line(f->d, &ln);
}

static void file_event_cb(void *data, enum asr_tail_event ev, const char *detail)
{
    struct file_source *f = data;
    /* A missing file is normal (before the service's first write, and for a moment in every
     * rename rotation): only errors are warnings. */
    if (ev == ASR_TAIL_ERROR)
        asr_warn("log file of %s: %s", f->service, detail);
    else
        asr_info("log file of %s: %s", f->service, detail);
}

static void file_source_free(struct file_source *f)
{
    if (f == NULL)
        return;
    asr_tail_stop(f->tail);
    free(f->service);
    free(f->path);
    free(f->source);
    free(f);
}

static void stop_files(struct daemon *d)
{
    for (int i = 0; i < d->nfiles; i++)
        file_source_free(d->files[i]);
    d->nfiles = 0;
}

/* Follows every log_files entry of the config, each from its saved position. */
static int start_files(struct daemon *d, struct asr_err *err)
{
    for (size_t i = 0; i < d->cfg->nservices; i++) {
        const struct asr_service_cfg *sc = &d->cfg->services[i];
        for (size_t k = 0; sc->log_files != NULL && sc->log_files[k] != NULL; k++) {
            if (d->nfiles == MAX_LOG_FILES)
                return asr_err_set(err, ASR_ECONFIG, "more than %d log files", MAX_LOG_FILES);
            struct file_source *f = calloc(1, sizeof(*f));
            size_t sl = strlen(sc->log_files[k]) + 6;
            if (f == NULL || (f->service = strdup(sc->name)) == NULL ||
                (f->path = strdup(sc->log_files[k])) == NULL || (f->source = malloc(sl)) == NULL) {
                file_source_free(f);
                return asr_err_set(err, ASR_ENOMEM, "out of memory");
            }
            snprintf(f->source, sl, "file:%s", f->path);
            f->d = d;
            struct asr_log_position saved;
            struct asr_err e2 = {0};
            struct asr_tail_opts to = {.path = f->path,
                                       .from_end = true,
                                       .on_line = file_line_cb,
                                       .on_event = file_event_cb,
                                       .data = f};
            if (asr_store_log_position(d->store, f->path, &saved, &e2) == 0)
                to.start = (struct asr_tail_pos){saved.dev, saved.ino, saved.offset};
            if (asr_tail_start(d->loop, &to, &f->tail, err) != 0) {
                file_source_free(f);
                return err->code != 0 ? err->code : ASR_EIO;
            }
            d->files[d->nfiles++] = f;
        }
    }
    return 0;
}

static struct asr_service *find_service(struct daemon *d, const char *name)
{
    for (int i = 0; i < d->nservices; i++)
        if (strcmp(asr_service_name(d->services[i]), name) == 0)
            return d->services[i];
    return NULL;
}

/* ---- the API's view of the daemon (api/api.h) ------------------------------------------------ */

static json_t *daemon_status(struct daemon *d)
{
    json_t *svcs = json_array();
    for (int i = 0; i < d->nservices; i++) {
        json_t *s = asr_service_status(d->services[i]);
        /* The circuit (docs/execution.md, "Storms and the circuit"), when it is open. */
        const struct asr_service_cfg *cfg =
            asr_config_service(d->cfg, asr_service_name(d->services[i]));
        bool open = false;
        int64_t since = 0;
        char why[400];
        struct asr_err err = {0};
        if (cfg != NULL &&
            asr_policy_circuit(d->store, cfg, asr_time_wall_ms(), &open, &since, why, sizeof(why),
                               &err) == 0 &&
            open)
            json_object_set_new(s, "circuit",
                                json_pack("{s:s, s:I, s:s}", "state", "open", "since",
                                          (json_int_t)since, "why", why));
        json_array_append_new(svcs, s);
    }
    struct asr_detector_stats ds = {0};
    if (d->det != NULL)
        asr_detector_stats(d->det, &ds);
    char api[128] = "";
    if (asr_api_port(d->api) > 0)
        snprintf(api, sizeof(api), "http://%s%s%s:%d/",
                 strchr(d->cfg->api.listen_host, ':') ? "[" : "", d->cfg->api.listen_host,
                 strchr(d->cfg->api.listen_host, ':') ? "]" : "", asr_api_port(d->api));
    json_t *det =
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "lines", (json_int_t)ds.lines,
                  "signature_hits", (json_int_t)ds.signature_hits, "generic_hits",
                  (json_int_t)ds.generic_hits, "faults", (json_int_t)ds.faults, "opened",
                  (json_int_t)ds.opened, "absorbed", (json_int_t)ds.absorbed, "suppressed",
                  (json_int_t)ds.suppressed, "verifications", (json_int_t)ds.verifications,
                  "flush_errors", (json_int_t)ds.flush_errors);
    return json_pack("{s:{s:i, s:s, s:s, s:s?, s:I, s:I, s:o}, s:o}", "daemon", "pid",
                     (int)getpid(), "config", d->cfg->path, "state_dir", d->state_dir, "api",
                     api[0] != '\0' ? api : NULL, "started_at", (json_int_t)d->started_at,
                     "uptime_ms", (json_int_t)(asr_time_wall_ms() - d->started_at), "detection",
                     det, "services", svcs);
}

static json_t *hook_status(void *data)
{
    return daemon_status(data);
}

static int hook_deploy(void *data, const char *name, const char *ref, bool rollback,
                       asr_api_progress_cb progress, asr_api_done_cb done, void *cb_data,
                       struct asr_err *err)
{
    struct daemon *d = data;
    struct asr_service *svc = find_service(d, name);
    if (svc == NULL)
        return asr_err_set(err, ASR_ENOENT, "unknown service '%s'", name);
    int rc = rollback ? asr_service_rollback(svc, progress, done, cb_data, err)
                      : asr_service_deploy(svc, ref, "deploy", progress, done, cb_data, err);
    /* The service exists: what it lacks (no earlier release, an unknown ref) is its state. */
    if (rc == ASR_ENOENT)
        err->code = rc = ASR_EINVAL;
    return rc;
}

static int hook_decide(void *data, int64_t incident, bool approve, const char *who,
                       struct asr_err *err)
{
    struct daemon *d = data;
    return asr_executor_decide(d->executor, incident, approve, who, err);
}

static int hook_resolve(void *data, int64_t incident, const char *reason, struct asr_err *err)
{
    struct daemon *d = data;
    return asr_detector_resolve(d->det, incident, reason, err);
}

static int hook_ingest(void *data, const char *service, const char *source, const char *line,
                       size_t len, int64_t at_ms, struct asr_err *err)
{
    struct daemon *d = data;
    int64_t us = asr_time_wall_us();
    struct asr_line ln = {.service = service,
                          .source = source,
                          .text = line,
                          .len = len,
                          .at_ms = at_ms > 0 ? at_ms : us / 1000,
                          .received_us = us};
    return d->det != NULL ? asr_detector_line(d->det, &ln, err) : 0;
}

static bool hook_stopping(void *data)
{
    struct daemon *d = data;
    return d->stop_requested;
}

static void control_handler(struct asr_control_conn *conn, json_t *req, void *data)
{
    struct daemon *d = data;
    asr_api_control(d->api, conn, req);
}

/* ---- stopping ---------------------------------------------------------------------------------
 */

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish_stop(struct daemon *d)
{
    for (int i = 0; i < d->nservices; i++)
        asr_service_destroy(d->services[i]);
    d->nservices = 0;
    asr_api_destroy(d->api);
    d->api = NULL;
    asr_control_close(d->control);
    d->control = NULL;
    stop_files(d);
    struct asr_err err = {0};
    if (d->det != NULL && asr_detector_flush(d->det, true, &err) != 0)
        asr_error("detect: final write failed: %s", err.msg);
    asr_detector_destroy(d->det);
    d->det = NULL;
    asr_planner_destroy(d->planner); /* questions in flight end as cancelled, and say so */
    d->planner = NULL;
    asr_executor_destroy(d->executor); /* runs in flight stay in the journal as they are */
    d->executor = NULL;
    if (d->signals_started) {
        uv_close((uv_handle_t *)&d->sig_term, NULL);
        uv_close((uv_handle_t *)&d->sig_int, NULL);
        uv_close((uv_handle_t *)&d->sig_hup, NULL);
    }
    asr_store_event_add(d->store, NULL, "daemon", "daemon.stopped", NULL, NULL);
    asr_info("asr stopped");
}

static void service_stopped_cb(void *data)
{
    struct daemon *d = data;
    if (--d->stopping == 0)
        finish_stop(d);
}

static void request_stop(struct daemon *d, const char *why)
{
    if (d->stop_requested)
        return;
    d->stop_requested = true;
    asr_info("stopping (%s): draining and stopping %d service(s)", why, d->nservices);
    d->stopping = d->nservices + 1;
    for (int i = 0; i < d->nservices; i++)
        asr_service_shutdown(d->services[i], service_stopped_cb, d);
    service_stopped_cb(d);
}

/* ---- reload -----------------------------------------------------------------------------------
 */

/* A replaced config that services being removed still point into; freed with the last. */
struct retired {
    struct asr_config *cfg;
    int refs;
    struct retired *next;
};

struct removal {
    struct daemon *d;
    struct asr_service *svc;
    struct retired *cfg;
};

static void retired_release(struct daemon *d, struct retired *r)
{
    if (--r->refs > 0)
        return;
    for (struct retired **pp = &d->retired; *pp != NULL; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    asr_config_free(r->cfg);
    free(r);
}

static void removed_service_stopped_cb(void *data)
{
    struct removal *r = data;
    asr_service_destroy(r->svc);
    retired_release(r->d, r->cfg);
    free(r);
}

/*
 * After a crash or a kill, an incident may have been written without its plan, or a plan without
 * the executor's decision: both are picked up once every service has started (the gate looks at
 * their health). The decision is once per plan (asr_remediation_open), so nothing runs twice.
 */
static void catch_up(struct daemon *d)
{
    struct asr_incident *v = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    if (asr_store_incident_list(d->store, NULL, "open", 1000, &v, &n, &err) != 0) {
        asr_error("run: open incidents: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].parent_id != 0)
            continue; /* grouped under a parent, which is planned */
        json_t *plan = NULL;
        int rc = asr_plan_latest(d->store, v[i].id, &plan, &err);
        if (rc == ASR_ENOENT) {
            asr_warn("incident %lld was never planned (asr stopped first): planning it now",
                     (long long)v[i].id);
            asr_planner_incident(d->planner, v[i].id);
        } else if (rc == 0) {
            int64_t plan_id = (int64_t)json_integer_value(json_object_get(plan, "id"));
            struct asr_remediation rem = {0};
            int got = asr_remediation_of_incident(d->store, v[i].id, &rem, &err);
            if (got == ASR_ENOENT || (got == 0 && rem.plan_id != plan_id)) {
                asr_warn("incident %lld: plan %lld was never decided on (asr stopped first): "
                         "deciding now",
                         (long long)v[i].id, (long long)plan_id);
                asr_executor_plan(d->executor, plan_id, v[i].id);
            }
            asr_remediation_free(&rem);
        }
        json_decref(plan);
    }
    asr_incident_list_free(v, n);
}

static void start_done_cb(int rc, const char *msg, json_t *result, void *data)
{
    (void)result;
    struct daemon *d = data;
    if (rc != 0)
        asr_error("start failed: %s", msg);
    if (d != NULL && ++d->started == d->nservices && !d->stop_requested)
        catch_up(d);
}

/*
 * Applies a freshly loaded config. Everything that can be rejected is checked before anything
 * changes, so a rejected reload leaves the daemon exactly as it was. Returns 0, or ASR_ECONFIG
 * with nothing changed, or ASR_EBUSY ("incomplete") when the new config is in force but a new
 * service could not be created (its address taken, say); err then names it.
 */
static int apply_config(struct daemon *d, struct asr_config *next, struct asr_err *err)
{
    if (!d->state_dir_from_cli && strcmp(next->state_dir, d->cfg->state_dir) != 0)
        return asr_err_set(err, ASR_ECONFIG, "%s: state_dir cannot change while asr runs",
                           next->path);
    if (next->nservices > MAX_SERVICES)
        return asr_err_set(err, ASR_ECONFIG, "%s: more than %d services", next->path, MAX_SERVICES);
    for (size_t i = 0; i < next->nservices; i++) {
        const struct asr_service_cfg *n = &next->services[i];
        const struct asr_service_cfg *o = asr_config_service(d->cfg, n->name);
        if (o != NULL &&
            (strcmp(o->listen_host, n->listen_host) != 0 || o->listen_port != n->listen_port))
            return asr_err_set(err, ASR_ECONFIG,
                               "%s:%d: services[%zu].listen: changing the listen address of '%s' "
                               "needs a restart of asr",
                               next->path, n->line, i, n->name);
    }
    struct retired *old = calloc(1, sizeof(*old));
    if (old == NULL)
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    old->cfg = d->cfg;
    old->refs = 1; /* held by this function until the end */
    old->next = d->retired;
    d->retired = old;
    /* Removed services drain and stop; shutting down frees their listen addresses at once.
     * Their bookkeeping is allocated first, so that nothing has changed if that fails. */
    struct removal *removals[MAX_SERVICES] = {0};
    for (int i = 0; i < d->nservices; i++) {
        if (asr_config_service(next, asr_service_name(d->services[i])) != NULL)
            continue;
        if ((removals[i] = malloc(sizeof(struct removal))) == NULL) {
            for (int k = 0; k < i; k++)
                free(removals[k]);
            d->retired = old->next;
            free(old);
            return asr_err_set(err, ASR_ENOMEM, "out of memory");
        }
    }
    for (int i = d->nservices - 1; i >= 0; i--) {
        struct asr_service *svc = d->services[i];
        struct removal *r = removals[i];
        if (r == NULL)
            continue;
        asr_info("reload: removing service %s", asr_service_name(svc));
        r->d = d;
        r->svc = svc;
        r->cfg = old;
        old->refs++;
        d->services[i] = d->services[--d->nservices];
        asr_service_shutdown(svc, removed_service_stopped_cb, r);
    }
    d->cfg = next;
    asr_planner_set_config(d->planner, next); /* before the old config can be freed */
    asr_executor_set_config(d->executor, next);
    asr_api_set_config(d->api, next);
    int rc = 0;
    for (size_t i = 0; i < next->nservices; i++) {
        const struct asr_service_cfg *n = &next->services[i];
        struct asr_service *svc = find_service(d, n->name);
        if (svc != NULL) {
            asr_service_update_config(svc, n);
            continue;
        }
        struct asr_err e2 = {0};
        if (asr_service_create(&d->ctx, n, &svc, &e2) != 0) {
            rc =
                asr_err_set(err, ASR_EBUSY, "service '%s' could not be added: %s", n->name, e2.msg);
            continue;
        }
        asr_info("reload: adding service %s", n->name);
        d->services[d->nservices++] = svc;
        asr_service_start(svc, start_done_cb, NULL);
    }
    retired_release(d, old);
    return rc;
}

static struct asr_detector *new_detector(struct daemon *d, const struct asr_config *cfg,
                                         struct asr_err *err)
{
    struct asr_detector *det = NULL;
    struct asr_detector_opts o = {.cfg = cfg,
                                  .store = d->store,
                                  .loop = d->loop,
                                  .persist_templates = true,
                                  .compile_apart = true,
                                  .on_incident = on_incident,
                                  .data = d};
    if (asr_detector_create(&o, &det, err) != 0)
        return NULL;
    /* The signature databases were compiled in a child process (compile_apart), but loading
     * them and the PCRE2 patterns still leave freed heap behind: give it back to the system. */
    malloc_trim(0);
    return det;
}

static void reload(struct daemon *d)
{
    struct asr_config *next = NULL;
    struct asr_detector *det = NULL;
    struct asr_err err = {0};
    int rc = asr_config_load(d->cfg->path, &next, &err);
    if (rc == 0) {
        /* The new detector resumes from the store: the old one writes everything first. */
        stop_files(d);
        if (asr_detector_flush(d->det, true, &err) != 0)
            asr_error("detect: write before reload failed: %s", err.msg);
        if ((det = new_detector(d, next, &err)) == NULL)
            rc = err.code != 0 ? err.code : ASR_ECONFIG;
    }
    if (rc == 0)
        rc = apply_config(d, next, &err);
    if (rc == 0 || rc == ASR_EBUSY) {
        asr_detector_destroy(d->det);
        d->det = det;
    } else {
        asr_detector_destroy(det);
    }
    struct asr_err ferr = {0};
    if (!d->stop_requested && start_files(d, &ferr) != 0)
        asr_error("log files: %s", ferr.msg);
    if (rc == ASR_EBUSY) {
        asr_error("config reloaded from %s, but incomplete: %s", d->cfg->path, err.msg);
        asr_store_event_add(d->store, NULL, "daemon", "config.reload_incomplete", err.msg, NULL);
        return;
    }
    if (rc != 0) {
        asr_config_free(next);
        asr_error("config reload rejected, keeping the running config: %s", asr_err_msg(&err, rc));
        asr_store_event_add(d->store, NULL, "daemon", "config.reload_rejected",
                            asr_err_msg(&err, rc), NULL);
        return;
    }
    asr_info("config reloaded from %s", d->cfg->path);
    load_playbooks(d);
    asr_store_event_add(d->store, NULL, "daemon", "config.reloaded", d->cfg->path, NULL);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (signum == SIGHUP) {
        if (!d->stop_requested)
            reload(d);
        return;
    }
    request_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- main -------------------------------------------------------------------------------------
 */

/*
 * Raises the soft descriptor limit to the hard one and shares it out: each proxied request may
 * hold two descriptors (client and backend), and 256 stay free for slots, probes, builds, the
 * store and the control socket, so a flood of connections cannot starve health checks.
 */
static size_t connection_cap(size_t nservices)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 256;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max > 1048576 ? 1048576 : rl.rlim_max;
        if (want > rl.rlim_cur) {
            rl.rlim_cur = want;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    size_t n = nservices > 0 ? nservices : 1;
    size_t fds = rl.rlim_cur > 512 ? (size_t)rl.rlim_cur - 256 : 256;
    size_t cap = fds / (2 * n);
    if (cap > 65536)
        cap = 65536;
    return cap < 16 ? 16 : cap;
}

static int lock_state_dir(struct daemon *d)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/asr.lock", d->state_dir);
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lock_fd < 0) {
        cli_error("run", "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        cli_error("run", "another asr daemon is already running with state dir %s", d->state_dir);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(d->lock_fd, 0) == 0 && write(d->lock_fd, pid, (size_t)n) < 0)
        asr_warn("cannot write pid to %s", path);
    return 0;
}

int cmd_run(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "csl", 0, RUN_USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    if (o.config_path == NULL) {
        cli_error("run", "missing -c FILE");
        fprintf(stderr, "%s", RUN_USAGE);
        return ASR_EXIT_USAGE;
    }
    struct daemon d;
    memset(&d, 0, sizeof(d));
    d.lock_fd = -1;
    struct asr_err err = {0};
    rc = asr_config_load(o.config_path, &d.cfg, &err);
    if (rc != 0) {
        cli_error("config", "%s", asr_err_msg(&err, rc));
        return ASR_EXIT_FAIL;
    }
    enum asr_log_level lvl;
    const char *lvl_name = o.log_level ? o.log_level : d.cfg->log_level;
    if (lvl_name != NULL) {
        if (asr_log_parse_level(lvl_name, &lvl) != 0) {
            cli_error("run", "unknown log level '%s'", lvl_name);
            asr_config_free(d.cfg);
            return ASR_EXIT_USAGE;
        }
        asr_log_set_level(lvl);
    }
    char *sd = o.state_dir ? cli_state_dir(&o) : strdup(d.cfg->state_dir);
    d.state_dir = sd;
    d.state_dir_from_cli = o.state_dir != NULL;
    int exit_code = ASR_EXIT_FAIL;
    if (sd == NULL || asr_mkdirs(sd, 0700) != 0) {
        cli_error("run", "cannot create state dir %s: %s", sd ? sd : "?", strerror(errno));
        goto out;
    }
    if (lock_state_dir(&d) != 0)
        goto out;
    if (asr_store_open(sd, &d.store, &err) != 0) {
        cli_error("store", "%s", err.msg);
        goto out;
    }
    int abandoned = asr_store_deployment_abandon_running(
        d.store, "asr stopped while the deployment was running", &err);
    if (abandoned > 0)
        asr_warn("marked %d interrupted deployment(s) as failed", abandoned);

    signal(SIGPIPE, SIG_IGN);
    srandom((unsigned)(asr_time_mono_us() ^ (uint64_t)getpid()));
    d.loop = uv_default_loop();
    d.started_at = asr_time_wall_ms();
    /* The helpers live next to asr: the exec shim, git, and the LLM worker. */
    char shim[4096 + 16], git_exe[4096 + 16], post_exe[4096 + 16];
    if (cli_helper_path("asr-exec", shim, sizeof(shim), "run") != 0 ||
        cli_helper_path("asr-git", git_exe, sizeof(git_exe), "run") != 0 ||
        cli_helper_path("asr-llm", d.llm_exe, sizeof(d.llm_exe), "run") != 0 ||
        cli_helper_path("asr-post", post_exe, sizeof(post_exe), "run") != 0)
        goto out;
    asr_spawn_set_shim(shim);
    d.ctx = (struct asr_runtime_ctx){.loop = d.loop,
                                     .store = d.store,
                                     .state_dir = d.state_dir,
                                     .git_exe = git_exe,
                                     .max_connections = connection_cap(d.cfg->nservices),
                                     .on_line = on_slot_line,
                                     .on_exit = on_slot_exit,
                                     .on_line_data = &d};
    if (asr_planner_create(d.loop, d.store, d.cfg, d.llm_exe, &d.planner, &err) != 0) {
        cli_error("run", "%s", err.msg);
        goto out_loop;
    }
    struct asr_executor_env xenv = {.loop = d.loop,
                                    .st = d.store,
                                    .cfg = d.cfg,
                                    .find = exec_find,
                                    .health = exec_health,
                                    .resolve = exec_resolve,
                                    .data = &d,
                                    .git_exe = git_exe,
                                    .post_exe = post_exe,
                                    .state_dir = d.state_dir};
    if (asr_executor_create(&xenv, &d.executor, &err) != 0) {
        cli_error("run", "%s", err.msg);
        goto out_loop;
    }
    asr_executor_resume(d.executor);
    load_playbooks(&d);
    asr_planner_on_plan(d.planner, on_plan, &d);
    if ((d.det = new_detector(&d, d.cfg, &err)) == NULL) {
        cli_error("config", "%s", err.msg);
        goto out_loop;
    }
    if (start_files(&d, &err) != 0) {
        cli_error("run", "log files: %s", err.msg);
        goto out_loop;
    }
    for (size_t i = 0; i < d.cfg->nservices && i < MAX_SERVICES; i++) {
        struct asr_service *svc;
        if (asr_service_create(&d.ctx, &d.cfg->services[i], &svc, &err) != 0) {
            cli_error("run", "service %s: %s", d.cfg->services[i].name, err.msg);
            goto out_loop;
        }
        d.services[d.nservices++] = svc;
    }
    struct asr_api_hooks hooks = {.status = hook_status,
                                  .deploy = hook_deploy,
                                  .decide = hook_decide,
                                  .resolve = hook_resolve,
                                  .ingest = hook_ingest,
                                  .stopping = hook_stopping,
                                  .data = &d};
    if (asr_api_create(d.loop, d.store, d.cfg, &hooks, &d.api, &err) != 0 ||
        asr_api_listen(d.api, &err) != 0 ||
        asr_control_listen(d.loop, d.state_dir, control_handler, &d, &d.control, &err) != 0) {
        cli_error("run", "%s", err.msg);
        goto out_loop;
    }
    uv_signal_init(d.loop, &d.sig_term);
    uv_signal_init(d.loop, &d.sig_int);
    uv_signal_init(d.loop, &d.sig_hup);
    d.sig_term.data = d.sig_int.data = d.sig_hup.data = &d;
    uv_signal_start(&d.sig_term, signal_cb, SIGTERM);
    uv_signal_start(&d.sig_int, signal_cb, SIGINT);
    uv_signal_start(&d.sig_hup, signal_cb, SIGHUP);
    d.signals_started = true;
    asr_store_event_add(d.store, NULL, "daemon", "daemon.started", d.cfg->path, NULL);
    asr_info("asr %d started: config %s, state dir %s, %d service(s)", (int)getpid(), d.cfg->path,
             d.state_dir, d.nservices);
    for (int i = 0; i < d.nservices; i++)
        asr_service_start(d.services[i], start_done_cb, &d);
    if (d.nservices == 0)
        catch_up(&d);
    uv_run(d.loop, UV_RUN_DEFAULT);
    exit_code = ASR_EXIT_OK;
    goto out_close;

out_loop:
    /* Startup failed after the loop was in use: shut down what was created. */
    asr_api_destroy(d.api);
    d.api = NULL;
    asr_control_close(d.control);
    d.control = NULL;
    stop_files(&d);
    asr_detector_destroy(d.det);
    d.det = NULL;
    asr_planner_destroy(d.planner);
    d.planner = NULL;
    asr_executor_destroy(d.executor);
    d.executor = NULL;
    if (d.nservices > 0) {
        d.stopping = d.nservices;
        for (int i = 0; i < d.nservices; i++)
            asr_service_shutdown(d.services[i], service_stopped_cb, &d);
        uv_run(d.loop, UV_RUN_DEFAULT);
    }
out_close:
    if (d.loop != NULL) {
        uv_walk(d.loop, close_walk_cb, NULL);
        uv_run(d.loop, UV_RUN_DEFAULT);
        uv_loop_close(d.loop);
    }
out:
    asr_store_close(d.store);
    while (d.retired != NULL) {
        struct retired *r = d.retired;
        d.retired = r->next;
        asr_config_free(r->cfg);
        free(r);
    }
    asr_config_free(d.cfg);
    free(sd);
    if (d.lock_fd >= 0)
        close(d.lock_fd);
    return exit_code;
}
