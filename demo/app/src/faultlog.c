/*
 * faultlog.c - one fault, one line, one write(2).
 *
 * asr tails the shop's stderr and matches these lines, so their shape is a
 * contract: see faultlog.h. Nothing else in the shop writes to stderr while
 * it serves, apart from libmicrohttpd's own error messages.
 */
#include "faultlog.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int shop_faultlog_format(char *buf, int cap, const char *code, const char *route,
                         const char *reason, const char *extra, bool verification)
{
    int n = snprintf(buf, (size_t)cap, "%s route=%s reason=%s%s%s%s\n", code, route, reason,
                     extra ? " " : "", extra ? extra : "", verification ? " verification=1" : "");
    if (n < 0) {
        n = snprintf(buf, (size_t)cap, "%s\n", code);
        return n < 0 ? 0 : (n >= cap ? cap - 1 : n);
    }
    if (n >= cap) {
        /* Cut visibly: keep the start, mark the cut and end the line. */
        memcpy(buf + cap - 5, "...\n", 5);
        n = cap - 1;
    }
    return n;
}

int shop_faultlog_write(const char *code, const char *route, const char *reason, const char *extra,
                        bool verification)
{
    char line[SHOP_FAULTLOG_MAX];
    int n = shop_faultlog_format(line, (int)sizeof(line), code, route, reason, extra, verification);
    ssize_t w;

    do {
        w = write(STDERR_FILENO, line, (size_t)n);
    } while (w < 0 && errno == EINTR);
    return w == (ssize_t)n ? 0 : -1;
}
