/*
 * plan.c - the planner (see plan.h for the order of strategies).
 */
#include "strategy/plan.h"

#include "execute/actions.h"
#include "strategy/kb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The steps of a knowledge-base document: a playbook's "steps", or a past incident's
 * "plan.steps" when its fix was verified. NULL when it has none to offer. */
static json_t *doc_steps(const struct asr_kb_hit *h, json_t *body)
{
    if (strcmp(h->kind, ASR_KB_PLAYBOOK) == 0)
        return json_object_get(body, "steps");
    if (!json_is_true(json_object_get(body, "verified")))
        return NULL; /* only a fix that worked is worth repeating */
    return json_object_get(json_object_get(body, "plan"), "steps");
}

/* Checks every step against the whitelist and the service; returns a copy of the steps, or
 * NULL with why set. */
static json_t *checked_steps(json_t *steps, const struct asr_service_cfg *svc, char *why,
                             size_t cap)
{
    if (!json_is_array(steps) || json_array_size(steps) == 0) {
        snprintf(why, cap, "no steps");
        return NULL;
    }
    size_t i;
    json_t *st;
    json_array_foreach(steps, i, st)
    {
        const char *action = json_string_value(json_object_get(st, "action"));
        json_t *args = json_deep_copy(st);
        json_object_del(args, "action");
        struct asr_err err = {0};
        int rc = asr_action_check(action, args, svc, &err);
        json_decref(args);
        if (rc != 0) {
            snprintf(why, cap, "step %zu: %.300s", i + 1, err.msg);
            return NULL;
        }
    }
    return json_deep_copy(steps);
}

static bool needs_approval(const json_t *steps, const struct asr_service_cfg *svc)
{
    if (svc == NULL || svc->policy.approval == NULL)
        return false;
    size_t i;
    json_t *st;
    json_array_foreach(steps, i, st)
    {
        const char *a = json_string_value(json_object_get(st, "action"));
        for (size_t k = 0; a != NULL && svc->policy.approval[k] != NULL; k++)
            if (strcmp(svc->policy.approval[k], a) == 0)
                return true;
    }
    return false;
}

static json_t *steps_of(const char *const *actions, const char *reason)
{
    json_t *v = json_array();
    for (size_t i = 0; actions[i] != NULL; i++) {
        json_t *s = json_pack("{s:s}", "action", actions[i]);
        if (strcmp(actions[i], "escalate") == 0)
            json_object_set_new(s, "reason", json_string(reason));
        json_array_append_new(v, s);
    }
    return v;
}

/* Did the fault begin within the deploy window after a deployment of its service? */
static bool after_deploy(struct asr_store *st, const struct asr_incident *inc, int64_t *dep_id)
{
    struct asr_deployment d = {0};
    struct asr_err err = {0};
    if (asr_store_deployment_last(st, inc->service, &d, &err) != 0)
        return false;
    bool yes = strcmp(d.kind, "deploy") == 0 && d.ended_at > 0 &&
               strcmp(d.outcome, ASR_DEPLOY_SUCCEEDED) == 0 && inc->first_seen >= d.started_at &&
               inc->first_seen - d.ended_at <= ASR_PLAN_DEPLOY_WINDOW_MS;
    *dep_id = d.id;
    asr_deployment_free(&d);
    return yes;
}

int asr_plan_make(struct asr_store *st, const struct asr_incident *inc,
                  const struct asr_plan_ctx *ctx, struct asr_plan *out, struct asr_err *err)
{
    memset(out, 0, sizeof(*out));
    out->incident_id = inc->id;
    const struct asr_service_cfg *svc = ctx != NULL ? ctx->svc : NULL;
    json_t *fields = json_loads(inc->fields != NULL ? inc->fields : "{}", 0, NULL);
    const char *route = json_string_value(json_object_get(fields, "route"));
    struct asr_kb_query q = {.service = inc->service,
                             .signature = inc->signature,
                             .fingerprint = inc->fingerprint,
                             .tmpl = inc->template,
                             .message = inc->line,
                             .fields = inc->fields,
                             .route = route,
                             .limit = 5};
    struct asr_kb_hit *h = NULL;
    size_t n = 0;
    int rc = asr_kb_search(st, &q, &h, &n, err);
    json_decref(fields);
    if (rc != 0)
        return rc;
    out->sources = json_array();
    char skipped[512] = "";
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(
            out->sources, json_pack("{s:s, s:s, s:s, s:f, s:s}", "kind", h[i].kind, "ref", h[i].ref,
                                    "title", h[i].title, "score", h[i].score, "why", h[i].why));
        if (out->steps != NULL || h[i].score < ASR_PLAN_THRESHOLD)
            continue;
        json_t *body = json_loads(h[i].body, 0, NULL);
        char why[400] = "";
        json_t *steps = doc_steps(&h[i], body);
        json_t *ok = steps != NULL ? checked_steps(steps, svc, why, sizeof(why)) : NULL;
        if (ok != NULL) {
            bool pb = strcmp(h[i].kind, ASR_KB_PLAYBOOK) == 0;
            out->steps = ok;
            out->strategy = strdup(pb ? "playbook" : "history");
            out->confidence = h[i].score;
            out->playbook = pb ? strdup(h[i].ref) : NULL;
            json_t *v = pb ? json_object_get(body, "verify")
                           : json_object_get(json_object_get(body, "plan"), "verify");
            out->verify = v != NULL ? json_deep_copy(v) : json_null();
            char r[1024];
            snprintf(r, sizeof(r),
                     "%s %s \"%s\" matches this incident (score %.2f: %s)%s%s. Its %zu step(s) "
                     "are on the whitelist and valid for service %s.",
                     pb ? "Playbook" : "Past incident", h[i].ref, h[i].title, h[i].score, h[i].why,
                     skipped[0] != '\0' ? "; skipped: " : "", skipped, json_array_size(ok),
                     inc->service);
            out->rationale = strdup(r);
        } else if (steps != NULL) {
            size_t l = strlen(skipped);
            snprintf(skipped + l, sizeof(skipped) - l, "%s%s (%s)", l ? ", " : "", h[i].ref, why);
        }
        json_decref(body);
    }
    asr_kb_hits_free(h, n);
    if (out->steps == NULL) {
        int64_t dep = 0;
        char r[1024];
        if (strcmp(inc->kind, "exit") == 0 && inc->count >= ASR_PLAN_CRASH_LOOP) {
            static const char *const a[] = {"restart", "rollback", NULL};
            out->steps = steps_of(a, NULL);
            out->strategy = strdup("fallback");
            out->confidence = 0.5;
            snprintf(r, sizeof(r),
                     "No playbook or past fix scored %.2f or more. The service crashed %lld "
                     "times: restart it, and roll back to the last good release if it keeps "
                     "crashing.",
                     ASR_PLAN_THRESHOLD, (long long)inc->count);
        } else if (after_deploy(st, inc, &dep)) {
            static const char *const a[] = {"rollback", NULL};
            out->steps = steps_of(a, NULL);
            out->strategy = strdup("fallback");
            out->confidence = 0.6;
            snprintf(r, sizeof(r),
                     "No playbook or past fix scored %.2f or more, and the fault began within "
                     "%d minutes after deployment %lld: roll back to the last good release.",
                     ASR_PLAN_THRESHOLD, ASR_PLAN_DEPLOY_WINDOW_MS / 60000, (long long)dep);
        } else {
            bool llm = ctx != NULL && ctx->llm != NULL && ctx->llm->provider != NULL &&
                       strcmp(ctx->llm->provider, "none") != 0;
            const char *reason =
                llm ? "nothing known fits; asking the configured LLM for a patch is not wired "
                      "into planning yet"
                    : "nothing known fits and no LLM is configured";
            static const char *const a[] = {"escalate", NULL};
            out->steps = steps_of(a, reason);
            out->strategy = strdup("fallback");
            out->confidence = 0.0;
            snprintf(r, sizeof(r),
                     "No playbook or past fix scored %.2f or more, it is not a crash loop and "
                     "it did not follow a deployment: %s, so a person decides.",
                     ASR_PLAN_THRESHOLD, reason);
        }
        out->verify = json_null();
        out->rationale = strdup(r);
    }
    out->requires_approval = needs_approval(out->steps, svc);
    if (out->strategy == NULL || out->rationale == NULL || out->steps == NULL) {
        asr_plan_free(out);
        return asr_err_set(err, ASR_ENOMEM, "plan: out of memory");
    }
    return 0;
}

json_t *asr_plan_json(const struct asr_plan *p)
{
    return json_pack("{s:I, s:s, s:f, s:O, s:O, s:b, s:O, s:s?, s:s}", "incident",
                     (json_int_t)p->incident_id, "strategy", p->strategy, "confidence",
                     p->confidence, "sources", p->sources, "steps", p->steps, "requires_approval",
                     p->requires_approval, "verify", p->verify, "playbook", p->playbook,
                     "rationale", p->rationale);
}

void asr_plan_free(struct asr_plan *p)
{
    if (p == NULL)
        return;
    free(p->strategy);
    free(p->playbook);
    free(p->rationale);
    json_decref(p->sources);
    json_decref(p->steps);
    json_decref(p->verify);
    memset(p, 0, sizeof(*p));
}
