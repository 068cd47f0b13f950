/*
 * policy.c - the policy gate (see policy.h for the order of the checks).
 */
#include "execute/policy.h"

#include "asr/remediation.h"

#include <stdio.h>

const char *asr_gate_name(enum asr_gate g)
{
    switch (g) {
    case ASR_GATE_RUN:
        return "run";
    case ASR_GATE_APPROVAL:
        return "approval";
    case ASR_GATE_SHADOW:
        return "shadow";
    case ASR_GATE_REFUSE:
        return "refuse";
    case ASR_GATE_ESCALATE:
        return "escalate";
    }
    return "?";
}

int asr_policy_gate(struct asr_store *st, const struct asr_gate_input *in, enum asr_gate *out,
                    char *why, size_t cap, struct asr_err *err)
{
    const struct asr_policy_cfg *p = &in->svc->policy;
    why[0] = '\0';
    if (in->only_escalate) {
        *out = ASR_GATE_ESCALATE;
        snprintf(why, cap, "the plan has nothing to run but an escalation");
        return 0;
    }
    struct asr_remediation_counts c;
    int rc = asr_remediation_counts(st, in->svc->name, in->fingerprint, in->now - p->budget_per_ms,
                                    &c, err);
    if (rc != 0)
        return rc;
    int64_t others = c.in_flight - (in->self_id > 0 ? 1 : 0);
    *out = ASR_GATE_REFUSE;
    if (others > 0) {
        snprintf(why, cap, "another remediation of %s is in flight (one at a time per service)",
                 in->svc->name);
    } else if (in->unhealthy >= 2 && 2 * in->unhealthy >= in->services) {
        snprintf(why, cap,
                 "global freeze: %zu of %zu services are unhealthy, a shared dependency is "
                 "likely down and acting would amplify it",
                 in->unhealthy, in->services);
    } else if (c.acted >= p->budget_remediations) {
        snprintf(why, cap, "the budget of %s is spent: %lld remediations within %lld s",
                 in->svc->name, (long long)c.acted, (long long)(p->budget_per_ms / 1000));
    } else if (c.last_finished > 0 && in->now - c.last_finished < p->cooldown_ms) {
        snprintf(why, cap, "this fault was remediated %lld s ago; its cooldown is %lld s",
                 (long long)((in->now - c.last_finished) / 1000),
                 (long long)(p->cooldown_ms / 1000));
    } else if (p->shadow) {
        *out = ASR_GATE_SHADOW;
        snprintf(why, cap, "shadow mode: recorded, not carried out");
    } else if (in->requires_approval) {
        *out = ASR_GATE_APPROVAL;
        snprintf(why, cap, "the plan needs an operator's approval (asr approve / asr reject)");
    } else {
        *out = ASR_GATE_RUN;
    }
    return 0;
}
