/*
 * sha256.h - SHA-256 (FIPS 180-4), one-shot and streaming.
 *
 * Written from the standard for the audit chain (src/store/audit.c), so that the daemon hashes
 * without linking OpenSSL or libcurl. Not constant-time with respect to anything secret: asr
 * hashes public records with it, never keys.
 */
#ifndef ASR_SHA256_H
#define ASR_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define ASR_SHA256_LEN 32       /* bytes in a digest */
#define ASR_SHA256_HEX_LEN 64   /* lower-case hex digits in a digest */
#define ASR_SHA256_BLOCK_LEN 64 /* bytes in a message block */

/* A hash in progress. Owned by the caller (usually on the stack); no resources to free. */
struct asr_sha256 {
    uint32_t h[8];                       /* the intermediate hash value H(i) */
    uint64_t bits;                       /* message length so far, in bits (mod 2^64) */
    uint8_t block[ASR_SHA256_BLOCK_LEN]; /* the partial block not yet compressed */
    size_t used;                         /* bytes of block in use, 0..63 */
};

/* Starts a hash (sets H(0)). */
void asr_sha256_init(struct asr_sha256 *c);
/* Adds n bytes of message; any split of a message into updates gives the same digest. */
void asr_sha256_update(struct asr_sha256 *c, const void *data, size_t n);
/* Pads, finishes and writes the digest to out; c must be initialised again before reuse. */
void asr_sha256_final(struct asr_sha256 *c, uint8_t out[ASR_SHA256_LEN]);
/* The digest of data[0..n) in one call. */
void asr_sha256(const void *data, size_t n, uint8_t out[ASR_SHA256_LEN]);
/* Writes a digest as 64 lower-case hex digits and a NUL to hex. */
void asr_sha256_hex(const uint8_t digest[ASR_SHA256_LEN], char hex[ASR_SHA256_HEX_LEN + 1]);

#endif
