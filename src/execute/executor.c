/*
 * executor.c - carrying out plans (see executor.h).
 */
#include "execute/executor.h"

#include "asr/buf.h"
#include "asr/incident.h"
#include "asr/log.h"
#include "asr/remediation.h"
#include "asr/timeutil.h"
#include "execute/outbound.h"
#include "execute/patch.h"
#include "execute/policy.h"
#include "recover/health.h"
#include "recover/service.h"
#include "strategy/plan.h"
#include "strategy/redact.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct run {
    struct asr_executor *ex; /* NULL once the executor is gone */
    int64_t rem_id, plan_id, incident_id;
    char service[64];
    int window_ms; /* the service's deploy.verify_window_ms */
    json_t *steps;
    size_t step;             /* the step in progress */
    int64_t seen_before;     /* the incident's last_seen when the step finished */
    int64_t restarts_before; /* the service's crash restarts then */
    char key[64];
    uv_timer_t timer; /* the verification window */
    bool timer_init;
    bool in_op;     /* waiting for a service operation's, asr-git's or a replay's callback */
    json_t *verify; /* the plan's verify block (a request to replay), or NULL */
    char *strategy, *title, *rationale; /* of the plan, for the commit message */
    char commit[41]; /* the patch step's commit, until it is verified or reverted */
    char fixed[41];  /* ... and once it is verified: the fix, published and announced */
    char fix_title[ASR_PATCH_TITLE_MAX + 1]; /* the patch's title (its commit's subject) */
    bool deployed;   /* ... and it was deployed (a failure then also rolls back) */
    int64_t release; /* ... as this release */
    bool replay_ok;  /* the replay met the playbook's expectation */
    char replay_why[200];
    char last_why[300];  /* why the last step did not remove the fault */
    int gen;             /* how many times asr restarted during this run: keys get ":r<gen>" */
    int resume;          /* RESUME_*: what a resumed run does once its service is up */
    char wrap_state[24]; /* RESUME_WRAP_UP: the final state, its reason, when it was written */
    char *wrap_reason;
    int64_t wrap_at;
    int64_t resume_deadline;
    struct run *next;
};

struct asr_executor {
    struct asr_executor_env env;
    struct asr_outbound *out; /* events and published fixes (outbound.h) */
    struct run *runs;
};

static void run_step(struct run *r);
static void run_free(struct run *r);

/* A callback's run: no longer waiting; NULL (and freed) when the executor is gone. */
static struct run *back(void *data)
{
    struct run *r = data;
    r->in_op = false;
    if (r->ex == NULL) {
        run_free(r);
        return NULL;
    }
    return r;
}

/* The journal key of what the run does now: "rem:<id>:<what>:<step>", with ":r<gen>" after asr
 * restarted during the run (a resumed step gets keys of its own: a key is never written twice).
 */
static void set_key(struct run *r, const char *what)
{
    int n = snprintf(r->key, sizeof(r->key), "rem:%lld:%s:%zu", (long long)r->rem_id, what,
                     r->step + 1);
    if (r->gen > 0 && n > 0 && (size_t)n < sizeof(r->key))
        snprintf(r->key + n, sizeof(r->key) - (size_t)n, ":r%d", r->gen);
}

/* ---- bookkeeping ------------------------------------------------------------------------------
 */

static void unlink_run(struct run *r)
{
    if (r->ex == NULL)
        return;
    for (struct run **pp = &r->ex->runs; *pp != NULL; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
}

static void timer_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

static void run_free(struct run *r)
{
    unlink_run(r);
    json_decref(r->steps);
    json_decref(r->verify);
    free(r->strategy);
    free(r->title);
    free(r->rationale);
    free(r->wrap_reason);
    if (r->timer_init) {
        r->timer.data = r;
        uv_close((uv_handle_t *)&r->timer, timer_closed_cb);
    } else {
        free(r);
    }
}

static void journal(struct run *r, const char *phase, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void journal(struct run *r, const char *phase, bool ok, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *d = json_pack("{s:s}", "detail", msg);
    char *detail = d != NULL ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    const char *action =
        json_string_value(json_object_get(json_array_get(r->steps, r->step), "action"));
    struct asr_err err = {0};
    if (asr_journal_write(r->ex->env.st, r->rem_id, (int)r->step + 1,
                          action != NULL ? action : "verify", phase, r->key, ok, detail, &err) != 0)
        asr_error("execute: remediation %lld: %s", (long long)r->rem_id, err.msg);
    free(detail);
}

/* The run's outcome to the webhook, and a verified patch published (outbound.h). */
static void announce(struct run *r, const struct asr_incident *inc, enum asr_notify_kind kind,
                     const char *reason, int64_t mttr_ms)
{
    struct asr_executor *ex = r->ex;
    char branch[64];
    asr_patch_branch(r->incident_id, branch, sizeof(branch));
    struct asr_notify_info info = {.kind = kind,
                                   .incident = r->incident_id,
                                   .plan = r->plan_id,
                                   .remediation = r->rem_id,
                                   .service = r->service,
                                   .signature = inc != NULL ? inc->signature : NULL,
                                   .summary = inc != NULL ? inc->line : NULL,
                                   .reason = reason,
                                   .mttr_ms = mttr_ms,
                                   .branch = r->fixed[0] != '\0' ? branch : NULL,
                                   .commit = r->fixed[0] != '\0' ? r->fixed : NULL};
    asr_outbound_event(ex->out, ex->env.cfg, &info, -1, NULL, NULL);
    const struct asr_service_cfg *svc = asr_config_service(ex->env.cfg, r->service);
    if (kind == ASR_NOTIFY_REMEDIATED && r->fixed[0] != '\0' && svc != NULL) {
        char verification[400];
        snprintf(verification, sizeof(verification),
                 "built, tested and deployed blue/green by asr; %s; MTTR %lld ms",
                 r->replay_why[0] != '\0' ? r->replay_why : "healthy, with no new fault line",
                 (long long)mttr_ms);
        struct asr_github_pr_info pr = {.service = r->service,
                                        .incident = r->incident_id,
                                        .plan = r->plan_id,
                                        .strategy = r->strategy,
                                        .title = r->fix_title[0] != '\0' ? r->fix_title : r->title,
                                        .summary = inc != NULL ? inc->line : NULL,
                                        .plan_text = r->rationale,
                                        .verification = verification,
                                        .commit = r->fixed};
        asr_outbound_publish(ex->out, svc, r->rem_id, &pr);
    }
}

static bool circuit_open(struct asr_executor *ex, const struct asr_service_cfg *svc);

/* The finish rows: an intent before the final state is written, a result once its bookkeeping is
 * done. A restart finds an intent without a result and does the bookkeeping again. */
static void journal_finish(struct run *r, const char *phase, const char *state, const char *what)
{
    char key[64];
    snprintf(key, sizeof(key), "rem:%lld:finish", (long long)r->rem_id);
    json_t *d = json_pack("{s:s, s:s}", "detail", what != NULL ? what : "", "state", state);
    char *detail = d != NULL ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    struct asr_err err = {0};
    int rc =
        asr_journal_write(r->ex->env.st, r->rem_id, 0, "finish", phase, key, true, detail, &err);
    if (rc != 0 && rc != ASR_EINVAL) /* EINVAL: written before this restart */
        asr_error("execute: remediation %lld: %s", (long long)r->rem_id, err.msg);
    free(detail);
}

static void wrap_up(struct run *r, const char *state, const char *reason, int64_t at);

/* Ends a run: the finish intent, the remediation's final state, then the bookkeeping. */
static void finish(struct run *r, const char *state, const char *reason)
{
    struct asr_err err = {0};
    journal_finish(r, "intent", state, reason);
    if (asr_remediation_set(r->ex->env.st, r->rem_id, state, reason, NULL, &err) != 0)
        asr_error("execute: remediation %lld: %s", (long long)r->rem_id, err.msg);
    wrap_up(r, state, reason, asr_time_wall_ms());
}

/* The bookkeeping of a finished run (at: when it finished): the lesson, the incident, the
 * circuit, the log, the webhook and a published fix; then the finish result. */
static void wrap_up(struct run *r, const char *state, const char *reason, int64_t at)
{
    struct asr_executor *ex = r->ex;
    struct asr_err err = {0};
    struct asr_incident inc = {0};
    bool ok = strcmp(state, ASR_REM_SUCCEEDED) == 0;
    int64_t mttr_ms = -1;
    bool have = asr_store_incident_get(ex->env.st, r->incident_id, &inc, &err) == 0;
    if (have) {
        int64_t mttr = ok ? at - inc.first_seen : 0;
        mttr_ms = ok ? mttr : -1;
        if (asr_plan_learn(ex->env.st, &inc, ok, mttr, &err) != 0)
            asr_error("execute: incident %lld: learning: %s", (long long)r->incident_id, err.msg);
        if (ok) {
            char why[200];
            snprintf(why, sizeof(why), "remediated by plan %lld (remediation %lld)",
                     (long long)r->plan_id, (long long)r->rem_id);
            if (ex->env.resolve(ex->env.data, r->incident_id, why, &err) != 0)
                asr_error("execute: incident %lld: resolve: %s", (long long)r->incident_id,
                          err.msg);
            asr_info("incident %lld remediated: %s; MTTR %lld ms", (long long)r->incident_id,
                     reason, (long long)mttr);
        }
    }
    /* The circuit this failure leaves open and the incidents held on the run go with it. */
    char note[700] = "";
    const struct asr_service_cfg *cfg = asr_config_service(ex->env.cfg, r->service);
    if (cfg != NULL && asr_policy_run_ended(ex->env.st, cfg, r->rem_id, ok, asr_time_wall_ms(),
                                            note, sizeof(note), &err) < 0)
        asr_error("execute: remediation %lld: %s", (long long)r->rem_id, err.msg);
    if (!ok)
        asr_warn("incident %lld escalated to a person: remediation %lld %s: %s%s",
                 (long long)r->incident_id, (long long)r->rem_id, state, reason, note);
    else if (note[0] != '\0')
        asr_warn("%s", note);
    /* The webhook gets what the log says: the reason and the note (the circuit this failure
     * opened, the incidents held on the run). */
    char said[1200];
    snprintf(said, sizeof(said), "%s%s", reason, ok ? "" : note);
    bool circuit = !ok && cfg != NULL && circuit_open(ex, cfg);
    announce(r, have ? &inc : NULL,
             ok                                      ? ASR_NOTIFY_REMEDIATED
             : circuit                               ? ASR_NOTIFY_CIRCUIT_OPEN
             : strcmp(state, ASR_REM_ESCALATED) == 0 ? ASR_NOTIFY_ESCALATED
                                                     : ASR_NOTIFY_FAILED,
             said, mttr_ms);
    asr_incident_free(&inc);
    journal_finish(r, "result", state, "learned, resolved or escalated, announced");
    run_free(r);
}

/* ---- verification -----------------------------------------------------------------------------
 */

/* The service's crash restarts so far (the supervisor's count, -1 when it does not run), and
 * (healthy may be NULL) whether it is healthy: one read of its status. */
static int64_t service_restarts(struct asr_executor *ex, const char *name, bool *healthy)
{
    struct asr_service *svc = ex->env.find(ex->env.data, name);
    json_t *s = svc != NULL ? asr_service_status(svc) : NULL;
    json_t *v = json_object_get(s, "restarts");
    const char *h = json_string_value(json_object_get(s, "health"));
    if (healthy != NULL)
        *healthy = h != NULL && strcmp(h, "healthy") == 0;
    int64_t n = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
    json_decref(s);
    return n;
}

static void undo_done(struct run *r);
static void undo_rollback(struct run *r);

static void rollback_done_cb(int rc, const char *msg, json_t *result, void *data)
{
    (void)result;
    struct run *r = back(data);
    if (r == NULL)
        return;
    set_key(r, "rollback");
    journal(r, "result", rc == 0, "%s", msg != NULL ? msg : rc == 0 ? "rolled back" : "failed");
    undo_done(r);
}

static void revert_done_cb(const struct asr_patch_result *res, void *data)
{
    struct run *r = back(data);
    if (r == NULL)
        return;
    set_key(r, "revert");
    journal(r, "result", res->rc == 0, "%s%s",
            res->rc == 0 ? "reverted by commit " : "revert failed: ",
            res->rc == 0 ? res->sha : (res->error != NULL ? res->error : "?"));
    r->commit[0] = '\0';
    undo_rollback(r);
}

/* A failed step that was deployed: back to the last good release; then the next step. */
static void undo_rollback(struct run *r)
{
    struct asr_service *svc = r->ex->env.find(r->ex->env.data, r->service);
    if (r->deployed && svc != NULL) {
        /* The service runs the patched release: back to the last good one. */
        r->deployed = false;
        set_key(r, "rollback");
        journal(r, "intent", false, "rollback from the failed patch's release");
        struct asr_err err = {0};
        if (asr_service_rollback(svc, NULL, rollback_done_cb, r, &err) == 0) {
            r->in_op = true;
            return;
        }
        journal(r, "result", false, "%s", err.msg);
    }
    undo_done(r);
}

/* A step did not remove the fault: undo what it left behind (a patch's commit is reverted with a
 * new commit, and a deployed patch rolled back), then the next step. */
static void next_step(struct run *r, const char *why)
{
    snprintf(r->last_why, sizeof(r->last_why), "%.290s", why != NULL ? why : "?");
    if (r->commit[0] != '\0') {
        struct asr_executor *ex = r->ex;
        const struct asr_service_cfg *svc = asr_config_service(ex->env.cfg, r->service);
        set_key(r, "revert");
        journal(r, "intent", false, "revert %s", r->commit);
        struct asr_patch_revert_req rq = {.git_exe = ex->env.git_exe,
                                          .state_dir = ex->env.state_dir,
                                          .repo = svc != NULL ? svc->repo : NULL,
                                          .incident = r->incident_id,
                                          .commit = r->commit,
                                          .reason = why,
                                          .author_name = svc != NULL ? svc->git.author_name : "asr",
                                          .author_email = svc != NULL ? svc->git.author_email
                                                                      : "asr@localhost"};
        struct asr_err err = {0};
        if (asr_patch_revert(ex->env.loop, &rq, revert_done_cb, r, NULL, &err) == 0) {
            r->in_op = true;
            return;
        }
        /* Report it as the revert's result; a deployed patch is still rolled back there. */
        char msg[300];
        snprintf(msg, sizeof(msg), "could not start: %.270s", err.msg);
        struct asr_patch_result res = {.rc = err.code != 0 ? err.code : ASR_ESPAWN, .error = msg};
        revert_done_cb(&res, r);
        return;
    }
    undo_done(r);
}

static void undo_done(struct run *r)
{
    r->step++;
    run_step(r);
}

/* After the window: the fault is gone if the service is healthy and the incident saw no new
 * fault line since the step ended. */
static void verify_cb(uv_timer_t *t)
{
    struct run *r = t->data;
    if (r->ex == NULL)
        return;
    struct asr_incident inc = {0};
    struct asr_err err = {0};
    int64_t last = r->seen_before;
    if (asr_store_incident_get(r->ex->env.st, r->incident_id, &inc, &err) == 0)
        last = inc.last_seen;
    asr_incident_free(&inc);
    bool healthy = false;
    int64_t restarts = service_restarts(r->ex, r->service, &healthy);
    bool quiet = last <= r->seen_before;
    /* A crash in the window is a fault too, whatever its fingerprint (a storm's crashes open
     * incidents of their own, which the check above does not see). */
    bool stayed_up = restarts <= r->restarts_before;
    int window = r->window_ms;
    set_key(r, "verify");
    if (healthy && quiet && stayed_up && r->replay_ok) {
        journal(r, "result", true, "fault gone: %s%shealthy, and no fault line for %d ms",
                r->verify != NULL ? r->replay_why : "", r->verify != NULL ? "; " : "", window);
        memcpy(r->fixed, r->commit, sizeof(r->fixed)); /* the patch stays */
        r->commit[0] = '\0';
        const char *a =
            json_string_value(json_object_get(json_array_get(r->steps, r->step), "action"));
        char why[200];
        snprintf(why, sizeof(why), "step %zu (%s) removed the fault", r->step + 1,
                 a != NULL ? a : "?");
        finish(r, ASR_REM_SUCCEEDED, why);
        return;
    }
    const char *why = !r->replay_ok ? r->replay_why
                      : !healthy    ? "the service is not healthy"
                      : !stayed_up  ? "the service crashed during the window"
                                    : "the fault recurred";
    journal(r, "result", false, "fault not gone after %d ms: %s", window, why);
    if (r->deployed && r->release > 0) {
        /* The cutover marked the patch's release good, but it did not remove the fault and its
         * commit is reverted next: mark it bad, or the rollback below (or any later one, such as
         * `asr rollback` or a plan's rollback step) could pick it as the newest good release. */
        char bad[300];
        snprintf(bad, sizeof(bad), "the patch did not remove the fault: %s", why);
        if (asr_store_release_set_state(r->ex->env.st, r->release, ASR_RELEASE_BAD, bad, &err) != 0)
            asr_error("execute: remediation %lld: release %lld: %s", (long long)r->rem_id,
                      (long long)r->release, err.msg);
    }
    next_step(r, !r->replay_ok ? r->replay_why : "the fault was not verified gone");
}

static void start_window(struct run *r)
{
    if (!r->timer_init) {
        uv_timer_init(r->ex->env.loop, &r->timer);
        r->timer_init = true;
    }
    r->timer.data = r;
    uv_timer_start(&r->timer, verify_cb, (uint64_t)r->window_ms, 0);
}

/* The replay's answer against the playbook's expectation; then the window. */
static void replay_cb(int status, const char *body, size_t len, const char *why, void *data)
{
    (void)len;
    struct run *r = back(data);
    if (r == NULL)
        return;
    json_t *req = json_object_get(r->verify, "request"),
           *exp = json_object_get(r->verify, "expect");
    int want = (int)json_integer_value(json_object_get(exp, "status"));
    const char *has = json_string_value(json_object_get(exp, "body_contains"));
    const char *not = json_string_value(json_object_get(exp, "body_not_contains"));
    const char *m = json_string_value(json_object_get(req, "method"));
    const char *path = json_string_value(json_object_get(req, "path"));
    r->replay_ok = false;
    if (status == 0)
        snprintf(r->replay_why, sizeof(r->replay_why), "replay of %s %s: no answer (%s)", m, path,
                 why != NULL ? why : "?");
    else if (want != 0 && status != want)
        snprintf(r->replay_why, sizeof(r->replay_why), "replay of %s %s: status %d, want %d", m,
                 path, status, want);
    else if (has != NULL && strstr(body, has) == NULL)
        snprintf(r->replay_why, sizeof(r->replay_why), "replay of %s %s: body lacks \"%.60s\"", m,
                 path, has);
    else if (not != NULL && strstr(body, not ) != NULL)
        snprintf(r->replay_why, sizeof(r->replay_why), "replay of %s %s: body has \"%.60s\"", m,
                 path, not );
    else {
        r->replay_ok = true;
        snprintf(r->replay_why, sizeof(r->replay_why), "replay of %s %s gave %d as expected", m,
                 path, status);
    }
    start_window(r);
}

static void verify(struct run *r)
{
    struct asr_incident inc = {0};
    struct asr_err err = {0};
    r->seen_before = asr_time_wall_ms();
    if (asr_store_incident_get(r->ex->env.st, r->incident_id, &inc, &err) == 0 &&
        inc.last_seen > r->seen_before)
        r->seen_before = inc.last_seen;
    asr_incident_free(&inc);
    r->restarts_before = service_restarts(r->ex, r->service, NULL);
    set_key(r, "verify");
    const struct asr_service_cfg *svc = asr_config_service(r->ex->env.cfg, r->service);
    json_t *req = json_object_get(r->verify, "request");
    r->replay_ok = true;
    r->replay_why[0] = '\0';
    if (req == NULL || svc == NULL) {
        journal(r, "intent", false, "watch for %d ms: health, and no new fault line", r->window_ms);
        start_window(r);
        return;
    }
    /* Replay the fault through the proxy, marked so its log lines never open an incident. */
    const char *method = json_string_value(json_object_get(req, "method"));
    const char *path = json_string_value(json_object_get(req, "path"));
    const char *body = json_string_value(json_object_get(req, "body"));
    char headers[2048] = "X-Asr-Verification: 1\r\n";
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(req, "headers"), k, v)
    {
        size_t l = strlen(headers);
        snprintf(headers + l, sizeof(headers) - l, "%s: %s\r\n", k,
                 json_is_string(v) ? json_string_value(v) : "");
    }
    int timeout = (int)json_integer_value(json_object_get(r->verify, "timeout_ms"));
    journal(r, "intent", false, "replay %s %s, then watch for %d ms", method, path, r->window_ms);
    struct asr_probe *pr = asr_request_start(
        r->ex->env.loop, svc->listen_host, svc->listen_port, method != NULL ? method : "GET",
        path != NULL ? path : "/", headers, body, body != NULL ? strlen(body) : 0, 64 * 1024,
        timeout > 0 ? timeout : 10000, replay_cb, r);
    if (pr == NULL) {
        r->replay_ok = false;
        snprintf(r->replay_why, sizeof(r->replay_why), "the replay could not be sent");
        start_window(r);
        return;
    }
    r->in_op = true;
}

static void op_done_cb(int rc, const char *msg, json_t *result, void *data)
{
    struct run *r = back(data);
    if (r == NULL)
        return;
    set_key(r, "step");
    journal(r, "result", rc == 0, "%s%s%s", msg != NULL ? msg : (rc == 0 ? "done" : "failed"),
            r->commit[0] != '\0' ? "; commit " : "", r->commit);
    if (rc != 0) {
        next_step(r, msg != NULL ? msg : "the deployment failed");
        return;
    }
    if (r->commit[0] != '\0') {
        r->deployed = true;
        r->release = (int64_t)json_integer_value(json_object_get(result, "release"));
    }
    verify(r);
}

/* The release the service serves, if it is of commit; else 0. */
static int64_t active_release_of(struct asr_service *svc, const char *commit)
{
    json_t *s = asr_service_status(svc);
    const char *c = json_string_value(json_object_get(s, "commit"));
    int64_t rel = c != NULL && strcmp(c, commit) == 0
                      ? (int64_t)json_integer_value(json_object_get(s, "release"))
                      : 0;
    json_decref(s);
    return rel;
}

/* The patch's commit, in the journal as soon as asr-git made it: after a crash, the journal
 * names the commit to revert (asr_patch_revert is idempotent, like the commit). */
static void journal_commit(struct run *r, bool existed)
{
    set_key(r, "commit");
    char branch[64];
    asr_patch_branch(r->incident_id, branch, sizeof(branch));
    char msg[160];
    snprintf(msg, sizeof(msg), "%s %s on %s",
             existed ? "the branch already held commit" : "committed", r->commit, branch);
    json_t *d = json_pack("{s:s, s:s, s:s, s:b}", "detail", msg, "commit", r->commit, "branch",
                          branch, "existed", existed);
    char *detail = d != NULL ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    struct asr_err err = {0};
    if (asr_journal_write(r->ex->env.st, r->rem_id, (int)r->step + 1, "patch", "result", r->key,
                          true, detail, &err) != 0)
        asr_error("execute: remediation %lld: %s", (long long)r->rem_id, err.msg);
    free(detail);
}

/* The patch is committed on the incident's branch: deploy that commit (build, test, blue/green).
 */
static void patch_done_cb(const struct asr_patch_result *res, void *data)
{
    struct run *r = back(data);
    if (r == NULL)
        return;
    set_key(r, "step");
    if (res->rc != 0) {
        journal(r, "result", false, "commit refused: %s", res->error != NULL ? res->error : "?");
        asr_warn("execute: remediation %lld: the patch was not committed: %s", (long long)r->rem_id,
                 res->error != NULL ? res->error : "?");
        next_step(r, res->error);
        return;
    }
    snprintf(r->commit, sizeof(r->commit), "%s", res->sha);
    journal_commit(r, res->existed);
    asr_info("execute: remediation %lld: committed %.12s on asr/incident-%lld%s; deploying it",
             (long long)r->rem_id, r->commit, (long long)r->incident_id,
             res->existed ? " (already there)" : "");
    struct asr_service *svc = r->ex->env.find(r->ex->env.data, r->service);
    struct asr_err err = {0};
    int64_t live = svc != NULL ? active_release_of(svc, r->commit) : 0;
    if (live > 0) {
        /* Resumed after a restart of asr: the commit was deployed before it, and asr started the
         * service on it again. Never deploy it twice: verify it. */
        set_key(r, "step");
        journal(r, "result", true, "release %lld of commit %s was deployed before asr restarted",
                (long long)live, r->commit);
        r->deployed = true;
        r->release = live;
        verify(r);
        return;
    }
    if (svc == NULL ||
        asr_service_deploy(svc, r->commit, "deploy", NULL, op_done_cb, r, &err) != 0) {
        journal(r, "result", false, "the commit %s could not be deployed: %s", r->commit,
                svc == NULL ? "the service is not running" : err.msg);
        next_step(r, "the deployment could not start");
        return;
    }
    r->in_op = true;
}

/* Commits the step's edits on asr/incident-<id>, on the active release's commit. */
static int start_patch(struct run *r, struct asr_service *svc, json_t *st, struct asr_err *err)
{
    struct asr_executor *ex = r->ex;
    const struct asr_service_cfg *cfg = asr_config_service(ex->env.cfg, r->service);
    json_t *status = asr_service_status(svc);
    char base[41];
    snprintf(base, sizeof(base), "%s",
             json_is_string(json_object_get(status, "commit"))
                 ? json_string_value(json_object_get(status, "commit"))
                 : "");
    json_decref(status);
    if (cfg == NULL || strlen(base) != 40)
        return asr_err_set(err, ASR_EINVAL, "patch: %s has no active release to patch", r->service);
    const char *title = json_string_value(json_object_get(st, "message"));
    /* A commit can be pushed: its words pass the redactor like everything that may leave the
     * host (the rationale can quote a model's answer). */
    struct asr_buf t = {0}, why = {0};
    asr_buf_init(&t, 4096);
    asr_buf_init(&why, 8192);
    const char *tt = title != NULL ? title : r->title;
    snprintf(r->fix_title, sizeof(r->fix_title), "%s", tt);
    if (asr_redact(tt, strlen(tt), &t, NULL) == ASR_ENOMEM ||
        (r->rationale != NULL &&
         asr_redact(r->rationale, strlen(r->rationale), &why, NULL) == ASR_ENOMEM)) {
        asr_buf_free(&t);
        asr_buf_free(&why);
        return asr_err_set(err, ASR_ENOMEM, "patch: out of memory");
    }
    char *msg = asr_patch_message(r->service, asr_buf_cstr(&t),
                                  r->rationale != NULL ? asr_buf_cstr(&why) : NULL, r->incident_id,
                                  r->plan_id, r->strategy);
    asr_buf_free(&t);
    asr_buf_free(&why);
    if (msg == NULL)
        return asr_err_set(err, ASR_EINVAL, "patch: no commit message for strategy %s",
                           r->strategy != NULL ? r->strategy : "?");
    const char *forbidden[] = {ex->env.cfg->path, NULL};
    struct asr_patch_commit_req rq = {.git_exe = ex->env.git_exe,
                                      .state_dir = ex->env.state_dir,
                                      .repo = cfg->repo,
                                      .base = base,
                                      .incident = r->incident_id,
                                      .patch_paths = cfg->policy.patch_paths,
                                      .forbidden = (asr_argv)forbidden,
                                      .edits = json_object_get(st, "edits"),
                                      .message = msg,
                                      .author_name = cfg->git.author_name,
                                      .author_email = cfg->git.author_email};
    int rc = asr_patch_commit(ex->env.loop, &rq, patch_done_cb, r, NULL, err);
    free(msg);
    return rc;
}

/* A plan's notify step is sent, then the next step: a notification removes no fault. */
static void notify_done(int rc, const char *detail, void *data)
{
    struct run *r = back(data);
    if (r == NULL)
        return;
    set_key(r, "step");
    journal(r, "result", rc == 0, "%s", detail);
    r->step++;
    run_step(r);
}

static int start_notify(struct run *r, json_t *st, struct asr_err *err)
{
    struct asr_executor *ex = r->ex;
    struct asr_incident inc = {0};
    bool have = asr_store_incident_get(ex->env.st, r->incident_id, &inc, err) == 0;
    struct asr_notify_info info = {.kind = ASR_NOTIFY_NOTIFY,
                                   .incident = r->incident_id,
                                   .plan = r->plan_id,
                                   .remediation = r->rem_id,
                                   .service = r->service,
                                   .signature = have ? inc.signature : NULL,
                                   .summary = have ? inc.line : NULL,
                                   .message = json_string_value(json_object_get(st, "message")),
                                   .mttr_ms = -1};
    int rc = asr_outbound_event(ex->out, ex->env.cfg, &info, (int)r->step + 1, notify_done, r);
    asr_incident_free(&inc);
    if (rc < 0 || rc > 1)
        return asr_err_set(err, rc, "notify: the event could not be sent");
    if (rc == 1 && !asr_notify_configured(ex->env.cfg))
        return asr_err_set(err, ASR_ECONFIG, "notify: %s", asr_notify_refusal(ex->env.cfg));
    return rc;
}

static void run_step(struct run *r)
{
    struct asr_executor *ex = r->ex;
    if (r->step >= json_array_size(r->steps)) {
        char why[400];
        snprintf(why, sizeof(why), "no step of the plan removed the fault (last: %s)",
                 r->last_why[0] != '\0' ? r->last_why : "?");
        finish(r, ASR_REM_FAILED, why);
        return;
    }
    json_t *st = json_array_get(r->steps, r->step);
    const char *action = json_string_value(json_object_get(st, "action"));
    set_key(r, "step");
    if (action != NULL && strcmp(action, "escalate") == 0) {
        const char *why = json_string_value(json_object_get(st, "reason"));
        journal(r, "intent", false, "escalate");
        journal(r, "result", true, "escalated: %s", why != NULL ? why : "the plan says so");
        finish(r, ASR_REM_ESCALATED, why != NULL ? why : "the plan escalates");
        return;
    }
    struct asr_service *svc = ex->env.find(ex->env.data, r->service);
    struct asr_err err = {0};
    int rc = ASR_EINVAL;
    journal(r, "intent", false, "%s", action != NULL ? action : "?");
    if (svc == NULL) {
        asr_err_set(&err, ASR_ENOENT, "service %s is not running under asr", r->service);
    } else if (strcmp(action, "restart") == 0 || strcmp(action, "deploy") == 0) {
        /* restart: the active release again, in the other slot (blue/green, no rebuild). */
        json_t *s = asr_service_status(svc);
        const char *ref = strcmp(action, "deploy") == 0
                              ? json_string_value(json_object_get(st, "ref"))
                              : json_string_value(json_object_get(s, "commit"));
        char copy[128];
        snprintf(copy, sizeof(copy), "%s", ref != NULL ? ref : "");
        json_decref(s);
        rc = asr_service_deploy(svc, copy[0] != '\0' ? copy : NULL, "deploy", NULL, op_done_cb, r,
                                &err);
    } else if (strcmp(action, "rollback") == 0) {
        rc = asr_service_rollback(svc, NULL, op_done_cb, r, &err);
    } else if (strcmp(action, "patch") == 0) {
        rc = start_patch(r, svc, st, &err);
    } else if (strcmp(action, "notify") == 0) {
        rc = start_notify(r, st, &err);
        if (rc == 1) { /* sent before this restart of asr: at most once */
            journal(r, "result", true, "sent before asr restarted; not sent again");
            r->step++;
            run_step(r);
            return;
        }
    } else {
        asr_err_set(&err, ASR_EINVAL,
                    "%s: not an action asr carries out (the gate lets no such plan through); "
                    "the next step follows",
                    action != NULL ? action : "?");
    }
    if (rc != 0) {
        journal(r, "result", false, "%s", err.msg);
        asr_warn("execute: remediation %lld step %zu (%s): %s", (long long)r->rem_id, r->step + 1,
                 action != NULL ? action : "?", err.msg);
        next_step(r, err.msg);
        return;
    }
    r->in_op = true;
    asr_info("execute: remediation %lld of incident %lld: step %zu: %s", (long long)r->rem_id,
             (long long)r->incident_id, r->step + 1, action);
}

static struct run *new_run(struct asr_executor *ex, int64_t rem_id, int64_t plan_id,
                           int64_t incident_id, const char *service, json_t *plan)
{
    json_t *steps = json_object_get(plan, "steps");
    struct run *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        asr_error("execute: remediation %lld: out of memory", (long long)rem_id);
        return NULL;
    }
    *r = (struct run){.ex = ex,
                      .rem_id = rem_id,
                      .plan_id = plan_id,
                      .incident_id = incident_id,
                      .steps = json_incref(steps),
                      .next = ex->runs};
    snprintf(r->service, sizeof(r->service), "%s", service);
    json_t *v = json_object_get(plan, "verify");
    r->verify = json_is_object(v) ? json_incref(v) : NULL;
    const char *strategy = json_string_value(json_object_get(plan, "strategy"));
    const char *rationale = json_string_value(json_object_get(plan, "rationale"));
    const char *pb = json_string_value(json_object_get(plan, "playbook"));
    r->strategy = strdup(strategy != NULL ? strategy : "playbook");
    r->rationale = rationale != NULL ? strdup(rationale) : NULL;
    char title[160];
    snprintf(title, sizeof(title), "remediate incident %lld%s%s", (long long)incident_id,
             pb != NULL ? " with playbook " : "", pb != NULL ? pb : "");
    r->title = strdup(title);
    const struct asr_service_cfg *svc = asr_config_service(ex->env.cfg, service);
    r->window_ms = svc != NULL ? svc->deploy.verify_window_ms : 3000;
    ex->runs = r;
    return r;
}

static void start_run(struct asr_executor *ex, int64_t rem_id, int64_t plan_id, int64_t incident_id,
                      const char *service, json_t *plan)
{
    struct run *r = new_run(ex, rem_id, plan_id, incident_id, service, plan);
    if (r != NULL)
        run_step(r);
}

/* ---- the gate ----------------------------------------------------------------------------------
 */

static bool only_escalate(json_t *steps)
{
    size_t i;
    json_t *s;
    json_array_foreach(steps, i, s)
    {
        const char *a = json_string_value(json_object_get(s, "action"));
        if (a == NULL || strcmp(a, "escalate") != 0)
            return false;
    }
    return true;
}

/* Why the executor cannot carry out one of the steps (into why), or false when it can all. */
static bool unsupported(const struct asr_config *cfg, json_t *steps, char *why, size_t cap)
{
    static const char *const can[] = {"restart",  "rollback", "deploy", "patch",
                                      "escalate", "notify",   NULL};
    size_t i;
    json_t *s;
    json_array_foreach(steps, i, s)
    {
        const char *a = json_string_value(json_object_get(s, "action"));
        bool ok = false;
        for (size_t k = 0; a != NULL && can[k] != NULL && !ok; k++)
            ok = strcmp(a, can[k]) == 0;
        if (!ok) {
            snprintf(why, cap, "the plan has a %s step, which is not an action asr carries out",
                     a != NULL ? a : "?");
            return true;
        }
        const char *off = strcmp(a, "notify") == 0 ? asr_notify_refusal(cfg) : NULL;
        if (off != NULL) {
            snprintf(why, cap, "the plan has a notify step (%zu): %.300s", i + 1, off);
            return true;
        }
    }
    return false;
}

static const char *state_of(enum asr_gate g)
{
    switch (g) {
    case ASR_GATE_RUN:
        return ASR_REM_RUNNING;
    case ASR_GATE_APPROVAL:
        return ASR_REM_AWAITING;
    case ASR_GATE_SHADOW:
        return ASR_REM_SHADOWED;
    case ASR_GATE_REFUSE:
        return ASR_REM_REFUSED;
    case ASR_GATE_ESCALATE:
        return ASR_REM_ESCALATED;
    }
    return ASR_REM_REFUSED;
}

/* A decision at the gate to the webhook (outbound.h): a plan waiting, an escalation. */
static void gate_event(struct asr_executor *ex, const struct asr_incident *inc, int64_t plan_id,
                       int64_t rem_id, enum asr_notify_kind kind, const char *why)
{
    struct asr_notify_info info = {.kind = kind,
                                   .incident = inc->id,
                                   .plan = plan_id,
                                   .remediation = rem_id,
                                   .service = inc->service,
                                   .signature = inc->signature,
                                   .summary = inc->line,
                                   .reason = why,
                                   .mttr_ms = -1};
    asr_outbound_event(ex->out, ex->env.cfg, &info, -1, NULL, NULL);
}

static bool circuit_open(struct asr_executor *ex, const struct asr_service_cfg *svc)
{
    bool open = false;
    int64_t since = 0;
    char why[300];
    struct asr_err err = {0};
    return asr_policy_circuit(ex->env.st, svc, asr_time_wall_ms(), &open, &since, why, sizeof(why),
                              &err) == 0 &&
           open;
}

static void gate_input(struct asr_executor *ex, const struct asr_service_cfg *svc,
                       const struct asr_incident *inc, json_t *plan, int64_t self,
                       struct asr_gate_input *in)
{
    *in = (struct asr_gate_input){.svc = svc,
                                  .fingerprint = inc->fingerprint,
                                  .requires_approval =
                                      json_is_true(json_object_get(plan, "requires_approval")),
                                  .only_escalate = only_escalate(json_object_get(plan, "steps")),
                                  .now = asr_time_wall_ms(),
                                  .self_id = self};
    ex->env.health(ex->env.data, &in->services, &in->unhealthy);
}

void asr_executor_plan(struct asr_executor *ex, int64_t plan_id, int64_t incident_id)
{
    struct asr_err err = {0};
    struct asr_incident inc = {0};
    json_t *plan = NULL;
    if (asr_store_incident_get(ex->env.st, incident_id, &inc, &err) != 0 ||
        asr_plan_latest(ex->env.st, incident_id, &plan, &err) != 0) {
        asr_error("execute: incident %lld: %s", (long long)incident_id, err.msg);
        goto out;
    }
    if (json_integer_value(json_object_get(plan, "id")) != plan_id)
        goto out; /* a newer plan came meanwhile; it will be decided on its own */
    const struct asr_service_cfg *svc = asr_config_service(ex->env.cfg, inc.service);
    if (svc == NULL) {
        asr_error("execute: incident %lld: service %s is not in the config", (long long)incident_id,
                  inc.service);
        goto out;
    }
    struct asr_gate_input in;
    gate_input(ex, svc, &inc, plan, 0, &in);
    bool quiet = false; /* a refusal recorded, and escalated elsewhere (policy.h) */
    in.quiet = &quiet;
    enum asr_gate g;
    char why[400];
    if (asr_policy_gate(ex->env.st, &in, &g, why, sizeof(why), &err) != 0) {
        asr_error("execute: incident %lld: %s", (long long)incident_id, err.msg);
        goto out;
    }
    json_t *steps = json_object_get(plan, "steps");
    char cannot[400];
    if ((g == ASR_GATE_RUN || g == ASR_GATE_APPROVAL) &&
        unsupported(ex->env.cfg, steps, cannot, sizeof(cannot))) {
        /* Never half a plan, and no lesson drawn from a plan that was not tried. */
        g = ASR_GATE_REFUSE;
        snprintf(why, sizeof(why),
                 "%.310s: a person applies it, and reports the outcome with asr plan --outcome",
                 cannot);
    }
    if (g == ASR_GATE_ESCALATE) {
        const char *r = json_string_value(json_object_get(json_array_get(steps, 0), "reason"));
        snprintf(why, sizeof(why), "%s", r != NULL ? r : "the plan escalates");
    }
    struct asr_remediation rem = {0};
    bool created = false;
    if (asr_remediation_open(ex->env.st, plan_id, incident_id, inc.service, inc.fingerprint,
                             state_of(g), why[0] != '\0' ? why : NULL, &rem, &created, &err) != 0) {
        asr_error("execute: incident %lld: %s", (long long)incident_id, err.msg);
        goto out;
    }
    if (!created) { /* decided before (a restart): never twice */
        asr_remediation_free(&rem);
        goto out;
    }
    switch (g) {
    case ASR_GATE_RUN:
        start_run(ex, rem.id, plan_id, incident_id, inc.service, plan);
        break;
    case ASR_GATE_APPROVAL:
        asr_warn("incident %lld: plan %lld awaits approval: asr approve %lld, or asr reject %lld",
                 (long long)incident_id, (long long)plan_id, (long long)incident_id,
                 (long long)incident_id);
        gate_event(ex, &inc, plan_id, rem.id, ASR_NOTIFY_AWAITING_APPROVAL, why);
        break;
    case ASR_GATE_SHADOW: {
        char *s = json_dumps(steps, JSON_COMPACT);
        asr_info("incident %lld: shadow mode: would carry out plan %lld: %s",
                 (long long)incident_id, (long long)plan_id, s != NULL ? s : "?");
        free(s);
        break;
    }
    case ASR_GATE_REFUSE:
    case ASR_GATE_ESCALATE:
        if (quiet)
            asr_info("incident %lld: recorded, not escalated again: %s", (long long)incident_id,
                     why);
        else
            asr_warn("incident %lld escalated to a person: %s", (long long)incident_id, why);
        if (!quiet)
            gate_event(ex, &inc, plan_id, rem.id,
                       circuit_open(ex, svc) ? ASR_NOTIFY_CIRCUIT_OPEN : ASR_NOTIFY_ESCALATED, why);
        break;
    }
    asr_remediation_free(&rem);
out:
    json_decref(plan);
    asr_incident_free(&inc);
}

int asr_executor_decide(struct asr_executor *ex, int64_t incident_id, bool approve, const char *who,
                        struct asr_err *err)
{
    struct asr_remediation rem = {0};
    int rc = asr_remediation_of_incident(ex->env.st, incident_id, &rem, err);
    if (rc == ASR_ENOENT)
        return asr_err_set(err, ASR_ENOENT, "incident %lld has no plan awaiting approval",
                           (long long)incident_id);
    if (rc != 0)
        return rc;
    if (strcmp(rem.state, ASR_REM_AWAITING) != 0) {
        rc = asr_err_set(err, ASR_EINVAL, "the plan of incident %lld is not awaiting approval: %s",
                         (long long)incident_id, rem.state);
        asr_remediation_free(&rem);
        return rc;
    }
    json_t *plan = NULL;
    if (approve && (rc = asr_plan_latest(ex->env.st, incident_id, &plan, err)) != 0) {
        asr_remediation_free(&rem);
        return rc;
    }
    char reason[200];
    snprintf(reason, sizeof(reason), "%s by %s", approve ? "approved" : "rejected",
             who != NULL ? who : "an operator");
    rc = asr_remediation_set(ex->env.st, rem.id, approve ? ASR_REM_RUNNING : ASR_REM_REJECTED,
                             reason, who != NULL ? who : "operator", err);
    if (rc == 0 && approve) {
        asr_info("incident %lld: plan %lld %s", (long long)incident_id, (long long)rem.plan_id,
                 reason);
        start_run(ex, rem.id, rem.plan_id, incident_id, rem.service, plan);
    } else if (rc == 0) {
        asr_warn("incident %lld escalated to a person: plan %lld %s", (long long)incident_id,
                 (long long)rem.plan_id, reason);
    }
    json_decref(plan);
    asr_remediation_free(&rem);
    return rc;
}

/* ---- resuming after a restart of asr ----------------------------------------------------------
 *
 * A run that was going when asr stopped (a crash, a kill, a stop) is picked up from its journal
 * when asr starts again, once its service is up. asr's start has already put the service back on
 * the newest release that served and is not bad (asr_service_start), and every child of the old
 * daemon died with it. What the journal says decides what happens; nothing is done twice:
 * - the fault was verified gone: only the bookkeeping is left (learn, resolve);
 * - a step failed or was not verified: its undo is finished (the commit reverted, which is
 *   idempotent; the service rolled back if it runs the patch) and the next step follows;
 * - a step acted and its verification had not ended: verify again (a replay has no side effect);
 * - a patch step was interrupted: it is started again. Its commit is idempotent (asr-git answers
 *   "existing"), and a commit that was deployed before the restart is verified, not redeployed;
 * - a restart, rollback or deploy step was interrupted: it is not repeated (asr's start has just
 *   restored the service); what runs now is verified.
 */

enum {
    RESUME_STEP = 1,  /* (re)start step r->step */
    RESUME_VERIFY,    /* verify what runs now */
    RESUME_UNDO,      /* the step did not remove the fault: finish its undo, then the next step */
    RESUME_SUCCEEDED, /* verified before the restart */
    RESUME_SKIP,      /* an interrupted notify step: not sent again; the next step */
    RESUME_WRAP_UP,   /* the run had ended, and its bookkeeping was cut short: do it */
};

/* Where a run's journal stopped: the last step with a row, and what is known of it. */
struct journal_view {
    int step; /* 1-based; 0: no row */
    char action[32];
    bool step_intent, step_result, step_ok;
    bool verify_result, verify_ok;
    bool reverted;
    char commit[41]; /* the step's patch commit, if asr-git made one */
    int resumes;     /* restarts of asr already seen by this run */
};

static void view_journal(const struct asr_journal_row *rows, size_t n, struct journal_view *v)
{
    *v = (struct journal_view){0};
    for (size_t i = 0; i < n; i++) {
        char what[16] = "";
        if (sscanf(rows[i].key, "rem:%*d:%15[a-z]:", what) != 1)
            continue;
        if (strcmp(what, "resume") == 0) {
            v->resumes++;
            continue;
        }
        if (strcmp(what, "finish") == 0)
            continue;
        if (rows[i].step != v->step) { /* a later step: what came before is done with */
            int resumes = v->resumes;
            *v = (struct journal_view){.step = rows[i].step, .resumes = resumes};
        }
        bool result = strcmp(rows[i].phase, "result") == 0;
        if (strcmp(what, "step") == 0) {
            snprintf(v->action, sizeof(v->action), "%s", rows[i].action);
            v->step_intent = true;
            if (result) {
                v->step_result = true;
                v->step_ok = rows[i].ok;
            }
        } else if (strcmp(what, "commit") == 0) {
            json_t *d = json_loads(rows[i].detail, 0, NULL);
            const char *c = json_string_value(json_object_get(d, "commit"));
            if (c != NULL && strlen(c) == 40)
                snprintf(v->commit, sizeof(v->commit), "%s", c);
            json_decref(d);
        } else if (strcmp(what, "verify") == 0 && result) {
            v->verify_result = true;
            v->verify_ok = rows[i].ok;
        } else if (strcmp(what, "revert") == 0 && result) {
            v->reverted = true;
        }
    }
}

static int resume_decision(const struct journal_view *v)
{
    if (v->step == 0)
        return RESUME_STEP;
    if (v->verify_result)
        return v->verify_ok ? RESUME_SUCCEEDED : RESUME_UNDO;
    if (v->step_result)
        return v->step_ok ? RESUME_VERIFY : RESUME_UNDO;
    if (strcmp(v->action, "notify") == 0)
        return RESUME_SKIP; /* it may have been delivered: at most once */
    return strcmp(v->action, "restart") == 0 || strcmp(v->action, "rollback") == 0 ||
                   strcmp(v->action, "deploy") == 0
               ? RESUME_VERIFY
               : RESUME_STEP;
}

static const char *resume_name(int what)
{
    switch (what) {
    case RESUME_STEP:
        return "the step starts again (a patch's commit is idempotent; a deployed one is verified, "
               "not redeployed)";
    case RESUME_VERIFY:
        return "it is not repeated; what the service runs now is verified";
    case RESUME_UNDO:
        return "it did not remove the fault: its undo is finished, then the next step";
    case RESUME_SUCCEEDED:
        return "the fault was verified gone; the bookkeeping is finished";
    case RESUME_SKIP:
        return "a notification is never sent twice (it may have been delivered); the next step";
    case RESUME_WRAP_UP:
        return "the run had ended; its bookkeeping (lesson, incident, announcement) is finished";
    }
    return "?";
}

/* Once the service is up (or its start has had its time), the run goes on from its journal. */
static void resume_go(struct run *r)
{
    struct asr_service *svc = r->ex->env.find(r->ex->env.data, r->service);
    int64_t live = svc != NULL && r->commit[0] != '\0' ? active_release_of(svc, r->commit) : 0;
    const char *a = json_string_value(json_object_get(json_array_get(r->steps, r->step), "action"));
    switch (r->resume) {
    case RESUME_SUCCEEDED: {
        memcpy(r->fixed, r->commit, sizeof(r->fixed));
        r->commit[0] = '\0';
        char why[200];
        snprintf(why, sizeof(why),
                 "step %zu (%s) removed the fault (verified before asr restarted)", r->step + 1,
                 a != NULL ? a : "?");
        finish(r, ASR_REM_SUCCEEDED, why);
        return;
    }
    case RESUME_VERIFY:
        r->deployed = live > 0;
        r->release = live;
        verify(r);
        return;
    case RESUME_UNDO:
        r->deployed = live > 0;
        r->release = live;
        if (live > 0) { /* as verify_cb does: no rollback may ever pick this release */
            struct asr_err err = {0};
            if (asr_store_release_set_state(r->ex->env.st, live, ASR_RELEASE_BAD,
                                            "the patch did not remove the fault", &err) != 0)
                asr_error("execute: remediation %lld: release %lld: %s", (long long)r->rem_id,
                          (long long)live, err.msg);
        }
        if (r->commit[0] != '\0') {
            next_step(r, "the step did not remove the fault (before asr restarted)");
            return;
        }
        snprintf(r->last_why, sizeof(r->last_why), "the step did not remove the fault");
        undo_rollback(r);
        return;
    case RESUME_WRAP_UP:
        wrap_up(r, r->wrap_state, r->wrap_reason != NULL ? r->wrap_reason : "", r->wrap_at);
        return;
    case RESUME_SKIP:
        set_key(r, "step");
        journal(r, "result", false, "interrupted by asr's restart; not sent again");
        r->step++;
        run_step(r);
        return;
    default:
        r->commit[0] = '\0';
        run_step(r);
        return;
    }
}

static void resume_tick(uv_timer_t *t)
{
    struct run *r = t->data;
    if (r->ex == NULL)
        return;
    struct asr_service *svc = r->ex->env.find(r->ex->env.data, r->service);
    json_t *s = svc != NULL ? asr_service_status(svc) : NULL;
    bool busy = s == NULL || json_object_get(s, "deploying") != NULL;
    json_decref(s);
    if (busy && asr_time_wall_ms() < r->resume_deadline) {
        uv_timer_start(&r->timer, resume_tick, 100, 0);
        return;
    }
    resume_go(r);
}

/* Picks up one interrupted run; false when it cannot (then it ends failed). */
static bool resume_run(struct asr_executor *ex, const struct asr_remediation *rem, bool wrap,
                       char *why, size_t cap)
{
    struct asr_err err = {0};
    json_t *plan = NULL;
    struct asr_journal_row *rows = NULL;
    size_t n = 0;
    if (asr_plan_latest(ex->env.st, rem->incident_id, &plan, &err) != 0 ||
        json_integer_value(json_object_get(plan, "id")) != rem->plan_id ||
        asr_journal_list(ex->env.st, rem->id, &rows, &n, &err) != 0) {
        snprintf(why, cap,
                 "asr stopped while this remediation was running, and it cannot be resumed: %.250s",
                 err.msg[0] != '\0' ? err.msg : "its plan was replaced");
        json_decref(plan);
        return false;
    }
    struct journal_view v;
    view_journal(rows, n, &v);
    asr_journal_rows_free(rows, n);
    struct run *r = new_run(ex, rem->id, rem->plan_id, rem->incident_id, rem->service, plan);
    json_decref(plan);
    if (r == NULL) {
        snprintf(why, cap, "asr stopped while this remediation was running: out of memory");
        return false;
    }
    r->step = v.step > 0 ? (size_t)v.step - 1 : 0;
    r->resume = resume_decision(&v);
    r->gen = v.resumes + 1;
    snprintf(r->commit, sizeof(r->commit), "%s", v.reverted ? "" : v.commit);
    if (wrap) { /* ended, with its bookkeeping cut short: only that is left */
        r->resume = RESUME_WRAP_UP;
        snprintf(r->wrap_state, sizeof(r->wrap_state), "%s", rem->state);
        r->wrap_reason = rem->reason != NULL ? strdup(rem->reason) : NULL;
        r->wrap_at = rem->finished_at > 0 ? rem->finished_at : asr_time_wall_ms();
        if (strcmp(rem->state, ASR_REM_SUCCEEDED) == 0)
            memcpy(r->fixed, r->commit, sizeof(r->fixed));
        r->commit[0] = '\0';
    }
    const struct asr_service_cfg *cfg = asr_config_service(ex->env.cfg, rem->service);
    if (cfg != NULL && (r->commit[0] != '\0' || strcmp(v.action, "patch") == 0)) {
        /* A killed asr-git leaves its ref lock, also before the commit it was making reached the
         * journal: no asr-git of the old daemon survives it. */
        bool removed = false;
        if (asr_patch_clear_stale_lock(cfg->repo, r->incident_id, &removed, &err) != 0)
            asr_warn("execute: remediation %lld: %s", (long long)r->rem_id, err.msg);
        else if (removed)
            asr_warn("execute: remediation %lld: removed the stale lock of asr/incident-%lld left "
                     "by a killed asr-git",
                     (long long)r->rem_id, (long long)r->incident_id);
    }
    int64_t wait = cfg != NULL ? (int64_t)cfg->deploy.build_timeout_ms +
                                     cfg->deploy.test_timeout_ms + cfg->deploy.healthy_timeout_ms
                               : 60000;
    r->resume_deadline = asr_time_wall_ms() + wait;
    char what[300];
    snprintf(what, sizeof(what), "asr restarted during step %d (%.31s): %.200s",
             v.step > 0 ? v.step : 1, v.action[0] != '\0' ? v.action : "none begun",
             resume_name(r->resume));
    set_key(r, "resume");
    journal(r, "result", true, "%s", what);
    if (r->resume == RESUME_VERIFY && v.step_intent && !v.step_result) {
        set_key(r, "step");
        journal(r, "result", true, "interrupted by asr's restart and not repeated");
    }
    asr_warn("incident %lld: remediation %lld resumed: %s", (long long)r->incident_id,
             (long long)r->rem_id, what);
    uv_timer_init(ex->env.loop, &r->timer);
    r->timer_init = true;
    r->timer.data = r;
    uv_timer_start(&r->timer, resume_tick, 0, 0);
    return true;
}

void asr_executor_resume(struct asr_executor *ex)
{
    struct asr_remediation *v = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    if (asr_remediation_in_flight_all(ex->env.st, &v, &n, &err) != 0) {
        asr_error("execute: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].state, ASR_REM_RUNNING) != 0)
            continue; /* awaiting approval: still waiting */
        char why[400];
        if (resume_run(ex, &v[i], false, why, sizeof(why)))
            continue;
        if (asr_remediation_set(ex->env.st, v[i].id, ASR_REM_FAILED, why, NULL, &err) != 0) {
            asr_error("execute: remediation %lld: %s", (long long)v[i].id, err.msg);
            continue;
        }
        asr_warn("incident %lld escalated to a person: remediation %lld: %s",
                 (long long)v[i].incident_id, (long long)v[i].id, why);
    }
    asr_remediations_free(v, n);
    /* Runs that had ended, but whose bookkeeping a stop of asr cut short (finish). */
    v = NULL;
    n = 0;
    if (asr_remediation_unfinished(ex->env.st, &v, &n, &err) != 0) {
        asr_error("execute: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char why[400];
        if (!resume_run(ex, &v[i], true, why, sizeof(why)))
            asr_error("execute: remediation %lld: its bookkeeping cannot be finished: %s",
                      (long long)v[i].id, why);
    }
    asr_remediations_free(v, n);
}

int asr_executor_create(const struct asr_executor_env *env, struct asr_executor **out,
                        struct asr_err *err)
{
    struct asr_executor *ex = calloc(1, sizeof(*ex));
    if (ex == NULL)
        return asr_err_set(err, ASR_ENOMEM, "execute: out of memory");
    ex->env = *env;
    struct asr_outbound_env oe = {.loop = env->loop,
                                  .st = env->st,
                                  .post_exe = env->post_exe,
                                  .git_exe = env->git_exe,
                                  .state_dir = env->state_dir};
    int rc = asr_outbound_create(&oe, &ex->out, err);
    if (rc != 0) {
        free(ex);
        return rc;
    }
    *out = ex;
    return 0;
}

void asr_executor_set_config(struct asr_executor *ex, const struct asr_config *cfg)
{
    ex->env.cfg = cfg;
}

void asr_executor_destroy(struct asr_executor *ex)
{
    if (ex == NULL)
        return;
    while (ex->runs != NULL) {
        struct run *r = ex->runs;
        ex->runs = r->next;
        r->ex = NULL;
        if (!r->in_op && r->timer_init) {
            uv_timer_stop(&r->timer);
            json_decref(r->steps);
            r->steps = NULL;
            r->timer.data = r;
            uv_close((uv_handle_t *)&r->timer, timer_closed_cb);
        } else if (!r->in_op) {
            json_decref(r->steps);
            free(r);
        }
        /* A run waiting on a service operation is freed by that operation's callback. */
    }
    asr_outbound_destroy(ex->out); /* a run waiting on a notification is freed here */
    free(ex);
}
