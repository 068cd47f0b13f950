/*
 * test_incidents.c - unit tests of the incident store (src/store/incidents.c).
 *
 * Each test gets a fresh temporary directory holding a real SQLite file opened with
 * asr_store_open_file(); nothing is mocked. The store's clock is replaced through the
 * asr_store_set_clock() hook of store_int.h, so every timestamp the store writes is known.
 * Where the question is "what is really on disk", a second plain sqlite3 connection counts rows.
 */
#include "asr/incident.h"
#include "asr/store.h"
#include "store/store_int.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
    char dir[256]; /* the temporary directory of this test */
    char db[512];  /* dir/asr.db */
    int64_t now;   /* what the store's clock says */
    struct asr_store *st;
};

static int64_t clock_cb(void *arg)
{
    return ((struct fx *)arg)->now;
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
    snprintf(f->dir, sizeof(f->dir), "%s/asr-test-incidents-XXXXXX", tmp);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/asr.db", f->dir);
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

/* ---- helpers ------------------------------------------------------------------------------- */

/* A minimal valid incident to open; the strings are literals (the store copies them). */
static struct asr_incident mk(const char *fingerprint, const char *service)
{
    return (struct asr_incident){.fingerprint = (char *)fingerprint,
                                 .service = (char *)service,
                                 .kind = "signature",
                                 .signature = "SIG",
                                 .severity = "error",
                                 .source = "stderr",
                                 .line = "boom",
                                 .first_seen = 1000,
                                 .last_seen = 1000,
                                 .received_us = 1000123};
}

static int64_t open_one(struct fx *f, const char *fingerprint, const char *service)
{
    struct asr_incident inc = mk(fingerprint, service);
    struct asr_incident_batch b = {.opened = &inc, .nopened = 1};
    struct asr_err err = {0};
    int rc = asr_store_incident_write(f->st, &b, &err);
    if (rc != 0)
        fail_msg("write: %s", asr_err_msg(&err, rc));
    assert_true(inc.id > 0);
    return inc.id;
}

static void resolve_ok(struct fx *f, int64_t id, const char *reason)
{
    struct asr_err err = {0};
    int rc = asr_store_incident_resolve(f->st, id, reason, &err);
    if (rc != 0)
        fail_msg("resolve: %s", asr_err_msg(&err, rc));
}

static void get_ok(struct fx *f, int64_t id, struct asr_incident *out)
{
    struct asr_err err = {0};
    int rc = asr_store_incident_get(f->st, id, out, &err);
    if (rc != 0)
        fail_msg("get %lld: %s", (long long)id, asr_err_msg(&err, rc));
}

static long long raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    long long v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void notes_ok(struct fx *f, int64_t id, struct asr_incident_note **v, size_t *n)
{
    struct asr_err err = {0};
    int rc = asr_store_incident_notes(f->st, id, v, n, &err);
    if (rc != 0)
        fail_msg("notes: %s", asr_err_msg(&err, rc));
}

/* ---- writing ------------------------------------------------------------------------------- */

/* Opened incidents get ids, their fields as given, the store's time and an "opened" note. */
static void test_write_open(void **state)
{
    struct fx *f = *state;
    struct asr_incident v[2] = {mk("shop:SIG:route=/a", "shop"), mk("shop:SIG:route=/b", "shop")};
    v[0].slot = "blue";
    v[0].release = "0123456789abcdef0123456789abcdef01234567";
    v[0].template_id = 7;
    v[0].template = "boom <*>";
    v[0].fields = "{\"route\":\"/a\"}";
    v[0].context_before = "[\"l1\",\"l2\"]";
    v[0].count = 3;
    v[0].verifications = 2;
    v[0].context_done = true;
    v[1].line = "second line";
    v[1].kind = "generic";
    v[1].severity = "critical";
    struct asr_incident_batch b = {.opened = v, .nopened = 2};
    struct asr_err err = {0};
    f->now = 5000;
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);
    assert_true(v[0].id > 0);
    assert_true(v[1].id > v[0].id);
    assert_int_equal(v[0].opened_at, 5000);

    struct asr_incident g;
    get_ok(f, v[0].id, &g);
    assert_int_equal(g.id, v[0].id);
    assert_int_equal(g.parent_id, 0);
    assert_string_equal(g.fingerprint, "shop:SIG:route=/a");
    assert_string_equal(g.service, "shop");
    assert_string_equal(g.kind, "signature");
    assert_string_equal(g.signature, "SIG");
    assert_string_equal(g.severity, "error");
    assert_string_equal(g.source, "stderr");
    assert_string_equal(g.slot, "blue");
    assert_string_equal(g.release, "0123456789abcdef0123456789abcdef01234567");
    assert_int_equal(g.template_id, 7);
    assert_string_equal(g.template, "boom <*>");
    assert_string_equal(g.line, "boom");
    assert_string_equal(g.fields, "{\"route\":\"/a\"}");
    assert_string_equal(g.context_before, "[\"l1\",\"l2\"]");
    assert_string_equal(g.context_after, "[]");
    assert_true(g.context_done);
    assert_string_equal(g.status, ASR_INCIDENT_OPEN);
    assert_int_equal(g.count, 3);
    assert_int_equal(g.verifications, 2);
    assert_int_equal(g.first_seen, 1000);
    assert_int_equal(g.last_seen, 1000);
    assert_int_equal(g.received_us, 1000123);
    assert_int_equal(g.opened_at, 5000);
    assert_int_equal(g.resolved_at, 0);
    assert_null(g.resolution);
    asr_incident_free(&g);

    /* Defaults: no slot, release or template; "{}" and "[]"; count at least 1. */
    get_ok(f, v[1].id, &g);
    assert_null(g.slot);
    assert_null(g.release);
    assert_null(g.template);
    assert_string_equal(g.fields, "{}");
    assert_string_equal(g.context_before, "[]");
    assert_string_equal(g.kind, "generic");
    assert_string_equal(g.severity, "critical");
    assert_int_equal(g.count, 1);
    assert_false(g.context_done);
    asr_incident_free(&g);

    for (int i = 0; i < 2; i++) {
        struct asr_incident_note *nv = NULL;
        size_t n = 0;
        notes_ok(f, v[i].id, &nv, &n);
        assert_int_equal(n, 1);
        assert_int_equal(nv[0].incident_id, v[i].id);
        assert_string_equal(nv[0].kind, "opened");
        /* The note says where the line came from; the line itself is in the row. */
        assert_string_equal(nv[0].detail,
                            i == 0 ? "signature stderr, slot blue" : "generic stderr");
        assert_int_equal(nv[0].at, 5000);
        asr_incident_notes_free(nv, n);
    }
}

/* A missing required string is refused before anything is written. */
static void test_write_open_missing_field(void **state)
{
    struct fx *f = *state;
    struct asr_incident inc = mk("shop:SIG", "shop");
    inc.line = NULL;
    struct asr_incident_batch b = {.opened = &inc, .nopened = 1};
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), ASR_EINVAL);
    assert_int_equal(inc.id, 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM incidents"), 0);
    assert_int_equal(asr_store_incident_write(f->st, NULL, &err), ASR_EINVAL);
}

/* Updates set counters; last_seen never goes back; context_after NULL keeps the old one;
 * context_done never goes back to false. */
static void test_write_update(void **state)
{
    struct fx *f = *state;
    int64_t id = open_one(f, "shop:SIG", "shop");
    struct asr_incident_update u = {
        .id = id, .count = 5, .verifications = 2, .last_seen = 9000, .context_after = "[\"a1\"]"};
    struct asr_incident_batch b = {.updates = &u, .nupdates = 1};
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);
    struct asr_incident g;
    get_ok(f, id, &g);
    assert_int_equal(g.count, 5);
    assert_int_equal(g.verifications, 2);
    assert_int_equal(g.last_seen, 9000);
    assert_string_equal(g.context_after, "[\"a1\"]");
    assert_false(g.context_done);
    asr_incident_free(&g);

    u = (struct asr_incident_update){.id = id,
                                     .count = 6,
                                     .verifications = 3,
                                     .last_seen = 8000,
                                     .context_after = "[\"a1\",\"a2\"]",
                                     .context_done = true};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);
    u = (struct asr_incident_update){.id = id, .count = 7, .verifications = 3, .last_seen = 8500};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);
    get_ok(f, id, &g);
    assert_int_equal(g.count, 7);
    assert_int_equal(g.verifications, 3);
    assert_int_equal(g.last_seen, 9000); /* max() of what it has seen */
    assert_string_equal(g.context_after, "[\"a1\",\"a2\"]");
    assert_true(g.context_done);
    asr_incident_free(&g);
}

/* Notes, templates and positions in a batch; notes given at 0 get the store's time. */
static void test_write_notes_templates_positions(void **state)
{
    struct fx *f = *state;
    int64_t id = open_one(f, "shop:SIG", "shop");
    f->now = 42000;
    struct asr_incident_note notes[] = {{.incident_id = id, .at = 100, .kind = "context"},
                                        {.incident_id = id, .kind = "grouped", .detail = "x"}};
    struct asr_template_row tmpls[] = {{"shop", 2, "b <*>", 5, 1}, {"shop", 1, "a <*>", 3, 0}};
    struct asr_log_position pos[] = {{"/var/log/a.log", 2049, 77, 1234}};
    struct asr_incident_batch b = {.notes = notes,
                                   .nnotes = 2,
                                   .templates = tmpls,
                                   .ntemplates = 2,
                                   .positions = pos,
                                   .npositions = 1};
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);

    struct asr_incident_note *nv = NULL;
    size_t n = 0;
    notes_ok(f, id, &nv, &n);
    assert_int_equal(n, 3);
    assert_string_equal(nv[0].kind, "opened");
    assert_string_equal(nv[1].kind, "context");
    assert_int_equal(nv[1].at, 100);
    assert_null(nv[1].detail);
    assert_string_equal(nv[2].kind, "grouped");
    assert_int_equal(nv[2].at, 42000);
    assert_string_equal(nv[2].detail, "x");
    assert_true(nv[0].id < nv[1].id && nv[1].id < nv[2].id);
    asr_incident_notes_free(nv, n);

    struct asr_log_position p;
    assert_int_equal(asr_store_log_position(f->st, "/var/log/a.log", &p, &err), 0);
    assert_string_equal(p.path, "/var/log/a.log");
    assert_int_equal(p.dev, 2049);
    assert_int_equal(p.ino, 77);
    assert_int_equal(p.offset, 1234);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM templates"), 2);
    assert_int_equal(raw_int(f->db, "SELECT updated_at FROM templates WHERE cluster_id = 1"),
                     42000);
}

/* Templates and positions are upserts: the second write replaces the first. dev and ino keep
 * all 64 bits. */
static void test_write_upserts(void **state)
{
    struct fx *f = *state;
    struct asr_template_row t = {"shop", 1, "a <*>", 3, 0};
    struct asr_log_position p = {"/l", 1, 2, 3};
    struct asr_incident_batch b = {
        .templates = &t, .ntemplates = 1, .positions = &p, .npositions = 1};
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);
    t = (struct asr_template_row){"shop", 1, "a <*> <*>", 9, 4};
    p = (struct asr_log_position){"/l", UINT64_MAX, (uint64_t)1 << 63, 99};
    f->now += 10;
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM templates"), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM log_positions"), 1);
    assert_int_equal(raw_int(f->db, "SELECT count FROM templates"), 9);
    assert_int_equal(raw_int(f->db, "SELECT error_hits FROM templates"), 4);
    assert_int_equal(raw_int(f->db, "SELECT updated_at FROM log_positions"), f->now);
    struct asr_log_position q;
    assert_int_equal(asr_store_log_position(f->st, "/l", &q, &err), 0);
    assert_true(q.dev == UINT64_MAX);
    assert_true(q.ino == (uint64_t)1 << 63);
    assert_int_equal(q.offset, 99);
}

/* One failing element rolls the whole batch back: no incident, note, template or position is
 * left, and the opened ids are 0 again. */
static void test_write_rollback(void **state)
{
    struct fx *f = *state;
    int64_t id = open_one(f, "shop:OLD", "shop");
    struct asr_incident v[2] = {mk("shop:A", "shop"), mk("shop:B", "shop")};
    struct asr_incident_update u = {.id = id, .count = 0, .last_seen = 1}; /* count >= 1 */
    struct asr_incident_note nt = {.incident_id = id, .kind = "context"};
    struct asr_template_row t = {"shop", 1, "a", 1, 0};
    struct asr_log_position p = {"/l", 1, 2, 3};
    struct asr_incident_batch b = {v, 2, &u, 1, &nt, 1, &t, 1, &p, 1};
    struct asr_err err = {0};
    int rc = asr_store_incident_write(f->st, &b, &err);
    assert_int_equal(rc, ASR_EDB);
    assert_non_null(strstr(err.msg, "incidents_count_positive"));
    assert_int_equal(v[0].id, 0);
    assert_int_equal(v[1].id, 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM incidents"), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM incident_notes"), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM templates"), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM log_positions"), 0);
    struct asr_incident g;
    get_ok(f, id, &g);
    assert_int_equal(g.count, 1);
    asr_incident_free(&g);

    /* A note naming no incident (foreign key) fails the same way, as does a bad JSON column. */
    struct asr_incident_note bad = {.incident_id = 999, .kind = "x"};
    b = (struct asr_incident_batch){.opened = v, .nopened = 1, .notes = &bad, .nnotes = 1};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), ASR_EDB);
    assert_int_equal(v[0].id, 0);
    v[0].fields = "{not json";
    b = (struct asr_incident_batch){.opened = v, .nopened = 2};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), ASR_EDB);
    assert_int_equal(v[0].id, 0);
    assert_int_equal(v[1].id, 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM incidents"), 1);

    /* The store is usable afterwards, and the batch succeeds once fixed. */
    v[0].fields = NULL;
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);
    assert_true(v[0].id > id && v[1].id > v[0].id);
}

/* One open incident per fingerprint; once it is resolved, the fingerprint may open again. */
static void test_one_open_per_fingerprint(void **state)
{
    struct fx *f = *state;
    int64_t id = open_one(f, "shop:SIG", "shop");
    struct asr_incident inc = mk("shop:SIG", "shop");
    struct asr_incident_batch b = {.opened = &inc, .nopened = 1};
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), ASR_EDB);
    assert_non_null(strstr(err.msg, "UNIQUE"));
    assert_int_equal(inc.id, 0);
    resolve_ok(f, id, "fixed");
    int64_t id2 = open_one(f, "shop:SIG", "shop");
    assert_true(id2 > id);
}

/* Parent ids are stored and read back. */
static void test_write_parent(void **state)
{
    struct fx *f = *state;
    int64_t root = open_one(f, "shop:A", "shop");
    struct asr_incident inc = mk("shop:B", "shop");
    inc.parent_id = root;
    struct asr_incident_batch b = {.opened = &inc, .nopened = 1};
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);
    struct asr_incident g;
    get_ok(f, inc.id, &g);
    assert_int_equal(g.parent_id, root);
    asr_incident_free(&g);
}

/* ---- resolving ----------------------------------------------------------------------------- */

static void test_resolve(void **state)
{
    struct fx *f = *state;
    int64_t id = open_one(f, "shop:SIG", "shop");
    f->now = 777000;
    resolve_ok(f, id, "restarted the service");
    struct asr_incident g;
    get_ok(f, id, &g);
    assert_string_equal(g.status, ASR_INCIDENT_RESOLVED);
    assert_int_equal(g.resolved_at, 777000);
    assert_string_equal(g.resolution, "restarted the service");
    asr_incident_free(&g);
    struct asr_incident_note *nv = NULL;
    size_t n = 0;
    notes_ok(f, id, &nv, &n);
    assert_int_equal(n, 2);
    assert_string_equal(nv[1].kind, "resolved");
    assert_string_equal(nv[1].detail, "restarted the service");
    assert_int_equal(nv[1].at, 777000);
    asr_incident_notes_free(nv, n);

    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_resolve(f->st, id, "again", &err), ASR_EINVAL);
    assert_non_null(strstr(err.msg, "already resolved"));
    assert_int_equal(asr_store_incident_resolve(f->st, 12345, "x", &err), ASR_ENOENT);
    assert_non_null(strstr(err.msg, "12345"));
    assert_int_equal(asr_store_incident_resolve(f->st, 0, "x", &err), ASR_EINVAL);
    /* Neither failure added a note or changed the row. */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM incident_notes"), 2);
    get_ok(f, id, &g);
    assert_string_equal(g.resolution, "restarted the service");
    asr_incident_free(&g);
}

/* ---- reading ------------------------------------------------------------------------------- */

static void test_get_unknown(void **state)
{
    struct fx *f = *state;
    struct asr_incident g;
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_get(f->st, 99, &g, &err), ASR_ENOENT);
    assert_non_null(strstr(err.msg, "99"));
    assert_null(g.fingerprint);
}

static void test_list(void **state)
{
    struct fx *f = *state;
    int64_t a = open_one(f, "shop:A", "shop");
    int64_t b = open_one(f, "cart:B", "cart");
    int64_t c = open_one(f, "shop:C", "shop");
    int64_t d = open_one(f, "shop:D", "shop");
    resolve_ok(f, c, "ok");
    struct asr_incident *v = NULL;
    size_t n = 0;
    struct asr_err err = {0};

    assert_int_equal(asr_store_incident_list(f->st, NULL, NULL, 0, &v, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(v[0].id, d);
    assert_int_equal(v[1].id, c);
    assert_int_equal(v[2].id, b);
    assert_int_equal(v[3].id, a);
    asr_incident_list_free(v, n);

    assert_int_equal(asr_store_incident_list(f->st, "shop", NULL, 0, &v, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(v[0].id, d);
    assert_int_equal(v[2].id, a);
    asr_incident_list_free(v, n);

    assert_int_equal(asr_store_incident_list(f->st, "shop", ASR_INCIDENT_OPEN, 0, &v, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, d);
    assert_int_equal(v[1].id, a);
    asr_incident_list_free(v, n);

    assert_int_equal(asr_store_incident_list(f->st, NULL, ASR_INCIDENT_RESOLVED, 0, &v, &n, &err),
                     0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, c);
    assert_string_equal(v[0].resolution, "ok");
    asr_incident_list_free(v, n);

    assert_int_equal(asr_store_incident_list(f->st, NULL, NULL, 2, &v, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, d);
    assert_int_equal(v[1].id, c);
    asr_incident_list_free(v, n);

    assert_int_equal(asr_store_incident_list(f->st, "nobody", NULL, 0, &v, &n, &err), 0);
    assert_int_equal(n, 0);
    asr_incident_list_free(v, n);
}

/* recent: the newest incident of each fingerprint, when open or resolved at or after since. */
static void test_recent(void **state)
{
    struct fx *f = *state;
    f->now = 1000;
    int64_t a1 = open_one(f, "shop:A", "shop");
    resolve_ok(f, a1, "r"); /* resolved at 1000 */
    f->now = 2000;
    int64_t a2 = open_one(f, "shop:A", "shop"); /* newest of A, open */
    int64_t b = open_one(f, "shop:B", "shop");
    f->now = 3000;
    resolve_ok(f, b, "r"); /* resolved at 3000 */
    int64_t c = open_one(f, "shop:C", "shop");
    f->now = 5000;
    resolve_ok(f, c, "r"); /* resolved at 5000 */
    int64_t d = open_one(f, "cart:D", "cart");

    struct asr_incident *v = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_recent(f->st, 4000, &v, &n, &err), 0);
    assert_int_equal(n, 3); /* A's newest (open), C (resolved at 5000), D (open) */
    int64_t want[] = {a2, c, d};
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t k = 0; k < 3; k++)
            found |= v[i].id == want[k];
        assert_true(found);
        assert_true(v[i].id != a1);
    }
    asr_incident_list_free(v, n);

    assert_int_equal(asr_store_incident_recent(f->st, 3000, &v, &n, &err), 0);
    assert_int_equal(n, 4); /* B's resolution at 3000 counts ("at or after") */
    asr_incident_list_free(v, n);

    /* A resolved again: the older resolution of A must not show up in its place. */
    resolve_ok(f, a2, "r"); /* at 5000 */
    assert_int_equal(asr_store_incident_recent(f->st, 900, &v, &n, &err), 0);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++)
        assert_true(v[i].id != a1);
    asr_incident_list_free(v, n);
    assert_int_equal(asr_store_incident_recent(f->st, 6000, &v, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, d);
    asr_incident_list_free(v, n);
}

/* Notes come back oldest first (in insertion order, whatever their times), only the asked
 * incident's. */
static void test_notes_order(void **state)
{
    struct fx *f = *state;
    int64_t a = open_one(f, "shop:A", "shop");
    int64_t b = open_one(f, "shop:B", "shop");
    struct asr_incident_note nv_in[] = {{.incident_id = a, .at = 300, .kind = "k1"},
                                        {.incident_id = b, .at = 100, .kind = "other"},
                                        {.incident_id = a, .at = 200, .kind = "k2"},
                                        {.incident_id = a, .at = 400, .kind = "k3"}};
    struct asr_incident_batch bt = {.notes = nv_in, .nnotes = 4};
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_write(f->st, &bt, &err), 0);
    struct asr_incident_note *nv = NULL;
    size_t n = 0;
    notes_ok(f, a, &nv, &n);
    assert_int_equal(n, 4);
    assert_string_equal(nv[0].kind, "opened");
    assert_string_equal(nv[1].kind, "k1");
    assert_string_equal(nv[2].kind, "k2");
    assert_string_equal(nv[3].kind, "k3");
    for (size_t i = 0; i < n; i++)
        assert_int_equal(nv[i].incident_id, a);
    asr_incident_notes_free(nv, n);
    notes_ok(f, 999, &nv, &n);
    assert_int_equal(n, 0);
    asr_incident_notes_free(nv, n);
}

struct tcollect {
    int calls;
    int fail_at; /* return an error on this call (1-based), 0: never */
    int64_t ids[8];
    char tmpl[8][32];
    int64_t count[8], hits[8];
};

static int tcollect_cb(void *data, const struct asr_template_row *row)
{
    struct tcollect *c = data;
    c->calls++;
    if (c->fail_at != 0 && c->calls == c->fail_at)
        return ASR_ECONFIG;
    assert_true(c->calls <= 8);
    assert_string_equal(row->service, "shop");
    c->ids[c->calls - 1] = row->cluster_id;
    snprintf(c->tmpl[c->calls - 1], sizeof(c->tmpl[0]), "%s", row->tmpl);
    c->count[c->calls - 1] = row->count;
    c->hits[c->calls - 1] = row->error_hits;
    return 0;
}

static void test_templates_load(void **state)
{
    struct fx *f = *state;
    struct asr_template_row t[] = {{"shop", 30, "c <*>", 3, 1},
                                   {"shop", 2, "a <*>", 1, 0},
                                   {"cart", 1, "x", 9, 9},
                                   {"shop", 10, "b <*>", 2, 2}};
    struct asr_incident_batch b = {.templates = t, .ntemplates = 4};
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);
    struct tcollect c = {0};
    assert_int_equal(asr_store_templates_load(f->st, "shop", tcollect_cb, &c, &err), 0);
    assert_int_equal(c.calls, 3);
    assert_int_equal(c.ids[0], 2);
    assert_int_equal(c.ids[1], 10);
    assert_int_equal(c.ids[2], 30);
    assert_string_equal(c.tmpl[0], "a <*>");
    assert_string_equal(c.tmpl[2], "c <*>");
    assert_int_equal(c.count[1], 2);
    assert_int_equal(c.hits[1], 2);
    assert_int_equal(c.hits[2], 1);

    /* The callback's error stops the walk and comes back. */
    struct tcollect c2 = {.fail_at = 2};
    assert_int_equal(asr_store_templates_load(f->st, "shop", tcollect_cb, &c2, &err), ASR_ECONFIG);
    assert_int_equal(c2.calls, 2);
    /* The statement was reset: a later load works. */
    struct tcollect c3 = {0};
    assert_int_equal(asr_store_templates_load(f->st, "shop", tcollect_cb, &c3, &err), 0);
    assert_int_equal(c3.calls, 3);
    struct tcollect c4 = {0};
    assert_int_equal(asr_store_templates_load(f->st, "nobody", tcollect_cb, &c4, &err), 0);
    assert_int_equal(c4.calls, 0);
}

static void test_log_position_missing(void **state)
{
    struct fx *f = *state;
    struct asr_log_position p;
    struct asr_err err = {0};
    assert_int_equal(asr_store_log_position(f->st, "/no/such.log", &p, &err), ASR_ENOENT);
    assert_non_null(strstr(err.msg, "/no/such.log"));
    assert_int_equal(p.offset, 0);
}

/* ---- JSON ---------------------------------------------------------------------------------- */

static void test_json(void **state)
{
    struct fx *f = *state;
    struct asr_incident inc = mk("shop:SIG:route=/a", "shop");
    inc.fields = "{\"route\":\"/a\",\"n\":\"1\"}";
    inc.context_before = "[\"b1\",\"b2\"]";
    inc.context_after = "[\"a1\"]";
    inc.context_done = true;
    inc.slot = "green";
    inc.template_id = 4;
    inc.template = "boom";
    inc.count = 2;
    inc.verifications = 1;
    struct asr_incident_batch b = {.opened = &inc, .nopened = 1};
    struct asr_err err = {0};
    f->now = 50000;
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);
    struct asr_incident g;
    get_ok(f, inc.id, &g);

    json_t *o = asr_incident_json(&g, NULL, 0);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "id")), inc.id);
    assert_true(json_is_null(json_object_get(o, "parent_id")));
    assert_string_equal(json_string_value(json_object_get(o, "status")), "open");
    assert_string_equal(json_string_value(json_object_get(o, "service")), "shop");
    assert_string_equal(json_string_value(json_object_get(o, "kind")), "signature");
    assert_string_equal(json_string_value(json_object_get(o, "signature")), "SIG");
    assert_string_equal(json_string_value(json_object_get(o, "severity")), "error");
    assert_string_equal(json_string_value(json_object_get(o, "fingerprint")), "shop:SIG:route=/a");
    assert_string_equal(json_string_value(json_object_get(o, "source")), "stderr");
    assert_string_equal(json_string_value(json_object_get(o, "slot")), "green");
    assert_true(json_is_null(json_object_get(o, "release")));
    assert_int_equal(json_integer_value(json_object_get(o, "template_id")), 4);
    assert_string_equal(json_string_value(json_object_get(o, "template")), "boom");
    assert_int_equal(json_integer_value(json_object_get(o, "count")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "verifications")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "first_seen_ms")), 1000);
    assert_int_equal(json_integer_value(json_object_get(o, "last_seen_ms")), 1000);
    assert_int_equal(json_integer_value(json_object_get(o, "received_us")), 1000123);
    assert_int_equal(json_integer_value(json_object_get(o, "opened_at_ms")), 50000);
    assert_true(json_is_null(json_object_get(o, "resolved_at_ms")));
    assert_true(json_is_null(json_object_get(o, "resolution")));
    assert_string_equal(json_string_value(json_object_get(o, "line")), "boom");
    json_t *fields = json_object_get(o, "fields");
    assert_true(json_is_object(fields));
    assert_string_equal(json_string_value(json_object_get(fields, "route")), "/a");
    assert_string_equal(json_string_value(json_object_get(fields, "n")), "1");
    json_t *before = json_object_get(o, "context_before");
    assert_true(json_is_array(before));
    assert_int_equal(json_array_size(before), 2);
    assert_string_equal(json_string_value(json_array_get(before, 0)), "b1");
    assert_string_equal(json_string_value(json_array_get(before, 1)), "b2");
    json_t *after = json_object_get(o, "context_after");
    assert_true(json_is_array(after));
    assert_int_equal(json_array_size(after), 1);
    assert_true(json_is_true(json_object_get(o, "context_complete")));
    assert_null(json_object_get(o, "timeline"));
    assert_int_equal(json_object_size(o), 26);
    json_decref(o);

    /* Resolved, with a parent and a timeline. */
    struct asr_incident child = mk("shop:CHILD", "shop");
    child.parent_id = inc.id;
    b = (struct asr_incident_batch){.opened = &child, .nopened = 1};
    assert_int_equal(asr_store_incident_write(f->st, &b, &err), 0);
    f->now = 60000;
    resolve_ok(f, child.id, "rolled back");
    struct asr_incident gc;
    get_ok(f, child.id, &gc);
    struct asr_incident_note *nv = NULL;
    size_t n = 0;
    notes_ok(f, child.id, &nv, &n);
    assert_int_equal(n, 2);
    o = asr_incident_json(&gc, nv, n);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "parent_id")), inc.id);
    assert_string_equal(json_string_value(json_object_get(o, "status")), "resolved");
    assert_int_equal(json_integer_value(json_object_get(o, "resolved_at_ms")), 60000);
    assert_string_equal(json_string_value(json_object_get(o, "resolution")), "rolled back");
    assert_true(json_is_false(json_object_get(o, "context_complete")));
    assert_true(json_is_object(json_object_get(o, "fields")));
    assert_int_equal(json_object_size(json_object_get(o, "fields")), 0);
    json_t *tl = json_object_get(o, "timeline");
    assert_true(json_is_array(tl));
    assert_int_equal(json_array_size(tl), 2);
    json_t *e0 = json_array_get(tl, 0), *e1 = json_array_get(tl, 1);
    assert_int_equal(json_integer_value(json_object_get(e0, "at_ms")), 50000);
    assert_string_equal(json_string_value(json_object_get(e0, "kind")), "opened");
    assert_string_equal(json_string_value(json_object_get(e0, "detail")), "signature stderr");
    assert_int_equal(json_integer_value(json_object_get(e1, "at_ms")), 60000);
    assert_string_equal(json_string_value(json_object_get(e1, "kind")), "resolved");
    assert_string_equal(json_string_value(json_object_get(e1, "detail")), "rolled back");
    assert_int_equal(json_object_size(e0), 3);
    json_decref(o);

    /* An empty timeline is still present when notes is given; a NULL detail is null. */
    o = asr_incident_json(&gc, nv, 0);
    assert_non_null(o);
    assert_true(json_is_array(json_object_get(o, "timeline")));
    assert_int_equal(json_array_size(json_object_get(o, "timeline")), 0);
    json_decref(o);
    struct asr_incident_note nd = {.at = 1, .kind = "context"};
    o = asr_incident_json(&gc, &nd, 1);
    assert_non_null(o);
    assert_true(
        json_is_null(json_object_get(json_array_get(json_object_get(o, "timeline"), 0), "detail")));
    json_decref(o);

    asr_incident_notes_free(nv, n);
    asr_incident_free(&gc);
    asr_incident_free(&g);
}

/* ---- persistence --------------------------------------------------------------------------- */

static void test_persistence(void **state)
{
    struct fx *f = *state;
    int64_t a = open_one(f, "shop:A", "shop");
    int64_t b = open_one(f, "shop:B", "shop");
    resolve_ok(f, b, "done");
    struct asr_template_row t = {"shop", 3, "x <*>", 4, 2};
    struct asr_log_position p = {"/l", 5, 6, 7};
    struct asr_incident_update u = {.id = a, .count = 9, .last_seen = 5555};
    struct asr_incident_batch bt = {.updates = &u,
                                    .nupdates = 1,
                                    .templates = &t,
                                    .ntemplates = 1,
                                    .positions = &p,
                                    .npositions = 1};
    struct asr_err err = {0};
    assert_int_equal(asr_store_incident_write(f->st, &bt, &err), 0);
    asr_store_close(f->st);
    f->st = NULL;
    open_store(f);

    struct asr_incident g;
    get_ok(f, a, &g);
    assert_int_equal(g.count, 9);
    assert_int_equal(g.last_seen, 5555);
    assert_string_equal(g.status, "open");
    asr_incident_free(&g);
    get_ok(f, b, &g);
    assert_string_equal(g.status, "resolved");
    assert_string_equal(g.resolution, "done");
    asr_incident_free(&g);
    struct tcollect c = {0};
    assert_int_equal(asr_store_templates_load(f->st, "shop", tcollect_cb, &c, &err), 0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.ids[0], 3);
    assert_int_equal(c.hits[0], 2);
    struct asr_log_position q;
    assert_int_equal(asr_store_log_position(f->st, "/l", &q, &err), 0);
    assert_int_equal(q.offset, 7);
    struct asr_incident_note *nv = NULL;
    size_t n = 0;
    notes_ok(f, b, &nv, &n);
    assert_int_equal(n, 2);
    asr_incident_notes_free(nv, n);
    /* The unique index survived too; new ids continue after the old ones. */
    struct asr_incident dup = mk("shop:A", "shop");
    bt = (struct asr_incident_batch){.opened = &dup, .nopened = 1};
    assert_int_equal(asr_store_incident_write(f->st, &bt, &err), ASR_EDB);
    assert_true(open_one(f, "shop:C", "shop") > b);
}

/* Without the hook the store stamps rows with the wall clock; set_clock(NULL) restores it. */
static void test_clock_hook(void **state)
{
    struct fx *f = *state;
    f->now = 123;
    int64_t a = open_one(f, "shop:A", "shop");
    asr_store_set_clock(f->st, NULL, NULL);
    int64_t b = open_one(f, "shop:B", "shop");
    struct asr_incident g;
    get_ok(f, a, &g);
    assert_int_equal(g.opened_at, 123);
    asr_incident_free(&g);
    get_ok(f, b, &g);
    assert_true(g.opened_at > 1600000000000);
    asr_incident_free(&g);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_open_missing_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_notes_templates_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_upserts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_open_per_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_parent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notes_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_templates_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_position_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_hook, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
