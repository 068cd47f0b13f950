/*
 * patch.h - the executor's side of a patch step: the commit message, and the asr-git helper run
 * as a child process to commit a plan's edits on a branch, or to revert that commit, without
 * blocking the loop.
 *
 * Place in the pipeline: EXECUTE. A plan's patch step (its "edits", checked by the whitelist in
 * actions.c) becomes a commit on refs/heads/asr/incident-<id> of the service's repository, made
 * in memory by `asr-git commit-edits` (src/execute/git.c; docs/patching.md): the daemon never
 * loads libgit2, and the operator's HEAD, index and work tree are never touched. A failed patch
 * is undone by `asr-git revert`: a new commit, never a rewrite of history. The branch can then be
 * pushed to the service's git.remote by `asr-git push` (and a pull request opened, github.h).
 * All three are idempotent (a restarted daemon that asks again gets the same sha back, marked
 * "existing").
 */
#ifndef ASR_EXECUTE_PATCH_H
#define ASR_EXECUTE_PATCH_H

#include "asr/config.h"
#include "asr/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define ASR_PATCH_TITLE_MAX 72           /* bytes of the title in "fix(<service>): <title>" */
#define ASR_PATCH_WRAP 72                /* columns the rationale is wrapped at */
#define ASR_PATCH_RATIONALE_MAX 4096u    /* bytes of rationale kept in the message */
#define ASR_PATCH_TIMEOUT_MS 60000       /* default time an asr-git run may take */
#define ASR_PATCH_OUTPUT_CAP (16 * 1024) /* bytes of asr-git output read */

/*
 * The message of asr's commit of a plan:
 *
 *     fix(<service>): <title>
 *
 *     <rationale, wrapped at ASR_PATCH_WRAP columns>
 *
 *     Asr-Incident: <incident>
 *     Asr-Plan: <plan>
 *     Asr-Strategy: <strategy>
 *
 * The title is made one line: control characters (newlines included) become spaces, runs of
 * blanks one space, invalid UTF-8 '?', and it is cut at ASR_PATCH_TITLE_MAX bytes on a character
 * boundary; an empty title becomes "remediate incident <incident>". The service name keeps only
 * letters, digits and . _ - (others become '-'). The rationale (may be NULL or empty: then no
 * paragraph) is cleaned the same way but keeps its paragraphs (blank lines), is cut at
 * ASR_PATCH_RATIONALE_MAX bytes with " [...]", and its lines are wrapped at word boundaries; a
 * line of it that looks like a trailer ("Key: value") cannot add trailers, since the trailers
 * are git's last paragraph only. strategy must be "playbook", "history" or "llm".
 * Returns a new string (caller frees), or NULL when out of memory or strategy is not one of those.
 */
char *asr_patch_message(const char *service, const char *title, const char *rationale,
                        int64_t incident, int64_t plan, const char *strategy);

/* The branch of an incident, "asr/incident-<id>", into buf. */
void asr_patch_branch(int64_t incident, char *buf, size_t cap);

/* What asr-git answered. error is NULL on success; strings are valid during the callback only. */
struct asr_patch_result {
    int rc;            /* 0, or ASR_EGIT (refused or failed: see error), ASR_ETIMEOUT, ... */
    char sha[41];      /* the commit on success */
    bool existed;      /* the branch already held it: nothing was written this time */
    const char *error; /* asr-git's one-line reason (e.g. "refused: edit 2: ... symlink") */
};

typedef void (*asr_patch_done_cb)(const struct asr_patch_result *r, void *data);

/* A commit of a plan's edits (see asr_git_commit_edits in include/asr/git.h for the fields). */
struct asr_patch_commit_req {
    const char *git_exe;   /* the asr-git binary */
    const char *state_dir; /* the request is written to <state_dir>/patches/, 0600, then removed */
    const char *repo;      /* the service's folder */
    const char *base;      /* the 40-hex commit the edits apply to */
    int64_t incident;      /* the branch is asr/incident-<incident> */
    asr_argv patch_paths;  /* the service's policy.patch_paths */
    asr_argv forbidden;    /* paths never changed: the asr config (absolute or relative to repo) */
    const json_t *edits;   /* the plan step's [{path, search, replace}...] */
    const char *message;   /* asr_patch_message() */
    const char *author_name, *author_email;
    int timeout_ms; /* 0: ASR_PATCH_TIMEOUT_MS */
};

/* A revert of commit on the incident's branch. */
struct asr_patch_revert_req {
    const char *git_exe, *state_dir, *repo;
    int64_t incident;
    const char *commit; /* 40 hex */
    const char *reason; /* one line for the message, e.g. "the build failed"; may be NULL */
    const char *author_name, *author_email;
    int timeout_ms;
};

/* A push of the incident's branch to the service's git.remote (see asr_git_push in
 * include/asr/git.h). */
struct asr_patch_push_req {
    const char *git_exe, *state_dir, *repo;
    int64_t incident;      /* the branch asr/incident-<incident> is pushed, and nothing else */
    const char *sha;       /* NULL, or the 40-hex commit the branch must be at */
    const char *remote;    /* git.remote: a remote's name, a URL or an absolute path */
    const char *token_env; /* git.token_env, or NULL; asr-git reads the token itself */
    bool force;            /* replace a remote branch that is not in the local history */
    int timeout_ms;        /* 0: ASR_PATCH_TIMEOUT_MS */
};

struct asr_patch_op;

/*
 * Starts `asr-git commit-edits REQUEST` as a child on loop (argv only, no shell) and calls done
 * once with the result; the operation then frees itself. *out (may be NULL) is a handle for
 * asr_patch_cancel until done has been called. Returns 0, or ASR_EINVAL (a field missing or
 * malformed), ASR_EIO (the request file cannot be written), ASR_ESPAWN or ASR_ENOMEM with err
 * set; done is not called then.
 */
int asr_patch_commit(uv_loop_t *loop, const struct asr_patch_commit_req *req,
                     asr_patch_done_cb done, void *data, struct asr_patch_op **out,
                     struct asr_err *err);

/* The same for `asr-git revert REQUEST`. */
int asr_patch_revert(uv_loop_t *loop, const struct asr_patch_revert_req *req,
                     asr_patch_done_cb done, void *data, struct asr_patch_op **out,
                     struct asr_err *err);

/* Removes refs/heads/asr/incident-<incident>.lock of the repository holding repo, which an
 * asr-git killed while it updated the branch leaves behind (libgit2 then refuses every later
 * update of the branch). Only for a daemon that knows no asr-git of its own is running for the
 * incident: a restarted one, whose old children all died with it. *removed says whether there was
 * one. */
int asr_patch_clear_stale_lock(const char *repo, int64_t incident, bool *removed,
                               struct asr_err *err);

/*
 * The same for `asr-git push REQUEST`: r->sha is the branch's commit, r->existed says the remote
 * already had it (nothing was sent). Errors (r->rc ASR_EGIT) carry asr-git's line: a remote that
 * cannot be reached or rejects the push, credentials missing or refused, another writer's commits
 * on the remote branch.
 */
int asr_patch_push(uv_loop_t *loop, const struct asr_patch_push_req *req, asr_patch_done_cb done,
                   void *data, struct asr_patch_op **out, struct asr_err *err);

/* Kills the child (its whole process group), removes the request file and frees op; done is
 * not called. Accepts NULL. Only before done has been called. */
void asr_patch_cancel(struct asr_patch_op *op);

#endif
