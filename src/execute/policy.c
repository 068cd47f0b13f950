/*
 * policy.c - the policy gate and the circuit of a service (see policy.h for the order of the
 * checks and when the circuit opens and closes; docs/execution.md says why).
 *
 * Everything is decided from the store: the remediations (remediations.c) and the supervisor's
 * events (service.c writes service.failed, slot.exited and deploy.switched). So the gate holds
 * no state of its own, a restart of asr decides as before it, and the unit test can set up any
 * storm with a few rows.
 */
#include "execute/policy.h"

#include "asr/remediation.h"
#include "asr/timeutil.h"

#include <stdio.h>
#include <string.h>

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

/* "2026-11-28T06:06:26Z": the circuit's times, to the second, as the log shows them. */
static void when(int64_t ms, char *buf, size_t cap)
{
    char full[32];
    if (asr_time_format_utc(ms, full, sizeof(full)) < 20) {
        snprintf(buf, cap, "?");
        return;
    }
    snprintf(buf, cap, "%.19sZ", full);
}

/* The circuit from what the store knows, with the counts the gate has already read. */
static int circuit(struct asr_store *st, const struct asr_service_cfg *svc, int64_t now,
                   const struct asr_remediation_counts *c, bool *open, int64_t *since,
                   bool *announced, char *why, size_t cap, struct asr_err *err)
{
    const struct asr_policy_cfg *p = &svc->policy;
    const char *name = svc->name;
    struct asr_circuit_facts f;
    int rc = asr_remediation_circuit_facts(st, name, now, &f, err);
    if (rc != 0)
        return rc;
    bool restarts = f.failed_at > 0;
    bool budget = c->acted >= p->budget_remediations;
    bool failed_fix = f.rem_id > 0 && f.rem_finished > f.switched_at && f.crashes_during > 0 &&
                      f.calm_after < svc->restart.window_ms;
    *open = restarts || budget || failed_fix;
    *since = 0;
    *announced = false;
    why[0] = '\0';
    if (!*open)
        return 0;
    /* Opened by the oldest reason that still holds. */
    int64_t t = INT64_MAX;
    if (restarts && f.failed_at < t)
        t = f.failed_at;
    if (budget && c->last_acted > 0 && c->last_acted < t)
        t = c->last_acted;
    if (failed_fix && f.rem_finished < t)
        t = f.rem_finished;
    *since = t != INT64_MAX ? t : now;
    /* A failed fix announced the circuit itself: its escalation names it (asr_policy_run_ended).
     * Otherwise the first refusal since it opened does. */
    int64_t notes = 0;
    if (!failed_fix && (rc = asr_remediation_circuit_notes(st, name, *since, &notes, err)) != 0)
        return rc;
    *announced = failed_fix || notes > 0;
    /* Why, then what closes it: the reasons that hold, in the order an operator acts on them. */
    size_t l = 0;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (l < cap)                                                                               \
            l += (size_t)snprintf(why + l, cap - l, __VA_ARGS__);                                  \
    } while (0)
    if (restarts)
        ADD("%s's restart budget is spent (%.110s): it is down and not restarted", name,
            f.failed_why);
    if (failed_fix)
        ADD("%sremediation %lld (incident %lld) did not remove the fault and %s crashed %lld "
            "times while it ran",
            l > 0 ? "; " : "", (long long)f.rem_id, (long long)f.rem_incident, name,
            (long long)f.crashes_during);
    if (budget)
        ADD("%sthe remediation budget of %s is spent: %lld remediations within %lld s",
            l > 0 ? "; " : "", name, (long long)c->acted, (long long)(p->budget_per_ms / 1000));
    /* It closes when none holds: a deploy ends the first two, the calm the second, and the
     * window the third. */
    ADD("; asr acts on no fault of %s until ", name);
    if (restarts || failed_fix)
        ADD("an operator deploys (asr deploy %s --ref FIX, or asr rollback %s)", name, name);
    if (failed_fix && !restarts)
        ADD(" or it runs %d s without a crash", svc->restart.window_ms / 1000);
    if (budget)
        ADD("%sfewer than %d remediations ran in the last %lld s",
            restarts || failed_fix ? ", and " : "", p->budget_remediations,
            (long long)(p->budget_per_ms / 1000));
#undef ADD
    return 0;
}

int asr_policy_circuit(struct asr_store *st, const struct asr_service_cfg *svc, int64_t now,
                       bool *open, int64_t *since, char *why, size_t cap, struct asr_err *err)
{
    struct asr_remediation_counts c;
    int rc = asr_remediation_counts(st, svc->name, "", now - svc->policy.budget_per_ms, &c, err);
    bool announced;
    return rc != 0 ? rc : circuit(st, svc, now, &c, open, since, &announced, why, cap, err);
}

int asr_policy_gate(struct asr_store *st, const struct asr_gate_input *in, enum asr_gate *out,
                    char *why, size_t cap, struct asr_err *err)
{
    const struct asr_policy_cfg *p = &in->svc->policy;
    bool quiet = false;
    why[0] = '\0';
    struct asr_remediation_counts c;
    int rc =
        asr_remediation_counts(st, in->svc->name, in->fingerprint != NULL ? in->fingerprint : "",
                               in->now - p->budget_per_ms, &c, err);
    if (rc != 0)
        return rc;
    int64_t others = c.in_flight - (in->self_id > 0 ? 1 : 0);
    bool open = false, announced = false;
    int64_t since = 0;
    char cw[400];
    if (others <= 0 && (rc = circuit(st, in->svc, in->now, &c, &open, &since, &announced, cw,
                                     sizeof(cw), err)) != 0)
        return rc;
    *out = ASR_GATE_REFUSE;
    if (others > 0) {
        /* In a storm the incidents come in bursts (a fatal line, then the exit): each one held
         * on the remediation in flight, whose outcome is escalated once, with them. */
        quiet = true;
        if (c.in_flight_id > 0 && c.in_flight_id != in->self_id)
            snprintf(why, cap,
                     "held on remediation %lld (incident %lld), in flight: one at a time per "
                     "service; its outcome is escalated with this incident",
                     (long long)c.in_flight_id, (long long)c.in_flight_incident);
        else
            snprintf(why, cap, "another remediation of %s is in flight (one at a time per service)",
                     in->svc->name);
    } else if (open) {
        char t[32];
        when(since, t, sizeof(t));
        quiet = announced;
        snprintf(why, cap, "%s %s: %s", announced ? "circuit open since" : "circuit opened at", t,
                 cw);
    } else if (in->only_escalate) {
        *out = ASR_GATE_ESCALATE;
        snprintf(why, cap, "the plan has nothing to run but an escalation");
    } else if (in->unhealthy >= 2 && 2 * in->unhealthy >= in->services) {
        snprintf(why, cap,
                 "global freeze: %zu of %zu services are unhealthy, a shared dependency is "
                 "likely down and acting would amplify it",
                 in->unhealthy, in->services);
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
    if (in->quiet != NULL)
        *in->quiet = quiet;
    return 0;
}

int asr_policy_run_ended(struct asr_store *st, const struct asr_service_cfg *svc, int64_t rem_id,
                         bool ok, int64_t now, char *note, size_t cap, struct asr_err *err)
{
    note[0] = '\0';
    int64_t held[8];
    size_t n = 0;
    int rc = asr_remediation_held(st, rem_id, held, sizeof(held) / sizeof(held[0]), &n, err);
    if (rc != 0)
        return rc;
    char list[160] = "";
    size_t l = 0;
    for (size_t i = 0; i < n && i < sizeof(held) / sizeof(held[0]) && l < sizeof(list); i++)
        l += (size_t)snprintf(list + l, sizeof(list) - l, "%s%lld", i > 0 ? ", " : "",
                              (long long)held[i]);
    if (n > sizeof(held) / sizeof(held[0]) && l < sizeof(list))
        snprintf(list + l, sizeof(list) - l, " and %zu more", n - sizeof(held) / sizeof(held[0]));
    if (ok) {
        if (n > 0)
            snprintf(note, cap,
                     "incident%s %s of %s escalated to a person: held while remediation %lld ran, "
                     "which removed its own fault; theirs are not verified gone",
                     n > 1 ? "s" : "", list, svc->name, (long long)rem_id);
        return note[0] != '\0';
    }
    bool open = false;
    int64_t since = 0;
    char why[400];
    if ((rc = asr_policy_circuit(st, svc, now, &open, &since, why, sizeof(why), err)) != 0)
        return rc;
    size_t k = 0;
    if (open) {
        char t[32];
        when(since, t, sizeof(t));
        k += (size_t)snprintf(note, cap, "; the circuit of %s is open since %s: %s", svc->name, t,
                              why);
    }
    if (n > 0 && k < cap)
        snprintf(note + k, cap - k, "; held on it: incident%s %s", n > 1 ? "s" : "", list);
    return note[0] != '\0';
}
