/*
 * incident.h - an incident as the store keeps it, and how it is read and written.
 *
 * Detection (src/detect/detector.c) opens and updates incidents; the CLI, the control socket and
 * later the planner read them. docs/detection.md explains every field and the fingerprint rules.
 *
 * Writes come in batches (struct asr_incident_batch), each one transaction: new incidents, the
 * counters and context of open ones, timeline notes, mined templates and the read positions of
 * tailed files commit together, so after a crash the counts and the positions agree and a
 * restarted asr neither counts a line twice nor misses one.
 *
 * Strings inside returned structs are owned by the struct (asr_incident_free / _list_free).
 * Errors: ASR_EDB naming the operation and SQLite's message; ASR_ENOENT for an unknown id.
 */
#ifndef ASR_INCIDENT_H
#define ASR_INCIDENT_H

#include "asr/error.h"
#include "asr/store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ASR_INCIDENT_OPEN "open"
#define ASR_INCIDENT_RESOLVED "resolved"

struct asr_incident {
    int64_t id;
    int64_t parent_id; /* the first incident of its group, or 0 */
    char *fingerprint; /* what makes two fault lines the same fault (docs/detection.md) */
    char *service;
    char *kind;           /* "signature" | "generic" | "exit" */
    char *signature;      /* signature id, "generic:<kind>" or "exit" */
    char *severity;       /* "info" | "warning" | "error" | "critical" */
    char *source;         /* "stdout", "stderr", "file:PATH", "cloudwatch:GROUP/STREAM", "stdin" */
    char *slot;           /* "blue" | "green", or NULL */
    char *release;        /* commit sha of the release that logged it, or NULL */
    int64_t template_id;  /* cluster id of the line's template (0: none) */
    char *template;       /* the template text when it was opened, or NULL */
    char *line;           /* the first fault line */
    char *fields;         /* JSON object of the captured fields, "{}" when none */
    char *context_before; /* JSON array of lines before the fault line, oldest first */
    char *context_after;  /* JSON array of lines after it (complete once context_done) */
    bool context_done;
    char *status;                  /* ASR_INCIDENT_OPEN or ASR_INCIDENT_RESOLVED */
    int64_t count;                 /* fault lines it absorbed, the first one included */
    int64_t verifications;         /* verification probe lines (verification=1) recorded on it */
    int64_t first_seen, last_seen; /* wall ms of the first and the latest fault line */
    int64_t received_us;           /* wall us when asr read the first fault line */
    int64_t opened_at;             /* wall ms when the row was written */
    int64_t resolved_at;           /* wall ms, 0 while open */
    char *resolution;              /* why it was resolved, or NULL */
};

/* A timeline row of an incident. */
struct asr_incident_note {
    int64_t id;
    int64_t incident_id;
    int64_t at;   /* wall ms */
    char *kind;   /* "opened", "grouped", "context", "verification", "recurred", "resolved" ... */
    char *detail; /* free text, may be NULL */
};

/* The counters and context of an open incident, as the detector holds them. */
struct asr_incident_update {
    int64_t id;
    int64_t count;
    int64_t verifications;
    int64_t last_seen;
    const char *context_after; /* NULL: unchanged */
    bool context_done;
};

/* A mined template of a service, saved so cluster ids survive a restart. */
struct asr_template_row {
    const char *service;
    int64_t cluster_id;
    const char *tmpl;
    int64_t count;
    int64_t error_hits; /* lines of this template that a generic detector flagged */
};

/* Where reading of a tailed file resumes (see src/detect/tail.h). */
struct asr_log_position {
    const char *path;
    uint64_t dev, ino, offset;
};

/*
 * One write transaction. opened[i].id is set on success (the caller's strings are copied by
 * SQLite, not kept). Each opened incident gets an "opened" note; notes[].incident_id must name
 * existing incidents (or incidents opened earlier in this batch, by their new id - so notes for
 * new incidents are best written in the next batch).
 */
struct asr_incident_batch {
    struct asr_incident *opened;
    size_t nopened;
    const struct asr_incident_update *updates;
    size_t nupdates;
    const struct asr_incident_note *notes;
    size_t nnotes;
    const struct asr_template_row *templates;
    size_t ntemplates;
    const struct asr_log_position *positions;
    size_t npositions;
};

int asr_store_incident_write(struct asr_store *st, struct asr_incident_batch *b,
                             struct asr_err *err);

/* Marks an open incident resolved (ASR_ENOENT if unknown, ASR_EINVAL if already resolved) and
 * adds a "resolved" note with the reason. */
int asr_store_incident_resolve(struct asr_store *st, int64_t id, const char *reason,
                               struct asr_err *err);
int asr_store_incident_get(struct asr_store *st, int64_t id, struct asr_incident *out,
                           struct asr_err *err);
/* Incidents newest first, at most limit; service and status may be NULL (all). */
int asr_store_incident_list(struct asr_store *st, const char *service, const char *status,
                            int limit, struct asr_incident **out, size_t *n, struct asr_err *err);
/* Filters of asr_store_incident_query; NULL or 0 fields do not filter. */
struct asr_incident_query {
    const char *service;
    const char *status;
    const char *signature;
    int64_t before_id; /* only ids below this: the next page after a page ending at before_id */
    int limit;         /* 0: no limit */
};
/* Incidents newest first that pass every filter of q. */
int asr_store_incident_query(struct asr_store *st, const struct asr_incident_query *q,
                             struct asr_incident **out, size_t *n, struct asr_err *err);
/* The latest incident per fingerprint that is open or was resolved at or after since_ms
 * (what the detector needs to resume dedupe and cooldown after a restart). */
int asr_store_incident_recent(struct asr_store *st, int64_t since_ms, struct asr_incident **out,
                              size_t *n, struct asr_err *err);
/* Timeline of an incident, oldest first. */
int asr_store_incident_notes(struct asr_store *st, int64_t id, struct asr_incident_note **out,
                             size_t *n, struct asr_err *err);
/* Saved templates of a service in cluster id order; calls cb for each. */
int asr_store_templates_load(struct asr_store *st, const char *service,
                             int (*cb)(void *data, const struct asr_template_row *row), void *data,
                             struct asr_err *err);
/* The saved position of path; ASR_ENOENT if none. */
int asr_store_log_position(struct asr_store *st, const char *path, struct asr_log_position *out,
                           struct asr_err *err);

void asr_incident_free(struct asr_incident *inc);
void asr_incident_list_free(struct asr_incident *v, size_t n);
void asr_incident_notes_free(struct asr_incident_note *v, size_t n);

/* The incident as a JSON object (the format of `asr incidents --json` and `asr detect`), with
 * its timeline when notes is not NULL. NULL when out of memory. The caller owns the result. */
json_t *asr_incident_json(const struct asr_incident *inc, const struct asr_incident_note *notes,
                          size_t nnotes);

#endif
