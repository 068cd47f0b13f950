/*
 * db.h - the shop's SQLite work: seed at start, one connection per request.
 *
 * Each request opens its own connection (cheap for a local file) so that
 * no connection is ever shared between threads; a busy timeout covers the
 * rare moment when the seeding writer still holds the lock.
 *
 * All functions return 0 on success and a negative SHOP_DB_E* code on
 * failure; on failure `err` (size `errlen`) holds a message naming what
 * failed and SQLite's reason.
 */
#ifndef SHOP_DB_H
#define SHOP_DB_H

#include <stddef.h>

enum {
    SHOP_DB_EOPEN = -1,    /* the database file could not be opened */
    SHOP_DB_ESQL = -2,     /* a statement failed to prepare (bad SQL) */
    SHOP_DB_ESTEP = -3,    /* a statement failed while running */
    SHOP_DB_ETIMEOUT = -4, /* a statement ran past its time limit */
};

/* Creates the database at `path` if needed and seeds the orders table. */
int shop_db_init(const char *path, char *err, size_t errlen);

/* Stores the number of orders in *count. */
int shop_db_count_orders(const char *path, long long *count, char *err, size_t errlen);

/*
 * Runs the orders report (the /test-fault/run statement) and stores its
 * first column of its first row in *value (0 when there is no row).
 * SHOP_DB_ESQL means the report's SQL text is malformed.
 */
int shop_db_orders_report(const char *path, long long *value, char *err, size_t errlen);

/*
 * Runs the deliberately slow statement (the /test-fault/db-timeout work)
 * under the statement time limit and stores its result in *value.
 * SHOP_DB_ETIMEOUT means the limit cut it short. *limit_ms receives the
 * limit that applied, for the report.
 */
int shop_db_slow_query(const char *path, long long *value, int *limit_ms, char *err, size_t errlen);

#endif
