/*
 * tail.c - follow a log file as `tail -F` does (see tail.h for the contract).
 *
 * First stage of detection for file sources: bytes appended to a service's log file become
 * lines (through the framer) for the detectors. Everything happens in check(), which compares
 * what is open with what the path names and reads what is new; it runs when inotify reports a
 * change in the file's directory, on a poll timer (for events inotify misses or cannot give:
 * a watch that failed, a directory created later, a queue overflow), and on an idle handle
 * while a backlog is being read.
 *
 * Reads are plain pread() calls on the loop thread: a regular file's new bytes are almost
 * always in the page cache, so a 64 KiB read costs microseconds, and libuv's thread pool would
 * add a round trip per chunk for nothing. (A log on a slow network file system would block the
 * loop; asr does not support that.) To keep the loop responsive during a large backlog, check()
 * reads at most one chunk per call and leaves the rest to the idle handle, so the proxy and the
 * health checks on the same loop get a turn between chunks.
 */
#include "detect/tail.h"
#include "asr/framer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define DEFAULT_POLL_MS 250
#define DETAIL_MAX (PATH_MAX + 256)

struct asr_tail {
    uv_loop_t *loop;
    struct asr_tail_opts opts;
    char *path;    /* owned copy of opts.path */
    char *rotated; /* PATH.1, where a resumed file is looked for */
    char *dir;     /* the directory watched */
    char *name;    /* the file's name in dir */
    uv_fs_event_t watch;
    bool watching;
    uint64_t dir_dev, dir_ino; /* the directory the watch is on (it may be replaced) */
    uv_timer_t poll;
    uv_idle_t idle;
    int open_handles; /* the struct is freed when the last one has closed */
    bool stopped;
    struct asr_framer *fr;
    int fd;                /* the file being read, or -1 */
    uint64_t dev, ino;     /* its identity (kept after it is closed, for asr_tail_position) */
    bool have_file;        /* dev and ino are set */
    uint64_t pos;          /* next byte to read from fd */
    bool started;          /* the first open was attempted (from_end and start apply to it) */
    bool detached;         /* the path does not name the open file */
    bool missing_reported; /* ASR_TAIL_MISSING was said since the path last existed */
    char last_error[256];  /* the last ASR_TAIL_ERROR, so a lasting error is said once */
    char buf[CHUNK];
};

static void check(struct asr_tail *t);

static void event(struct asr_tail *t, enum asr_tail_event ev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Passes one event to the owner (never after asr_tail_stop). */
static void event(struct asr_tail *t, enum asr_tail_event ev, const char *fmt, ...)
{
    if (t->stopped || t->opts.on_event == NULL)
        return;
    char detail[DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (ev == ASR_TAIL_ERROR) {
        if (strncmp(detail, t->last_error, sizeof(t->last_error) - 1) == 0)
            return;
        size_t n = strnlen(detail, sizeof(t->last_error) - 1);
        memcpy(t->last_error, detail, n);
        t->last_error[n] = '\0';
    }
    t->opts.on_event(t->opts.data, ev, detail);
}

static void line_cb(void *data, const char *line, size_t len, bool cut, uint64_t end_offset)
{
    struct asr_tail *t = data;
    if (t->stopped)
        return; /* asr_tail_stop was called from an earlier line of this chunk */
    struct asr_tail_pos pos = {t->dev, t->ino, end_offset};
    t->opts.on_line(t->opts.data, line, len, cut, &pos);
}

/* Makes fd (a regular file with status st) the file being read, from offset from. */
static void attach(struct asr_tail *t, int fd, const struct stat *st, uint64_t from)
{
    t->fd = fd;
    t->dev = (uint64_t)st->st_dev;
    t->ino = (uint64_t)st->st_ino;
    t->have_file = true;
    t->pos = from;
    t->detached = false;
    t->last_error[0] = '\0';
    asr_framer_reset(t->fr, from);
}

/* Opens path for reading: the fd with its status, or -1 with errno set (ENODEV: something
 * other than a regular file is at the path). */
static int open_regular(const char *path, struct stat *st)
{
    /* O_NONBLOCK: opening a FIFO that sits at the path must not block the loop. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -1;
    int e = 0;
    if (fstat(fd, st) != 0)
        e = errno;
    else if (!S_ISREG(st->st_mode))
        e = ENODEV;
    if (e != 0) {
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* On the first open with a saved position whose file is no longer at the path: if PATH.1 is
 * that file, reads its remainder first (the rotation logic in check() then moves on). */
static bool attach_rotated(struct asr_tail *t)
{
    struct stat st;
    int fd = open_regular(t->rotated, &st);
    if (fd < 0)
        return false;
    if ((uint64_t)st.st_dev != t->opts.start.dev || (uint64_t)st.st_ino != t->opts.start.ino) {
        close(fd);
        return false;
    }
    uint64_t size = (uint64_t)st.st_size, from = t->opts.start.offset;
    if (size < from)
        from = 0;
    attach(t, fd, &st, from);
    t->detached = true;
    event(t, ASR_TAIL_OPENED, "opened: %s (inode %llu, rotated from %s) at offset %llu", t->rotated,
          (unsigned long long)t->ino, t->path, (unsigned long long)from);
    return true;
}

static void report_missing(struct asr_tail *t)
{
    if (!t->missing_reported) {
        t->missing_reported = true;
        event(t, ASR_TAIL_MISSING, "missing: %s (waiting for it to appear)", t->path);
    }
}

/* Opens the file at the path (t->fd is -1). Returns whether a file is now open. */
static bool open_path(struct asr_tail *t)
{
    bool first = !t->started;
    t->started = true;
    bool resume = first && t->opts.start.ino != 0;
    struct stat st;
    int fd = open_regular(t->path, &st);
    if (fd < 0) {
        int e = errno;
        if (resume && attach_rotated(t))
            return true;
        if (e == ENOENT || e == ENOTDIR) {
            report_missing(t);
        } else {
            event(t, ASR_TAIL_ERROR, "open %s: %s", t->path,
                  e == ENODEV ? "not a regular file" : strerror(e));
        }
        return false;
    }
    t->missing_reported = false;
    uint64_t size = (uint64_t)st.st_size, from = 0;
    const char *why = "";
    if (resume) {
        if ((uint64_t)st.st_dev == t->opts.start.dev && (uint64_t)st.st_ino == t->opts.start.ino) {
            if (size >= t->opts.start.offset) {
                from = t->opts.start.offset;
                why = " (resumed)";
            } else {
                why = " (shorter than the saved position: truncated)";
            }
        } else if (attach_rotated(t)) {
            close(fd);
            return true;
        } else {
            why = " (the saved file is gone)";
        }
    } else if (first && t->opts.from_end) {
        from = size;
        why = " (its end)";
    }
    attach(t, fd, &st, from);
    event(t, ASR_TAIL_OPENED, "opened: %s (inode %llu) at offset %llu%s", t->path,
          (unsigned long long)t->ino, (unsigned long long)from, why);
    return true;
}

/* Emits the open file's partial last line and closes it. */
static void detach(struct asr_tail *t)
{
    asr_framer_flush(t->fr);
    if (t->fd >= 0) /* asr_tail_stop from that last line closes it itself */
        close(t->fd);
    t->fd = -1;
}

static void idle_cb(uv_idle_t *h)
{
    check(h->data);
}

/*
 * Brings the tail up to date: reads at most one chunk of the open file, notices truncation,
 * and at the file's end looks whether the path still names it (rotation, deletion). Asks the
 * idle handle for another turn while there is more to read.
 */
static void check(struct asr_tail *t)
{
    bool more = false;
    int reads = 0;
    while (!t->stopped) {
        if (t->fd < 0) {
            if (!open_path(t))
                break;
            continue;
        }
        struct stat st;
        if (fstat(t->fd, &st) != 0) {
            event(t, ASR_TAIL_ERROR, "stat %s: %s", t->path, strerror(errno));
            detach(t);
            break;
        }
        uint64_t size = (uint64_t)st.st_size;
        if (size < t->pos) {
            event(t, ASR_TAIL_TRUNCATED,
                  "truncated: %s (size %llu < position %llu), reading from 0", t->path,
                  (unsigned long long)size, (unsigned long long)t->pos);
            t->pos = 0;
            asr_framer_reset(t->fr, 0);
            continue;
        }
        if (size > t->pos) {
            if (reads > 0) {
                more = true; /* yield to the loop; the idle handle brings us back */
                break;
            }
            size_t want = size - t->pos < CHUNK ? (size_t)(size - t->pos) : CHUNK;
            ssize_t n = pread(t->fd, t->buf, want, (off_t)t->pos);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                event(t, ASR_TAIL_ERROR, "read %s: %s", t->path, strerror(errno));
                break;
            }
            reads++;
            if (n > 0) {
                t->pos += (uint64_t)n;
                asr_framer_feed(t->fr, t->buf, (size_t)n);
                continue;
            }
            /* The file shrank between fstat and pread: the next turn sees it. */
        }
        /* At the end of the open file: does the path still name it? */
        struct stat ps;
        if (stat(t->path, &ps) != 0) {
            if (errno != ENOENT && errno != ENOTDIR) {
                event(t, ASR_TAIL_ERROR, "stat %s: %s", t->path, strerror(errno));
                break;
            }
            /* Renamed away (its writer may still append to it: keep reading) or deleted
             * (nobody can open it again: let its disk space go). */
            t->detached = true;
            report_missing(t);
            if (st.st_nlink == 0)
                detach(t);
            break;
        }
        t->missing_reported = false;
        if ((uint64_t)ps.st_dev == t->dev && (uint64_t)ps.st_ino == t->ino) {
            t->detached = false;
            break;
        }
        /* Another file is at the path. Whatever was appended to the old one since the fstat
         * above is read first; only then is it left. */
        struct stat again;
        if (fstat(t->fd, &again) == 0 && (uint64_t)again.st_size > t->pos)
            continue;
        uint64_t old_ino = t->ino;
        detach(t);
        if (t->stopped)
            break;
        event(t, ASR_TAIL_ROTATED, "rotated: %s (inode %llu -> %llu)", t->path,
              (unsigned long long)old_ino, (unsigned long long)ps.st_ino);
    }
    if (t->stopped)
        return;
    if (more)
        uv_idle_start(&t->idle, idle_cb);
    else
        uv_idle_stop(&t->idle);
}

/* Starts the inotify watch on the directory if it is not on (the directory may not exist
 * yet); a failure leaves the poll timer to do the work. */
static void watch_cb(uv_fs_event_t *h, const char *filename, int events, int status);

static void start_watch(struct asr_tail *t)
{
    struct stat ds;
    if (stat(t->dir, &ds) != 0)
        return;
    int rc = uv_fs_event_start(&t->watch, watch_cb, t->dir, 0);
    if (rc != 0) {
        event(t, ASR_TAIL_ERROR, "watch %s: %s (polling every %d ms instead)", t->dir,
              uv_strerror(rc), t->opts.poll_ms);
        return;
    }
    t->watching = true;
    t->dir_dev = (uint64_t)ds.st_dev;
    t->dir_ino = (uint64_t)ds.st_ino;
}

static void stop_watch(struct asr_tail *t)
{
    if (t->watching)
        uv_fs_event_stop(&t->watch);
    t->watching = false;
}

static void watch_cb(uv_fs_event_t *h, const char *filename, int events, int status)
{
    (void)events;
    struct asr_tail *t = h->data;
    if (t->stopped)
        return;
    if (status < 0) {
        event(t, ASR_TAIL_ERROR, "watch %s: %s", t->dir, uv_strerror(status));
        stop_watch(t); /* the poll timer restarts it */
        return;
    }
    /* Other files in the directory do not concern us, except the rotated name while the open
     * file is not at the path (its writer may still be appending there). */
    size_t nl = strlen(t->name);
    bool ours = filename == NULL || strcmp(filename, t->name) == 0 ||
                (strncmp(filename, t->name, nl) == 0 && strcmp(filename + nl, ".1") == 0);
    if (ours || t->detached)
        check(t);
}

static void poll_cb(uv_timer_t *h)
{
    struct asr_tail *t = h->data;
    /* A watch on a directory that was removed or replaced sees nothing any more. */
    if (t->watching) {
        struct stat ds;
        if (stat(t->dir, &ds) != 0 || (uint64_t)ds.st_dev != t->dir_dev ||
            (uint64_t)ds.st_ino != t->dir_ino)
            stop_watch(t);
    }
    if (!t->watching)
        start_watch(t);
    check(t);
}

static void free_tail(struct asr_tail *t)
{
    asr_framer_destroy(t->fr);
    free(t->path);
    free(t->rotated);
    free(t->dir);
    free(t->name);
    free(t);
}

static void closed_cb(uv_handle_t *h)
{
    struct asr_tail *t = h->data;
    if (--t->open_handles == 0)
        free_tail(t);
}

/* Splits path into its directory and file name (both allocated); false on no memory. */
static bool split_path(struct asr_tail *t)
{
    const char *slash = strrchr(t->path, '/');
    if (slash == NULL) {
        t->dir = strdup(".");
        t->name = strdup(t->path);
    } else {
        size_t dl = slash == t->path ? 1 : (size_t)(slash - t->path);
        t->dir = strndup(t->path, dl);
        t->name = strdup(slash + 1);
    }
    return t->dir != NULL && t->name != NULL;
}

int asr_tail_start(uv_loop_t *loop, const struct asr_tail_opts *opts, struct asr_tail **out,
                   struct asr_err *err)
{
    *out = NULL;
    const char *path = opts->path;
    if (path == NULL || path[0] == '\0' || opts->on_line == NULL)
        return asr_err_set(err, ASR_EINVAL, "tail: a path and an on_line callback are needed");
    size_t pl = strlen(path);
    if (pl + 3 > PATH_MAX || path[pl - 1] == '/')
        return asr_err_set(err, ASR_EINVAL, "tail %.200s: not a file path", path);
    if (opts->poll_ms < 0)
        return asr_err_set(err, ASR_EINVAL, "tail %s: poll_ms %d is negative", path, opts->poll_ms);
    struct asr_tail *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return asr_err_set(err, ASR_ENOMEM, "tail %s: out of memory", path);
    t->loop = loop;
    t->opts = *opts;
    t->fd = -1;
    if (t->opts.poll_ms == 0)
        t->opts.poll_ms = DEFAULT_POLL_MS;
    t->path = strdup(path);
    t->rotated = malloc(pl + 3);
    if (t->path == NULL || t->rotated == NULL || !split_path(t) ||
        asr_framer_create(opts->max_line, line_cb, t, &t->fr) != 0) {
        free_tail(t);
        return asr_err_set(err, ASR_ENOMEM, "tail %s: out of memory", path);
    }
    snprintf(t->rotated, pl + 3, "%s.1", path);
    t->opts.path = t->path;
    /* On Linux these three cannot fail (inotify itself is set up by uv_fs_event_start). */
    uv_fs_event_init(loop, &t->watch);
    uv_timer_init(loop, &t->poll);
    uv_idle_init(loop, &t->idle);
    t->watch.data = t->poll.data = t->idle.data = t;
    t->open_handles = 3;
    start_watch(t);
    uv_timer_start(&t->poll, poll_cb, (uint64_t)t->opts.poll_ms, (uint64_t)t->opts.poll_ms);
    uv_idle_start(&t->idle, idle_cb); /* the first check, on the loop */
    *out = t;
    return 0;
}

void asr_tail_position(const struct asr_tail *t, struct asr_tail_pos *pos)
{
    if (!t->have_file) {
        *pos = t->opts.start;
        return;
    }
    /* The framer's offset, not the last line's: it is also past the dropped rest of a cut
     * line, so a resume does not read that rest as a line of its own. */
    pos->dev = t->dev;
    pos->ino = t->ino;
    pos->offset = asr_framer_offset(t->fr);
}

void asr_tail_stop(struct asr_tail *t)
{
    if (t == NULL || t->stopped)
        return;
    t->stopped = true;
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    uv_close((uv_handle_t *)&t->watch, closed_cb);
    uv_close((uv_handle_t *)&t->poll, closed_cb);
    uv_close((uv_handle_t *)&t->idle, closed_cb);
}
