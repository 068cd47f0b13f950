/*
 * test_actions.c - the whitelist: known actions, argument validation, patch paths.
 */
#include "execute/actions.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static int check(const char *name, const char *args_json, const struct asr_service_cfg *svc,
                 char *msg, size_t cap)
{
    json_t *args = json_loads(args_json, 0, NULL);
    assert_non_null(args);
    struct asr_err err = {0};
    int rc = asr_action_check(name, args, svc, &err);
    json_decref(args);
    snprintf(msg, cap, "%s", err.msg);
    return rc;
}

static void test_whitelist(void **state)
{
    (void)state;
    size_t n;
    const struct asr_action *a = asr_actions(&n);
    assert_int_equal(n, 6);
    assert_string_equal(a[0].name, "restart");
    assert_non_null(asr_action_find("rollback"));
    assert_null(asr_action_find("reboot"));
    assert_null(asr_action_find(NULL));
    char msg[256];
    assert_int_equal(check("reboot", "{}", NULL, msg, sizeof(msg)), ASR_EINVAL);
    assert_string_equal(msg, "action 'reboot' is not on the whitelist (restart, rollback, patch, "
                             "deploy, notify, escalate)");
    assert_int_equal(check("notify", "{\"message\": \"db is slow\"}", NULL, msg, sizeof(msg)), 0);
    assert_int_equal(check("notify", "{}", NULL, msg, sizeof(msg)), ASR_EINVAL);
    assert_int_equal(check("deploy", "{\"ref\": \"v1.2\"}", NULL, msg, sizeof(msg)), 0);
    assert_int_equal(check("deploy", "{\"ref\": \"--upload-pack=x\"}", NULL, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_int_equal(check("deploy", "{\"ref\": \"a b\"}", NULL, msg, sizeof(msg)), ASR_EINVAL);
    assert_int_equal(check("restart", "{}", NULL, msg, sizeof(msg)), 0);
    assert_int_equal(check("restart", "{\"force\": true}", NULL, msg, sizeof(msg)), ASR_EINVAL);
    assert_string_equal(msg, "action restart: unknown argument 'force'");
    assert_int_equal(check("escalate", "{\"reason\": \"no playbook\"}", NULL, msg, sizeof(msg)), 0);
    assert_int_equal(check("escalate", "{}", NULL, msg, sizeof(msg)), ASR_EINVAL);
    assert_string_equal(msg, "action escalate: reason: expected a string of 1 to 4096 bytes");
}

static void test_patch(void **state)
{
    (void)state;
    char *globs[] = {"src/**", "Makefile", NULL};
    struct asr_service_cfg svc = {.name = "shop"};
    svc.policy.patch_paths = globs;
    char msg[512];
    assert_int_equal(
        check("patch",
              "{\"edits\": [{\"path\": \"src/db.c\", \"search\": \"a\", \"replace\": \"b\"}], "
              "\"message\": \"fix\"}",
              &svc, msg, sizeof(msg)),
        0);
    assert_int_equal(check("patch",
                           "{\"edits\": [{\"path\": \"src/x/y.c\", \"search\": \"a\", "
                           "\"replace\": \"\"}, {\"path\": \"Makefile\", \"search\": \"a\", "
                           "\"replace\": \"b\"}]}",
                           &svc, msg, sizeof(msg)),
                     0);
    assert_int_equal(check("patch",
                           "{\"edits\": [{\"path\": \"src/../../etc/passwd\", \"search\": \"a\", "
                           "\"replace\": \"b\"}]}",
                           &svc, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "action patch: edits[0].path: 'src/../../etc/passwd' is outside the "
                             "service's patch_paths");
    assert_int_equal(check("patch",
                           "{\"edits\": [{\"path\": \"tests/run.sh\", \"search\": \"a\", "
                           "\"replace\": \"b\"}]}",
                           &svc, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_int_equal(check("patch", "{\"edits\": []}", &svc, msg, sizeof(msg)), ASR_EINVAL);
    assert_string_equal(msg, "action patch: edits: expected a list of 1 to 32 edits");
    assert_int_equal(check("patch",
                           "{\"edits\": [{\"path\": \"src/a.c\", \"search\": \"\", \"replace\": "
                           "\"b\"}]}",
                           &svc, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "action patch: edits[0].search: must not be empty");
    assert_int_equal(check("patch",
                           "{\"edits\": [{\"path\": \"src/a.c\", \"search\": \"a\", \"replace\": "
                           "\"b\", \"mode\": \"0777\"}]}",
                           &svc, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "action patch: edits[0]: unknown argument 'mode'");
    assert_int_equal(check("patch",
                           "{\"edits\": [{\"path\": \"/etc/passwd\", \"search\": \"a\", "
                           "\"replace\": \"b\"}]}",
                           NULL, msg, sizeof(msg)),
                     ASR_EINVAL);
}

static void test_path_allowed(void **state)
{
    (void)state;
    char *globs[] = {"src/**", "docs/*.md", "Makefile", NULL};
    assert_true(asr_path_allowed("src/a.c", globs));
    assert_true(asr_path_allowed("src/x/y/z.c", globs));
    assert_true(asr_path_allowed("docs/a.md", globs));
    assert_true(asr_path_allowed("Makefile", globs));
    assert_false(asr_path_allowed("docs/x/a.md", globs));
    assert_false(asr_path_allowed("docs/a.txt", globs));
    assert_false(asr_path_allowed("/src/a.c", globs));
    assert_false(asr_path_allowed("src/../x", globs));
    assert_false(asr_path_allowed("src/./a.c", globs));
    assert_false(asr_path_allowed("src//a.c", globs));
    assert_false(asr_path_allowed("src\\a.c", globs));
    assert_false(asr_path_allowed("src/a\n.c", globs));
    assert_false(asr_path_allowed("", globs));
    assert_false(asr_path_allowed("Makefile.bak", globs));
    assert_false(asr_path_allowed("src/a.c", NULL));
    assert_false(asr_path_allowed("src/.git/hooks/pre-commit", globs));
    assert_false(asr_path_allowed("src/.GIT/config", globs));
    assert_false(asr_path_allowed("src/%2e%2e/x", globs));
    assert_false(asr_path_allowed("src/caf\xc3\xa9.c", globs));
    assert_false(asr_path_allowed("src/a b.c", globs));
    assert_true(asr_path_allowed("src/.github-ish/a_b-c+d@e,f=g.c", globs));
    char *none[] = {NULL};
    assert_false(asr_path_allowed("src/a.c", none));
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whitelist),
        cmocka_unit_test(test_patch),
        cmocka_unit_test(test_path_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
