/*
 * detector.h - where a log line becomes an incident.
 *
 * The DETECT stage in one object (docs/detection.md has the whole story). Every source - a
 * slot's stdout/stderr, a tailed file, stdin, a CloudWatch delivery - hands its lines, already
 * framed (include/asr/framer.h), to asr_detector_line(). For each line the detector:
 *
 *   1. scans it once against the service's signatures and the generic detectors (signature.h);
 *   2. mines its template (template.h), which gives errors nobody configured a stable id;
 *   3. decides whether it is a fault: a signature hit, or a generic hit whose template has never
 *      been flagged before or whose rate jumped;
 *   4. finds the fault's fingerprint (signature id + dedupe fields, or the template id) and
 *      either absorbs it into the open incident with that fingerprint, records it on a resolved
 *      one still in its cooldown, or opens a new incident with the lines before it, grouped
 *      under the service's recent incident when there is one;
 *   5. collects the lines after it from the same source, up to context_after lines or
 *      context_wait_ms.
 *
 * A new incident is committed to the store before asr_detector_line() returns (that commit is
 * the detection latency). Counters, context, templates and file positions are written in one
 * batch per flush: at once when an incident opens, otherwise every 100 ms on the loop (or when
 * the owner calls asr_detector_flush() without a loop).
 *
 * One thread: the loop's, or the caller's when there is no loop.
 */
#ifndef ASR_DETECT_DETECTOR_H
#define ASR_DETECT_DETECTOR_H

#include "asr/config.h"
#include "asr/error.h"
#include "asr/incident.h"
#include "asr/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct asr_detector;

/* One framed line and where it came from. Strings are borrowed for the call. */
struct asr_line {
    const char *service; /* a service of the config */
    const char *source;  /* "stdout", "stderr", "file:PATH", "cloudwatch:GROUP/STREAM", "stdin" */
    const char *slot;    /* "blue" | "green" or NULL */
    const char *release; /* commit sha or NULL */
    const char *text;    /* valid UTF-8 without '\n' or NUL (the framer's promise) */
    size_t len;
    int64_t at_ms;       /* when it happened: wall ms of receipt, or the CloudWatch event time */
    int64_t received_us; /* wall us when asr read it */
    const struct asr_log_position *pos; /* a tailed file's position just past it, or NULL */
};

struct asr_detector_opts {
    const struct asr_config *cfg; /* must outlive the detector */
    struct asr_store *store;      /* required */
    uv_loop_t *loop;              /* NULL: no timers; the owner calls asr_detector_flush() */
    bool persist_templates;       /* load each service's templates at start and save them */
    bool compile_apart; /* compile signature databases in a child process (ASR_SIGSET_APART) */
    /* Called after a new incident has been committed (opened) and after each later write of
     * it (count, context); may be NULL. inc is borrowed for the call. */
    void (*on_incident)(void *data, const struct asr_incident *inc, bool opened);
    void *data;
};

/*
 * Compiles every service's signatures, creates its template miner (restoring saved templates
 * when persist_templates is set) and loads the incidents that are open or within their cooldown,
 * so dedupe and cooldown survive a restart. Returns 0, ASR_ECONFIG with err naming the service
 * and signature, ASR_EDB or ASR_ENOMEM.
 */
int asr_detector_create(const struct asr_detector_opts *opts, struct asr_detector **out,
                        struct asr_err *err);

/*
 * Runs one line through detection. Returns 0, ASR_EINVAL (unknown service; err says which), or
 * the store's error when a new incident could not be committed (it is retried with the next
 * flush; nothing is dropped from memory).
 */
int asr_detector_line(struct asr_detector *d, const struct asr_line *line, struct asr_err *err);

/*
 * An unexpected exit of a service's process (status: exit code, or 128 + signal). Opens or
 * updates the incident "SERVICE:exit:signal=NAME" / "SERVICE:exit:code=N", with the last
 * stderr lines of the service as its context.
 */
int asr_detector_exit(struct asr_detector *d, const char *service, const char *slot,
                      const char *release, int status, int term_signal, struct asr_err *err);

/* Resolves an incident: stored at once, and its fingerprint enters the cooldown. */
int asr_detector_resolve(struct asr_detector *d, int64_t id, const char *reason,
                         struct asr_err *err);

/*
 * Writes everything pending in one transaction. final: first completes every incident still
 * waiting for context (as at the end of input or before a shutdown or a reload), and saves all
 * templates with their counts. Returns 0 or the store's error (what was pending stays pending).
 */
int asr_detector_flush(struct asr_detector *d, bool final, struct asr_err *err);

/* Counters for status and benchmarks. */
struct asr_detector_stats {
    uint64_t lines, signature_hits, generic_hits, faults, opened, absorbed, suppressed;
    uint64_t verifications, flushes, flush_errors;
};
void asr_detector_stats(const struct asr_detector *d, struct asr_detector_stats *out);

/* Frees the detector (does not flush; call asr_detector_flush(d, true, ...) first). On a loop
 * the timer is closed and the memory released once the loop has run. Accepts NULL. */
void asr_detector_destroy(struct asr_detector *d);

#endif
