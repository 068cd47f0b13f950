/*
 * outbound.h - what the executor sends off the host: events to the webhook (notify.c) and a
 * verified fix published as a pushed branch and a pull request (patch.c, github.c).
 *
 * Place in the pipeline: EXECUTE, after a decision or a run (docs/notify.md, docs/patching.md).
 * Every send is journalled like a step: an intent row before it (its key names the event, so a
 * second intent for the same event is refused by the store and nothing is sent twice), a result
 * row after. A send cut short by a crash keeps its intent row only and is never repeated: at
 * most once. Everything sent passes the redactor on the way (notify.c, github.c).
 */
#ifndef ASR_EXECUTE_OUTBOUND_H
#define ASR_EXECUTE_OUTBOUND_H

#include "asr/config.h"
#include "asr/error.h"
#include "asr/store.h"
#include "execute/github.h"
#include "execute/notify.h"

#include <stdint.h>
#include <uv.h>

struct asr_outbound_env {
    uv_loop_t *loop;
    struct asr_store *st;
    const char *post_exe;  /* the asr-post helper (webhooks, the GitHub API) */
    const char *git_exe;   /* the asr-git helper (pushes) */
    const char *state_dir; /* where the helpers' request files go */
};

struct asr_outbound;

int asr_outbound_create(const struct asr_outbound_env *env, struct asr_outbound **out,
                        struct asr_err *err);
/* Cancels what is in flight (their journal keeps the intent only: never sent again; their done
 * callbacks get ASR_ECANCELED) and frees o. NULL is fine. */
void asr_outbound_destroy(struct asr_outbound *o);

/* rc 0 when the receiver took it; detail is one line for the journal and the log. */
typedef void (*asr_outbound_cb)(int rc, const char *detail, void *data);

/*
 * Sends an event to cfg's webhook, journalled under info->remediation (required) as
 * "rem:<id>:notify:<kind>[:<step>]" (step < 0: none). Returns 0 when it was sent (done, may be
 * NULL, is called once), 1 when nothing was sent (notifications are off, or the event was sent
 * or tried before: done is not called), or an ASR_E* code (logged; done not called).
 */
int asr_outbound_event(struct asr_outbound *o, const struct asr_config *cfg,
                       const struct asr_notify_info *info, int step, asr_outbound_cb done,
                       void *data);

/*
 * Publishes a verified fix when the service has git.remote: pushes asr/incident-<pr->incident>
 * at pr->commit, then, with git.github.repo, opens (or finds) its pull request. Journalled under
 * remediation as "rem:<id>:push" and "rem:<id>:pull_request". Runs on its own; failures are
 * logged and journalled, never undo the fix.
 */
void asr_outbound_publish(struct asr_outbound *o, const struct asr_service_cfg *svc,
                          int64_t remediation, const struct asr_github_pr_info *pr);

#endif
