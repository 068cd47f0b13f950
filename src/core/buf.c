/*
 * buf.c - capped growable buffers (see buf.h).
 */
#include "asr/buf.h"
#include "asr/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void asr_buf_init(struct asr_buf *b, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->cap = cap;
}

void asr_buf_free(struct asr_buf *b)
{
    size_t cap = b->cap;
    free(b->data);
    asr_buf_init(b, cap);
}

void asr_buf_reset(struct asr_buf *b)
{
    b->len = 0;
    b->truncated = false;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/* Makes room for `want` bytes of content plus the NUL; never beyond cap + 1. */
static int reserve(struct asr_buf *b, size_t want)
{
    if (want + 1 <= b->alloc)
        return 0;
    size_t n = b->alloc ? b->alloc : 64;
    while (n < want + 1)
        n = n > SIZE_MAX / 2 ? SIZE_MAX : n * 2;
    if (n > b->cap + 1)
        n = b->cap + 1;
    char *p = realloc(b->data, n);
    if (p == NULL)
        return ASR_ENOMEM;
    b->data = p;
    b->alloc = n;
    return 0;
}

int asr_buf_append(struct asr_buf *b, const void *p, size_t n)
{
    int rc = 0;
    size_t room = b->cap - b->len;
    if (n > room) {
        n = room;
        b->truncated = true;
        rc = ASR_ETOOBIG;
    }
    if (reserve(b, b->len + n) != 0)
        return ASR_ENOMEM;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return rc;
}

int asr_buf_puts(struct asr_buf *b, const char *s)
{
    return asr_buf_append(b, s, strlen(s));
}

int asr_buf_printf(struct asr_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return ASR_EINVAL;
    if ((size_t)n < sizeof(small))
        return asr_buf_append(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (big == NULL)
        return ASR_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = asr_buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

void asr_buf_consume(struct asr_buf *b, size_t n)
{
    if (n >= b->len) {
        asr_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

const char *asr_buf_cstr(const struct asr_buf *b)
{
    return b->data != NULL ? b->data : "";
}

char *asr_buf_steal(struct asr_buf *b)
{
    char *p = b->data;
    if (p == NULL)
        p = calloc(1, 1);
    size_t cap = b->cap;
    asr_buf_init(b, cap);
    return p;
}
