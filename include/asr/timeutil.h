/*
 * timeutil.h - clocks and durations.
 *
 * Monotonic milliseconds for deadlines and measured durations; wall-clock milliseconds since the
 * epoch for anything stored or shown. Durations in config ("10m", "1h", "250ms") parse here.
 */
#ifndef ASR_TIMEUTIL_H
#define ASR_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

uint64_t asr_time_mono_ms(void);
/* Monotonic microseconds, for latencies below a millisecond. */
uint64_t asr_time_mono_us(void);
int64_t asr_time_wall_ms(void);
/* Wall-clock microseconds since the epoch (receive and commit times of log lines). */
int64_t asr_time_wall_us(void);
/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" into buf; returns its length (0 if cap < 25). */
size_t asr_time_format_utc(int64_t wall_ms, char *buf, size_t cap);
/*
 * Parses a duration: a non-negative integer followed by ms, s, m, h or d ("1500ms", "10m").
 * Returns 0 and the value in *out_ms, or ASR_EINVAL.
 */
int asr_duration_parse(const char *s, int64_t *out_ms);

#endif
