/*
 * playbook.c - loads and validates playbooks (see playbook.h and docs/playbooks.md).
 *
 * Place in the pipeline: STRATEGY, at start and on reload. The knowledge base and the planner
 * only ever see a struct asr_playbook that passed every check here, including the action
 * whitelist, so a playbook cannot make asr do anything a plan could not.
 *
 * The approach is config.c's, on a smaller schema:
 *  1. A pre-scan over libyaml's event stream refuses anchors and aliases (a few lines of them can
 *     expand into billions of nodes), more than one document, nesting deeper than PB_MAX_DEPTH
 *     and more than PB_MAX_NODES nodes. Syntax errors surface here with libyaml's text and line.
 *  2. yaml_parser_load() builds the node tree, so every node knows its line.
 *  3. The tree is walked with schema tables {key, handler, required, offset, cap}: walk_map()
 *     refuses unknown and duplicate keys and reports missing required ones; a handler converts
 *     and checks one value. A step's keys other than `action` become a JSON object that
 *     asr_action_check() validates, exactly as it validates a plan's steps.
 *
 * Every error is one line "NAME:LINE: KEY.PATH: REASON" (values are shown escaped and cut, so
 * the message never spans lines whatever the input holds).
 */
#include "strategy/playbook.h"

#include "asr/buf.h"
#include "execute/actions.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* Caps on hostile or mistaken input. A real playbook is a few kilobytes and under 200 nodes. */
#define PB_MAX_DEPTH 16
#define PB_MAX_NODES 20000
#define PB_MAX_FIELDS 8    /* most keys of one schema table (size of walk_map's seen[]) */
#define PB_TITLE_CAP 200   /* bytes of a title */
#define PB_MATCH_CAP 4096  /* bytes of match.template, match.text and the body checks */
#define PB_PATH_CAP 2048   /* bytes of the verify request path */
#define PB_HEADER_CAP 4096 /* bytes of one header value */
#define PB_BODY_CAP (64 * 1024)
#define PB_ARG_KEY_CAP 64 /* bytes of an argument name */
#define PB_MAX_TIMEOUT 600000
#define PB_MAX_VERSION 1000000
#define PB_SHOW_CAP 168 /* room for an escaped 40-byte excerpt of a value (see show()) */

struct ctx {
    const char *name; /* file name for messages */
    const char *text; /* the input, to turn reader-error offsets into lines */
    size_t len;
    yaml_document_t *doc;
    struct asr_err *err;
    struct asr_playbook *pb;
    size_t visits, max_visits; /* node visits; the walk visits each node at most once */
    int body_line;             /* line of verify.request.body, 0 when absent */
    size_t plen;
    char path[256]; /* dotted path of the key being handled, e.g. steps[1].edits */
};

struct field;
typedef int (*set_cb)(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj);

struct field {
    const char *key;
    set_cb set;
    bool required;
    size_t off;
    size_t cap;      /* most bytes of a string, or the largest integer */
    const void *arg; /* handler-specific: sub-schema, least integer */
    int min;
};

struct schema {
    const struct field *fields;
    size_t nfields;
    int (*done)(struct ctx *c, yaml_node_t *map, void *obj);
};

#define AT(obj, f, type) ((type *)(void *)((char *)(obj) + (f)->off))
#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------------------------------------
 * Messages
 */

/* The len bytes at s as a one-line excerpt: control bytes and quotes become \xNN, and past
 * (cap - 8) / 4 bytes the rest becomes "...". */
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

/* Copies a message from another module with its control bytes escaped: the validators quote
 * argument values as they are, and a value may hold a newline. */
static const char *one_line(const char *s, char *buf, size_t cap)
{
    size_t w = 0;
    for (; *s != '\0' && w + 5 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch == 0x7f) {
            snprintf(buf + w, cap - w, "\\x%02x", ch);
            w += 4;
        } else {
            buf[w++] = (char)ch;
        }
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
    char tmp[PB_SHOW_CAP];
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

/* Records "NAME:LINE: KEY: REASON" for an explicit KEY (document-level problems). */
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
    char kb[PB_SHOW_CAP + 2];
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
    char tmp[PB_SHOW_CAP];
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
 * Nodes and string checks
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
    *out = "";
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

static bool is_ident_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

/* [A-Za-z0-9_][A-Za-z0-9_.-]{0,127} for playbook ids (as config.c has signature ids); with
 * colon_ok also ':', because the built-in detectors' signatures are "exit", "generic:oom",
 * "generic:fatal" and "generic:error" (docs/detection.md) and a playbook may match them. */
static bool is_id(const char *s, bool colon_ok)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || !is_ident_char(s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!is_ident_char(s[i]) && s[i] != '.' && s[i] != '-' && !(colon_ok && s[i] == ':'))
            return false;
    return true;
}

/* [a-z0-9][a-z0-9_-]{0,62}: service names, as the config accepts them. */
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

/* [a-z][a-z0-9_]{0,63}: what an action name looks like (the whitelist decides if it is one). */
static bool is_action_name(const char *s)
{
    if (!(s[0] >= 'a' && s[0] <= 'z') || strlen(s) > 64)
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

/* [A-Za-z_][A-Za-z0-9_.-]{0,63}: argument names. The validators quote unknown names in their
 * messages as they are, so a name must be short and printable. */
static bool is_arg_key(const char *s, size_t n)
{
    if (n == 0 || n > PB_ARG_KEY_CAP || !is_ident_char(s[0]) || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!is_ident_char(s[i]) && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

/* No control bytes at all: titles, template lines, header values (tab allowed in those). */
static bool is_one_line(const char *s, bool tab_ok)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if ((*p < 0x20 && !(tab_ok && *p == '\t')) || *p == 0x7f)
            return false;
    return true;
}

/* An HTTP token (RFC 9110): header names. */
static bool is_token(const char *s)
{
    if (*s == '\0' || strlen(s) > 128)
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!is_ident_char(*p) && strchr("!#$%&'*+-.^`|~", *p) == NULL)
            return false;
    return true;
}

/* A request target asr can send as is: '/' then printable ASCII without spaces. */
static bool is_request_path(const char *s)
{
    if (s[0] != '/')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return false;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * The walk
 */

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
    int seen[PB_MAX_FIELDS] = {0}; /* line of each key met, 0 = not yet */
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
            char list[200];
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

static int set_map(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    return walk_map(c, f->arg, n, obj);
}

/* A string of 1..f->cap bytes; multi-line text allowed. */
static int set_text(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    const char *s;
    int rc = want_scalar(c, n, "text", &s);
    if (rc != 0)
        return rc;
    if (s[0] == '\0')
        return fail(c, line_of(n), "expected text, got an empty string");
    if (n->data.scalar.length > f->cap)
        return fail(c, line_of(n), "%zu bytes is more than the cap of %zu bytes",
                    n->data.scalar.length, f->cap);
    return store_str(c, AT(obj, f, char *), s);
}

/* One line of 1..f->cap bytes without control characters. */
static int set_line(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    char what[64];
    snprintf(what, sizeof(what), "one line of at most %zu bytes", f->cap);
    const char *s;
    int rc = want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    if (s[0] == '\0' || n->data.scalar.length > f->cap || !is_one_line(s, false))
        return fail_type(c, n, what);
    return store_str(c, AT(obj, f, char *), s);
}

/* A decimal integer in f->min..f->cap. Quoted digits are accepted: YAML style is not a type. */
static int set_int(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    char what[64];
    snprintf(what, sizeof(what), "an integer from %d to %zu", f->min, f->cap);
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
        if (v > (long long)f->cap)
            return fail_type(c, n, what);
    }
    if (*p != '\0' || v < f->min)
        return fail_type(c, n, what);
    *AT(obj, f, int) = (int)v;
    return 0;
}

static int set_id(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    static const char what[] = "an identifier ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})";
    struct asr_playbook *pb = obj;
    const char *s;
    int rc = want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    if (!is_id(s, false))
        return fail_type(c, n, what);
    pb->id_line = line_of(n);
    return store_str(c, AT(obj, f, char *), s);
}

static int set_service(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    static const char what[] = "a service name ([a-z0-9][a-z0-9_-]{0,62})";
    const char *s;
    int rc = want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    if (!is_service_name(s))
        return fail_type(c, n, what);
    return store_str(c, AT(obj, f, char *), s);
}

/* One signature id, or a list of 1..ASR_PLAYBOOK_MAX_SIGNATURES of them. */
static int set_signature(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    static const char what[] = "a signature id ([A-Za-z0-9_][A-Za-z0-9_.:-]{0,127})";
    struct asr_playbook *pb = obj;
    (void)f;
    size_t count = 1;
    if (n->type == YAML_SEQUENCE_NODE) {
        count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
        if (count == 0 || count > ASR_PLAYBOOK_MAX_SIGNATURES)
            return fail(c, line_of(n), "expected 1 to %d signature ids, got %zu",
                        ASR_PLAYBOOK_MAX_SIGNATURES, count);
    } else if (n->type != YAML_SCALAR_NODE) {
        return fail_type(c, n, "a signature id or a list of them");
    }
    if ((pb->signatures = calloc(count, sizeof(char *))) == NULL)
        return oom(c);
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = n;
        size_t save = c->plen;
        int rc;
        if (n->type == YAML_SEQUENCE_NODE) {
            save = push(c, "[%zu]", i);
            if ((rc = get_node(c, n->data.sequence.items.start[i], line_of(n), &item)) != 0)
                return rc;
        }
        const char *s;
        if ((rc = want_scalar(c, item, what, &s)) != 0)
            return rc;
        if (!is_id(s, true))
            return fail_type(c, item, what);
        if ((pb->signatures[i] = strdup(s)) == NULL)
            return oom(c);
        pb->nsignatures++;
        pop(c, save);
    }
    return 0;
}

static int match_done(struct ctx *c, yaml_node_t *map, void *obj)
{
    const struct asr_playbook *pb = obj;
    if (pb->nsignatures == 0 && pb->template == NULL && pb->text == NULL)
        return fail(c, line_of(map), "expected at least one of signature, template, text");
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Steps: YAML arguments -> JSON -> the whitelist's validator
 */

/* The YAML value n as JSON: scalars are strings (a plain `3000` is the text "3000": the actions
 * take text, and YAML's guessing of types would turn a version or a zip code into a number),
 * YAML's null is null, lists are arrays and mappings objects with argument-name keys. */
static int to_json(struct ctx *c, yaml_node_t *n, json_t **out)
{
    *out = NULL;
    if (n->type == YAML_SCALAR_NODE) {
        if (is_null(n)) {
            *out = json_null();
            return 0;
        }
        if (memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL)
            return fail(c, line_of(n), "expected text, got a value with a NUL byte");
        *out = json_stringn((const char *)n->data.scalar.value, n->data.scalar.length);
        return *out != NULL ? 0 : fail(c, line_of(n), "expected UTF-8 text");
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        if (a == NULL)
            return oom(c);
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            size_t save = push(c, "[%zu]", (size_t)(it - n->data.sequence.items.start));
            yaml_node_t *item;
            json_t *v;
            int rc = get_node(c, *it, line_of(n), &item);
            if (rc == 0)
                rc = to_json(c, item, &v);
            if (rc == 0 && json_array_append_new(a, v) != 0)
                rc = oom(c);
            if (rc != 0) {
                json_decref(a);
                return rc;
            }
            pop(c, save);
        }
        *out = a;
        return 0;
    }
    json_t *o = json_object();
    if (o == NULL)
        return oom(c);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k, *v;
        json_t *jv;
        int rc;
        if ((rc = get_node(c, p->key, line_of(n), &k)) != 0 ||
            (rc = get_node(c, p->value, line_of(n), &v)) != 0)
            goto bad;
        if (k->type != YAML_SCALAR_NODE) {
            rc = fail_type(c, k, "a plain key");
            goto bad;
        }
        const char *key = (const char *)k->data.scalar.value;
        size_t save = push_key(c, key, k->data.scalar.length);
        if (!is_arg_key(key, k->data.scalar.length)) {
            rc = fail(c, line_of(k),
                      "expected an argument name matching "
                      "[A-Za-z_][A-Za-z0-9_.-]{0,63}");
            goto bad;
        }
        if (json_object_get(o, key) != NULL) {
            rc = fail(c, line_of(k), "duplicate key");
            goto bad;
        }
        if ((rc = to_json(c, v, &jv)) != 0)
            goto bad;
        if (json_object_set_new(o, key, jv) != 0) {
            rc = oom(c);
            goto bad;
        }
        pop(c, save);
        continue;
    bad:
        json_decref(o);
        return rc;
    }
    *out = o;
    return 0;
}

/* The value of key in the mapping n, or NULL. */
static yaml_node_t *map_get(struct ctx *c, yaml_node_t *n, const char *key, size_t klen)
{
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE && k->data.scalar.length == klen &&
            memcmp(k->data.scalar.value, key, klen) == 0)
            return yaml_document_get_node(c->doc, p->value);
    }
    return NULL;
}

/*
 * The line a validator's message is about. Its messages read "action NAME: ARG[N].KEY: why" or
 * "action NAME: ARG[N]: unknown argument 'KEY'": the path is followed through the step's
 * mapping as far as it goes, and the line of the deepest node found is more useful than the
 * step's.
 */
static int blame_line(struct ctx *c, yaml_node_t *step, const char *action, const char *msg,
                      int fallback)
{
    static const char unknown[] = "unknown argument '";
    char prefix[96];
    snprintf(prefix, sizeof(prefix), "action %s: ", action);
    size_t pl = strlen(prefix);
    if (strncmp(msg, prefix, pl) != 0)
        return fallback;
    const char *k = msg + pl;
    yaml_node_t *cur = step;
    int line = fallback;
    for (;;) {
        if (strncmp(k, unknown, sizeof(unknown) - 1) == 0)
            k += sizeof(unknown) - 1;
        size_t kl = 0;
        while (is_ident_char(k[kl]) || k[kl] == '.' || k[kl] == '-')
            kl++;
        yaml_node_t *v = kl > 0 && cur->type == YAML_MAPPING_NODE ? map_get(c, cur, k, kl) : NULL;
        if (v == NULL)
            return line;
        cur = v;
        line = line_of(v);
        k += kl;
        while (*k == '[' && cur->type == YAML_SEQUENCE_NODE) {
            char *end;
            unsigned long i = strtoul(k + 1, &end, 10);
            size_t count = (size_t)(cur->data.sequence.items.top - cur->data.sequence.items.start);
            yaml_node_t *e = *end == ']' && i < count
                                 ? yaml_document_get_node(c->doc, cur->data.sequence.items.start[i])
                                 : NULL;
            if (e == NULL)
                return line;
            cur = e;
            line = line_of(e);
            k = end + 1;
        }
        if (*k == '.')
            k++;
        else if (k[0] == ':' && k[1] == ' ')
            k += 2;
        else
            return line;
    }
}

/* One step: {action: NAME, ...arguments}, checked against the whitelist. */
static int parse_step(struct ctx *c, yaml_node_t *n, struct asr_playbook_step *step)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail_type(c, n, "a mapping {action: NAME, ...arguments}");
    step->line = line_of(n);
    if ((step->args = json_object()) == NULL)
        return oom(c);
    int action_line = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k, *v;
        int rc;
        if ((rc = get_node(c, p->key, line_of(n), &k)) != 0 ||
            (rc = get_node(c, p->value, line_of(n), &v)) != 0)
            return rc;
        if (k->type != YAML_SCALAR_NODE)
            return fail_type(c, k, "a plain key");
        const char *key = (const char *)k->data.scalar.value;
        size_t klen = k->data.scalar.length;
        size_t save = push_key(c, key, klen);
        if (klen == 6 && memcmp(key, "action", 6) == 0) {
            static const char what[] = "an action name ([a-z][a-z0-9_]{0,63})";
            const char *s;
            if (action_line != 0)
                return fail(c, line_of(k), "duplicate key (first at line %d)", action_line);
            action_line = line_of(k);
            if ((rc = want_scalar(c, v, what, &s)) != 0)
                return rc;
            if (!is_action_name(s))
                return fail_type(c, v, what);
            if ((rc = store_str(c, &step->action, s)) != 0)
                return rc;
        } else {
            json_t *jv;
            if (!is_arg_key(key, klen))
                return fail(c, line_of(k),
                            "expected an argument name matching "
                            "[A-Za-z_][A-Za-z0-9_.-]{0,63}");
            if (json_object_get(step->args, key) != NULL)
                return fail(c, line_of(k), "duplicate key");
            if ((rc = to_json(c, v, &jv)) != 0)
                return rc;
            if (json_object_set_new(step->args, key, jv) != 0)
                return oom(c);
        }
        pop(c, save);
    }
    if (step->action == NULL)
        return fail(c, line_of(n), "missing required key 'action'");
    struct asr_err e2 = {0};
    if (asr_action_check(step->action, step->args, NULL, &e2) != 0) {
        char msg[sizeof(e2.msg)];
        int line = asr_action_find(step->action) == NULL
                       ? action_line
                       : blame_line(c, n, step->action, e2.msg, line_of(n));
        return fail(c, line, "%s", one_line(e2.msg, msg, sizeof(msg)));
    }
    return 0;
}

static int set_steps(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    struct asr_playbook *pb = obj;
    (void)f;
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_type(c, n, "a list of steps");
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0 || count > ASR_PLAYBOOK_MAX_STEPS)
        return fail(c, line_of(n), "expected 1 to %d steps, got %zu", ASR_PLAYBOOK_MAX_STEPS,
                    count);
    if ((pb->steps = calloc(count, sizeof(*pb->steps))) == NULL)
        return oom(c);
    pb->nsteps = count; /* zeroed steps are safe to free if one fails below */
    for (size_t i = 0; i < count; i++) {
        size_t save = push(c, "[%zu]", i);
        yaml_node_t *item;
        int rc = get_node(c, n->data.sequence.items.start[i], line_of(n), &item);
        if (rc == 0)
            rc = parse_step(c, item, &pb->steps[i]);
        if (rc != 0)
            return rc;
        pop(c, save);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * verify
 */

static const char *const methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                      "PATCH", "DELETE", "OPTIONS", NULL};

static int set_method(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    static const char what[] = "one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
    const char *s;
    int rc = want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    for (size_t i = 0; methods[i] != NULL; i++)
        if (strcmp(s, methods[i]) == 0)
            return store_str(c, AT(obj, f, char *), s);
    return fail_type(c, n, what);
}

static int set_req_path(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    static const char what[] = "a request path starting with '/' (printable ASCII, no spaces)";
    const char *s;
    int rc = want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    if (n->data.scalar.length > PB_PATH_CAP || !is_request_path(s))
        return fail_type(c, n, what);
    return store_str(c, AT(obj, f, char *), s);
}

/* A body may be empty (""), unlike the other strings. */
static int set_body(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    const char *s;
    int rc = want_scalar(c, n, "a string", &s);
    if (rc != 0)
        return rc;
    if (n->data.scalar.length > PB_BODY_CAP)
        return fail(c, line_of(n), "%zu bytes is more than the cap of %d bytes",
                    n->data.scalar.length, PB_BODY_CAP);
    c->body_line = line_of(n);
    return store_str(c, AT(obj, f, char *), s);
}

/* Headers the probe writes itself: a playbook setting them would make a malformed request. */
static bool is_probe_header(const char *name)
{
    static const char *const own[] = {"host", "content-length", "transfer-encoding", "connection",
                                      NULL};
    for (size_t i = 0; own[i] != NULL; i++)
        if (strcasecmp(name, own[i]) == 0)
            return true;
    return false;
}

static int set_headers(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    struct asr_playbook_verify *v = obj;
    (void)f;
    if (n->type != YAML_MAPPING_NODE)
        return fail_type(c, n, "a mapping of header names to values");
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (count > ASR_PLAYBOOK_MAX_HEADERS)
        return fail(c, line_of(n), "expected at most %d headers, got %zu", ASR_PLAYBOOK_MAX_HEADERS,
                    count);
    if (count == 0)
        return 0;
    if ((v->headers = calloc(count, sizeof(*v->headers))) == NULL)
        return oom(c);
    for (size_t i = 0; i < count; i++) {
        yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
        yaml_node_t *k, *val;
        const char *name, *value;
        int rc;
        if ((rc = get_node(c, p->key, line_of(n), &k)) != 0 ||
            (rc = get_node(c, p->value, line_of(n), &val)) != 0)
            return rc;
        if (k->type != YAML_SCALAR_NODE)
            return fail_type(c, k, "a header name");
        size_t save = push_key(c, (const char *)k->data.scalar.value, k->data.scalar.length);
        if ((rc = want_scalar(c, k, "a header name", &name)) != 0)
            return rc;
        if (!is_token(name))
            return fail(c, line_of(k), "expected a header name (an HTTP token)");
        if (is_probe_header(name))
            return fail(c, line_of(k), "set by asr's probe, not by a playbook");
        for (size_t j = 0; j < v->nheaders; j++)
            if (strcasecmp(v->headers[j].name, name) == 0)
                return fail(c, line_of(k), "duplicate header");
        if ((rc = want_scalar(c, val, "a header value", &value)) != 0)
            return rc;
        if (val->data.scalar.length > PB_HEADER_CAP || !is_one_line(value, true))
            return fail_type(c, val, "one line of at most 4096 bytes");
        if ((v->headers[i].name = strdup(name)) == NULL ||
            (v->headers[i].value = strdup(value)) == NULL) {
            v->nheaders = i + 1; /* free the half-set pair too */
            return oom(c);
        }
        v->nheaders = i + 1;
        pop(c, save);
    }
    return 0;
}

static int request_done(struct ctx *c, yaml_node_t *map, void *obj)
{
    const struct asr_playbook_verify *v = obj;
    (void)map;
    if (v->body != NULL && (strcmp(v->method, "GET") == 0 || strcmp(v->method, "HEAD") == 0)) {
        size_t save = push(c, ".body");
        int rc = fail(c, c->body_line, "a %s request carries no body", v->method);
        pop(c, save);
        return rc;
    }
    return 0;
}

/* A table row. Rows handled by set_map (match, request, expect) fill the same struct as their
 * parent table, so their offset is not used; they name some member only to have one. */
#define F(k, set, req, type, member, cap, arg, min)                                                \
    {                                                                                              \
        k, set, req, offsetof(type, member), cap, arg, min                                         \
    }

static const struct field request_fields[] = {
    F("method", set_method, true, struct asr_playbook_verify, method, 0, NULL, 0),
    F("path", set_req_path, true, struct asr_playbook_verify, path, 0, NULL, 0),
    F("headers", set_headers, false, struct asr_playbook_verify, headers, 0, NULL, 0),
    F("body", set_body, false, struct asr_playbook_verify, body, 0, NULL, 0),
};
static const struct schema request_schema = {request_fields, NFIELDS(request_fields), request_done};

static const struct field expect_fields[] = {
    F("status", set_int, true, struct asr_playbook_verify, status, 599, NULL, 100),
    F("body_contains", set_text, false, struct asr_playbook_verify, body_contains, PB_MATCH_CAP,
      NULL, 0),
    F("body_not_contains", set_text, false, struct asr_playbook_verify, body_not_contains,
      PB_MATCH_CAP, NULL, 0),
};
static const struct schema expect_schema = {expect_fields, NFIELDS(expect_fields), NULL};

static const struct field verify_fields[] = {
    F("request", set_map, true, struct asr_playbook_verify, method, 0, &request_schema, 0),
    F("expect", set_map, true, struct asr_playbook_verify, status, 0, &expect_schema, 0),
    F("timeout_ms", set_int, false, struct asr_playbook_verify, timeout_ms, PB_MAX_TIMEOUT, NULL,
      1),
};
static const struct schema verify_schema = {verify_fields, NFIELDS(verify_fields), NULL};

/* verify's sub-maps fill the same struct, so set_map is given the verify struct itself. */
static int set_verify(struct ctx *c, const struct field *f, yaml_node_t *n, void *obj)
{
    return walk_map(c, f->arg, n, AT(obj, f, struct asr_playbook_verify));
}

static const struct field match_fields[] = {
    F("signature", set_signature, false, struct asr_playbook, signatures, 0, NULL, 0),
    F("template", set_line, false, struct asr_playbook, template, PB_MATCH_CAP, NULL, 0),
    F("text", set_text, false, struct asr_playbook, text, PB_MATCH_CAP, NULL, 0),
    F("service", set_service, false, struct asr_playbook, service, 0, NULL, 0),
};
static const struct schema match_schema = {match_fields, NFIELDS(match_fields), match_done};

static const struct field root_fields[] = {
    F("id", set_id, true, struct asr_playbook, id, 0, NULL, 0),
    F("title", set_line, true, struct asr_playbook, title, PB_TITLE_CAP, NULL, 0),
    F("version", set_int, false, struct asr_playbook, version, PB_MAX_VERSION, NULL, 1),
    F("match", set_map, true, struct asr_playbook, id, 0, &match_schema, 0),
    F("symptoms", set_text, true, struct asr_playbook, symptoms, ASR_PLAYBOOK_MAX_SYMPTOMS, NULL,
      0),
    F("steps", set_steps, true, struct asr_playbook, steps, 0, NULL, 0),
    F("verify", set_verify, true, struct asr_playbook, verify, 0, &verify_schema, 0),
};
static const struct schema root_schema = {root_fields, NFIELDS(root_fields), NULL};

_Static_assert(NFIELDS(root_fields) <= PB_MAX_FIELDS, "walk_map's seen[] is too small");

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
        char b[PB_SHOW_CAP];
        const char *anchor =
            type == YAML_SCALAR_EVENT           ? (const char *)ev.data.scalar.anchor
            : type == YAML_SEQUENCE_START_EVENT ? (const char *)ev.data.sequence_start.anchor
            : type == YAML_MAPPING_START_EVENT  ? (const char *)ev.data.mapping_start.anchor
                                                : NULL;
        if (type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            rc = fail_key(c, line, "yaml", "more than one document (a playbook is one document)");
        } else if (type == YAML_ALIAS_EVENT || anchor != NULL) {
            /* An anchor is only useful to an alias, so both are refused where they appear. */
            const char *a = type == YAML_ALIAS_EVENT ? (const char *)ev.data.alias.anchor : anchor;
            rc = fail_key(c, line, "yaml",
                          "%s '%c%s' is not supported (anchors and aliases are rejected; "
                          "write the value out)",
                          type == YAML_ALIAS_EVENT ? "alias" : "anchor",
                          type == YAML_ALIAS_EVENT ? '*' : '&', show(a, strlen(a), b, sizeof(b)));
        } else if ((type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT) &&
                   ++depth > PB_MAX_DEPTH) {
            rc = fail_key(c, line, "yaml", "nesting deeper than %d levels", PB_MAX_DEPTH);
        } else if (type == YAML_MAPPING_END_EVENT || type == YAML_SEQUENCE_END_EVENT) {
            depth--;
        }
        if (rc == 0 &&
            (type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT ||
             type == YAML_SCALAR_EVENT) &&
            ++nodes > PB_MAX_NODES)
            rc = fail_key(c, line, "yaml", "more than %d nodes", PB_MAX_NODES);
        yaml_event_delete(&ev);
        if (rc != 0 || type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    return rc;
}

int asr_playbook_parse(const char *name, const char *text, size_t len, struct asr_playbook **out,
                       struct asr_err *err)
{
    struct ctx c = {.name = name != NULL ? name : "<playbook>",
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
    if (c.len > ASR_PLAYBOOK_MAX_BYTES)
        return asr_err_set(err, ASR_ETOOBIG,
                           "%s:1: yaml: %zu bytes is more than the cap of %d bytes (256 KiB)",
                           c.name, c.len, ASR_PLAYBOOK_MAX_BYTES);
    struct asr_playbook *pb = calloc(1, sizeof(*pb));
    if (pb == NULL)
        return oom(&c);
    c.pb = pb;
    pb->verify.timeout_ms = ASR_PLAYBOOK_DEFAULT_TIMEOUT_MS;
    if ((pb->file = strdup(c.name)) == NULL) {
        rc = oom(&c);
        goto out;
    }
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
                  "empty playbook (expected a mapping with id, title, match, symptoms, steps "
                  "and verify)");
        goto out;
    }
    c.visits = 1;
    rc = walk_map(&c, &root_schema, root, pb);
out:
    if (doc_ok)
        yaml_document_delete(&doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    if (rc != 0) {
        asr_playbook_free(pb);
        return rc;
    }
    *out = pb;
    return 0;
}

int asr_playbook_load(const char *path, struct asr_playbook **out, struct asr_err *err)
{
    struct asr_buf buf;
    char chunk[16384];
    struct stat st;
    int rc = 0;

    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return asr_err_set(err, ASR_EIO, "%s: cannot open: %s", path, strerror(errno));
    /* A FIFO or a device would block or never end; a playbook is a plain file. */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return asr_err_set(err, ASR_EIO, "%s: not a regular file", path);
    }
    asr_buf_init(&buf, ASR_PLAYBOOK_MAX_BYTES);
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
            rc = asr_err_set(err, ASR_ETOOBIG,
                             "%s:1: yaml: the file is larger than the cap of %d bytes (256 KiB)",
                             path, ASR_PLAYBOOK_MAX_BYTES);
            break;
        }
        if (arc != 0) {
            rc = asr_err_set(err, ASR_ENOMEM, "%s: out of memory", path);
            break;
        }
    }
    close(fd);
    if (rc == 0)
        rc = asr_playbook_parse(path, asr_buf_cstr(&buf), buf.len, out, err);
    asr_buf_free(&buf);
    return rc;
}

static bool is_playbook_name(const char *n)
{
    size_t l = strlen(n);
    if (n[0] == '.')
        return false;
    return (l > 5 && strcmp(n + l - 5, ".yaml") == 0) || (l > 4 && strcmp(n + l - 4, ".yml") == 0);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int asr_playbook_load_dir(const char *dir, struct asr_playbook_set **out, struct asr_err *err)
{
    char **names = NULL;
    size_t nnames = 0;
    int rc = 0;

    *out = NULL;
    struct asr_playbook_set *set = calloc(1, sizeof(*set));
    DIR *d = opendir(dir);
    if (set == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "%s: out of memory", dir);
        goto out;
    }
    if (d == NULL) {
        rc = asr_err_set(err, ASR_EIO, "%s: cannot open directory: %s", dir, strerror(errno));
        goto out;
    }
    if ((names = calloc(ASR_PLAYBOOK_MAX_FILES, sizeof(char *))) == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "%s: out of memory", dir);
        goto out;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_playbook_name(e->d_name))
            continue;
        if (nnames == ASR_PLAYBOOK_MAX_FILES) {
            rc = asr_err_set(err, ASR_ETOOBIG, "%s: more than %d playbook files", dir,
                             ASR_PLAYBOOK_MAX_FILES);
            goto out;
        }
        if ((names[nnames] = strdup(e->d_name)) == NULL) {
            rc = asr_err_set(err, ASR_ENOMEM, "%s: out of memory", dir);
            goto out;
        }
        nnames++;
    }
    qsort(names, nnames, sizeof(char *), cmp_names);
    if (nnames > 0 && (set->items = calloc(nnames, sizeof(*set->items))) == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "%s: out of memory", dir);
        goto out;
    }
    for (size_t i = 0; i < nnames; i++) {
        char path[PATH_MAX];
        int k = snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (k < 0 || (size_t)k >= sizeof(path)) {
            rc = asr_err_set(err, ASR_EINVAL, "%s/%s: path too long", dir, names[i]);
            goto out;
        }
        struct asr_playbook *pb;
        if ((rc = asr_playbook_load(path, &pb, err)) != 0)
            goto out;
        const struct asr_playbook *other = asr_playbook_set_find(set, pb->id);
        if (other != NULL) {
            rc = asr_err_set(err, ASR_ECONFIG, "%s:%d: id: duplicate id '%s' (also in %s:%d)",
                             pb->file, pb->id_line, pb->id, other->file, other->id_line);
            asr_playbook_free(pb);
            goto out;
        }
        set->items[set->n++] = pb;
    }
out:
    if (d != NULL)
        closedir(d);
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    if (rc != 0) {
        asr_playbook_set_free(set);
        return rc;
    }
    *out = set;
    return 0;
}

const struct asr_playbook *asr_playbook_set_find(const struct asr_playbook_set *set, const char *id)
{
    for (size_t i = 0; set != NULL && id != NULL && i < set->n; i++)
        if (strcmp(set->items[i]->id, id) == 0)
            return set->items[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * JSON
 */

/* Sets key to v (taking it) when v is not NULL; a NULL v from a failed allocation clears *ok. */
static void put(json_t *o, const char *key, json_t *v, bool *ok)
{
    if (v == NULL || json_object_set_new(o, key, v) != 0)
        *ok = false;
}

/* Sets key to the string s when s is not NULL (optional fields stay absent). */
static void put_str(json_t *o, const char *key, const char *s, bool *ok)
{
    if (s != NULL)
        put(o, key, json_string(s), ok);
}

json_t *asr_playbook_json(const struct asr_playbook *pb)
{
    bool ok = true;
    json_t *j = json_object(), *match = json_object(), *sigs = json_array(), *steps = json_array(),
           *verify = json_object(), *req = json_object(), *expect = json_object();
    if (j == NULL || match == NULL || sigs == NULL || steps == NULL || verify == NULL ||
        req == NULL || expect == NULL) {
        json_decref(j);
        json_decref(match);
        json_decref(sigs);
        json_decref(steps);
        json_decref(verify);
        json_decref(req);
        json_decref(expect);
        return NULL;
    }
    put_str(j, "id", pb->id, &ok);
    put_str(j, "title", pb->title, &ok);
    if (pb->version > 0)
        put(j, "version", json_integer(pb->version), &ok);
    for (size_t i = 0; i < pb->nsignatures; i++)
        if (json_array_append_new(sigs, json_string(pb->signatures[i])) != 0)
            ok = false;
    if (pb->nsignatures > 0)
        put(match, "signature", sigs, &ok);
    else
        json_decref(sigs);
    put_str(match, "template", pb->template, &ok);
    put_str(match, "text", pb->text, &ok);
    put_str(match, "service", pb->service, &ok);
    put(j, "match", match, &ok);
    put_str(j, "symptoms", pb->symptoms, &ok);
    for (size_t i = 0; i < pb->nsteps; i++) {
        json_t *s = json_object();
        if (s == NULL) {
            ok = false;
            break;
        }
        put_str(s, "action", pb->steps[i].action, &ok);
        if (json_object_update(s, pb->steps[i].args) != 0)
            ok = false;
        if (json_array_append_new(steps, s) != 0)
            ok = false;
    }
    put(j, "steps", steps, &ok);
    const struct asr_playbook_verify *v = &pb->verify;
    put_str(req, "method", v->method, &ok);
    put_str(req, "path", v->path, &ok);
    if (v->nheaders > 0) {
        json_t *h = json_object();
        for (size_t i = 0; h != NULL && i < v->nheaders; i++)
            put_str(h, v->headers[i].name, v->headers[i].value, &ok);
        put(req, "headers", h, &ok);
    }
    put_str(req, "body", v->body, &ok);
    put(verify, "request", req, &ok);
    put(expect, "status", json_integer(v->status), &ok);
    put_str(expect, "body_contains", v->body_contains, &ok);
    put_str(expect, "body_not_contains", v->body_not_contains, &ok);
    put(verify, "expect", expect, &ok);
    put(verify, "timeout_ms", json_integer(v->timeout_ms), &ok);
    put(j, "verify", verify, &ok);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ---------------------------------------------------------------------------------------------
 * Freeing
 */

void asr_playbook_free(struct asr_playbook *pb)
{
    if (pb == NULL)
        return;
    free(pb->file);
    free(pb->id);
    free(pb->title);
    for (size_t i = 0; i < pb->nsignatures; i++)
        free(pb->signatures[i]);
    free(pb->signatures);
    free(pb->template);
    free(pb->text);
    free(pb->service);
    free(pb->symptoms);
    for (size_t i = 0; pb->steps != NULL && i < pb->nsteps; i++) {
        free(pb->steps[i].action);
        json_decref(pb->steps[i].args);
    }
    free(pb->steps);
    struct asr_playbook_verify *v = &pb->verify;
    free(v->method);
    free(v->path);
    for (size_t i = 0; i < v->nheaders; i++) {
        free(v->headers[i].name);
        free(v->headers[i].value);
    }
    free(v->headers);
    free(v->body);
    free(v->body_contains);
    free(v->body_not_contains);
    free(pb);
}

void asr_playbook_set_free(struct asr_playbook_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        asr_playbook_free(set->items[i]);
    free(set->items);
    free(set);
}
