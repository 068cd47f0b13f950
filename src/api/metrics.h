/*
 * metrics.h - `GET /metrics`: asr's state as Prometheus text exposition format 0.0.4 (API stage).
 *
 * Two sources: the store (incidents, plans, remediations, journal, releases, deployments,
 * kb_docs), read in one read transaction so that every family of a scrape describes the same
 * moment; and the daemon's live status (services, proxies, the detector), which only a running
 * daemon has. docs/metrics.md lists every metric, its labels and what it counts.
 */
#ifndef ASR_API_METRICS_H
#define ASR_API_METRICS_H

#include "asr/buf.h"
#include "asr/error.h"
#include "asr/store.h"

#include <jansson.h>

/* The content type of what asr_metrics_render() writes, for the HTTP answer. */
#define ASR_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Most series one labelled family of the store gets; beyond it the family is cut and a comment
 * line says so (label values come from config and logs, so their number is not ours to trust). */
#define ASR_METRICS_MAX_SERIES 2000
/* Longest label value in bytes; a longer one is cut (on a UTF-8 boundary) and ends in "...". */
#define ASR_METRICS_MAX_LABEL 200

/*
 * Renders every metric as Prometheus text exposition format 0.0.4, appended to out. status is
 * the daemon's live status: the JSON of GET /api/v1/status ({"daemon":{...},"services":[...]},
 * docs/metrics.md), or NULL when no daemon runs (then only the store's metrics). st may be NULL
 * too (then only the status's). The store is only read (SELECTs in one deferred transaction,
 * joined instead when the caller has one open).
 *
 * Returns 0 with the text appended, or a negative ASR_E* code with err set and out as it was:
 * ASR_EDB (a query failed; err names it and SQLite's message), ASR_ETOOBIG (the text would
 * pass out's cap), ASR_ENOMEM. Label values are escaped (\\, \", \n) and made valid UTF-8
 * (U+FFFD for a bad byte).
 */
int asr_metrics_render(struct asr_store *st, json_t *status, struct asr_buf *out,
                       struct asr_err *err);

#endif
