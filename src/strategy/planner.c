/*
 * planner.c - the daemon's planner (see planner.h).
 */
#include "strategy/planner.h"

#include "asr/log.h"
#include "strategy/llm_worker.h"
#include "strategy/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct job {
    struct asr_planner *p;
    struct asr_incident inc;
    struct asr_plan plan;
    struct asr_prompt prompt;
    struct job *next;
};

struct asr_planner {
    uv_loop_t *loop;
    struct asr_store *st;
    const struct asr_config *cfg;
    struct asr_llm_worker *worker; /* the asr-llm process, started at the first question */
    struct job *head, *tail;       /* waiting */
    size_t waiting, in_flight;
    int quiet; /* > 0 while the worker is being destroyed: do not start questions */
    void (*on_plan)(void *data, int64_t plan_id, int64_t incident_id);
    void *on_plan_data;
};

static struct asr_plan_ctx ctx_of(const struct asr_planner *p, const char *service)
{
    return (struct asr_plan_ctx){.svc = asr_config_service(p->cfg, service), .llm = &p->cfg->llm};
}

/* Stores the plan and says what it is. */
static void store(struct asr_planner *p, struct job *j)
{
    struct asr_err err = {0};
    int64_t id = 0;
    if (asr_plan_save(p->st, &j->plan, &id, &err) != 0) {
        asr_error("plan: incident %lld: %s", (long long)j->inc.id, err.msg);
        return;
    }
    const char *first =
        json_string_value(json_object_get(json_array_get(j->plan.steps, 0), "action"));
    asr_info(
        "incident %lld planned: strategy=%s%s%s confidence=%.2f steps=%zu first=%s%s plan=%lld",
        (long long)j->inc.id, j->plan.strategy, j->plan.playbook != NULL ? " playbook=" : "",
        j->plan.playbook != NULL ? j->plan.playbook : "", j->plan.confidence,
        json_array_size(j->plan.steps), first != NULL ? first : "-",
        j->plan.requires_approval ? " approval=required" : "", (long long)id);
    if (p->on_plan != NULL)
        p->on_plan(p->on_plan_data, id, j->inc.id);
}

static void job_free(struct job *j)
{
    asr_prompt_free(&j->prompt);
    asr_plan_free(&j->plan);
    asr_incident_free(&j->inc);
    free(j);
}

static void pump(struct asr_planner *p);

static void finish(struct job *j, int rc, const struct asr_llm_reply *reply, const char *errmsg)
{
    struct asr_planner *p = j->p;
    struct asr_plan_ctx ctx = ctx_of(p, j->inc.service);
    struct asr_err err = {0};
    if (asr_plan_llm_finish(&j->plan, &ctx, rc, reply, errmsg, &err) != 0)
        asr_error("plan: incident %lld: %s", (long long)j->inc.id, err.msg);
    else
        store(p, j);
    job_free(j);
}

static void llm_done(int rc, struct asr_llm_reply *reply, const char *errmsg, void *data)
{
    struct job *j = data;
    struct asr_planner *p = j->p;
    if (rc == ASR_ECANCELED)
        errmsg = "llm: the question was cancelled (asr stopped, or its llm config changed)";
    finish(j, rc, reply, errmsg);
    p->in_flight--;
    pump(p);
}

/* Sends one question; a question that cannot be sent ends its job at once. */
static void start(struct asr_planner *p, struct job *j)
{
    struct asr_err err = {0};
    struct asr_plan_ctx ctx = ctx_of(p, j->inc.service);
    int rc = asr_plan_llm_prompt(&j->plan, &j->inc, &ctx, &j->prompt, &err);
    if (rc == 0)
        rc = asr_llm_worker_ask(p->worker, &p->cfg->llm, j->prompt.system, j->prompt.user, llm_done,
                                j, &err);
    if (rc != 0) {
        finish(j, rc, NULL, err.msg);
        return;
    }
    p->in_flight++;
    asr_info("incident %lld: nothing known fits; asking the LLM (%s %s) for a patch, %zu source "
             "file(s) and %zu secret(s) redacted in the prompt",
             (long long)j->inc.id, p->cfg->llm.provider, p->cfg->llm.model, j->prompt.nfiles,
             j->prompt.redactions);
}

static void pump(struct asr_planner *p)
{
    while (p->quiet == 0 && p->head != NULL && p->in_flight < ASR_PLANNER_IN_FLIGHT) {
        struct job *j = p->head;
        p->head = j->next;
        if (p->head == NULL)
            p->tail = NULL;
        p->waiting--;
        j->next = NULL;
        start(p, j);
    }
}

int asr_planner_create(uv_loop_t *loop, struct asr_store *st, const struct asr_config *cfg,
                       const char *llm_exe, struct asr_planner **out, struct asr_err *err)
{
    struct asr_planner *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return asr_err_set(err, ASR_ENOMEM, "planner: out of memory");
    int rc = asr_llm_worker_create(loop, llm_exe, &p->worker, err);
    if (rc != 0) {
        free(p);
        return rc;
    }
    p->loop = loop;
    p->st = st;
    p->cfg = cfg;
    *out = p;
    return 0;
}

void asr_planner_on_plan(struct asr_planner *p,
                         void (*cb)(void *data, int64_t plan_id, int64_t incident_id), void *data)
{
    p->on_plan = cb;
    p->on_plan_data = data;
}

void asr_planner_set_config(struct asr_planner *p, const struct asr_config *cfg)
{
    p->cfg = cfg;
    pump(p);
}

void asr_planner_incident(struct asr_planner *p, int64_t incident_id)
{
    struct asr_err err = {0};
    struct job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        asr_error("plan: incident %lld: out of memory", (long long)incident_id);
        return;
    }
    j->p = p;
    if (asr_store_incident_get(p->st, incident_id, &j->inc, &err) != 0) {
        asr_error("plan: incident %lld: %s", (long long)incident_id, err.msg);
        job_free(j);
        return;
    }
    struct asr_plan_ctx ctx = ctx_of(p, j->inc.service);
    if (asr_plan_make(p->st, &j->inc, &ctx, &j->plan, &err) != 0) {
        asr_error("plan: incident %lld: %s", (long long)incident_id, err.msg);
        job_free(j);
        return;
    }
    if (j->plan.ask_llm) {
        char why[200] = "";
        if (j->inc.parent_id != 0)
            snprintf(why, sizeof(why),
                     "it is grouped under incident %lld, so the LLM was not asked about it",
                     (long long)j->inc.parent_id);
        else if (p->waiting >= ASR_PLANNER_QUEUE)
            snprintf(why, sizeof(why),
                     "the LLM was not asked: %zu questions were already in flight and %zu "
                     "waiting",
                     p->in_flight, p->waiting);
        if (why[0] != '\0') {
            if (asr_plan_escalate(&j->plan, why, &err) != 0)
                asr_error("plan: incident %lld: %s", (long long)incident_id, err.msg);
            else
                store(p, j);
            job_free(j);
            return;
        }
        if (p->tail != NULL)
            p->tail->next = j;
        else
            p->head = j;
        p->tail = j;
        p->waiting++;
        pump(p);
        return;
    }
    store(p, j);
    job_free(j);
}

size_t asr_planner_pending(const struct asr_planner *p)
{
    return p != NULL ? p->in_flight + p->waiting : 0;
}

void asr_planner_destroy(struct asr_planner *p)
{
    if (p == NULL)
        return;
    p->quiet++; /* nothing new starts while the worker goes */
    while (p->head != NULL) {
        struct job *j = p->head;
        p->head = j->next;
        finish(j, ASR_ECANCELED, NULL, "llm: asr stopped before the question was sent");
    }
    p->tail = NULL;
    p->waiting = 0;
    asr_llm_worker_destroy(p->worker); /* questions in flight end as cancelled */
    free(p);
}
