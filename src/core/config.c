/*
 * config.c - loads and validates the asr YAML configuration (see include/asr/config.h and
 * docs/config.md).
 *
 * Place in the pipeline: before all of it. `asr run`, `asr config check` and SIGHUP reloads call
 * asr_config_load(); every stage then reads the struct asr_config it returns, never the YAML.
 *
 * How it works, in three steps:
 *  1. A pre-scan over libyaml's event stream rejects what this schema never needs and what makes
 *     YAML dangerous to a daemon: anchors and aliases (a few lines of them can expand into
 *     billions of nodes, and an alias can refer to its own container), nesting deeper than
 * CFG_MAX_DEPTH, more than CFG_MAX_NODES nodes and more than one document. Syntax errors surface
 * here too, with libyaml's own text and line.
 *  2. libyaml's document API (yaml_parser_load) builds the node tree, so every node knows its line.
 *  3. The tree is walked with schema tables in the manner of Fluent Bit's config maps: a mapping is
 *     a table of {key, handler, required, offset, arg}. The generic walk_map() rejects unknown and
 *     duplicate keys and reports missing required keys; a handler converts and checks one value
 *     and stores it at `offset` in the struct being filled; an optional `done` callback per table
 *     does the checks that span several keys (backoff limits, duplicate services, commands).
 *
 * The walk recurses only into mappings that the tables declare, so its depth is bounded by the
 * schema (five levels), not by the input. The first problem found is reported as one line
 * "FILE:LINE: KEY: REASON", KEY being the dotted path such as services[0].health.rise.
 */
#include "asr/config.h"
#include "asr/buf.h"
#include "asr/error.h"
#include "asr/timeutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* Caps on hostile or mistaken input. A real config is a few kilobytes and a few hundred nodes. */
#define CFG_MAX_BYTES (1u << 20)
#define CFG_MAX_DEPTH 32
#define CFG_MAX_NODES 100000
#define CFG_MAX_SERVICES 256
#define CFG_MAX_SIGNATURES 1024
#define CFG_MAX_LIST 1024
#define CFG_MAX_CONTEXT 1000 /* lines of context before or after a fault line */
#define CFG_MAX_FIELDS 32    /* most keys one schema table may have (size of walk_map's seen[]) */
#define CFG_SHOW_CAP 168     /* room for an escaped 40-byte excerpt of a value (see show()) */
#define CFG_PATH_CAP 808     /* room for an escaped 200-byte excerpt of a path */

enum cmd_kind { CMD_BUILD, CMD_TEST, CMD_START, CMD_COUNT };
static const char *const cmd_keys[CMD_COUNT] = {"build", "test", "start"};

/* The state of one parse: where messages go, what is being filled, where in the tree we are. */
struct ctx {
    const char *name; /* file name for messages */
    char *dir;        /* absolute base directory for relative paths (owned by cfg) */
    bool check;       /* filesystem and PATH checks enabled */
    const char *text; /* the input, to turn reader-error offsets into lines */
    size_t len;
    yaml_document_t *doc;
    struct asr_err *err;
    struct asr_config *cfg;
    struct asr_service_cfg *svc; /* service being filled */
    int cmd_line[CMD_COUNT];     /* line of argv[0] of build/test/start of that service */
    int name_line, listen_line;  /* lines of its name and listen values */
    size_t visits, max_visits;   /* node visits; a tree walk visits each node at most once */
    size_t plen;                 /* length of path */
    char path[256];              /* dotted path of the key being handled, e.g. services[0].build */
};

struct field;
typedef int (*set_cb)(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj);

/* One key of a mapping: its handler stores the converted value at obj + off. */
struct field {
    const char *key;
    set_cb set;
    bool required;
    size_t off;
    const void *arg; /* handler-specific: enum names, sub-schema, string check, command kind */
    int min;         /* least accepted value of integers and durations */
};

/* A mapping: its keys and an optional check run after all keys are set. */
struct schema {
    const struct field *fields;
    size_t nfields;
    int (*done)(struct ctx *c, yaml_node_t *map, void *obj);
};

/* A string check for set_str and the list handlers; `expect` completes "expected ...". */
struct strcheck {
    bool (*ok)(const char *s);
    const char *expect;
};

#define AT(obj, f, type) ((type *)(void *)((char *)(obj) + (f)->off))
#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------------------------------------
 * Messages
 */

/*
 * Writes the len bytes at s into buf as an excerpt that is safe to put in a one-line message:
 * control bytes and quotes become \xNN, and past (cap - 8) / 4 bytes (40 for CFG_SHOW_CAP, 200
 * for CFG_PATH_CAP) the rest becomes "...".
 */
static const char *show(const char *s, size_t len, char *buf, size_t cap)
{
    size_t w = 0, i, max = (cap - 8) / 4;
    for (i = 0; i < len && i < max && w + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\'') {
            snprintf(buf + w, cap - w, "\\x%02x", ch);
            w += 4;
        } else {
            buf[w++] = (char)ch;
        }
    }
    if (i < len && w + 4 < cap) {
        memcpy(buf + w, "...", 3);
        w += 3;
    }
    buf[w] = '\0';
    return buf;
}

static int line_of(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

/* A plain empty, "~" or "null" scalar: YAML's null, which no key of the schema accepts. */
static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* What a node is, for "got ...": "a mapping", "a list", "an empty value" or the quoted value. */
static const char *kind(const yaml_node_t *n, char *buf, size_t cap)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (is_null(n))
        return "an empty value";
    char tmp[CFG_SHOW_CAP];
    snprintf(buf, cap, "'%s'",
             show((const char *)n->data.scalar.value, n->data.scalar.length, tmp, sizeof(tmp)));
    return buf;
}

static int vfail_key(struct ctx *c, int line, const char *key, const char *fmt, va_list ap)
{
    char why[400];
    vsnprintf(why, sizeof(why), fmt, ap);
    return asr_err_set(c->err, ASR_ECONFIG, "%s:%d: %s: %s", c->name, line, key, why);
}

/* Records "NAME:LINE: KEY: REASON" for an explicit KEY (used for document-level problems). */
__attribute__((format(printf, 4, 5))) static int fail_key(struct ctx *c, int line, const char *key,
                                                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_key(c, line, key, fmt, ap);
    va_end(ap);
    return rc;
}

/* Records "NAME:LINE: PATH: REASON" with the current key path; returns ASR_ECONFIG. */
__attribute__((format(printf, 3, 4))) static int fail(struct ctx *c, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_key(c, line, c->plen ? c->path : "(top level)", fmt, ap);
    va_end(ap);
    return rc;
}

static int fail_type(struct ctx *c, const yaml_node_t *n, const char *expected)
{
    char kb[CFG_SHOW_CAP + 2];
    return fail(c, line_of(n), "expected %s, got %s", expected, kind(n, kb, sizeof(kb)));
}

static int oom(struct ctx *c)
{
    return asr_err_set(c->err, ASR_ENOMEM, "%s: out of memory", c->name);
}

/* Appends to the key path; returns the old length for pop(). Overlong paths are cut. */
__attribute__((format(printf, 2, 3))) static size_t push(struct ctx *c, const char *fmt, ...)
{
    size_t old = c->plen;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->path + old, sizeof(c->path) - old, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->plen = old + (size_t)n < sizeof(c->path) ? old + (size_t)n : sizeof(c->path) - 1;
    return old;
}

static size_t push_key(struct ctx *c, const char *key, size_t len)
{
    char tmp[CFG_SHOW_CAP];
    if (len == 0)
        snprintf(tmp, sizeof(tmp), "''"); /* an empty key must not look like the top level */
    else
        show(key, len, tmp, sizeof(tmp));
    return c->plen ? push(c, ".%s", tmp) : push(c, "%s", tmp);
}

static void pop(struct ctx *c, size_t len)
{
    c->plen = len;
    c->path[len] = '\0';
}

/* ---------------------------------------------------------------------------------------------
 * Nodes and small helpers
 */

/* The node at index; counts visits so that no input can make the walk run away. */
static int get_node(struct ctx *c, int index, int line, yaml_node_t **out)
{
    if (++c->visits > c->max_visits)
        return fail(c, line, "too many node visits (more than %zu)", c->max_visits);
    *out = yaml_document_get_node(c->doc, index);
    if (*out == NULL)
        return fail(c, line, "dangling YAML node");
    return 0;
}

/* The text of a non-null scalar without NUL bytes, or an "expected WHAT, got ..." error. */
static int want_scalar(struct ctx *c, yaml_node_t *n, const char *what, const char **out)
{
    *out = ""; /* set on every path, so no caller reads an unset pointer (and -O3 can tell) */
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return fail_type(c, n, what);
    if (memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL)
        return fail(c, line_of(n), "expected %s, got a value with a NUL byte", what);
    *out = (const char *)n->data.scalar.value;
    return 0;
}

static int store_str(struct ctx *c, char **dst, const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        return oom(c);
    free(*dst);
    *dst = p;
    return 0;
}

static void argv_free(asr_argv a)
{
    if (a == NULL)
        return;
    for (char **p = a; *p != NULL; p++)
        free(*p);
    free(a);
}

/* An empty NULL-terminated list, for lists that callers iterate without a NULL check. */
static int empty_list(struct ctx *c, asr_argv *dst)
{
    if (*dst == NULL && (*dst = calloc(1, sizeof(char *))) == NULL)
        return oom(c);
    return 0;
}

/*
 * Collapses "//", "/./" and "/x/../" of an absolute path in place. Lexical only: the result
 * names the same file unless a ".." follows a symbolic link, which realpath() settles for paths
 * that exist.
 */
static void normalize(char *p)
{
    size_t w = 0;
    const char *in = p;
    while (*in != '\0') {
        while (*in == '/')
            in++;
        if (*in == '\0')
            break;
        const char *e = strchr(in, '/');
        size_t n = e != NULL ? (size_t)(e - in) : strlen(in);
        if (n == 1 && in[0] == '.') {
            /* skip */
        } else if (n == 2 && in[0] == '.' && in[1] == '.') {
            while (w > 0 && p[w - 1] != '/')
                w--;
            if (w > 0)
                w--;
        } else {
            p[w++] = '/';
            memmove(p + w, in, n);
            w += n;
        }
        in += n;
    }
    if (w == 0)
        p[w++] = '/';
    p[w] = '\0';
}

/* base + "/" + rel, normalized; rel when it is absolute. The caller frees; NULL without memory. */
static char *join(const char *base, const char *rel)
{
    size_t bl = rel[0] == '/' ? 0 : strlen(base), rl = strlen(rel);
    char *p = malloc(bl + rl + 2);
    if (p == NULL)
        return NULL;
    if (bl == 0)
        memcpy(p, rel, rl + 1);
    else
        snprintf(p, bl + rl + 2, "%s/%s", base, rel);
    normalize(p);
    return p;
}

/*
 * rel resolved against the config's directory: canonical (realpath) when filesystem checks are
 * on and the path exists, else joined and normalized. The caller frees; NULL without memory.
 */
static char *resolve(struct ctx *c, const char *rel)
{
    char *p = join(c->dir, rel);
    if (p != NULL && c->check) {
        char *real = realpath(p, NULL);
        if (real != NULL) {
            free(p);
            p = real;
        }
    }
    return p;
}

static bool is_exec_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Whether cmd (no '/') names an executable in $PATH. Empty PATH entries (the current directory)
 * are skipped on purpose: a service's command must not depend on where asr was started. */
static bool in_path(const char *cmd)
{
    const char *path = getenv("PATH");
    if (path == NULL || *path == '\0')
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path;;) {
        const char *e = strchr(p, ':');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        if (n > 0) {
            char full[PATH_MAX];
            int k = snprintf(full, sizeof(full), "%.*s/%s", (int)n, p, cmd);
            if (k > 0 && (size_t)k < sizeof(full) && is_exec_file(full))
                return true;
        }
        if (e == NULL)
            return false;
        p = e + 1;
    }
}

/* ---------------------------------------------------------------------------------------------
 * String checks
 */

static bool is_service_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || (ch != '_' && ch != '-')))
            return false;
    }
    return true;
}

static bool is_ident_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

/* [A-Za-z_][A-Za-z0-9_]* : environment variable names and regex capture names. */
static bool is_ident_n(const char *s, size_t n)
{
    if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_ident_char(s[i]))
            return false;
    return true;
}

static bool is_ident(const char *s)
{
    return is_ident_n(s, strlen(s));
}

/* [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}, e.g. FAULT_SQL_INJECTION_TEST. */
static bool is_signature_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || !is_ident_char(s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!is_ident_char(s[i]) && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

/* [a-z][a-z0-9_]* : action names such as "patch" or "rollback". */
static bool is_action_name(const char *s)
{
    if (!(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

/* A glob relative to the repo that cannot climb out of it: not absolute, no ".." component. */
static bool is_repo_glob(const char *s)
{
    if (s[0] == '/')
        return false;
    for (const char *p = s; (p = strstr(p, "..")) != NULL; p += 2) {
        bool starts = p == s || p[-1] == '/';
        bool ends = p[2] == '\0' || p[2] == '/';
        if (starts && ends)
            return false;
    }
    return true;
}

static bool is_url(const char *s)
{
    return (strncmp(s, "http://", 7) == 0 && s[7] != '\0') ||
           (strncmp(s, "https://", 8) == 0 && s[8] != '\0');
}

static bool is_health_path(const char *s)
{
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return false;
    return s[0] == '/';
}

static bool is_anything(const char *s)
{
    (void)s;
    return true;
}

static const struct strcheck chk_service_name = {is_service_name,
                                                 "a name matching [a-z0-9][a-z0-9_-]{0,62}"};
static const struct strcheck chk_signature_id = {
    is_signature_id, "an identifier like FAULT_SQL_TIMEOUT ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"};
static const struct strcheck chk_ident = {is_ident,
                                          "an identifier matching [A-Za-z_][A-Za-z0-9_]*"};
static const struct strcheck chk_action = {is_action_name,
                                           "an action name matching [a-z][a-z0-9_]*"};
static const struct strcheck chk_glob = {
    is_repo_glob, "a glob relative to the repo (no leading '/' and no '..' component)"};
static const struct strcheck chk_url = {is_url, "an http:// or https:// URL"};
static const struct strcheck chk_health_path = {
    is_health_path, "a request path starting with '/' and without spaces"};
static const struct strcheck chk_string = {is_anything, "a non-empty string"};

/*
 * Rejects "${...}" in s unless it is ${PORT} and port_ok (only start's argv is expanded, by the
 * slot manager). A "${" without its "}" is an error too, so a typo never reaches a process.
 */
static int check_vars(struct ctx *c, const yaml_node_t *n, const char *s, bool port_ok)
{
    char b[CFG_SHOW_CAP];
    for (const char *p = strstr(s, "${"); p != NULL; p = strstr(p, "${")) {
        const char *end = strchr(p + 2, '}');
        if (end == NULL)
            return fail(c, line_of(n), "unterminated '${' in '%s'",
                        show(s, strlen(s), b, sizeof(b)));
        size_t vlen = (size_t)(end - (p + 2));
        if (!(port_ok && vlen == 4 && memcmp(p + 2, "PORT", 4) == 0)) {
            show(p, (size_t)(end - p) + 1, b, sizeof(b));
            if (port_ok)
                return fail(c, line_of(n), "unknown variable '%s' (only ${PORT} is expanded)", b);
            return fail(c, line_of(n),
                        "variable '%s' is not expanded here (only ${PORT}, and only in start)", b);
        }
        p = end + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The generic walk
 */

/* "name, repo, build, ..." - the keys of a table, for the unknown-key message. */
static const char *key_list(const struct schema *s, char *buf, size_t cap)
{
    size_t w = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < s->nfields && w < cap; i++) {
        int k = snprintf(buf + w, cap - w, "%s%s", i ? ", " : "", s->fields[i].key);
        if (k < 0)
            break;
        w += (size_t)k;
    }
    return buf;
}

/*
 * Fills obj from the mapping n according to s: every key must be in the table and appear once;
 * each value goes through its field's handler; then required keys are checked and s->done runs.
 */
static int walk_map(struct ctx *c, const struct schema *s, yaml_node_t *n, void *obj)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail_type(c, n, "a mapping");
    int seen[CFG_MAX_FIELDS] = {0}; /* line of each key met, 0 = not yet */
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k, *v;
        int rc;
        if ((rc = get_node(c, p->key, line_of(n), &k)) != 0 ||
            (rc = get_node(c, p->value, line_of(n), &v)) != 0)
            return rc;
        if (k->type != YAML_SCALAR_NODE)
            return fail_type(c, k, "a plain key");
        const char *key = (const char *)k->data.scalar.value;
        size_t klen = k->data.scalar.length, i;
        for (i = 0; i < s->nfields; i++)
            if (strlen(s->fields[i].key) == klen && memcmp(s->fields[i].key, key, klen) == 0)
                break;
        size_t save = push_key(c, key, klen);
        if (i == s->nfields) {
            char list[300];
            return fail(c, line_of(k), "unknown key (expected one of: %s)",
                        key_list(s, list, sizeof(list)));
        }
        if (seen[i] != 0)
            return fail(c, line_of(k), "duplicate key (first at line %d)", seen[i]);
        seen[i] = line_of(k);
        if ((rc = s->fields[i].set(c, &s->fields[i], v, obj)) != 0)
            return rc;
        pop(c, save);
    }
    for (size_t i = 0; i < s->nfields; i++)
        if (s->fields[i].required && seen[i] == 0)
            return fail(c, line_of(n), "missing required key '%s'", s->fields[i].key);
    return s->done != NULL ? s->done(c, n, obj) : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Handlers: one per kind of value
 */

/* A non-empty string, optionally checked by the strcheck in f->arg. */
static int set_str(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    const struct strcheck *chk = f->arg != NULL ? f->arg : &chk_string;
    const char *s;
    int rc = want_scalar(c, n, chk->expect, &s);
    if (rc != 0)
        return rc;
    if (s[0] == '\0' || !chk->ok(s))
        return fail_type(c, n, chk->expect);
    return store_str(c, AT(obj, f, char *), s);
}

/* One of the NULL-terminated names in f->arg. */
static int set_enum(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    const char *const *names = f->arg;
    char expect[128] = "one of ";
    size_t w = strlen(expect);
    for (size_t i = 0; names[i] != NULL && w < sizeof(expect); i++) {
        int k = snprintf(expect + w, sizeof(expect) - w, "%s%s", i ? ", " : "", names[i]);
        w += k > 0 ? (size_t)k : 0;
    }
    const char *s;
    int rc = want_scalar(c, n, expect, &s);
    if (rc != 0)
        return rc;
    for (size_t i = 0; names[i] != NULL; i++)
        if (strcmp(s, names[i]) == 0)
            return store_str(c, AT(obj, f, char *), s);
    return fail_type(c, n, expect);
}

/* A decimal int in f->min..INT_MAX. Quoted digits are accepted: YAML style is not a type here. */
static int set_int(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    const char *what = f->min > 0 ? "a positive integer" : "a non-negative integer";
    const char *s;
    int rc = want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    long long v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return fail_type(c, n, what);
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v > INT_MAX) {
            char kb[CFG_SHOW_CAP + 2];
            return fail(c, line_of(n), "expected %s no larger than %d, got %s", what, INT_MAX,
                        kind(n, kb, sizeof(kb)));
        }
    }
    if (*p != '\0' || v < f->min)
        return fail_type(c, n, what);
    *AT(obj, f, int) = (int)v;
    return 0;
}

/* A duration string ("250ms", "10s", "10m", "1h", "1d") of at least f->min ms. */
static int set_duration(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    const char *what = f->min > 0 ? "a duration greater than zero like 30s, 10m or 1h"
                                  : "a duration like 500ms, 30s, 10m, 1h or 1d";
    const char *s;
    int64_t ms;
    int rc = want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    if (asr_duration_parse(s, &ms) != 0 || ms < f->min)
        return fail_type(c, n, what);
    *AT(obj, f, int64_t) = ms;
    return 0;
}

/* A path, stored absolute (relative ones are taken from the config's directory). */
static int set_path(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    const char *s;
    int rc = want_scalar(c, n, "a path", &s);
    if (rc != 0)
        return rc;
    if (s[0] == '\0')
        return fail_type(c, n, "a non-empty path");
    char *p = resolve(c, s);
    if (p == NULL)
        return oom(c);
    char **dst = AT(obj, f, char *);
    free(*dst);
    *dst = p;
    return 0;
}

/* The service's repo: a path that must be an existing directory when checks are on. */
static int set_repo(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    int rc = set_path(c, f, n, obj);
    if (rc != 0 || !c->check)
        return rc;
    const char *p = *AT(obj, f, char *);
    struct stat st;
    char b[CFG_PATH_CAP];
    if (stat(p, &st) != 0)
        return fail(c, line_of(n), "directory '%s' does not exist",
                    show(p, strlen(p), b, sizeof(b)));
    if (!S_ISDIR(st.st_mode))
        return fail(c, line_of(n), "'%s' is not a directory", show(p, strlen(p), b, sizeof(b)));
    return 0;
}

/*
 * Checks that n is a list of at most CFG_MAX_LIST items and allocates the NULL-terminated array
 * for it into *dst (so a later error frees what was filled).
 */
static int start_list(struct ctx *c, yaml_node_t *n, const char *what, asr_argv *dst, size_t *count)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_type(c, n, what);
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt > CFG_MAX_LIST)
        return fail(c, line_of(n), "more than %d elements", CFG_MAX_LIST);
    argv_free(*dst);
    if ((*dst = calloc(cnt + 1, sizeof(char *))) == NULL)
        return oom(c);
    *count = cnt;
    return 0;
}

/* A command: a non-empty list of scalars; f->arg points at its enum cmd_kind. */
static int set_argv(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    enum cmd_kind which = *(const enum cmd_kind *)f->arg;
    asr_argv *dst = AT(obj, f, asr_argv);
    size_t cnt;
    int rc = start_list(
        c, n, "a list like [make, test] (commands are argv lists, not shell strings)", dst, &cnt);
    if (rc != 0)
        return rc;
    if (cnt == 0)
        return fail(c, line_of(n), "empty command (expected a list like [make, test])");
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *e;
        const char *s;
        if ((rc = get_node(c, n->data.sequence.items.start[i], line_of(n), &e)) != 0)
            return rc;
        size_t save = push(c, "[%zu]", i);
        if ((rc = want_scalar(c, e, "a string", &s)) != 0)
            return rc;
        if (i == 0 && s[0] == '\0')
            return fail(c, line_of(e), "empty command name");
        if ((rc = check_vars(c, e, s, which == CMD_START)) != 0)
            return rc;
        if (((*dst)[i] = strdup(s)) == NULL)
            return oom(c);
        if (i == 0)
            c->cmd_line[which] = line_of(e);
        pop(c, save);
    }
    return 0;
}

/* A list of non-empty strings, each passing the strcheck in f->arg (if any); [] is allowed. */
static int set_strlist(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    const struct strcheck *chk = f->arg != NULL ? f->arg : &chk_string;
    asr_argv *dst = AT(obj, f, asr_argv);
    size_t cnt;
    int rc = start_list(c, n, "a list of strings", dst, &cnt);
    for (size_t i = 0; rc == 0 && i < cnt; i++) {
        yaml_node_t *e;
        const char *s;
        if ((rc = get_node(c, n->data.sequence.items.start[i], line_of(n), &e)) != 0)
            return rc;
        size_t save = push(c, "[%zu]", i);
        if ((rc = want_scalar(c, e, chk->expect, &s)) != 0)
            return rc;
        if (s[0] == '\0' || !chk->ok(s))
            return fail_type(c, e, chk->expect);
        if (((*dst)[i] = strdup(s)) == NULL)
            return oom(c);
        pop(c, save);
    }
    return rc;
}

/* env: a list of "NAME=value", NAME an identifier, each NAME once, no ${...} in values. */
static int set_env(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    asr_argv *dst = AT(obj, f, asr_argv);
    size_t cnt;
    int rc = start_list(c, n, "a list of NAME=value strings", dst, &cnt);
    for (size_t i = 0; rc == 0 && i < cnt; i++) {
        yaml_node_t *e;
        const char *s;
        char b[CFG_SHOW_CAP];
        if ((rc = get_node(c, n->data.sequence.items.start[i], line_of(n), &e)) != 0)
            return rc;
        size_t save = push(c, "[%zu]", i);
        if ((rc = want_scalar(c, e, "a NAME=value string", &s)) != 0)
            return rc;
        const char *eq = strchr(s, '=');
        if (eq == NULL || !is_ident_n(s, (size_t)(eq - s)))
            return fail_type(c, e, "NAME=value with NAME matching [A-Za-z_][A-Za-z0-9_]*");
        size_t nlen = (size_t)(eq - s) + 1; /* with the '=' */
        for (size_t j = 0; j < i; j++)
            if (strncmp((*dst)[j], s, nlen) == 0)
                return fail(c, line_of(e), "duplicate variable '%s'",
                            show(s, nlen - 1, b, sizeof(b)));
        if ((rc = check_vars(c, e, eq + 1, false)) != 0)
            return rc;
        if (((*dst)[i] = strdup(s)) == NULL)
            return oom(c);
        pop(c, save);
    }
    return rc;
}

/*
 * Parses "HOST:PORT" (HOST a numeric IPv4 address or a bracketed IPv6 one) into the normalized
 * host text and the port. Returns NULL or the reason it is not one.
 */
static const char *parse_listen(const char *s, char *host, size_t hcap, int *port)
{
    const char *colon;
    char raw[INET6_ADDRSTRLEN + 1];
    unsigned char addr[sizeof(struct in6_addr)];
    int family;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return "expected [IPV6]:PORT like [::1]:8080";
        colon = rb + 1;
        if ((size_t)(rb - s - 1) >= sizeof(raw))
            return "host is not a numeric IPv6 address";
        memcpy(raw, s + 1, (size_t)(rb - s - 1));
        raw[rb - s - 1] = '\0';
        family = AF_INET6;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return "expected HOST:PORT like 127.0.0.1:8080";
        if (memchr(s, ':', (size_t)(colon - s)) != NULL)
            return "IPv6 addresses go in brackets, like \"[::1]:8080\"";
        if ((size_t)(colon - s) >= sizeof(raw))
            return "host is not a numeric IPv4 address (names are not resolved)";
        memcpy(raw, s, (size_t)(colon - s));
        raw[colon - s] = '\0';
        family = AF_INET;
    }
    if (inet_pton(family, raw, addr) != 1)
        return family == AF_INET ? "host is not a numeric IPv4 address (names are not resolved)"
                                 : "host is not a numeric IPv6 address";
    if (inet_ntop(family, addr, host, (socklen_t)hcap) == NULL)
        return "host is not a numeric address";
    const char *p = colon + 1;
    long v = 0;
    if (*p == '\0')
        return "port must be an integer in 1..65535";
    for (; *p >= '0' && *p <= '9' && v <= 65535; p++)
        v = v * 10 + (*p - '0');
    if (*p != '\0' || v < 1 || v > 65535)
        return "port must be an integer in 1..65535";
    *port = (int)v;
    return NULL;
}

static int set_listen(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    struct asr_service_cfg *svc = obj;
    char host[INET6_ADDRSTRLEN], b[CFG_SHOW_CAP];
    const char *s;
    (void)f;
    if (n->type == YAML_SEQUENCE_NODE)
        return fail(c, line_of(n),
                    "expected HOST:PORT, got a list (quote IPv6 addresses: "
                    "\"[::1]:8080\")");
    int rc = want_scalar(c, n, "HOST:PORT like 127.0.0.1:8080", &s);
    if (rc != 0)
        return rc;
    const char *why = parse_listen(s, host, sizeof(host), &svc->listen_port);
    if (why != NULL)
        return fail(c, line_of(n), "%s, got '%s'", why, show(s, strlen(s), b, sizeof(b)));
    c->listen_line = line_of(n);
    return store_str(c, &svc->listen_host, host);
}

/* logs: [stdout, stderr] - which output streams of the service are watched. */
static int set_logs(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    struct asr_service_cfg *svc = obj;
    (void)f;
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_type(c, n, "a list of stdout, stderr");
    svc->log_stdout = svc->log_stderr = false;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e;
        const char *s;
        int rc;
        if ((rc = get_node(c, *it, line_of(n), &e)) != 0)
            return rc;
        size_t save = push(c, "[%zu]", (size_t)(it - n->data.sequence.items.start));
        if ((rc = want_scalar(c, e, "stdout or stderr", &s)) != 0)
            return rc;
        if (strcmp(s, "stdout") == 0)
            svc->log_stdout = true;
        else if (strcmp(s, "stderr") == 0)
            svc->log_stderr = true;
        else
            return fail_type(c, e, "stdout or stderr");
        pop(c, save);
    }
    return 0;
}

/* log_files: [PATH, ...] - files followed like `tail -F`; relative paths are taken from the
 * config's directory. A file need not exist yet: the service may create it later. */
static int set_log_files(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    struct asr_service_cfg *svc = obj;
    size_t cnt;
    (void)f;
    int rc = start_list(c, n, "a list of file paths", &svc->log_files, &cnt);
    for (size_t i = 0; rc == 0 && i < cnt; i++) {
        yaml_node_t *e;
        const char *s;
        if ((rc = get_node(c, n->data.sequence.items.start[i], line_of(n), &e)) != 0)
            return rc;
        size_t save = push(c, "[%zu]", i);
        if ((rc = want_scalar(c, e, "a file path", &s)) != 0)
            return rc;
        if (s[0] == '\0')
            return fail_type(c, e, "a non-empty file path");
        if ((svc->log_files[i] = resolve(c, s)) == NULL)
            return oom(c);
        pop(c, save);
    }
    return rc;
}

/* true or false (YAML's other spellings of booleans are refused: one way to write it). */
static int set_bool(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    const char *s;
    int rc = want_scalar(c, n, "true or false", &s);
    if (rc != 0)
        return rc;
    if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0)
        return fail_type(c, n, "true or false");
    *AT(obj, f, bool) = strcmp(s, "true") == 0;
    return 0;
}

/* A nested mapping filled by the schema in f->arg into obj + off. */
static int set_map(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    return walk_map(c, f->arg, n, (char *)obj + f->off);
}

/* ---------------------------------------------------------------------------------------------
 * Schema tables
 */

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const llm_providers[] = {"none", "openai", "gemini", "anthropic", NULL};
static const char *const severities[] = {"info", "warning", "error", "critical", NULL};
static const enum cmd_kind kind_build = CMD_BUILD, kind_test = CMD_TEST, kind_start = CMD_START;

#define F_HEALTH(k, fn, m)                                                                         \
    {                                                                                              \
#k, fn, false, offsetof(struct asr_health_cfg, k), NULL, m                                 \
    }
static const struct field health_fields[] = {
    {"path", set_str, false, offsetof(struct asr_health_cfg, path), &chk_health_path, 0},
    F_HEALTH(interval_ms, set_int, 1),
    F_HEALTH(timeout_ms, set_int, 1),
    F_HEALTH(rise, set_int, 1),
    F_HEALTH(fall, set_int, 1),
};
static const struct schema health_schema = {health_fields, NFIELDS(health_fields), NULL};

static int restart_done(struct ctx *c, yaml_node_t *map, void *obj)
{
    const struct asr_restart_cfg *r = obj;
    if (r->backoff_max_ms < r->backoff_initial_ms)
        return fail(c, line_of(map), "backoff_max_ms (%d) is less than backoff_initial_ms (%d)",
                    r->backoff_max_ms, r->backoff_initial_ms);
    return 0;
}

#define F_RESTART(k, m)                                                                            \
    {                                                                                              \
#k, set_int, false, offsetof(struct asr_restart_cfg, k), NULL, m                           \
    }
static const struct field restart_fields[] = {
    F_RESTART(backoff_initial_ms, 1), F_RESTART(backoff_max_ms, 1),
    F_RESTART(stable_ms, 0),          F_RESTART(budget, 1),
    F_RESTART(window_ms, 1),
};
static const struct schema restart_schema = {restart_fields, NFIELDS(restart_fields), restart_done};

#define F_DEPLOY(k, m)                                                                             \
    {                                                                                              \
#k, set_int, false, offsetof(struct asr_deploy_cfg, k), NULL, m                            \
    }
static const struct field deploy_fields[] = {
    F_DEPLOY(build_timeout_ms, 1), F_DEPLOY(test_timeout_ms, 1), F_DEPLOY(healthy_timeout_ms, 1),
    F_DEPLOY(drain_timeout_ms, 0), F_DEPLOY(stop_grace_ms, 0),   F_DEPLOY(verify_window_ms, 1),
};
static const struct schema deploy_schema = {deploy_fields, NFIELDS(deploy_fields), NULL};

static const struct field budget_fields[] = {
    {"remediations", set_int, false, offsetof(struct asr_policy_cfg, budget_remediations), NULL, 1},
    {"per", set_duration, false, offsetof(struct asr_policy_cfg, budget_per_ms), NULL, 1},
};
static const struct schema budget_schema = {budget_fields, NFIELDS(budget_fields), NULL};

static const struct field policy_fields[] = {
    {"patch_paths", set_strlist, false, offsetof(struct asr_policy_cfg, patch_paths), &chk_glob, 0},
    {"approval", set_strlist, false, offsetof(struct asr_policy_cfg, approval), &chk_action, 0},
    {"budget", set_map, false, 0, &budget_schema, 0},
    {"cooldown", set_duration, false, offsetof(struct asr_policy_cfg, cooldown_ms), NULL, 0},
    {"llm_approval", set_bool, false, offsetof(struct asr_policy_cfg, llm_approval), NULL, 0},
    {"shadow", set_bool, false, offsetof(struct asr_policy_cfg, shadow), NULL, 0},
};
static const struct schema policy_schema = {policy_fields, NFIELDS(policy_fields), NULL};

/* After a signature: default dedupe list; ids are unique within their service. */
static int signature_done(struct ctx *c, yaml_node_t *map, void *obj)
{
    struct asr_signature_cfg *sig = obj;
    int rc = empty_list(c, &sig->dedupe);
    if (rc != 0)
        return rc;
    for (struct asr_signature_cfg *o = c->svc->signatures; o < sig; o++) {
        if (strcmp(o->id, sig->id) == 0) {
            char b[CFG_SHOW_CAP];
            size_t save = push(c, ".id");
            rc = fail(c, line_of(map), "duplicate signature id '%s' (first at line %d)",
                      show(sig->id, strlen(sig->id), b, sizeof(b)), o->line);
            pop(c, save);
            return rc;
        }
    }
    return 0;
}

static const struct field signature_fields[] = {
    {"id", set_str, true, offsetof(struct asr_signature_cfg, id), &chk_signature_id, 0},
    {"pattern", set_str, true, offsetof(struct asr_signature_cfg, pattern), NULL, 0},
    {"severity", set_enum, false, offsetof(struct asr_signature_cfg, severity), severities, 0},
    {"dedupe", set_strlist, false, offsetof(struct asr_signature_cfg, dedupe), &chk_ident, 0},
};
static const struct schema signature_schema = {signature_fields, NFIELDS(signature_fields),
                                               signature_done};

static int set_signatures(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    struct asr_service_cfg *svc = obj;
    (void)f;
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_type(c, n, "a list of {id, pattern, severity, dedupe} mappings");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt > CFG_MAX_SIGNATURES)
        return fail(c, line_of(n), "more than %d signatures", CFG_MAX_SIGNATURES);
    if (cnt > 0 && (svc->signatures = calloc(cnt, sizeof(*svc->signatures))) == NULL)
        return oom(c);
    svc->nsignatures = cnt;
    for (size_t i = 0; i < cnt; i++) {
        struct asr_signature_cfg *sig = &svc->signatures[i];
        yaml_node_t *e;
        int rc;
        if ((rc = get_node(c, n->data.sequence.items.start[i], line_of(n), &e)) != 0)
            return rc;
        sig->line = line_of(e);
        if ((sig->severity = strdup("error")) == NULL)
            return oom(c);
        size_t save = push(c, "[%zu]", i);
        if ((rc = walk_map(c, &signature_schema, e, sig)) != 0)
            return rc;
        pop(c, save);
    }
    return 0;
}

/* Set by the name key of a service; remembers the line for the duplicate-name message. */
static int set_service_name(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    c->name_line = line_of(n);
    return set_str(c, f, n, obj);
}

/*
 * argv[0] of a command must be runnable: a bare name is looked up in $PATH; an absolute path must
 * be an executable file; a relative path with a '/' is taken from the repo, where build and test
 * commands must exist and the start command may be missing (the build produces it).
 */
static int check_command(struct ctx *c, const struct asr_service_cfg *svc, enum cmd_kind which)
{
    asr_argv argv = which == CMD_BUILD ? svc->build : which == CMD_TEST ? svc->test : svc->start;
    if (argv == NULL)
        return 0;
    const char *cmd = argv[0];
    char b[CFG_PATH_CAP], r[CFG_PATH_CAP];
    int line = c->cmd_line[which], rc = 0;
    size_t save = push(c, ".%s", cmd_keys[which]);
    show(cmd, strlen(cmd), b, sizeof(b));
    if (strchr(cmd, '/') == NULL) {
        if (!in_path(cmd))
            rc = fail(c, line, "command '%s' not found in PATH", b);
    } else if (cmd[0] == '/') {
        struct stat st;
        if (stat(cmd, &st) != 0)
            rc = fail(c, line, "command '%s' does not exist", b);
        else if (!is_exec_file(cmd))
            rc = fail(c, line, "command '%s' is not an executable file", b);
    } else {
        char *full = join(svc->repo, cmd);
        struct stat st;
        if (full == NULL)
            return oom(c);
        show(svc->repo, strlen(svc->repo), r, sizeof(r));
        if (which != CMD_START && stat(full, &st) != 0)
            rc = fail(c, line, "command '%s' not found in repo '%s'", b, r);
        else if (which != CMD_START && !is_exec_file(full))
            rc = fail(c, line, "command '%s' is not an executable file", b);
        free(full);
    }
    pop(c, save);
    return rc;
}

/* "host:port" with brackets for IPv6, for messages. */
static const char *addr_text(const struct asr_service_cfg *s, char *buf, size_t cap)
{
    bool v6 = strchr(s->listen_host, ':') != NULL;
    snprintf(buf, cap, "%s%s%s:%d", v6 ? "[" : "", s->listen_host, v6 ? "]" : "", s->listen_port);
    return buf;
}

/*
 * Whether two listen hosts clash on the same port: equal, or one is a wildcard covering the
 * other. "0.0.0.0" covers IPv4 addresses; "::" covers everything, because a dual-stack socket
 * on [::] also takes IPv4 connections.
 */
static bool hosts_clash(const char *a, const char *b)
{
    bool a6 = strchr(a, ':') != NULL, b6 = strchr(b, ':') != NULL;
    return strcmp(a, b) == 0 || strcmp(a, "::") == 0 || strcmp(b, "::") == 0 ||
           (strcmp(a, "0.0.0.0") == 0 && !b6) || (strcmp(b, "0.0.0.0") == 0 && !a6);
}

/*
 * After a service: empty policy lists, runnable commands, and a name and listen address that no
 * earlier service has (see hosts_clash() for wildcard addresses).
 */
static int service_done(struct ctx *c, yaml_node_t *map, void *obj)
{
    struct asr_service_cfg *svc = obj;
    char b[CFG_SHOW_CAP], a1[64], a2[64];
    int rc;
    (void)map;
    if ((rc = empty_list(c, &svc->policy.patch_paths)) != 0 ||
        (rc = empty_list(c, &svc->policy.approval)) != 0)
        return rc;
    for (int k = 0; c->check && k < CMD_COUNT; k++)
        if ((rc = check_command(c, svc, (enum cmd_kind)k)) != 0)
            return rc;
    for (const struct asr_service_cfg *o = c->cfg->services; o < svc; o++) {
        if (strcmp(o->name, svc->name) == 0) {
            push(c, ".name");
            return fail(c, c->name_line, "duplicate service name '%s' (first at line %d)",
                        show(svc->name, strlen(svc->name), b, sizeof(b)), o->line);
        }
        if (o->listen_port == svc->listen_port && hosts_clash(o->listen_host, svc->listen_host)) {
            push(c, ".listen");
            addr_text(svc, a1, sizeof(a1));
            addr_text(o, a2, sizeof(a2));
            if (strcmp(a1, a2) == 0)
                return fail(c, c->listen_line,
                            "duplicate listen address '%s' (also used by service '%s')", a1,
                            o->name);
            return fail(c, c->listen_line, "listen address '%s' overlaps '%s' of service '%s'", a1,
                        a2, o->name);
        }
    }
    return 0;
}

#define F_SVC(k, fn, req, a)                                                                       \
    {                                                                                              \
#k, fn, req, offsetof(struct asr_service_cfg, k), a, 0                                     \
    }
static const struct field service_fields[] = {
    F_SVC(name, set_service_name, true, &chk_service_name),
    F_SVC(repo, set_repo, true, NULL),
    F_SVC(build, set_argv, false, &kind_build),
    F_SVC(test, set_argv, false, &kind_test),
    F_SVC(start, set_argv, true, &kind_start),
    F_SVC(env, set_env, false, NULL),
    {"listen", set_listen, true, 0, NULL, 0},
    F_SVC(health, set_map, false, &health_schema),
    {"logs", set_logs, false, 0, NULL, 0},
    {"log_files", set_log_files, false, 0, NULL, 0},
    {"signatures", set_signatures, false, 0, NULL, 0},
    F_SVC(policy, set_map, false, &policy_schema),
    F_SVC(restart, set_map, false, &restart_schema),
    F_SVC(deploy, set_map, false, &deploy_schema),
};
static const struct schema service_schema = {service_fields, NFIELDS(service_fields), service_done};

/* The defaults documented in config.h, set before a service's keys are read. */
static int service_defaults(struct ctx *c, struct asr_service_cfg *s, int line)
{
    s->line = line;
    s->health = (struct asr_health_cfg){
        .path = strdup("/health"), .interval_ms = 1000, .timeout_ms = 1000, .rise = 2, .fall = 3};
    s->log_stdout = s->log_stderr = true;
    s->policy.budget_remediations = 6;
    s->policy.llm_approval = true;
    s->policy.budget_per_ms = 3600000;
    s->policy.cooldown_ms = 600000;
    s->restart = (struct asr_restart_cfg){.backoff_initial_ms = 100,
                                          .backoff_max_ms = 30000,
                                          .stable_ms = 1000,
                                          .budget = 20,
                                          .window_ms = 60000};
    s->deploy = (struct asr_deploy_cfg){.build_timeout_ms = 300000,
                                        .test_timeout_ms = 300000,
                                        .healthy_timeout_ms = 10000,
                                        .drain_timeout_ms = 10000,
                                        .stop_grace_ms = 5000,
                                        .verify_window_ms = 3000};
    return s->health.path != NULL ? 0 : oom(c);
}

static int set_services(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    struct asr_config *cfg = obj;
    (void)f;
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_type(c, n, "a list of services");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt == 0)
        return fail(c, line_of(n), "expected at least one service");
    if (cnt > CFG_MAX_SERVICES)
        return fail(c, line_of(n), "more than %d services", CFG_MAX_SERVICES);
    if ((cfg->services = calloc(cnt, sizeof(*cfg->services))) == NULL)
        return oom(c);
    cfg->nservices = cnt;
    for (size_t i = 0; i < cnt; i++) {
        struct asr_service_cfg *svc = &cfg->services[i];
        yaml_node_t *e;
        int rc;
        if ((rc = get_node(c, n->data.sequence.items.start[i], line_of(n), &e)) != 0 ||
            (rc = service_defaults(c, svc, line_of(e))) != 0)
            return rc;
        c->svc = svc;
        memset(c->cmd_line, 0, sizeof(c->cmd_line));
        c->name_line = c->listen_line = line_of(e);
        size_t save = push(c, "[%zu]", i);
        if ((rc = walk_map(c, &service_schema, e, svc)) != 0)
            return rc;
        pop(c, save);
    }
    return 0;
}

/* A provider needs a model; the limits stay in ranges a call can live with. */
static int llm_done(struct ctx *c, yaml_node_t *map, void *obj)
{
    const struct asr_llm_cfg *l = obj;
    if (strcmp(l->provider, "none") != 0 && (l->model == NULL || l->model[0] == '\0'))
        return fail(c, line_of(map), "model: required when provider is %s", l->provider);
    if (l->max_attempts > 10)
        return fail(c, line_of(map), "max_attempts is at most 10");
    if (l->timeout_ms > 600000)
        return fail(c, line_of(map), "timeout_ms is at most 600000 (10 minutes)");
    if (l->backoff_max_ms < l->backoff_initial_ms)
        return fail(c, line_of(map), "backoff_max_ms (%d) is less than backoff_initial_ms (%d)",
                    l->backoff_max_ms, l->backoff_initial_ms);
    return 0;
}

#define F_LLM(k, m)                                                                                \
    {                                                                                              \
#k, set_int, false, offsetof(struct asr_llm_cfg, k), NULL, m                               \
    }
static const struct field llm_fields[] = {
    {"provider", set_enum, false, offsetof(struct asr_llm_cfg, provider), llm_providers, 0},
    {"base_url", set_str, false, offsetof(struct asr_llm_cfg, base_url), &chk_url, 0},
    {"model", set_str, false, offsetof(struct asr_llm_cfg, model), NULL, 0},
    {"api_key_env", set_str, false, offsetof(struct asr_llm_cfg, api_key_env), &chk_ident, 0},
    F_LLM(timeout_ms, 1),
    F_LLM(max_attempts, 1),
    F_LLM(max_tokens, 1),
    F_LLM(backoff_initial_ms, 1),
    F_LLM(backoff_max_ms, 1),
    F_LLM(breaker_threshold, 1),
    F_LLM(breaker_cooldown_ms, 1),
};
static const struct schema llm_schema = {llm_fields, NFIELDS(llm_fields), llm_done};

/* Bounds that keep the context windows' memory small whatever the file says. */
static int detection_done(struct ctx *c, yaml_node_t *map, void *obj)
{
    const struct asr_detection_cfg *d = obj;
    if (d->context_before > CFG_MAX_CONTEXT || d->context_after > CFG_MAX_CONTEXT)
        return fail(c, line_of(map), "context_before and context_after are at most %d lines",
                    CFG_MAX_CONTEXT);
    if (d->context_wait_ms > 60000)
        return fail(c, line_of(map), "context_wait_ms is at most 60000");
    return 0;
}

#define F_DET(k, fn, m)                                                                            \
    {                                                                                              \
#k, fn, false, offsetof(struct asr_detection_cfg, k), NULL, m                              \
    }
static const struct field detection_fields[] = {
    F_DET(context_before, set_int, 0),
    F_DET(context_after, set_int, 0),
    F_DET(context_wait_ms, set_int, 0),
    F_DET(cooldown_ms, set_duration, 0),
    F_DET(group_window_ms, set_duration, 0),
    F_DET(generic, set_bool, 0),
    F_DET(rate_jump, set_int, 2),
};
static const struct schema detection_schema = {detection_fields, NFIELDS(detection_fields),
                                               detection_done};

static int root_done(struct ctx *c, yaml_node_t *map, void *obj)
{
    struct asr_config *cfg = obj;
    (void)map;
    if (cfg->state_dir == NULL && (cfg->state_dir = resolve(c, ".asr")) == NULL)
        return oom(c);
    return 0;
}

#define F_ROOT(k, fn, req, a)                                                                      \
    {                                                                                              \
#k, fn, req, offsetof(struct asr_config, k), a, 0                                          \
    }
static const struct field root_fields[] = {
    F_ROOT(state_dir, set_path, false, NULL),
    F_ROOT(log_level, set_enum, false, log_levels),
    F_ROOT(services, set_services, true, NULL),
    F_ROOT(playbooks, set_path, false, NULL),
    F_ROOT(llm, set_map, false, &llm_schema),
    F_ROOT(detection, set_map, false, &detection_schema),
};
static const struct schema root_schema = {root_fields, NFIELDS(root_fields), root_done};

_Static_assert(NFIELDS(service_fields) <= CFG_MAX_FIELDS, "walk_map's seen[] is too small");
_Static_assert(NFIELDS(root_fields) <= CFG_MAX_FIELDS, "walk_map's seen[] is too small");

/* ---------------------------------------------------------------------------------------------
 * Parsing
 */

/* Turns a libyaml parser error into "NAME:LINE: yaml: PROBLEM (CONTEXT at line N)". */
static int yaml_fail(struct ctx *c, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return oom(c);
    const char *problem = p->problem != NULL ? p->problem : "malformed YAML";
    int line = (int)p->problem_mark.line + 1;
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        size_t end = p->problem_offset < c->len ? p->problem_offset : c->len;
        line = 1;
        for (size_t i = 0; i < end; i++)
            line += c->text[i] == '\n';
    }
    if (p->context != NULL)
        return fail_key(c, line, "yaml", "%s (%s at line %d)", problem, p->context,
                        (int)p->context_mark.line + 1);
    return fail_key(c, line, "yaml", "%s", problem);
}

/*
 * The pre-scan over the event stream: syntax errors, aliases, depth, node count, documents.
 * It keeps no state besides counters, so hostile input costs at most one linear pass.
 */
static int prescan(struct ctx *c)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0, docs = 0, rc = 0;
    size_t nodes = 0;
    if (!yaml_parser_initialize(&p))
        return oom(c);
    yaml_parser_set_input_string(&p, (const unsigned char *)c->text, c->len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) {
            rc = yaml_fail(c, &p);
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        yaml_event_type_t type = ev.type;
        char b[CFG_SHOW_CAP];
        const char *anchor =
            type == YAML_SCALAR_EVENT           ? (const char *)ev.data.scalar.anchor
            : type == YAML_SEQUENCE_START_EVENT ? (const char *)ev.data.sequence_start.anchor
            : type == YAML_MAPPING_START_EVENT  ? (const char *)ev.data.mapping_start.anchor
                                                : NULL;
        if (type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            rc = fail_key(c, line, "yaml", "more than one document (a config is one document)");
        } else if (type == YAML_ALIAS_EVENT || anchor != NULL) {
            /* An anchor is only useful to an alias, so both are refused where they appear. */
            const char *a = type == YAML_ALIAS_EVENT ? (const char *)ev.data.alias.anchor : anchor;
            rc = fail_key(c, line, "yaml",
                          "%s '%c%s' is not supported (anchors and aliases are rejected; "
                          "write the value out)",
                          type == YAML_ALIAS_EVENT ? "alias" : "anchor",
                          type == YAML_ALIAS_EVENT ? '*' : '&', show(a, strlen(a), b, sizeof(b)));
        } else if ((type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT) &&
                   ++depth > CFG_MAX_DEPTH) {
            rc = fail_key(c, line, "yaml", "nesting deeper than %d levels", CFG_MAX_DEPTH);
        } else if (type == YAML_MAPPING_END_EVENT || type == YAML_SEQUENCE_END_EVENT) {
            depth--;
        }
        if (rc == 0 &&
            (type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT ||
             type == YAML_SCALAR_EVENT) &&
            ++nodes > CFG_MAX_NODES)
            rc = fail_key(c, line, "yaml", "more than %d nodes", CFG_MAX_NODES);
        yaml_event_delete(&ev);
        if (rc != 0 || type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    return rc;
}

/* The absolute form of the caller's base directory (NULL or "" mean the current one). */
static char *absolute_dir(const char *dir, bool check)
{
    char *p;
    if (dir == NULL || dir[0] == '\0')
        dir = ".";
    if (dir[0] == '/') {
        p = join(dir, ".");
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            snprintf(cwd, sizeof(cwd), "/");
        p = join(cwd, dir);
    }
    if (p != NULL && check) {
        char *real = realpath(p, NULL);
        if (real != NULL) {
            free(p);
            p = real;
        }
    }
    return p;
}

int asr_config_parse(const char *name, const char *dir, const char *text, size_t len,
                     bool check_commands, struct asr_config **out, struct asr_err *err)
{
    struct ctx c = {.name = name != NULL ? name : "<config>",
                    .check = check_commands,
                    .text = text != NULL ? text : "",
                    .len = text != NULL ? len : 0,
                    .err = err};
    yaml_parser_t parser;
    yaml_document_t doc;
    bool parser_ok = false, doc_ok = false;
    int rc;

    *out = NULL;
    if (err != NULL) {
        err->code = 0;
        err->msg[0] = '\0';
    }
    if (c.len > CFG_MAX_BYTES)
        return fail_key(&c, 1, "yaml", "%zu bytes is more than the cap of %u bytes (1 MiB)", c.len,
                        CFG_MAX_BYTES);
    struct asr_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return oom(&c);
    c.cfg = cfg;
    cfg->detection = (struct asr_detection_cfg){.context_before = 20,
                                                .context_after = 20,
                                                .context_wait_ms = 2000,
                                                .cooldown_ms = 300000,
                                                .group_window_ms = 30000,
                                                .generic = true,
                                                .rate_jump = 5};
    cfg->llm = (struct asr_llm_cfg){.timeout_ms = 60000,
                                    .max_attempts = 3,
                                    .max_tokens = 4096,
                                    .backoff_initial_ms = 500,
                                    .backoff_max_ms = 30000,
                                    .breaker_threshold = 5,
                                    .breaker_cooldown_ms = 60000};
    if ((cfg->path = strdup(c.name)) == NULL || (cfg->dir = absolute_dir(dir, c.check)) == NULL ||
        (cfg->log_level = strdup("info")) == NULL || (cfg->llm.provider = strdup("none")) == NULL) {
        rc = oom(&c);
        goto out;
    }
    c.dir = cfg->dir;
    if ((rc = prescan(&c)) != 0)
        goto out;
    if (!yaml_parser_initialize(&parser)) {
        rc = oom(&c);
        goto out;
    }
    parser_ok = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)c.text, c.len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_fail(&c, &parser); /* libyaml has already freed doc */
        goto out;
    }
    doc_ok = true;
    c.doc = &doc;
    c.max_visits = (size_t)(doc.nodes.top - doc.nodes.start);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL || is_null(root)) {
        rc = fail(&c, root != NULL ? line_of(root) : 1,
                  "empty configuration (expected a mapping with at least 'services')");
        goto out;
    }
    c.visits = 1;
    rc = walk_map(&c, &root_schema, root, cfg);
out:
    if (doc_ok)
        yaml_document_delete(&doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    if (rc != 0) {
        asr_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int asr_config_load(const char *path, struct asr_config **out, struct asr_err *err)
{
    return asr_config_load_checked(path, true, out, err);
}

int asr_config_load_checked(const char *path, bool check, struct asr_config **out,
                            struct asr_err *err)
{
    struct asr_buf buf;
    char chunk[65536];
    int rc = 0;

    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return asr_err_set(err, ASR_EIO, "%s: cannot open: %s", path, strerror(errno));
    asr_buf_init(&buf, CFG_MAX_BYTES);
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = asr_err_set(err, ASR_EIO, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        int arc = asr_buf_append(&buf, chunk, (size_t)n);
        if (arc == ASR_ETOOBIG) {
            rc = asr_err_set(err, ASR_ECONFIG,
                             "%s:1: yaml: file is larger than the cap of %u bytes (1 MiB)", path,
                             CFG_MAX_BYTES);
            break;
        }
        if (arc != 0) {
            rc = asr_err_set(err, ASR_ENOMEM, "%s: out of memory", path);
            break;
        }
    }
    close(fd);
    if (rc == 0) {
        /* The base directory is the one holding the file: everything before the last '/'. */
        const char *slash = strrchr(path, '/');
        char *dir = slash == NULL   ? strdup(".")
                    : slash == path ? strdup("/")
                                    : strndup(path, (size_t)(slash - path));
        if (dir == NULL)
            rc = asr_err_set(err, ASR_ENOMEM, "%s: out of memory", path);
        else
            rc = asr_config_parse(path, dir, asr_buf_cstr(&buf), buf.len, check, out, err);
        free(dir);
    }
    asr_buf_free(&buf);
    return rc;
}

void asr_config_free(struct asr_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nservices; i++) {
        struct asr_service_cfg *s = &cfg->services[i];
        free(s->name);
        free(s->repo);
        argv_free(s->build);
        argv_free(s->test);
        argv_free(s->start);
        argv_free(s->env);
        free(s->listen_host);
        free(s->health.path);
        for (size_t j = 0; j < s->nsignatures; j++) {
            free(s->signatures[j].id);
            free(s->signatures[j].pattern);
            free(s->signatures[j].severity);
            argv_free(s->signatures[j].dedupe);
        }
        free(s->signatures);
        argv_free(s->log_files);
        argv_free(s->policy.patch_paths);
        argv_free(s->policy.approval);
    }
    free(cfg->services);
    free(cfg->llm.provider);
    free(cfg->llm.base_url);
    free(cfg->llm.model);
    free(cfg->llm.api_key_env);
    free(cfg->path);
    free(cfg->dir);
    free(cfg->state_dir);
    free(cfg->log_level);
    free(cfg->playbooks);
    free(cfg);
}

const struct asr_service_cfg *asr_config_service(const struct asr_config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->nservices; i++)
        if (cfg->services[i].name != NULL && strcmp(cfg->services[i].name, name) == 0)
            return &cfg->services[i];
    return NULL;
}

size_t asr_argv_len(const asr_argv argv)
{
    size_t n = 0;
    if (argv != NULL)
        while (argv[n] != NULL)
            n++;
    return n;
}
