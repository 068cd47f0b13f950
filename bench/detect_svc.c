/*
 * detect_svc.c - the service, the pipe reader and the log writer of the detection benchmarks
 * (bench/detect_latency.sh, bench/detect_flood.sh). Built by those scripts with `cc -O2` into
 * their temp dir; it needs only libc.
 *
 *   detect_svc serve PORT
 *       A tiny HTTP/1.0 server on 127.0.0.1:PORT (one thread, poll). GET /health -> 200 "ok".
 *       GET /fire?n=N&gap_us=G&key0=K -> 200, then writes N marker lines to stderr, one every G
 *       microseconds (while still answering requests), each
 *           BENCH_FAULT key=<K+i> t_ns=<CLOCK_REALTIME ns just before the write>
 *       with one write(2) per line. GET /status -> "sent S of N". Any other path -> 404.
 *   detect_svc read
 *       Reads lines from stdin and prints, for each line that holds "key=" and "t_ns=",
 *       "KEY LATENCY_NS": CLOCK_REALTIME when read(2) returned the bytes holding the line's end,
 *       minus t_ns. The floor of the pipe, as the same kernel path delivers it to asr.
 *   detect_svc flood FILE SECS RATE NOISE KEYS ROTATE_AT
 *       Appends to FILE (O_APPEND, one write(2) per line) for SECS seconds: RATE marker lines a
 *       second, "... WARN FLOOD key=k<j> ...", j from a fixed xorshift sequence over KEYS keys,
 *       each followed at once by NOISE INFO lines with varying numbers (so at 1,000 markers
 *       a second, a burst of 1 + NOISE lines every millisecond, on an absolute schedule). ROTATE_AT > 0: at that second FILE is renamed to FILE.1 and a new FILE is
 *       created (a rename rotation). At the end it prints "k<j> COUNT" per key, "markers N",
 *       "noise N" and "late_ms M" (how far the writer ever fell behind its schedule).
 *
 * Every loop is bounded by its count or by the clock; all traffic stays on 127.0.0.1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 32
#define REQ_CAP 2048
#define MAX_KEYS 64

static int64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* strtoll with the whole string required; -1 on anything else (the arguments are ours). */
static long long num(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return (errno != 0 || end == s || (*end != '\0' && *end != '&' && *end != ' ')) ? -1 : v;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- serve -------------------------------------------------------------------------------- */

struct client {
    int fd;
    size_t len;
    char buf[REQ_CAP];
};

static struct {
    long long n, sent, key0, gap_ns;
    int64_t next_ns; /* CLOCK_MONOTONIC of the next line while firing */
} fire;

static const char *query(const char *path, const char *name)
{
    size_t k = strlen(name);
    for (const char *p = strchr(path, '?'); p != NULL; p = strchr(p + 1, '&'))
        if (strncmp(p + 1, name, k) == 0 && p[1 + k] == '=')
            return p + 2 + k;
    return NULL;
}

static void respond(int fd, int code, const char *body)
{
    char out[512];
    int k = snprintf(out, sizeof(out),
                     "HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     code, code == 200 ? "OK" : code == 404 ? "Not Found" : "Bad Request",
                     strlen(body), body);
    if (k > 0 && (size_t)k < sizeof(out))
        (void)write_all(fd, out, (size_t)k);
}

/* One complete request head in c->buf: answer it. The connection is closed after. */
static void handle(struct client *c)
{
    char path[256];
    if (sscanf(c->buf, "GET %255s ", path) != 1) {
        respond(c->fd, 400, "bad request\n");
        return;
    }
    if (strcmp(path, "/health") == 0) {
        respond(c->fd, 200, "ok\n");
    } else if (strncmp(path, "/fire", 5) == 0) {
        const char *n = query(path, "n"), *g = query(path, "gap_us"), *k = query(path, "key0");
        long long nv = n ? num(n) : -1, gv = g ? num(g) : 5000, kv = k ? num(k) : 0;
        if (nv <= 0 || nv > 10000000 || gv < 0 || kv < 0) {
            respond(c->fd, 400, "need n=1..10000000, gap_us>=0, key0>=0\n");
            return;
        }
        fire.n = nv;
        fire.sent = 0;
        fire.key0 = kv;
        fire.gap_ns = gv * 1000;
        fire.next_ns = now_ns(CLOCK_MONOTONIC);
        respond(c->fd, 200, "firing\n");
    } else if (strcmp(path, "/status") == 0) {
        char body[64];
        snprintf(body, sizeof(body), "sent %lld of %lld\n", fire.sent, fire.n);
        respond(c->fd, 200, body);
    } else {
        respond(c->fd, 404, "not found\n");
    }
}

/* Writes the marker lines that are due; the time in the line is taken just before write(2). */
static void fire_due(void)
{
    while (fire.sent < fire.n && now_ns(CLOCK_MONOTONIC) >= fire.next_ns) {
        char line[128];
        int k = snprintf(line, sizeof(line), "BENCH_FAULT key=%lld t_ns=%lld\n",
                         fire.key0 + fire.sent, (long long)now_ns(CLOCK_REALTIME));
        if (write_all(2, line, (size_t)k) != 0)
            exit(1);
        fire.sent++;
        fire.next_ns += fire.gap_ns;
    }
}

static int serve(int port)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 64) != 0) {
        fprintf(stderr, "detect_svc: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    printf("detect_svc listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    static struct client cl[MAX_CLIENTS];
    int ncl = 0;
    for (;;) {
        struct pollfd p[MAX_CLIENTS + 1];
        p[0] = (struct pollfd){.fd = ls, .events = POLLIN};
        for (int i = 0; i < ncl; i++)
            p[i + 1] = (struct pollfd){.fd = cl[i].fd, .events = POLLIN};
        int timeout = -1;
        if (fire.sent < fire.n) {
            int64_t wait = fire.next_ns - now_ns(CLOCK_MONOTONIC);
            timeout = wait <= 0 ? 0 : (int)(wait / 1000000);
        }
        /* poll's millisecond timeout is too coarse for the gap: sleep the rest precisely. */
        if (timeout == 0 && fire.sent < fire.n) {
            int64_t wait = fire.next_ns - now_ns(CLOCK_MONOTONIC);
            if (wait > 0) {
                struct timespec ts = {0, (long)wait};
                nanosleep(&ts, NULL);
            }
        }
        if (poll(p, (nfds_t)ncl + 1, timeout) < 0 && errno != EINTR)
            return 1;
        fire_due();
        if ((p[0].revents & POLLIN) && ncl < MAX_CLIENTS) {
            int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                cl[ncl++] = (struct client){.fd = fd, .len = 0};
        }
        for (int i = ncl - 1; i >= 0; i--) {
            if (!(p[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            struct client *c = &cl[i];
            ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
            int done = r <= 0;
            if (r > 0) {
                c->len += (size_t)r;
                c->buf[c->len] = '\0';
                if (strstr(c->buf, "\r\n\r\n") != NULL || strstr(c->buf, "\n\n") != NULL) {
                    handle(c);
                    done = 1;
                } else if (c->len == sizeof(c->buf) - 1) {
                    respond(c->fd, 400, "request head too long\n");
                    done = 1;
                }
            }
            if (done) {
                close(c->fd);
                cl[i] = cl[--ncl];
            }
        }
    }
}

/* ---- read --------------------------------------------------------------------------------- */

static int reader(void)
{
    static char buf[1 << 16];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(0, buf + len, sizeof(buf) - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        int64_t at = now_ns(CLOCK_REALTIME);
        len += (size_t)r;
        char *start = buf, *nl;
        while ((nl = memchr(start, '\n', len - (size_t)(start - buf))) != NULL) {
            *nl = '\0';
            const char *k = strstr(start, "key="), *t = strstr(start, "t_ns=");
            if (k != NULL && t != NULL) {
                long long kv = strtoll(k + 4, NULL, 10), tv = strtoll(t + 5, NULL, 10);
                printf("%lld %lld\n", kv, (long long)(at - tv));
            }
            start = nl + 1;
        }
        len -= (size_t)(start - buf);
        memmove(buf, start, len);
        if (len == sizeof(buf))
            len = 0; /* a line longer than the buffer is not ours: drop it */
    }
}

/* ---- flood -------------------------------------------------------------------------------- */

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int flood(const char *path, long long secs, long long rate, long long noise, long long keys,
                 long long rotate_at)
{
    static const char *routes[] = {"/api/items", "/api/cart", "/api/orders", "/api/users",
                                   "/health", "/api/search"};
    static const char *methods[] = {"GET", "POST", "PUT"};
    long long counts[MAX_KEYS] = {0}, markers = 0, nnoise = 0;
    rng ^= (uint64_t)(rotate_at + 1) * 0x9e3779b97f4a7c15ull; /* another key order per phase */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "detect_svc: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    long long total = secs * rate; /* marker lines; each carries `noise` noise lines after it */
    int64_t t0 = now_ns(CLOCK_MONOTONIC), late = 0;
    int rotated = 0;
    for (long long i = 0; i < total; i++) {
        /* marker i is due at t0 + i/rate seconds */
        int64_t due = t0 + (int64_t)(i * 1000000000LL / rate);
        int64_t now = now_ns(CLOCK_MONOTONIC);
        if (now < due) {
            struct timespec ts = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        } else if (now - due > late) {
            late = now - due;
        }
        if (rotate_at > 0 && !rotated && i >= rotate_at * rate) {
            char old[4096];
            snprintf(old, sizeof(old), "%s.1", path);
            if (rename(path, old) != 0)
                return 1;
            close(fd);
            if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0)
                return 1;
            rotated = 1;
        }
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        struct tm tm;
        gmtime_r(&wall.tv_sec, &tm);
        char ts[32], line[512];
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        int j = (int)(xorshift() % (uint64_t)keys);
        int k = snprintf(line, sizeof(line),
                         "%s.%03ldZ WARN pool FLOOD key=k%d seq=%lld waited_ms=%u pool=db-main\n",
                         ts, wall.tv_nsec / 1000000, j, i, (unsigned)(xorshift() % 900 + 100));
        if (write_all(fd, line, (size_t)k) != 0)
            return 1;
        counts[j]++;
        markers++;
        for (long long m = 0; m < noise; m++) {
            uint64_t x = xorshift();
            k = snprintf(line, sizeof(line),
                         "%s.%03ldZ INFO http request method=%s path=%s/%u status=200 "
                         "dur_ms=%u bytes=%u req=%08x\n",
                         ts, wall.tv_nsec / 1000000, methods[x % 3], routes[(x >> 8) % 6],
                         (unsigned)((x >> 16) % 10000), (unsigned)((x >> 32) % 250),
                         (unsigned)((x >> 40) % 60000), (unsigned)(x >> 20));
            if (write_all(fd, line, (size_t)k) != 0)
                return 1;
            nnoise++;
        }
    }
    close(fd);
    for (long long j = 0; j < keys; j++)
        printf("k%lld %lld\n", j, counts[j]);
    printf("markers %lld\nnoise %lld\nlate_ms %.1f\n", markers, nnoise, (double)late / 1e6);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "serve") == 0 && num(argv[2]) > 0)
        return serve((int)num(argv[2]));
    if (argc == 2 && strcmp(argv[1], "read") == 0)
        return reader();
    if (argc == 8 && strcmp(argv[1], "flood") == 0) {
        long long secs = num(argv[3]), rate = num(argv[4]), noise = num(argv[5]),
                  keys = num(argv[6]), rot = num(argv[7]);
        if (secs > 0 && rate > 0 && noise >= 0 && keys > 0 && keys <= MAX_KEYS && rot >= 0)
            return flood(argv[2], secs, rate, noise, keys, rot);
    }
    fprintf(stderr, "usage: detect_svc serve PORT | read | flood FILE SECS RATE NOISE KEYS "
                    "ROTATE_AT\n");
    return 2;
}
