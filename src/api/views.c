/*
 * views.c - the store as the API shows it (views.h).
 *
 * An incident's stages come from the rows each stage writes (docs/execution.md, "Timeline"):
 * first seen and detected from the incident, planned from its plan, committed and verified from
 * the remediation's journal, built, tested and deployed from the service's events between the
 * acting step and its verification (one remediation runs per service at a time), resolved from
 * the incident. A stage that was not reached, or does not apply (a restart builds nothing), is
 * null.
 */
#include "api/views.h"

#include "asr/buf.h"
#include "asr/remediation.h"
#include "asr/timeutil.h"
#include "asr/utf8.h"
#include "store/store_int.h"
#include "strategy/plan.h"

#include <stdlib.h>
#include <string.h>

static const char sql_rem[] =
    "SELECT id, plan_id, state, started_at, finished_at FROM remediations "
    "WHERE incident_id = ?1 ORDER BY id DESC LIMIT 1";
static const char sql_plan_at[] =
    "SELECT created_at FROM plans WHERE incident_id = ?1 ORDER BY id DESC LIMIT 1";
/* The acting step: the last step's intent; its commit and verification. */
static const char sql_journal[] =
    "SELECT step, phase, idem_key, at, ok, detail FROM journal WHERE remediation_id = ?1 "
    "ORDER BY id";
static const char sql_stage_events[] =
    "SELECT kind, min(at) FROM events WHERE service = ?1 AND at >= ?2 AND at <= ?3 "
    "AND kind IN ('build.passed', 'test.passed', 'deploy.switched') GROUP BY kind";
static const char sql_plans[] =
    "SELECT p.id FROM plans p LEFT JOIN remediations r ON r.plan_id = p.id "
    "WHERE (?1 IS NULL OR r.state = ?1) ORDER BY p.id DESC LIMIT ?2";
static const char sql_plan[] =
    "SELECT p.id, p.incident_id, p.created_at, p.status, p.outcome_at, p.mttr_ms, p.body, "
    "r.id, r.state FROM plans p LEFT JOIN remediations r ON r.plan_id = p.id WHERE p.id = ?1";

static void set(json_t *o, const char *k, json_t *v)
{
    json_object_set_new(o, k, v != NULL ? v : json_null());
}

static json_t *ms_or_null(int64_t ms)
{
    return ms > 0 ? json_integer(ms) : json_null();
}

/* What the journal says about the acting step of a remediation. */
struct journal_facts {
    int step;
    int64_t step_at;   /* the last step's intent */
    int64_t committed; /* its commit row, when a patch committed */
    char commit[41], branch[128];
    int64_t verify_at; /* the verify result row */
    bool verify_done, verify_ok;
    char *verify_detail; /* owned */
};

/* "rem:<id>:<what>:<n>..." -> what. */
static void key_what(const char *key, char *what, size_t cap)
{
    what[0] = '\0';
    const char *p = key != NULL ? strchr(key, ':') : NULL;
    p = p != NULL ? strchr(p + 1, ':') : NULL;
    const char *q = p != NULL ? strchr(p + 1, ':') : NULL;
    if (q != NULL)
        snprintf(what, cap, "%.*s", (int)(q - p - 1), p + 1);
}

static int read_journal(struct asr_store *st, int64_t rem, struct journal_facts *f,
                        struct asr_err *err)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_journal, "journal", err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, rem);
    while (sqlite3_step(s) == SQLITE_ROW) {
        int step = sqlite3_column_int(s, 0);
        bool result = strcmp((const char *)sqlite3_column_text(s, 1), "result") == 0;
        char what[24];
        key_what((const char *)sqlite3_column_text(s, 2), what, sizeof(what));
        int64_t at = sqlite3_column_int64(s, 3);
        bool ok = sqlite3_column_int(s, 4) == 1;
        if (step > f->step) {
            /* A later step: what the earlier one did is not the acting step's. */
            free(f->verify_detail);
            memset(f, 0, sizeof(*f));
            f->step = step;
        }
        if (step != f->step)
            continue;
        json_t *d = json_loads((const char *)sqlite3_column_text(s, 5), 0, NULL);
        if (strcmp(what, "step") == 0 && !result && f->step_at == 0) {
            f->step_at = at;
        } else if (strcmp(what, "commit") == 0 && result && ok) {
            const char *c = json_string_value(json_object_get(d, "commit"));
            const char *b = json_string_value(json_object_get(d, "branch"));
            snprintf(f->commit, sizeof(f->commit), "%s", c != NULL ? c : "");
            snprintf(f->branch, sizeof(f->branch), "%s", b != NULL ? b : "");
            f->committed = at;
        } else if (strcmp(what, "verify") == 0 && result) {
            const char *t = json_string_value(json_object_get(d, "detail"));
            f->verify_done = true;
            f->verify_ok = ok;
            f->verify_at = at;
            free(f->verify_detail);
            f->verify_detail = t != NULL ? strdup(t) : NULL;
        }
        json_decref(d);
    }
    asr_store_reset(s);
    return 0;
}

/* The remediation's row: id, plan, state, started; 0 id when none. */
struct rem_row {
    int64_t id, plan, started, finished;
    char state[24];
};

static int read_rem(struct asr_store *st, int64_t incident, struct rem_row *r, struct asr_err *err)
{
    memset(r, 0, sizeof(*r));
    sqlite3_stmt *s = asr_store_prepare(st, sql_rem, "remediation", err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, incident);
    if (sqlite3_step(s) == SQLITE_ROW) {
        r->id = sqlite3_column_int64(s, 0);
        r->plan = sqlite3_column_int64(s, 1);
        snprintf(r->state, sizeof(r->state), "%s", (const char *)sqlite3_column_text(s, 2));
        r->started = sqlite3_column_int64(s, 3);
        r->finished = sqlite3_column_int64(s, 4);
    }
    asr_store_reset(s);
    return 0;
}

static int64_t plan_at(struct asr_store *st, int64_t incident, struct asr_err *err)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_plan_at, "plan", err);
    if (s == NULL)
        return 0;
    sqlite3_bind_int64(s, 1, incident);
    int64_t at = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    asr_store_reset(s);
    return at;
}

/* Adds "stages", "mttr_ms" and "remediation" (a summary) to o; f receives the journal facts. */
static int add_stages(struct asr_store *st, const struct asr_incident *inc, json_t *o,
                      struct rem_row *rem, struct journal_facts *f, struct asr_err *err)
{
    int rc = read_rem(st, inc->id, rem, err);
    if (rc == 0 && rem->id != 0)
        rc = read_journal(st, rem->id, f, err);
    if (rc != 0)
        return rc;
    int64_t built = 0, tested = 0, deployed = 0;
    if (f->step_at != 0) {
        sqlite3_stmt *s = asr_store_prepare(st, sql_stage_events, "stages", err);
        if (s == NULL)
            return ASR_EDB;
        asr_store_bind_str(s, 1, inc->service);
        sqlite3_bind_int64(s, 2, f->step_at);
        sqlite3_bind_int64(s, 3, f->verify_at != 0 ? f->verify_at : asr_time_wall_ms());
        while (sqlite3_step(s) == SQLITE_ROW) {
            const char *kind = (const char *)sqlite3_column_text(s, 0);
            int64_t at = sqlite3_column_int64(s, 1);
            if (strcmp(kind, "build.passed") == 0)
                built = at;
            else if (strcmp(kind, "test.passed") == 0)
                tested = at;
            else
                deployed = at;
        }
        asr_store_reset(s);
    }
    json_t *stages = json_object();
    set(stages, "first_seen", ms_or_null(inc->first_seen));
    set(stages, "detected", ms_or_null(inc->opened_at));
    set(stages, "planned", ms_or_null(plan_at(st, inc->id, err)));
    set(stages, "committed", ms_or_null(f->committed));
    set(stages, "built", ms_or_null(built));
    set(stages, "tested", ms_or_null(tested));
    set(stages, "deployed", ms_or_null(deployed));
    set(stages, "verified", ms_or_null(f->verify_ok ? f->verify_at : 0));
    set(stages, "resolved", ms_or_null(inc->resolved_at));
    set(o, "stages", stages);
    bool fixed = rem->id != 0 && strcmp(rem->state, ASR_REM_SUCCEEDED) == 0 && inc->resolved_at > 0;
    set(o, "mttr_ms", fixed ? json_integer(inc->resolved_at - inc->first_seen) : NULL);
    set(o, "detection_ms",
        inc->opened_at > 0 && inc->first_seen > 0 ? json_integer(inc->opened_at - inc->first_seen)
                                                  : NULL);
    set(o, "remediation",
        rem->id != 0 ? json_pack("{s:I, s:I, s:s}", "id", (json_int_t)rem->id, "plan",
                                 (json_int_t)rem->plan, "state", rem->state)
                     : NULL);
    return 0;
}

int asr_view_incidents(struct asr_store *st, const struct asr_incident_query *q, json_t **out,
                       struct asr_err *err)
{
    struct asr_incident *v = NULL;
    size_t n = 0;
    int rc = asr_store_incident_query(st, q, &v, &n, err);
    if (rc != 0)
        return rc;
    json_t *list = json_array();
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *o = asr_incident_json(&v[i], NULL, 0);
        struct rem_row rem;
        struct journal_facts f = {0};
        if (o == NULL) {
            rc = asr_err_set(err, ASR_ENOMEM, "api: out of memory");
            break;
        }
        json_object_del(o, "context_before");
        json_object_del(o, "context_after");
        rc = add_stages(st, &v[i], o, &rem, &f, err);
        free(f.verify_detail);
        json_array_append_new(list, o);
    }
    asr_incident_list_free(v, n);
    if (rc != 0) {
        json_decref(list);
        return rc;
    }
    *out = json_pack("{s:o}", "incidents", list);
    return 0;
}

char *asr_view_patch_diff(json_t *steps)
{
    struct asr_buf b;
    asr_buf_init(&b, ASR_VIEW_OUTPUT_CAP);
    size_t i, k;
    json_t *step, *e;
    bool any = false;
    json_array_foreach(steps, i, step)
    {
        const char *action = json_string_value(json_object_get(step, "action"));
        if (action == NULL || strcmp(action, "patch") != 0)
            continue;
        json_array_foreach(json_object_get(step, "edits"), k, e)
        {
            const char *path = json_string_value(json_object_get(e, "path"));
            const char *from = json_string_value(json_object_get(e, "search"));
            const char *to = json_string_value(json_object_get(e, "replace"));
            if (path == NULL || from == NULL || to == NULL)
                continue;
            any = true;
            asr_buf_printf(&b, "--- a/%s\n+++ b/%s\n@@ edit %zu @@\n", path, path, k + 1);
            const char *texts[2] = {from, to};
            for (int t = 0; t < 2; t++) {
                for (const char *p = texts[t]; *p != '\0';) {
                    const char *nl = strchr(p, '\n');
                    size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
                    asr_buf_append(&b, t == 0 ? "-" : "+", 1);
                    asr_buf_append(&b, p, len);
                    asr_buf_append(&b, "\n", 1);
                    p += len + (nl != NULL);
                }
            }
        }
    }
    if (!any || asr_buf_append(&b, "", 1) != 0) {
        asr_buf_free(&b);
        return NULL;
    }
    return asr_buf_steal(&b);
}

/* The build or test of the release of commit: {"status", "ms", "output"}, or NULL. */
static json_t *release_part(struct asr_store *st, const struct asr_release *rel, const char *which)
{
    int status = strcmp(which, "build") == 0 ? rel->build_status : rel->test_status;
    int64_t ms = strcmp(which, "build") == 0 ? rel->build_ms : rel->test_ms;
    if (status == -1)
        return NULL;
    char *text = NULL;
    struct asr_err err = {0};
    if (asr_store_release_output(st, rel->id, which, &text, &err) != 0)
        text = NULL;
    size_t len = text != NULL ? strlen(text) : 0;
    bool cut = len > ASR_VIEW_OUTPUT_CAP;
    char *from = text != NULL ? text + (cut ? len - ASR_VIEW_OUTPUT_CAP : 0) : NULL;
    size_t n = cut ? ASR_VIEW_OUTPUT_CAP : len, off = 0;
    /* Output is bytes: the cut may fall inside a character, and a tool may print anything. A JSON
     * string must be UTF-8 (json_pack would fail and the whole part be lost), so each byte that
     * is not becomes '?'. */
    while (from != NULL &&
           (off += asr_utf8_valid_prefix((const unsigned char *)from + off, n - off)) < n)
        from[off++] = '?';
    json_t *o = json_pack("{s:i, s:I, s:s%, s:b}", "status", status, "ms", (json_int_t)ms, "output",
                          from != NULL ? from : "", n, "cut", cut);
    free(text);
    return o;
}

json_t *asr_view_remediation(struct asr_store *st, const struct asr_incident *inc)
{
    struct asr_remediation rem = {0};
    struct asr_err err = {0};
    if (asr_remediation_of_incident(st, inc->id, &rem, &err) != 0)
        return json_null();
    json_t *journal = json_array();
    struct asr_journal_row *j = NULL;
    size_t n = 0;
    if (asr_journal_list(st, rem.id, &j, &n, &err) == 0) {
        for (size_t i = 0; i < n; i++) {
            json_t *d = json_loads(j[i].detail, 0, NULL);
            json_array_append_new(
                journal,
                json_pack("{s:I, s:I, s:i, s:s, s:s, s:s, s:o?, s:O?}", "at", (json_int_t)j[i].at,
                          "ms_from_first_seen", (json_int_t)(j[i].at - inc->first_seen), "step",
                          j[i].step, "action", j[i].action, "phase", j[i].phase, "key", j[i].key,
                          "ok", strcmp(j[i].phase, "result") == 0 ? json_boolean(j[i].ok) : NULL,
                          "detail", json_object_get(d, "detail")));
            json_decref(d);
        }
        asr_journal_rows_free(j, n);
    }
    bool ok = strcmp(rem.state, ASR_REM_SUCCEEDED) == 0 && inc->resolved_at > 0;
    json_t *r = json_pack("{s:I, s:I, s:s, s:s?, s:s?, s:I, s:I, s:I, s:o, s:o}", "id",
                          (json_int_t)rem.id, "plan", (json_int_t)rem.plan_id, "state", rem.state,
                          "reason", rem.reason, "approved_by", rem.approved_by, "created_at",
                          (json_int_t)rem.created_at, "started_at", (json_int_t)rem.started_at,
                          "finished_at", (json_int_t)rem.finished_at, "journal", journal, "mttr_ms",
                          ok ? json_integer(inc->resolved_at - inc->first_seen) : json_null());
    asr_remediation_free(&rem);
    return r != NULL ? r : json_null();
}

int asr_view_incident(struct asr_store *st, int64_t id, json_t **out, struct asr_err *err)
{
    struct asr_incident inc = {0};
    struct asr_incident_note *notes = NULL;
    size_t nn = 0;
    int rc = asr_store_incident_get(st, id, &inc, err);
    if (rc == 0)
        rc = asr_store_incident_notes(st, id, &notes, &nn, err);
    json_t *o = rc == 0 ? asr_incident_json(&inc, notes, nn) : NULL;
    struct rem_row rem;
    struct journal_facts f = {0};
    if (rc == 0 && o == NULL)
        rc = asr_err_set(err, ASR_ENOMEM, "api: out of memory");
    if (rc == 0)
        rc = add_stages(st, &inc, o, &rem, &f, err);
    if (rc != 0) {
        json_decref(o);
        free(f.verify_detail);
        asr_incident_notes_free(notes, nn);
        asr_incident_free(&inc);
        return rc;
    }
    json_t *plan = NULL;
    struct asr_err e2 = {0};
    if (asr_plan_latest(st, id, &plan, &e2) != 0)
        plan = NULL;
    json_t *patch = NULL;
    char *diff = plan != NULL ? asr_view_patch_diff(json_object_get(plan, "steps")) : NULL;
    if (diff != NULL || f.commit[0] != '\0')
        patch = json_pack("{s:s?, s:s?, s:s?}", "diff", diff, "commit",
                          f.commit[0] ? f.commit : NULL, "branch", f.branch[0] ? f.branch : NULL);
    free(diff);
    set(o, "plan", plan);
    set(o, "remediation", asr_view_remediation(st, &inc));
    set(o, "patch", patch);
    json_t *build = NULL, *test = NULL;
    struct asr_release rel = {0};
    if (f.commit[0] != '\0' && asr_store_release_find(st, inc.service, f.commit, &rel, &e2) == 0) {
        build = release_part(st, &rel, "build");
        test = release_part(st, &rel, "test");
        asr_release_free(&rel);
    }
    set(o, "build", build);
    set(o, "test", test);
    set(o, "verification",
        f.verify_done ? json_pack("{s:b, s:I, s:s?}", "ok", f.verify_ok, "at",
                                  (json_int_t)f.verify_at, "detail", f.verify_detail)
                      : NULL);
    free(f.verify_detail);
    asr_incident_notes_free(notes, nn);
    asr_incident_free(&inc);
    *out = o;
    return 0;
}

int asr_view_plan(struct asr_store *st, int64_t id, json_t **out, struct asr_err *err)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_plan, "plan", err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, id);
    int rc = 0;
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE) {
        rc = asr_err_set(err, ASR_ENOENT, "no plan %lld", (long long)id);
    } else if (r != SQLITE_ROW) {
        rc = asr_store_fail(st, "plan", err);
    } else {
        json_t *j = json_loads((const char *)sqlite3_column_text(s, 6), 0, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            j = json_object();
        }
        set(j, "id", json_integer(sqlite3_column_int64(s, 0)));
        set(j, "incident_id", json_integer(sqlite3_column_int64(s, 1)));
        set(j, "created_at", json_integer(sqlite3_column_int64(s, 2)));
        set(j, "status", json_string((const char *)sqlite3_column_text(s, 3)));
        set(j, "outcome_at", ms_or_null(sqlite3_column_int64(s, 4)));
        set(j, "mttr_ms", ms_or_null(sqlite3_column_int64(s, 5)));
        set(j, "remediation_id", ms_or_null(sqlite3_column_int64(s, 7)));
        const char *state = (const char *)sqlite3_column_text(s, 8);
        set(j, "remediation_state", state != NULL ? json_string(state) : NULL);
        char *diff = asr_view_patch_diff(json_object_get(j, "steps"));
        set(j, "diff", diff != NULL ? json_string(diff) : NULL);
        free(diff);
        *out = j;
    }
    asr_store_reset(s);
    return rc;
}

int asr_view_plans(struct asr_store *st, const char *rem_state, int limit, json_t **out,
                   struct asr_err *err)
{
    sqlite3_stmt *s = asr_store_prepare(st, sql_plans, "plans", err);
    if (s == NULL)
        return ASR_EDB;
    asr_store_bind_str(s, 1, rem_state);
    sqlite3_bind_int(s, 2, limit);
    int64_t ids[500];
    size_t n = 0;
    while (n < sizeof(ids) / sizeof(ids[0]) && sqlite3_step(s) == SQLITE_ROW)
        ids[n++] = sqlite3_column_int64(s, 0);
    asr_store_reset(s);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *p = NULL;
        int rc = asr_view_plan(st, ids[i], &p, err);
        if (rc != 0) {
            json_decref(list);
            return rc;
        }
        json_array_append_new(list, p);
    }
    *out = json_pack("{s:o}", "plans", list);
    return 0;
}
