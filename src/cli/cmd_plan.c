/*
 * cmd_plan.c - `asr plan INCIDENT_ID [--json] [-c FILE] [--replan] [--outcome verified|failed]`.
 *
 * Shows the incident's plan (src/strategy/plan.c): the one the daemon stored, or a new one made
 * now (and stored) when there is none or --replan is given. A new plan that ends with nothing
 * known asks the configured LLM for a patch (synchronously; the daemon asks on its loop). With
 * -c the service's policy applies (patch_paths, approval) and the LLM is the config's; the state
 * dir comes from --state-dir, -c or the defaults. --outcome reports what carrying out the latest
 * plan did, so asr learns from it (asr_plan_learn). Nothing is executed here (issue 5).
 */
#include "asr/incident.h"
#include "asr/store.h"
#include "asr/timeutil.h"
#include "cli/cli.h"
#include "strategy/llm_worker.h"
#include "strategy/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: asr plan INCIDENT_ID [--json] [-c FILE] [--state-dir DIR] [--replan]\n"
    "                [--outcome verified|failed]\n"
    "Shows the plan for an incident: the strategy (playbook, history, llm, fallback), its\n"
    "confidence, what was retrieved and why, the whitelisted steps and whether they need\n"
    "approval. The stored plan is shown; one is made (asking the configured LLM when nothing\n"
    "known fits) when there is none or with --replan. --outcome records whether carrying out\n"
    "the latest plan fixed the fault, so the next plan for the same fault learns from it.\n";

static void print_plan(json_t *p, const struct asr_incident *inc)
{
    const char *pb = json_string_value(json_object_get(p, "playbook"));
    const char *status = json_string_value(json_object_get(p, "status"));
    printf("plan for incident %lld (%s, %s)%s%s\n", (long long)inc->id, inc->service,
           inc->signature, status != NULL ? ", " : "", status != NULL ? status : "");
    printf("  strategy     %s%s%s, confidence %.2f%s\n",
           json_string_value(json_object_get(p, "strategy")), pb != NULL ? ": " : "",
           pb != NULL ? pb : "", json_number_value(json_object_get(p, "confidence")),
           json_is_true(json_object_get(p, "requires_approval")) ? ", needs approval" : "");
    size_t i;
    json_t *s;
    printf("  steps\n");
    json_array_foreach(json_object_get(p, "steps"), i, s)
    {
        json_t *args = json_deep_copy(s);
        json_object_del(args, "action");
        char *a = json_dumps(args, JSON_COMPACT);
        printf("    %zu. %s %s\n", i + 1, json_string_value(json_object_get(s, "action")),
               a != NULL && strcmp(a, "{}") != 0 ? a : "");
        free(a);
        json_decref(args);
    }
    printf("  sources\n");
    json_array_foreach(json_object_get(p, "sources"), i, s) printf(
        "    %.3f %s %s: %s\n", json_number_value(json_object_get(s, "score")),
        json_string_value(json_object_get(s, "kind")), json_string_value(json_object_get(s, "ref")),
        json_string_value(json_object_get(s, "why")));
    json_t *l = json_object_get(p, "llm");
    if (json_is_object(l)) {
        long long pt = json_integer_value(json_object_get(l, "prompt_tokens"));
        long long ct = json_integer_value(json_object_get(l, "completion_tokens"));
        const char *e = json_string_value(json_object_get(l, "error"));
        char tokens[96] = "tokens not reported";
        if (pt >= 0 && ct >= 0)
            snprintf(tokens, sizeof(tokens), "%lld prompt + %lld completion tokens", pt, ct);
        printf("  llm          %s %s: %s, %lld ms, %d attempt(s)%s%s\n",
               json_string_value(json_object_get(l, "provider")),
               json_string_value(json_object_get(l, "model")), tokens,
               (long long)json_integer_value(json_object_get(l, "elapsed_ms")),
               (int)json_integer_value(json_object_get(l, "attempts")), e != NULL ? "; " : "",
               e != NULL ? e : "");
    }
    printf("  rationale    %s\n", json_string_value(json_object_get(p, "rationale")));
}

/* Asks the LLM (p->ask_llm), through one asr-llm worker, and folds its answer into p. A failure
 * to ask at all (no worker, no key) is folded in the same way: the plan escalates and says why. */
static int ask_llm(struct asr_plan *p, const struct asr_incident *inc,
                   const struct asr_plan_ctx *ctx, struct asr_err *err)
{
    struct asr_prompt pr = {0};
    struct asr_llm_reply reply = {0};
    struct asr_err e = {0};
    char exe[4096 + 16];
    int rc =
        cli_helper_path("asr-llm", exe, sizeof(exe), "plan") != 0
            ? asr_err_set(&e, ASR_ESPAWN, "llm: the asr-llm worker is not installed next to asr")
            : asr_plan_llm_prompt(p, inc, ctx, &pr, &e);
    if (rc == 0)
        rc = asr_llm_ask_sync(exe, ctx->llm, pr.system, pr.user, &reply, &e);
    int r = asr_plan_llm_finish(p, ctx, rc, &reply, rc != 0 ? e.msg : NULL, err);
    asr_llm_reply_free(&reply);
    asr_prompt_free(&pr);
    return r;
}

static int record_outcome(struct asr_store *st, const struct asr_incident *inc, const char *what)
{
    bool ok = strcmp(what, "verified") == 0;
    if (!ok && strcmp(what, "failed") != 0) {
        cli_error("usage", "--outcome expects verified or failed, got '%s'", what);
        return ASR_EXIT_USAGE;
    }
    struct asr_err err = {0};
    int64_t mttr = ok ? asr_time_wall_ms() - inc->first_seen : 0;
    if (asr_plan_learn(st, inc, ok, mttr, &err) != 0) {
        cli_error("plan", "%s", err.msg);
        return ASR_EXIT_FAIL;
    }
    printf("incident %lld: the latest plan is %s%s\n", (long long)inc->id, what,
           ok ? "; the same fault will be planned from this fix" : "; it now ranks lower");
    return ASR_EXIT_OK;
}

int cmd_plan(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "csjRo", 1, USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    char *end = NULL;
    long long id = o.nargs == 1 ? strtoll(o.args[0], &end, 10) : 0;
    if (o.nargs != 1 || *end != '\0' || id <= 0) {
        cli_error("usage", "asr plan needs an incident id (a positive number)");
        fprintf(stderr, "%s", USAGE);
        return ASR_EXIT_USAGE;
    }
    if (o.outcome != NULL && o.replan) {
        cli_error("usage", "--outcome and --replan do not go together");
        return ASR_EXIT_USAGE;
    }
    struct asr_err err = {0};
    struct asr_config *cfg = NULL;
    if (o.config_path != NULL && asr_config_load_checked(o.config_path, false, &cfg, &err) != 0) {
        cli_error("config", "%s", err.msg);
        return ASR_EXIT_FAIL;
    }
    struct asr_store *st = cli_open_store(&o, "plan");
    struct asr_incident inc = {0};
    struct asr_plan plan = {0};
    json_t *j = NULL;
    int exit_code = ASR_EXIT_FAIL;
    if (st == NULL)
        goto out;
    if (asr_store_incident_get(st, id, &inc, &err) != 0) {
        cli_error("plan", "%s", err.msg);
        goto out;
    }
    if (o.outcome != NULL) {
        exit_code = record_outcome(st, &inc, o.outcome);
        goto out;
    }
    if (!o.replan) {
        rc = asr_plan_latest(st, id, &j, &err);
        if (rc != 0 && rc != ASR_ENOENT) {
            cli_error("plan", "%s", err.msg);
            goto out;
        }
    }
    if (j == NULL) {
        struct asr_plan_ctx ctx = {.svc = cfg != NULL ? asr_config_service(cfg, inc.service) : NULL,
                                   .llm = cfg != NULL ? &cfg->llm : NULL};
        int64_t pid = 0;
        if (asr_plan_make(st, &inc, &ctx, &plan, &err) != 0 ||
            (plan.ask_llm && ask_llm(&plan, &inc, &ctx, &err) != 0) ||
            asr_plan_save(st, &plan, &pid, &err) != 0) {
            cli_error("plan", "%s", err.msg);
            goto out;
        }
        j = asr_plan_json(&plan);
        json_object_set_new(j, "id", json_integer(pid));
        json_object_set_new(j, "status", json_string("proposed"));
    }
    if (o.json)
        cli_print_json(j);
    else
        print_plan(j, &inc);
    exit_code = ASR_EXIT_OK;
out:
    json_decref(j);
    asr_plan_free(&plan);
    asr_incident_free(&inc);
    asr_store_close(st);
    asr_config_free(cfg);
    return exit_code;
}
