/*
 * synth_secrets.h - the seeded generator of synthetic secrets that the redaction tests share.
 *
 * test_redact.c runs every line through asr_redact() directly; test_redact_wire.c puts the same
 * lines into incidents, builds prompts and checks every byte the LLM client sends. One generator,
 * so both tests speak about the same 1,100 secrets in 22 formats: for_each_secret_line() makes
 * them from a fixed seed and writes each in every encoding its format allows (plain, JSON-escaped
 * inside a JSON log record, URL-encoded inside a query string, split across lines).
 *
 * A header of static functions rather than a .c file, so that the tests' CMake glob (one program
 * per tests/unit/test_*.c) needs no per-test source list. Each including test gets its own copy
 * of the generator and its state; SYNTH_FN and SYNTH_DATA mark functions and tables that a test
 * may leave unused.
 */
#ifndef ASR_TESTS_SYNTH_SECRETS_H
#define ASR_TESTS_SYNTH_SECRETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNTH_FN static __attribute__((unused))
#define SYNTH_DATA static __attribute__((unused))

static uint64_t rng_state;

SYNTH_FN uint64_t rnd(void)
{
    /* splitmix64: deterministic for a seed, good enough spread for test data. */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

SYNTH_FN size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

SYNTH_DATA const char UPPER_DIGITS[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
SYNTH_DATA const char ALNUM[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
SYNTH_DATA const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
SYNTH_DATA const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
SYNTH_DATA const char PASSCH[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$*-_.~+";
SYNTH_DATA const char URLPASSCH[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!$*-_.~";

/* Appends n random characters of alphabet to p; the first three are a capital, a small letter
 * and a digit, placed at random, so every value mixes classes as real keys do. */
SYNTH_FN char *rnd_str(char *p, size_t n, const char *alphabet)
{
    size_t k = strlen(alphabet);
    for (size_t i = 0; i < n; i++)
        p[i] = alphabet[rnd_below(k)];
    if (n >= 6) {
        size_t a = rnd_below(n / 3), b = n / 3 + rnd_below(n / 3),
               c = 2 * (n / 3) + rnd_below(n / 3);
        if (strchr(alphabet, 'A'))
            p[a] = (char)('A' + rnd_below(26));
        if (strchr(alphabet, 'a'))
            p[b] = (char)('a' + rnd_below(26));
        if (strchr(alphabet, '2'))
            p[c] = (char)('2' + rnd_below(8));
    }
    p[n] = '\0';
    return p + n;
}

SYNTH_FN void b64_encode(const unsigned char *in, size_t n, char *out, bool url)
{
    const char *t = url ? B64URL : B64;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned w = (unsigned)in[i] << 16;
        if (i + 1 < n)
            w |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            w |= in[i + 2];
        out[j++] = t[(w >> 18) & 63];
        out[j++] = t[(w >> 12) & 63];
        if (i + 1 < n)
            out[j++] = t[(w >> 6) & 63];
        else if (!url)
            out[j++] = '=';
        if (i + 2 < n)
            out[j++] = t[w & 63];
        else if (!url)
            out[j++] = '=';
    }
    out[j] = '\0';
}

/* JSON string escaping as encoders write it, '/' as "\/" included. */
SYNTH_FN void json_escape(const char *in, char *out, size_t cap)
{
    size_t j = 0;
    for (const char *p = in; *p && j + 8 < cap; p++) {
        if (*p == '"' || *p == '\\' || *p == '/') {
            out[j++] = '\\';
            out[j++] = *p;
        } else if (*p == '\n') {
            out[j++] = '\\';
            out[j++] = 'n';
        } else if (*p == '\r') {
            out[j++] = '\\';
            out[j++] = 'r';
        } else
            out[j++] = *p;
    }
    out[j] = '\0';
}

/* Percent-encoding of everything but the unreserved characters. */
SYNTH_FN void url_encode(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && j + 4 < cap; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            out[j++] = (char)*p;
        } else {
            out[j++] = '%';
            out[j++] = hex[*p >> 4];
            out[j++] = hex[*p & 15];
        }
    }
    out[j] = '\0';
}

/* --- the secret generator -------------------------------------------------------------------- */

enum { NFORMATS = 22, PER_FORMAT = 50, TEXT_MAX = 4096 };

struct secret {
    char text[TEXT_MAX];     /* the line fragment holding the secret, as a service logs it */
    char split[TEXT_MAX];    /* the same wrapped across lines, or "" where the format cannot be */
    char distinct[TEXT_MAX]; /* the random part that must not survive */
    const char *format;
};

SYNTH_DATA const char *const FORMAT_NAMES[NFORMATS] = {
    "aws_access_key_id", "aws_secret_key",        "github_pat_classic", "github_pat_fine",
    "slack_bot_token",   "google_api_key",        "openai_key",         "anthropic_key",
    "stripe_key",        "password_assignment",   "api_key_or_token",   "bearer_header",
    "basic_header",      "url_password",          "postgres_url",       "mongodb_srv_url",
    "redis_url",         "ado_connection_string", "pem_private_key",    "jwt",
    "npm_token",         "gitlab_token"};

SYNTH_FN void make_secret(int f, struct secret *s)
{
    char r[2048], r2[128]; /* smaller than TEXT_MAX, so every fragment fits */
    memset(s, 0, sizeof(*s));
    s->format = FORMAT_NAMES[f];
    size_t v = rnd_below(4);
    switch (f) {
    case 0: {
        static const char *const pre[] = {"AKIA", "ASIA"};
        rnd_str(r, 16, UPPER_DIGITS);
        const char *fmt[] = {"using access key %s%s for s3:PutObject", "aws_access_key_id = %s%s",
                             "\"AccessKeyId\": \"%s%s\"", "AWS_ACCESS_KEY_ID=%s%s"};
        snprintf(s->text, TEXT_MAX, fmt[v], pre[v & 1], r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    }
    case 1: {
        rnd_str(r, 40, B64);
        const char *fmt[] = {"aws_secret_access_key = %s", "AWS secret key %s rejected",
                             "\"SecretAccessKey\": \"%s\"", "export AWS_SECRET_ACCESS_KEY=%s"};
        snprintf(s->text, TEXT_MAX, fmt[v], r);
        snprintf(s->split, TEXT_MAX, "aws_secret_access_key =\n    %s", r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    }
    case 2: {
        static const char pre[] = "pousr";
        rnd_str(r, 36, ALNUM);
        snprintf(s->text, TEXT_MAX,
                 v & 1 ? "git clone https://gh%c_%s@github.com/acme/api.git"
                       : "GITHUB_TOKEN gh%c_%s used for release",
                 pre[rnd_below(5)], r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    }
    case 3:
        rnd_str(r, 22, ALNUM);
        rnd_str(r2, 59, ALNUM);
        snprintf(s->text, TEXT_MAX, "gh auth with github_pat_%s_%s failed: 401", r, r2);
        snprintf(s->distinct, TEXT_MAX, "%s_%s", r, r2);
        break;
    case 4: {
        static const char pre[] = "abpr";
        char t[32];
        rnd_str(t, 24, ALNUM);
        snprintf(r, sizeof(r), "%010llu-%012llu-%s", (unsigned long long)(rnd() % 10000000000ull),
                 (unsigned long long)(rnd() % 1000000000000ull), t);
        snprintf(s->text, TEXT_MAX, "slack notify failed token=xox%c-%s channel=#ops",
                 pre[rnd_below(4)], r);
        snprintf(s->distinct, TEXT_MAX, "%s", t);
        break;
    }
    case 5:
        rnd_str(r, 35, B64URL);
        snprintf(s->text, TEXT_MAX,
                 v & 1 ? "GET https://maps.googleapis.com/maps/api/geocode/json?key=AIza%s 403"
                       : "google maps client configured with AIza%s",
                 r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    case 6:
        rnd_str(r, 48, B64URL);
        snprintf(s->text, TEXT_MAX,
                 v & 1 ? "openai: 401 Incorrect API key provided: sk-proj-%s"
                       : "OPENAI_API_KEY=sk-%s",
                 r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    case 7:
        rnd_str(r, 93, B64URL);
        snprintf(s->text, TEXT_MAX, "anthropic client x-api-key sk-ant-api03-%sAA rate limited", r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    case 8:
        rnd_str(r, 24 + rnd_below(75), ALNUM);
        snprintf(s->text, TEXT_MAX, "stripe charge failed with key %ck_%s_%s", v & 1 ? 's' : 'r',
                 v & 2 ? "live" : "test", r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    case 9: {
        rnd_str(r, 8 + rnd_below(12), PASSCH);
        const char *fmt[] = {"login failed for user=bob password=%s",
                             "\"password\": \"%s\"",
                             "db_password: %s",
                             "PGPASSWORD=%s psql -h db",
                             "--passwd=%s",
                             "'password' => '%s'",
                             "spring.datasource.password = %s",
                             "{\"user\":\"ops\",\"pass\":\"%s\"}"};
        snprintf(s->text, TEXT_MAX, fmt[rnd_below(8)], r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    }
    case 10: {
        rnd_str(r, 16 + rnd_below(32), PASSCH);
        const char *fmt[] = {"GET /v1/items?api_key=%s&page=2",
                             "\"access_token\": \"%s\"",
                             "X-Api-Key: %s",
                             "client_secret=%s",
                             "auth_token: %s",
                             "refreshToken=\"%s\"",
                             "headers: {\"X-Auth-Token\": \"%s\"}",
                             "config apiKey: '%s'"};
        snprintf(s->text, TEXT_MAX, fmt[rnd_below(8)], r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    }
    case 11:
        rnd_str(r, 24 + rnd_below(40), B64URL);
        snprintf(s->text, TEXT_MAX,
                 v & 1 ? "request headers: Authorization: Bearer %s"
                       : "upstream rejected bearer %s (expired)",
                 r);
        snprintf(s->split, TEXT_MAX,
                 v & 1 ? "Authorization: Bearer\n        %s" : "Authorization:\n  Bearer %s", r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    case 12: {
        char cred[128];
        char *p = cred + snprintf(cred, sizeof(cred), "svc-%u:", (unsigned)rnd_below(1000));
        rnd_str(p, 10 + rnd_below(10), URLPASSCH);
        b64_encode((const unsigned char *)cred, strlen(cred), r, false);
        snprintf(s->text, TEXT_MAX, "proxy auth Authorization: Basic %s", r);
        snprintf(s->split, TEXT_MAX, "Authorization: Basic\n    %s", r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    }
    case 13:
        rnd_str(r, 10 + rnd_below(14), URLPASSCH);
        if (v == 0) {
            /* an '@' in the password, percent-encoded as the URL syntax requires */
            size_t k = strlen(r) / 2;
            memmove(r + k + 3, r + k, strlen(r + k) + 1);
            memcpy(r + k, "%40", 3);
        }
        snprintf(s->text, TEXT_MAX, "fetching https://deploy:%s@artifacts.example.com/v2/app.tgz",
                 r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    case 14:
        rnd_str(r, 12 + rnd_below(12), URLPASSCH);
        snprintf(s->text, TEXT_MAX, "connecting to postgres%s://app:%s@db-%u.internal:5432/orders",
                 v & 1 ? "ql" : "", r, (unsigned)rnd_below(9));
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    case 15:
        rnd_str(r, 12 + rnd_below(12), URLPASSCH);
        snprintf(
            s->text, TEXT_MAX,
            "MONGO_URL=mongodb+srv://admin:%s@cluster0.ab1cd.mongodb.net/test?retryWrites=true", r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    case 16:
        rnd_str(r, 12 + rnd_below(12), URLPASSCH);
        snprintf(s->text, TEXT_MAX, "cache at redis%s://%s:%s@cache.internal:6379/0",
                 v & 1 ? "s" : "", v & 2 ? "default" : "", r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    case 17:
        rnd_str(r, 10 + rnd_below(14), URLPASSCH);
        snprintf(s->text, TEXT_MAX,
                 "Server=tcp:sql-%u.database.windows.net,1433;Database=app;User Id=app;%s=%s;"
                 "Encrypt=True;",
                 (unsigned)rnd_below(99), v & 1 ? "Password" : "Pwd", r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    case 18: {
        static const char *const label[] = {"RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY",
                                            "OPENSSH PRIVATE KEY"};
        size_t lines = 3 + rnd_below(12), o = 0;
        for (size_t i = 0; i < lines; i++) {
            rnd_str(r + o, 64, B64);
            o += 64;
            r[o++] = '\n';
        }
        rnd_str(r + o, 4 + rnd_below(60), B64);
        snprintf(s->text, TEXT_MAX, "-----BEGIN %s-----\n%s\n-----END %s-----", label[v], r,
                 label[v]);
        /* CRLF at the edges only, the body keeping LF, as a file edited on two systems has. */
        snprintf(s->split, TEXT_MAX, "-----BEGIN %s-----\r\n%s\r\n-----END %s-----", label[v], r,
                 label[v]);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    }
    case 19: {
        char payload[256], pb[512], sig[64];
        snprintf(payload, sizeof(payload),
                 "{\"sub\":\"%u\",\"name\":\"user%u\",\"iat\":%u,\"exp\":%u}",
                 (unsigned)rnd_below(1000000), (unsigned)rnd_below(1000),
                 1700000000u + (unsigned)rnd_below(100000), 1800000000u);
        b64_encode((const unsigned char *)payload, strlen(payload), pb, true);
        rnd_str(sig, 43, B64URL);
        snprintf(s->text, TEXT_MAX,
                 v & 1 ? "session cookie id_token=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.%s.%s"
                       : "jwt eyJhbGciOiJSUzI1NiJ9.%s.%s failed verification",
                 pb, sig);
        snprintf(s->distinct, TEXT_MAX, "%s.%s", pb, sig);
        break;
    }
    case 20:
        rnd_str(r, 36, ALNUM);
        snprintf(s->text, TEXT_MAX, "npm publish with npm_%s", r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    default:
        rnd_str(r, 20, B64URL);
        snprintf(s->text, TEXT_MAX, "gitlab push using glpat-%s", r);
        snprintf(s->distinct, TEXT_MAX, "%s", r);
        break;
    }
}

/* A log line around the secret fragment, in the shape of one of several real log styles. */
SYNTH_FN void embed(const char *frag, char *out, size_t cap)
{
    unsigned d = 1 + (unsigned)rnd_below(28), h = (unsigned)rnd_below(24),
             m = (unsigned)rnd_below(60), sec = (unsigned)rnd_below(60);
    switch (rnd_below(4)) {
    case 0:
        snprintf(out, cap, "2024-03-%02u %02u:%02u:%02u,%03u ERROR [worker-%u] %s (req=%08x)", d, h,
                 m, sec, (unsigned)rnd_below(1000), (unsigned)rnd_below(16), frag, (unsigned)rnd());
        break;
    case 1:
        snprintf(out, cap, "Mar %2u %02u:%02u:%02u api-7f9c app[%u]: %s", d, h, m, sec,
                 (unsigned)rnd_below(65536), frag);
        break;
    case 2:
        snprintf(out, cap, "level=warn ts=2024-03-%02uT%02u:%02u:%02uZ caller=client.go:%u msg=%s",
                 d, h, m, sec, (unsigned)rnd_below(900), frag);
        break;
    default:
        snprintf(out, cap, "[2024-03-%02u %02u:%02u:%02u] worker.WARNING: %s {\"trace\":\"%08x\"}",
                 d, h, m, sec, frag, (unsigned)rnd());
        break;
    }
}

enum { ENC_PLAIN, ENC_JSON, ENC_URL, ENC_SPLIT, NENC };
SYNTH_DATA const char *const ENC_NAMES[NENC] = {"plain", "json-escaped", "url-encoded", "split"};

/* The line holding s in encoding enc, or false when the format has no such form. */
SYNTH_FN bool encode_line(const struct secret *s, int enc, char *out, size_t cap)
{
    static char line[TEXT_MAX * 2], esc[TEXT_MAX * 6];
    if (enc == ENC_SPLIT && s->split[0] == '\0')
        return false;
    embed(enc == ENC_SPLIT ? s->split : s->text, line, sizeof(line));
    if (enc == ENC_JSON) {
        json_escape(line, esc, sizeof(esc));
        snprintf(out, cap, "{\"level\":\"error\",\"service\":\"api\",\"msg\":\"%s\"}", esc);
    } else if (enc == ENC_URL) {
        url_encode(line, esc, sizeof(esc));
        snprintf(out, cap,
                 "10.0.3.7 - - [12/Mar/2024:10:00:01 +0000] \"GET /log?m=%s HTTP/1.1\" 200", esc);
    } else {
        snprintf(out, cap, "%s", line);
    }
    return true;
}

/* Generates the secrets; calls check(line, secret) for each encoded line. */
SYNTH_FN void for_each_secret_line(void (*check)(const char *, const struct secret *, int, void *),
                                   void *arg)
{
    static struct secret s;
    static char line[TEXT_MAX * 8];
    rng_state = 20240312;
    for (int i = 0; i < PER_FORMAT; i++) {
        for (int f = 0; f < NFORMATS; f++) {
            make_secret(f, &s);
            for (int enc = 0; enc < NENC; enc++)
                if (encode_line(&s, enc, line, sizeof(line)))
                    check(line, &s, enc, arg);
        }
    }
}

#endif
