/*
 * db.c - every SQL statement the shop runs, and two of its three faults.
 *
 * FAULT 1 (/test-fault/run): ORDERS_REPORT_SQL below is malformed on
 * purpose. Its fix is the correct statement, "SELECT count(*) FROM orders".
 *
 * FAULT 3 (/test-fault/db-timeout): DB_STATEMENT_LIMIT_MS below is shorter
 * than SLOW_REPORT_SQL needs (a few hundred milliseconds). Its fix is a
 * larger limit, e.g. 5000.
 */
#include "db.h"

#include <sqlite3.h>
#include <stdio.h>
#include <time.h>

/* The orders report. Malformed on purpose: the one-line fix for fault 1. */
static const char ORDERS_REPORT_SQL[] = "SELECT FROM orders";

/* Time limit for one statement, in ms. Too short on purpose: the fix for fault 3. */
static const int DB_STATEMENT_LIMIT_MS = 50;

/* A statement that needs a few hundred milliseconds of CPU and no data. */
static const char SLOW_REPORT_SQL[] =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 800000)"
    " SELECT count(*) FROM n";

/* How long a connection waits for a lock held by another, in ms. */
static const int BUSY_TIMEOUT_MS = 2000;

/* How many virtual machine steps SQLite runs between two deadline checks. */
static const int PROGRESS_STEPS = 1000;

static const char SCHEMA_SQL[] = "CREATE TABLE IF NOT EXISTS orders ("
                                 " id INTEGER PRIMARY KEY,"
                                 " item TEXT NOT NULL,"
                                 " quantity INTEGER NOT NULL,"
                                 " price_cents INTEGER NOT NULL)";

/* Seeds five orders into an empty table; a second start adds nothing. */
static const char SEED_SQL[] = "INSERT INTO orders (item, quantity, price_cents)"
                               " SELECT * FROM (VALUES ('widget', 2, 1999), ('gadget', 1, 4999),"
                               " ('sprocket', 10, 250), ('gizmo', 3, 1250), ('doohickey', 5, 799))"
                               " WHERE NOT EXISTS (SELECT 1 FROM orders)";

/* Opens `path` for one request; `flags` adds SQLITE_OPEN_CREATE at start. */
static int open_db(const char *path, int flags, sqlite3 **out, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | flags, NULL);

    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open database %s: %s", path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        *out = NULL;
        return SHOP_DB_EOPEN;
    }
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    *out = db;
    return 0;
}

/*
 * Prepares and runs `sql`, keeping the first column of the first row in
 * *value. Any error is described in `err`, prefixed by `what`.
 */
static int run_scalar(sqlite3 *db, const char *what, const char *sql, long long *value, char *err,
                      size_t errlen)
{
    sqlite3_stmt *stmt = NULL;
    int ret = 0;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);

    *value = 0;
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: invalid SQL \"%s\": %s", what, sql, sqlite3_errmsg(db));
        ret = SHOP_DB_ESQL;
        goto out;
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (sqlite3_column_count(stmt) > 0 && *value == 0)
            *value = sqlite3_column_int64(stmt, 0);
    }
    if (rc == SQLITE_INTERRUPT) {
        snprintf(err, errlen, "%s: statement interrupted at its time limit", what);
        ret = SHOP_DB_ETIMEOUT;
    } else if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(db));
        ret = SHOP_DB_ESTEP;
    }
out:
    sqlite3_finalize(stmt);
    return ret;
}

int shop_db_init(const char *path, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    int ret = open_db(path, SQLITE_OPEN_CREATE, &db, err, errlen);

    if (ret < 0)
        return ret;
    if (sqlite3_exec(db, SCHEMA_SQL, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(db, SEED_SQL, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "cannot seed database %s: %s", path, msg ? msg : sqlite3_errmsg(db));
        ret = SHOP_DB_ESTEP;
    }
    sqlite3_free(msg);
    sqlite3_close(db);
    return ret;
}

int shop_db_count_orders(const char *path, long long *count, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int ret = open_db(path, 0, &db, err, errlen);

    if (ret == 0)
        ret = run_scalar(db, "count orders", "SELECT count(*) FROM orders", count, err, errlen);
    sqlite3_close(db);
    return ret;
}

int shop_db_orders_report(const char *path, long long *value, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int ret = open_db(path, 0, &db, err, errlen);

    if (ret == 0)
        ret = run_scalar(db, "orders report", ORDERS_REPORT_SQL, value, err, errlen);
    sqlite3_close(db);
    return ret;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* SQLite's progress callback: a nonzero return interrupts the statement. */
static int deadline_cb(void *arg)
{
    const long long *deadline = arg;

    return now_ms() >= *deadline;
}

int shop_db_slow_query(const char *path, long long *value, int *limit_ms, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    long long deadline;
    int ret = open_db(path, 0, &db, err, errlen);

    *limit_ms = DB_STATEMENT_LIMIT_MS;
    if (ret < 0)
        goto out;
    deadline = now_ms() + DB_STATEMENT_LIMIT_MS;
    sqlite3_progress_handler(db, PROGRESS_STEPS, deadline_cb, &deadline);
    ret = run_scalar(db, "slow report", SLOW_REPORT_SQL, value, err, errlen);
out:
    sqlite3_close(db);
    return ret;
}
