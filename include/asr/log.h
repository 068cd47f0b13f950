/*
 * log.h - levelled logging with timestamps, to stderr (or a file descriptor of the caller's).
 *
 * Lines look like "2026-11-27T22:31:04.123Z INFO  deploy: shop: switched to green (abc1234)".
 * Logging never fails loudly: a short write is dropped, never retried in a loop.
 */
#ifndef ASR_LOG_H
#define ASR_LOG_H

enum asr_log_level { ASR_LOG_DEBUG, ASR_LOG_INFO, ASR_LOG_WARN, ASR_LOG_ERROR, ASR_LOG_OFF };

void asr_log_set_level(enum asr_log_level level);
enum asr_log_level asr_log_get_level(void);
/* Parses "debug|info|warn|error|off"; returns 0 or ASR_EINVAL. */
int asr_log_parse_level(const char *s, enum asr_log_level *out);
/* Sends log lines to fd (default 2). The caller keeps ownership of fd. */
void asr_log_set_fd(int fd);

void asr_log(enum asr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define asr_debug(...) asr_log(ASR_LOG_DEBUG, __VA_ARGS__)
#define asr_info(...) asr_log(ASR_LOG_INFO, __VA_ARGS__)
#define asr_warn(...) asr_log(ASR_LOG_WARN, __VA_ARGS__)
#define asr_error(...) asr_log(ASR_LOG_ERROR, __VA_ARGS__)

#endif
