/*
 * timeutil.c - clocks, UTC formatting and duration parsing.
 */
#include "asr/timeutil.h"
#include "asr/error.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t asr_time_mono_ms(void)
{
    return asr_time_mono_us() / 1000u;
}

uint64_t asr_time_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t asr_time_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t asr_time_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

size_t asr_time_format_utc(int64_t wall_ms, char *buf, size_t cap)
{
    if (cap < 25)
        return 0;
    if (wall_ms < 0)
        wall_ms = 0; /* before the epoch is never a real event time */
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    int k = snprintf(buf + n, cap - n, ".%03dZ", (int)(wall_ms % 1000));
    return n + (size_t)(k > 0 ? k : 0);
}

int asr_duration_parse(const char *s, int64_t *out_ms)
{
    if (s == NULL || *s < '0' || *s > '9')
        return ASR_EINVAL;
    int64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        int d = *s - '0';
        if (v > (INT64_MAX - d) / 10)
            return ASR_EINVAL;
        v = v * 10 + d;
        s++;
    }
    int64_t mult;
    if (strcmp(s, "ms") == 0)
        mult = 1;
    else if (strcmp(s, "s") == 0)
        mult = 1000;
    else if (strcmp(s, "m") == 0)
        mult = 60000;
    else if (strcmp(s, "h") == 0)
        mult = 3600000;
    else if (strcmp(s, "d") == 0)
        mult = 86400000;
    else
        return ASR_EINVAL;
    if (v > INT64_MAX / mult)
        return ASR_EINVAL;
    *out_ms = v * mult;
    return 0;
}
