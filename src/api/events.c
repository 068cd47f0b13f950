/*
 * events.c - the event stream's hub (events.h).
 */
#include "api/events.h"

#include "asr/buf.h"
#include "asr/log.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 500 /* rows read and sent per loop turn: a backlog never holds the loop long */
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
    uv_timer_t kick;   /* the next batch, on the next loop turn */
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

static bool ready(const struct client *c)
{
    return asr_http_stream_queued(c->stream) < HIGH_WATER;
}

/*
 * One batch: the rows after the lowest cursor of the clients that keep up, read once and
 * formatted once, then each client gets the part it has not had. Returns true when a client
 * that keeps up is still behind (another batch is due on the next loop turn).
 */
static bool pump_batch(struct asr_events *hub)
{
    int64_t from = INT64_MAX;
    for (struct client *c = hub->clients; c != NULL; c = c->next)
        if (ready(c) && c->cursor < from)
            from = c->cursor;
    if (from == INT64_MAX)
        return false;
    struct asr_event *v = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    if (asr_store_event_list(hub->st, NULL, from, BATCH, &v, &n, &err) != 0) {
        asr_warn("api: event stream: %s", err.msg);
        return false;
    }
    if (n == 0)
        return false;
    /* All the messages in one buffer; off[i] is where row i's starts. */
    struct asr_buf b;
    asr_buf_init(&b, 64u << 20);
    size_t *off = malloc((n + 1) * sizeof(*off));
    if (off == NULL) {
        asr_events_free(v, n);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        off[i] = b.len;
        if (asr_events_format(&v[i], &b) != 0) {
            asr_warn("api: event %lld could not be formatted; skipped", (long long)v[i].id);
            b.len = off[i];
        }
    }
    off[n] = b.len;
    bool more = false;
    for (struct client *c = hub->clients, *next; c != NULL; c = next) {
        next = c->next;
        if (!ready(c))
            continue;
        size_t i = 0;
        while (i < n && v[i].id <= c->cursor)
            i++;
        if (i == n)
            continue;
        int64_t last = v[n - 1].id;
        int rc = asr_http_stream_write(c->stream, b.data + off[i], off[n] - off[i]);
        if (rc == 0) {
            c->cursor = last; /* on failure the stream has ended and c is unlinked */
            more |= n == BATCH && ready(c);
        }
    }
    asr_buf_free(&b);
    free(off);
    asr_events_free(v, n);
    return more;
}

static void kick_cb(uv_timer_t *t)
{
    struct asr_events *hub = t->data;
    if (pump_batch(hub))
        uv_timer_start(&hub->kick, kick_cb, 0, 0);
}

/* Another batch on the next loop turn, after whatever I/O is waiting. */
static void schedule(struct asr_events *hub)
{
    if (hub->nclients > 0 && !hub->closing && !uv_is_active((uv_handle_t *)&hub->kick))
        uv_timer_start(&hub->kick, kick_cb, 0, 0);
}

/* After every loop iteration: new rows written by this process. */
static void check_cb(uv_check_t *h)
{
    struct asr_events *hub = h->data;
    int64_t head = asr_store_event_head(hub->st);
    if (head == hub->seen_head)
        return;
    hub->seen_head = head;
    schedule(hub);
}

/* Once a second: rows of other processes, clients that were behind, and keepalives. */
static void tick_cb(uv_timer_t *t)
{
    struct asr_events *hub = t->data;
    schedule(hub);
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

/* Called from inside MHD when a client has taken all it was given. */
static void client_drained(void *data)
{
    struct client *c = data;
    schedule(c->hub);
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
        uv_timer_stop(&hub->kick);
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
    /* A cursor past the newest event (a store that was replaced, a made-up id) starts now. */
    int64_t head = asr_store_event_head(hub->st);
    c->cursor = after_id >= 0 && after_id <= head ? after_id : head;
    c->stream = asr_http_stream_open(r, "text/event-stream; charset=utf-8", client_closed,
                                     client_drained, c);
    if (c->stream == NULL) {
        free(c);
        return;
    }
    c->next = hub->clients;
    if (hub->clients != NULL)
        hub->clients->prev = c;
    hub->clients = c;
    if (hub->nclients++ == 0) {
        hub->seen_head = head;
        uv_check_start(&hub->check, check_cb);
        uv_timer_start(&hub->tick, tick_cb, TICK_MS, TICK_MS);
    }
    /* How long a browser waits before reconnecting; what the client missed follows. */
    asr_http_stream_write(c->stream, "retry: 1000\n\n", 13);
    schedule(hub);
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
    uv_timer_init(loop, &hub->kick);
    hub->check.data = hub->tick.data = hub->kick.data = hub;
    *out = hub;
    return 0;
}

static void hub_closed_cb(uv_handle_t *h)
{
    struct asr_events *hub = h->data;
    if (++hub->closing == 4)
        free(hub);
}

void asr_events_destroy(struct asr_events *hub)
{
    if (hub == NULL)
        return;
    hub->closing = 1; /* the server has stopped: every stream has ended and unlinked itself */
    uv_close((uv_handle_t *)&hub->check, hub_closed_cb);
    uv_close((uv_handle_t *)&hub->tick, hub_closed_cb);
    uv_close((uv_handle_t *)&hub->kick, hub_closed_cb);
}
