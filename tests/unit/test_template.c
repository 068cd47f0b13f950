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
    /* Only the variable part of a token goes: key=value, brackets, trailing punctuation. Names
     * with a digit inside (eth1, Slf4jLogger) are kept. */
    add(m, "ambient=30 (TID 12). [ib_sm.c:1831]: eth1 Slf4jLogger took 5ms, v<*>x", &a);
    assert_string_equal(a.tmpl,
                        "ambient=<*> (TID <*>). [ib_sm.c:<*>]: eth1 Slf4jLogger took <*>, v<*>x");
    /* A name joined to a number keeps the name; host:port and /address are one value (also
     * when a preprocessing mask left the `<*>`). */
    add(m, "node-12 core.345 msra-sa-41 (/10.0.0.2:50010) to /<*> at <*>:<*>: x", &a);
    assert_string_equal(a.tmpl, "node-<*> core.<*> <*> (<*>) to <*> at <*>: x");
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
    const char *lines[] = {"a b c", "x y", "a b 7", "q r s t", "x z", "a b c"};
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
    add(m, "user u1001 logged in", &a);
    add(m, "user u1002 logged in", &b);
    assert_int_equal(a.cluster_id, b.cluster_id);
    assert_true(b.changed);
    assert_string_equal(b.tmpl, "user <*> logged in");
    /* Delimiters both tokens share at the front and back stay in the template. */
    add(m, "link [node_A8] up", &a);
    add(m, "link [node_B8] up", &b);
    assert_int_equal(a.cluster_id, b.cluster_id);
    assert_string_equal(b.tmpl, "link [<*>] up");
    add(m, "set key=x1 now", &a);
    add(m, "set key=y2 now", &b);
    assert_string_equal(b.tmpl, "set key=<*> now");
    asr_miner_destroy(m);
}

/* Two different plain words in one position are two events, however similar the rest is. */
static void test_words_keep_events_apart(void **state)
{
    (void)state;
    struct asr_miner *m = NULL;
    assert_int_equal(asr_miner_create(NULL, &m), 0);
    assert_int_not_equal(add(m, "Link ok", NULL), add(m, "Link error", NULL));
    uint64_t a = add(m, "Block 7 stored as bytes in memory (estimated size 12, free 99)", NULL);
    uint64_t b = add(m, "Block 8 stored as values in memory (estimated size 13, free 98)", NULL);
    assert_int_not_equal(a, b);
    assert_int_equal(add(m, "Block 9 stored as bytes in memory (estimated size 1, free 9)", NULL),
                     a);
    /* A word and a variable in one position do join, as in Drain... */
    uint64_t c = add(m, "session closed for user root", NULL);
    assert_int_equal(add(m, "session closed for user 1000", NULL), c);
    /* ...but such a position counts half against the similarity, so a message that agrees on
     * just half of its tokens does not join a template whose words it replaces by variables. */
    uint64_t d = add(m, "(root) CMD (run-parts /etc/cron.hourly)", NULL);
    assert_int_not_equal(add(m, "(root) CMD (/opt/get_temps a)", NULL), d);
    /* Month, weekday and time zone names are values, not words. */
    struct asr_match mt;
    uint64_t e = add(m, "kernel image built on Mon Sep 26 EDT 2005 by root", NULL);
    assert_int_equal(add(m, "kernel image built on Fri Dec 3 EST 2004 by root", &mt), e);
    assert_string_equal(mt.tmpl, "kernel image built on <*> <*> <*> <*> <*> by root");
    asr_miner_destroy(m);
}

/* What asr_miner_foreach() reported: up to 64 clusters. */
struct saved {
    size_t n;
    uint64_t id[64], count[64];
    char tmpl[64][128];
};

static void save_cb(void *data, uint64_t id, const char *tmpl, size_t len, uint64_t count)
{
    struct saved *sv = data;
    assert_true(sv->n < 64);
    assert_true(len < sizeof(sv->tmpl[0]));
    assert_int_equal(strlen(tmpl), len);
    if (sv->n > 0)
        assert_true(sv->id[sv->n - 1] < id); /* id order */
    sv->id[sv->n] = id;
    sv->count[sv->n] = count;
    memcpy(sv->tmpl[sv->n], tmpl, len + 1);
    sv->n++;
}

static const char *const persist_lines[] = {
    "user u1001 logged in from 10.0.0.1:22",
    "user u1002 logged in from 10.0.0.2:22",
    "link [node_A8] up",
    "link [node_B8] up",
    "Link ok",
    "Link error",
    "ambient=30 sensor 4",
    "ambient=31 sensor 5",
    "connection closed",
    "7 blocks written to /var/x",
    "8 blocks written to /var/y",
    "Times: total = 41, boot = 3, init = 9, finish = 20",
    "Times: total = 40, boot = 2, init = 8, finish = 21",
};
#define NPERSIST (sizeof(persist_lines) / sizeof(persist_lines[0]))

/* Save every cluster, restore them into a fresh miner: the same lines get the same ids, the
 * templates and counts carry over, and a new message gets an id above every restored one. */
static void test_restore_same_ids(void **state)
{
    (void)state;
    struct asr_miner *m = NULL, *r = NULL;
    assert_int_equal(asr_miner_create(NULL, &m), 0);
    uint64_t ids[NPERSIST];
    for (size_t i = 0; i < NPERSIST; i++)
        ids[i] = add(m, persist_lines[i], NULL);
    /* Feeding the lines again settles every template (no cluster changes after this). */
    for (size_t i = 0; i < NPERSIST; i++)
        assert_int_equal(add(m, persist_lines[i], NULL), ids[i]);
    static struct saved sv;
    memset(&sv, 0, sizeof(sv));
    asr_miner_foreach(m, save_cb, &sv);
    assert_int_equal(sv.n, asr_miner_count(m));
    uint64_t total = 0, max_id = 0;
    for (size_t i = 0; i < sv.n; i++) {
        total += sv.count[i];
        max_id = sv.id[i] > max_id ? sv.id[i] : max_id;
    }
    assert_int_equal(total, 2 * NPERSIST);

    assert_int_equal(asr_miner_create(NULL, &r), 0);
    /* Restore in reverse order: the order must not matter. */
    for (size_t i = sv.n; i-- > 0;)
        assert_int_equal(asr_miner_restore(r, sv.id[i], sv.tmpl[i], strlen(sv.tmpl[i])), 0);
    assert_int_equal(asr_miner_count(r), sv.n);
    for (size_t i = 0; i < NPERSIST; i++) {
        struct asr_match mt;
        assert_int_equal(add(r, persist_lines[i], &mt), ids[i]);
        assert_false(mt.created);
        assert_false(mt.changed);
    }
    assert_int_equal(asr_miner_count(r), sv.n);
    struct asr_match mt;
    add(r, "a brand new message", &mt);
    assert_true(mt.created);
    assert_true(mt.cluster_id > max_id);
    /* Counts start again at restore. */
    static struct saved sv2;
    memset(&sv2, 0, sizeof(sv2));
    asr_miner_foreach(r, save_cb, &sv2);
    assert_int_equal(sv2.n, sv.n + 1);
    for (size_t i = 0; i < sv.n; i++) {
        assert_int_equal(sv2.id[i], sv.id[i]);
        assert_string_equal(sv2.tmpl[i], sv.tmpl[i]);
        assert_true(sv2.count[i] > 0 && sv2.count[i] <= sv.count[i]);
    }
    asr_miner_destroy(m);
    asr_miner_destroy(r);
}

/* A restored template with variables still absorbs new values, and a restored id above the
 * counter moves the counter. */
static void test_restore_matches_variables(void **state)
{
    (void)state;
    struct asr_miner *m = NULL;
    assert_int_equal(asr_miner_create(NULL, &m), 0);
    const char *t = "Finished task <*> in stage <*> (TID <*>). <*> bytes result sent to driver";
    assert_int_equal(asr_miner_restore(m, 42, t, strlen(t)), 0);
    const char *u = "link [<*>] up";
    assert_int_equal(asr_miner_restore(m, 7, u, strlen(u)), 0);
    struct asr_match mt;
    add(m, "Finished task 3.0 in stage 1.0 (TID 9). 2364 bytes result sent to driver", &mt);
    assert_int_equal(mt.cluster_id, 42);
    assert_false(mt.changed);
    assert_string_equal(mt.tmpl, t);
    add(m, "link [node_C1] up", &mt);
    assert_int_equal(mt.cluster_id, 7);
    assert_string_equal(mt.tmpl, u);
    add(m, "something else", &mt);
    assert_int_equal(mt.cluster_id, 43);
    asr_miner_destroy(m);
}

static void test_restore_errors(void **state)
{
    (void)state;
    struct asr_miner_opts o;
    asr_miner_opts_default(&o);
    o.max_tokens = 3;
    struct asr_miner *m = NULL;
    assert_int_equal(asr_miner_create(&o, &m), 0);
    assert_int_equal(asr_miner_restore(m, 0, "a b", 3), ASR_EINVAL);
    assert_int_equal(asr_miner_restore(m, 1, "", 0), ASR_EINVAL);
    assert_int_equal(asr_miner_restore(m, 1, "  \t ", 4), ASR_EINVAL);
    assert_int_equal(asr_miner_restore(m, 1, "a b c d", 7), ASR_EINVAL);
    assert_int_equal(asr_miner_restore(m, 1, "a\0b", 3), ASR_EINVAL);
    assert_int_equal(asr_miner_restore(m, 1, "a b", 3), 0);
    assert_int_equal(asr_miner_restore(m, 1, "c d", 3), ASR_EINVAL);
    assert_int_equal(asr_miner_count(m), 1);
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
        cmocka_unit_test(test_words_keep_events_apart),
        cmocka_unit_test(test_restore_same_ids),
        cmocka_unit_test(test_restore_matches_variables),
        cmocka_unit_test(test_restore_errors),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_format_optional_part),
        cmocka_unit_test(test_mask_substitution),
        cmocka_unit_test(test_csv_quoting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
