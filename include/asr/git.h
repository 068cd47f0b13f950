/*
 * git.h - the git operations asr needs, through libgit2 (no `git` binary, no shell).
 *
 * A service's `repo` may be the top of a work tree or a folder inside one (the demo lives in
 * demo/app of the asr repository); `prefix` is that folder relative to the top.
 */
#ifndef ASR_GIT_H
#define ASR_GIT_H

#include "asr/error.h"

/*
 * Resolves ref (a branch, tag, "HEAD", a full or abbreviated sha; NULL means HEAD) in the
 * repository that contains path. Writes the commit's 40-hex sha into sha and, if prefix is not
 * NULL, a new string with the folder of path inside the work tree ("" at the top; caller frees).
 * Errors: ASR_EGIT with err naming the path or ref and libgit2's message.
 */
int asr_git_resolve(const char *path, const char *ref, char sha[41], char **prefix,
                    struct asr_err *err);

/*
 * Writes the tree of commit sha into dest (created; must not exist yet, or be empty), without
 * touching the repository's own index or work tree. The result is a clean checkout with no .git.
 * Safe to call from a worker thread: it opens its own repository handle.
 */
int asr_git_export(const char *path, const char *sha, const char *dest, struct asr_err *err);

#endif
