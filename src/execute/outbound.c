/*
 * outbound.c - events and published fixes, journalled at most once (see outbound.h).
 */
#include "execute/outbound.h"

#include "asr/log.h"
#include "asr/remediation.h"
#include "execute/patch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct op {
    struct asr_outbound *o;
    int64_t rem, incident;
    int step;
    char key[160];
    const char *action; /* "notify", "push" or "pull_request" */
    asr_outbound_cb done;
    void *data;
    struct asr_notify_op *nop;
    struct asr_patch_op *pop;
    struct asr_github_op *gop;
    /* publish: the pull request opened once the push is done (title NULL: none) */
    char *title, *body, *api_url, *repo, *base, *token_env;
    struct op *next;
};

struct asr_outbound {
    struct asr_outbound_env env;
    struct op *ops;
};

int asr_outbound_create(const struct asr_outbound_env *env, struct asr_outbound **out,
                        struct asr_err *err)
{
    struct asr_outbound *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return asr_err_set(err, ASR_ENOMEM, "outbound: out of memory");
    o->env = *env;
    *out = o;
    return 0;
}

static void op_free(struct op *op)
{
    for (struct op **pp = &op->o->ops; *pp != NULL; pp = &(*pp)->next)
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    free(op->title);
    free(op->body);
    free(op->api_url);
    free(op->repo);
    free(op->base);
    free(op->token_env);
    free(op);
}

static struct op *op_new(struct asr_outbound *o, int64_t rem, int step, const char *action)
{
    struct op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        asr_error("outbound: remediation %" PRId64 ": out of memory", rem);
        return NULL;
    }
    *op = (struct op){.o = o, .rem = rem, .step = step, .action = action, .next = o->ops};
    o->ops = op;
    return op;
}

/* One journal row of the op; for an intent, ASR_EINVAL means "written before": not again. */
static int journal(struct op *op, const char *phase, bool ok, const char *msg)
{
    json_t *d = json_pack("{s:s}", "detail", msg != NULL ? msg : "");
    char *detail = d != NULL ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    struct asr_err err = {0};
    int rc = asr_journal_write(op->o->env.st, op->rem, op->step, op->action, phase, op->key, ok,
                               detail, &err);
    free(detail);
    if (rc != 0 && !(rc == ASR_EINVAL && strcmp(phase, "intent") == 0))
        asr_error("outbound: remediation %" PRId64 ": %s", op->rem, err.msg);
    return rc;
}

/* ---- events ---------------------------------------------------------------------------------- */

static void event_done_cb(const struct asr_notify_result *res, void *data)
{
    struct op *op = data;
    op->nop = NULL;
    char msg[600];
    if (res->rc == 0)
        snprintf(msg, sizeof(msg), "delivered: HTTP %d", res->status);
    else
        snprintf(msg, sizeof(msg), "not delivered (not sent again): %.500s",
                 res->error != NULL ? res->error : "?");
    journal(op, "result", res->rc == 0, msg);
    if (res->rc != 0)
        asr_warn("remediation %" PRId64 ": notification %s %s", op->rem, op->key, msg);
    if (op->done != NULL)
        op->done(res->rc, msg, op->data);
    op_free(op);
}

int asr_outbound_event(struct asr_outbound *o, const struct asr_config *cfg,
                       const struct asr_notify_info *info, int step, asr_outbound_cb done,
                       void *data)
{
    if (!asr_notify_configured(cfg) || info->remediation <= 0)
        return 1;
    struct op *op = op_new(o, info->remediation, step > 0 ? step : 0, "notify");
    if (op == NULL)
        return ASR_ENOMEM;
    op->done = done;
    op->data = data;
    int n = snprintf(op->key, sizeof(op->key), "rem:%" PRId64 ":notify:%s", info->remediation,
                     asr_notify_kind_name(info->kind));
    if (step >= 0 && n > 0 && (size_t)n < sizeof(op->key))
        snprintf(op->key + n, sizeof(op->key) - (size_t)n, ":%d", step);
    char idem[ASR_NOTIFY_KEY_MAX];
    int rc =
        asr_notify_key(info->kind, info->incident, info->remediation, step, idem, sizeof(idem));
    if (rc == 0 && (rc = journal(op, "intent", false, idem)) == ASR_EINVAL) {
        op_free(op); /* sent or tried before: at most once */
        return 1;
    }
    if (rc != 0) {
        op_free(op);
        return rc;
    }
    json_t *ev = asr_notify_event(info);
    struct asr_notify_env ne = {.post_exe = o->env.post_exe, .state_dir = o->env.state_dir};
    struct asr_err err = {0};
    rc = ev != NULL ? asr_notify_send(o->env.loop, &ne, &cfg->notify, ev, idem, event_done_cb, op,
                                      &op->nop, &err)
                    : asr_err_set(&err, ASR_ENOMEM, "out of memory");
    json_decref(ev);
    if (rc != 0) {
        char msg[400];
        snprintf(msg, sizeof(msg), "not sent: %.380s", err.msg);
        journal(op, "result", false, msg);
        asr_warn("remediation %" PRId64 ": notification %s %s", op->rem, op->key, msg);
        op_free(op);
    }
    return rc;
}

/* ---- publishing a fix ------------------------------------------------------------------------ */

static void pr_done_cb(const struct asr_github_pr_result *res, void *data)
{
    struct op *op = data;
    op->gop = NULL;
    char msg[600];
    if (res->rc == 0)
        snprintf(msg, sizeof(msg), "pull request #%d %s: %.400s", res->number,
                 res->existed ? "was open already" : "opened",
                 res->html_url != NULL ? res->html_url : "");
    else
        snprintf(msg, sizeof(msg), "no pull request: %.500s",
                 res->error != NULL ? res->error : "?");
    journal(op, "result", res->rc == 0, msg);
    if (res->rc == 0)
        asr_info("incident %" PRId64 ": %s", op->incident, msg);
    else
        asr_warn("incident %" PRId64 ": %s", op->incident, msg);
    op_free(op);
}

static void push_done_cb(const struct asr_patch_result *res, void *data)
{
    struct op *op = data;
    op->pop = NULL;
    char msg[600];
    if (res->rc == 0)
        snprintf(msg, sizeof(msg), "pushed %s (%s)", res->sha,
                 res->existed ? "the remote had it already" : "new on the remote");
    else
        snprintf(msg, sizeof(msg), "not pushed: %.500s", res->error != NULL ? res->error : "?");
    journal(op, "result", res->rc == 0, msg);
    if (res->rc != 0) {
        asr_warn("incident %" PRId64 ": the fix branch was %s", op->incident, msg);
        op_free(op);
        return;
    }
    asr_info("incident %" PRId64 ": fix branch %s", op->incident, msg);
    if (op->title == NULL) {
        op_free(op);
        return;
    }
    op->action = "pull_request";
    snprintf(op->key, sizeof(op->key), "rem:%" PRId64 ":pull_request", op->rem);
    if (journal(op, "intent", false, op->repo) != 0) {
        op_free(op);
        return;
    }
    char branch[64];
    asr_patch_branch(op->incident, branch, sizeof(branch));
    struct asr_github_pr_req rq = {.post_exe = op->o->env.post_exe,
                                   .state_dir = op->o->env.state_dir,
                                   .api_url = op->api_url,
                                   .repo = op->repo,
                                   .token_env = op->token_env,
                                   .branch = branch,
                                   .base = op->base,
                                   .title = op->title,
                                   .body = op->body};
    struct asr_err err = {0};
    if (asr_github_open_pr(op->o->env.loop, &rq, pr_done_cb, op, &op->gop, &err) != 0) {
        struct asr_github_pr_result r = {.rc = err.code != 0 ? err.code : ASR_ESPAWN,
                                         .error = err.msg};
        pr_done_cb(&r, op);
    }
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

void asr_outbound_publish(struct asr_outbound *o, const struct asr_service_cfg *svc,
                          int64_t remediation, const struct asr_github_pr_info *pr)
{
    if (svc->git.remote == NULL || pr->commit == NULL)
        return;
    struct op *op = op_new(o, remediation, 0, "push");
    if (op == NULL)
        return;
    op->incident = pr->incident;
    snprintf(op->key, sizeof(op->key), "rem:%" PRId64 ":push", remediation);
    if (journal(op, "intent", false, svc->git.remote) != 0) {
        op_free(op);
        return;
    }
    if (svc->git.github.repo != NULL) {
        if (asr_github_pr_text(pr, &op->title, &op->body) != 0) {
            asr_warn("incident %" PRId64 ": no pull request: its text could not be made",
                     pr->incident);
        } else {
            op->api_url = dup_or_null(svc->git.github.api_url);
            op->repo = dup_or_null(svc->git.github.repo);
            op->base = dup_or_null(svc->git.github.base);
            op->token_env = dup_or_null(svc->git.token_env);
        }
    }
    struct asr_patch_push_req rq = {.git_exe = o->env.git_exe,
                                    .state_dir = o->env.state_dir,
                                    .repo = svc->repo,
                                    .incident = pr->incident,
                                    .sha = pr->commit,
                                    .remote = svc->git.remote,
                                    .token_env = svc->git.token_env};
    struct asr_err err = {0};
    if (asr_patch_push(o->env.loop, &rq, push_done_cb, op, &op->pop, &err) != 0) {
        struct asr_patch_result r = {.rc = err.code != 0 ? err.code : ASR_ESPAWN, .error = err.msg};
        push_done_cb(&r, op);
    }
}

void asr_outbound_destroy(struct asr_outbound *o)
{
    if (o == NULL)
        return;
    while (o->ops != NULL) {
        struct op *op = o->ops;
        asr_notify_cancel(op->nop);
        asr_patch_cancel(op->pop);
        asr_github_cancel(op->gop);
        if (op->done != NULL)
            op->done(ASR_ECANCELED, "cancelled: asr is stopping", op->data);
        op_free(op);
    }
    free(o);
}
