/*
 * post.h - one outbound HTTP request, made by the asr-post helper run as a child of the loop.
 *
 * Place in the pipeline: EXECUTE, under notify.c (webhooks) and github.c (pull requests). The
 * daemon never links libcurl (its TLS library would take the idle daemon past its memory budget),
 * so each request runs in `asr-post` (src/cli/asr_post.c), like git work runs in asr-git: the
 * request is written to a 0600 file of <state_dir>/outbound/ (spawn.c gives children no stdin, and
 * argv is readable by every user on the host), the helper is started with that path as its only
 * argument (through the usual child machinery: own process group, timeout, SIGTERM then SIGKILL),
 * its one answer line is read, the file is removed, and the callback runs.
 *
 * A bearer token is never in the request: only the name of the environment variable that holds it
 * (token_env), which the helper reads from the environment it inherits.
 */
#ifndef ASR_EXECUTE_POST_H
#define ASR_EXECUTE_POST_H

#include "asr/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#define ASR_POST_TIMEOUT_MS 10000 /* default time the request may take */
#define ASR_POST_GRACE_MS 5000    /* the child's own timeout is the request's plus this */
#define ASR_POST_OUTPUT_CAP                                                                        \
    (512u * 1024u) /* bytes of helper output read (the body is 64 KiB, escaped) */

struct asr_post_req {
    const char *exe;       /* the asr-post binary */
    const char *state_dir; /* the request goes to <state_dir>/outbound/, 0600, then is removed */
    const char *url;       /* http:// or https:// */
    const char *method;    /* "GET", "POST", ...; NULL: POST with a body, GET without */
    const json_t *headers; /* {"Name": "value", ...} or NULL; see asr_post.c for those refused */
    const char *body;      /* NULL: none */
    const char *token_env; /* NULL: no Authorization header */
    int timeout_ms;        /* 0: ASR_POST_TIMEOUT_MS */
};

/* The answer. Pointers are valid during the callback only. */
struct asr_post_result {
    int rc;                /* 0: a response came (any status); ASR_ENET (none came), ASR_ETIMEOUT,
                              ASR_EINVAL (the helper refused the request), ASR_EPROTO (no answer
                              line) */
    int status;            /* HTTP status, 0 without a response */
    const char *body;      /* the response body ("" when none), at most 64 KiB */
    bool truncated;        /* the body was cut at that cap */
    const json_t *headers; /* a few response headers, lowercased names (location, retry-after,
                              x-ratelimit-*); never NULL */
    const char *error;     /* why, when rc != 0 */
};

typedef void (*asr_post_done_cb)(const struct asr_post_result *r, void *data);

/* The helper's answer, parsed; r points into the other fields, so the struct stays where it was
 * filled until asr_post_answer_free. */
struct asr_post_answer {
    struct asr_post_result r;
    json_t *line;  /* the answer line as JSON, NULL when there is none */
    json_t *empty; /* r.headers when the line has none */
    char msg[512]; /* r.error, made here or a printable copy of the helper's */
};

/*
 * The pure part of a request's end (also tests/fuzz/fuzz_github_answer.c): the helper's output,
 * len bytes at out (read as the C string it is captured as: it ends at a NUL byte, if any; NULL is
 * ""), its exit status and whether it was killed for its time, read into a->r as done receives
 * it. The answer is the last line that starts with '{' (anything before it is noise, such as a
 * sanitizer's report). A status that is not three digits counts as none; the helper's error is
 * copied as one line of printable ASCII (other bytes '?', at most 511). Returns a->r.rc. The
 * caller releases a with asr_post_answer_free.
 */
int asr_post_parse_answer(const char *out, size_t len, int exit_status, bool timed_out,
                          struct asr_post_answer *a);

/* Releases what asr_post_parse_answer holds in a. */
void asr_post_answer_free(struct asr_post_answer *a);

struct asr_post_op;

/*
 * Starts the request and calls done once, from the loop, with the answer; the operation then
 * frees itself. *out (may be NULL) is a handle for asr_post_cancel until done has run. Returns 0,
 * or ASR_EINVAL (a field missing), ASR_EIO (the request file cannot be written), ASR_ESPAWN or
 * ASR_ENOMEM with err set; done is not called then.
 */
int asr_post_start(uv_loop_t *loop, const struct asr_post_req *req, asr_post_done_cb done,
                   void *data, struct asr_post_op **out, struct asr_err *err);

/* Kills the helper (its process group), removes the request file and frees op; done is not
 * called. Accepts NULL. Only before done has run. */
void asr_post_cancel(struct asr_post_op *op);

/* The helper's pid while it runs (for tests that look at its argv), else 0. */
int asr_post_pid(const struct asr_post_op *op);

/*
 * Text for a request that leaves the host (a webhook event's fields, a pull request's body): s
 * passed whole through the redactor (strategy/redact.h; log lines are attacker text and may carry
 * secrets), then made valid UTF-8 (invalid bytes as '?'), control characters but newline and tab
 * as spaces, and cut at max bytes on a character boundary, ending in " [...]" when cut. Redacting
 * before cutting means a cut can never leave the head of a secret that the redactor would no
 * longer recognise. NULL s gives "". Returns a new string (caller frees), NULL without memory.
 */
char *asr_post_text(const char *s, size_t max);

/* Every string of j (values, recursively; keys are the caller's) passed through asr_post_text
 * with max. Returns a new JSON value (caller decrefs), NULL without memory. */
json_t *asr_post_json_text(const json_t *j, size_t max);

#endif
