/*
 * fuzz_sigscan.c - libFuzzer target for scanning (src/detect/signature.c): a fixed, realistic
 * signature set (the demo's signatures, a prefiltered back-reference, a lookahead, captures that
 * may not take part) with the generic detectors, and the input as the line bytes.
 *
 * The input is scanned whole, then line by line as the framer would cut it, then as one block
 * with asr_sigset_scan_block(), which must report exactly the line-by-line hits. Crashes,
 * sanitizer reports, hits out of order or repeated, captures outside the line and a block scan
 * that differs are findings.
 * The seeds in tests/fuzz/corpus/sigscan/ are replayed by every ordinary test run.
 */
#include "asr/config.h"
#include "detect/signature.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const route_reason[] = {"route", "reason", NULL};
static const char *const none[] = {NULL};

static const struct asr_signature_cfg sigs[] = {
    {.id = "FAULT_SQL_INJECTION_TEST",
     .pattern = "FAULT_SQL_INJECTION_TEST route=(?<route>\\S+) reason=(?<reason>\\S+)",
     .severity = "critical",
     .dedupe = (asr_argv)route_reason,
     .line = 1},
    {.id = "FAULT_DB_TIMEOUT",
     .pattern = "FAULT_DB_TIMEOUT route=(?<route>\\S+) reason=(?<reason>\\S+)",
     .severity = "error",
     .dedupe = (asr_argv)route_reason,
     .line = 2},
    {.id = "PAYMENT",
     .pattern = "payment (?<op>\\w+) failed after (?<ms>\\d+) ms(?: code=(?<code>\\d+))?",
     .dedupe = (asr_argv)none,
     .line = 3},
    {.id = "REPEAT", .pattern = "(?<word>\\w+) \\k<word>", .dedupe = (asr_argv)none, .line = 4},
    {.id = "AHEAD", .pattern = "timeout(?= after)", .dedupe = (asr_argv)none, .line = 5},
    {.id = "LITERAL", .pattern = "FAULT_CODE_0017", .dedupe = (asr_argv)none, .line = 6},
    {.id = "DOTS", .pattern = "user=(?<u>.{1,8})@(?<h>[^ ]*)", .dedupe = (asr_argv)none, .line = 7},
};

static struct asr_sigset *set;

struct check {
    const char *line;
    size_t len;
    size_t last;
    bool ascii;
};

static bool hit_cb(void *data, const struct asr_sig_hit *h)
{
    struct check *c = data;
    size_t n = sizeof(sigs) / sizeof(sigs[0]);
    size_t pos = h->generic ? n + h->index : h->index;
    if (pos + 1 <= c->last || h->ncaptures > ASR_SIG_MAX_CAPTURES)
        abort();
    c->last = pos + 1;
    for (size_t i = 0; i < h->ncaptures; i++) {
        const struct asr_sig_capture *cap = &h->captures[i];
        if (c->ascii && (cap->value < c->line || cap->len > c->len ||
                         (size_t)(cap->value - c->line) > c->len - cap->len))
            abort();
    }
    return true;
}

/* Order-sensitive digest of (line offset, hit position) pairs, for block == line by line. */
struct digest {
    const char *base;
    uint64_t h;
    int n;
};

static void mix(struct digest *d, size_t off, size_t pos)
{
    d->h = (d->h ^ off) * 0x100000001b3ull;
    d->h = (d->h ^ pos) * 0x100000001b3ull;
    d->n++;
}

static size_t position(const struct asr_sig_hit *h)
{
    return h->generic ? sizeof(sigs) / sizeof(sigs[0]) + h->index : h->index;
}

static bool block_cb(void *data, const char *line, size_t len, const struct asr_sig_hit *h)
{
    (void)len;
    struct digest *d = data;
    mix(d, (size_t)(line - d->base), position(h));
    return true;
}

struct one_line {
    struct digest *d;
    size_t off;
};

static bool line_cb(void *data, const struct asr_sig_hit *h)
{
    struct one_line *o = data;
    mix(o->d, o->off, position(h));
    return true;
}

static void scan(const char *line, size_t len)
{
    struct check c = {line, len, 0, true};
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)line[i] >= 0x80)
            c.ascii = false;
    int rc = asr_sigset_scan(set, line, len, hit_cb, &c);
    if (rc < 0 && rc != ASR_ENOMEM)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (set == NULL) {
        struct asr_err err = {0};
        if (asr_sigset_create(sigs, sizeof(sigs) / sizeof(sigs[0]), ASR_SIGSET_GENERIC, &set,
                              &err) != 0) {
            fprintf(stderr, "fuzz_sigscan: %s\n", err.msg);
            abort();
        }
    }
    scan((const char *)data, size);
    const char *p = (const char *)data, *end = p + size;
    struct digest lines = {(const char *)data, 0, 0}, block = lines;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        scan(p, len);
        struct one_line o = {&lines, (size_t)(p - (const char *)data)};
        if (asr_sigset_scan(set, p, len, line_cb, &o) < 0)
            abort();
        p += len + 1;
    }
    /* The block scan must report exactly what the line-by-line scan did. */
    int rc = asr_sigset_scan_block(set, (const char *)data, size, block_cb, &block);
    if (rc != block.n || block.n != lines.n || block.h != lines.h)
        abort();
    return 0;
}
