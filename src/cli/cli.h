/*
 * cli.h - what the `asr` subcommands share: option parsing, the state dir, error output.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error. Errors go to stderr as "asr: <what>: <why>".
 */
#ifndef ASR_CLI_H
#define ASR_CLI_H

#include "asr/config.h"

#include <jansson.h>
#include <stdbool.h>

#define ASR_EXIT_OK 0
#define ASR_EXIT_FAIL 1
#define ASR_EXIT_USAGE 2

/* Options common to most subcommands. */
struct cli_opts {
    const char *config_path; /* -c FILE */
    const char *state_dir;   /* --state-dir DIR */
    bool json;               /* --json */
    const char *ref;         /* --ref REV */
    const char *log_level;   /* --log-level LEVEL */
    const char *report;      /* --report FILE */
    const char *service;     /* --service NAME */
    bool cloudwatch;         /* --cloudwatch */
    const char *status;      /* --status open|resolved */
    int limit;               /* --limit N (0: not given) */
    const char *reason;      /* --reason TEXT */
    bool replan;             /* --replan */
    const char *outcome;     /* --outcome verified|failed */
    bool help;
    char *args[8]; /* positional arguments */
    int nargs;
};

/* Parses argv (after the subcommand name). allowed: letters of the options the command accepts:
 * c config, s state-dir, j json, r ref, l log-level, p report, v service, w cloudwatch,
 * t status, n limit, e reason, R replan, o outcome. Prints usage errors itself and
 * returns ASR_EXIT_USAGE, else 0. */
int cli_parse(int argc, char **argv, const char *allowed, int max_args, const char *usage,
              struct cli_opts *o);
/* Prints "asr: what: why" to stderr. */
void cli_error(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The state dir: --state-dir, else the config's state_dir (loading -c), else $ASR_STATE_DIR,
 * else ./.asr. Returns a new absolute path, or NULL after printing an error. */
char *cli_state_dir(const struct cli_opts *o);
struct asr_store;
/* Opens the store of the state dir (cli_state_dir); NULL after printing "asr: what: why". */
struct asr_store *cli_open_store(const struct cli_opts *o, const char *what);
/* The path of a helper binary installed next to asr (asr-exec, asr-git, asr-llm): the build
 * dir, or the install prefix's bin. Returns 0, or -1 after printing why (as command what). */
int cli_helper_path(const char *name, char *out, size_t cap, const char *what);
/* Prints a JSON value followed by a newline. */
void cli_print_json(json_t *v);
/* Prints a JSON value on one line (JSON lines output). */
void cli_print_json_line(json_t *v);

int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_deploy(int argc, char **argv);
int cmd_rollback(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_templates(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_incidents(int argc, char **argv);
int cmd_incident(int argc, char **argv);
int cmd_approve(int argc, char **argv);
int cmd_reject(int argc, char **argv);
int cmd_kb(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_demo(int argc, char **argv);

#endif
