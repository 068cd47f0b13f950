/*
 * audit.h - the audit chain: every decision and action asr takes, append-only, chained by
 * SHA-256 (store migration 5; docs/audit.md).
 *
 * Row N holds seq N (1, 2, 3, ... with no gaps), when, who (actor), what (kind), the incident and
 * plan it concerns, a JSON detail, prev (row N-1's hash; 64 zeros for row 1) and hash, the
 * SHA-256 of prev and every other column in a length-prefixed encoding (docs/audit.md gives it
 * byte by byte). Changing, removing or reordering rows breaks the chain at the first row
 * touched, and asr_audit_verify() names it.
 *
 * Because whoever removes the newest rows leaves a chain that still verifies, the head is also
 * written outside the database, to `<state_dir>/audit.head` ("<seq> <hash>\n"), after every
 * commit that appended rows, and verify compares the table's end with it.
 *
 * Transactions and nesting: asr_audit_append() joins the caller's transaction when one is open
 * on the store's connection (opened with asr_store_begin(), so it holds the write lock), and the
 * row commits or rolls back with the caller's rows; otherwise it runs in its own. There is no
 * nesting beyond that: asr_store_begin() inside an open transaction is still an error. The
 * anchor file is written by asr_store_commit() once the commit has succeeded, never before, so
 * audit.head can lag the table (a crash between the two) but never lead it.
 */
#ifndef ASR_AUDIT_H
#define ASR_AUDIT_H

#include "asr/error.h"
#include "asr/sha256.h"
#include "asr/store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Actors. */
#define ASR_AUDIT_ASR "asr"           /* the daemon or a command acting on its own judgement */
#define ASR_AUDIT_OPERATOR "operator" /* a person, through the CLI */

/* The name of the anchor file in the state dir. */
#define ASR_AUDIT_HEAD_FILE "audit.head"

struct asr_audit_row {
    int64_t seq; /* 1, 2, 3, ...; set by append */
    int64_t at;  /* wall ms; 0 when appending means the store's clock */
    char *actor; /* ASR_AUDIT_ASR, ASR_AUDIT_OPERATOR, ... */
    char *kind;  /* "plan.made", "plan.outcome", "incident.resolved", "action.intent", ... */
    int64_t incident_id; /* 0 for none (stored as NULL) */
    int64_t plan_id;     /* 0 for none (stored as NULL) */
    char *detail;        /* JSON text; NULL when appending means "{}" */
    char prev[ASR_SHA256_HEX_LEN + 1];
    char hash[ASR_SHA256_HEX_LEN + 1];
};

/*
 * Appends one row: seq, prev and hash are computed here (row->seq, prev and hash are ignored),
 * at is row->at or the store's clock. *seq (may be NULL) gets the new row's number. Joins the
 * caller's open transaction, else runs in its own (see above). Returns 0, ASR_EINVAL (no actor
 * or kind, detail not JSON) or ASR_EDB; inside a caller's transaction a failure leaves it for
 * the caller to roll back.
 */
int asr_audit_append(struct asr_store *st, const struct asr_audit_row *row, int64_t *seq,
                     struct asr_err *err);

/*
 * asr_audit_append() for the hooks: detail (borrowed, may be NULL) is serialized compactly with
 * sorted keys. Returns as asr_audit_append(), or ASR_ENOMEM.
 */
int asr_audit_append_json(struct asr_store *st, const char *actor, const char *kind,
                          int64_t incident_id, int64_t plan_id, const json_t *detail,
                          struct asr_err *err);

/* What asr_audit_verify() found. */
struct asr_audit_check {
    bool ok;          /* the chain is intact and agrees with audit.head */
    int64_t rows;     /* rows found intact (all of them when ok) */
    int64_t bad_seq;  /* the first bad row; 0 when ok, or when no one row is to blame */
    char why[320];    /* the first problem: "row 57: hash does not match its contents" */
    int64_t head_seq; /* the last intact row, 0 for none */
    char head[ASR_SHA256_HEX_LEN + 1]; /* its hash, "" for none */
    int64_t anchor_seq;                /* the seq audit.head names; -1 when it was not read */
    int64_t unanchored; /* intact rows after audit.head's (appended, then asr stopped before
                           writing the anchor); not a failure */
};

/*
 * Checks the whole chain, in order, and stops at the first problem: a missing row ("rows 41..43
 * are missing"), a row whose prev is not the hash of the row before it ("row 58: prev is not row
 * 57's hash"), a row whose hash is not the SHA-256 of its contents ("row 57: hash does not match
 * its contents"), then the end against anchor_path (NULL: not checked): "the last 2 rows are
 * missing (audit.head says seq 200)", a different hash at the anchor's seq, or a missing anchor
 * when the table has rows. audit.head is read before the table, so rows appended meanwhile can
 * only show as unanchored. Returns 0 when the check ran (out->ok says how it went), or ASR_EDB /
 * ASR_ENOMEM when it could not.
 */
int asr_audit_verify(struct asr_store *st, const char *anchor_path, struct asr_audit_check *out,
                     struct asr_err *err);

/*
 * The rows before before_seq (0: from the newest), newest first, at most limit (> 0). *out is
 * an array the caller frees with asr_audit_rows_free(). Returns 0, ASR_EINVAL or ASR_EDB.
 */
int asr_audit_list(struct asr_store *st, int64_t before_seq, int limit, struct asr_audit_row **out,
                   size_t *n, struct asr_err *err);
void asr_audit_rows_free(struct asr_audit_row *rows, size_t n);
/* A row as JSON (caller owns; detail parsed back into a value); NULL when out of memory. */
json_t *asr_audit_row_json(const struct asr_audit_row *row);

/*
 * The anchor file of the store: audit.head beside the database file (the state dir). *out is a
 * new string the caller frees. ASR_ENOENT for an in-memory database, which has no anchor.
 */
int asr_audit_anchor_path(struct asr_store *st, char **out, struct asr_err *err);

#endif
