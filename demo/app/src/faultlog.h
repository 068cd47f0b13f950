/*
 * faultlog.h - the one-line fault reports that asr's detectors read.
 *
 * Every fault the shop meets is reported as exactly one line on stderr:
 *
 *     <CODE> route=<path> reason=<reason>[ key=value...][ verification=1]
 *
 * The line is built in a bounded buffer and written with a single write(2),
 * so lines from concurrent requests never interleave.
 */
#ifndef SHOP_FAULTLOG_H
#define SHOP_FAULTLOG_H

#include <stdbool.h>

/* Longest fault line, newline included; longer lines are cut and end in "...". */
#define SHOP_FAULTLOG_MAX 512

/*
 * Writes one fault line to stderr. `extra` is NULL or a preformatted run of
 * "key=value" pairs separated by single spaces. `verification` appends
 * " verification=1" (the request carried "X-Asr-Verification: 1").
 * Returns 0, or -1 if the write failed (there is nowhere left to report it).
 */
int shop_faultlog_write(const char *code, const char *route, const char *reason, const char *extra,
                        bool verification);

/*
 * Formats the same line into `buf` (size `cap`, newline included) without
 * writing it. Returns the line length. Exposed for the unit tests.
 */
int shop_faultlog_format(char *buf, int cap, const char *code, const char *route,
                         const char *reason, const char *extra, bool verification);

#endif
