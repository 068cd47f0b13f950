/*
 * cmd_incidents.c - `asr incidents`, `asr incident show ID`, `asr incident resolve ID`.
 *
 * Listing and showing read the store directly (a daemon need not run; SQLite's WAL lets them read
 * while it writes). Resolving goes through the running daemon, whose detector must learn of it to
 * start the fingerprint's cooldown; with no daemon it is written to the store directly.
 * Log text is attacker-controlled: the human formats escape control characters, so a line
 * cannot move the cursor or recolour a terminal.
 */
#include "api/control.h"
#include "api/views.h"
#include "asr/incident.h"
#include "asr/remediation.h"
#include "asr/store.h"
#include "asr/timeutil.h"
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char LIST_USAGE[] =
    "usage: asr incidents [-c FILE] [--state-dir DIR] [--service NAME] [--status open|resolved]\n"
    "                     [--limit N] [--json]\n"
    "Lists incidents, newest first (default limit 50). --json prints one JSON object per line.\n";
static const char ONE_USAGE[] =
    "usage: asr incident show ID [-c FILE] [--state-dir DIR] [--json]\n"
    "       asr incident resolve ID [--reason TEXT] [-c FILE] [--state-dir DIR]\n"
    "show prints an incident with its context and timeline; resolve closes it (its fingerprint\n"
    "then waits out the cooldown before it can open again).\n";

/* Prints s with control characters (and DEL) as \xNN; at most max bytes, then "...". */
static void print_safe(const char *s, size_t max)
{
    if (s == NULL) {
        fputs("-", stdout);
        return;
    }
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++, n++) {
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

static void fmt_ms(int64_t ms, char *buf, size_t cap)
{
    if (ms <= 0)
        snprintf(buf, cap, "-");
    else
        asr_time_format_utc(ms, buf, cap);
}

int cmd_incidents(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "csjvtn", 0, LIST_USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    if (o.status != NULL && strcmp(o.status, ASR_INCIDENT_OPEN) != 0 &&
        strcmp(o.status, ASR_INCIDENT_RESOLVED) != 0) {
        cli_error("usage", "--status expects open or resolved, got '%s'", o.status);
        return ASR_EXIT_USAGE;
    }
    struct asr_store *st = cli_open_store(&o, "incidents");
    if (st == NULL)
        return ASR_EXIT_FAIL;
    struct asr_incident *v = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    if (asr_store_incident_list(st, o.service, o.status, o.limit > 0 ? o.limit : 50, &v, &n,
                                &err) != 0) {
        cli_error("incidents", "%s", err.msg);
        asr_store_close(st);
        return ASR_EXIT_FAIL;
    }
    if (!o.json)
        printf("%-6s %-6s %-9s %-12s %-9s %-32s %7s  %-24s %s\n", "ID", "PARENT", "STATUS",
               "SERVICE", "SEVERITY", "SIGNATURE", "COUNT", "LAST SEEN", "LINE");
    for (size_t i = 0; i < n; i++) {
        if (o.json) {
            json_t *j = asr_incident_json(&v[i], NULL, 0);
            if (j != NULL)
                cli_print_json_line(j);
            json_decref(j);
            continue;
        }
        char last[40], parent[24] = "-";
        fmt_ms(v[i].last_seen, last, sizeof(last));
        if (v[i].parent_id != 0)
            snprintf(parent, sizeof(parent), "%lld", (long long)v[i].parent_id);
        printf("%-6lld %-6s %-9s %-12s %-9s %-32s %7lld  %-24s ", (long long)v[i].id, parent,
               v[i].status, v[i].service, v[i].severity, v[i].signature, (long long)v[i].count,
               last);
        print_safe(v[i].line, 100);
        putchar('\n');
    }
    asr_incident_list_free(v, n);
    asr_store_close(st);
    return ASR_EXIT_OK;
}

static void print_lines(const char *label, const char *json_text)
{
    json_t *a = json_loads(json_text != NULL ? json_text : "[]", 0, NULL);
    size_t i;
    json_t *e;
    printf("%s (%zu lines):\n", label, json_array_size(a));
    json_array_foreach(a, i, e)
    {
        fputs("  | ", stdout);
        print_safe(json_string_value(e), 4096);
        putchar('\n');
    }
    json_decref(a);
}

/* The remediation of the incident and its journal, with times from the first fault line, and
 * the MTTR when it was remediated. */
static void print_remediation(struct asr_store *st, const struct asr_incident *inc)
{
    struct asr_remediation rem = {0};
    struct asr_err err = {0};
    if (asr_remediation_of_incident(st, inc->id, &rem, &err) != 0)
        return;
    printf("remediation %lld (plan %lld): %s", (long long)rem.id, (long long)rem.plan_id,
           rem.state);
    if (rem.reason != NULL) {
        printf(": ");
        print_safe(rem.reason, 600);
    }
    putchar('\n');
    struct asr_journal_row *j = NULL;
    size_t n = 0;
    if (asr_journal_list(st, rem.id, &j, &n, &err) == 0) {
        for (size_t i = 0; i < n; i++) {
            json_t *d = json_loads(j[i].detail, 0, NULL);
            const char *text = json_string_value(json_object_get(d, "detail"));
            printf("  +%6lld ms  step %d %-9s %-6s %s ", (long long)(j[i].at - inc->first_seen),
                   j[i].step, j[i].action, j[i].phase,
                   strcmp(j[i].phase, "result") == 0 ? (j[i].ok ? "ok  " : "FAIL") : "    ");
            print_safe(text != NULL ? text : "", 300);
            putchar('\n');
            json_decref(d);
        }
        asr_journal_rows_free(j, n);
    }
    if (strcmp(rem.state, ASR_REM_SUCCEEDED) == 0 && inc->resolved_at > 0)
        printf("  MTTR %lld ms (first fault line to verified and resolved)\n",
               (long long)(inc->resolved_at - inc->first_seen));
    asr_remediation_free(&rem);
}

static int show(const struct cli_opts *o, int64_t id)
{
    struct asr_store *st = cli_open_store(o, "incident");
    if (st == NULL)
        return ASR_EXIT_FAIL;
    struct asr_incident inc = {0};
    struct asr_incident_note *notes = NULL;
    size_t nn = 0;
    struct asr_err err = {0};
    int rc = asr_store_incident_get(st, id, &inc, &err);
    if (rc == 0)
        rc = asr_store_incident_notes(st, id, &notes, &nn, &err);
    if (rc != 0) {
        cli_error("incident", "%s", err.msg);
        asr_incident_free(&inc);
        asr_store_close(st);
        return ASR_EXIT_FAIL;
    }
    if (o->json) {
        /* The same view as GET /api/v1/incidents/ID (docs/api.md). */
        json_t *j = NULL;
        if (asr_view_incident(st, id, &j, &err) != 0) {
            cli_error("incident", "%s", err.msg);
            asr_incident_notes_free(notes, nn);
            asr_incident_free(&inc);
            asr_store_close(st);
            return ASR_EXIT_FAIL;
        }
        cli_print_json(j);
        json_decref(j);
    } else {
        char first[40], last[40], resolved[40];
        fmt_ms(inc.first_seen, first, sizeof(first));
        fmt_ms(inc.last_seen, last, sizeof(last));
        fmt_ms(inc.resolved_at, resolved, sizeof(resolved));
        printf("incident %lld (%s)", (long long)inc.id, inc.status);
        if (inc.parent_id != 0)
            printf(", grouped under incident %lld", (long long)inc.parent_id);
        printf("\n  service      %s\n  signature    %s (%s)\n  severity     %s\n", inc.service,
               inc.signature, inc.kind, inc.severity);
        printf("  fingerprint  ");
        print_safe(inc.fingerprint, 1024);
        printf("\n  source       %s", inc.source);
        if (inc.slot != NULL)
            printf(" (slot %s)", inc.slot);
        printf("\n  release      %s\n", inc.release != NULL ? inc.release : "-");
        printf("  count        %lld (verification lines: %lld)\n", (long long)inc.count,
               (long long)inc.verifications);
        printf("  first seen   %s\n  last seen    %s\n", first, last);
        if (inc.resolved_at != 0) {
            printf("  resolved     %s: ", resolved);
            print_safe(inc.resolution, 1024);
            putchar('\n');
        }
        if (inc.template != NULL) {
            printf("  template     #%lld ", (long long)inc.template_id);
            print_safe(inc.template, 1024);
            putchar('\n');
        }
        printf("  fields       ");
        print_safe(inc.fields, 4096);
        printf("\n  line         ");
        print_safe(inc.line, 4096);
        putchar('\n');
        print_lines("context before", inc.context_before);
        print_lines(inc.context_done ? "context after" : "context after (still collecting)",
                    inc.context_after);
        printf("timeline:\n");
        for (size_t i = 0; i < nn; i++) {
            char at[40];
            fmt_ms(notes[i].at, at, sizeof(at));
            printf("  %s  %-13s ", at, notes[i].kind);
            print_safe(notes[i].detail, 300);
            putchar('\n');
        }
        print_remediation(st, &inc);
    }
    asr_incident_notes_free(notes, nn);
    asr_incident_free(&inc);
    asr_store_close(st);
    return ASR_EXIT_OK;
}

static int resolve(const struct cli_opts *o, int64_t id)
{
    const char *reason = o->reason != NULL ? o->reason : "resolved by an operator";
    char *sd = cli_state_dir(o);
    if (sd == NULL)
        return ASR_EXIT_FAIL;
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/incidents/%lld/resolve", (long long)id);
    json_t *reply = NULL;
    struct asr_err err = {0};
    int rc =
        asr_control_api(sd, "POST", path, json_pack("{s:s}", "reason", reason), NULL, &reply, &err);
    if (rc == ASR_ENODAEMON) {
        struct asr_store *st = NULL;
        if ((rc = asr_store_open(sd, &st, &err)) == 0)
            rc = asr_store_incident_resolve(st, id, reason, &err);
        asr_store_close(st);
        free(sd);
        if (rc != 0) {
            cli_error("incident", "%s", err.msg);
            return ASR_EXIT_FAIL;
        }
        printf("incident %lld resolved (no daemon running; written to the store)\n", (long long)id);
        return ASR_EXIT_OK;
    }
    free(sd);
    if (rc != 0) {
        cli_error("incident", "%s", asr_err_msg(&err, rc));
        return ASR_EXIT_FAIL;
    }
    bool ok = json_is_true(json_object_get(reply, "ok"));
    if (ok)
        printf("incident %lld resolved\n", (long long)id);
    else
        cli_error("incident", "%s", json_string_value(json_object_get(reply, "error")));
    json_decref(reply);
    return ok ? ASR_EXIT_OK : ASR_EXIT_FAIL;
}

int cmd_incident(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "csje", 2, ONE_USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    if (o.nargs != 2 || (strcmp(o.args[0], "show") != 0 && strcmp(o.args[0], "resolve") != 0)) {
        cli_error("usage", "expected 'show ID' or 'resolve ID'");
        fprintf(stderr, "%s", ONE_USAGE);
        return ASR_EXIT_USAGE;
    }
    char *end;
    long long id = strtoll(o.args[1], &end, 10);
    if (o.args[1][0] == '\0' || *end != '\0' || id <= 0) {
        cli_error("usage", "an incident id is a positive number, got '%s'", o.args[1]);
        return ASR_EXIT_USAGE;
    }
    return strcmp(o.args[0], "show") == 0 ? show(&o, id) : resolve(&o, id);
}
