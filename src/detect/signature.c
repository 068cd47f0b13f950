/*
 * signature.c - every signature of a service against a line in one Hyperscan pass; see
 * signature.h.
 *
 * Second stage of detection, after the framer: each line goes through one Hyperscan block-mode
 * database that holds all configured patterns and the generic detectors, each compiled with
 * HS_FLAG_SINGLEMATCH (we only need to know that a signature matched, not where, so Hyperscan
 * can stop tracking it after the first match). The match callback only sets a bit per pattern
 * id; after the scan the bits are reported in id order, which is config order followed by the
 * generic table order, so the order of hits does not depend on where in the line they matched.
 *
 * PCRE2 runs only on a hit, and only when it has something to add: the named captures of a
 * configured signature, or the confirmation of a pattern that Hyperscan could compile only in
 * prefilter mode (a back-reference, a lookaround, an atomic group: Hyperscan then matches a
 * superset and PCRE2 decides). Constructs that Hyperscan cannot take even as a prefilter (\K,
 * subroutine calls, conditionals, control verbs, very large bounded repeats) make the signature
 * an error naming the signature, instead of a pattern silently run by PCRE2 on every line.
 *
 * Both engines work in UTF-8 mode (`.` is one character), since the framer promises valid
 * UTF-8. Hyperscan's results on invalid UTF-8 are undefined, so a line that is not valid UTF-8
 * anyway (a caller that bypassed the framer) is first copied with each bad byte replaced by
 * U+FFFD, exactly as the framer would have done, and that copy is scanned.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "detect/signature.h"

#include "asr/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <hs/hs.h>
#include <limits.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MATCH_LIMIT 1000000u /* bounds PCRE2 backtracking on hostile lines */
#define DEPTH_LIMIT 100000u  /* bounds PCRE2 backtracking depth (memory) */
#define JIT_STACK_MAX (1u << 20)
#define PATTERN_MAX 4096 /* bytes; longer patterns are refused (bounded compile time) */

/* Flags for every pattern: see the file comment. ALLOWEMPTY because PCRE2 accepts patterns that
 * match the empty string (they then match every line), and so must we. */
#define HS_BASE_FLAGS (HS_FLAG_SINGLEMATCH | HS_FLAG_UTF8 | HS_FLAG_ALLOWEMPTY)

/*
 * The generic detectors, one Hyperscan pattern per kind (an alternation), so each kind is
 * reported at most once per line. Level words are matched as whole words of their own:
 *   PRE  = start of line or a character that is neither a word character nor '-'
 *          ("NON-FATAL", "X_ERROR" are not hits),
 *   POST = end of line or a character that is none of word, '=' and '-'
 *          ("ERRORS_TOTAL=0", "ERROR=0", "ERROR-free" are not hits; "[ERROR]", "ERROR:",
 *          "level=ERROR" are).
 * Lower-case prose ("0 errors", "error handling", "fatal: not a git repository") is never a hit:
 * only structured lower-case levels are (logfmt `level=error`, JSON `"level":"error"`).
 *
 *   fatal  FATAL as a level word; Go's `panic: ` and `fatal error: ` at the start of a line
 *          (the runtime prints them there); Rust's `panicked at`; "Segmentation fault",
 *          SIGSEGV, "core dumped"; level=fatal|panic in logfmt and JSON.
 *   oom    "out of memory" in any case (libc, the kernel's "Out of memory: Killed process");
 *          Java's OutOfMemoryError; "Cannot allocate memory" (ENOMEM's strerror); Python's
 *          MemoryError; C++'s std::bad_alloc; the kernel's oom-kill(er); Kubernetes' OOMKilled.
 *   error  ERROR, CRITICAL, SEVERE (java.util.logging), FAILURE as level words; level=error|err|
 *          critical in logfmt and JSON; Python's "Traceback (most recent call last)"; any word
 *          ending in Exception (`\w*Exception\b`, with POST so "Exception=0" is not a hit; the
 *          `\w*` is implied because only the existence of a match counts); assertion failures
 *          (glibc's "Assertion `x' failed", Rust's "assertion failed" and "assertion `left ==
 *          right` failed", Python's and Java's AssertionError); the bracketed levels of Apache's
 *          and nginx's error logs, "[error]", "[crit]", "[alert]", "[emerg]" (and Apache 2.4's
 *          "[module:error]").
 */
#define PRE "(?:^|[^\\w-])"
#define POST "(?:[^\\w=-]|$)"
#define LEVEL_KV(words)                                                                            \
    "(?i:\\b(?:level|lvl|severity)=[\"']?(?:" words                                                \
    ")\\b|\"(?:level|lvl|severity)\"\\s*:\\s*\"(?:" words ")\")"

struct generic {
    const char *id;
    const char *severity;
    const char *pattern;
};

static const struct generic generics[] = {
    {"generic:fatal", "critical",
     PRE "FATAL" POST "|^panic: |^fatal error: |panicked at|Segmentation fault|\\bSIGSEGV\\b|"
         "core dumped|" LEVEL_KV("fatal|panic")},
    {"generic:oom", "critical",
     "(?i:out of memory)|OutOfMemoryError|Cannot allocate memory|\\bMemoryError\\b|"
     "std::bad_alloc|\\boom-kill|\\bOOMKilled\\b"},
    {"generic:error", "error",
     PRE "(?:ERROR|CRITICAL|SEVERE|FAILURE)" POST "|" LEVEL_KV(
         "error|err|critical") "|"
                               "Traceback \\(most recent call last\\)|Exception" POST "|"
                               "[Aa]ssertion [`'].*[`'] failed|[Aa]ssertion "
                               "failed|\\bAssertionError\\b|"
                               /* Apache's and nginx's error logs: "[error]", "[crit]", ... and
                                  Apache 2.4's "[core:error]" (module:level) */
                               "\\[(?:\\w+:)?(?:error|crit|alert|emerg)\\]"},
};
#define NGENERIC (sizeof(generics) / sizeof(generics[0]))

static const char *const no_dedupe[] = {NULL};

struct sig {
    char *id;
    char *severity;
    char **dedupe;     /* NULL-terminated, owned */
    pcre2_code *re;    /* NULL for generic detectors */
    bool prefilter;    /* Hyperscan matches a superset; PCRE2 must confirm */
    unsigned hs_flags; /* flags it is compiled with in the database */
    uint32_t ncap;     /* named groups, sorted by group number */
    uint32_t capnum[ASR_SIG_MAX_CAPTURES];
    char *capname[ASR_SIG_MAX_CAPTURES];
};

struct asr_sigset {
    size_t n;        /* configured signatures: sigs[0..n) */
    size_t ngeneric; /* generic detectors: sigs[n..n+ngeneric), in table order */
    struct sig *sigs;
    hs_database_t *db; /* NULL when the set is empty */
    hs_scratch_t *scratch;
    uint64_t *bits;            /* one bit per Hyperscan id, set by the match callback */
    size_t lo, hi;             /* words of bits touched during the current scan: [lo, hi) */
    pcre2_match_data *md;      /* sized for the largest capture count in the set */
    pcre2_match_context *mctx; /* match and depth limits, JIT stack */
    pcre2_jit_stack *jit;
    char *fix; /* the U+FFFD-repaired copy of an invalid UTF-8 line */
    size_t fixcap;
    /* asr_sigset_scan_block(): a second database, built on first use (see build_block_db) */
    char **patterns;    /* every pattern's text, kept for that build */
    hs_database_t *bdb; /* NULL until built, or if it could not be (then lines go one by one) */
    bool bdb_tried;
    const char *bbuf; /* the block being scanned, for the callback */
    size_t blen;
    struct cand *cands; /* candidate lines of the current block */
    size_t ncand, candcap;
    bool cand_unsorted, cand_oom;
};

/* A line of a block that some pattern matched in (or across the end of): [start, end). */
struct cand {
    size_t start, end;
};

static void sig_free(struct sig *g)
{
    free(g->id);
    free(g->severity);
    if (g->dedupe) {
        for (char **p = g->dedupe; *p; p++)
            free(*p);
        free(g->dedupe);
    }
    pcre2_code_free(g->re);
    for (uint32_t i = 0; i < g->ncap; i++)
        free(g->capname[i]);
}

void asr_sigset_destroy(struct asr_sigset *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->sigs && i < s->n + s->ngeneric; i++)
        sig_free(&s->sigs[i]);
    free(s->sigs);
    hs_free_scratch(s->scratch);
    hs_free_database(s->db);
    free(s->bits);
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit);
    free(s->fix);
    for (size_t i = 0; s->patterns && i < s->n + s->ngeneric; i++)
        free(s->patterns[i]);
    free(s->patterns);
    hs_free_database(s->bdb);
    free(s->cands);
    free(s);
}

static int cmp_capnum(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    return (*x > *y) - (*x < *y);
}

/* Fills g->capnum/capname from the pattern's name table, in group-number (pattern) order. */
static int load_names(struct sig *g, const struct asr_signature_cfg *c, struct asr_err *err)
{
    uint32_t count = 0, esize = 0;
    PCRE2_SPTR table = NULL;
    pcre2_pattern_info(g->re, PCRE2_INFO_NAMECOUNT, &count);
    if (count == 0)
        return 0;
    if (count > ASR_SIG_MAX_CAPTURES)
        return asr_err_set(err, ASR_ECONFIG,
                           "signature %s (line %d): pattern has %u named groups, at most %d are "
                           "allowed",
                           c->id, c->line, count, ASR_SIG_MAX_CAPTURES);
    pcre2_pattern_info(g->re, PCRE2_INFO_NAMEENTRYSIZE, &esize);
    pcre2_pattern_info(g->re, PCRE2_INFO_NAMETABLE, &table);
    /* Each entry: the group number in two bytes (big-endian), then the NUL-terminated name.
     * Sort (number, entry index) pairs packed in one word so names follow the pattern. */
    uint32_t order[ASR_SIG_MAX_CAPTURES];
    for (uint32_t i = 0; i < count; i++) {
        PCRE2_SPTR e = table + (size_t)i * esize;
        order[i] = ((uint32_t)e[0] << 24) | ((uint32_t)e[1] << 16) | i;
    }
    qsort(order, count, sizeof(order[0]), cmp_capnum);
    for (uint32_t i = 0; i < count; i++) {
        PCRE2_SPTR e = table + (size_t)(order[i] & 0xffffu) * esize;
        g->capnum[i] = order[i] >> 16;
        if ((g->capname[i] = strdup((const char *)e + 2)) == NULL)
            return ASR_ENOMEM;
        g->ncap = i + 1;
    }
    return 0;
}

static char **dup_argv(const char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    char **d = calloc(n + 1, sizeof(*d));
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if ((d[i] = strdup(v[i])) == NULL) {
            for (size_t j = 0; j < i; j++)
                free(d[j]);
            free(d);
            return NULL;
        }
    return d;
}

/* Compiles one configured signature with PCRE2 and checks its names against dedupe. */
static int prepare(struct sig *g, const struct asr_signature_cfg *c, bool analyse,
                   struct asr_err *err)
{
    if (!c->id || !c->pattern)
        return asr_err_set(err, ASR_EINVAL, "signature (line %d): no id or no pattern", c->line);
    if ((g->id = strdup(c->id)) == NULL ||
        (g->severity = strdup(c->severity ? c->severity : "error")) == NULL ||
        (g->dedupe = dup_argv((const char *const *)c->dedupe)) == NULL)
        return ASR_ENOMEM;
    size_t plen = strlen(c->pattern);
    if (plen > PATTERN_MAX)
        return asr_err_set(err, ASR_ECONFIG,
                           "signature %s (line %d): pattern is %zu bytes, at most %d are allowed",
                           c->id, c->line, plen, PATTERN_MAX);
    int ecode;
    PCRE2_SIZE eoff;
    g->re = pcre2_compile((PCRE2_SPTR)c->pattern, plen, PCRE2_UTF, &ecode, &eoff, NULL);
    if (!g->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ecode, msg, sizeof(msg));
        return asr_err_set(err, ASR_ECONFIG, "signature %s (line %d): pattern: %s at offset %zu",
                           c->id, c->line, (const char *)msg, (size_t)eoff);
    }
    int rc = load_names(g, c, err);
    if (rc)
        return rc;
    for (char **d = g->dedupe; *d; d++)
        if (pcre2_substring_number_from_name(g->re, (PCRE2_SPTR)*d) <= 0)
            return asr_err_set(err, ASR_ECONFIG,
                               "signature %s (line %d): dedupe field '%s' is not a named group "
                               "of the pattern",
                               c->id, c->line, *d);
    /* JIT is an optimisation: without it (no JIT on this CPU, or out of executable memory)
     * pcre2_match() interprets the pattern, with the same results. */
    (void)pcre2_jit_compile(g->re, PCRE2_JIT_COMPLETE);

    g->hs_flags = HS_BASE_FLAGS;
    if (!analyse)
        return 0; /* the compiler process did the analysis (ASR_SIGSET_APART) */
    /* Exact if Hyperscan can, else prefilter; a pattern it cannot parse either way is refused. */
    hs_expr_info_t *info = NULL;
    hs_compile_error_t *ce = NULL;
    g->hs_flags = HS_BASE_FLAGS;
    if (hs_expression_info(c->pattern, g->hs_flags, &info, &ce) != HS_SUCCESS) {
        hs_free_compile_error(ce);
        ce = NULL;
        g->hs_flags |= HS_FLAG_PREFILTER;
        g->prefilter = true;
        if (hs_expression_info(c->pattern, g->hs_flags, &info, &ce) != HS_SUCCESS) {
            rc = asr_err_set(err, ASR_ECONFIG,
                             "signature %s (line %d): pattern: not supported by Hyperscan, even "
                             "as a prefilter: %s",
                             c->id, c->line, ce ? ce->message : "unknown error");
            hs_free_compile_error(ce);
            return rc;
        }
    }
    free(info);
    return 0;
}

/* Compiles every pattern into one database. A pattern that Hyperscan's analysis accepted but
 * its compiler then rejects (it can happen: atomic groups pass hs_expression_info) is moved to
 * prefilter mode and the database is compiled again; if it was already a prefilter, the error
 * names it. */
static int build_db(struct asr_sigset *s, const struct asr_signature_cfg *cfgs, struct asr_err *err)
{
    size_t total = s->n + s->ngeneric;
    if (total == 0)
        return 0;
    if (total > UINT_MAX)
        return asr_err_set(err, ASR_ECONFIG, "too many signatures (%zu)", total);
    const char **pats = calloc(total, sizeof(*pats));
    unsigned *flags = calloc(total, sizeof(*flags));
    unsigned *ids = calloc(total, sizeof(*ids));
    int rc = 0;
    if (!pats || !flags || !ids) {
        rc = ASR_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < total; i++) {
        pats[i] = i < s->n ? cfgs[i].pattern : generics[i - s->n].pattern;
        ids[i] = (unsigned)i;
    }
    for (;;) {
        for (size_t i = 0; i < total; i++)
            flags[i] = s->sigs[i].hs_flags;
        hs_compile_error_t *ce = NULL;
        if (hs_compile_multi(pats, flags, ids, (unsigned)total, HS_MODE_BLOCK, NULL, &s->db, &ce) ==
            HS_SUCCESS)
            break;
        int e = ce ? ce->expression : -1;
        if (e >= 0 && (size_t)e < s->n && !s->sigs[e].prefilter) {
            s->sigs[e].prefilter = true;
            s->sigs[e].hs_flags |= HS_FLAG_PREFILTER;
            hs_free_compile_error(ce);
            continue;
        }
        const char *msg = ce ? ce->message : "unknown error";
        if (e >= 0 && (size_t)e < s->n)
            rc = asr_err_set(err, ASR_ECONFIG, "signature %s (line %d): hyperscan: %s", cfgs[e].id,
                             cfgs[e].line, msg);
        else if (e >= 0)
            rc = asr_err_set(err, ASR_ECONFIG, "signature %s: hyperscan: %s", s->sigs[e].id, msg);
        else
            rc = asr_err_set(err, ASR_ECONFIG, "signatures: hyperscan: %s", msg);
        hs_free_compile_error(ce);
        goto out;
    }
    if (hs_alloc_scratch(s->db, &s->scratch) != HS_SUCCESS)
        rc = ASR_ENOMEM;
out:
    free(pats);
    free(flags);
    free(ids);
    return rc;
}

/* What a compiler process hands back (ASR_SIGSET_APART): per pattern whether it is a
 * prefilter, and the serialized database. */
struct compiled {
    size_t total;
    const unsigned char *prefilter; /* total bytes, 0 or 1 */
    const char *db;
    size_t dblen;
};

/* Loads the compiler process's database instead of compiling. */
static int load_db(struct asr_sigset *s, const struct compiled *pre, struct asr_err *err)
{
    if (pre->total != s->n + s->ngeneric)
        return asr_err_set(err, ASR_EIO,
                           "signatures: compiler process returned %zu patterns, "
                           "expected %zu",
                           pre->total, s->n + s->ngeneric);
    for (size_t i = 0; i < pre->total; i++)
        if (pre->prefilter[i]) {
            s->sigs[i].prefilter = true;
            s->sigs[i].hs_flags |= HS_FLAG_PREFILTER;
        }
    if (pre->dblen == 0)
        return 0; /* an empty set has no database */
    if (hs_deserialize_database(pre->db, pre->dblen, &s->db) != HS_SUCCESS)
        return asr_err_set(err, ASR_EIO, "signatures: cannot load the compiled database");
    if (hs_alloc_scratch(s->db, &s->scratch) != HS_SUCCESS)
        return ASR_ENOMEM;
    return 0;
}

static int create(const struct asr_signature_cfg *sigs, size_t n, unsigned flags,
                  const struct compiled *pre, struct asr_sigset **out, struct asr_err *err);

static bool write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

/*
 * The child side of ASR_SIGSET_APART: compile as usual, then write to fd
 *   int32 rc | uint32 msglen | msg | uint64 total | total prefilter bytes | uint64 dblen | db
 * and leave with _exit (no atexit handlers or stdio flushes of the parent's state).
 */
static void compile_child(int fd, const struct asr_signature_cfg *sigs, size_t n, unsigned flags)
{
    struct asr_sigset *s = NULL;
    struct asr_err e = {0};
    int32_t rc = create(sigs, n, flags & ~ASR_SIGSET_APART, NULL, &s, &e);
    uint32_t ml = (uint32_t)strlen(e.msg);
    bool ok = write_all(fd, &rc, sizeof(rc)) && write_all(fd, &ml, sizeof(ml)) &&
              write_all(fd, e.msg, ml);
    if (ok && rc == 0) {
        uint64_t total = s->n + s->ngeneric, dblen = 0;
        char *db = NULL;
        size_t len = 0;
        if (s->db != NULL && hs_serialize_database(s->db, &db, &len) != HS_SUCCESS)
            _exit(3);
        dblen = len;
        ok = write_all(fd, &total, sizeof(total));
        for (size_t i = 0; ok && i < total; i++) {
            unsigned char pf = s->sigs[i].prefilter;
            ok = write_all(fd, &pf, 1);
        }
        ok = ok && write_all(fd, &dblen, sizeof(dblen)) && write_all(fd, db, len);
    }
    _exit(ok ? 0 : 3);
}

/* Reads what the compiler process wrote, up to cap bytes. */
static char *read_child(int fd, size_t cap, size_t *len)
{
    size_t alloc = 1 << 16, n = 0;
    char *buf = malloc(alloc);
    while (buf != NULL) {
        if (n == alloc) {
            char *p = alloc < cap ? realloc(buf, alloc * 2) : NULL;
            if (p == NULL) {
                free(buf);
                return NULL;
            }
            buf = p;
            alloc *= 2;
        }
        ssize_t r = read(fd, buf + n, alloc - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return buf;
}

/* ASR_SIGSET_APART: fork, let the child compile, load its result. */
static int create_apart(const struct asr_signature_cfg *sigs, size_t n, unsigned flags,
                        struct asr_sigset **out, struct asr_err *err)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return asr_err_set(err, ASR_EIO, "signatures: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return asr_err_set(err, ASR_EIO, "signatures: fork: %s", strerror(e));
    }
    if (pid == 0) {
        close(fds[0]);
        compile_child(fds[1], sigs, n, flags);
    }
    close(fds[1]);
    size_t len = 0;
    char *buf = read_child(fds[0], (size_t)1 << 30, &len);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int rc;
    int32_t crc;
    uint32_t ml;
    uint64_t total, dblen;
    size_t off = sizeof(crc) + sizeof(ml);
    if (buf == NULL || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || len < off) {
        rc = asr_err_set(err, ASR_EIO, "signatures: the compiler process failed (status %d)",
                         status);
        goto out;
    }
    memcpy(&crc, buf, sizeof(crc));
    memcpy(&ml, buf + sizeof(crc), sizeof(ml));
    if (ml > len - off) {
        rc = asr_err_set(err, ASR_EIO, "signatures: the compiler process's answer is cut");
        goto out;
    }
    if (crc != 0) {
        rc = asr_err_set(err, crc, "%.*s", (int)ml, buf + off);
        goto out;
    }
    off += ml;
    if (len - off < sizeof(total)) {
        rc = asr_err_set(err, ASR_EIO, "signatures: the compiler process's answer is cut");
        goto out;
    }
    memcpy(&total, buf + off, sizeof(total));
    off += sizeof(total);
    if (total > len - off || len - off - total < sizeof(dblen)) {
        rc = asr_err_set(err, ASR_EIO, "signatures: the compiler process's answer is cut");
        goto out;
    }
    struct compiled pre = {.total = (size_t)total, .prefilter = (const unsigned char *)buf + off};
    off += total;
    memcpy(&dblen, buf + off, sizeof(dblen));
    off += sizeof(dblen);
    if (dblen != len - off) {
        rc = asr_err_set(err, ASR_EIO, "signatures: the compiler process's answer is cut");
        goto out;
    }
    pre.db = buf + off;
    pre.dblen = (size_t)dblen;
    rc = create(sigs, n, flags & ~ASR_SIGSET_APART, &pre, out, err);
out:
    free(buf);
    return rc;
}

int asr_sigset_create(const struct asr_signature_cfg *sigs, size_t n, unsigned flags,
                      struct asr_sigset **out, struct asr_err *err)
{
    *out = NULL;
    if (flags & ASR_SIGSET_APART)
        return create_apart(sigs, n, flags, out, err);
    return create(sigs, n, flags, NULL, out, err);
}

static int create(const struct asr_signature_cfg *sigs, size_t n, unsigned flags,
                  const struct compiled *pre, struct asr_sigset **out, struct asr_err *err)
{
    *out = NULL;
    if (n > 0 && !sigs)
        return asr_err_set(err, ASR_EINVAL, "signatures: NULL array of %zu", n);
    struct asr_sigset *s = calloc(1, sizeof(*s));
    if (!s)
        return ASR_ENOMEM;
    size_t ngen = (flags & ASR_SIGSET_GENERIC) ? NGENERIC : 0;
    size_t total = n + ngen;
    int rc = 0;
    uint32_t maxcap = 0;
    if ((s->sigs = calloc(total ? total : 1, sizeof(*s->sigs))) == NULL ||
        (s->bits = calloc(total / 64 + 1, sizeof(*s->bits))) == NULL) {
        rc = ASR_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        s->n = i + 1; /* so destroy frees what prepare() got to */
        if ((rc = prepare(&s->sigs[i], &sigs[i], pre == NULL, err)) != 0)
            goto out;
        uint32_t cc = 0;
        pcre2_pattern_info(s->sigs[i].re, PCRE2_INFO_CAPTURECOUNT, &cc);
        if (cc > maxcap)
            maxcap = cc;
    }
    s->ngeneric = ngen;
    for (size_t k = 0; k < ngen; k++) {
        struct sig *g = &s->sigs[n + k];
        g->hs_flags = HS_BASE_FLAGS;
        if ((g->id = strdup(generics[k].id)) == NULL ||
            (g->severity = strdup(generics[k].severity)) == NULL) {
            rc = ASR_ENOMEM;
            goto out;
        }
    }
    if ((rc = pre != NULL ? load_db(s, pre, err) : build_db(s, sigs, err)) != 0)
        goto out;
    if ((s->patterns = calloc(total ? total : 1, sizeof(*s->patterns))) == NULL) {
        rc = ASR_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < total; i++)
        if ((s->patterns[i] = strdup(i < n ? sigs[i].pattern : generics[i - n].pattern)) == NULL) {
            rc = ASR_ENOMEM;
            goto out;
        }
    if ((s->md = pcre2_match_data_create(maxcap + 1, NULL)) == NULL ||
        (s->mctx = pcre2_match_context_create(NULL)) == NULL ||
        (s->jit = pcre2_jit_stack_create(32 * 1024, JIT_STACK_MAX, NULL)) == NULL) {
        rc = ASR_ENOMEM;
        goto out;
    }
    pcre2_set_match_limit(s->mctx, MATCH_LIMIT);
    pcre2_set_depth_limit(s->mctx, DEPTH_LIMIT);
    pcre2_jit_stack_assign(s->mctx, NULL, s->jit);
    *out = s;
    s = NULL;
out:
    if (rc == ASR_ENOMEM)
        asr_err_set(err, rc, "signatures: out of memory");
    asr_sigset_destroy(s);
    return rc;
}

size_t asr_sigset_count(const struct asr_sigset *s)
{
    return s ? s->n : 0;
}

size_t asr_sigset_generic_count(const struct asr_sigset *s)
{
    return s ? s->ngeneric : 0;
}

/* Hyperscan match callback: remember the id; SINGLEMATCH makes this once per id and scan. */
static int on_match_cb(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                       void *ctx)
{
    (void)from;
    (void)to;
    (void)flags;
    struct asr_sigset *s = ctx;
    size_t w = id / 64;
    s->bits[w] |= (uint64_t)1 << (id % 64);
    if (s->lo > w)
        s->lo = w;
    if (s->hi < w + 1)
        s->hi = w + 1;
    return 0;
}

/* Copies line into s->fix with each byte of an invalid sequence replaced by U+FFFD. */
static int repair(struct asr_sigset *s, const char *line, size_t len, size_t from, size_t *outlen)
{
    if (len > (SIZE_MAX - 1) / 3)
        return ASR_ETOOBIG;
    size_t need = len * 3 + 1;
    if (need > s->fixcap) {
        char *p = realloc(s->fix, need);
        if (!p)
            return ASR_ENOMEM;
        s->fix = p;
        s->fixcap = need;
    }
    const unsigned char *u = (const unsigned char *)line;
    memcpy(s->fix, line, from);
    size_t o = from;
    for (size_t i = from; i < len;) {
        size_t k = asr_utf8_seq(u + i, len - i);
        if (k == 0) {
            memcpy(s->fix + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(s->fix + o, line + i, k);
            o += k;
            i += k;
        }
    }
    *outlen = o;
    return 0;
}

/* Runs PCRE2 for signature g. Returns 1 and fills the captures if it matched, 0 if not (or if
 * PCRE2 gave up at its limits, which for a prefiltered pattern means "not confirmed"). */
static int run_pcre(struct asr_sigset *s, const struct sig *g, const char *line, size_t len,
                    struct asr_sig_hit *hit)
{
    int rc = pcre2_match(g->re, (PCRE2_SPTR)line, len, 0, PCRE2_NO_UTF_CHECK, s->md, s->mctx);
    if (rc < 0)
        return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
    uint32_t ovn = pcre2_get_ovector_count(s->md);
    for (uint32_t i = 0; i < g->ncap; i++) {
        uint32_t k = g->capnum[i];
        if (k >= ovn || (int)k >= rc || ov[2 * k] == PCRE2_UNSET || ov[2 * k + 1] < ov[2 * k])
            continue;
        struct asr_sig_capture *c = &hit->captures[hit->ncaptures++];
        c->name = g->capname[i];
        c->value = line + ov[2 * k];
        c->len = ov[2 * k + 1] - ov[2 * k];
    }
    return 1;
}

/* Scans one line with the exact database and reports its hits in order; see asr_sigset_scan.
 * *stopped is set when cb asked to stop. */
static int scan_line(struct asr_sigset *s, const char *line, size_t len, asr_sig_hit_cb cb,
                     void *data, bool *stopped)
{
    if (len > UINT_MAX)
        return ASR_ETOOBIG;
    size_t ok = asr_utf8_valid_prefix((const unsigned char *)line, len);
    if (ok < len) {
        int rc = repair(s, line, len, ok, &len);
        if (rc)
            return rc;
        line = s->fix;
        if (len > UINT_MAX)
            return ASR_ETOOBIG;
    }
    s->lo = SIZE_MAX;
    s->hi = 0;
    hs_error_t he = hs_scan(s->db, line ? line : "", (unsigned)len, 0, s->scratch, on_match_cb, s);
    if (s->hi == 0)
        return he == HS_SUCCESS ? 0 : ASR_EIO;
    int reported = 0;
    bool go = he == HS_SUCCESS;
    for (size_t w = s->lo; w < s->hi; w++) {
        uint64_t word = s->bits[w];
        s->bits[w] = 0;
        while (go && word) {
            size_t id = w * 64 + (size_t)__builtin_ctzll(word);
            word &= word - 1;
            const struct sig *g = &s->sigs[id];
            struct asr_sig_hit hit;
            hit.generic = id >= s->n;
            hit.index = hit.generic ? id - s->n : id;
            hit.id = g->id;
            hit.severity = g->severity;
            hit.dedupe = hit.generic ? no_dedupe : (const char *const *)g->dedupe;
            hit.ncaptures = 0;
            if (g->re && (g->prefilter || g->ncap > 0)) {
                /* A pattern that Hyperscan matched exactly is a hit even if PCRE2 then gives up
                 * at its limits (the hit just lacks captures); a prefilter hit needs PCRE2. */
                if (!run_pcre(s, g, line, len, &hit) && g->prefilter)
                    continue;
            }
            reported++;
            go = cb(data, &hit);
            if (!go)
                *stopped = true;
        }
    }
    if (he != HS_SUCCESS)
        return ASR_EIO;
    return reported;
}

int asr_sigset_scan(struct asr_sigset *s, const char *line, size_t len, asr_sig_hit_cb cb,
                    void *data)
{
    bool stopped = false;
    if (!s->db)
        return 0;
    return scan_line(s, line, len, cb, data, &stopped);
}

/*
 * Block scanning. Calling Hyperscan once per line costs ~100-200 ns per call with 100 patterns
 * (bench/sigscan.md), which caps a line-by-line scan well below 1 GB/s on 100-byte lines. So a
 * block of lines is scanned in one call with a second database of the same patterns, compiled
 * with HS_FLAG_MULTILINE (^ and $ at line ends) and without SINGLEMATCH (which would report a
 * pattern once per block, not per line). That database only finds candidate lines: each match
 * end is mapped back to the line it ends in, and only those lines go through scan_line(), which
 * gives the exact per-line answer, captures and order. A match of the block database that a
 * line-by-line scan would not have (a \s or [^x] that ran across a newline) costs one extra
 * line scan, never a wrong hit; and every per-line match also matches in the block, with the
 * per-line anchors \A, \z and \Z rewritten to ^ and $ for this database only.
 */

/* The pattern with \A -> ^ and \z, \Z -> $ outside \Q...\E; other escapes stay as they
 * are (each escape is copied as a pair, so "\\A" is still an escaped backslash and an A). */
static char *line_anchored(const char *p)
{
    size_t n = strlen(p);
    char *o = malloc(n + 1), *w = o;
    if (!o)
        return NULL;
    bool quoted = false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\\' || i + 1 == n) {
            *w++ = p[i];
            continue;
        }
        char e = p[i + 1];
        i++;
        if (quoted) {
            if (e == 'E')
                quoted = false;
            *w++ = '\\';
            *w++ = e;
        } else if (e == 'Q') {
            quoted = true;
            *w++ = '\\';
            *w++ = e;
        } else if (e == 'A') {
            *w++ = '^';
        } else if (e == 'z' || e == 'Z') {
            *w++ = '$';
        } else {
            *w++ = '\\';
            *w++ = e;
        }
    }
    *w = '\0';
    return o;
}

/* Builds the block database once. Any failure leaves bdb NULL, and blocks are then scanned
 * line by line: slower, never different. */
static void build_block_db(struct asr_sigset *s)
{
    s->bdb_tried = true;
    size_t total = s->n + s->ngeneric;
    char **pats = calloc(total, sizeof(*pats));
    unsigned *flags = calloc(total, sizeof(*flags));
    unsigned *ids = calloc(total, sizeof(*ids));
    bool ok = pats && flags && ids;
    for (size_t i = 0; ok && i < total; i++) {
        ok = (pats[i] = line_anchored(s->patterns[i])) != NULL;
        flags[i] = (s->sigs[i].hs_flags & ~(unsigned)HS_FLAG_SINGLEMATCH) | HS_FLAG_MULTILINE;
        ids[i] = (unsigned)i;
    }
    hs_compile_error_t *ce = NULL;
    if (ok && hs_compile_multi((const char *const *)pats, flags, ids, (unsigned)total,
                               HS_MODE_BLOCK, NULL, &s->bdb, &ce) != HS_SUCCESS) {
        hs_free_compile_error(ce);
        s->bdb = NULL;
    }
    /* The one scratch grows to serve both databases. */
    if (s->bdb && hs_alloc_scratch(s->bdb, &s->scratch) != HS_SUCCESS) {
        hs_free_database(s->bdb);
        s->bdb = NULL;
    }
    for (size_t i = 0; pats && i < total; i++)
        free(pats[i]);
    free(pats);
    free(flags);
    free(ids);
}

/* Block match callback: record the line the match ends in, once per run of matches in it. */
static int on_block_cb(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                       void *ctx)
{
    (void)id;
    (void)from;
    (void)flags;
    struct asr_sigset *s = ctx;
    size_t t = (size_t)to;
    if (s->ncand > 0) {
        const struct cand *last = &s->cands[s->ncand - 1];
        if (t >= last->start && t <= last->end)
            return 0;
    }
    if (s->ncand == s->candcap) {
        size_t cap = s->candcap ? s->candcap * 2 : 64;
        struct cand *c = realloc(s->cands, cap * sizeof(*c));
        if (!c) {
            s->cand_oom = true;
            return 1; /* stop the scan */
        }
        s->cands = c;
        s->candcap = cap;
    }
    const char *nl = t > 0 ? memrchr(s->bbuf, '\n', t) : NULL;
    const char *end = t < s->blen ? memchr(s->bbuf + t, '\n', s->blen - t) : NULL;
    struct cand c = {nl ? (size_t)(nl - s->bbuf) + 1 : 0, end ? (size_t)(end - s->bbuf) : s->blen};
    if (s->ncand > 0 && c.start < s->cands[s->ncand - 1].start)
        s->cand_unsorted = true;
    s->cands[s->ncand++] = c;
    return 0;
}

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

struct block_ctx {
    asr_sig_line_hit_cb cb;
    void *data;
    const char *line;
    size_t len;
};

static bool block_hit_cb(void *data, const struct asr_sig_hit *hit)
{
    struct block_ctx *b = data;
    return b->cb(b->data, b->line, b->len, hit);
}

/* Every line of buf through scan_line(): the fallback when there is no block database or the
 * block is not valid UTF-8 (each line is then repaired on its own, as asr_sigset_scan does). */
static int scan_lines(struct asr_sigset *s, const char *buf, size_t len, struct block_ctx *b)
{
    int total = 0;
    bool stopped = false;
    for (size_t i = 0; i < len && !stopped;) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - buf) : len;
        b->line = buf + i;
        b->len = e - i;
        int rc = scan_line(s, buf + i, e - i, block_hit_cb, b, &stopped);
        if (rc < 0)
            return rc;
        total += rc;
        i = e + 1;
    }
    return total;
}

int asr_sigset_scan_block(struct asr_sigset *s, const char *buf, size_t len, asr_sig_line_hit_cb cb,
                          void *data)
{
    if (!s->db || len == 0)
        return 0;
    if (len > UINT_MAX)
        return ASR_ETOOBIG;
    struct block_ctx b = {cb, data, NULL, 0};
    if (!s->bdb_tried)
        build_block_db(s);
    if (!s->bdb || asr_utf8_valid_prefix((const unsigned char *)buf, len) < len)
        return scan_lines(s, buf, len, &b);
    s->bbuf = buf;
    s->blen = len;
    s->ncand = 0;
    s->cand_unsorted = s->cand_oom = false;
    hs_error_t he = hs_scan(s->bdb, buf, (unsigned)len, 0, s->scratch, on_block_cb, s);
    if (s->cand_oom)
        return ASR_ENOMEM;
    if (he != HS_SUCCESS)
        return ASR_EIO;
    if (s->cand_unsorted)
        qsort(s->cands, s->ncand, sizeof(*s->cands), cmp_cand);
    int total = 0;
    bool stopped = false;
    for (size_t i = 0; i < s->ncand && !stopped; i++) {
        /* A match at the very end, after the last newline, is in no line (x* matches there). */
        if ((i > 0 && s->cands[i].start == s->cands[i - 1].start) || s->cands[i].start >= len)
            continue;
        b.line = buf + s->cands[i].start;
        b.len = s->cands[i].end - s->cands[i].start;
        int rc = scan_line(s, b.line, b.len, block_hit_cb, &b, &stopped);
        if (rc < 0)
            return rc;
        total += rc;
    }
    return total;
}
