/*
 * redact.c - secret redaction for everything that leaves the host; see redact.h.
 *
 * How it works, in three steps:
 *   1. A decoded view of the input is built: JSON escapes (a run of backslashes and the character
 *      after it, \n \r \t, \u00XX) and percent escapes (%XX, and %25XX for doubly encoded text)
 *      become the bytes they stand for, and map[] remembers where each view byte came from.
 *      Detection runs on the view, so `\"password\":\"x\"` and `password%3Dx` look like
 *      `"password":"x"` and `password=x`; the output is always built from the original bytes.
 *   2. One left-to-right pass over the view. At each position a few detectors keyed on the
 *      current byte may claim a span (a vendor token prefix, a key=value separator, "://", a PEM
 *      header, the word Bearer or Basic). A detector that claims a span also consumes it, so spans
 *      come out sorted and disjoint and nothing is looked at twice. Backward looks (a key before
 *      '=', a URL scheme) are bounded by a constant, so the pass is linear.
 *   3. The original bytes are copied with each span replaced by its marker.
 *
 * Idempotence (redacting twice = once) is a design rule, not an accident: an existing marker is
 * skipped as a unit and acts as a boundary, a backward look never reaches into the previous span
 * (in the second pass that is a marker), and the one context-dependent rule (a 40-character AWS
 * secret needs "aws" or "secret" nearby) cannot see past a marker, so the second pass can only
 * find less context than the first did.
 */
#include "strategy/redact.h"
#include "asr/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const KIND_NAMES[] = {
#define KIND_NAME(name, str) str,
    ASR_REDACT_KIND_MAP(KIND_NAME)
#undef KIND_NAME
};

const char *asr_redact_kind_name(int kind)
{
    if (kind < 0 || kind >= ASR_REDACT_KINDS)
        return "unknown";
    return KIND_NAMES[kind];
}

/* Longest key name looked at before a separator, and longest URL userinfo. */
#define KEY_MAX 64
#define USERINFO_MAX 256
/* A private key block is a few KB; an END marker further away than this is not its end. */
#define PEM_MAX (64 * 1024)
/* Longest quoted or unquoted value of a key=value assignment that is redacted as one. */
#define VALUE_MAX 1024

struct span {
    size_t start, end; /* view offsets, [start, end) */
    int kind;
};

struct scan {
    const unsigned char *s; /* the view */
    size_t n;
    const size_t *map; /* map[i]: input offset of view byte i, map[n] = input length; NULL = same */
    struct span *spans;
    size_t nspans, aspans;
    size_t last_end;   /* end of the last span: backward looks stop here */
    size_t fence;      /* end of the last marker or PEM block: AWS context stops here */
    size_t line_start; /* view offset of the current line and the one before */
    size_t prev_line_start;
    size_t ctx;       /* just past the last "aws"/"secret"/access key id seen, or SIZE_MAX */
    size_t pem_end;   /* the next "-----END " at or after pem_from, or n for none */
    size_t pem_from;  /* where that search started; SIZE_MAX before the first */
    size_t urun_from; /* the last base64url run computed: [urun_from, urun_end) */
    size_t urun_end;
    size_t jwt_skip;  /* a JWT cannot start before this (one that began earlier failed) */
    struct span pend; /* a URL password found ahead of the scan (end 0: none), see step() */
};

/* --- character classes -------------------------------------------------------------------- */

static bool is_upper(unsigned char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool is_lower(unsigned char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
    return is_upper(c) || is_lower(c);
}

static bool is_alnum(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}

static bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_val(unsigned char c)
{
    if (is_digit(c))
        return (unsigned)(c - '0');
    return (unsigned)((c | 0x20) - 'a' + 10);
}

static unsigned char lower(unsigned char c)
{
    return is_upper(c) ? (unsigned char)(c | 0x20) : c;
}

/* base64 url-safe alphabet (JWT segments, Google and OpenAI keys). */
static bool is_b64url(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '_';
}

/* Standard base64 alphabet without padding (AWS secrets, Basic credentials). */
static bool is_b64(unsigned char c)
{
    return is_alnum(c) || c == '+' || c == '/';
}

/* RFC 7235 token68: what follows "Bearer ". */
static bool is_token68(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

/* Characters of a key name before '=' or ':'. */
static bool is_keych(unsigned char c)
{
    return is_alnum(c) || c == '_' || c == '-' || c == '.';
}

/* Ends an unquoted value. */
static bool is_value_end(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\0' || c == '&' || c == ';' ||
           c == ',' || c == '"' || c == '\'' || c == '`' || c == ')' || c == '}' || c == ']' ||
           c == '<' || c == '>' || c == '|';
}

/* --- the decoded view --------------------------------------------------------------------------
 */

/* A percent escape at p: its byte and length, or 0 when there is none. %25XX counts as XX. */
static size_t pct_escape(const unsigned char *p, size_t left, unsigned char *out)
{
    if (left < 3 || p[0] != '%' || !is_hex(p[1]) || !is_hex(p[2]))
        return 0;
    unsigned b = hex_val(p[1]) << 4 | hex_val(p[2]);
    if (b == '%' && left >= 5 && is_hex(p[3]) && is_hex(p[4])) {
        *out = (unsigned char)(hex_val(p[3]) << 4 | hex_val(p[4]));
        return 5;
    }
    *out = (unsigned char)b;
    return 3;
}

/*
 * A backslash escape at p: its byte and length, or 0. A run of backslashes counts as one, so a
 * doubly escaped `\\\"` reads as `"` too; \n \r \t become control bytes (a PEM block in a JSON
 * string has its lines back) and \u00XX its ASCII byte.
 */
static size_t bs_escape(const unsigned char *p, size_t left, unsigned char *out)
{
    size_t k = 0;
    while (k < left && p[k] == '\\')
        k++;
    if (k == 0 || k == left)
        return 0;
    unsigned char c = p[k];
    if (c == 'n')
        *out = '\n';
    else if (c == 'r')
        *out = '\r';
    else if (c == 't')
        *out = '\t';
    else if (c == 'u' && left - k >= 5 && p[k + 1] == '0' && p[k + 2] == '0' && is_hex(p[k + 3]) &&
             is_hex(p[k + 4]) && hex_val(p[k + 3]) < 8) {
        *out = (unsigned char)(hex_val(p[k + 3]) << 4 | hex_val(p[k + 4]));
        return k + 5;
    } else
        *out = c;
    return k + 1;
}

/* Builds the view into sc; without any escape byte the input itself is the view. */
static int build_view(struct scan *sc, const unsigned char *in, size_t len, unsigned char **vbuf,
                      size_t **vmap)
{
    *vbuf = NULL;
    *vmap = NULL;
    if (memchr(in, '%', len) == NULL && memchr(in, '\\', len) == NULL) {
        sc->s = in;
        sc->n = len;
        sc->map = NULL;
        return 0;
    }
    if (len >= SIZE_MAX / sizeof(size_t))
        return ASR_ENOMEM;
    unsigned char *v = malloc(len + 1);
    size_t *m = malloc((len + 1) * sizeof(*m));
    if (v == NULL || m == NULL) {
        free(v);
        free(m);
        return ASR_ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char b = in[i];
        size_t w = 0;
        if (b == '%') {
            w = pct_escape(in + i, len - i, &b);
        } else if (b == '\\') {
            w = bs_escape(in + i, len - i, &b);
            if (w == 0) {
                /* A run of backslashes that ends the input: copy it whole, rather than rescan
                 * the rest of the run from each of its bytes (quadratic). */
                for (; i < len; i++, n++) {
                    v[n] = in[i];
                    m[n] = i;
                }
                break;
            }
        }
        if (w == 0)
            w = 1;
        v[n] = b;
        m[n] = i;
        n++;
        i += w;
    }
    m[n] = len;
    *vbuf = v;
    *vmap = m;
    sc->s = v;
    sc->n = n;
    sc->map = m;
    return 0;
}

static size_t orig(const struct scan *sc, size_t i)
{
    return sc->map != NULL ? sc->map[i] : i;
}

/* --- scanning helpers ---------------------------------------------------------------------------
 */

static bool lit_at(const struct scan *sc, size_t i, const char *lit)
{
    size_t k = strlen(lit);
    return k <= sc->n - i && memcmp(sc->s + i, lit, k) == 0;
}

static bool lit_at_ci(const struct scan *sc, size_t i, const char *lit)
{
    size_t k = strlen(lit);
    if (k > sc->n - i)
        return false;
    for (size_t j = 0; j < k; j++)
        if (lower(sc->s[i + j]) != (unsigned char)lit[j])
            return false;
    return true;
}

static size_t run(const struct scan *sc, size_t i, bool (*pred)(unsigned char))
{
    while (i < sc->n && pred(sc->s[i]))
        i++;
    return i;
}

/*
 * The end of the base64url run through i. Word starts inside one run (after each '-' or '_')
 * would otherwise each rescan it, which is quadratic on "sk-a-sk-a-...".
 */
static size_t run_b64url(struct scan *sc, size_t i)
{
    if (sc->urun_end != 0 && i >= sc->urun_from && i <= sc->urun_end)
        return sc->urun_end;
    size_t e = run(sc, i, is_b64url);
    sc->urun_from = i;
    sc->urun_end = e;
    return e;
}

/* Length of a marker "[REDACTED:kind]" at i, or 0. */
static size_t marker_len(const struct scan *sc, size_t i)
{
    static const char pre[] = ASR_REDACT_MARKER_PREFIX;
    if (!lit_at(sc, i, pre))
        return 0;
    size_t j = i + sizeof(pre) - 1, k = j;
    while (k < sc->n && k - j <= 32 && (is_lower(sc->s[k]) || sc->s[k] == '_'))
        k++;
    if (k == j || k >= sc->n || sc->s[k] != ']')
        return 0;
    return k + 1 - i;
}

/*
 * Whether a run ends at '[', where a marker would be. A check that a shorter run can pass (an
 * upper length bound, an exact length, a decode that fails on later bytes) refuses such a run:
 * otherwise a token found later inside the run (after a '-' or '/') would, once replaced by its
 * marker, leave a shorter run that passes in a second redaction and fails in the first.
 */
static bool ends_at_bracket(const struct scan *sc, size_t e)
{
    return e < sc->n && sc->s[e] == '[';
}

/* A token may start at i: the byte before is not alphanumeric or ends the previous span. */
static bool starts_word(const struct scan *sc, size_t i)
{
    return i == 0 || i == sc->last_end || !is_alnum(sc->s[i - 1]);
}

/* The token ends at i: nothing alphanumeric follows. */
static bool ends_word(const struct scan *sc, size_t i)
{
    return i >= sc->n || !is_alnum(sc->s[i]);
}

/* Moves the line bookkeeping over [from, to), which a detector consumed. */
static void advance(struct scan *sc, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        if (sc->s[i] == '\n') {
            sc->prev_line_start = sc->line_start;
            sc->line_start = i + 1;
        }
    }
}

static int add_span(struct scan *sc, size_t start, size_t end, int kind)
{
    if (sc->nspans == sc->aspans) {
        size_t na = sc->aspans ? sc->aspans * 2 : 16;
        struct span *p = realloc(sc->spans, na * sizeof(*p));
        if (p == NULL)
            return ASR_ENOMEM;
        sc->spans = p;
        sc->aspans = na;
    }
    /* A span that runs into the pending URL password takes it in, so spans stay disjoint. */
    if (sc->pend.end != 0 && end > sc->pend.start) {
        if (sc->pend.end > end)
            end = sc->pend.end;
        sc->pend.end = 0;
    }
    sc->spans[sc->nspans++] = (struct span){start, end, kind};
    sc->last_end = end;
    return 0;
}

/*
 * Character-class count of a value, for the `key: value` form, where prose ("refresh token:
 * expired") looks like an assignment. A capital first letter does not count, so a word with a
 * capital ("Invalid", "SIMPLE") scores 1, and a password ("hunter2") 2.
 */
static bool looks_random(const unsigned char *v, size_t n)
{
    if (n < 6)
        return false;
    bool up = false, lo = false, dig = false, sym = false;
    for (size_t i = 0; i < n; i++) {
        if (is_upper(v[i]))
            up = up || i > 0;
        else if (is_lower(v[i]))
            lo = true;
        else if (is_digit(v[i]))
            dig = true;
        else
            sym = true;
    }
    if (up && !lo && !dig && !sym)
        return false; /* an upper-case word */
    return (int)up + (int)lo + (int)dig + (int)sym >= 2;
}

/* Values that stand for "no secret here": empty-ish words, masks and template references. */
static bool is_placeholder(const unsigned char *v, size_t n)
{
    static const char *const words[] = {"null",      "none",     "nil",    "true",   "false",
                                        "undefined", "redacted", "hidden", "masked", "empty",
                                        "unset",     "n/a",      "-",      "?"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t k = strlen(words[i]);
        if (k != n)
            continue;
        size_t j = 0;
        while (j < k && lower(v[j]) == (unsigned char)words[i][j])
            j++;
        if (j == k)
            return true;
    }
    size_t masked = 0;
    for (size_t i = 0; i < n; i++)
        masked += v[i] == '*' || v[i] == 'x' || v[i] == 'X' || v[i] == '#' || v[i] == '.';
    if (masked == n)
        return true;
    return n >= 2 && v[0] == '<' && v[n - 1] == '>';
}

/* --- vendor tokens ------------------------------------------------------------------------------
 */

static bool is_akid_char(unsigned char c)
{
    return is_upper(c) || is_digit(c);
}

/*
 * Fixed-prefix tokens at i (i starts a word). Returns the span end and sets *kind, or returns 0.
 * The minimum lengths are below the real ones so a short test key is still caught, but long
 * enough that an identifier with the same prefix ("sk-learn", "ghp_x") is not.
 */
static size_t vendor_token(struct scan *sc, size_t i, int *kind)
{
    static const char *const akid[] = {"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA",
                                       "AIPA", "ANPA", "ANVA", "APKA", "AROA"};
    unsigned char c = sc->s[i];
    size_t e;
    if (c == 'A') {
        for (size_t k = 0; k < sizeof(akid) / sizeof(akid[0]); k++) {
            if (!lit_at(sc, i, akid[k]))
                continue;
            e = run(sc, i + 4, is_akid_char);
            if (e - i == 20 && ends_word(sc, e)) {
                *kind = ASR_REDACT_AWS_ACCESS_KEY;
                return e;
            }
        }
        if (lit_at(sc, i, "AIza")) {
            e = run_b64url(sc, i + 4);
            if (e - i >= 34 && e - i <= 60 && !ends_at_bracket(sc, e)) {
                *kind = ASR_REDACT_GOOGLE_API_KEY;
                return e;
            }
        }
        return 0;
    }
    if (c == 'g') {
        if (lit_at(sc, i, "github_pat_")) {
            e = run_b64url(sc, i + 11);
            *kind = ASR_REDACT_GITHUB_TOKEN;
            return e - i >= 11 + 22 ? e : 0;
        }
        if (lit_at(sc, i, "glpat-")) {
            e = run_b64url(sc, i + 6);
            *kind = ASR_REDACT_GITLAB_TOKEN;
            return e - i >= 6 + 20 ? e : 0;
        }
        if (sc->n - i > 4 && sc->s[i + 1] == 'h' && strchr("pousr", sc->s[i + 2]) != NULL &&
            sc->s[i + 3] == '_') {
            e = run(sc, i + 4, is_alnum);
            *kind = ASR_REDACT_GITHUB_TOKEN;
            return e - i >= 4 + 30 && (e >= sc->n || sc->s[e] != '_') ? e : 0;
        }
        return 0;
    }
    if (c == 'x') {
        if (sc->n - i > 5 && lit_at(sc, i, "xox") && strchr("abposr", sc->s[i + 3]) != NULL &&
            sc->s[i + 4] == '-') {
            e = run_b64url(sc, i + 5);
            *kind = ASR_REDACT_SLACK_TOKEN;
            return e - i >= 5 + 10 ? e : 0;
        }
        if (lit_at(sc, i, "xapp-")) {
            e = run_b64url(sc, i + 5);
            *kind = ASR_REDACT_SLACK_TOKEN;
            return e - i >= 5 + 10 ? e : 0;
        }
        return 0;
    }
    if (c == 's' || c == 'r') {
        if (lit_at(sc, i + 1, "k_live_") || lit_at(sc, i + 1, "k_test_")) {
            e = run(sc, i + 8, is_alnum);
            *kind = ASR_REDACT_STRIPE_KEY;
            return e - i >= 8 + 10 ? e : 0;
        }
        if (c == 's' && lit_at(sc, i, "sk-ant-")) {
            e = run_b64url(sc, i + 7);
            *kind = ASR_REDACT_ANTHROPIC_KEY;
            return e - i >= 7 + 20 ? e : 0;
        }
        if (c == 's' && lit_at(sc, i, "sk-")) {
            e = run_b64url(sc, i + 3);
            bool dig = false, alpha = false;
            for (size_t k = i + 3; k < e && k < i + 64; k++) {
                dig = dig || is_digit(sc->s[k]);
                alpha = alpha || is_alpha(sc->s[k]);
            }
            *kind = ASR_REDACT_OPENAI_KEY;
            return e - i >= 3 + 20 && dig && alpha ? e : 0;
        }
        return 0;
    }
    if (c == 'w' && lit_at(sc, i, "whsec_")) {
        e = run(sc, i + 6, is_b64);
        *kind = ASR_REDACT_STRIPE_KEY;
        return e - i >= 6 + 20 ? e : 0;
    }
    if (c == 'n' && lit_at(sc, i, "npm_")) {
        e = run(sc, i + 4, is_alnum);
        *kind = ASR_REDACT_NPM_TOKEN;
        return e - i == 4 + 36 ? e : 0;
    }
    if (c == 'e' && lit_at(sc, i, "eyJ")) {
        /* A JWT (three segments) or JWE (five); the signature of an unsigned JWT is empty. */
        if (i < sc->jwt_skip)
            return 0; /* a later start in the same run fails the same way */
        size_t e1 = run_b64url(sc, i);
        sc->jwt_skip = e1;
        if (e1 - i < 10 || e1 >= sc->n || sc->s[e1] != '.')
            return 0;
        size_t e2 = run(sc, e1 + 1, is_b64url);
        if (e2 - e1 - 1 < 4 || e2 >= sc->n || sc->s[e2] != '.')
            return 0;
        e = run(sc, e2 + 1, is_b64url);
        for (int seg = 0; seg < 2 && e + 1 < sc->n && sc->s[e] == '.' && is_b64url(sc->s[e + 1]);
             seg++)
            e = run(sc, e + 1, is_b64url);
        *kind = ASR_REDACT_JWT;
        return e;
    }
    if (c == 'h' && lit_at(sc, i, "hooks.slack.com/services/")) {
        size_t p = i + 25;
        e = p;
        while (e < sc->n && (is_alnum(sc->s[e]) || sc->s[e] == '/'))
            e++;
        if (e - p < 20)
            return 0;
        *kind = ASR_REDACT_SLACK_WEBHOOK;
        return e; /* the whole URL path; the host stays readable in the marker's name */
    }
    return 0;
}

/* --- credentials after a scheme word ---------------------------------------------------------- */

/* Skips blanks and at most one line break (a header wrapped after "Bearer"); returns the end. */
static size_t skip_wrap(const struct scan *sc, size_t j)
{
    bool nl = false;
    while (j < sc->n) {
        unsigned char c = sc->s[j];
        if (c == ' ' || c == '\t' || c == '\r')
            j++;
        else if (c == '\n' && !nl) {
            nl = true;
            j++;
        } else
            break;
    }
    return j;
}

/* The token68 credential at j (with '=' padding); returns its end. */
static size_t token68_end(const struct scan *sc, size_t j)
{
    size_t e = run(sc, j, is_token68);
    while (e < sc->n && sc->s[e] == '=' && e > j)
        e++;
    return e;
}

/* Whether base64 text decodes to printable "user:password". */
static bool basic_has_colon(const unsigned char *p, size_t n)
{
    unsigned acc = 0;
    int bits = 0;
    bool colon = false;
    for (size_t i = 0; i < n && p[i] != '='; i++) {
        unsigned char c = p[i];
        unsigned v;
        if (is_upper(c))
            v = (unsigned)(c - 'A');
        else if (is_lower(c))
            v = (unsigned)(c - 'a' + 26);
        else if (is_digit(c))
            v = (unsigned)(c - '0' + 52);
        else if (c == '+' || c == '-')
            v = 62;
        else if (c == '/' || c == '_')
            v = 63;
        else
            return false;
        acc = (acc << 6 | v) & 0xffffu;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            unsigned char b = (unsigned char)(acc >> bits);
            if (b < 0x20 || b > 0x7e)
                return false;
            colon = colon || b == ':';
        }
    }
    return colon;
}

/*
 * "Bearer <token>" and "Basic <base64>" anywhere (i starts the word). The credential may be on the
 * next line. Bearer wants something token-like (two character classes, 8+ bytes) so prose about a
 * "bearer" is left alone; Basic wants base64 that decodes to "user:password", because "basic" is a
 * common word; under an Authorization key any Basic credential is taken (see assignment()).
 */
static size_t scheme_credential(struct scan *sc, size_t i, int *kind, size_t *start)
{
    bool bearer = lit_at_ci(sc, i, "bearer");
    if (!bearer && !lit_at_ci(sc, i, "basic"))
        return 0;
    size_t w = i + (bearer ? 6 : 5);
    if (w >= sc->n ||
        !(sc->s[w] == ' ' || sc->s[w] == '\t' || sc->s[w] == '\n' || sc->s[w] == '\r'))
        return 0;
    size_t j = skip_wrap(sc, w);
    size_t e = token68_end(sc, j);
    if (bearer) {
        if (e - j < 8 || !looks_random(sc->s + j, e - j))
            return 0;
        *kind = ASR_REDACT_BEARER;
    } else {
        if (e - j < 8 || ends_at_bracket(sc, e) || !basic_has_colon(sc->s + j, e - j))
            return 0;
        *kind = ASR_REDACT_BASIC_AUTH;
    }
    *start = j;
    return e;
}

/* --- key = value --------------------------------------------------------------------------------
 */

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/*
 * The kind of secret a key name announces, or -1. norm is the key lower-cased without '_', '-'
 * and '.', so "aws_secret_access_key", "clientSecret" and "X-Api-Key" compare alike; last is the
 * key's last word ("dbPass" -> "pass"), for the short names that are only safe as a whole word
 * ("bypass" and "compass" are not passwords).
 */
static int key_kind(const char *norm, size_t n, const char *last, size_t ln)
{
    static const char *const pw[] = {"password", "passwd", "passphrase"};
    static const char *const secret[] = {"secret",     "secretkey",     "privatekey",
                                         "signingkey", "encryptionkey", "masterkey",
                                         "credential", "credentials",   "signature"};
    static const char *const apikey[] = {"apikey", "accesskey", "subscriptionkey"};
    for (size_t i = 0; i < sizeof(pw) / sizeof(pw[0]); i++)
        if (ends_with(norm, n, pw[i]))
            return ASR_REDACT_PASSWORD;
    if ((ln == 4 && memcmp(last, "pass", 4) == 0) || (ln == 3 && memcmp(last, "pwd", 3) == 0) ||
        (ln == 2 && memcmp(last, "pw", 2) == 0))
        return ASR_REDACT_PASSWORD;
    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
        if (ends_with(norm, n, secret[i]))
            return ASR_REDACT_SECRET;
    if (ln == 3 && memcmp(last, "sig", 3) == 0)
        return ASR_REDACT_SECRET;
    for (size_t i = 0; i < sizeof(apikey) / sizeof(apikey[0]); i++)
        if (ends_with(norm, n, apikey[i]))
            return ASR_REDACT_API_KEY;
    if (ends_with(norm, n, "token"))
        return ASR_REDACT_TOKEN;
    if (ends_with(norm, n, "authorization") || (n == 4 && memcmp(norm, "auth", 4) == 0))
        return ASR_REDACT_AUTHORIZATION;
    return -1;
}

/* Reads the key that ends at ke (exclusive) backwards; returns its kind or -1. */
static int read_key(const struct scan *sc, size_t ke)
{
    size_t floor = sc->last_end > sc->fence ? sc->last_end : sc->fence;
    size_t ks = ke;
    while (ks > floor && ke - ks < KEY_MAX && is_keych(sc->s[ks - 1]))
        ks--;
    if (ks == ke)
        return -1;
    char norm[KEY_MAX], last[KEY_MAX];
    size_t n = 0, ln = 0;
    for (size_t k = ks; k < ke; k++)
        if (is_alnum(sc->s[k]))
            norm[n++] = (char)lower(sc->s[k]);
    /* The last word: back to a separator or a lower-to-upper (camelCase) step. */
    size_t ws = ke;
    while (ws > ks && is_alnum(sc->s[ws - 1])) {
        ws--;
        if (is_upper(sc->s[ws]) && ws > ks && is_lower(sc->s[ws - 1]))
            break;
    }
    for (size_t k = ws; k < ke; k++)
        last[ln++] = (char)lower(sc->s[k]);
    return key_kind(norm, n, last, ln);
}

static bool is_auth_scheme(const unsigned char *w, size_t n)
{
    static const char *const schemes[] = {"bearer",    "basic",     "token",   "digest",
                                          "negotiate", "ntlm",      "apikey",  "key",
                                          "hmac",      "sharedkey", "sso-key", "aws4-hmac-sha256"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t k = strlen(schemes[i]), j = 0;
        if (k != n)
            continue;
        while (j < k && lower(w[j]) == (unsigned char)schemes[i][j])
            j++;
        if (j == k)
            return true;
    }
    return false;
}

/* Whether a ';'-separated connection string (ADO.NET, ODBC, JDBC properties) precedes i. */
static bool in_conn_string(const struct scan *sc, size_t i)
{
    for (size_t k = i; k > sc->line_start && i - k < 512; k--)
        if (sc->s[k - 1] == ';')
            return true;
    return false;
}

/*
 * key=value, key: value, "key": "value", 'key' => 'value' with a sensitive key, at the separator
 * sep. Returns the end of the redacted value (consumed) or 0. An `=` assignment takes any value
 * that is not empty or a placeholder; an unquoted `key: value` (which prose imitates) also needs
 * the value to look random.
 */
static size_t assignment(struct scan *sc, size_t sep, int *kind, size_t *start)
{
    const unsigned char *s = sc->s;
    size_t n = sc->n;
    unsigned char c = s[sep];
    size_t after = sep + 1;
    if (c == ':') {
        /* "::" is a scope or an IPv6 address; "://" is a URL, whose password url_password()
         * takes (were it read as `apikey: //...`, a second pass would redact differently). */
        if ((after < n && s[after] == ':') || (sep > 0 && s[sep - 1] == ':') ||
            (after + 1 < n && s[after] == '/' && s[after + 1] == '/'))
            return 0;
    } else {
        if (after < n && s[after] == '>')
            after++;
        else if ((after < n && s[after] == '=') ||
                 (sep > 0 && strchr("=!<>:+-*/", s[sep - 1]) != NULL))
            return 0;
    }
    size_t floor = sc->last_end > sc->fence ? sc->last_end : sc->fence;
    size_t ke = sep;
    bool spaced = false;
    while (ke > floor && sep - ke < 8 && (s[ke - 1] == ' ' || s[ke - 1] == '\t')) {
        ke--;
        spaced = true;
    }
    bool quoted_key = ke > floor && (s[ke - 1] == '"' || s[ke - 1] == '\'');
    if (quoted_key)
        ke--;
    int k = read_key(sc, ke);
    if (k < 0)
        return 0;
    size_t j = after;
    if (c == ':' || spaced || after > sep + 1)
        while (j < n && (s[j] == ' ' || s[j] == '\t'))
            j++;
    unsigned char q = 0;
    if (j < n && (s[j] == '"' || s[j] == '\''))
        q = s[j++];
    size_t vs = j, ve = j;
    if (k == ASR_REDACT_AUTHORIZATION) {
        /* "Authorization: <scheme> <credential>": keep the scheme, take the credential. */
        size_t we = vs;
        while (we < n && (is_alpha(s[we]) || s[we] == '-' || is_digit(s[we])))
            we++;
        if (we > vs && we < n && (s[we] == ' ' || s[we] == '\t' || s[we] == '\n') &&
            is_auth_scheme(s + vs, we - vs)) {
            if (lit_at_ci(sc, vs, "bearer"))
                k = ASR_REDACT_BEARER;
            else if (lit_at_ci(sc, vs, "basic"))
                k = ASR_REDACT_BASIC_AUTH;
            vs = skip_wrap(sc, we);
            ve = token68_end(sc, vs);
            if (ve == vs || marker_len(sc, vs) > 0)
                return 0;
            *kind = k;
            *start = vs;
            return ve;
        }
    }
    /* Cheap refusals first: a refused value is not consumed and may be scanned again. */
    if (vs >= n || marker_len(sc, vs) > 0 ||
        (k == ASR_REDACT_PASSWORD && (s[vs] == '/' || s[vs] == '~')) || /* PWD=/home/app */
        (vs + 1 < n && ((s[vs] == '$' && s[vs + 1] == '{') || (s[vs] == '{' && s[vs + 1] == '{'))))
        return 0;
    if (q != 0) {
        while (ve < n && ve - vs < VALUE_MAX && s[ve] != q && s[ve] != '\n')
            ve++;
    } else {
        while (ve < n && ve - vs < VALUE_MAX && !is_value_end(s[ve]))
            ve++;
    }
    if (ve == vs || is_placeholder(s + vs, ve - vs))
        return 0;
    if (c == ':' && q == 0 && !quoted_key && !looks_random(s + vs, ve - vs))
        return 0;
    if (k == ASR_REDACT_PASSWORD && q == 0 && ((ve < n && s[ve] == ';') || in_conn_string(sc, sep)))
        k = ASR_REDACT_CONNECTION_STRING;
    *kind = k;
    *start = vs;
    return ve;
}

/* --- URLs ------------------------------------------------------------------------------------- */

static bool is_scheme_char(unsigned char c)
{
    return is_alnum(c) || c == '+' || c == '.' || c == '-';
}

static bool is_db_scheme(const unsigned char *p, size_t n)
{
    static const char *const db[] = {
        "postgres",   "postgresql", "mysql",   "mariadb", "mongodb",   "mongodb+srv", "redis",
        "rediss",     "amqp",       "amqps",   "mssql",   "sqlserver", "oracle",      "cockroachdb",
        "clickhouse", "cassandra",  "couchdb", "neo4j",   "memcached", "ldap",        "ldaps"};
    for (size_t i = 0; i < sizeof(db) / sizeof(db[0]); i++) {
        size_t k = strlen(db[i]), j = 0;
        if (k != n)
            continue;
        while (j < k && lower(p[j]) == (unsigned char)db[i][j])
            j++;
        if (j == k)
            return true;
    }
    return false;
}

/*
 * scheme://user:password@host at the ':' of "://". The password runs from the first ':' of the
 * userinfo to its last '@', so a password with a (decoded) '@' in it is taken whole.
 */
static size_t url_password(struct scan *sc, size_t i, int *kind, size_t *start)
{
    const unsigned char *s = sc->s;
    size_t floor = sc->last_end > sc->fence ? sc->last_end : sc->fence;
    size_t ss = i;
    while (ss > floor && i - ss < 32 && is_scheme_char(s[ss - 1]))
        ss--;
    if (i - ss < 2 || !is_alpha(s[ss]))
        return 0;
    size_t u = i + 3, colon = SIZE_MAX, at = SIZE_MAX;
    for (size_t j = u; j < sc->n && j - u < USERINFO_MAX; j++) {
        unsigned char c = s[j];
        if (c == '/' || c == '?' || c == '#' || c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
            c == '"' || c == '\'' || c == '<' || c == '>' || c == '`' || c == '[' || c == '\\' ||
            c == '\0')
            break;
        if (c == ':' && colon == SIZE_MAX)
            colon = j;
        if (c == '@')
            at = j;
    }
    if (colon == SIZE_MAX || at == SIZE_MAX || at <= colon + 1)
        return 0;
    *kind = is_db_scheme(s + ss, i - ss) ? ASR_REDACT_CONNECTION_STRING : ASR_REDACT_URL_PASSWORD;
    *start = colon + 1;
    return at;
}

/* --- PEM private keys ---------------------------------------------------------------------------
 */

static bool is_pem_body(unsigned char c)
{
    return is_b64(c) || c == '=' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ':' ||
           c == ',' || c == '-';
}

/* The end of the line-like header "-----BEGIN ... PRIVATE KEY-----" at i, or 0. */
static size_t pem_header(const struct scan *sc, size_t i)
{
    size_t j = i + 11; /* "-----BEGIN " */
    bool priv = false;
    while (j < sc->n && j - i < 80) {
        if (lit_at(sc, j, "-----"))
            return priv ? j + 5 : 0;
        if (lit_at(sc, j, "PRIVATE KEY"))
            priv = true;
        unsigned char c = sc->s[j];
        if (!(is_upper(c) || is_digit(c) || c == ' '))
            return 0;
        j++;
    }
    return 0;
}

/*
 * A private key block from its BEGIN line through its END line, across lines. Without an END
 * (a cut log) the base64 body that follows is taken. The next END is found once and remembered,
 * so a text of many BEGIN lines is still scanned in linear time.
 */
static size_t pem_block(struct scan *sc, size_t i)
{
    size_t h = pem_header(sc, i);
    if (h == 0)
        return 0;
    if (sc->pem_from == SIZE_MAX || sc->pem_end < h) {
        const unsigned char *p = memmem(sc->s + h, sc->n - h, "-----END ", 9);
        sc->pem_end = p != NULL ? (size_t)(p - sc->s) : sc->n;
        sc->pem_from = h;
    }
    if (sc->pem_end < sc->n && sc->pem_end - h <= PEM_MAX) {
        size_t e = sc->pem_end + 9;
        while (e < sc->n && e - sc->pem_end < 80 && sc->s[e] != '\n') {
            if (lit_at(sc, e, "-----"))
                return e + 5;
            e++;
        }
        return e;
    }
    size_t e = h;
    while (e < sc->n && e - h < PEM_MAX && is_pem_body(sc->s[e]))
        e++;
    while (e > h && (sc->s[e - 1] == '\n' || sc->s[e - 1] == '\r' || sc->s[e - 1] == ' '))
        e--;
    return e;
}

/* --- AWS secret access keys ------------------------------------------------------------------- */

/*
 * A secret access key is 40 base64 characters with nothing to tell it from other base64, so it
 * is only taken with context: "aws" or "secret" (any case) or an access key id earlier on the
 * same line or the line before, and not before the last marker. It must mix upper case, lower
 * case and a digit or symbol, which a hex digest (sha1 is 40 hex digits) never does.
 */
static bool aws_secret_at(const struct scan *sc, size_t i, size_t e)
{
    if (e - i != 40 || (e < sc->n && (sc->s[e] == '=' || is_b64url(sc->s[e]))) ||
        ends_at_bracket(sc, e))
        return false;
    size_t from = sc->prev_line_start > sc->fence ? sc->prev_line_start : sc->fence;
    if (sc->ctx == SIZE_MAX || sc->ctx < from)
        return false;
    bool up = false, lo = false, other = false;
    for (size_t k = i; k < e; k++) {
        unsigned char c = sc->s[k];
        up = up || is_upper(c);
        lo = lo || is_lower(c);
        other = other || is_digit(c) || c == '+' || c == '/';
    }
    return up && lo && other;
}

/* --- the pass --------------------------------------------------------------------------------- */

/* Looks at position i; returns where to continue (> i), having added a span if one was found. */
static int step(struct scan *sc, size_t i, size_t *next)
{
    const unsigned char *s = sc->s;
    unsigned char c = s[i];
    int kind = -1;
    size_t start = i, end = 0;
    *next = i + 1;
    if (sc->pend.end != 0 && i >= sc->pend.start) {
        struct span p = sc->pend;
        sc->pend.end = 0;
        *next = p.end;
        return add_span(sc, p.start, p.end, p.kind);
    }
    if (c == '\n') {
        sc->prev_line_start = sc->line_start;
        sc->line_start = i + 1;
        return 0;
    }
    if (c == '[') {
        size_t m = marker_len(sc, i);
        if (m > 0) {
            sc->fence = i + m;
            *next = i + m;
        }
        return 0;
    }
    if (c == '-' && lit_at(sc, i, "-----BEGIN ")) {
        end = pem_block(sc, i);
        if (end > 0) {
            kind = ASR_REDACT_PRIVATE_KEY;
            advance(sc, i, end);
            sc->fence = end;
        }
    } else if (c == ':' && lit_at(sc, i, "://") && sc->pend.end == 0) {
        /* The password is taken when the scan reaches it, not now: the user name before it is
         * scanned like any text (it can be a token, or not a user name at all). */
        size_t pe = url_password(sc, i, &kind, &start);
        if (pe != 0) {
            sc->pend = (struct span){start, pe, kind};
            *next = i + 3;
            return 0;
        }
    }
    if (end == 0 && (c == ':' || c == '='))
        end = assignment(sc, i, &kind, &start);
    if (end == 0 && is_alnum(c) && starts_word(sc, i)) {
        end = vendor_token(sc, i, &kind);
        if (end == 0 && (c == 'b' || c == 'B'))
            end = scheme_credential(sc, i, &kind, &start);
        if (end == 0 && (lit_at_ci(sc, i, "aws") || lit_at_ci(sc, i, "secret")))
            sc->ctx = i + 3;
    }
    if (end == 0 && is_b64(c) && (i == 0 || i == sc->last_end || !is_b64(s[i - 1]))) {
        size_t e = run(sc, i, is_b64);
        if (aws_secret_at(sc, i, e)) {
            kind = ASR_REDACT_AWS_SECRET_KEY;
            end = e;
        }
    }
    if (end == 0)
        return 0;
    advance(sc, i, start); /* a credential wrapped onto the next line */
    int rc = add_span(sc, start, end, kind);
    if (kind == ASR_REDACT_AWS_ACCESS_KEY)
        sc->ctx = end;
    *next = sc->last_end; /* end, or further when it took in a pending URL password */
    return rc;
}

static int emit(struct asr_buf *out, const char *p, size_t n)
{
    return n == 0 ? 0 : asr_buf_append(out, p, n);
}

int asr_redact(const char *in, size_t len, struct asr_buf *out, struct asr_redact_stats *st)
{
    if (st != NULL)
        memset(st, 0, sizeof(*st));
    if (len == 0)
        return 0;
    struct scan sc = {.ctx = SIZE_MAX, .pem_from = SIZE_MAX};
    unsigned char *vbuf;
    size_t *vmap;
    int rc = build_view(&sc, (const unsigned char *)in, len, &vbuf, &vmap);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < sc.n;) {
        size_t next;
        rc = step(&sc, i, &next);
        if (rc < 0)
            goto out;
        i = next;
    }
    if (sc.pend.end != 0) { /* not reachable today (the scan always reaches it); kept safe */
        rc = add_span(&sc, sc.pend.start, sc.pend.end, sc.pend.kind);
        if (rc < 0)
            goto out;
    }
    size_t pos = 0;
    for (size_t k = 0; k < sc.nspans; k++) {
        const struct span *sp = &sc.spans[k];
        size_t a = orig(&sc, sp->start), b = orig(&sc, sp->end);
        rc = emit(out, in + pos, a - pos);
        if (rc == 0)
            rc = asr_buf_puts(out, ASR_REDACT_MARKER_PREFIX);
        if (rc == 0)
            rc = asr_buf_puts(out, KIND_NAMES[sp->kind]);
        if (rc == 0)
            rc = asr_buf_puts(out, "]");
        if (rc < 0)
            goto out;
        if (st != NULL) {
            st->redactions++;
            st->by_kind[sp->kind]++;
        }
        pos = b;
    }
    rc = emit(out, in + pos, len - pos);
out:
    free(sc.spans);
    free(vbuf);
    free(vmap);
    return rc;
}
