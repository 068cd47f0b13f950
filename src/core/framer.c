/*
 * framer.c - bytes to lines (see include/asr/framer.h for the promises).
 *
 * Every log byte asr reads passes through asr_framer_feed(), so the common case is kept to a
 * few tight loops: memchr() finds the newline, a word-at-a-time scan finds the longest run of
 * plain ASCII (no NUL, no high bit) that still fits the cap, and memcpy() moves that run into
 * the line buffer. Only a byte outside that run (a NUL, a UTF-8 lead or continuation byte, or
 * one that does not fit) goes through the byte-by-byte decoder below.
 *
 * State held between feeds, so that feeding byte by byte gives the same lines as feeding all at
 * once: the output so far (at most max_line bytes), an incomplete UTF-8 sequence (at most 3
 * bytes), a '\r' that is dropped if '\n' follows, and whether the rest of a cut line is being
 * dropped. Invalid input is replaced byte by byte: each byte of a sequence that turns out to be
 * invalid or truncated becomes U+FFFD, and the byte that broke the sequence is decoded afresh
 * (it may be ASCII, a new lead byte or the newline).
 */
#include "asr/framer.h"

#include "asr/error.h"
#include "asr/utf8.h"

#include <stdlib.h>
#include <string.h>

/* The largest cap a caller may ask for; lines are for people and detectors, not for bulk data. */
#define MAX_LINE_LIMIT ((size_t)1 << 30)

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

struct asr_framer {
    asr_framer_line_cb cb;
    void *data;
    size_t max_line;
    char *buf;            /* the line: max_line bytes + the marker + NUL, allocated once */
    size_t len;           /* output bytes in buf */
    bool partial;         /* input since the last line end (the line may still be empty) */
    bool skipping;        /* dropping the rest of a cut line up to its newline */
    bool cr;              /* a '\r' ended the last feed; dropped if '\n' comes next */
    unsigned char seq[4]; /* an incomplete UTF-8 sequence */
    unsigned nseq, need;  /* bytes held in seq, and the sequence's full length */
    uint64_t seq_off;     /* input offset of seq[0] */
    uint64_t in_off;      /* input offset of the next byte fed */
    uint64_t done_off;    /* first byte not yet part of an emitted line (or, skipping, dropped) */
    uint64_t dropped;
};

int asr_framer_create(size_t max_line, asr_framer_line_cb cb, void *data, struct asr_framer **out)
{
    *out = NULL;
    if (max_line == 0)
        max_line = ASR_LINE_MAX;
    if (cb == NULL || max_line > MAX_LINE_LIMIT)
        return ASR_EINVAL;
    struct asr_framer *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return ASR_ENOMEM;
    f->buf = malloc(max_line + sizeof(ASR_FRAMER_CUT_MARKER)); /* sizeof counts the NUL */
    if (f->buf == NULL) {
        free(f);
        return ASR_ENOMEM;
    }
    f->cb = cb;
    f->data = data;
    f->max_line = max_line;
    *out = f;
    return 0;
}

void asr_framer_destroy(struct asr_framer *f)
{
    if (f == NULL)
        return;
    free(f->buf);
    free(f);
}

/* Hands the line over and starts the next one. */
static void emit(struct asr_framer *f, bool cut, uint64_t end_offset)
{
    f->buf[f->len] = '\0';
    f->cb(f->data, f->buf, f->len, cut, end_offset);
    f->len = 0;
    f->partial = false;
}

/* The unit starting at input offset off does not fit: emit the line cut there, and drop the
 * rest of it up to its newline (counted in dropped as the skip passes over it). */
static void cut(struct asr_framer *f, uint64_t off)
{
    memcpy(f->buf + f->len, ASR_FRAMER_CUT_MARKER, sizeof(ASR_FRAMER_CUT_MARKER) - 1);
    f->len += sizeof(ASR_FRAMER_CUT_MARKER) - 1;
    f->nseq = 0;
    f->cr = false;
    f->skipping = true;
    f->done_off = off;
    emit(f, true, off);
}

/* Appends one output unit (a character, or U+FFFD for one input byte) that starts at input
 * offset off. Returns false if it did not fit and the line was cut instead. */
static bool put(struct asr_framer *f, const void *s, size_t n, uint64_t off)
{
    if (n > f->max_line - f->len) {
        cut(f, off);
        return false;
    }
    memcpy(f->buf + f->len, s, n);
    f->len += n;
    return true;
}

/* Replaces each held byte of an invalid or truncated sequence by U+FFFD. False if cut. */
static bool seq_invalid(struct asr_framer *f)
{
    unsigned n = f->nseq;
    f->nseq = 0;
    for (unsigned i = 0; i < n; i++)
        if (!put(f, REPLACEMENT, sizeof(REPLACEMENT), f->seq_off + i))
            return false;
    return true;
}

/*
 * Decodes one byte c (not '\n') at input offset off. Returns false if the line was cut (the
 * caller then drops the rest of it; what counts as dropped follows from the offsets).
 */
static bool decode_byte(struct asr_framer *f, unsigned char c, uint64_t off)
{
    if (f->nseq > 0) {
        /* The second byte is constrained further, which rules out overlong forms (E0, F0),
         * UTF-16 surrogates (ED) and code points above U+10FFFF (F4). */
        unsigned char lo = 0x80, hi = 0xBF;
        if (f->nseq == 1) {
            switch (f->seq[0]) {
            case 0xE0:
                lo = 0xA0;
                break;
            case 0xED:
                hi = 0x9F;
                break;
            case 0xF0:
                lo = 0x90;
                break;
            case 0xF4:
                hi = 0x8F;
                break;
            default:
                break;
            }
        }
        if (c >= lo && c <= hi) {
            f->seq[f->nseq++] = c;
            if (f->nseq < f->need)
                return true;
            f->nseq = 0;
            /* A valid character that does not fit is cut before its first byte. */
            return put(f, f->seq, f->need, f->seq_off);
        }
        if (!seq_invalid(f))
            return false;
        /* c broke the sequence: decode it on its own. */
    }
    if (f->len == f->max_line) {
        /* Nothing more fits, whatever c turns out to be. */
        cut(f, off);
        return false;
    }
    if (c != 0 && c < 0x80) {
        f->buf[f->len++] = (char)c;
        return true;
    }
    unsigned need = c >= 0xC2 && c <= 0xDF   ? 2
                    : c >= 0xE0 && c <= 0xEF ? 3
                    : c >= 0xF0 && c <= 0xF4 ? 4
                                             : 0;
    if (need == 0) /* NUL, a stray continuation byte, C0/C1 (always overlong), F5..FF */
        return put(f, REPLACEMENT, sizeof(REPLACEMENT), off);
    f->seq[0] = c;
    f->nseq = 1;
    f->need = need;
    f->seq_off = off;
    return true;
}

/* Length of the run of bytes at p (at most n) that are ASCII and not NUL. */
static size_t ascii_run(const unsigned char *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    /* A byte is flagged when its high bit is set or it is 0 (0 - 1 borrows into the high bit);
     * a borrow only ever comes from a flagged byte below, so an unflagged word is clean. */
    for (; i + 16 <= n; i += 16) { /* two words a step: log lines are mostly long runs */
        uint64_t v, w;
        memcpy(&v, p + i, 8);
        memcpy(&w, p + i + 8, 8);
        if (((v - ones) | v | (w - ones) | w) & highs)
            break;
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        if (((v - ones) | v) & highs)
            break;
    }
    while (i < n && p[i] != 0 && p[i] < 0x80)
        i++;
    return i;
}

/*
 * Adds the bytes [p, e) (no '\n' among them) to the current line, starting at input offset off.
 * Returns the number of bytes consumed: all of them, or fewer if the line was cut (the caller
 * drops the rest).
 */
static size_t add_segment(struct asr_framer *f, const unsigned char *p, size_t n, uint64_t off)
{
    size_t i = 0;
    if (n > 0)
        f->partial = true;
    while (i < n) {
        if (f->nseq == 0) {
            size_t room = f->max_line - f->len;
            size_t k = ascii_run(p + i, n - i < room ? n - i : room);
            memcpy(f->buf + f->len, p + i, k);
            f->len += k;
            i += k;
            if (i == n)
                break;
            /* A whole valid multibyte character is copied at once (text in other scripts is
             * mostly such sequences); anything else, NUL and CR included, is decoded below. */
            size_t sl = p[i] >= 0x80 ? asr_utf8_seq(p + i, n - i) : 0;
            if (sl > 0 && sl <= f->max_line - f->len) {
                memcpy(f->buf + f->len, p + i, sl);
                f->len += sl;
                i += sl;
                continue;
            }
        }
        if (!decode_byte(f, p[i], off + i))
            return i;
        i++;
    }
    return n;
}

/* The line ends at the newline at input offset nl_off. */
static void end_line(struct asr_framer *f, uint64_t nl_off)
{
    if (f->nseq > 0 && !seq_invalid(f)) {
        /* Cut at the truncated sequence: the skip ends at this very newline. */
        f->dropped += nl_off - f->done_off;
    } else {
        emit(f, false, nl_off + 1);
    }
    f->skipping = false;
    f->done_off = nl_off + 1;
}

void asr_framer_feed(struct asr_framer *f, const char *bytes, size_t len)
{
    const unsigned char *p = (const unsigned char *)bytes, *end = p + len;
    uint64_t base = f->in_off; /* offset of bytes[0] */
    f->in_off += len;
    if (len > 0 && f->cr) {
        f->cr = false;
        if (*p == '\n') {
            end_line(f, base);
            p++;
        } else {
            put(f, "\r", 1, base - 1); /* if that cuts, the skip below drops the rest */
        }
    }
    while (p < end) {
        uint64_t off = base + (uint64_t)(p - (const unsigned char *)bytes);
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        if (f->skipping) {
            if (nl == NULL) {
                f->dropped += f->in_off - f->done_off;
                f->done_off = f->in_off;
                return;
            }
            uint64_t nl_off = off + (uint64_t)(nl - p);
            f->dropped += nl_off - f->done_off;
            f->skipping = false;
            f->done_off = nl_off + 1;
            p = nl + 1;
            continue;
        }
        const unsigned char *e = nl != NULL ? nl : end;
        /* A '\r' before the newline is dropped; one at the end of the feed is held, since the
         * newline may come in the next feed. */
        bool hold_cr = e > p && e[-1] == '\r';
        size_t n = (size_t)(e - p) - (hold_cr ? 1 : 0);
        size_t used = add_segment(f, p, n, off);
        if (used < n || f->skipping) {
            p += used; /* cut: the skip drops the rest, up to and including the newline */
            continue;
        }
        if (nl != NULL) {
            end_line(f, off + (uint64_t)(nl - p));
            p = nl + 1;
            continue;
        }
        if (hold_cr) {
            /* A '\r' is not a continuation byte: a held sequence before it is truncated. */
            f->partial = true;
            if (f->nseq > 0 && !seq_invalid(f)) {
                f->dropped += f->in_off - f->done_off;
                f->done_off = f->in_off;
                return;
            }
            f->cr = true;
        }
        return;
    }
}

void asr_framer_flush(struct asr_framer *f)
{
    if (f->skipping) {
        /* A cut line ends here; its dropped bytes are already counted. */
        f->skipping = false;
        f->done_off = f->in_off;
        return;
    }
    if (!f->partial)
        return;
    bool ok = seq_invalid(f);
    if (ok && f->cr) {
        f->cr = false;
        ok = put(f, "\r", 1, f->in_off - 1);
    }
    if (ok)
        emit(f, false, f->in_off);
    else
        f->dropped += f->in_off - f->done_off;
    f->skipping = false;
    f->cr = false;
    f->partial = false;
    f->done_off = f->in_off;
}

void asr_framer_reset(struct asr_framer *f, uint64_t base)
{
    f->len = 0;
    f->partial = false;
    f->skipping = false;
    f->cr = false;
    f->nseq = 0;
    f->in_off = f->done_off = base;
}

uint64_t asr_framer_offset(const struct asr_framer *f)
{
    return f->done_off;
}

uint64_t asr_framer_dropped(const struct asr_framer *f)
{
    return f->dropped;
}
