/*
 * logformat.c - Loghub header formats and mask regexes with PCRE2; see logformat.h.
 *
 * The translation follows logparser's generate_logformat_regex(): the format is split at
 * `<Field>` markers; between them, runs of spaces become `\s+` and everything else is copied as
 * regex text; each field becomes `(?<Field>.*?)`; the whole is anchored with ^...$. Matching runs
 * in byte mode (no UTF check), so invalid UTF-8 in a log line cannot make it fail.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "detect/logformat.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#define MATCH_LIMIT 1000000u /* bounds backtracking on hostile input */

struct asr_logformat {
    pcre2_code *re;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    uint32_t content_group;
};

struct asr_masks {
    size_t n;
    pcre2_code **re;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    struct asr_buf tmp;
};

static int compile(const char *pattern, pcre2_code **out, struct asr_err *err, const char *what)
{
    int ecode;
    PCRE2_SIZE eoff;
    *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &ecode, &eoff, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ecode, msg, sizeof(msg));
        return asr_err_set(err, ASR_EPARSE, "%s '%s': %s at offset %zu", what, pattern,
                           (const char *)msg, (size_t)eoff);
    }
    return 0;
}

int asr_logformat_create(const char *fmt, struct asr_logformat **out, struct asr_err *err)
{
    *out = NULL;
    struct asr_buf rx;
    asr_buf_init(&rx, 64 * 1024);
    int rc = 0;
    struct asr_logformat *f = calloc(1, sizeof(*f));
    if (!f) {
        rc = ASR_ENOMEM;
        goto out;
    }
    bool has_content = false;
    asr_buf_puts(&rx, "^");
    for (const char *p = fmt; *p;) {
        const char *e = NULL;
        if (*p == '<')
            e = strpbrk(p + 1, "<>");
        if (e && *e == '>' && e > p + 1) {
            size_t n = (size_t)(e - p - 1);
            for (size_t i = 0; i < n; i++) {
                char ch = p[1 + i];
                if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= '0' && ch <= '9') || ch == '_')) {
                    rc = asr_err_set(err, ASR_EPARSE, "format field <%.*s> is not a name", (int)n,
                                     p + 1);
                    goto out;
                }
            }
            if (n == 7 && memcmp(p + 1, "Content", 7) == 0)
                has_content = true;
            asr_buf_printf(&rx, "(?<%.*s>.*?)", (int)n, p + 1);
            p = e + 1;
        } else if (*p == ' ') {
            while (*p == ' ')
                p++;
            asr_buf_puts(&rx, "\\s+");
        } else {
            asr_buf_append(&rx, p, 1);
            p++;
        }
    }
    if (asr_buf_puts(&rx, "$") != 0) {
        rc = asr_err_set(err, ASR_ETOOBIG, "format is too long");
        goto out;
    }
    if (!has_content) {
        rc = asr_err_set(err, ASR_EPARSE, "format '%s' has no <Content> field", fmt);
        goto out;
    }
    rc = compile(asr_buf_cstr(&rx), &f->re, err, "format regex");
    if (rc)
        goto out;
    int g = pcre2_substring_number_from_name(f->re, (PCRE2_SPTR) "Content");
    if (g <= 0) {
        rc = asr_err_set(err, ASR_EPARSE, "format '%s': <Content> appears more than once", fmt);
        goto out;
    }
    f->content_group = (uint32_t)g;
    f->md = pcre2_match_data_create_from_pattern(f->re, NULL);
    f->mctx = pcre2_match_context_create(NULL);
    if (!f->md || !f->mctx) {
        rc = ASR_ENOMEM;
        goto out;
    }
    pcre2_set_match_limit(f->mctx, MATCH_LIMIT);
    *out = f;
    f = NULL;
out:
    asr_buf_free(&rx);
    asr_logformat_destroy(f);
    return rc;
}

static inline bool is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

int asr_logformat_content(struct asr_logformat *f, const char *line, size_t len,
                          const char **content, size_t *clen)
{
    while (len > 0 && is_ws((unsigned char)line[0])) {
        line++;
        len--;
    }
    while (len > 0 && is_ws((unsigned char)line[len - 1]))
        len--;
    int rc = pcre2_match(f->re, (PCRE2_SPTR)line, len, 0, 0, f->md, f->mctx);
    if (rc < 0)
        return ASR_EPARSE;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(f->md);
    PCRE2_SIZE s = ov[2 * f->content_group], e = ov[2 * f->content_group + 1];
    if (s == PCRE2_UNSET || e < s)
        return ASR_EPARSE;
    *content = line + s;
    *clen = e - s;
    return 0;
}

void asr_logformat_destroy(struct asr_logformat *f)
{
    if (!f)
        return;
    pcre2_match_data_free(f->md);
    pcre2_match_context_free(f->mctx);
    pcre2_code_free(f->re);
    free(f);
}

int asr_masks_create(const char *const *regexes, size_t n, struct asr_masks **out,
                     struct asr_err *err)
{
    *out = NULL;
    struct asr_masks *m = calloc(1, sizeof(*m));
    if (!m)
        return ASR_ENOMEM;
    asr_buf_init(&m->tmp, 1 << 20);
    m->re = calloc(n ? n : 1, sizeof(*m->re));
    m->mctx = pcre2_match_context_create(NULL);
    m->md = pcre2_match_data_create(32, NULL);
    if (!m->re || !m->mctx || !m->md) {
        asr_masks_destroy(m);
        return ASR_ENOMEM;
    }
    pcre2_set_match_limit(m->mctx, MATCH_LIMIT);
    for (size_t i = 0; i < n; i++) {
        int rc = compile(regexes[i], &m->re[i], err, "mask");
        if (rc) {
            asr_masks_destroy(m);
            return rc;
        }
        m->n = i + 1;
    }
    *out = m;
    return 0;
}

/* Appends src with every match of re replaced by `<*>` (a global substitution, as Python's
 * re.sub does: an empty match is replaced too, and the scan then moves on one byte). */
static int subst(struct asr_masks *m, pcre2_code *re, const char *src, size_t len,
                 struct asr_buf *dst)
{
    size_t pos = 0, copied = 0;
    int rc;
    while (pos <= len) {
        rc = pcre2_match(re, (PCRE2_SPTR)src, len, pos, 0, m->md, m->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0)
            return ASR_EPARSE;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
        if ((rc = asr_buf_append(dst, src + copied, ov[0] - copied)) != 0 ||
            (rc = asr_buf_append(dst, "<*>", 3)) != 0)
            return rc;
        copied = ov[1];
        if (ov[1] == ov[0]) {
            /* Empty match: keep the next byte and search after it. */
            if (ov[1] >= len)
                break;
            if ((rc = asr_buf_append(dst, src + ov[1], 1)) != 0)
                return rc;
            copied = ov[1] + 1;
            pos = ov[1] + 1;
        } else {
            pos = ov[1];
        }
    }
    return asr_buf_append(dst, src + copied, len - copied);
}

int asr_masks_apply(struct asr_masks *m, const char *s, size_t len, struct asr_buf *out)
{
    asr_buf_reset(out);
    int rc = asr_buf_append(out, s, len);
    if (rc)
        return rc;
    for (size_t i = 0; i < m->n; i++) {
        asr_buf_reset(&m->tmp);
        rc = subst(m, m->re[i], out->data ? out->data : "", out->len, &m->tmp);
        if (rc)
            return rc;
        asr_buf_reset(out);
        if ((rc = asr_buf_append(out, m->tmp.data ? m->tmp.data : "", m->tmp.len)) != 0)
            return rc;
    }
    return 0;
}

void asr_masks_destroy(struct asr_masks *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        pcre2_code_free(m->re[i]);
    free(m->re);
    pcre2_match_data_free(m->md);
    pcre2_match_context_free(m->mctx);
    asr_buf_free(&m->tmp);
    free(m);
}

int asr_csv_field(struct asr_buf *out, const char *s, size_t n)
{
    bool quote = false;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote)
        return asr_buf_append(out, s, n);
    int rc = asr_buf_append(out, "\"", 1);
    size_t from = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (s[i] == '"') {
            rc = asr_buf_append(out, s + from, i + 1 - from); /* up to and including the quote */
            if (rc == 0)
                rc = asr_buf_append(out, "\"", 1);
            from = i + 1;
        }
    if (rc == 0)
        rc = asr_buf_append(out, s + from, n - from);
    if (rc == 0)
        rc = asr_buf_append(out, "\"", 1);
    return rc;
}
