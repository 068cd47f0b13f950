/*
 * log.c - levelled, timestamped log lines. One write(2) per line so lines from the daemon and
 * its children never interleave mid-line.
 *
 * The log must never block the event loop: when stderr is a pipe that nobody drains (a hung
 * journald, a stopped `tee`), a line that does not fit is dropped and counted, and the next
 * line that fits says how many were lost. Lines are at most 2 KiB, under the pipe's atomic
 * write size, so a pipe that polls writable takes a whole line without blocking.
 */
#include "asr/log.h"
#include "asr/error.h"
#include "asr/timeutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>

static enum asr_log_level current_level = ASR_LOG_INFO;
static int log_fd = 2;
static unsigned long dropped;

void asr_log_set_level(enum asr_log_level level)
{
    current_level = level;
}

enum asr_log_level asr_log_get_level(void)
{
    return current_level;
}

void asr_log_set_fd(int fd)
{
    log_fd = fd;
}

int asr_log_parse_level(const char *s, enum asr_log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i <= ASR_LOG_OFF; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum asr_log_level)i;
            return 0;
        }
    }
    return ASR_EINVAL;
}

void asr_log(enum asr_log_level level, const char *fmt, ...)
{
    static const char *const tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    if (level < current_level || level >= ASR_LOG_OFF)
        return;
    char line[2048];
    size_t n = asr_time_format_utc(asr_time_wall_ms(), line, sizeof(line));
    int k = snprintf(line + n, sizeof(line) - n, " %s ", tags[level]);
    if (k > 0)
        n += (size_t)k;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (k < 0)
        k = 0;
    n += (size_t)k;
    if (n >= sizeof(line) - 1) {
        /* Cut visibly rather than silently. */
        n = sizeof(line) - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    }
    line[n++] = '\n';
    struct pollfd pfd = {.fd = log_fd, .events = POLLOUT};
    if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLOUT)) {
        dropped++;
        return;
    }
    if (dropped > 0) {
        char note[96];
        int k2 = snprintf(note, sizeof(note),
                          "[asr: %lu log lines dropped: the log output was full]\n", dropped);
        dropped = 0;
        ssize_t w0 = write(log_fd, note, (size_t)k2);
        (void)w0;
    }
    ssize_t w = write(log_fd, line, n);
    (void)w;
}
