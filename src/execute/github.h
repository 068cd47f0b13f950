/*
 * github.h - a pull request for a fix branch, through GitHub's REST API (docs/patching.md).
 *
 * Place in the pipeline: EXECUTE, after a patch's branch asr/incident-<id> was pushed
 * (asr_patch_push, patch.h). The executor asks for a pull request of that branch into the
 * service's `git.github.base`; a person reviews and merges it. asr never merges.
 *
 * Requests are made by the asr-post helper (post.h), so the daemon never loads libcurl and never
 * blocks. They follow GitHub's REST documentation: `Accept: application/vnd.github+json`,
 * `X-GitHub-Api-Version: 2022-11-28`, a User-Agent, and `Authorization: Bearer <token>` with the
 * token read by the helper from the variable `git.token_env` names.
 *
 * Idempotent: the open pull requests of the branch are listed first
 * (GET /repos/{owner}/{repo}/pulls?head={owner}:{branch}&state=open); if there is one, it is the
 * answer ("existing") and nothing is created. Only then POST /repos/{owner}/{repo}/pulls.
 */
#ifndef ASR_EXECUTE_GITHUB_H
#define ASR_EXECUTE_GITHUB_H

#include "asr/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define ASR_GITHUB_API_URL "https://api.github.com"
#define ASR_GITHUB_API_VERSION "2022-11-28"
#define ASR_GITHUB_TIMEOUT_MS 10000  /* default, per request */
#define ASR_GITHUB_BODY_MAX 60000u   /* bytes of a pull request's body (GitHub takes 65536) */
#define ASR_GITHUB_SUMMARY_MAX 8192u /* bytes of the incident part of the body */
#define ASR_GITHUB_PLAN_MAX 16384u   /* bytes of the plan part */
#define ASR_GITHUB_VERIFY_MAX 4096u  /* bytes of the verification part */

/* What a pull request says about its fix. NULL and 0 fields are left out. */
struct asr_github_pr_info {
    const char *service;
    int64_t incident, plan;
    const char *strategy;     /* "playbook", "history" or "llm" */
    const char *title;        /* the plan's title: the PR is "fix(<service>): <title>" */
    const char *summary;      /* the incident: its fault line, signature, context */
    const char *plan_text;    /* the plan: its steps and rationale */
    const char *verification; /* how the fix was verified: build, tests, replay, window */
    const char *commit;       /* the commit's sha */
};

/*
 * The pull request's title and body (markdown) for info, new strings the caller frees. The title
 * is the first line of the patch's commit message (asr_patch_message: "fix(<service>): <title>",
 * one line, at most 72 bytes of title). The body has the sections Incident, Plan and Verification;
 * each text passes the redactor (asr_post_text) and is capped, then shown in a code fence longer
 * than any run of backticks in it, so log text cannot add markdown, links or @mentions. Ends with
 * the Asr-Incident, Asr-Plan and Asr-Strategy lines. Returns 0, ASR_EINVAL (strategy not one of
 * the three) or ASR_ENOMEM.
 */
int asr_github_pr_text(const struct asr_github_pr_info *info, char **title, char **body);

struct asr_github_pr_req {
    const char *post_exe;  /* the asr-post binary */
    const char *state_dir; /* request files go to <state_dir>/outbound/ */
    const char *api_url;   /* NULL: ASR_GITHUB_API_URL */
    const char *repo;      /* "owner/name" */
    const char *token_env; /* the variable holding the token (required) */
    const char *branch;    /* the head: "asr/incident-<id>", pushed to the repository */
    const char *base;      /* NULL: "main" */
    const char *title;     /* asr_github_pr_text(); redacted again here */
    const char *body;      /* asr_github_pr_text(); redacted again here */
    int timeout_ms;        /* per request; 0: ASR_GITHUB_TIMEOUT_MS */
};

/* How it ended. Strings are valid during the callback only. */
struct asr_github_pr_result {
    int rc;               /* 0, or ASR_ECONFIG (401 bad credentials, 403 forbidden, 404: the
                             repository or the token is wrong), ASR_EBUSY (rate limited),
                             ASR_EINVAL (422: GitHub refused the pull request, e.g. no such
                             base), ASR_ENET, ASR_ETIMEOUT, ASR_EPROTO (an answer that is not
                             GitHub's shape) */
    int number;           /* the pull request's number */
    const char *html_url; /* its page */
    bool existed;         /* it was open already: nothing was created */
    int status;           /* the last HTTP status, 0 when none came */
    const char *error;    /* one line with GitHub's message, when rc != 0 */
};

typedef void (*asr_github_done_cb)(const struct asr_github_pr_result *r, void *data);

struct asr_post_result;

/* The request an answer is for. */
enum asr_github_step {
    ASR_GITHUB_LIST,  /* GET .../pulls?head=...&state=open: 200 and a list */
    ASR_GITHUB_CREATE /* POST .../pulls: 201 and the pull request */
};

/* GitHub's answer to one request, parsed; r points into url and msg, so the struct stays where it
 * was filled while r is used. */
struct asr_github_answer {
    struct asr_github_pr_result r;
    bool create; /* ASR_GITHUB_LIST: no pull request of the branch is open, create one */
    char url[512], msg[512];
};

/*
 * The pure part of asr_github_open_pr (also tests/fuzz/fuzz_github_answer.c): the helper's answer
 * p (post.h) to the request of step, read into a->r as done would receive it. A list's first entry
 * gives number and html_url (existed); an empty list sets a->create and leaves r.rc 0; a 201 gives
 * the new pull request. Any other status, or a failed request, gives r.rc (see struct
 * asr_github_pr_result) and r.error, one printable line "github: ..." with GitHub's message and
 * up to four of its errors[]; token_env is named in the 401 advice. Returns a->r.rc.
 */
int asr_github_parse_answer(enum asr_github_step step, const struct asr_post_result *p,
                            const char *token_env, struct asr_github_answer *a);

struct asr_github_op;

/*
 * Finds or opens the pull request of req->branch into req->base, then calls done once from the
 * loop; the operation then frees itself. *out (may be NULL) is a handle for asr_github_cancel
 * until done has run. Returns 0, or ASR_EINVAL (a field missing or malformed: repo not
 * owner/name, branch not asr/..., ...), ASR_EIO, ASR_ESPAWN, ASR_ENOMEM with err set; done is not
 * called then.
 */
int asr_github_open_pr(uv_loop_t *loop, const struct asr_github_pr_req *req,
                       asr_github_done_cb done, void *data, struct asr_github_op **out,
                       struct asr_err *err);

/* Kills the helper and frees op; done is not called. Accepts NULL. Only before done has run. */
void asr_github_cancel(struct asr_github_op *op);

/* The helper's pid while a request runs, else 0 (tests). */
int asr_github_pid(const struct asr_github_op *op);

#endif
