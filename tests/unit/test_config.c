/*
 * test_config.c - the YAML config loader (src/core/config.c): a full config with every key, the
 * defaults, and each class of error with its exact one-line message.
 *
 * Most cases go through asr_config_parse() with check_commands=false, so they do not depend on
 * the machine; the filesystem and PATH checks run against temporary directories made here and
 * against tests/fixtures/config/ (found through ASR_SOURCE_DIR, else through __FILE__).
 */
#include "asr/config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A valid service entry; its lines are 2..5 when it follows "services:". */
#define SVC                                                                                        \
    "  - name: shop\n"                                                                             \
    "    repo: ./app\n"                                                                            \
    "    start: [./shop, --port, \"${PORT}\"]\n"                                                   \
    "    listen: 127.0.0.1:8080\n"

/* Parses text as "t.yaml" in /srv without filesystem checks; returns the error message ("" on
 * success, after checking the config was produced and freeing it). */
static const char *parse_msg(const char *text, int *rc_out)
{
    static struct asr_err err;
    struct asr_config *cfg = (struct asr_config *)1;
    memset(&err, 0, sizeof(err));
    int rc = asr_config_parse("t.yaml", "/srv", text, strlen(text), false, &cfg, &err);
    if (rc_out != NULL)
        *rc_out = rc;
    if (rc == 0) {
        assert_non_null(cfg);
        asr_config_free(cfg);
        return "";
    }
    assert_null(cfg);
    assert_int_equal(err.code, rc);
    assert_null(strchr(err.msg, '\n'));
    return err.msg;
}

#define EXPECT_ERR(text, msg)                                                                      \
    do {                                                                                           \
        int rc_;                                                                                   \
        assert_string_equal(parse_msg(text, &rc_), msg);                                           \
        assert_int_equal(rc_, ASR_ECONFIG);                                                        \
    } while (0)

#define EXPECT_OK(text) assert_string_equal(parse_msg(text, NULL), "")

/* Parses text without checks and returns the config (the caller frees). */
static struct asr_config *parse_ok(const char *text)
{
    struct asr_config *cfg = NULL;
    struct asr_err err = {0};
    int rc = asr_config_parse("t.yaml", "/srv", text, strlen(text), false, &cfg, &err);
    if (rc != 0)
        fail_msg("unexpected error: %s", err.msg);
    assert_non_null(cfg);
    return cfg;
}

static void assert_argv(asr_argv argv, size_t n, ...)
{
    va_list ap;
    assert_non_null(argv);
    assert_int_equal(asr_argv_len(argv), n);
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(argv[i], va_arg(ap, const char *));
    va_end(ap);
}

/* The source tree: $ASR_SOURCE_DIR, else derived from this file's path. */
static const char *source_dir(void)
{
    static char dir[4096];
    const char *env = getenv("ASR_SOURCE_DIR");
    if (env != NULL && env[0] != '\0')
        return env;
    snprintf(dir, sizeof(dir), "%s", __FILE__);
    char *cut = strstr(dir, "/tests/unit/test_config.c");
    if (cut == NULL)
        fail_msg("set ASR_SOURCE_DIR to the source root");
    *cut = '\0';
    return dir;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* A temporary directory with a fake `make` (executable), a `repo/` with an executable
 * `configure` and a non-executable `notes.txt`; removed by rm_tmp(). */
struct tmp {
    char dir[64];
    char path[256];
    char *old_path;
};

static void make_tmp(struct tmp *t)
{
    char p[512];
    snprintf(t->dir, sizeof(t->dir), "/tmp/asr-test-config-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(p, sizeof(p), "%s/bin", t->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/bin/make", t->dir);
    write_file(p, "#!/bin/sh\nexit 0\n", 0755);
    snprintf(p, sizeof(p), "%s/repo", t->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/repo/configure", t->dir);
    write_file(p, "#!/bin/sh\nexit 0\n", 0755);
    snprintf(p, sizeof(p), "%s/repo/notes.txt", t->dir);
    write_file(p, "not a program\n", 0644);
    /* PATH = our bin + the usual, so `make` resolves without the real one being installed. */
    const char *old = getenv("PATH");
    t->old_path = old != NULL ? strdup(old) : NULL;
    snprintf(t->path, sizeof(t->path), "%s/bin:/usr/bin:/bin", t->dir);
    setenv("PATH", t->path, 1);
}

static void rm_tmp(struct tmp *t)
{
    static const char *const files[] = {"bin/make", "repo/configure", "repo/notes.txt",
                                        "asr.yaml", "repo",           "bin"};
    char p[512];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", t->dir, files[i]);
        if (unlink(p) != 0)
            rmdir(p);
    }
    rmdir(t->dir);
    if (t->old_path != NULL)
        setenv("PATH", t->old_path, 1);
    else
        unsetenv("PATH");
    free(t->old_path);
}

/* cmocka fixtures: the temporary directory is removed even when a test fails. */
static int tmp_setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -1;
    make_tmp(t);
    *state = t;
    return 0;
}

static int tmp_teardown(void **state)
{
    rm_tmp(*state);
    free(*state);
    return 0;
}

/* Parses text with filesystem checks, relative to t's directory; returns the message or "". */
static const char *check_msg(const struct tmp *t, const char *text)
{
    static struct asr_err err;
    struct asr_config *cfg = NULL;
    memset(&err, 0, sizeof(err));
    int rc = asr_config_parse("t.yaml", t->dir, text, strlen(text), true, &cfg, &err);
    if (rc == 0) {
        asr_config_free(cfg);
        return "";
    }
    assert_int_equal(rc, ASR_ECONFIG);
    /* Replace the random directory with "TMP" so messages can be compared exactly. */
    static char out[600];
    const char *at = strstr(err.msg, t->dir);
    if (at == NULL)
        return err.msg;
    snprintf(out, sizeof(out), "%.*sTMP%s", (int)(at - err.msg), err.msg, at + strlen(t->dir));
    return out;
}

/* ------------------------------------------------------------------------------------------- */

/* Every key of tests/fixtures/config/full.yaml arrives in the struct, through asr_config_load. */
static void test_full_fixture(void **state)
{
    (void)state; /* the fixture's PATH supplies `make` */
    char path[4200], dir[4096], want[4200];
    struct asr_config *cfg = NULL;
    struct asr_err err = {0};
    snprintf(path, sizeof(path), "%s/tests/fixtures/config/full.yaml", source_dir());
    assert_non_null(realpath(source_dir(), dir));
    int rc = asr_config_load(path, &cfg, &err);
    if (rc != 0)
        fail_msg("load failed: %s", err.msg);

    snprintf(want, sizeof(want), "%s/tests/fixtures/config", dir);
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->dir, want);
    snprintf(want, sizeof(want), "%s/tests/fixtures/config/state", dir);
    assert_string_equal(cfg->state_dir, want);
    assert_string_equal(cfg->log_level, "debug");
    snprintf(want, sizeof(want), "%s/tests/fixtures/config/playbooks", dir);
    assert_string_equal(cfg->playbooks, want);
    assert_string_equal(cfg->llm.provider, "openai");
    assert_string_equal(cfg->llm.base_url, "https://api.example.com/v1");
    assert_string_equal(cfg->llm.model, "gpt-test");
    assert_string_equal(cfg->llm.api_key_env, "ASR_TEST_KEY");
    assert_int_equal(cfg->llm.timeout_ms, 20000);
    assert_int_equal(cfg->llm.max_attempts, 5);
    assert_int_equal(cfg->llm.max_tokens, 2048);
    assert_int_equal(cfg->llm.backoff_initial_ms, 250);
    assert_int_equal(cfg->llm.backoff_max_ms, 8000);
    assert_int_equal(cfg->llm.breaker_threshold, 3);
    assert_int_equal(cfg->llm.breaker_cooldown_ms, 120000);
    assert_int_equal(cfg->nservices, 2);

    const struct asr_service_cfg *s = asr_config_service(cfg, "shop");
    assert_ptr_equal(s, &cfg->services[0]);
    assert_int_equal(s->line, 19);
    snprintf(want, sizeof(want), "%s/tests/fixtures/config/app", dir);
    assert_string_equal(s->repo, want);
    assert_argv(s->build, 1, "make");
    assert_argv(s->test, 2, "make", "test");
    assert_argv(s->start, 5, "./shop", "--port", "${PORT}", "--workers", "4");
    assert_argv(s->env, 3, "MODE=test", "GREETING=hello world", "EMPTY=");
    assert_string_equal(s->listen_host, "127.0.0.1");
    assert_int_equal(s->listen_port, 8080);
    assert_string_equal(s->health.path, "/healthz");
    assert_int_equal(s->health.interval_ms, 200);
    assert_int_equal(s->health.timeout_ms, 500);
    assert_int_equal(s->health.rise, 1);
    assert_int_equal(s->health.fall, 5);
    assert_false(s->log_stdout);
    assert_true(s->log_stderr);
    assert_int_equal(s->nsignatures, 2);
    assert_string_equal(s->signatures[0].id, "FAULT_SQL_INJECTION_TEST");
    assert_string_equal(s->signatures[0].pattern,
                        "FAULT_SQL_INJECTION_TEST route=(?<route>\\S+) reason=(?<reason>\\S+)");
    assert_string_equal(s->signatures[0].severity, "critical");
    assert_argv(s->signatures[0].dedupe, 2, "route", "reason");
    assert_int_equal(s->signatures[0].line, 29);
    assert_string_equal(s->signatures[1].id, "PANIC");
    assert_string_equal(s->signatures[1].severity, "error");
    assert_argv(s->signatures[1].dedupe, 0);
    assert_argv(s->policy.patch_paths, 2, "src/**", "include/*.h");
    assert_argv(s->policy.approval, 1, "patch");
    assert_int_equal(s->policy.budget_remediations, 3);
    assert_int_equal(s->policy.budget_per_ms, 30 * 60000);
    assert_int_equal(s->policy.cooldown_ms, 90000);
    assert_false(s->policy.llm_approval);
    assert_true(s->policy.shadow);
    assert_int_equal(s->restart.backoff_initial_ms, 50);
    assert_int_equal(s->restart.backoff_max_ms, 5000);
    assert_int_equal(s->restart.stable_ms, 2000);
    assert_int_equal(s->restart.budget, 5);
    assert_int_equal(s->restart.window_ms, 30000);
    assert_int_equal(s->deploy.build_timeout_ms, 60000);
    assert_int_equal(s->deploy.test_timeout_ms, 70000);
    assert_int_equal(s->deploy.healthy_timeout_ms, 8000);
    assert_int_equal(s->deploy.drain_timeout_ms, 3000);
    assert_int_equal(s->deploy.stop_grace_ms, 2000);
    assert_int_equal(s->deploy.verify_window_ms, 1500);
    assert_string_equal(s->git.author_name, "Shop Bot");
    assert_string_equal(s->git.author_email, "bot@shop.example");
    snprintf(want, sizeof(want), "%s/tests/fixtures/config/mirror.git", dir);
    assert_string_equal(s->git.remote, want);
    assert_string_equal(s->git.token_env, "ASR_TEST_GITHUB_TOKEN");
    assert_string_equal(s->git.github.api_url, "https://github.example.com/api/v3");
    assert_string_equal(s->git.github.repo, "acme/shop");
    assert_string_equal(s->git.github.base, "release");
    assert_string_equal(cfg->notify.url, "https://hooks.example.com/asr");
    assert_string_equal(cfg->notify.token_env, "ASR_TEST_WEBHOOK_TOKEN");
    assert_int_equal(cfg->notify.timeout_ms, 2500);

    s = asr_config_service(cfg, "api-2");
    assert_ptr_equal(s, &cfg->services[1]);
    snprintf(want, sizeof(want), "%s/tests/fixtures/config/app", dir);
    assert_string_equal(s->repo, want);
    assert_null(s->build);
    assert_null(s->test);
    assert_argv(s->start, 2, "/bin/sh", "run.sh");
    assert_string_equal(s->listen_host, "::1");
    assert_int_equal(s->listen_port, 9090);
    assert_null(asr_config_service(cfg, "nope"));
    asr_config_free(cfg);
}

/* The smallest config gets every default that config.h documents. */
static void test_defaults(void **state)
{
    (void)state;
    struct asr_config *cfg = parse_ok("services:\n" SVC);
    assert_string_equal(cfg->path, "t.yaml");
    assert_string_equal(cfg->dir, "/srv");
    assert_string_equal(cfg->state_dir, "/srv/.asr");
    assert_string_equal(cfg->log_level, "info");
    assert_null(cfg->playbooks);
    assert_string_equal(cfg->llm.provider, "none");
    assert_null(cfg->llm.base_url);
    assert_null(cfg->llm.model);
    assert_null(cfg->llm.api_key_env);
    assert_int_equal(cfg->llm.timeout_ms, 60000);
    assert_int_equal(cfg->llm.max_attempts, 3);
    assert_int_equal(cfg->llm.max_tokens, 4096);
    assert_int_equal(cfg->llm.breaker_threshold, 5);
    const struct asr_service_cfg *s = &cfg->services[0];
    assert_string_equal(s->name, "shop");
    assert_string_equal(s->repo, "/srv/app");
    assert_null(s->build);
    assert_null(s->test);
    assert_null(s->env);
    assert_string_equal(s->health.path, "/health");
    assert_int_equal(s->health.interval_ms, 1000);
    assert_int_equal(s->health.timeout_ms, 1000);
    assert_int_equal(s->health.rise, 2);
    assert_int_equal(s->health.fall, 3);
    assert_true(s->log_stdout);
    assert_true(s->log_stderr);
    assert_int_equal(s->nsignatures, 0);
    assert_argv(s->policy.patch_paths, 0);
    assert_argv(s->policy.approval, 0);
    assert_int_equal(s->policy.budget_remediations, 6);
    assert_int_equal(s->policy.budget_per_ms, 3600000);
    assert_int_equal(s->policy.cooldown_ms, 600000);
    assert_true(s->policy.llm_approval);
    assert_false(s->policy.shadow);
    assert_int_equal(s->restart.backoff_initial_ms, 100);
    assert_int_equal(s->restart.backoff_max_ms, 30000);
    assert_int_equal(s->restart.stable_ms, 1000);
    assert_int_equal(s->restart.budget, 20);
    assert_int_equal(s->restart.window_ms, 60000);
    assert_int_equal(s->deploy.build_timeout_ms, 300000);
    assert_int_equal(s->deploy.test_timeout_ms, 300000);
    assert_int_equal(s->deploy.healthy_timeout_ms, 10000);
    assert_int_equal(s->deploy.drain_timeout_ms, 10000);
    assert_int_equal(s->deploy.stop_grace_ms, 5000);
    assert_int_equal(s->deploy.verify_window_ms, 3000);
    assert_int_equal(s->line, 2);
    asr_config_free(cfg);
}

/* Relative paths are joined with the base directory and normalized; absolute ones are kept. */
static void test_paths(void **state)
{
    (void)state;
    struct asr_config *cfg =
        parse_ok("state_dir: /var/lib/asr/\n"
                 "playbooks: ../shared/./playbooks\n"
                 "services:\n"
                 "  - {name: a, repo: '.', start: [x], listen: 1.2.3.4:1}\n"
                 "  - {name: b, repo: /opt//b/, start: [x], listen: 1.2.3.4:2}\n");
    assert_string_equal(cfg->state_dir, "/var/lib/asr");
    assert_string_equal(cfg->playbooks, "/shared/playbooks");
    assert_string_equal(cfg->services[0].repo, "/srv");
    assert_string_equal(cfg->services[1].repo, "/opt/b");
    asr_config_free(cfg);
}

static void test_unknown_key(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n" SVC "    bild: [make]\n",
               "t.yaml:6: services[0].bild: unknown key (expected one of: name, repo, build, test, "
               "start, env, listen, health, logs, log_files, signatures, policy, restart, deploy, "
               "git)");
    EXPECT_ERR("service:\n" SVC,
               "t.yaml:1: service: unknown key (expected one of: state_dir, log_level, services, "
               "playbooks, llm, detection, notify, api)");
    EXPECT_ERR("services:\n" SVC "    health: {path: /h, rize: 2}\n",
               "t.yaml:6: services[0].health.rize: unknown key (expected one of: path, "
               "interval_ms, timeout_ms, rise, fall)");
    /* A hostile key is shown escaped and cut, never as a second line. */
    EXPECT_ERR("\"a\\nb\": 1\n", "t.yaml:1: a\\x0ab: unknown key (expected one of: state_dir, "
                                 "log_level, services, playbooks, llm, detection, notify, api)");
}

static void test_wrong_type(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n" SVC "    health:\n      rise: two\n",
               "t.yaml:7: services[0].health.rise: expected a positive integer, got 'two'");
    EXPECT_ERR("services:\n" SVC "    health: /health\n",
               "t.yaml:6: services[0].health: expected a mapping, got '/health'");
    EXPECT_ERR("services:\n" SVC "    restart: {stable_ms: -1}\n",
               "t.yaml:6: services[0].restart.stable_ms: expected a non-negative integer, got "
               "'-1'");
    EXPECT_ERR("services:\n" SVC "    deploy: {stop_grace_ms: 99999999999}\n",
               "t.yaml:6: services[0].deploy.stop_grace_ms: expected a non-negative integer no "
               "larger than 2147483647, got '99999999999'");
    EXPECT_ERR("services:\n" SVC "    health: {fall: 0}\n",
               "t.yaml:6: services[0].health.fall: expected a positive integer, got '0'");
    EXPECT_ERR("services: shop\n", "t.yaml:1: services: expected a list of services, got 'shop'");
    EXPECT_ERR("- a\n- b\n", "t.yaml:1: (top level): expected a mapping, got a list");
    EXPECT_ERR("log_level: verbose\nservices:\n" SVC,
               "t.yaml:1: log_level: expected one of debug, info, warn, error, got 'verbose'");
    EXPECT_ERR("llm: {provider: openai, base_url: ftp://x}\nservices:\n" SVC,
               "t.yaml:1: llm.base_url: expected an http:// or https:// URL, got 'ftp://x'");
    EXPECT_ERR("llm: {provider: claude}\nservices:\n" SVC,
               "t.yaml:1: llm.provider: expected one of none, openai, gemini, anthropic, got "
               "'claude'");
    EXPECT_ERR("services:\n" SVC "    logs: [stdout, syslog]\n",
               "t.yaml:6: services[0].logs[1]: expected stdout or stderr, got 'syslog'");
    EXPECT_ERR("services:\n" SVC "    health: {path: health}\n",
               "t.yaml:6: services[0].health.path: expected a request path starting with '/' and "
               "without spaces, got 'health'");
    /* Quoted digits are an integer all the same; a NUL byte is never accepted. */
    EXPECT_OK("services:\n" SVC "    health: {rise: \"4\"}\n");
    EXPECT_ERR("services:\n" SVC "    health: {rise: \"4\\0\"}\n",
               "t.yaml:6: services[0].health.rise: expected a positive integer, got a value with a "
               "NUL byte");
}

/* YAML's null (empty, ~, null) is no value of any key; quoting makes it a string. */
static void test_null_values(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n  - name:\n    repo: .\n    start: [x]\n    listen: 1.2.3.4:5\n",
               "t.yaml:2: services[0].name: expected a name matching [a-z0-9][a-z0-9_-]{0,62}, got "
               "an empty value");
    EXPECT_ERR("services:\n" SVC "    test: [make, ~]\n",
               "t.yaml:6: services[0].test[1]: expected a string, got an empty value");
    EXPECT_OK("services:\n" SVC "    test: [make, \"null\"]\n");
}

static void test_missing_required(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n  - name: shop\n    repo: .\n    listen: 127.0.0.1:80\n",
               "t.yaml:2: services[0]: missing required key 'start'");
    EXPECT_ERR("state_dir: /x\n", "t.yaml:1: (top level): missing required key 'services'");
    EXPECT_ERR("services:\n" SVC "    signatures:\n      - {pattern: x}\n",
               "t.yaml:7: services[0].signatures[0]: missing required key 'id'");
    EXPECT_ERR("services: []\n", "t.yaml:1: services: expected at least one service");
}

static void test_malformed_yaml(void **state)
{
    (void)state;
    EXPECT_ERR(
        "services:\n  - name: shop\n   repo: x\n",
        "t.yaml:3: yaml: did not find expected '-' indicator (while parsing a block collection "
        "at line 2)");
    EXPECT_ERR("services: [a, b\n",
               "t.yaml:2: yaml: did not find expected ',' or ']' (while parsing a flow sequence at "
               "line 1)");
    EXPECT_ERR("a: 1\nb: 2\nc: \"\x01\"\n", "t.yaml:3: yaml: control characters are not allowed");
    EXPECT_ERR("a: 1\n---\nb: 2\n",
               "t.yaml:2: yaml: more than one document (a config is one document)");
    EXPECT_ERR("", "t.yaml:1: (top level): empty configuration (expected a mapping with at least "
                   "'services')");
    EXPECT_ERR("# only a comment\n", "t.yaml:1: (top level): empty configuration (expected a "
                                     "mapping with at least 'services')");
    EXPECT_ERR("? [a]\n: 1\n", "t.yaml:1: (top level): expected a plain key, got a list");
}

static void test_command_not_found(void **state)
{
    struct tmp *t = *state;
    const char *head = "services:\n  - name: shop\n    repo: repo\n    listen: 127.0.0.1:8080\n";
    char text[1024];
    snprintf(text, sizeof(text),
             "%s    build: [make]\n    test: [nosuchtool-asr, -v]\n"
             "    start: [./shop]\n",
             head);
    assert_string_equal(check_msg(t, text),
                        "t.yaml:6: services[0].test: command 'nosuchtool-asr' not found in PATH");
    /* Found in PATH; a relative start command may be missing (the build makes it). */
    snprintf(text, sizeof(text), "%s    build: [make]\n    start: [./shop, \"${PORT}\"]\n", head);
    assert_string_equal(check_msg(t, text), "");
    /* A relative build command must exist in the repo and be executable. */
    snprintf(text, sizeof(text), "%s    build: [./configure]\n    start: [./shop]\n", head);
    assert_string_equal(check_msg(t, text), "");
    snprintf(text, sizeof(text), "%s    build: [./autogen.sh]\n    start: [./shop]\n", head);
    assert_string_equal(check_msg(t, text), "t.yaml:5: services[0].build: command "
                                            "'./autogen.sh' not found in repo 'TMP/repo'");
    snprintf(text, sizeof(text), "%s    test: [./notes.txt]\n    start: [./shop]\n", head);
    assert_string_equal(
        check_msg(t, text),
        "t.yaml:5: services[0].test: command './notes.txt' is not an executable file");
    /* Absolute commands must exist and be executable. */
    snprintf(text, sizeof(text), "%s    start: [/nonexistent/asr-shop]\n", head);
    assert_string_equal(
        check_msg(t, text),
        "t.yaml:5: services[0].start: command '/nonexistent/asr-shop' does not exist");
    snprintf(text, sizeof(text), "%s    start: [%s/repo/notes.txt]\n", head, t->dir);
    assert_string_equal(check_msg(t, text), "t.yaml:5: services[0].start: command "
                                            "'TMP/repo/notes.txt' is not an executable file");
    /* Without checks nothing is looked up. */
    EXPECT_OK("services:\n  - {name: a, repo: /nonexistent, build: [nosuchtool-asr], "
              "start: [/nonexistent/x], listen: 1.2.3.4:5}\n");
}

static void test_repo_checked(void **state)
{
    struct tmp *t = *state;
    assert_string_equal(check_msg(t, "services:\n  - {name: a, repo: ./nope, start: [./x], "
                                     "listen: 1.2.3.4:5}\n"),
                        "t.yaml:2: services[0].repo: directory 'TMP/nope' does not exist");
    assert_string_equal(check_msg(t, "services:\n  - {name: a, repo: repo/configure, "
                                     "start: [./x], listen: 1.2.3.4:5}\n"),
                        "t.yaml:2: services[0].repo: 'TMP/repo/configure' is not a directory");
}

/* asr_config_load reads the file and takes its directory as the base. */
static void test_load_file(void **state)
{
    struct tmp *t = *state;
    char path[256];
    struct asr_config *cfg = NULL;
    struct asr_err err = {0};
    snprintf(path, sizeof(path), "%s/asr.yaml", t->dir);
    write_file(path,
               "services:\n  - {name: a, repo: repo, build: [./configure], start: [./a],"
               " listen: 1.2.3.4:5}\n",
               0644);
    assert_int_equal(asr_config_load(path, &cfg, &err), 0);
    char real[4096], want[4200];
    assert_non_null(realpath(t->dir, real));
    snprintf(want, sizeof(want), "%s/repo", real);
    assert_string_equal(cfg->services[0].repo, want);
    asr_config_free(cfg);

    write_file(path,
               "services:\n  - {name: a, repo: repo, build: [nosuchtool-asr], "
               "start: [./a], listen: 1.2.3.4:5}\n",
               0644);
    assert_int_equal(asr_config_load(path, &cfg, &err), ASR_ECONFIG);
    assert_null(cfg);
    char msg[512];
    snprintf(msg, sizeof(msg),
             "%s:2: services[0].build: command 'nosuchtool-asr' not found in PATH", path);
    assert_string_equal(err.msg, msg);

    snprintf(path, sizeof(path), "%s/missing.yaml", t->dir);
    assert_int_equal(asr_config_load(path, &cfg, &err), ASR_EIO);
    snprintf(msg, sizeof(msg), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err.msg, msg);
}

static void test_duplicate_key(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n" SVC "    repo: ./other\n",
               "t.yaml:6: services[0].repo: duplicate key (first at line 3)");
    EXPECT_ERR("log_level: info\nlog_level: warn\nservices:\n" SVC,
               "t.yaml:2: log_level: duplicate key (first at line 1)");
}

static void test_duplicate_service(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n" SVC "  - name: shop\n    repo: .\n    start: [x]\n"
               "    listen: 127.0.0.1:9000\n",
               "t.yaml:6: services[1].name: duplicate service name 'shop' (first at line 2)");
}

static void test_duplicate_listen(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n" SVC "  - name: cart\n    repo: .\n    start: [x]\n"
               "    listen: 127.0.0.1:8080\n",
               "t.yaml:9: services[1].listen: duplicate listen address '127.0.0.1:8080' (also used "
               "by service 'shop')");
    EXPECT_ERR("services:\n" SVC "  - {name: cart, repo: ., start: [x], listen: 0.0.0.0:8080}\n",
               "t.yaml:6: services[1].listen: listen address '0.0.0.0:8080' overlaps "
               "'127.0.0.1:8080' of service 'shop'");
    EXPECT_ERR("services:\n  - {name: a, repo: ., start: [x], listen: '[::1]:80'}\n"
               "  - {name: b, repo: ., start: [x], listen: '[0:0::1]:80'}\n",
               "t.yaml:3: services[1].listen: duplicate listen address '[::1]:80' (also used by "
               "service 'a')");
    EXPECT_ERR("services:\n" SVC "  - {name: cart, repo: ., start: [x], listen: '[::]:8080'}\n",
               "t.yaml:6: services[1].listen: listen address '[::]:8080' overlaps "
               "'127.0.0.1:8080' of service 'shop'");
    EXPECT_OK("services:\n" SVC "  - {name: cart, repo: ., start: [x], listen: 127.0.0.2:8080}\n");
    EXPECT_OK("services:\n  - {name: a, repo: ., start: [x], listen: '0.0.0.0:80'}\n"
              "  - {name: b, repo: ., start: [x], listen: '[::1]:80'}\n");
}

static void test_bad_port(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n  - {name: a, repo: ., start: [x], listen: '127.0.0.1:0'}\n",
               "t.yaml:2: services[0].listen: port must be an integer in 1..65535, got "
               "'127.0.0.1:0'");
    EXPECT_ERR("services:\n  - {name: a, repo: ., start: [x], listen: '127.0.0.1:65536'}\n",
               "t.yaml:2: services[0].listen: port must be an integer in 1..65535, got "
               "'127.0.0.1:65536'");
    EXPECT_ERR("services:\n  - {name: a, repo: ., start: [x], listen: '127.0.0.1:http'}\n",
               "t.yaml:2: services[0].listen: port must be an integer in 1..65535, got "
               "'127.0.0.1:http'");
    EXPECT_ERR("services:\n  - {name: a, repo: ., start: [x], listen: 8080}\n",
               "t.yaml:2: services[0].listen: expected HOST:PORT like 127.0.0.1:8080, got '8080'");
    EXPECT_ERR("services:\n  - {name: a, repo: ., start: [x], listen: 'localhost:80'}\n",
               "t.yaml:2: services[0].listen: host is not a numeric IPv4 address (names are not "
               "resolved), got 'localhost:80'");
    struct asr_config *cfg = parse_ok("services:\n  - {name: a, repo: ., start: [x], "
                                      "listen: '10.0.0.1:65535'}\n");
    assert_string_equal(cfg->services[0].listen_host, "10.0.0.1");
    assert_int_equal(cfg->services[0].listen_port, 65535);
    asr_config_free(cfg);
}

/* The operator's API (docs/api.md): off without the block, defaults, and what is refused. */
static void test_api_block(void **state)
{
    (void)state;
    struct asr_config *cfg = parse_ok("services:\n" SVC);
    assert_null(cfg->api.listen_host);
    asr_config_free(cfg);
    cfg = parse_ok("services:\n" SVC "api: {listen: 127.0.0.1:7700, token_env: ASR_API_TOKEN}\n");
    assert_string_equal(cfg->api.listen_host, "127.0.0.1");
    assert_int_equal(cfg->api.listen_port, 7700);
    assert_string_equal(cfg->api.token_env, "ASR_API_TOKEN");
    assert_int_equal(cfg->api.max_body_bytes, 1024 * 1024);
    asr_config_free(cfg);
    cfg = parse_ok("services:\n" SVC "api: {listen: '[::1]:7700', max_body_bytes: 4096}\n");
    assert_string_equal(cfg->api.listen_host, "::1");
    assert_null(cfg->api.token_env);
    assert_int_equal(cfg->api.max_body_bytes, 4096);
    asr_config_free(cfg);
    EXPECT_ERR("services:\n" SVC "api: {token_env: X}\n",
               "t.yaml:6: api: missing required key 'listen'");
    EXPECT_ERR("services:\n" SVC "api: {listen: 'localhost:7700'}\n",
               "t.yaml:6: api.listen: host is not a numeric IPv4 address (names are not "
               "resolved), got 'localhost:7700'");
    EXPECT_ERR("services:\n" SVC "api: {listen: 127.0.0.1:7700, token_env: 'A B'}\n",
               "t.yaml:6: api.token_env: expected an identifier matching [A-Za-z_][A-Za-z0-9_]*, "
               "got 'A B'");
    EXPECT_ERR(
        "services:\n" SVC "api: {listen: 127.0.0.1:7700, max_body_bytes: 10}\n",
        "t.yaml:6: api.max_body_bytes: expected an integer from 1024 to 268435456, got '10'");
    EXPECT_ERR(
        "services:\n" SVC "api: {listen: 0.0.0.0:8080}\n",
        "t.yaml:6: api.listen: the API's address overlaps '127.0.0.1:8080' of service 'shop'");
    EXPECT_ERR(
        "services:\n" SVC "api: {listen: 127.0.0.1:7700, tokn: X}\n",
        "t.yaml:6: api.tokn: unknown key (expected one of: listen, token_env, max_body_bytes)");
}

static void test_ipv6_listen(void **state)
{
    (void)state;
    struct asr_config *cfg = parse_ok("services:\n  - {name: a, repo: ., start: [x], "
                                      "listen: '[0:0:0:0:0:0:0:1]:8443'}\n");
    assert_string_equal(cfg->services[0].listen_host, "::1");
    assert_int_equal(cfg->services[0].listen_port, 8443);
    asr_config_free(cfg);
    EXPECT_ERR("services:\n  - {name: a, repo: ., start: [x], listen: '::1:8080'}\n",
               "t.yaml:2: services[0].listen: IPv6 addresses go in brackets, like \"[::1]:8080\", "
               "got '::1:8080'");
    EXPECT_ERR("services:\n  - {name: a, repo: ., start: [x], listen: '[::1]8080'}\n",
               "t.yaml:2: services[0].listen: expected [IPV6]:PORT like [::1]:8080, got "
               "'[::1]8080'");
    EXPECT_ERR("services:\n  - {name: a, repo: ., start: [x], listen: '[fe80::1%eth0]:80'}\n",
               "t.yaml:2: services[0].listen: host is not a numeric IPv6 address, got "
               "'[fe80::1%eth0]:80'");
    /* Unquoted, a bracket opens a YAML list. */
    EXPECT_ERR("services:\n  - name: a\n    repo: .\n    start: [x]\n    listen: [::1]:80\n",
               "t.yaml:5: yaml: did not find expected node content (while parsing a flow node at "
               "line 5)");
    EXPECT_ERR("services:\n  - name: a\n    repo: .\n    start: [x]\n    listen: [fe80::1]\n",
               "t.yaml:5: services[0].listen: expected HOST:PORT, got a list (quote IPv6 "
               "addresses: \"[::1]:8080\")");
}

static void test_bad_duration(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n" SVC "    policy: {cooldown: 10}\n",
               "t.yaml:6: services[0].policy.cooldown: expected a duration like 500ms, 30s, 10m, "
               "1h or 1d, got '10'");
    EXPECT_ERR("services:\n" SVC "    policy:\n      budget: {remediations: 2, per: 1 hour}\n",
               "t.yaml:7: services[0].policy.budget.per: expected a duration greater than zero "
               "like 30s, 10m or 1h, got '1 hour'");
    EXPECT_ERR("services:\n" SVC "    policy: {budget: {per: 0s}}\n",
               "t.yaml:6: services[0].policy.budget.per: expected a duration greater than zero "
               "like 30s, 10m or 1h, got '0s'");
    EXPECT_ERR("services:\n" SVC "    policy: {cooldown: 99999999999999999999d}\n",
               "t.yaml:6: services[0].policy.cooldown: expected a duration like 500ms, 30s, 10m, "
               "1h or 1d, got '99999999999999999999d'");
    struct asr_config *cfg = parse_ok("services:\n" SVC "    policy: {cooldown: 0s}\n");
    assert_int_equal(cfg->services[0].policy.cooldown_ms, 0);
    asr_config_free(cfg);
}

static void test_bad_name(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n  - {name: Shop, repo: ., start: [x], listen: 1.2.3.4:5}\n",
               "t.yaml:2: services[0].name: expected a name matching [a-z0-9][a-z0-9_-]{0,62}, "
               "got 'Shop'");
    EXPECT_ERR("services:\n  - {name: -shop, repo: ., start: [x], listen: 1.2.3.4:5}\n",
               "t.yaml:2: services[0].name: expected a name matching [a-z0-9][a-z0-9_-]{0,62}, "
               "got '-shop'");
    EXPECT_ERR("services:\n  - {name: "
               "a123456789012345678901234567890123456789012345678901234567890123, "
               "repo: ., start: [x], listen: 1.2.3.4:5}\n",
               "t.yaml:2: services[0].name: expected a name matching [a-z0-9][a-z0-9_-]{0,62}, "
               "got 'a123456789012345678901234567890123456789...'");
    EXPECT_OK("services:\n  - {name: 0shop_2-b, repo: ., start: [x], listen: 1.2.3.4:5}\n");
}

static void test_bad_var(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n  - name: a\n    repo: .\n    start: [x, \"${HOME}/y\"]\n"
               "    listen: 1.2.3.4:5\n",
               "t.yaml:4: services[0].start[1]: unknown variable '${HOME}' (only ${PORT} is "
               "expanded)");
    EXPECT_ERR("services:\n" SVC "    build: [make, \"PORT=${PORT}\"]\n",
               "t.yaml:6: services[0].build[1]: variable '${PORT}' is not expanded here (only "
               "${PORT}, and only in start)");
    EXPECT_ERR("services:\n" SVC "    test: [make, \"${PORT\"]\n",
               "t.yaml:6: services[0].test[1]: unterminated '${' in '${PORT'");
    EXPECT_ERR("services:\n" SVC "    env: [\"A=${PORT}\"]\n",
               "t.yaml:6: services[0].env[0]: variable '${PORT}' is not expanded here (only "
               "${PORT}, and only in start)");
    /* $PORT without braces is plain text, and ${PORT} may appear several times in start. */
    EXPECT_OK("services:\n" SVC "    build: [echo, $PORT]\n");
    EXPECT_OK("services:\n  - {name: a, repo: ., start: [x, \"${PORT}:${PORT}\"], "
              "listen: 1.2.3.4:5}\n");
}

static void test_argv(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n" SVC "    build: []\n",
               "t.yaml:6: services[0].build: empty command (expected a list like [make, test])");
    EXPECT_ERR("services:\n" SVC "    test: make test\n",
               "t.yaml:6: services[0].test: expected a list like [make, test] (commands are argv "
               "lists, not shell strings), got 'make test'");
    EXPECT_ERR("services:\n" SVC "    test: [\"\", x]\n",
               "t.yaml:6: services[0].test[0]: empty command name");
    EXPECT_ERR("services:\n" SVC "    test: [make, [a]]\n",
               "t.yaml:6: services[0].test[1]: expected a string, got a list");
    /* Numbers and booleans are kept as their text. */
    struct asr_config *cfg = parse_ok("services:\n" SVC "    test: [run, 8080, 1.5, true, '']\n");
    assert_argv(cfg->services[0].test, 5, "run", "8080", "1.5", "true", "");
    asr_config_free(cfg);
}

static void test_env(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n" SVC "    env: [A=1, 1B=2]\n",
               "t.yaml:6: services[0].env[1]: expected NAME=value with NAME matching "
               "[A-Za-z_][A-Za-z0-9_]*, got '1B=2'");
    EXPECT_ERR("services:\n" SVC "    env: [NOVALUE]\n",
               "t.yaml:6: services[0].env[0]: expected NAME=value with NAME matching "
               "[A-Za-z_][A-Za-z0-9_]*, got 'NOVALUE'");
    EXPECT_ERR("services:\n" SVC "    env: [A=1, B=2, A=3]\n",
               "t.yaml:6: services[0].env[2]: duplicate variable 'A'");
    EXPECT_OK("services:\n" SVC "    env: [AB=1, A=2, _x=a=b]\n");
}

static void test_signatures(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n" SVC "    signatures:\n      - {id: X, pattern: a}\n"
               "      - {id: Y, pattern: b}\n      - {id: X, pattern: c}\n",
               "t.yaml:9: services[0].signatures[2].id: duplicate signature id 'X' (first at line "
               "7)");
    EXPECT_ERR("services:\n" SVC "    signatures: [{id: X, pattern: ''}]\n",
               "t.yaml:6: services[0].signatures[0].pattern: expected a non-empty string, got ''");
    EXPECT_ERR(
        "services:\n" SVC "    signatures: [{id: X, pattern: a, severity: fatal}]\n",
        "t.yaml:6: services[0].signatures[0].severity: expected one of info, warning, error, "
        "critical, got 'fatal'");
    EXPECT_ERR("services:\n" SVC "    signatures: [{id: 'has space', pattern: a}]\n",
               "t.yaml:6: services[0].signatures[0].id: expected an identifier like "
               "FAULT_SQL_TIMEOUT ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}), got 'has space'");
    EXPECT_ERR("services:\n" SVC "    signatures: [{id: X, pattern: a, dedupe: [route, 'a-b']}]\n",
               "t.yaml:6: services[0].signatures[0].dedupe[1]: expected an identifier matching "
               "[A-Za-z_][A-Za-z0-9_]*, got 'a-b'");
    EXPECT_ERR("services:\n" SVC "    signatures: {id: X}\n",
               "t.yaml:6: services[0].signatures: expected a list of {id, pattern, severity, "
               "dedupe} mappings, got a mapping");
    /* The same id in two services is fine. */
    EXPECT_OK("services:\n" SVC "    signatures: [{id: X, pattern: a}]\n"
              "  - {name: b, repo: ., start: [x], listen: 1.2.3.4:5, "
              "signatures: [{id: X, pattern: a}]}\n");
}

/* The detection section and log_files: defaults, values, bounds. */
static void test_detection(void **state)
{
    (void)state;
    struct asr_config *cfg = parse_ok("services:\n" SVC);
    assert_int_equal(cfg->detection.context_before, 20);
    assert_int_equal(cfg->detection.context_after, 20);
    assert_int_equal(cfg->detection.context_wait_ms, 2000);
    assert_int_equal(cfg->detection.cooldown_ms, 300000);
    assert_int_equal(cfg->detection.group_window_ms, 30000);
    assert_true(cfg->detection.generic);
    assert_int_equal(cfg->detection.rate_jump, 5);
    assert_null(cfg->services[0].log_files);
    asr_config_free(cfg);
    cfg = parse_ok("detection: {context_before: 3, context_after: 0, cooldown_ms: 1m, generic: "
                   "false, group_window_ms: 0s}\nservices:\n" SVC
                   "    log_files: [shop.log, /var/log/x.log]\n");
    assert_int_equal(cfg->detection.context_before, 3);
    assert_int_equal(cfg->detection.context_after, 0);
    assert_int_equal(cfg->detection.cooldown_ms, 60000);
    assert_int_equal(cfg->detection.group_window_ms, 0);
    assert_false(cfg->detection.generic);
    assert_string_equal(cfg->services[0].log_files[0], "/srv/shop.log");
    assert_string_equal(cfg->services[0].log_files[1], "/var/log/x.log");
    assert_null(cfg->services[0].log_files[2]);
    asr_config_free(cfg);
    EXPECT_ERR("detection: {generic: yes}\nservices:\n" SVC,
               "t.yaml:1: detection.generic: expected true or false, got 'yes'");
    EXPECT_ERR("detection: {context_before: 5000}\nservices:\n" SVC,
               "t.yaml:1: detection: context_before and context_after are at most 1000 lines");
    EXPECT_ERR("detection: {rate_jump: 1}\nservices:\n" SVC,
               "t.yaml:1: detection.rate_jump: expected a positive integer, got '1'");
    EXPECT_ERR("services:\n" SVC "    log_files: ['']\n",
               "t.yaml:6: services[0].log_files[0]: expected a non-empty file path, got ''");
}

static void test_policy(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n" SVC "    policy: {patch_paths: [src/**, ../etc/*]}\n",
               "t.yaml:6: services[0].policy.patch_paths[1]: expected a glob relative to the repo "
               "(no leading '/' and no '..' component), got '../etc/*'");
    EXPECT_ERR("services:\n" SVC "    policy: {patch_paths: [/etc/*]}\n",
               "t.yaml:6: services[0].policy.patch_paths[0]: expected a glob relative to the repo "
               "(no leading '/' and no '..' component), got '/etc/*'");
    EXPECT_ERR("services:\n" SVC "    policy: {approval: [Patch]}\n",
               "t.yaml:6: services[0].policy.approval[0]: expected an action name matching "
               "[a-z][a-z0-9_]*, got 'Patch'");
    EXPECT_ERR("services:\n" SVC "    restart: {backoff_initial_ms: 500, backoff_max_ms: 100}\n",
               "t.yaml:6: services[0].restart: backoff_max_ms (100) is less than "
               "backoff_initial_ms (500)");
    EXPECT_OK("services:\n" SVC "    policy: {patch_paths: ['src/..x/**', 'a..b']}\n");
    EXPECT_ERR("services:\n" SVC "    policy: {llm_approval: no}\n",
               "t.yaml:6: services[0].policy.llm_approval: expected true or false, got 'no'");
    EXPECT_ERR("llm: {provider: openai}\nservices:\n" SVC,
               "t.yaml:1: llm: model: required when provider is openai");
    EXPECT_ERR("llm: {provider: gemini, model: m, max_attempts: 11}\nservices:\n" SVC,
               "t.yaml:1: llm: max_attempts is at most 10");
    EXPECT_ERR("llm: {provider: gemini, model: m, backoff_initial_ms: 900, backoff_max_ms: 800}\n"
               "services:\n" SVC,
               "t.yaml:1: llm: backoff_max_ms (800) is less than backoff_initial_ms (900)");
    EXPECT_OK("llm: {provider: none}\nservices:\n" SVC);
}

/* Anchors and aliases are rejected outright: they can expand a small file into a huge tree. */
static void test_alias_rejected(void **state)
{
    (void)state;
    EXPECT_ERR("services:\n  - &svc {name: a, repo: ., start: [x], listen: 1.2.3.4:5}\n  - *svc\n",
               "t.yaml:2: yaml: anchor '&svc' is not supported (anchors and aliases are rejected; "
               "write the value out)");
    EXPECT_ERR("services:\n  - *svc\n", "t.yaml:2: yaml: alias '*svc' is not supported (anchors "
                                        "and aliases are rejected; write the value out)");
    /* The "billion laughs" shape, and an alias that refers to its own container. */
    EXPECT_ERR("a: [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
               "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n",
               "t.yaml:2: yaml: anchor '&b' is not supported (anchors and aliases are rejected; "
               "write the value out)");
    EXPECT_ERR("a: [*a]\n", "t.yaml:1: yaml: alias '*a' is not supported (anchors and aliases "
                            "are rejected; write the value out)");
    EXPECT_ERR("a: &a [*a]\n", "t.yaml:1: yaml: anchor '&a' is not supported (anchors and aliases "
                               "are rejected; write the value out)");
    /* An empty key is shown as '' rather than as the top level. */
    EXPECT_ERR("\"\": 1\n", "t.yaml:1: '': unknown key (expected one of: state_dir, log_level, "
                            "services, playbooks, llm, detection, notify, api)");
}

static void test_deep_nesting_rejected(void **state)
{
    (void)state;
    char text[4096];
    size_t w = 0;
    for (int i = 0; i < 1000; i++)
        text[w++] = '[';
    text[w] = '\0';
    EXPECT_ERR(text, "t.yaml:1: yaml: nesting deeper than 32 levels");
    /* Block style nests just as deep. */
    w = 0;
    for (int i = 0; i < 40; i++)
        w += (size_t)snprintf(text + w, sizeof(text) - w, "%*sk%d:\n", i, "", i);
    EXPECT_ERR(text, "t.yaml:33: yaml: nesting deeper than 32 levels");
}

static void test_caps(void **state)
{
    (void)state;
    /* Larger than 1 MiB: refused before libyaml sees it. */
    size_t big = (1u << 20) + 1;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, '#', big);
    text[big] = '\0';
    EXPECT_ERR(text, "t.yaml:1: yaml: 1048577 bytes is more than the cap of 1048576 bytes (1 MiB)");
    /* Many nodes in under 1 MiB. */
    size_t w = 0;
    w += (size_t)snprintf(text, big, "a: [");
    for (int i = 0; i < 200000; i++)
        text[w++] = '1', text[w++] = ',';
    text[w++] = ']';
    text[w] = '\0';
    EXPECT_ERR(text, "t.yaml:1: yaml: more than 100000 nodes");
    free(text);
}

static void test_free_null_and_helpers(void **state)
{
    (void)state;
    asr_config_free(NULL);
    assert_int_equal(asr_argv_len(NULL), 0);
    assert_null(asr_config_service(NULL, "x"));
    /* A failed parse leaves *out NULL and an error that also works with asr_err_msg. */
    struct asr_config *cfg = (struct asr_config *)1;
    struct asr_err err = {0};
    assert_int_equal(asr_config_parse("t.yaml", "/srv", "x: [", 4, false, &cfg, &err), ASR_ECONFIG);
    assert_null(cfg);
    assert_string_equal(asr_err_msg(&err, ASR_ECONFIG), err.msg);
    /* A NULL err is allowed. */
    assert_int_equal(asr_config_parse("t.yaml", "/srv", "x: [", 4, false, &cfg, NULL), ASR_ECONFIG);
}

int main(int argc, char **argv)
{
    /* ctest runs each case in its own process: argv[1] names it. */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_fixture, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_null_values),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_malformed_yaml),
        cmocka_unit_test_setup_teardown(test_command_not_found, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_repo_checked, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_load_file, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_duplicate_service),
        cmocka_unit_test(test_duplicate_listen),
        cmocka_unit_test(test_bad_port),
        cmocka_unit_test(test_ipv6_listen),
        cmocka_unit_test(test_api_block),
        cmocka_unit_test(test_bad_duration),
        cmocka_unit_test(test_bad_name),
        cmocka_unit_test(test_bad_var),
        cmocka_unit_test(test_argv),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_signatures),
        cmocka_unit_test(test_detection),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_alias_rejected),
        cmocka_unit_test(test_deep_nesting_rejected),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_free_null_and_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
