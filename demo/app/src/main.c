/*
 * main.c - the shop's lifecycle: flags, start, wait for a signal, stop.
 *
 * The shop is the demo's "faulty production application": asr builds it,
 * starts it, watches its stderr for fault lines and heals it. This file
 * owns the HTTP daemon; routes.c owns what each URL does.
 *
 * Threads: libmicrohttpd runs one thread per connection (so a slow fault
 * route never blocks /health on another connection). The main thread only
 * waits for SIGTERM/SIGINT with sigwait(), with both signals blocked in
 * every thread, so no code runs in signal context.
 *
 * Stop: stop accepting (quiesce), let requests in flight finish (bounded
 * by STOP_WAIT_MS; answers sent meanwhile say "Connection: close"), then
 * close what is left, idle keep-alive connections included, and exit 0.
 */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "routes.h"

#ifndef APP_COMMIT
#define APP_COMMIT "unknown"
#endif

/* The longest a graceful stop waits for requests in flight, in ms. */
static const int STOP_WAIT_MS = 10000;

/* Idle keep-alive connections are closed after this many seconds. */
static const unsigned int IDLE_TIMEOUT_S = 30;

/* At most this many connections (and so connection threads) at once. */
static const unsigned int MAX_CONNECTIONS = 1000;

struct options {
    const char *host;
    long port;
    const char *db_path;
    const char *upstream;
};

static void usage(FILE *to)
{
    fprintf(to, "usage: shop [--port N] [--host ADDR] [--db PATH] [--upstream URL]\n"
                "  --port N        TCP port, 0 picks a free one (default 8080)\n"
                "  --host ADDR     numeric address to listen on (default 127.0.0.1)\n"
                "  --db PATH       SQLite file, created and seeded (default shop.db)\n"
                "  --upstream URL  used by /test-fault/external-api\n"
                "                  (default http://127.0.0.1:8081/slow)\n");
}

/* Parses argv into `o`. Returns 0, 1 for --help, or -1 after saying what is wrong. */
static int parse_args(int argc, char **argv, struct options *o)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *flag = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0)
            return 1;
        if (strcmp(flag, "--port") != 0 && strcmp(flag, "--host") != 0 &&
            strcmp(flag, "--db") != 0 && strcmp(flag, "--upstream") != 0) {
            fprintf(stderr, "shop: unknown flag %s\n", flag);
            return -1;
        }
        if (!val) {
            fprintf(stderr, "shop: %s needs a value\n", flag);
            return -1;
        }
        i++;
        if (strcmp(flag, "--port") == 0) {
            char *end;

            errno = 0;
            o->port = strtol(val, &end, 10);
            if (errno != 0 || end == val || *end != '\0' || o->port < 0 || o->port > 65535) {
                fprintf(stderr, "shop: --port %s: not a port number (0-65535)\n", val);
                return -1;
            }
        } else if (strcmp(flag, "--host") == 0) {
            o->host = val;
        } else if (strcmp(flag, "--db") == 0) {
            o->db_path = val;
        } else {
            o->upstream = val;
        }
    }
    return 0;
}

/* libmicrohttpd's error messages, as single lines on stderr. */
__attribute__((format(printf, 2, 0))) static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "shop: microhttpd: ");
    int m;

    (void)cls;
    m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    if (m < 0)
        return;
    n += m;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    while (n > 0 && line[n - 1] == '\n')
        n--;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* Nowhere left to report it. */
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv)
{
    static struct shop_app app; /* static: the daemon's threads use it until exit */
    struct options o = {"127.0.0.1", 8080, "shop.db", "http://127.0.0.1:8081/slow"};
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE, .ai_socktype = SOCK_STREAM};
    struct addrinfo *addr = NULL;
    struct MHD_Daemon *d = NULL;
    const union MHD_DaemonInfo *info;
    unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    char err[512], port[8];
    sigset_t sigs;
    MHD_socket lfd;
    int sig = 0, waited, ret = 1, rc;

    rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    snprintf(port, sizeof(port), "%ld", o.port);
    if (getaddrinfo(o.host, port, &hints, &addr) != 0) {
        fprintf(stderr, "shop: --host %s: not a numeric IPv4 or IPv6 address\n", o.host);
        return 2;
    }
    if (addr->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (shop_app_init(&app, APP_COMMIT, o.db_path, o.upstream, err, sizeof(err)) < 0) {
        fprintf(stderr, "shop: %s\n", err);
        goto out;
    }

    /* Block the stop signals before any thread exists, so all inherit the mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    d = MHD_start_daemon(flags, 0, NULL, NULL, shop_routes_access_cb, &app,
                         MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb, NULL, MHD_OPTION_SOCK_ADDR,
                         addr->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, shop_routes_completed_cb, &app,
                         MHD_OPTION_CONNECTION_LIMIT, MAX_CONNECTIONS,
                         MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S,
                         MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "shop: cannot listen on %s:%ld: %s\n", o.host, o.port, strerror(errno));
        goto out;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf(addr->ai_family == AF_INET6 ? "shop listening on [%s]:%u\n"
                                       : "shop listening on %s:%u\n",
           o.host, info ? (unsigned int)info->port : 0u);
    fflush(stdout);

    while (sigwait(&sigs, &sig) != 0) {
    }

    /* Stop accepting first, so "shop stopping" means new connections are refused. */
    atomic_store(&app.stopping, true);
    lfd = MHD_quiesce_daemon(d);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    (void)sig;
    printf("shop stopping\n");
    fflush(stdout);
    for (waited = 0; atomic_load(&app.in_flight) > 0 && waited < STOP_WAIT_MS; waited += 10)
        sleep_ms(10);
    if (atomic_load(&app.in_flight) > 0) {
        printf("shop stopping: %d requests still in flight after %d ms, closing them\n",
               atomic_load(&app.in_flight), STOP_WAIT_MS);
        fflush(stdout);
    }
    MHD_stop_daemon(d);
    printf("shop stopped\n");
    fflush(stdout);
    ret = 0;
out:
    freeaddrinfo(addr);
    return ret;
}
