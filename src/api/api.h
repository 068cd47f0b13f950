/*
 * api.h - the operator's API (docs/api.md): one route table behind two doors.
 *
 *   HTTP (api.listen in the config): JSON under /api/v1, GET /metrics, the event stream
 *   GET /api/v1/events, and the dashboard at /. Mutating calls need the bearer token from the
 *   environment variable api.token_env (none configured: they are refused); reads are open to
 *   loopback clients and need the token from anywhere else.
 *   The control socket (<state_dir>/asr.sock, mode 0600): the CLI sends {"method", "path",
 *   "body"} and gets {"status", "body"} back. Only the socket's owner can connect, so it needs
 *   no token; it is how `asr approve`, `asr deploy` and the rest reach a running daemon.
 *
 * Reads come from the store; anything that acts goes through the daemon's hooks below, the same
 * ones the daemon uses itself.
 */
#ifndef ASR_API_API_H
#define ASR_API_API_H

#include "asr/config.h"
#include "asr/error.h"
#include "asr/store.h"

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

struct asr_api;
struct asr_control_conn;

/* Progress and completion of a deploy or rollback started through the API. */
typedef void (*asr_api_progress_cb)(const char *msg, void *data);
typedef void (*asr_api_done_cb)(int rc, const char *msg, json_t *result, void *data);

/* What the API needs from the daemon. Every hook runs on the loop's thread. */
struct asr_api_hooks {
    /* {"daemon": {...}, "services": [...]}: the daemon's live state (new reference). */
    json_t *(*status)(void *data);
    /* Starts a deploy (rollback false; ref NULL: the repository's HEAD) or a rollback. Returns 0
     * and calls done later, or an error: ASR_ENOENT for an unknown service. */
    int (*deploy)(void *data, const char *service, const char *ref, bool rollback,
                  asr_api_progress_cb progress, asr_api_done_cb done, void *cb_data,
                  struct asr_err *err);
    /* An operator's decision on the incident's plan awaiting approval (asr_executor_decide). */
    int (*decide)(void *data, int64_t incident_id, bool approve, const char *who,
                  struct asr_err *err);
    /* Resolves an incident (the detector starts its cooldown). */
    int (*resolve)(void *data, int64_t incident_id, const char *reason, struct asr_err *err);
    /* One log line for a service, as if its log had it (source e.g. "cloudwatch:GROUP/STREAM"). */
    int (*ingest)(void *data, const char *service, const char *source, const char *line, size_t len,
                  int64_t at_ms, struct asr_err *err);
    /* True once the daemon is stopping: mutating calls get 503. */
    bool (*stopping)(void *data);
    void *data;
};

int asr_api_create(uv_loop_t *loop, struct asr_store *st, const struct asr_config *cfg,
                   const struct asr_api_hooks *hooks, struct asr_api **out, struct asr_err *err);
/* A reloaded config: its api block applies to the next request (the listen address does not
 * move: that needs a restart, and the daemon says so). */
void asr_api_set_config(struct asr_api *api, const struct asr_config *cfg);
/* Starts the HTTP server of cfg->api (a no-op without an api block). */
int asr_api_listen(struct asr_api *api, struct asr_err *err);
/* The HTTP port (0 when not listening). */
int asr_api_port(const struct asr_api *api);
/* A request from the control socket: {"method", "path", "body"?}. Answers on conn. */
void asr_api_control(struct asr_api *api, struct asr_control_conn *conn, json_t *req);
/* Stops serving: waiting requests get 503, streams end. Frees api. */
void asr_api_destroy(struct asr_api *api);

/*
 * The transport-free core, for the control socket, tests and the fuzz target: routes one request
 * and answers through reply (called once, now or later). trusted: the caller is the socket's
 * owner or presented the token. Exposed so the router can be exercised without sockets.
 */
struct asr_api_call {
    const char *method;
    const char *path;
    const char *(*query)(void *ctx, const char *key); /* a query argument or NULL */
    const char *body;
    size_t body_len;
    bool trusted;
    void (*progress)(void *ctx, const char *msg); /* may be NULL */
    void (*reply)(void *ctx, int status, json_t *body);
    void *ctx;
};
void asr_api_route(struct asr_api *api, const struct asr_api_call *call);

#endif
