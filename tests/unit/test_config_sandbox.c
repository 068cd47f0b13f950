/*
 * test_config_sandbox.c - the build sandbox's keys of a service's `deploy:` mapping
 * (src/core/config.c, docs/sandbox.md): defaults, every key set, and each error with its exact
 * one-line message. Through asr_config_parse() without filesystem checks, like test_config.c.
 */
#include "asr/config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A valid service entry; its lines are 2..5 when it follows "services:". */
#define SVC                                                                                        \
    "services:\n"                                                                                  \
    "  - name: shop\n"                                                                             \
    "    repo: ./app\n"                                                                            \
    "    start: [./shop]\n"                                                                        \
    "    listen: 127.0.0.1:8080\n"

/* Parses text as "t.yaml" in /srv; returns the error message, or "" after checking *out. */
static const char *parse(const char *text, struct asr_config **out)
{
    static struct asr_err err;
    memset(&err, 0, sizeof(err));
    struct asr_config *cfg = NULL;
    int rc = asr_config_parse("t.yaml", "/srv", text, strlen(text), false, &cfg, &err);
    if (rc != 0) {
        assert_int_equal(rc, ASR_ECONFIG);
        assert_null(cfg);
        assert_null(strchr(err.msg, '\n'));
        return err.msg;
    }
    assert_non_null(cfg);
    if (out != NULL)
        *out = cfg;
    else
        asr_config_free(cfg);
    return "";
}

#define EXPECT_ERR(text, msg) assert_string_equal(parse(text, NULL), msg)

static void test_defaults(void **state)
{
    (void)state;
    struct asr_config *cfg = NULL;
    assert_string_equal(parse(SVC, &cfg), "");
    const struct asr_deploy_cfg *d = &cfg->services[0].deploy;
    assert_int_equal(d->sandbox, ASR_SANDBOX_BWRAP);
    assert_int_equal(d->sandbox_memory_mb, 4096);
    assert_int_equal(d->sandbox_procs, 1024);
    assert_int_equal(d->sandbox_file_mb, 1024);
    /* The refusal message names the config file. */
    assert_string_equal(d->config_path, "t.yaml");
    asr_config_free(cfg);
}

static void test_all_keys(void **state)
{
    (void)state;
    struct asr_config *cfg = NULL;
    assert_string_equal(parse(SVC "    deploy: {sandbox: none, sandbox_memory_mb: 64, "
                                  "sandbox_procs: 1000000, sandbox_file_mb: \"1\"}\n",
                              &cfg),
                        "");
    const struct asr_deploy_cfg *d = &cfg->services[0].deploy;
    assert_int_equal(d->sandbox, ASR_SANDBOX_NONE);
    assert_int_equal(d->sandbox_memory_mb, 64);
    assert_int_equal(d->sandbox_procs, 1000000);
    assert_int_equal(d->sandbox_file_mb, 1);
    /* The other deploy keys keep their defaults. */
    assert_int_equal(d->build_timeout_ms, 300000);
    asr_config_free(cfg);

    /* 0 is "no limit" for each; bwrap is the default spelled out. */
    assert_string_equal(parse(SVC "    deploy:\n      sandbox: bwrap\n      sandbox_memory_mb: 0\n"
                                  "      sandbox_procs: 0\n      sandbox_file_mb: 0\n",
                              &cfg),
                        "");
    d = &cfg->services[0].deploy;
    assert_int_equal(d->sandbox, ASR_SANDBOX_BWRAP);
    assert_int_equal(d->sandbox_memory_mb, 0);
    assert_int_equal(d->sandbox_procs, 0);
    assert_int_equal(d->sandbox_file_mb, 0);
    asr_config_free(cfg);
}

static void test_mode_errors(void **state)
{
    (void)state;
    EXPECT_ERR(SVC "    deploy: {sandbox: firejail}\n",
               "t.yaml:6: services[0].deploy.sandbox: expected bwrap or none, got 'firejail'");
    EXPECT_ERR(SVC "    deploy: {sandbox: Bwrap}\n",
               "t.yaml:6: services[0].deploy.sandbox: expected bwrap or none, got 'Bwrap'");
    EXPECT_ERR(SVC "    deploy: {sandbox: [bwrap]}\n",
               "t.yaml:6: services[0].deploy.sandbox: expected bwrap or none, got a list");
    EXPECT_ERR(SVC "    deploy: {sandbox: false}\n",
               "t.yaml:6: services[0].deploy.sandbox: expected bwrap or none, got 'false'");
    EXPECT_ERR(SVC "    deploy:\n      sandbox:\n",
               "t.yaml:7: services[0].deploy.sandbox: expected bwrap or none, got an empty value");
    EXPECT_ERR(SVC "    deploy: {sandbox: none, sandbox: bwrap}\n",
               "t.yaml:6: services[0].deploy.sandbox: duplicate key (first at line 6)");
    EXPECT_ERR(SVC "    deploy: {sandbox_memory: 100}\n",
               "t.yaml:6: services[0].deploy.sandbox_memory: unknown key (expected one of: "
               "build_timeout_ms, test_timeout_ms, healthy_timeout_ms, drain_timeout_ms, "
               "stop_grace_ms, verify_window_ms, sandbox, sandbox_memory_mb, sandbox_procs, "
               "sandbox_file_mb)");
}

static void test_limit_errors(void **state)
{
    (void)state;
    EXPECT_ERR(SVC "    deploy: {sandbox_memory_mb: 10}\n",
               "t.yaml:6: services[0].deploy.sandbox_memory_mb: expected 0 (no limit) or an "
               "integer from 64 to 1048576, got '10'");
    EXPECT_ERR(SVC "    deploy: {sandbox_memory_mb: 1048577}\n",
               "t.yaml:6: services[0].deploy.sandbox_memory_mb: expected 0 (no limit) or an "
               "integer from 64 to 1048576, got '1048577'");
    EXPECT_ERR(SVC "    deploy: {sandbox_memory_mb: 4G}\n",
               "t.yaml:6: services[0].deploy.sandbox_memory_mb: expected 0 (no limit) or an "
               "integer from 64 to 1048576, got '4G'");
    EXPECT_ERR(SVC "    deploy: {sandbox_procs: -1}\n",
               "t.yaml:6: services[0].deploy.sandbox_procs: expected 0 (no limit) or an integer "
               "from 16 to 1000000, got '-1'");
    EXPECT_ERR(SVC "    deploy: {sandbox_procs: 15}\n",
               "t.yaml:6: services[0].deploy.sandbox_procs: expected 0 (no limit) or an integer "
               "from 16 to 1000000, got '15'");
    EXPECT_ERR(SVC "    deploy: {sandbox_procs: 99999999999999999999999}\n",
               "t.yaml:6: services[0].deploy.sandbox_procs: expected 0 (no limit) or an integer "
               "from 16 to 1000000, got '99999999999999999999999'");
    EXPECT_ERR(SVC "    deploy: {sandbox_file_mb: 1.5}\n",
               "t.yaml:6: services[0].deploy.sandbox_file_mb: expected 0 (no limit) or an integer "
               "from 1 to 1048576, got '1.5'");
    EXPECT_ERR(SVC "    deploy: {sandbox_file_mb: ''}\n",
               "t.yaml:6: services[0].deploy.sandbox_file_mb: expected 0 (no limit) or an integer "
               "from 1 to 1048576, got ''");
    EXPECT_ERR(SVC "    deploy: {sandbox_file_mb: {mb: 1}}\n",
               "t.yaml:6: services[0].deploy.sandbox_file_mb: expected 0 (no limit) or an integer "
               "from 1 to 1048576, got a mapping");
    EXPECT_ERR(SVC "    deploy: {sandbox_file_mb: \"1\\0\"}\n",
               "t.yaml:6: services[0].deploy.sandbox_file_mb: expected 0 (no limit) or an integer "
               "from 1 to 1048576, got a value with a NUL byte");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_keys),
        cmocka_unit_test(test_mode_errors),
        cmocka_unit_test(test_limit_errors),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
