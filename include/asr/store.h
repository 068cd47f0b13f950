/*
 * store.h - asr's state in one SQLite file, `<state_dir>/asr.db`.
 *
 * WAL journal, synchronous=FULL (we acknowledge nothing that is not on disk), numbered migrations
 * each applied in its own transaction, every write in BEGIN IMMEDIATE. One connection per process;
 * the daemon and CLI commands may open the same file at once (busy timeout 5 s).
 *
 * Tables (migration 1): services, releases, deployments, events. Later issues add migrations;
 * they never edit an applied one.
 *
 * Strings returned inside structs are owned by the struct; free with the matching _free function.
 * Errors: ASR_EDB with err->msg naming the statement and SQLite's message; ASR_ENOENT when a row
 * asked for by id does not exist.
 */
#ifndef ASR_STORE_H
#define ASR_STORE_H

#include "asr/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct asr_store;

/* Release states. */
#define ASR_RELEASE_BUILDING "building"
#define ASR_RELEASE_BUILT "built" /* build and test passed; never served yet */
#define ASR_RELEASE_GOOD "good"   /* served healthy after a cutover */
#define ASR_RELEASE_BAD "bad"     /* failed build, test or health */

struct asr_release {
    int64_t id;
    char *service;
    char *commit;     /* full 40-hex sha */
    char *state;      /* one of ASR_RELEASE_* */
    char *reason;     /* why it is bad, or NULL */
    char *dir;        /* absolute path of its checkout, or NULL */
    int build_status; /* exit status of the build, -1 if not run */
    int test_status;  /* exit status of the tests, -1 if not run */
    int64_t build_ms, test_ms;
    int64_t created_at; /* wall ms */
};

/* Deployment outcomes. */
#define ASR_DEPLOY_RUNNING "running"
#define ASR_DEPLOY_SUCCEEDED "succeeded"
#define ASR_DEPLOY_ROLLED_BACK "rolled_back" /* new release failed; old one kept serving */
#define ASR_DEPLOY_FAILED "failed"           /* build/test failed before any cutover */

struct asr_deployment {
    int64_t id;
    char *service;
    char *kind;           /* "deploy" | "rollback" | "start" */
    int64_t from_release; /* 0 if none */
    int64_t to_release;
    int64_t started_at, ended_at; /* wall ms; ended_at 0 while running */
    char *outcome;                /* one of ASR_DEPLOY_* */
    char *reason;                 /* NULL on success */
};

struct asr_event {
    int64_t id;
    int64_t at;          /* wall ms */
    char *service;       /* may be NULL */
    char *actor;         /* who: "daemon", "cli", "supervisor", ... */
    char *kind;          /* what: "slot.started", "deploy.switched", ... */
    char *detail;        /* free text or JSON, may be NULL */
    int64_t incident_id; /* the incident it belongs to, or 0 */
};

/* Opens (creating if needed) `<state_dir>/asr.db` and applies pending migrations. */
int asr_store_open(const char *state_dir, struct asr_store **out, struct asr_err *err);
/* Opens a database file by path (":memory:" works too). */
int asr_store_open_file(const char *path, struct asr_store **out, struct asr_err *err);
void asr_store_close(struct asr_store *st);
/* The schema version now in the file (number of applied migrations). */
int asr_store_schema_version(struct asr_store *st);

int asr_store_service_upsert(struct asr_store *st, const char *name, struct asr_err *err);

/* Inserts a release in state "building", or returns the existing row for (service, commit). */
int asr_store_release_get_or_create(struct asr_store *st, const char *service, const char *commit,
                                    const char *dir, struct asr_release *out, struct asr_err *err);
int asr_store_release_get(struct asr_store *st, int64_t id, struct asr_release *out,
                          struct asr_err *err);
int asr_store_release_find(struct asr_store *st, const char *service, const char *commit,
                           struct asr_release *out, struct asr_err *err); /* ASR_ENOENT if none */
/* Records build results; output is stored as given (callers cap it). */
int asr_store_release_set_build(struct asr_store *st, int64_t id, int status, int64_t ms,
                                const char *output, struct asr_err *err);
int asr_store_release_set_test(struct asr_store *st, int64_t id, int status, int64_t ms,
                               const char *output, struct asr_err *err);
/* Fetches stored build or test output (caller frees *out); which is "build" or "test". */
int asr_store_release_output(struct asr_store *st, int64_t id, const char *which, char **out,
                             struct asr_err *err);
int asr_store_release_set_state(struct asr_store *st, int64_t id, const char *state,
                                const char *reason, struct asr_err *err);
/* The newest release of service in state "good", other than exclude_id (0 for none). */
int asr_store_release_last_good(struct asr_store *st, const char *service, int64_t exclude_id,
                                struct asr_release *out, struct asr_err *err);
void asr_release_free(struct asr_release *r);

int asr_store_deployment_begin(struct asr_store *st, const char *service, const char *kind,
                               int64_t from_release, int64_t to_release, int64_t *out_id,
                               struct asr_err *err);
int asr_store_deployment_end(struct asr_store *st, int64_t id, const char *outcome,
                             const char *reason, struct asr_err *err);
/* The newest deployment of service (any outcome); ASR_ENOENT if none. */
int asr_store_deployment_last(struct asr_store *st, const char *service, struct asr_deployment *out,
                              struct asr_err *err);
/* Deployments of service, newest first, at most limit; *out is an array the caller frees with
 * asr_deployments_free. */
int asr_store_deployment_list(struct asr_store *st, const char *service, int limit,
                              struct asr_deployment **out, size_t *n, struct asr_err *err);
/* Marks deployments still "running" (left by a crash of asr) as failed with reason. Returns the
 * number changed. */
int asr_store_deployment_abandon_running(struct asr_store *st, const char *reason,
                                         struct asr_err *err);
void asr_deployment_free(struct asr_deployment *d);
void asr_deployments_free(struct asr_deployment *d, size_t n);

/*
 * Appends an event to the timeline; service and detail may be NULL. The events table is also the
 * live stream of GET /api/v1/events (docs/api.md): every audit row is mirrored into it, in the
 * audit row's transaction, with its incident, and so is every incident the detector opens.
 */
int asr_store_event_add(struct asr_store *st, const char *service, const char *actor,
                        const char *kind, const char *detail, struct asr_err *err);
/* Events with id > after_id, oldest first, at most limit (service NULL = all). */
int asr_store_event_list(struct asr_store *st, const char *service, int64_t after_id, int limit,
                         struct asr_event **out, size_t *n, struct asr_err *err);
void asr_events_free(struct asr_event *e, size_t n);
/* The id of the newest event this connection wrote or saw when it opened (the event stream
 * compares it with what it sent to know that there is more, without a query). */
int64_t asr_store_event_head(const struct asr_store *st);

#endif
