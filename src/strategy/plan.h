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
 *   3. else, when an LLM is configured, its patch (strategy "llm"): asr_plan_make leaves an
 *      escalate plan with ask_llm set; the caller builds the question (asr_plan_llm_prompt),
 *      asks the model (llm.h, on its loop or synchronously) and hands the outcome to
 *      asr_plan_llm_finish, which turns the reply's edit blocks into one patch step, or keeps
 *      the escalation and says why the answer was not used;
 *   4. else a person: an escalate step with the reason.
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
#include "strategy/kb.h"
#include "strategy/llm.h"
#include "strategy/prompt.h"

#include <jansson.h>
#include <stdbool.h>

#define ASR_PLAN_THRESHOLD 0.25
#define ASR_PLAN_CRASH_LOOP 3
#define ASR_PLAN_DEPLOY_WINDOW_MS (10 * 60 * 1000)
#define ASR_PLAN_LLM_CONFIDENCE 0.3 /* an untried patch from a model: below any fallback */

struct asr_plan {
    int64_t incident_id;
    char *strategy;    /* "playbook" | "history" | "llm" | "fallback" */
    double confidence; /* 0..1 */
    json_t *sources;   /* [{kind, ref, title, score, why}] what was retrieved, best first */
    json_t *steps;     /* [{action, ...arguments}] in order */
    json_t *verify;    /* the playbook's verify block, or null */
    char *playbook;    /* the playbook id it follows, or NULL */
    bool requires_approval;
    char *rationale;    /* one paragraph */
    int64_t source_doc; /* the knowledge-base document followed (an outcome credits it), or 0 */
    json_t *llm;  /* {provider, model, prompt_tokens, completion_tokens, attempts, http_status,
                     elapsed_ms, error} when the LLM was asked, else null */
    bool ask_llm; /* nothing known fits and an LLM is configured: ask it (see above) */
    struct asr_kb_hit *hits; /* what was retrieved, for the prompt */
    size_t nhits;
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
/* The question for the LLM about inc (p->ask_llm): the service's repository is searched for the
 * source files involved. Returns 0 (out filled; asr_prompt_free) or an error of prompt.h. */
int asr_plan_llm_prompt(const struct asr_plan *p, const struct asr_incident *inc,
                        const struct asr_plan_ctx *ctx, struct asr_prompt *out,
                        struct asr_err *err);

/*
 * Folds the LLM's outcome (rc, reply and errmsg as an asr_llm_done_cb gets them) into p, which
 * asr_plan_make left with ask_llm set. A usable answer (edit blocks, or a unified diff, that
 * parse strictly, whose every path lies inside the service's patch_paths and that the patch
 * action accepts) becomes the plan's one step: strategy "llm", confidence
 * ASR_PLAN_LLM_CONFIDENCE, approval unless the service's policy.llm_approval is false. Anything
 * else keeps the escalation, and its reason and the rationale say what was wrong with the
 * answer. Only edits are taken from an answer: text that names other actions is never read as
 * a step. p->llm records the call (token usage included) either way. Returns 0 or ASR_ENOMEM.
 */
int asr_plan_llm_finish(struct asr_plan *p, const struct asr_plan_ctx *ctx, int rc,
                        const struct asr_llm_reply *reply, const char *errmsg, struct asr_err *err);

/* Makes p an escalation to a person: "nothing known fits and WHY" (an LLM that was not asked,
 * or whose answer was not used). Returns 0 or ASR_ENOMEM. */
int asr_plan_escalate(struct asr_plan *p, const char *why, struct asr_err *err);

/* The plan as JSON (caller owns). */
json_t *asr_plan_json(const struct asr_plan *p);
void asr_plan_free(struct asr_plan *p);

/* ---- the plans table (store migration 4) ---------------------------------------------------- */

/* Stores a plan for its incident; *id gets the row id (may be NULL). */
int asr_plan_save(struct asr_store *st, const struct asr_plan *p, int64_t *id, struct asr_err *err);
/* The latest stored plan of an incident as JSON (its asr_plan_json plus id, created_at, status,
 * outcome_at, mttr_ms). ASR_ENOENT when the incident has none. */
int asr_plan_latest(struct asr_store *st, int64_t incident_id, json_t **out, struct asr_err *err);

/*
 * Learns from the outcome of the incident's latest plan, as the loop (or an operator who carried
 * it out by hand) reports it: the plan row is marked verified or failed; the document it
 * followed gets the outcome in the learned record for inc's signature; and the incident, with its
 * plan and outcome, becomes a knowledge-base document (kind incident) so that the same fault is
 * found by fingerprint next time, its verified fix planned from history. mttr_ms is the time
 * from first seen to verified (0 when unknown). Returns 0, ASR_ENOENT (no plan), ASR_EINVAL
 * (the plan already has an outcome) or ASR_EDB.
 */
int asr_plan_learn(struct asr_store *st, const struct asr_incident *inc, bool verified,
                   int64_t mttr_ms, struct asr_err *err);

#endif
