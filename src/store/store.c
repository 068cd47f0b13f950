/*
 * store.c - asr's state in one SQLite file: services, releases, deployments and the event
 * timeline (see store.h for the API, docs/store.md for the schema and the rules).
 *
 * Every stage of the pipeline records what it did here, so this file keeps three promises:
 * nothing is acknowledged before it is on disk (WAL + synchronous=FULL), every write takes the
 * write lock up front (BEGIN IMMEDIATE, so two processes on one file queue on the busy timeout
 * instead of failing on a lock upgrade), and values only ever reach SQL as bound parameters.
 *
 * Statements are prepared once per connection, on first use, from the table below, and are
 * always reset after use: a statement left mid-step would hold a read snapshot open and keep
 * the WAL from being checkpointed.
 */
#include "asr/store.h"
#include "asr/timeutil.h"
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* How long a write waits for another connection's write lock before failing. */
#define STORE_BUSY_TIMEOUT_MS 5000
/* The oldest SQLite with STRICT tables (3.37.0); Debian 12 ships 3.40. */
#define STORE_MIN_SQLITE 3037000

enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_SERVICE_UPSERT,
    S_RELEASE_INSERT,
    S_RELEASE_BY_ID,
    S_RELEASE_BY_COMMIT,
    S_RELEASE_SERVICE,
    S_RELEASE_SET_BUILD,
    S_RELEASE_SET_TEST,
    S_RELEASE_SET_STATE,
    S_RELEASE_BUILD_OUTPUT,
    S_RELEASE_TEST_OUTPUT,
    S_RELEASE_LAST_GOOD,
    S_DEPLOY_INSERT,
    S_DEPLOY_END,
    S_DEPLOY_OUTCOME,
    S_DEPLOY_LAST,
    S_DEPLOY_LIST,
    S_DEPLOY_LIST_ALL,
    S_DEPLOY_ABANDON,
    S_EVENT_INSERT,
    S_EVENT_LIST,
    S_EVENT_LIST_ALL,
    S_COUNT
};

/* Column lists shared by the SELECTs and the row readers below; keep them in step. */
#define RELEASE_COLS                                                                               \
    "id, service, commit_sha, state, reason, dir, build_status, test_status, build_ms, test_ms, "  \
    "created_at"
#define DEPLOY_COLS                                                                                \
    "id, service, kind, from_release, to_release, started_at, ended_at, outcome, reason"
#define EVENT_COLS "id, at, service, actor, kind, detail, incident_id"

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SERVICE_UPSERT] = "INSERT INTO services (name, created_at) VALUES (?1, ?2) "
                         "ON CONFLICT (name) DO NOTHING",
    [S_RELEASE_INSERT] = "INSERT INTO releases (service, commit_sha, dir, state, created_at, "
                         "updated_at) VALUES (?1, ?2, ?3, 'building', ?4, ?4) "
                         "ON CONFLICT (service, commit_sha) DO NOTHING",
    [S_RELEASE_BY_ID] = "SELECT " RELEASE_COLS " FROM releases WHERE id = ?1",
    [S_RELEASE_BY_COMMIT] =
        "SELECT " RELEASE_COLS " FROM releases WHERE service = ?1 AND commit_sha = ?2",
    [S_RELEASE_SERVICE] = "SELECT service FROM releases WHERE id = ?1",
    [S_RELEASE_SET_BUILD] = "UPDATE releases SET build_status = ?2, build_ms = ?3, "
                            "build_output = ?4, updated_at = ?5 WHERE id = ?1",
    [S_RELEASE_SET_TEST] = "UPDATE releases SET test_status = ?2, test_ms = ?3, "
                           "test_output = ?4, updated_at = ?5 WHERE id = ?1",
    [S_RELEASE_SET_STATE] = "UPDATE releases SET state = ?2, reason = ?3, updated_at = ?4 "
                            "WHERE id = ?1",
    [S_RELEASE_BUILD_OUTPUT] = "SELECT build_output FROM releases WHERE id = ?1",
    [S_RELEASE_TEST_OUTPUT] = "SELECT test_output FROM releases WHERE id = ?1",
    /* Ties within one millisecond go to the newer release. */
    [S_RELEASE_LAST_GOOD] = "SELECT " RELEASE_COLS " FROM releases "
                            "WHERE service = ?1 AND state = 'good' AND id <> ?2 "
                            "ORDER BY updated_at DESC, id DESC LIMIT 1",
    [S_DEPLOY_INSERT] = "INSERT INTO deployments (service, kind, from_release, to_release, "
                        "started_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5, 'running')",
    [S_DEPLOY_END] = "UPDATE deployments SET outcome = ?2, reason = ?3, ended_at = ?4 "
                     "WHERE id = ?1 AND outcome = 'running'",
    [S_DEPLOY_OUTCOME] = "SELECT outcome FROM deployments WHERE id = ?1",
    [S_DEPLOY_LAST] = "SELECT " DEPLOY_COLS " FROM deployments WHERE service = ?1 "
                      "ORDER BY id DESC LIMIT 1",
    [S_DEPLOY_LIST] = "SELECT " DEPLOY_COLS " FROM deployments WHERE service = ?1 "
                      "ORDER BY id DESC LIMIT ?2",
    [S_DEPLOY_LIST_ALL] = "SELECT " DEPLOY_COLS " FROM deployments ORDER BY id DESC LIMIT ?2",
    [S_DEPLOY_ABANDON] = "UPDATE deployments SET outcome = 'failed', reason = ?1, ended_at = ?2 "
                         "WHERE outcome = 'running'",
    /* An incident's event without a service of its own takes the incident's. */
    [S_EVENT_INSERT] = "INSERT INTO events (at, service, actor, kind, detail, incident_id) "
                       "VALUES (?1, COALESCE(?2, (SELECT service FROM incidents WHERE id = ?6)), "
                       "?3, ?4, ?5, ?6)",
    [S_EVENT_LIST] = "SELECT " EVENT_COLS " FROM events WHERE id > ?1 AND service = ?2 "
                     "ORDER BY id LIMIT ?3",
    [S_EVENT_LIST_ALL] = "SELECT " EVENT_COLS " FROM events WHERE id > ?1 ORDER BY id LIMIT ?3",
};

struct asr_store {
    sqlite3 *db;
    char *path;
    int64_t (*now_cb)(void *arg);
    void *now_arg;
    sqlite3_stmt *stmts[S_COUNT]; /* prepared on first use, finalized on close */
    struct {
        const char *sql; /* identity: the address of a static string of another store module */
        sqlite3_stmt *stmt;
    } extra[ASR_STORE_MAX_EXTRA_STMTS];
    struct {
        int64_t seq; /* 0: no audit row appended in the open transaction */
        char hash[65];
    } audit_pending;
    int64_t event_head; /* the newest events row written through this connection or seen at open */
};

/* ---- plumbing ------------------------------------------------------------------------------ */

static int64_t wall_now_cb(void *arg)
{
    (void)arg;
    return asr_time_wall_ms();
}

int64_t asr_store_now(struct asr_store *st)
{
    return st->now_cb(st->now_arg);
}

void asr_store_set_clock(struct asr_store *st, int64_t (*now_cb)(void *arg), void *arg)
{
    st->now_cb = now_cb != NULL ? now_cb : wall_now_cb;
    st->now_arg = now_cb != NULL ? arg : NULL;
}

sqlite3 *asr_store_db(struct asr_store *st)
{
    return st->db;
}

int asr_store_fail(struct asr_store *st, const char *op, struct asr_err *err)
{
    int code = sqlite3_errcode(st->db) == SQLITE_NOMEM ? ASR_ENOMEM : ASR_EDB;
    return asr_err_set(err, code, "store: %s: %s", op, sqlite3_errmsg(st->db));
}

int asr_store_bad_arg(struct asr_err *err, const char *op, const char *what)
{
    return asr_err_set(err, ASR_EINVAL, "store: %s: %s", op, what);
}

/* The cached statement for id, prepared on first use; NULL with err set on failure. */
static sqlite3_stmt *stmt(struct asr_store *st, enum stmt_id id, const char *op,
                          struct asr_err *err)
{
    if (st->stmts[id] == NULL &&
        sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st->stmts[id],
                           NULL) != SQLITE_OK) {
        asr_store_fail(st, op, err);
        return NULL;
    }
    return st->stmts[id];
}

sqlite3_stmt *asr_store_prepare(struct asr_store *st, const char *sql, const char *op,
                                struct asr_err *err)
{
    size_t i = 0;
    for (; i < ASR_STORE_MAX_EXTRA_STMTS && st->extra[i].sql != NULL; i++)
        if (st->extra[i].sql == sql)
            return st->extra[i].stmt;
    if (i == ASR_STORE_MAX_EXTRA_STMTS) {
        asr_err_set(err, ASR_EINVAL, "store: %s: more than %d cached statements", op,
                    ASR_STORE_MAX_EXTRA_STMTS);
        return NULL;
    }
    if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->extra[i].stmt, NULL) !=
        SQLITE_OK) {
        asr_store_fail(st, op, err);
        sqlite3_finalize(st->extra[i].stmt);
        st->extra[i].stmt = NULL;
        return NULL;
    }
    st->extra[i].sql = sql;
    return st->extra[i].stmt;
}

/* Returns a cached statement to its unused state: no open cursor, no bound values. */
void asr_store_reset(sqlite3_stmt *s)
{
    if (s != NULL) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
}

/* Binds s (may be NULL) as text, or NULL. */
int asr_store_bind_str(sqlite3_stmt *stm, int i, const char *s)
{
    return s != NULL ? sqlite3_bind_text(stm, i, s, -1, SQLITE_TRANSIENT)
                     : sqlite3_bind_null(stm, i);
}

/* Steps a statement that returns no rows, then resets it. */
int asr_store_run(struct asr_store *st, sqlite3_stmt *s, const char *op, struct asr_err *err)
{
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : asr_store_fail(st, op, err);
    asr_store_reset(s);
    return rc;
}

void asr_store_audit_pending(struct asr_store *st, int64_t seq, const char *hash)
{
    st->audit_pending.seq = seq;
    snprintf(st->audit_pending.hash, sizeof(st->audit_pending.hash), "%s", hash);
}

int asr_store_begin(struct asr_store *st, const char *op, struct asr_err *err)
{
    st->audit_pending.seq = 0;
    sqlite3_stmt *s = stmt(st, S_BEGIN, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (sqlite3_step(s) != SQLITE_DONE) {
        int rc = asr_err_set(err, sqlite3_errcode(st->db) == SQLITE_NOMEM ? ASR_ENOMEM : ASR_EDB,
                             "store: %s: begin: %s", op, sqlite3_errmsg(st->db));
        asr_store_reset(s);
        return rc;
    }
    asr_store_reset(s);
    return 0;
}

int asr_store_commit(struct asr_store *st, const char *op, struct asr_err *err)
{
    sqlite3_stmt *s = stmt(st, S_COMMIT, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (sqlite3_step(s) != SQLITE_DONE) {
        int rc = asr_err_set(err, sqlite3_errcode(st->db) == SQLITE_NOMEM ? ASR_ENOMEM : ASR_EDB,
                             "store: %s: commit: %s", op, sqlite3_errmsg(st->db));
        asr_store_reset(s);
        return rc;
    }
    asr_store_reset(s);
    if (st->audit_pending.seq > 0) {
        asr_audit_anchor(st, st->audit_pending.seq, st->audit_pending.hash);
        st->audit_pending.seq = 0;
    }
    return 0;
}

void asr_store_rollback(struct asr_store *st)
{
    st->audit_pending.seq = 0;
    if (sqlite3_get_autocommit(st->db))
        return; /* no transaction open (or SQLite already rolled it back) */
    sqlite3_stmt *s = stmt(st, S_ROLLBACK, "rollback", NULL);
    if (s != NULL) {
        sqlite3_step(s);
        asr_store_reset(s);
    } else {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

/* Ends a write transaction: commits after success, rolls back after a failure. */
int asr_store_finish(struct asr_store *st, int rc, const char *op, struct asr_err *err)
{
    if (rc == 0)
        rc = asr_store_commit(st, op, err);
    if (rc != 0)
        asr_store_rollback(st);
    return rc;
}

/* Copies column i as a C string (NULL for SQL NULL) into *out. */
int asr_store_col_dup(sqlite3_stmt *s, int i, char **out)
{
    *out = NULL;
    if (sqlite3_column_type(s, i) == SQLITE_NULL)
        return 0;
    const unsigned char *t = sqlite3_column_text(s, i);
    if (t == NULL)
        return ASR_ENOMEM;
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    char *p = malloc(n + 1);
    if (p == NULL)
        return ASR_ENOMEM;
    memcpy(p, t, n);
    p[n] = '\0';
    *out = p;
    return 0;
}

/* ---- open and close ------------------------------------------------------------------------ */

/* mkdir -p: creates dir and missing parents with mode 0700; existing ones are left as they are. */
static int mkdir_p(const char *dir, struct asr_err *err)
{
    char *p = strdup(dir);
    if (p == NULL)
        return asr_err_set(err, ASR_ENOMEM, "store: create state dir %s: out of memory", dir);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = asr_err_set(err, ASR_EIO, "store: create state dir %s: %s", p, strerror(errno));
            goto out;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0)
        rc = asr_err_set(err, ASR_EIO, "store: state dir %s: %s", dir, strerror(errno));
    else if (!S_ISDIR(sb.st_mode))
        rc = asr_err_set(err, ASR_EIO, "store: state dir %s: not a directory", dir);
out:
    free(p);
    return rc;
}

/* Runs a PRAGMA that answers with one row and copies the answer's first column into buf. */
static int pragma(struct asr_store *st, const char *sql, char *buf, size_t cap, struct asr_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc = 0;
    buf[0] = '\0';
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        rc = asr_err_set(err, ASR_EDB, "store: %s: %s: %s", st->path, sql, sqlite3_errmsg(st->db));
        goto out;
    }
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        size_t n = t != NULL ? strlen((const char *)t) : 0;
        if (n >= cap)
            n = cap - 1;
        memcpy(buf, t != NULL ? (const char *)t : "", n);
        buf[n] = '\0';
    } else if (step != SQLITE_DONE) {
        rc = asr_err_set(err, ASR_EDB, "store: %s: %s: %s", st->path, sql, sqlite3_errmsg(st->db));
    }
out:
    sqlite3_finalize(s);
    return rc;
}

/*
 * The connection settings, checked after they are set because SQLite ignores some silently:
 * journal_mode answers with the mode it actually chose, foreign_keys is a no-op in builds
 * without it.
 */
static int configure(struct asr_store *st, struct asr_err *err)
{
    char v[32];
    int rc;

    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
    if ((rc = pragma(st, "PRAGMA journal_mode = WAL", v, sizeof(v), err)) != 0)
        return rc;
    const char *file = sqlite3_db_filename(st->db, "main");
    bool in_memory = file == NULL || file[0] == '\0';
    if (strcmp(v, "wal") != 0 && !(in_memory && strcmp(v, "memory") == 0))
        return asr_err_set(err, ASR_EDB,
                           "store: %s: journal_mode is \"%s\", not \"wal\" (is the file system "
                           "without shared memory or locking?)",
                           st->path, v);
    if ((rc = pragma(st, "PRAGMA synchronous = FULL", v, sizeof(v), err)) != 0 ||
        (rc = pragma(st, "PRAGMA synchronous", v, sizeof(v), err)) != 0)
        return rc;
    if (strcmp(v, "2") != 0)
        return asr_err_set(err, ASR_EDB, "store: %s: synchronous is %s, not FULL (2)", st->path, v);
    if ((rc = pragma(st, "PRAGMA foreign_keys = ON", v, sizeof(v), err)) != 0 ||
        (rc = pragma(st, "PRAGMA foreign_keys", v, sizeof(v), err)) != 0)
        return rc;
    if (strcmp(v, "1") != 0)
        return asr_err_set(err, ASR_EDB, "store: %s: this SQLite does not enforce foreign keys",
                           st->path);
    return 0;
}

int asr_store_open_file_with_migrations(const char *path, const struct asr_store_migration *m,
                                        size_t n, struct asr_store **out, struct asr_err *err)
{
    struct asr_store *st = NULL;
    int rc = 0;

    if (out == NULL)
        return asr_store_bad_arg(err, "open", "no out pointer");
    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return asr_store_bad_arg(err, "open", "no database path");
    if (m == NULL && n > 0)
        return asr_store_bad_arg(err, "open", "no migration table");
    if (sqlite3_libversion_number() < STORE_MIN_SQLITE)
        return asr_err_set(err, ASR_EDB, "store: SQLite %s is too old; asr needs 3.37.0 or newer",
                           sqlite3_libversion());

    st = calloc(1, sizeof(*st));
    if (st == NULL || (st->path = strdup(path)) == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "store: open %s: out of memory", path);
        goto out;
    }
    st->now_cb = wall_now_cb;

    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_EXRESCODE;
    int src = sqlite3_open_v2(path, &st->db, flags, NULL);
    if (src != SQLITE_OK) {
        rc = asr_err_set(err, src == SQLITE_NOMEM ? ASR_ENOMEM : ASR_EDB, "store: open %s: %s",
                         path, st->db != NULL ? sqlite3_errmsg(st->db) : sqlite3_errstr(src));
        goto out;
    }
    if ((rc = configure(st, err)) != 0)
        goto out;
    if ((rc = asr_store_migrate(st->db, path, m, n, err)) != 0)
        goto out;
    sqlite3_stmt *head = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT max(id) FROM events", -1, &head, NULL) == SQLITE_OK &&
        sqlite3_step(head) == SQLITE_ROW)
        st->event_head = sqlite3_column_int64(head, 0);
    sqlite3_finalize(head);
    *out = st;
    st = NULL;
out:
    asr_store_close(st);
    return rc;
}

int asr_store_open_file(const char *path, struct asr_store **out, struct asr_err *err)
{
    size_t n;
    const struct asr_store_migration *m = asr_store_migrations(&n);
    return asr_store_open_file_with_migrations(path, m, n, out, err);
}

int asr_store_open(const char *state_dir, struct asr_store **out, struct asr_err *err)
{
    if (out != NULL)
        *out = NULL;
    if (state_dir == NULL || state_dir[0] == '\0')
        return asr_store_bad_arg(err, "open", "no state dir");

    int rc = mkdir_p(state_dir, err);
    if (rc != 0)
        return rc;
    size_t len = strlen(state_dir);
    char *path = malloc(len + sizeof("/asr.db"));
    if (path == NULL)
        return asr_err_set(err, ASR_ENOMEM, "store: open %s: out of memory", state_dir);
    memcpy(path, state_dir, len);
    memcpy(path + len, "/asr.db", sizeof("/asr.db"));

    /*
     * Created here, mode 0600, before SQLite sees it: SQLite gives the -wal and -shm files the
     * mode of the database, and the state dir may be an existing, wider-open directory.
     */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = asr_err_set(err, ASR_EIO, "store: open %s: %s", path, strerror(errno));
    } else {
        close(fd);
        rc = asr_store_open_file(path, out, err);
    }
    free(path);
    return rc;
}

void asr_store_close(struct asr_store *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(st->stmts[i]);
    for (int i = 0; i < ASR_STORE_MAX_EXTRA_STMTS; i++)
        sqlite3_finalize(st->extra[i].stmt);
    /* Every statement is finalized above, so close cannot be refused as busy. */
    sqlite3_close(st->db);
    free(st->path);
    free(st);
}

int asr_store_schema_version(struct asr_store *st)
{
    if (st == NULL)
        return ASR_EINVAL;
    int v = 0;
    int rc = asr_store_read_version(st->db, &v, NULL);
    return rc != 0 ? rc : v;
}

/* ---- services ------------------------------------------------------------------------------ */

/* Inserts the service if it is new; runs inside the caller's transaction. */
static int service_upsert(struct asr_store *st, const char *name, const char *op,
                          struct asr_err *err)
{
    sqlite3_stmt *s = stmt(st, S_SERVICE_UPSERT, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (asr_store_bind_str(s, 1, name) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, asr_store_now(st)) != SQLITE_OK) {
        int rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        return rc;
    }
    return asr_store_run(st, s, op, err);
}

int asr_store_service_upsert(struct asr_store *st, const char *name, struct asr_err *err)
{
    const char *op = "upsert service";
    if (st == NULL || name == NULL || name[0] == '\0')
        return asr_store_bad_arg(err, op, "no store or no service name");
    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    rc = service_upsert(st, name, op, err);
    return asr_store_finish(st, rc, op, err);
}

/* ---- releases ------------------------------------------------------------------------------ */

static void release_clear(struct asr_release *r)
{
    memset(r, 0, sizeof(*r));
    r->build_status = -1;
    r->test_status = -1;
}

void asr_release_free(struct asr_release *r)
{
    if (r == NULL)
        return;
    free(r->service);
    free(r->commit);
    free(r->state);
    free(r->reason);
    free(r->dir);
    release_clear(r);
}

/* Reads a row of RELEASE_COLS. */
static int read_release(sqlite3_stmt *s, struct asr_release *r)
{
    r->id = sqlite3_column_int64(s, 0);
    if (asr_store_col_dup(s, 1, &r->service) || asr_store_col_dup(s, 2, &r->commit) ||
        asr_store_col_dup(s, 3, &r->state) || asr_store_col_dup(s, 4, &r->reason) ||
        asr_store_col_dup(s, 5, &r->dir)) {
        asr_release_free(r);
        return ASR_ENOMEM;
    }
    r->build_status = sqlite3_column_int(s, 6);
    r->test_status = sqlite3_column_int(s, 7);
    r->build_ms = sqlite3_column_int64(s, 8);
    r->test_ms = sqlite3_column_int64(s, 9);
    r->created_at = sqlite3_column_int64(s, 10);
    return 0;
}

/*
 * Steps a bound SELECT of RELEASE_COLS and reads its first row into out; ASR_ENOENT with
 * `missing` as the message when there is none. Resets s.
 */
static int fetch_release(struct asr_store *st, sqlite3_stmt *s, const char *op, const char *missing,
                         struct asr_release *out, struct asr_err *err)
{
    int rc = 0;
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        if (read_release(s, out) != 0)
            rc = asr_err_set(err, ASR_ENOMEM, "store: %s: out of memory", op);
    } else if (step == SQLITE_DONE) {
        rc = asr_err_set(err, ASR_ENOENT, "store: %s: %s", op, missing);
    } else {
        rc = asr_store_fail(st, op, err);
    }
    asr_store_reset(s);
    return rc;
}

static int release_by_id(struct asr_store *st, int64_t id, const char *op, struct asr_release *out,
                         struct asr_err *err)
{
    sqlite3_stmt *s = stmt(st, S_RELEASE_BY_ID, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK) {
        int rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        return rc;
    }
    char missing[64];
    snprintf(missing, sizeof(missing), "no release %lld", (long long)id);
    return fetch_release(st, s, op, missing, out, err);
}

static int release_by_commit(struct asr_store *st, const char *service, const char *commit,
                             const char *op, struct asr_release *out, struct asr_err *err)
{
    sqlite3_stmt *s = stmt(st, S_RELEASE_BY_COMMIT, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (asr_store_bind_str(s, 1, service) != SQLITE_OK ||
        asr_store_bind_str(s, 2, commit) != SQLITE_OK) {
        int rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        return rc;
    }
    char missing[160];
    snprintf(missing, sizeof(missing), "no release of %.40s at %.64s", service, commit);
    return fetch_release(st, s, op, missing, out, err);
}

int asr_store_release_get_or_create(struct asr_store *st, const char *service, const char *commit,
                                    const char *dir, struct asr_release *out, struct asr_err *err)
{
    const char *op = "insert release";
    if (out != NULL)
        release_clear(out);
    if (st == NULL || out == NULL || service == NULL || service[0] == '\0' || commit == NULL)
        return asr_store_bad_arg(err, op, "no store, output, service or commit");

    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    /* A release names its service; the first release of a service registers it. */
    if ((rc = service_upsert(st, service, op, err)) != 0)
        goto out;
    sqlite3_stmt *s = stmt(st, S_RELEASE_INSERT, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
        goto out;
    }
    if (asr_store_bind_str(s, 1, service) != SQLITE_OK ||
        asr_store_bind_str(s, 2, commit) != SQLITE_OK ||
        asr_store_bind_str(s, 3, dir) != SQLITE_OK ||
        sqlite3_bind_int64(s, 4, asr_store_now(st)) != SQLITE_OK) {
        rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        goto out;
    }
    if ((rc = asr_store_run(st, s, op, err)) != 0)
        goto out;
    rc = release_by_commit(st, service, commit, op, out, err);
out:
    rc = asr_store_finish(st, rc, op, err);
    if (rc != 0)
        asr_release_free(out);
    return rc;
}

int asr_store_release_get(struct asr_store *st, int64_t id, struct asr_release *out,
                          struct asr_err *err)
{
    if (out != NULL)
        release_clear(out);
    if (st == NULL || out == NULL)
        return asr_store_bad_arg(err, "get release", "no store or output");
    return release_by_id(st, id, "get release", out, err);
}

int asr_store_release_find(struct asr_store *st, const char *service, const char *commit,
                           struct asr_release *out, struct asr_err *err)
{
    if (out != NULL)
        release_clear(out);
    if (st == NULL || out == NULL || service == NULL || commit == NULL)
        return asr_store_bad_arg(err, "find release", "no store, output, service or commit");
    return release_by_commit(st, service, commit, "find release", out, err);
}

/*
 * Runs one UPDATE of a release by id (?1) in its own write transaction; the caller has bound
 * the other parameters. ASR_ENOENT when no row has that id.
 */
static int update_release(struct asr_store *st, sqlite3_stmt *s, int64_t id, const char *op,
                          struct asr_err *err)
{
    int rc = asr_store_begin(st, op, err);
    if (rc != 0) {
        asr_store_reset(s);
        return rc;
    }
    if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK) {
        rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
    } else if ((rc = asr_store_run(st, s, op, err)) == 0 && sqlite3_changes(st->db) == 0) {
        rc = asr_err_set(err, ASR_ENOENT, "store: %s: no release %lld", op, (long long)id);
    }
    return asr_store_finish(st, rc, op, err);
}

/* set_build and set_test: the same UPDATE on different columns. */
static int release_set_result(struct asr_store *st, enum stmt_id which, const char *op, int64_t id,
                              int status, int64_t ms, const char *output, struct asr_err *err)
{
    if (st == NULL)
        return asr_store_bad_arg(err, op, "no store");
    sqlite3_stmt *s = stmt(st, which, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (sqlite3_bind_int(s, 2, status) != SQLITE_OK || sqlite3_bind_int64(s, 3, ms) != SQLITE_OK ||
        asr_store_bind_str(s, 4, output) != SQLITE_OK ||
        sqlite3_bind_int64(s, 5, asr_store_now(st)) != SQLITE_OK) {
        int rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        return rc;
    }
    return update_release(st, s, id, op, err);
}

int asr_store_release_set_build(struct asr_store *st, int64_t id, int status, int64_t ms,
                                const char *output, struct asr_err *err)
{
    return release_set_result(st, S_RELEASE_SET_BUILD, "set release build", id, status, ms, output,
                              err);
}

int asr_store_release_set_test(struct asr_store *st, int64_t id, int status, int64_t ms,
                               const char *output, struct asr_err *err)
{
    return release_set_result(st, S_RELEASE_SET_TEST, "set release test", id, status, ms, output,
                              err);
}

int asr_store_release_output(struct asr_store *st, int64_t id, const char *which, char **out,
                             struct asr_err *err)
{
    const char *op = "get release output";
    if (out != NULL)
        *out = NULL;
    if (st == NULL || out == NULL || which == NULL)
        return asr_store_bad_arg(err, op, "no store, output or which");
    enum stmt_id sid;
    if (strcmp(which, "build") == 0)
        sid = S_RELEASE_BUILD_OUTPUT;
    else if (strcmp(which, "test") == 0)
        sid = S_RELEASE_TEST_OUTPUT;
    else
        return asr_err_set(err, ASR_EINVAL, "store: %s: which is \"%.32s\", not build or test", op,
                           which);

    sqlite3_stmt *s = stmt(st, sid, op, err);
    if (s == NULL)
        return ASR_EDB;
    int rc = 0;
    if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK) {
        rc = asr_store_fail(st, op, err);
        goto out;
    }
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        /* Output never recorded reads as "", so callers can print it without a NULL check. */
        if (asr_store_col_dup(s, 0, out) != 0 || (*out == NULL && (*out = strdup("")) == NULL))
            rc = asr_err_set(err, ASR_ENOMEM, "store: %s: out of memory", op);
    } else if (step == SQLITE_DONE) {
        rc = asr_err_set(err, ASR_ENOENT, "store: %s: no release %lld", op, (long long)id);
    } else {
        rc = asr_store_fail(st, op, err);
    }
out:
    asr_store_reset(s);
    return rc;
}

int asr_store_release_set_state(struct asr_store *st, int64_t id, const char *state,
                                const char *reason, struct asr_err *err)
{
    const char *op = "set release state";
    if (st == NULL || state == NULL)
        return asr_store_bad_arg(err, op, "no store or state");
    sqlite3_stmt *s = stmt(st, S_RELEASE_SET_STATE, op, err);
    if (s == NULL)
        return ASR_EDB;
    /* The state itself is checked by the releases_state_valid constraint. */
    if (asr_store_bind_str(s, 2, state) != SQLITE_OK ||
        asr_store_bind_str(s, 3, reason) != SQLITE_OK ||
        sqlite3_bind_int64(s, 4, asr_store_now(st)) != SQLITE_OK) {
        int rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        return rc;
    }
    return update_release(st, s, id, op, err);
}

int asr_store_release_last_good(struct asr_store *st, const char *service, int64_t exclude_id,
                                struct asr_release *out, struct asr_err *err)
{
    const char *op = "last good release";
    if (out != NULL)
        release_clear(out);
    if (st == NULL || out == NULL || service == NULL)
        return asr_store_bad_arg(err, op, "no store, output or service");
    sqlite3_stmt *s = stmt(st, S_RELEASE_LAST_GOOD, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (asr_store_bind_str(s, 1, service) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, exclude_id) != SQLITE_OK) {
        int rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        return rc;
    }
    char missing[96];
    snprintf(missing, sizeof(missing), "%.40s has no good release%s", service,
             exclude_id != 0 ? " other than the excluded one" : "");
    return fetch_release(st, s, op, missing, out, err);
}

/* ---- deployments --------------------------------------------------------------------------- */

static bool nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

void asr_deployment_free(struct asr_deployment *d)
{
    if (d == NULL)
        return;
    free(d->service);
    free(d->kind);
    free(d->outcome);
    free(d->reason);
    memset(d, 0, sizeof(*d));
}

void asr_deployments_free(struct asr_deployment *d, size_t n)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        asr_deployment_free(&d[i]);
    free(d);
}

/* Reads a row of DEPLOY_COLS; NULL from_release and ended_at read as 0. */
static int read_deployment(sqlite3_stmt *s, struct asr_deployment *d)
{
    d->id = sqlite3_column_int64(s, 0);
    d->from_release = sqlite3_column_int64(s, 3);
    d->to_release = sqlite3_column_int64(s, 4);
    d->started_at = sqlite3_column_int64(s, 5);
    d->ended_at = sqlite3_column_int64(s, 6);
    if (asr_store_col_dup(s, 1, &d->service) || asr_store_col_dup(s, 2, &d->kind) ||
        asr_store_col_dup(s, 7, &d->outcome) || asr_store_col_dup(s, 8, &d->reason)) {
        asr_deployment_free(d);
        return ASR_ENOMEM;
    }
    return 0;
}

/*
 * Checks, inside the caller's transaction, that release id exists and belongs to service. The
 * composite foreign keys enforce the same; this says which release and why in the message.
 */
static int check_release_service(struct asr_store *st, int64_t id, const char *service,
                                 const char *op, struct asr_err *err)
{
    sqlite3_stmt *s = stmt(st, S_RELEASE_SERVICE, op, err);
    if (s == NULL)
        return ASR_EDB;
    int rc = 0;
    if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK) {
        rc = asr_store_fail(st, op, err);
        goto out;
    }
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE) {
        rc = asr_err_set(err, ASR_ENOENT, "store: %s: no release %lld", op, (long long)id);
    } else if (step != SQLITE_ROW) {
        rc = asr_store_fail(st, op, err);
    } else {
        const char *owner = (const char *)sqlite3_column_text(s, 0);
        if (owner == NULL || strcmp(owner, service) != 0)
            rc = asr_err_set(err, ASR_EINVAL, "store: %s: release %lld belongs to %.40s, not %.40s",
                             op, (long long)id, owner != NULL ? owner : "?", service);
    }
out:
    asr_store_reset(s);
    return rc;
}

int asr_store_deployment_begin(struct asr_store *st, const char *service, const char *kind,
                               int64_t from_release, int64_t to_release, int64_t *out_id,
                               struct asr_err *err)
{
    const char *op = "begin deployment";
    if (out_id != NULL)
        *out_id = 0;
    if (st == NULL || out_id == NULL || !nonempty(service) || kind == NULL)
        return asr_store_bad_arg(err, op, "no store, output, service or kind");
    if (to_release <= 0 || from_release < 0)
        return asr_err_set(err, ASR_EINVAL, "store: %s: release ids %lld -> %lld are not valid", op,
                           (long long)from_release, (long long)to_release);

    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    if ((rc = check_release_service(st, to_release, service, op, err)) != 0)
        goto out;
    if (from_release != 0 && (rc = check_release_service(st, from_release, service, op, err)) != 0)
        goto out;
    sqlite3_stmt *s = stmt(st, S_DEPLOY_INSERT, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
        goto out;
    }
    if (asr_store_bind_str(s, 1, service) != SQLITE_OK ||
        asr_store_bind_str(s, 2, kind) != SQLITE_OK ||
        (from_release != 0 ? sqlite3_bind_int64(s, 3, from_release) : sqlite3_bind_null(s, 3)) !=
            SQLITE_OK ||
        sqlite3_bind_int64(s, 4, to_release) != SQLITE_OK ||
        sqlite3_bind_int64(s, 5, asr_store_now(st)) != SQLITE_OK) {
        rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        goto out;
    }
    if ((rc = asr_store_run(st, s, op, err)) == 0)
        *out_id = sqlite3_last_insert_rowid(st->db);
out:
    rc = asr_store_finish(st, rc, op, err);
    if (rc != 0)
        *out_id = 0;
    return rc;
}

/* Why deployment id could not be ended: it does not exist, or it already has an outcome. */
static int explain_not_running(struct asr_store *st, int64_t id, const char *op,
                               struct asr_err *err)
{
    sqlite3_stmt *s = stmt(st, S_DEPLOY_OUTCOME, op, err);
    if (s == NULL)
        return ASR_EDB;
    int rc;
    if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK) {
        rc = asr_store_fail(st, op, err);
        goto out;
    }
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW)
        rc = asr_err_set(err, ASR_ESTATE, "store: %s: deployment %lld already ended (%s)", op,
                         (long long)id, (const char *)sqlite3_column_text(s, 0));
    else if (step == SQLITE_DONE)
        rc = asr_err_set(err, ASR_ENOENT, "store: %s: no deployment %lld", op, (long long)id);
    else
        rc = asr_store_fail(st, op, err);
out:
    asr_store_reset(s);
    return rc;
}

int asr_store_deployment_end(struct asr_store *st, int64_t id, const char *outcome,
                             const char *reason, struct asr_err *err)
{
    const char *op = "end deployment";
    if (st == NULL || outcome == NULL)
        return asr_store_bad_arg(err, op, "no store or outcome");
    if (strcmp(outcome, ASR_DEPLOY_RUNNING) == 0)
        return asr_store_bad_arg(err, op,
                                 "\"running\" is not an outcome a deployment can end with");

    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    sqlite3_stmt *s = stmt(st, S_DEPLOY_END, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
        goto out;
    }
    if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK ||
        asr_store_bind_str(s, 2, outcome) != SQLITE_OK ||
        asr_store_bind_str(s, 3, reason) != SQLITE_OK ||
        sqlite3_bind_int64(s, 4, asr_store_now(st)) != SQLITE_OK) {
        rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        goto out;
    }
    if ((rc = asr_store_run(st, s, op, err)) == 0 && sqlite3_changes(st->db) == 0)
        rc = explain_not_running(st, id, op, err);
out:
    return asr_store_finish(st, rc, op, err);
}

int asr_store_deployment_last(struct asr_store *st, const char *service, struct asr_deployment *out,
                              struct asr_err *err)
{
    const char *op = "last deployment";
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (st == NULL || out == NULL || service == NULL)
        return asr_store_bad_arg(err, op, "no store, output or service");
    sqlite3_stmt *s = stmt(st, S_DEPLOY_LAST, op, err);
    if (s == NULL)
        return ASR_EDB;
    int rc = 0;
    if (asr_store_bind_str(s, 1, service) != SQLITE_OK) {
        rc = asr_store_fail(st, op, err);
        goto out;
    }
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        if (read_deployment(s, out) != 0)
            rc = asr_err_set(err, ASR_ENOMEM, "store: %s: out of memory", op);
    } else if (step == SQLITE_DONE) {
        rc = asr_err_set(err, ASR_ENOENT, "store: %s: %.40s has no deployments", op, service);
    } else {
        rc = asr_store_fail(st, op, err);
    }
out:
    asr_store_reset(s);
    return rc;
}

/*
 * Collects every row of a bound SELECT into a growing array of `size`-byte elements, reading
 * each with read_cb. On failure frees what was read with free_cb. Resets s.
 */
int asr_store_collect(struct asr_store *st, sqlite3_stmt *s, const char *op, size_t size,
                      int (*read_cb)(sqlite3_stmt *s, void *row),
                      void (*free_cb)(void *rows, size_t n), void **out, size_t *n,
                      struct asr_err *err)
{
    char *rows = NULL;
    size_t len = 0, alloc = 0;
    int rc = 0;
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == alloc) {
            size_t next = alloc != 0 ? alloc * 2 : 16;
            char *p = realloc(rows, next * size);
            if (p == NULL) {
                rc = asr_err_set(err, ASR_ENOMEM, "store: %s: out of memory", op);
                goto out;
            }
            rows = p;
            alloc = next;
        }
        memset(rows + len * size, 0, size);
        if (read_cb(s, rows + len * size) != 0) {
            rc = asr_err_set(err, ASR_ENOMEM, "store: %s: out of memory", op);
            goto out;
        }
        len++;
    }
    if (step != SQLITE_DONE)
        rc = asr_store_fail(st, op, err);
out:
    asr_store_reset(s);
    if (rc != 0) {
        free_cb(rows, len);
        rows = NULL;
        len = 0;
    }
    *out = rows;
    *n = len;
    return rc;
}

static int read_deployment_cb(sqlite3_stmt *s, void *row)
{
    return read_deployment(s, row);
}

static void free_deployments_cb(void *rows, size_t n)
{
    asr_deployments_free(rows, n);
}

int asr_store_deployment_list(struct asr_store *st, const char *service, int limit,
                              struct asr_deployment **out, size_t *n, struct asr_err *err)
{
    const char *op = "list deployments";
    if (out != NULL)
        *out = NULL;
    if (n != NULL)
        *n = 0;
    if (st == NULL || out == NULL || n == NULL)
        return asr_store_bad_arg(err, op, "no store or output");
    if (limit <= 0)
        return asr_err_set(err, ASR_EINVAL, "store: %s: limit %d is not positive", op, limit);
    sqlite3_stmt *s = stmt(st, service != NULL ? S_DEPLOY_LIST : S_DEPLOY_LIST_ALL, op, err);
    if (s == NULL)
        return ASR_EDB;
    if ((service != NULL && asr_store_bind_str(s, 1, service) != SQLITE_OK) ||
        sqlite3_bind_int(s, 2, limit) != SQLITE_OK) {
        int rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        return rc;
    }
    void *rows = NULL;
    int rc = asr_store_collect(st, s, op, sizeof(struct asr_deployment), read_deployment_cb,
                               free_deployments_cb, &rows, n, err);
    *out = rows;
    return rc;
}

int asr_store_deployment_abandon_running(struct asr_store *st, const char *reason,
                                         struct asr_err *err)
{
    const char *op = "abandon running deployments";
    if (st == NULL)
        return asr_store_bad_arg(err, op, "no store");
    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    int changed = 0;
    sqlite3_stmt *s = stmt(st, S_DEPLOY_ABANDON, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
        goto out;
    }
    if (asr_store_bind_str(
            s, 1, reason != NULL ? reason : "abandoned: asr stopped while it was running") !=
            SQLITE_OK ||
        sqlite3_bind_int64(s, 2, asr_store_now(st)) != SQLITE_OK) {
        rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        goto out;
    }
    if ((rc = asr_store_run(st, s, op, err)) == 0)
        changed = sqlite3_changes(st->db);
out:
    rc = asr_store_finish(st, rc, op, err);
    return rc != 0 ? rc : changed;
}

/* ---- events -------------------------------------------------------------------------------- */

static void event_free(struct asr_event *e)
{
    free(e->service);
    free(e->actor);
    free(e->kind);
    free(e->detail);
    memset(e, 0, sizeof(*e));
}

void asr_events_free(struct asr_event *e, size_t n)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        event_free(&e[i]);
    free(e);
}

/*
 * Events are the informational timeline (slot started, build passed, ...), written many times per
 * deployment. They are committed without their own fsync (synchronous=NORMAL for that commit):
 * their WAL frames reach the disk with the next FULL commit, which syncs the whole WAL, or at a
 * checkpoint. A process crash loses none of them (the frames are in the OS's cache); a power
 * failure can lose the last few, never an incident, a plan, a journal row or an audit row. Each
 * fsync costs 2-7 ms on the demo's machine, and a deployment writes a dozen events: that was most
 * of asr's own time in a remediation (bench figures in docs/execution.md, "The demo").
 */
static void set_synchronous(struct asr_store *st, bool full)
{
    sqlite3_exec(st->db, full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", NULL,
                 NULL, NULL);
}

int asr_store_event_in_tx(struct asr_store *st, int64_t at, const char *service,
                          int64_t incident_id, const char *actor, const char *kind,
                          const char *detail, const char *op, struct asr_err *err)
{
    sqlite3_stmt *s = stmt(st, S_EVENT_INSERT, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (sqlite3_bind_int64(s, 1, at != 0 ? at : asr_store_now(st)) != SQLITE_OK ||
        asr_store_bind_str(s, 2, service) != SQLITE_OK ||
        asr_store_bind_str(s, 3, actor) != SQLITE_OK ||
        asr_store_bind_str(s, 4, kind) != SQLITE_OK ||
        asr_store_bind_str(s, 5, detail) != SQLITE_OK ||
        (incident_id > 0 ? sqlite3_bind_int64(s, 6, incident_id) : sqlite3_bind_null(s, 6)) !=
            SQLITE_OK) {
        asr_store_reset(s);
        return asr_store_fail(st, op, err);
    }
    int rc = asr_store_run(st, s, op, err);
    if (rc == 0)
        st->event_head = sqlite3_last_insert_rowid(st->db);
    return rc;
}

int64_t asr_store_event_head(const struct asr_store *st)
{
    return st != NULL ? st->event_head : 0;
}

int asr_store_event_add(struct asr_store *st, const char *service, const char *actor,
                        const char *kind, const char *detail, struct asr_err *err)
{
    const char *op = "add event";
    if (st == NULL || !nonempty(actor) || !nonempty(kind))
        return asr_store_bad_arg(err, op, "no store, actor or kind");
    set_synchronous(st, false);
    int rc = asr_store_begin(st, op, err);
    if (rc == 0)
        rc = asr_store_event_in_tx(st, 0, service, 0, actor, kind, detail, op, err);
    rc = asr_store_finish(st, rc, op, err);
    set_synchronous(st, true);
    return rc;
}

static int read_event_cb(sqlite3_stmt *s, void *row)
{
    struct asr_event *e = row;
    e->id = sqlite3_column_int64(s, 0);
    e->at = sqlite3_column_int64(s, 1);
    if (asr_store_col_dup(s, 2, &e->service) || asr_store_col_dup(s, 3, &e->actor) ||
        asr_store_col_dup(s, 4, &e->kind) || asr_store_col_dup(s, 5, &e->detail)) {
        event_free(e);
        return ASR_ENOMEM;
    }
    e->incident_id = sqlite3_column_int64(s, 6);
    return 0;
}

static void free_events_cb(void *rows, size_t n)
{
    asr_events_free(rows, n);
}

int asr_store_event_list(struct asr_store *st, const char *service, int64_t after_id, int limit,
                         struct asr_event **out, size_t *n, struct asr_err *err)
{
    const char *op = "list events";
    if (out != NULL)
        *out = NULL;
    if (n != NULL)
        *n = 0;
    if (st == NULL || out == NULL || n == NULL)
        return asr_store_bad_arg(err, op, "no store or output");
    if (limit <= 0)
        return asr_err_set(err, ASR_EINVAL, "store: %s: limit %d is not positive", op, limit);
    sqlite3_stmt *s = stmt(st, service != NULL ? S_EVENT_LIST : S_EVENT_LIST_ALL, op, err);
    if (s == NULL)
        return ASR_EDB;
    if (sqlite3_bind_int64(s, 1, after_id) != SQLITE_OK ||
        (service != NULL && asr_store_bind_str(s, 2, service) != SQLITE_OK) ||
        sqlite3_bind_int(s, 3, limit) != SQLITE_OK) {
        int rc = asr_store_fail(st, op, err);
        asr_store_reset(s);
        return rc;
    }
    void *rows = NULL;
    int rc = asr_store_collect(st, s, op, sizeof(struct asr_event), read_event_cb, free_events_cb,
                               &rows, n, err);
    *out = rows;
    return rc;
}
