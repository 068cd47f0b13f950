/*
 * policy.h - the policy gate: may this plan run now, and how (EXECUTE stage, docs/execution.md).
 *
 * Checked before a plan runs, in this order; the first that applies decides:
 *   1. another remediation of the service in flight:     REFUSE, held on it (one at a time per
 *                                                         service): its outcome covers this
 *                                                         incident, so it is not escalated now
 *   2. the service's circuit is open (below):            REFUSE, recorded; escalated only by the
 *                                                         first refusal after it opened
 *   3. a plan that only escalates:                       ESCALATE (nothing to run)
 *   4. two or more services unhealthy, and at least      REFUSE (a shared dependency is down;
 *      half of all:                                       acting would amplify it: global
 *                                                         freeze). One failing service is the
 *                                                         fault being fixed, not a freeze.
 *   5. the fingerprint remediated within policy.cooldown: REFUSE
 *   6. policy.shadow:                                    SHADOW (record, do nothing)
 *   7. the plan requires approval:                       APPROVAL (wait for asr approve/reject;
 *                                                         an approval never expires into a no)
 *   8. otherwise:                                        RUN
 * A refusal escalates the incident, with the reason: nothing is dropped silently. The two
 * exceptions say where the escalation is instead (*quiet, below): an incident held on a
 * remediation in flight is covered by that remediation's outcome (asr_policy_run_ended), and
 * an incident refused by an open circuit by the circuit's one escalation.
 *
 * The circuit of a service (a storm: a service crashing over and over) opens at the first of:
 *   - its restart budget is spent: the supervisor marked it failed (restart.budget restarts
 *     within restart.window_ms) and no deploy has switched since;
 *   - its remediation budget is spent: policy.budget remediations ran within budget.per;
 *   - a remediation of it ran, did not remove the fault, and the service crashed while it ran:
 *     asr's own fix did not hold.
 * It closes when none of these holds any more: a deploy switched since (asr deploy, asr
 * rollback: an operator took over), the budget's window has passed, and the service has gone
 * restart.window_ms without a crash since that remediation ended.
 */
#ifndef ASR_EXECUTE_POLICY_H
#define ASR_EXECUTE_POLICY_H

#include "asr/config.h"
#include "asr/error.h"
#include "asr/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum asr_gate {
    ASR_GATE_RUN,
    ASR_GATE_APPROVAL,
    ASR_GATE_SHADOW,
    ASR_GATE_REFUSE,
    ASR_GATE_ESCALATE
};

struct asr_gate_input {
    const struct asr_service_cfg *svc; /* required */
    const char *fingerprint;           /* the incident's */
    bool requires_approval;            /* the plan's */
    bool only_escalate;                /* the plan has no step but escalate */
    size_t services, unhealthy;        /* across the daemon, for the global freeze */
    int64_t now;                       /* wall ms */
    int64_t self_id; /* the remediation being decided (not counted as in flight), or 0 */
    /* Optional output (NULL: every refusal is escalated). Set true for a refusal that must be
     * recorded but not escalated again: an incident held on a remediation in flight, or one
     * more incident of a service whose open circuit was already escalated. */
    bool *quiet;
};

/* Decides; why gets one line for a refusal or escalation. Returns 0 or ASR_EDB. */
int asr_policy_gate(struct asr_store *st, const struct asr_gate_input *in, enum asr_gate *out,
                    char *why, size_t cap, struct asr_err *err);
const char *asr_gate_name(enum asr_gate g);

/*
 * The service's circuit at now: *open, and if open, since when (*since, wall ms) and why (one
 * line in why, naming the budget or the remediation, and what closes it). Returns 0 or ASR_EDB.
 */
int asr_policy_circuit(struct asr_store *st, const struct asr_service_cfg *svc, int64_t now,
                       bool *open, int64_t *since, char *why, size_t cap, struct asr_err *err);

/*
 * Remediation rem_id of svc has ended (ok: it removed the fault), and its state is stored. note
 * gets what the executor's log line must say: after a failure, what to append to the escalation
 * (the circuit, if that failure left it open, and the incidents held on the run); after a
 * success, a whole line that escalates the incidents held on the run that are still open (their
 * faults were not verified gone). Returns 1 when note holds something, 0 when it is empty, or
 * ASR_EDB.
 */
int asr_policy_run_ended(struct asr_store *st, const struct asr_service_cfg *svc, int64_t rem_id,
                         bool ok, int64_t now, char *note, size_t cap, struct asr_err *err);

#endif
