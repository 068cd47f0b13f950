/*
 * cmd_ops.c - the operator commands that talk to a running daemon or read its store:
 * `asr status`, `asr deploy`, `asr rollback`, `asr config check`.
 */
#include "api/control.h"
#include "asr/store.h"
#include "asr/timeutil.h"
#include "cli/cli.h"
#include "detect/detector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char STATUS_USAGE[] =
    "usage: asr status [-c FILE] [--state-dir DIR] [--json]\n"
    "Shows each service: active release, slot, pid, port, health, restarts, last deployment.\n";
static const char DEPLOY_USAGE[] =
    "usage: asr deploy SERVICE [--ref REV] [-c FILE] [--state-dir DIR] [--json]\n"
    "Builds and tests REV (default HEAD) of the service's repository, starts it in the idle slot,\n"
    "switches the proxy once it is healthy and drains the old slot. Needs a running daemon.\n";
static const char ROLLBACK_USAGE[] =
    "usage: asr rollback SERVICE [-c FILE] [--state-dir DIR] [--json]\n"
    "Cuts the service over to its last good release, without rebuilding.\n";
static const char CONFIG_USAGE[] = "usage: asr config check -c FILE\n"
                                   "Validates a config file; prints one line per problem.\n";

static void print_progress(const char *msg)
{
    fprintf(stderr, "asr: %s\n", msg);
}

static void fmt_time(int64_t ms, char *buf, size_t cap)
{
    if (ms <= 0)
        snprintf(buf, cap, "-");
    else
        asr_time_format_utc(ms, buf, cap);
}

/* The last deployment of a service from the store, as JSON (or null). */
static json_t *last_deployment_json(struct asr_store *st, const char *service)
{
    struct asr_deployment dep = {0};
    struct asr_err err = {0};
    if (st == NULL || asr_store_deployment_last(st, service, &dep, &err) != 0)
        return json_null();
    json_t *o =
        json_pack("{s:I, s:s, s:s, s:I, s:I, s:I}", "id", (json_int_t)dep.id, "kind", dep.kind,
                  "outcome", dep.outcome, "to_release", (json_int_t)dep.to_release, "started_at",
                  (json_int_t)dep.started_at, "ended_at", (json_int_t)dep.ended_at);
    if (dep.reason != NULL)
        json_object_set_new(o, "reason", json_string(dep.reason));
    asr_deployment_free(&dep);
    return o;
}

static void print_status_table(json_t *st)
{
    json_t *daemon = json_object_get(st, "daemon");
    const char *api = json_string_value(json_object_get(daemon, "api"));
    if (json_is_object(daemon))
        printf("daemon: running (pid %lld), config %s%s%s\n",
               (long long)json_integer_value(json_object_get(daemon, "pid")),
               json_string_value(json_object_get(daemon, "config")),
               api != NULL ? ", API and dashboard at " : "", api != NULL ? api : "");
    else
        printf("daemon: not running (state from the store)\n");
    printf("%-12s %-10s %-6s %-12s %-8s %-6s %-8s %s\n", "SERVICE", "HEALTH", "SLOT", "COMMIT",
           "PID", "PORT", "RESTARTS", "LAST DEPLOYMENT");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(st, "services"), i, s)
    {
        const char *commit = json_string_value(json_object_get(s, "commit"));
        json_t *dep = json_object_get(s, "last_deployment");
        char depbuf[160] = "-";
        if (json_is_object(dep)) {
            char t[32];
            fmt_time(json_integer_value(json_object_get(dep, "started_at")), t, sizeof(t));
            snprintf(depbuf, sizeof(depbuf), "#%lld %s %s %s",
                     (long long)json_integer_value(json_object_get(dep, "id")),
                     json_string_value(json_object_get(dep, "kind")),
                     json_string_value(json_object_get(dep, "outcome")), t);
        }
        json_t *pid = json_object_get(s, "pid"), *port = json_object_get(s, "port");
        printf("%-12s %-10s %-6s %-12.12s %-8lld %-6lld %-8lld %s\n",
               json_string_value(json_object_get(s, "name")),
               json_string_value(json_object_get(s, "health")),
               json_is_string(json_object_get(s, "active_slot"))
                   ? json_string_value(json_object_get(s, "active_slot"))
                   : "-",
               commit ? commit : "-", pid ? (long long)json_integer_value(pid) : 0LL,
               port ? (long long)json_integer_value(port) : 0LL,
               (long long)json_integer_value(json_object_get(s, "restarts")), depbuf);
        const char *circuit =
            json_string_value(json_object_get(json_object_get(s, "circuit"), "why"));
        if (circuit != NULL)
            printf("  circuit open: %s\n", circuit);
    }
}

int cmd_status(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "csj", 0, STATUS_USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    char *sd = cli_state_dir(&o);
    if (sd == NULL)
        return ASR_EXIT_FAIL;
    struct asr_err err = {0};
    json_t *reply = NULL;
    rc = asr_control_api(sd, "GET", "/api/v1/status", NULL, NULL, &reply, &err);
    struct asr_store *st = NULL;
    int exit_code = ASR_EXIT_OK;
    if (rc == ASR_ENODAEMON) {
        /* No daemon: report what the store knows. */
        if (asr_store_open(sd, &st, &err) != 0) {
            cli_error("status", "%s", err.msg);
            free(sd);
            return ASR_EXIT_FAIL;
        }
        reply = json_pack("{s:b, s:n, s:[]}", "ok", 1, "daemon", "services");
        struct asr_event *ev = NULL;
        size_t n = 0;
        /* Services are those the store has deployments for. */
        struct asr_deployment *deps = NULL;
        size_t nd = 0;
        if (asr_store_deployment_list(st, NULL, 1000, &deps, &nd, &err) == 0) {
            json_t *arr = json_object_get(reply, "services");
            for (size_t i = 0; i < nd; i++) {
                bool seen = false;
                size_t k;
                json_t *e;
                json_array_foreach(arr, k, e) seen |=
                    strcmp(json_string_value(json_object_get(e, "name")), deps[i].service) == 0;
                if (seen)
                    continue;
                json_t *svc = json_pack("{s:s, s:s, s:n, s:i}", "name", deps[i].service, "health",
                                        "stopped", "active_slot", "restarts", 0);
                struct asr_release r = {0};
                if (asr_store_release_last_good(st, deps[i].service, 0, &r, &err) == 0) {
                    json_object_set_new(svc, "commit", json_string(r.commit));
                    asr_release_free(&r);
                }
                json_array_append_new(arr, svc);
            }
            asr_deployments_free(deps, nd);
        }
        asr_events_free(ev, n);
    } else if (rc != 0) {
        cli_error("status", "%s", asr_err_msg(&err, rc));
        free(sd);
        return ASR_EXIT_FAIL;
    } else if (asr_store_open(sd, &st, &err) != 0) {
        st = NULL;
    }
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(reply, "services"), i, s) json_object_set_new(
        s, "last_deployment",
        last_deployment_json(st, json_string_value(json_object_get(s, "name"))));
    if (o.json)
        cli_print_json(reply);
    else
        print_status_table(reply);
    json_decref(reply);
    asr_store_close(st);
    free(sd);
    return exit_code;
}

/* Sends a deploy or rollback request and prints its progress and result. */
static int call_op(const struct cli_opts *o, const char *cmd, const char *service)
{
    char *sd = cli_state_dir(o);
    if (sd == NULL)
        return ASR_EXIT_FAIL;
    json_t *body = json_object();
    if (o->ref != NULL)
        json_object_set_new(body, "ref", json_string(o->ref));
    char path[300];
    snprintf(path, sizeof(path), "/api/v1/services/%s/%s", service, cmd);
    json_t *reply = NULL;
    struct asr_err err = {0};
    int rc = asr_control_api(sd, "POST", path, body, o->json ? NULL : print_progress, &reply, &err);
    free(sd);
    if (rc != 0) {
        cli_error(cmd, "%s", asr_err_msg(&err, rc));
        return ASR_EXIT_FAIL;
    }
    bool ok = json_is_true(json_object_get(reply, "ok"));
    if (o->json) {
        cli_print_json(reply);
    } else if (ok) {
        json_t *r = json_object_get(reply, "result");
        printf("%s %s: %.12s serving from slot %s (deployment #%lld, %lld ms%s)\n", cmd, service,
               json_string_value(json_object_get(r, "commit")),
               json_string_value(json_object_get(r, "slot")),
               (long long)json_integer_value(json_object_get(r, "deployment")),
               (long long)json_integer_value(json_object_get(r, "total_ms")),
               json_is_true(json_object_get(r, "built")) ? ", built and tested" : "");
    }
    if (!ok)
        cli_error(cmd, "%s", json_string_value(json_object_get(reply, "error")));
    json_decref(reply);
    return ok ? ASR_EXIT_OK : ASR_EXIT_FAIL;
}

int cmd_deploy(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "csjr", 1, DEPLOY_USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    if (o.nargs != 1) {
        cli_error("deploy", "missing SERVICE");
        fprintf(stderr, "%s", DEPLOY_USAGE);
        return ASR_EXIT_USAGE;
    }
    return call_op(&o, "deploy", o.args[0]);
}

int cmd_rollback(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "csj", 1, ROLLBACK_USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    if (o.nargs != 1) {
        cli_error("rollback", "missing SERVICE");
        fprintf(stderr, "%s", ROLLBACK_USAGE);
        return ASR_EXIT_USAGE;
    }
    return call_op(&o, "rollback", o.args[0]);
}

int cmd_config(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "c", 1, CONFIG_USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    if (o.nargs != 1 || strcmp(o.args[0], "check") != 0 || o.config_path == NULL) {
        cli_error("config", "expected 'config check -c FILE'");
        fprintf(stderr, "%s", CONFIG_USAGE);
        return ASR_EXIT_USAGE;
    }
    struct asr_config *cfg = NULL;
    struct asr_err err = {0};
    rc = asr_config_load(o.config_path, &cfg, &err);
    if (rc != 0) {
        cli_error("config", "%s", asr_err_msg(&err, rc));
        return ASR_EXIT_FAIL;
    }
    /* The signatures compile only in the detector (Hyperscan and PCRE2): build one, as the
     * daemon would, against a throwaway store. */
    struct asr_store *st = NULL;
    struct asr_detector *det = NULL;
    struct asr_detector_opts dopts = {.cfg = cfg};
    rc = asr_store_open_file(":memory:", &st, &err);
    if (rc == 0) {
        dopts.store = st;
        rc = asr_detector_create(&dopts, &det, &err);
    }
    asr_detector_destroy(det);
    asr_store_close(st);
    if (rc != 0) {
        cli_error("config", "%s", asr_err_msg(&err, rc));
        asr_config_free(cfg);
        return ASR_EXIT_FAIL;
    }
    printf("%s: ok (%zu service%s, state dir %s)\n", o.config_path, cfg->nservices,
           cfg->nservices == 1 ? "" : "s", cfg->state_dir);
    asr_config_free(cfg);
    return ASR_EXIT_OK;
}
