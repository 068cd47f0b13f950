/*
 * github.c - a pull request for a fix branch through GitHub's REST API (see github.h).
 *
 * Place in the pipeline: EXECUTE, after asr_patch_push. Two requests at most, each one run of the
 * asr-post helper (post.c): the list of open pull requests of the branch, then, only when it is
 * empty, the creation. GitHub's error bodies ({"message", "errors": [...]}) become the one-line
 * error of the result.
 */
#include "execute/github.h"
#include "asr/buf.h"
#include "execute/patch.h"
#include "execute/post.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------------
 * The text
 * ------------------------------------------------------------------------------------------- */

/* Appends a section: "### head", then text (redacted, capped) in a fence of backticks longer
 * than any run of backticks in it, so nothing in it is read as markdown (no links, no
 * @mentions, no closing of the fence). */
static int section(struct asr_buf *b, const char *head, const char *text, size_t max)
{
    if (text == NULL)
        return 0;
    char *t = asr_post_text(text, max);
    if (t == NULL)
        return ASR_ENOMEM;
    size_t run = 0, longest = 0;
    for (const char *p = t; *p != '\0'; p++) {
        run = *p == '`' ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }
    size_t fl = longest < 3 ? 3 : longest + 1;
    char *fence = malloc(fl + 1);
    int rc = ASR_ENOMEM;
    if (fence != NULL) {
        memset(fence, '`', fl);
        fence[fl] = '\0';
        size_t tl = strlen(t);
        rc = asr_buf_printf(b, "### %s\n\n%s\n%s%s%s\n\n", head, fence, t,
                            tl > 0 && t[tl - 1] == '\n' ? "" : "\n", fence);
    }
    free(fence);
    free(t);
    return rc;
}

int asr_github_pr_text(const struct asr_github_pr_info *in, char **title, char **body)
{
    *title = *body = NULL;
    /* Redacted before asr_patch_message cuts it to one line of 72 bytes: a cut must never leave
     * the head of a secret that the redactor would no longer recognise. */
    char *plain = asr_post_text(in->title, 4096);
    if (plain == NULL)
        return ASR_ENOMEM;
    char *msg = asr_patch_message(in->service, plain, NULL, in->incident, in->plan, in->strategy);
    free(plain);
    if (msg == NULL)
        return in->strategy == NULL ||
                       (strcmp(in->strategy, "playbook") != 0 &&
                        strcmp(in->strategy, "history") != 0 && strcmp(in->strategy, "llm") != 0)
                   ? ASR_EINVAL
                   : ASR_ENOMEM;
    char *nl = strchr(msg, '\n');
    if (nl != NULL)
        *nl = '\0';
    char *t = asr_post_text(msg, 256);
    free(msg);
    /* The service's name as plain text: config names are [a-z0-9_-]; anything else becomes '-'. */
    char svc[64] = "";
    for (size_t i = 0; in->service != NULL && in->service[i] != '\0' && i + 1 < sizeof(svc); i++) {
        char c = in->service[i];
        svc[i] = isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' ? c : '-';
        svc[i + 1] = '\0';
    }
    struct asr_buf b;
    asr_buf_init(&b, ASR_GITHUB_BODY_MAX + 4096);
    int rc = t != NULL ? 0 : ASR_ENOMEM;
    if (rc == 0)
        rc = asr_buf_printf(&b, "asr opened this pull request to fix incident %" PRId64 "%s%s.\n\n",
                            in->incident, svc[0] != '\0' ? " of service " : "", svc);
    if (rc == 0)
        rc = section(&b, "Incident", in->summary, ASR_GITHUB_SUMMARY_MAX);
    if (rc == 0)
        rc = section(&b, "Plan", in->plan_text, ASR_GITHUB_PLAN_MAX);
    if (rc == 0)
        rc = section(&b, "Verification", in->verification, ASR_GITHUB_VERIFY_MAX);
    if (rc == 0 && in->commit != NULL) {
        char *c = asr_post_text(in->commit, 64);
        rc = c != NULL ? asr_buf_printf(&b, "Commit: %s\n\n", c) : ASR_ENOMEM;
        free(c);
    }
    if (rc == 0)
        rc = asr_buf_printf(&b,
                            "Asr-Incident: %" PRId64 "\nAsr-Plan: %" PRId64 "\nAsr-Strategy: %s\n",
                            in->incident, in->plan, in->strategy);
    if (rc != 0) {
        free(t);
        asr_buf_free(&b);
        return rc == ASR_ETOOBIG ? ASR_ENOMEM : rc;
    }
    *title = t;
    *body = asr_buf_steal(&b);
    if (*body == NULL) {
        free(t);
        *title = NULL;
        return ASR_ENOMEM;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The requests
 * ------------------------------------------------------------------------------------------- */

struct asr_github_op {
    uv_loop_t *loop;
    struct asr_post_op *post;
    asr_github_done_cb done;
    void *data;
    char *post_exe, *state_dir, *token_env, *pulls_url, *branch, *owner;
    char *create_body; /* the POST's JSON */
    int timeout_ms;
};

static void op_free(struct asr_github_op *op)
{
    if (op == NULL)
        return;
    free(op->post_exe);
    free(op->state_dir);
    free(op->token_env);
    free(op->pulls_url);
    free(op->branch);
    free(op->owner);
    free(op->create_body);
    free(op);
}

void asr_github_cancel(struct asr_github_op *op)
{
    if (op == NULL)
        return;
    asr_post_cancel(op->post);
    op_free(op);
}

int asr_github_pid(const struct asr_github_op *op)
{
    return op != NULL ? asr_post_pid(op->post) : 0;
}

static void finish(struct asr_github_op *op, struct asr_github_pr_result *r)
{
    asr_github_done_cb done = op->done;
    void *d = op->data;
    op_free(op);
    done(r, d);
}

/* A printable, one-line copy of s (at most cap - 1 bytes). */
static void printable(const char *s, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; s != NULL && s[i] != '\0' && j + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
    }
    out[j] = '\0';
}

static const char *str_or(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v != NULL ? v : "?";
}

/* GitHub's words from an error body: "message" and, for a 422, each of "errors" (its own
 * "message", or "<resource>.<field> <code>"). */
static void github_words(const char *body, char *out, size_t cap)
{
    json_t *j = json_loads(body != NULL ? body : "", 0, NULL);
    struct asr_buf b;
    asr_buf_init(&b, 400);
    const char *m = json_string_value(json_object_get(j, "message"));
    asr_buf_puts(&b, m != NULL ? m : "(no message)");
    json_t *errs = json_object_get(j, "errors");
    for (size_t i = 0; json_is_array(errs) && i < json_array_size(errs) && i < 4; i++) {
        json_t *e = json_array_get(errs, i);
        const char *em = json_string_value(json_object_get(e, "message"));
        if (json_is_string(e))
            em = json_string_value(e);
        if (em != NULL)
            asr_buf_printf(&b, "%s %s", i == 0 ? ":" : ";", em);
        else
            asr_buf_printf(&b, "%s %s.%s %s", i == 0 ? ":" : ";", str_or(e, "resource"),
                           str_or(e, "field"), str_or(e, "code"));
    }
    printable(asr_buf_cstr(&b), out, cap);
    asr_buf_free(&b);
    json_decref(j);
}

/* An HTTP answer that is not the expected one, as a result in a. */
static void fail_status(const struct asr_post_result *p, const char *what, const char *token_env,
                        struct asr_github_answer *a)
{
    struct asr_github_pr_result *r = &a->r;
    char words[300];
    r->status = p->status;
    r->error = a->msg;
    if (p->rc != 0) {
        r->rc = p->rc;
        snprintf(a->msg, sizeof(a->msg), "github: %s: %s", what,
                 p->error != NULL ? p->error : "failed");
        return;
    }
    github_words(p->body, words, sizeof(words));
    const char *remaining =
        json_string_value(json_object_get((json_t *)p->headers, "x-ratelimit-remaining"));
    const char *reset =
        json_string_value(json_object_get((json_t *)p->headers, "x-ratelimit-reset"));
    const char *retry = json_string_value(json_object_get((json_t *)p->headers, "retry-after"));
    bool limited = p->status == 429 ||
                   (p->status == 403 && ((remaining != NULL && strcmp(remaining, "0") == 0) ||
                                         retry != NULL || strstr(words, "rate limit") != NULL));
    if (limited) {
        char when[64] = "";
        if (retry != NULL) {
            char rv[24];
            printable(retry, rv, sizeof(rv));
            snprintf(when, sizeof(when), "; retry after %s s", rv);
        } else if (reset != NULL) {
            time_t t = (time_t)strtoll(reset, NULL, 10);
            struct tm tm;
            if (t > 0 && gmtime_r(&t, &tm) != NULL)
                strftime(when, sizeof(when), "; the limit resets at %Y-%m-%dT%H:%M:%SZ", &tm);
        }
        r->rc = ASR_EBUSY;
        snprintf(a->msg, sizeof(a->msg), "github: %s: rate limited (%d %s)%s", what, p->status,
                 words, when);
    } else if (p->status == 401) {
        r->rc = ASR_ECONFIG;
        snprintf(a->msg, sizeof(a->msg), "github: %s: 401 %s (is the token in $%s valid?)", what,
                 words, token_env != NULL ? token_env : "?");
    } else if (p->status == 403 || p->status == 404) {
        r->rc = ASR_ECONFIG;
        snprintf(a->msg, sizeof(a->msg),
                 "github: %s: %d %s (the repository, or the token's access to it)", what, p->status,
                 words);
    } else if (p->status == 422) {
        r->rc = ASR_EINVAL;
        snprintf(a->msg, sizeof(a->msg), "github: %s: 422 %s", what, words);
    } else if (p->status >= 300 && p->status < 400) {
        r->rc = ASR_EPROTO;
        snprintf(a->msg, sizeof(a->msg), "github: %s: %d (a redirect; redirects are not followed)",
                 what, p->status);
    } else {
        r->rc = p->status >= 200 && p->status < 300 ? ASR_EPROTO : ASR_ENET;
        snprintf(a->msg, sizeof(a->msg), "github: %s: %d %s", what, p->status, words);
    }
}

/* number and html_url of a pull request object into a; false when it does not have them. */
static bool pull_of(json_t *pr, struct asr_github_answer *a)
{
    json_t *n = json_object_get(pr, "number"), *u = json_object_get(pr, "html_url");
    if (!json_is_integer(n) || json_integer_value(n) <= 0 || json_integer_value(n) > INT32_MAX ||
        !json_is_string(u))
        return false;
    a->r.number = (int)json_integer_value(n);
    printable(json_string_value(u), a->url, sizeof(a->url));
    a->r.html_url = a->url;
    return true;
}

int asr_github_parse_answer(enum asr_github_step step, const struct asr_post_result *p,
                            const char *token_env, struct asr_github_answer *a)
{
    memset(a, 0, sizeof(*a));
    bool list = step == ASR_GITHUB_LIST;
    const char *what = list ? "listing the pull requests" : "creating the pull request";
    if (p->rc != 0 || p->status != (list ? 200 : 201)) {
        fail_status(p, what, token_env, a);
        return a->r.rc;
    }
    a->r.status = p->status;
    json_t *j = json_loads(p->body != NULL ? p->body : "", 0, NULL);
    if (!list) {
        if (!pull_of(j, a)) {
            a->r.rc = ASR_EPROTO;
            a->r.error = "github: creating the pull request: 201 without a number and html_url";
        }
    } else if (!json_is_array(j) || p->truncated) {
        a->r.rc = ASR_EPROTO;
        a->r.error = "github: listing the pull requests: the answer is not a JSON list";
    } else if (json_array_size(j) == 0) {
        a->create = true;
    } else if (pull_of(json_array_get(j, 0), a)) {
        a->r.existed = true;
    } else {
        a->r.rc = ASR_EPROTO;
        a->r.error = "github: listing the pull requests: an entry without number and html_url";
    }
    json_decref(j);
    return a->r.rc;
}

static int start(struct asr_github_op *op, const char *method, const char *url, const char *body,
                 asr_post_done_cb cb, struct asr_err *err);

static void created_cb(const struct asr_post_result *p, void *data)
{
    struct asr_github_op *op = data;
    op->post = NULL;
    struct asr_github_answer a;
    asr_github_parse_answer(ASR_GITHUB_CREATE, p, op->token_env, &a);
    finish(op, &a.r);
}

static void listed_cb(const struct asr_post_result *p, void *data)
{
    struct asr_github_op *op = data;
    op->post = NULL;
    struct asr_github_answer a;
    asr_github_parse_answer(ASR_GITHUB_LIST, p, op->token_env, &a);
    if (!a.create) {
        finish(op, &a.r);
        return;
    }
    struct asr_err err = {0};
    int rc = start(op, "POST", op->pulls_url, op->create_body, created_cb, &err);
    if (rc != 0) {
        struct asr_github_pr_result r = {.rc = rc, .status = 0, .error = err.msg};
        finish(op, &r);
    }
}

static int start(struct asr_github_op *op, const char *method, const char *url, const char *body,
                 asr_post_done_cb cb, struct asr_err *err)
{
    json_t *headers =
        json_pack("{s:s, s:s, s:s}", "Accept", "application/vnd.github+json",
                  "X-GitHub-Api-Version", ASR_GITHUB_API_VERSION, "User-Agent", "asr/0.1.0");
    if (headers == NULL)
        return asr_err_set(err, ASR_ENOMEM, "github: out of memory");
    struct asr_post_req pr = {.exe = op->post_exe,
                              .state_dir = op->state_dir,
                              .url = url,
                              .method = method,
                              .headers = headers,
                              .body = body,
                              .token_env = op->token_env,
                              .timeout_ms = op->timeout_ms};
    int rc = asr_post_start(op->loop, &pr, cb, op, &op->post, err);
    json_decref(headers);
    return rc;
}

static bool is_repo(const char *s)
{
    const char *slash = s != NULL ? strchr(s, '/') : NULL;
    if (slash == NULL || slash == s || slash[1] == '\0' || strchr(slash + 1, '/') != NULL ||
        strlen(s) > 200)
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (p != slash && !isalnum((unsigned char)*p) && strchr("-_.", *p) == NULL)
            return false;
    return strcmp(slash + 1, ".") != 0 && strcmp(slash + 1, "..") != 0;
}

static bool is_ref(const char *s, bool asr_only)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 200 || (asr_only && strncmp(s, "asr/", 4) != 0) || strstr(s, "..") != NULL ||
        s[0] == '/' || s[0] == '-' || s[n - 1] == '/')
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && strchr("-_./", *p) == NULL)
            return false;
    return true;
}

/* s with everything but unreserved characters percent-encoded (for the query string). */
static void url_encode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && j + 4 < cap; p++) {
        if (isalnum(*p) || strchr("-_.~", *p) != NULL) {
            out[j++] = (char)*p;
        } else {
            out[j++] = '%';
            out[j++] = hex[*p >> 4];
            out[j++] = hex[*p & 15];
        }
    }
    out[j] = '\0';
}

int asr_github_open_pr(uv_loop_t *loop, const struct asr_github_pr_req *q, asr_github_done_cb done,
                       void *data, struct asr_github_op **out, struct asr_err *err)
{
    if (out != NULL)
        *out = NULL;
    const char *api = q->api_url != NULL ? q->api_url : ASR_GITHUB_API_URL;
    const char *base = q->base != NULL ? q->base : "main";
    if (q->post_exe == NULL || q->state_dir == NULL || done == NULL)
        return asr_err_set(err, ASR_EINVAL,
                           "github: the asr-post binary, the state dir and a callback are needed");
    if (!is_repo(q->repo))
        return asr_err_set(err, ASR_EINVAL, "github: repo '%.100s' is not owner/name",
                           q->repo != NULL ? q->repo : "");
    if (!is_ref(q->branch, true))
        return asr_err_set(err, ASR_EINVAL,
                           "github: branch '%.100s' refused: asr opens pull requests only for "
                           "its asr/... branches",
                           q->branch != NULL ? q->branch : "");
    if (!is_ref(base, false))
        return asr_err_set(err, ASR_EINVAL, "github: base '%.100s' is not a branch name", base);
    if (strncmp(api, "https://", 8) != 0 && strncmp(api, "http://", 7) != 0)
        return asr_err_set(err, ASR_EINVAL, "github: api_url must be an http(s) URL");
    if (q->token_env == NULL || q->token_env[0] == '\0')
        return asr_err_set(err, ASR_EINVAL,
                           "github: token_env is needed (GitHub refuses "
                           "anonymous pull requests)");
    if (q->title == NULL || q->title[0] == '\0')
        return asr_err_set(err, ASR_EINVAL, "github: the pull request needs a title");
    struct asr_github_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return asr_err_set(err, ASR_ENOMEM, "github: out of memory");
    op->loop = loop;
    op->done = done;
    op->data = data;
    op->timeout_ms = q->timeout_ms > 0 ? q->timeout_ms : ASR_GITHUB_TIMEOUT_MS;
    op->post_exe = strdup(q->post_exe);
    op->state_dir = strdup(q->state_dir);
    op->token_env = strdup(q->token_env);
    op->branch = strdup(q->branch);
    op->owner = strndup(q->repo, (size_t)(strchr(q->repo, '/') - q->repo));
    size_t al = strlen(api);
    while (al > 0 && api[al - 1] == '/')
        al--;
    size_t ul = al + strlen(q->repo) + 32;
    op->pulls_url = malloc(ul);
    if (op->pulls_url != NULL)
        snprintf(op->pulls_url, ul, "%.*s/repos/%s/pulls", (int)al, api, q->repo);
    /* The POST's body: title and body redacted again (an op built by hand must not leak). */
    char *title = asr_post_text(q->title, 256);
    char *body = q->body != NULL ? asr_post_text(q->body, ASR_GITHUB_BODY_MAX) : NULL;
    json_t *cj = title != NULL
                     ? json_pack("{s:s, s:s, s:s}", "title", title, "head", q->branch, "base", base)
                     : NULL;
    if (cj != NULL && body != NULL && json_object_set_new(cj, "body", json_string(body)) != 0) {
        json_decref(cj);
        cj = NULL;
    }
    op->create_body = cj != NULL ? json_dumps(cj, JSON_COMPACT) : NULL;
    json_decref(cj);
    free(title);
    free(body);
    if (op->post_exe == NULL || op->state_dir == NULL || op->token_env == NULL ||
        op->branch == NULL || op->owner == NULL || op->pulls_url == NULL ||
        op->create_body == NULL) {
        op_free(op);
        return asr_err_set(err, ASR_ENOMEM, "github: out of memory");
    }
    /* GET .../pulls?head=owner:branch&state=open */
    char head[512], enc[1600];
    snprintf(head, sizeof(head), "%s:%s", op->owner, op->branch);
    url_encode(head, enc, sizeof(enc));
    size_t ll = strlen(op->pulls_url) + strlen(enc) + 32;
    char *list_url = malloc(ll);
    if (list_url == NULL) {
        op_free(op);
        return asr_err_set(err, ASR_ENOMEM, "github: out of memory");
    }
    snprintf(list_url, ll, "%s?head=%s&state=open", op->pulls_url, enc);
    int rc = start(op, "GET", list_url, NULL, listed_cb, err);
    free(list_url);
    if (rc != 0) {
        op_free(op);
        return rc;
    }
    if (out != NULL)
        *out = op;
    return 0;
}
