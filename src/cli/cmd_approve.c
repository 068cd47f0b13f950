/*
 * cmd_approve.c - `asr approve INCIDENT_ID` and `asr reject INCIDENT_ID [--reason TEXT]`: an
 * operator's decision on a plan awaiting approval (src/execute/executor.c), sent to the running
 * daemon. An approval never expires: a plan waits until someone decides.
 */
#include "api/control.h"
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char USAGE_APPROVE[] =
    "usage: asr approve INCIDENT_ID [--state-dir DIR] [-c FILE]\n"
    "Approves the plan of an incident that awaits approval; the daemon carries it out now.\n";
static const char USAGE_REJECT[] =
    "usage: asr reject INCIDENT_ID [--reason TEXT] [--state-dir DIR] [-c FILE]\n"
    "Rejects the plan of an incident that awaits approval; the incident stays with a person.\n";

static int decide(int argc, char **argv, bool approve)
{
    const char *usage = approve ? USAGE_APPROVE : USAGE_REJECT;
    struct cli_opts o;
    int rc = cli_parse(argc, argv, approve ? "cs" : "cse", 1, usage, &o);
    if (rc != 0 || o.help)
        return rc;
    char *end = NULL;
    long long id = o.nargs == 1 ? strtoll(o.args[0], &end, 10) : 0;
    if (o.nargs != 1 || *end != '\0' || id <= 0) {
        cli_error("usage", "asr %s needs an incident id (a positive number)",
                  approve ? "approve" : "reject");
        fprintf(stderr, "%s", usage);
        return ASR_EXIT_USAGE;
    }
    char *sd = cli_state_dir(&o);
    if (sd == NULL)
        return ASR_EXIT_FAIL;
    const char *who = getenv("USER");
    json_t *body =
        json_pack("{s:s, s:s*}", "by", who != NULL ? who : "an operator", "reason", o.reason);
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/incidents/%lld/%s", id, approve ? "approve" : "reject");
    json_t *reply = NULL;
    struct asr_err err = {0};
    rc = asr_control_api(sd, "POST", path, body, NULL, &reply, &err);
    free(sd);
    if (rc != 0) {
        cli_error(approve ? "approve" : "reject", "%s%s", asr_err_msg(&err, rc),
                  rc == ASR_ENODAEMON ? " (plans are carried out by the running daemon)" : "");
        return ASR_EXIT_FAIL;
    }
    bool ok = json_is_true(json_object_get(reply, "ok"));
    if (ok)
        printf("incident %lld: plan %s\n", id, approve ? "approved; carrying it out" : "rejected");
    else
        cli_error(approve ? "approve" : "reject", "%s",
                  json_string_value(json_object_get(reply, "error")));
    json_decref(reply);
    return ok ? ASR_EXIT_OK : ASR_EXIT_FAIL;
}

int cmd_approve(int argc, char **argv)
{
    return decide(argc, argv, true);
}

int cmd_reject(int argc, char **argv)
{
    return decide(argc, argv, false);
}
