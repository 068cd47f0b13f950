/*
 * executor.h - where a plan is carried out (EXECUTE stage, docs/execution.md).
 *
 * The daemon hands every plan it stores to the executor. The policy gate (policy.h) decides:
 * escalate, refuse (and escalate), record in shadow mode, wait for approval, or run. A run
 * carries out the plan's steps in order as a ladder: after each step that changes the service
 * (restart, rollback, deploy) the fault is verified gone or not (the service healthy, and no
 * new fault line of the incident, for the service's deploy.verify_window_ms); the first step that
 * removes it ends the run (succeeded), and if none does the run has failed and the incident
 * escalates. Every step is journaled before it acts and after (asr/remediation.h). The outcome goes
 * back to the knowledge base (asr_plan_learn) and a success resolves the incident through the
 * detector, so its cooldown starts.
 *
 * Actions carried out today: restart (a blue/green restart: the active release deployed again,
 * without a rebuild), rollback (to the last good release), deploy (a ref), patch (the edits
 * committed on asr/incident-<id> by asr-git, on the active release's commit, then deployed:
 * build, test, blue/green), notify (an event to the webhook, then the next step; refused at the
 * gate when no webhook is configured), escalate. Verification replays the playbook's request
 * (with X-Asr-Verification: 1, through the proxy) when the plan has one, then watches health
 * and the incident for the window. A patch that does not remove the fault (its build, tests,
 * deployment or verification failed) is reverted with a new commit, and rolled back if it was
 * deployed, before the next step.
 *
 * After a crash, a run found in flight is resumed from its journal once its service is up
 * (asr_executor_resume; docs/execution.md, "Restarting in the middle of a run"): nothing that
 * acted is repeated, an unfinished undo is finished, and what runs is verified again.
 */
#ifndef ASR_EXECUTE_EXECUTOR_H
#define ASR_EXECUTE_EXECUTOR_H

#include "asr/config.h"
#include "asr/error.h"
#include "asr/store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct asr_service;

/* What the executor needs from the daemon. */
struct asr_executor_env {
    uv_loop_t *loop;
    struct asr_store *st;
    const struct asr_config *cfg; /* borrowed; asr_executor_set_config before it is freed */
    struct asr_service *(*find)(void *data, const char *name);
    /* Services in all, and how many are unhealthy now (for the global freeze). */
    void (*health)(void *data, size_t *services, size_t *unhealthy);
    /* Resolves an incident the way an operator would (the detector starts its cooldown). */
    int (*resolve)(void *data, int64_t incident_id, const char *reason, struct asr_err *err);
    void *data;
    const char *git_exe;   /* the asr-git helper (patch commits, reverts, pushes) */
    const char *post_exe;  /* the asr-post helper (webhooks, pull requests) */
    const char *state_dir; /* where the helpers' request files go */
};

struct asr_executor;

int asr_executor_create(const struct asr_executor_env *env, struct asr_executor **out,
                        struct asr_err *err);
void asr_executor_set_config(struct asr_executor *ex, const struct asr_config *cfg);
/* A plan was stored for an incident: gate it, and run it if the gate says so. */
void asr_executor_plan(struct asr_executor *ex, int64_t plan_id, int64_t incident_id);
/* An operator's decision on the incident's remediation awaiting approval. Returns 0, ASR_ENOENT
 * (none), or ASR_EINVAL (it is not awaiting approval; err says its state). */
int asr_executor_decide(struct asr_executor *ex, int64_t incident_id, bool approve, const char *who,
                        struct asr_err *err);
/* At start, before the services start: remediations left running by a stopped or crashed asr,
 * and finished runs whose bookkeeping was cut short, are picked up from their journal (see
 * above); each goes on once its service's start has ended. One that cannot be (its plan was
 * replaced) ends failed and escalates. */
void asr_executor_resume(struct asr_executor *ex);
/* Runs in flight are abandoned (their journal says where); frees the executor. */
void asr_executor_destroy(struct asr_executor *ex);

#endif
