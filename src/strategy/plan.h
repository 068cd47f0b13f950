/*
 * plan.h - from an incident to a plan: what to do, why, and how sure asr is.
 *
 * STRATEGY stage (docs/planning.md). Deterministic knowledge first:
 *   1. the knowledge base (kb.h) is searched with the incident's signature, fingerprint,
 *      template, line, fields and route; the best playbook or verified past fix scoring at least
 *      ASR_PLAN_THRESHOLD gives the plan (strategy "playbook" or "history");
 *   2. else a crash loop (an exit incident seen ASR_PLAN_CRASH_LOOP times) gets restart, then
 *      rollback; a fault that began within ASR_PLAN_DEPLOY_WINDOW_MS after a deployment gets a
 *      rollback to the last good release (strategy "fallback");
 *   3. else a person: an escalate step (the LLM path of issue 4 is not wired into planning yet,
 *      and the plan says so when a provider is configured).
 * Every step is an action of the whitelist with arguments its validator accepts for the
 * service (execute/actions.h): a source whose steps do not pass is skipped, never trimmed.
 * A plan needs approval when the service's policy lists one of its actions, or when it came
 * from an LLM.
 */
#ifndef ASR_STRATEGY_PLAN_H
#define ASR_STRATEGY_PLAN_H

#include "asr/config.h"
#include "asr/error.h"
#include "asr/incident.h"
#include "asr/store.h"

#include <jansson.h>
#include <stdbool.h>

#define ASR_PLAN_THRESHOLD 0.25
#define ASR_PLAN_CRASH_LOOP 3
#define ASR_PLAN_DEPLOY_WINDOW_MS (10 * 60 * 1000)

struct asr_plan {
    int64_t incident_id;
    char *strategy;    /* "playbook" | "history" | "llm" | "fallback" */
    double confidence; /* 0..1 */
    json_t *sources;   /* [{kind, ref, title, score, why}] what was retrieved, best first */
    json_t *steps;     /* [{action, ...arguments}] in order */
    json_t *verify;    /* the playbook's verify block, or null */
    char *playbook;    /* the playbook id it follows, or NULL */
    bool requires_approval;
    char *rationale; /* one paragraph */
};

/* What the planner knows besides the incident. svc may be NULL (no config: no patch_paths
 * check beyond the path's shape, no approval policy). */
struct asr_plan_ctx {
    const struct asr_service_cfg *svc;
    const struct asr_llm_cfg *llm; /* may be NULL */
};

/* Makes the plan for inc. Returns 0 (out filled; asr_plan_free), or ASR_EDB/ASR_ENOMEM. */
int asr_plan_make(struct asr_store *st, const struct asr_incident *inc,
                  const struct asr_plan_ctx *ctx, struct asr_plan *out, struct asr_err *err);
/* The plan as JSON (caller owns). */
json_t *asr_plan_json(const struct asr_plan *p);
void asr_plan_free(struct asr_plan *p);

#endif
