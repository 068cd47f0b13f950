/*
 * utf8.h - what counts as valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF), for every module that checks outside text.
 */
#ifndef ASR_UTF8_H
#define ASR_UTF8_H

#include <stddef.h>

/* Length (1..4) of the valid UTF-8 sequence at p, which has avail >= 1 bytes, or 0 if the bytes
 * there are not one (or the sequence is cut short by the end of the buffer). */
size_t asr_utf8_seq(const unsigned char *p, size_t avail);

/* Offset of the first byte that is not part of valid UTF-8 in p[0..len), or len. Fast on ASCII
 * (64 bytes a step). */
size_t asr_utf8_valid_prefix(const unsigned char *p, size_t len);

#endif
