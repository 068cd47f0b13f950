/*
 * logformat.h - Loghub `<Field>` header formats and regex masks, for `asr templates`.
 *
 * A format such as `<Date> <Time> <Level> \[<Process>\] <Component>: <Content>` is compiled
 * (PCRE2) into one anchored regex with the reference semantics of the Loghub benchmark: each
 * `<Field>` is a lazy group, each run of spaces matches `\s+`, other text is regex text as
 * written. asr_logformat_content() extracts `<Content>` from a line (surrounding whitespace
 * stripped first). Masks are regexes whose every match is replaced by `<*>`, in order.
 */
#ifndef ASR_DETECT_LOGFORMAT_H
#define ASR_DETECT_LOGFORMAT_H

#include "asr/buf.h"
#include "asr/error.h"

#include <stddef.h>

struct asr_logformat;
struct asr_masks;

/* Compiles fmt (it must contain <Content>). 0, ASR_EPARSE (err names why) or ASR_ENOMEM. */
int asr_logformat_create(const char *fmt, struct asr_logformat **out, struct asr_err *err);
/* Matches one line (len bytes) and points *content / *clen into line at <Content>.
 * 0, or ASR_EPARSE if the line does not match the format. */
int asr_logformat_content(struct asr_logformat *f, const char *line, size_t len,
                          const char **content, size_t *clen);
void asr_logformat_destroy(struct asr_logformat *f);

/* Compiles n mask regexes. 0, ASR_EPARSE (err names the regex and why) or ASR_ENOMEM. */
int asr_masks_create(const char *const *regexes, size_t n, struct asr_masks **out,
                     struct asr_err *err);
/* Writes s with every mask applied in order into out (reset first). 0, ASR_ETOOBIG at the
 * buffer's cap, ASR_ENOMEM or ASR_EPARSE (a match error such as a backtracking limit). */
int asr_masks_apply(struct asr_masks *m, const char *s, size_t len, struct asr_buf *out);
void asr_masks_destroy(struct asr_masks *m);

/* Appends s (n bytes) to out as one CSV field, quoted per RFC 4180 when it holds a comma, a
 * double quote, CR or LF (quotes doubled). 0 or the asr_buf_append() error. */
int asr_csv_field(struct asr_buf *out, const char *s, size_t n);
#endif
