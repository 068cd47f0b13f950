/*
 * routes.h - the shop's HTTP routes and the state they share.
 *
 * main.c owns one struct shop_app, fills it with shop_app_init() before the
 * HTTP daemon starts and hands it to libmicrohttpd as the closure of both
 * callbacks below. After start the handlers only read it, apart from the
 * two atomics that the graceful stop relies on.
 */
#ifndef SHOP_ROUTES_H
#define SHOP_ROUTES_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "fetch.h"

struct shop_app {
    const char *db_path;      /* borrowed from argv */
    const char *commit;       /* the commit compiled in (APP_COMMIT) */
    struct shop_url upstream; /* where /test-fault/external-api goes */
    char root_body[384];      /* GET / answer, built once: the load-tested path */
    char version_body[320];   /* GET /version answer */
    atomic_int in_flight;     /* requests received and not yet completed */
    atomic_bool stopping;     /* set when SIGTERM/SIGINT arrives */
};

/*
 * Fills `app` (borrowing the three strings), parses `upstream_url` and seeds
 * the database. Returns 0, or -1 with a message in `err` naming the bad
 * value or the database failure.
 */
int shop_app_init(struct shop_app *app, const char *commit, const char *db_path,
                  const char *upstream_url, char *err, size_t errlen);

/* libmicrohttpd's access handler: routes one request. `cls` is the shop_app. */
enum MHD_Result shop_routes_access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls);

/* libmicrohttpd's completion notice: ends the request's in-flight count. */
void shop_routes_completed_cb(void *cls, struct MHD_Connection *conn, void **req_cls,
                              enum MHD_RequestTerminationCode toe);

/*
 * Escapes `src` as the inside of a JSON string into dst (size cap, cap > 0).
 * Output that does not fit is cut at a character boundary and ends in
 * "..."; returns the length written.
 */
size_t shop_json_escape(char *dst, size_t cap, const char *src);

#endif
