/*
 * config.c - loads and validates the asr YAML configuration (see include/asr/config.h and
 * docs/config.md).
 *
 * Place in the pipeline: before all of it. `asr run`, `asr config check` and SIGHUP reloads call
 * asr_config_load(); every stage then reads the struct asr_config it returns, never the YAML.
 *
 * The YAML machinery is asr/yamlschema.h's: a pre-scan refuses anchors and aliases (a few lines of
 * them can expand into billions of nodes, and an alias can refer to its own container), nesting
 * deeper than CFG_MAX_DEPTH, more than CFG_MAX_NODES nodes and more than one document; the node
 * tree is then walked with the schema tables below, in the manner of Fluent Bit's config maps.
 * This file keeps the tables, the handlers only a config needs (paths, commands, listen
 * addresses, durations, lists) and the `done` callbacks that check what spans several keys
 * (backoff limits, duplicate services, commands).
 *
 * The walk recurses only into mappings that the tables declare, so its depth is bounded by the
 * schema (five levels), not by the input. The first problem found is reported as one line
 * "FILE:LINE: KEY: REASON", KEY being the dotted path such as services[0].health.rise.
 */
#include "asr/config.h"
#include "asr/buf.h"
#include "asr/error.h"
#include "asr/timeutil.h"
#include "asr/yamlschema.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#define CFG_PATH_CAP 808     /* room for an escaped 200-byte excerpt of a path */

enum cmd_kind { CMD_BUILD, CMD_TEST, CMD_START, CMD_COUNT };
static const char *const cmd_keys[CMD_COUNT] = {"build", "test", "start"};

/* What the handlers keep besides the shared parse state (struct asr_ys's user pointer). */
struct load {
    char *dir;                   /* absolute base directory for relative paths (owned by cfg) */
    bool check;                  /* filesystem and PATH checks enabled */
    struct asr_config *cfg;      /* what is being filled */
    struct asr_service_cfg *svc; /* service being filled */
    int cmd_line[CMD_COUNT];     /* line of argv[0] of build/test/start of that service */
    int name_line, listen_line;  /* lines of its name and listen values */
};

static struct load *own(struct asr_ys *c)
{
    return c->user;
}

/* ---------------------------------------------------------------------------------------------
 * Nodes and small helpers
 */

static void argv_free(asr_argv a)
{
    if (a == NULL)
        return;
    for (char **p = a; *p != NULL; p++)
        free(*p);
    free(a);
}

/* An empty NULL-terminated list, for lists that callers iterate without a NULL check. */
static int empty_list(struct asr_ys *c, asr_argv *dst)
{
    if (*dst == NULL && (*dst = calloc(1, sizeof(char *))) == NULL)
        return asr_ys_oom(c);
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
static char *resolve(struct asr_ys *c, const char *rel)
{
    char *p = join(own(c)->dir, rel);
    if (p != NULL && own(c)->check) {
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

static const struct asr_ys_strcheck chk_service_name = {is_service_name,
                                                        "a name matching [a-z0-9][a-z0-9_-]{0,62}"};
static const struct asr_ys_strcheck chk_signature_id = {
    is_signature_id, "an identifier like FAULT_SQL_TIMEOUT ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"};
static const struct asr_ys_strcheck chk_ident = {is_ident,
                                                 "an identifier matching [A-Za-z_][A-Za-z0-9_]*"};
static const struct asr_ys_strcheck chk_action = {is_action_name,
                                                  "an action name matching [a-z][a-z0-9_]*"};
static const struct asr_ys_strcheck chk_glob = {
    is_repo_glob, "a glob relative to the repo (no leading '/' and no '..' component)"};
static const struct asr_ys_strcheck chk_url = {is_url, "an http:// or https:// URL"};
static const struct asr_ys_strcheck chk_health_path = {
    is_health_path, "a request path starting with '/' and without spaces"};

/* ---------------------------------------------------------------------------------------------
 * Outbound: notify, git push and GitHub (docs/notify.md, docs/patching.md)
 */

/* The host of an http(s) URL into host ("" when there is none). */
static void url_host(const char *url, char *host, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? p + 3 : url;
    size_t n = strcspn(p, "/?#");
    const char *at = memchr(p, '@', n);
    if (at != NULL) {
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    size_t h = p[0] == '[' ? strcspn(p, "]") + 1 : strcspn(p, ":/?#");
    if (h > n)
        h = n;
    snprintf(host, cap, "%.*s", (int)h, p);
}

static bool is_loopback_host(const char *h)
{
    return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 || strcmp(h, "[::1]") == 0;
}

/* An http:// or https:// URL with no credentials in it (a token goes in token_env). */
static bool is_url_nocred(const char *s)
{
    if (!is_url(s))
        return false;
    const char *p = strstr(s, "://") + 3;
    size_t n = strcspn(p, "/?#");
    for (size_t i = 0; i < n; i++)
        if (p[i] == '@' || (unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
            return false;
    for (const char *q = s; *q != '\0'; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return false;
    return true;
}

/* One line for a git signature: no control characters and none of "<>", at most 256 bytes. */
static bool is_sig_text(const char *s)
{
    if (strlen(s) > 256)
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
            return false;
    return true;
}

static bool is_sig_email(const char *s)
{
    return is_sig_text(s) && strchr(s, '@') != NULL;
}

/* "owner/name" of a GitHub repository. */
static bool is_github_repo(const char *s)
{
    const char *slash = strchr(s, '/');
    if (slash == NULL || slash == s || slash - s > 39 || strchr(slash + 1, '/') != NULL)
        return false;
    size_t nl = strlen(slash + 1);
    if (nl == 0 || nl > 100 || strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        bool in_name = p > slash;
        if (p == slash)
            continue;
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || (in_name && (*p == '_' || *p == '.'))))
            return false;
    }
    return true;
}

/* A branch name git accepts and a URL needs no escaping for: [A-Za-z0-9._/-], no "..", "//",
 * "@{", leading '-' or '/', trailing '/', '.' or ".lock". */
static bool is_branch(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200 || s[0] == '-' || s[0] == '/' || s[n - 1] == '/' || s[n - 1] == '.' ||
        strstr(s, "..") != NULL || strstr(s, "//") != NULL || strstr(s, "/.") != NULL ||
        (n >= 5 && strcmp(s + n - 5, ".lock") == 0) || s[0] == '.')
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.' || *p == '/'))
            return false;
    return true;
}

static const struct asr_ys_strcheck chk_url_nocred = {
    is_url_nocred, "an http:// or https:// URL without credentials (a token goes in token_env)"};
static const struct asr_ys_strcheck chk_sig_text = {
    is_sig_text, "one line of at most 256 bytes without control characters, '<' or '>'"};
static const struct asr_ys_strcheck chk_sig_email = {
    is_sig_email, "an email address: one line with an '@', without '<' or '>'"};
static const struct asr_ys_strcheck chk_github_repo = {is_github_repo,
                                                       "a GitHub repository as owner/name"};
static const struct asr_ys_strcheck chk_branch = {
    is_branch, "a branch name of letters, digits and . _ / - (like main or release/2)"};

/*
 * Rejects "${...}" in s unless it is ${PORT} and port_ok (only start's argv is expanded, by the
 * slot manager). A "${" without its "}" is an error too, so a typo never reaches a process.
 */
static int check_vars(struct asr_ys *c, const yaml_node_t *n, const char *s, bool port_ok)
{
    char b[ASR_YS_SHOW_CAP];
    for (const char *p = strstr(s, "${"); p != NULL; p = strstr(p, "${")) {
        const char *end = strchr(p + 2, '}');
        if (end == NULL)
            return asr_ys_fail(c, asr_ys_line(n), "unterminated '${' in '%s'",
                               asr_ys_show(s, strlen(s), b, sizeof(b)));
        size_t vlen = (size_t)(end - (p + 2));
        if (!(port_ok && vlen == 4 && memcmp(p + 2, "PORT", 4) == 0)) {
            asr_ys_show(p, (size_t)(end - p) + 1, b, sizeof(b));
            if (port_ok)
                return asr_ys_fail(c, asr_ys_line(n),
                                   "unknown variable '%s' (only ${PORT} is expanded)", b);
            return asr_ys_fail(
                c, asr_ys_line(n),
                "variable '%s' is not expanded here (only ${PORT}, and only in start)", b);
        }
        p = end + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Handlers: one per kind of value
 */

/* A duration string ("250ms", "10s", "10m", "1h", "1d") of at least f->min ms. */
static int set_duration(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    const char *what = f->min > 0 ? "a duration greater than zero like 30s, 10m or 1h"
                                  : "a duration like 500ms, 30s, 10m, 1h or 1d";
    const char *s;
    int64_t ms;
    int rc = asr_ys_want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    if (asr_duration_parse(s, &ms) != 0 || ms < f->min)
        return asr_ys_fail_type(c, n, what);
    *ASR_YS_AT(obj, f, int64_t) = ms;
    return 0;
}

/* A path, stored absolute (relative ones are taken from the config's directory). */
static int set_path(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    const char *s;
    int rc = asr_ys_want_scalar(c, n, "a path", &s);
    if (rc != 0)
        return rc;
    if (s[0] == '\0')
        return asr_ys_fail_type(c, n, "a non-empty path");
    char *p = resolve(c, s);
    if (p == NULL)
        return asr_ys_oom(c);
    char **dst = ASR_YS_AT(obj, f, char *);
    free(*dst);
    *dst = p;
    return 0;
}

/* The service's repo: a path that must be an existing directory when checks are on. */
static int set_repo(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    int rc = set_path(c, f, n, obj);
    if (rc != 0 || !own(c)->check)
        return rc;
    const char *p = *ASR_YS_AT(obj, f, char *);
    struct stat st;
    char b[CFG_PATH_CAP];
    if (stat(p, &st) != 0)
        return asr_ys_fail(c, asr_ys_line(n), "directory '%s' does not exist",
                           asr_ys_show(p, strlen(p), b, sizeof(b)));
    if (!S_ISDIR(st.st_mode))
        return asr_ys_fail(c, asr_ys_line(n), "'%s' is not a directory",
                           asr_ys_show(p, strlen(p), b, sizeof(b)));
    return 0;
}

/*
 * Checks that n is a list of at most CFG_MAX_LIST items and allocates the NULL-terminated array
 * for it into *dst (so a later error frees what was filled).
 */
static int start_list(struct asr_ys *c, yaml_node_t *n, const char *what, asr_argv *dst,
                      size_t *count)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return asr_ys_fail_type(c, n, what);
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt > CFG_MAX_LIST)
        return asr_ys_fail(c, asr_ys_line(n), "more than %d elements", CFG_MAX_LIST);
    argv_free(*dst);
    if ((*dst = calloc(cnt + 1, sizeof(char *))) == NULL)
        return asr_ys_oom(c);
    *count = cnt;
    return 0;
}

/* A command: a non-empty list of scalars; f->arg points at its enum cmd_kind. */
static int set_argv(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    enum cmd_kind which = *(const enum cmd_kind *)f->arg;
    asr_argv *dst = ASR_YS_AT(obj, f, asr_argv);
    size_t cnt;
    int rc = start_list(
        c, n, "a list like [make, test] (commands are argv lists, not shell strings)", dst, &cnt);
    if (rc != 0)
        return rc;
    if (cnt == 0)
        return asr_ys_fail(c, asr_ys_line(n), "empty command (expected a list like [make, test])");
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *e;
        const char *s;
        if ((rc = asr_ys_get_node(c, n->data.sequence.items.start[i], asr_ys_line(n), &e)) != 0)
            return rc;
        size_t save = asr_ys_push(c, "[%zu]", i);
        if ((rc = asr_ys_want_scalar(c, e, "a string", &s)) != 0)
            return rc;
        if (i == 0 && s[0] == '\0')
            return asr_ys_fail(c, asr_ys_line(e), "empty command name");
        if ((rc = check_vars(c, e, s, which == CMD_START)) != 0)
            return rc;
        if (((*dst)[i] = strdup(s)) == NULL)
            return asr_ys_oom(c);
        if (i == 0)
            own(c)->cmd_line[which] = asr_ys_line(e);
        asr_ys_pop(c, save);
    }
    return 0;
}

/* A list of non-empty strings, each passing the strcheck in f->arg; [] is allowed. */
static int set_strlist(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    const struct asr_ys_strcheck *chk = f->arg;
    asr_argv *dst = ASR_YS_AT(obj, f, asr_argv);
    size_t cnt;
    int rc = start_list(c, n, "a list of strings", dst, &cnt);
    for (size_t i = 0; rc == 0 && i < cnt; i++) {
        yaml_node_t *e;
        const char *s;
        if ((rc = asr_ys_get_node(c, n->data.sequence.items.start[i], asr_ys_line(n), &e)) != 0)
            return rc;
        size_t save = asr_ys_push(c, "[%zu]", i);
        if ((rc = asr_ys_want_scalar(c, e, chk->expect, &s)) != 0)
            return rc;
        if (s[0] == '\0' || !chk->ok(s))
            return asr_ys_fail_type(c, e, chk->expect);
        if (((*dst)[i] = strdup(s)) == NULL)
            return asr_ys_oom(c);
        asr_ys_pop(c, save);
    }
    return rc;
}

/* env: a list of "NAME=value", NAME an identifier, each NAME once, no ${...} in values. */
static int set_env(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    asr_argv *dst = ASR_YS_AT(obj, f, asr_argv);
    size_t cnt;
    int rc = start_list(c, n, "a list of NAME=value strings", dst, &cnt);
    for (size_t i = 0; rc == 0 && i < cnt; i++) {
        yaml_node_t *e;
        const char *s;
        char b[ASR_YS_SHOW_CAP];
        if ((rc = asr_ys_get_node(c, n->data.sequence.items.start[i], asr_ys_line(n), &e)) != 0)
            return rc;
        size_t save = asr_ys_push(c, "[%zu]", i);
        if ((rc = asr_ys_want_scalar(c, e, "a NAME=value string", &s)) != 0)
            return rc;
        const char *eq = strchr(s, '=');
        if (eq == NULL || !is_ident_n(s, (size_t)(eq - s)))
            return asr_ys_fail_type(c, e, "NAME=value with NAME matching [A-Za-z_][A-Za-z0-9_]*");
        size_t nlen = (size_t)(eq - s) + 1; /* with the '=' */
        for (size_t j = 0; j < i; j++)
            if (strncmp((*dst)[j], s, nlen) == 0)
                return asr_ys_fail(c, asr_ys_line(e), "duplicate variable '%s'",
                                   asr_ys_show(s, nlen - 1, b, sizeof(b)));
        if ((rc = check_vars(c, e, eq + 1, false)) != 0)
            return rc;
        if (((*dst)[i] = strdup(s)) == NULL)
            return asr_ys_oom(c);
        asr_ys_pop(c, save);
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

/* Reads a HOST:PORT scalar into *host_out (stored) and *port. */
static int read_listen(struct asr_ys *c, yaml_node_t *n, char **host_out, int *port)
{
    char host[INET6_ADDRSTRLEN], b[ASR_YS_SHOW_CAP];
    const char *s;
    if (n->type == YAML_SEQUENCE_NODE)
        return asr_ys_fail(c, asr_ys_line(n),
                           "expected HOST:PORT, got a list (quote IPv6 addresses: "
                           "\"[::1]:8080\")");
    int rc = asr_ys_want_scalar(c, n, "HOST:PORT like 127.0.0.1:8080", &s);
    if (rc != 0)
        return rc;
    const char *why = parse_listen(s, host, sizeof(host), port);
    if (why != NULL)
        return asr_ys_fail(c, asr_ys_line(n), "%s, got '%s'", why,
                           asr_ys_show(s, strlen(s), b, sizeof(b)));
    return asr_ys_store_str(c, host_out, host);
}

static int set_listen(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    struct asr_service_cfg *svc = obj;
    (void)f;
    own(c)->listen_line = asr_ys_line(n);
    return read_listen(c, n, &svc->listen_host, &svc->listen_port);
}

static int set_api_listen(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    struct asr_api_cfg *api = obj;
    (void)f;
    api->line = asr_ys_line(n);
    return read_listen(c, n, &api->listen_host, &api->listen_port);
}

/* logs: [stdout, stderr] - which output streams of the service are watched. */
static int set_logs(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    struct asr_service_cfg *svc = obj;
    (void)f;
    if (n->type != YAML_SEQUENCE_NODE)
        return asr_ys_fail_type(c, n, "a list of stdout, stderr");
    svc->log_stdout = svc->log_stderr = false;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e;
        const char *s;
        int rc;
        if ((rc = asr_ys_get_node(c, *it, asr_ys_line(n), &e)) != 0)
            return rc;
        size_t save = asr_ys_push(c, "[%zu]", (size_t)(it - n->data.sequence.items.start));
        if ((rc = asr_ys_want_scalar(c, e, "stdout or stderr", &s)) != 0)
            return rc;
        if (strcmp(s, "stdout") == 0)
            svc->log_stdout = true;
        else if (strcmp(s, "stderr") == 0)
            svc->log_stderr = true;
        else
            return asr_ys_fail_type(c, e, "stdout or stderr");
        asr_ys_pop(c, save);
    }
    return 0;
}

/* log_files: [PATH, ...] - files followed like `tail -F`; relative paths are taken from the
 * config's directory. A file need not exist yet: the service may create it later. */
static int set_log_files(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    struct asr_service_cfg *svc = obj;
    size_t cnt;
    (void)f;
    int rc = start_list(c, n, "a list of file paths", &svc->log_files, &cnt);
    for (size_t i = 0; rc == 0 && i < cnt; i++) {
        yaml_node_t *e;
        const char *s;
        if ((rc = asr_ys_get_node(c, n->data.sequence.items.start[i], asr_ys_line(n), &e)) != 0)
            return rc;
        size_t save = asr_ys_push(c, "[%zu]", i);
        if ((rc = asr_ys_want_scalar(c, e, "a file path", &s)) != 0)
            return rc;
        if (s[0] == '\0')
            return asr_ys_fail_type(c, e, "a non-empty file path");
        if ((svc->log_files[i] = resolve(c, s)) == NULL)
            return asr_ys_oom(c);
        asr_ys_pop(c, save);
    }
    return rc;
}

/* true or false (YAML's other spellings of booleans are refused: one way to write it). */
static int set_bool(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    const char *s;
    int rc = asr_ys_want_scalar(c, n, "true or false", &s);
    if (rc != 0)
        return rc;
    if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0)
        return asr_ys_fail_type(c, n, "true or false");
    *ASR_YS_AT(obj, f, bool) = strcmp(s, "true") == 0;
    return 0;
}

/*
 * git.remote: a remote of the service's repository by name ("origin"), an https://, http:// or
 * file:// URL without credentials, or a path to a repository (absolute, or "./" or "../" from the
 * config's directory, stored absolute). asr-git resolves it when it pushes.
 */
static int set_remote(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    const char *what = "a remote name like origin, an https:// or file:// URL without "
                       "credentials, or a path to a repository";
    const char *s;
    int rc = asr_ys_want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    char **dst = ASR_YS_AT(obj, f, char *);
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return asr_ys_fail_type(c, n, what);
    if (s[0] == '\0')
        return asr_ys_fail_type(c, n, what);
    if (strstr(s, "://") != NULL) {
        bool file = strncmp(s, "file:///", 8) == 0;
        if (!file && !is_url_nocred(s))
            return asr_ys_fail_type(c, n, what);
        return asr_ys_store_str(c, dst, s);
    }
    if (s[0] == '/' || strncmp(s, "./", 2) == 0 || strncmp(s, "../", 3) == 0) {
        char *p = resolve(c, s);
        if (p == NULL)
            return asr_ys_oom(c);
        free(*dst);
        *dst = p;
        return 0;
    }
    for (const char *p = s; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return asr_ys_fail_type(c, n, what);
    return asr_ys_store_str(c, dst, s);
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
#k, fn, false, offsetof(struct asr_health_cfg, k), NULL, m, 0                              \
    }
static const struct asr_ys_field health_fields[] = {
    {"path", asr_ys_set_str, false, offsetof(struct asr_health_cfg, path), &chk_health_path, 0, 0},
    F_HEALTH(interval_ms, asr_ys_set_int, 1),
    F_HEALTH(timeout_ms, asr_ys_set_int, 1),
    F_HEALTH(rise, asr_ys_set_int, 1),
    F_HEALTH(fall, asr_ys_set_int, 1),
};
static const struct asr_ys_schema health_schema = {health_fields, ASR_YS_NFIELDS(health_fields),
                                                   NULL};

static int restart_done(struct asr_ys *c, yaml_node_t *map, void *obj)
{
    const struct asr_restart_cfg *r = obj;
    if (r->backoff_max_ms < r->backoff_initial_ms)
        return asr_ys_fail(c, asr_ys_line(map),
                           "backoff_max_ms (%d) is less than backoff_initial_ms (%d)",
                           r->backoff_max_ms, r->backoff_initial_ms);
    return 0;
}

#define F_RESTART(k, m)                                                                            \
    {                                                                                              \
#k, asr_ys_set_int, false, offsetof(struct asr_restart_cfg, k), NULL, m, 0                 \
    }
static const struct asr_ys_field restart_fields[] = {
    F_RESTART(backoff_initial_ms, 1), F_RESTART(backoff_max_ms, 1),
    F_RESTART(stable_ms, 0),          F_RESTART(budget, 1),
    F_RESTART(window_ms, 1),
};
static const struct asr_ys_schema restart_schema = {restart_fields, ASR_YS_NFIELDS(restart_fields),
                                                    restart_done};

/* deploy.sandbox: bwrap | none, kept as an enum (docs/sandbox.md). */
static int set_sandbox(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    const char *s;
    int rc = asr_ys_want_scalar(c, n, "bwrap or none", &s);
    if (rc != 0)
        return rc;
    if (strcmp(s, "bwrap") != 0 && strcmp(s, "none") != 0)
        return asr_ys_fail_type(c, n, "bwrap or none");
    *ASR_YS_AT(obj, f, enum asr_sandbox_mode) =
        strcmp(s, "bwrap") == 0 ? ASR_SANDBOX_BWRAP : ASR_SANDBOX_NONE;
    return 0;
}

/* A sandbox resource limit: 0 for no limit, else an integer from f->min to f->cap. A limit
 * below the minimum would only make every build fail in a puzzling way. */
static int set_sandbox_limit(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n,
                             void *obj)
{
    char what[96];
    snprintf(what, sizeof(what), "0 (no limit) or an integer from %d to %zu", f->min, f->cap);
    const char *s;
    int rc = asr_ys_want_scalar(c, n, what, &s);
    if (rc != 0)
        return rc;
    long long v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9' && v <= (long long)f->cap; p++)
        v = v * 10 + (*p - '0');
    if (p == s || *p != '\0' || v > (long long)f->cap || (v != 0 && v < f->min))
        return asr_ys_fail_type(c, n, what);
    *ASR_YS_AT(obj, f, int) = (int)v;
    return 0;
}

#define F_DEPLOY(k, m)                                                                             \
    {                                                                                              \
#k, asr_ys_set_int, false, offsetof(struct asr_deploy_cfg, k), NULL, m, 0                  \
    }
#define F_SANDBOX_LIMIT(k, m, max)                                                                 \
    {                                                                                              \
#k, set_sandbox_limit, false, offsetof(struct asr_deploy_cfg, k), NULL, m, max             \
    }
static const struct asr_ys_field deploy_fields[] = {
    F_DEPLOY(build_timeout_ms, 1),
    F_DEPLOY(test_timeout_ms, 1),
    F_DEPLOY(healthy_timeout_ms, 1),
    F_DEPLOY(drain_timeout_ms, 0),
    F_DEPLOY(stop_grace_ms, 0),
    F_DEPLOY(verify_window_ms, 1),
    {"sandbox", set_sandbox, false, offsetof(struct asr_deploy_cfg, sandbox), NULL, 0, 0},
    F_SANDBOX_LIMIT(sandbox_memory_mb, 64, 1048576),
    F_SANDBOX_LIMIT(sandbox_procs, 16, 1000000),
    F_SANDBOX_LIMIT(sandbox_file_mb, 1, 1048576),
};
static const struct asr_ys_schema deploy_schema = {deploy_fields, ASR_YS_NFIELDS(deploy_fields),
                                                   NULL};

static const struct asr_ys_field budget_fields[] = {
    {"remediations", asr_ys_set_int, false, offsetof(struct asr_policy_cfg, budget_remediations),
     NULL, 1, 0},
    {"per", set_duration, false, offsetof(struct asr_policy_cfg, budget_per_ms), NULL, 1, 0},
};
static const struct asr_ys_schema budget_schema = {budget_fields, ASR_YS_NFIELDS(budget_fields),
                                                   NULL};

static const struct asr_ys_field policy_fields[] = {
    {"patch_paths", set_strlist, false, offsetof(struct asr_policy_cfg, patch_paths), &chk_glob, 0,
     0},
    {"approval", set_strlist, false, offsetof(struct asr_policy_cfg, approval), &chk_action, 0, 0},
    {"budget", asr_ys_set_map, false, 0, &budget_schema, 0, 0},
    {"cooldown", set_duration, false, offsetof(struct asr_policy_cfg, cooldown_ms), NULL, 0, 0},
    {"llm_approval", set_bool, false, offsetof(struct asr_policy_cfg, llm_approval), NULL, 0, 0},
    {"shadow", set_bool, false, offsetof(struct asr_policy_cfg, shadow), NULL, 0, 0},
};
static const struct asr_ys_schema policy_schema = {policy_fields, ASR_YS_NFIELDS(policy_fields),
                                                   NULL};

static const struct asr_ys_field github_fields[] = {
    {"api_url", asr_ys_set_str, false, offsetof(struct asr_github_cfg, api_url), &chk_url_nocred, 0,
     0},
    {"repo", asr_ys_set_str, true, offsetof(struct asr_github_cfg, repo), &chk_github_repo, 0, 0},
    {"base", asr_ys_set_str, false, offsetof(struct asr_github_cfg, base), &chk_branch, 0, 0},
};
static const struct asr_ys_schema github_schema = {github_fields, ASR_YS_NFIELDS(github_fields),
                                                   NULL};

/* A token never goes over plain http to another host; a pull request needs a pushed branch and a
 * token. */
static int git_done(struct asr_ys *c, yaml_node_t *map, void *obj)
{
    const struct asr_git_cfg *g = obj;
    char host[256];
    if (g->token_env != NULL && g->remote != NULL && strncmp(g->remote, "http://", 7) == 0) {
        url_host(g->remote, host, sizeof(host));
        if (!is_loopback_host(host))
            return asr_ys_fail(c, asr_ys_line(map),
                               "remote: refusing to send the token over plain http to '%.200s'; "
                               "use https",
                               host);
    }
    if (g->github.repo == NULL)
        return 0;
    if (g->remote == NULL)
        return asr_ys_fail(c, asr_ys_line(map),
                           "github: needs remote (the branch is pushed before its pull request is "
                           "opened)");
    if (g->token_env == NULL)
        return asr_ys_fail(c, asr_ys_line(map),
                           "github: needs token_env (the variable holding the GitHub token)");
    if (strncmp(g->github.api_url, "http://", 7) == 0) {
        url_host(g->github.api_url, host, sizeof(host));
        if (!is_loopback_host(host))
            return asr_ys_fail(c, asr_ys_line(map),
                               "github.api_url: refusing to send the token over plain http to "
                               "'%.200s'; use https",
                               host);
    }
    return 0;
}

static const struct asr_ys_field git_fields[] = {
    {"author_name", asr_ys_set_str, false, offsetof(struct asr_git_cfg, author_name), &chk_sig_text,
     0, 0},
    {"author_email", asr_ys_set_str, false, offsetof(struct asr_git_cfg, author_email),
     &chk_sig_email, 0, 0},
    {"remote", set_remote, false, offsetof(struct asr_git_cfg, remote), NULL, 0, 0},
    {"token_env", asr_ys_set_str, false, offsetof(struct asr_git_cfg, token_env), &chk_ident, 0, 0},
    {"github", asr_ys_set_map, false, offsetof(struct asr_git_cfg, github), &github_schema, 0, 0},
};
static const struct asr_ys_schema git_schema = {git_fields, ASR_YS_NFIELDS(git_fields), git_done};

/* After a signature: default dedupe list; ids are unique within their service. */
static int signature_done(struct asr_ys *c, yaml_node_t *map, void *obj)
{
    struct asr_signature_cfg *sig = obj;
    int rc = empty_list(c, &sig->dedupe);
    if (rc != 0)
        return rc;
    for (struct asr_signature_cfg *o = own(c)->svc->signatures; o < sig; o++) {
        if (strcmp(o->id, sig->id) == 0) {
            char b[ASR_YS_SHOW_CAP];
            size_t save = asr_ys_push(c, ".id");
            rc = asr_ys_fail(c, asr_ys_line(map), "duplicate signature id '%s' (first at line %d)",
                             asr_ys_show(sig->id, strlen(sig->id), b, sizeof(b)), o->line);
            asr_ys_pop(c, save);
            return rc;
        }
    }
    return 0;
}

static const struct asr_ys_field signature_fields[] = {
    {"id", asr_ys_set_str, true, offsetof(struct asr_signature_cfg, id), &chk_signature_id, 0, 0},
    {"pattern", asr_ys_set_str, true, offsetof(struct asr_signature_cfg, pattern), NULL, 0, 0},
    {"severity", asr_ys_set_enum, false, offsetof(struct asr_signature_cfg, severity), severities,
     0, 0},
    {"dedupe", set_strlist, false, offsetof(struct asr_signature_cfg, dedupe), &chk_ident, 0, 0},
};
static const struct asr_ys_schema signature_schema = {
    signature_fields, ASR_YS_NFIELDS(signature_fields), signature_done};

static int set_signatures(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    struct asr_service_cfg *svc = obj;
    (void)f;
    if (n->type != YAML_SEQUENCE_NODE)
        return asr_ys_fail_type(c, n, "a list of {id, pattern, severity, dedupe} mappings");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt > CFG_MAX_SIGNATURES)
        return asr_ys_fail(c, asr_ys_line(n), "more than %d signatures", CFG_MAX_SIGNATURES);
    if (cnt > 0 && (svc->signatures = calloc(cnt, sizeof(*svc->signatures))) == NULL)
        return asr_ys_oom(c);
    svc->nsignatures = cnt;
    for (size_t i = 0; i < cnt; i++) {
        struct asr_signature_cfg *sig = &svc->signatures[i];
        yaml_node_t *e;
        int rc;
        if ((rc = asr_ys_get_node(c, n->data.sequence.items.start[i], asr_ys_line(n), &e)) != 0)
            return rc;
        sig->line = asr_ys_line(e);
        if ((sig->severity = strdup("error")) == NULL)
            return asr_ys_oom(c);
        size_t save = asr_ys_push(c, "[%zu]", i);
        if ((rc = asr_ys_walk_map(c, &signature_schema, e, sig)) != 0)
            return rc;
        asr_ys_pop(c, save);
    }
    return 0;
}

/* Set by the name key of a service; remembers the line for the duplicate-name message. */
static int set_service_name(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n,
                            void *obj)
{
    own(c)->name_line = asr_ys_line(n);
    return asr_ys_set_str(c, f, n, obj);
}

/*
 * argv[0] of a command must be runnable: a bare name is looked up in $PATH; an absolute path must
 * be an executable file; a relative path with a '/' is taken from the repo, where build and test
 * commands must exist and the start command may be missing (the build produces it).
 */
static int check_command(struct asr_ys *c, const struct asr_service_cfg *svc, enum cmd_kind which)
{
    asr_argv argv = which == CMD_BUILD ? svc->build : which == CMD_TEST ? svc->test : svc->start;
    if (argv == NULL)
        return 0;
    const char *cmd = argv[0];
    char b[CFG_PATH_CAP], r[CFG_PATH_CAP];
    int line = own(c)->cmd_line[which], rc = 0;
    size_t save = asr_ys_push(c, ".%s", cmd_keys[which]);
    asr_ys_show(cmd, strlen(cmd), b, sizeof(b));
    if (strchr(cmd, '/') == NULL) {
        if (!in_path(cmd))
            rc = asr_ys_fail(c, line, "command '%s' not found in PATH", b);
    } else if (cmd[0] == '/') {
        struct stat st;
        if (stat(cmd, &st) != 0)
            rc = asr_ys_fail(c, line, "command '%s' does not exist", b);
        else if (!is_exec_file(cmd))
            rc = asr_ys_fail(c, line, "command '%s' is not an executable file", b);
    } else {
        char *full = join(svc->repo, cmd);
        struct stat st;
        if (full == NULL)
            return asr_ys_oom(c);
        asr_ys_show(svc->repo, strlen(svc->repo), r, sizeof(r));
        if (which != CMD_START && stat(full, &st) != 0)
            rc = asr_ys_fail(c, line, "command '%s' not found in repo '%s'", b, r);
        else if (which != CMD_START && !is_exec_file(full))
            rc = asr_ys_fail(c, line, "command '%s' is not an executable file", b);
        free(full);
    }
    asr_ys_pop(c, save);
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
static int service_done(struct asr_ys *c, yaml_node_t *map, void *obj)
{
    struct asr_service_cfg *svc = obj;
    char b[ASR_YS_SHOW_CAP], a1[64], a2[64];
    int rc;
    (void)map;
    if ((rc = empty_list(c, &svc->policy.patch_paths)) != 0 ||
        (rc = empty_list(c, &svc->policy.approval)) != 0)
        return rc;
    for (int k = 0; own(c)->check && k < CMD_COUNT; k++)
        if ((rc = check_command(c, svc, (enum cmd_kind)k)) != 0)
            return rc;
    for (const struct asr_service_cfg *o = own(c)->cfg->services; o < svc; o++) {
        if (strcmp(o->name, svc->name) == 0) {
            asr_ys_push(c, ".name");
            return asr_ys_fail(c, own(c)->name_line,
                               "duplicate service name '%s' (first at line %d)",
                               asr_ys_show(svc->name, strlen(svc->name), b, sizeof(b)), o->line);
        }
        if (o->listen_port == svc->listen_port && hosts_clash(o->listen_host, svc->listen_host)) {
            asr_ys_push(c, ".listen");
            addr_text(svc, a1, sizeof(a1));
            addr_text(o, a2, sizeof(a2));
            if (strcmp(a1, a2) == 0)
                return asr_ys_fail(c, own(c)->listen_line,
                                   "duplicate listen address '%s' (also used by service '%s')", a1,
                                   o->name);
            return asr_ys_fail(c, own(c)->listen_line,
                               "listen address '%s' overlaps '%s' of service '%s'", a1, a2,
                               o->name);
        }
    }
    return 0;
}

#define F_SVC(k, fn, req, a)                                                                       \
    {                                                                                              \
#k, fn, req, offsetof(struct asr_service_cfg, k), a, 0, 0                                  \
    }
static const struct asr_ys_field service_fields[] = {
    F_SVC(name, set_service_name, true, &chk_service_name),
    F_SVC(repo, set_repo, true, NULL),
    F_SVC(build, set_argv, false, &kind_build),
    F_SVC(test, set_argv, false, &kind_test),
    F_SVC(start, set_argv, true, &kind_start),
    F_SVC(env, set_env, false, NULL),
    {"listen", set_listen, true, 0, NULL, 0, 0},
    F_SVC(health, asr_ys_set_map, false, &health_schema),
    {"logs", set_logs, false, 0, NULL, 0, 0},
    {"log_files", set_log_files, false, 0, NULL, 0, 0},
    {"signatures", set_signatures, false, 0, NULL, 0, 0},
    F_SVC(policy, asr_ys_set_map, false, &policy_schema),
    F_SVC(restart, asr_ys_set_map, false, &restart_schema),
    F_SVC(deploy, asr_ys_set_map, false, &deploy_schema),
    F_SVC(git, asr_ys_set_map, false, &git_schema),
};
static const struct asr_ys_schema service_schema = {service_fields, ASR_YS_NFIELDS(service_fields),
                                                    service_done};

/* The defaults documented in config.h, set before a service's keys are read. */
static int service_defaults(struct asr_ys *c, struct asr_service_cfg *s, int line)
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
                                        .verify_window_ms = 3000,
                                        .sandbox = ASR_SANDBOX_BWRAP,
                                        .sandbox_memory_mb = 4096,
                                        .sandbox_procs = 1024,
                                        .sandbox_file_mb = 1024,
                                        .config_path = own(c)->cfg->path};
    s->git.author_name = strdup("asr");
    s->git.author_email = strdup("asr@localhost");
    s->git.github.api_url = strdup("https://api.github.com");
    s->git.github.base = strdup("main");
    return s->health.path != NULL && s->git.author_name != NULL && s->git.author_email != NULL &&
                   s->git.github.api_url != NULL && s->git.github.base != NULL
               ? 0
               : asr_ys_oom(c);
}

static int set_services(struct asr_ys *c, const struct asr_ys_field *f, yaml_node_t *n, void *obj)
{
    struct asr_config *cfg = obj;
    (void)f;
    if (n->type != YAML_SEQUENCE_NODE)
        return asr_ys_fail_type(c, n, "a list of services");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt == 0)
        return asr_ys_fail(c, asr_ys_line(n), "expected at least one service");
    if (cnt > CFG_MAX_SERVICES)
        return asr_ys_fail(c, asr_ys_line(n), "more than %d services", CFG_MAX_SERVICES);
    if ((cfg->services = calloc(cnt, sizeof(*cfg->services))) == NULL)
        return asr_ys_oom(c);
    cfg->nservices = cnt;
    for (size_t i = 0; i < cnt; i++) {
        struct asr_service_cfg *svc = &cfg->services[i];
        yaml_node_t *e;
        int rc;
        if ((rc = asr_ys_get_node(c, n->data.sequence.items.start[i], asr_ys_line(n), &e)) != 0 ||
            (rc = service_defaults(c, svc, asr_ys_line(e))) != 0)
            return rc;
        own(c)->svc = svc;
        memset(own(c)->cmd_line, 0, sizeof(own(c)->cmd_line));
        own(c)->name_line = own(c)->listen_line = asr_ys_line(e);
        size_t save = asr_ys_push(c, "[%zu]", i);
        if ((rc = asr_ys_walk_map(c, &service_schema, e, svc)) != 0)
            return rc;
        asr_ys_pop(c, save);
    }
    return 0;
}

/* A provider needs a model; the limits stay in ranges a call can live with. */
static int llm_done(struct asr_ys *c, yaml_node_t *map, void *obj)
{
    const struct asr_llm_cfg *l = obj;
    if (strcmp(l->provider, "none") != 0 && (l->model == NULL || l->model[0] == '\0'))
        return asr_ys_fail(c, asr_ys_line(map), "model: required when provider is %s", l->provider);
    if (l->max_attempts > 10)
        return asr_ys_fail(c, asr_ys_line(map), "max_attempts is at most 10");
    if (l->timeout_ms > 600000)
        return asr_ys_fail(c, asr_ys_line(map), "timeout_ms is at most 600000 (10 minutes)");
    if (l->backoff_max_ms < l->backoff_initial_ms)
        return asr_ys_fail(c, asr_ys_line(map),
                           "backoff_max_ms (%d) is less than backoff_initial_ms (%d)",
                           l->backoff_max_ms, l->backoff_initial_ms);
    return 0;
}

#define F_LLM(k, m)                                                                                \
    {                                                                                              \
#k, asr_ys_set_int, false, offsetof(struct asr_llm_cfg, k), NULL, m, 0                     \
    }
static const struct asr_ys_field llm_fields[] = {
    {"provider", asr_ys_set_enum, false, offsetof(struct asr_llm_cfg, provider), llm_providers, 0,
     0},
    {"base_url", asr_ys_set_str, false, offsetof(struct asr_llm_cfg, base_url), &chk_url, 0, 0},
    {"model", asr_ys_set_str, false, offsetof(struct asr_llm_cfg, model), NULL, 0, 0},
    {"api_key_env", asr_ys_set_str, false, offsetof(struct asr_llm_cfg, api_key_env), &chk_ident, 0,
     0},
    F_LLM(timeout_ms, 1),
    F_LLM(max_attempts, 1),
    F_LLM(max_tokens, 1),
    F_LLM(backoff_initial_ms, 1),
    F_LLM(backoff_max_ms, 1),
    F_LLM(breaker_threshold, 1),
    F_LLM(breaker_cooldown_ms, 1),
};
static const struct asr_ys_schema llm_schema = {llm_fields, ASR_YS_NFIELDS(llm_fields), llm_done};

/* Bounds that keep the context windows' memory small whatever the file says. */
static int detection_done(struct asr_ys *c, yaml_node_t *map, void *obj)
{
    const struct asr_detection_cfg *d = obj;
    if (d->context_before > CFG_MAX_CONTEXT || d->context_after > CFG_MAX_CONTEXT)
        return asr_ys_fail(c, asr_ys_line(map),
                           "context_before and context_after are at most %d lines",
                           CFG_MAX_CONTEXT);
    if (d->context_wait_ms > 60000)
        return asr_ys_fail(c, asr_ys_line(map), "context_wait_ms is at most 60000");
    return 0;
}

#define F_DET(k, fn, m)                                                                            \
    {                                                                                              \
#k, fn, false, offsetof(struct asr_detection_cfg, k), NULL, m, 0                           \
    }
static const struct asr_ys_field detection_fields[] = {
    F_DET(context_before, asr_ys_set_int, 0),  F_DET(context_after, asr_ys_set_int, 0),
    F_DET(context_wait_ms, asr_ys_set_int, 0), F_DET(cooldown_ms, set_duration, 0),
    F_DET(group_window_ms, set_duration, 0),   F_DET(generic, set_bool, 0),
    F_DET(rate_jump, asr_ys_set_int, 2),
};
static const struct asr_ys_schema detection_schema = {
    detection_fields, ASR_YS_NFIELDS(detection_fields), detection_done};

/* A token never goes over plain http to another host. */
static int notify_done(struct asr_ys *c, yaml_node_t *map, void *obj)
{
    const struct asr_notify_cfg *nc = obj;
    char host[256];
    if (nc->token_env != NULL && strncmp(nc->url, "http://", 7) == 0) {
        url_host(nc->url, host, sizeof(host));
        if (!is_loopback_host(host))
            return asr_ys_fail(c, asr_ys_line(map),
                               "url: refusing to send the token over plain http to '%.200s'; use "
                               "https",
                               host);
    }
    return 0;
}

static const struct asr_ys_field notify_fields[] = {
    {"url", asr_ys_set_str, true, offsetof(struct asr_notify_cfg, url), &chk_url_nocred, 0, 0},
    {"token_env", asr_ys_set_str, false, offsetof(struct asr_notify_cfg, token_env), &chk_ident, 0,
     0},
    {"timeout_ms", asr_ys_set_int, false, offsetof(struct asr_notify_cfg, timeout_ms), NULL, 1,
     300000},
};
static const struct asr_ys_schema notify_schema = {notify_fields, ASR_YS_NFIELDS(notify_fields),
                                                   notify_done};

static const struct asr_ys_field api_fields[] = {
    {"listen", set_api_listen, true, 0, NULL, 0, 0},
    {"token_env", asr_ys_set_str, false, offsetof(struct asr_api_cfg, token_env), &chk_ident, 0, 0},
    {"max_body_bytes", asr_ys_set_int, false, offsetof(struct asr_api_cfg, max_body_bytes), NULL,
     1024, 256 * 1024 * 1024},
};
static const struct asr_ys_schema api_schema = {api_fields, ASR_YS_NFIELDS(api_fields), NULL};

static int root_done(struct asr_ys *c, yaml_node_t *map, void *obj)
{
    struct asr_config *cfg = obj;
    (void)map;
    for (size_t i = 0; cfg->api.listen_host != NULL && i < cfg->nservices; i++) {
        const struct asr_service_cfg *s = &cfg->services[i];
        if (s->listen_port == cfg->api.listen_port &&
            hosts_clash(s->listen_host, cfg->api.listen_host)) {
            char a[64];
            asr_ys_push(c, "api.listen");
            return asr_ys_fail(c, cfg->api.line, "the API's address overlaps '%s' of service '%s'",
                               addr_text(s, a, sizeof(a)), s->name);
        }
    }
    if (cfg->state_dir == NULL && (cfg->state_dir = resolve(c, ".asr")) == NULL)
        return asr_ys_oom(c);
    return 0;
}

#define F_ROOT(k, fn, req, a)                                                                      \
    {                                                                                              \
#k, fn, req, offsetof(struct asr_config, k), a, 0, 0                                       \
    }
static const struct asr_ys_field root_fields[] = {
    F_ROOT(state_dir, set_path, false, NULL),
    F_ROOT(log_level, asr_ys_set_enum, false, log_levels),
    F_ROOT(services, set_services, true, NULL),
    F_ROOT(playbooks, set_path, false, NULL),
    F_ROOT(llm, asr_ys_set_map, false, &llm_schema),
    F_ROOT(detection, asr_ys_set_map, false, &detection_schema),
    F_ROOT(notify, asr_ys_set_map, false, &notify_schema),
    F_ROOT(api, asr_ys_set_map, false, &api_schema),
};
static const struct asr_ys_schema root_schema = {root_fields, ASR_YS_NFIELDS(root_fields),
                                                 root_done};

_Static_assert(ASR_YS_NFIELDS(service_fields) <= ASR_YS_MAX_FIELDS,
               "walk_map's seen[] is too small");
_Static_assert(ASR_YS_NFIELDS(root_fields) <= ASR_YS_MAX_FIELDS, "walk_map's seen[] is too small");

/* ---------------------------------------------------------------------------------------------
 * Parsing
 */

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
    struct load ld = {.check = check_commands};
    struct asr_ys c = {.name = name != NULL ? name : "<config>",
                       .text = text != NULL ? text : "",
                       .len = text != NULL ? len : 0,
                       .err = err,
                       .one_doc = "a config",
                       .empty = "empty configuration (expected a mapping with at least 'services')",
                       .max_depth = CFG_MAX_DEPTH,
                       .max_nodes = CFG_MAX_NODES,
                       .user = &ld};
    int rc;

    *out = NULL;
    if (err != NULL) {
        err->code = 0;
        err->msg[0] = '\0';
    }
    if (c.len > CFG_MAX_BYTES)
        return asr_ys_fail_key(&c, 1, "yaml", "%zu bytes is more than the cap of %u bytes (1 MiB)",
                               c.len, CFG_MAX_BYTES);
    struct asr_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return asr_ys_oom(&c);
    ld.cfg = cfg;
    cfg->detection = (struct asr_detection_cfg){.context_before = 20,
                                                .context_after = 20,
                                                .context_wait_ms = 2000,
                                                .cooldown_ms = 300000,
                                                .group_window_ms = 30000,
                                                .generic = true,
                                                .rate_jump = 5};
    cfg->notify.timeout_ms = 5000;
    cfg->api.max_body_bytes = 1024 * 1024;
    cfg->llm = (struct asr_llm_cfg){.timeout_ms = 60000,
                                    .max_attempts = 3,
                                    .max_tokens = 4096,
                                    .backoff_initial_ms = 500,
                                    .backoff_max_ms = 30000,
                                    .breaker_threshold = 5,
                                    .breaker_cooldown_ms = 60000};
    if ((cfg->path = strdup(c.name)) == NULL || (cfg->dir = absolute_dir(dir, ld.check)) == NULL ||
        (cfg->log_level = strdup("info")) == NULL || (cfg->llm.provider = strdup("none")) == NULL) {
        rc = asr_ys_oom(&c);
        goto out;
    }
    ld.dir = cfg->dir;
    rc = asr_ys_parse(&c, &root_schema, cfg);
out:
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
        free(s->git.author_name);
        free(s->git.author_email);
        free(s->git.remote);
        free(s->git.token_env);
        free(s->git.github.api_url);
        free(s->git.github.repo);
        free(s->git.github.base);
    }
    free(cfg->services);
    free(cfg->llm.provider);
    free(cfg->llm.base_url);
    free(cfg->llm.model);
    free(cfg->llm.api_key_env);
    free(cfg->notify.url);
    free(cfg->notify.token_env);
    free(cfg->api.listen_host);
    free(cfg->api.token_env);
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
