/*
 * fuzz_template.c - libFuzzer target for the template miner and the Loghub header format parser
 * (src/detect/template.c, src/detect/logformat.c).
 *
 * The input's first line is used as a format (and, when it compiles, every other line is split
 * by it); every line is also mined by a miner with small caps so eviction and token folding are
 * exercised. The returned template must be one NUL-terminated line. Every cluster left is then
 * saved with asr_miner_foreach() and restored into a fresh miner, which must accept each one (but
 * the empty template of empty messages) and give the last line the id it had. Seeds:
 * corpus/template/.
 */
#include "asr/error.h"
#include "detect/logformat.h"
#include "detect/template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void restore_cb(void *data, uint64_t id, const char *tmpl, size_t len, uint64_t count)
{
    (void)count;
    /* The cluster of empty messages has an empty template, which cannot be restored. */
    if (strlen(tmpl) != len || asr_miner_restore(data, id, tmpl, len) != (len ? 0 : ASR_EINVAL))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    struct asr_miner_opts o;
    asr_miner_opts_default(&o);
    o.max_clusters = 8;
    o.max_tokens = 16;
    o.max_token_len = 32;
    struct asr_miner *m = NULL;
    if (asr_miner_create(&o, &m) != 0)
        abort();
    struct asr_logformat *f = NULL;
    struct asr_err err = {0};
    const char *nl = memchr(p, '\n', size);
    size_t flen = nl ? (size_t)(nl - p) : size;
    char *fmt = malloc(flen + 1);
    if (!fmt)
        abort();
    memcpy(fmt, p, flen);
    fmt[flen] = '\0';
    if (strlen(fmt) == flen)
        (void)asr_logformat_create(fmt, &f, &err);
    free(fmt);
    const char *last = NULL;
    size_t last_n = 0;
    uint64_t last_id = 0;
    size_t last_tmpl_len = 0;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        struct asr_match mt;
        if (asr_miner_add(m, p, n, &mt) != 0)
            abort();
        if (strlen(mt.tmpl) != mt.tmpl_len || memchr(mt.tmpl, '\n', mt.tmpl_len))
            abort();
        last = p;
        last_n = n;
        last_id = mt.cluster_id;
        last_tmpl_len = mt.tmpl_len;
        if (f) {
            const char *c;
            size_t clen;
            if (asr_logformat_content(f, p, n, &c, &clen) == 0 && (c < p || c + clen > p + n))
                abort();
        }
        p += n + 1;
    }
    struct asr_miner *r = NULL;
    if (asr_miner_create(&o, &r) != 0)
        abort();
    asr_miner_foreach(m, restore_cb, r);
    if (asr_miner_count(r) > asr_miner_count(m) || asr_miner_count(r) + 1 < asr_miner_count(m))
        abort();
    if (last && last_tmpl_len > 0) {
        struct asr_match mt;
        if (asr_miner_add(r, last, last_n, &mt) != 0 || mt.cluster_id != last_id)
            abort();
    }
    asr_miner_destroy(r);
    asr_logformat_destroy(f);
    asr_miner_destroy(m);
    return 0;
}
