/*
 * remediations.c - remediations and their journal in asr.db (see include/asr/remediation.h).
 *
 * Part of the store (src/store/). The schema is the "remediations, journal" migration in
 * migrate.c; docs/store.md describes the columns and docs/execution.md the life cycle.
 */
#include "asr/audit.h"
#include "asr/remediation.h"
#include "store/store_int.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REM_COLS                                                                                   \
    "id, plan_id, incident_id, service, fingerprint, state, reason, approved_by, created_at, "     \
    "coalesce(started_at, 0), coalesce(finished_at, 0)"

static const char sql_open[] =
    "INSERT INTO remediations (plan_id, incident_id, service, fingerprint, state, reason, "
    "created_at, started_at, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
    "CASE WHEN ?5 = 'running' THEN ?7 END, "
    "CASE WHEN ?5 NOT IN ('running', 'awaiting_approval') THEN ?7 END) "
    "ON CONFLICT (plan_id) DO NOTHING";
static const char sql_by_plan[] = "SELECT " REM_COLS " FROM remediations WHERE plan_id = ?1";
static const char sql_get[] = "SELECT " REM_COLS " FROM remediations WHERE id = ?1";
static const char sql_of_incident[] = "SELECT " REM_COLS " FROM remediations WHERE "
                                      "incident_id = ?1 ORDER BY id DESC LIMIT 1";
static const char sql_in_flight[] =
    "SELECT " REM_COLS " FROM remediations WHERE state IN ('awaiting_approval', 'running') "
    "ORDER BY id";
/* Final remediations whose bookkeeping (executor.c, finish) began and did not end: a finish
 * intent without its result. */
static const char sql_unfinished[] =
    "SELECT " REM_COLS " FROM remediations WHERE state NOT IN ('awaiting_approval', 'running') "
    "AND EXISTS (SELECT 1 FROM journal j WHERE j.remediation_id = remediations.id "
    "AND j.action = 'finish' AND j.phase = 'intent' AND NOT EXISTS (SELECT 1 FROM journal k "
    "WHERE k.idem_key = j.idem_key AND k.phase = 'result')) ORDER BY id";
static const char sql_set[] =
    "UPDATE remediations SET state = ?2, reason = coalesce(?3, reason), "
    "approved_by = coalesce(?4, approved_by), "
    "started_at = CASE WHEN ?2 = 'running' THEN ?5 ELSE started_at END, "
    "finished_at = CASE WHEN ?2 NOT IN ('running', 'awaiting_approval') THEN ?5 END "
    "WHERE id = ?1 AND state IN ('awaiting_approval', 'running')";
static const char sql_counts[] =
    "SELECT (SELECT count(*) FROM remediations WHERE service = ?1 AND state IN "
    "('awaiting_approval', 'running')), (SELECT count(*) FROM remediations WHERE service = ?1 "
    "AND started_at IS NOT NULL AND created_at >= ?3), (SELECT coalesce(max(finished_at), 0) "
    "FROM remediations WHERE fingerprint = ?2 AND started_at IS NOT NULL), "
    "(SELECT coalesce(max(started_at), 0) FROM remediations WHERE service = ?1 AND started_at "
    "IS NOT NULL AND created_at >= ?3), "
    "(SELECT id FROM remediations WHERE service = ?1 AND state IN ('awaiting_approval', "
    "'running') ORDER BY id LIMIT 1), "
    "(SELECT incident_id FROM remediations WHERE service = ?1 AND state IN "
    "('awaiting_approval', 'running') ORDER BY id LIMIT 1)";
/* The circuit (asr_remediation_circuit_facts): the newest remediation that ran and did not
 * remove its fault, then the service's events from the newest back. */
static const char sql_circuit_rem[] =
    "SELECT id, incident_id, started_at, coalesce(finished_at, 0) FROM remediations "
    "WHERE service = ?1 AND started_at IS NOT NULL AND state IN ('failed', 'escalated') "
    "ORDER BY finished_at DESC, id DESC LIMIT 1";
static const char sql_circuit_events[] =
    "SELECT at, kind, detail FROM events WHERE service = ?1 AND kind IN ('deploy.switched', "
    "'service.failed', 'slot.exited') ORDER BY id DESC";
static const char sql_circuit_notes[] =
    "SELECT count(*) FROM remediations WHERE service = ?1 AND created_at >= ?2 AND state = "
    "'refused' AND reason LIKE 'circuit open%'";
static const char sql_held[] =
    "SELECT r.incident_id FROM remediations r JOIN incidents i ON i.id = r.incident_id "
    "WHERE r.service = (SELECT service FROM remediations WHERE id = ?1) AND r.state = 'refused' "
    "AND r.reason LIKE ?2 AND i.status = 'open' ORDER BY r.id";
static const char sql_journal[] =
    "INSERT INTO journal (remediation_id, step, action, phase, idem_key, at, ok, detail) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char sql_journal_has[] = "SELECT ok FROM journal WHERE idem_key = ?1 AND phase = ?2";
static const char sql_journal_list[] =
    "SELECT at, step, coalesce(ok, 0), phase, action, idem_key, detail FROM journal "
    "WHERE remediation_id = ?1 ORDER BY id";
static const char sql_ids[] = "SELECT incident_id, plan_id FROM remediations WHERE id = ?1";

/* The audit row of a change to remediation id, in the caller's transaction (asr/audit.h). */
static int audit(struct asr_store *st, int64_t id, const char *actor, const char *kind, json_t *d,
                 struct asr_err *err)
{
    int64_t inc = 0, plan = 0;
    sqlite3_stmt *s = asr_store_prepare(st, sql_ids, "audit", err);
    if (s == NULL) {
        json_decref(d);
        return ASR_EDB;
    }
    sqlite3_bind_int64(s, 1, id);
    if (sqlite3_step(s) == SQLITE_ROW) {
        inc = sqlite3_column_int64(s, 0);
        plan = sqlite3_column_int64(s, 1);
    }
    asr_store_reset(s);
    int rc = d != NULL ? asr_audit_append_json(st, actor, kind, inc, plan, d, err)
                       : asr_err_set(err, ASR_ENOMEM, "out of memory");
    json_decref(d);
    return rc;
}

static int read_row(sqlite3_stmt *s, void *row)
{
    struct asr_remediation *r = row;
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(s, 0);
    r->plan_id = sqlite3_column_int64(s, 1);
    r->incident_id = sqlite3_column_int64(s, 2);
    r->created_at = sqlite3_column_int64(s, 8);
    r->started_at = sqlite3_column_int64(s, 9);
    r->finished_at = sqlite3_column_int64(s, 10);
    if (asr_store_col_dup(s, 3, &r->service) || asr_store_col_dup(s, 4, &r->fingerprint) ||
        asr_store_col_dup(s, 5, &r->state) || asr_store_col_dup(s, 6, &r->reason) ||
        asr_store_col_dup(s, 7, &r->approved_by)) {
        asr_remediation_free(r);
        return ASR_ENOMEM;
    }
    return 0;
}

void asr_remediation_free(struct asr_remediation *r)
{
    if (r == NULL)
        return;
    free(r->service);
    free(r->fingerprint);
    free(r->state);
    free(r->reason);
    free(r->approved_by);
    memset(r, 0, sizeof(*r));
}

void asr_remediations_free(struct asr_remediation *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        asr_remediation_free(&v[i]);
    free(v);
}

static void free_rows(void *rows, size_t n)
{
    asr_remediations_free(rows, n);
}

/* One row of a bound SELECT of REM_COLS; ASR_ENOENT when none. */
static int one(struct asr_store *st, sqlite3_stmt *s, const char *op, struct asr_remediation *out,
               struct asr_err *err)
{
    int r = sqlite3_step(s);
    int rc;
    if (r == SQLITE_ROW)
        rc = read_row(s, out) == 0 ? 0 : asr_err_set(err, ASR_ENOMEM, "out of memory");
    else if (r == SQLITE_DONE)
        rc = asr_err_set(err, ASR_ENOENT, "store: %s: no such remediation", op);
    else
        rc = asr_store_fail(st, op, err);
    asr_store_reset(s);
    return rc;
}

int asr_remediation_open(struct asr_store *st, int64_t plan_id, int64_t incident_id,
                         const char *service, const char *fingerprint, const char *state,
                         const char *reason, struct asr_remediation *out, bool *created,
                         struct asr_err *err)
{
    const char *op = "open remediation";
    memset(out, 0, sizeof(*out));
    if (plan_id <= 0 || incident_id <= 0 || service == NULL || fingerprint == NULL || state == NULL)
        return asr_store_bad_arg(err, op, "a remediation needs a plan, an incident and a state");
    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    sqlite3_stmt *s = asr_store_prepare(st, sql_open, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
    } else {
        sqlite3_bind_int64(s, 1, plan_id);
        sqlite3_bind_int64(s, 2, incident_id);
        asr_store_bind_str(s, 3, service);
        asr_store_bind_str(s, 4, fingerprint);
        asr_store_bind_str(s, 5, state);
        asr_store_bind_str(s, 6, reason);
        sqlite3_bind_int64(s, 7, asr_store_now(st));
        rc = asr_store_run(st, s, op, err);
    }
    if (rc == 0)
        *created = sqlite3_changes(asr_store_db(st)) > 0;
    if (rc == 0 && *created)
        rc = audit(st, sqlite3_last_insert_rowid(asr_store_db(st)), ASR_AUDIT_ASR,
                   "remediation.decided",
                   json_pack("{s:I, s:s, s:s?}", "remediation",
                             (json_int_t)sqlite3_last_insert_rowid(asr_store_db(st)), "state",
                             state, "reason", reason),
                   err);
    if (rc == 0) {
        sqlite3_stmt *q = asr_store_prepare(st, sql_by_plan, op, err);
        if (q == NULL) {
            rc = ASR_EDB;
        } else {
            sqlite3_bind_int64(q, 1, plan_id);
            rc = one(st, q, op, out, err);
        }
    }
    return asr_store_finish(st, rc, op, err);
}

int asr_remediation_set(struct asr_store *st, int64_t id, const char *state, const char *reason,
                        const char *approved_by, struct asr_err *err)
{
    const char *op = "update remediation";
    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    sqlite3_stmt *s = asr_store_prepare(st, sql_set, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
    } else {
        sqlite3_bind_int64(s, 1, id);
        asr_store_bind_str(s, 2, state);
        asr_store_bind_str(s, 3, reason);
        asr_store_bind_str(s, 4, approved_by);
        sqlite3_bind_int64(s, 5, asr_store_now(st));
        rc = asr_store_run(st, s, op, err);
    }
    bool changed = rc == 0 && sqlite3_changes(asr_store_db(st)) > 0;
    if (changed)
        rc = audit(st, id, approved_by != NULL ? ASR_AUDIT_OPERATOR : ASR_AUDIT_ASR,
                   "remediation.state",
                   json_pack("{s:I, s:s, s:s?, s:s?}", "remediation", (json_int_t)id, "state",
                             state, "reason", reason, "by", approved_by),
                   err);
    if (rc == 0 && !changed) {
        struct asr_remediation r = {0};
        struct asr_err e2 = {0};
        rc = asr_remediation_get(st, id, &r, &e2) == 0
                 ? asr_err_set(err, ASR_EINVAL, "remediation %lld is already %s", (long long)id,
                               r.state)
                 : asr_err_set(err, ASR_ENOENT, "no remediation %lld", (long long)id);
        asr_remediation_free(&r);
    }
    return asr_store_finish(st, rc, op, err);
}

int asr_remediation_get(struct asr_store *st, int64_t id, struct asr_remediation *out,
                        struct asr_err *err)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *s = asr_store_prepare(st, sql_get, "get remediation", err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, id);
    return one(st, s, "get remediation", out, err);
}

int asr_remediation_of_incident(struct asr_store *st, int64_t incident_id,
                                struct asr_remediation *out, struct asr_err *err)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *s = asr_store_prepare(st, sql_of_incident, "incident remediation", err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, incident_id);
    return one(st, s, "incident remediation", out, err);
}

int asr_remediation_in_flight_all(struct asr_store *st, struct asr_remediation **out, size_t *n,
                                  struct asr_err *err)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_in_flight, "remediations in flight", err);
    if (s == NULL)
        return ASR_EDB;
    return asr_store_collect(st, s, "remediations in flight", sizeof(struct asr_remediation),
                             read_row, free_rows, (void **)out, n, err);
}

int asr_remediation_unfinished(struct asr_store *st, struct asr_remediation **out, size_t *n,
                               struct asr_err *err)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_unfinished, "unfinished remediations", err);
    if (s == NULL)
        return ASR_EDB;
    return asr_store_collect(st, s, "unfinished remediations", sizeof(struct asr_remediation),
                             read_row, free_rows, (void **)out, n, err);
}

int asr_remediation_counts(struct asr_store *st, const char *service, const char *fingerprint,
                           int64_t since, struct asr_remediation_counts *out, struct asr_err *err)
{
    const char *op = "remediation counts";
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *s = asr_store_prepare(st, sql_counts, op, err);
    if (s == NULL)
        return ASR_EDB;
    asr_store_bind_str(s, 1, service);
    asr_store_bind_str(s, 2, fingerprint);
    sqlite3_bind_int64(s, 3, since);
    int rc = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        out->in_flight = sqlite3_column_int64(s, 0);
        out->acted = sqlite3_column_int64(s, 1);
        out->last_finished = sqlite3_column_int64(s, 2);
        out->last_acted = sqlite3_column_int64(s, 3);
        out->in_flight_id = sqlite3_column_int64(s, 4);
        out->in_flight_incident = sqlite3_column_int64(s, 5);
    } else {
        rc = asr_store_fail(st, op, err);
    }
    asr_store_reset(s);
    return rc;
}

int asr_remediation_circuit_facts(struct asr_store *st, const char *service, int64_t now,
                                  struct asr_circuit_facts *out, struct asr_err *err)
{
    const char *op = "circuit facts";
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *s = asr_store_prepare(st, sql_circuit_rem, op, err);
    if (s == NULL)
        return ASR_EDB;
    asr_store_bind_str(s, 1, service);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        out->rem_id = sqlite3_column_int64(s, 0);
        out->rem_incident = sqlite3_column_int64(s, 1);
        out->rem_started = sqlite3_column_int64(s, 2);
        out->rem_finished = sqlite3_column_int64(s, 3);
    }
    asr_store_reset(s);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return asr_store_fail(st, op, err);
    /*
     * Newest first. The first deploy.switched ends what a service.failed can mean (a deploy
     * clears the supervisor's failure). The scan goes on past it only when the remediation ended
     * after it, and only back to the remediation's start: to count the crashes while it ran and
     * the calm since it ended. So it reads the events since the last deploy, not the history.
     */
    s = asr_store_prepare(st, sql_circuit_events, op, err);
    if (s == NULL)
        return ASR_EDB;
    asr_store_bind_str(s, 1, service);
    int64_t prev = now; /* the crash after the one being read (now, for the newest) */
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t at = sqlite3_column_int64(s, 0);
        const char *kind = (const char *)sqlite3_column_text(s, 1);
        if (out->switched_at != 0 &&
            (out->rem_id == 0 || out->rem_finished < out->switched_at || at < out->rem_started))
            break;
        if (kind == NULL)
            continue;
        if (strcmp(kind, "deploy.switched") == 0) {
            if (out->switched_at == 0)
                out->switched_at = at;
        } else if (strcmp(kind, "service.failed") == 0) {
            if (out->switched_at == 0 && out->failed_at == 0) {
                const char *d = (const char *)sqlite3_column_text(s, 2);
                out->failed_at = at;
                snprintf(out->failed_why, sizeof(out->failed_why), "%s", d != NULL ? d : "");
                /* A failed service does not run: its calm ends where it stopped running. */
                prev = at;
            }
        } else { /* slot.exited */
            if (out->last_crash == 0)
                out->last_crash = at;
            if (out->rem_id != 0 && at >= out->rem_finished) {
                if (prev - at > out->calm_after)
                    out->calm_after = prev - at;
                prev = at;
            } else if (out->rem_id != 0 && at >= out->rem_started) {
                out->crashes_during++;
            }
        }
    }
    asr_store_reset(s);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return asr_store_fail(st, op, err);
    if (out->rem_id != 0 && prev - out->rem_finished > out->calm_after)
        out->calm_after = prev - out->rem_finished;
    return 0;
}

int asr_remediation_circuit_notes(struct asr_store *st, const char *service, int64_t since,
                                  int64_t *out, struct asr_err *err)
{
    const char *op = "circuit notes";
    *out = 0;
    sqlite3_stmt *s = asr_store_prepare(st, sql_circuit_notes, op, err);
    if (s == NULL)
        return ASR_EDB;
    asr_store_bind_str(s, 1, service);
    sqlite3_bind_int64(s, 2, since);
    int rc = 0;
    if (sqlite3_step(s) == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    else
        rc = asr_store_fail(st, op, err);
    asr_store_reset(s);
    return rc;
}

int asr_remediation_held(struct asr_store *st, int64_t rem_id, int64_t *ids, size_t cap, size_t *n,
                         struct asr_err *err)
{
    const char *op = "held incidents";
    *n = 0;
    char like[64];
    snprintf(like, sizeof(like), "held on remediation %lld %%", (long long)rem_id);
    sqlite3_stmt *s = asr_store_prepare(st, sql_held, op, err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, rem_id);
    asr_store_bind_str(s, 2, like);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n < cap)
            ids[*n] = sqlite3_column_int64(s, 0);
        (*n)++;
    }
    asr_store_reset(s);
    return r == SQLITE_DONE ? 0 : asr_store_fail(st, op, err);
}

int asr_journal_write(struct asr_store *st, int64_t remediation_id, int step, const char *action,
                      const char *phase, const char *key, bool ok, const char *detail,
                      struct asr_err *err)
{
    const char *op = "journal";
    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    sqlite3_stmt *s = asr_store_prepare(st, sql_journal, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
    } else {
        sqlite3_bind_int64(s, 1, remediation_id);
        sqlite3_bind_int(s, 2, step);
        asr_store_bind_str(s, 3, action);
        asr_store_bind_str(s, 4, phase);
        asr_store_bind_str(s, 5, key);
        sqlite3_bind_int64(s, 6, asr_store_now(st));
        if (strcmp(phase, "result") == 0)
            sqlite3_bind_int(s, 7, ok ? 1 : 0);
        else
            sqlite3_bind_null(s, 7);
        asr_store_bind_str(s, 8, detail != NULL ? detail : "{}");
        int r = sqlite3_step(s);
        if ((r & 0xff) == SQLITE_CONSTRAINT)
            rc = asr_err_set(err, ASR_EINVAL, "journal: %s of %s is already written", phase, key);
        else if (r != SQLITE_DONE)
            rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        json_t *dj = json_loads(detail != NULL ? detail : "{}", 0, NULL);
        if (rc == 0)
            rc = audit(st, remediation_id, ASR_AUDIT_ASR,
                       strcmp(phase, "intent") == 0 ? "action.intent" : "action.result",
                       json_pack("{s:I, s:i, s:s, s:s, s:O?, s:o?}", "remediation",
                                 (json_int_t)remediation_id, "step", step, "action", action, "key",
                                 key, "ok", strcmp(phase, "result") == 0 ? json_boolean(ok) : NULL,
                                 "detail", dj),
                       err);
        else
            json_decref(dj);
    }
    return asr_store_finish(st, rc, op, err);
}

int asr_journal_has(struct asr_store *st, const char *key, const char *phase, bool *found, bool *ok,
                    struct asr_err *err)
{
    *found = *ok = false;
    sqlite3_stmt *s = asr_store_prepare(st, sql_journal_has, "journal", err);
    if (s == NULL)
        return ASR_EDB;
    asr_store_bind_str(s, 1, key);
    asr_store_bind_str(s, 2, phase);
    int r = sqlite3_step(s);
    int rc = 0;
    if (r == SQLITE_ROW) {
        *found = true;
        *ok = sqlite3_column_int(s, 0) == 1;
    } else if (r != SQLITE_DONE) {
        rc = asr_store_fail(st, "journal", err);
    }
    asr_store_reset(s);
    return rc;
}

static int read_journal(sqlite3_stmt *s, void *row)
{
    struct asr_journal_row *j = row;
    memset(j, 0, sizeof(*j));
    j->at = sqlite3_column_int64(s, 0);
    j->step = sqlite3_column_int(s, 1);
    j->ok = sqlite3_column_int(s, 2) == 1;
    const char *ph = (const char *)sqlite3_column_text(s, 3);
    snprintf(j->phase, sizeof(j->phase), "%s", ph != NULL ? ph : "");
    if (asr_store_col_dup(s, 4, &j->action) || asr_store_col_dup(s, 5, &j->key) ||
        asr_store_col_dup(s, 6, &j->detail)) {
        free(j->action);
        free(j->key);
        free(j->detail);
        return ASR_ENOMEM;
    }
    return 0;
}

void asr_journal_rows_free(struct asr_journal_row *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i].action);
        free(v[i].key);
        free(v[i].detail);
    }
    free(v);
}

static void free_journal(void *rows, size_t n)
{
    asr_journal_rows_free(rows, n);
}

int asr_journal_list(struct asr_store *st, int64_t remediation_id, struct asr_journal_row **out,
                     size_t *n, struct asr_err *err)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_journal_list, "journal", err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, remediation_id);
    return asr_store_collect(st, s, "journal", sizeof(struct asr_journal_row), read_journal,
                             free_journal, (void **)out, n, err);
}
