/*
 * http.h - an HTTP/1.1 server on the daemon's event loop (API stage), built on libmicrohttpd.
 *
 * libmicrohttpd runs in its "external epoll" mode: it owns one epoll descriptor, which the libuv
 * loop watches, and every callback runs on the loop's thread. So request handlers may use the
 * store and the daemon's state directly, with no locks. A handler answers at once or later (a
 * deploy answers when it is done): a request that is not answered when its handler returns is
 * suspended until asr_http_reply is called. Streams (server-sent events) stay open and are
 * written to as things happen.
 *
 * The server enforces what is the same for every request: the body cap (413 before the body is
 * read when Content-Length says so, or as soon as the bytes pass the cap), the connection limit
 * and timeouts. What a request may do is the handler's business (api.c).
 */
#ifndef ASR_API_HTTP_H
#define ASR_API_HTTP_H

#include "asr/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct asr_http;
struct asr_http_req;
struct asr_http_stream;

/* Called once per request, with the whole body read. */
typedef void (*asr_http_handler)(struct asr_http_req *r, void *data);

struct asr_http_opts {
    const char *host; /* numeric address */
    int port;         /* 0: any free port (asr_http_port says which) */
    size_t max_body;  /* bytes; a larger body gets 413 */
    asr_http_handler handler;
    void *data;
};

int asr_http_start(uv_loop_t *loop, const struct asr_http_opts *o, struct asr_http **out,
                   struct asr_err *err);
/* Answers every request still waiting with 503, ends every stream, and closes the server. */
void asr_http_stop(struct asr_http *h);
int asr_http_port(const struct asr_http *h);

const char *asr_http_method(const struct asr_http_req *r);
/* The path without the query string, as the client sent it (percent-escapes undone). */
const char *asr_http_path(const struct asr_http_req *r);
/* A query argument, or NULL. */
const char *asr_http_query(const struct asr_http_req *r, const char *key);
/* A request header (case-insensitive name), or NULL. */
const char *asr_http_header(const struct asr_http_req *r, const char *name);
/* Whether the client connected from a loopback address. */
bool asr_http_loopback(const struct asr_http_req *r);
/* The request body (NUL-terminated; may hold NUL bytes) and its length. */
const char *asr_http_body(const struct asr_http_req *r, size_t *len);

/* Answers the request (body copied) and ends the handler's use of r. Callable from any loop
 * callback, once. ctype NULL means application/json. */
void asr_http_reply(struct asr_http_req *r, int status, const char *ctype, const char *body,
                    size_t len);
/* Answers with the JSON body j (stolen). */
void asr_http_reply_json(struct asr_http_req *r, int status, json_t *j);
/* Answers {"error": msg, "status": status}. */
void asr_http_reply_error(struct asr_http_req *r, int status, const char *msg);
/* Adds a header to the answer given next (before asr_http_reply*), e.g. WWW-Authenticate. */
void asr_http_add_header(struct asr_http_req *r, const char *name, const char *value);

/*
 * Turns the request into an open stream of ctype (status 200) and ends the handler's use of r.
 * on_close(data) is called once when the stream ends for any reason (client gone, server stop);
 * after it the stream pointer is invalid. on_drain(data) (may be NULL) is called from inside
 * MHD when the client has taken every queued byte: it must not write to the stream there, only
 * arrange to (a timer).
 */
struct asr_http_stream *asr_http_stream_open(struct asr_http_req *r, const char *ctype,
                                             void (*on_close)(void *data),
                                             void (*on_drain)(void *data), void *data);
/* Queues bytes on the stream. Returns 0, or -1 when more than max_queued bytes are waiting for a
 * slow client (the stream is then ended: a client that does not read cannot hold memory). */
int asr_http_stream_write(struct asr_http_stream *s, const char *p, size_t n);
/* Bytes queued and not yet sent. */
size_t asr_http_stream_queued(const struct asr_http_stream *s);

#endif
