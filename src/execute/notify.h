/*
 * notify.h - webhook notifications: what asr did, or needs a person for, POSTed as JSON to the
 * configured `notify.url` (docs/notify.md).
 *
 * Place in the pipeline: EXECUTE. The executor sends an event when a remediation ends
 * (remediated, failed, escalated), waits for approval, carries out a plan's `notify` step, or
 * finds a service's circuit open. The request is made by the asr-post helper (post.h), so the
 * daemon never loads libcurl and never blocks: asr_notify_send() returns at once and calls back
 * from the loop.
 *
 * Every string of an event passes the redactor first (log lines are attacker text and may carry
 * secrets), and the event carries its idempotency key twice: as the `Idempotency-Key` header and
 * as the body's "id". One call is one attempt: nothing here retries, and an interrupted send is
 * not repeated (at most once; the key lets a receiver drop a duplicate all the same).
 */
#ifndef ASR_EXECUTE_NOTIFY_H
#define ASR_EXECUTE_NOTIFY_H

#include "asr/config.h"
#include "asr/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Caps on an event's texts, in bytes after redaction (each cut ends in " [...]"). */
#define ASR_NOTIFY_SUMMARY_MAX 4096u /* summary and message */
#define ASR_NOTIFY_REASON_MAX 1024u  /* reason */
#define ASR_NOTIFY_NAME_MAX 256u     /* service, signature, branch, commit, pull_request */
#define ASR_NOTIFY_KEY_MAX 200       /* bytes of an idempotency key */

enum asr_notify_kind {
    ASR_NOTIFY_REMEDIATED,        /* a remediation removed the fault */
    ASR_NOTIFY_FAILED,            /* a remediation ran and did not remove it */
    ASR_NOTIFY_ESCALATED,         /* the incident needs a person (refused, escalate step, ...) */
    ASR_NOTIFY_AWAITING_APPROVAL, /* a plan waits for `asr approve` / `asr reject` */
    ASR_NOTIFY_NOTIFY,            /* a plan's notify step, with its message */
    ASR_NOTIFY_CIRCUIT_OPEN,      /* a service's remediations stopped: its circuit opened */
    ASR_NOTIFY_KINDS
};

/* "remediated", "failed", "escalated", "awaiting_approval", "notify", "circuit_open"; NULL for
 * anything else. */
const char *asr_notify_kind_name(enum asr_notify_kind kind);

/* What an event says. Ids of 0 and NULL strings are left out of the event; mttr_ms < 0 too. */
struct asr_notify_info {
    enum asr_notify_kind kind;
    int64_t incident, plan, remediation;
    const char *service;
    const char *signature;    /* the detector or signature that matched */
    const char *summary;      /* what happened: the fault line, the incident's title */
    const char *reason;       /* why it failed, escalated or waits */
    const char *message;      /* a notify step's message */
    int64_t mttr_ms;          /* remediated: first fault line to verified; < 0: none */
    const char *branch;       /* asr/incident-<id>, when a patch was committed */
    const char *commit;       /* its sha */
    const char *pull_request; /* the pull request's URL, when one was opened */
    int64_t at_ms;            /* when, wall clock ms; 0: now */
};

/*
 * The event as a JSON object (caller decrefs):
 *   {"kind", "time" (RFC 3339 UTC, ms), "source": "asr", "text" (one line for chat receivers),
 *    "service", "incident", "plan", "remediation", "signature", "summary", "reason", "message",
 *    "mttr_ms", "branch", "commit", "pull_request"}
 * (absent fields left out). Every string passes asr_post_text(): redacted, valid UTF-8, cut at
 * its cap. "id" is added by asr_notify_send. Returns NULL for an unknown kind or without memory.
 */
json_t *asr_notify_event(const struct asr_notify_info *info);

/*
 * A deterministic idempotency key for an event into buf: "asr-rem<remediation>-<kind>[-<step>]"
 * when remediation > 0, else "asr-inc<incident>-<kind>[-<step>]", else "asr-<kind>-<at>"; step
 * (a notify step's number) is left out when < 0. The same event asked again gets the same key,
 * so a receiver can drop a duplicate. Returns 0, or ASR_EINVAL (unknown kind, buf too small).
 */
int asr_notify_key(enum asr_notify_kind kind, int64_t incident, int64_t remediation, int step,
                   char *buf, size_t cap);

/* Whether the config has a notify block (notifications on). */
bool asr_notify_configured(const struct asr_config *cfg);

/* NULL when notifications are configured, else the reason a plan's notify step is refused. */
const char *asr_notify_refusal(const struct asr_config *cfg);

/* Where the helper is and where its request files go (the executor's env has both). */
struct asr_notify_env {
    const char *post_exe;  /* the asr-post binary, next to asr */
    const char *state_dir; /* request files go to <state_dir>/outbound/ (0600, removed) */
};

/* How a send ended. error is NULL on success; valid during the callback only. */
struct asr_notify_result {
    int rc;            /* 0: the webhook answered 2xx; ASR_ENET (unreachable, or it answered
                          an error status), ASR_ECONFIG (401, 403, 404: the URL or token is
                          wrong), ASR_ETIMEOUT, ASR_EINVAL (refused by the helper) */
    int status;        /* the HTTP status, 0 when none came */
    const char *error; /* one line: what failed, with the status and the receiver's words */
};

typedef void (*asr_notify_done_cb)(const struct asr_notify_result *r, void *data);

struct asr_notify_op;

/*
 * POSTs event (a JSON object, e.g. from asr_notify_event; its strings are redacted again here, so
 * an event built by hand is no leak) with "id": key added, to cfg->url, with the headers
 * Content-Type: application/json, Idempotency-Key: <key>, User-Agent: asr/<version>, and
 * "Authorization: Bearer ..." when cfg->token_env names one (read by the helper from its
 * environment), within cfg->timeout_ms. done runs once, from the loop; the operation then frees
 * itself. *out (may be NULL) is a handle for asr_notify_cancel until then.
 * key: 1..ASR_NOTIFY_KEY_MAX bytes of letters, digits and . _ : -.
 * Returns 0, or ASR_ECONFIG (no notify block: cfg->url is NULL), ASR_EINVAL (event not an
 * object, bad key), ASR_EIO, ASR_ESPAWN, ASR_ENOMEM with err set; done is not called then.
 */
int asr_notify_send(uv_loop_t *loop, const struct asr_notify_env *env,
                    const struct asr_notify_cfg *cfg, const json_t *event, const char *key,
                    asr_notify_done_cb done, void *data, struct asr_notify_op **out,
                    struct asr_err *err);

/* Kills the helper and frees op; done is not called. Accepts NULL. Only before done has run.
 * Whether the webhook got the event is then unknown (it is not sent again). */
void asr_notify_cancel(struct asr_notify_op *op);

/* The helper's pid while it runs, else 0 (tests). */
int asr_notify_pid(const struct asr_notify_op *op);

#endif
