/*
 * test_error.c - the error table (include/asr/error.h, src/core/error.c).
 *
 * Every code in ASR_ERRNO_MAP must have its own symbolic name and a real message; codes outside
 * the table get "unknown error"; asr_err_set() records a formatted sentence that asr_err_msg()
 * returns only for the code it was recorded with.
 */
#include "asr/error.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

/* All codes, in table order, with their expected names, generated from the same map. */
#define ENTRY(name, msg) {ASR_E##name, "ASR_E" #name, msg},
static const struct {
    int code;
    const char *name;
    const char *msg;
} all_codes[] = {ASR_ERRNO_MAP(ENTRY)};
#undef ENTRY
#define NCODES (sizeof(all_codes) / sizeof(all_codes[0]))

static void test_codes_are_negative_and_distinct(void **state)
{
    (void)state;
    assert_int_equal(ASR_OK, 0);
    for (size_t i = 0; i < NCODES; i++) {
        assert_true(all_codes[i].code < 0);
        for (size_t j = i + 1; j < NCODES; j++)
            assert_int_not_equal(all_codes[i].code, all_codes[j].code);
    }
    /* A sample of codes the rest of asr depends on. */
    assert_true(ASR_ENOMEM < 0 && ASR_ECANCELED < 0 && ASR_ETOOBIG < 0);
}

static void test_every_code_has_distinct_name_and_message(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCODES; i++) {
        int c = all_codes[i].code;
        const char *name = asr_errname(c);
        const char *msg = asr_strerror(c);
        assert_non_null(name);
        assert_non_null(msg);
        assert_string_equal(name, all_codes[i].name);
        assert_string_equal(msg, all_codes[i].msg);
        assert_string_not_equal(name, "ASR_EUNKNOWN");
        assert_string_not_equal(msg, "unknown error");
        assert_true(strlen(msg) > 0);
        for (size_t j = 0; j < NCODES; j++) {
            if (j == i)
                continue;
            assert_string_not_equal(name, asr_errname(all_codes[j].code));
            assert_string_not_equal(msg, asr_strerror(all_codes[j].code));
        }
    }
}

static void test_spot_values(void **state)
{
    (void)state;
    assert_string_equal(asr_errname(ASR_ECONFIG), "ASR_ECONFIG");
    assert_string_equal(asr_strerror(ASR_ENOENT), "no such file or object");
    assert_string_equal(asr_strerror(ASR_ETOOBIG), "value exceeds its cap");
    assert_string_equal(asr_errname(ASR_OK), "ASR_OK");
    assert_string_equal(asr_strerror(ASR_OK), "success");
}

static void test_unknown_code(void **state)
{
    (void)state;
    const int unknown[] = {1,    42, -1, ASR_ERRNO_FIRST_, ASR_ERRNO_LAST_, ASR_ERRNO_LAST_ + 1,
                           -5000};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_string_equal(asr_strerror(unknown[i]), "unknown error");
        assert_string_equal(asr_errname(unknown[i]), "ASR_EUNKNOWN");
    }
}

static void test_err_set_and_msg(void **state)
{
    (void)state;
    struct asr_err err;
    memset(&err, 0, sizeof(err));
    int rc = asr_err_set(&err, ASR_ECONFIG, "%s:%d: key '%s' is unknown", "asr.yaml", 12, "foo");
    assert_int_equal(rc, ASR_ECONFIG);
    assert_int_equal(err.code, ASR_ECONFIG);
    assert_string_equal(err.msg, "asr.yaml:12: key 'foo' is unknown");
    assert_string_equal(asr_err_msg(&err, ASR_ECONFIG), "asr.yaml:12: key 'foo' is unknown");
    /* Asked about a different code, the generic message comes back. */
    assert_string_equal(asr_err_msg(&err, ASR_EIO), "input/output error");
    /* A later set overwrites the first. */
    asr_err_set(&err, ASR_EIO, "read %s failed", "/x");
    assert_string_equal(asr_err_msg(&err, ASR_EIO), "read /x failed");
    assert_string_equal(asr_err_msg(&err, ASR_ECONFIG), "invalid configuration");
}

static void test_err_set_null_and_empty(void **state)
{
    (void)state;
    /* A NULL err only passes the code through. */
    assert_int_equal(asr_err_set(NULL, ASR_EDB, "ignored %d", 1), ASR_EDB);
    assert_string_equal(asr_err_msg(NULL, ASR_EDB), "database error");
    /* A zeroed err (nothing recorded) falls back to the table. */
    struct asr_err err;
    memset(&err, 0, sizeof(err));
    err.code = ASR_ENET;
    assert_string_equal(asr_err_msg(&err, ASR_ENET), "network error");
    /* Unknown codes through asr_err_msg. */
    assert_string_equal(asr_err_msg(NULL, 77), "unknown error");
}

static void test_err_set_truncates_long_message(void **state)
{
    (void)state;
    char longs[2000];
    memset(longs, 'x', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    struct asr_err err;
    assert_int_equal(asr_err_set(&err, ASR_EPARSE, "%s", longs), ASR_EPARSE);
    assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
    assert_int_equal(err.msg[0], 'x');
    assert_int_equal(err.msg[sizeof(err.msg) - 2], 'x');
}

int main(int argc, char **argv)
{
    /* ctest runs each case in its own process: argv[1] names it. */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_are_negative_and_distinct),
        cmocka_unit_test(test_every_code_has_distinct_name_and_message),
        cmocka_unit_test(test_spot_values),
        cmocka_unit_test(test_unknown_code),
        cmocka_unit_test(test_err_set_and_msg),
        cmocka_unit_test(test_err_set_null_and_empty),
        cmocka_unit_test(test_err_set_truncates_long_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
