/*
 * git.h - the git operations asr needs, through libgit2 (no `git` binary, no shell).
 *
 * A service's `repo` may be the top of a work tree or a folder inside one (the demo lives in
 * demo/app of the asr repository); `prefix` is that folder relative to the top.
 */
#ifndef ASR_GIT_H
#define ASR_GIT_H

#include "asr/error.h"

#include <stdbool.h>
#include <stddef.h>

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

/* Caps of one in-memory commit (asr_git_commit_edits); each edit is also capped by the edit
 * rules (src/strategy/edits.h: 32 edits, 64 KiB per SEARCH or REPLACE, 8 MiB per file). */
#define ASR_GIT_MAX_REQUEST (8u * 1024u * 1024u) /* bytes of one JSON request */
#define ASR_GIT_MAX_FILES 16                     /* distinct files one commit changes */
#define ASR_GIT_MAX_TOTAL (16u * 1024u * 1024u)  /* bytes of all changed files, after the edits */
#define ASR_GIT_MAX_MESSAGE (16u * 1024u)        /* bytes of a commit message */
#define ASR_GIT_MAX_HISTORY 256 /* commits of a branch searched for an earlier identical one */

/*
 * Commits search/replace edits on a branch, in memory: the base commit's tree is read, the edits
 * are applied to its blobs (asr_edits_apply_buffer, strategy/edits.h), and new blobs, trees and
 * one commit are written to the object database, then refs/heads/<branch> is created (or moved
 * from its old tip with compare-and-swap). The repository's HEAD, index and work tree are never
 * touched, and no work tree is made. docs/patching.md is the reference.
 *
 * req is a JSON object of len bytes (at most ASR_GIT_MAX_REQUEST):
 *   {"repo": PATH, "base": SHA, "branch": "asr/...", "patch_paths": [GLOB...],
 *    "forbidden": [PATH...], "edits": [{"path", "search", "replace"}...], "message": TEXT,
 *    "author": {"name", "email"}}
 * repo is the service's folder (the top of a work tree or a folder inside one); edit paths and
 * patch_paths are relative to it; forbidden paths are absolute or relative to it (the asr config).
 * Everything is validated before any object is written: the request's shape, the edits' form and
 * caps, the paths (form, patch_paths, .git, CI files, forbidden paths, symlinks and submodules
 * anywhere on the way in the tree), text only, file and byte caps, and that the edits apply and
 * change something. The message must carry the trailers Asr-Incident, Asr-Plan and Asr-Strategy.
 *
 * Idempotent: when the branch already holds a commit with the same Asr-Plan trailer (not a
 * revert), its sha is returned with *existed set and nothing is written. A branch that exists
 * without one must contain base; the new commit goes on its tip.
 *
 * On success writes the commit's sha into sha. Returns 0, ASR_EINVAL (refused: err says what
 * and why), ASR_ENOENT (a file or directory the edits need is missing), ASR_ETOOBIG (a cap),
 * ASR_EPARSE (the request is not JSON), ASR_EGIT or ASR_ENOMEM.
 */
int asr_git_commit_edits(const char *req, size_t len, char sha[41], bool *existed,
                         struct asr_err *err);

/*
 * Reverts a commit of a branch with a new commit on its tip (history is never rewritten),
 * in memory like asr_git_commit_edits. req:
 *   {"repo": PATH, "branch": "asr/...", "commit": SHA, "reason"?: TEXT,
 *    "author": {"name", "email"}}
 * The message is `Revert "<subject>"`, "This reverts commit <sha>.", the reason, and the
 * trailers Asr-Incident and Asr-Plan of the reverted commit plus `Asr-Reverts: <sha>`.
 * Idempotent: when the branch already holds a commit with that Asr-Reverts trailer, its sha is
 * returned with *existed set. The commit must be on the branch (its first-parent history) and
 * the revert must apply without conflicts. Same returns as asr_git_commit_edits.
 */
int asr_git_revert(const char *req, size_t len, char sha[41], bool *existed, struct asr_err *err);

/*
 * Pushes one asr branch, refs/heads/<branch>, to a remote, with libgit2, and nothing else: the
 * refspec is built from the checked branch name alone, so no other ref can be pushed. req:
 *   {"repo": PATH, "branch": "asr/...", "remote": REMOTE, "sha"?: SHA, "token_env"?: NAME,
 *    "force"?: false}
 * REMOTE is a remote of the repository by name ("origin"), an https://, http:// or file:// URL,
 * or an absolute path to a repository (a bare one, typically); its URL may not carry credentials,
 * and ssh remotes are refused. sha, when given, must be the branch's tip (so the executor pushes
 * exactly the commit it made). For https, the token is read from the environment variable
 * token_env names, by this process, and given to libgit2's credential callback as
 * x-access-token:<token> (GitHub's convention); never over plain http to a host that is not
 * loopback. Redirects are not followed and no proxy is used.
 *
 * Idempotent: when the remote already has the branch at the same commit, nothing is sent and
 * *existed is set. When it has the branch at a commit the local branch descends from, the push
 * fast-forwards it. When it has it at a commit that is not in the local branch's history
 * (another writer), the push is refused unless force is true, and force only ever applies to
 * that asr/ branch.
 *
 * On success writes the branch's sha into sha. Returns 0, ASR_EINVAL (refused: err says why),
 * ASR_ENOENT (no such branch), ASR_EPARSE, ASR_ENET (the remote could not be reached, or
 * rejected the push: err has its words), ASR_ECONFIG (credentials missing or refused), ASR_EGIT.
 */
int asr_git_push(const char *req, size_t len, char sha[41], bool *existed, struct asr_err *err);

#endif
