/*
 * test_config_outbound.c - the config keys of outbound side effects (src/core/config.c): the
 * top-level `notify` block and a service's `git` block (author, remote, token_env, github), with
 * their defaults, and every value refused with a message naming the key and the line.
 */
#include "asr/config.h"
#include "asr/error.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVICE                                                                                    \
    "services:\n"                                                                                  \
    "  - name: shop\n"                                                                             \
    "    repo: .\n"                                                                                \
    "    start: [./shop]\n"                                                                        \
    "    listen: 127.0.0.1:18080\n"

static struct asr_config *parse_ok(const char *text)
{
    struct asr_config *cfg = NULL;
    struct asr_err err = {0};
    int rc = asr_config_parse("t.yaml", "/srv/asr", text, strlen(text), false, &cfg, &err);
    if (rc != 0)
        fail_msg("parse failed: %s\n%s", err.msg, text);
    return cfg;
}

/* text is refused, and the message holds want. */
static void parse_bad(const char *text, const char *want)
{
    struct asr_config *cfg = NULL;
    struct asr_err err = {0};
    int rc = asr_config_parse("t.yaml", "/srv/asr", text, strlen(text), false, &cfg, &err);
    if (rc == 0) {
        asr_config_free(cfg);
        fail_msg("accepted, expected \"%s\":\n%s", want, text);
    }
    assert_int_equal(rc, ASR_ECONFIG);
    assert_null(cfg);
    if (strstr(err.msg, want) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", want, err.msg);
}

static void test_defaults(void **state)
{
    (void)state;
    struct asr_config *cfg = parse_ok(SERVICE);
    assert_null(cfg->notify.url);
    assert_null(cfg->notify.token_env);
    assert_int_equal(cfg->notify.timeout_ms, 5000);
    const struct asr_git_cfg *g = &cfg->services[0].git;
    assert_string_equal(g->author_name, "asr");
    assert_string_equal(g->author_email, "asr@localhost");
    assert_null(g->remote);
    assert_null(g->token_env);
    assert_string_equal(g->github.api_url, "https://api.github.com");
    assert_null(g->github.repo);
    assert_string_equal(g->github.base, "main");
    asr_config_free(cfg);
}

static void test_every_key(void **state)
{
    (void)state;
    const char *text = SERVICE "    git:\n"
                               "      author_name: Shop Bot\n"
                               "      author_email: bot@shop.example\n"
                               "      remote: origin\n"
                               "      token_env: SHOP_GITHUB_TOKEN\n"
                               "      github:\n"
                               "        api_url: https://github.example.com/api/v3\n"
                               "        repo: acme/shop.api\n"
                               "        base: release/2\n"
                               "notify:\n"
                               "  url: https://hooks.example.com/asr?team=ops\n"
                               "  token_env: ASR_WEBHOOK_TOKEN\n"
                               "  timeout_ms: 2500\n";
    struct asr_config *cfg = parse_ok(text);
    assert_string_equal(cfg->notify.url, "https://hooks.example.com/asr?team=ops");
    assert_string_equal(cfg->notify.token_env, "ASR_WEBHOOK_TOKEN");
    assert_int_equal(cfg->notify.timeout_ms, 2500);
    const struct asr_git_cfg *g = &cfg->services[0].git;
    assert_string_equal(g->author_name, "Shop Bot");
    assert_string_equal(g->author_email, "bot@shop.example");
    assert_string_equal(g->remote, "origin");
    assert_string_equal(g->token_env, "SHOP_GITHUB_TOKEN");
    assert_string_equal(g->github.api_url, "https://github.example.com/api/v3");
    assert_string_equal(g->github.repo, "acme/shop.api");
    assert_string_equal(g->github.base, "release/2");
    asr_config_free(cfg);

    /* Remotes: URLs, absolute paths, and paths from the config's directory, stored absolute. */
    const char *remotes[][2] = {
        {"https://github.com/acme/shop.git", "https://github.com/acme/shop.git"},
        {"file:///srv/git/shop.git", "file:///srv/git/shop.git"},
        {"/srv/git/shop.git", "/srv/git/shop.git"},
        {"./mirror.git", "/srv/asr/mirror.git"},
        {"../git/shop.git", "/srv/git/shop.git"},
        {"upstream-2", "upstream-2"},
        {"http://127.0.0.1:9418/shop.git", "http://127.0.0.1:9418/shop.git"},
    };
    for (size_t i = 0; i < sizeof(remotes) / sizeof(remotes[0]); i++) {
        char t[512];
        snprintf(t, sizeof(t), SERVICE "    git: {remote: '%s', token_env: T}\n", remotes[i][0]);
        cfg = parse_ok(t);
        assert_string_equal(cfg->services[0].git.remote, remotes[i][1]);
        asr_config_free(cfg);
    }
    /* A webhook on loopback may take a token over plain http. */
    cfg = parse_ok(SERVICE "notify: {url: 'http://127.0.0.1:9000/hook', token_env: T}\n");
    asr_config_free(cfg);
}

static void test_refused(void **state)
{
    (void)state;
    parse_bad(SERVICE "notify: {token_env: T}\n", "notify: missing required key 'url'");
    parse_bad(SERVICE "notify: {url: 'https://x.example/h', retries: 3}\n",
              "notify.retries: unknown key");
    parse_bad(SERVICE "notify: {url: 'ftp://x.example/h'}\n", "notify.url: expected an http://");
    parse_bad(SERVICE "notify: {url: 'https://user:pw@x.example/h'}\n",
              "notify.url: expected an http:// or https:// URL without credentials");
    parse_bad(SERVICE "notify: {url: 'https://x.example/a b'}\n", "notify.url");
    parse_bad(SERVICE "notify: {url: 'http://hooks.example.com/h', token_env: T}\n",
              "refusing to send the token over plain http to 'hooks.example.com'");
    parse_bad(SERVICE "notify: {url: 'https://x.example/h', token_env: 'MY-TOKEN'}\n",
              "notify.token_env: expected an identifier");
    parse_bad(SERVICE "notify: {url: 'https://x.example/h', timeout_ms: 0}\n", "notify.timeout_ms");
    parse_bad(SERVICE "notify: {url: 'https://x.example/h', timeout_ms: 300001}\n",
              "notify.timeout_ms");
    parse_bad(SERVICE "notify: ~\n", "notify");

    parse_bad(SERVICE "    git: {author_email: nobody}\n", "services[0].git.author_email");
    parse_bad(SERVICE "    git: {author_name: 'a <b>'}\n", "services[0].git.author_name");
    parse_bad(SERVICE "    git: {author_name: \"a\\nb\"}\n", "services[0].git.author_name");
    parse_bad(SERVICE "    git: {remote: 'git@github.com:acme/shop.git'}\n",
              "services[0].git.remote: expected a remote name");
    parse_bad(SERVICE "    git: {remote: 'ssh://git@github.com/acme/shop.git'}\n",
              "services[0].git.remote");
    parse_bad(SERVICE "    git: {remote: 'https://x:ghp_secret@github.com/a/b.git'}\n",
              "services[0].git.remote");
    parse_bad(SERVICE "    git: {remote: 'origin main'}\n", "services[0].git.remote");
    parse_bad(SERVICE "    git: {remote: 'http://git.example.com/a.git', token_env: T}\n",
              "refusing to send the token over plain http");
    parse_bad(SERVICE "    git: {remote: origin, token_env: T, github: {base: main}}\n",
              "services[0].git.github: missing required key 'repo'");
    parse_bad(SERVICE "    git: {token_env: T, github: {repo: acme/shop}}\n",
              "github: needs remote");
    parse_bad(SERVICE "    git: {remote: origin, github: {repo: acme/shop}}\n",
              "github: needs token_env");
    parse_bad(SERVICE "    git: {remote: origin, token_env: T, github: {repo: shop}}\n",
              "services[0].git.github.repo: expected a GitHub repository as owner/name");
    parse_bad(SERVICE "    git: {remote: origin, token_env: T, github: {repo: acme/../x}}\n",
              "services[0].git.github.repo");
    parse_bad(SERVICE "    git: {remote: origin, token_env: T, github: {repo: a/b, base: a..b}}\n",
              "services[0].git.github.base: expected a branch name");
    parse_bad(SERVICE "    git: {remote: origin, token_env: T, github: {repo: a/b, base: -x}}\n",
              "services[0].git.github.base");
    parse_bad(SERVICE "    git: {remote: origin, token_env: T,\n"
                      "          github: {repo: a/b, api_url: 'http://api.example.com'}}\n",
              "github.api_url: refusing to send the token over plain http");
    parse_bad(SERVICE "    git: {push: true}\n", "services[0].git.push: unknown key");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_refused),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
