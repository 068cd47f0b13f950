/*
 * playbook.h - playbooks: an operator's written knowledge of one kind of fault and its fix.
 *
 * Place in the pipeline: STRATEGY. The knowledge base indexes playbooks (their match and
 * symptoms), retrieval proposes them for an incident, and the planner turns a playbook's steps
 * into a plan. This module only loads and validates them; docs/playbooks.md is the reference.
 *
 * A playbook is one YAML file:
 *
 *     id: sql-malformed-report-query            # [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *     title: Malformed SQL statement in a report query
 *     version: 2                                # optional
 *     match: {signature: [FAULT_SQL_INJECTION_TEST], template: "...<*>...", text: "...",
 *             service: shop}                    # at least one of signature, template, text
 *     symptoms: |                               # free text for retrieval, up to 8 KiB
 *       ...
 *     steps:                                    # 1 to 16 whitelisted actions
 *       - {action: restart}
 *       - action: patch
 *         message: fix the report query
 *         edits: [{path: src/db.c, search: "...", replace: "..."}]
 *     verify:
 *       request: {method: POST, path: /test-fault/run, headers: {..}, body: "..."}
 *       expect: {status: 200, body_contains: "...", body_not_contains: "..."}
 *       timeout_ms: 5000                        # optional, default 5000
 *
 * Loading is strict: unknown keys, duplicate keys, wrong types, missing required keys, values
 * over their caps, YAML anchors and aliases, several documents, and steps that the action
 * whitelist (src/execute/actions.h) refuses are all errors. The error is one line
 * "FILE:LINE: KEY.PATH: REASON", e.g. "db.yaml:9: steps[0]: action 'reboot' is not on the
 * whitelist (restart, rollback, patch, deploy, notify, escalate)".
 */
#ifndef ASR_STRATEGY_PLAYBOOK_H
#define ASR_STRATEGY_PLAYBOOK_H

#include "asr/error.h"

#include <jansson.h>
#include <stddef.h>

#define ASR_PLAYBOOK_MAX_BYTES (256 * 1024) /* one playbook file */
#define ASR_PLAYBOOK_MAX_STEPS 16
#define ASR_PLAYBOOK_MAX_SYMPTOMS 8192 /* bytes of symptoms */
#define ASR_PLAYBOOK_MAX_SIGNATURES 32 /* ids in match.signature */
#define ASR_PLAYBOOK_MAX_HEADERS 32    /* headers of the verify request */
#define ASR_PLAYBOOK_MAX_FILES 4096    /* playbook files in one directory */
#define ASR_PLAYBOOK_DEFAULT_TIMEOUT_MS 5000

/* One step: a whitelisted action and its arguments, already checked by asr_action_check()
 * without a service (patch_paths are checked again by the planner, with the service). */
struct asr_playbook_step {
    char *action; /* "restart", "rollback", "patch", "escalate" */
    json_t *args; /* a JSON object, never NULL; owned by the playbook */
    int line;     /* line of the step in the file */
};

struct asr_playbook_header {
    char *name;
    char *value;
};

/* The request to replay once the steps ran, and what it must return. */
struct asr_playbook_verify {
    char *method; /* GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS */
    char *path;   /* starts with '/', printable ASCII without spaces */
    struct asr_playbook_header *headers;
    size_t nheaders;
    char *body;              /* NULL when none; never with GET or HEAD */
    int status;              /* 100..599 */
    char *body_contains;     /* NULL when not given */
    char *body_not_contains; /* NULL when not given */
    int timeout_ms;          /* default ASR_PLAYBOOK_DEFAULT_TIMEOUT_MS */
};

struct asr_playbook {
    char *file; /* the name it was loaded under (path or the name given to parse) */
    char *id;
    int id_line;       /* line of the id in the file, for messages naming it */
    char *title;       /* one line */
    int version;       /* 0 when not given */
    char **signatures; /* match.signature as a list (a single id becomes one element) */
    size_t nsignatures;
    char *template; /* match.template, NULL when not given */
    char *text;     /* match.text, NULL when not given */
    char *service;  /* match.service, NULL when the playbook applies to any service */
    char *symptoms;
    struct asr_playbook_step *steps; /* 1..ASR_PLAYBOOK_MAX_STEPS */
    size_t nsteps;
    struct asr_playbook_verify verify;
};

/* The playbooks of one directory, sorted by file name. */
struct asr_playbook_set {
    struct asr_playbook **items;
    size_t n;
};

/*
 * Parses and validates one playbook from len bytes of text; name stands in for the file in
 * messages. On success *out owns a new playbook (free with asr_playbook_free) and 0 is returned.
 * On failure *out is NULL, err->msg is one line "NAME:LINE: KEY: REASON" and the result is
 * ASR_ECONFIG (invalid playbook), ASR_ETOOBIG (over ASR_PLAYBOOK_MAX_BYTES) or ASR_ENOMEM.
 */
int asr_playbook_parse(const char *name, const char *text, size_t len, struct asr_playbook **out,
                       struct asr_err *err);

/* asr_playbook_parse on the file at path (a regular file of at most ASR_PLAYBOOK_MAX_BYTES).
 * Also ASR_EIO when it cannot be read. */
int asr_playbook_load(const char *path, struct asr_playbook **out, struct asr_err *err);

/*
 * Loads every regular file named *.yaml or *.yml (not starting with '.') in dir, in strcmp order
 * of their names. All must load, and no two may share an id (the error names both files). On
 * success *out owns a new set (free with asr_playbook_set_free), possibly empty. Errors as
 * asr_playbook_load, plus ASR_EIO when dir cannot be read.
 */
int asr_playbook_load_dir(const char *dir, struct asr_playbook_set **out, struct asr_err *err);

/* The playbook with that id in set, or NULL. */
const struct asr_playbook *asr_playbook_set_find(const struct asr_playbook_set *set,
                                                 const char *id);

/*
 * The playbook as a JSON object with the same keys as the YAML (id, title, version when set,
 * match, symptoms, steps as {action, ...args}, verify with timeout_ms), so that the dump parses
 * back to an equal playbook. The caller owns the result (json_decref); NULL without memory.
 */
json_t *asr_playbook_json(const struct asr_playbook *pb);

/* Free a playbook or a set; both accept NULL and half-built objects. */
void asr_playbook_free(struct asr_playbook *pb);
void asr_playbook_set_free(struct asr_playbook_set *set);

#endif
