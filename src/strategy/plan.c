/*
 * plan.c - the planner (see plan.h for the order of strategies).
 */
#include "strategy/plan.h"

#include "asr/audit.h"
#include "execute/actions.h"
#include "store/store_int.h"
#include "strategy/edits.h"
#include "strategy/kb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The steps of a knowledge-base document: a playbook's "steps", or a past incident's
 * "plan.steps" when its fix was verified. NULL when it has none to offer. */
static json_t *doc_steps(const struct asr_kb_hit *h, json_t *body)
{
    if (strcmp(h->kind, ASR_KB_PLAYBOOK) == 0)
        return json_object_get(body, "steps");
    if (!json_is_true(json_object_get(body, "verified")))
        return NULL; /* only a fix that worked is worth repeating */
    return json_object_get(json_object_get(body, "plan"), "steps");
}

/* Checks every step against the whitelist and the service; returns a copy of the steps, or
 * NULL with why set. */
static json_t *checked_steps(json_t *steps, const struct asr_service_cfg *svc, char *why,
                             size_t cap)
{
    if (!json_is_array(steps) || json_array_size(steps) == 0) {
        snprintf(why, cap, "no steps");
        return NULL;
    }
    size_t i;
    json_t *st;
    json_array_foreach(steps, i, st)
    {
        const char *action = json_string_value(json_object_get(st, "action"));
        json_t *args = json_deep_copy(st);
        json_object_del(args, "action");
        struct asr_err err = {0};
        int rc = asr_action_check(action, args, svc, &err);
        json_decref(args);
        if (rc != 0) {
            snprintf(why, cap, "step %zu: %.300s", i + 1, err.msg);
            return NULL;
        }
    }
    return json_deep_copy(steps);
}

static bool needs_approval(const json_t *steps, const struct asr_service_cfg *svc)
{
    if (svc == NULL || svc->policy.approval == NULL)
        return false;
    size_t i;
    json_t *st;
    json_array_foreach(steps, i, st)
    {
        const char *a = json_string_value(json_object_get(st, "action"));
        for (size_t k = 0; a != NULL && svc->policy.approval[k] != NULL; k++)
            if (strcmp(svc->policy.approval[k], a) == 0)
                return true;
    }
    return false;
}

static json_t *steps_of(const char *const *actions, const char *reason)
{
    json_t *v = json_array();
    for (size_t i = 0; actions[i] != NULL; i++) {
        json_t *s = json_pack("{s:s}", "action", actions[i]);
        if (strcmp(actions[i], "escalate") == 0)
            json_object_set_new(s, "reason", json_string(reason));
        json_array_append_new(v, s);
    }
    return v;
}

/* Did the fault begin within the deploy window after a deployment of its service? */
static bool after_deploy(struct asr_store *st, const struct asr_incident *inc, int64_t *dep_id)
{
    struct asr_deployment d = {0};
    struct asr_err err = {0};
    if (asr_store_deployment_last(st, inc->service, &d, &err) != 0)
        return false;
    bool yes = strcmp(d.kind, "deploy") == 0 && d.ended_at > 0 &&
               strcmp(d.outcome, ASR_DEPLOY_SUCCEEDED) == 0 && inc->first_seen >= d.started_at &&
               inc->first_seen - d.ended_at <= ASR_PLAN_DEPLOY_WINDOW_MS;
    *dep_id = d.id;
    asr_deployment_free(&d);
    return yes;
}

int asr_plan_make(struct asr_store *st, const struct asr_incident *inc,
                  const struct asr_plan_ctx *ctx, struct asr_plan *out, struct asr_err *err)
{
    memset(out, 0, sizeof(*out));
    out->incident_id = inc->id;
    const struct asr_service_cfg *svc = ctx != NULL ? ctx->svc : NULL;
    json_t *fields = json_loads(inc->fields != NULL ? inc->fields : "{}", 0, NULL);
    const char *route = json_string_value(json_object_get(fields, "route"));
    struct asr_kb_query q = {.service = inc->service,
                             .signature = inc->signature,
                             .fingerprint = inc->fingerprint,
                             .tmpl = inc->template,
                             .message = inc->line,
                             .fields = inc->fields,
                             .route = route,
                             .limit = 5};
    struct asr_kb_hit *h = NULL;
    size_t n = 0;
    int rc = asr_kb_search(st, &q, &h, &n, err);
    json_decref(fields);
    if (rc != 0)
        return rc;
    out->sources = json_array();
    char skipped[512] = "";
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(
            out->sources, json_pack("{s:s, s:s, s:s, s:f, s:s}", "kind", h[i].kind, "ref", h[i].ref,
                                    "title", h[i].title, "score", h[i].score, "why", h[i].why));
        if (out->steps != NULL || h[i].score < ASR_PLAN_THRESHOLD)
            continue;
        json_t *body = json_loads(h[i].body, 0, NULL);
        char why[400] = "";
        json_t *steps = doc_steps(&h[i], body);
        json_t *ok = steps != NULL ? checked_steps(steps, svc, why, sizeof(why)) : NULL;
        if (ok != NULL) {
            bool pb = strcmp(h[i].kind, ASR_KB_PLAYBOOK) == 0;
            out->steps = ok;
            out->source_doc = h[i].doc_id;
            out->strategy = strdup(pb ? "playbook" : "history");
            out->confidence = h[i].score;
            out->playbook = pb ? strdup(h[i].ref) : NULL;
            json_t *v = pb ? json_object_get(body, "verify")
                           : json_object_get(json_object_get(body, "plan"), "verify");
            out->verify = v != NULL ? json_deep_copy(v) : json_null();
            char r[1024];
            snprintf(r, sizeof(r),
                     "%s %s \"%s\" matches this incident (score %.2f: %s)%s%s. Its %zu step(s) "
                     "are on the whitelist and valid for service %s.",
                     pb ? "Playbook" : "Past incident", h[i].ref, h[i].title, h[i].score, h[i].why,
                     skipped[0] != '\0' ? "; skipped: " : "", skipped, json_array_size(ok),
                     inc->service);
            out->rationale = strdup(r);
        } else if (steps != NULL) {
            size_t l = strlen(skipped);
            snprintf(skipped + l, sizeof(skipped) - l, "%s%s (%s)", l ? ", " : "", h[i].ref, why);
        }
        json_decref(body);
    }
    out->hits = h;
    out->nhits = n;
    if (out->steps == NULL) {
        int64_t dep = 0;
        char r[1024];
        if (strcmp(inc->kind, "exit") == 0 && inc->count >= ASR_PLAN_CRASH_LOOP) {
            static const char *const a[] = {"restart", "rollback", NULL};
            out->steps = steps_of(a, NULL);
            out->strategy = strdup("fallback");
            out->confidence = 0.5;
            snprintf(r, sizeof(r),
                     "No playbook or past fix scored %.2f or more. The service crashed %lld "
                     "times: restart it, and roll back to the last good release if it keeps "
                     "crashing.",
                     ASR_PLAN_THRESHOLD, (long long)inc->count);
        } else if (after_deploy(st, inc, &dep)) {
            static const char *const a[] = {"rollback", NULL};
            out->steps = steps_of(a, NULL);
            out->strategy = strdup("fallback");
            out->confidence = 0.6;
            snprintf(r, sizeof(r),
                     "No playbook or past fix scored %.2f or more, and the fault began within "
                     "%d minutes after deployment %lld: roll back to the last good release.",
                     ASR_PLAN_THRESHOLD, ASR_PLAN_DEPLOY_WINDOW_MS / 60000, (long long)dep);
        } else {
            bool llm = ctx != NULL && ctx->llm != NULL && ctx->llm->provider != NULL &&
                       strcmp(ctx->llm->provider, "none") != 0;
            /* With an LLM this plan stands only until its answer is in (asr_plan_llm_finish). */
            out->ask_llm = llm;
            const char *reason = llm ? "nothing known fits and the LLM has not answered"
                                     : "nothing known fits and no LLM is configured";
            static const char *const a[] = {"escalate", NULL};
            out->steps = steps_of(a, reason);
            out->strategy = strdup("fallback");
            out->confidence = 0.0;
            snprintf(r, sizeof(r),
                     "No playbook or past fix scored %.2f or more, it is not a crash loop and "
                     "it did not follow a deployment: %s, so a person decides.",
                     ASR_PLAN_THRESHOLD, reason);
        }
        out->verify = json_null();
        out->rationale = strdup(r);
    }
    out->requires_approval = needs_approval(out->steps, svc);
    if (out->strategy == NULL || out->rationale == NULL || out->steps == NULL) {
        asr_plan_free(out);
        return asr_err_set(err, ASR_ENOMEM, "plan: out of memory");
    }
    return 0;
}

/* ---- the LLM's patch ---------------------------------------------------------------------- */

int asr_plan_llm_prompt(const struct asr_plan *p, const struct asr_incident *inc,
                        const struct asr_plan_ctx *ctx, struct asr_prompt *out, struct asr_err *err)
{
    const struct asr_service_cfg *svc = ctx != NULL ? ctx->svc : NULL;
    struct asr_prompt_input in = {.inc = inc,
                                  .hits = p->hits,
                                  .nhits = p->nhits,
                                  .repo_dir = svc != NULL ? svc->repo : NULL,
                                  .patch_paths = svc != NULL ? svc->policy.patch_paths : NULL};
    return asr_prompt_build(&in, out, err);
}

/* Model text shown to operators: control characters (ANSI escapes included) become spaces,
 * bidi controls and zero-width characters are dropped, and it is cut at max bytes on a
 * character boundary. The text is valid UTF-8 (the LLM client checks). */
static char *clean_text(const char *s, size_t max)
{
    char *o = malloc(max + 8);
    if (o == NULL)
        return NULL;
    size_t n = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; u[i] != '\0' && n < max;) {
        size_t len = u[i] < 0x80 ? 1 : u[i] < 0xe0 ? 2 : u[i] < 0xf0 ? 3 : 4;
        if (u[i] < 0x20 || u[i] == 0x7f) {
            if (n > 0 && o[n - 1] != ' ')
                o[n++] = ' ';
            i++;
            continue;
        }
        /* U+200B..U+200F, U+202A..U+202E, U+2066..U+2069, U+FEFF */
        bool drop =
            (u[i] == 0xe2 && u[i + 1] == 0x80 &&
             ((u[i + 2] >= 0x8b && u[i + 2] <= 0x8f) || (u[i + 2] >= 0xaa && u[i + 2] <= 0xae))) ||
            (u[i] == 0xe2 && u[i + 1] == 0x81 && u[i + 2] >= 0xa6 && u[i + 2] <= 0xa9) ||
            (u[i] == 0xef && u[i + 1] == 0xbb && u[i + 2] == 0xbf);
        if (u[i] >= 0x80 && n + len > max)
            break;
        for (size_t k = 0; k < len && u[i + k] != '\0'; k++)
            if (!drop)
                o[n++] = (char)u[i + k];
        i += len;
    }
    while (n > 0 && o[n - 1] == ' ')
        n--;
    o[n] = '\0';
    return o;
}

int asr_plan_escalate(struct asr_plan *p, const char *why, struct asr_err *err)
{
    p->ask_llm = false;
    char reason[600];
    snprintf(reason, sizeof(reason), "nothing known fits and %.540s", why);
    static const char *const a[] = {"escalate", NULL};
    json_decref(p->steps);
    p->steps = steps_of(a, reason);
    char r[1024];
    snprintf(r, sizeof(r),
             "No playbook or past fix scored %.2f or more, it is not a crash loop and it did not "
             "follow a deployment, and %.700s. A person decides.",
             ASR_PLAN_THRESHOLD, why);
    free(p->rationale);
    p->rationale = strdup(r);
    free(p->strategy);
    p->strategy = strdup("fallback");
    p->confidence = 0;
    if (p->steps == NULL || p->rationale == NULL || p->strategy == NULL)
        return asr_err_set(err, ASR_ENOMEM, "plan: out of memory");
    return 0;
}

/* Keeps the escalation, with why the LLM gave no usable patch. */
static int llm_refused(struct asr_plan *p, const char *why, struct asr_err *err)
{
    char w[700];
    snprintf(w, sizeof(w), "the LLM gave no usable patch: %.600s", why);
    return asr_plan_escalate(p, w, err);
}

int asr_plan_llm_finish(struct asr_plan *p, const struct asr_plan_ctx *ctx, int rc,
                        const struct asr_llm_reply *reply, const char *errmsg, struct asr_err *err)
{
    const struct asr_service_cfg *svc = ctx != NULL ? ctx->svc : NULL;
    const struct asr_llm_cfg *cfg = ctx != NULL ? ctx->llm : NULL;
    p->ask_llm = false;
    json_decref(p->llm);
    p->llm =
        json_pack("{s:s?, s:s?, s:I, s:I, s:i, s:i, s:I, s:s?}", "provider",
                  cfg != NULL ? cfg->provider : NULL, "model", cfg != NULL ? cfg->model : NULL,
                  "prompt_tokens", (json_int_t)(reply != NULL ? reply->prompt_tokens : -1),
                  "completion_tokens", (json_int_t)(reply != NULL ? reply->completion_tokens : -1),
                  "attempts", reply != NULL ? reply->attempts : 0, "http_status",
                  reply != NULL ? reply->http_status : 0, "elapsed_ms",
                  (json_int_t)(reply != NULL ? reply->elapsed_ms : 0), "error",
                  rc != 0 ? (errmsg != NULL ? errmsg : "llm: failed") : NULL);
    if (p->llm == NULL)
        return asr_err_set(err, ASR_ENOMEM, "plan: out of memory");
    if (rc != 0 || reply == NULL || reply->text == NULL)
        return llm_refused(p, errmsg != NULL ? errmsg : "llm: no answer", err);
    struct asr_edits e = {0};
    struct asr_err perr = {0};
    if (asr_edits_parse(reply->text, reply->len, &e, &perr) != 0)
        return llm_refused(p, perr.msg, err);
    char why[600];
    if (svc == NULL) {
        asr_edits_free(&e);
        return llm_refused(p, "no service configuration, so no patch_paths allow an edit", err);
    }
    if (asr_edits_check_paths(&e, svc->policy.patch_paths, &perr) != 0) {
        asr_edits_free(&e);
        return llm_refused(p, perr.msg, err);
    }
    /* The edits must apply to the service's source as it is now: an edit whose SEARCH is not
     * there (or is there twice) is a plan that would fail at the first step. */
    if (svc->repo != NULL && asr_edits_check(&e, svc->repo, &perr) != 0) {
        asr_edits_free(&e);
        return llm_refused(p, perr.msg, err);
    }
    char *rationale = clean_text(e.rationale, 400);
    json_t *edits = json_array();
    for (size_t i = 0; i < e.n; i++)
        json_array_append_new(edits, json_pack("{s:s, s:s%, s:s%}", "path", e.v[i].path, "search",
                                               e.v[i].search, e.v[i].search_len, "replace",
                                               e.v[i].replace, e.v[i].replace_len));
    json_t *step = json_pack("{s:s, s:o}", "action", "patch", "edits", edits);
    json_t *steps = json_array();
    json_array_append_new(steps, step);
    json_t *ok = rationale != NULL ? checked_steps(steps, svc, why, sizeof(why)) : NULL;
    json_decref(steps);
    if (ok == NULL) {
        int r = rationale == NULL ? asr_err_set(err, ASR_ENOMEM, "plan: out of memory")
                                  : llm_refused(p, why, err);
        free(rationale);
        asr_edits_free(&e);
        return r;
    }
    char files[300] = "";
    for (size_t i = 0; i < e.n; i++) {
        size_t l = strlen(files);
        if (strstr(files, e.v[i].path) == NULL)
            snprintf(files + l, sizeof(files) - l, "%s%s", l ? ", " : "", e.v[i].path);
    }
    char r[1400];
    snprintf(r, sizeof(r),
             "No playbook or past fix scored %.2f or more, it is not a crash loop and it did not "
             "follow a deployment, so the LLM (%s %s) was asked for a patch. It proposes %zu "
             "edit(s) to %s, all inside the service's patch_paths and applying to its source. Its "
             "rationale (the model's words, unchecked): \"%s\"",
             ASR_PLAN_THRESHOLD, cfg != NULL ? cfg->provider : "?", cfg != NULL ? cfg->model : "?",
             e.n, files, rationale[0] != '\0' ? rationale : "(none given)");
    free(rationale);
    asr_edits_free(&e);
    json_decref(p->steps);
    p->steps = ok;
    free(p->strategy);
    p->strategy = strdup("llm");
    p->confidence = ASR_PLAN_LLM_CONFIDENCE;
    free(p->rationale);
    p->rationale = strdup(r);
    p->requires_approval = svc->policy.llm_approval || needs_approval(p->steps, svc);
    if (p->strategy == NULL || p->rationale == NULL)
        return asr_err_set(err, ASR_ENOMEM, "plan: out of memory");
    return 0;
}

json_t *asr_plan_json(const struct asr_plan *p)
{
    return json_pack("{s:I, s:s, s:f, s:O, s:O, s:b, s:O, s:s?, s:s, s:O?}", "incident",
                     (json_int_t)p->incident_id, "strategy", p->strategy, "confidence",
                     p->confidence, "sources", p->sources, "steps", p->steps, "requires_approval",
                     p->requires_approval, "verify", p->verify, "playbook", p->playbook,
                     "rationale", p->rationale, "llm", p->llm);
}

void asr_plan_free(struct asr_plan *p)
{
    if (p == NULL)
        return;
    free(p->strategy);
    free(p->playbook);
    free(p->rationale);
    json_decref(p->sources);
    json_decref(p->steps);
    json_decref(p->verify);
    json_decref(p->llm);
    asr_kb_hits_free(p->hits, p->nhits);
    memset(p, 0, sizeof(*p));
}

/* ---- the plans table ------------------------------------------------------------------------ */

static const char sql_plan_put[] =
    "INSERT INTO plans (incident_id, created_at, strategy, confidence, requires_approval, "
    "source_doc, llm_prompt_tokens, llm_completion_tokens, body) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
static const char sql_plan_latest[] =
    "SELECT id, created_at, status, outcome_at, mttr_ms, source_doc, body FROM plans "
    "WHERE incident_id = ?1 ORDER BY id DESC LIMIT 1";
static const char sql_plan_outcome[] =
    "UPDATE plans SET status = ?2, outcome_at = ?3, mttr_ms = ?4 "
    "WHERE id = ?1 AND status = 'proposed'";

static void bind_opt_int(sqlite3_stmt *s, int i, int64_t v)
{
    if (v >= 0)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

int asr_plan_save(struct asr_store *st, const struct asr_plan *p, int64_t *id, struct asr_err *err)
{
    const char *op = "plan save";
    json_t *j = asr_plan_json(p);
    char *body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (body == NULL)
        return asr_err_set(err, ASR_ENOMEM, "plan: out of memory");
    int rc = asr_store_begin(st, op, err);
    if (rc != 0) {
        free(body);
        return rc;
    }
    sqlite3_stmt *s = asr_store_prepare(st, sql_plan_put, op, err);
    if (s == NULL) {
        rc = ASR_EDB;
    } else {
        sqlite3_bind_int64(s, 1, p->incident_id);
        sqlite3_bind_int64(s, 2, asr_store_now(st));
        asr_store_bind_str(s, 3, p->strategy);
        sqlite3_bind_double(s, 4, p->confidence);
        sqlite3_bind_int(s, 5, p->requires_approval ? 1 : 0);
        bind_opt_int(s, 6, p->source_doc > 0 ? p->source_doc : -1);
        json_t *l = p->llm;
        bind_opt_int(s, 7,
                     l != NULL ? json_integer_value(json_object_get(l, "prompt_tokens")) : -1);
        bind_opt_int(s, 8,
                     l != NULL ? json_integer_value(json_object_get(l, "completion_tokens")) : -1);
        asr_store_bind_str(s, 9, body);
        rc = asr_store_run(st, s, op, err);
        int64_t pid = sqlite3_last_insert_rowid(asr_store_db(st));
        if (rc == 0 && id != NULL)
            *id = pid;
        /* The decision goes into the audit chain in the same transaction as the plan. */
        json_t *acts = json_array();
        size_t i;
        json_t *step;
        json_array_foreach(p->steps, i, step)
            json_array_append(acts, json_object_get(step, "action"));
        json_t *d =
            json_pack("{s:s?, s:f, s:o, s:b}", "strategy", p->strategy, "confidence", p->confidence,
                      "actions", acts, "requires_approval", p->requires_approval);
        if (rc == 0)
            rc = asr_audit_append_json(st, ASR_AUDIT_ASR, "plan.made", p->incident_id, pid, d, err);
        json_decref(d);
    }
    free(body);
    return asr_store_finish(st, rc, op, err);
}

/* The latest plan row: its JSON, and its id and source document. */
static int latest_row(struct asr_store *st, int64_t incident_id, json_t **out, int64_t *plan_id,
                      int64_t *doc, struct asr_err *err)
{
    const char *op = "plan latest";
    *out = NULL;
    sqlite3_stmt *s = asr_store_prepare(st, sql_plan_latest, op, err);
    if (s == NULL)
        return ASR_EDB;
    sqlite3_bind_int64(s, 1, incident_id);
    int r = sqlite3_step(s);
    int rc = 0;
    if (r == SQLITE_DONE) {
        rc = asr_err_set(err, ASR_ENOENT, "plan: incident %lld has no plan yet",
                         (long long)incident_id);
    } else if (r != SQLITE_ROW) {
        rc = asr_store_fail(st, op, err);
    } else {
        json_t *j = json_loads((const char *)sqlite3_column_text(s, 6), 0, NULL);
        if (j == NULL) {
            rc = asr_err_set(err, ASR_EDB, "plan: stored plan of incident %lld is not JSON",
                             (long long)incident_id);
        } else {
            *plan_id = sqlite3_column_int64(s, 0);
            *doc = sqlite3_column_int64(s, 5);
            json_object_set_new(j, "id", json_integer(*plan_id));
            json_object_set_new(j, "created_at", json_integer(sqlite3_column_int64(s, 1)));
            json_object_set_new(j, "status", json_string((const char *)sqlite3_column_text(s, 2)));
            json_object_set_new(j, "outcome_at",
                                sqlite3_column_type(s, 3) == SQLITE_NULL
                                    ? json_null()
                                    : json_integer(sqlite3_column_int64(s, 3)));
            json_object_set_new(j, "mttr_ms",
                                sqlite3_column_type(s, 4) == SQLITE_NULL
                                    ? json_null()
                                    : json_integer(sqlite3_column_int64(s, 4)));
            *out = j;
        }
    }
    asr_store_reset(s);
    return rc;
}

int asr_plan_latest(struct asr_store *st, int64_t incident_id, json_t **out, struct asr_err *err)
{
    int64_t id = 0, doc = 0;
    return latest_row(st, incident_id, out, &id, &doc, err);
}

/* The incident, its plan and the outcome, as a knowledge-base document (kind incident). */
static int put_incident_doc(struct asr_store *st, const struct asr_incident *inc, json_t *plan,
                            bool verified, int64_t mttr_ms, int64_t *doc_id, struct asr_err *err)
{
    json_t *fields = json_loads(inc->fields != NULL ? inc->fields : "{}", 0, NULL);
    const char *route = json_string_value(json_object_get(fields, "route"));
    json_t *body = json_pack("{s:I, s:s, s:s, s:O, s:b, s:I}", "incident", (json_int_t)inc->id,
                             "service", inc->service, "signature", inc->signature, "plan", plan,
                             "verified", verified, "mttr_ms", (json_int_t)mttr_ms);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    char ref[32], title[200];
    snprintf(ref, sizeof(ref), "%lld", (long long)inc->id);
    snprintf(title, sizeof(title), "%s: %.150s (%s)", inc->service, inc->signature,
             verified ? "fixed" : "fix failed");
    const char *sigs[] = {inc->signature, NULL};
    struct asr_kb_doc d = {.kind = ASR_KB_INCIDENT,
                           .ref = ref,
                           .service = inc->service,
                           .fingerprint = inc->fingerprint,
                           .title = title,
                           .signatures = sigs,
                           .tmpl = inc->template,
                           .message = inc->line,
                           .fields = inc->fields,
                           .route = route,
                           .body = text};
    int rc = text != NULL ? asr_kb_put(st, &d, doc_id, err)
                          : asr_err_set(err, ASR_ENOMEM, "plan: out of memory");
    free(text);
    json_decref(body);
    json_decref(fields);
    return rc;
}

int asr_plan_learn(struct asr_store *st, const struct asr_incident *inc, bool verified,
                   int64_t mttr_ms, struct asr_err *err)
{
    const char *op = "plan outcome";
    json_t *plan = NULL;
    int64_t plan_id = 0, doc = 0;
    int rc = latest_row(st, inc->id, &plan, &plan_id, &doc, err);
    if (rc != 0)
        return rc;
    /* The outcome is set once, in one statement: a second report of the same plan changes
     * nothing, so the learned record never counts an outcome twice. It commits together with
     * its audit row. */
    sqlite3_stmt *s = NULL;
    if ((rc = asr_store_begin(st, op, err)) == 0 &&
        (s = asr_store_prepare(st, sql_plan_outcome, op, err)) == NULL)
        rc = ASR_EDB;
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, plan_id);
        asr_store_bind_str(s, 2, verified ? "verified" : "failed");
        sqlite3_bind_int64(s, 3, asr_store_now(st));
        bind_opt_int(s, 4, verified && mttr_ms > 0 ? mttr_ms : -1);
        rc = asr_store_run(st, s, op, err);
    }
    if (rc == 0 && sqlite3_changes(asr_store_db(st)) == 0)
        rc = asr_err_set(err, ASR_EINVAL, "plan: plan %lld of incident %lld is already %s",
                         (long long)plan_id, (long long)inc->id,
                         json_string_value(json_object_get(plan, "status")));
    json_t *d = json_pack("{s:s, s:I}", "outcome", verified ? "verified" : "failed", "mttr_ms",
                          (json_int_t)(verified && mttr_ms > 0 ? mttr_ms : 0));
    if (rc == 0)
        rc = asr_audit_append_json(st, ASR_AUDIT_ASR, "plan.outcome", inc->id, plan_id, d, err);
    json_decref(d);
    rc = asr_store_finish(st, rc, op, err);
    /* Credit the document the plan followed, then keep the incident itself: found by its
     * fingerprint next time, its fix repeated only if it was verified (plan.c doc_steps). */
    if (rc == 0 && doc > 0)
        rc = asr_kb_record_outcome(st, doc, inc->signature, verified, mttr_ms, err);
    int64_t self = 0;
    json_object_del(plan, "status");
    json_object_del(plan, "outcome_at");
    if (rc == 0)
        rc = put_incident_doc(st, inc, plan, verified, mttr_ms, &self, err);
    if (rc == 0 && self > 0 && self != doc)
        rc = asr_kb_record_outcome(st, self, inc->signature, verified, mttr_ms, err);
    json_decref(plan);
    return rc;
}
