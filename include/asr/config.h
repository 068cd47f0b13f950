/*
 * config.h - the asr configuration: one YAML file, loaded and validated as a whole.
 *
 * asr_config_load() parses the file with libyaml, checks every key against the schema tables in
 * config.c and returns either a complete, valid struct asr_config or an error naming
 * "FILE:LINE: KEY: REASON" (for example "demo/asr.yaml:12: services[0].health.rise: expected a
 * positive integer, got 'two'"). Unknown keys, wrong types, missing required fields, malformed
 * YAML and commands that cannot be found are all errors. A config is never half-applied: the
 * daemon swaps a new one in only after it has loaded cleanly.
 *
 * Relative paths in the file (repo, playbooks, state_dir) are resolved against the directory
 * that holds the config file, and stored absolute.
 */
#ifndef ASR_CONFIG_H
#define ASR_CONFIG_H

#include "asr/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A NULL-terminated argv, each element a separate allocation owned by the config. */
typedef char **asr_argv;

struct asr_health_cfg {
    char *path;      /* request path of the health probe, default "/health" */
    int interval_ms; /* between probes, default 1000 */
    int timeout_ms;  /* per probe, default 1000 */
    int rise;        /* consecutive successes to be healthy, default 2 */
    int fall;        /* consecutive failures to be unhealthy, default 3 */
};

/* How a crashed slot is restarted (see docs/runtime.md). */
struct asr_restart_cfg {
    int backoff_initial_ms; /* first delay of a crash loop, default 100 */
    int backoff_max_ms;     /* the delay doubles up to this, default 30000 */
    int stable_ms;          /* healthy this long and a crash is not part of a loop, default 1000 */
    int budget;             /* at most this many restarts ... default 20 */
    int window_ms;          /* ... within this window, default 60000 */
};

/* Where a release's build and test commands run (docs/sandbox.md). */
enum asr_sandbox_mode {
    ASR_SANDBOX_BWRAP, /* `sandbox: bwrap`, the default: bubblewrap, or the build is refused */
    ASR_SANDBOX_NONE,  /* `sandbox: none`: unsandboxed, with a warning per build */
};

/* Timeouts of the deploy pipeline, and the sandbox of its build and test steps. */
struct asr_deploy_cfg {
    int build_timeout_ms;   /* default 300000 */
    int test_timeout_ms;    /* default 300000 */
    int healthy_timeout_ms; /* a new slot must be healthy within this, default 10000 */
    int drain_timeout_ms;   /* old slot's in-flight requests get this long, default 10000 */
    int stop_grace_ms;      /* SIGTERM to SIGKILL, default 5000 */
    int verify_window_ms;   /* after a remediation step, the fault must stay away this long,
                               default 3000 */

    /* The build and test sandbox (docs/sandbox.md); each limit 0 means none. */
    enum asr_sandbox_mode sandbox; /* default ASR_SANDBOX_BWRAP */
    int sandbox_memory_mb;         /* RLIMIT_AS of each build/test process, default 4096 */
    int sandbox_procs;             /* RLIMIT_NPROC in the sandbox's user namespace, default 1024 */
    int sandbox_file_mb;           /* RLIMIT_FSIZE, the largest file written, default 1024 */
    const char *config_path;       /* borrowed struct asr_config.path, for the refusal message */
};

struct asr_signature_cfg {
    char *id;
    char *pattern;
    char *severity;  /* "info" | "warning" | "error" | "critical", default "error" */
    asr_argv dedupe; /* captured field names forming the dedupe key; may be empty (NULL-only) */
    int line;        /* line of the entry in the config file, for later error messages */
};

struct asr_policy_cfg {
    asr_argv patch_paths;    /* globs, relative to the repo; empty means no patch is allowed */
    asr_argv approval;       /* action names that need an operator's approval */
    int budget_remediations; /* default 6 */
    int64_t budget_per_ms;   /* default 1h */
    int64_t cooldown_ms;     /* default 10m */
    bool llm_approval;       /* a plan from the LLM needs an operator's approval, default true */
    bool shadow;             /* record what remediation would do and do nothing, default false */
};

/* GitHub pull requests for a service's fixes (docs/patching.md); repo NULL: none are opened. */
struct asr_github_cfg {
    char *api_url; /* the REST API root, default "https://api.github.com" */
    char *repo;    /* "owner/name", or NULL */
    char *base;    /* the branch pull requests target, default "main" */
};

/* asr's commits in a service's repository, and where its fix branches go (docs/patching.md). */
struct asr_git_cfg {
    char *author_name;  /* author and committer of asr's commits and reverts, default "asr" */
    char *author_email; /* default "asr@localhost" */
    char *remote;       /* a remote of the repository, a URL or an absolute path; NULL: the
                           asr/incident-<id> branches are not pushed */
    char *token_env;    /* environment variable holding the token for https pushes and the
                           GitHub API, or NULL */
    struct asr_github_cfg github;
};

struct asr_service_cfg {
    char *name;        /* [a-z0-9][a-z0-9_-]{0,62} */
    char *repo;        /* absolute path to a directory inside a git work tree */
    asr_argv build;    /* may be NULL: nothing to build */
    asr_argv test;     /* may be NULL: no tests */
    asr_argv start;    /* required; "${PORT}" is replaced by the slot's port */
    asr_argv env;      /* extra "NAME=value" entries for build, test and start; may be NULL */
    char *listen_host; /* numeric IPv4/IPv6 address of the proxy, e.g. "127.0.0.1" */
    int listen_port;   /* 1..65535 */
    struct asr_health_cfg health;
    bool log_stdout, log_stderr; /* from `logs: [stdout, stderr]`, default both */
    asr_argv log_files; /* `log_files:` absolute paths followed like `tail -F`; may be NULL */
    struct asr_signature_cfg *signatures;
    size_t nsignatures;
    struct asr_policy_cfg policy;
    struct asr_restart_cfg restart;
    struct asr_deploy_cfg deploy;
    struct asr_git_cfg git;
    int line; /* line of the entry in the config file */
};

struct asr_llm_cfg {
    char *provider;          /* "none" | "openai" | "gemini" | "anthropic", default "none" */
    char *base_url;          /* may be NULL */
    char *model;             /* may be NULL */
    char *api_key_env;       /* name of the environment variable holding the key; may be NULL */
    int timeout_ms;          /* per attempt, default 60000 */
    int max_attempts;        /* attempts per question, default 3 */
    int max_tokens;          /* the model's output limit, default 4096 */
    int backoff_initial_ms;  /* default 500 */
    int backoff_max_ms;      /* longest wait between attempts (and Retry-After), default 30000 */
    int breaker_threshold;   /* consecutive failed questions that open the breaker, default 5 */
    int breaker_cooldown_ms; /* how long the breaker stays open, default 60000 */
};

/* How log lines become incidents (docs/detection.md); one section for all services. */
struct asr_detection_cfg {
    int context_before;      /* lines kept before a fault line, per source, default 20 */
    int context_after;       /* lines collected after it from the same source, default 20 */
    int context_wait_ms;     /* ... waiting at most this long, default 2000 */
    int64_t cooldown_ms;     /* a resolved fingerprint does not reopen for this long, default 5m */
    int64_t group_window_ms; /* a service's incidents within this window share a parent, 30s */
    bool generic;            /* the built-in detectors for errors nobody configured, default true */
    int rate_jump;           /* a known error template reopens when its rate is this many times
                                its recent average (and at least rate_jump per 10 s), default 5 */
};

/* Webhook notifications (docs/notify.md); url NULL: no `notify` block, notifications are off. */
struct asr_notify_cfg {
    char *url;       /* http:// or https:// */
    char *token_env; /* environment variable holding a bearer token for the webhook, or NULL */
    int timeout_ms;  /* per send, default 5000 */
};

/* The operator's HTTP API, metrics and dashboard (docs/api.md); listen_host NULL: no `api` block,
 * no HTTP server (the CLI still reaches the daemon over its unix socket). */
struct asr_api_cfg {
    char *listen_host;  /* numeric IPv4/IPv6 address, e.g. "127.0.0.1" */
    int listen_port;    /* 1..65535 */
    char *token_env;    /* environment variable holding the bearer token, or NULL: mutating
                           calls over HTTP are refused */
    int max_body_bytes; /* request bodies above this get 413, default 1 MiB */
    int line;           /* line of the block in the config file */
};

struct asr_config {
    char *path;      /* the file it was loaded from, as given */
    char *dir;       /* absolute directory of that file */
    char *state_dir; /* absolute; default "<dir>/.asr" */
    char *log_level; /* "debug" | "info" | "warn" | "error", default "info" */
    char *playbooks; /* absolute directory, may be NULL */
    struct asr_llm_cfg llm;
    struct asr_detection_cfg detection;
    struct asr_notify_cfg notify;
    struct asr_api_cfg api;
    struct asr_service_cfg *services;
    size_t nservices;
};

/*
 * Loads and validates the file at path. On success *out owns a new config (free it with
 * asr_config_free) and 0 is returned. On failure returns ASR_ECONFIG (or ASR_ENOMEM/ASR_EIO) and
 * err->msg holds one line "PATH:LINE: KEY: REASON" naming the first problem found.
 */
int asr_config_load(const char *path, struct asr_config **out, struct asr_err *err);

/* asr_config_load without the filesystem and PATH checks when check is false: for offline
 * commands (`asr detect`) that read a config written for another machine. */
int asr_config_load_checked(const char *path, bool check, struct asr_config **out,
                            struct asr_err *err);

/*
 * Same as asr_config_load, but from a buffer (for tests and the fuzz target). `name` stands in
 * for the path in messages, and `dir` is the base for relative paths. Command lookup is skipped
 * when check_commands is false (the fuzz target must not depend on the machine's PATH).
 */
int asr_config_parse(const char *name, const char *dir, const char *text, size_t len,
                     bool check_commands, struct asr_config **out, struct asr_err *err);

/* Frees a config; accepts NULL and a half-built config. */
void asr_config_free(struct asr_config *cfg);

/* The service called name, or NULL. */
const struct asr_service_cfg *asr_config_service(const struct asr_config *cfg, const char *name);

/* Number of elements of a NULL-terminated argv (0 for NULL). */
size_t asr_argv_len(const asr_argv argv);

#endif
