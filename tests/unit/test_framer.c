/*
 * test_framer.c - bytes to lines (include/asr/framer.h, src/core/framer.c).
 *
 * Each test feeds bytes, in one piece, in given pieces or one byte at a time, and compares the
 * lines that come out (text, cut flag, end offset) with what the contract promises: CRLF, NUL
 * and invalid UTF-8 replaced by U+FFFD (lone continuation bytes, sequences truncated by the end
 * of a feed, by another byte or by the newline, overlongs, surrogates, code points past
 * U+10FFFF), valid characters split across feeds kept intact, the cut at the cap with its
 * marker, dropped counts and offsets, flush, reset, and that the way the input is split never
 * changes the result.
 */
#include "asr/framer.h"
#include "asr/error.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FFFD "\xEF\xBF\xBD"
#define MARK ASR_FRAMER_CUT_MARKER

struct line {
    char *text;
    size_t len;
    bool cut;
    uint64_t end;
};

/* Every line the framer emitted, in order. */
struct lines {
    struct line *v;
    size_t n, alloc;
};

static void collect_cb(void *data, const char *line, size_t len, bool cut, uint64_t end_offset)
{
    struct lines *l = data;
    /* The promises every line keeps, whatever the input. */
    assert_int_equal(line[len], '\0');
    assert_null(memchr(line, '\n', len));
    assert_null(memchr(line, '\0', len));
    if (l->n == l->alloc) {
        l->alloc = l->alloc ? 2 * l->alloc : 16;
        l->v = realloc(l->v, l->alloc * sizeof(*l->v));
        assert_non_null(l->v);
    }
    struct line *e = &l->v[l->n++];
    e->text = malloc(len + 1);
    assert_non_null(e->text);
    memcpy(e->text, line, len + 1);
    e->len = len;
    e->cut = cut;
    e->end = end_offset;
}

static void lines_free(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].text);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static struct asr_framer *make(size_t max_line, struct lines *l)
{
    struct asr_framer *f = NULL;
    assert_int_equal(asr_framer_create(max_line, collect_cb, l, &f), 0);
    assert_non_null(f);
    return f;
}

static void feed_str(struct asr_framer *f, const char *s)
{
    asr_framer_feed(f, s, strlen(s));
}

static void expect_line(const struct lines *l, size_t i, const char *text, bool cut, uint64_t end)
{
    if (i >= l->n)
        fail_msg("line %zu missing (%zu lines)", i, l->n);
    assert_int_equal(l->v[i].len, strlen(text));
    assert_memory_equal(l->v[i].text, text, strlen(text));
    assert_int_equal(l->v[i].cut, cut);
    assert_int_equal(l->v[i].end, end);
}

/* Frames in with the given max_line, fed in pieces of at most step bytes (0: all at once),
 * flushing at the end when flush is set; returns the lines and the final offset and dropped. */
static void frame(const char *in, size_t len, size_t max_line, size_t step, bool flush,
                  struct lines *out, uint64_t *offset, uint64_t *dropped)
{
    struct asr_framer *f = make(max_line, out);
    if (step == 0)
        step = len ? len : 1;
    for (size_t i = 0; i < len; i += step)
        asr_framer_feed(f, in + i, len - i < step ? len - i : step);
    if (flush)
        asr_framer_flush(f);
    *offset = asr_framer_offset(f);
    *dropped = asr_framer_dropped(f);
    asr_framer_destroy(f);
}

static void assert_same(const struct lines *a, const struct lines *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->v[i].len, b->v[i].len);
        assert_memory_equal(a->v[i].text, b->v[i].text, a->v[i].len);
        assert_int_equal(a->v[i].cut, b->v[i].cut);
        assert_int_equal(a->v[i].end, b->v[i].end);
    }
}

/* The one-line output of a whole line given as a C string (without its newline). */
static void expect_one(const char *in, const char *want)
{
    struct lines l = {0};
    struct asr_framer *f = make(0, &l);
    feed_str(f, in);
    feed_str(f, "\n");
    asr_framer_destroy(f);
    if (l.n != 1)
        fail_msg("%zu lines for one", l.n);
    if (l.v[0].len != strlen(want) || memcmp(l.v[0].text, want, l.v[0].len) != 0)
        fail_msg("line %zu bytes, wanted %zu", l.v[0].len, strlen(want));
    lines_free(&l);
}

static void test_create_args(void **state)
{
    (void)state;
    struct asr_framer *f = (struct asr_framer *)1;
    assert_int_equal(asr_framer_create(0, NULL, NULL, &f), ASR_EINVAL);
    assert_null(f);
    assert_int_equal(asr_framer_create((size_t)1 << 40, collect_cb, NULL, &f), ASR_EINVAL);
    assert_null(f);
    asr_framer_destroy(NULL);
    /* max_line 0 is ASR_LINE_MAX: a line of exactly that many bytes is not cut. */
    struct lines l = {0};
    f = make(0, &l);
    char *big = malloc(ASR_LINE_MAX + 1);
    assert_non_null(big);
    memset(big, 'a', ASR_LINE_MAX);
    big[ASR_LINE_MAX] = '\n';
    asr_framer_feed(f, big, ASR_LINE_MAX + 1);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].len, ASR_LINE_MAX);
    assert_false(l.v[0].cut);
    asr_framer_feed(f, big, ASR_LINE_MAX);
    asr_framer_feed(f, "b", 1);
    assert_int_equal(l.n, 2);
    assert_true(l.v[1].cut);
    assert_int_equal(l.v[1].len, ASR_LINE_MAX + strlen(MARK));
    free(big);
    asr_framer_destroy(f);
    lines_free(&l);
}

static void test_lines_and_offsets(void **state)
{
    (void)state;
    struct lines l = {0};
    struct asr_framer *f = make(0, &l);
    assert_int_equal(asr_framer_offset(f), 0);
    feed_str(f, "a\nbc\n\nde");
    assert_int_equal(l.n, 3);
    expect_line(&l, 0, "a", false, 2);
    expect_line(&l, 1, "bc", false, 5);
    expect_line(&l, 2, "", false, 6);
    /* "de" is held: the offset stays at the start of the partial line. */
    assert_int_equal(asr_framer_offset(f), 6);
    feed_str(f, "f\n");
    expect_line(&l, 3, "def", false, 10);
    assert_int_equal(asr_framer_offset(f), 10);
    asr_framer_feed(f, "", 0);
    assert_int_equal(l.n, 4);
    assert_int_equal(asr_framer_dropped(f), 0);
    asr_framer_destroy(f);
    lines_free(&l);
}

static void test_crlf(void **state)
{
    (void)state;
    struct lines l = {0};
    struct asr_framer *f = make(0, &l);
    feed_str(f, "a\r\nb\rc\r\n\r\n\r\r\n");
    expect_line(&l, 0, "a", false, 3);
    expect_line(&l, 1, "b\rc", false, 8); /* a lone CR inside a line stays */
    expect_line(&l, 2, "", false, 10);
    expect_line(&l, 3, "\r", false, 13); /* only the CR right before the LF goes */
    /* The CR and the LF in different feeds. */
    feed_str(f, "x\r");
    assert_int_equal(l.n, 4);
    feed_str(f, "\n");
    expect_line(&l, 4, "x", false, 16);
    /* A held CR that is not followed by LF is part of the line. */
    feed_str(f, "y\r");
    feed_str(f, "z\n");
    expect_line(&l, 5, "y\rz", false, 20);
    assert_int_equal(l.n, 6);
    asr_framer_destroy(f);
    lines_free(&l);
}

static void test_nul_replaced(void **state)
{
    (void)state;
    struct lines l = {0};
    struct asr_framer *f = make(0, &l);
    asr_framer_feed(f, "a\0b\0\n\0\n", 7);
    expect_line(&l, 0, "a" FFFD "b" FFFD, false, 5);
    expect_line(&l, 1, FFFD, false, 7);
    /* A NUL inside a sequence ends it and is replaced itself. */
    asr_framer_feed(f, "\xC3\0x\n", 4);
    expect_line(&l, 2, FFFD FFFD "x", false, 11);
    asr_framer_destroy(f);
    lines_free(&l);
}

static void test_valid_utf8_kept(void **state)
{
    (void)state;
    /* The edges of each length class survive as they are. */
    expect_one("\x7F", "\x7F");
    expect_one("\xC2\x80", "\xC2\x80");                 /* U+0080 */
    expect_one("\xDF\xBF", "\xDF\xBF");                 /* U+07FF */
    expect_one("\xE0\xA0\x80", "\xE0\xA0\x80");         /* U+0800 */
    expect_one("\xED\x9F\xBF", "\xED\x9F\xBF");         /* U+D7FF */
    expect_one("\xEE\x80\x80", "\xEE\x80\x80");         /* U+E000 */
    expect_one("\xEF\xBF\xBD", "\xEF\xBF\xBD");         /* U+FFFD itself */
    expect_one("\xF0\x90\x80\x80", "\xF0\x90\x80\x80"); /* U+10000 */
    expect_one("\xF4\x8F\xBF\xBF", "\xF4\x8F\xBF\xBF"); /* U+10FFFF */
    expect_one("gr\xC3\xBC\xC3\x9F \xE2\x82\xAC \xF0\x9F\x98\x80!",
               "gr\xC3\xBC\xC3\x9F \xE2\x82\xAC \xF0\x9F\x98\x80!");
}

static void test_invalid_utf8_replaced(void **state)
{
    (void)state;
    /* Each byte of a bad sequence becomes one U+FFFD; the byte that broke it is read afresh. */
    expect_one("\x80", FFFD); /* lone continuation */
    expect_one("a\xBF\xBF"
               "b",
               "a" FFFD FFFD "b"); /* two of them */
    expect_one("\xC3", FFFD);      /* truncated by the newline */
    expect_one("\xE2\x82"
               "A",
               FFFD FFFD "A");                           /* truncated by ASCII */
    expect_one("\xE2\xC3\xA9", FFFD "\xC3\xA9");         /* truncated by a new lead */
    expect_one("\xF0\x9F\x98", FFFD FFFD FFFD);          /* 3 of 4 bytes */
    expect_one("\xC0\x80", FFFD FFFD);                   /* overlong NUL */
    expect_one("\xC1\xBF", FFFD FFFD);                   /* overlong 2-byte */
    expect_one("\xE0\x80\x80", FFFD FFFD FFFD);          /* overlong 3-byte */
    expect_one("\xE0\x9F\xBF", FFFD FFFD FFFD);          /* overlong U+07FF */
    expect_one("\xF0\x80\x80\x80", FFFD FFFD FFFD FFFD); /* overlong 4-byte */
    expect_one("\xF0\x8F\xBF\xBF", FFFD FFFD FFFD FFFD); /* overlong U+FFFF */
    expect_one("\xED\xA0\x80", FFFD FFFD FFFD);          /* surrogate U+D800 */
    expect_one("\xED\xBF\xBF", FFFD FFFD FFFD);          /* surrogate U+DFFF */
    expect_one("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* U+110000 */
    expect_one("\xF5\x80\x80\x80", FFFD FFFD FFFD FFFD); /* lead past F4 */
    expect_one("\xFE\xFF", FFFD FFFD);                   /* never in UTF-8 */
}

static void test_utf8_split_across_feeds(void **state)
{
    (void)state;
    struct lines l = {0};
    struct asr_framer *f = make(0, &l);
    /* A valid 3-byte and 4-byte character, split at every point, survive intact. */
    feed_str(f, "a\xE2");
    feed_str(f, "\x82");
    feed_str(f, "\xAC"
                "b\xF0\x9F");
    feed_str(f, "\x98");
    feed_str(f, "\x80\n");
    expect_line(&l, 0,
                "a\xE2\x82\xAC"
                "b\xF0\x9F\x98\x80",
                false, 10);
    /* A sequence truncated at the end of a feed and then by the newline of the next. */
    feed_str(f, "x\xE2\x82");
    assert_int_equal(l.n, 1);
    feed_str(f, "\n");
    expect_line(&l, 1, "x" FFFD FFFD, false, 14);
    /* Truncated by a CR held at the end of a feed. */
    feed_str(f, "\xC3");
    feed_str(f, "\r");
    feed_str(f, "\n");
    expect_line(&l, 2, FFFD, false, 17);
    /* A bad continuation in the next feed. */
    feed_str(f, "\xE2");
    feed_str(f, "\x82");
    feed_str(f, "z\n");
    expect_line(&l, 3, FFFD FFFD "z", false, 21);
    asr_framer_destroy(f);
    lines_free(&l);
}

static void test_cut_at_cap(void **state)
{
    (void)state;
    struct lines l = {0};
    struct asr_framer *f = make(8, &l);
    /* Exactly max_line is not cut, with LF or CRLF. */
    feed_str(f, "01234567\n01234567\r\n");
    expect_line(&l, 0, "01234567", false, 9);
    expect_line(&l, 1, "01234567", false, 19);
    /* A longer line is emitted as soon as it overflows, before its newline. */
    feed_str(f, "0123456789");
    assert_int_equal(l.n, 3);
    expect_line(&l, 2, "01234567" MARK, true, 19 + 8);
    /* The offset moves over the dropped bytes as they arrive. */
    assert_int_equal(asr_framer_offset(f), 29);
    assert_int_equal(asr_framer_dropped(f), 2);
    feed_str(f, "abcdef");
    assert_int_equal(asr_framer_dropped(f), 8);
    feed_str(f, "\r\nok\n");
    assert_int_equal(l.n, 4);
    expect_line(&l, 3, "ok", false, 40);
    assert_int_equal(asr_framer_dropped(f), 9); /* the CR of the cut line is dropped too */
    assert_int_equal(asr_framer_offset(f), 40);
    asr_framer_destroy(f);
    lines_free(&l);
}

static void test_cut_never_splits_a_character(void **state)
{
    (void)state;
    struct lines l = {0};
    struct asr_framer *f = make(8, &l);
    /* One byte of room left: the 3-byte euro sign does not fit and is cut before. */
    feed_str(f, "0123456\xE2\x82\xAC\n");
    expect_line(&l, 0, "0123456" MARK, true, 7);
    assert_int_equal(asr_framer_dropped(f), 3);
    assert_int_equal(asr_framer_offset(f), 11);
    /* Nor does a U+FFFD for a bad byte. */
    feed_str(f, "012345\x80\x80\n");
    expect_line(&l, 1, "012345" MARK, true, 17);
    assert_int_equal(asr_framer_dropped(f), 5);
    /* The first U+FFFD of a truncated sequence fits, the second does not. */
    feed_str(f, "01234\xE2\x82\n");
    expect_line(&l, 2, "01234" FFFD MARK, true, 26);
    assert_int_equal(asr_framer_dropped(f), 6);
    assert_int_equal(asr_framer_offset(f), 28);
    /* A held CR that turns out to be content and does not fit. */
    feed_str(f, "01234567\r");
    feed_str(f, "x\n");
    expect_line(&l, 3, "01234567" MARK, true, 36);
    assert_int_equal(l.n, 4);
    asr_framer_destroy(f);
    lines_free(&l);
}

static void test_cut_line_at_eof_is_one_line(void **state)
{
    (void)state;
    struct lines l = {0};
    struct asr_framer *f = make(4, &l);
    feed_str(f, "abcdefgh");
    asr_framer_flush(f);
    assert_int_equal(l.n, 1);
    expect_line(&l, 0, "abcd" MARK, true, 4);
    assert_int_equal(asr_framer_offset(f), 8);
    /* After the flush a new line starts. */
    feed_str(f, "ok\n");
    expect_line(&l, 1, "ok", false, 11);
    asr_framer_destroy(f);
    lines_free(&l);
}

static void test_flush(void **state)
{
    (void)state;
    struct lines l = {0};
    struct asr_framer *f = make(0, &l);
    asr_framer_flush(f); /* nothing held: nothing emitted */
    assert_int_equal(l.n, 0);
    feed_str(f, "a\nlast");
    asr_framer_flush(f);
    expect_line(&l, 1, "last", false, 6);
    assert_int_equal(asr_framer_offset(f), 6);
    asr_framer_flush(f);
    assert_int_equal(l.n, 2);
    /* A truncated sequence at the flush is replaced. */
    feed_str(f, "x\xF0\x9F");
    asr_framer_flush(f);
    expect_line(&l, 2, "x" FFFD FFFD, false, 9);
    /* A CR held at the flush had no LF: it stays. */
    feed_str(f, "y\r");
    asr_framer_flush(f);
    expect_line(&l, 3, "y\r", false, 11);
    /* A line of only a CR is still a line. */
    feed_str(f, "\r");
    asr_framer_flush(f);
    expect_line(&l, 4, "\r", false, 12);
    assert_int_equal(l.n, 5);
    asr_framer_destroy(f);
    lines_free(&l);
}

static void test_reset(void **state)
{
    (void)state;
    struct lines l = {0};
    struct asr_framer *f = make(8, &l);
    feed_str(f, "one\npart\xE2");
    assert_int_equal(l.n, 1);
    asr_framer_reset(f, 100);
    assert_int_equal(asr_framer_offset(f), 100);
    feed_str(f, "\x82x\n"); /* the held byte was dropped: this continuation is a stray */
    expect_line(&l, 1, FFFD "x", false, 103);
    /* A reset ends the dropping of a cut line, and keeps the dropped count. */
    feed_str(f, "abcdefghij");
    assert_int_equal(l.n, 3);
    assert_true(l.v[2].cut);
    uint64_t dropped = asr_framer_dropped(f);
    asr_framer_reset(f, 0);
    feed_str(f, "hi\n");
    expect_line(&l, 3, "hi", false, 3);
    assert_int_equal(asr_framer_dropped(f), dropped);
    /* A held CR is dropped too. */
    feed_str(f, "k\r");
    asr_framer_reset(f, 0);
    feed_str(f, "\n");
    expect_line(&l, 4, "", false, 1);
    asr_framer_destroy(f);
    lines_free(&l);
}

/* A mixed input that touches every path: long lines, bad bytes, CRs, NULs, splits. */
static size_t mixed_input(char *buf, size_t cap, unsigned seed)
{
    static const char *const parts[] = {"plain ascii text ",
                                        "\r\n",
                                        "\n",
                                        "\r",
                                        "\xE2\x82\xAC",
                                        "\xF0\x9F\x98\x80",
                                        "\xC3\xA9",
                                        "\x80",
                                        "\xE2\x82",
                                        "\xC0\xAF",
                                        "\xED\xA0\x80",
                                        "\xF4\x90\x80\x80",
                                        "\xFF",
                                        "0123456789abcdefghijklmnopqrstuvwxyz",
                                        "x"};
    size_t n = 0;
    unsigned r = seed;
    while (n + 64 < cap) {
        r = r * 1103515245u + 12345u;
        unsigned k = (r >> 16) % (sizeof(parts) / sizeof(parts[0]) + 1);
        if (k == sizeof(parts) / sizeof(parts[0])) {
            buf[n++] = '\0';
            continue;
        }
        size_t pl = strlen(parts[k]);
        memcpy(buf + n, parts[k], pl);
        n += pl;
    }
    return n;
}

static void test_split_does_not_matter(void **state)
{
    (void)state;
    static char in[20000];
    const size_t caps[] = {1, 2, 3, 4, 5, 7, 16, 64, 0};
    for (unsigned seed = 1; seed <= 3; seed++) {
        size_t len = mixed_input(in, sizeof(in), seed);
        for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
            for (int flush = 0; flush <= 1; flush++) {
                struct lines one = {0}, each = {0};
                uint64_t off1, drop1, off2, drop2;
                frame(in, len, caps[c], 0, flush, &one, &off1, &drop1);
                frame(in, len, caps[c], 1, flush, &each, &off2, &drop2);
                assert_same(&one, &each);
                assert_int_equal(off1, off2);
                assert_int_equal(drop1, drop2);
                const size_t steps[] = {2, 3, 5, 64, 4093};
                for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
                    struct lines other = {0};
                    frame(in, len, caps[c], steps[s], flush, &other, &off2, &drop2);
                    assert_same(&one, &other);
                    assert_int_equal(off1, off2);
                    assert_int_equal(drop1, drop2);
                    lines_free(&other);
                }
                if (flush)
                    assert_int_equal(off1, len);
                lines_free(&one);
                lines_free(&each);
            }
        }
    }
}

static void test_offsets_across_many_feeds(void **state)
{
    (void)state;
    /* 10000 numbered lines of varying length fed in odd-sized pieces: every line comes out
     * once, in order, and its end offset is where the next line starts in the input. */
    static const char filler[] = "the quick brown fox jumps over the lazy dog; 0123456789 "
                                 "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.";
    size_t cap = 1 << 20, len = 0;
    char *in = malloc(cap);
    assert_non_null(in);
    for (int i = 0; i < 10000; i++)
        len += (size_t)snprintf(in + len, cap - len, "line %d %.*s\n", i, i % 97, filler);
    struct lines l = {0};
    struct asr_framer *f = make(0, &l);
    size_t pos = 0, step = 1;
    while (pos < len) {
        size_t n = len - pos < step ? len - pos : step;
        asr_framer_feed(f, in + pos, n);
        pos += n;
        step = step * 7 % 1009 + 1;
    }
    assert_int_equal(l.n, 10000);
    uint64_t start = 0;
    for (size_t i = 0; i < l.n; i++) {
        char want[32];
        int wl = snprintf(want, sizeof(want), "line %zu ", i);
        assert_memory_equal(l.v[i].text, want, (size_t)wl);
        assert_int_equal(l.v[i].end, start + l.v[i].len + 1);
        assert_memory_equal(in + start, l.v[i].text, l.v[i].len);
        start = l.v[i].end;
    }
    assert_int_equal(start, len);
    assert_int_equal(asr_framer_offset(f), len);
    asr_framer_destroy(f);
    lines_free(&l);
    free(in);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_args),
        cmocka_unit_test(test_lines_and_offsets),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_nul_replaced),
        cmocka_unit_test(test_valid_utf8_kept),
        cmocka_unit_test(test_invalid_utf8_replaced),
        cmocka_unit_test(test_utf8_split_across_feeds),
        cmocka_unit_test(test_cut_at_cap),
        cmocka_unit_test(test_cut_never_splits_a_character),
        cmocka_unit_test(test_cut_line_at_eof_is_one_line),
        cmocka_unit_test(test_flush),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_split_does_not_matter),
        cmocka_unit_test(test_offsets_across_many_feeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
