/*
 * yamlschema.c - strict YAML loading with schema tables (see include/asr/yamlschema.h).
 *
 * Place in the pipeline: under the config and playbook loaders, which keep their own tables.
 * The walk recurses only into mappings that the tables declare, so its depth is bounded by the
 * schema, not by the input; the pre-scan keeps nothing but counters, so hostile input costs at
 * most one linear pass before the tree is built.
 */
#include "asr/yamlschema.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct asr_ys_strcheck chk_string = {NULL, "a non-empty string"};

/* ---------------------------------------------------------------------------------------------
 * Messages
 */

/*
 * Writes the len bytes at s into buf as an excerpt that is safe to put in a one-line message:
 * control bytes and quotes become \xNN, and past (cap - 8) / 4 bytes (40 for ASR_YS_SHOW_CAP)
 * the rest becomes "...". Returns buf.
 */
const char *asr_ys_show(const char *s, size_t len, char *buf, size_t cap)
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

/* A plain empty, "~" or "null" scalar: YAML's null, which no key of the schemas accepts. */
bool asr_ys_is_null(const yaml_node_t *n)
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
    if (asr_ys_is_null(n))
        return "an empty value";
    char tmp[ASR_YS_SHOW_CAP];
    snprintf(
        buf, cap, "'%s'",
        asr_ys_show((const char *)n->data.scalar.value, n->data.scalar.length, tmp, sizeof(tmp)));
    return buf;
}

static int vfail_key(struct asr_ys *c, int line, const char *key, const char *fmt, va_list ap)
{
    char why[400];
    vsnprintf(why, sizeof(why), fmt, ap);
    return asr_err_set(c->err, ASR_ECONFIG, "%s:%d: %s: %s", c->name, line, key, why);
}

/* Records "NAME:LINE: KEY: REASON" for an explicit KEY (used for document-level problems). */
int asr_ys_fail_key(struct asr_ys *c, int line, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_key(c, line, key, fmt, ap);
    va_end(ap);
    return rc;
}

/* Records "NAME:LINE: PATH: REASON" with the current key path; returns ASR_ECONFIG. */
int asr_ys_fail(struct asr_ys *c, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_key(c, line, c->plen ? c->path : "(top level)", fmt, ap);
    va_end(ap);
    return rc;
}

/* Records "expected EXPECTED, got WHAT-N-IS" at n's line; returns ASR_ECONFIG. */
int asr_ys_fail_type(struct asr_ys *c, const yaml_node_t *n, const char *expected)
{
    char kb[ASR_YS_SHOW_CAP + 2];
    return asr_ys_fail(c, asr_ys_line(n), "expected %s, got %s", expected, kind(n, kb, sizeof(kb)));
}

/* Records "NAME: out of memory"; returns ASR_ENOMEM. */
int asr_ys_oom(struct asr_ys *c)
{
    return asr_err_set(c->err, ASR_ENOMEM, "%s: out of memory", c->name);
}

/* Appends to the key path; returns the old length for asr_ys_pop(). Overlong paths are cut. */
size_t asr_ys_push(struct asr_ys *c, const char *fmt, ...)
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

/* Appends ".KEY" (or "KEY" at the top), KEY shown escaped; returns the old length. */
size_t asr_ys_push_key(struct asr_ys *c, const char *key, size_t len)
{
    char tmp[ASR_YS_SHOW_CAP];
    if (len == 0)
        snprintf(tmp, sizeof(tmp), "''"); /* an empty key must not look like the top level */
    else
        asr_ys_show(key, len, tmp, sizeof(tmp));
    return c->plen ? asr_ys_push(c, ".%s", tmp) : asr_ys_push(c, "%s", tmp);
}

/* Cuts the key path back to len, a value asr_ys_push() returned. */
void asr_ys_pop(struct asr_ys *c, size_t len)
{
    c->plen = len;
    c->path[len] = '\0';
}

/* ---------------------------------------------------------------------------------------------
 * Nodes
 */

/* The node at index; counts visits so that no input can make the walk run away. */
int asr_ys_get_node(struct asr_ys *c, int index, int line, yaml_node_t **out)
{
    if (++c->visits > c->max_visits)
        return asr_ys_fail(c, line, "too many node visits (more than %zu)", c->max_visits);
    *out = yaml_document_get_node(c->doc, index);
    if (*out == NULL)
        return asr_ys_fail(c, line, "dangling YAML node");
    return 0;
}

/*
 * The text of a non-null scalar without NUL bytes in *out (owned by the document), or an
 * "expected WHAT, got ..." error.
 */
int asr_ys_want_scalar(struct asr_ys *c, yaml_node_t *n, const char *what, const char **out)
{
    *out = ""; /* set on every path, so no caller reads an unset pointer (and -O3 can tell) */
    if (n->type != YAML_SCALAR_NODE || asr_ys_is_null(n))
        return asr_ys_fail_type(c, n, what);
    if (memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL)
        return asr_ys_fail(c, asr_ys_line(n), "expected %s, got a value with a NUL byte", what);
    *out = (const char *)n->data.scalar.value;
    return 0;
}

/* Replaces the string *dst (freed) with a copy of s. */
int asr_ys_store_str(struct asr_ys *c, char **dst, const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        return asr_ys_oom(c);
    free(*dst);
    *dst = p;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The generic walk
 */

/* "name, repo, build, ..." - the keys of a table, for the unknown-key message. */
static const char *key_list(const struct asr_ys_schema *s, char *buf, size_t cap)
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

int asr_ys_walk_map(struct asr_ys *c, const struct asr_ys_schema *s, yaml_node_t *n, void *obj)
{
    if (n->type != YAML_MAPPING_NODE)
        return asr_ys_fail_type(c, n, "a mapping");
    int seen[ASR_YS_MAX_FIELDS] = {0}; /* line of each key met, 0 = not yet */
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k, *v;
        int rc;
        if ((rc = asr_ys_get_node(c, p->key, asr_ys_line(n), &k)) != 0 ||
            (rc = asr_ys_get_node(c, p->value, asr_ys_line(n), &v)) != 0)
            return rc;
        if (k->type != YAML_SCALAR_NODE)
            return asr_ys_fail_type(c, k, "a plain key");
        const char *key = (const char *)k->data.scalar.value;
        size_t klen = k->data.scalar.length, i;
        for (i = 0; i < s->nfields; i++)
            if (strlen(s->fields[i].key) == klen && memcmp(s->fields[i].key, key, klen) == 0)
                break;
        size_t save = asr_ys_push_key(c, key, klen);
        if (i == s->nfields) {
            char list[300];
            return asr_ys_fail(c, asr_ys_line(k), "unknown key (expected one of: %s)",
                               key_list(s, list, sizeof(list)));
        }
        if (seen[i] != 0)
            return asr_ys_fail(c, asr_ys_line(k), "duplicate key (first at line %d)", seen[i]);
        seen[i] = asr_ys_line(k);
        if ((rc = s->fields[i].set(c, &s->fields[i], v, obj)) != 0)
            return rc;
        asr_ys_pop(c, save);
    }
    for (size_t i = 0; i < s->nfields; i++)
        if (s->fields[i].required && seen[i] == 0)
            return asr_ys_fail(c, asr_ys_line(n), "missing required key '%s'", s->fields[i].key);
    return s->done != NULL ? s->done(c, n, obj) : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Handlers for any table
 */

/* A nested mapping filled by the schema in f->arg into obj + off. */
int asr_ys_set_map(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    return asr_ys_walk_map(c, f->arg, n, (char *)obj + f->off);
}

/* A non-empty string, checked by the struct asr_ys_strcheck in f->arg when there is one. */
int asr_ys_set_str(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    const struct asr_ys_strcheck *chk = f->arg != NULL ? f->arg : &chk_string;
    const char *s;
    int rc = asr_ys_want_scalar(c, n, chk->expect, &s);
    if (rc != 0)
        return rc;
    if (s[0] == '\0' || (chk->ok != NULL && !chk->ok(s)))
        return asr_ys_fail_type(c, n, chk->expect);
    return asr_ys_store_str(c, ASR_YS_AT(obj, f, char *), s);
}

/* One of the NULL-terminated names in f->arg. */
int asr_ys_set_enum(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    const char *const *names = f->arg;
    char expect[128] = "one of ";
    size_t w = strlen(expect);
    for (size_t i = 0; names[i] != NULL && w < sizeof(expect); i++) {
        int k = snprintf(expect + w, sizeof(expect) - w, "%s%s", i ? ", " : "", names[i]);
        w += k > 0 ? (size_t)k : 0;
    }
    const char *s;
    int rc = asr_ys_want_scalar(c, n, expect, &s);
    if (rc != 0)
        return rc;
    for (size_t i = 0; names[i] != NULL; i++)
        if (strcmp(s, names[i]) == 0)
            return asr_ys_store_str(c, ASR_YS_AT(obj, f, char *), s);
    return asr_ys_fail_type(c, n, expect);
}

/*
 * A decimal int in f->min..f->cap, or f->min..INT_MAX when f->cap is 0. Quoted digits are
 * accepted: YAML style is not a type here.
 */
int asr_ys_set_int(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    char what[64];
    if (f->cap > 0)
        snprintf(what, sizeof(what), "an integer from %d to %zu", f->min, f->cap);
    else
        snprintf(what, sizeof(what), "%s",
                 f->min > 0 ? "a positive integer" : "a non-negative integer");
    long long v = 0, max = f->cap > 0 ? (long long)f->cap : INT_MAX;
    const char *s;
    int rc = asr_ys_want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return asr_ys_fail_type(c, n, what);
    for (; *p >= '0' && *p <= '9' && v <= max; p++)
        v = v * 10 + (*p - '0');
    if (f->cap == 0 && v > INT_MAX) {
        char kb[ASR_YS_SHOW_CAP + 2];
        return asr_ys_fail(c, asr_ys_line(n), "expected %s no larger than %d, got %s", what,
                           INT_MAX, kind(n, kb, sizeof(kb)));
    }
    if (*p != '\0' || v < f->min || v > max)
        return asr_ys_fail_type(c, n, what);
    *ASR_YS_AT(obj, f, int) = (int)v;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Parsing
 */

/* Turns a libyaml parser error into "NAME:LINE: yaml: PROBLEM (CONTEXT at line N)". */
static int yaml_fail(struct asr_ys *c, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return asr_ys_oom(c);
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
        return asr_ys_fail_key(c, line, "yaml", "%s (%s at line %d)", problem, p->context,
                               (int)p->context_mark.line + 1);
    return asr_ys_fail_key(c, line, "yaml", "%s", problem);
}

/*
 * The pre-scan over the event stream: syntax errors, aliases, depth, node count, documents.
 * It keeps no state besides counters, so hostile input costs at most one linear pass.
 */
static int prescan(struct asr_ys *c)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0, docs = 0, nodes = 0, rc = 0;
    if (!yaml_parser_initialize(&p))
        return asr_ys_oom(c);
    yaml_parser_set_input_string(&p, (const unsigned char *)c->text, c->len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) {
            rc = yaml_fail(c, &p);
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        yaml_event_type_t type = ev.type;
        char b[ASR_YS_SHOW_CAP];
        const char *anchor =
            type == YAML_SCALAR_EVENT           ? (const char *)ev.data.scalar.anchor
            : type == YAML_SEQUENCE_START_EVENT ? (const char *)ev.data.sequence_start.anchor
            : type == YAML_MAPPING_START_EVENT  ? (const char *)ev.data.mapping_start.anchor
                                                : NULL;
        if (type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            rc = asr_ys_fail_key(c, line, "yaml", "more than one document (%s is one document)",
                                 c->one_doc);
        } else if (type == YAML_ALIAS_EVENT || anchor != NULL) {
            /* An anchor is only useful to an alias, so both are refused where they appear. */
            const char *a = type == YAML_ALIAS_EVENT ? (const char *)ev.data.alias.anchor : anchor;
            rc = asr_ys_fail_key(c, line, "yaml",
                                 "%s '%c%s' is not supported (anchors and aliases are rejected; "
                                 "write the value out)",
                                 type == YAML_ALIAS_EVENT ? "alias" : "anchor",
                                 type == YAML_ALIAS_EVENT ? '*' : '&',
                                 asr_ys_show(a, strlen(a), b, sizeof(b)));
        } else if ((type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT) &&
                   ++depth > c->max_depth) {
            rc = asr_ys_fail_key(c, line, "yaml", "nesting deeper than %d levels", c->max_depth);
        } else if (type == YAML_MAPPING_END_EVENT || type == YAML_SEQUENCE_END_EVENT) {
            depth--;
        }
        if (rc == 0 &&
            (type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT ||
             type == YAML_SCALAR_EVENT) &&
            ++nodes > c->max_nodes)
            rc = asr_ys_fail_key(c, line, "yaml", "more than %d nodes", c->max_nodes);
        yaml_event_delete(&ev);
        if (rc != 0 || type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    return rc;
}

int asr_ys_parse(struct asr_ys *c, const struct asr_ys_schema *root_schema, void *obj)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = prescan(c);
    if (rc != 0)
        return rc;
    if (!yaml_parser_initialize(&parser))
        return asr_ys_oom(c);
    yaml_parser_set_input_string(&parser, (const unsigned char *)c->text, c->len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_fail(c, &parser); /* libyaml has already freed doc */
        yaml_parser_delete(&parser);
        return rc;
    }
    c->doc = &doc;
    c->max_visits = (size_t)(doc.nodes.top - doc.nodes.start);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL || asr_ys_is_null(root)) {
        rc = asr_ys_fail(c, root != NULL ? asr_ys_line(root) : 1, "%s", c->empty);
    } else {
        c->visits = 1;
        rc = asr_ys_walk_map(c, root_schema, root, obj);
    }
    c->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}
