/*
 * test_signature.c - the signature set (src/detect/signature.c).
 *
 * Each hit is rendered as one string "id[name=value,...]" so a test states the whole expected
 * outcome of a line in one comparison: which signatures, in which order, with which captures.
 * Covers configured and generic detectors, captures in pattern order, every configuration error
 * (bad regex, dedupe field, too many groups, a construct Hyperscan refuses), the prefilter path
 * (back-references, lookarounds, atomic groups confirmed by PCRE2), report order, at most one
 * hit per signature, early stop, invalid UTF-8, empty sets, generic false positives, 100
 * signatures in one set, and block scans that must equal line-by-line scans.
 */
#include "detect/signature.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HITS 16

struct seen {
    size_t n;
    char hit[MAX_HITS][256];
    size_t stop_after; /* 0: never stop */
};

static bool collect_cb(void *data, const struct asr_sig_hit *h)
{
    struct seen *s = data;
    assert_true(s->n < MAX_HITS);
    char *o = s->hit[s->n];
    size_t cap = sizeof(s->hit[0]), len = 0;
    len += (size_t)snprintf(o + len, cap - len, "%s", h->id);
    if (h->ncaptures > 0) {
        for (size_t i = 0; i < h->ncaptures && len < cap; i++)
            len += (size_t)snprintf(o + len, cap - len, "%c%s=%.*s", i == 0 ? '[' : ',',
                                    h->captures[i].name, (int)h->captures[i].len,
                                    h->captures[i].value);
        if (len < cap)
            snprintf(o + len, cap - len, "]");
    }
    s->n++;
    return s->stop_after == 0 || s->n < s->stop_after;
}

/* Scans line and checks the rendered hits against the NULL-terminated list that follows. */
static void expect(struct asr_sigset *set, const char *line, ...)
{
    struct seen s = {0};
    int rc = asr_sigset_scan(set, line, strlen(line), collect_cb, &s);
    va_list ap;
    va_start(ap, line);
    size_t i = 0;
    for (const char *want; (want = va_arg(ap, const char *)) != NULL; i++) {
        if (i >= s.n)
            fail_msg("line '%s': expected hit %zu '%s', got only %zu hits", line, i, want, s.n);
        if (strcmp(s.hit[i], want) != 0)
            fail_msg("line '%s': hit %zu is '%s', expected '%s'", line, i, s.hit[i], want);
    }
    va_end(ap);
    if (s.n != i)
        fail_msg("line '%s': %zu hits, expected %zu (first extra: '%s')", line, s.n, i, s.hit[i]);
    assert_int_equal(rc, (int)i);
}

static const char *const no_dedupe[] = {NULL};

/* A configured signature with default severity and no dedupe fields. */
#define SIG(id_, pat_)                                                                             \
    {                                                                                              \
        .id = (char *)(id_), .pattern = (char *)(pat_), .severity = (char *)"error",               \
        .dedupe = (asr_argv)no_dedupe, .line = 10                                                  \
    }

static struct asr_sigset *make(const struct asr_signature_cfg *sigs, size_t n, unsigned flags)
{
    struct asr_sigset *set = NULL;
    struct asr_err err = {0};
    int rc = asr_sigset_create(sigs, n, flags, &set, &err);
    if (rc != 0)
        fail_msg("create: %s", asr_err_msg(&err, rc));
    return set;
}

static void expect_error(const struct asr_signature_cfg *sigs, size_t n, const char *msg)
{
    struct asr_sigset *set = (struct asr_sigset *)1;
    struct asr_err err = {0};
    int rc = asr_sigset_create(sigs, n, ASR_SIGSET_GENERIC, &set, &err);
    assert_int_equal(rc, ASR_ECONFIG);
    assert_null(set);
    if (strcmp(err.msg, msg) != 0)
        fail_msg("error '%s', expected '%s'", err.msg, msg);
}

static const char *const route_reason[] = {"route", NULL};

static void test_configured_and_generic(void **state)
{
    (void)state;
    struct asr_signature_cfg sigs[] = {
        {.id = "FAULT_SQL_INJECTION_TEST",
         .pattern = "FAULT_SQL_INJECTION_TEST route=(?<route>\\S+) reason=(?<reason>\\S+)",
         .severity = "critical",
         .dedupe = (asr_argv)route_reason,
         .line = 23},
        {.id = "FAULT_DB_TIMEOUT",
         .pattern = "FAULT_DB_TIMEOUT route=(?<route>\\S+) reason=(?<reason>\\S+)",
         .severity = "error",
         .dedupe = (asr_argv)(const char *[]){NULL},
         .line = 25},
    };
    struct asr_sigset *set = make(sigs, 2, ASR_SIGSET_GENERIC);
    assert_int_equal(asr_sigset_count(set), 2);
    assert_int_equal(asr_sigset_generic_count(set), 3);
    expect(set, "2024-05-01 12:00:00 INFO GET /health 200", NULL);
    expect(set, "ERROR FAULT_DB_TIMEOUT route=/orders reason=pool_exhausted",
           "FAULT_DB_TIMEOUT[route=/orders,reason=pool_exhausted]", "generic:error", NULL);
    expect(set, "x FAULT_SQL_INJECTION_TEST route=/q reason=quote",
           "FAULT_SQL_INJECTION_TEST[route=/q,reason=quote]", NULL);
    asr_sigset_destroy(set);
}

struct meta {
    bool checked;
};

static bool meta_cb(void *data, const struct asr_sig_hit *h)
{
    struct meta *m = data;
    if (!h->generic) {
        assert_int_equal(h->index, 0);
        assert_string_equal(h->id, "S");
        assert_string_equal(h->severity, "critical");
        assert_string_equal(h->dedupe[0], "route");
        assert_null(h->dedupe[1]);
    } else {
        assert_int_equal(h->index, 2);
        assert_string_equal(h->id, "generic:error");
        assert_string_equal(h->severity, "error");
        assert_null(h->dedupe[0]);
        assert_int_equal(h->ncaptures, 0);
    }
    m->checked = true;
    return true;
}

/* Hit fields besides id and captures: index, severity, dedupe; the set owns copies of them. */
static void test_hit_fields(void **state)
{
    (void)state;
    char id[] = "S", pat[] = "x=(?<route>\\d+)", sev[] = "critical", d0[] = "route";
    char *dd[] = {d0, NULL};
    struct asr_signature_cfg sig = {.id = id, .pattern = pat, .severity = sev, .dedupe = dd};
    struct asr_sigset *set = make(&sig, 1, ASR_SIGSET_GENERIC);
    memset(id, 'Z', 1);
    memset(sev, 'Z', 3);
    memset(d0, 'Z', 3);
    struct meta m = {0};
    assert_int_equal(asr_sigset_scan(set, "ERROR x=42", 10, meta_cb, &m), 2);
    assert_true(m.checked);
    asr_sigset_destroy(set);
}

static void test_captures_in_pattern_order(void **state)
{
    (void)state;
    struct asr_signature_cfg sigs[] = {
        SIG("PAY", "payment (?<op>\\w+) failed after (?<ms>\\d+) ms(?: code=(?<code>\\d+))?"),
        SIG("ORD", "(?<zeta>z+)-(?<alpha>a+)-(?P<mid>m+)"),
    };
    struct asr_sigset *set = make(sigs, 2, 0);
    expect(set, "payment refund failed after 350 ms", "PAY[op=refund,ms=350]", NULL);
    expect(set, "payment capture failed after 7 ms code=502", "PAY[op=capture,ms=7,code=502]",
           NULL);
    /* Named by sort order zeta > mid > alpha, but reported in pattern order. */
    expect(set, "zz-aaa-m", "ORD[zeta=zz,alpha=aaa,mid=m]", NULL);
    /* \w is ASCII-only (no UCP, in both engines), so a non-ASCII word is not \w+. */
    expect(set, "payment ré failed after 1 ms", NULL);
    asr_sigset_destroy(set);
}

static void test_bad_pattern(void **state)
{
    (void)state;
    struct asr_signature_cfg sigs[] = {
        SIG("OK", "fine"),
        {.id = "FAULT_X", .pattern = "abc(def", .line = 23},
    };
    expect_error(sigs, 2,
                 "signature FAULT_X (line 23): pattern: missing closing parenthesis at offset 7");
    struct asr_signature_cfg s2 = {.id = "Q", .pattern = "a{2,1}", .line = 4};
    expect_error(&s2, 1,
                 "signature Q (line 4): pattern: numbers out of order in {} quantifier at "
                 "offset 5");
}

static void test_dedupe_not_a_group(void **state)
{
    (void)state;
    struct asr_signature_cfg s = {.id = "FAULT_X",
                                  .pattern = "route=(\\S+) reason=(?<reason>\\S+)",
                                  .dedupe = (asr_argv)route_reason,
                                  .line = 23};
    expect_error(&s, 1,
                 "signature FAULT_X (line 23): dedupe field 'route' is not a named group of the "
                 "pattern");
    /* The same field as a named group is fine. */
    s.pattern = "route=(?<route>\\S+)";
    struct asr_sigset *set = make(&s, 1, 0);
    expect(set, "route=/a", "FAULT_X[route=/a]", NULL);
    asr_sigset_destroy(set);
}

static void test_too_many_groups(void **state)
{
    (void)state;
    char pat[512] = "";
    size_t len = 0;
    for (int i = 0; i <= ASR_SIG_MAX_CAPTURES; i++)
        len += (size_t)snprintf(pat + len, sizeof(pat) - len, "(?<g%d>x)", i);
    struct asr_signature_cfg s = {.id = "MANY", .pattern = pat, .line = 3};
    expect_error(&s, 1,
                 "signature MANY (line 3): pattern has 17 named groups, at most 16 are allowed");
    /* Exactly the cap works, and all 16 come back. */
    pat[len - strlen("(?<g16>x)")] = '\0';
    struct asr_sigset *set = make(&s, 1, 0);
    struct seen seen = {0};
    assert_int_equal(asr_sigset_scan(set, "xxxxxxxxxxxxxxxx", 16, collect_cb, &seen), 1);
    assert_non_null(strstr(seen.hit[0], "g0=x,g1=x"));
    assert_non_null(strstr(seen.hit[0], "g15=x]"));
    asr_sigset_destroy(set);
}

/* Constructs Hyperscan cannot take even as a prefilter are refused, naming the signature. */
static void test_hyperscan_refuses(void **state)
{
    (void)state;
    struct asr_signature_cfg s = {.id = "KEEP", .pattern = "foo\\Kbar", .line = 9};
    expect_error(&s, 1,
                 "signature KEEP (line 9): pattern: not supported by Hyperscan, even as a "
                 "prefilter: \\K at index 3 not supported.");
    struct asr_signature_cfg big = {.id = "BIG", .pattern = "a{1,60000}", .line = 2};
    struct asr_sigset *set = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_sigset_create(&big, 1, 0, &set, &err), ASR_ECONFIG);
    assert_non_null(strstr(err.msg, "signature BIG (line 2): "));
    assert_non_null(strstr(err.msg, "Bounded repeat is too large"));
}

static void test_prefilter_fallback(void **state)
{
    (void)state;
    struct asr_signature_cfg sigs[] = {
        SIG("REPEAT", "(\\w+) \\1"),
        SIG("NAMEDREF", "user=(?<user>\\w+) retry user=\\k<user>"),
        SIG("AHEAD", "timeout(?= after)"),
        SIG("BEHIND", "(?<!no )panic"),
        SIG("ATOMIC", "(?>a+)b"),
        SIG("POSSESSIVE", "x\\d++y"),
    };
    struct asr_sigset *set = make(sigs, 6, 0);
    expect(set, "hello hello world", "REPEAT", NULL);
    expect(set, "hello world", NULL);
    expect(set, "user=bob retry user=bob", "NAMEDREF[user=bob]", NULL);
    expect(set, "retry retry user=bob retry user=bob", "REPEAT", "NAMEDREF[user=bob]", NULL);
    expect(set, "user=bob retry user=eve", NULL);
    expect(set, "timeout after 3s", "AHEAD", NULL);
    expect(set, "timeout 3s", NULL);
    expect(set, "kernel panic", "BEHIND", NULL);
    expect(set, "no panic", NULL);
    expect(set, "aaab", "ATOMIC", NULL);
    expect(set, "x123y", "POSSESSIVE", NULL);
    expect(set, "x123", NULL);
    asr_sigset_destroy(set);
}

/* Compiled in a child process (ASR_SIGSET_APART): the same hits, prefilters and captures
 * included, and the same error messages. */
static void test_compile_apart(void **state)
{
    (void)state;
    struct asr_signature_cfg sigs[] = {
        SIG("REPEAT", "(\\w+) \\1"),
        SIG("NAMEDREF", "user=(?<user>\\w+) retry user=\\k<user>"),
        SIG("PLAIN", "disk full on (?<dev>\\S+)"),
    };
    struct asr_sigset *set = make(sigs, 3, ASR_SIGSET_GENERIC | ASR_SIGSET_APART);
    assert_int_equal(asr_sigset_count(set), 3);
    assert_true(asr_sigset_generic_count(set) > 0);
    expect(set, "hello hello world", "REPEAT", NULL);
    expect(set, "user=bob retry user=bob", "NAMEDREF[user=bob]", NULL);
    expect(set, "user=bob retry user=eve", NULL);
    expect(set, "ERROR disk full on /dev/sda1", "PLAIN[dev=/dev/sda1]", "generic:error", NULL);
    expect(set, "all good", NULL);
    asr_sigset_destroy(set);
    set = make(NULL, 0, ASR_SIGSET_APART);
    expect(set, "ERROR x", NULL);
    asr_sigset_destroy(set);
    struct asr_signature_cfg bad = {.id = "KEEP", .pattern = "foo\\Kbar", .line = 9};
    struct asr_err err = {0};
    set = NULL;
    assert_int_equal(asr_sigset_create(&bad, 1, ASR_SIGSET_APART, &set, &err), ASR_ECONFIG);
    assert_null(set);
    assert_string_equal(err.msg, "signature KEEP (line 9): pattern: not supported by Hyperscan, "
                                 "even as a prefilter: \\K at index 3 not supported.");
}

/* Hits come in config order, then generic table order, whatever their place in the line. */
static void test_order_and_once(void **state)
{
    (void)state;
    struct asr_signature_cfg sigs[] = {
        SIG("C", "ccc"),
        SIG("A", "aaa"),
        SIG("B", "bbb"),
    };
    struct asr_sigset *set = make(sigs, 3, ASR_SIGSET_GENERIC);
    expect(set, "aaa bbb ccc", "C", "A", "B", NULL);
    expect(set, "Out of memory: Killed process 4 FATAL ERROR bbb", "B", "generic:fatal",
           "generic:oom", "generic:error", NULL);
    /* At most once per signature, however often it matches. */
    expect(set, "ccc ccc ccc ERROR ERROR", "C", "generic:error", NULL);
    asr_sigset_destroy(set);
}

static void test_early_stop(void **state)
{
    (void)state;
    struct asr_signature_cfg sigs[] = {SIG("A", "a"), SIG("B", "b"), SIG("C", "c")};
    struct asr_sigset *set = make(sigs, 3, ASR_SIGSET_GENERIC);
    struct seen s = {.stop_after = 1};
    assert_int_equal(asr_sigset_scan(set, "c b a ERROR", 11, collect_cb, &s), 1);
    assert_string_equal(s.hit[0], "A");
    /* Nothing of the stopped scan leaks into the next one. */
    expect(set, "b", "B", NULL);
    s = (struct seen){.stop_after = 2};
    assert_int_equal(asr_sigset_scan(set, "c b a ERROR", 11, collect_cb, &s), 2);
    expect(set, "nothing", NULL);
    asr_sigset_destroy(set);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    struct asr_signature_cfg sigs[] = {
        SIG("KV", "key=(?<v>\\S+)"),
        SIG("DOT", "a.b"),
    };
    struct asr_sigset *set = make(sigs, 2, ASR_SIGSET_GENERIC);
    /* `.` is one character, not one byte. */
    expect(set,
           "a\xc3\xa9"
           "b",
           "DOT", NULL);
    expect(set,
           "a\xe2\x82\xac"
           "b",
           "DOT", NULL);
    /* Bad bytes become U+FFFD, so captures and matches see what the framer would give. */
    expect(set, "key=\xff\xfe ERROR", "KV[v=\xef\xbf\xbd\xef\xbf\xbd]", "generic:error", NULL);
    expect(set,
           "a\xff"
           "b",
           "DOT", NULL);
    expect(set, "key=\xc3", "KV[v=\xef\xbf\xbd]", NULL);                   /* truncated */
    expect(set, "key=\xc0\xafx", "KV[v=\xef\xbf\xbd\xef\xbf\xbdx]", NULL); /* overlong */
    expect(set, "key=\xed\xa0\x80", "KV[v=\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd]",
           NULL); /* surrogate */
    expect(set, "key=\xf4\x90\x80\x80z", "KV[v=\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz]",
           NULL); /* > U+10FFFF */
    /* Valid 4-byte sequences and the replacement character itself pass through. */
    expect(set, "key=\xf0\x9f\x98\x80", "KV[v=\xf0\x9f\x98\x80]", NULL);
    expect(set, "key=\xef\xbf\xbd", "KV[v=\xef\xbf\xbd]", NULL);
    /* A NUL byte is valid UTF-8 and does not end the line. */
    struct seen s = {0};
    assert_int_equal(asr_sigset_scan(set, "x\0 ERROR", 8, collect_cb, &s), 1);
    assert_string_equal(s.hit[0], "generic:error");
    /* A long line of mixed bytes, every byte value. */
    char big[4096];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7 + 1);
    s = (struct seen){0};
    assert_true(asr_sigset_scan(set, big, sizeof(big), collect_cb, &s) >= 0);
    asr_sigset_destroy(set);
}

static void test_empty_sets(void **state)
{
    (void)state;
    struct asr_sigset *set = make(NULL, 0, 0);
    assert_int_equal(asr_sigset_count(set), 0);
    assert_int_equal(asr_sigset_generic_count(set), 0);
    expect(set, "FATAL ERROR out of memory", NULL);
    expect(set, "", NULL);
    asr_sigset_destroy(set);

    set = make(NULL, 0, ASR_SIGSET_GENERIC);
    assert_int_equal(asr_sigset_count(set), 0);
    assert_int_equal(asr_sigset_generic_count(set), 3);
    expect(set, "", NULL);
    expect(set, "ERROR", "generic:error", NULL);
    asr_sigset_destroy(set);

    /* A pattern that matches the empty string matches every line, as in PCRE2. */
    struct asr_signature_cfg any[] = {SIG("ANY", "x*"), SIG("EMPTY", "")};
    set = make(any, 2, 0);
    expect(set, "", "ANY", "EMPTY", NULL);
    expect(set, "abc", "ANY", "EMPTY", NULL);
    asr_sigset_destroy(set);
    asr_sigset_destroy(NULL);
}

static void test_generic_hits(void **state)
{
    (void)state;
    struct asr_sigset *set = make(NULL, 0, ASR_SIGSET_GENERIC);
    static const struct {
        const char *line, *kind;
    } hits[] = {
        {"2024-01-01 FATAL db gone", "generic:fatal"},
        {"[FATAL] x", "generic:fatal"},
        {"panic: runtime error: index out of range", "generic:fatal"},
        {"fatal error: all goroutines are asleep - deadlock!", "generic:fatal"},
        {"thread 'main' panicked at src/main.rs:2:5", "generic:fatal"},
        {"Segmentation fault (core dumped)", "generic:fatal"},
        {"worker killed by SIGSEGV", "generic:fatal"},
        {"level=fatal msg=bye", "generic:fatal"},
        {"{\"level\":\"panic\",\"msg\":\"x\"}", "generic:fatal"},
        {"malloc: out of memory", "generic:oom"},
        {"Out of memory: Killed process 1234 (java)", "generic:oom"},
        {"java.lang.OutOfMemoryError: Java heap space", "generic:oom"},
        {"fork: Cannot allocate memory", "generic:oom"},
        {"MemoryError", "generic:oom"},
        {"terminate called after throwing an instance of 'std::bad_alloc'", "generic:oom"},
        {"kernel: oom-kill:constraint=CONSTRAINT_NONE", "generic:oom"},
        {"Last State: Terminated Reason: OOMKilled", "generic:oom"},
        {"2024-01-01 12:00:00,123 ERROR [main] boom", "generic:error"},
        {"ERROR: x", "generic:error"},
        {"level=ERROR", "generic:error"},
        {"CRITICAL:root:disk full", "generic:error"},
        {"SEVERE: Servlet failed", "generic:error"},
        {"BUILD FAILURE", "generic:error"},
        {"ts=1 level=error msg=\"db\"", "generic:error"},
        {"{\"level\": \"error\", \"msg\": \"x\"}", "generic:error"},
        {"Traceback (most recent call last):", "generic:error"},
        {"java.lang.NullPointerException", "generic:error"},
        {"Exception in thread \"main\"", "generic:error"},
        {"caught IllegalStateException: bad", "generic:error"},
        {"a.out: t.c:3: main: Assertion `x > 0' failed.", "generic:error"},
        {"thread 'x' assertion failed: a == b", "generic:error"},
        {"assertion `left == right` failed", "generic:error"},
        {"AssertionError: expected 1", "generic:error"},
        {"[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
         "generic:error"},
        {"2024/01/01 10:00:00 [crit] 12#12: *1 open() failed", "generic:error"},
        {"[Tue Oct 11 14:32:52.123 2024] [core:error] [pid 35708] AH00037", "generic:error"},
        {"2024/01/01 10:00:00 [emerg] 1#1: bind() failed", "generic:error"},
    };
    for (size_t i = 0; i < sizeof(hits) / sizeof(hits[0]); i++)
        expect(set, hits[i].line, hits[i].kind, NULL);
    asr_sigset_destroy(set);
}

static void test_generic_false_positives(void **state)
{
    (void)state;
    struct asr_sigset *set = make(NULL, 0, ASR_SIGSET_GENERIC);
    static const char *const quiet[] = {
        "INFO run finished: 0 errors, 0 failures",
        "metrics ERRORS_TOTAL=0 FATAL_COUNT=0",
        "counters ERROR=0 CRITICAL=0",
        "X_ERROR_RATE 0.0",
        "NON-FATAL warning ignored",
        "ERROR-free run",
        "no errors found",
        "error handling enabled",
        "fatal: not a git repository",
        "ExceptionHandler registered",
        "exceptions=0",
        "Exceptions: none",
        "Exception=0",
        "don't panic, it is fine",
        "memory usage ok",
        "level=info msg=\"error budget fine\"",
        "{\"level\":\"info\",\"error\":null}",
        "FAILURES: 0",
        "TERRORIST attack simulation",
        "SEVERELY degraded",
        "[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok",
        "2024/01/01 10:00:00 [warn] 12#12: upstream slow",
        "[errors] section of the report",
        "",
    };
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
        expect(set, quiet[i], NULL);
    asr_sigset_destroy(set);
}

/* 100 signatures in one set, half literals and half regexes with captures. */
static void test_hundred_signatures(void **state)
{
    (void)state;
    enum { N = 100 };
    struct asr_signature_cfg sigs[N];
    char ids[N][16], pats[N][96];
    const char *empty[] = {NULL};
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "S%03d", i);
        if (i % 2 == 0)
            snprintf(pats[i], sizeof(pats[i]), "FAULT_CODE_%04d\\b", i);
        else
            snprintf(pats[i], sizeof(pats[i]), "svc%d (?<op>\\w+) failed after (?<ms>\\d+) ms", i);
        sigs[i] = (struct asr_signature_cfg){
            .id = ids[i], .pattern = pats[i], .dedupe = (asr_argv)empty, .line = i + 1};
    }
    struct asr_sigset *set = make(sigs, N, ASR_SIGSET_GENERIC);
    assert_int_equal(asr_sigset_count(set), N);
    for (int i = 0; i < N; i++) {
        char line[128], want[64];
        if (i % 2 == 0) {
            snprintf(line, sizeof(line), "2024 INFO x FAULT_CODE_%04d y", i);
            snprintf(want, sizeof(want), "S%03d", i);
        } else {
            snprintf(line, sizeof(line), "2024 INFO svc%d pay failed after %d ms", i, i * 3);
            snprintf(want, sizeof(want), "S%03d[op=pay,ms=%d]", i, i * 3);
        }
        expect(set, line, want, NULL);
    }
    expect(set, "FAULT_CODE_0004 FAULT_CODE_0002 FAULT_CODE_00020 ERROR", "S002", "S004",
           "generic:error", NULL);
    expect(set, "FAULT_CODE_0001 svc2 x failed after 1 ms", NULL);
    asr_sigset_destroy(set);
}

/* Renders every hit of a line-by-line scan of buf, "LINE:hit" per hit, into out. */
struct lines {
    const char *buf;
    char out[1 << 17];
    size_t len;
    size_t stop_after, n;
};

static bool line_hit_cb(void *data, const char *line, size_t len, const struct asr_sig_hit *h)
{
    struct lines *l = data;
    struct seen one = {0};
    collect_cb(&one, h);
    l->len += (size_t)snprintf(l->out + l->len, sizeof(l->out) - l->len, "%td:%.*s:%s\n",
                               line - l->buf, (int)len, line, one.hit[0]);
    assert_true(l->len < sizeof(l->out));
    l->n++;
    return l->stop_after == 0 || l->n < l->stop_after;
}

struct per_line {
    struct lines *l;
    const char *line;
    size_t len;
};

static bool per_line_cb(void *data, const struct asr_sig_hit *h)
{
    struct per_line *p = data;
    return line_hit_cb(p->l, p->line, p->len, h);
}

/* asr_sigset_scan_block() must give exactly what asr_sigset_scan() gives line by line. */
static void same_as_lines(struct asr_sigset *set, const char *buf, size_t len)
{
    struct lines a = {.buf = buf}, b = {.buf = buf};
    int ra = asr_sigset_scan_block(set, buf, len, line_hit_cb, &a);
    int rb = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - buf) : len;
        struct per_line p = {&b, buf + i, e - i};
        rb += asr_sigset_scan(set, buf + i, e - i, per_line_cb, &p);
        i = e + 1;
    }
    if (ra != rb || strcmp(a.out, b.out) != 0)
        fail_msg("block (%d hits):\n%s\nline by line (%d hits):\n%s", ra, a.out, rb, b.out);
}

static void test_block_scan(void **state)
{
    (void)state;
    struct asr_signature_cfg sigs[] = {
        SIG("KV", "key=(?<v>\\S+)"),
        SIG("ACROSS", "a\\s+b"),  /* would run across a newline in a block */
        SIG("NEG", "x[^y]z"),     /* likewise */
        SIG("START", "\\Abegin"), /* \A and \z mean the line in a line scan */
        SIG("END", "end\\z"),
        SIG("LINE", "^whole line$"),
        SIG("REPEAT", "(\\w+) \\1"), /* prefiltered */
        SIG("QUOTED", "\\Q\\A\\E"),  /* a literal backslash-A, not an anchor */
        SIG("ESC", "\\\\A"),         /* an escaped backslash, then A */
    };
    struct asr_sigset *set = make(sigs, sizeof(sigs) / sizeof(sigs[0]), ASR_SIGSET_GENERIC);
    static const char *const blocks[] = {
        "",
        "\n",
        "\n\n\n",
        "key=1\nnothing\nkey=2 ERROR\n",
        "key=3",
        "a\nb\nx\nz\na b\nxqz\n",
        "begin here\nwe begin\nthe end\nend not\nwhole line\n whole line\n",
        "hello hello\nhello\nhello\n",
        "path \\A here\nA\n\\A\n",
        "FATAL one\nout of memory\nok\njava.lang.IllegalStateException\n",
        "key=\xff\xfe bad bytes\nERROR\n", /* not UTF-8: the line-by-line fallback */
        "no newline at the end ERROR",
    };
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++)
        same_as_lines(set, blocks[i], strlen(blocks[i]));

    /* A pseudo-random soup of the patterns' pieces, in blocks of many lines. */
    static const char *const bits[] = {"a",     " ",    "b",     "\n",         "x",
                                       "z",     "key=", "begin", "end",        "ERROR",
                                       "hello", "\t",   "y",     "whole line", "FATAL"};
    char buf[2048];
    unsigned r = 12345;
    for (int round = 0; round < 200; round++) {
        size_t len = 0;
        while (len < sizeof(buf) - 16) {
            r = r * 1103515245u + 12345u;
            const char *p = bits[(r >> 16) % (sizeof(bits) / sizeof(bits[0]))];
            memcpy(buf + len, p, strlen(p));
            len += strlen(p);
        }
        same_as_lines(set, buf, len);
    }

    /* Early stop, and a pattern that matches everywhere (also after the last newline). */
    struct lines l = {.buf = "ERROR\nERROR\nERROR\n", .stop_after = 2};
    assert_int_equal(asr_sigset_scan_block(set, l.buf, strlen(l.buf), line_hit_cb, &l), 2);
    assert_string_equal(l.out, "0:ERROR:generic:error\n6:ERROR:generic:error\n");
    asr_sigset_destroy(set);

    struct asr_signature_cfg any = SIG("ANY", "x*");
    set = make(&any, 1, 0);
    same_as_lines(set, "a\nb\n", 4);
    same_as_lines(set, "a\n\n", 3);
    asr_sigset_destroy(set);

    set = make(NULL, 0, 0);
    same_as_lines(set, "ERROR\n", 6);
    asr_sigset_destroy(set);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configured_and_generic),
        cmocka_unit_test(test_hit_fields),
        cmocka_unit_test(test_captures_in_pattern_order),
        cmocka_unit_test(test_bad_pattern),
        cmocka_unit_test(test_dedupe_not_a_group),
        cmocka_unit_test(test_too_many_groups),
        cmocka_unit_test(test_hyperscan_refuses),
        cmocka_unit_test(test_prefilter_fallback),
        cmocka_unit_test(test_order_and_once),
        cmocka_unit_test(test_early_stop),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_empty_sets),
        cmocka_unit_test(test_generic_hits),
        cmocka_unit_test(test_generic_false_positives),
        cmocka_unit_test(test_hundred_signatures),
        cmocka_unit_test(test_compile_apart),
        cmocka_unit_test(test_block_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
