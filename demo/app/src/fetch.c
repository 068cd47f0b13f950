/*
 * fetch.c - HTTP/1.1 GET over a non-blocking socket with one deadline.
 *
 * The exchange is: resolve, non-blocking connect, send the request, read
 * until the response is complete or the peer closes. Every wait is a poll(2)
 * bounded by the time left before the deadline. The request says
 * "Connection: close", so each call uses and closes one connection.
 */
#include "fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copies [s, s+n) into dst (size cap) as a string; -1 if it does not fit. */
static int copy_part(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int shop_url_parse(const char *url, struct shop_url *out)
{
    static const char scheme[] = "http://";
    const char *host, *host_end, *p, *path;
    char *end;
    long port = 80;

    memset(out, 0, sizeof(*out));
    if (strncasecmp(url, scheme, sizeof(scheme) - 1) != 0)
        return -1;
    host = url + sizeof(scheme) - 1;
    path = host + strcspn(host, "/?#");
    if (*host == '[') {
        /* An IPv6 literal: [addr] optionally followed by :port. */
        host++;
        host_end = memchr(host, ']', (size_t)(path - host));
        if (!host_end)
            return -1;
        p = host_end + 1;
    } else {
        host_end = memchr(host, ':', (size_t)(path - host));
        if (!host_end)
            host_end = path;
        p = host_end;
    }
    if (host_end == host ||
        copy_part(out->host, sizeof(out->host), host, (size_t)(host_end - host)) < 0)
        return -1;
    if (p < path) {
        if (*p != ':' || p + 1 == path)
            return -1;
        errno = 0;
        port = strtol(p + 1, &end, 10);
        if (errno != 0 || end != path || port < 1 || port > 65535)
            return -1;
    } else if (p != path) {
        return -1;
    }
    snprintf(out->port, sizeof(out->port), "%ld", port);
    if (*path == '#')
        path = "";
    if (*path == '\0' || *path == '?') {
        /* No path: request "/" (keeping any query). */
        if (strlen(path) + 2 > sizeof(out->path))
            return -1;
        out->path[0] = '/';
        memcpy(out->path + 1, path, strlen(path) + 1);
    } else if (copy_part(out->path, sizeof(out->path), path, strcspn(path, "#")) < 0) {
        return -1;
    }
    /* Spaces or control characters would break the request line. */
    for (p = out->path; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return -1;
    return 0;
}

/* Finds the header `name` in the header block [h, end); its value in *val. */
static int find_header(const char *h, const char *end, const char *name, const char **val,
                       size_t *val_len)
{
    size_t name_len = strlen(name);

    while (h < end) {
        const char *eol = memchr(h, '\n', (size_t)(end - h));
        const char *line_end = eol ? eol : end;

        if ((size_t)(line_end - h) > name_len && strncasecmp(h, name, name_len) == 0 &&
            h[name_len] == ':') {
            const char *v = h + name_len + 1;

            while (v < line_end && (*v == ' ' || *v == '\t'))
                v++;
            while (line_end > v && (line_end[-1] == '\r' || line_end[-1] == ' '))
                line_end--;
            *val = v;
            *val_len = (size_t)(line_end - v);
            return 1;
        }
        h = eol ? eol + 1 : end;
    }
    return 0;
}

int shop_http_parse_response(const char *buf, size_t len, int eof, int *status, size_t *body_off,
                             size_t *body_len)
{
    const char *head_end = NULL;
    const char *val;
    size_t val_len, i;
    long code = 0;

    if (len >= 4)
        for (i = 0; i + 4 <= len; i++)
            if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
                head_end = buf + i + 4;
                break;
            }
    if (!head_end)
        return eof ? -1 : 0;
    /* Status line: "HTTP/1.x NNN reason". */
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return -1;
    for (i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
        code = code * 10 + (buf[i] - '0');
    }
    if (code < 100 || (buf[12] != ' ' && buf[12] != '\r'))
        return -1;
    *status = (int)code;
    *body_off = (size_t)(head_end - buf);
    if (find_header(buf, head_end, "Transfer-Encoding", &val, &val_len))
        return -1;
    if (find_header(buf, head_end, "Content-Length", &val, &val_len)) {
        unsigned long long want = 0;

        if (val_len == 0 || val_len > 18)
            return -1;
        for (i = 0; i < val_len; i++) {
            if (val[i] < '0' || val[i] > '9')
                return -1;
            want = want * 10 + (unsigned long long)(val[i] - '0');
        }
        if (len - *body_off < want)
            return eof ? -1 : 0;
        *body_len = (size_t)want;
        return 1;
    }
    if (code == 204 || code == 304 || code < 200) {
        *body_len = 0;
        return 1;
    }
    if (!eof)
        return 0;
    *body_len = len - *body_off;
    return 1;
}

/* Waits for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        long long left = deadline - now_ms();
        int rc;

        if (left <= 0)
            return 0;
        rc = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

/* Connects a non-blocking socket to one resolved address. */
static int connect_one(const struct addrinfo *ai, long long deadline, int *fd_out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    int soerr = 0, rc;
    socklen_t slen = sizeof(soerr);

    if (fd < 0)
        return SHOP_FETCH_CONNECT_FAILED;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        goto ok;
    if (errno != EINPROGRESS) {
        close(fd);
        return SHOP_FETCH_CONNECT_FAILED;
    }
    rc = wait_fd(fd, POLLOUT, deadline);
    if (rc == 0) {
        close(fd);
        return SHOP_FETCH_TIMEOUT;
    }
    if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0 || soerr != 0) {
        close(fd);
        return SHOP_FETCH_CONNECT_FAILED;
    }
ok:
    *fd_out = fd;
    return 0;
}

/* Sends all of buf before the deadline. */
static int send_all(int fd, const char *buf, size_t len, long long deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return SHOP_FETCH_IO;
        n = wait_fd(fd, POLLOUT, deadline);
        if (n == 0)
            return SHOP_FETCH_TIMEOUT;
        if (n < 0)
            return SHOP_FETCH_IO;
    }
    return 0;
}

/* Reads until the response is complete, the peer closes, or the deadline. */
static int read_response(int fd, long long deadline, struct shop_fetch_result *res)
{
    size_t len = 0, off = 0, blen = 0;
    int eof = 0;

    for (;;) {
        int rc = shop_http_parse_response(res->buf, len, eof, &res->status, &off, &blen);
        ssize_t n;

        if (rc == 1) {
            res->body = res->buf + off;
            res->body_len = blen;
            return SHOP_FETCH_OK;
        }
        if (rc < 0)
            return SHOP_FETCH_BAD_RESPONSE;
        if (len == sizeof(res->buf))
            return SHOP_FETCH_TOO_LARGE;
        n = recv(fd, res->buf + len, sizeof(res->buf) - len, 0);
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n == 0) {
            eof = 1;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return SHOP_FETCH_IO;
        rc = wait_fd(fd, POLLIN, deadline);
        if (rc == 0)
            return SHOP_FETCH_TIMEOUT;
        if (rc < 0)
            return SHOP_FETCH_IO;
    }
}

int shop_fetch_get(const struct shop_url *url, int timeout_ms, struct shop_fetch_result *res)
{
    long long start = now_ms(), deadline = start + timeout_ms;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL, *ai;
    char req[SHOP_URL_PATH_MAX + SHOP_URL_HOST_MAX + 128];
    int fd = -1, ret = SHOP_FETCH_CONNECT_FAILED, n;
    int v6 = strchr(url->host, ':') != NULL;

    res->status = 0;
    res->body = NULL;
    res->body_len = 0;
    if (getaddrinfo(url->host, url->port, &hints, &list) != 0)
        goto out;
    for (ai = list; ai; ai = ai->ai_next) {
        ret = connect_one(ai, deadline, &fd);
        if (ret != SHOP_FETCH_CONNECT_FAILED)
            break;
    }
    if (ret < 0)
        goto out;
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: shop\r\n"
                 "Accept: */*\r\nConnection: close\r\n\r\n",
                 url->path, v6 ? "[" : "", url->host, v6 ? "]" : "", url->port);
    if (n < 0 || (size_t)n >= sizeof(req)) {
        ret = SHOP_FETCH_IO;
        goto out;
    }
    ret = send_all(fd, req, (size_t)n, deadline);
    if (ret == 0)
        ret = read_response(fd, deadline, res);
out:
    if (fd >= 0)
        close(fd);
    if (list)
        freeaddrinfo(list);
    res->elapsed_ms = now_ms() - start;
    return ret;
}
