/*
 * policy.h - the policy gate: may this plan run now, and how (EXECUTE stage, docs/execution.md).
 *
 * Checked before a plan runs, in this order; the first that applies decides:
 *   1. a plan that only escalates:                       ESCALATE (nothing to run)
 *   2. another remediation of the service in flight:     REFUSE (one at a time per service)
 *   3. two or more services unhealthy, and at least      REFUSE (a shared dependency is down;
 *      half of all:                                       acting would amplify it: global
 *                                                         freeze). One failing service is the
 *                                                         fault being fixed, not a freeze.
 *   4. the service's budget spent (policy.budget):       REFUSE
 *   5. the fingerprint remediated within policy.cooldown: REFUSE
 *   6. policy.shadow:                                    SHADOW (record, do nothing)
 *   7. the plan requires approval:                       APPROVAL (wait for asr approve/reject;
 *                                                         an approval never expires into a no)
 *   8. otherwise:                                        RUN
 * A refusal escalates the incident, with the reason: nothing is dropped silently.
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
};

/* Decides; why gets one line for a refusal or escalation. Returns 0 or ASR_EDB. */
int asr_policy_gate(struct asr_store *st, const struct asr_gate_input *in, enum asr_gate *out,
                    char *why, size_t cap, struct asr_err *err);
const char *asr_gate_name(enum asr_gate g);

#endif
