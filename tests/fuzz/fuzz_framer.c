/*
 * fuzz_framer.c - libFuzzer target for the line framer (src/core/framer.c).
 *
 * Input: byte 0 picks max_line (1..32, small so the cut is hit all the time), byte 1 the number
 * k of piece sizes (0..7) that follow; the rest is the text, fed in pieces of those sizes in
 * turn. The same text is also framed in one piece and one byte at a time, each followed by a
 * flush, and the three runs must give identical lines, offsets and dropped counts.
 *
 * Each line is checked against the promises of framer.h: NUL-terminated, no '\n' and no NUL,
 * valid UTF-8 by the small independent checker below (which knows nothing of the framer's
 * decoder), at most max_line bytes, or, when cut, at most max_line bytes plus the marker it
 * ends with; end offsets never go backwards and stay within the input; after the flush the
 * offset is the input's length. The seeds in tests/fuzz/corpus/framer/ are replayed by every
 * ordinary test run (see replay_main.c).
 */
#include "asr/framer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Everything one run saw, serialised, so runs can be compared byte for byte. */
struct run {
    size_t max_line;
    uint64_t total; /* input length */
    uint64_t last_end;
    unsigned char *rec;
    size_t len, alloc;
};

/* True if s[0..n) is well-formed UTF-8 (Unicode 15, table 3-7), written from the table. */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c == 0xE0) {
            len = 3, lo = 0xA0;
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            len = 3;
        } else if (c == 0xED) {
            len = 3, hi = 0x9F;
        } else if (c == 0xF0) {
            len = 4, lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            len = 4;
        } else if (c == 0xF4) {
            len = 4, hi = 0x8F;
        } else {
            return false;
        }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return false;
        i += len;
    }
    return true;
}

static void record(struct run *r, const void *p, size_t n)
{
    if (r->len + n > r->alloc) {
        size_t a = r->alloc ? r->alloc : 256;
        while (a < r->len + n)
            a *= 2;
        r->rec = realloc(r->rec, a);
        if (r->rec == NULL)
            abort();
        r->alloc = a;
    }
    memcpy(r->rec + r->len, p, n);
    r->len += n;
}

static void line_cb(void *data, const char *line, size_t len, bool cut, uint64_t end_offset)
{
    struct run *r = data;
    const size_t mark = strlen(ASR_FRAMER_CUT_MARKER);
    size_t body = len;
    if (cut) {
        if (len < mark || memcmp(line + len - mark, ASR_FRAMER_CUT_MARKER, mark) != 0)
            abort();
        body = len - mark;
    }
    if (line[len] != '\0' || body > r->max_line || memchr(line, '\n', len) != NULL ||
        memchr(line, '\0', len) != NULL || !utf8_ok((const unsigned char *)line, len))
        abort();
    if (end_offset < r->last_end || end_offset > r->total)
        abort();
    r->last_end = end_offset;
    unsigned char flags = cut;
    record(r, &len, sizeof(len));
    record(r, &flags, 1);
    record(r, &end_offset, sizeof(end_offset));
    record(r, line, len);
}

/* Frames text with pieces of the given sizes (cycled; a 0 size counts as 1), then flushes. */
static void frame(struct run *r, const uint8_t *text, size_t n, const uint8_t *sizes, size_t k)
{
    struct asr_framer *f;
    if (asr_framer_create(r->max_line, line_cb, r, &f) != 0)
        abort();
    size_t pos = 0, i = 0;
    while (pos < n) {
        size_t step = n;
        if (k > 0) {
            step = sizes[i++ % k];
            step = step ? step : 1;
        }
        if (step > n - pos)
            step = n - pos;
        asr_framer_feed(f, (const char *)text + pos, step);
        pos += step;
        if (asr_framer_offset(f) > pos || asr_framer_offset(f) < r->last_end)
            abort();
    }
    asr_framer_flush(f);
    uint64_t off = asr_framer_offset(f), dropped = asr_framer_dropped(f);
    if (off != n || dropped > n)
        abort();
    record(r, &off, sizeof(off));
    record(r, &dropped, sizeof(dropped));
    asr_framer_destroy(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_line = 1 + data[0] % 32;
    size_t k = data[1] % 8;
    if (size < 2 + k)
        return 0;
    const uint8_t *sizes = data + 2, *text = data + 2 + k;
    size_t n = size - 2 - k;
    struct run a = {.max_line = max_line, .total = n}, b = a, c = a;
    frame(&a, text, n, sizes, k);
    frame(&b, text, n, NULL, 0);
    static const uint8_t one = 1;
    frame(&c, text, n, &one, 1);
    if (a.len != b.len || a.len != c.len || memcmp(a.rec, b.rec, a.len) != 0 ||
        memcmp(a.rec, c.rec, a.len) != 0)
        abort();
    free(a.rec);
    free(b.rec);
    free(c.rec);
    return 0;
}
