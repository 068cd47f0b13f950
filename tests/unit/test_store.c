/*
 * test_store.c - unit tests of the SQLite store (src/store/).
 *
 * Each test gets a fresh temporary directory. The file is checked from the outside through a
 * second, plain sqlite3 connection wherever the question is "what is really on disk" (journal
 * mode, schema version, whether a failed migration left anything behind). Migration failures are
 * injected with the asr_store_open_file_with_migrations() hook of store_int.h.
 */
#include "asr/store.h"
#include "asr/timeutil.h"
#include "store/store_int.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
    char dir[256];   /* the temporary directory of this test */
    char state[512]; /* dir/state: the state dir given to asr_store_open */
    char db[1024];   /* dir/state/asr.db */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 200)
        tmp = "/tmp";
    snprintf(f->dir, sizeof(f->dir), "%s/asr-test-store-XXXXXX", tmp);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
    snprintf(f->db, sizeof(f->db), "%s/asr.db", f->state);
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
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------- */

static size_t n_migrations(void)
{
    size_t n = 0;
    asr_store_migrations(&n);
    return n;
}

static struct asr_store *open_ok(const struct fx *f)
{
    struct asr_store *st = NULL;
    struct asr_err err = {0};
    int rc = asr_store_open(f->state, &st, &err);
    if (rc != 0)
        fail_msg("asr_store_open: %s", asr_err_msg(&err, rc));
    assert_non_null(st);
    return st;
}

/* A second, plain connection to the same file: "what is on disk", not "what asr says". */
static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static long long raw_int(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    long long v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void raw_text(const char *path, const char *sql, char *buf, size_t cap)
{
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static bool table_exists(const char *path, const char *name)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '%s'", name);
    return raw_int(path, sql) == 1;
}

/* A full 40-hex commit id made from n. */
static const char *sha(char buf[41], unsigned n)
{
    snprintf(buf, 41, "%040x", n);
    return buf;
}

static int64_t release_of(struct asr_store *st, const char *service, unsigned n)
{
    char c[41];
    struct asr_release r;
    struct asr_err err = {0};
    int rc = asr_store_release_get_or_create(st, service, sha(c, n), NULL, &r, &err);
    if (rc != 0)
        fail_msg("get_or_create: %s", asr_err_msg(&err, rc));
    int64_t id = r.id;
    asr_release_free(&r);
    return id;
}

static int64_t fake_clock_cb(void *arg)
{
    return *(int64_t *)arg;
}

/* ---- opening and migrations ---------------------------------------------------------------- */

static void test_open_creates_wal_db(void **state)
{
    struct fx *f = *state;
    /* A state dir two levels below anything that exists: mkdir -p. */
    snprintf(f->state, sizeof(f->state), "%s/a/b/state", f->dir);
    snprintf(f->db, sizeof(f->db), "%s/asr.db", f->state);

    struct asr_store *st = open_ok(f);
    struct stat sb;
    assert_int_equal(stat(f->state, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(stat(f->db, &sb), 0);
    assert_int_equal(sb.st_mode & 0077, 0);

    char mode[16];
    raw_text(f->db, "PRAGMA journal_mode", mode, sizeof(mode));
    assert_string_equal(mode, "wal");
    assert_true(n_migrations() >= 1);
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), (long long)n_migrations());
    assert_int_equal(asr_store_schema_version(st), (int)n_migrations());
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND "
                                    "name IN ('services', 'releases', 'deployments', 'events')"),
                     4);
    asr_store_close(st);
}

static void test_reopen_keeps_data_and_does_not_rerun(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    struct asr_store *st = open_ok(f);
    int64_t id = release_of(st, "shop", 1);
    assert_int_equal(asr_store_event_add(st, "shop", "cli", "deploy.requested", NULL, &err), 0);
    asr_store_close(st);

    /* Migration 1 creates its tables without IF NOT EXISTS: a second run would fail. */
    st = open_ok(f);
    assert_int_equal(asr_store_schema_version(st), (int)n_migrations());
    char c[41];
    struct asr_release r;
    assert_int_equal(asr_store_release_find(st, "shop", sha(c, 1), &r, &err), 0);
    assert_int_equal(r.id, id);
    asr_release_free(&r);
    struct asr_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(asr_store_event_list(st, NULL, 0, 10, &ev, &n, &err), 0);
    assert_int_equal(n, 1);
    asr_events_free(ev, n);
    asr_store_close(st);

    /* A migration with a visible side effect runs exactly once over three opens. */
    size_t nm;
    const struct asr_store_migration *real = asr_store_migrations(&nm);
    char other[PATH_MAX];
    snprintf(other, sizeof(other), "%s/counted.db", f->dir);
    struct asr_store_migration m[] = {
        real[0],
        {2, "counted", "CREATE TABLE runs (x INTEGER); INSERT INTO runs VALUES (1);"},
    };
    for (int i = 0; i < 3; i++) {
        int rc = asr_store_open_file_with_migrations(other, m, 2, &st, &err);
        if (rc != 0)
            fail_msg("open %d: %s", i, asr_err_msg(&err, rc));
        assert_int_equal(asr_store_schema_version(st), 2);
        asr_store_close(st);
    }
    assert_int_equal(raw_int(other, "SELECT count(*) FROM runs"), 1);
}

static void test_future_version_refused(void **state)
{
    struct fx *f = *state;
    asr_store_close(open_ok(f));
    char sql[64];
    long long future = (long long)n_migrations() + 5;
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", future);
    raw_exec(f->db, sql);

    struct asr_store *st = (struct asr_store *)0x1;
    struct asr_err err = {0};
    int rc = asr_store_open(f->state, &st, &err);
    assert_int_equal(rc, ASR_EDB);
    assert_null(st);
    assert_non_null(strstr(err.msg, "newer than this asr knows"));
    char want[32];
    snprintf(want, sizeof(want), "version %lld", future);
    assert_non_null(strstr(err.msg, want));
    assert_non_null(strstr(err.msg, f->db));
    /* Refusing does not touch the file. */
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), future);
}

static void test_failed_migration_leaves_nothing(void **state)
{
    struct fx *f = *state;
    size_t nm;
    const struct asr_store_migration *real = asr_store_migrations(&nm);
    struct asr_store_migration m[] = {
        real[0],
        {2, "half done",
         "CREATE TABLE half (a INTEGER); INSERT INTO half VALUES (1);\n"
         "INSERT INTO no_such_table VALUES (1);"},
    };
    assert_int_equal(mkdir(f->state, 0700), 0);
    struct asr_store *st = NULL;
    struct asr_err err = {0};
    int rc = asr_store_open_file_with_migrations(f->db, m, 2, &st, &err);
    assert_int_equal(rc, ASR_EDB);
    assert_null(st);
    assert_non_null(strstr(err.msg, "migration 2 (half done)"));
    assert_non_null(strstr(err.msg, "no such table: no_such_table"));

    /* Migration 1 committed on its own; migration 2 left no table and no version bump. */
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), 1);
    assert_true(table_exists(f->db, "services"));
    assert_false(table_exists(f->db, "half"));

    /* The database is still usable by code that knows only migration 1. */
    rc = asr_store_open_file_with_migrations(f->db, m, 1, &st, &err);
    assert_int_equal(rc, 0);
    asr_store_close(st);

    /* On a connection that stays open: no transaction is left behind, nothing is visible. */
    sqlite3 *db = raw_open(f->db);
    assert_int_equal(asr_store_migrate(db, f->db, m, 2, &err), ASR_EDB);
    assert_int_not_equal(sqlite3_get_autocommit(db), 0);
    assert_int_equal(sqlite3_exec(db, "SELECT * FROM half", NULL, NULL, NULL), SQLITE_ERROR);
    sqlite3_close(db);
}

static void test_failed_migration_rolls_back_version_bump(void **state)
{
    struct fx *f = *state;
    size_t nm;
    const struct asr_store_migration *real = asr_store_migrations(&nm);
    /*
     * The script itself succeeds (the foreign key check is deferred), so the version bump runs
     * too; the foreign key check after it fails, and both must be undone.
     */
    struct asr_store_migration m[] = {
        real[0],
        {2, "orphan",
         "PRAGMA defer_foreign_keys = ON;\n"
         "INSERT INTO releases (service, commit_sha, created_at, updated_at)\n"
         "    VALUES ('ghost', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 1, 1);"},
    };
    assert_int_equal(mkdir(f->state, 0700), 0);
    struct asr_store *st = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_store_open_file_with_migrations(f->db, m, 2, &st, &err), ASR_EDB);
    assert_null(st);
    assert_non_null(strstr(err.msg, "migration 2 (orphan)"));
    assert_non_null(strstr(err.msg, "foreign key violation in table releases"));
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM releases"), 0);
}

static void test_migration_refuses_transaction_control(void **state)
{
    struct fx *f = *state;
    size_t nm;
    const struct asr_store_migration *real = asr_store_migrations(&nm);
    struct asr_store_migration m[] = {
        real[0],
        {2, "commits early", "CREATE TABLE early (a INTEGER); COMMIT; CREATE TABLE late (a);"},
    };
    assert_int_equal(mkdir(f->state, 0700), 0);
    struct asr_store *st = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_store_open_file_with_migrations(f->db, m, 2, &st, &err), ASR_EDB);
    assert_non_null(strstr(err.msg, "must not contain BEGIN, COMMIT or ROLLBACK"));
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), 1);
    assert_false(table_exists(f->db, "early"));
    assert_false(table_exists(f->db, "late"));

    /* A table out of order is refused before anything runs. */
    struct asr_store_migration gap[] = {real[0], {3, "gap", "SELECT 1;"}};
    assert_int_equal(asr_store_open_file_with_migrations(f->db, gap, 2, &st, &err), ASR_EINVAL);
    assert_non_null(strstr(err.msg, "entry 1 has version 3, expected 2"));
}

static void test_open_errors_and_memory(void **state)
{
    struct fx *f = *state;
    struct asr_store *st = NULL;
    struct asr_err err = {0};

    /* A state dir that is a regular file. */
    FILE *fp = fopen(f->state, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(asr_store_open(f->state, &st, &err), ASR_EIO);
    assert_null(st);
    assert_non_null(strstr(err.msg, f->state));

    assert_int_equal(asr_store_open(NULL, &st, &err), ASR_EINVAL);
    assert_int_equal(asr_store_open("", &st, &err), ASR_EINVAL);
    assert_int_equal(asr_store_open_file(NULL, &st, &err), ASR_EINVAL);

    /* ":memory:" works and has the full schema. */
    assert_int_equal(asr_store_open_file(":memory:", &st, &err), 0);
    assert_int_equal(asr_store_schema_version(st), (int)n_migrations());
    assert_true(release_of(st, "shop", 7) > 0);
    asr_store_close(st);
}

/* ---- releases ------------------------------------------------------------------------------ */

static void test_release_get_or_create_idempotent(void **state)
{
    struct fx *f = *state;
    struct asr_store *st = open_ok(f);
    struct asr_err err = {0};
    char c[41];
    struct asr_release a, b, other;

    assert_int_equal(asr_store_release_get_or_create(st, "shop", sha(c, 1), "/w/1", &a, &err), 0);
    assert_true(a.id > 0);
    assert_string_equal(a.service, "shop");
    assert_string_equal(a.commit, c);
    assert_string_equal(a.state, ASR_RELEASE_BUILDING);
    assert_string_equal(a.dir, "/w/1");
    assert_null(a.reason);
    assert_int_equal(a.build_status, -1);
    assert_int_equal(a.test_status, -1);
    assert_true(a.created_at > 0);

    /* Same (service, commit): the same row, unchanged, even with another dir. */
    assert_int_equal(asr_store_release_get_or_create(st, "shop", sha(c, 1), "/w/2", &b, &err), 0);
    assert_int_equal(b.id, a.id);
    assert_string_equal(b.dir, "/w/1");
    assert_int_equal(b.created_at, a.created_at);

    /* The same commit under another service is another release. */
    assert_int_equal(asr_store_release_get_or_create(st, "api", sha(c, 1), NULL, &other, &err), 0);
    assert_int_not_equal(other.id, a.id);
    assert_null(other.dir);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM releases"), 2);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM services"), 2);

    asr_release_free(&a);
    asr_release_free(&b);
    asr_release_free(&other);
    asr_store_close(st);
}

static void test_release_results_round_trip(void **state)
{
    struct fx *f = *state;
    struct asr_store *st = open_ok(f);
    struct asr_err err = {0};
    int64_t id = release_of(st, "shop", 2);
    char *out = NULL;

    /* Nothing recorded yet reads as "". */
    assert_int_equal(asr_store_release_output(st, id, "build", &out, &err), 0);
    assert_string_equal(out, "");
    free(out);

    assert_int_equal(asr_store_release_set_build(st, id, 0, 1234, "cc -o shop\nok\n", &err), 0);
    assert_int_equal(asr_store_release_set_test(st, id, 2, 567, "FAIL test_sql\n", &err), 0);
    struct asr_release r;
    assert_int_equal(asr_store_release_get(st, id, &r, &err), 0);
    assert_int_equal(r.build_status, 0);
    assert_int_equal(r.build_ms, 1234);
    assert_int_equal(r.test_status, 2);
    assert_int_equal(r.test_ms, 567);
    asr_release_free(&r);

    assert_int_equal(asr_store_release_output(st, id, "build", &out, &err), 0);
    assert_string_equal(out, "cc -o shop\nok\n");
    free(out);
    assert_int_equal(asr_store_release_output(st, id, "test", &out, &err), 0);
    assert_string_equal(out, "FAIL test_sql\n");
    free(out);

    assert_int_equal(asr_store_release_set_state(st, id, ASR_RELEASE_BAD, "tests failed", &err), 0);
    assert_int_equal(asr_store_release_get(st, id, &r, &err), 0);
    assert_string_equal(r.state, ASR_RELEASE_BAD);
    assert_string_equal(r.reason, "tests failed");
    asr_release_free(&r);

    /* Missing rows and bad arguments. */
    assert_int_equal(asr_store_release_output(st, id, "lint", &out, &err), ASR_EINVAL);
    assert_null(out);
    assert_int_equal(asr_store_release_output(st, 999, "test", &out, &err), ASR_ENOENT);
    assert_int_equal(asr_store_release_set_build(st, 999, 0, 1, "x", &err), ASR_ENOENT);
    assert_string_equal(err.msg, "store: set release build: no release 999");
    assert_int_equal(asr_store_release_set_state(st, 999, ASR_RELEASE_GOOD, NULL, &err),
                     ASR_ENOENT);
    assert_int_equal(asr_store_release_get(st, 999, &r, &err), ASR_ENOENT);
    assert_null(r.service);
    char c[41];
    assert_int_equal(asr_store_release_find(st, "shop", sha(c, 3), &r, &err), ASR_ENOENT);
    asr_store_close(st);
}

static void test_check_constraints_reject_bad_values(void **state)
{
    struct fx *f = *state;
    struct asr_store *st = open_ok(f);
    struct asr_err err = {0};
    int64_t id = release_of(st, "shop", 4);

    assert_int_equal(asr_store_release_set_state(st, id, "excellent", NULL, &err), ASR_EDB);
    assert_string_equal(err.msg, "store: set release state: CHECK constraint failed: "
                                 "releases_state_valid");
    struct asr_release r;
    assert_int_equal(asr_store_release_get(st, id, &r, &err), 0);
    assert_string_equal(r.state, ASR_RELEASE_BUILDING);
    asr_release_free(&r);

    /* Abbreviated or upper-case commit ids would make (service, commit) ambiguous. */
    assert_int_equal(asr_store_release_get_or_create(st, "shop", "abc1234", NULL, &r, &err),
                     ASR_EDB);
    assert_string_equal(err.msg, "store: insert release: CHECK constraint failed: "
                                 "releases_commit_full_hex");
    assert_null(r.commit);
    assert_int_equal(asr_store_release_get_or_create(
                         st, "shop", "ABCDEF0123456789ABCDEF0123456789ABCDEF01", NULL, &r, &err),
                     ASR_EDB);

    int64_t dep = 0;
    assert_int_equal(asr_store_deployment_begin(st, "shop", "yolo", 0, id, &dep, &err), ASR_EDB);
    assert_non_null(strstr(err.msg, "deployments_kind_valid"));
    assert_int_equal(dep, 0);
    assert_int_equal(asr_store_deployment_begin(st, "shop", "deploy", 0, id, &dep, &err), 0);
    assert_int_equal(asr_store_deployment_end(st, dep, "meh", NULL, &err), ASR_EDB);
    assert_non_null(strstr(err.msg, "deployments_outcome_valid"));
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM deployments WHERE outcome = 'running'"),
                     1);
    asr_store_close(st);
}

static void test_last_good_ordering_and_exclusion(void **state)
{
    struct fx *f = *state;
    struct asr_store *st = open_ok(f);
    struct asr_err err = {0};
    int64_t now = 1000;
    asr_store_set_clock(st, fake_clock_cb, &now);

    int64_t a = release_of(st, "shop", 10);
    int64_t b = release_of(st, "shop", 11);
    int64_t c = release_of(st, "shop", 12);
    int64_t other = release_of(st, "api", 13);
    struct asr_release r;

    assert_int_equal(asr_store_release_last_good(st, "shop", 0, &r, &err), ASR_ENOENT);
    assert_non_null(strstr(err.msg, "shop has no good release"));

    now = 2000;
    assert_int_equal(asr_store_release_set_state(st, a, ASR_RELEASE_GOOD, NULL, &err), 0);
    now = 3000;
    assert_int_equal(asr_store_release_set_state(st, b, ASR_RELEASE_GOOD, NULL, &err), 0);
    now = 4000;
    assert_int_equal(asr_store_release_set_state(st, c, ASR_RELEASE_BAD, "health", &err), 0);
    assert_int_equal(asr_store_release_set_state(st, other, ASR_RELEASE_GOOD, NULL, &err), 0);

    /* The newest good one, never a bad one, never another service's. */
    assert_int_equal(asr_store_release_last_good(st, "shop", 0, &r, &err), 0);
    assert_int_equal(r.id, b);
    asr_release_free(&r);
    assert_int_equal(asr_store_release_last_good(st, "shop", b, &r, &err), 0);
    assert_int_equal(r.id, a);
    asr_release_free(&r);

    /* a serves healthy again (a rollback to it): it is now the last good, though older. */
    now = 5000;
    assert_int_equal(asr_store_release_set_state(st, a, ASR_RELEASE_GOOD, NULL, &err), 0);
    assert_int_equal(asr_store_release_last_good(st, "shop", 0, &r, &err), 0);
    assert_int_equal(r.id, a);
    asr_release_free(&r);
    assert_int_equal(asr_store_release_last_good(st, "shop", a, &r, &err), 0);
    assert_int_equal(r.id, b);
    asr_release_free(&r);

    /* Excluding the only good one leaves none. */
    assert_int_equal(asr_store_release_last_good(st, "api", other, &r, &err), ASR_ENOENT);
    assert_null(r.service);

    /* Within one millisecond the newer release wins. */
    int64_t d = release_of(st, "shop", 14);
    assert_int_equal(asr_store_release_set_state(st, d, ASR_RELEASE_GOOD, NULL, &err), 0);
    assert_int_equal(asr_store_release_set_state(st, a, ASR_RELEASE_GOOD, NULL, &err), 0);
    assert_int_equal(asr_store_release_last_good(st, "shop", 0, &r, &err), 0);
    assert_int_equal(r.id, d);
    asr_release_free(&r);
    asr_store_close(st);
}

/* ---- deployments --------------------------------------------------------------------------- */

static void test_deployment_begin_end_last_list(void **state)
{
    struct fx *f = *state;
    struct asr_store *st = open_ok(f);
    struct asr_err err = {0};
    int64_t now = 10000;
    asr_store_set_clock(st, fake_clock_cb, &now);
    int64_t a = release_of(st, "shop", 20);
    int64_t b = release_of(st, "shop", 21);
    int64_t x = release_of(st, "api", 22);
    struct asr_deployment d;

    assert_int_equal(asr_store_deployment_last(st, "shop", &d, &err), ASR_ENOENT);

    int64_t start = 0, dep = 0, back = 0, api = 0;
    assert_int_equal(asr_store_deployment_begin(st, "shop", "start", 0, a, &start, &err), 0);
    now = 10100;
    assert_int_equal(asr_store_deployment_end(st, start, ASR_DEPLOY_SUCCEEDED, NULL, &err), 0);

    now = 11000;
    assert_int_equal(asr_store_deployment_begin(st, "shop", "deploy", a, b, &dep, &err), 0);
    assert_int_equal(asr_store_deployment_last(st, "shop", &d, &err), 0);
    assert_int_equal(d.id, dep);
    assert_string_equal(d.service, "shop");
    assert_string_equal(d.kind, "deploy");
    assert_int_equal(d.from_release, a);
    assert_int_equal(d.to_release, b);
    assert_int_equal(d.started_at, 11000);
    assert_int_equal(d.ended_at, 0);
    assert_string_equal(d.outcome, ASR_DEPLOY_RUNNING);
    assert_null(d.reason);
    asr_deployment_free(&d);

    now = 12000;
    assert_int_equal(
        asr_store_deployment_end(st, dep, ASR_DEPLOY_ROLLED_BACK, "health: 3 failures", &err), 0);
    assert_int_equal(asr_store_deployment_begin(st, "shop", "rollback", b, a, &back, &err), 0);
    assert_int_equal(asr_store_deployment_begin(st, "api", "start", 0, x, &api, &err), 0);

    /* Ending twice, ending what does not exist, ending with "running". */
    assert_int_equal(asr_store_deployment_end(st, dep, ASR_DEPLOY_SUCCEEDED, NULL, &err),
                     ASR_ESTATE);
    assert_non_null(strstr(err.msg, "already ended (rolled_back)"));
    assert_int_equal(asr_store_deployment_end(st, 999, ASR_DEPLOY_FAILED, NULL, &err), ASR_ENOENT);
    assert_int_equal(asr_store_deployment_end(st, back, ASR_DEPLOY_RUNNING, NULL, &err),
                     ASR_EINVAL);

    /* Releases that do not exist or belong to another service. */
    int64_t bad = 0;
    assert_int_equal(asr_store_deployment_begin(st, "shop", "deploy", a, 999, &bad, &err),
                     ASR_ENOENT);
    assert_int_equal(asr_store_deployment_begin(st, "shop", "deploy", a, x, &bad, &err),
                     ASR_EINVAL);
    assert_non_null(strstr(err.msg, "belongs to api, not shop"));
    assert_int_equal(asr_store_deployment_begin(st, "shop", "deploy", x, b, &bad, &err),
                     ASR_EINVAL);
    assert_int_equal(bad, 0);

    struct asr_deployment *list = NULL;
    size_t n = 0;
    assert_int_equal(asr_store_deployment_list(st, "shop", 10, &list, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].id, back); /* newest first */
    assert_int_equal(list[1].id, dep);
    assert_int_equal(list[1].ended_at, 12000);
    assert_string_equal(list[1].outcome, ASR_DEPLOY_ROLLED_BACK);
    assert_string_equal(list[1].reason, "health: 3 failures");
    assert_int_equal(list[2].id, start);
    assert_int_equal(list[2].from_release, 0);
    assert_int_equal(list[2].ended_at, 10100);
    asr_deployments_free(list, n);

    assert_int_equal(asr_store_deployment_list(st, "shop", 1, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, back);
    asr_deployments_free(list, n);

    assert_int_equal(asr_store_deployment_list(st, NULL, 100, &list, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(list[0].id, api);
    asr_deployments_free(list, n);

    assert_int_equal(asr_store_deployment_list(st, "nobody", 10, &list, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(list);
    assert_int_equal(asr_store_deployment_list(st, "shop", 0, &list, &n, &err), ASR_EINVAL);
    asr_store_close(st);
}

static void test_deployment_abandon_running(void **state)
{
    struct fx *f = *state;
    struct asr_store *st = open_ok(f);
    struct asr_err err = {0};
    int64_t a = release_of(st, "shop", 30);
    int64_t x = release_of(st, "api", 31);
    int64_t d1 = 0, d2 = 0, d3 = 0;
    assert_int_equal(asr_store_deployment_begin(st, "shop", "deploy", 0, a, &d1, &err), 0);
    assert_int_equal(asr_store_deployment_end(st, d1, ASR_DEPLOY_SUCCEEDED, NULL, &err), 0);
    assert_int_equal(asr_store_deployment_begin(st, "shop", "deploy", a, a, &d2, &err), 0);
    assert_int_equal(asr_store_deployment_begin(st, "api", "start", 0, x, &d3, &err), 0);

    assert_int_equal(asr_store_deployment_abandon_running(st, "asr restarted", &err), 2);
    struct asr_deployment d;
    assert_int_equal(asr_store_deployment_last(st, "api", &d, &err), 0);
    assert_int_equal(d.id, d3);
    assert_string_equal(d.outcome, ASR_DEPLOY_FAILED);
    assert_string_equal(d.reason, "asr restarted");
    assert_true(d.ended_at > 0);
    asr_deployment_free(&d);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM deployments WHERE outcome = 'failed'"),
                     2);
    assert_int_equal(
        raw_int(f->db, "SELECT reason IS NULL FROM deployments WHERE outcome = 'succeeded'"), 1);

    /* Nothing left running; a NULL reason gets a default. */
    assert_int_equal(asr_store_deployment_abandon_running(st, NULL, &err), 0);
    int64_t d4 = 0;
    assert_int_equal(asr_store_deployment_begin(st, "shop", "rollback", a, a, &d4, &err), 0);
    assert_int_equal(asr_store_deployment_abandon_running(st, NULL, &err), 1);
    assert_int_equal(asr_store_deployment_last(st, "shop", &d, &err), 0);
    assert_non_null(d.reason);
    assert_true(d.reason[0] != '\0');
    asr_deployment_free(&d);
    asr_store_close(st);
}

/* ---- events -------------------------------------------------------------------------------- */

static void test_events_add_list(void **state)
{
    struct fx *f = *state;
    struct asr_store *st = open_ok(f);
    struct asr_err err = {0};
    int64_t now = 500;
    asr_store_set_clock(st, fake_clock_cb, &now);

    static const char *const services[] = {"shop", "api", NULL, "shop", "shop"};
    for (int i = 0; i < 5; i++) {
        char kind[32];
        snprintf(kind, sizeof(kind), "k%d", i);
        now = 500 + i;
        assert_int_equal(
            asr_store_event_add(st, services[i], "daemon", kind, i == 1 ? NULL : "{\"n\":1}", &err),
            0);
    }

    struct asr_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(asr_store_event_list(st, NULL, 0, 100, &ev, &n, &err), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        char kind[32];
        snprintf(kind, sizeof(kind), "k%zu", i);
        assert_string_equal(ev[i].kind, kind); /* oldest first */
        assert_int_equal(ev[i].at, 500 + (int64_t)i);
        assert_string_equal(ev[i].actor, "daemon");
        if (i > 0)
            assert_true(ev[i].id > ev[i - 1].id);
    }
    assert_null(ev[2].service);
    assert_null(ev[1].detail);
    assert_string_equal(ev[0].detail, "{\"n\":1}");
    int64_t third = ev[2].id;
    asr_events_free(ev, n);

    /* after_id is a cursor: only newer events. */
    assert_int_equal(asr_store_event_list(st, NULL, third, 100, &ev, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ev[0].kind, "k3");
    asr_events_free(ev, n);

    /* Service filter, with and without a cursor and a limit. */
    assert_int_equal(asr_store_event_list(st, "shop", 0, 100, &ev, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(ev[0].kind, "k0");
    assert_string_equal(ev[2].kind, "k4");
    asr_events_free(ev, n);
    assert_int_equal(asr_store_event_list(st, "shop", 0, 2, &ev, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ev[1].kind, "k3");
    asr_events_free(ev, n);
    assert_int_equal(asr_store_event_list(st, "api", third, 100, &ev, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(ev);

    assert_int_equal(asr_store_event_add(st, "shop", NULL, "k", NULL, &err), ASR_EINVAL);
    assert_int_equal(asr_store_event_add(st, "shop", "daemon", "", NULL, &err), ASR_EINVAL);
    assert_int_equal(asr_store_event_list(st, NULL, 0, 0, &ev, &n, &err), ASR_EINVAL);
    asr_store_close(st);
}

/* ---- concurrency --------------------------------------------------------------------------- */

static void test_two_connections_alternate(void **state)
{
    struct fx *f = *state;
    struct asr_store *one = open_ok(f);
    struct asr_store *two = open_ok(f);
    struct asr_err err = {0};

    for (int i = 0; i < 50; i++) {
        int rc = asr_store_event_add(i % 2 ? two : one, "shop", i % 2 ? "cli" : "daemon", "tick",
                                     NULL, &err);
        if (rc != 0)
            fail_msg("write %d: %s", i, asr_err_msg(&err, rc));
    }
    /* A release created by one connection is found, not duplicated, by the other. */
    int64_t id = release_of(one, "shop", 40);
    assert_int_equal(release_of(two, "shop", 40), id);
    assert_int_equal(asr_store_release_set_state(two, id, ASR_RELEASE_GOOD, NULL, &err), 0);
    struct asr_release r;
    assert_int_equal(asr_store_release_last_good(one, "shop", 0, &r, &err), 0);
    assert_int_equal(r.id, id);
    asr_release_free(&r);

    struct asr_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(asr_store_event_list(two, "shop", 0, 100, &ev, &n, &err), 0);
    assert_int_equal(n, 50);
    assert_string_equal(ev[0].actor, "daemon");
    assert_string_equal(ev[1].actor, "cli");
    asr_events_free(ev, n);
    asr_store_close(one);
    asr_store_close(two);
}

struct holder {
    sqlite3 *db;
    unsigned hold_ms;
};

static void *release_lock_later(void *arg)
{
    struct holder *h = arg;
    usleep(h->hold_ms * 1000);
    sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
    return NULL;
}

static void test_busy_timeout_waits_for_writer(void **state)
{
    struct fx *f = *state;
    struct asr_store *st = open_ok(f);
    struct asr_err err = {0};

    /* Another connection holds the write lock for 300 ms; our write waits instead of failing. */
    struct holder h = {raw_open(f->db), 300};
    assert_int_equal(sqlite3_exec(h.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    pthread_t t;
    uint64_t t0 = asr_time_mono_ms();
    assert_int_equal(pthread_create(&t, NULL, release_lock_later, &h), 0);
    int rc = asr_store_event_add(st, NULL, "daemon", "waited", NULL, &err);
    uint64_t waited = asr_time_mono_ms() - t0;
    pthread_join(t, NULL);
    sqlite3_close(h.db);
    if (rc != 0)
        fail_msg("write under a held lock: %s", asr_err_msg(&err, rc));
    assert_true(waited >= 250);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM events WHERE kind = 'waited'"), 1);

    /*
     * A write that reads first (deployment_begin checks its releases) while the other writer
     * commits a change: with a deferred BEGIN its read snapshot would be stale by the time it
     * could write (SQLITE_BUSY_SNAPSHOT, no retry). BEGIN IMMEDIATE takes the lock first.
     */
    int64_t rel = release_of(st, "shop", 50);
    h.db = raw_open(f->db);
    assert_int_equal(sqlite3_exec(h.db,
                                  "BEGIN IMMEDIATE; INSERT INTO events (at, actor, kind) "
                                  "VALUES (1, 'other', 'meanwhile')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(pthread_create(&t, NULL, release_lock_later, &h), 0);
    int64_t dep = 0;
    rc = asr_store_deployment_begin(st, "shop", "deploy", 0, rel, &dep, &err);
    pthread_join(t, NULL);
    sqlite3_close(h.db);
    if (rc != 0)
        fail_msg("read-then-write under a held lock: %s", asr_err_msg(&err, rc));
    assert_true(dep > 0);
    asr_store_close(st);
}

struct opener {
    const char *state;
    int rc;
    struct asr_err err;
};

static void *open_in_thread(void *arg)
{
    struct opener *o = arg;
    struct asr_store *st = NULL;
    o->rc = asr_store_open(o->state, &st, &o->err);
    asr_store_close(st);
    return NULL;
}

static void test_concurrent_open_migrates_once(void **state)
{
    struct fx *f = *state;
    assert_int_equal(mkdir(f->state, 0700), 0);
    /*
     * Another process is migrating the fresh file: it holds the write lock. Our open reads
     * version 0, queues on the lock, and must then see that migration 1 is already applied
     * instead of running it a second time ("table services already exists").
     */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "PRAGMA journal_mode = WAL; BEGIN IMMEDIATE", NULL, NULL, NULL),
        SQLITE_OK);
    struct opener o = {f->state, 1, {0}};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, open_in_thread, &o), 0);
    usleep(200 * 1000);
    size_t n;
    const struct asr_store_migration *m = asr_store_migrations(&n);
    char bump[64];
    snprintf(bump, sizeof(bump), "PRAGMA user_version = %zu", n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sqlite3_exec(db, m[i].sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, bump, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    pthread_join(t, NULL);
    sqlite3_close(db);
    if (o.rc != 0)
        fail_msg("open during another migration: %s", asr_err_msg(&o.err, o.rc));
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), (long long)n);
}

/* ---- NULL and zeroed arguments ------------------------------------------------------------- */

static void test_null_and_zeroed_arguments(void **state)
{
    (void)state;
    struct asr_err err = {0};
    asr_store_close(NULL);
    asr_release_free(NULL);
    asr_deployment_free(NULL);
    asr_deployments_free(NULL, 0);
    asr_deployments_free(NULL, 5);
    asr_events_free(NULL, 5);
    struct asr_release r = {0};
    asr_release_free(&r);
    asr_release_free(&r);
    struct asr_deployment d = {0};
    asr_deployment_free(&d);

    assert_int_equal(asr_store_schema_version(NULL), ASR_EINVAL);
    assert_int_equal(asr_store_service_upsert(NULL, "shop", &err), ASR_EINVAL);
    assert_int_equal(asr_store_release_get(NULL, 1, &r, &err), ASR_EINVAL);
    assert_int_equal(asr_store_release_set_state(NULL, 1, "good", NULL, &err), ASR_EINVAL);
    assert_int_equal(asr_store_event_add(NULL, NULL, "a", "b", NULL, NULL), ASR_EINVAL);
    int64_t id = 7;
    assert_int_equal(asr_store_deployment_begin(NULL, "s", "deploy", 0, 1, &id, &err), ASR_EINVAL);
    assert_int_equal(id, 0);
    assert_int_equal(asr_store_deployment_abandon_running(NULL, NULL, NULL), ASR_EINVAL);
}

int main(int argc, char **argv)
{
    /* ctest runs each case in its own process: argv[1] names it. */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_wal_db, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data_and_does_not_rerun, setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_version_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration_rolls_back_version_bump, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_migration_refuses_transaction_control, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_errors_and_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_get_or_create_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_results_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_constraints_reject_bad_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_good_ordering_and_exclusion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deployment_begin_end_last_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deployment_abandon_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_add_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_connections_alternate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_timeout_waits_for_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_open_migrates_once, setup, teardown),
        cmocka_unit_test(test_null_and_zeroed_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
