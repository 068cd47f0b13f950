/*
 * cloudwatch.h - decoder for CloudWatch Logs subscription payloads.
 *
 * Part of detection (issue 3): lets asr sit where the reference system's Lambda sat. AWS delivers
 * a subscription as {"awslogs":{"data":"<base64>"}}, where the base64 holds a gzip stream whose
 * contents are the inner JSON: messageType, owner, logGroup, logStream, subscriptionFilters and
 * logEvents[] of {id, timestamp (ms), message}. This module turns one delivery into a struct
 * asr_cw_batch whose events the detection sources feed on like lines from a file.
 *
 * All outside data is bounded: the envelope size, the decompressed size (a decompression bomb
 * stops at the cap without allocating past it), the number of events and the bytes per message
 * (a longer message is cut and ends with ASR_CW_CUT_MARKER rather than being rejected).
 * Invalid UTF-8 bytes and lone UTF-16 surrogate escapes in the inner JSON become U+FFFD so that
 * one bad line cannot drop a whole batch; NUL bytes (\u0000) are kept, hence message_len.
 */
#ifndef ASR_DETECT_CLOUDWATCH_H
#define ASR_DETECT_CLOUDWATCH_H

#include "asr/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Appended to a message that was longer than max_message_bytes. */
#define ASR_CW_CUT_MARKER " [asr: cut]"

struct asr_cw_limits {
    size_t max_input_bytes;        /* envelope or gzip bytes accepted (default 24 MiB) */
    size_t max_decompressed_bytes; /* gunzipped payload (default 16 MiB) */
    size_t max_events;             /* logEvents per delivery (default 10,000) */
    size_t max_message_bytes;      /* bytes kept per message before the marker (256 KiB) */
};

struct asr_cw_event {
    char *id;             /* owned by the batch; NUL-terminated */
    int64_t timestamp_ms; /* event time, ms since the epoch */
    char *message;        /* owned by the batch; may hold NUL bytes; NUL-terminated too */
    size_t message_len;   /* bytes in message, excluding the terminating NUL */
};

struct asr_cw_batch {
    char *message_type; /* "DATA_MESSAGE" or "CONTROL_MESSAGE" */
    char *owner;        /* account id ("" when absent) */
    char *log_group;    /* "" when absent */
    char *log_stream;   /* "" when absent */
    bool control;       /* a CONTROL_MESSAGE (AWS checking the destination); callers ignore it */
    struct asr_cw_event *events;
    size_t nevents;
};

/* Fills lim with the defaults listed in struct asr_cw_limits. */
void asr_cw_limits_default(struct asr_cw_limits *lim);

/*
 * Decodes one subscription delivery of len bytes: either the outer envelope
 * {"awslogs":{"data":"<base64>"}} (what a Lambda or a Firehose forwarder receives), or the
 * already-decoded gzip bytes, or the inner JSON. lim may be NULL for the defaults; a zero field
 * also means its default.
 *
 * On success returns 0 and out holds the batch, owned by the caller, who releases it with
 * asr_cw_batch_free(). On failure returns ASR_EPARSE (not JSON, not base64, not gzip, truncated,
 * wrong field types, unknown messageType), ASR_ETOOBIG (a cap was hit), ASR_EINVAL (NULL
 * arguments) or ASR_ENOMEM; err gets one line starting "cloudwatch: " that names the field or
 * offset, and out is left zeroed.
 */
int asr_cw_decode_envelope(const char *json, size_t len, const struct asr_cw_limits *lim,
                           struct asr_cw_batch *out, struct asr_err *err);

/* Frees everything the batch owns and zeroes it. Accepts NULL and a zeroed batch. */
void asr_cw_batch_free(struct asr_cw_batch *b);

struct asr_config;
/* The service of cfg a delivery's log group stands for: the only service, or the service named
 * by the group's last path segment ("/ecs/shop" -> "shop"); NULL when neither. */
const char *asr_cw_group_service(const struct asr_config *cfg, const char *group);

#endif
