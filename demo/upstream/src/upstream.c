/*
 * upstream.c - a tiny, deliberately slow and optionally flaky HTTP service.
 *
 * It plays the third-party API that the shop's /test-fault/external-api
 * route calls: GET /slow answers only after --delay-ms (2000 ms by default,
 * longer than the shop's faulty 500 ms timeout), and a --fail-rate fraction
 * of those answers are 503.
 *
 * Failures are spread evenly rather than drawn at random: request n fails
 * when floor((n+1)*P) > floor(n*P), so exactly a fraction P of any run of
 * requests fails and every run of the demo behaves the same.
 *
 * Threads: libmicrohttpd runs one thread per connection, because /slow
 * sleeps in its handler and must not hold up /health. The main thread
 * only waits for SIGTERM/SIGINT (blocked everywhere, taken with sigwait)
 * and then stops gracefully: no new connections, requests in flight finish
 * (bounded by STOP_WAIT_MS), the rest are closed, exit 0.
 */
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The longest a graceful stop waits for requests in flight, in ms. */
static const int STOP_WAIT_MS = 10000;

/* The largest --delay-ms accepted: ten minutes. */
static const long MAX_DELAY_MS = 600000;

/* Idle keep-alive connections are closed after this many seconds. */
static const unsigned int IDLE_TIMEOUT_S = 30;

/* At most this many connections (and so connection threads) at once. */
static const unsigned int MAX_CONNECTIONS = 1000;

struct upstream {
    long delay_ms;
    double fail_rate;
    atomic_ullong slow_count; /* /slow requests answered so far */
    atomic_int in_flight;     /* requests received and not yet completed */
    atomic_bool stopping;
};

struct options {
    const char *host;
    long port;
    long delay_ms;
    double fail_rate;
};

/* Marks a request that access_cb has counted as in flight. */
static char REQUEST_MARK;

static void usage(FILE *to)
{
    fprintf(to, "usage: upstream [--port N] [--host ADDR] [--delay-ms N] [--fail-rate P]\n"
                "  --port N       TCP port, 0 picks a free one (default 8081)\n"
                "  --host ADDR    numeric address to listen on (default 127.0.0.1)\n"
                "  --delay-ms N   delay before answering GET /slow (default 2000)\n"
                "  --fail-rate P  fraction 0..1 of /slow answers that are 503 (default 0)\n");
}

/* Parses a whole decimal in [lo, hi]; -1 if `s` is anything else. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;

    errno = 0;
    *out = strtol(s, &end, 10);
    return errno != 0 || end == s || *end != '\0' || *out < lo || *out > hi ? -1 : 0;
}

/* Parses argv into `o`. Returns 0, 1 for --help, or -1 after saying what is wrong. */
static int parse_args(int argc, char **argv, struct options *o)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *flag = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;

        if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0)
            return 1;
        if (strcmp(flag, "--port") != 0 && strcmp(flag, "--host") != 0 &&
            strcmp(flag, "--delay-ms") != 0 && strcmp(flag, "--fail-rate") != 0) {
            fprintf(stderr, "upstream: unknown flag %s\n", flag);
            return -1;
        }
        if (!val) {
            fprintf(stderr, "upstream: %s needs a value\n", flag);
            return -1;
        }
        i++;
        if (strcmp(flag, "--port") == 0) {
            if (parse_long(val, 0, 65535, &o->port) < 0) {
                fprintf(stderr, "upstream: --port %s: not a port number (0-65535)\n", val);
                return -1;
            }
        } else if (strcmp(flag, "--host") == 0) {
            o->host = val;
        } else if (strcmp(flag, "--delay-ms") == 0) {
            if (parse_long(val, 0, MAX_DELAY_MS, &o->delay_ms) < 0) {
                fprintf(stderr, "upstream: --delay-ms %s: not a whole number 0-%ld\n", val,
                        MAX_DELAY_MS);
                return -1;
            }
        } else {
            errno = 0;
            o->fail_rate = strtod(val, &end);
            if (errno != 0 || end == val || *end != '\0' || !(o->fail_rate >= 0.0) ||
                o->fail_rate > 1.0) {
                fprintf(stderr, "upstream: --fail-rate %s: not a number 0..1\n", val);
                return -1;
            }
        }
    }
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Queues a JSON answer; while stopping it also says "Connection: close". */
static enum MHD_Result reply(struct upstream *up, struct MHD_Connection *conn, int status,
                             const char *body, const char *allow)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (atomic_load(&up->stopping))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(conn, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* GET /slow: wait, then answer 200, or 503 for the --fail-rate share. */
static enum MHD_Result slow(struct upstream *up, struct MHD_Connection *conn)
{
    unsigned long long n = atomic_fetch_add(&up->slow_count, 1);
    bool fail = floor((double)(n + 1) * up->fail_rate) > floor((double)n * up->fail_rate);
    char body[96];

    sleep_ms(up->delay_ms);
    if (fail)
        return reply(up, conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                     "{\"error\":\"unavailable\",\"service\":\"upstream\"}", NULL);
    snprintf(body, sizeof(body), "{\"upstream\":\"ok\",\"delay_ms\":%ld}", up->delay_ms);
    return reply(up, conn, MHD_HTTP_OK, body, NULL);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    struct upstream *up = cls;
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    (void)version;
    (void)upload_data;
    if (*req_cls == NULL) {
        *req_cls = &REQUEST_MARK;
        atomic_fetch_add(&up->in_flight, 1);
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* no route reads a body */
        return MHD_YES;
    }
    if (strcmp(url, "/slow") != 0 && strcmp(url, "/health") != 0)
        return reply(up, conn, MHD_HTTP_NOT_FOUND, "{\"error\":\"not_found\"}", NULL);
    if (!get)
        return reply(up, conn, MHD_HTTP_METHOD_NOT_ALLOWED, "{\"error\":\"method_not_allowed\"}",
                     "GET, HEAD");
    if (strcmp(url, "/slow") == 0)
        return slow(up, conn);
    return reply(up, conn, MHD_HTTP_OK, "{\"status\":\"ok\"}", NULL);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct upstream *up = cls;

    (void)conn;
    (void)toe;
    if (*req_cls == &REQUEST_MARK) {
        atomic_fetch_sub(&up->in_flight, 1);
        *req_cls = NULL;
    }
}

/* libmicrohttpd's error messages, as single lines on stderr. */
__attribute__((format(printf, 2, 0))) static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "upstream: microhttpd: ");
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

int main(int argc, char **argv)
{
    static struct upstream up; /* static: the daemon's threads use it until exit */
    struct options o = {"127.0.0.1", 8081, 2000, 0.0};
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE, .ai_socktype = SOCK_STREAM};
    struct addrinfo *addr = NULL;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    char port[8];
    sigset_t sigs;
    MHD_socket lfd;
    int sig = 0, waited, rc;

    rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    snprintf(port, sizeof(port), "%ld", o.port);
    if (getaddrinfo(o.host, port, &hints, &addr) != 0) {
        fprintf(stderr, "upstream: --host %s: not a numeric IPv4 or IPv6 address\n", o.host);
        return 2;
    }
    if (addr->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    up.delay_ms = o.delay_ms;
    up.fail_rate = o.fail_rate;
    atomic_init(&up.slow_count, 0);
    atomic_init(&up.in_flight, 0);
    atomic_init(&up.stopping, false);

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    d = MHD_start_daemon(
        flags, 0, NULL, NULL, access_cb, &up, MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb, NULL,
        MHD_OPTION_SOCK_ADDR, addr->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, &up,
        MHD_OPTION_CONNECTION_LIMIT, MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "upstream: cannot listen on %s:%ld: %s\n", o.host, o.port, strerror(errno));
        freeaddrinfo(addr);
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf(addr->ai_family == AF_INET6 ? "upstream listening on [%s]:%u\n"
                                       : "upstream listening on %s:%u\n",
           o.host, info ? (unsigned int)info->port : 0u);
    fflush(stdout);
    freeaddrinfo(addr);

    while (sigwait(&sigs, &sig) != 0) {
    }
    atomic_store(&up.stopping, true);
    lfd = MHD_quiesce_daemon(d);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    printf("upstream stopping\n");
    fflush(stdout);
    for (waited = 0; atomic_load(&up.in_flight) > 0 && waited < STOP_WAIT_MS; waited += 10)
        sleep_ms(10);
    if (atomic_load(&up.in_flight) > 0) {
        printf("upstream stopping: %d requests still in flight after %d ms, closing them\n",
               atomic_load(&up.in_flight), STOP_WAIT_MS);
        fflush(stdout);
    }
    MHD_stop_daemon(d);
    printf("upstream stopped\n");
    fflush(stdout);
    return 0;
}
