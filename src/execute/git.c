/*
 * git.c - resolve and export commits with libgit2 (see git.h).
 */
#include "asr/git.h"

#include <git2.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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
