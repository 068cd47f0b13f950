/*
 * tail.h - follow a log file as `tail -F` does, without losing or repeating a line.
 *
 * First stage of detection for file sources (docs/detection.md). A tail watches one path with
 * inotify (through libuv's uv_fs_event on the file's directory) and, as a fallback for missed
 * events, a stat check every poll_ms. It reads what was appended, cuts it into lines with the
 * framer (include/asr/framer.h) and hands each line over with the position just past it.
 *
 * Rotation:
 *   - rename (logrotate's default, or `mv log log.1`): the old file is read to its end (its
 *     partial last line is emitted as a line), then the new file at the path is read from 0;
 *   - copy-truncate: when the file becomes shorter than the read position, reading restarts
 *     at 0 of the same file;
 *   - the path may be missing for a while (between rename and create, or before the service
 *     first writes); the tail waits for it and reads a file that appears from its start.
 *     A file renamed away is still read while the path is missing (its writer may not have
 *     reopened yet); a deleted one (no name left) is read to its end and closed, so its disk
 *     space can go.
 *
 * Resume: the owner persists the asr_tail_pos of the last line it has processed and passes it
 * back as opts.start after a restart. If the file at the path is the same (dev, ino) and not
 * shorter than the offset, reading resumes at the offset; if it is shorter, it was truncated
 * and reading starts at 0; if it is another file, the saved inode is looked for at PATH.1 (the
 * usual rotated name) and its remainder is read first, then the new file from 0.
 * With no saved position (start.ino == 0), an existing file is read from its end when
 * opts.from_end is set (a daemon meeting an old log), else from 0.
 */
#ifndef ASR_DETECT_TAIL_H
#define ASR_DETECT_TAIL_H

#include "asr/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct asr_tail;

/* Where reading resumes: the file's identity and the offset just past the last line taken. */
struct asr_tail_pos {
    uint64_t dev;
    uint64_t ino;
    uint64_t offset;
};

enum asr_tail_event {
    ASR_TAIL_OPENED,    /* a file is open at the path; detail says from which offset */
    ASR_TAIL_ROTATED,   /* the path now names another file; the old one was read to its end */
    ASR_TAIL_TRUNCATED, /* the file shrank below the read position; reading restarts at 0 */
    ASR_TAIL_MISSING,   /* the path does not exist (reported once until it exists again) */
    ASR_TAIL_ERROR,     /* a read or watch error; detail names it; the tail keeps trying */
};

struct asr_tail_opts {
    const char *path;          /* copied */
    struct asr_tail_pos start; /* saved position, or all zero */
    bool from_end;             /* no saved position and the file exists: start at its end */
    size_t max_line;           /* 0: ASR_LINE_MAX */
    int poll_ms;               /* stat fallback interval; 0: 250 */
    /* One line (see framer.h for its guarantees); pos is just past it. */
    void (*on_line)(void *data, const char *line, size_t len, bool cut,
                    const struct asr_tail_pos *pos);
    /* May be NULL. detail is one line for people, e.g. "rotated: /var/log/x.log (inode 12 -> 14)".
     */
    void (*on_event)(void *data, enum asr_tail_event ev, const char *detail);
    void *data;
};

/*
 * Starts following opts->path on loop. The first read happens on the loop, not inside this call.
 * Returns 0 with *out owned by the caller (asr_tail_stop), or ASR_EINVAL/ASR_ENOMEM with err
 * naming the path. A missing file or directory is not an error (the tail waits for it).
 */
int asr_tail_start(uv_loop_t *loop, const struct asr_tail_opts *opts, struct asr_tail **out,
                   struct asr_err *err);
/* Where a resumed tail should start: just past the last line handed over, and past the dropped
 * rest of a cut line (a cut line's own pos is at the cut, see framer.h); before the first file
 * is opened, opts.start. */
void asr_tail_position(const struct asr_tail *t, struct asr_tail_pos *pos);
/* Stops watching, closes the file and frees the tail once its handles are closed (the loop must
 * run for that); no callback runs after this returns. Accepts NULL. */
void asr_tail_stop(struct asr_tail *t);

#endif
