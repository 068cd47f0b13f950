/*
 * test_redact.c - the redactor (src/strategy/redact.c).
 *
 * The core check is a generator: a seeded random source makes 1,100 synthetic secrets in 22
 * formats, embeds each in realistic log lines, and writes each line in every encoding the format
 * allows (plain, JSON-escaped inside a JSON log record, URL-encoded inside a query string, split
 * across lines). After redaction no 10-byte window of a secret's random part may appear in the
 * output, neither raw nor JSON-escaped nor URL-encoded. The benign side runs a fixture of ordinary
 * log lines (tests/fixtures/redact/benign.txt) and, when present, the Loghub 2k samples in
 * /work/shared/datasets/loghub_2k (or $ASR_LOGHUB_DIR), and prints the share of lines altered.
 * Also: exact outputs for hand-picked lines, idempotence, caps, empty input, NUL bytes, and time
 * on hostile 1 MB inputs.
 */
#include "strategy/redact.h"
#include "asr/buf.h"
#include "asr/error.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- helpers --------------------------------------------------------------------------------- */

/* Redacts text into a fresh string (caller frees); stats into st when not NULL. */
static char *redact_n(const char *in, size_t n, struct asr_redact_stats *st)
{
    struct asr_buf b;
    asr_buf_init(&b, 64u << 20);
    assert_int_equal(asr_redact(in, n, &b, st), 0);
    return asr_buf_steal(&b);
}

static char *redact(const char *in)
{
    return redact_n(in, strlen(in), NULL);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64: deterministic for a seed, good enough spread for test data. */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

static const char UPPER_DIGITS[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char ALNUM[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char PASSCH[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$*-_.~+";
static const char URLPASSCH[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!$*-_.~";

/* Appends n random characters of alphabet to p; the first three are a capital, a small letter
 * and a digit, placed at random, so every value mixes classes as real keys do. */
static char *rnd_str(char *p, size_t n, const char *alphabet)
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

static void b64_encode(const unsigned char *in, size_t n, char *out, bool url)
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
static void json_escape(const char *in, char *out, size_t cap)
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
static void url_encode(const char *in, char *out, size_t cap)
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

static const char *const FORMAT_NAMES[NFORMATS] = {
    "aws_access_key_id", "aws_secret_key",        "github_pat_classic", "github_pat_fine",
    "slack_bot_token",   "google_api_key",        "openai_key",         "anthropic_key",
    "stripe_key",        "password_assignment",   "api_key_or_token",   "bearer_header",
    "basic_header",      "url_password",          "postgres_url",       "mongodb_srv_url",
    "redis_url",         "ado_connection_string", "pem_private_key",    "jwt",
    "npm_token",         "gitlab_token"};

static void make_secret(int f, struct secret *s)
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
static void embed(const char *frag, char *out, size_t cap)
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

/*
 * The 10-byte windows of a large output, hashed into an open-addressing set, so checking 1,100
 * secrets against a 760 KB text stays linear (strstr per window took over a minute under ASan).
 */
struct grams {
    uint64_t *slot;
    size_t mask;
};

static uint64_t gram_hash(const char *p)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 10; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h | 1; /* 0 marks an empty slot */
}

static void grams_build(struct grams *g, const char *text, size_t n)
{
    size_t cap = 1;
    while (cap < 2 * n + 16)
        cap <<= 1;
    g->slot = calloc(cap, sizeof(uint64_t));
    assert_non_null(g->slot);
    g->mask = cap - 1;
    for (size_t i = 0; i + 10 <= n; i++) {
        uint64_t h = gram_hash(text + i);
        size_t k = (size_t)h & g->mask;
        while (g->slot[k] != 0 && g->slot[k] != h)
            k = (k + 1) & g->mask;
        g->slot[k] = h;
    }
}

static bool grams_has(const struct grams *g, const char *w)
{
    uint64_t h = gram_hash(w);
    for (size_t k = (size_t)h & g->mask; g->slot[k] != 0; k = (k + 1) & g->mask)
        if (g->slot[k] == h)
            return true;
    return false;
}

static const struct grams *leak_grams; /* when set, leak() consults it first */

/* Whether any window of the distinct part (raw, JSON-escaped or URL-encoded) is in out. */
static const char *leak(const char *out, const char *distinct)
{
    static char forms[3][TEXT_MAX * 3];
    static char hit[64];
    snprintf(forms[0], sizeof(forms[0]), "%s", distinct);
    json_escape(distinct, forms[1], sizeof(forms[1]));
    url_encode(distinct, forms[2], sizeof(forms[2]));
    for (int f = 0; f < 3; f++) {
        size_t n = strlen(forms[f]), w = n < 10 ? n : 10;
        for (size_t i = 0; i + w <= n; i++) {
            if (memchr(forms[f] + i, '\n', w) != NULL)
                continue;
            snprintf(hit, sizeof(hit), "%.*s", (int)w, forms[f] + i);
            if (leak_grams != NULL && w == 10 && !grams_has(leak_grams, hit))
                continue; /* surely absent; a hash hit is confirmed by strstr below */
            if (strstr(out, hit) != NULL)
                return hit;
        }
    }
    return NULL;
}

enum { ENC_PLAIN, ENC_JSON, ENC_URL, ENC_SPLIT, NENC };
static const char *const ENC_NAMES[NENC] = {"plain", "json-escaped", "url-encoded", "split"};

/* The line holding s in encoding enc, or false when the format has no such form. */
static bool encode_line(const struct secret *s, int enc, char *out, size_t cap)
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

/* --- tests -------------------------------------------------------------------------------------
 */

static void test_kind_names(void **state)
{
    (void)state;
    for (int k = 0; k < ASR_REDACT_KINDS; k++) {
        const char *n = asr_redact_kind_name(k);
        assert_true(strlen(n) > 0 && strcmp(n, "unknown") != 0);
        for (const char *p = n; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
    }
    assert_string_equal(asr_redact_kind_name(-1), "unknown");
    assert_string_equal(asr_redact_kind_name(ASR_REDACT_KINDS), "unknown");
}

/* Exact outputs: what stays readable around each marker matters to the model and to people. */
static void test_examples(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"login failed password=hunter2 user=bob",
         "login failed password=[REDACTED:password] user=bob"},
        {"{\"user\":\"bob\",\"password\":\"S3cr3t!x\"}",
         "{\"user\":\"bob\",\"password\":\"[REDACTED:password]\"}"},
        {"{\\\"password\\\":\\\"Jk8s7dHq\\\",\\\"u\\\":\\\"https:\\/\\/x\\\"}",
         "{\\\"password\\\":\\\"[REDACTED:password]\\\",\\\"u\\\":\\\"https:\\/\\/x\\\"}"},
        {"user=bob&password%3Dhunter2%26next%3D1",
         "user=bob&password%3D[REDACTED:password]%26next%3D1"},
        {"key AKIAIOSFODNN7EXAMPLE", "key [REDACTED:aws_access_key_id]"},
        {"aws secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
         "aws secret [REDACTED:aws_secret_key]"},
        {"Authorization: Bearer abcDEF123456789xyz",
         "Authorization: Bearer [REDACTED:bearer_token]"},
        {"Authorization:\n  Bearer abcDEF123456789xyz",
         "Authorization:\n  Bearer [REDACTED:bearer_token]"},
        {"Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic [REDACTED:basic_auth]"},
        {"postgres://app:p%40ss@db:5432/x",
         "postgres://app:[REDACTED:connection_string]@db:5432/x"},
        {"https://u:pw123@h/x", "https://u:[REDACTED:url_password]@h/x"},
        {"https://ghp_abcdefghijklmnopqrstuvwxyz0123456789:x-oauth-basic@github.com/a.git",
         "https://[REDACTED:github_token]:[REDACTED:url_password]@github.com/a.git"},
        {"Server=x;Database=y;User Id=sa;Password=P@ssw0rd!;",
         "Server=x;Database=y;User Id=sa;Password=[REDACTED:connection_string];"},
        {"a -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc=\n-----END RSA PRIVATE KEY----- "
         "b",
         "a [REDACTED:private_key] b"},
        {"tok eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abc_def-123 x", "tok [REDACTED:jwt] x"},
        {"xoxb-1234567890-abcdefghij", "[REDACTED:slack_token]"},
        {"X-Api-Key: 9f8e7d6c5b4a", "X-Api-Key: [REDACTED:api_key]"},
        /* left alone */
        {"password reset email sent to user 42", NULL},
        {"token expired; please log in", NULL},
        {"Failed to refresh token: connection refused", NULL},
        {"password= user=bob", NULL},
        {"password=\"\" password=null password=${DB_PASSWORD} password=****", NULL},
        {"commit 3f786850e387550fdab836ed7e6dc881de23001b", NULL},
        {"req 550e8400-e29b-41d4-a716-446655440000 from 10.0.0.1:8080", NULL},
        {"PWD=/home/app OLDPWD=/tmp", NULL},
        {"hdfs://10.10.34.11:9000/pjhe/logs/2kSOSP.log:21+7", NULL},
        {"akka.tcp://sparkExecutorActorSystem@mesos-slave-07:55904", NULL},
        {"Auth successful for job_1445144423722_0020 (auth:SIMPLE)", NULL},
        {"missing bearer token in request", NULL},
        {"basic authentication disabled", NULL},
        {"task-manager-1 risk-engine sk-learn disk-usage", NULL},
        {"max_tokens=512 token_count=3 tokens: 5", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *o = redact(cases[i][0]);
        const char *want = cases[i][1] ? cases[i][1] : cases[i][0];
        if (strcmp(o, want) != 0)
            fail_msg("case %zu:\n  in:   %s\n  want: %s\n  got:  %s", i, cases[i][0], want, o);
        free(o);
    }
}

/* Generates the secrets; calls check(line, secret) for each encoded line. */
static void for_each_secret_line(void (*check)(const char *, const struct secret *, int, void *),
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

struct tally {
    size_t lines, leaks, by_enc[NENC];
    bool formats[NFORMATS];
};

static void check_line(const char *line, const struct secret *s, int enc, void *arg)
{
    struct tally *t = arg;
    struct asr_redact_stats st;
    char *o = redact_n(line, strlen(line), &st);
    const char *hit = leak(o, s->distinct);
    if (hit != NULL) {
        t->leaks++;
        print_error("leak (%s, %s): \"%s\" in\n  in:  %s\n  out: %s\n", s->format, ENC_NAMES[enc],
                    hit, line, o);
    }
    assert_true(st.redactions >= 1);
    t->lines++;
    t->by_enc[enc]++;
    for (int f = 0; f < NFORMATS; f++)
        if (s->format == FORMAT_NAMES[f])
            t->formats[f] = true;
    free(o);
}

static void test_synthetic_secrets(void **state)
{
    (void)state;
    struct tally t = {0};
    for_each_secret_line(check_line, &t);
    size_t nf = 0;
    for (int f = 0; f < NFORMATS; f++)
        nf += t.formats[f];
    print_message("redact: %d secrets in %zu formats, %zu lines (plain %zu, json %zu, url %zu, "
                  "split %zu): %zu leaked, %.2f%% redacted\n",
                  NFORMATS * PER_FORMAT, nf, t.lines, t.by_enc[ENC_PLAIN], t.by_enc[ENC_JSON],
                  t.by_enc[ENC_URL], t.by_enc[ENC_SPLIT], t.leaks,
                  100.0 * (double)(t.lines - t.leaks) / (double)t.lines);
    assert_true(NFORMATS * PER_FORMAT >= 1000);
    assert_true(nf >= 12);
    assert_int_equal(t.leaks, 0);
}

struct blob {
    struct asr_buf text;
    struct secret *secrets;
    size_t n;
};

static void add_to_blob(const char *line, const struct secret *s, int enc, void *arg)
{
    struct blob *b = arg;
    (void)enc;
    assert_int_equal(asr_buf_puts(&b->text, line), 0);
    assert_int_equal(asr_buf_puts(&b->text, "\n"), 0);
    if (b->n == 0 || strcmp(b->secrets[b->n - 1].distinct, s->distinct) != 0)
        b->secrets[b->n++] = *s;
}

/* All of them in one text, as a long prompt carries them: context must not leak across lines. */
static void test_synthetic_blob(void **state)
{
    (void)state;
    struct blob b = {.secrets = calloc(NFORMATS * PER_FORMAT, sizeof(struct secret))};
    assert_non_null(b.secrets);
    asr_buf_init(&b.text, 64u << 20);
    for_each_secret_line(add_to_blob, &b);
    assert_int_equal(b.n, NFORMATS * PER_FORMAT);
    struct asr_redact_stats st;
    char *o = redact_n(b.text.data, b.text.len, &st);
    struct grams g;
    grams_build(&g, o, strlen(o));
    leak_grams = &g;
    for (size_t i = 0; i < b.n; i++) {
        const char *hit = leak(o, b.secrets[i].distinct);
        if (hit != NULL)
            fail_msg("leak in blob (%s): %s", b.secrets[i].format, hit);
    }
    leak_grams = NULL;
    free(g.slot);
    print_message("redact: blob of %zu bytes, %zu redactions\n", b.text.len, st.redactions);
    char *o2 = redact(o);
    assert_string_equal(o, o2);
    free(o2);
    free(o);
    asr_buf_free(&b.text);
    free(b.secrets);
}

/* Redacts each line of a file; returns lines seen, counts altered ones (printed when verbose). */
static size_t benign_file(const char *path, size_t *altered, size_t max_print)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[65536];
    size_t n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        char *o = redact_n(line, len, NULL);
        if (strcmp(o, line) != 0) {
            if (*altered < max_print)
                print_message("redact: altered %s:%zu\n  in:  %s\n  out: %s\n", path, n + 1, line,
                              o);
            (*altered)++;
        }
        char *o2 = redact(o);
        assert_string_equal(o, o2);
        free(o2);
        free(o);
        n++;
    }
    fclose(f);
    return n;
}

static const char *source_dir(void)
{
    static char dir[4096];
    const char *env = getenv("ASR_SOURCE_DIR");
    if (env != NULL && env[0] != '\0')
        return env;
    snprintf(dir, sizeof(dir), "%s", __FILE__);
    char *cut = strstr(dir, "/tests/unit/test_redact.c");
    if (cut == NULL)
        fail_msg("set ASR_SOURCE_DIR to the source root");
    *cut = '\0';
    return dir;
}

static void test_benign_fixture(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof(path), "%s/tests/fixtures/redact/benign.txt", source_dir());
    size_t altered = 0, n = benign_file(path, &altered, 20);
    assert_true(n >= 250);
    print_message("redact: benign fixture: %zu of %zu lines altered (%.2f%%)\n", altered, n,
                  100.0 * (double)altered / (double)n);
    assert_true(altered * 100 <= n);
}

static void test_benign_loghub(void **state)
{
    (void)state;
    const char *dir = getenv("ASR_LOGHUB_DIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/work/shared/datasets/loghub_2k";
    DIR *d = opendir(dir);
    if (d == NULL) {
        print_message("redact: Loghub samples not found in %s; skipped\n", dir);
        skip();
    }
    size_t altered = 0, n = 0, files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s/%s_2k.log", dir, e->d_name, e->d_name);
        size_t k = benign_file(path, &altered, 20);
        files += k > 0;
        n += k;
    }
    closedir(d);
    if (n == 0) {
        print_message("redact: no Loghub *_2k.log files in %s; skipped\n", dir);
        skip();
    }
    print_message("redact: Loghub: %zu of %zu lines in %zu files altered (%.3f%%)\n", altered, n,
                  files, 100.0 * (double)altered / (double)n);
    assert_true(n >= 10000);
    assert_true(altered * 100 <= n);
}

static void check_idem(const char *line, const struct secret *s, int enc, void *arg)
{
    (void)s;
    (void)enc;
    (void)arg;
    char *o = redact(line);
    char *o2 = redact(o);
    if (strcmp(o, o2) != 0)
        fail_msg("not idempotent:\n  in:     %s\n  once:   %s\n  twice:  %s", line, o, o2);
    free(o2);
    free(o);
}

static void test_idempotent(void **state)
{
    (void)state;
    for_each_secret_line(check_idem, NULL);
    /* Markers typed by someone else, half-markers and markers glued to keys. */
    static const char *const odd[] = {
        "password=[REDACTED:password] [REDACTED:aws_secret_key] "
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "[REDACTED:x]token=abc [REDACTED:",
        "[REDACTED:]password=x",
        "aws\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY----- "
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AKIAIOSFODNN7EXAMPLE_pass=x",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789token=abc",
        "\\\\\\\"password\\\\\\\":\\\\\\\"x1y2z3\\\\\\\"",
        "%2525%253D%25",
        "password=%",
        "-----BEGIN RSA PRIVATE KEY-----\nabc",
    };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
        check_idem(odd[i], NULL, 0, NULL);
}

static void test_cap(void **state)
{
    (void)state;
    const char *in = "user=bob password=hunter2secret and a tail that goes on for a while";
    char *full = redact(in);
    for (size_t cap = 0; cap <= strlen(full) + 2; cap++) {
        struct asr_buf b;
        asr_buf_init(&b, cap);
        int rc = asr_redact(in, strlen(in), &b, NULL);
        assert_true(b.len <= cap);
        if (cap < strlen(full)) {
            assert_int_equal(rc, ASR_ETOOBIG);
            assert_true(b.truncated);
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(asr_buf_cstr(&b), full);
        }
        /* A cut never exposes any part of the secret. */
        assert_null(strstr(asr_buf_cstr(&b), "hunter"));
        assert_memory_equal(asr_buf_cstr(&b), full, b.len);
        asr_buf_free(&b);
    }
    free(full);
}

static void test_empty(void **state)
{
    (void)state;
    struct asr_buf b;
    asr_buf_init(&b, 16);
    struct asr_redact_stats st;
    memset(&st, 0xff, sizeof(st));
    assert_int_equal(asr_redact("", 0, &b, &st), 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(st.redactions, 0);
    assert_int_equal(asr_redact(NULL, 0, &b, NULL), 0);
    /* Appends: a second call adds to what is there. */
    assert_int_equal(asr_redact("a", 1, &b, NULL), 0);
    assert_int_equal(asr_redact("b", 1, &b, NULL), 0);
    assert_string_equal(asr_buf_cstr(&b), "ab");
    asr_buf_free(&b);
}

static void test_nul_bytes(void **state)
{
    (void)state;
    static const char in[] = "a\0password=hunter2\0b\0AKIAIOSFODNN7EXAMPLE\0\0%00\\";
    size_t n = sizeof(in) - 1;
    struct asr_buf b;
    asr_buf_init(&b, 1024);
    struct asr_redact_stats st;
    assert_int_equal(asr_redact(in, n, &b, &st), 0);
    static const char want[] =
        "a\0password=[REDACTED:password]\0b\0[REDACTED:aws_access_key_id]\0\0%00\\";
    assert_int_equal(b.len, sizeof(want) - 1);
    assert_memory_equal(b.data, want, sizeof(want) - 1);
    assert_int_equal(st.redactions, 2);
    assert_int_equal(st.by_kind[ASR_REDACT_PASSWORD], 1);
    assert_int_equal(st.by_kind[ASR_REDACT_AWS_ACCESS_KEY], 1);
    asr_buf_free(&b);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Repeats pat to n bytes. */
static char *repeat(const char *pat, size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    size_t k = strlen(pat);
    for (size_t i = 0; i < n; i++)
        p[i] = pat[i % k];
    p[n] = '\0';
    return p;
}

/*
 * Linear time: each hostile 1 MB pattern (built to defeat one detector's early exit) must take
 * no more than a few times what plain text of the same size does, and stay well under a second.
 */
static void test_linear_time(void **state)
{
    (void)state;
    static const char *const pats[] = {
        "The quick brown fox jumps over the lazy dog. ",
        "sk-a-",
        "eyJaaaaaaaaaaaaa-",
        "eyJaaaaaaaaaaaa.",
        "pwd=/pwd=/",
        "token=${token=${",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n",
        "x://aaaaaaaaaaaaaaaa:",
        "Bearer aaaa-",
        "aws ",
        "password=aaaa",
        "%25%25%",
        "\\\\\\\\\\",
        "AIza-",
        "::==::",
        "a:b@",
        "[REDACTED:password]",
        "\"password\":\"",
    };
    const size_t n = 1u << 20;
    double base = 0;
    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
        char *in = repeat(pats[i], n);
        double t0 = now_s();
        char *o = redact_n(in, n, NULL);
        double dt = now_s() - t0;
        if (i == 0)
            base = dt;
        print_message("redact: 1 MB of \"%s\": %.1f ms\n", pats[i], dt * 1e3);
        assert_true(dt < 2.0);
        assert_true(dt < 20 * base + 0.05);
        free(o);
        free(in);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_synthetic_secrets),
        cmocka_unit_test(test_synthetic_blob),
        cmocka_unit_test(test_benign_fixture),
        cmocka_unit_test(test_benign_loghub),
        cmocka_unit_test(test_idempotent),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_linear_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
