/*
 * playbook.c - loads and validates playbooks (see playbook.h and docs/playbooks.md).
 *
 * Place in the pipeline: STRATEGY, at start and on reload. The knowledge base and the planner
 * only ever see a struct asr_playbook that passed every check here, including the action
 * whitelist, so a playbook cannot make asr do anything a plan could not.
 *
 * The YAML is read as the config is, by asr/yamlschema.h: a pre-scan refuses anchors and aliases,
 * more than one document, nesting deeper than PB_MAX_DEPTH and more than PB_MAX_NODES nodes; then
 * the node tree is walked with this file's schema tables {key, handler, required, offset, arg,
 * min, cap}. A step's keys other than `action` become a JSON object that asr_action_check()
 * validates, exactly as it validates a plan's steps.
 *
 * Every error is one line "NAME:LINE: KEY.PATH: REASON" (values are shown escaped and cut, so
 * the message never spans lines whatever the input holds).
 */
#include "strategy/playbook.h"

#include "asr/buf.h"
#include "asr/yamlschema.h"
#include "execute/actions.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#define PB_TITLE_CAP 200   /* bytes of a title */
#define PB_MATCH_CAP 4096  /* bytes of match.template, match.text and the body checks */
#define PB_PATH_CAP 2048   /* bytes of the verify request path */
#define PB_HEADER_CAP 4096 /* bytes of one header value */
#define PB_BODY_CAP (64 * 1024)
#define PB_ARG_KEY_CAP 64 /* bytes of an argument name */
#define PB_MAX_TIMEOUT 600000
#define PB_MAX_VERSION 1000000

/* ---------------------------------------------------------------------------------------------
 * Messages
 */

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

/* ---------------------------------------------------------------------------------------------
 * Nodes and string checks
 */

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
    if (s[0] != '/' || strlen(s) > PB_PATH_CAP)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return false;
    return true;
}

static bool is_playbook_id(const char *s)
{
    return is_id(s, false);
}

static const struct asr_ys_strcheck chk_id = {is_playbook_id,
                                              "an identifier ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"};
static const struct asr_ys_strcheck chk_service = {is_service_name,
                                                   "a service name ([a-z0-9][a-z0-9_-]{0,62})"};
static const struct asr_ys_strcheck chk_req_path = {
    is_request_path, "a request path starting with '/' (printable ASCII, no spaces)"};

/* ---------------------------------------------------------------------------------------------
 * Handlers
 */

/* A string of 1..f->cap bytes; multi-line text allowed. */
static int set_text(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    const char *s;
    int rc = asr_ys_want_scalar(c, n, "text", &s);
    if (rc != 0)
        return rc;
    if (s[0] == '\0')
        return asr_ys_fail(c, asr_ys_line(n), "expected text, got an empty string");
    if (n->data.scalar.length > f->cap)
        return asr_ys_fail(c, asr_ys_line(n), "%zu bytes is more than the cap of %zu bytes",
                           n->data.scalar.length, f->cap);
    return asr_ys_store_str(c, ASR_YS_AT(obj, f, char *), s);
}

/* One line of 1..f->cap bytes without control characters. */
static int set_line(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    char what[64];
    snprintf(what, sizeof(what), "one line of at most %zu bytes", f->cap);
    const char *s;
    int rc = asr_ys_want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    if (s[0] == '\0' || n->data.scalar.length > f->cap || !is_one_line(s, false))
        return asr_ys_fail_type(c, n, what);
    return asr_ys_store_str(c, ASR_YS_AT(obj, f, char *), s);
}

/* Sets the id and remembers its line for asr_playbook_load_dir()'s duplicate-id message. */
static int set_id(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    ((struct asr_playbook *)obj)->id_line = asr_ys_line(n);
    return asr_ys_set_str(c, f, n, obj);
}

/* One signature id, or a list of 1..ASR_PLAYBOOK_MAX_SIGNATURES of them. */
static int set_signature(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    static const char what[] = "a signature id ([A-Za-z0-9_][A-Za-z0-9_.:-]{0,127})";
    struct asr_playbook *pb = obj;
    (void)f;
    size_t count = 1;
    if (n->type == YAML_SEQUENCE_NODE) {
        count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
        if (count == 0 || count > ASR_PLAYBOOK_MAX_SIGNATURES)
            return asr_ys_fail(c, asr_ys_line(n), "expected 1 to %d signature ids, got %zu",
                               ASR_PLAYBOOK_MAX_SIGNATURES, count);
    } else if (n->type != YAML_SCALAR_NODE) {
        return asr_ys_fail_type(c, n, "a signature id or a list of them");
    }
    if ((pb->signatures = calloc(count, sizeof(char *))) == NULL)
        return asr_ys_oom(c);
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = n;
        size_t save = c->plen;
        int rc;
        if (n->type == YAML_SEQUENCE_NODE) {
            save = asr_ys_push(c, "[%zu]", i);
            if ((rc = asr_ys_get_node(c, n->data.sequence.items.start[i], asr_ys_line(n), &item)) !=
                0)
                return rc;
        }
        const char *s;
        if ((rc = asr_ys_want_scalar(c, item, what, &s)) != 0)
            return rc;
        if (!is_id(s, true))
            return asr_ys_fail_type(c, item, what);
        if ((pb->signatures[i] = strdup(s)) == NULL)
            return asr_ys_oom(c);
        pb->nsignatures++;
        asr_ys_pop(c, save);
    }
    return 0;
}

static int match_done(struct asr_ys *c, yaml_node_t *map, void *obj)
{
    const struct asr_playbook *pb = obj;
    if (pb->nsignatures == 0 && pb->template == NULL && pb->text == NULL)
        return asr_ys_fail(c, asr_ys_line(map),
                           "expected at least one of signature, template, text");
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Steps: YAML arguments -> JSON -> the whitelist's validator
 */

/* The YAML value n as JSON: scalars are strings (a plain `3000` is the text "3000": the actions
 * take text, and YAML's guessing of types would turn a version or a zip code into a number),
 * YAML's null is null, lists are arrays and mappings objects with argument-name keys. */
static int to_json(struct asr_ys *c, yaml_node_t *n, json_t **out)
{
    *out = NULL;
    if (n->type == YAML_SCALAR_NODE) {
        if (asr_ys_is_null(n)) {
            *out = json_null();
            return 0;
        }
        if (memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL)
            return asr_ys_fail(c, asr_ys_line(n), "expected text, got a value with a NUL byte");
        *out = json_stringn((const char *)n->data.scalar.value, n->data.scalar.length);
        return *out != NULL ? 0 : asr_ys_fail(c, asr_ys_line(n), "expected UTF-8 text");
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        if (a == NULL)
            return asr_ys_oom(c);
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            size_t save = asr_ys_push(c, "[%zu]", (size_t)(it - n->data.sequence.items.start));
            yaml_node_t *item;
            json_t *v;
            int rc = asr_ys_get_node(c, *it, asr_ys_line(n), &item);
            if (rc == 0)
                rc = to_json(c, item, &v);
            if (rc == 0 && json_array_append_new(a, v) != 0)
                rc = asr_ys_oom(c);
            if (rc != 0) {
                json_decref(a);
                return rc;
            }
            asr_ys_pop(c, save);
        }
        *out = a;
        return 0;
    }
    json_t *o = json_object();
    if (o == NULL)
        return asr_ys_oom(c);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k, *v;
        json_t *jv;
        int rc;
        if ((rc = asr_ys_get_node(c, p->key, asr_ys_line(n), &k)) != 0 ||
            (rc = asr_ys_get_node(c, p->value, asr_ys_line(n), &v)) != 0)
            goto bad;
        if (k->type != YAML_SCALAR_NODE) {
            rc = asr_ys_fail_type(c, k, "a plain key");
            goto bad;
        }
        const char *key = (const char *)k->data.scalar.value;
        size_t save = asr_ys_push_key(c, key, k->data.scalar.length);
        if (!is_arg_key(key, k->data.scalar.length)) {
            rc = asr_ys_fail(c, asr_ys_line(k),
                             "expected an argument name matching "
                             "[A-Za-z_][A-Za-z0-9_.-]{0,63}");
            goto bad;
        }
        if (json_object_get(o, key) != NULL) {
            rc = asr_ys_fail(c, asr_ys_line(k), "duplicate key");
            goto bad;
        }
        if ((rc = to_json(c, v, &jv)) != 0)
            goto bad;
        if (json_object_set_new(o, key, jv) != 0) {
            rc = asr_ys_oom(c);
            goto bad;
        }
        asr_ys_pop(c, save);
        continue;
    bad:
        json_decref(o);
        return rc;
    }
    *out = o;
    return 0;
}

/* The value of key in the mapping n, or NULL. */
static yaml_node_t *map_get(struct asr_ys *c, yaml_node_t *n, const char *key, size_t klen)
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
static int blame_line(struct asr_ys *c, yaml_node_t *step, const char *action, const char *msg,
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
        line = asr_ys_line(v);
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
            line = asr_ys_line(e);
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
static int parse_step(struct asr_ys *c, yaml_node_t *n, struct asr_playbook_step *step)
{
    if (n->type != YAML_MAPPING_NODE)
        return asr_ys_fail_type(c, n, "a mapping {action: NAME, ...arguments}");
    step->line = asr_ys_line(n);
    if ((step->args = json_object()) == NULL)
        return asr_ys_oom(c);
    int action_line = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k, *v;
        int rc;
        if ((rc = asr_ys_get_node(c, p->key, asr_ys_line(n), &k)) != 0 ||
            (rc = asr_ys_get_node(c, p->value, asr_ys_line(n), &v)) != 0)
            return rc;
        if (k->type != YAML_SCALAR_NODE)
            return asr_ys_fail_type(c, k, "a plain key");
        const char *key = (const char *)k->data.scalar.value;
        size_t klen = k->data.scalar.length;
        size_t save = asr_ys_push_key(c, key, klen);
        if (klen == 6 && memcmp(key, "action", 6) == 0) {
            static const char what[] = "an action name ([a-z][a-z0-9_]{0,63})";
            const char *s;
            if (action_line != 0)
                return asr_ys_fail(c, asr_ys_line(k), "duplicate key (first at line %d)",
                                   action_line);
            action_line = asr_ys_line(k);
            if ((rc = asr_ys_want_scalar(c, v, what, &s)) != 0)
                return rc;
            if (!is_action_name(s))
                return asr_ys_fail_type(c, v, what);
            if ((rc = asr_ys_store_str(c, &step->action, s)) != 0)
                return rc;
        } else {
            json_t *jv;
            if (!is_arg_key(key, klen))
                return asr_ys_fail(c, asr_ys_line(k),
                                   "expected an argument name matching "
                                   "[A-Za-z_][A-Za-z0-9_.-]{0,63}");
            if (json_object_get(step->args, key) != NULL)
                return asr_ys_fail(c, asr_ys_line(k), "duplicate key");
            if ((rc = to_json(c, v, &jv)) != 0)
                return rc;
            if (json_object_set_new(step->args, key, jv) != 0)
                return asr_ys_oom(c);
        }
        asr_ys_pop(c, save);
    }
    if (step->action == NULL)
        return asr_ys_fail(c, asr_ys_line(n), "missing required key 'action'");
    struct asr_err e2 = {0};
    if (asr_action_check(step->action, step->args, NULL, &e2) != 0) {
        char msg[sizeof(e2.msg)];
        int line = asr_action_find(step->action) == NULL
                       ? action_line
                       : blame_line(c, n, step->action, e2.msg, asr_ys_line(n));
        return asr_ys_fail(c, line, "%s", one_line(e2.msg, msg, sizeof(msg)));
    }
    return 0;
}

static int set_steps(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    struct asr_playbook *pb = obj;
    (void)f;
    if (n->type != YAML_SEQUENCE_NODE)
        return asr_ys_fail_type(c, n, "a list of steps");
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0 || count > ASR_PLAYBOOK_MAX_STEPS)
        return asr_ys_fail(c, asr_ys_line(n), "expected 1 to %d steps, got %zu",
                           ASR_PLAYBOOK_MAX_STEPS, count);
    if ((pb->steps = calloc(count, sizeof(*pb->steps))) == NULL)
        return asr_ys_oom(c);
    pb->nsteps = count; /* zeroed steps are safe to free if one fails below */
    for (size_t i = 0; i < count; i++) {
        size_t save = asr_ys_push(c, "[%zu]", i);
        yaml_node_t *item;
        int rc = asr_ys_get_node(c, n->data.sequence.items.start[i], asr_ys_line(n), &item);
        if (rc == 0)
            rc = parse_step(c, item, &pb->steps[i]);
        if (rc != 0)
            return rc;
        asr_ys_pop(c, save);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * verify
 */

static const char *const methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                      "PATCH", "DELETE", "OPTIONS", NULL};

/* A body may be empty (""), unlike the other strings. */
static int set_body(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    const char *s;
    int rc = asr_ys_want_scalar(c, n, "a string", &s);
    if (rc != 0)
        return rc;
    if (n->data.scalar.length > PB_BODY_CAP)
        return asr_ys_fail(c, asr_ys_line(n), "%zu bytes is more than the cap of %d bytes",
                           n->data.scalar.length, PB_BODY_CAP);
    *(int *)c->user = asr_ys_line(n); /* asr_playbook_parse()'s body_line */
    return asr_ys_store_str(c, ASR_YS_AT(obj, f, char *), s);
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

static int set_headers(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    struct asr_playbook_verify *v = obj;
    (void)f;
    if (n->type != YAML_MAPPING_NODE)
        return asr_ys_fail_type(c, n, "a mapping of header names to values");
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (count > ASR_PLAYBOOK_MAX_HEADERS)
        return asr_ys_fail(c, asr_ys_line(n), "expected at most %d headers, got %zu",
                           ASR_PLAYBOOK_MAX_HEADERS, count);
    if (count == 0)
        return 0;
    if ((v->headers = calloc(count, sizeof(*v->headers))) == NULL)
        return asr_ys_oom(c);
    for (size_t i = 0; i < count; i++) {
        yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
        yaml_node_t *k, *val;
        const char *name, *value;
        int rc;
        if ((rc = asr_ys_get_node(c, p->key, asr_ys_line(n), &k)) != 0 ||
            (rc = asr_ys_get_node(c, p->value, asr_ys_line(n), &val)) != 0)
            return rc;
        if (k->type != YAML_SCALAR_NODE)
            return asr_ys_fail_type(c, k, "a header name");
        size_t save = asr_ys_push_key(c, (const char *)k->data.scalar.value, k->data.scalar.length);
        if ((rc = asr_ys_want_scalar(c, k, "a header name", &name)) != 0)
            return rc;
        if (!is_token(name))
            return asr_ys_fail(c, asr_ys_line(k), "expected a header name (an HTTP token)");
        if (is_probe_header(name))
            return asr_ys_fail(c, asr_ys_line(k), "set by asr's probe, not by a playbook");
        for (size_t j = 0; j < v->nheaders; j++)
            if (strcasecmp(v->headers[j].name, name) == 0)
                return asr_ys_fail(c, asr_ys_line(k), "duplicate header");
        if ((rc = asr_ys_want_scalar(c, val, "a header value", &value)) != 0)
            return rc;
        if (val->data.scalar.length > PB_HEADER_CAP || !is_one_line(value, true))
            return asr_ys_fail_type(c, val, "one line of at most 4096 bytes");
        if ((v->headers[i].name = strdup(name)) == NULL ||
            (v->headers[i].value = strdup(value)) == NULL) {
            v->nheaders = i + 1; /* free the half-set pair too */
            return asr_ys_oom(c);
        }
        v->nheaders = i + 1;
        asr_ys_pop(c, save);
    }
    return 0;
}

static int request_done(struct asr_ys *c, yaml_node_t *map, void *obj)
{
    const struct asr_playbook_verify *v = obj;
    (void)map;
    if (v->body != NULL && (strcmp(v->method, "GET") == 0 || strcmp(v->method, "HEAD") == 0)) {
        size_t save = asr_ys_push(c, ".body");
        int rc = asr_ys_fail(c, *(int *)c->user, "a %s request carries no body", v->method);
        asr_ys_pop(c, save);
        return rc;
    }
    return 0;
}

/* A table row. The rows of match, request and expect fill the same struct as their parent
 * table, so they are written out with offset 0. */
#define F(k, set, req, type, member, cap, arg, min)                                                \
    {                                                                                              \
        k, set, req, offsetof(type, member), arg, min, cap                                         \
    }

static const struct asr_ys_field request_fields[] = {
    F("method", asr_ys_set_enum, true, struct asr_playbook_verify, method, 0, methods, 0),
    F("path", asr_ys_set_str, true, struct asr_playbook_verify, path, 0, &chk_req_path, 0),
    F("headers", set_headers, false, struct asr_playbook_verify, headers, 0, NULL, 0),
    F("body", set_body, false, struct asr_playbook_verify, body, 0, NULL, 0),
};
static const struct asr_ys_schema request_schema = {request_fields, ASR_YS_NFIELDS(request_fields),
                                                    request_done};

static const struct asr_ys_field expect_fields[] = {
    F("status", asr_ys_set_int, true, struct asr_playbook_verify, status, 599, NULL, 100),
    F("body_contains", set_text, false, struct asr_playbook_verify, body_contains, PB_MATCH_CAP,
      NULL, 0),
    F("body_not_contains", set_text, false, struct asr_playbook_verify, body_not_contains,
      PB_MATCH_CAP, NULL, 0),
};
static const struct asr_ys_schema expect_schema = {expect_fields, ASR_YS_NFIELDS(expect_fields),
                                                   NULL};

static const struct asr_ys_field verify_fields[] = {
    {"request", asr_ys_set_map, true, 0, &request_schema, 0, 0},
    {"expect", asr_ys_set_map, true, 0, &expect_schema, 0, 0},
    F("timeout_ms", asr_ys_set_int, false, struct asr_playbook_verify, timeout_ms, PB_MAX_TIMEOUT,
      NULL, 1),
};
static const struct asr_ys_schema verify_schema = {verify_fields, ASR_YS_NFIELDS(verify_fields),
                                                   NULL};

static const struct asr_ys_field match_fields[] = {
    F("signature", set_signature, false, struct asr_playbook, signatures, 0, NULL, 0),
    F("template", set_line, false, struct asr_playbook, template, PB_MATCH_CAP, NULL, 0),
    F("text", set_text, false, struct asr_playbook, text, PB_MATCH_CAP, NULL, 0),
    F("service", asr_ys_set_str, false, struct asr_playbook, service, 0, &chk_service, 0),
};
static const struct asr_ys_schema match_schema = {match_fields, ASR_YS_NFIELDS(match_fields),
                                                  match_done};

static const struct asr_ys_field root_fields[] = {
    F("id", set_id, true, struct asr_playbook, id, 0, &chk_id, 0),
    F("title", set_line, true, struct asr_playbook, title, PB_TITLE_CAP, NULL, 0),
    F("version", asr_ys_set_int, false, struct asr_playbook, version, PB_MAX_VERSION, NULL, 1),
    {"match", asr_ys_set_map, true, 0, &match_schema, 0, 0},
    F("symptoms", set_text, true, struct asr_playbook, symptoms, ASR_PLAYBOOK_MAX_SYMPTOMS, NULL,
      0),
    F("steps", set_steps, true, struct asr_playbook, steps, 0, NULL, 0),
    F("verify", asr_ys_set_map, true, struct asr_playbook, verify, 0, &verify_schema, 0),
};
static const struct asr_ys_schema root_schema = {root_fields, ASR_YS_NFIELDS(root_fields), NULL};

_Static_assert(ASR_YS_NFIELDS(root_fields) <= ASR_YS_MAX_FIELDS, "walk_map's seen[] is too small");

/* ---------------------------------------------------------------------------------------------
 * Parsing
 */

int asr_playbook_parse(const char *name, const char *text, size_t len, struct asr_playbook **out,
                       struct asr_err *err)
{
    int body_line = 0; /* line of verify.request.body, for request_done() */
    struct asr_ys c = {.name = name != NULL ? name : "<playbook>",
                       .text = text != NULL ? text : "",
                       .len = text != NULL ? len : 0,
                       .err = err,
                       .one_doc = "a playbook",
                       .empty = "empty playbook (expected a mapping with id, title, match, "
                                "symptoms, steps and verify)",
                       .max_depth = PB_MAX_DEPTH,
                       .max_nodes = PB_MAX_NODES,
                       .user = &body_line};
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
        return asr_ys_oom(&c);
    pb->verify.timeout_ms = ASR_PLAYBOOK_DEFAULT_TIMEOUT_MS;
    if ((pb->file = strdup(c.name)) == NULL)
        rc = asr_ys_oom(&c);
    else
        rc = asr_ys_parse(&c, &root_schema, pb);
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
