/*
 * migrate.c - the schema of asr.db as numbered migrations, and the code that applies them.
 *
 * Part of the store (src/store/), which every stage writes its state to. The schema is the list
 * below and nothing else: migration N is entry N, applied once, in its own BEGIN IMMEDIATE
 * transaction together with `PRAGMA user_version = N`, so a database is always exactly at some
 * version and never between two. The list is append-only: once a migration has shipped it is
 * never edited, because databases in the field already hold its result; a change is a new entry.
 * docs/store.md describes every table and column.
 */
#include "store/store_int.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/*
 * Tables are STRICT so a column holds only its declared type, and constraints are named so that
 * SQLite's "CHECK constraint failed: <name>" says which rule a write broke.
 *
 * releases has UNIQUE (id, service), redundant as a key, so that deployments can reference
 * (release, service) together: a deployment of one service can never point at another
 * service's release. events.service has no foreign key on purpose: an event records what
 * happened and must never be lost to a constraint.
 */
static const char migration_1[] =
    "CREATE TABLE services (\n"
    "    name       TEXT NOT NULL PRIMARY KEY CONSTRAINT services_name_nonempty\n"
    "                   CHECK (length(name) > 0),\n"
    "    created_at INTEGER NOT NULL\n"
    ") STRICT;\n"
    "\n"
    "CREATE TABLE releases (\n"
    "    id           INTEGER PRIMARY KEY,\n"
    "    service      TEXT NOT NULL REFERENCES services (name),\n"
    "    commit_sha   TEXT NOT NULL CONSTRAINT releases_commit_full_hex\n"
    "                     CHECK (length(commit_sha) IN (40, 64)\n"
    "                            AND commit_sha NOT GLOB '*[^0-9a-f]*'),\n"
    "    dir          TEXT,\n"
    "    state        TEXT NOT NULL DEFAULT 'building' CONSTRAINT releases_state_valid\n"
    "                     CHECK (state IN ('building', 'built', 'good', 'bad')),\n"
    "    reason       TEXT,\n"
    "    build_status INTEGER NOT NULL DEFAULT -1,\n"
    "    build_ms     INTEGER NOT NULL DEFAULT 0 CONSTRAINT releases_build_ms_nonneg\n"
    "                     CHECK (build_ms >= 0),\n"
    "    build_output TEXT,\n"
    "    test_status  INTEGER NOT NULL DEFAULT -1,\n"
    "    test_ms      INTEGER NOT NULL DEFAULT 0 CONSTRAINT releases_test_ms_nonneg\n"
    "                     CHECK (test_ms >= 0),\n"
    "    test_output  TEXT,\n"
    "    created_at   INTEGER NOT NULL,\n"
    "    updated_at   INTEGER NOT NULL,\n"
    "    UNIQUE (service, commit_sha),\n"
    "    UNIQUE (id, service)\n"
    ") STRICT;\n"
    "CREATE INDEX releases_good_by_update ON releases (service, updated_at)\n"
    "    WHERE state = 'good';\n"
    "\n"
    "CREATE TABLE deployments (\n"
    "    id           INTEGER PRIMARY KEY,\n"
    "    service      TEXT NOT NULL REFERENCES services (name),\n"
    "    kind         TEXT NOT NULL CONSTRAINT deployments_kind_valid\n"
    "                     CHECK (kind IN ('deploy', 'rollback', 'start')),\n"
    "    from_release INTEGER,\n"
    "    to_release   INTEGER NOT NULL,\n"
    "    started_at   INTEGER NOT NULL,\n"
    "    ended_at     INTEGER,\n"
    "    outcome      TEXT NOT NULL DEFAULT 'running' CONSTRAINT deployments_outcome_valid\n"
    "                     CHECK (outcome IN ('running', 'succeeded', 'rolled_back', 'failed')),\n"
    "    reason       TEXT,\n"
    "    CONSTRAINT deployments_ended_iff_not_running\n"
    "        CHECK ((outcome = 'running') = (ended_at IS NULL)),\n"
    "    FOREIGN KEY (from_release, service) REFERENCES releases (id, service),\n"
    "    FOREIGN KEY (to_release, service) REFERENCES releases (id, service)\n"
    ") STRICT;\n"
    "CREATE INDEX deployments_by_service ON deployments (service, id);\n"
    "CREATE INDEX deployments_running ON deployments (id) WHERE outcome = 'running';\n"
    "\n"
    "CREATE TABLE events (\n"
    "    id      INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    at      INTEGER NOT NULL,\n"
    "    service TEXT,\n"
    "    actor   TEXT NOT NULL CONSTRAINT events_actor_nonempty CHECK (length(actor) > 0),\n"
    "    kind    TEXT NOT NULL CONSTRAINT events_kind_nonempty CHECK (length(kind) > 0),\n"
    "    detail  TEXT\n"
    ") STRICT;\n"
    "CREATE INDEX events_by_service ON events (service, id);\n";

/*
 * Detection (issue 3). incidents.service has no foreign key, like events: `asr detect` and
 * CloudWatch sources may name services the daemon never ran, and a fault must never be lost to
 * a constraint. Context and captured fields are JSON text checked with json_valid(). One open
 * incident per fingerprint is a unique partial index, so a bug in the detector cannot open a
 * duplicate. templates and log_positions are what detection needs to resume after a restart.
 */
static const char migration_2[] =
    "CREATE TABLE incidents (\n"
    "    id             INTEGER PRIMARY KEY,\n"
    "    parent_id      INTEGER REFERENCES incidents (id),\n"
    "    fingerprint    TEXT NOT NULL CONSTRAINT incidents_fingerprint_nonempty\n"
    "                       CHECK (length(fingerprint) > 0),\n"
    "    service        TEXT NOT NULL,\n"
    "    kind           TEXT NOT NULL CONSTRAINT incidents_kind_valid\n"
    "                       CHECK (kind IN ('signature', 'generic', 'exit')),\n"
    "    signature      TEXT NOT NULL,\n"
    "    severity       TEXT NOT NULL CONSTRAINT incidents_severity_valid\n"
    "                       CHECK (severity IN ('info', 'warning', 'error', 'critical')),\n"
    "    source         TEXT NOT NULL,\n"
    "    slot           TEXT,\n"
    "    release_commit TEXT,\n"
    "    template_id    INTEGER NOT NULL DEFAULT 0,\n"
    "    template       TEXT,\n"
    "    line           TEXT NOT NULL,\n"
    "    fields         TEXT NOT NULL DEFAULT '{}' CONSTRAINT incidents_fields_json\n"
    "                       CHECK (json_valid(fields)),\n"
    "    context_before TEXT NOT NULL DEFAULT '[]' CONSTRAINT incidents_before_json\n"
    "                       CHECK (json_valid(context_before)),\n"
    "    context_after  TEXT NOT NULL DEFAULT '[]' CONSTRAINT incidents_after_json\n"
    "                       CHECK (json_valid(context_after)),\n"
    "    context_done   INTEGER NOT NULL DEFAULT 0,\n"
    "    status         TEXT NOT NULL DEFAULT 'open' CONSTRAINT incidents_status_valid\n"
    "                       CHECK (status IN ('open', 'resolved')),\n"
    "    count          INTEGER NOT NULL DEFAULT 1 CONSTRAINT incidents_count_positive\n"
    "                       CHECK (count >= 1),\n"
    "    verifications  INTEGER NOT NULL DEFAULT 0,\n"
    "    first_seen     INTEGER NOT NULL,\n"
    "    last_seen      INTEGER NOT NULL,\n"
    "    received_us    INTEGER NOT NULL,\n"
    "    opened_at      INTEGER NOT NULL,\n"
    "    resolved_at    INTEGER,\n"
    "    resolution     TEXT,\n"
    "    CONSTRAINT incidents_resolved_iff_time\n"
    "        CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))\n"
    ") STRICT;\n"
    "CREATE UNIQUE INDEX incidents_one_open ON incidents (fingerprint) WHERE status = 'open';\n"
    "CREATE INDEX incidents_by_service ON incidents (service, id);\n"
    "CREATE INDEX incidents_by_fingerprint ON incidents (fingerprint, id);\n"
    "\n"
    "CREATE TABLE incident_notes (\n"
    "    id          INTEGER PRIMARY KEY,\n"
    "    incident_id INTEGER NOT NULL REFERENCES incidents (id),\n"
    "    at          INTEGER NOT NULL,\n"
    "    kind        TEXT NOT NULL CONSTRAINT incident_notes_kind_nonempty\n"
    "                    CHECK (length(kind) > 0),\n"
    "    detail      TEXT\n"
    ") STRICT;\n"
    "CREATE INDEX incident_notes_by_incident ON incident_notes (incident_id, id);\n"
    "\n"
    "CREATE TABLE templates (\n"
    "    service    TEXT NOT NULL,\n"
    "    cluster_id INTEGER NOT NULL,\n"
    "    template   TEXT NOT NULL,\n"
    "    count      INTEGER NOT NULL DEFAULT 0,\n"
    "    error_hits INTEGER NOT NULL DEFAULT 0,\n"
    "    updated_at INTEGER NOT NULL,\n"
    "    PRIMARY KEY (service, cluster_id)\n"
    ") STRICT, WITHOUT ROWID;\n"
    "\n"
    "CREATE TABLE log_positions (\n"
    "    path       TEXT NOT NULL PRIMARY KEY,\n"
    "    dev        INTEGER NOT NULL,\n"
    "    ino        INTEGER NOT NULL,\n"
    "    offset     INTEGER NOT NULL CONSTRAINT log_positions_offset_nonneg CHECK (offset >= 0),\n"
    "    updated_at INTEGER NOT NULL\n"
    ") STRICT;\n";

/*
 * The knowledge base (issue 4, src/strategy/kb.c): documents (playbooks and past incidents with
 * their outcome), an FTS5 index over their text whose tokenizer keeps identifiers whole
 * (`parse_request`, `FAULT_DB_TIMEOUT`), the signatures each document answers to (exact match
 * before any ranking), and the learned record of what worked.
 */
static const char migration_3[] =
    "CREATE TABLE kb_docs (\n"
    "    id          INTEGER PRIMARY KEY,\n"
    "    kind        TEXT NOT NULL CONSTRAINT kb_docs_kind_valid\n"
    "                    CHECK (kind IN ('playbook', 'incident')),\n"
    "    ref         TEXT NOT NULL CONSTRAINT kb_docs_ref_nonempty CHECK (length(ref) > 0),\n"
    "    service     TEXT,\n"
    "    fingerprint TEXT,\n"
    "    title       TEXT NOT NULL,\n"
    "    body        TEXT NOT NULL CONSTRAINT kb_docs_body_json CHECK (json_valid(body)),\n"
    "    source      TEXT,\n"
    "    terms       TEXT NOT NULL DEFAULT '',\n"
    "    updated_at  INTEGER NOT NULL,\n"
    "    UNIQUE (kind, ref)\n"
    ") STRICT;\n"
    "CREATE INDEX kb_docs_by_fingerprint ON kb_docs (fingerprint) WHERE fingerprint IS NOT NULL;\n"
    "\n"
    "CREATE TABLE kb_signatures (\n"
    "    doc_id    INTEGER NOT NULL REFERENCES kb_docs (id) ON DELETE CASCADE,\n"
    "    signature TEXT NOT NULL,\n"
    "    PRIMARY KEY (signature, doc_id)\n"
    ") STRICT, WITHOUT ROWID;\n"
    "CREATE INDEX kb_signatures_by_doc ON kb_signatures (doc_id);\n"
    "\n"
    "CREATE VIRTUAL TABLE kb_fts USING fts5(\n"
    "    title, symptoms, template, message, fields, route, service,\n"
    "    tokenize = \"unicode61 tokenchars '_'\"\n"
    ");\n"
    "CREATE TABLE kb_terms (\n"
    "    term TEXT NOT NULL PRIMARY KEY,\n"
    "    df   INTEGER NOT NULL CONSTRAINT kb_terms_df_nonneg CHECK (df >= 0)\n"
    ") STRICT, WITHOUT ROWID;\n"
    "\n"
    "CREATE TABLE kb_outcomes (\n"
    "    doc_id     INTEGER NOT NULL REFERENCES kb_docs (id) ON DELETE CASCADE,\n"
    "    signature  TEXT NOT NULL,\n"
    "    successes  INTEGER NOT NULL DEFAULT 0 CONSTRAINT kb_outcomes_s CHECK (successes >= 0),\n"
    "    failures   INTEGER NOT NULL DEFAULT 0 CONSTRAINT kb_outcomes_f CHECK (failures >= 0),\n"
    "    last_mttr_ms INTEGER,\n"
    "    updated_at INTEGER NOT NULL,\n"
    "    PRIMARY KEY (signature, doc_id)\n"
    ") STRICT, WITHOUT ROWID;\n"
    "CREATE INDEX kb_outcomes_by_doc ON kb_outcomes (doc_id);\n";

/*
 * Plans (issue 4, src/strategy/plan.c): every plan made for an incident, by the daemon or
 * `asr plan`, with the knowledge-base document it followed (so an outcome can be credited to
 * it), the LLM's token usage when one was asked, and what became of it.
 */
static const char migration_4[] =
    "CREATE TABLE plans (\n"
    "    id          INTEGER PRIMARY KEY,\n"
    "    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,\n"
    "    created_at  INTEGER NOT NULL,\n"
    "    strategy    TEXT NOT NULL CONSTRAINT plans_strategy_valid\n"
    "                    CHECK (strategy IN ('playbook', 'history', 'llm', 'fallback')),\n"
    "    confidence  REAL NOT NULL CONSTRAINT plans_confidence_range\n"
    "                    CHECK (confidence >= 0 AND confidence <= 1),\n"
    "    requires_approval INTEGER NOT NULL CONSTRAINT plans_approval_bool\n"
    "                    CHECK (requires_approval IN (0, 1)),\n"
    "    source_doc  INTEGER REFERENCES kb_docs (id) ON DELETE SET NULL,\n"
    "    status      TEXT NOT NULL DEFAULT 'proposed' CONSTRAINT plans_status_valid\n"
    "                    CHECK (status IN ('proposed', 'verified', 'failed')),\n"
    "    outcome_at  INTEGER,\n"
    "    mttr_ms     INTEGER,\n"
    "    llm_prompt_tokens     INTEGER,\n"
    "    llm_completion_tokens INTEGER,\n"
    "    body        TEXT NOT NULL CONSTRAINT plans_body_json CHECK (json_valid(body))\n"
    ") STRICT;\n"
    "CREATE INDEX plans_by_incident ON plans (incident_id, id);\n";

/*
 * The audit chain (issue 5, src/store/audit.c, docs/audit.md): one row per decision or action,
 * numbered 1, 2, 3, ... and chained by SHA-256 (each row's hash covers the previous row's hash
 * and every other column). The insert trigger refuses a row that does not extend the chain by
 * exactly one; the update and delete triggers make the table append-only in normal use. None of
 * this stops someone who can write the file (triggers can be dropped): `asr audit verify`
 * recomputes the chain to catch that. incident_id and plan_id are not foreign keys, like
 * events.service: an audit row must never be lost, or block a delete elsewhere, for a constraint.
 */
static const char migration_5[] =
    "CREATE TABLE audit (\n"
    "    seq         INTEGER PRIMARY KEY CONSTRAINT audit_seq_positive CHECK (seq >= 1),\n"
    "    at          INTEGER NOT NULL,\n"
    "    actor       TEXT NOT NULL CONSTRAINT audit_actor_nonempty CHECK (length(actor) > 0),\n"
    "    kind        TEXT NOT NULL CONSTRAINT audit_kind_nonempty CHECK (length(kind) > 0),\n"
    "    incident_id INTEGER,\n"
    "    plan_id     INTEGER,\n"
    "    detail      TEXT NOT NULL DEFAULT '{}' CONSTRAINT audit_detail_json\n"
    "                    CHECK (json_valid(detail)),\n"
    "    prev        TEXT NOT NULL CONSTRAINT audit_prev_hex\n"
    "                    CHECK (length(prev) = 64 AND prev NOT GLOB '*[^0-9a-f]*'),\n"
    "    hash        TEXT NOT NULL CONSTRAINT audit_hash_hex\n"
    "                    CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*')\n"
    ") STRICT;\n"
    "CREATE TRIGGER audit_append_only_insert BEFORE INSERT ON audit\n"
    "    WHEN NEW.seq IS NOT coalesce((SELECT max(seq) FROM audit), 0) + 1\n"
    "      OR NEW.prev IS NOT coalesce((SELECT hash FROM audit WHERE seq = NEW.seq - 1),\n"
    "                                  printf('%064d', 0))\n"
    "BEGIN SELECT RAISE(ABORT, 'audit: a new row must extend the chain by one'); END;\n"
    "CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit\n"
    "BEGIN SELECT RAISE(ABORT, 'audit: rows are append-only (no UPDATE)'); END;\n"
    "CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit\n"
    "BEGIN SELECT RAISE(ABORT, 'audit: rows are append-only (no DELETE)'); END;\n";

/*
 * Remediations and their journal (issue 5, include/asr/remediation.h, src/execute/executor.c):
 * one remediation per plan at most, and for each step an intent row written before it acts and
 * a result row after, keyed so that no step is ever recorded (or done) twice.
 */
static const char migration_6[] =
    "CREATE TABLE remediations (\n"
    "    id          INTEGER PRIMARY KEY,\n"
    "    plan_id     INTEGER NOT NULL UNIQUE REFERENCES plans (id) ON DELETE CASCADE,\n"
    "    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,\n"
    "    service     TEXT NOT NULL,\n"
    "    fingerprint TEXT NOT NULL,\n"
    "    state       TEXT NOT NULL CONSTRAINT remediations_state_valid CHECK (state IN\n"
    "                    ('awaiting_approval', 'running', 'succeeded', 'failed', 'escalated',\n"
    "                     'rejected', 'shadowed', 'refused')),\n"
    "    reason      TEXT,\n"
    "    approved_by TEXT,\n"
    "    created_at  INTEGER NOT NULL,\n"
    "    started_at  INTEGER,\n"
    "    finished_at INTEGER\n"
    ") STRICT;\n"
    "CREATE INDEX remediations_by_service ON remediations (service, created_at);\n"
    "CREATE INDEX remediations_by_fingerprint ON remediations (fingerprint, finished_at);\n"
    "CREATE INDEX remediations_by_incident ON remediations (incident_id, id);\n"
    "\n"
    "CREATE TABLE journal (\n"
    "    id             INTEGER PRIMARY KEY,\n"
    "    remediation_id INTEGER NOT NULL REFERENCES remediations (id) ON DELETE CASCADE,\n"
    "    step           INTEGER NOT NULL,\n"
    "    action         TEXT NOT NULL,\n"
    "    phase          TEXT NOT NULL CONSTRAINT journal_phase_valid\n"
    "                       CHECK (phase IN ('intent', 'result')),\n"
    "    idem_key       TEXT NOT NULL,\n"
    "    at             INTEGER NOT NULL,\n"
    "    ok             INTEGER CONSTRAINT journal_ok_bool CHECK (ok IN (0, 1)),\n"
    "    detail         TEXT NOT NULL DEFAULT '{}' CONSTRAINT journal_detail_json\n"
    "                       CHECK (json_valid(detail)),\n"
    "    UNIQUE (idem_key, phase)\n"
    ") STRICT;\n"
    "CREATE INDEX journal_by_remediation ON journal (remediation_id, id);\n";

/*
 * The event stream (issue 6): events name the incident they belong to, so the API's stream and
 * the dashboard can tell which incident an audit row or an opening is about.
 */
static const char migration_7[] =
    "ALTER TABLE events ADD COLUMN incident_id INTEGER;\n"
    "CREATE INDEX events_by_incident ON events (incident_id, id) WHERE incident_id IS NOT NULL;\n";

/*
 * Indexes for the API's questions (bench/api.sh on a store of 10,000 incidents): an incident's
 * stages look up its service's events by time (without the index every incident of a page read
 * all 210,000 events: 2-3 s a page, now milliseconds), and the policy gate and the status ask for
 * a service's remediations by state (8 ms a status, now under 1 ms).
 */
static const char migration_8[] =
    "CREATE INDEX events_by_service_at ON events (service, at);\n"
    "CREATE INDEX remediations_by_service_state ON remediations (service, state);\n";

static const struct asr_store_migration migrations[] = {
    {1, "services, releases, deployments, events", migration_1},
    {2, "incidents, incident notes, templates, log positions", migration_2},
    {3, "knowledge base: documents, signatures, full-text index, outcomes", migration_3},
    {4, "plans", migration_4},
    {5, "audit chain", migration_5},
    {6, "remediations, journal", migration_6},
    {7, "events name their incident", migration_7},
    {8, "indexes: events by service and time, remediations by service and state", migration_8},
};

const struct asr_store_migration *asr_store_migrations(size_t *n)
{
    *n = sizeof(migrations) / sizeof(migrations[0]);
    return migrations;
}

int asr_store_read_version(sqlite3 *db, int *out, struct asr_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);
    if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
        *out = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
        return 0;
    }
    asr_err_set(err, ASR_EDB, "store: read schema version: %s", sqlite3_errmsg(db));
    sqlite3_finalize(s);
    return ASR_EDB;
}

/* What the authorizer saw while a migration script was being prepared. */
struct script_guard {
    bool saw_transaction;
};

/*
 * Authorizer installed while a migration script runs: BEGIN, COMMIT and ROLLBACK in a script
 * would end the migration's transaction early and commit half of it, so they are refused before
 * they run. Savepoints stay allowed; they nest inside the transaction.
 */
static int script_auth_cb(void *arg, int action, const char *a, const char *b, const char *c,
                          const char *d)
{
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    struct script_guard *g = arg;
    if (action == SQLITE_TRANSACTION) {
        g->saw_transaction = true;
        return SQLITE_DENY;
    }
    return SQLITE_OK;
}

/* Runs one statement with no result rows needed; returns the SQLite code. */
static int exec1(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/*
 * Applies one migration. The version is read again inside the write transaction: another
 * process opening the same file may have applied this migration while we waited for the lock,
 * in which case there is nothing left to do.
 */
static int apply_one(sqlite3 *db, const char *path, const struct asr_store_migration *m,
                     struct asr_err *err)
{
    char *errmsg = NULL;
    sqlite3_stmt *fk = NULL;
    struct script_guard guard = {false};
    char bump[64];
    int rc = 0;
    int cur = 0;
    int step;

    if (exec1(db, "BEGIN IMMEDIATE") != SQLITE_OK)
        return asr_err_set(err, ASR_EDB, "store: %s: migration %d (%s): begin: %s", path,
                           m->version, m->name, sqlite3_errmsg(db));

    if (asr_store_read_version(db, &cur, err) != 0) {
        rc = ASR_EDB;
        goto out;
    }
    if (cur >= m->version)
        goto out; /* applied by someone else meanwhile; commit the empty transaction */

    sqlite3_set_authorizer(db, script_auth_cb, &guard);
    int src = sqlite3_exec(db, m->sql, NULL, NULL, &errmsg);
    sqlite3_set_authorizer(db, NULL, NULL);
    if (src != SQLITE_OK) {
        if (guard.saw_transaction)
            rc = asr_err_set(err, ASR_EDB,
                             "store: %s: migration %d (%s): scripts must not contain BEGIN, "
                             "COMMIT or ROLLBACK (%s)",
                             path, m->version, m->name, errmsg ? errmsg : sqlite3_errstr(src));
        else
            rc = asr_err_set(err, ASR_EDB, "store: %s: migration %d (%s): %s", path, m->version,
                             m->name, errmsg ? errmsg : sqlite3_errstr(src));
        goto out;
    }

    /*
     * PRAGMA takes no bound parameters, so the version is formatted into the statement. It is
     * an int from the static table above, never outside data.
     */
    snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", m->version);
    if (exec1(db, bump) != SQLITE_OK) {
        rc = asr_err_set(err, ASR_EDB, "store: %s: migration %d (%s): set version: %s", path,
                         m->version, m->name, sqlite3_errmsg(db));
        goto out;
    }

    /*
     * foreign_keys cannot be switched off inside a transaction, so a migration that rebuilds a
     * table defers the checks instead; this catches what it left behind before it commits.
     */
    if (sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &fk, NULL) != SQLITE_OK) {
        rc = asr_err_set(err, ASR_EDB, "store: %s: migration %d (%s): foreign key check: %s", path,
                         m->version, m->name, sqlite3_errmsg(db));
        goto out;
    }
    step = sqlite3_step(fk);
    if (step == SQLITE_ROW) {
        rc = asr_err_set(err, ASR_EDB,
                         "store: %s: migration %d (%s): leaves a foreign key violation in table "
                         "%s (row %lld)",
                         path, m->version, m->name, (const char *)sqlite3_column_text(fk, 0),
                         (long long)sqlite3_column_int64(fk, 1));
        goto out;
    }
    if (step != SQLITE_DONE) {
        rc = asr_err_set(err, ASR_EDB, "store: %s: migration %d (%s): foreign key check: %s", path,
                         m->version, m->name, sqlite3_errmsg(db));
        goto out;
    }

out:
    sqlite3_finalize(fk);
    sqlite3_free(errmsg);
    if (rc == 0 && exec1(db, "COMMIT") != SQLITE_OK)
        rc = asr_err_set(err, ASR_EDB, "store: %s: migration %d (%s): commit: %s", path, m->version,
                         m->name, sqlite3_errmsg(db));
    if (rc != 0 && !sqlite3_get_autocommit(db))
        exec1(db, "ROLLBACK");
    return rc;
}

int asr_store_migrate(sqlite3 *db, const char *path, const struct asr_store_migration *m, size_t n,
                      struct asr_err *err)
{
    if (n > 1000000)
        return asr_err_set(err, ASR_EINVAL, "store: migration table has %zu entries", n);
    for (size_t i = 0; i < n; i++) {
        if (m[i].version != (int)i + 1 || m[i].sql == NULL || m[i].name == NULL)
            return asr_err_set(err, ASR_EINVAL,
                               "store: migration table entry %zu has version %d, expected %zu "
                               "(versions are 1, 2, 3, ... in order, each with a name and sql)",
                               i, m[i].version, i + 1);
    }

    int version = 0;
    int rc = asr_store_read_version(db, &version, err);
    if (rc != 0)
        return rc;
    if (version < 0)
        return asr_err_set(err, ASR_EDB, "store: %s: schema version %d is not valid", path,
                           version);
    if ((size_t)version > n)
        return asr_err_set(err, ASR_EDB,
                           "store: %s: schema version %d is newer than this asr knows (%zu); "
                           "use a newer asr or another state dir",
                           path, version, n);

    for (size_t i = (size_t)version; i < n; i++) {
        rc = apply_one(db, path, &m[i], err);
        if (rc != 0)
            return rc;
    }

    /* Another process may have migrated past us while we waited for its lock. */
    rc = asr_store_read_version(db, &version, err);
    if (rc == 0 && (size_t)version > n)
        rc = asr_err_set(err, ASR_EDB,
                         "store: %s: schema version %d is newer than this asr knows (%zu); "
                         "use a newer asr or another state dir",
                         path, version, n);
    return rc;
}
