/*
 * store_int.h - the inside of the store, shared by the files of src/store/ and by its unit test.
 *
 * store.h is what the rest of asr sees. This header adds what a second store module (incidents,
 * journal, audit chain) needs to follow the same rules: the connection, the clock, and the
 * BEGIN IMMEDIATE helpers. It also holds the migration table and two test hooks: opening a file
 * with a migration list of the caller's, and replacing the clock. Nothing outside src/store/ and
 * tests/unit/test_store.c includes it.
 */
#ifndef ASR_STORE_INT_H
#define ASR_STORE_INT_H

#include "asr/error.h"
#include "asr/store.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/*
 * One migration: version N is the N-th entry of its table (versions are 1, 2, 3, ... with no
 * gaps). sql is one or more statements run with sqlite3_exec() inside the migration's
 * transaction; it must not contain BEGIN, COMMIT or ROLLBACK (the authorizer refuses them).
 * Applied migrations are never edited: a change to the schema is a new entry at the end.
 */
struct asr_store_migration {
    int version;
    const char *name; /* a few words, shown in errors: "services, releases, deployments, events" */
    const char *sql;
};

/* The migrations of this build of asr; *n receives their count. Static, never freed. */
const struct asr_store_migration *asr_store_migrations(size_t *n);

/*
 * Brings the database on db up to version n by applying m[version .. n-1], each in its own
 * BEGIN IMMEDIATE transaction together with the bump of PRAGMA user_version. path is only used in
 * messages. Returns 0, ASR_EINVAL for a malformed table, or ASR_EDB: a database newer than n, or
 * a failed migration (rolled back, err->msg names its number and SQLite's message).
 */
int asr_store_migrate(sqlite3 *db, const char *path, const struct asr_store_migration *m, size_t n,
                      struct asr_err *err);

/* Reads PRAGMA user_version into *out. Returns 0 or ASR_EDB. */
int asr_store_read_version(sqlite3 *db, int *out, struct asr_err *err);

/* Test hook: asr_store_open_file() with a migration table of the caller's instead of ours. */
int asr_store_open_file_with_migrations(const char *path, const struct asr_store_migration *m,
                                        size_t n, struct asr_store **out, struct asr_err *err);

/*
 * Test hook: every timestamp the store writes comes from now_cb(arg) instead of
 * asr_time_wall_ms(). A NULL now_cb restores the wall clock.
 */
void asr_store_set_clock(struct asr_store *st, int64_t (*now_cb)(void *arg), void *arg);

/* For other store modules: the connection (owned by st) and the time the store stamps rows with. */
sqlite3 *asr_store_db(struct asr_store *st);
int64_t asr_store_now(struct asr_store *st);

/*
 * Write transactions. asr_store_begin() runs BEGIN IMMEDIATE (waiting up to the busy timeout for
 * another writer); asr_store_commit() commits; asr_store_rollback() rolls back if a transaction is
 * open and is safe to call when none is. op names the operation in error messages.
 */
int asr_store_begin(struct asr_store *st, const char *op, struct asr_err *err);
int asr_store_commit(struct asr_store *st, const char *op, struct asr_err *err);
void asr_store_rollback(struct asr_store *st);

/*
 * The audit chain's hook into transactions (audit.c, include/asr/audit.h): asr_audit_append()
 * records the head it appended with asr_store_audit_pending(); asr_store_commit() passes the
 * newest one to asr_audit_anchor() once the commit has succeeded, and asr_store_begin() and
 * asr_store_rollback() forget it. So audit.head is only ever written for committed rows.
 * asr_audit_anchor() never fails the commit: a row that is on disk stays acknowledged, and an
 * anchor that could not be written lags behind, which verify tolerates (it logs a warning).
 */
void asr_store_audit_pending(struct asr_store *st, int64_t seq, const char *hash);

/* An events row in the caller's open transaction (asr_store_event_add without its own commit);
 * at 0: the store's clock; service NULL with an incident takes the incident's service;
 * incident_id 0: none. */
int asr_store_event_in_tx(struct asr_store *st, int64_t at, const char *service,
                          int64_t incident_id, const char *actor, const char *kind,
                          const char *detail, const char *op, struct asr_err *err);
void asr_audit_anchor(struct asr_store *st, int64_t seq, const char *hash);

/*
 * Records the connection's last error as "store: <op>: <sqlite message>" and returns ASR_EDB
 * (ASR_ENOMEM when SQLite ran out of memory).
 */
int asr_store_fail(struct asr_store *st, const char *op, struct asr_err *err);

/*
 * Statement helpers shared by the store modules (store.c, incidents.c).
 *
 * asr_store_prepare() returns a statement prepared once per connection and cached on st under
 * the address of sql, which must therefore be a static string; it is finalized by
 * asr_store_close(). NULL with err set on failure. asr_store_reset() returns a statement to its
 * unused state (no cursor, no bindings). asr_store_bind_str() binds text or NULL.
 * asr_store_run() steps a statement that returns no rows and resets it. asr_store_finish() ends a
 * write transaction: commit after success, rollback after a failure. asr_store_col_dup() copies
 * a text column (NULL for SQL NULL; ASR_ENOMEM). asr_store_collect() reads every row of a bound
 * SELECT into a growing array of size-byte elements, freeing what was read on failure.
 */
#define ASR_STORE_MAX_EXTRA_STMTS 128
/* ASR_EINVAL with "store: OP: WHAT", for a call with missing or invalid arguments. */
int asr_store_bad_arg(struct asr_err *err, const char *op, const char *what);
sqlite3_stmt *asr_store_prepare(struct asr_store *st, const char *sql, const char *op,
                                struct asr_err *err);
void asr_store_reset(sqlite3_stmt *s);
int asr_store_bind_str(sqlite3_stmt *stm, int i, const char *s);
int asr_store_run(struct asr_store *st, sqlite3_stmt *s, const char *op, struct asr_err *err);
int asr_store_finish(struct asr_store *st, int rc, const char *op, struct asr_err *err);
int asr_store_col_dup(sqlite3_stmt *s, int i, char **out);
int asr_store_collect(struct asr_store *st, sqlite3_stmt *s, const char *op, size_t size,
                      int (*read_cb)(sqlite3_stmt *s, void *row),
                      void (*free_cb)(void *rows, size_t n), void **out, size_t *n,
                      struct asr_err *err);

#endif
