/*
 * test_buf.c - capped byte buffers (include/asr/buf.h, src/core/buf.c).
 *
 * Covers appending (raw bytes, strings, printf), what happens at the cap (the part that fits is
 * kept, `truncated` is set, ASR_ETOOBIG is returned, and the data stays NUL-terminated), consume,
 * steal, reset, printf output beyond the 512-byte stack buffer, and a buffer with a zero cap.
 */
#include "asr/buf.h"
#include "asr/error.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

static void test_init_is_empty(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 100);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 100);
    assert_false(b.truncated);
    assert_string_equal(asr_buf_cstr(&b), "");
    asr_buf_free(&b);
}

static void test_append_puts_printf(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 1024);
    assert_int_equal(asr_buf_append(&b, "abc", 3), 0);
    assert_int_equal(asr_buf_puts(&b, "-def"), 0);
    assert_int_equal(asr_buf_printf(&b, "-%d-%s-%05.1f", 42, "x", 3.5), 0);
    assert_string_equal(asr_buf_cstr(&b), "abc-def-42-x-003.5");
    assert_int_equal(b.len, strlen("abc-def-42-x-003.5"));
    assert_false(b.truncated);
    /* Zero-length appends change nothing and succeed. */
    assert_int_equal(asr_buf_append(&b, "zzz", 0), 0);
    assert_int_equal(asr_buf_puts(&b, ""), 0);
    assert_int_equal(b.len, strlen("abc-def-42-x-003.5"));
    asr_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 1024);
}

static void test_append_binary_with_nul(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 16);
    const char bin[] = {'a', '\0', 'b', '\0'};
    assert_int_equal(asr_buf_append(&b, bin, sizeof(bin)), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, bin, 4);
    assert_int_equal(b.data[4], '\0');
    asr_buf_free(&b);
}

static void test_growth_keeps_content(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 100000);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(asr_buf_printf(&b, "%d,", i % 10), 0);
    assert_int_equal(b.len, 20000);
    assert_true(b.alloc >= b.len + 1);
    for (size_t i = 0; i < b.len; i += 2) {
        assert_int_equal(b.data[i], '0' + (int)((i / 2) % 10));
        assert_int_equal(b.data[i + 1], ',');
    }
    assert_int_equal(b.data[b.len], '\0');
    asr_buf_free(&b);
}

static void test_cap_partial_append(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 5);
    assert_int_equal(asr_buf_append(&b, "abc", 3), 0);
    assert_false(b.truncated);
    /* Only "de" fits. */
    assert_int_equal(asr_buf_append(&b, "defgh", 5), ASR_ETOOBIG);
    assert_true(b.truncated);
    assert_int_equal(b.len, 5);
    assert_string_equal(asr_buf_cstr(&b), "abcde");
    /* The allocation never goes beyond cap + 1 (the NUL does not count against the cap). */
    assert_true(b.alloc <= b.cap + 1);
    /* A full buffer takes nothing more, and says so. */
    assert_int_equal(asr_buf_puts(&b, "x"), ASR_ETOOBIG);
    assert_string_equal(asr_buf_cstr(&b), "abcde");
    /* Appending nothing to a full buffer is not an error. */
    assert_int_equal(asr_buf_append(&b, "", 0), 0);
    asr_buf_free(&b);
}

static void test_cap_exact_fit_is_not_truncated(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 4);
    assert_int_equal(asr_buf_puts(&b, "abcd"), 0);
    assert_false(b.truncated);
    assert_int_equal(b.len, 4);
    assert_string_equal(asr_buf_cstr(&b), "abcd");
    asr_buf_free(&b);
}

static void test_cap_printf(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 8);
    assert_int_equal(asr_buf_printf(&b, "%s=%d", "value", 123456), ASR_ETOOBIG);
    assert_true(b.truncated);
    assert_string_equal(asr_buf_cstr(&b), "value=12");
    asr_buf_free(&b);
}

static void test_printf_beyond_512(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 1 << 20);
    char *big = malloc(5001);
    assert_non_null(big);
    for (int i = 0; i < 5000; i++)
        big[i] = (char)('a' + i % 26);
    big[5000] = '\0';
    assert_int_equal(asr_buf_puts(&b, "<"), 0);
    assert_int_equal(asr_buf_printf(&b, "[%s|%d]", big, 7), 0);
    assert_int_equal(b.len, 1 + 1 + 5000 + 3);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[1], '[');
    assert_memory_equal(b.data + 2, big, 5000);
    assert_string_equal(b.data + 5002, "|7]");
    /* Exactly 511 and 512 bytes: the edge of the stack buffer. */
    asr_buf_reset(&b);
    big[511] = '\0';
    assert_int_equal(asr_buf_printf(&b, "%s", big), 0);
    assert_int_equal(b.len, 511);
    assert_memory_equal(b.data, big, 511);
    asr_buf_reset(&b);
    big[511] = 'x';
    big[512] = '\0';
    assert_int_equal(asr_buf_printf(&b, "%s", big), 0);
    assert_int_equal(b.len, 512);
    assert_memory_equal(b.data, big, 512);
    free(big);
    asr_buf_free(&b);
}

static void test_printf_beyond_512_hits_cap(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 600);
    char big[2001];
    memset(big, 'q', 2000);
    big[2000] = '\0';
    assert_int_equal(asr_buf_printf(&b, "%s", big), ASR_ETOOBIG);
    assert_true(b.truncated);
    assert_int_equal(b.len, 600);
    assert_int_equal(strlen(asr_buf_cstr(&b)), 600);
    asr_buf_free(&b);
}

static void test_consume(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 64);
    assert_int_equal(asr_buf_puts(&b, "hello world"), 0);
    asr_buf_consume(&b, 0);
    assert_string_equal(asr_buf_cstr(&b), "hello world");
    asr_buf_consume(&b, 6);
    assert_int_equal(b.len, 5);
    assert_string_equal(asr_buf_cstr(&b), "world");
    /* The room freed at the front can be used again. */
    assert_int_equal(asr_buf_puts(&b, "!"), 0);
    assert_string_equal(asr_buf_cstr(&b), "world!");
    asr_buf_consume(&b, 6);
    assert_int_equal(b.len, 0);
    assert_string_equal(asr_buf_cstr(&b), "");
    /* Consuming from an empty, never-allocated buffer is harmless. */
    struct asr_buf e;
    asr_buf_init(&e, 8);
    asr_buf_consume(&e, 0);
    assert_string_equal(asr_buf_cstr(&e), "");
    asr_buf_free(&e);
    asr_buf_free(&b);
}

static void test_consume_frees_room_under_cap(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 4);
    assert_int_equal(asr_buf_puts(&b, "abcd"), 0);
    asr_buf_consume(&b, 2);
    assert_int_equal(asr_buf_puts(&b, "ef"), 0);
    assert_string_equal(asr_buf_cstr(&b), "cdef");
    assert_false(b.truncated);
    asr_buf_free(&b);
}

static void test_reset(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 3);
    assert_int_equal(asr_buf_puts(&b, "abcdef"), ASR_ETOOBIG);
    assert_true(b.truncated);
    char *mem = b.data;
    asr_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_false(b.truncated);
    assert_int_equal(b.cap, 3);
    assert_ptr_equal(b.data, mem); /* memory kept */
    assert_string_equal(asr_buf_cstr(&b), "");
    assert_int_equal(asr_buf_puts(&b, "xyz"), 0);
    assert_string_equal(asr_buf_cstr(&b), "xyz");
    /* Reset of a never-allocated buffer. */
    struct asr_buf e;
    asr_buf_init(&e, 3);
    asr_buf_reset(&e);
    assert_null(e.data);
    assert_string_equal(asr_buf_cstr(&e), "");
    asr_buf_free(&b);
}

static void test_steal(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 32);
    assert_int_equal(asr_buf_puts(&b, "owned"), 0);
    char *s = asr_buf_steal(&b);
    assert_string_equal(s, "owned");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.alloc, 0);
    assert_int_equal(b.cap, 32);
    assert_false(b.truncated);
    free(s);
    /* The buffer is usable afterwards. */
    assert_int_equal(asr_buf_puts(&b, "again"), 0);
    assert_string_equal(asr_buf_cstr(&b), "again");
    asr_buf_free(&b);
    /* Stealing from an empty buffer gives "", never NULL. */
    char *e = asr_buf_steal(&b);
    assert_non_null(e);
    assert_string_equal(e, "");
    free(e);
}

static void test_zero_cap(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 0);
    assert_int_equal(asr_buf_append(&b, "", 0), 0);
    assert_false(b.truncated);
    assert_int_equal(asr_buf_puts(&b, "a"), ASR_ETOOBIG);
    assert_true(b.truncated);
    assert_int_equal(b.len, 0);
    assert_string_equal(asr_buf_cstr(&b), "");
    assert_int_equal(asr_buf_printf(&b, "%d", 5), ASR_ETOOBIG);
    assert_int_equal(b.len, 0);
    char *s = asr_buf_steal(&b);
    assert_string_equal(s, "");
    free(s);
    asr_buf_free(&b);
}

static void test_free_twice_and_reuse(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 10);
    assert_int_equal(asr_buf_puts(&b, "abc"), 0);
    asr_buf_free(&b);
    asr_buf_free(&b);
    assert_int_equal(b.cap, 10);
    assert_int_equal(asr_buf_puts(&b, "0123456789X"), ASR_ETOOBIG);
    assert_string_equal(asr_buf_cstr(&b), "0123456789");
    asr_buf_free(&b);
}

int main(int argc, char **argv)
{
    /* ctest runs each case in its own process: argv[1] names it. */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_empty),
        cmocka_unit_test(test_append_puts_printf),
        cmocka_unit_test(test_append_binary_with_nul),
        cmocka_unit_test(test_growth_keeps_content),
        cmocka_unit_test(test_cap_partial_append),
        cmocka_unit_test(test_cap_exact_fit_is_not_truncated),
        cmocka_unit_test(test_cap_printf),
        cmocka_unit_test(test_printf_beyond_512),
        cmocka_unit_test(test_printf_beyond_512_hits_cap),
        cmocka_unit_test(test_consume),
        cmocka_unit_test(test_consume_frees_room_under_cap),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_steal),
        cmocka_unit_test(test_zero_cap),
        cmocka_unit_test(test_free_twice_and_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
