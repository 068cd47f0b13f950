/*
 * sha256.c - SHA-256 as FIPS 180-4 defines it (sections 4.1.2, 4.2.2, 5.1.1, 5.3.3, 6.2).
 *
 * Core plumbing for the audit chain (src/store/audit.c). Written from the standard: the section
 * numbers below point at what each part implements. Words are 32-bit and big-endian; the
 * message is processed in 512-bit blocks, the last one padded with a 1 bit, zeros, and the
 * message length in bits as a 64-bit big-endian integer.
 */
#include "asr/sha256.h"

#include <string.h>

/* 4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

/* 5.3.3: H(0), the first 32 bits of the fractional parts of the square roots of the first 8
 * primes. */
static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/*
 * 3.2 and 4.1.2: rotate right, and the six logical functions. Macros rather than functions so
 * that a debug build (-O0, where nothing is inlined) hashes at a usable speed: the audit tests
 * verify a chain tens of thousands of times. n is 1..31 at every use, so no shift is by 32.
 */
#define ROTR(x, n) (((x) >> (n)) | ((x) << (32u - (n))))
#define CH(x, y, z) (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

/* 6.2.2: compresses one 512-bit block M(i) into the hash value. */
static void compress(uint32_t h[8], const uint8_t m[ASR_SHA256_BLOCK_LEN])
{
    uint32_t w[64];
    /* 1. The message schedule: 16 big-endian words of the block, then 48 derived ones. */
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)m[4 * t] << 24 | (uint32_t)m[4 * t + 1] << 16 |
               (uint32_t)m[4 * t + 2] << 8 | (uint32_t)m[4 * t + 3];
    for (int t = 16; t < 64; t++)
        w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];

    /* 2. The working variables start as the previous hash value. */
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];

    /* 3. 64 rounds. */
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = hh + BSIG1(e) + CH(e, f, g) + K[t] + w[t];
        uint32_t t2 = BSIG0(a) + MAJ(a, b, c);
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }

    /* 4. The next intermediate hash value. */
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

void asr_sha256_init(struct asr_sha256 *c)
{
    memcpy(c->h, H0, sizeof(H0));
    c->bits = 0;
    c->used = 0;
}

void asr_sha256_update(struct asr_sha256 *c, const void *data, size_t n)
{
    if (n == 0)
        return; /* data may be NULL then, and NULL + 0 is not defined in C */
    const uint8_t *p = data;
    /* 5.1.1: the length is counted modulo 2^64, as the padding can only hold 64 bits of it. */
    c->bits += (uint64_t)n * 8u;
    if (c->used > 0) {
        size_t take = ASR_SHA256_BLOCK_LEN - c->used;
        if (take > n)
            take = n;
        memcpy(c->block + c->used, p, take);
        c->used += take;
        p += take;
        n -= take;
        if (c->used < ASR_SHA256_BLOCK_LEN)
            return;
        compress(c->h, c->block);
        c->used = 0;
    }
    /* Whole blocks straight from the caller's buffer. */
    for (; n >= ASR_SHA256_BLOCK_LEN; p += ASR_SHA256_BLOCK_LEN, n -= ASR_SHA256_BLOCK_LEN)
        compress(c->h, p);
    if (n > 0) {
        memcpy(c->block, p, n);
        c->used = n;
    }
}

void asr_sha256_final(struct asr_sha256 *c, uint8_t out[ASR_SHA256_LEN])
{
    /*
     * 5.1.1: append the bit 1, then k zero bits so that the length is 448 mod 512, then the
     * message length in bits as 64 big-endian bits. When fewer than 8 bytes remain after the
     * 0x80 byte, the padding spills into one more block.
     */
    uint64_t bits = c->bits;
    c->block[c->used++] = 0x80;
    if (c->used > ASR_SHA256_BLOCK_LEN - 8) {
        memset(c->block + c->used, 0, ASR_SHA256_BLOCK_LEN - c->used);
        compress(c->h, c->block);
        c->used = 0;
    }
    memset(c->block + c->used, 0, ASR_SHA256_BLOCK_LEN - 8 - c->used);
    for (int i = 0; i < 8; i++)
        c->block[ASR_SHA256_BLOCK_LEN - 1 - i] = (uint8_t)(bits >> (8 * i));
    compress(c->h, c->block);

    /* 6.2.2: the digest is H(N) as eight big-endian words. */
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
    /* Nothing of the message stays behind in the context. */
    memset(c, 0, sizeof(*c));
}

void asr_sha256(const void *data, size_t n, uint8_t out[ASR_SHA256_LEN])
{
    struct asr_sha256 c;
    asr_sha256_init(&c);
    asr_sha256_update(&c, data, n);
    asr_sha256_final(&c, out);
}

void asr_sha256_hex(const uint8_t digest[ASR_SHA256_LEN], char hex[ASR_SHA256_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < ASR_SHA256_LEN; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 0x0f];
    }
    hex[ASR_SHA256_HEX_LEN] = '\0';
}
