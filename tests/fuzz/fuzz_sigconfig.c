/*
 * fuzz_sigconfig.c - libFuzzer target for signature compilation (src/detect/signature.c) from a
 * whole config file, the way the daemon gets its signatures.
 *
 * The input is YAML config text. Each service's signatures are compiled into a sigset (the
 * first with the generic detectors, see MAX_SETS), which then scans a few fixed lines and every
 * line of the input itself (so patterns meet text they were written next to). Crashes, leaks,
 * sanitizer reports, an error message that is not one line, hits out of order, more hits than
 * signatures and captures outside the line are all findings. The seeds in
 * tests/fuzz/corpus/sigconfig/ are replayed by every ordinary test run (see replay_main.c).
 */
#include "asr/config.h"
#include "detect/signature.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINES 64
/* Compiling the generic detectors takes Hyperscan ~50 ms natively and ~1 s under the fuzzer's
 * ASan allocator, so only the first service gets them and at most MAX_SETS services are
 * compiled: the generic table is fixed, and many services add nothing a single one does not. */
#define MAX_SETS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct check {
    const struct asr_sigset *set;
    const char *line;
    size_t len;
    size_t last;   /* position in report order of the previous hit, plus one */
    bool repaired; /* the line is not valid UTF-8: captures point into the set's copy */
};

static bool hit_cb(void *data, const struct asr_sig_hit *h)
{
    struct check *c = data;
    size_t n = asr_sigset_count(c->set);
    size_t pos = h->generic ? n + h->index : h->index;
    if (h->generic ? h->index >= asr_sigset_generic_count(c->set) : h->index >= n)
        abort();
    if (pos + 1 <= c->last) /* strictly increasing: ordered and at most once */
        abort();
    c->last = pos + 1;
    if (!h->id || !h->severity || !h->dedupe || h->ncaptures > ASR_SIG_MAX_CAPTURES)
        abort();
    for (size_t i = 0; i < h->ncaptures; i++) {
        const struct asr_sig_capture *cap = &h->captures[i];
        if (!cap->name || !cap->value)
            abort();
        if (!c->repaired && (cap->value < c->line || cap->len > c->len ||
                             (size_t)(cap->value - c->line) > c->len - cap->len))
            abort();
    }
    return true;
}

static bool valid_utf8_guess(const char *s, size_t n)
{
    /* Conservative: only all-ASCII lines are known not to be repaired. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

static void scan(struct asr_sigset *set, const char *line, size_t len)
{
    struct check c = {set, line, len, 0, !valid_utf8_guess(line, len)};
    int rc = asr_sigset_scan(set, line, len, hit_cb, &c);
    if (rc < 0 && rc != ASR_ENOMEM)
        abort();
    if (rc > 0 && (size_t)rc > asr_sigset_count(set) + asr_sigset_generic_count(set))
        abort();
}

static const char *const fixed[] = {
    "",
    "2024-05-01 12:00:00,123 INFO [main] GET /health 200 3ms",
    "2024-05-01 12:00:01,456 ERROR [pool-1] FAULT_DB_TIMEOUT route=/orders reason=pool",
    "panic: runtime error: invalid memory address or nil pointer dereference",
    "java.lang.OutOfMemoryError: Java heap space",
    "a\xc3\xa9z \xff\xfe invalid bytes and ERROR",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct asr_config *cfg = NULL;
    struct asr_err err = {0};
    int rc = asr_config_parse("fuzz.yaml", "/tmp", (const char *)data, size, false, &cfg, &err);
    if (rc != 0) {
        if (cfg != NULL || err.code != rc || strchr(err.msg, '\n') != NULL)
            abort();
        return 0;
    }
    for (size_t i = 0; i < cfg->nservices && i < MAX_SETS; i++) {
        const struct asr_service_cfg *svc = &cfg->services[i];
        struct asr_sigset *set = NULL;
        struct asr_err serr = {0};
        rc = asr_sigset_create(svc->signatures, svc->nsignatures, i == 0 ? ASR_SIGSET_GENERIC : 0,
                               &set, &serr);
        if (rc != 0) {
            if (set != NULL || serr.code != rc || serr.msg[0] == '\0' ||
                strchr(serr.msg, '\n') != NULL)
                abort();
            continue;
        }
        if (asr_sigset_count(set) != svc->nsignatures)
            abort();
        for (size_t k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++)
            scan(set, fixed[k], strlen(fixed[k]));
        const char *p = (const char *)data, *end = p + size;
        for (int k = 0; k < MAX_LINES && p < end; k++) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            scan(set, p, len);
            p += len + 1;
        }
        asr_sigset_destroy(set);
    }
    asr_config_free(cfg);
    return 0;
}
