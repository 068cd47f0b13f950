/*
 * fetch.h - a small HTTP/1.1 GET client with one deadline, for the
 * /test-fault/external-api route.
 *
 * It speaks plain sockets and poll(2): connect, send and every read share a
 * single deadline, so a slow upstream costs at most the timeout. Only
 * "http://" URLs with numeric or resolvable hosts are supported. Name
 * resolution itself (getaddrinfo) is not under the deadline; the demo uses
 * numeric addresses.
 */
#ifndef SHOP_FETCH_H
#define SHOP_FETCH_H

#include <stddef.h>

#define SHOP_URL_HOST_MAX 256
#define SHOP_URL_PATH_MAX 1024

/* The most response bytes (headers and body) kept; more is an error. */
#define SHOP_FETCH_MAX 65536

struct shop_url {
    char host[SHOP_URL_HOST_MAX]; /* without the brackets of an IPv6 literal */
    char port[8];                 /* decimal, "80" when the URL names none */
    char path[SHOP_URL_PATH_MAX]; /* starts with '/', query included */
};

enum shop_fetch_status {
    SHOP_FETCH_OK = 0,              /* a response arrived; see status */
    SHOP_FETCH_TIMEOUT = -1,        /* the deadline passed first */
    SHOP_FETCH_CONNECT_FAILED = -2, /* resolve or connect failed (refused, unreachable) */
    SHOP_FETCH_IO = -3,             /* send or receive failed after connecting */
    SHOP_FETCH_BAD_RESPONSE = -4,   /* not a response we can read */
    SHOP_FETCH_TOO_LARGE = -5,      /* the response passed SHOP_FETCH_MAX */
};

struct shop_fetch_result {
    int status;       /* HTTP status code, when SHOP_FETCH_OK */
    const char *body; /* points into the result's own buffer */
    size_t body_len;
    long long elapsed_ms;     /* from the call to its return */
    char buf[SHOP_FETCH_MAX]; /* the raw response */
};

/*
 * Parses `url` into `out`. Returns 0, or -1 if it is not an http:// URL
 * whose parts fit the limits above.
 */
int shop_url_parse(const char *url, struct shop_url *out);

/*
 * Parses a complete or partial response held in buf[0..len). Returns 1 and
 * fills *status, *body_off and *body_len when the response is complete (by
 * Content-Length, or by `eof` when there is none), 0 when more bytes are
 * needed, and -1 when the bytes are not an HTTP/1.x response we support
 * (chunked bodies are refused).
 */
int shop_http_parse_response(const char *buf, size_t len, int eof, int *status, size_t *body_off,
                             size_t *body_len);

/*
 * GETs `url` with at most `timeout_ms` for the whole exchange. Fills `res`
 * (owned by the caller; large, so not for the stack of a small thread) and
 * returns a shop_fetch_status.
 */
int shop_fetch_get(const struct shop_url *url, int timeout_ms, struct shop_fetch_result *res);

#endif
