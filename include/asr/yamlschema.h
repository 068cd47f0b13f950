/*
 * yamlschema.h - strict YAML for asr's own files, walked with schema tables (prefix asr_ys_).
 *
 * Place in the pipeline: under the loaders. config.c and strategy/playbook.c keep only their
 * tables, their own handlers and their done-callbacks; everything else about reading YAML that
 * asr does not trust is here, once:
 *  1. A pre-scan over libyaml's event stream refuses anchors and aliases (a few lines of them can
 *     expand into billions of nodes), more than one document, nesting deeper than max_depth and
 *     more than max_nodes nodes. Syntax errors surface here with libyaml's text and line.
 *  2. yaml_parser_load() builds the node tree, so every node knows its line.
 *  3. The tree is walked with schema tables in the manner of Fluent Bit's config maps: a mapping
 *     is a table of {key, handler, required, offset, arg}. asr_ys_walk_map() refuses unknown and
 *     duplicate keys and reports missing required keys; a handler converts and checks one value
 *     and stores it at `offset` in the struct being filled; an optional `done` callback per table
 *     does the checks that span several keys.
 *
 * The first problem found is recorded in the caller's struct asr_err as one line
 * "NAME:LINE: KEY: REASON", KEY being the dotted path such as services[0].health.rise; values are
 * shown escaped and cut, so the message never spans lines whatever the input holds.
 */
#ifndef ASR_YAMLSCHEMA_H
#define ASR_YAMLSCHEMA_H

#include "asr/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#define ASR_YS_SHOW_CAP 168  /* room for an escaped 40-byte excerpt of a value (see asr_ys_show) */
#define ASR_YS_MAX_FIELDS 32 /* most keys one schema table may have (size of the walk's seen[]) */

struct asr_ys;
struct asr_ys_field;
typedef int (*asr_ys_set_cb)(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n,
                             void *obj);

/* One key of a mapping: its handler stores the converted value at obj + off. */
struct asr_ys_field {
    const char *key;
    asr_ys_set_cb set;
    bool required;
    size_t off;
    const void *arg; /* handler-specific: enum names, sub-schema, string check, ... */
    int min;         /* least accepted integer (or duration) */
    size_t cap;      /* most bytes of a string, or the largest integer (0: INT_MAX) */
};

/* A mapping: its keys and an optional check run after all keys are set. */
struct asr_ys_schema {
    const struct asr_ys_field *fields;
    size_t nfields;
    int (*done)(struct asr_ys *c, yaml_node_t *map, void *obj);
};

/* A string check for asr_ys_set_str and list handlers; `expect` completes "expected ...". */
struct asr_ys_strcheck {
    bool (*ok)(const char *s);
    const char *expect;
};

/*
 * The state of one parse. The caller fills the fields up to `user` (and may leave user NULL);
 * asr_ys_parse() sets the rest. Messages go to err, which may be NULL.
 */
struct asr_ys {
    const char *name;          /* file name for messages */
    const char *text;          /* the input, to turn reader-error offsets into lines */
    size_t len;                /* bytes of text */
    struct asr_err *err;       /* where the first problem is recorded */
    const char *one_doc;       /* "a config": "more than one document (a config is one document)" */
    const char *empty;         /* the message for an empty document */
    int max_depth;             /* deepest nesting of mappings and lists */
    int max_nodes;             /* most nodes in the document */
    void *user;                /* the loader's own state, for its handlers */
    yaml_document_t *doc;      /* the document being walked */
    size_t visits, max_visits; /* node visits; a tree walk visits each node at most once */
    size_t plen;               /* length of path */
    char path[256];            /* dotted path of the key being handled, e.g. services[0].build */
};

#define ASR_YS_AT(obj, f, type) ((type *)(void *)((char *)(obj) + (f)->off))
#define ASR_YS_NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Pre-scans c->text, loads it and fills obj from its root mapping by the schema root. Returns 0,
 * or ASR_ECONFIG (ASR_ENOMEM without memory) with the message in c->err; obj may then be half
 * filled, and the caller frees it as it would a full one.
 */
int asr_ys_parse(struct asr_ys *c, const struct asr_ys_schema *root, void *obj);

/*
 * Fills obj from the mapping n according to s: every key must be in the table and appear once;
 * each value goes through its field's handler; then required keys are checked and s->done runs.
 */
int asr_ys_walk_map(struct asr_ys *c, const struct asr_ys_schema *s, yaml_node_t *n, void *obj);

/* Handlers for any table. */
int asr_ys_set_map(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj);
int asr_ys_set_str(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj);
int asr_ys_set_enum(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj);
int asr_ys_set_int(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj);

/* Messages: each records one line in c->err and returns its code (ASR_ECONFIG, ASR_ENOMEM). */
__attribute__((format(printf, 4, 5))) int asr_ys_fail_key(struct asr_ys *c, int line,
                                                          const char *key, const char *fmt, ...);
__attribute__((format(printf, 3, 4))) int asr_ys_fail(struct asr_ys *c, int line, const char *fmt,
                                                      ...);
int asr_ys_fail_type(struct asr_ys *c, const yaml_node_t *n, const char *expected);
int asr_ys_oom(struct asr_ys *c);

/* The key path: push returns the old length for pop; overlong paths are cut. */
__attribute__((format(printf, 2, 3))) size_t asr_ys_push(struct asr_ys *c, const char *fmt, ...);
size_t asr_ys_push_key(struct asr_ys *c, const char *key, size_t len);
void asr_ys_pop(struct asr_ys *c, size_t len);

/* Nodes and values. */
int asr_ys_get_node(struct asr_ys *c, int index, int line, yaml_node_t **out);
int asr_ys_want_scalar(struct asr_ys *c, yaml_node_t *n, const char *what, const char **out);
int asr_ys_store_str(struct asr_ys *c, char **dst, const char *s);
bool asr_ys_is_null(const yaml_node_t *n);
const char *asr_ys_show(const char *s, size_t len, char *buf, size_t cap);

/* The 1-based line of a node. */
static inline int asr_ys_line(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

#endif
