/*
 * cmd_plan.c - `asr plan INCIDENT_ID [--json] [-c FILE]`: the plan asr would follow for an
 * incident (src/strategy/plan.c), without running anything. With -c the service's policy is
 * applied (patch_paths, approval); the state dir comes from --state-dir, -c or the defaults.
 */
#include "asr/incident.h"
#include "asr/store.h"
#include "cli/cli.h"
#include "strategy/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: asr plan INCIDENT_ID [--json] [-c FILE] [--state-dir DIR]\n"
    "Shows the plan for an incident: the strategy (playbook, history, fallback), its confidence,\n"
    "what was retrieved and why, the whitelisted steps and whether they need approval.\n";

int cmd_plan(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "csj", 1, USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    char *end = NULL;
    long long id = o.nargs == 1 ? strtoll(o.args[0], &end, 10) : 0;
    if (o.nargs != 1 || *end != '\0' || id <= 0) {
        cli_error("usage", "asr plan needs an incident id (a positive number)");
        fprintf(stderr, "%s", USAGE);
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
    int exit_code = ASR_EXIT_FAIL;
    if (st == NULL)
        goto out;
    if (asr_store_incident_get(st, id, &inc, &err) != 0) {
        cli_error("plan", "%s", err.msg);
        goto out;
    }
    struct asr_plan_ctx ctx = {.svc = cfg != NULL ? asr_config_service(cfg, inc.service) : NULL,
                               .llm = cfg != NULL ? &cfg->llm : NULL};
    if (asr_plan_make(st, &inc, &ctx, &plan, &err) != 0) {
        cli_error("plan", "%s", err.msg);
        goto out;
    }
    if (o.json) {
        json_t *j = asr_plan_json(&plan);
        cli_print_json(j);
        json_decref(j);
    } else {
        printf("plan for incident %lld (%s, %s)\n", id, inc.service, inc.signature);
        printf("  strategy     %s%s%s, confidence %.2f%s\n", plan.strategy,
               plan.playbook != NULL ? ": " : "", plan.playbook != NULL ? plan.playbook : "",
               plan.confidence, plan.requires_approval ? ", needs approval" : "");
        size_t i;
        json_t *s;
        printf("  steps\n");
        json_array_foreach(plan.steps, i, s)
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
        json_array_foreach(plan.sources, i, s)
            printf("    %.3f %s %s: %s\n", json_real_value(json_object_get(s, "score")),
                   json_string_value(json_object_get(s, "kind")),
                   json_string_value(json_object_get(s, "ref")),
                   json_string_value(json_object_get(s, "why")));
        printf("  rationale    %s\n", plan.rationale);
    }
    exit_code = ASR_EXIT_OK;
out:
    asr_plan_free(&plan);
    asr_incident_free(&inc);
    asr_store_close(st);
    asr_config_free(cfg);
    return exit_code;
}
