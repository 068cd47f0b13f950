/*
 * actions.c - the whitelist of actions and their argument validators (see actions.h).
 *
 * Part of the EXECUTE stage. The table at the bottom is the only list of things asr can do;
 * a validator refuses every argument it does not know, so a plan cannot smuggle options in.
 */
#include "execute/actions.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static int fail(struct asr_err *err, const char *fmt, const char *a, const char *b)
{
    return asr_err_set(err, ASR_EINVAL, fmt, a, b);
}

/* Refuses keys of args that are not in allowed (NULL-terminated). */
static int only_keys(const json_t *args, const char *const *allowed, struct asr_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)args, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok)
            return fail(err, "unknown argument '%.64s'%s", key, "");
    }
    return 0;
}

static int validate_none(const json_t *args, const struct asr_service_cfg *svc, struct asr_err *err)
{
    (void)svc;
    static const char *const none[] = {NULL};
    return only_keys(args, none, err);
}

static int validate_escalate(const json_t *args, const struct asr_service_cfg *svc,
                             struct asr_err *err)
{
    (void)svc;
    static const char *const keys[] = {"reason", NULL};
    int rc = only_keys(args, keys, err);
    if (rc != 0)
        return rc;
    const json_t *r = json_object_get(args, "reason");
    if (!json_is_string(r) || json_string_length(r) == 0 || json_string_length(r) > 4096)
        return fail(err, "reason: expected a string of 1 to 4096 bytes%s%s", "", "");
    return 0;
}

static int validate_notify(const json_t *args, const struct asr_service_cfg *svc,
                           struct asr_err *err)
{
    (void)svc;
    static const char *const keys[] = {"message", NULL};
    int rc = only_keys(args, keys, err);
    if (rc != 0)
        return rc;
    const json_t *m = json_object_get(args, "message");
    if (!json_is_string(m) || json_string_length(m) == 0 || json_string_length(m) > 4096)
        return fail(err, "message: expected a string of 1 to 4096 bytes%s%s", "", "");
    return 0;
}

/* deploy {ref}: a branch, tag or commit of the service's repository, never an option. */
static int validate_deploy(const json_t *args, const struct asr_service_cfg *svc,
                           struct asr_err *err)
{
    (void)svc;
    static const char *const keys[] = {"ref", NULL};
    int rc = only_keys(args, keys, err);
    if (rc != 0)
        return rc;
    const char *ref = json_string_value(json_object_get(args, "ref"));
    size_t n = ref != NULL ? strlen(ref) : 0;
    if (ref == NULL || n == 0 || n > 200 || ref[0] == '-' || strstr(ref, "..") != NULL)
        return fail(err, "ref: expected a branch, tag or commit of 1 to 200 bytes%s%s", "", "");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)ref[i] <= ' ' || ref[i] == 0x7f || strchr("~^:?*[\\", ref[i]) != NULL)
            return fail(err, "ref: '%.200s' is not a valid git ref%s", ref, "");
    return 0;
}

/* Matches one path segment against one glob segment ('*' and '?' only). */
static bool seg_match(const char *g, size_t gl, const char *s, size_t sl)
{
    size_t gi = 0, si = 0, star = (size_t)-1, mark = 0;
    while (si < sl) {
        if (gi < gl && (g[gi] == '?' || g[gi] == s[si])) {
            gi++;
            si++;
        } else if (gi < gl && g[gi] == '*') {
            star = gi++;
            mark = si;
        } else if (star != (size_t)-1) {
            gi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (gi < gl && g[gi] == '*')
        gi++;
    return gi == gl;
}

/* Matches path against glob segment by segment; '**' matches zero or more segments. */
static bool glob_match(const char *g, const char *p)
{
    if (*g == '\0')
        return *p == '\0';
    const char *ge = strchr(g, '/');
    size_t gl = ge != NULL ? (size_t)(ge - g) : strlen(g);
    const char *gnext = ge != NULL ? ge + 1 : g + gl;
    if (gl == 2 && g[0] == '*' && g[1] == '*') {
        if (glob_match(gnext, p))
            return true; /* '**' as no segment */
        while (*p != '\0') {
            const char *pe = strchr(p, '/');
            p = pe != NULL ? pe + 1 : p + strlen(p);
            if (glob_match(gnext, p))
                return true;
        }
        return *gnext == '\0';
    }
    if (*p == '\0')
        return false;
    const char *pe = strchr(p, '/');
    size_t pl = pe != NULL ? (size_t)(pe - p) : strlen(p);
    if (!seg_match(g, gl, p, pl))
        return false;
    if (ge == NULL)
        return pe == NULL;
    return pe != NULL && glob_match(gnext, pe + 1);
}

bool asr_path_allowed(const char *path, const asr_argv globs)
{
    if (path == NULL || path[0] == '\0' || path[0] == '/' || globs == NULL ||
        strlen(path) > ASR_ACTION_MAX_PATH)
        return false;
    /* Plain ASCII names only: no control characters, backslashes, quotes, '%' escapes or
     * lookalike Unicode (the same rule as the edit parser's, src/strategy/edits.c). */
    for (const char *p = path; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && strchr("._-+@,=/", *p) == NULL)
            return false;
    /* Every segment must be a plain name: no empty segment, no '.' or '..', and never a '.git'
     * directory in any case (a patch there could install a hook, code that git itself runs). */
    int segs = 0;
    for (const char *s = path;;) {
        const char *e = strchr(s, '/');
        size_t l = e != NULL ? (size_t)(e - s) : strlen(s);
        if (++segs > ASR_ACTION_MAX_SEGMENTS || l == 0 || (l == 1 && s[0] == '.') ||
            (l == 2 && s[0] == '.' && s[1] == '.') || (l == 4 && strncasecmp(s, ".git", 4) == 0))
            return false;
        if (e == NULL)
            break;
        s = e + 1;
    }
    for (size_t i = 0; globs[i] != NULL; i++)
        if (glob_match(globs[i], path))
            return true;
    return false;
}

static int validate_patch(const json_t *args, const struct asr_service_cfg *svc,
                          struct asr_err *err)
{
    static const char *const keys[] = {"edits", "message", NULL};
    static const char *const edit_keys[] = {"path", "search", "replace", NULL};
    int rc = only_keys(args, keys, err);
    if (rc != 0)
        return rc;
    const json_t *m = json_object_get(args, "message");
    if (m != NULL && (!json_is_string(m) || json_string_length(m) > 4096))
        return fail(err, "message: expected a string of at most 4096 bytes%s%s", "", "");
    const json_t *edits = json_object_get(args, "edits");
    if (!json_is_array(edits) || json_array_size(edits) == 0 ||
        json_array_size(edits) > ASR_ACTION_MAX_EDITS)
        return asr_err_set(err, ASR_EINVAL, "edits: expected a list of 1 to %d edits",
                           ASR_ACTION_MAX_EDITS);
    size_t i;
    const json_t *e;
    json_array_foreach(edits, i, e)
    {
        if (!json_is_object(e))
            return asr_err_set(err, ASR_EINVAL, "edits[%zu]: expected {path, search, replace}", i);
        struct asr_err e2 = {0};
        if (only_keys(e, edit_keys, &e2) != 0)
            return asr_err_set(err, ASR_EINVAL, "edits[%zu]: %s", i, e2.msg);
        const json_t *path = json_object_get(e, "path"), *search = json_object_get(e, "search"),
                     *replace = json_object_get(e, "replace");
        if (!json_is_string(path) || !json_is_string(search) || !json_is_string(replace))
            return asr_err_set(err, ASR_EINVAL,
                               "edits[%zu]: path, search and replace must all be strings", i);
        if (json_string_length(search) == 0)
            return asr_err_set(err, ASR_EINVAL, "edits[%zu].search: must not be empty", i);
        if (json_string_length(search) > ASR_ACTION_MAX_TEXT ||
            json_string_length(replace) > ASR_ACTION_MAX_TEXT)
            return asr_err_set(err, ASR_EINVAL,
                               "edits[%zu]: search and replace are at most %d "
                               "bytes each",
                               i, ASR_ACTION_MAX_TEXT);
        const char *ps = json_string_value(path);
        if (svc != NULL && !asr_path_allowed(ps, svc->policy.patch_paths))
            return asr_err_set(err, ASR_EINVAL,
                               "edits[%zu].path: '%.200s' is outside the service's patch_paths", i,
                               ps);
        if (svc == NULL) {
            /* No service yet: at least the shape of the path. */
            static char *const any[] = {"**", NULL};
            if (!asr_path_allowed(ps, (asr_argv)any))
                return asr_err_set(err, ASR_EINVAL,
                                   "edits[%zu].path: '%.200s' is not a relative path inside the "
                                   "repository",
                                   i, ps);
        }
    }
    return 0;
}

/* The whitelist. Adding an action means adding a line here, with its validator. */
static const struct asr_action actions[] = {
    {"restart", "restart the serving slot of the service", validate_none, 30000},
    {"rollback", "cut over to the last good release", validate_none, 60000},
    {"patch", "commit search/replace edits, build, test and deploy them", validate_patch, 600000},
    {"deploy", "build, test and deploy a ref of the service's repository", validate_deploy, 600000},
    {"notify", "POST an event with the step's message to the configured webhook", validate_notify,
     10000},
    {"escalate", "hand the incident to a person", validate_escalate, 1000},
};

const struct asr_action *asr_actions(size_t *n)
{
    *n = sizeof(actions) / sizeof(actions[0]);
    return actions;
}

const struct asr_action *asr_action_find(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof(actions) / sizeof(actions[0]); i++)
        if (strcmp(actions[i].name, name) == 0)
            return &actions[i];
    return NULL;
}

int asr_action_check(const char *name, const json_t *args, const struct asr_service_cfg *svc,
                     struct asr_err *err)
{
    const struct asr_action *a = asr_action_find(name);
    if (a == NULL) {
        char names[200] = "";
        for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
            snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                     i > 0 ? ", " : "", actions[i].name);
        return asr_err_set(err, ASR_EINVAL, "action '%.64s' is not on the whitelist (%s)",
                           name != NULL ? name : "", names);
    }
    if (args == NULL || !json_is_object(args))
        return asr_err_set(err, ASR_EINVAL, "action %s: arguments must be a mapping", a->name);
    struct asr_err e2 = {0};
    int rc = a->validate(args, svc, &e2);
    if (rc != 0)
        return asr_err_set(err, rc, "action %s: %s", a->name, e2.msg);
    return 0;
}
