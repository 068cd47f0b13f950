/*
 * remediation.h - remediations and their journal in asr.db (EXECUTE stage, docs/execution.md).
 *
 * A remediation is one attempt to carry out one stored plan (plan.h): at most one per plan, so a
 * plan is never carried out twice. Its journal holds, for every step, an intent row written
 * before the step acts and a result row written after, each with an idempotency key
 * ("rem:<id>:step:<n>"). After a crash, a step with an intent and no result is the one that was
 * interrupted: the executor finds it there and decides from it, instead of acting twice.
 */
#ifndef ASR_REMEDIATION_H
#define ASR_REMEDIATION_H

#include "asr/error.h"
#include "asr/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* States. awaiting_approval and running are "in flight"; the others are final. */
#define ASR_REM_AWAITING "awaiting_approval"
#define ASR_REM_RUNNING "running"
#define ASR_REM_SUCCEEDED "succeeded"
#define ASR_REM_FAILED "failed"
#define ASR_REM_ESCALATED "escalated"
#define ASR_REM_REJECTED "rejected"
#define ASR_REM_SHADOWED "shadowed"
#define ASR_REM_REFUSED "refused"

struct asr_remediation {
    int64_t id, plan_id, incident_id;
    char *service, *fingerprint, *state, *reason, *approved_by;
    int64_t created_at, started_at, finished_at; /* wall ms; 0 when not yet */
};

/* Creates the remediation of a plan in state (with reason, may be NULL), or, if the plan already
 * has one, leaves it as it is. *out gets the row either way; *created says which. */
int asr_remediation_open(struct asr_store *st, int64_t plan_id, int64_t incident_id,
                         const char *service, const char *fingerprint, const char *state,
                         const char *reason, struct asr_remediation *out, bool *created,
                         struct asr_err *err);
/* Moves a remediation to state, with reason (may be NULL) and who approved it (may be NULL).
 * Only an in-flight remediation moves: ASR_EINVAL (err says its state) otherwise. Entering
 * running sets started_at; a final state sets finished_at. */
int asr_remediation_set(struct asr_store *st, int64_t id, const char *state, const char *reason,
                        const char *approved_by, struct asr_err *err);
int asr_remediation_get(struct asr_store *st, int64_t id, struct asr_remediation *out,
                        struct asr_err *err);
/* The latest remediation of an incident; ASR_ENOENT when there is none. */
int asr_remediation_of_incident(struct asr_store *st, int64_t incident_id,
                                struct asr_remediation *out, struct asr_err *err);
/* In-flight remediations (awaiting approval or running), oldest first, for a restart. */
int asr_remediation_in_flight_all(struct asr_store *st, struct asr_remediation **out, size_t *n,
                                  struct asr_err *err);
/* Final remediations whose finishing (learn, resolve, announce) was cut short by a stop of asr:
 * a journal row of action "finish" with an intent and no result. Oldest first. */
int asr_remediation_unfinished(struct asr_store *st, struct asr_remediation **out, size_t *n,
                               struct asr_err *err);
void asr_remediation_free(struct asr_remediation *r);
void asr_remediations_free(struct asr_remediation *v, size_t n);

/* What the policy gate counts. */
struct asr_remediation_counts {
    int64_t in_flight;     /* the service's remediations awaiting approval or running */
    int64_t acted;         /* the service's remediations that ran, created since `since` */
    int64_t last_finished; /* when the fingerprint's last remediation that ran finished, 0 */
    int64_t last_acted;    /* when the newest of the `acted` ones started, 0 */
    int64_t in_flight_id, in_flight_incident; /* the oldest in flight and its incident, 0 */
};
int asr_remediation_counts(struct asr_store *st, const char *service, const char *fingerprint,
                           int64_t since, struct asr_remediation_counts *out, struct asr_err *err);

/*
 * What the circuit of a service is decided from (execute/policy.h, docs/execution.md "Storms and
 * the circuit"): the supervisor's side of a storm read from the service's events, and the
 * newest remediation of the service that ran and did not remove its fault. All times are the
 * store's wall ms; 0 means none.
 */
struct asr_circuit_facts {
    int64_t switched_at;  /* the newest deploy.switched (a deploy, a rollback, asr's start) */
    int64_t failed_at;    /* the newest service.failed after it: the restart budget is spent */
    char failed_why[200]; /* that event's detail ("20 restarts within 60000 ms; last: ...") */
    int64_t last_crash;   /* the newest slot.exited (an exit asr did not ask for) */
    int64_t rem_id;       /* the newest remediation that ran and ended failed or escalated */
    int64_t rem_incident; /* ... its incident */
    int64_t rem_started, rem_finished;
    int64_t crashes_during; /* slot.exited events while it ran */
    int64_t calm_after;     /* the longest time without a slot.exited from rem_finished to now (to
                               failed_at when the service is failed: it does not run, so it is not
                               calm) */
};
/* Fills *out for service at now. Reads the service's events back to the newest deploy.switched
 * (or to the remediation's start when that is older). Returns 0 or ASR_EDB. */
int asr_remediation_circuit_facts(struct asr_store *st, const char *service, int64_t now,
                                  struct asr_circuit_facts *out, struct asr_err *err);
/* How many refusals of service made since `since` say the circuit is open (their reason starts
 * with "circuit open"): 0 means the circuit has not been announced since then. */
int asr_remediation_circuit_notes(struct asr_store *st, const char *service, int64_t since,
                                  int64_t *out, struct asr_err *err);
/* The incidents still open whose remediation was refused while remediation rem_id was in flight
 * (their reason starts with "held on remediation <rem_id> "), oldest first, at most cap of them
 * in ids; *n gets how many there are in all. Returns 0 or ASR_EDB. */
int asr_remediation_held(struct asr_store *st, int64_t rem_id, int64_t *ids, size_t cap, size_t *n,
                         struct asr_err *err);

/* The journal. phase is "intent" or "result"; ok is ignored for an intent. detail is JSON text
 * (NULL: {}). Writing the same (key, phase) twice is refused with ASR_EINVAL, never repeated. */
int asr_journal_write(struct asr_store *st, int64_t remediation_id, int step, const char *action,
                      const char *phase, const char *key, bool ok, const char *detail,
                      struct asr_err *err);
/* One journal row. */
struct asr_journal_row {
    int64_t at;
    int step;
    bool ok;       /* results only */
    char phase[8]; /* "intent" | "result" */
    char *action, *key, *detail;
};
/* A remediation's journal, in order. The caller frees with asr_journal_rows_free. */
int asr_journal_list(struct asr_store *st, int64_t remediation_id, struct asr_journal_row **out,
                     size_t *n, struct asr_err *err);
void asr_journal_rows_free(struct asr_journal_row *v, size_t n);

/* Whether (key, phase) is in the journal; *ok gets the result's ok. */
int asr_journal_has(struct asr_store *st, const char *key, const char *phase, bool *found, bool *ok,
                    struct asr_err *err);

#endif
