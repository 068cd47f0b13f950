/*
 * test_cloudwatch.c - CloudWatch Logs subscription decoder (src/detect/cloudwatch.c).
 *
 * Payloads are built here exactly as AWS builds them: the inner JSON, gzip (zlib's deflate in
 * gzip mode), then standard base64 from the encoder below, wrapped in {"awslogs":{"data":...}}.
 * Covers a round trip, control messages, the three accepted input forms, every failure the issue
 * lists (truncated and non-gzip data, bad base64, bad padding, not JSON, missing data, wrong
 * types, a decompression bomb, too many events) and the content rules (cut marker, NUL bytes,
 * invalid UTF-8).
 */
#include "detect/cloudwatch.h"
#include "asr/error.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* gzip of n bytes of src (or of n zero bytes when src is NULL), as AWS writes it. */
static unsigned char *gzip_bytes(const void *src, size_t n, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)(n < (1u << 20) ? n : (1u << 20))) + n / 500 + 4096;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    static unsigned char zeros[1 << 16];
    size_t done = 0;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    for (;;) {
        size_t chunk = n - done > sizeof(zeros) ? sizeof(zeros) : n - done;
        zs.next_in = src != NULL ? (Bytef *)src + done : zeros;
        zs.avail_in = (uInt)chunk;
        done += chunk;
        int flush = done == n ? Z_FINISH : Z_NO_FLUSH;
        int rc = deflate(&zs, flush);
        assert_true(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR);
        assert_int_not_equal(zs.avail_out, 0);
        assert_int_equal(zs.avail_in, 0);
        if (rc == Z_STREAM_END)
            break;
    }
    *outlen = zs.total_out;
    deflateEnd(&zs);
    return out;
}

static char *b64(const unsigned char *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc((n + 2) / 3 * 4 + 1);
    assert_non_null(o);
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned w = (unsigned)p[i] << 16;
        if (i + 1 < n)
            w |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n)
            w |= p[i + 2];
        o[j++] = t[(w >> 18) & 63];
        o[j++] = t[(w >> 12) & 63];
        o[j++] = i + 1 < n ? t[(w >> 6) & 63] : '=';
        o[j++] = i + 2 < n ? t[w & 63] : '=';
    }
    o[j] = '\0';
    return o;
}

/* {"awslogs":{"data":"<base64 of raw bytes>"}} */
static char *envelope_raw(const unsigned char *raw, size_t n)
{
    char *d = b64(raw, n);
    size_t len = strlen(d) + 64;
    char *e = malloc(len);
    assert_non_null(e);
    snprintf(e, len, "{\"awslogs\":{\"data\":\"%s\"}}", d);
    free(d);
    return e;
}

/* The full AWS encoding of an inner JSON text of n bytes. */
static char *envelope(const char *inner, size_t n)
{
    size_t gzlen;
    unsigned char *gz = gzip_bytes(inner, n, &gzlen);
    char *e = envelope_raw(gz, gzlen);
    free(gz);
    return e;
}

static int decode(const char *env, const struct asr_cw_limits *lim, struct asr_cw_batch *b,
                  struct asr_err *err)
{
    return asr_cw_decode_envelope(env, strlen(env), lim, b, err);
}

static void assert_zeroed(const struct asr_cw_batch *b)
{
    assert_null(b->message_type);
    assert_null(b->events);
    assert_int_equal(b->nevents, 0);
    assert_false(b->control);
}

static const char DATA3[] =
    "{\"messageType\":\"DATA_MESSAGE\",\"owner\":\"123456789012\",\"logGroup\":\"/aws/ecs/api\","
    "\"logStream\":\"api/web/abc\",\"subscriptionFilters\":[\"faults\"],\"logEvents\":["
    "{\"id\":\"3698\",\"timestamp\":1700000000001,\"message\":\"ERROR E1001 db down\"},"
    "{\"id\":\"3699\",\"timestamp\":1700000000002,\"message\":\"ok \\\"quoted\\\"\"},"
    "{\"id\":\"3700\",\"timestamp\":1700000000003,\"message\":\"\\u00e9t\\u00e9\"}]}";

static void test_data_round_trip(void **state)
{
    (void)state;
    char *env = envelope(DATA3, strlen(DATA3));
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode(env, NULL, &b, &err), 0);
    assert_string_equal(b.message_type, "DATA_MESSAGE");
    assert_false(b.control);
    assert_string_equal(b.owner, "123456789012");
    assert_string_equal(b.log_group, "/aws/ecs/api");
    assert_string_equal(b.log_stream, "api/web/abc");
    assert_int_equal(b.nevents, 3);
    assert_string_equal(b.events[0].id, "3698");
    assert_true(b.events[0].timestamp_ms == 1700000000001LL);
    assert_string_equal(b.events[0].message, "ERROR E1001 db down");
    assert_int_equal(b.events[0].message_len, strlen("ERROR E1001 db down"));
    assert_string_equal(b.events[1].id, "3699");
    assert_true(b.events[1].timestamp_ms == 1700000000002LL);
    assert_string_equal(b.events[1].message, "ok \"quoted\"");
    assert_true(b.events[2].timestamp_ms == 1700000000003LL);
    assert_string_equal(b.events[2].message, "\xc3\xa9t\xc3\xa9");
    asr_cw_batch_free(&b);
    assert_zeroed(&b);
    asr_cw_batch_free(&b); /* twice is harmless */
    free(env);
}

static void test_gzip_and_inner_forms(void **state)
{
    (void)state;
    struct asr_cw_batch b;
    struct asr_err err = {0};
    size_t gzlen;
    unsigned char *gz = gzip_bytes(DATA3, strlen(DATA3), &gzlen);
    assert_int_equal(asr_cw_decode_envelope((const char *)gz, gzlen, NULL, &b, &err), 0);
    assert_int_equal(b.nevents, 3);
    asr_cw_batch_free(&b);
    free(gz);
    assert_int_equal(decode(DATA3, NULL, &b, &err), 0);
    assert_int_equal(b.nevents, 3);
    assert_string_equal(b.events[2].id, "3700");
    asr_cw_batch_free(&b);
}

static void test_control_message(void **state)
{
    (void)state;
    const char inner[] =
        "{\"messageType\":\"CONTROL_MESSAGE\",\"owner\":\"CloudwatchLogs\",\"logGroup\":\"\","
        "\"logStream\":\"\",\"subscriptionFilters\":[],\"logEvents\":[{\"id\":\"\","
        "\"timestamp\":1432826855000,\"message\":\"CWL CONTROL MESSAGE: Checking health of "
        "destination Kinesis stream.\"}]}";
    char *env = envelope(inner, strlen(inner));
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode(env, NULL, &b, &err), 0);
    assert_true(b.control);
    assert_string_equal(b.message_type, "CONTROL_MESSAGE");
    asr_cw_batch_free(&b);
    free(env);
}

static void test_unknown_message_type(void **state)
{
    (void)state;
    const char inner[] = "{\"messageType\":\"OTHER\",\"logEvents\":[]}";
    char *env = envelope(inner, strlen(inner));
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode(env, NULL, &b, &err), ASR_EPARSE);
    assert_non_null(strstr(err.msg, "messageType"));
    assert_zeroed(&b);
    free(env);
}

static void test_truncated_gzip(void **state)
{
    (void)state;
    size_t gzlen;
    unsigned char *gz = gzip_bytes(DATA3, strlen(DATA3), &gzlen);
    char *env = envelope_raw(gz, gzlen - 12);
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode(env, NULL, &b, &err), ASR_EPARSE);
    assert_string_equal(err.msg, "cloudwatch: gzip stream truncated");
    assert_zeroed(&b);
    free(env);
    free(gz);
}

static void test_not_gzip(void **state)
{
    (void)state;
    char *env = envelope_raw((const unsigned char *)DATA3, strlen(DATA3));
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode(env, NULL, &b, &err), ASR_EPARSE);
    assert_string_equal(err.msg, "cloudwatch: data is not gzip");
    assert_zeroed(&b);
    free(env);
}

static void test_invalid_base64_char(void **state)
{
    (void)state;
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode("{\"awslogs\":{\"data\":\"H4sIAAAAAAAAA*AAAAAA\"}}", NULL, &b, &err),
                     ASR_EPARSE);
    assert_string_equal(err.msg, "cloudwatch: awslogs.data is not valid base64 (offset 13)");
    assert_zeroed(&b);
}

static void test_bad_padding(void **state)
{
    (void)state;
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode("{\"awslogs\":{\"data\":\"H4sI=AAA\"}}", NULL, &b, &err), ASR_EPARSE);
    assert_non_null(strstr(err.msg, "not valid base64 (offset 4)"));
    assert_int_equal(decode("{\"awslogs\":{\"data\":\"H4sIA\"}}", NULL, &b, &err), ASR_EPARSE);
    assert_non_null(strstr(err.msg, "not valid base64"));
    assert_int_equal(decode("{\"awslogs\":{\"data\":\"H4s===\"}}", NULL, &b, &err), ASR_EPARSE);
    assert_non_null(strstr(err.msg, "not valid base64"));
    /* Non-zero bits under the padding are not canonical base64. */
    assert_int_equal(decode("{\"awslogs\":{\"data\":\"H4sIAB==\"}}", NULL, &b, &err), ASR_EPARSE);
    assert_non_null(strstr(err.msg, "bad padding"));
    assert_zeroed(&b);
}

static void test_not_json(void **state)
{
    (void)state;
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode("{\"awslogs\" x", NULL, &b, &err), ASR_EPARSE);
    assert_non_null(strstr(err.msg, "cloudwatch: not JSON at line 1 column"));
    assert_null(strchr(err.msg, '\n'));
    assert_zeroed(&b);
    /* jansson quotes the bad input; a raw newline there must not split the message. */
    assert_int_equal(decode("{\"a\\\n\"}", NULL, &b, &err), ASR_EPARSE);
    assert_null(strchr(err.msg, '\n'));
    /* Inner text that is not JSON. */
    char *env = envelope("not json", 8);
    assert_int_equal(decode(env, NULL, &b, &err), ASR_EPARSE);
    assert_non_null(strstr(err.msg, "decompressed payload is not JSON"));
    free(env);
}

static void test_missing_data(void **state)
{
    (void)state;
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode("{\"awslogs\":{}}", NULL, &b, &err), ASR_EPARSE);
    assert_string_equal(err.msg, "cloudwatch: missing awslogs.data");
    assert_int_equal(decode("[1,2]", NULL, &b, &err), ASR_EPARSE);
    assert_string_equal(err.msg, "cloudwatch: missing awslogs.data");
    assert_int_equal(decode("{\"awslogs\":{\"data\":5}}", NULL, &b, &err), ASR_EPARSE);
    assert_string_equal(err.msg, "cloudwatch: awslogs.data: expected a string");
    assert_zeroed(&b);
}

static void test_wrong_types(void **state)
{
    (void)state;
    const char inner[] =
        "{\"messageType\":\"DATA_MESSAGE\",\"owner\":\"1\",\"logGroup\":\"g\",\"logStream\":\"s\","
        "\"logEvents\":[{\"id\":\"1\",\"timestamp\":1,\"message\":\"a\"},"
        "{\"id\":\"2\",\"timestamp\":\"1700000000000\",\"message\":\"b\"}]}";
    char *env = envelope(inner, strlen(inner));
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode(env, NULL, &b, &err), ASR_EPARSE);
    assert_string_equal(err.msg, "cloudwatch: logEvents[1].timestamp: expected an integer");
    assert_zeroed(&b);
    free(env);
    assert_int_equal(decode("{\"messageType\":\"DATA_MESSAGE\",\"logEvents\":{}}", NULL, &b, &err),
                     ASR_EPARSE);
    assert_string_equal(err.msg, "cloudwatch: logEvents: expected an array");
    assert_int_equal(decode("{\"messageType\":\"DATA_MESSAGE\",\"logGroup\":7,\"logEvents\":[]}",
                            NULL, &b, &err),
                     ASR_EPARSE);
    assert_string_equal(err.msg, "cloudwatch: logGroup: expected a string");
    assert_int_equal(
        decode("{\"messageType\":\"DATA_MESSAGE\",\"logEvents\":[{\"id\":1}]}", NULL, &b, &err),
        ASR_EPARSE);
    assert_string_equal(err.msg, "cloudwatch: logEvents[0].id: expected a string");
    assert_zeroed(&b);
}

static void test_decompression_bomb(void **state)
{
    (void)state;
    size_t gzlen;
    unsigned char *gz = gzip_bytes(NULL, (size_t)64 << 20, &gzlen);
    char *env = envelope_raw(gz, gzlen);
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode(env, NULL, &b, &err), ASR_ETOOBIG);
    assert_string_equal(err.msg, "cloudwatch: decompressed payload exceeds 16777216 bytes");
    assert_zeroed(&b);
    /* A smaller cap from the limits is honoured too. */
    struct asr_cw_limits lim = {.max_decompressed_bytes = 1000};
    assert_int_equal(asr_cw_decode_envelope((const char *)gz, gzlen, &lim, &b, &err), ASR_ETOOBIG);
    assert_string_equal(err.msg, "cloudwatch: decompressed payload exceeds 1000 bytes");
    free(env);
    free(gz);
}

static void test_too_many_events(void **state)
{
    (void)state;
    const char inner[] = "{\"messageType\":\"DATA_MESSAGE\",\"logEvents\":["
                         "{\"id\":\"1\",\"timestamp\":1,\"message\":\"a\"},"
                         "{\"id\":\"2\",\"timestamp\":2,\"message\":\"b\"},"
                         "{\"id\":\"3\",\"timestamp\":3,\"message\":\"c\"}]}";
    char *env = envelope(inner, strlen(inner));
    struct asr_cw_limits lim = {.max_events = 2};
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode(env, &lim, &b, &err), ASR_ETOOBIG);
    assert_non_null(strstr(err.msg, "logEvents has 3 events"));
    assert_zeroed(&b);
    lim.max_events = 3;
    assert_int_equal(decode(env, &lim, &b, &err), 0);
    assert_int_equal(b.nevents, 3);
    asr_cw_batch_free(&b);
    free(env);
}

static void test_long_message_cut(void **state)
{
    (void)state;
    size_t n = 300 * 1024;
    char *inner = malloc(n + 200);
    assert_non_null(inner);
    int k = snprintf(inner, 200,
                     "{\"messageType\":\"DATA_MESSAGE\",\"logEvents\":[{\"id\":\"1\","
                     "\"timestamp\":5,\"message\":\"");
    memset(inner + k, 'x', n);
    memcpy(inner + k + n, "\"}]}", 5);
    char *env = envelope(inner, strlen(inner));
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode(env, NULL, &b, &err), 0);
    assert_int_equal(b.nevents, 1);
    size_t mark = strlen(ASR_CW_CUT_MARKER);
    assert_int_equal(b.events[0].message_len, 256 * 1024 + mark);
    assert_string_equal(b.events[0].message + 256 * 1024, ASR_CW_CUT_MARKER);
    assert_int_equal(b.events[0].message[256 * 1024 - 1], 'x');
    asr_cw_batch_free(&b);
    free(env);
    free(inner);
    /* The cut never splits a UTF-8 sequence: with 3 bytes allowed, "ab\xc3\xa9" keeps "ab". */
    struct asr_cw_limits lim = {.max_message_bytes = 3};
    assert_int_equal(decode("{\"messageType\":\"DATA_MESSAGE\",\"logEvents\":[{\"id\":\"1\","
                            "\"timestamp\":5,\"message\":\"ab\\u00e9\\u00e9\"}]}",
                            &lim, &b, &err),
                     0);
    assert_string_equal(b.events[0].message, "ab" ASR_CW_CUT_MARKER);
    asr_cw_batch_free(&b);
}

static void test_nul_and_invalid_utf8(void **state)
{
    (void)state;
    /* A \u0000 escape, a raw invalid byte (0xff) and a lone surrogate escape. */
    const char inner[] =
        "{\"messageType\":\"DATA_MESSAGE\",\"logEvents\":["
        "{\"id\":\"1\",\"timestamp\":1,\"message\":\"a\\u0000b\"},"
        "{\"id\":\"2\",\"timestamp\":2,\"message\":\"bad \xff byte\"},"
        "{\"id\":\"3\",\"timestamp\":3,\"message\":\"lone \\ud800 \\\\ud800 \\ud83d\\ude00\"}]}";
    char *env = envelope(inner, strlen(inner));
    struct asr_cw_batch b;
    struct asr_err err = {0};
    assert_int_equal(decode(env, NULL, &b, &err), 0);
    assert_int_equal(b.nevents, 3);
    assert_int_equal(b.events[0].message_len, 3);
    assert_memory_equal(b.events[0].message, "a\0b", 3);
    assert_string_equal(b.events[1].message, "bad \xef\xbf\xbd byte");
    assert_string_equal(b.events[2].message, "lone \xef\xbf\xbd \\ud800 \xf0\x9f\x98\x80");
    asr_cw_batch_free(&b);
    free(env);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_round_trip),
        cmocka_unit_test(test_gzip_and_inner_forms),
        cmocka_unit_test(test_control_message),
        cmocka_unit_test(test_unknown_message_type),
        cmocka_unit_test(test_truncated_gzip),
        cmocka_unit_test(test_not_gzip),
        cmocka_unit_test(test_invalid_base64_char),
        cmocka_unit_test(test_bad_padding),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_missing_data),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_decompression_bomb),
        cmocka_unit_test(test_too_many_events),
        cmocka_unit_test(test_long_message_cut),
        cmocka_unit_test(test_nul_and_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
