/*
 * test_template.c - the template miner (src/detect/template.c), Loghub header formats and masks
 * (src/detect/logformat.c) and the CSV field quoting that `asr templates` uses.
 */
#include "asr/buf.h"
#include "asr/error.h"
#include "detect/logformat.h"
#include "detect/template.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t add(struct asr_miner *m, const char *s, struct asr_match *out)
{
    struct asr_match mt;
    assert_int_equal(asr_miner_add(m, s, strlen(s), out ? out : &mt), 0);
    return out ? out->cluster_id : mt.cluster_id;
}

static void test_identical_lines_one_cluster(void **state)
{
    (void)state;
    struct asr_miner *m = NULL;
    assert_int_equal(asr_miner_create(NULL, &m), 0);
    struct asr_match a, b;
    add(m, "Starting service now", &a);
    assert_true(a.created);
    add(m, "Starting   service now\n", &b);
    assert_false(b.created);
    assert_false(b.changed);
    assert_int_equal(a.cluster_id, b.cluster_id);
    assert_string_equal(b.tmpl, "Starting service now");
    assert_int_equal(asr_miner_count(m), 1);
    asr_miner_destroy(m);
}

static void test_numbers_and_variables_masked(void **state)
{
    (void)state;
    struct asr_miner *m = NULL;
    assert_int_equal(asr_miner_create(NULL, &m), 0);
    struct asr_match a;
    add(m,
        "read 42 bytes from 10.0.0.1:80 at 0x1f blk_-123 /var/log/x "
        "123e4567-e89b-12d3-a456-426614174000 deadbeefcafe ok",
        &a);
    assert_string_equal(a.tmpl, "read <*> bytes from <*> at <*> <*> <*> <*> <*> ok");
    asr_miner_destroy(m);
}

static void test_differing_constants_split(void **state)
{
    (void)state;
    struct asr_miner *m = NULL;
    assert_int_equal(asr_miner_create(NULL, &m), 0);
    uint64_t a = add(m, "connection opened to server", NULL);
    uint64_t b = add(m, "connection refused by peer", NULL);
    assert_int_not_equal(a, b);
    uint64_t c = add(m, "disk full", NULL); /* another length: another cluster */
    assert_int_not_equal(c, a);
    assert_int_not_equal(c, b);
    asr_miner_destroy(m);
}

static void test_stable_ids(void **state)
{
    (void)state;
    const char *lines[] = {"a b c", "x y", "a b d", "q r s t", "x z", "a b c"};
    uint64_t first[6];
    for (int run = 0; run < 2; run++) {
        struct asr_miner *m = NULL;
        assert_int_equal(asr_miner_create(NULL, &m), 0);
        for (int i = 0; i < 6; i++) {
            uint64_t id = add(m, lines[i], NULL);
            if (run == 0)
                first[i] = id;
            else
                assert_int_equal(first[i], id);
        }
        asr_miner_destroy(m);
    }
    assert_int_equal(first[0], 1);
    assert_int_equal(first[0], first[2]);
}

static void test_template_evolves(void **state)
{
    (void)state;
    struct asr_miner *m = NULL;
    assert_int_equal(asr_miner_create(NULL, &m), 0);
    struct asr_match a, b;
    add(m, "user alice logged in", &a);
    add(m, "user bob logged in", &b);
    assert_int_equal(a.cluster_id, b.cluster_id);
    assert_true(b.changed);
    assert_string_equal(b.tmpl, "user <*> logged in");
    asr_miner_destroy(m);
}

static void test_caps(void **state)
{
    (void)state;
    struct asr_miner_opts o;
    asr_miner_opts_default(&o);
    o.max_clusters = 3;
    o.max_tokens = 4;
    o.max_token_len = 5;
    struct asr_miner *m = NULL;
    assert_int_equal(asr_miner_create(&o, &m), 0);
    struct asr_match a;
    add(m, "a b c d e f g h", &a);
    assert_string_equal(a.tmpl, "a b c <*>");
    add(m, "toolongtoken x", &a);
    assert_string_equal(a.tmpl, "<*> x");
    for (int i = 0; i < 10; i++) {
        char line[64];
        snprintf(line, sizeof(line), "w%c x%c y%c", 'a' + i, 'a' + i, 'a' + i);
        add(m, line, NULL);
        assert_true(asr_miner_count(m) <= 3);
    }
    assert_true(asr_miner_evicted(m) > 0);
    o.max_clusters = 0;
    struct asr_miner *bad = NULL;
    assert_int_equal(asr_miner_create(&o, &bad), ASR_EINVAL);
    assert_null(bad);
    asr_miner_destroy(m);
}

static void test_format_optional_part(void **state)
{
    (void)state;
    struct asr_logformat *f = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_logformat_create("<Date> <Component>(\\[<PID>\\])?: <Content>", &f, &err),
                     0);
    const char *c;
    size_t n;
    const char *l1 = "  Jun1 sshd[42]: Accepted key for root\r\n";
    assert_int_equal(asr_logformat_content(f, l1, strlen(l1), &c, &n), 0);
    assert_int_equal(n, strlen("Accepted key for root"));
    assert_memory_equal(c, "Accepted key for root", n);
    const char *l2 = "Jun1   kernel: oops";
    assert_int_equal(asr_logformat_content(f, l2, strlen(l2), &c, &n), 0);
    assert_memory_equal(c, "oops", n);
    const char *l3 = "nocolon";
    assert_int_equal(asr_logformat_content(f, l3, strlen(l3), &c, &n), ASR_EPARSE);
    asr_logformat_destroy(f);
    f = NULL;
    assert_int_equal(asr_logformat_create("<Date> <Time>", &f, &err), ASR_EPARSE);
    assert_non_null(strstr(err.msg, "Content"));
    assert_int_equal(asr_logformat_create("<Date> (<Content>", &f, &err), ASR_EPARSE);
}

static void test_mask_substitution(void **state)
{
    (void)state;
    const char *rx[] = {"blk_-?\\d+", "(\\d+\\.){3}\\d+(:\\d+)?", "x*"};
    struct asr_masks *mk = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_masks_create(rx, 2, &mk, &err), 0);
    struct asr_buf out;
    asr_buf_init(&out, 4096);
    const char *s = "blk_-12 from 10.1.2.3:50010 and blk_7";
    assert_int_equal(asr_masks_apply(mk, s, strlen(s), &out), 0);
    assert_string_equal(asr_buf_cstr(&out), "<*> from <*> and <*>");
    asr_masks_destroy(mk);
    /* An empty match is replaced between every byte, as Python's re.sub does. */
    assert_int_equal(asr_masks_create(rx + 2, 1, &mk, &err), 0);
    assert_int_equal(asr_masks_apply(mk, "ab", 2, &out), 0);
    assert_string_equal(asr_buf_cstr(&out), "<*>a<*>b<*>");
    asr_masks_destroy(mk);
    const char *bad[] = {"(unclosed"};
    mk = NULL;
    assert_int_equal(asr_masks_create(bad, 1, &mk, &err), ASR_EPARSE);
    assert_null(mk);
    assert_non_null(strstr(err.msg, "unclosed"));
    asr_buf_free(&out);
}

static void test_csv_quoting(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 1024);
    assert_int_equal(asr_csv_field(&b, "plain <*>", 9), 0);
    assert_string_equal(asr_buf_cstr(&b), "plain <*>");
    asr_buf_reset(&b);
    assert_int_equal(asr_csv_field(&b, "a,b \"q\"", 7), 0);
    assert_string_equal(asr_buf_cstr(&b), "\"a,b \"\"q\"\"\"");
    asr_buf_free(&b);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical_lines_one_cluster),
        cmocka_unit_test(test_numbers_and_variables_masked),
        cmocka_unit_test(test_differing_constants_split),
        cmocka_unit_test(test_stable_ids),
        cmocka_unit_test(test_template_evolves),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_format_optional_part),
        cmocka_unit_test(test_mask_substitution),
        cmocka_unit_test(test_csv_quoting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
