/*
 * utf8.c - UTF-8 validation shared by every parser of outside text (the framer's fast path, the
 * signature scan, the CloudWatch decoder): one definition of "valid", RFC 3629's.
 */
#include "asr/utf8.h"

#include <stdint.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if the bytes there are not one
 * (overlong forms, surrogates and code points above U+10FFFF are invalid, as in RFC 3629). */
size_t asr_utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* Offset of the first byte that is not part of valid UTF-8, or len. ASCII goes 64 bytes at a
 * time (eight words OR-ed, one test of their high bits): log text is nearly all ASCII, and a
 * block scan validates whole megabytes, so this must cost little next to Hyperscan. */
size_t asr_utf8_valid_prefix(const unsigned char *p, size_t len)
{
    const uint64_t high = 0x8080808080808080ull;
    size_t i = 0;
    while (i < len) {
        if (len - i >= 64) {
            uint64_t w[8];
            memcpy(w, p + i, sizeof(w));
            if (((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) & high) == 0) {
                i += 64;
                continue;
            }
        }
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if ((w & high) == 0) {
                i += 8;
                continue;
            }
        }
        size_t k = asr_utf8_seq(p + i, len - i);
        if (k == 0)
            return i;
        i += k;
    }
    return len;
}
