/*
 * buf.h - growable byte buffers with a hard cap.
 *
 * Every buffer that holds outside data (command output, HTTP bodies, log lines) is an asr_buf
 * with a cap. Appending past the cap keeps what fits, sets `truncated`, and returns ASR_ETOOBIG,
 * so the caller decides whether that is an error or a visible cut. The data is always
 * NUL-terminated (the NUL is not counted in len and does not count against the cap).
 */
#ifndef ASR_BUF_H
#define ASR_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct asr_buf {
    char *data;   /* NULL until the first append; owned by the buffer */
    size_t len;   /* bytes held, excluding the terminating NUL */
    size_t alloc; /* bytes allocated */
    size_t cap;   /* most bytes the buffer will ever hold */
    bool truncated;
};

/* Prepares an empty buffer that will hold at most cap bytes. Allocates nothing. */
void asr_buf_init(struct asr_buf *b, size_t cap);
/* Frees the data and leaves an empty buffer with the same cap. */
void asr_buf_free(struct asr_buf *b);
/* Empties the buffer, keeping its memory and cap; clears `truncated`. */
void asr_buf_reset(struct asr_buf *b);
/* Appends n bytes; 0, ASR_ETOOBIG (partial append, truncated set) or ASR_ENOMEM. */
int asr_buf_append(struct asr_buf *b, const void *p, size_t n);
int asr_buf_puts(struct asr_buf *b, const char *s);
int asr_buf_printf(struct asr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Removes the first n bytes (n <= len), moving the rest to the front. */
void asr_buf_consume(struct asr_buf *b, size_t n);
/* The contents as a C string ("" for an empty buffer); valid until the next change. */
const char *asr_buf_cstr(const struct asr_buf *b);
/* Hands the data to the caller (who frees it) and leaves the buffer empty. Never NULL. */
char *asr_buf_steal(struct asr_buf *b);

#endif
