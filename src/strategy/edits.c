/*
 * edits.c - search/replace edits: parse an LLM reply, check paths, apply to a checkout
 * (see edits.h for the contract and docs/edits.md for the format).
 *
 * Place in the pipeline: strategy. The reply of the model is untrusted text; this file is the
 * gate between it and the source tree. Parsing works on an array of lines (the reply is capped,
 * so the array is too) in one pass for SEARCH/REPLACE blocks and, only if there are none, one
 * pass for the unified-diff fallback. Applying reads every file once, applies every edit in
 * memory, and writes only when all of them succeeded.
 */
#include "strategy/edits.h"
#include "asr/utf8.h"
#include "execute/actions.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MARK_SEARCH "<<<<<<< SEARCH"
#define MARK_DIVIDER "======="
#define MARK_REPLACE ">>>>>>> REPLACE"

/* Occurrences counted before "at least" is said. */
#define MAX_COUNT 100

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

/* Copies at most 40 bytes of s[0..n) into dst as printable ASCII (anything else becomes '?'),
 * with "..." when cut, so outside text can be quoted in a one-line message. */
static const char *excerpt(char *dst, size_t cap, const char *s, size_t n)
{
    size_t max = 40, j = 0;
    for (size_t i = 0; i < n && i < max && j + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[j++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (n > max && j + 4 < cap) {
        memcpy(dst + j, "...", 3);
        j += 3;
    }
    if (cap > 0)
        dst[j < cap ? j : cap - 1] = '\0';
    return dst;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static char *memdup_z(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        return NULL;
    if (n > 0)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* 1-based line number of offset off in p. */
static size_t line_of(const char *p, size_t off)
{
    size_t line = 1;
    const char *end = p + off, *q = p;
    while (q < end && (q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
        line++;
        q++;
    }
    return line;
}

void asr_edits_free(struct asr_edits *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].path);
        free(e->v[i].search);
        free(e->v[i].replace);
    }
    free(e->v);
    free(e->rationale);
    memset(e, 0, sizeof(*e));
}

/* Appends an edit, taking ownership of path, search and replace (freed on failure too). */
static int push_edit(struct asr_edits *e, char *path, char *search, size_t slen, char *replace,
                     size_t rlen, int line, struct asr_err *err)
{
    if (e->n >= ASR_EDITS_MAX_BLOCKS) {
        free(path);
        free(search);
        free(replace);
        return asr_err_set(err, ASR_ETOOBIG, "edits: more than %d edits (edit %zu at line %d)",
                           ASR_EDITS_MAX_BLOCKS, e->n + 1, line);
    }
    struct asr_edit *v = realloc(e->v, (e->n + 1) * sizeof(*v));
    if (v == NULL) {
        free(path);
        free(search);
        free(replace);
        return asr_err_set(err, ASR_ENOMEM, "edits: out of memory");
    }
    e->v = v;
    v[e->n] = (struct asr_edit){.path = path,
                                .search = search,
                                .search_len = slen,
                                .replace = replace,
                                .replace_len = rlen,
                                .line = line};
    e->n++;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------------------------- */

struct line {
    const char *p;
    size_t n; /* without the "\n" and one "\r" before it */
};

enum { K_TEXT, K_BLOCK, K_PATH, K_FENCE, K_DIFF };

struct parser {
    const char *text;
    size_t len;
    struct line *l;
    unsigned char *kind;
    size_t nl;
    struct asr_edits *out;
    struct asr_err *err;
};

static bool line_is(const struct line *ln, const char *mark)
{
    size_t m = strlen(mark);
    if (ln->n < m || memcmp(ln->p, mark, m) != 0)
        return false;
    for (size_t i = m; i < ln->n; i++)
        if (!is_blank(ln->p[i]))
            return false;
    return true;
}

static bool starts(const struct line *ln, const char *s)
{
    size_t m = strlen(s);
    return ln->n >= m && memcmp(ln->p, s, m) == 0;
}

/* "```" and an optional language word, e.g. "```c" or "```diff". */
static bool is_fence(const struct line *ln)
{
    if (!starts(ln, "```"))
        return false;
    size_t i = 3;
    while (i < ln->n && (ln->p[i] == '_' || ln->p[i] == '-' || ln->p[i] == '+' || ln->p[i] == '.' ||
                         (ln->p[i] >= '0' && ln->p[i] <= '9') ||
                         ((ln->p[i] | 0x20) >= 'a' && (ln->p[i] | 0x20) <= 'z')))
        i++;
    while (i < ln->n && is_blank(ln->p[i]))
        i++;
    return i == ln->n;
}

static int split_lines(struct parser *ps)
{
    const char *nul = memchr(ps->text, '\0', ps->len);
    if (nul != NULL)
        return asr_err_set(ps->err, ASR_EPARSE, "edits: line %zu: NUL byte in the reply",
                           line_of(ps->text, (size_t)(nul - ps->text)));
    size_t count = 1;
    for (const char *q = ps->text; (q = memchr(q, '\n', ps->len - (size_t)(q - ps->text))); q++)
        count++;
    ps->l = calloc(count, sizeof(*ps->l));
    ps->kind = calloc(count, 1);
    if (ps->l == NULL || ps->kind == NULL)
        return asr_err_set(ps->err, ASR_ENOMEM, "edits: out of memory");
    size_t off = 0;
    while (off < ps->len) {
        const char *p = ps->text + off;
        const char *nlp = memchr(p, '\n', ps->len - off);
        size_t n = nlp != NULL ? (size_t)(nlp - p) : ps->len - off;
        off += n + (nlp != NULL);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        ps->l[ps->nl++] = (struct line){p, n};
    }
    return 0;
}

/* Lines [from, to) joined, each followed by "\n"; NULL with err set on a cap or no memory. */
static char *join_lines(struct parser *ps, size_t from, size_t to, size_t *outlen, int blockno,
                        size_t blockline, const char *what, int *rc)
{
    size_t n = 0;
    for (size_t i = from; i < to; i++) {
        n += ps->l[i].n + 1;
        if (n > ASR_EDITS_MAX_TEXT) {
            *rc = asr_err_set(ps->err, ASR_ETOOBIG,
                              "edits: block %d (line %zu): %s is longer than %u bytes", blockno,
                              blockline, what, ASR_EDITS_MAX_TEXT);
            return NULL;
        }
    }
    char *s = malloc(n + 1);
    if (s == NULL) {
        *rc = asr_err_set(ps->err, ASR_ENOMEM, "edits: out of memory");
        return NULL;
    }
    size_t j = 0;
    for (size_t i = from; i < to; i++) {
        if (ps->l[i].n > 0)
            memcpy(s + j, ps->l[i].p, ps->l[i].n);
        j += ps->l[i].n;
        s[j++] = '\n';
    }
    s[j] = '\0';
    *outlen = n;
    return s;
}

/* The path on line idx: trimmed, one pair of backticks removed; NULL if the line cannot be one
 * (empty, blanks inside, a fence). */
static char *path_from_line(const struct line *ln)
{
    const char *p = ln->p;
    size_t n = ln->n;
    while (n > 0 && is_blank(*p))
        p++, n--;
    while (n > 0 && is_blank(p[n - 1]))
        n--;
    if (n >= 2 && p[0] == '`' && p[n - 1] == '`' && !(n >= 3 && p[1] == '`'))
        p++, n -= 2;
    if (n == 0 || n > ASR_EDITS_MAX_PATH)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (is_blank(p[i]))
            return NULL;
    return memdup_z(p, n);
}

static int parse_blocks(struct parser *ps, int *nblocks)
{
    size_t avail = 0; /* first line after the previous block: a path must not be before it */
    int blockno = 0;
    char ex[64];
    for (size_t i = 0; i < ps->nl; i++) {
        const struct line *ln = &ps->l[i];
        if (line_is(ln, MARK_DIVIDER) || line_is(ln, MARK_REPLACE))
            return asr_err_set(ps->err, ASR_EPARSE,
                               "edits: line %zu: stray '%s' outside an edit block (no '" MARK_SEARCH
                               "' before it)",
                               i + 1, line_is(ln, MARK_DIVIDER) ? MARK_DIVIDER : MARK_REPLACE);
        if (!line_is(ln, MARK_SEARCH))
            continue;
        blockno++;
        if (blockno > ASR_EDITS_MAX_BLOCKS)
            return asr_err_set(ps->err, ASR_ETOOBIG,
                               "edits: block %d (line %zu): more than %d edit blocks", blockno,
                               i + 1, ASR_EDITS_MAX_BLOCKS);
        /* The path: the line before, or the line before a fence that is just before. */
        size_t pl = SIZE_MAX;
        if (i > avail) {
            pl = i - 1;
            if (is_fence(&ps->l[pl]))
                pl = pl > avail ? pl - 1 : SIZE_MAX;
        }
        char *path = pl != SIZE_MAX ? path_from_line(&ps->l[pl]) : NULL;
        if (path == NULL) {
            if (pl != SIZE_MAX && ps->l[pl].n > 0 && !is_fence(&ps->l[pl]))
                return asr_err_set(ps->err, ASR_EPARSE,
                                   "edits: block %d (line %zu): the line before '" MARK_SEARCH
                                   "' is not a file path: '%s'",
                                   blockno, i + 1,
                                   excerpt(ex, sizeof(ex), ps->l[pl].p, ps->l[pl].n));
            return asr_err_set(
                ps->err, ASR_EPARSE,
                "edits: block %d (line %zu): no file path on the line before '" MARK_SEARCH "'",
                blockno, i + 1);
        }
        /* SEARCH lines up to the divider, REPLACE lines up to the end marker. */
        size_t div = SIZE_MAX, end = SIZE_MAX;
        for (size_t k = i + 1; k < ps->nl && end == SIZE_MAX; k++) {
            const struct line *c = &ps->l[k];
            const char *bad = NULL;
            if (line_is(c, MARK_SEARCH))
                bad = div == SIZE_MAX ? "a second '" MARK_SEARCH "' before '" MARK_DIVIDER "'"
                                      : "'" MARK_SEARCH "' before '" MARK_REPLACE "'";
            else if (line_is(c, MARK_DIVIDER) && div != SIZE_MAX)
                bad = "a second '" MARK_DIVIDER "' in the block";
            else if (line_is(c, MARK_REPLACE) && div == SIZE_MAX)
                bad = "'" MARK_REPLACE "' before '" MARK_DIVIDER "'";
            if (bad != NULL) {
                free(path);
                return asr_err_set(ps->err, ASR_EPARSE, "edits: block %d (line %zu): line %zu: %s",
                                   blockno, i + 1, k + 1, bad);
            }
            if (line_is(c, MARK_DIVIDER))
                div = k;
            else if (line_is(c, MARK_REPLACE))
                end = k;
        }
        if (end == SIZE_MAX) {
            free(path);
            return asr_err_set(ps->err, ASR_EPARSE,
                               "edits: block %d (line %zu): the reply ends before '%s'", blockno,
                               i + 1, div == SIZE_MAX ? MARK_DIVIDER : MARK_REPLACE);
        }
        size_t slen = 0, rlen = 0;
        int rc = 0;
        char *search = join_lines(ps, i + 1, div, &slen, blockno, i + 1, "SEARCH", &rc);
        char *replace = search != NULL
                            ? join_lines(ps, div + 1, end, &rlen, blockno, i + 1, "REPLACE", &rc)
                            : NULL;
        if (search == NULL || replace == NULL) {
            free(path);
            free(search);
            return rc;
        }
        if (slen == 0 && rlen == 0) {
            free(path);
            free(search);
            free(replace);
            return asr_err_set(ps->err, ASR_EPARSE,
                               "edits: block %d (line %zu): SEARCH and REPLACE are both empty",
                               blockno, i + 1);
        }
        rc = push_edit(ps->out, path, search, slen, replace, rlen, (int)(i + 1), ps->err);
        if (rc != 0)
            return rc;
        ps->kind[pl] = K_PATH;
        for (size_t k = i; k <= end; k++)
            ps->kind[k] = K_BLOCK;
        i = end;
        avail = end + 1;
    }
    *nblocks = blockno;
    return 0;
}

/* A unified-diff file header at line i: "--- x" then "+++ y" then "@@". */
static bool diff_header_at(const struct parser *ps, size_t i)
{
    return i + 2 < ps->nl && starts(&ps->l[i], "--- ") && starts(&ps->l[i + 1], "+++ ") &&
           starts(&ps->l[i + 2], "@@ ");
}

/* The path of a "--- "/"+++ " line: up to a tab (timestamps), trailing blanks off, the "a/" or
 * "b/" prefix off. Sets *devnull for /dev/null. */
static char *diff_path(const struct line *ln, char prefix, bool *devnull)
{
    const char *p = ln->p + 4;
    size_t n = ln->n - 4;
    const char *tab = memchr(p, '\t', n);
    if (tab != NULL)
        n = (size_t)(tab - p);
    while (n > 0 && is_blank(p[n - 1]))
        n--;
    *devnull = n == 9 && memcmp(p, "/dev/null", 9) == 0;
    if (n >= 2 && p[0] == prefix && p[1] == '/')
        p += 2, n -= 2;
    if (n > ASR_EDITS_MAX_PATH)
        n = ASR_EDITS_MAX_PATH + 1; /* kept long enough for the path check to refuse it */
    return memdup_z(p, n);
}

/* Reads a decimal number of at most 9 digits at *pp. */
static bool read_num(const char **pp, const char *end, long *out)
{
    const char *p = *pp;
    long v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 10) {
        v = v * 10 + (*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || digits > 9)
        return false;
    *pp = p;
    *out = v;
    return true;
}

/* "@@ -a[,b] +c[,d] @@..." -> the two counts (1 when omitted). */
static bool hunk_header(const struct line *ln, long *oldc, long *newc)
{
    const char *p = ln->p + 3, *end = ln->p + ln->n;
    long a, c;
    *oldc = *newc = 1;
    if (p >= end || *p++ != '-' || !read_num(&p, end, &a))
        return false;
    if (p < end && *p == ',' && (p++, !read_num(&p, end, oldc)))
        return false;
    if (end - p < 2 || p[0] != ' ' || p[1] != '+')
        return false;
    p += 2;
    if (!read_num(&p, end, &c))
        return false;
    if (p < end && *p == ',' && (p++, !read_num(&p, end, newc)))
        return false;
    return end - p >= 3 && memcmp(p, " @@", 3) == 0;
}

/* Appends line ln (from column 1) plus "\n" to a growing text; false at the cap or no memory. */
static bool text_add(char **s, size_t *len, size_t *cap, const struct line *ln)
{
    size_t n = ln->n > 0 ? ln->n - 1 : 0;
    if (*len + n + 1 > ASR_EDITS_MAX_TEXT)
        return false;
    if (*len + n + 2 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + n + 2)
            nc *= 2;
        char *ns = realloc(*s, nc);
        if (ns == NULL)
            return false;
        *s = ns;
        *cap = nc;
    }
    if (n > 0)
        memcpy(*s + *len, ln->p + 1, n);
    *len += n;
    (*s)[(*len)++] = '\n';
    (*s)[*len] = '\0';
    return true;
}

/* One hunk starting at line h (its "@@" line): one edit of path. *next is the line after it. */
static int parse_hunk(struct parser *ps, size_t h, const char *path, bool create, int hunkno,
                      size_t *next)
{
    long oldc, newc;
    if (!hunk_header(&ps->l[h], &oldc, &newc))
        return asr_err_set(
            ps->err, ASR_EPARSE,
            "edits: hunk %d (line %zu): malformed hunk header (want '@@ -A,B +C,D @@')", hunkno,
            h + 1);
    char *s = NULL, *r = NULL;
    size_t slen = 0, scap = 0, rlen = 0, rcap = 0;
    size_t k = h + 1;
    int rc = 0;
    ps->kind[h] = K_DIFF;
    while (oldc > 0 || newc > 0) {
        if (k >= ps->nl) {
            rc = asr_err_set(ps->err, ASR_EPARSE,
                             "edits: hunk %d (line %zu): the reply ends %ld old and %ld new lines "
                             "short of what the header counts",
                             hunkno, h + 1, oldc, newc);
            goto fail;
        }
        const struct line *c = &ps->l[k];
        char t = c->n > 0 ? c->p[0] : ' '; /* an empty line is an empty context line */
        bool ok = true;
        if (t == '\\') {
            /* "\ No newline at end of file": a file without a final newline is matched as if it
             * had one and keeps lacking it (see asr_edits_apply), so nothing to do. */
        } else if (t == ' ' && oldc > 0 && newc > 0) {
            ok = text_add(&s, &slen, &scap, c) && text_add(&r, &rlen, &rcap, c);
            oldc--, newc--;
        } else if (t == '-' && oldc > 0) {
            ok = text_add(&s, &slen, &scap, c);
            oldc--;
        } else if (t == '+' && newc > 0) {
            ok = text_add(&r, &rlen, &rcap, c);
            newc--;
        } else {
            char ex[64];
            rc = asr_err_set(ps->err, ASR_EPARSE,
                             "edits: hunk %d (line %zu): line %zu does not fit the header's "
                             "counts: '%s'",
                             hunkno, h + 1, k + 1, excerpt(ex, sizeof(ex), c->p, c->n));
            goto fail;
        }
        if (!ok) {
            rc = slen + c->n + 1 > ASR_EDITS_MAX_TEXT || rlen + c->n + 1 > ASR_EDITS_MAX_TEXT
                     ? asr_err_set(ps->err, ASR_ETOOBIG,
                                   "edits: hunk %d (line %zu): longer than %u bytes", hunkno, h + 1,
                                   ASR_EDITS_MAX_TEXT)
                     : asr_err_set(ps->err, ASR_ENOMEM, "edits: out of memory");
            goto fail;
        }
        ps->kind[k++] = K_DIFF;
    }
    while (k < ps->nl && ps->l[k].n > 0 && ps->l[k].p[0] == '\\')
        ps->kind[k++] = K_DIFF;
    if (k < ps->nl && ps->l[k].n > 0 && (ps->l[k].p[0] == '+' || ps->l[k].p[0] == '-') &&
        !diff_header_at(ps, k)) {
        rc = asr_err_set(ps->err, ASR_EPARSE,
                         "edits: hunk %d (line %zu): line %zu is past the lines the header counts",
                         hunkno, h + 1, k + 1);
        goto fail;
    }
    if (create && slen > 0) {
        rc = asr_err_set(
            ps->err, ASR_EPARSE,
            "edits: hunk %d (line %zu): a new file (--- /dev/null) has only added lines", hunkno,
            h + 1);
        goto fail;
    }
    if (!create && slen == 0) {
        rc = asr_err_set(ps->err, ASR_EPARSE,
                         "edits: hunk %d (line %zu): no context or removed lines, so it cannot be "
                         "placed",
                         hunkno, h + 1);
        goto fail;
    }
    if (create && rlen == 0) {
        rc = asr_err_set(ps->err, ASR_EPARSE, "edits: hunk %d (line %zu): the new file is empty",
                         hunkno, h + 1);
        goto fail;
    }
    char *p = memdup_z(path, strlen(path));
    if (s == NULL)
        s = memdup_z("", 0);
    if (r == NULL)
        r = memdup_z("", 0);
    if (p == NULL || s == NULL || r == NULL) {
        free(p);
        rc = asr_err_set(ps->err, ASR_ENOMEM, "edits: out of memory");
        goto fail;
    }
    *next = k;
    return push_edit(ps->out, p, s, slen, r, rlen, (int)(h + 1), ps->err);
fail:
    free(s);
    free(r);
    return rc;
}

static int parse_diff(struct parser *ps)
{
    int hunkno = 0;
    size_t i = 0;
    while (i < ps->nl) {
        const struct line *ln = &ps->l[i];
        if (!diff_header_at(ps, i)) {
            if (starts(ln, "diff --git ") || starts(ln, "index ") || starts(ln, "new file mode "))
                ps->kind[i] = K_DIFF;
            i++;
            continue;
        }
        bool old_null, new_null;
        char *oldp = diff_path(&ps->l[i], 'a', &old_null);
        char *newp = diff_path(&ps->l[i + 1], 'b', &new_null);
        int rc = 0;
        char ex[64], ex2[64];
        if (oldp == NULL || newp == NULL)
            rc = asr_err_set(ps->err, ASR_ENOMEM, "edits: out of memory");
        else if (new_null)
            rc = asr_err_set(ps->err, ASR_EPARSE,
                             "edits: line %zu: deleting a file (+++ /dev/null) is not supported",
                             i + 2);
        else if (!old_null && strcmp(oldp, newp) != 0)
            rc = asr_err_set(ps->err, ASR_EPARSE,
                             "edits: line %zu: renaming a file is not supported ('%s' to '%s')",
                             i + 1, excerpt(ex, sizeof(ex), oldp, strlen(oldp)),
                             excerpt(ex2, sizeof(ex2), newp, strlen(newp)));
        else if (newp[0] == '\0')
            rc = asr_err_set(ps->err, ASR_EPARSE, "edits: line %zu: '+++' names no file", i + 2);
        free(oldp);
        if (rc != 0) {
            free(newp);
            return rc;
        }
        ps->kind[i] = ps->kind[i + 1] = K_DIFF;
        i += 2;
        int in_file = 0;
        while (i < ps->nl && starts(&ps->l[i], "@@")) {
            hunkno++;
            if (old_null && in_file > 0) {
                free(newp);
                return asr_err_set(ps->err, ASR_EPARSE,
                                   "edits: hunk %d (line %zu): a new file (--- /dev/null) has one "
                                   "hunk",
                                   hunkno, i + 1);
            }
            if (hunkno > ASR_EDITS_MAX_BLOCKS) {
                free(newp);
                return asr_err_set(ps->err, ASR_ETOOBIG,
                                   "edits: hunk %d (line %zu): more than %d hunks", hunkno, i + 1,
                                   ASR_EDITS_MAX_BLOCKS);
            }
            rc = parse_hunk(ps, i, newp, old_null, hunkno, &i);
            if (rc != 0) {
                free(newp);
                return rc;
            }
            in_file++;
        }
        free(newp);
    }
    return 0;
}

/* The rationale: every K_TEXT line but fences, control characters and invalid UTF-8 replaced,
 * blank lines at both ends dropped and runs of them made one, cut visibly at the cap. */
static int build_rationale(struct parser *ps)
{
    size_t first = 0, last = ps->nl;
    while (first < ps->nl &&
           (ps->kind[first] != K_TEXT || is_fence(&ps->l[first]) || ps->l[first].n == 0))
        first++;
    while (last > first &&
           (ps->kind[last - 1] != K_TEXT || is_fence(&ps->l[last - 1]) || ps->l[last - 1].n == 0))
        last--;
    size_t cap = ASR_EDITS_MAX_RATIONALE, j = 0;
    char *r = malloc(cap + 1);
    if (r == NULL)
        return asr_err_set(ps->err, ASR_ENOMEM, "edits: out of memory");
    bool cut = false, blank = false;
    for (size_t i = first; i < last && !cut; i++) {
        if (ps->kind[i] != K_TEXT || is_fence(&ps->l[i]) || (blank && ps->l[i].n == 0))
            continue;
        blank = ps->l[i].n == 0;
        const unsigned char *p = (const unsigned char *)ps->l[i].p;
        size_t n = ps->l[i].n;
        if (j > 0) {
            if (j + 1 > cap) {
                cut = true;
                break;
            }
            r[j++] = '\n';
        }
        for (size_t k = 0; k < n;) {
            size_t q = asr_utf8_seq(p + k, n - k);
            if (j + (q ? q : 1) > cap) {
                cut = true;
                break;
            }
            if (q == 0 || (q == 1 && (p[k] < 0x20 || p[k] == 0x7f) && p[k] != '\t')) {
                r[j++] = q == 0 ? '?' : ' ';
                k++;
            } else {
                memcpy(r + j, p + k, q);
                j += q;
                k += q;
            }
        }
    }
    if (cut) {
        static const char mark[] = " [...]";
        size_t m = sizeof(mark) - 1;
        if (j > cap - m)
            j = cap - m;
        while (j > 0 && ((unsigned char)r[j] & 0xC0) == 0x80)
            j--; /* do not cut a character in half */
        memcpy(r + j, mark, m);
        j += m;
    }
    r[j] = '\0';
    ps->out->rationale = r;
    return 0;
}

int asr_edits_parse(const char *text, size_t len, struct asr_edits *out, struct asr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (text == NULL)
        len = 0;
    if (len > ASR_EDITS_MAX_REPLY)
        return asr_err_set(err, ASR_ETOOBIG, "edits: reply of %zu bytes exceeds the cap of %u", len,
                           ASR_EDITS_MAX_REPLY);
    struct parser ps = {.text = text != NULL ? text : "", .len = len, .out = out, .err = err};
    int nblocks = 0;
    int rc = split_lines(&ps);
    if (rc == 0)
        rc = parse_blocks(&ps, &nblocks);
    if (rc == 0 && nblocks > 0) {
        out->format = ASR_EDITS_BLOCKS;
        for (size_t i = 0; i + 2 < ps.nl; i++)
            if (ps.kind[i] == K_TEXT && ps.kind[i + 1] == K_TEXT && ps.kind[i + 2] == K_TEXT &&
                diff_header_at(&ps, i)) {
                rc = asr_err_set(err, ASR_EPARSE,
                                 "edits: line %zu: a unified diff mixed with SEARCH/REPLACE "
                                 "blocks (use one format)",
                                 i + 1);
                break;
            }
    } else if (rc == 0) {
        out->format = ASR_EDITS_DIFF;
        rc = parse_diff(&ps);
        if (rc == 0 && out->n == 0)
            rc = asr_err_set(err, ASR_EPARSE,
                             "edits: no SEARCH/REPLACE block and no unified diff in the reply");
    }
    if (rc == 0)
        rc = build_rationale(&ps);
    free(ps.l);
    free(ps.kind);
    if (rc != 0)
        asr_edits_free(out);
    return rc;
}

/* Copies a caller's text with CRLF turned into LF and a final "\n" added when missing. */
static int normalise_text(const char *src, size_t n, char **out, size_t *outlen, int line,
                          const char *what, struct asr_err *err)
{
    if (n > 0 && memchr(src, '\0', n) != NULL)
        return asr_err_set(err, ASR_EPARSE, "edits: edit at line %d: NUL byte in %s", line, what);
    if (n > ASR_EDITS_MAX_TEXT)
        return asr_err_set(err, ASR_ETOOBIG, "edits: edit at line %d: %s is longer than %u bytes",
                           line, what, ASR_EDITS_MAX_TEXT);
    char *s = malloc(n + 2);
    if (s == NULL)
        return asr_err_set(err, ASR_ENOMEM, "edits: out of memory");
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r' && i + 1 < n && src[i + 1] == '\n')
            continue;
        s[j++] = src[i];
    }
    if (j > 0 && s[j - 1] != '\n')
        s[j++] = '\n';
    s[j] = '\0';
    *out = s;
    *outlen = j;
    return 0;
}

int asr_edits_add(struct asr_edits *e, const char *path, const char *search, size_t search_len,
                  const char *replace, size_t replace_len, int line, struct asr_err *err)
{
    if (path == NULL || path[0] == '\0')
        return asr_err_set(err, ASR_EPARSE, "edits: edit at line %d: no file path", line);
    if ((search == NULL && search_len > 0) || (replace == NULL && replace_len > 0))
        return asr_err_set(err, ASR_EINVAL, "edits: edit at line %d: NULL text", line);
    char *s = NULL, *r = NULL, *p = NULL;
    size_t slen = 0, rlen = 0;
    int rc = normalise_text(search, search_len, &s, &slen, line, "SEARCH", err);
    if (rc == 0)
        rc = normalise_text(replace, replace_len, &r, &rlen, line, "REPLACE", err);
    if (rc == 0 && slen == 0 && rlen == 0)
        rc = asr_err_set(err, ASR_EPARSE,
                         "edits: edit at line %d: SEARCH and REPLACE are both empty", line);
    if (rc == 0 && (p = memdup_z(path, strlen(path))) == NULL)
        rc = asr_err_set(err, ASR_ENOMEM, "edits: out of memory");
    if (rc != 0) {
        free(s);
        free(r);
        return rc;
    }
    return push_edit(e, p, s, slen, r, rlen, line, err);
}

/* ---------------------------------------------------------------------------------------------
 * Paths
 * ------------------------------------------------------------------------------------------- */

static bool path_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '+' || c == '@' || c == ',' || c == '=' || c == '/';
}

/* Why path is not a safe relative path, written into why; false if it is one. */
static bool path_problem(const char *path, char *why, size_t cap)
{
    size_t n = strlen(path);
    if (n == 0) {
        snprintf(why, cap, "is empty");
        return true;
    }
    if (n > ASR_EDITS_MAX_PATH) {
        snprintf(why, cap, "is longer than %u bytes", ASR_EDITS_MAX_PATH);
        return true;
    }
    if (path[0] == '/') {
        snprintf(why, cap, "is absolute");
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        if (path_char_ok(c))
            continue;
        if (c == '\\')
            snprintf(why, cap, "contains a backslash");
        else if (c >= 0x80)
            snprintf(why, cap, "contains a non-ASCII byte (0x%02x at offset %zu)", c, i);
        else if (c < 0x20 || c == 0x7f)
            snprintf(why, cap, "contains a control character (0x%02x at offset %zu)", c, i);
        else
            snprintf(why, cap,
                     "contains '%c' (only letters, digits and . _ - + @ , = / are allowed)", c);
        return true;
    }
    int segs = 0;
    for (const char *p = path;;) {
        const char *slash = strchr(p, '/');
        size_t m = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (++segs > ASR_EDITS_MAX_SEGMENTS) {
            snprintf(why, cap, "has more than %d components", ASR_EDITS_MAX_SEGMENTS);
            return true;
        }
        if (m == 0) {
            snprintf(why, cap, "has an empty component ('//' or a trailing '/')");
            return true;
        }
        if (m > 255) {
            snprintf(why, cap, "has a component longer than 255 bytes");
            return true;
        }
        if ((m == 1 && p[0] == '.') || (m == 2 && p[0] == '.' && p[1] == '.')) {
            snprintf(why, cap, "has a '%.*s' component", (int)m, p);
            return true;
        }
        if (m == 4 && p[0] == '.' && (p[1] | 0x20) == 'g' && (p[2] | 0x20) == 'i' &&
            (p[3] | 0x20) == 't') {
            snprintf(why, cap, "has a '.git' component");
            return true;
        }
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return false;
}

int asr_edits_check_paths(const struct asr_edits *e, const asr_argv patch_paths,
                          struct asr_err *err)
{
    if (e == NULL)
        return asr_err_set(err, ASR_EINVAL, "edits: no edits");
    char ex[64], why[160];
    for (size_t i = 0; i < e->n; i++) {
        const struct asr_edit *ed = &e->v[i];
        const char *path = ed->path != NULL ? ed->path : "";
        if (path_problem(path, why, sizeof(why)))
            return asr_err_set(err, ASR_EINVAL, "edits: edit %zu (line %d): path '%s' %s", i + 1,
                               ed->line, excerpt(ex, sizeof(ex), path, strlen(path)), why);
        /* One glob semantics for the whole program: the patch action's (execute/actions.c). */
        if (asr_path_allowed(path, patch_paths))
            continue;
        if (patch_paths == NULL || patch_paths[0] == NULL)
            return asr_err_set(err, ASR_EINVAL,
                               "edits: edit %zu (line %d): path '%s' refused: the service has no "
                               "patch_paths, so no patch is allowed",
                               i + 1, ed->line, path);
        char list[256];
        size_t j = 0;
        for (size_t k = 0; patch_paths[k] != NULL && j + 1 < sizeof(list); k++) {
            int w = snprintf(list + j, sizeof(list) - j, "%s%s", k ? ", " : "", patch_paths[k]);
            if (w < 0)
                break;
            j += (size_t)w;
        }
        return asr_err_set(err, ASR_EINVAL,
                           "edits: edit %zu (line %d): path '%s' is outside patch_paths (%s)",
                           i + 1, ed->line, path, list);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Applying to a buffer
 * ------------------------------------------------------------------------------------------- */

/* The content of one file while its edits are applied. */
struct fbuf {
    char *cur; /* contents so far, with the virtual final newline when no_final_nl */
    size_t cur_len;
    bool exists; /* exists after the edits so far */
    bool crlf, no_final_nl;
};

/* s with every "\n" turned into "\r\n" when crlf; a new string. */
static char *with_eol(const char *s, size_t n, bool crlf, size_t *outlen)
{
    size_t extra = 0;
    if (crlf)
        for (size_t i = 0; i < n; i++)
            extra += s[i] == '\n';
    char *o = malloc(n + extra + 1);
    if (o == NULL)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (crlf && s[i] == '\n')
            o[j++] = '\r';
        o[j++] = s[i];
    }
    o[j] = '\0';
    *outlen = j;
    return o;
}

/* Occurrences of needle in hay that start a line (up to MAX_COUNT); the first offset and up to
 * three line numbers are returned. */
static int count_at_lines(const char *hay, size_t hn, const char *nd, size_t nn, size_t *first,
                          size_t lines[3])
{
    int count = 0;
    size_t from = 0;
    while (count < MAX_COUNT && from + nn <= hn) {
        const char *hit = memmem(hay + from, hn - from, nd, nn);
        if (hit == NULL)
            break;
        size_t off = (size_t)(hit - hay);
        if (off == 0 || hay[off - 1] == '\n') {
            if (count == 0)
                *first = off;
            if (count < 3)
                lines[count] = line_of(hay, off);
            count++;
        }
        from = off + 1;
    }
    return count;
}

/*
 * The whitespace-insensitive form of text, for the tolerant match: every line loses its leading
 * blanks (space, tab) and its trailing blanks and CR, and each run of blanks inside it becomes
 * one space; lines stay lines, so line k of the result is line k of text. A new string (its
 * length in *outlen), or NULL when out of memory.
 */
static char *canonical(const char *p, size_t n, size_t *outlen)
{
    char *o = malloc(n + 1);
    if (o == NULL)
        return NULL;
    size_t j = 0, i = 0;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t end = nl != NULL ? (size_t)(nl - p) : n;
        size_t a = i, b = end;
        while (a < b && is_blank(p[a]))
            a++;
        while (b > a && (is_blank(p[b - 1]) || p[b - 1] == '\r'))
            b--;
        for (size_t k = a; k < b; k++) {
            if (is_blank(p[k])) {
                if (!is_blank(p[k - 1])) /* k > a, since p[a] is not blank */
                    o[j++] = ' ';
            } else {
                o[j++] = p[k];
            }
        }
        if (nl != NULL)
            o[j++] = '\n';
        i = end + (nl != NULL);
    }
    o[j] = '\0';
    *outlen = j;
    return o;
}

/* Offset in p[0..n) of the start of 1-based line k (n if the text has fewer lines). */
static size_t line_start(const char *p, size_t n, size_t k)
{
    size_t off = 0;
    while (k > 1 && off < n) {
        const char *nl = memchr(p + off, '\n', n - off);
        if (nl == NULL)
            return n;
        off = (size_t)(nl - p) + 1;
        k--;
    }
    return off;
}

static void where_lines(char *where, size_t cap, int count, const size_t lines[3])
{
    if (count == 2)
        snprintf(where, cap, "lines %zu and %zu", lines[0], lines[1]);
    else
        snprintf(where, cap, "lines %zu, %zu, %zu...", lines[0], lines[1], lines[2]);
}

/*
 * The fallback when SEARCH (s, with the file's line ends) does not occur exactly: the one place
 * where its lines equal the file's lines once both are in canonical() form. Sets [*from, *to),
 * the whole lines of the file to replace. Never fuzzy: every line must be equal but for blanks,
 * blank lines count, and the match must be unique.
 */
static int tolerant_match(const struct fbuf *f, const struct asr_edit *ed, size_t editno,
                          size_t *from, size_t *to, struct asr_err *err)
{
    size_t hl, nl;
    char *h = canonical(f->cur, f->cur_len, &hl);
    char *nd = canonical(ed->search, ed->search_len, &nl);
    int rc = 0;
    if (h == NULL || nd == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "edits: out of memory");
        goto out;
    }
    size_t first = 0, lines[3] = {0, 0, 0};
    int count = count_at_lines(h, hl, nd, nl, &first, lines);
    if (count == 0) {
        rc = asr_err_set(err, ASR_EINVAL,
                         "edits: edit %zu (%s, line %d): SEARCH not found in the file", editno,
                         ed->path, ed->line);
        goto out;
    }
    if (count > 1) {
        char where[80];
        where_lines(where, sizeof(where), count, lines);
        rc = asr_err_set(err, ASR_EINVAL,
                         "edits: edit %zu (%s, line %d): SEARCH not found exactly, and with "
                         "whitespace ignored it occurs %s%d times (%s); it must occur exactly "
                         "once, so include more surrounding lines",
                         editno, ed->path, ed->line, count >= MAX_COUNT ? "at least " : "", count,
                         where);
        goto out;
    }
    size_t nlines = 0;
    for (size_t i = 0; i < nl; i++)
        nlines += nd[i] == '\n';
    *from = line_start(f->cur, f->cur_len, lines[0]);
    *to = line_start(f->cur, f->cur_len, lines[0] + nlines);
    if (*to == *from) /* SEARCH ends without a newline (a struct built by hand): to the end */
        *to = f->cur_len;
out:
    free(h);
    free(nd);
    return rc;
}

/* Applies edit ed to the in-memory content of its file. */
static int apply_one(struct fbuf *f, const struct asr_edit *ed, size_t editno, struct asr_err *err)
{
    if (ed->search_len == 0) {
        if (f->exists)
            return asr_err_set(err, ASR_EINVAL,
                               "edits: edit %zu (%s, line %d): creates a file that already exists",
                               editno, ed->path, ed->line);
        f->cur = memdup_z(ed->replace, ed->replace_len);
        if (f->cur == NULL)
            return asr_err_set(err, ASR_ENOMEM, "edits: out of memory");
        f->cur_len = ed->replace_len;
        f->exists = true;
        return 0;
    }
    if (!f->exists)
        return asr_err_set(err, ASR_ENOENT, "edits: edit %zu (%s, line %d): no such file", editno,
                           ed->path, ed->line);
    size_t sl, rl;
    char *s = with_eol(ed->search, ed->search_len, f->crlf, &sl);
    char *r = with_eol(ed->replace, ed->replace_len, f->crlf, &rl);
    size_t first = 0, lines[3] = {0, 0, 0};
    int rc = 0;
    if (s == NULL || r == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "edits: out of memory");
        goto out;
    }
    /* Exact unique match first; only when there is none at all, the whitespace-tolerant one. */
    size_t from = 0, to = 0;
    int count = count_at_lines(f->cur, f->cur_len, s, sl, &first, lines);
    if (count == 1) {
        from = first;
        to = first + sl;
    } else if (count == 0) {
        rc = tolerant_match(f, ed, editno, &from, &to, err);
        if (rc != 0)
            goto out;
    } else {
        char where[80];
        where_lines(where, sizeof(where), count, lines);
        rc = asr_err_set(err, ASR_EINVAL,
                         "edits: edit %zu (%s, line %d): SEARCH occurs %s%d times (%s); it must "
                         "occur exactly once, so include more surrounding lines",
                         editno, ed->path, ed->line, count >= MAX_COUNT ? "at least " : "", count,
                         where);
        goto out;
    }
    size_t nlen = f->cur_len - (to - from) + rl;
    if (nlen > ASR_EDITS_MAX_FILE) {
        rc = asr_err_set(err, ASR_ETOOBIG,
                         "edits: edit %zu (%s, line %d): the file would exceed the cap of %u bytes",
                         editno, ed->path, ed->line, ASR_EDITS_MAX_FILE);
        goto out;
    }
    char *n = malloc(nlen + 1);
    if (n == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "edits: out of memory");
        goto out;
    }
    memcpy(n, f->cur, from);
    memcpy(n + from, r, rl);
    memcpy(n + from + rl, f->cur + to, f->cur_len - to);
    n[nlen] = '\0';
    free(f->cur);
    f->cur = n;
    f->cur_len = nlen;
out:
    free(s);
    free(r);
    return rc;
}

int asr_edits_apply_buffer(const struct asr_edits *e, const char *path, const char *content,
                           size_t len, char **out, size_t *out_len, struct asr_err *err)
{
    *out = NULL;
    *out_len = 0;
    if (e == NULL || path == NULL)
        return asr_err_set(err, ASR_EINVAL, "edits: no edits or no path");
    if (e->n > ASR_EDITS_MAX_BLOCKS)
        return asr_err_set(err, ASR_ETOOBIG, "edits: more than %d edits", ASR_EDITS_MAX_BLOCKS);
    if (content != NULL && len > ASR_EDITS_MAX_FILE)
        return asr_err_set(err, ASR_ETOOBIG, "edits: %s: file of %zu bytes exceeds the cap of %u",
                           path, len, ASR_EDITS_MAX_FILE);
    const char *nul = content != NULL ? memchr(content, '\0', len) : NULL;
    if (nul != NULL)
        return asr_err_set(err, ASR_EINVAL,
                           "edits: %s: a binary file (NUL byte at offset %zu); only text files "
                           "are edited",
                           path, (size_t)(nul - content));
    struct fbuf f = {0};
    if (content != NULL) {
        const char *nl = memchr(content, '\n', len);
        f.exists = true;
        f.crlf = nl != NULL && nl > content && nl[-1] == '\r';
        f.no_final_nl = len > 0 && content[len - 1] != '\n';
        size_t extra = f.no_final_nl ? (f.crlf ? 2 : 1) : 0;
        f.cur = malloc(len + extra + 1);
        if (f.cur == NULL)
            return asr_err_set(err, ASR_ENOMEM, "edits: out of memory");
        if (len > 0)
            memcpy(f.cur, content, len);
        memcpy(f.cur + len, f.crlf ? "\r\n" : "\n", extra);
        f.cur_len = len + extra;
        f.cur[f.cur_len] = '\0';
    }
    int rc = 0;
    bool any = false;
    for (size_t i = 0; i < e->n && rc == 0; i++) {
        if (e->v[i].path == NULL || strcmp(e->v[i].path, path) != 0)
            continue;
        any = true;
        rc = apply_one(&f, &e->v[i], i + 1, err);
    }
    if (rc == 0 && !any)
        rc = asr_err_set(err, ASR_EINVAL, "edits: no edit names %s", path);
    /* A file that had no final newline keeps lacking it. */
    size_t eol = f.crlf ? 2 : 1;
    if (rc == 0 && f.no_final_nl && f.cur_len >= eol &&
        memcmp(f.cur + f.cur_len - eol, f.crlf ? "\r\n" : "\n", eol) == 0)
        f.cur_len -= eol;
    /* Text only: what is written is valid UTF-8 without NUL bytes. */
    if (rc == 0 && (nul = memchr(f.cur, '\0', f.cur_len)) != NULL)
        rc = asr_err_set(err, ASR_EINVAL,
                         "edits: %s: the result has a NUL byte at offset %zu; only text is written",
                         path, (size_t)(nul - f.cur));
    size_t bad = rc == 0 ? asr_utf8_valid_prefix((const unsigned char *)f.cur, f.cur_len) : 0;
    if (rc == 0 && bad < f.cur_len)
        rc = asr_err_set(err, ASR_EINVAL,
                         "edits: %s: the result is not valid UTF-8 (at offset %zu); only text is "
                         "written",
                         path, bad);
    if (rc != 0) {
        free(f.cur);
        return rc;
    }
    f.cur[f.cur_len] = '\0';
    *out = f.cur;
    *out_len = f.cur_len;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Applying to a tree on disk
 * ------------------------------------------------------------------------------------------- */

/* One file touched by the edits. */
struct fstate {
    const char *path; /* the edit's path (not owned) */
    const char *name; /* its last component, within path */
    int dirfd;        /* the parent directory, opened from root without following symlinks */
    bool on_disk;     /* existed before */
    mode_t mode;
    char *orig; /* the contents on disk (on_disk) */
    size_t orig_len;
    char *cur; /* the contents after the edits (asr_edits_apply_buffer) */
    size_t cur_len;
    char tmp[64]; /* the temp file while writing */
    bool tmp_made, renamed;
};

/* Reads the whole regular file fd into a new buffer (at most ASR_EDITS_MAX_FILE bytes). */
static int read_all(int fd, char **out, size_t *outlen)
{
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    if (b == NULL)
        return ASR_ENOMEM;
    for (;;) {
        if (len == cap) {
            if (cap > ASR_EDITS_MAX_FILE) {
                free(b);
                return ASR_ETOOBIG;
            }
            char *nb = realloc(b, cap * 2);
            if (nb == NULL) {
                free(b);
                return ASR_ENOMEM;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(b);
            return ASR_EIO;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len > ASR_EDITS_MAX_FILE) {
        free(b);
        return ASR_ETOOBIG;
    }
    *out = b;
    *outlen = len;
    return 0;
}

/* Opens the parent directory of path below rootfd, one component at a time, never following a
 * symlink; reads the file if it exists. */
static int open_file(int rootfd, struct fstate *f, size_t editno, struct asr_err *err)
{
    int fd = dup(rootfd);
    if (fd < 0)
        return asr_err_set(err, ASR_EIO, "edits: edit %zu (%s): dup: %s", editno, f->path,
                           strerror(errno));
    const char *p = f->path;
    char seg[256];
    for (;;) {
        const char *slash = strchr(p, '/');
        if (slash == NULL)
            break;
        size_t m = (size_t)(slash - p);
        memcpy(seg, p, m); /* m <= 255, checked by path_problem */
        seg[m] = '\0';
        int nfd = openat(fd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0) {
            int e = errno;
            struct stat st;
            int code = ASR_EINVAL;
            const char *why;
            if (fstatat(fd, seg, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                why = "is a symlink (refused)";
            else if (e == ENOENT)
                why = "does not exist", code = ASR_ENOENT;
            else if (e == ENOTDIR)
                why = "is not a directory";
            else
                why = strerror(e), code = ASR_EIO;
            close(fd);
            return asr_err_set(err, code, "edits: edit %zu (%s): directory '%.*s' %s", editno,
                               f->path, (int)(slash - f->path), f->path, why);
        }
        close(fd);
        fd = nfd;
        p = slash + 1;
    }
    f->name = p;
    f->dirfd = fd;
    struct stat st;
    if (fstatat(fd, f->name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return 0; /* a file to create, or an error the first edit will report */
        return asr_err_set(err, ASR_EIO, "edits: edit %zu (%s): stat: %s", editno, f->path,
                           strerror(errno));
    }
    if (S_ISLNK(st.st_mode))
        return asr_err_set(err, ASR_EINVAL, "edits: edit %zu (%s): the file is a symlink (refused)",
                           editno, f->path);
    if (!S_ISREG(st.st_mode))
        return asr_err_set(err, ASR_EINVAL, "edits: edit %zu (%s): not a regular file", editno,
                           f->path);
    if ((uintmax_t)st.st_size > ASR_EDITS_MAX_FILE)
        return asr_err_set(err, ASR_ETOOBIG,
                           "edits: edit %zu (%s): file of %jd bytes exceeds the cap of %u", editno,
                           f->path, (intmax_t)st.st_size, ASR_EDITS_MAX_FILE);
    int ffd = openat(fd, f->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st2;
    if (ffd < 0 || fstat(ffd, &st2) != 0 || !S_ISREG(st2.st_mode) || st2.st_ino != st.st_ino) {
        int e = errno;
        if (ffd >= 0)
            close(ffd);
        return asr_err_set(err, ASR_EIO, "edits: edit %zu (%s): cannot open: %s", editno, f->path,
                           ffd < 0 ? strerror(e) : "it changed while being opened");
    }
    int rc = read_all(ffd, &f->orig, &f->orig_len);
    close(ffd);
    if (rc == ASR_ETOOBIG)
        return asr_err_set(err, rc, "edits: edit %zu (%s): file exceeds the cap of %u bytes",
                           editno, f->path, ASR_EDITS_MAX_FILE);
    if (rc != 0)
        return asr_err_set(err, rc, "edits: edit %zu (%s): cannot read: %s", editno, f->path,
                           rc == ASR_EIO ? strerror(errno) : asr_strerror(rc));
    f->on_disk = true;
    f->mode = st.st_mode & 07777;
    return 0;
}

static int write_fd(int fd, const char *p, size_t n)
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

/* Writes data to a new temp file in f's directory (name in f->tmp), with mode; -1 and errno. */
static int write_tmp(struct fstate *f, const char *data, size_t len, mode_t mode, unsigned k)
{
    snprintf(f->tmp, sizeof(f->tmp), ".asr-edit.%ld.%u", (long)getpid(), k);
    int fd = openat(f->dirfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    f->tmp_made = true;
    if (write_fd(fd, data, len) != 0 || fchmod(fd, mode) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return close(fd);
}

/* Moves f's temp file into place: over the old file, or as a new name that must not exist. */
static int install_tmp(struct fstate *f)
{
    int rc;
    if (f->on_disk) {
        rc = renameat(f->dirfd, f->tmp, f->dirfd, f->name);
    } else {
        rc = linkat(f->dirfd, f->tmp, f->dirfd, f->name, 0);
        if (rc == 0)
            unlinkat(f->dirfd, f->tmp, 0);
    }
    if (rc == 0) {
        f->tmp_made = false;
        fsync(f->dirfd);
    }
    return rc;
}

/* Puts back the files already installed (best effort). */
static void roll_back(struct fstate *fs, size_t nf)
{
    for (size_t i = 0; i < nf; i++) {
        struct fstate *f = &fs[i];
        if (!f->renamed)
            continue;
        if (!f->on_disk) {
            unlinkat(f->dirfd, f->name, 0);
        } else if (write_tmp(f, f->orig, f->orig_len, f->mode, 1000u + (unsigned)i) == 0) {
            install_tmp(f);
        }
        if (f->tmp_made)
            unlinkat(f->dirfd, f->tmp, 0);
        f->tmp_made = false;
    }
}

/* Applies in memory, then (when write is set) writes. */
static int apply_tree(const struct asr_edits *e, const char *root, bool write, struct asr_err *err)
{
    if (e == NULL || root == NULL)
        return asr_err_set(err, ASR_EINVAL, "edits: no edits or no root");
    if (e->n > ASR_EDITS_MAX_BLOCKS)
        return asr_err_set(err, ASR_ETOOBIG, "edits: more than %d edits", ASR_EDITS_MAX_BLOCKS);
    int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return asr_err_set(err, errno == ENOENT ? ASR_ENOENT : ASR_EIO,
                           "edits: cannot open the tree %s: %s", root, strerror(errno));
    struct fstate fs[ASR_EDITS_MAX_BLOCKS];
    size_t nf = 0;
    int rc = 0;
    char why[160], ex[64];
    for (size_t i = 0; i < e->n && rc == 0; i++) {
        const struct asr_edit *ed = &e->v[i];
        const char *path = ed->path != NULL ? ed->path : "";
        if (path_problem(path, why, sizeof(why))) {
            rc = asr_err_set(err, ASR_EINVAL, "edits: edit %zu (line %d): path '%s' %s", i + 1,
                             ed->line, excerpt(ex, sizeof(ex), path, strlen(path)), why);
            break;
        }
        struct fstate *f = NULL;
        for (size_t k = 0; k < nf && f == NULL; k++)
            if (strcmp(fs[k].path, path) == 0)
                f = &fs[k];
        if (f == NULL) {
            f = &fs[nf++];
            memset(f, 0, sizeof(*f));
            f->path = path;
            f->dirfd = -1;
            rc = open_file(rootfd, f, i + 1, err);
        }
    }
    /* Every file's edits, in memory, through the same code as an in-memory commit (asr-git). */
    for (size_t i = 0; i < nf && rc == 0; i++) {
        struct fstate *f = &fs[i];
        rc = asr_edits_apply_buffer(e, f->path, f->on_disk ? f->orig : NULL, f->orig_len, &f->cur,
                                    &f->cur_len, err);
        if (!f->on_disk)
            f->mode = 0644;
    }
    /* Write every temp file first (the usual failures: disk full, permissions), then rename. */
    for (size_t i = 0; i < nf && rc == 0 && write; i++) {
        struct fstate *f = &fs[i];
        if (f->on_disk && f->cur_len == f->orig_len && memcmp(f->cur, f->orig, f->cur_len) == 0)
            continue;
        if (write_tmp(f, f->cur, f->cur_len, f->mode, (unsigned)i) != 0) {
            rc = asr_err_set(err, ASR_EIO, "edits: %s: cannot write a temp file: %s", f->path,
                             strerror(errno));
        }
    }
    for (size_t i = 0; i < nf && rc == 0 && write; i++) {
        struct fstate *f = &fs[i];
        if (!f->tmp_made)
            continue;
        if (install_tmp(f) != 0) {
            int en = errno;
            rc = asr_err_set(err, en == EEXIST ? ASR_EINVAL : ASR_EIO,
                             "edits: %s: cannot put the new file in place: %s (the files already "
                             "written were put back)",
                             f->path, en == EEXIST ? "it appeared meanwhile" : strerror(en));
            roll_back(fs, i);
        } else {
            f->renamed = true;
        }
    }
    for (size_t i = 0; i < nf; i++) {
        if (fs[i].tmp_made)
            unlinkat(fs[i].dirfd, fs[i].tmp, 0);
        if (fs[i].dirfd >= 0)
            close(fs[i].dirfd);
        free(fs[i].orig);
        free(fs[i].cur);
    }
    close(rootfd);
    return rc;
}

int asr_edits_apply(const struct asr_edits *e, const char *root, struct asr_err *err)
{
    return apply_tree(e, root, true, err);
}

int asr_edits_check(const struct asr_edits *e, const char *root, struct asr_err *err)
{
    return apply_tree(e, root, false, err);
}
