/*
 * cloudwatch.c - decoder for CloudWatch Logs subscription payloads (see cloudwatch.h).
 *
 * Pipeline place: a detection source. The stages are the ones AWS used to build the payload,
 * undone in reverse: envelope JSON, strict base64, gunzip with a hard output cap, repair of
 * invalid UTF-8, inner JSON. Each stage fails with one line naming what was wrong and where.
 */
#include "detect/cloudwatch.h"

#include "asr/config.h"
#include "asr/utf8.h"

#include <jansson.h>
#include <zlib.h>

#include <stdlib.h>
#include <string.h>

#define MiB ((size_t)1024 * 1024)

void asr_cw_limits_default(struct asr_cw_limits *lim)
{
    lim->max_input_bytes = 24 * MiB;
    lim->max_decompressed_bytes = 16 * MiB;
    lim->max_events = 10000;
    lim->max_message_bytes = 256 * 1024;
}

void asr_cw_batch_free(struct asr_cw_batch *b)
{
    if (b == NULL)
        return;
    free(b->message_type);
    free(b->owner);
    free(b->log_group);
    free(b->log_stream);
    for (size_t i = 0; i < b->nevents; i++) {
        free(b->events[i].id);
        free(b->events[i].message);
    }
    free(b->events);
    memset(b, 0, sizeof(*b));
}

/* Value of one base64 character, or -1. */
static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Strict standard base64 (what AWS writes): no whitespace, length a multiple of four, '=' only as
 * the last one or two characters. On success *out (malloc'd, caller frees) holds *outlen bytes.
 */
static int b64_decode(const char *s, size_t n, unsigned char **out, size_t *outlen,
                      struct asr_err *err)
{
    if (n % 4 != 0)
        return asr_err_set(err, ASR_EPARSE,
                           "cloudwatch: awslogs.data is not valid base64 (offset %zu: length %zu "
                           "is not a multiple of 4)",
                           n, n);
    size_t pad = 0;
    if (n >= 1 && s[n - 1] == '=')
        pad++;
    if (n >= 2 && s[n - 2] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++) {
        if (b64val((unsigned char)s[i]) < 0)
            return asr_err_set(err, ASR_EPARSE,
                               "cloudwatch: awslogs.data is not valid base64 (offset %zu)", i);
    }
    if (n >= 3 && s[n - 3] == '=')
        return asr_err_set(err, ASR_EPARSE,
                           "cloudwatch: awslogs.data is not valid base64 (offset %zu: bad padding)",
                           n - 3);
    unsigned char *buf = malloc(n / 4 * 3 + 1);
    if (buf == NULL)
        return asr_err_set(err, ASR_ENOMEM, "cloudwatch: out of memory decoding base64");
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = s[i + k] == '=' ? 0 : b64val((unsigned char)s[i + k]);
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | v[3];
        buf[o++] = (unsigned char)(w >> 16);
        if (i + 4 < n || pad < 2)
            buf[o++] = (unsigned char)(w >> 8);
        if (i + 4 < n || pad < 1)
            buf[o++] = (unsigned char)w;
        /* Unused low bits under the padding must be zero, as RFC 4648 canonical form asks. */
        if (i + 4 == n && ((pad == 1 && (v[2] & 3)) || (pad == 2 && (v[1] & 15)))) {
            free(buf);
            return asr_err_set(
                err, ASR_EPARSE,
                "cloudwatch: awslogs.data is not valid base64 (offset %zu: bad padding)",
                n - pad - 1);
        }
    }
    *out = buf;
    *outlen = o;
    return 0;
}

/*
 * Gunzips in[0..n) into *out (malloc'd, NUL-terminated, caller frees). The output buffer grows by
 * doubling but never past cap + 1 bytes: needing byte cap + 1 is the bomb error.
 */
static int gunzip(const unsigned char *in, size_t n, size_t cap, char **out, size_t *outlen,
                  struct asr_err *err)
{
    if (n < 2 || in[0] != 0x1f || in[1] != 0x8b)
        return asr_err_set(err, ASR_EPARSE, "cloudwatch: data is not gzip");
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return asr_err_set(err, ASR_ENOMEM, "cloudwatch: cannot start zlib");
    size_t alloc = n < cap / 4 ? n * 4 : cap;
    if (alloc < 4096)
        alloc = 4096;
    if (alloc > cap + 1)
        alloc = cap + 1;
    char *buf = malloc(alloc + 1);
    size_t len = 0;
    int rc = 0;
    if (buf == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "cloudwatch: out of memory decompressing");
        goto out;
    }
    zs.next_in = (Bytef *)in;
    for (;;) {
        if (len == alloc) {
            if (alloc > cap) {
                rc = asr_err_set(err, ASR_ETOOBIG,
                                 "cloudwatch: decompressed payload exceeds %zu bytes", cap);
                goto out;
            }
            size_t na = alloc * 2 > cap + 1 ? cap + 1 : alloc * 2;
            char *nb = realloc(buf, na + 1);
            if (nb == NULL) {
                rc = asr_err_set(err, ASR_ENOMEM, "cloudwatch: out of memory decompressing");
                goto out;
            }
            buf = nb;
            alloc = na;
        }
        /* zlib counts in uInt; feed at most 1 GiB per call. */
        size_t in_left = n - (size_t)((const unsigned char *)zs.next_in - in);
        zs.avail_in = (uInt)(in_left > (1u << 30) ? (1u << 30) : in_left);
        size_t room = alloc - len;
        zs.avail_out = (uInt)(room > (1u << 30) ? (1u << 30) : room);
        zs.next_out = (Bytef *)buf + len;
        uInt before = zs.avail_out;
        int z = inflate(&zs, Z_NO_FLUSH);
        len += before - zs.avail_out;
        if (z == Z_STREAM_END) {
            if (len > cap) {
                rc = asr_err_set(err, ASR_ETOOBIG,
                                 "cloudwatch: decompressed payload exceeds %zu bytes", cap);
                goto out;
            }
            size_t rest = n - (size_t)((const unsigned char *)zs.next_in - in);
            if (rest != 0) {
                rc = asr_err_set(err, ASR_EPARSE,
                                 "cloudwatch: %zu bytes of trailing data after the gzip stream",
                                 rest);
                goto out;
            }
            break;
        }
        if (z == Z_DATA_ERROR || z == Z_NEED_DICT) {
            rc = asr_err_set(err, ASR_EPARSE, "cloudwatch: gzip stream is corrupt: %s",
                             zs.msg != NULL ? zs.msg : "bad data");
            goto out;
        }
        if (z == Z_MEM_ERROR) {
            rc = asr_err_set(err, ASR_ENOMEM, "cloudwatch: out of memory decompressing");
            goto out;
        }
        /* Z_OK or Z_BUF_ERROR: no progress with all input used means the stream ended early. */
        if (zs.avail_in == 0 && len < alloc &&
            (size_t)((const unsigned char *)zs.next_in - in) == n) {
            rc = asr_err_set(err, ASR_EPARSE, "cloudwatch: gzip stream truncated");
            goto out;
        }
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    buf = NULL;
out:
    inflateEnd(&zs);
    free(buf);
    return rc;
}

/* The value of four hex digits at p, or -1. */
static long hex4(const char *p)
{
    long v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Appends k bytes at p to o at *j; when o is NULL only counts (the sizing pass). */
static void put(char *o, size_t *j, const char *p, size_t k)
{
    if (o != NULL)
        memcpy(o + *j, p, k);
    *j += k;
}

/*
 * Rewrites JSON text s into o (or only measures it when o is NULL) so that every invalid UTF-8
 * byte becomes U+FFFD and every lone surrogate escape (\uD800 without its pair) becomes \uFFFD,
 * since jansson rejects both and one bad log line must not lose a whole batch. Returns the output
 * length; *changed says whether anything was replaced (if not, s can be used as it is).
 */
static size_t repair_json_text(const char *s, size_t n, char *o, bool *changed)
{
    size_t j = 0;
    bool in_str = false;
    *changed = false;
    for (size_t i = 0; i < n;) {
        const unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t k = asr_utf8_seq((const unsigned char *)s + i, n - i);
            if (k == 0) {
                put(o, &j, "\xEF\xBF\xBD", 3);
                *changed = true;
                i++;
            } else {
                put(o, &j, s + i, k);
                i += k;
            }
            continue;
        }
        if (c == '"') {
            in_str = !in_str;
        } else if (in_str && c == '\\' && i + 1 < n) {
            if (s[i + 1] == 'u' && i + 6 <= n) {
                long v = hex4(s + i + 2);
                bool lone = false;
                if (v >= 0xD800 && v <= 0xDBFF) {
                    long w =
                        i + 12 <= n && s[i + 6] == '\\' && s[i + 7] == 'u' ? hex4(s + i + 8) : -1;
                    if (w >= 0xDC00 && w <= 0xDFFF) {
                        put(o, &j, s + i, 12);
                        i += 12;
                        continue;
                    }
                    lone = true;
                } else if (v >= 0xDC00 && v <= 0xDFFF) {
                    lone = true;
                }
                if (lone) {
                    put(o, &j, "\\uFFFD", 6);
                    *changed = true;
                    i += 6;
                    continue;
                }
            }
            /* Copy the escape pair so an escaped quote does not end the string. */
            put(o, &j, s + i, 2);
            i += 2;
            continue;
        }
        put(o, &j, s + i, 1);
        i++;
    }
    return j;
}

static json_t *load_json(const char *s, size_t n, const char *what, struct asr_err *err)
{
    json_error_t je;
    json_t *root = json_loadb(s, n, JSON_ALLOW_NUL, &je);
    /* jansson quotes the input near the error; keep the message on one line. */
    for (char *p = je.text; root == NULL && *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    if (root == NULL)
        asr_err_set(err, ASR_EPARSE, "cloudwatch: %snot JSON at line %d column %d: %s", what,
                    je.line, je.column, je.text);
    return root;
}

/* A malloc'd copy of the optional string member key ("" when absent). */
static int get_str(json_t *obj, const char *key, bool required, char **dst, struct asr_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL && !required) {
        *dst = strdup("");
    } else if (!json_is_string(v)) {
        return asr_err_set(err, ASR_EPARSE, "cloudwatch: %s: expected a string", key);
    } else {
        *dst = strndup(json_string_value(v), json_string_length(v));
    }
    if (*dst == NULL)
        return asr_err_set(err, ASR_ENOMEM, "cloudwatch: out of memory");
    return 0;
}

static int parse_event(json_t *ev, size_t i, const struct asr_cw_limits *lim,
                       struct asr_cw_event *e, struct asr_err *err)
{
    if (!json_is_object(ev))
        return asr_err_set(err, ASR_EPARSE, "cloudwatch: logEvents[%zu]: expected an object", i);
    json_t *id = json_object_get(ev, "id");
    json_t *ts = json_object_get(ev, "timestamp");
    json_t *msg = json_object_get(ev, "message");
    if (!json_is_string(id))
        return asr_err_set(err, ASR_EPARSE, "cloudwatch: logEvents[%zu].id: expected a string", i);
    if (!json_is_integer(ts))
        return asr_err_set(err, ASR_EPARSE,
                           "cloudwatch: logEvents[%zu].timestamp: expected an integer", i);
    if (!json_is_string(msg))
        return asr_err_set(err, ASR_EPARSE, "cloudwatch: logEvents[%zu].message: expected a string",
                           i);
    e->timestamp_ms = (int64_t)json_integer_value(ts);
    e->id = strndup(json_string_value(id), json_string_length(id));
    const char *m = json_string_value(msg);
    size_t mlen = json_string_length(msg);
    size_t keep = mlen;
    size_t mark = 0;
    if (mlen > lim->max_message_bytes) {
        keep = lim->max_message_bytes;
        /* Do not split a UTF-8 sequence: back up to the start of the cut character. */
        while (keep > 0 && ((unsigned char)m[keep] & 0xC0) == 0x80)
            keep--;
        mark = strlen(ASR_CW_CUT_MARKER);
    }
    e->message = malloc(keep + mark + 1);
    if (e->id == NULL || e->message == NULL)
        return asr_err_set(err, ASR_ENOMEM, "cloudwatch: out of memory");
    memcpy(e->message, m, keep);
    memcpy(e->message + keep, ASR_CW_CUT_MARKER, mark);
    e->message[keep + mark] = '\0';
    e->message_len = keep + mark;
    return 0;
}

/* Parses the inner JSON (already repaired) into out. */
static int parse_inner(json_t *root, const struct asr_cw_limits *lim, struct asr_cw_batch *out,
                       struct asr_err *err)
{
    if (!json_is_object(root))
        return asr_err_set(err, ASR_EPARSE, "cloudwatch: payload: expected a JSON object");
    int rc = get_str(root, "messageType", true, &out->message_type, err);
    if (rc < 0)
        return rc;
    if (strcmp(out->message_type, "CONTROL_MESSAGE") == 0)
        out->control = true;
    else if (strcmp(out->message_type, "DATA_MESSAGE") != 0)
        return asr_err_set(err, ASR_EPARSE,
                           "cloudwatch: messageType: expected DATA_MESSAGE or CONTROL_MESSAGE, "
                           "got '%.64s'",
                           out->message_type);
    if ((rc = get_str(root, "owner", false, &out->owner, err)) < 0 ||
        (rc = get_str(root, "logGroup", false, &out->log_group, err)) < 0 ||
        (rc = get_str(root, "logStream", false, &out->log_stream, err)) < 0)
        return rc;
    json_t *evs = json_object_get(root, "logEvents");
    if (evs == NULL && out->control)
        return 0;
    if (!json_is_array(evs))
        return asr_err_set(err, ASR_EPARSE, "cloudwatch: logEvents: expected an array");
    size_t n = json_array_size(evs);
    if (n > lim->max_events)
        return asr_err_set(err, ASR_ETOOBIG,
                           "cloudwatch: logEvents has %zu events, over the cap of %zu", n,
                           lim->max_events);
    if (n == 0)
        return 0;
    out->events = calloc(n, sizeof(*out->events));
    if (out->events == NULL)
        return asr_err_set(err, ASR_ENOMEM, "cloudwatch: out of memory");
    for (size_t i = 0; i < n; i++) {
        out->nevents = i + 1; /* so asr_cw_batch_free() releases a half-filled event */
        if ((rc = parse_event(json_array_get(evs, i), i, lim, &out->events[i], err)) < 0)
            return rc;
    }
    return 0;
}

/* Decompresses gzip bytes and parses the inner JSON. */
static int decode_gzip(const unsigned char *gz, size_t n, const struct asr_cw_limits *lim,
                       struct asr_cw_batch *out, struct asr_err *err)
{
    char *raw = NULL, *fixed = NULL;
    size_t rawlen = 0, fixedlen = 0;
    json_t *root = NULL;
    int rc = gunzip(gz, n, lim->max_decompressed_bytes, &raw, &rawlen, err);
    if (rc < 0)
        goto out;
    /* Measure first, so the repaired copy is allocated only when needed and at its size. */
    bool changed;
    fixedlen = repair_json_text(raw, rawlen, NULL, &changed);
    if (!changed) {
        fixed = raw;
        raw = NULL;
    } else {
        fixed = malloc(fixedlen + 1);
        if (fixed == NULL) {
            rc = asr_err_set(err, ASR_ENOMEM, "cloudwatch: out of memory");
            goto out;
        }
        repair_json_text(raw, rawlen, fixed, &changed);
        fixed[fixedlen] = '\0';
        free(raw);
        raw = NULL;
    }
    root = load_json(fixed, fixedlen, "decompressed payload is ", err);
    if (root == NULL) {
        rc = ASR_EPARSE;
        goto out;
    }
    rc = parse_inner(root, lim, out, err);
out:
    json_decref(root);
    free(raw);
    free(fixed);
    return rc;
}

int asr_cw_decode_envelope(const char *json, size_t len, const struct asr_cw_limits *lim,
                           struct asr_cw_batch *out, struct asr_err *err)
{
    if (out == NULL)
        return asr_err_set(err, ASR_EINVAL, "cloudwatch: no output batch");
    memset(out, 0, sizeof(*out));
    if (json == NULL && len > 0)
        return asr_err_set(err, ASR_EINVAL, "cloudwatch: no input");
    struct asr_cw_limits l;
    asr_cw_limits_default(&l);
    if (lim != NULL) {
        if (lim->max_input_bytes)
            l.max_input_bytes = lim->max_input_bytes;
        if (lim->max_decompressed_bytes)
            l.max_decompressed_bytes = lim->max_decompressed_bytes;
        if (lim->max_events)
            l.max_events = lim->max_events;
        if (lim->max_message_bytes)
            l.max_message_bytes = lim->max_message_bytes;
    }
    if (len > l.max_input_bytes)
        return asr_err_set(err, ASR_ETOOBIG, "cloudwatch: payload of %zu bytes exceeds %zu bytes",
                           len, l.max_input_bytes);
    int rc;
    json_t *root = NULL;
    unsigned char *gz = NULL;
    size_t gzlen = 0;
    if (len >= 2 && (unsigned char)json[0] == 0x1f && (unsigned char)json[1] == 0x8b) {
        rc = decode_gzip((const unsigned char *)json, len, &l, out, err);
        goto out;
    }
    root = load_json(json != NULL ? json : "", len, "", err);
    if (root == NULL) {
        rc = ASR_EPARSE;
        goto out;
    }
    if (json_is_object(root) && json_object_get(root, "awslogs") == NULL &&
        json_object_get(root, "messageType") != NULL) {
        /* Already the inner JSON; it passed jansson, so its UTF-8 needs no repair. */
        rc = parse_inner(root, &l, out, err);
        goto out;
    }
    json_t *data = json_object_get(json_object_get(root, "awslogs"), "data");
    if (data == NULL) {
        rc = asr_err_set(err, ASR_EPARSE, "cloudwatch: missing awslogs.data");
        goto out;
    }
    if (!json_is_string(data)) {
        rc = asr_err_set(err, ASR_EPARSE, "cloudwatch: awslogs.data: expected a string");
        goto out;
    }
    rc = b64_decode(json_string_value(data), json_string_length(data), &gz, &gzlen, err);
    if (rc < 0)
        goto out;
    json_decref(root);
    root = NULL;
    rc = decode_gzip(gz, gzlen, &l, out, err);
out:
    json_decref(root);
    free(gz);
    if (rc < 0)
        asr_cw_batch_free(out);
    return rc;
}

const char *asr_cw_group_service(const struct asr_config *cfg, const char *group)
{
    if (cfg->nservices == 1)
        return cfg->services[0].name;
    const char *last = strrchr(group, '/');
    last = last != NULL ? last + 1 : group;
    const struct asr_service_cfg *s = asr_config_service(cfg, last);
    return s != NULL ? s->name : NULL;
}
