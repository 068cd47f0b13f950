/*
 * proxy.h - the HTTP/1.1 reverse proxy in front of a service (RECOVER stage).
 *
 * The proxy owns the service's public listen address. It terminates client connections and
 * forwards each *request* (not each connection) to the backend that is active when the request
 * is complete, the way a load balancer does: a cutover from blue to green therefore applies to
 * the very next request, even on a client's long-lived keep-alive connection, and no client
 * connection is ever cut because a slot stops.
 *
 * Backends are slots (a host:port). Each keeps a pool of idle keep-alive connections. A backend
 * that is released stops taking requests; its idle connections are closed at once and its
 * drained callback fires when its last in-flight request has finished, so the slot behind it can
 * be stopped without dropping anything.
 *
 * While no backend is active (a crashed slot is restarting) requests wait up to wait_ms and are
 * then answered 503. A request whose backend connection fails before any byte of the response
 * is retried (up to 5 times) when that is safe: the connection was never established, or the
 * method is idempotent, after 10, 20, 40... ms. Requests are buffered whole before they are sent
 * (up to max_body), so a retry can resend them.
 */
#ifndef ASR_RECOVER_PROXY_H
#define ASR_RECOVER_PROXY_H

#include "asr/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct asr_proxy;
struct asr_backend;

struct asr_proxy_opts {
    const char *host; /* numeric address to listen on */
    int port;
    int wait_ms;             /* how long a request waits for an active backend; default 5000 */
    size_t max_request;      /* cap on one request, head and body; default 8 MiB */
    int connect_timeout_ms;  /* backend connect; default 300, then retried */
    int response_timeout_ms; /* backend silence while a request is in flight; default 120000 */
    int client_idle_ms;      /* idle keep-alive client connection; default 60000 */
    size_t max_connections;  /* open client connections; more are accepted and closed; 1024 */
    const char *name;        /* service name, for log lines */
};

struct asr_proxy_stats {
    uint64_t connections_total;
    uint64_t connections_open;
    uint64_t requests_total;
    uint64_t responses_proxy_5xx; /* 502/503/504 that the proxy itself produced */
    uint64_t retries;
    uint64_t bad_requests;         /* 400/413/501 answered by the proxy */
    uint64_t connections_rejected; /* closed at once: max_connections reached */
};

typedef void (*asr_backend_drained_cb)(struct asr_backend *b, void *data);

/* Binds and listens. Returns ASR_ENET with err naming the address when it cannot. */
int asr_proxy_create(uv_loop_t *loop, const struct asr_proxy_opts *opts, struct asr_proxy **out,
                     struct asr_err *err);
/* Closes the listening socket (the address is free at once); open connections carry on. */
void asr_proxy_stop_listening(struct asr_proxy *px);
/* Closes the listener and every connection; requests in flight are cut. */
void asr_proxy_destroy(struct asr_proxy *px);

/* A backend at host:port. Owned by the proxy; valid until its drained callback has run. */
struct asr_backend *asr_proxy_backend_new(struct asr_proxy *px, const char *host, int port);
/* Routes new requests to b (NULL: none, requests wait). b must not be released. */
void asr_proxy_set_active(struct asr_proxy *px, struct asr_backend *b);
struct asr_backend *asr_proxy_active(const struct asr_proxy *px);
/* Marks the service down for good (no restart coming): waiting requests and new ones get 503 at
 * once instead of waiting wait_ms. Cleared by asr_proxy_set_active with a backend. */
void asr_proxy_set_unavailable(struct asr_proxy *px);
/*
 * Stops routing to b (if active, no backend is active afterwards), closes its idle connections,
 * and calls cb once its in-flight requests have finished (possibly before returning). After cb
 * the proxy frees b; the caller must not use it again.
 */
void asr_proxy_backend_release(struct asr_proxy *px, struct asr_backend *b,
                               asr_backend_drained_cb cb, void *data);
/* Requests now in flight to b. */
int asr_backend_inflight(const struct asr_backend *b);
int asr_backend_port(const struct asr_backend *b);

void asr_proxy_get_stats(const struct asr_proxy *px, struct asr_proxy_stats *out);

#endif
