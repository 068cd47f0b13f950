/*
 * audit.c - the audit chain in asr.db and its anchor, `<state_dir>/audit.head`.
 *
 * Part of the store (src/store/). Every stage appends what it decided or did here (plans made,
 * outcomes, resolutions, and the executor's intents and results); `asr audit verify` reads it
 * back. The schema is migration 5 in migrate.c; include/asr/audit.h gives the rules on
 * transactions, docs/audit.md the exact bytes that are hashed and what a check proves.
 *
 * A row's hash is SHA-256 over a domain tag, its prev and each other column, every one encoded
 * with its type and, for text, its length (see struct field below), so no two different rows
 * hash the same input: moving a byte from actor into kind, or turning NULL into 0, changes it.
 * verify hashes the columns as SQLite hands them back, type and all, never a parsed copy.
 */
#include "asr/audit.h"
#include "asr/fsutil.h"
#include "asr/log.h"
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What every row's hash input starts with: names the format, so a v2 can never collide. */
static const char HASH_TAG[] = "asr.audit.v1";
/* prev of row 1. */
static const char GENESIS[ASR_SHA256_HEX_LEN + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";
/* audit.head is one short line; anything longer is not ours. */
#define ANCHOR_MAX 128

#define AUDIT_COLS "seq, at, actor, kind, incident_id, plan_id, detail, prev, hash"

static const char sql_head[] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";
static const char sql_insert[] =
    "INSERT INTO audit (" AUDIT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
static const char sql_all[] = "SELECT " AUDIT_COLS " FROM audit ORDER BY seq";
static const char sql_list[] =
    "SELECT " AUDIT_COLS " FROM audit WHERE (?1 <= 0 OR seq < ?1) ORDER BY seq DESC LIMIT ?2";

/* ---- the hash -------------------------------------------------------------------------------- */

/*
 * One column as it goes into the hash: its SQLite storage class and value. Encoded as one type
 * byte, then for INTEGER 8 bytes big-endian (two's complement), for REAL the 8 bytes of the
 * IEEE double big-endian, for TEXT and BLOB an 8-byte big-endian length and the bytes, for NULL
 * nothing. A prefix code: the encoding of a row can be split back into its columns one way only.
 */
struct field {
    int type; /* SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB or SQLITE_NULL */
    int64_t i;
    double r;
    const void *p;
    size_t n;
};

/* The columns of a row in hash order: prev first, then seq .. detail. hash is not in it. */
enum { F_PREV, F_SEQ, F_AT, F_ACTOR, F_KIND, F_INCIDENT, F_PLAN, F_DETAIL, F_COUNT };

static void put_u64(struct asr_sha256 *c, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    asr_sha256_update(c, b, sizeof(b));
}

static void put_field(struct asr_sha256 *c, const struct field *f)
{
    uint8_t t;
    switch (f->type) {
    case SQLITE_INTEGER:
        t = 'I';
        asr_sha256_update(c, &t, 1);
        put_u64(c, (uint64_t)f->i);
        break;
    case SQLITE_FLOAT: {
        uint64_t bits;
        memcpy(&bits, &f->r, sizeof(bits));
        t = 'R';
        asr_sha256_update(c, &t, 1);
        put_u64(c, bits);
        break;
    }
    case SQLITE_TEXT:
    case SQLITE_BLOB:
        t = f->type == SQLITE_TEXT ? 'T' : 'B';
        asr_sha256_update(c, &t, 1);
        put_u64(c, (uint64_t)f->n);
        asr_sha256_update(c, f->p, f->n);
        break;
    default:
        t = 'N';
        asr_sha256_update(c, &t, 1);
        break;
    }
}

static void row_hash(const struct field f[F_COUNT], char hex[ASR_SHA256_HEX_LEN + 1])
{
    struct asr_sha256 c;
    uint8_t d[ASR_SHA256_LEN];
    asr_sha256_init(&c);
    asr_sha256_update(&c, HASH_TAG, sizeof(HASH_TAG)); /* with its NUL */
    for (int i = 0; i < F_COUNT; i++)
        put_field(&c, &f[i]);
    asr_sha256_final(&c, d);
    asr_sha256_hex(d, hex);
}

static struct field int_field(int64_t v)
{
    return (struct field){.type = SQLITE_INTEGER, .i = v};
}

static struct field text_field(const char *s)
{
    return (struct field){.type = SQLITE_TEXT, .p = s, .n = strlen(s)};
}

/* An id: 0 means none, stored and hashed as NULL. */
static struct field id_field(int64_t v)
{
    return v != 0 ? int_field(v) : (struct field){.type = SQLITE_NULL};
}

/* Column i of the current row exactly as stored (no type conversion). */
static struct field column_field(sqlite3_stmt *s, int i)
{
    struct field f = {.type = sqlite3_column_type(s, i)};
    switch (f.type) {
    case SQLITE_INTEGER:
        f.i = sqlite3_column_int64(s, i);
        break;
    case SQLITE_FLOAT:
        f.r = sqlite3_column_double(s, i);
        break;
    case SQLITE_TEXT:
        f.p = sqlite3_column_text(s, i);
        f.n = (size_t)sqlite3_column_bytes(s, i);
        break;
    case SQLITE_BLOB:
        f.p = sqlite3_column_blob(s, i);
        f.n = (size_t)sqlite3_column_bytes(s, i);
        break;
    default:
        break;
    }
    if (f.p == NULL && f.n > 0)
        f.type = -1; /* out of memory reading it: never matches */
    return f;
}

/* ---- the anchor ------------------------------------------------------------------------------ */

int asr_audit_anchor_path(struct asr_store *st, char **out, struct asr_err *err)
{
    *out = NULL;
    const char *db = sqlite3_db_filename(asr_store_db(st), "main");
    if (db == NULL || db[0] == '\0')
        return asr_err_set(err, ASR_ENOENT, "audit: an in-memory database has no audit.head");
    const char *slash = strrchr(db, '/');
    size_t dir = slash != NULL ? (size_t)(slash - db) : 0;
    size_t cap = dir + sizeof("/" ASR_AUDIT_HEAD_FILE) + 2;
    char *p = malloc(cap);
    if (p == NULL)
        return asr_err_set(err, ASR_ENOMEM, "audit: out of memory");
    if (slash == NULL)
        snprintf(p, cap, "%s", ASR_AUDIT_HEAD_FILE);
    else
        snprintf(p, cap, "%.*s/%s", (int)dir, db, ASR_AUDIT_HEAD_FILE);
    *out = p;
    return 0;
}

/* The anchor's contents. */
struct anchor {
    int64_t seq;
    char hash[ASR_SHA256_HEX_LEN + 1];
};

static bool is_hex64(const char *s, size_t n)
{
    if (n != ASR_SHA256_HEX_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/*
 * Reads "<seq> <64 hex>\n". Returns 0, ASR_ENOENT (no file), ASR_EIO (unreadable) or ASR_EPARSE
 * (anything else), with why set for the last two.
 */
static int anchor_read(const char *path, struct anchor *a, char *why, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return ASR_ENOENT;
        snprintf(why, cap, "%s: %s", path, strerror(errno));
        return ASR_EIO;
    }
    char buf[ANCHOR_MAX + 1];
    size_t n = 0;
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, cap, "%s: %s", path, strerror(errno));
            close(fd);
            return ASR_EIO;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    const char *sp = n <= ANCHOR_MAX ? memchr(buf, ' ', n) : NULL;
    char *end = NULL;
    if (sp != NULL && sp > buf && buf[0] >= '0' && buf[0] <= '9') {
        buf[sp - buf] = '\0';
        errno = 0;
        long long seq = strtoll(buf, &end, 10);
        size_t hlen = n - (size_t)(sp + 1 - buf);
        if (errno == 0 && *end == '\0' && hlen == ASR_SHA256_HEX_LEN + 1 && buf[n - 1] == '\n' &&
            is_hex64(sp + 1, ASR_SHA256_HEX_LEN) &&
            (seq > 0 || memcmp(sp + 1, GENESIS, ASR_SHA256_HEX_LEN) == 0)) {
            a->seq = seq;
            memcpy(a->hash, sp + 1, ASR_SHA256_HEX_LEN);
            a->hash[ASR_SHA256_HEX_LEN] = '\0';
            return 0;
        }
    }
    snprintf(why, cap, "%s is not \"<seq> <64 hex digits>\"", path);
    return ASR_EPARSE;
}

/* Writes the anchor: temp file, fsync, rename (asr_write_file_atomic). The directory is not
 * synced: after a power cut the rename may be lost and the previous anchor come back, which only
 * makes the anchor lag behind the chain, and verify tolerates a lagging anchor (never a leading
 * one). The fsync it saved was one of every audited commit's two, 2-7 ms each on the demo's
 * machine, on the path of every remediation. */
static int anchor_write(const char *path, int64_t seq, const char *hash)
{
    char line[ANCHOR_MAX];
    int len = snprintf(line, sizeof(line), "%" PRId64 " %s\n", seq, hash);
    return asr_write_file_atomic(path, line, (size_t)len, 0600);
}

/*
 * Called by asr_store_commit() after a commit that appended audit rows. Another process (the
 * daemon and a CLI command share the state dir) may have committed later rows and anchored them
 * already; an anchor is never moved backwards. Two writers can still race between the read and
 * the rename, leaving the anchor one commit behind until the next append: verify tolerates a
 * lagging anchor, never a leading one, and a lag is all a race can cause.
 */
void asr_audit_anchor(struct asr_store *st, int64_t seq, const char *hash)
{
    char *path = NULL;
    if (asr_audit_anchor_path(st, &path, NULL) != 0)
        return; /* in memory: nothing to anchor to */
    struct anchor cur;
    char why[256];
    if (anchor_read(path, &cur, why, sizeof(why)) == 0 && cur.seq >= seq) {
        free(path);
        return;
    }
    if (anchor_write(path, seq, hash) != 0)
        asr_warn("audit: could not write %s (seq %" PRId64 "): %s; verify will report the rows "
                 "after the old anchor as unanchored until the next append",
                 path, seq, strerror(errno));
    free(path);
}

/* ---- appending ------------------------------------------------------------------------------- */

static int append_in_tx(struct asr_store *st, const struct asr_audit_row *row, int64_t *seq_out,
                        const char *op, struct asr_err *err)
{
    sqlite3_stmt *h = asr_store_prepare(st, sql_head, op, err);
    if (h == NULL)
        return ASR_EDB;
    int64_t last = 0;
    char prev[ASR_SHA256_HEX_LEN + 1];
    memcpy(prev, GENESIS, sizeof(prev));
    int step = sqlite3_step(h);
    if (step == SQLITE_ROW) {
        last = sqlite3_column_int64(h, 0);
        const unsigned char *t = sqlite3_column_text(h, 1);
        snprintf(prev, sizeof(prev), "%s", t != NULL ? (const char *)t : "");
    }
    asr_store_reset(h);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return asr_store_fail(st, op, err);

    int64_t seq = last + 1;
    const char *detail = row->detail != NULL ? row->detail : "{}";
    struct field f[F_COUNT] = {
        [F_PREV] = text_field(prev),
        [F_SEQ] = int_field(seq),
        [F_AT] = int_field(row->at != 0 ? row->at : asr_store_now(st)),
        [F_ACTOR] = text_field(row->actor),
        [F_KIND] = text_field(row->kind),
        [F_INCIDENT] = id_field(row->incident_id),
        [F_PLAN] = id_field(row->plan_id),
        [F_DETAIL] = text_field(detail),
    };
    char hash[ASR_SHA256_HEX_LEN + 1];
    row_hash(f, hash);

    sqlite3_stmt *s = asr_store_prepare(st, sql_insert, op, err);
    if (s == NULL)
        return ASR_EDB;
    int b =
        sqlite3_bind_int64(s, 1, seq) || sqlite3_bind_int64(s, 2, f[F_AT].i) ||
        asr_store_bind_str(s, 3, row->actor) || asr_store_bind_str(s, 4, row->kind) ||
        (row->incident_id != 0 ? sqlite3_bind_int64(s, 5, row->incident_id)
                               : sqlite3_bind_null(s, 5)) ||
        (row->plan_id != 0 ? sqlite3_bind_int64(s, 6, row->plan_id) : sqlite3_bind_null(s, 6)) ||
        asr_store_bind_str(s, 7, detail) || asr_store_bind_str(s, 8, prev) ||
        asr_store_bind_str(s, 9, hash);
    if (b != SQLITE_OK) {
        asr_store_reset(s);
        return asr_store_fail(st, op, err);
    }
    int rc = asr_store_run(st, s, op, err);
    if (rc != 0)
        return rc;
    /* Mirrored into the event stream (asr/store.h), with its plan in the detail. */
    char *mirror = NULL;
    json_t *d = json_loads(detail, 0, NULL);
    if (json_is_object(d) && row->plan_id != 0)
        json_object_set_new(d, "plan", json_integer(row->plan_id));
    if (d != NULL)
        mirror = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    rc = asr_store_event_in_tx(st, f[F_AT].i, NULL, row->incident_id, row->actor, row->kind,
                               mirror != NULL ? mirror : detail, op, err);
    free(mirror);
    if (rc != 0)
        return rc;

    /*
     * The first row ever: anchor the empty chain now, before the commit. A crash between this
     * commit and its anchor then leaves "0 <genesis>", a lagging anchor, rather than no anchor
     * at all, which verify must treat as someone having deleted it.
     */
    if (seq == 1) {
        char *path = NULL;
        struct anchor cur;
        char why[256];
        if (asr_audit_anchor_path(st, &path, NULL) == 0 &&
            anchor_read(path, &cur, why, sizeof(why)) == ASR_ENOENT &&
            anchor_write(path, 0, GENESIS) != 0)
            asr_warn("audit: could not write %s: %s", path, strerror(errno));
        free(path);
    }
    asr_store_audit_pending(st, seq, hash);
    if (seq_out != NULL)
        *seq_out = seq;
    return 0;
}

int asr_audit_append(struct asr_store *st, const struct asr_audit_row *row, int64_t *seq,
                     struct asr_err *err)
{
    const char *op = "audit append";
    if (seq != NULL)
        *seq = 0;
    if (st == NULL || row == NULL || row->actor == NULL || row->actor[0] == '\0' ||
        row->kind == NULL || row->kind[0] == '\0')
        return asr_store_bad_arg(err, op, "no store, actor or kind");
    if (row->detail != NULL) {
        json_t *j = json_loads(row->detail, JSON_DECODE_ANY, NULL);
        if (j == NULL)
            return asr_store_bad_arg(err, op, "detail is not JSON");
        json_decref(j);
    }
    /* Inside the caller's transaction: its write lock makes reading the head and inserting the
     * next row one step, and its commit or rollback decides for our row too. */
    if (!sqlite3_get_autocommit(asr_store_db(st)))
        return append_in_tx(st, row, seq, op, err);
    int rc = asr_store_begin(st, op, err);
    if (rc != 0)
        return rc;
    rc = append_in_tx(st, row, seq, op, err);
    rc = asr_store_finish(st, rc, op, err);
    if (rc != 0 && seq != NULL)
        *seq = 0;
    return rc;
}

int asr_audit_append_json(struct asr_store *st, const char *actor, const char *kind,
                          int64_t incident_id, int64_t plan_id, const json_t *detail,
                          struct asr_err *err)
{
    char *text = NULL;
    if (detail != NULL &&
        (text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)) == NULL)
        return asr_err_set(err, ASR_ENOMEM, "audit: out of memory");
    struct asr_audit_row row = {.actor = (char *)actor,
                                .kind = (char *)kind,
                                .incident_id = incident_id,
                                .plan_id = plan_id,
                                .detail = text};
    int rc = asr_audit_append(st, &row, NULL, err);
    free(text);
    return rc;
}

/* ---- verifying ------------------------------------------------------------------------------- */

static void bad(struct asr_audit_check *c, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bad(struct asr_audit_check *c, int64_t seq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
    c->ok = false;
    c->bad_seq = seq;
}

static bool column_is_hex(sqlite3_stmt *s, int i, const char *want)
{
    return sqlite3_column_type(s, i) == SQLITE_TEXT &&
           sqlite3_column_bytes(s, i) == ASR_SHA256_HEX_LEN &&
           memcmp(sqlite3_column_text(s, i), want, ASR_SHA256_HEX_LEN) == 0;
}

/* Walks the table in seq order; stops at the first bad row. Returns 0 or ASR_EDB. */
static int walk(struct asr_store *st, const struct anchor *a, bool have_anchor,
                struct asr_audit_check *c, char *anchor_row_hash, struct asr_err *err)
{
    const char *op = "audit verify";
    sqlite3_stmt *s = asr_store_prepare(st, sql_all, op, err);
    if (s == NULL)
        return ASR_EDB;
    char prev[ASR_SHA256_HEX_LEN + 1];
    memcpy(prev, GENESIS, sizeof(prev));
    int64_t want = 1;
    int64_t stray = 0;
    bool has_stray = false;
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(s, 0);
        if (seq < 1) {
            /* Not part of 1, 2, 3, ...: reported only if the chain itself is intact, since a
             * renumbered row also leaves a gap where it was, and that names the row. */
            if (!has_stray)
                stray = seq;
            has_stray = true;
            continue;
        }
        if (seq != want) {
            if (seq == want + 1)
                bad(c, want, "row %" PRId64 " is missing", want);
            else
                bad(c, want, "rows %" PRId64 "..%" PRId64 " are missing", want, seq - 1);
            break;
        }
        if (!column_is_hex(s, 7, prev)) {
            if (seq == 1)
                bad(c, seq, "row 1: prev is not the start of a chain (64 zeros)");
            else
                bad(c, seq, "row %" PRId64 ": prev is not row %" PRId64 "'s hash", seq, seq - 1);
            break;
        }
        struct field f[F_COUNT];
        for (int i = 0; i < F_COUNT; i++)
            f[i] = column_field(s, i == F_PREV ? 7 : i - 1);
        char hash[ASR_SHA256_HEX_LEN + 1];
        row_hash(f, hash);
        if (!column_is_hex(s, 8, hash)) {
            bad(c, seq, "row %" PRId64 ": hash does not match its contents", seq);
            break;
        }
        memcpy(prev, hash, sizeof(prev));
        if (have_anchor && seq == a->seq)
            memcpy(anchor_row_hash, hash, sizeof(prev));
        c->rows++;
        c->head_seq = seq;
        memcpy(c->head, hash, sizeof(prev));
        want++;
    }
    bool failed = step != SQLITE_ROW && step != SQLITE_DONE;
    int rc = failed ? asr_store_fail(st, op, err) : 0;
    asr_store_reset(s);
    if (rc == 0 && c->ok && has_stray)
        bad(c, stray, "a row numbered %" PRId64 " is outside the chain (1, 2, 3, ...)", stray);
    return rc;
}

int asr_audit_verify(struct asr_store *st, const char *anchor_path, struct asr_audit_check *out,
                     struct asr_err *err)
{
    memset(out, 0, sizeof(*out));
    out->ok = true;
    out->anchor_seq = -1;
    if (st == NULL)
        return asr_store_bad_arg(err, "audit verify", "no store");

    /* The anchor first: it only moves after a commit, so the table read next holds at least the
     * rows it names, and anything newer shows as unanchored, never as missing. */
    struct anchor a = {0};
    bool have_anchor = false, anchor_missing = false;
    char why[300] = "";
    if (anchor_path != NULL) {
        int r = anchor_read(anchor_path, &a, why, sizeof(why));
        if (r == 0) {
            have_anchor = true;
            out->anchor_seq = a.seq;
        } else if (r == ASR_ENOENT) {
            anchor_missing = true;
        } else {
            bad(out, 0, "%s", why);
            return 0;
        }
    }

    char anchor_row_hash[ASR_SHA256_HEX_LEN + 1] = "";
    int rc = walk(st, &a, have_anchor, out, anchor_row_hash, err);
    if (rc != 0 || !out->ok)
        return rc;

    if (anchor_missing && out->rows > 0) {
        bad(out, 0,
            "%s is missing, but the table has %" PRId64 " rows (was it deleted to hide removed "
            "rows?)",
            anchor_path, out->rows);
    } else if (have_anchor && a.seq > out->head_seq) {
        int64_t gone = a.seq - out->head_seq;
        if (gone == 1)
            bad(out, a.seq, "the last row is missing (%s says seq %" PRId64 ")",
                ASR_AUDIT_HEAD_FILE, a.seq);
        else
            bad(out, out->head_seq + 1,
                "the last %" PRId64 " rows are missing (%s says seq %" PRId64 ")", gone,
                ASR_AUDIT_HEAD_FILE, a.seq);
    } else if (have_anchor && a.seq > 0 && strcmp(anchor_row_hash, a.hash) != 0) {
        bad(out, a.seq,
            "row %" PRId64 ": hash is not the one %s recorded (the chain up to it was rewritten)",
            a.seq, ASR_AUDIT_HEAD_FILE);
    } else if (have_anchor) {
        out->unanchored = out->head_seq - a.seq;
    }
    return 0;
}

/* ---- listing --------------------------------------------------------------------------------- */

static void row_clear(struct asr_audit_row *r)
{
    free(r->actor);
    free(r->kind);
    free(r->detail);
    r->actor = r->kind = r->detail = NULL;
}

void asr_audit_rows_free(struct asr_audit_row *rows, size_t n)
{
    for (size_t i = 0; rows != NULL && i < n; i++)
        row_clear(&rows[i]);
    free(rows);
}

static void copy_hex(sqlite3_stmt *s, int i, char out[ASR_SHA256_HEX_LEN + 1])
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(out, ASR_SHA256_HEX_LEN + 1, "%s", t != NULL ? (const char *)t : "");
}

static int read_row_cb(sqlite3_stmt *s, void *p)
{
    struct asr_audit_row *r = p;
    r->seq = sqlite3_column_int64(s, 0);
    r->at = sqlite3_column_int64(s, 1);
    r->incident_id = sqlite3_column_int64(s, 4);
    r->plan_id = sqlite3_column_int64(s, 5);
    copy_hex(s, 7, r->prev);
    copy_hex(s, 8, r->hash);
    if (asr_store_col_dup(s, 2, &r->actor) || asr_store_col_dup(s, 3, &r->kind) ||
        asr_store_col_dup(s, 6, &r->detail)) {
        row_clear(r);
        return ASR_ENOMEM;
    }
    return 0;
}

static void free_rows_cb(void *rows, size_t n)
{
    asr_audit_rows_free(rows, n);
}

int asr_audit_list(struct asr_store *st, int64_t before_seq, int limit, struct asr_audit_row **out,
                   size_t *n, struct asr_err *err)
{
    const char *op = "audit list";
    *out = NULL;
    *n = 0;
    if (st == NULL || limit <= 0)
        return asr_store_bad_arg(err, op, "no store, or a limit below 1");
    sqlite3_stmt *s = asr_store_prepare(st, sql_list, op, err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, before_seq);
    sqlite3_bind_int(s, 2, limit);
    return asr_store_collect(st, s, op, sizeof(**out), read_row_cb, free_rows_cb, (void **)out, n,
                             err);
}

json_t *asr_audit_row_json(const struct asr_audit_row *r)
{
    json_t *detail = json_loads(r->detail != NULL ? r->detail : "{}", JSON_DECODE_ANY, NULL);
    if (detail == NULL)
        detail = json_string(r->detail); /* tampered with: show it as it is */
    return json_pack("{s:I, s:I, s:s?, s:s?, s:o, s:o, s:o, s:s, s:s}", "seq", (json_int_t)r->seq,
                     "at_ms", (json_int_t)r->at, "actor", r->actor, "kind", r->kind, "incident_id",
                     r->incident_id != 0 ? json_integer(r->incident_id) : json_null(), "plan_id",
                     r->plan_id != 0 ? json_integer(r->plan_id) : json_null(), "detail",
                     detail != NULL ? detail : json_null(), "prev", r->prev, "hash", r->hash);
}
