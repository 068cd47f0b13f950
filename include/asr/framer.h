/*
 * framer.h - bytes to lines: the one place where outside log bytes become lines.
 *
 * Every source of log text (a slot's stdout/stderr pipe, a tailed file, stdin, a CloudWatch
 * event message) is cut into lines here, so every later stage can rely on the same promises:
 *
 *   - a line never contains '\n' or NUL, and a trailing '\r' (CRLF) is removed;
 *   - a line is valid UTF-8: each NUL byte and each byte of an invalid or truncated UTF-8
 *     sequence is replaced by U+FFFD (EF BF BD), so JSON output and terminals are safe to feed;
 *   - a line is at most max_line bytes of output; a longer one is emitted as soon as a character
 *     arrives that would take it past the cap (a character is never split), with
 *     ASR_FRAMER_CUT_MARKER appended (so up to max_line + the marker's length) and cut = true,
 *     and the rest of it, up to its newline, is dropped and counted; a '\r' of a CRLF does not
 *     count, so a line of exactly max_line bytes is not cut;
 *   - lines come out in order, each with the input offset just past its newline, so a tailer can
 *     persist exactly where the next unread line starts.
 *
 * A framer holds at most max_line bytes of a partial line; it never allocates per line.
 */
#ifndef ASR_FRAMER_H
#define ASR_FRAMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ASR_LINE_MAX (64 * 1024)
#define ASR_FRAMER_CUT_MARKER " [asr: line cut]"

struct asr_framer;

/*
 * One line: len bytes at line (NUL-terminated for convenience, valid until the callback
 * returns). end_offset is the input offset just past the line's newline; for a line emitted by
 * asr_framer_flush(), just past the last byte fed. A cut line is emitted at the cut, before its
 * newline is known, so its end_offset is where its dropped rest starts (just past the last
 * input byte it kept); asr_framer_offset() then moves over the dropped bytes and the newline as
 * they arrive, and is the better place to resume from.
 */
typedef void (*asr_framer_line_cb)(void *data, const char *line, size_t len, bool cut,
                                   uint64_t end_offset);

/* Creates a framer (max_line 0: ASR_LINE_MAX). 0, ASR_EINVAL or ASR_ENOMEM. */
int asr_framer_create(size_t max_line, asr_framer_line_cb cb, void *data, struct asr_framer **out);
/* Feeds len bytes; calls cb for each complete line, in order. */
void asr_framer_feed(struct asr_framer *f, const char *bytes, size_t len);
/* Emits the held partial line, if any, as a line (at EOF, when a file is rotated away, or when
 * a process exits). */
void asr_framer_flush(struct asr_framer *f);
/* Drops any partial line and restarts offsets at base (after a truncation or a reopen). */
void asr_framer_reset(struct asr_framer *f, uint64_t base);
/* Input offset of the first byte not yet part of an emitted line (where a resumed read starts). */
uint64_t asr_framer_offset(const struct asr_framer *f);
/* Bytes dropped from cut lines so far. */
uint64_t asr_framer_dropped(const struct asr_framer *f);
/* Frees the framer; accepts NULL. */
void asr_framer_destroy(struct asr_framer *f);

#endif
