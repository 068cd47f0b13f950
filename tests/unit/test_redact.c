/*
 * test_redact.c - the redactor (src/strategy/redact.c).
 *
 * The core check is a generator (synth_secrets.h, shared with test_redact_wire.c): a seeded
 * random source makes 1,100 synthetic secrets in 22 formats, embeds each in realistic log lines,
 * and writes each line in every encoding the format allows (plain, JSON-escaped inside a JSON log
 * record, URL-encoded inside a query string, split across lines). After redaction no 10-byte window
 * of a secret's random part may appear in the output, neither raw nor JSON-escaped nor URL-encoded.
 * The benign side runs a fixture of ordinary log lines (tests/fixtures/redact/benign.txt) and, when
 * present, the Loghub 2k samples in /work/shared/datasets/loghub_2k (or $ASR_LOGHUB_DIR), and
 * prints the share of lines altered. Also: exact outputs for hand-picked lines, idempotence, caps,
 * empty input, NUL bytes, and time on hostile 1 MB inputs.
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

#include "synth_secrets.h"

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
