/*
 * unit_tests.c - the shop's parsers and formatters, tested without a server.
 *
 * Covers the upstream URL parser and response parser (both read outside
 * input), JSON escaping, the fault line format and the database seeding.
 * The planted faults themselves are exercised end to end by run.sh, which
 * accepts each fault either present or fixed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "faultlog.h"
#include "fetch.h"
#include "routes.h"

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void test_url_parse(void)
{
    static const struct {
        const char *url;
        int ok;
        const char *host, *port, *path;
    } cases[] = {
        {"http://127.0.0.1:8081/slow", 1, "127.0.0.1", "8081", "/slow"},
        {"http://localhost/", 1, "localhost", "80", "/"},
        {"HTTP://example.com", 1, "example.com", "80", "/"},
        {"http://h:1/a?b=c#frag", 1, "h", "1", "/a?b=c"},
        {"http://h?x=1", 1, "h", "80", "/?x=1"},
        {"http://[::1]:9000/x", 1, "::1", "9000", "/x"},
        {"http://[::1]/x", 1, "::1", "80", "/x"},
        {"https://h/", 0, NULL, NULL, NULL},
        {"http://", 0, NULL, NULL, NULL},
        {"http://:80/", 0, NULL, NULL, NULL},
        {"http://h:/", 0, NULL, NULL, NULL},
        {"http://h:0/", 0, NULL, NULL, NULL},
        {"http://h:65536/", 0, NULL, NULL, NULL},
        {"http://h:12x/", 0, NULL, NULL, NULL},
        {"http://[::1/", 0, NULL, NULL, NULL},
        {"http://[::1]x/", 0, NULL, NULL, NULL},
        {"http://h/a b", 0, NULL, NULL, NULL},
        {"ftp://h/", 0, NULL, NULL, NULL},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct shop_url u;
        int rc = shop_url_parse(cases[i].url, &u);

        if ((rc == 0) != cases[i].ok) {
            fprintf(stderr, "url %s: parse returned %d\n", cases[i].url, rc);
            failures++;
            continue;
        }
        if (!cases[i].ok)
            continue;
        CHECK(strcmp(u.host, cases[i].host) == 0);
        CHECK(strcmp(u.port, cases[i].port) == 0);
        CHECK(strcmp(u.path, cases[i].path) == 0);
    }
}

static int parse(const char *raw, int eof, int *status, size_t *off, size_t *len)
{
    return shop_http_parse_response(raw, strlen(raw), eof, status, off, len);
}

static void test_response_parse(void)
{
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-type: x\r\n\r\nhello";
    int status = 0;
    size_t off = 0, len = 0;

    CHECK(parse(ok, 0, &status, &off, &len) == 1);
    CHECK(status == 200 && len == 5 && memcmp(ok + off, "hello", 5) == 0);
    /* Incomplete: headers, then a short body. */
    CHECK(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", 0, &status, &off, &len) == 0);
    CHECK(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 0, &status, &off, &len) == 0);
    CHECK(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 1, &status, &off, &len) == -1);
    /* No Content-Length: the body ends at EOF. */
    CHECK(parse("HTTP/1.0 503 Busy\r\n\r\nbusy", 0, &status, &off, &len) == 0);
    CHECK(parse("HTTP/1.0 503 Busy\r\n\r\nbusy", 1, &status, &off, &len) == 1);
    CHECK(status == 503 && len == 4);
    CHECK(parse("HTTP/1.1 204 No Content\r\n\r\n", 0, &status, &off, &len) == 1);
    CHECK(len == 0);
    /* Refused shapes. */
    CHECK(parse("SSH-2.0-OpenSSH\r\n\r\n", 0, &status, &off, &len) == -1);
    CHECK(parse("HTTP/1.1 2x0 OK\r\n\r\n", 0, &status, &off, &len) == -1);
    CHECK(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello", 0, &status, &off,
                &len) == -1);
    CHECK(parse("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, &status, &off, &len) == -1);
    CHECK(parse("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", 0, &status, &off,
                &len) == -1);
    CHECK(parse("", 1, &status, &off, &len) == -1);
}

static void test_json_escape(void)
{
    char out[16];

    CHECK(shop_json_escape(out, sizeof(out), "a\"b\\c") == 7);
    CHECK(strcmp(out, "a\\\"b\\\\c") == 0);
    shop_json_escape(out, sizeof(out), "\n");
    CHECK(strcmp(out, "\\u000a") == 0);
    /* Cut visibly, never inside an escape. */
    shop_json_escape(out, sizeof(out), "0123456789abcdefghij");
    CHECK(strcmp(out, "0123456789ab...") == 0);
    shop_json_escape(out, sizeof(out), "012345678\n");
    CHECK(strcmp(out, "012345678...") == 0);
}

static void test_faultlog_format(void)
{
    char line[SHOP_FAULTLOG_MAX], tiny[24];
    int n;

    n = shop_faultlog_format(line, (int)sizeof(line), "FAULT_DB_TIMEOUT", "/test-fault/db-timeout",
                             "statement_timeout", NULL, false);
    CHECK(strcmp(line, "FAULT_DB_TIMEOUT route=/test-fault/db-timeout "
                       "reason=statement_timeout\n") == 0);
    CHECK(n == (int)strlen(line));
    shop_faultlog_format(line, (int)sizeof(line), "FAULT_EXTERNAL_API_LATENCY",
                         "/test-fault/external-api", "external_timeout", "latency=0.501", true);
    CHECK(strcmp(line, "FAULT_EXTERNAL_API_LATENCY route=/test-fault/external-api "
                       "reason=external_timeout latency=0.501 verification=1\n") == 0);
    n = shop_faultlog_format(tiny, (int)sizeof(tiny), "FAULT_CRASH", "/test-fault/crash", "abort",
                             NULL, false);
    CHECK(n == (int)sizeof(tiny) - 1 && strcmp(tiny + n - 4, "...\n") == 0);
}

static void test_db(void)
{
    char path[] = "/tmp/shop-unit-XXXXXX";
    char err[256];
    long long count = -1;
    int fd = mkstemp(path);

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    CHECK(shop_db_init(path, err, sizeof(err)) == 0);
    CHECK(shop_db_init(path, err, sizeof(err)) == 0); /* seeding is idempotent */
    CHECK(shop_db_count_orders(path, &count, err, sizeof(err)) == 0);
    CHECK(count == 5);
    CHECK(shop_db_count_orders("/nonexistent-dir/x.db", &count, err, sizeof(err)) == SHOP_DB_EOPEN);
    CHECK(strstr(err, "/nonexistent-dir/x.db") != NULL);
    unlink(path);
}

int main(void)
{
    test_url_parse();
    test_response_parse();
    test_json_escape();
    test_faultlog_format();
    test_db();
    if (failures) {
        fprintf(stderr, "unit tests: %d failures\n", failures);
        return 1;
    }
    printf("unit tests: ok\n");
    return 0;
}
