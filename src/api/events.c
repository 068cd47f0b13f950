/*
 * events.c - the event stream's hub (events.h).
 */
#include "api/events.h"

#include "asr/buf.h"
#include "asr/log.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 500
#define KEEPALIVE_MS 15000
#define TICK_MS 1000
/* A client with more than this waiting gets no more rows until it has read some. */
#define HIGH_WATER (1024 * 1024)

struct client {
    struct asr_events *hub;
    struct asr_http_stream *stream;
    int64_t cursor; /* the last event id sent */
    struct client *prev, *next;
};

struct asr_events {
    uv_loop_t *loop;
    struct asr_store *st;
    uv_check_t check;
    uv_timer_t tick;
    int64_t seen_head; /* the store's head when the clients were last brought up to date */
    int64_t tick_ms;   /* time since the last keepalive */
    struct client *clients;
    size_t nclients;
    int closing;
};

int asr_events_format(const struct asr_event *e, struct asr_buf *out)
{
    json_t *detail = NULL;
    if (e->detail != NULL && e->detail[0] == '{')
        detail = json_loads(e->detail, 0, NULL);
    if (detail == NULL && e->detail != NULL)
        detail = json_string(e->detail); /* NULL when not UTF-8: then the detail is left out */
    json_t *o =
        json_pack("{s:I, s:I, s:s?, s:s, s:s, s:o, s:o}", "id", (json_int_t)e->id, "at",
                  (json_int_t)e->at, "service", e->service, "actor", e->actor, "kind", e->kind,
                  "incident", e->incident_id > 0 ? json_integer(e->incident_id) : json_null(),
                  "detail", detail != NULL ? detail : json_null());
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL)
        return -1;
    /* json_dumps escapes newlines, so the JSON is one "data:" line. */
    int rc = asr_buf_printf(out, "id: %lld\ndata: %s\n\n", (long long)e->id, text);
    free(text);
    return rc;
}

/* Sends the client what it has not had, a batch at a time, while it keeps up. */
static void pump(struct client *c)
{
    struct asr_events *hub = c->hub;
    while (asr_http_stream_queued(c->stream) < HIGH_WATER) {
        struct asr_event *v = NULL;
        size_t n = 0;
        struct asr_err err = {0};
        if (asr_store_event_list(hub->st, NULL, c->cursor, BATCH, &v, &n, &err) != 0) {
            asr_warn("api: event stream: %s", err.msg);
            return;
        }
        struct asr_buf b;
        asr_buf_init(&b, 64u << 20);
        for (size_t i = 0; i < n; i++) {
            if (asr_events_format(&v[i], &b) != 0)
                asr_warn("api: event %lld could not be formatted; skipped", (long long)v[i].id);
            c->cursor = v[i].id;
        }
        asr_events_free(v, n);
        int rc = b.len > 0 ? asr_http_stream_write(c->stream, b.data, b.len) : 0;
        asr_buf_free(&b);
        if (rc != 0 || n < BATCH)
            return; /* rc: the stream ended (its on_close unlinks c) */
    }
}

static void pump_all(struct asr_events *hub)
{
    for (struct client *c = hub->clients, *next; c != NULL; c = next) {
        next = c->next;
        pump(c);
    }
}

/* After every loop iteration: new rows written by this process. */
static void check_cb(uv_check_t *h)
{
    struct asr_events *hub = h->data;
    int64_t head = asr_store_event_head(hub->st);
    if (head == hub->seen_head)
        return;
    hub->seen_head = head;
    pump_all(hub);
}

/* Once a second: rows of other processes, clients that were behind, and keepalives. */
static void tick_cb(uv_timer_t *t)
{
    struct asr_events *hub = t->data;
    pump_all(hub);
    hub->tick_ms += TICK_MS;
    if (hub->tick_ms < KEEPALIVE_MS)
        return;
    hub->tick_ms = 0;
    /* A comment line: keeps proxies from timing the stream out, and finds clients that left. */
    for (struct client *c = hub->clients, *next; c != NULL; c = next) {
        next = c->next;
        asr_http_stream_write(c->stream, ": keepalive\n\n", 13);
    }
}

static void client_closed(void *data)
{
    struct client *c = data;
    struct asr_events *hub = c->hub;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        hub->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    hub->nclients--;
    if (hub->nclients == 0 && !hub->closing) {
        uv_check_stop(&hub->check);
        uv_timer_stop(&hub->tick);
    }
    free(c);
}

void asr_events_attach(struct asr_events *hub, struct asr_http_req *r, int64_t after_id)
{
    struct client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        asr_http_reply_error(r, 500, "out of memory");
        return;
    }
    c->hub = hub;
    c->cursor = after_id >= 0 ? after_id : asr_store_event_head(hub->st);
    c->stream = asr_http_stream_open(r, "text/event-stream; charset=utf-8", client_closed, c);
    if (c->stream == NULL) {
        free(c);
        return;
    }
    c->next = hub->clients;
    if (hub->clients != NULL)
        hub->clients->prev = c;
    hub->clients = c;
    if (hub->nclients++ == 0) {
        hub->seen_head = asr_store_event_head(hub->st);
        uv_check_start(&hub->check, check_cb);
        uv_timer_start(&hub->tick, tick_cb, TICK_MS, TICK_MS);
    }
    /* How long a browser waits before reconnecting, then whatever the client missed. */
    asr_http_stream_write(c->stream, "retry: 1000\n\n", 13);
    pump(c);
}

size_t asr_events_clients(const struct asr_events *hub)
{
    return hub != NULL ? hub->nclients : 0;
}

int asr_events_create(uv_loop_t *loop, struct asr_store *st, struct asr_events **out,
                      struct asr_err *err)
{
    struct asr_events *hub = calloc(1, sizeof(*hub));
    if (hub == NULL)
        return asr_err_set(err, ASR_ENOMEM, "api: out of memory");
    hub->loop = loop;
    hub->st = st;
    uv_check_init(loop, &hub->check);
    uv_timer_init(loop, &hub->tick);
    hub->check.data = hub->tick.data = hub;
    *out = hub;
    return 0;
}

static void hub_closed_cb(uv_handle_t *h)
{
    struct asr_events *hub = h->data;
    if (++hub->closing == 3)
        free(hub);
}

void asr_events_destroy(struct asr_events *hub)
{
    if (hub == NULL)
        return;
    hub->closing = 1; /* the server has stopped: every stream has ended and unlinked itself */
    uv_close((uv_handle_t *)&hub->check, hub_closed_cb);
    uv_close((uv_handle_t *)&hub->tick, hub_closed_cb);
}
