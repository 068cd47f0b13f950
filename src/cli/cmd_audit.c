/*
 * cmd_audit.c - `asr audit verify` and `asr audit list`: the audit chain (docs/audit.md).
 *
 * Both read the store directly; a daemon need not run (SQLite's WAL lets them read while it
 * writes). verify recomputes every row's hash, checks the chain link by link, and compares its
 * end with <state_dir>/audit.head; it names the first bad row and exits 1 if there is one.
 * Audit details may quote log text, which is attacker-controlled: the human list escapes control
 * characters.
 */
#include "asr/audit.h"
#include "asr/store.h"
#include "asr/timeutil.h"
#include "cli/cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: asr audit verify [-c FILE] [--state-dir DIR] [--json]\n"
    "       asr audit list [-c FILE] [--state-dir DIR] [--limit N] [--json]\n"
    "verify checks the audit chain (every row's SHA-256, each row's link to the one before it,\n"
    "and the end against audit.head) and names the first bad row: exit 0 when intact, 1 if not.\n"
    "list prints the newest rows first (default limit 50); --json prints one object per line.\n";

/* Prints s with control characters (and DEL) as \xNN; at most max bytes, then "...". */
static void print_safe(const char *s, size_t max)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)(s != NULL ? s : "-"); *p != '\0';
         p++, n++) {
        if (n == max) {
            fputs("...", stdout);
            return;
        }
        if (*p < 0x20 || *p == 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
}

static int verify(const struct cli_opts *o)
{
    struct asr_store *st = cli_open_store(o, "audit");
    if (st == NULL)
        return ASR_EXIT_FAIL;
    struct asr_err err = {0};
    struct asr_audit_check c;
    char *anchor = NULL;
    int rc = asr_audit_anchor_path(st, &anchor, &err);
    if (rc == 0)
        rc = asr_audit_verify(st, anchor, &c, &err);
    free(anchor);
    asr_store_close(st);
    if (rc != 0) {
        cli_error("audit", "%s", err.msg);
        return ASR_EXIT_FAIL;
    }
    if (o->json) {
        json_t *j = json_pack(
            "{s:b, s:I, s:o, s:s?, s:I, s:s?, s:o, s:I}", "ok", c.ok, "rows", (json_int_t)c.rows,
            "bad_seq", c.ok ? json_null() : json_integer(c.bad_seq), "why", c.ok ? NULL : c.why,
            "head_seq", (json_int_t)c.head_seq, "head", c.head[0] != '\0' ? c.head : NULL,
            "anchor_seq", c.anchor_seq >= 0 ? json_integer(c.anchor_seq) : json_null(),
            "unanchored", (json_int_t)c.unanchored);
        cli_print_json(j);
        json_decref(j);
    }
    if (!c.ok) {
        if (c.rows == 1)
            cli_error("audit", "%s (row 1 is intact)", c.why);
        else if (c.rows > 1)
            cli_error("audit", "%s (rows 1..%" PRId64 " are intact)", c.why, c.rows);
        else
            cli_error("audit", "%s", c.why);
        return ASR_EXIT_FAIL;
    }
    if (!o->json) {
        printf("audit: %" PRId64 " rows, chain intact, head %s\n", c.rows,
               c.rows > 0 ? c.head : "(empty)");
        if (c.unanchored > 0)
            printf("audit: the last %" PRId64 " rows are newer than %s (asr stopped between "
                   "committing them and writing the anchor; the next row moves it)\n",
                   c.unanchored, ASR_AUDIT_HEAD_FILE);
    }
    return ASR_EXIT_OK;
}

static int list(const struct cli_opts *o)
{
    struct asr_store *st = cli_open_store(o, "audit");
    if (st == NULL)
        return ASR_EXIT_FAIL;
    struct asr_audit_row *v = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    if (asr_audit_list(st, 0, o->limit > 0 ? o->limit : 50, &v, &n, &err) != 0) {
        cli_error("audit", "%s", err.msg);
        asr_store_close(st);
        return ASR_EXIT_FAIL;
    }
    if (!o->json)
        printf("%-6s %-24s %-9s %-18s %-8s %-6s %-12s %s\n", "SEQ", "AT", "ACTOR", "KIND",
               "INCIDENT", "PLAN", "HASH", "DETAIL");
    for (size_t i = 0; i < n; i++) {
        if (o->json) {
            json_t *j = asr_audit_row_json(&v[i]);
            if (j != NULL)
                cli_print_json_line(j);
            json_decref(j);
            continue;
        }
        char at[40], inc[24] = "-", plan[24] = "-";
        asr_time_format_utc(v[i].at, at, sizeof(at));
        if (v[i].incident_id != 0)
            snprintf(inc, sizeof(inc), "%" PRId64, v[i].incident_id);
        if (v[i].plan_id != 0)
            snprintf(plan, sizeof(plan), "%" PRId64, v[i].plan_id);
        printf("%-6" PRId64 " %-24s ", v[i].seq, at);
        print_safe(v[i].actor, 9);
        printf("%*s",
               v[i].actor != NULL && strlen(v[i].actor) < 9 ? 10 - (int)strlen(v[i].actor) : 1, "");
        print_safe(v[i].kind, 18);
        printf("%*s", v[i].kind != NULL && strlen(v[i].kind) < 18 ? 19 - (int)strlen(v[i].kind) : 1,
               "");
        printf("%-8s %-6s %.12s ", inc, plan, v[i].hash);
        print_safe(v[i].detail, 200);
        putchar('\n');
    }
    asr_audit_rows_free(v, n);
    asr_store_close(st);
    return ASR_EXIT_OK;
}

int cmd_audit(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "csjn", 1, USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    if (o.nargs != 1 || (strcmp(o.args[0], "verify") != 0 && strcmp(o.args[0], "list") != 0)) {
        cli_error("usage", "expected 'verify' or 'list'");
        fprintf(stderr, "%s", USAGE);
        return ASR_EXIT_USAGE;
    }
    if (strcmp(o.args[0], "verify") == 0) {
        if (o.limit != 0) {
            cli_error("usage", "--limit goes with 'list', not 'verify'");
            return ASR_EXIT_USAGE;
        }
        return verify(&o);
    }
    return list(&o);
}
