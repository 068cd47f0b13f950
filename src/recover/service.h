/*
 * service.h - one managed service: its releases, blue/green slots, proxy, health checks,
 * deployments and crash restarts (RECOVER stage).
 *
 * Lifecycle of a deployment (asr_service_deploy):
 *   resolve ref -> release (export the commit, build, test; skipped when already built)
 *   -> start it in the idle slot -> healthy within healthy_timeout_ms (rise successes)
 *   -> switch the proxy -> drain the old slot -> SIGTERM, grace, SIGKILL -> release good.
 * If the new slot does not become healthy it is stopped, the old slot keeps serving, the release
 * is marked bad and the deployment is recorded as rolled back. One deployment runs at a time per
 * service; another request gets ASR_EBUSY.
 *
 * A crash of the active slot is restarted in place with exponential back-off (see
 * docs/runtime.md); past the restart budget the service is marked failed.
 */
#ifndef ASR_RECOVER_SERVICE_H
#define ASR_RECOVER_SERVICE_H

#include "asr/config.h"
#include "asr/error.h"
#include "asr/store.h"

#include <jansson.h>
#include <uv.h>

struct asr_service;

/* What every service of a daemon shares. Owned by the daemon; outlives its services. */
struct asr_runtime_ctx {
    uv_loop_t *loop;
    struct asr_store *store;
    const char *state_dir;
    const char *git_exe;    /* the asr-git helper, run for git work (src/cli/asr_git.c) */
    size_t max_connections; /* per service proxy; 0: the proxy's default */
    /* Called for every line a slot writes (stream 1 stdout, 2 stderr), with the commit of the
     * slot's release; may be NULL. */
    void (*on_line)(struct asr_service *svc, const char *slot, const char *commit, int stream,
                    const char *line, size_t len, void *data);
    /* Called when a slot's process exits without being asked to (a crash, or a failed start):
     * status is the exit code or 128 + signal, term_signal the signal or 0. May be NULL. */
    void (*on_exit)(struct asr_service *svc, const char *slot, const char *commit, int status,
                    int term_signal, void *data);
    void *on_line_data; /* data of both callbacks */
};

/* progress: a short human line; done: rc 0 with a JSON result (borrowed), or an error message. */
typedef void (*asr_op_progress_cb)(const char *msg, void *data);
typedef void (*asr_op_done_cb)(int rc, const char *msg, json_t *result, void *data);

/* Creates the service and binds its proxy; no slot runs yet. */
int asr_service_create(const struct asr_runtime_ctx *ctx, const struct asr_service_cfg *cfg,
                       struct asr_service **out, struct asr_err *err);
/* Brings the service up: the release that was serving when asr last stopped, else HEAD. */
int asr_service_start(struct asr_service *svc, asr_op_done_cb done, void *data);
/* Deploys ref (NULL: HEAD). kind is "deploy" or "start". */
int asr_service_deploy(struct asr_service *svc, const char *ref, const char *kind,
                       asr_op_progress_cb progress, asr_op_done_cb done, void *data,
                       struct asr_err *err);
/* Cuts over to the newest good release other than the active one, without rebuilding. */
int asr_service_rollback(struct asr_service *svc, asr_op_progress_cb progress, asr_op_done_cb done,
                         void *data, struct asr_err *err);
/* A new JSON object describing the service (caller decrefs). */
json_t *asr_service_status(const struct asr_service *svc);
const char *asr_service_name(const struct asr_service *svc);
/* Takes a reloaded config for this service (same name and listen address). The new argv and
 * timeouts apply from the next start or deployment. cfg must outlive the service or the next
 * call. */
void asr_service_update_config(struct asr_service *svc, const struct asr_service_cfg *cfg);
/* Stops everything (in-flight deployment cancelled, slots drained and stopped, proxy closed);
 * cb runs when all processes have exited. */
void asr_service_shutdown(struct asr_service *svc, void (*cb)(void *data), void *data);
/* Frees a service after asr_service_shutdown has completed. Accepts NULL. */
void asr_service_destroy(struct asr_service *svc);

#endif
