/*
 * git.c - git through libgit2 (see git.h): resolve and export commits for releases, and make
 * asr's own commits (edits, reverts) in memory, for the asr-git helper only (the daemon never
 * loads libgit2; src/cli/asr_git.c).
 */
#include "asr/git.h"

#include "asr/utf8.h"
#include "strategy/edits.h"

#include <ctype.h>
#include <git2.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static pthread_once_t git_once = PTHREAD_ONCE_INIT;

static void git_init_once(void)
{
    git_libgit2_init();
}

static const char *git_msg(void)
{
    const git_error *e = git_error_last();
    return e != NULL && e->message != NULL ? e->message : "unknown libgit2 error";
}

static int open_repo(const char *path, git_repository **repo, struct asr_err *err)
{
    pthread_once(&git_once, git_init_once);
    if (git_repository_open_ext(repo, path, 0, NULL) != 0)
        return asr_err_set(err, ASR_EGIT, "git: %s: not inside a git repository: %s", path,
                           git_msg());
    if (git_repository_is_bare(*repo)) {
        git_repository_free(*repo);
        return asr_err_set(err, ASR_EGIT, "git: %s: bare repositories are not supported", path);
    }
    return 0;
}

int asr_git_resolve(const char *path, const char *ref, char sha[41], char **prefix,
                    struct asr_err *err)
{
    git_repository *repo = NULL;
    git_object *obj = NULL;
    int rc = open_repo(path, &repo, err);
    if (rc != 0)
        return rc;
    const char *spec = ref != NULL ? ref : "HEAD";
    if (git_revparse_single(&obj, repo, spec) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: %s: cannot resolve '%s': %s", path, spec, git_msg());
        goto out;
    }
    git_object *commit = NULL;
    if (git_object_peel(&commit, obj, GIT_OBJECT_COMMIT) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: %s: '%s' is not a commit: %s", path, spec, git_msg());
        goto out;
    }
    git_oid_tostr(sha, 41, git_object_id(commit));
    git_object_free(commit);
    if (prefix != NULL) {
        char real[PATH_MAX], top[PATH_MAX];
        const char *wd = git_repository_workdir(repo);
        if (realpath(path, real) == NULL || wd == NULL || realpath(wd, top) == NULL) {
            rc = asr_err_set(err, ASR_EGIT, "git: %s: cannot locate the work tree", path);
            goto out;
        }
        size_t tl = strlen(top);
        const char *rel = real + tl;
        while (*rel == '/')
            rel++;
        *prefix = strdup(strncmp(real, top, tl) == 0 ? rel : "");
        if (*prefix == NULL)
            rc = asr_err_set(err, ASR_ENOMEM, "git: out of memory");
    }
out:
    git_object_free(obj);
    git_repository_free(repo);
    return rc;
}

int asr_git_export(const char *path, const char *sha, const char *dest, struct asr_err *err)
{
    git_repository *repo = NULL;
    git_commit *commit = NULL;
    git_tree *tree = NULL;
    git_oid oid;
    int rc = open_repo(path, &repo, err);
    if (rc != 0)
        return rc;
    if (git_oid_fromstr(&oid, sha) != 0 || git_commit_lookup(&commit, repo, &oid) != 0 ||
        git_commit_tree(&tree, commit) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: %s: no commit %s: %s", path, sha, git_msg());
        goto out;
    }
    git_checkout_options opts;
    git_checkout_options_init(&opts, GIT_CHECKOUT_OPTIONS_VERSION);
    /* FORCE writes every file; DONT_UPDATE_INDEX keeps the repository's index untouched, since
     * the files go to target_directory and not to the repository's work tree. */
    opts.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_UPDATE_INDEX;
    opts.target_directory = dest;
    if (git_checkout_tree(repo, (git_object *)tree, &opts) != 0)
        rc = asr_err_set(err, ASR_EGIT, "git: export %.12s to %s: %s", sha, dest, git_msg());
out:
    git_tree_free(tree);
    git_commit_free(commit);
    git_repository_free(repo);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * In-memory commits: asr-git commit-edits and asr-git revert (docs/patching.md)
 * ------------------------------------------------------------------------------------------- */

/* Files that drive CI or git itself: an automatic patch never touches them, at any depth and in
 * any case (a commit on a branch can run a workflow before anyone reviews it). */
static const char *const ci_files[] = {
    ".gitlab-ci.yml",
    ".travis.yml",
    "azure-pipelines.yml",
    "Jenkinsfile",
    ".drone.yml",
    "appveyor.yml",
    ".appveyor.yml",
    "bitbucket-pipelines.yml",
    ".gitmodules",
    ".gitattributes",
    NULL,
};
/* Directories whose files CI runs ("*" and its next component when two are given). */
static const char *const ci_dirs[][2] = {
    {".github", "workflows"}, {".github", "actions"}, {".circleci", NULL},
    {".buildkite", NULL},     {".gitlab", NULL},
};

/* Why the tree path (components separated by "/") is a CI or git control file, or NULL. */
static const char *ci_problem(const char *path)
{
    const char *prev = NULL;
    size_t prevl = 0;
    for (const char *s = path;;) {
        const char *e = strchr(s, '/');
        size_t l = e != NULL ? (size_t)(e - s) : strlen(s);
        for (size_t i = 0; i < sizeof(ci_dirs) / sizeof(ci_dirs[0]) && e != NULL; i++) {
            const char *a = ci_dirs[i][0], *b = ci_dirs[i][1];
            if (b == NULL && l == strlen(a) && strncasecmp(s, a, l) == 0)
                return "is a CI configuration file (refused)";
            if (b != NULL && prev != NULL && prevl == strlen(a) &&
                strncasecmp(prev, a, prevl) == 0 && l == strlen(b) && strncasecmp(s, b, l) == 0)
                return "is a CI workflow file (refused)";
        }
        if (e == NULL) {
            for (size_t i = 0; ci_files[i] != NULL; i++)
                if (strcasecmp(s, ci_files[i]) == 0)
                    return strcasecmp(s, ".gitmodules") == 0 || strcasecmp(s, ".gitattributes") == 0
                               ? "is a git control file (refused)"
                               : "is a CI configuration file (refused)";
            return NULL;
        }
        prev = s;
        prevl = l;
        s = e + 1;
    }
}

/* A short printable copy of s for messages (control and non-ASCII bytes as '?'). */
static const char *shown(char *dst, size_t cap, const char *s, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 4 < cap; i++)
        dst[j++] = (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f ? s[i] : '?';
    if (j + 4 >= cap && n > j)
        memcpy(dst + j, "...", 3), j += 3;
    dst[j] = '\0';
    return dst;
}

static bool is_hex40(const char *s)
{
    if (s == NULL || strlen(s) != 40)
        return false;
    for (int i = 0; i < 40; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* Refuses keys of obj that are not in allowed (NULL-terminated). */
static int only_keys(const json_t *obj, const char *const *allowed, const char *what,
                     struct asr_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            char ex[80];
            return asr_err_set(err, ASR_EINVAL, "request: unknown key '%s' in %s",
                               shown(ex, sizeof(ex), key, strlen(key)), what);
        }
    }
    return 0;
}

/* A string member: required, no NUL, at most max bytes. */
static int get_str(const json_t *obj, const char *key, size_t max, bool required, const char **out,
                   struct asr_err *err)
{
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL && !required)
        return 0;
    if (!json_is_string(v))
        return asr_err_set(err, ASR_EINVAL, "request: '%s' must be a string", key);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (strlen(s) != n)
        return asr_err_set(err, ASR_EINVAL, "request: '%s' contains a NUL byte", key);
    if (n > max)
        return asr_err_set(err, ASR_ETOOBIG, "request: '%s' is longer than %zu bytes", key, max);
    *out = s;
    return 0;
}

/* A list of strings as a NULL-terminated array of borrowed pointers (caller frees the array). */
static int get_list(const json_t *obj, const char *key, size_t max, char ***out,
                    struct asr_err *err)
{
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v != NULL && !json_is_array(v))
        return asr_err_set(err, ASR_EINVAL, "request: '%s' must be a list of strings", key);
    size_t n = v != NULL ? json_array_size(v) : 0;
    if (n > max)
        return asr_err_set(err, ASR_ETOOBIG, "request: '%s' has more than %zu entries", key, max);
    char **a = calloc(n + 1, sizeof(*a));
    if (a == NULL)
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(v, i);
        if (!json_is_string(s) || strlen(json_string_value(s)) != json_string_length(s) ||
            json_string_length(s) == 0 || json_string_length(s) > 4096) {
            free(a);
            return asr_err_set(err, ASR_EINVAL,
                               "request: %s[%zu] must be a string of 1 to 4096 bytes without NUL",
                               key, i);
        }
        a[i] = (char *)json_string_value(s);
    }
    *out = a;
    return 0;
}

/* One line of text for a signature: 1..max bytes of valid UTF-8, no control characters and none
 * of "<>" (git would cut or misread them). */
static int check_ident(const char *s, size_t max, const char *what, struct asr_err *err)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > max)
        return asr_err_set(err, ASR_EINVAL, "request: author %s must be 1 to %zu bytes", what, max);
    if (asr_utf8_valid_prefix((const unsigned char *)s, n) != n)
        return asr_err_set(err, ASR_EINVAL, "request: author %s is not valid UTF-8", what);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '<' || c == '>')
            return asr_err_set(err, ASR_EINVAL,
                               "request: author %s contains a control character or '<' / '>'",
                               what);
    }
    return 0;
}

static int get_author(const json_t *root, git_signature **sig, struct asr_err *err)
{
    static const char *const keys[] = {"name", "email", NULL};
    const json_t *a = json_object_get(root, "author");
    const char *name, *email;
    if (!json_is_object(a))
        return asr_err_set(err, ASR_EINVAL, "request: 'author' must be {\"name\", \"email\"}");
    int rc = only_keys(a, keys, "author", err);
    if (rc == 0)
        rc = get_str(a, "name", 256, true, &name, err);
    if (rc == 0)
        rc = get_str(a, "email", 256, true, &email, err);
    if (rc == 0)
        rc = check_ident(name, 256, "name", err);
    if (rc == 0)
        rc = check_ident(email, 256, "email", err);
    if (rc == 0 && strchr(email, '@') == NULL)
        rc = asr_err_set(err, ASR_EINVAL, "request: author email has no '@'");
    if (rc == 0 && git_signature_now(sig, name, email) != 0)
        rc = asr_err_set(err, ASR_EGIT, "git: bad author: %s", git_msg());
    return rc;
}

/* The branch: "asr/" then letters, digits, "-", "_", "." and "/", a valid git ref name. */
static int check_branch(const char *b, char *ref, size_t cap, struct asr_err *err)
{
    char ex[80];
    size_t n = strlen(b);
    bool ok = n > 4 && n <= 200 && strncmp(b, "asr/", 4) == 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)b[i]) || strchr("-_./", b[i]) != NULL;
    snprintf(ref, cap, "refs/heads/%s", b);
    int valid = 0;
    if (ok && (git_reference_name_is_valid(&valid, ref) != 0 || !valid))
        ok = false;
    if (!ok)
        return asr_err_set(err, ASR_EINVAL,
                           "request: branch '%s' refused: asr commits only to branches named "
                           "asr/<letters, digits, - _ . />",
                           shown(ex, sizeof(ex), b, n));
    return 0;
}

/* The value of trailer key in message (a new string), or NULL. */
static char *trailer(const char *message, const char *key)
{
    git_message_trailer_array arr = {0};
    char *v = NULL;
    if (git_message_trailers(&arr, message) != 0)
        return NULL;
    for (size_t i = 0; i < arr.count && v == NULL; i++)
        if (strcasecmp(arr.trailers[i].key, key) == 0)
            v = strdup(arr.trailers[i].value);
    git_message_trailer_array_free(&arr);
    return v;
}

/* The commit message: valid UTF-8, tabs and newlines the only control characters, and the
 * three trailers; *plan gets the Asr-Plan value (caller frees). */
static int check_message(const char *m, char **plan, struct asr_err *err)
{
    size_t n = strlen(m);
    if (n == 0)
        return asr_err_set(err, ASR_EINVAL, "request: the commit message is empty");
    size_t bad = asr_utf8_valid_prefix((const unsigned char *)m, n);
    if (bad != n)
        return asr_err_set(err, ASR_EINVAL,
                           "request: the commit message is not valid UTF-8 (offset %zu)", bad);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)m[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
            return asr_err_set(err, ASR_EINVAL,
                               "request: the commit message has a control character (0x%02x at "
                               "offset %zu)",
                               c, i);
    }
    static const char *const need[] = {"Asr-Incident", "Asr-Strategy", "Asr-Plan"};
    for (size_t i = 0; i < 3; i++) {
        char *v = trailer(m, need[i]);
        if (v == NULL || v[0] == '\0') {
            free(v);
            return asr_err_set(err, ASR_EINVAL,
                               "request: the commit message has no '%s:' trailer (asr commits "
                               "carry Asr-Incident, Asr-Plan and Asr-Strategy)",
                               need[i]);
        }
        if (i == 2)
            *plan = v;
        else
            free(v);
    }
    return 0;
}

/* The realpath of p, or of its parent plus its last component when p does not exist. */
static char *real_or_parent(const char *p)
{
    char *r = realpath(p, NULL);
    if (r != NULL)
        return r;
    const char *slash = strrchr(p, '/');
    if (slash == NULL || slash[1] == '\0')
        return NULL;
    char *dir = strndup(p, slash == p ? 1 : (size_t)(slash - p));
    char *rd = dir != NULL ? realpath(dir, NULL) : NULL;
    free(dir);
    if (rd == NULL)
        return NULL;
    size_t n = strlen(rd) + strlen(slash) + 1;
    char *o = malloc(n);
    if (o != NULL)
        snprintf(o, n, "%s%s", strcmp(rd, "/") == 0 ? "" : rd, slash);
    free(rd);
    return o;
}

/*
 * The forbidden paths of the request as paths in the tree (relative to the top of the work
 * tree), for the ones inside it; the others cannot be reached by an edit and are dropped.
 */
static int forbidden_in_tree(char **list, const char *repo_real, const char *top, char ***out,
                             struct asr_err *err)
{
    size_t n = 0;
    while (list != NULL && list[n] != NULL)
        n++;
    char **o = calloc(n + 1, sizeof(*o));
    if (o == NULL)
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    size_t k = 0, tl = strlen(top);
    for (size_t i = 0; i < n; i++) {
        char *abs = NULL;
        if (list[i][0] == '/') {
            abs = strdup(list[i]);
        } else {
            size_t m = strlen(repo_real) + strlen(list[i]) + 2;
            abs = malloc(m);
            if (abs != NULL)
                snprintf(abs, m, "%s/%s", repo_real, list[i]);
        }
        char *r = abs != NULL ? real_or_parent(abs) : NULL;
        free(abs);
        if (r != NULL && strncmp(r, top, tl) == 0 && r[tl] == '/' && r[tl + 1] != '\0') {
            o[k] = strdup(r + tl + 1);
            if (o[k] != NULL)
                k++;
        }
        free(r);
    }
    *out = o;
    return 0;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

/* The work tree's top and the folder of repo inside it ("" at the top). */
static int locate(git_repository *repo, const char *path, char **top, char **repo_real,
                  char **prefix, struct asr_err *err)
{
    const char *wd = git_repository_workdir(repo);
    *top = wd != NULL ? realpath(wd, NULL) : NULL;
    *repo_real = realpath(path, NULL);
    *prefix = NULL;
    if (*top == NULL || *repo_real == NULL)
        return asr_err_set(err, ASR_EGIT, "git: %s: cannot locate the work tree", path);
    size_t tl = strlen(*top);
    const char *rel = "";
    if (strcmp(*repo_real, *top) != 0) {
        if (strncmp(*repo_real, *top, tl) != 0 || (*repo_real)[tl] != '/')
            return asr_err_set(err, ASR_EGIT, "git: %s is not inside its work tree %s", path, *top);
        rel = *repo_real + tl + 1;
    }
    *prefix = strdup(rel);
    if (*prefix == NULL)
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    return 0;
}

/* A file of the commit being made. */
struct cfile {
    const char *path; /* the edits' path (relative to the service folder) */
    char *tree_path;  /* the same, relative to the top of the tree */
    bool exists;
    git_filemode_t mode;
    char *orig;
    size_t orig_len;
    char *out;
    size_t out_len;
    git_oid blob;
};

/*
 * Looks tree_path up in tree one component at a time: every directory on the way must be a
 * directory of the tree (not a symlink, a submodule or a file), and the file itself a regular
 * file or executable (or missing, for a create). Reads the file's blob into f.
 */
static int read_in_tree(git_repository *repo, git_tree *root, struct cfile *f, size_t editno,
                        struct asr_err *err)
{
    git_tree *tree = root;
    const char *p = f->tree_path;
    int rc = 0;
    char seg[256];
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t m = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (m >= sizeof(seg)) {
            rc = asr_err_set(err, ASR_EINVAL, "refused: edit %zu (%s): a component is too long",
                             editno, f->path);
            break;
        }
        memcpy(seg, p, m);
        seg[m] = '\0';
        const git_tree_entry *te = git_tree_entry_byname(tree, seg);
        int where = (int)(p - f->tree_path + m);
        git_filemode_t mode = te != NULL ? git_tree_entry_filemode(te) : 0;
        if (slash != NULL) {
            if (te == NULL) {
                rc = asr_err_set(err, ASR_ENOENT,
                                 "refused: edit %zu (%s): directory '%.*s' does not exist in the "
                                 "base commit",
                                 editno, f->path, where, f->tree_path);
                break;
            }
            if (mode != GIT_FILEMODE_TREE) {
                rc = asr_err_set(err, ASR_EINVAL, "refused: edit %zu (%s): '%.*s' is %s", editno,
                                 f->path, where, f->tree_path,
                                 mode == GIT_FILEMODE_LINK     ? "a symlink (refused)"
                                 : mode == GIT_FILEMODE_COMMIT ? "a submodule (refused)"
                                                               : "not a directory");
                break;
            }
            git_tree *sub = NULL;
            if (git_tree_lookup(&sub, repo, git_tree_entry_id(te)) != 0) {
                rc = asr_err_set(err, ASR_EGIT, "git: %s: %s", f->tree_path, git_msg());
                break;
            }
            if (tree != root)
                git_tree_free(tree);
            tree = sub;
            p = slash + 1;
            continue;
        }
        if (te == NULL) {
            f->exists = false;
            f->mode = GIT_FILEMODE_BLOB;
            break;
        }
        if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE) {
            rc = asr_err_set(err, ASR_EINVAL, "refused: edit %zu (%s): the file is %s", editno,
                             f->path,
                             mode == GIT_FILEMODE_LINK     ? "a symlink (refused)"
                             : mode == GIT_FILEMODE_COMMIT ? "a submodule (refused)"
                             : mode == GIT_FILEMODE_TREE   ? "a directory"
                                                           : "not a regular file");
            break;
        }
        git_blob *blob = NULL;
        if (git_blob_lookup(&blob, repo, git_tree_entry_id(te)) != 0) {
            rc = asr_err_set(err, ASR_EGIT, "git: %s: %s", f->tree_path, git_msg());
            break;
        }
        git_object_size_t sz = git_blob_rawsize(blob);
        if (sz > ASR_EDITS_MAX_FILE) {
            git_blob_free(blob);
            rc = asr_err_set(err, ASR_ETOOBIG,
                             "refused: edit %zu (%s): file of %llu bytes exceeds the cap of %u",
                             editno, f->path, (unsigned long long)sz, ASR_EDITS_MAX_FILE);
            break;
        }
        f->orig = malloc((size_t)sz + 1);
        if (f->orig == NULL) {
            git_blob_free(blob);
            rc = asr_err_set(err, ASR_ENOMEM, "out of memory");
            break;
        }
        memcpy(f->orig, git_blob_rawcontent(blob), (size_t)sz);
        f->orig_len = (size_t)sz;
        f->exists = true;
        f->mode = mode;
        git_blob_free(blob);
        break;
    }
    if (tree != root)
        git_tree_free(tree);
    return rc;
}

/* The request's edits, checked by the edit rules (form, caps, NUL bytes, CRLF). */
static int get_edits(const json_t *root, struct asr_edits *e, struct asr_err *err)
{
    static const char *const keys[] = {"path", "search", "replace", NULL};
    const json_t *a = json_object_get(root, "edits");
    if (!json_is_array(a) || json_array_size(a) == 0)
        return asr_err_set(err, ASR_EINVAL, "request: 'edits' must be a non-empty list");
    if (json_array_size(a) > ASR_EDITS_MAX_BLOCKS)
        return asr_err_set(err, ASR_ETOOBIG, "refused: %zu edits (at most %d)", json_array_size(a),
                           ASR_EDITS_MAX_BLOCKS);
    size_t i;
    const json_t *ed;
    json_array_foreach(a, i, ed)
    {
        char what[32], ex[80];
        snprintf(what, sizeof(what), "edits[%zu]", i);
        if (!json_is_object(ed))
            return asr_err_set(err, ASR_EINVAL, "request: %s must be {path, search, replace}",
                               what);
        int rc = only_keys(ed, keys, what, err);
        if (rc != 0)
            return rc;
        const json_t *p = json_object_get(ed, "path"), *s = json_object_get(ed, "search"),
                     *r = json_object_get(ed, "replace");
        if (!json_is_string(p) || !json_is_string(s) || !json_is_string(r))
            return asr_err_set(err, ASR_EINVAL,
                               "request: %s: path, search and replace must be "
                               "strings",
                               what);
        const char *ps = json_string_value(p);
        if (strlen(ps) != json_string_length(p))
            return asr_err_set(err, ASR_EINVAL,
                               "refused: edit %zu: path '%s' contains a NUL byte (at offset %zu)",
                               i + 1, shown(ex, sizeof(ex), ps, json_string_length(p)), strlen(ps));
        struct asr_err e2 = {0};
        rc = asr_edits_add(e, ps, json_string_value(s), json_string_length(s), json_string_value(r),
                           json_string_length(r), (int)i + 1, &e2);
        if (rc != 0)
            return asr_err_set(err, rc, "refused: %s", e2.msg);
    }
    return 0;
}

/* Whether commit c (its message) is an asr commit of plan (and not a revert). */
static bool holds_plan(const git_commit *c, const char *plan)
{
    const char *m = git_commit_message(c);
    char *p = m != NULL ? trailer(m, "Asr-Plan") : NULL;
    char *rv = m != NULL ? trailer(m, "Asr-Reverts") : NULL;
    bool yes = p != NULL && rv == NULL && strcmp(p, plan) == 0;
    free(p);
    free(rv);
    return yes;
}

static bool reverts(const git_commit *c, const char *sha)
{
    const char *m = git_commit_message(c);
    char *rv = m != NULL ? trailer(m, "Asr-Reverts") : NULL;
    bool yes = rv != NULL && strcasecmp(rv, sha) == 0;
    free(rv);
    return yes;
}

/*
 * Walks the first-parent history of tip (at most ASR_GIT_MAX_HISTORY commits, stopping after
 * stop when given) for a commit match() accepts; its id in *found. Returns 1 found, 0 not.
 */
static int find_in_history(git_repository *repo, const git_oid *tip, const git_oid *stop,
                           bool (*match)(const git_commit *, const char *), const char *arg,
                           git_oid *found)
{
    git_oid cur = *tip;
    for (int i = 0; i < ASR_GIT_MAX_HISTORY; i++) {
        git_commit *c = NULL;
        if (git_commit_lookup(&c, repo, &cur) != 0)
            return 0;
        bool hit = match(c, arg);
        bool last = (stop != NULL && git_oid_equal(&cur, stop)) || git_commit_parentcount(c) == 0;
        if (hit)
            *found = cur;
        if (!hit && !last)
            cur = *git_commit_parent_id(c, 0);
        git_commit_free(c);
        if (hit)
            return 1;
        if (last)
            return 0;
    }
    return 0;
}

/* Reads and checks the common part of a request: JSON object, keys, repo. */
static int parse_request(const char *req, size_t len, const char *const *keys, json_t **root,
                         struct asr_err *err)
{
    if (len > ASR_GIT_MAX_REQUEST)
        return asr_err_set(err, ASR_ETOOBIG, "request: %zu bytes exceeds the cap of %u", len,
                           ASR_GIT_MAX_REQUEST);
    json_error_t je;
    /* NUL bytes are let through the JSON decoder so that the checks below can name them. */
    *root = json_loadb(req, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (*root == NULL)
        return asr_err_set(err, ASR_EPARSE, "request: not JSON: %s (line %d, column %d)", je.text,
                           je.line, je.column);
    if (!json_is_object(*root))
        return asr_err_set(err, ASR_EPARSE, "request: expected a JSON object");
    return only_keys(*root, keys, "the request", err);
}

int asr_git_commit_edits(const char *req, size_t len, char sha[41], bool *existed,
                         struct asr_err *err)
{
    static const char *const keys[] = {"repo",  "base",    "branch", "patch_paths", "forbidden",
                                       "edits", "message", "author", NULL};
    json_t *root = NULL;
    struct asr_edits e = {0};
    char **globs = NULL, **forbid = NULL, **forbid_tree = NULL;
    char *plan = NULL, *top = NULL, *repo_real = NULL, *prefix = NULL;
    const char *repo_path, *base, *branch, *message;
    git_repository *repo = NULL;
    git_signature *sig = NULL;
    git_commit *parent = NULL;
    git_tree *tree = NULL;
    git_reference *ref = NULL;
    struct cfile files[ASR_GIT_MAX_FILES];
    size_t nf = 0;
    char refname[256];
    bool branch_exists = false;
    git_oid base_oid, tip_oid;
    *existed = false;
    pthread_once(&git_once, git_init_once);

    /* 1. The request: shape, branch, message and its trailers, author. */
    int rc = parse_request(req, len, keys, &root, err);
    if (rc == 0)
        rc = get_str(root, "repo", 4096, true, &repo_path, err);
    if (rc == 0)
        rc = get_str(root, "base", 40, true, &base, err);
    if (rc == 0 && !is_hex40(base))
        rc = asr_err_set(err, ASR_EINVAL, "request: 'base' must be a full 40-hex commit sha");
    if (rc == 0)
        rc = get_str(root, "branch", 200, true, &branch, err);
    if (rc == 0)
        rc = check_branch(branch, refname, sizeof(refname), err);
    if (rc == 0)
        rc = get_str(root, "message", ASR_GIT_MAX_MESSAGE, true, &message, err);
    if (rc == 0)
        rc = check_message(message, &plan, err);
    if (rc == 0)
        rc = get_list(root, "patch_paths", 64, &globs, err);
    if (rc == 0)
        rc = get_list(root, "forbidden", 64, &forbid, err);
    if (rc == 0)
        rc = get_author(root, &sig, err);
    /* 2. The edits: the edit rules (form, caps, NUL), then each path's form and patch_paths. */
    if (rc == 0)
        rc = get_edits(root, &e, err);
    if (rc == 0) {
        struct asr_err e2 = {0};
        rc = asr_edits_check_paths(&e, globs, &e2);
        if (rc != 0)
            rc = asr_err_set(err, rc, "refused: %s", e2.msg);
    }
    if (rc != 0)
        goto out;
    /* 3. The repository, and where the service's folder is in it. */
    if (git_repository_open_ext(&repo, repo_path, 0, NULL) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: %s: not inside a git repository: %s", repo_path,
                         git_msg());
        goto out;
    }
    if (git_repository_is_bare(repo)) {
        rc = asr_err_set(err, ASR_EGIT, "git: %s: bare repositories are not supported", repo_path);
        goto out;
    }
    rc = locate(repo, repo_path, &top, &repo_real, &prefix, err);
    if (rc == 0)
        rc = forbidden_in_tree(forbid, repo_real, top, &forbid_tree, err);
    if (rc != 0)
        goto out;
    /* 4. Each file, by its path in the tree: CI and git control files, the forbidden paths. */
    for (size_t i = 0; i < e.n && rc == 0; i++) {
        const char *path = e.v[i].path;
        struct cfile *f = NULL;
        for (size_t k = 0; k < nf && f == NULL; k++)
            if (strcmp(files[k].path, path) == 0)
                f = &files[k];
        if (f != NULL)
            continue;
        if (nf == ASR_GIT_MAX_FILES) {
            rc = asr_err_set(err, ASR_ETOOBIG, "refused: the edits change more than %d files",
                             ASR_GIT_MAX_FILES);
            break;
        }
        f = &files[nf++];
        memset(f, 0, sizeof(*f));
        f->path = path;
        size_t n = strlen(prefix) + strlen(path) + 2;
        f->tree_path = malloc(n);
        if (f->tree_path == NULL) {
            rc = asr_err_set(err, ASR_ENOMEM, "out of memory");
            break;
        }
        snprintf(f->tree_path, n, "%s%s%s", prefix, prefix[0] ? "/" : "", path);
        const char *why = ci_problem(f->tree_path);
        if (why != NULL) {
            rc = asr_err_set(err, ASR_EINVAL, "refused: edit %zu: '%s' %s", i + 1, f->tree_path,
                             why);
            break;
        }
        for (size_t k = 0; forbid_tree[k] != NULL; k++) {
            size_t fl = strlen(forbid_tree[k]);
            if (strncasecmp(f->tree_path, forbid_tree[k], fl) == 0 &&
                (f->tree_path[fl] == '\0' || f->tree_path[fl] == '/')) {
                rc = asr_err_set(err, ASR_EINVAL,
                                 "refused: edit %zu: '%s' is a forbidden path (the asr "
                                 "configuration or another path asr must not change)",
                                 i + 1, f->tree_path);
                break;
            }
        }
    }
    if (rc != 0)
        goto out;
    /* 5. The parent: the branch's tip when it exists (or the commit it already holds), else
     * base. */
    git_commit *base_commit = NULL;
    if (git_oid_fromstr(&base_oid, base) != 0 ||
        git_commit_lookup(&base_commit, repo, &base_oid) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: no commit %s: %s", base, git_msg());
        goto out;
    }
    git_commit_free(base_commit);
    if (git_reference_lookup(&ref, repo, refname) == 0) {
        git_reference *res = NULL;
        if (git_reference_resolve(&res, ref) != 0) {
            rc = asr_err_set(err, ASR_EGIT, "git: %s: %s", refname, git_msg());
            goto out;
        }
        tip_oid = *git_reference_target(res);
        git_reference_free(res);
        branch_exists = true;
        git_oid found;
        if (find_in_history(repo, &tip_oid, &base_oid, holds_plan, plan, &found) == 1) {
            git_oid_tostr(sha, 41, &found);
            *existed = true;
            goto out;
        }
        if (!git_oid_equal(&tip_oid, &base_oid) &&
            git_graph_descendant_of(repo, &tip_oid, &base_oid) != 1) {
            char t[41];
            git_oid_tostr(t, sizeof(t), &tip_oid);
            rc = asr_err_set(err, ASR_EINVAL,
                             "refused: branch %s exists at %.12s, which does not contain the "
                             "base %.12s",
                             branch, t, base);
            goto out;
        }
    } else {
        tip_oid = base_oid;
    }
    if (git_commit_lookup(&parent, repo, &tip_oid) != 0 || git_commit_tree(&tree, parent) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: cannot read the parent commit: %s", git_msg());
        goto out;
    }
    /* 6. Each file in the parent's tree (no symlink or submodule on the way), the edits applied
     * in memory, text only, caps, and a change. */
    size_t total = 0;
    bool changed = false;
    for (size_t k = 0; k < nf && rc == 0; k++) {
        struct cfile *f = &files[k];
        size_t editno = 0;
        for (size_t i = 0; i < e.n && editno == 0; i++)
            if (strcmp(e.v[i].path, f->path) == 0)
                editno = i + 1;
        rc = read_in_tree(repo, tree, f, editno, err);
        if (rc != 0)
            break;
        struct asr_err e2 = {0};
        rc = asr_edits_apply_buffer(&e, f->path, f->exists ? f->orig : NULL, f->orig_len, &f->out,
                                    &f->out_len, &e2);
        if (rc != 0) {
            rc = asr_err_set(err, rc, "refused: %s", e2.msg);
            break;
        }
        total += f->out_len;
        if (total > ASR_GIT_MAX_TOTAL)
            rc = asr_err_set(err, ASR_ETOOBIG,
                             "refused: the changed files hold more than %u bytes together",
                             ASR_GIT_MAX_TOTAL);
        changed = changed || !f->exists || f->out_len != f->orig_len ||
                  memcmp(f->out, f->orig, f->out_len) != 0;
    }
    if (rc == 0 && !changed)
        rc = asr_err_set(err, ASR_EINVAL, "refused: the edits change nothing");
    if (rc != 0)
        goto out;
    /* 7. Only now is anything written: blobs, trees, the commit, the branch. */
    git_tree_update upd[ASR_GIT_MAX_FILES];
    for (size_t k = 0; k < nf; k++) {
        struct cfile *f = &files[k];
        if (git_blob_create_from_buffer(&f->blob, repo, f->out, f->out_len) != 0) {
            rc = asr_err_set(err, ASR_EGIT, "git: writing %s: %s", f->tree_path, git_msg());
            goto out;
        }
        upd[k] = (git_tree_update){.action = GIT_TREE_UPDATE_UPSERT,
                                   .id = f->blob,
                                   .filemode = f->mode,
                                   .path = f->tree_path};
    }
    git_oid tree_oid, commit_oid;
    git_tree *new_tree = NULL;
    if (git_tree_create_updated(&tree_oid, repo, tree, nf, upd) != 0 ||
        git_tree_lookup(&new_tree, repo, &tree_oid) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: writing the tree: %s", git_msg());
        goto out;
    }
    const git_commit *parents[1] = {parent};
    int grc = git_commit_create(&commit_oid, repo, NULL, sig, sig, "UTF-8", message, new_tree, 1,
                                parents);
    git_tree_free(new_tree);
    if (grc != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: writing the commit: %s", git_msg());
        goto out;
    }
    git_reference *nref = NULL;
    char logmsg[128];
    snprintf(logmsg, sizeof(logmsg), "asr: commit plan %.64s", plan);
    grc = branch_exists ? git_reference_create_matching(&nref, repo, refname, &commit_oid, 1,
                                                        &tip_oid, logmsg)
                        : git_reference_create(&nref, repo, refname, &commit_oid, 0, logmsg);
    git_reference_free(nref);
    if (grc != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: updating %s: %s", refname, git_msg());
        goto out;
    }
    git_oid_tostr(sha, 41, &commit_oid);
out:
    for (size_t k = 0; k < nf; k++) {
        free(files[k].tree_path);
        free(files[k].orig);
        free(files[k].out);
    }
    git_reference_free(ref);
    git_tree_free(tree);
    git_commit_free(parent);
    git_signature_free(sig);
    git_repository_free(repo);
    free_strv(forbid_tree);
    free(globs);
    free(forbid);
    free(plan);
    free(top);
    free(repo_real);
    free(prefix);
    asr_edits_free(&e);
    json_decref(root);
    return rc;
}

/* The first line of a commit message, control characters dropped, at most 60 bytes (cut on a
 * character boundary). */
static void subject_of(const char *m, char *out, size_t cap)
{
    size_t j = 0, limit = cap - 1 < 60 ? cap - 1 : 60;
    for (size_t i = 0; m[i] != '\0' && m[i] != '\n' && j < limit; i++)
        if ((unsigned char)m[i] >= 0x20 && m[i] != 0x7f && m[i] != '"')
            out[j++] = m[i];
    while (j > 0 && j == limit && ((unsigned char)out[j] & 0xC0) == 0x80)
        j--;
    while (j > 0 && ((unsigned char)out[j - 1] & 0xC0) == 0xC0)
        j--; /* a lead byte whose continuation was cut */
    out[j] = '\0';
}

int asr_git_revert(const char *req, size_t len, char sha[41], bool *existed, struct asr_err *err)
{
    static const char *const keys[] = {"repo", "branch", "commit", "reason", "author", NULL};
    json_t *root = NULL;
    const char *repo_path, *branch, *target, *reason = NULL;
    char refname[256];
    git_repository *repo = NULL;
    git_signature *sig = NULL;
    git_reference *ref = NULL;
    git_commit *tip = NULL, *victim = NULL;
    git_index *index = NULL;
    git_tree *tree = NULL;
    char *incident = NULL, *plan = NULL, *msg = NULL;
    git_oid tip_oid, victim_oid, found;
    *existed = false;
    pthread_once(&git_once, git_init_once);

    int rc = parse_request(req, len, keys, &root, err);
    if (rc == 0)
        rc = get_str(root, "repo", 4096, true, &repo_path, err);
    if (rc == 0)
        rc = get_str(root, "branch", 200, true, &branch, err);
    if (rc == 0)
        rc = check_branch(branch, refname, sizeof(refname), err);
    if (rc == 0)
        rc = get_str(root, "commit", 40, true, &target, err);
    if (rc == 0 && !is_hex40(target))
        rc = asr_err_set(err, ASR_EINVAL, "request: 'commit' must be a full 40-hex commit sha");
    if (rc == 0)
        rc = get_str(root, "reason", 1024, false, &reason, err);
    for (size_t i = 0; rc == 0 && reason != NULL && reason[i] != '\0'; i++)
        if ((unsigned char)reason[i] < 0x20 || reason[i] == 0x7f)
            rc = asr_err_set(err, ASR_EINVAL, "request: 'reason' has a control character");
    if (rc == 0 && reason != NULL &&
        asr_utf8_valid_prefix((const unsigned char *)reason, strlen(reason)) != strlen(reason))
        rc = asr_err_set(err, ASR_EINVAL, "request: 'reason' is not valid UTF-8");
    if (rc == 0)
        rc = get_author(root, &sig, err);
    if (rc != 0)
        goto out;
    if (git_repository_open_ext(&repo, repo_path, 0, NULL) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: %s: not inside a git repository: %s", repo_path,
                         git_msg());
        goto out;
    }
    git_reference *res = NULL;
    if (git_reference_lookup(&ref, repo, refname) != 0 || git_reference_resolve(&res, ref) != 0) {
        rc = asr_err_set(err, ASR_ENOENT, "refused: no branch %s", branch);
        goto out;
    }
    tip_oid = *git_reference_target(res);
    git_reference_free(res);
    git_oid_fromstr(&victim_oid, target);
    /* Idempotent: a revert of this commit already on the branch. */
    if (find_in_history(repo, &tip_oid, NULL, reverts, target, &found) == 1) {
        git_oid_tostr(sha, 41, &found);
        *existed = true;
        goto out;
    }
    if (!git_oid_equal(&tip_oid, &victim_oid) &&
        git_graph_descendant_of(repo, &tip_oid, &victim_oid) != 1) {
        rc = asr_err_set(err, ASR_EINVAL, "refused: commit %.12s is not on branch %s", target,
                         branch);
        goto out;
    }
    if (git_commit_lookup(&tip, repo, &tip_oid) != 0 ||
        git_commit_lookup(&victim, repo, &victim_oid) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: %s", git_msg());
        goto out;
    }
    if (git_commit_parentcount(victim) != 1) {
        rc = asr_err_set(err, ASR_EINVAL, "refused: commit %.12s is a merge or a root commit",
                         target);
        goto out;
    }
    /* The revert, as an index in memory: nothing is written to the repository's own index. */
    if (git_revert_commit(&index, repo, victim, tip, 0, NULL) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: reverting %.12s: %s", target, git_msg());
        goto out;
    }
    if (git_index_has_conflicts(index)) {
        rc = asr_err_set(err, ASR_EINVAL,
                         "refused: reverting %.12s conflicts with later commits of %s", target,
                         branch);
        goto out;
    }
    const char *vm = git_commit_message(victim);
    incident = vm != NULL ? trailer(vm, "Asr-Incident") : NULL;
    plan = vm != NULL ? trailer(vm, "Asr-Plan") : NULL;
    char subject[64];
    subject_of(vm != NULL ? vm : "", subject, sizeof(subject));
    size_t cap = 1024 + (reason != NULL ? strlen(reason) : 0) +
                 (incident != NULL ? strlen(incident) : 0) + (plan != NULL ? strlen(plan) : 0);
    msg = malloc(cap);
    if (msg == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "out of memory");
        goto out;
    }
    int w = snprintf(msg, cap, "Revert \"%s\"\n\nThis reverts commit %s.\n", subject, target);
    if (reason != NULL && reason[0] != '\0')
        w += snprintf(msg + w, cap - (size_t)w, "\n%s\n", reason);
    w += snprintf(msg + w, cap - (size_t)w, "\n");
    if (incident != NULL)
        w += snprintf(msg + w, cap - (size_t)w, "Asr-Incident: %s\n", incident);
    if (plan != NULL)
        w += snprintf(msg + w, cap - (size_t)w, "Asr-Plan: %s\n", plan);
    snprintf(msg + w, cap - (size_t)w, "Asr-Reverts: %s\n", target);
    git_oid tree_oid, commit_oid;
    if (git_index_write_tree_to(&tree_oid, index, repo) != 0 ||
        git_tree_lookup(&tree, repo, &tree_oid) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: writing the tree: %s", git_msg());
        goto out;
    }
    const git_commit *parents[1] = {tip};
    if (git_commit_create(&commit_oid, repo, NULL, sig, sig, "UTF-8", msg, tree, 1, parents) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: writing the commit: %s", git_msg());
        goto out;
    }
    git_reference *nref = NULL;
    char logmsg[80];
    snprintf(logmsg, sizeof(logmsg), "asr: revert %.12s", target);
    int grc = git_reference_create_matching(&nref, repo, refname, &commit_oid, 1, &tip_oid, logmsg);
    git_reference_free(nref);
    if (grc != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: updating %s: %s", refname, git_msg());
        goto out;
    }
    git_oid_tostr(sha, 41, &commit_oid);
out:
    free(msg);
    free(incident);
    free(plan);
    git_tree_free(tree);
    git_index_free(index);
    git_commit_free(victim);
    git_commit_free(tip);
    git_reference_free(ref);
    git_signature_free(sig);
    git_repository_free(repo);
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Pushing an asr branch: asr-git push (docs/patching.md)
 * ------------------------------------------------------------------------------------------- */

struct push_ctx {
    const char *token_env; /* the variable's name, for messages; NULL: none configured */
    const char *token;     /* its value, read lazily; never copied */
    bool plain_remote;     /* http:// to a host that is not loopback: the token is not sent */
    int cred_calls;
    char why[256];      /* our reason for failing inside a callback */
    char rejected[256]; /* the remote's status for our ref, when it refused it */
};

static int cred_cb(git_credential **out, const char *url, const char *user_from_url,
                   unsigned int allowed, void *payload)
{
    (void)url;
    (void)user_from_url;
    struct push_ctx *c = payload;
    if (c->token_env == NULL) {
        snprintf(c->why, sizeof(c->why),
                 "the remote asks for credentials and git.token_env names no token");
        return -1;
    }
    if (c->token == NULL)
        c->token = getenv(c->token_env);
    if (c->token == NULL || c->token[0] == '\0') {
        snprintf(c->why, sizeof(c->why),
                 "the remote asks for credentials and the environment variable %.100s "
                 "(token_env) is not set",
                 c->token_env);
        return -1;
    }
    if (c->plain_remote) {
        snprintf(c->why, sizeof(c->why),
                 "refusing to send the token over plain http to a host that is not loopback; "
                 "use https");
        return -1;
    }
    if (++c->cred_calls > 1) {
        snprintf(c->why, sizeof(c->why), "the remote refused the token in %.100s", c->token_env);
        return -1;
    }
    if (!(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT)) {
        snprintf(c->why, sizeof(c->why),
                 "the remote wants credentials other than a token (allowed types %u)", allowed);
        return -1;
    }
    return git_credential_userpass_plaintext_new(out, "x-access-token", c->token);
}

static int push_ref_cb(const char *refname, const char *status, void *payload)
{
    struct push_ctx *c = payload;
    if (status != NULL)
        snprintf(c->rejected, sizeof(c->rejected), "%s: %s", refname, status);
    return 0;
}

static bool host_is_loopback(const char *url)
{
    const char *p = strstr(url, "://");
    if (p == NULL)
        return false;
    p += 3;
    const char *at = strchr(p, '@'), *slash = strchr(p, '/');
    if (at != NULL && (slash == NULL || at < slash))
        p = at + 1;
    return strncmp(p, "localhost", 9) == 0 || strncmp(p, "127.", 4) == 0 ||
           strncmp(p, "[::1]", 5) == 0;
}

/* Whether the URL is one asr pushes to (https, http, file, or a local path), without credentials
 * in it. Returns NULL or the reason it is refused. */
static const char *remote_url_problem(const char *url)
{
    if (url == NULL || url[0] == '\0')
        return "it has no URL";
    const char *sep = strstr(url, "://");
    if (sep == NULL) {
        if (url[0] == '/')
            return NULL; /* a local path */
        return strchr(url, ':') != NULL
                   ? "it is an ssh remote (user@host:path); asr pushes over https with a token, "
                     "or to a local path"
                   : "it is neither a URL nor an absolute path";
    }
    if (strncmp(url, "file://", 7) == 0)
        return NULL;
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        return "only https://, http://, file:// and local paths are pushed to (no ssh or git "
               "protocol)";
    const char *host = sep + 3;
    size_t n = strcspn(host, "/?#");
    if (memchr(host, '@', n) != NULL)
        return "its URL carries credentials; use token_env instead";
    return NULL;
}

int asr_git_push(const char *req, size_t len, char sha[41], bool *existed, struct asr_err *err)
{
    static const char *const keys[] = {"repo",      "branch", "remote", "sha",
                                       "token_env", "force",  NULL};
    json_t *root = NULL;
    const char *repo_path, *branch, *remote_s, *want = NULL, *token_env = NULL;
    bool force = false;
    char refname[256], ex[80];
    git_repository *repo = NULL;
    git_remote *remote = NULL;
    git_oid local;
    struct push_ctx ctx = {0};
    char *named_url = NULL;
    *existed = false;
    pthread_once(&git_once, git_init_once);

    int rc = parse_request(req, len, keys, &root, err);
    if (rc == 0)
        rc = get_str(root, "repo", 4096, true, &repo_path, err);
    if (rc == 0)
        rc = get_str(root, "branch", 200, true, &branch, err);
    if (rc == 0)
        rc = check_branch(branch, refname, sizeof(refname), err);
    if (rc == 0)
        rc = get_str(root, "remote", 4096, true, &remote_s, err);
    if (rc == 0)
        rc = get_str(root, "sha", 40, false, &want, err);
    if (rc == 0 && want != NULL && !is_hex40(want))
        rc = asr_err_set(err, ASR_EINVAL, "request: 'sha' must be a full 40-hex commit sha");
    if (rc == 0)
        rc = get_str(root, "token_env", 128, false, &token_env, err);
    for (size_t i = 0; rc == 0 && token_env != NULL && token_env[i] != '\0'; i++)
        if (!(isalnum((unsigned char)token_env[i]) || token_env[i] == '_') ||
            (i == 0 && isdigit((unsigned char)token_env[0])))
            rc = asr_err_set(err, ASR_EINVAL,
                             "request: 'token_env' must be an environment variable name");
    if (rc == 0 && json_object_get(root, "force") != NULL) {
        if (!json_is_boolean(json_object_get(root, "force")))
            rc = asr_err_set(err, ASR_EINVAL, "request: 'force' must be true or false");
        else
            force = json_is_true(json_object_get(root, "force"));
    }
    if (rc != 0)
        goto out;
    for (const char *p = remote_s; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            rc = asr_err_set(err, ASR_EINVAL,
                             "request: 'remote' holds a space or control "
                             "character");
            goto out;
        }

    /* The repository and the branch's tip. */
    if (git_repository_open_ext(&repo, repo_path, 0, NULL) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: %s: not inside a git repository: %s", repo_path,
                         git_msg());
        goto out;
    }
    if (git_reference_name_to_id(&local, repo, refname) != 0) {
        rc = asr_err_set(err, ASR_ENOENT, "refused: no branch %s in %s", branch, repo_path);
        goto out;
    }
    git_oid_tostr(sha, 41, &local);
    if (want != NULL && strcasecmp(want, sha) != 0) {
        rc = asr_err_set(err, ASR_EINVAL, "refused: branch %s is at %.12s, not %.12s", branch, sha,
                         want);
        goto out;
    }

    /*
     * The remote: a configured one by name (its pushurl, else its url, read from the repository's
     * config), else a URL or a path. The URL checked is the URL pushed to: the remote is made
     * in memory without the config's url.<base>.insteadOf rewriting (which could send the push
     * elsewhere after the check; libgit2 1.5's rewriting also leaks its regex match data).
     */
    const char *url = NULL;
    bool named = strstr(remote_s, "://") == NULL && remote_s[0] != '/';
    if (named) {
        bool ok_name = true;
        for (const char *p = remote_s; *p != '\0' && ok_name; p++)
            ok_name = isalnum((unsigned char)*p) || strchr("-_.", *p) != NULL;
        char key[300];
        git_buf cfg_url = GIT_BUF_INIT;
        git_config *cfg = NULL;
        if (ok_name && git_repository_config_snapshot(&cfg, repo) == 0) {
            snprintf(key, sizeof(key), "remote.%s.pushurl", remote_s);
            if (git_config_get_string_buf(&cfg_url, cfg, key) != 0) {
                snprintf(key, sizeof(key), "remote.%s.url", remote_s);
                if (git_config_get_string_buf(&cfg_url, cfg, key) != 0)
                    ok_name = false;
            }
        } else {
            ok_name = false;
        }
        git_config_free(cfg);
        if (ok_name)
            named_url = strdup(cfg_url.ptr);
        git_buf_dispose(&cfg_url);
        if (!ok_name || named_url == NULL) {
            rc = asr_err_set(err, ASR_EINVAL,
                             "refused: remote '%s' is not a remote of the repository (nor a URL "
                             "or an absolute path)",
                             shown(ex, sizeof(ex), remote_s, strlen(remote_s)));
            goto out;
        }
        url = named_url;
    } else {
        url = remote_s;
    }
    const char *why = remote_url_problem(url);
    if (why != NULL) {
        rc = asr_err_set(err, ASR_EINVAL, "refused: remote '%s': %s",
                         shown(ex, sizeof(ex), remote_s, strlen(remote_s)), why);
        goto out;
    }
    git_remote_create_options ro;
    git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
    ro.repository = repo;
    ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    if (git_remote_create_with_opts(&remote, url, &ro) != 0) {
        rc = asr_err_set(err, ASR_EGIT, "git: remote '%s': %s",
                         shown(ex, sizeof(ex), remote_s, strlen(remote_s)), git_msg());
        goto out;
    }
    ctx.token_env = token_env;
    ctx.plain_remote = strncmp(url, "http://", 7) == 0 && !host_is_loopback(url);

    git_remote_connect_options co;
    git_remote_connect_options_init(&co, GIT_REMOTE_CONNECT_OPTIONS_VERSION);
    co.callbacks.credentials = cred_cb;
    co.callbacks.push_update_reference = push_ref_cb;
    co.callbacks.payload = &ctx;
    co.proxy_opts.type = GIT_PROXY_NONE;
    co.follow_redirects = GIT_REMOTE_REDIRECT_NONE;
    if (git_remote_connect_ext(remote, GIT_DIRECTION_PUSH, &co) != 0) {
        rc = asr_err_set(err, ctx.why[0] != '\0' ? ASR_ECONFIG : ASR_ENET,
                         "push: cannot reach remote '%s': %s",
                         shown(ex, sizeof(ex), remote_s, strlen(remote_s)),
                         ctx.why[0] != '\0' ? ctx.why : git_msg());
        goto out;
    }
    /* Where the remote's branch is now. */
    const git_remote_head **heads = NULL;
    size_t nheads = 0;
    const git_oid *theirs = NULL;
    if (git_remote_ls(&heads, &nheads, remote) != 0) {
        rc = asr_err_set(err, ASR_ENET, "push: listing remote '%s': %s",
                         shown(ex, sizeof(ex), remote_s, strlen(remote_s)), git_msg());
        goto out;
    }
    for (size_t i = 0; i < nheads && theirs == NULL; i++)
        if (strcmp(heads[i]->name, refname) == 0)
            theirs = &heads[i]->oid;
    if (theirs != NULL && git_oid_equal(theirs, &local)) {
        *existed = true;
        goto out;
    }
    char spec[2 * sizeof(refname) + 4];
    bool ff = theirs == NULL;
    if (theirs != NULL) {
        char t[41];
        git_oid_tostr(t, sizeof(t), theirs);
        ff = git_graph_descendant_of(repo, &local, theirs) == 1;
        if (!ff && !force) {
            rc = asr_err_set(err, ASR_EINVAL,
                             "refused: the remote's %s is at %.12s, which is not in the history "
                             "of %.12s (another writer?); not forced",
                             branch, t, sha);
            goto out;
        }
    }
    snprintf(spec, sizeof(spec), "%s%s:%s", ff ? "" : "+", refname, refname);
    char *specs[] = {spec};
    git_strarray refspecs = {specs, 1};
    git_push_options po;
    git_push_options_init(&po, GIT_PUSH_OPTIONS_VERSION);
    po.callbacks = co.callbacks;
    po.proxy_opts.type = GIT_PROXY_NONE;
    po.follow_redirects = GIT_REMOTE_REDIRECT_NONE;
    /* Only the upload: no tips are updated in the local repository (no remote-tracking refs). */
    if (git_remote_upload(remote, &refspecs, &po) != 0) {
        rc = asr_err_set(err, ctx.why[0] != '\0' ? ASR_ECONFIG : ASR_ENET,
                         "push: %s to remote '%s': %s", branch,
                         shown(ex, sizeof(ex), remote_s, strlen(remote_s)),
                         ctx.why[0] != '\0' ? ctx.why : git_msg());
        goto out;
    }
    if (ctx.rejected[0] != '\0') {
        rc = asr_err_set(err, ASR_ENET, "push: remote '%s' rejected %s",
                         shown(ex, sizeof(ex), remote_s, strlen(remote_s)), ctx.rejected);
        goto out;
    }
out:
    if (remote != NULL)
        git_remote_disconnect(remote);
    git_remote_free(remote);
    git_repository_free(repo);
    free(named_url);
    json_decref(root);
    return rc;
}
