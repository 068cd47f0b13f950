/*
 * views.h - what the API shows of the store, as JSON (docs/api.md has every field).
 *
 * Read-only: each function reads the rows it needs and builds one answer. Log text in them is
 * attacker-controlled; it leaves as JSON strings, and the dashboard shows it as text only.
 */
#ifndef ASR_API_VIEWS_H
#define ASR_API_VIEWS_H

#include "asr/error.h"
#include "asr/incident.h"
#include "asr/store.h"

#include <jansson.h>

/* Caps on text copied into answers: build and test output, one diff. */
#define ASR_VIEW_OUTPUT_CAP (64 * 1024)

/* The incidents passing q, newest first, each with its stages, MTTR and remediation summary:
 * {"incidents": [...]}. */
int asr_view_incidents(struct asr_store *st, const struct asr_incident_query *q, json_t **out,
                       struct asr_err *err);
/* One incident with its notes, stages, plan, remediation and journal, patch diff, build and test
 * output and verification. ASR_ENOENT when there is no such incident. */
int asr_view_incident(struct asr_store *st, int64_t id, json_t **out, struct asr_err *err);
/* The incident's remediation with its journal (times also from the first fault line) and MTTR,
 * or JSON null when it has none. `asr incident show --json` prints the same. */
json_t *asr_view_remediation(struct asr_store *st, const struct asr_incident *inc);
/* Plans newest first; rem_state (a remediation state, e.g. "awaiting_approval") may be NULL.
 * {"plans": [...]} */
int asr_view_plans(struct asr_store *st, const char *rem_state, int limit, json_t **out,
                   struct asr_err *err);
/* One plan with its remediation's state. ASR_ENOENT when there is none. */
int asr_view_plan(struct asr_store *st, int64_t id, json_t **out, struct asr_err *err);

/* A patch step's edits as a unified-style diff (one hunk per edit, no line numbers: an edit is a
 * search and its replacement). Returns a new string, or NULL when steps hold no patch. */
char *asr_view_patch_diff(json_t *steps);

#endif
