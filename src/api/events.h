/*
 * events.h - GET /api/v1/events: the store's events table as a stream of server-sent events.
 *
 * Every row of the events table is one message, in id order: "id: N" and one "data:" line of
 * JSON {"id", "at", "service", "actor", "kind", "incident", "detail"}. The table holds the
 * services' deployment and slot events, every audit row (plans, steps, outcomes, resolutions)
 * and every incident the detector opens (asr/store.h), so the stream has incident, stage and
 * deployment events. A client that reconnects with Last-Event-ID (or ?after=N) gets every row
 * after N first, then the live ones: it misses none, as long as the store has them.
 *
 * New rows are noticed without polling the database: after every loop iteration the hub compares
 * the store's event head with what it sent. Rows written by another process (a CLI command with
 * no daemon) are picked up by a check once a second while clients are connected.
 */
#ifndef ASR_API_EVENTS_H
#define ASR_API_EVENTS_H

#include "api/http.h"
#include "asr/buf.h"
#include "asr/store.h"

#include <uv.h>

struct asr_events;

int asr_events_create(uv_loop_t *loop, struct asr_store *st, struct asr_events **out,
                      struct asr_err *err);
/* Turns r into a stream starting after event after_id (-1: only events from now on). */
void asr_events_attach(struct asr_events *hub, struct asr_http_req *r, int64_t after_id);
/* Ends every stream and frees the hub (after asr_http_stop, which ends the streams itself). */
void asr_events_destroy(struct asr_events *hub);

/* One event as its stream message ("id: N\ndata: {...}\n\n"), appended to out. */
int asr_events_format(const struct asr_event *e, struct asr_buf *out);

#endif
