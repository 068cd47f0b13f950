/*
 * planner.h - the daemon's planner: every incident it opens gets a plan, stored in the plans
 * table (plan.h), without ever blocking the loop on a provider.
 *
 * STRATEGY stage (docs/planning.md, "In the daemon"). When the detector opens an incident, the
 * knowledge base and the fallbacks decide at once (asr_plan_make: a few SQLite queries). When
 * nothing known fits and an LLM is configured, the question goes to one long-lived asr-llm
 * worker (llm_worker.h, so its client's circuit breaker sees every question) without blocking
 * the loop, and the plan is stored when the answer is in. At most ASR_PLANNER_IN_FLIGHT questions
 * are in flight and ASR_PLANNER_QUEUE wait; beyond that a plan escalates at once and says the LLM
 * was too busy (a flood of novel faults must not become a flood of paid calls). Only root incidents
 * (not grouped under a parent) are put to the LLM: a grouped one is planned from knowledge, and its
 * escalation names its parent.
 */
#ifndef ASR_STRATEGY_PLANNER_H
#define ASR_STRATEGY_PLANNER_H

#include "asr/config.h"
#include "asr/error.h"
#include "asr/incident.h"
#include "asr/store.h"

#include <uv.h>

#define ASR_PLANNER_IN_FLIGHT 2
#define ASR_PLANNER_QUEUE 16

struct asr_planner;

/* A planner on loop writing to st, with cfg (borrowed: call asr_planner_set_config before the
 * config it was given is freed); llm_exe is the asr-llm worker binary. Returns 0 or
 * ASR_ENOMEM. */
int asr_planner_create(uv_loop_t *loop, struct asr_store *st, const struct asr_config *cfg,
                       const char *llm_exe, struct asr_planner **out, struct asr_err *err);
/* A new config (after a reload). The worker makes a new client when the llm section differs
 * (questions then in flight end as cancelled, and their plans escalate, saying so). */
void asr_planner_set_config(struct asr_planner *p, const struct asr_config *cfg);
/* Called after each plan is stored (the executor takes it from there). */
void asr_planner_on_plan(struct asr_planner *p,
                         void (*cb)(void *data, int64_t plan_id, int64_t incident_id), void *data);
/* Plans the incident with this id (read back from the store). Errors are logged. */
void asr_planner_incident(struct asr_planner *p, int64_t incident_id);
/* Questions in flight and waiting (for status and tests). */
size_t asr_planner_pending(const struct asr_planner *p);
/* Cancels what is in flight (their plans escalate, saying so) and frees the planner once its
 * handles are closed; the loop must run on afterwards. NULL is fine. */
void asr_planner_destroy(struct asr_planner *p);

#endif
