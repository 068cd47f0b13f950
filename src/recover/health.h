/*
 * health.h - one HTTP health probe (RECOVER stage).
 *
 * GET <path> on host:port with "Connection: close"; healthy means a 2xx or 3xx status line within
 * the timeout. The slot code counts consecutive results against `rise` and `fall`.
 */
#ifndef ASR_RECOVER_HEALTH_H
#define ASR_RECOVER_HEALTH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct asr_probe;

/* ok: 2xx/3xx in time. status: HTTP status, 0 when there was none, -1 when the probe could not
 * even be sent for a reason of asr's own (out of descriptors): that says nothing about the
 * service. why: static text when not ok. */
typedef void (*asr_probe_cb)(bool ok, int status, const char *why, uint64_t latency_us, void *data);

/*
 * Starts a probe; cb runs exactly once, never from inside this call, unless the probe is
 * cancelled first. The probe frees itself after cb. Returns NULL when out of memory or host is
 * not a numeric address (cb is then not called).
 */
struct asr_probe *asr_probe_start(uv_loop_t *loop, const char *host, int port, const char *path,
                                  int timeout_ms, const char *extra_headers, asr_probe_cb cb,
                                  void *data);
/* A request that wants its answer: status 0 (why says why) when there was none; body is the
 * response body, at most body_cap bytes (NUL-terminated), valid during the call. */
typedef void (*asr_request_cb)(int status, const char *body, size_t len, const char *why,
                               void *data);
/*
 * Sends METHOD path with extra_headers ("Name: value\r\n"..., may be NULL) and body (may be
 * NULL with body_len 0) to host:port, and calls cb once with the status and body, never from
 * inside this call. Returns NULL when out of memory or host is not a numeric address. Cancel
 * with asr_probe_cancel.
 */
struct asr_probe *asr_request_start(uv_loop_t *loop, const char *host, int port, const char *method,
                                    const char *path, const char *extra_headers, const char *body,
                                    size_t body_len, size_t body_cap, int timeout_ms,
                                    asr_request_cb cb, void *data);
/* Cancels a running probe or request: cb will not be called. */
void asr_probe_cancel(struct asr_probe *p);

#endif
