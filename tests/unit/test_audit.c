/*
 * test_audit.c - unit tests of the audit chain (src/store/audit.c) and its hooks.
 *
 * Each test gets a fresh temporary directory holding a real SQLite file (dir/asr.db) and the
 * anchor beside it (dir/audit.head); nothing is mocked. The tamper tests play an attacker who
 * has the file: the append-only triggers are dropped with a plain sqlite3 connection first, CHECK
 * constraints are switched off (PRAGMA ignore_check_constraints), and then, over a 200-row log,
 * every byte of every column of every row is flipped, every row is deleted, and every adjacent
 * pair (and one far pair per row) is swapped, one change at a time, and asr_audit_verify() must
 * name the row touched. Each change is made and verified inside a transaction on the store's own
 * connection and rolled back, which reads exactly as a committed change would (verify sees the
 * same rows) without an fsync per change; test_committed_tamper_reopened checks that a change
 * committed by another connection is caught by a store opened afresh, as `asr audit verify` is.
 */
#include "asr/audit.h"
#include "asr/incident.h"
#include "asr/sha256.h"
#include "asr/store.h"
#include "store/store_int.h"
#include "strategy/plan.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_ROWS 200

struct fx {
    char dir[256];
    char db[512];
    char head[512]; /* dir/audit.head */
    int64_t now;
    struct asr_store *st;
};

static int64_t clock_cb(void *arg)
{
    return ((struct fx *)arg)->now++;
}

static void open_store(struct fx *f)
{
    struct asr_err err = {0};
    int rc = asr_store_open_file(f->db, &f->st, &err);
    if (rc != 0)
        fail_msg("asr_store_open_file: %s", asr_err_msg(&err, rc));
    asr_store_set_clock(f->st, clock_cb, f);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 200)
        tmp = "/tmp";
    snprintf(f->dir, sizeof(f->dir), "%s/asr-test-audit-XXXXXX", tmp);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/asr.db", f->dir);
    snprintf(f->head, sizeof(f->head), "%s/audit.head", f->dir);
    f->now = 1700000000000;
    open_store(f);
    *state = f;
    return 0;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    asr_store_close(f->st);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* ---- helpers --------------------------------------------------------------------------------- */

static int64_t append_ok(struct fx *f, const char *actor, const char *kind, int64_t inc,
                         int64_t plan, const char *detail)
{
    struct asr_audit_row r = {.actor = (char *)actor,
                              .kind = (char *)kind,
                              .incident_id = inc,
                              .plan_id = plan,
                              .detail = (char *)detail};
    int64_t seq = 0;
    struct asr_err err = {0};
    int rc = asr_audit_append(f->st, &r, &seq, &err);
    if (rc != 0)
        fail_msg("append: %s", asr_err_msg(&err, rc));
    return seq;
}

/* The 200-row log: the kinds the hooks and the executor write, with and without ids, details
 * of different lengths, some of them not ASCII. */
static void build_log(struct fx *f, int rows)
{
    static const char *kinds[] = {"plan.made", "action.intent", "action.result", "plan.outcome",
                                  "incident.resolved"};
    for (int i = 1; i <= rows; i++) {
        char detail[256];
        const char *kind = kinds[i % 5];
        switch (i % 4) {
        case 0:
            snprintf(detail, sizeof(detail), "{\"reason\":\"r\\u00e9solu n\xc2\xb0%d\"}", i);
            break;
        case 1:
            snprintf(detail, sizeof(detail),
                     "{\"actions\":[\"patch\",\"verify\"],\"confidence\":0.%d,\"strategy\":"
                     "\"playbook\"}",
                     i);
            break;
        case 2:
            snprintf(detail, sizeof(detail), "{\"step\":%d,\"action\":\"restart\"}", i);
            break;
        default:
            snprintf(detail, sizeof(detail), "{}");
        }
        int64_t inc = i % 7 == 0 ? 0 : 1000 + i / 3;
        int64_t plan = i % 3 == 0 ? 0 : 500 + i / 2;
        const char *actor = i % 11 == 0 ? ASR_AUDIT_OPERATOR : ASR_AUDIT_ASR;
        assert_int_equal(append_ok(f, actor, kind, inc, plan, detail), i);
    }
}

static struct asr_audit_check verify(struct fx *f)
{
    struct asr_audit_check c;
    struct asr_err err = {0};
    int rc = asr_audit_verify(f->st, f->head, &c, &err);
    if (rc != 0)
        fail_msg("verify: %s", asr_err_msg(&err, rc));
    return c;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

/* As an attacker with the file: a plain connection drops the append-only triggers. */
static void drop_triggers(struct fx *f)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    exec_ok(db, "DROP TRIGGER audit_append_only_insert; DROP TRIGGER audit_append_only_update; "
                "DROP TRIGGER audit_append_only_delete");
    sqlite3_close(db);
}

static char *read_file(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return NULL;
    static char buf[256];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* ---- appending and verifying ------------------------------------------------------------------
 */

static void test_empty_and_first_rows(void **state)
{
    struct fx *f = *state;
    struct asr_audit_check c = verify(f);
    assert_true(c.ok);
    assert_int_equal(c.rows, 0);
    assert_string_equal(c.head, "");
    /* No anchor and no rows: nothing to compare. */
    assert_null(read_file(f->head));

    assert_int_equal(append_ok(f, "asr", "plan.made", 7, 3, "{\"a\":1}"), 1);
    assert_int_equal(append_ok(f, "operator", "incident.resolved", 7, 0, NULL), 2);
    c = verify(f);
    assert_true(c.ok);
    assert_int_equal(c.rows, 2);
    assert_int_equal(c.head_seq, 2);
    assert_int_equal(c.anchor_seq, 2);
    assert_int_equal(c.unanchored, 0);
    char want[128];
    snprintf(want, sizeof(want), "2 %s\n", c.head);
    assert_string_equal(read_file(f->head), want);

    struct asr_audit_row *v = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    assert_int_equal(asr_audit_list(f->st, 0, 10, &v, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].seq, 2); /* newest first */
    assert_string_equal(v[0].actor, "operator");
    assert_string_equal(v[0].detail, "{}");
    assert_int_equal(v[0].plan_id, 0);
    assert_string_equal(v[0].prev, v[1].hash);
    assert_string_equal(v[0].hash, c.head);
    assert_string_equal(v[1].prev,
                        "0000000000000000000000000000000000000000000000000000000000000000");
    assert_int_equal(v[1].incident_id, 7);
    assert_int_equal(v[1].plan_id, 3);
    assert_int_equal(v[1].at, 1700000000000);
    json_t *j = asr_audit_row_json(&v[1]);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "detail"), "a")), 1);
    json_decref(j);
    asr_audit_rows_free(v, n);
    assert_int_equal(asr_audit_list(f->st, 2, 10, &v, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].seq, 1);
    asr_audit_rows_free(v, n);
    assert_int_equal(asr_audit_list(f->st, 0, 0, &v, &n, &err), ASR_EINVAL);

    /* Bad arguments write nothing. */
    struct asr_audit_row r = {.actor = "asr", .kind = "x", .detail = "{not json"};
    assert_int_equal(asr_audit_append(f->st, &r, NULL, &err), ASR_EINVAL);
    r.detail = NULL;
    r.actor = "";
    assert_int_equal(asr_audit_append(f->st, &r, NULL, &err), ASR_EINVAL);
    assert_true(verify(f).ok);
    assert_int_equal(verify(f).rows, 2);
}

/* The hash is the one docs/audit.md describes, computed here independently of audit.c. */
static void put_u64(struct asr_sha256 *c, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    asr_sha256_update(c, b, 8);
}

static void put_text(struct asr_sha256 *c, const char *s)
{
    asr_sha256_update(c, "T", 1);
    put_u64(c, strlen(s));
    asr_sha256_update(c, s, strlen(s));
}

static void put_int(struct asr_sha256 *c, int64_t v)
{
    asr_sha256_update(c, "I", 1);
    put_u64(c, (uint64_t)v);
}

static void doc_hash(const char *prev, int64_t seq, int64_t at, const char *actor, const char *kind,
                     int64_t inc, int64_t plan, const char *detail, char out[65])
{
    struct asr_sha256 c;
    uint8_t d[32];
    asr_sha256_init(&c);
    asr_sha256_update(&c, "asr.audit.v1", 13); /* with its NUL */
    put_text(&c, prev);
    put_int(&c, seq);
    put_int(&c, at);
    put_text(&c, actor);
    put_text(&c, kind);
    if (inc != 0)
        put_int(&c, inc);
    else
        asr_sha256_update(&c, "N", 1);
    if (plan != 0)
        put_int(&c, plan);
    else
        asr_sha256_update(&c, "N", 1);
    put_text(&c, detail);
    asr_sha256_final(&c, d);
    asr_sha256_hex(d, out);
}

static void test_hash_format(void **state)
{
    struct fx *f = *state;
    append_ok(f, "asr", "plan.made", 7, 0, "{\"x\":\"y\"}");
    append_ok(f, "operator", "incident.resolved", 0, 9, NULL);
    struct asr_audit_row *v = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    assert_int_equal(asr_audit_list(f->st, 0, 10, &v, &n, &err), 0);
    char h1[65], h2[65];
    doc_hash("0000000000000000000000000000000000000000000000000000000000000000", 1, 1700000000000,
             "asr", "plan.made", 7, 0, "{\"x\":\"y\"}", h1);
    doc_hash(h1, 2, 1700000000001, "operator", "incident.resolved", 0, 9, "{}", h2);
    assert_string_equal(v[1].hash, h1);
    assert_string_equal(v[0].hash, h2);
    asr_audit_rows_free(v, n);
}

static void test_triggers_refuse_changes(void **state)
{
    struct fx *f = *state;
    build_log(f, 5);
    sqlite3 *db = asr_store_db(f->st);
    assert_int_not_equal(
        sqlite3_exec(db, "UPDATE audit SET actor = 'x' WHERE seq = 2", NULL, NULL, NULL),
        SQLITE_OK);
    assert_non_null(strstr(sqlite3_errmsg(db), "append-only"));
    assert_int_not_equal(sqlite3_exec(db, "DELETE FROM audit WHERE seq = 5", NULL, NULL, NULL),
                         SQLITE_OK);
    assert_non_null(strstr(sqlite3_errmsg(db), "append-only"));
    /* An insert that skips a number, or does not chain to the last hash, is refused too. */
    assert_int_not_equal(sqlite3_exec(db,
                                      "INSERT INTO audit SELECT seq + 2, at, actor, kind, "
                                      "incident_id, plan_id, detail, hash, hash FROM audit "
                                      "WHERE seq = 5",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db,
                                      "INSERT INTO audit SELECT seq + 1, at, actor, kind, "
                                      "incident_id, plan_id, detail, prev, hash FROM audit "
                                      "WHERE seq = 5",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    struct asr_audit_check c = verify(f);
    assert_true(c.ok);
    assert_int_equal(c.rows, 5);
}

static void test_joins_callers_transaction(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    append_ok(f, "asr", "a", 0, 0, NULL);
    char before[128];
    snprintf(before, sizeof(before), "%.127s", read_file(f->head));

    /* Rolled back with the caller: no row, and the anchor never saw it. */
    assert_int_equal(asr_store_begin(f->st, "test", &err), 0);
    assert_int_equal(append_ok(f, "asr", "b", 0, 0, NULL), 2);
    asr_store_rollback(f->st);
    assert_string_equal(read_file(f->head), before);
    assert_int_equal(verify(f).rows, 1);

    /* Committed with the caller: two rows in one transaction, the anchor names the second,
     * written only at the commit. */
    assert_int_equal(asr_store_begin(f->st, "test", &err), 0);
    assert_int_equal(append_ok(f, "asr", "b", 0, 0, NULL), 2);
    assert_int_equal(append_ok(f, "asr", "c", 0, 0, NULL), 3);
    assert_string_equal(read_file(f->head), before);
    assert_int_equal(asr_store_commit(f->st, "test", &err), 0);
    struct asr_audit_check c = verify(f);
    assert_true(c.ok);
    assert_int_equal(c.rows, 3);
    assert_int_equal(c.anchor_seq, 3);
    assert_int_equal(c.unanchored, 0);
}

static void test_anchor(void **state)
{
    struct fx *f = *state;
    build_log(f, 10);
    char line[128];
    snprintf(line, sizeof(line), "%.127s", read_file(f->head));
    assert_int_equal(strncmp(line, "10 ", 3), 0);

    /* An anchor that lags (asr stopped between a commit and its anchor) is not a failure. */
    struct asr_audit_row *v = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    assert_int_equal(asr_audit_list(f->st, 0, 10, &v, &n, &err), 0);
    char lag[128];
    snprintf(lag, sizeof(lag), "7 %s\n", v[3].hash); /* v is newest first: v[3] is row 7 */
    write_file(f->head, lag);
    struct asr_audit_check c = verify(f);
    assert_true(c.ok);
    assert_int_equal(c.unanchored, 3);
    /* The next append moves it forward again. */
    append_ok(f, "asr", "x", 0, 0, NULL);
    c = verify(f);
    assert_true(c.ok);
    assert_int_equal(c.anchor_seq, 11);

    /* One that leads: rows were removed from the end. */
    snprintf(lag, sizeof(lag), "13 %s\n", v[0].hash);
    write_file(f->head, lag);
    c = verify(f);
    assert_false(c.ok);
    assert_int_equal(c.bad_seq, 12);
    assert_string_equal(c.why, "the last 2 rows are missing (audit.head says seq 13)");

    /* One whose hash differs: the chain up to it was rewritten. */
    snprintf(lag, sizeof(lag), "7 %s\n", v[4].hash);
    write_file(f->head, lag);
    c = verify(f);
    assert_false(c.ok);
    assert_int_equal(c.bad_seq, 7);
    assert_non_null(strstr(c.why, "row 7: hash is not the one audit.head recorded"));

    /* Malformed, and missing while the table has rows. */
    write_file(f->head, "seven deadbeef\n");
    c = verify(f);
    assert_false(c.ok);
    assert_non_null(strstr(c.why, "is not \"<seq> <64 hex digits>\""));
    unlink(f->head);
    c = verify(f);
    assert_false(c.ok);
    assert_non_null(strstr(c.why, "audit.head is missing, but the table has 11 rows"));
    asr_audit_rows_free(v, n);

    /* Verify without an anchor path checks the chain alone. */
    struct asr_audit_check c2;
    assert_int_equal(asr_audit_verify(f->st, NULL, &c2, &err), 0);
    assert_true(c2.ok);
    assert_int_equal(c2.anchor_seq, -1);
}

/* The first append writes the empty chain's anchor before it commits: after a crash between
 * the commit and the real anchor, "0 <zeros>" lags, and is not mistaken for a deleted anchor. */
static void test_genesis_anchor(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    assert_int_equal(asr_store_begin(f->st, "test", &err), 0);
    append_ok(f, "asr", "a", 0, 0, NULL);
    assert_string_equal(read_file(f->head),
                        "0 0000000000000000000000000000000000000000000000000000000000000000\n");
    assert_int_equal(asr_store_commit(f->st, "test", &err), 0);
    write_file(f->head, "0 0000000000000000000000000000000000000000000000000000000000000000\n");
    struct asr_audit_check c = verify(f);
    assert_true(c.ok);
    assert_int_equal(c.unanchored, 1);
}

/* ---- the attacker ------------------------------------------------------------------------------
 */

/* Column order of the audit table, as the tamper loops address them. */
static const char *const COLS[] = {"seq",     "at",     "actor", "kind", "incident_id",
                                   "plan_id", "detail", "prev",  "hash"};
#define NCOLS 9

struct tamper_stats {
    long flips, flips_refused, deletions, swaps;
};

/* Sets column col of row seq to value v (an sqlite3_value, or NULL for SQL NULL). */
static int set_cell(sqlite3 *db, int64_t seq, int col, int type, int64_t i, const void *p, int n)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "UPDATE audit SET %s = ?1 WHERE seq = ?2", COLS[col]);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (type == SQLITE_INTEGER)
        sqlite3_bind_int64(s, 1, i);
    else if (type == SQLITE_TEXT)
        sqlite3_bind_text(s, 1, p, n, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, 1);
    sqlite3_bind_int64(s, 2, seq);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Checks that verify names want; the change is rolled back afterwards. */
static void expect_named(struct fx *f, int64_t want, const char *what)
{
    struct asr_audit_check c = verify(f);
    if (c.ok || c.bad_seq != want)
        fail_msg("%s: verify %s (bad row %" PRId64 ", expected %" PRId64 ": %s)", what,
                 c.ok ? "passed" : "named the wrong row", c.bad_seq, want, c.why);
}

/*
 * Every byte of every column of every row of a 200-row log, one at a time: text columns have
 * each byte XORed with 0x01 (the smallest change there is), integer columns each of the 8 bytes
 * of their 64-bit value XORed with 0x01, and a NULL id becomes 0. A flipped seq that lands on
 * another row's seq is refused by the primary key (that change is a reorder, which the swap test
 * covers); those are counted, not skipped silently.
 *
 * All bytes of all columns (41,063 changes) take about 12 s in a debug build, and 31 s under
 * ASan+UBSan, past the ~20 s this test may take there. So a sanitizer build flips a
 * representative set instead: the first, middle and last byte of every column of every row
 * (about 4,600 changes), unless ASR_AUDIT_TAMPER_ALL=1 asks for all of them.
 */
static bool flip_all_bytes(void)
{
    const char *e = getenv("ASR_AUDIT_TAMPER_ALL");
    if (e != NULL && strcmp(e, "1") == 0)
        return true;
#if defined(__SANITIZE_ADDRESS__)
    return false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return false;
#endif
#endif
    return true;
}

/* Whether byte k of n is flipped: all of them, or the first, middle and last. */
static bool flip_this(bool all, int k, int n)
{
    return all || k == 0 || k == n / 2 || k == n - 1;
}

static void test_tamper_every_byte(void **state)
{
    struct fx *f = *state;
    build_log(f, LOG_ROWS);
    drop_triggers(f);
    sqlite3 *db = asr_store_db(f->st);
    exec_ok(db, "PRAGMA ignore_check_constraints = ON");
    struct tamper_stats t = {0};
    clock_t t0 = clock();
    bool all = flip_all_bytes();

    sqlite3_stmt *rd = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT * FROM audit WHERE seq = ?1", -1, &rd, NULL),
                     SQLITE_OK);
    for (int64_t seq = 1; seq <= LOG_ROWS; seq++) {
        for (int col = 0; col < NCOLS; col++) {
            sqlite3_bind_int64(rd, 1, seq);
            assert_int_equal(sqlite3_step(rd), SQLITE_ROW);
            int type = sqlite3_column_type(rd, col);
            int64_t iv = sqlite3_column_int64(rd, col);
            int n = sqlite3_column_bytes(rd, col);
            unsigned char *bytes = malloc((size_t)n + 1);
            assert_non_null(bytes);
            if (n > 0)
                memcpy(bytes, sqlite3_column_blob(rd, col), (size_t)n);
            sqlite3_reset(rd);
            /* The cell addressed by the row's original seq, even when seq is the column. */
            int nflips = type == SQLITE_TEXT ? n : type == SQLITE_INTEGER ? 8 : 1;
            for (int k = 0; k < nflips; k++) {
                if (!flip_this(all, k, nflips))
                    continue;
                char what[96];
                snprintf(what, sizeof(what), "row %" PRId64 " %s byte %d", seq, COLS[col], k);
                exec_ok(db, "BEGIN");
                int r;
                if (type == SQLITE_TEXT) {
                    bytes[k] ^= 0x01;
                    r = set_cell(db, seq, col, SQLITE_TEXT, 0, bytes, n);
                    bytes[k] ^= 0x01;
                } else if (type == SQLITE_INTEGER) {
                    r = set_cell(db, seq, col, SQLITE_INTEGER,
                                 (int64_t)((uint64_t)iv ^ ((uint64_t)1 << (8 * k))), NULL, 0);
                } else {
                    r = set_cell(db, seq, col, SQLITE_INTEGER, 0, NULL, 0);
                }
                if (r != 0) {
                    assert_int_equal(col, 0); /* only seq can collide (primary key) */
                    t.flips_refused++;
                } else {
                    assert_int_equal(sqlite3_changes(db), 1);
                    expect_named(f, seq, what);
                    t.flips++;
                }
                exec_ok(db, "ROLLBACK");
            }
            free(bytes);
        }
    }
    sqlite3_finalize(rd);
    exec_ok(db, "PRAGMA ignore_check_constraints = OFF");
    assert_true(verify(f).ok);
    print_message("audit tamper: %d rows, %ld single-byte flips (%s) detected, each naming its "
                  "row; %ld seq flips refused by the primary key; %.1f s\n",
                  LOG_ROWS, t.flips,
                  all ? "every byte of every column"
                      : "first, middle and last "
                        "byte of every column",
                  t.flips_refused, (double)(clock() - t0) / CLOCKS_PER_SEC);
    assert_true(t.flips > (all ? 40000 : 4000));
}

static void test_tamper_delete_every_row(void **state)
{
    struct fx *f = *state;
    build_log(f, LOG_ROWS);
    drop_triggers(f);
    sqlite3 *db = asr_store_db(f->st);
    long n = 0;
    for (int64_t seq = 1; seq <= LOG_ROWS; seq++) {
        char sql[96], what[64];
        snprintf(sql, sizeof(sql), "DELETE FROM audit WHERE seq = %" PRId64, seq);
        snprintf(what, sizeof(what), "delete row %" PRId64, seq);
        exec_ok(db, "BEGIN");
        exec_ok(db, sql);
        assert_int_equal(sqlite3_changes(db), 1);
        expect_named(f, seq, what);
        if (seq == LOG_ROWS)
            assert_string_equal(verify(f).why, "the last row is missing (audit.head says seq 200)");
        else if (seq > 1)
            assert_non_null(strstr(verify(f).why, "is missing"));
        exec_ok(db, "ROLLBACK");
        n++;
    }
    /* Runs of rows: the middle, and the tail. */
    exec_ok(db, "BEGIN");
    exec_ok(db, "DELETE FROM audit WHERE seq BETWEEN 41 AND 43");
    expect_named(f, 41, "delete 41..43");
    assert_string_equal(verify(f).why, "rows 41..43 are missing");
    exec_ok(db, "ROLLBACK");
    exec_ok(db, "BEGIN");
    exec_ok(db, "DELETE FROM audit WHERE seq > 198");
    expect_named(f, 199, "delete the last two");
    assert_string_equal(verify(f).why, "the last 2 rows are missing (audit.head says seq 200)");
    exec_ok(db, "ROLLBACK");
    print_message("audit tamper: %ld single-row deletions detected (each named its row), "
                  "plus a run in the middle and the last two\n",
                  n);
    assert_true(verify(f).ok);
}

/* Swaps the contents (every column but seq) of rows a and b. */
static void swap_rows(sqlite3 *db, int64_t a, int64_t b)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "CREATE TEMP TABLE IF NOT EXISTS t AS SELECT * FROM audit WHERE 0;"
             "DELETE FROM t; INSERT INTO t SELECT * FROM audit WHERE seq IN (%" PRId64 ", %" PRId64
             ");"
             "UPDATE audit SET (at, actor, kind, incident_id, plan_id, detail, prev, hash) = "
             "(SELECT at, actor, kind, incident_id, plan_id, detail, prev, hash FROM t "
             "WHERE t.seq = %" PRId64 " + %" PRId64 " - audit.seq) WHERE seq IN (%" PRId64
             ", %" PRId64 ")",
             a, b, a, b, a, b);
    exec_ok(db, sql);
}

static void test_tamper_swap_rows(void **state)
{
    struct fx *f = *state;
    build_log(f, LOG_ROWS);
    drop_triggers(f);
    sqlite3 *db = asr_store_db(f->st);
    long adjacent = 0, far = 0;
    uint32_t rng = 12345;
    for (int64_t a = 1; a <= LOG_ROWS; a++) {
        char what[64];
        if (a < LOG_ROWS) {
            snprintf(what, sizeof(what), "swap rows %" PRId64 " and %" PRId64, a, a + 1);
            exec_ok(db, "BEGIN");
            swap_rows(db, a, a + 1);
            expect_named(f, a, what);
            exec_ok(db, "ROLLBACK");
            adjacent++;
        }
        /* And with some row further away. */
        rng = rng * 1103515245u + 12345u;
        int64_t b = 1 + (int64_t)((rng >> 8) % LOG_ROWS);
        if (b == a || b == a + 1 || b == a - 1)
            continue;
        snprintf(what, sizeof(what), "swap rows %" PRId64 " and %" PRId64, a, b);
        exec_ok(db, "BEGIN");
        swap_rows(db, a, b);
        expect_named(f, a < b ? a : b, what);
        exec_ok(db, "ROLLBACK");
        far++;
    }
    print_message("audit tamper: %ld adjacent swaps and %ld swaps of distant rows detected "
                  "(each named the first row moved)\n",
                  adjacent, far);
    assert_int_equal(adjacent, LOG_ROWS - 1);
    assert_true(verify(f).ok);
}

/* Moving a byte from one column to the next keeps the concatenation; the length prefixes do
 * not. */
static void test_tamper_shift_between_columns(void **state)
{
    struct fx *f = *state;
    append_ok(f, "asr", "plan.made", 0, 0, NULL);
    append_ok(f, "asr", "plan.made", 0, 0, NULL);
    drop_triggers(f);
    sqlite3 *db = asr_store_db(f->st);
    exec_ok(db, "UPDATE audit SET actor = 'as', kind = 'rplan.made' WHERE seq = 1");
    struct asr_audit_check c = verify(f);
    assert_false(c.ok);
    assert_int_equal(c.bad_seq, 1);
    assert_string_equal(c.why, "row 1: hash does not match its contents");
}

/* An attacker who recomputes every hash after the change gets a chain that holds together; only
 * the anchor, which names the old head, catches it. */
static void test_tamper_rehashed_chain(void **state)
{
    struct fx *f = *state;
    build_log(f, LOG_ROWS);
    drop_triggers(f);
    sqlite3 *db = asr_store_db(f->st);
    exec_ok(db, "UPDATE audit SET actor = 'nobody' WHERE seq = 57");
    /* Recompute 57..200 with the documented format. */
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT seq, at, actor, kind, coalesce(incident_id, 0), "
                                        "coalesce(plan_id, 0), detail, prev FROM audit WHERE "
                                        "seq >= 56 ORDER BY seq",
                                        -1, &s, NULL),
                     SQLITE_OK);
    char prev[65] = "";
    struct {
        int64_t seq;
        char prev[65], hash[65];
    } fix[LOG_ROWS];
    int nfix = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(s, 0);
        if (seq == 56) {
            snprintf(prev, sizeof(prev), "%s", (const char *)sqlite3_column_text(s, 7));
            /* row 56's own hash is what 57 chains to: recompute it from its columns */
            doc_hash(prev, 56, sqlite3_column_int64(s, 1), (const char *)sqlite3_column_text(s, 2),
                     (const char *)sqlite3_column_text(s, 3), sqlite3_column_int64(s, 4),
                     sqlite3_column_int64(s, 5), (const char *)sqlite3_column_text(s, 6), prev);
            continue;
        }
        fix[nfix].seq = seq;
        snprintf(fix[nfix].prev, 65, "%s", prev);
        doc_hash(prev, seq, sqlite3_column_int64(s, 1), (const char *)sqlite3_column_text(s, 2),
                 (const char *)sqlite3_column_text(s, 3), sqlite3_column_int64(s, 4),
                 sqlite3_column_int64(s, 5), (const char *)sqlite3_column_text(s, 6),
                 fix[nfix].hash);
        snprintf(prev, sizeof(prev), "%s", fix[nfix].hash);
        nfix++;
    }
    sqlite3_finalize(s);
    assert_int_equal(nfix, LOG_ROWS - 56);
    for (int i = 0; i < nfix; i++) {
        char sql[256];
        snprintf(sql, sizeof(sql), "UPDATE audit SET prev = '%s', hash = '%s' WHERE seq = %" PRId64,
                 fix[i].prev, fix[i].hash, fix[i].seq);
        exec_ok(db, sql);
    }
    struct asr_audit_check c;
    struct asr_err err = {0};
    assert_int_equal(asr_audit_verify(f->st, NULL, &c, &err), 0);
    assert_true(c.ok); /* the chain alone cannot tell */
    c = verify(f);
    assert_false(c.ok);
    assert_int_equal(c.bad_seq, LOG_ROWS);
    assert_non_null(strstr(c.why, "row 200: hash is not the one audit.head recorded"));
}

/* A change committed by another connection, read by a store opened afterwards. */
static void test_committed_tamper_reopened(void **state)
{
    struct fx *f = *state;
    build_log(f, 20);
    asr_store_close(f->st);
    f->st = NULL;
    drop_triggers(f);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    exec_ok(db, "UPDATE audit SET detail = '{\"reason\":\"nothing to see\"}' WHERE seq = 13");
    sqlite3_close(db);
    open_store(f);
    struct asr_audit_check c = verify(f);
    assert_false(c.ok);
    assert_int_equal(c.bad_seq, 13);
    assert_string_equal(c.why, "row 13: hash does not match its contents");
}

/* A row renumbered below 1 leaves a gap where it was; the gap names it. Alone, a stray row is
 * named too. */
static void test_stray_row(void **state)
{
    struct fx *f = *state;
    build_log(f, 5);
    drop_triggers(f);
    sqlite3 *db = asr_store_db(f->st);
    exec_ok(db, "PRAGMA ignore_check_constraints = ON");
    exec_ok(db, "UPDATE audit SET seq = -3 WHERE seq = 3");
    struct asr_audit_check c = verify(f);
    assert_false(c.ok);
    assert_int_equal(c.bad_seq, 3);
    assert_string_equal(c.why, "row 3 is missing");
    exec_ok(db, "UPDATE audit SET seq = 3 WHERE seq = -3");
    exec_ok(db, "INSERT INTO audit SELECT -1, at, actor, kind, incident_id, plan_id, detail, "
                "prev, hash FROM audit WHERE seq = 1");
    c = verify(f);
    assert_false(c.ok);
    assert_int_equal(c.bad_seq, -1);
    assert_non_null(strstr(c.why, "a row numbered -1 is outside the chain"));
}

/* ---- the hooks ---------------------------------------------------------------------------------
 */

static int64_t open_incident(struct fx *f)
{
    struct asr_incident inc = {.fingerprint = "shop:SIG",
                               .service = "shop",
                               .kind = "signature",
                               .signature = "SIG",
                               .severity = "error",
                               .source = "stderr",
                               .line = "boom",
                               .first_seen = 1000,
                               .last_seen = 1000,
                               .received_us = 1000123};
    struct asr_incident_batch b = {.opened = &inc, .nopened = 1};
    struct asr_err err = {0};
    int rc = asr_store_incident_write(f->st, &b, &err);
    if (rc != 0)
        fail_msg("write: %s", asr_err_msg(&err, rc));
    return inc.id;
}

static void test_hooks(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    int64_t id = open_incident(f);

    /* plan.made, in the plan's transaction. */
    struct asr_plan p = {.incident_id = id,
                         .strategy = "playbook",
                         .confidence = 0.75,
                         .requires_approval = true,
                         .rationale = "the playbook fits",
                         .steps =
                             json_pack("[{s:s}, {s:s}]", "action", "patch", "action", "verify")};
    p.sources = json_array();
    p.verify = json_null();
    int64_t pid = 0;
    assert_int_equal(asr_plan_save(f->st, &p, &pid, &err), 0);
    json_decref(p.steps);
    struct asr_audit_row *v = NULL;
    size_t n = 0;
    assert_int_equal(asr_audit_list(f->st, 0, 10, &v, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].kind, "plan.made");
    assert_string_equal(v[0].actor, "asr");
    assert_int_equal(v[0].incident_id, id);
    assert_int_equal(v[0].plan_id, pid);
    assert_string_equal(v[0].detail, "{\"actions\":[\"patch\",\"verify\"],\"confidence\":0.75,"
                                     "\"requires_approval\":true,\"strategy\":\"playbook\"}");
    asr_audit_rows_free(v, n);

    /* plan.outcome. */
    struct asr_incident inc = {0};
    assert_int_equal(asr_store_incident_get(f->st, id, &inc, &err), 0);
    int rc = asr_plan_learn(f->st, &inc, true, 4200, &err);
    if (rc != 0)
        fail_msg("learn: %s", err.msg);
    /* A second outcome is refused, and leaves no audit row. */
    assert_int_equal(asr_plan_learn(f->st, &inc, false, 0, &err), ASR_EINVAL);
    asr_incident_free(&inc);

    /* incident.resolved, with the reason. */
    assert_int_equal(asr_store_incident_resolve(f->st, id, "fixed by plan", &err), 0);
    assert_int_equal(asr_store_incident_resolve(f->st, id, "again", &err), ASR_EINVAL);

    assert_int_equal(asr_audit_list(f->st, 0, 10, &v, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[1].kind, "plan.outcome");
    assert_int_equal(v[1].plan_id, pid);
    assert_string_equal(v[1].detail, "{\"mttr_ms\":4200,\"outcome\":\"verified\"}");
    assert_string_equal(v[0].kind, "incident.resolved");
    assert_int_equal(v[0].incident_id, id);
    assert_int_equal(v[0].plan_id, 0);
    assert_string_equal(v[0].detail, "{\"reason\":\"fixed by plan\"}");
    asr_audit_rows_free(v, n);
    struct asr_audit_check c = verify(f);
    assert_true(c.ok);
    assert_int_equal(c.rows, 3);
    assert_int_equal(c.anchor_seq, 3);

    /* A plan whose audit row cannot be written is not saved either. */
    drop_triggers(f);
    exec_ok(asr_store_db(f->st), "CREATE TRIGGER no_more BEFORE INSERT ON audit "
                                 "BEGIN SELECT RAISE(ABORT, 'audit full'); END");
    p.steps = json_pack("[{s:s}]", "action", "restart");
    assert_int_not_equal(asr_plan_save(f->st, &p, &pid, &err), 0);
    assert_non_null(strstr(err.msg, "audit full"));
    json_decref(p.steps);
    json_decref(p.sources);
    json_decref(p.verify);
    sqlite3_stmt *s = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(asr_store_db(f->st), "SELECT count(*) FROM plans", -1, &s, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 1);
    sqlite3_finalize(s);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_and_first_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_triggers_refuse_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_joins_callers_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anchor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_genesis_anchor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_every_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_delete_every_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_swap_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_shift_between_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_rehashed_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_committed_tamper_reopened, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stray_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hooks, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
