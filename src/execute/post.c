/*
 * post.c - one outbound HTTP request through the asr-post helper, as a child of the loop (see
 * post.h; the helper is src/cli/asr_post.c).
 *
 * Place in the pipeline: EXECUTE, the transport under notify.c and github.c. The helper answers
 * one JSON line on stdout {status, body, truncated, headers, error} and exits 0 (a response came),
 * 1 (none: connection, DNS, TLS), 2 (the request was refused) or 3 (it timed out).
 */
#include "execute/post.h"
#include "asr/buf.h"
#include "asr/fsutil.h"
#include "asr/spawn.h"
#include "asr/utf8.h"
#include "strategy/redact.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct asr_post_op {
    struct asr_proc *proc;
    char *req_path;
    asr_post_done_cb done;
    void *data;
};

static void op_free(struct asr_post_op *op)
{
    if (op == NULL)
        return;
    if (op->req_path != NULL)
        unlink(op->req_path);
    free(op->req_path);
    free(op);
}

void asr_post_cancel(struct asr_post_op *op)
{
    if (op == NULL)
        return;
    asr_proc_free(op->proc); /* kills the group if it still runs; no exit callback then */
    op_free(op);
}

int asr_post_pid(const struct asr_post_op *op)
{
    return op != NULL && op->proc != NULL && asr_proc_running(op->proc)
               ? (int)asr_proc_pid(op->proc)
               : 0;
}

/* The last line of out (n bytes) that starts with '{' (the answer; anything before it is noise
 * such as a sanitizer's report), as a JSON object, or NULL. */
static json_t *answer_of(const char *out, size_t n)
{
    const char *best = NULL, *end = out + n;
    for (const char *l = out; l < end;) {
        if (*l == '{')
            best = l;
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        l = nl != NULL ? nl + 1 : end;
    }
    if (best == NULL)
        return NULL;
    const char *nl = memchr(best, '\n', (size_t)(end - best));
    json_t *j = json_loadb(best, (size_t)((nl != NULL ? nl : end) - best), 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int asr_post_parse_answer(const char *out, size_t len, int exit_status, bool timed_out,
                          struct asr_post_answer *a)
{
    memset(a, 0, sizeof(*a));
    if (out == NULL)
        out = "";
    a->line = answer_of(out, strnlen(out, len));
    a->empty = json_object();
    json_t *headers = json_object_get(a->line, "headers");
    struct asr_post_result *r = &a->r;
    /* An HTTP status has three digits; anything else is no status (and (int) of a larger value
     * would wrap: 4294967497 is not 201). */
    json_int_t status = json_integer_value(json_object_get(a->line, "status"));
    r->status = status >= 100 && status <= 999 ? (int)status : 0;
    r->body = json_string_value(json_object_get(a->line, "body"));
    r->truncated = json_is_true(json_object_get(a->line, "truncated"));
    r->headers = json_is_object(headers) ? headers : a->empty;
    r->error = json_string_value(json_object_get(a->line, "error"));
    if (r->body == NULL)
        r->body = "";
    if (timed_out) {
        r->rc = ASR_ETIMEOUT;
        r->status = 0;
        r->error = "asr-post did not finish in time and was killed";
    } else if (a->line == NULL) {
        r->rc = ASR_EPROTO;
        r->status = 0;
        snprintf(a->msg, sizeof(a->msg), "asr-post gave no answer (exit status %d)", exit_status);
        r->error = a->msg;
    } else if (exit_status == 0 && r->status > 0) {
        r->rc = 0;
        r->error = NULL;
    } else {
        r->rc = exit_status == 2 ? ASR_EINVAL : exit_status == 3 ? ASR_ETIMEOUT : ASR_ENET;
        r->status = 0;
        if (r->error == NULL) {
            snprintf(a->msg, sizeof(a->msg), "asr-post failed (exit status %d)", exit_status);
        } else {
            /* The helper writes one printable line; the reader does not count on it, since the
             * error goes on into logs, the store and escalations. */
            size_t j = 0;
            for (const char *e = r->error; *e != '\0' && j + 1 < sizeof(a->msg); e++)
                a->msg[j++] = (unsigned char)*e >= 0x20 && (unsigned char)*e < 0x7f ? *e : '?';
            a->msg[j] = '\0';
        }
        r->error = a->msg;
    }
    return r->rc;
}

void asr_post_answer_free(struct asr_post_answer *a)
{
    json_decref(a->line);
    json_decref(a->empty);
    a->line = a->empty = NULL;
}

static void exit_cb(struct asr_proc *p, int status, int sig, bool timed_out, void *data)
{
    (void)sig;
    struct asr_post_op *op = data;
    const struct asr_buf *out = asr_proc_output(p);
    struct asr_post_answer a;
    asr_post_parse_answer(out != NULL ? out->data : NULL, out != NULL ? out->len : 0, status,
                          timed_out, &a);
    asr_post_done_cb done = op->done;
    void *d = op->data;
    op->proc = NULL;
    op_free(op); /* before the callback, which may start the next request */
    done(&a.r, d);
    asr_post_answer_free(&a);
    asr_proc_free(p);
}

int asr_post_start(uv_loop_t *loop, const struct asr_post_req *q, asr_post_done_cb done, void *data,
                   struct asr_post_op **out, struct asr_err *err)
{
    if (out != NULL)
        *out = NULL;
    if (q->exe == NULL || q->state_dir == NULL || q->url == NULL || done == NULL)
        return asr_err_set(err, ASR_EINVAL, "post: %s is missing",
                           q->exe == NULL         ? "the asr-post binary"
                           : q->state_dir == NULL ? "the state dir"
                           : q->url == NULL       ? "the URL"
                                                  : "the callback");
    int timeout = q->timeout_ms > 0 ? q->timeout_ms : ASR_POST_TIMEOUT_MS;
    /* json_string() refuses text that is not valid UTF-8: every field is checked. */
    json_t *req = json_object();
    bool ok = req != NULL && json_object_set_new(req, "url", json_string(q->url)) == 0 &&
              json_object_set_new(req, "timeout_ms", json_integer(timeout)) == 0;
    if (ok && q->method != NULL)
        ok = json_object_set_new(req, "method", json_string(q->method)) == 0;
    if (ok && q->headers != NULL)
        ok = json_object_set(req, "headers", (json_t *)q->headers) == 0;
    if (ok && q->body != NULL)
        ok = json_object_set_new(req, "body", json_string(q->body)) == 0;
    if (ok && q->token_env != NULL)
        ok = json_object_set_new(req, "token_env", json_string(q->token_env)) == 0;
    char *text = ok ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    int rc = 0;
    struct asr_post_op *op = calloc(1, sizeof(*op));
    char dir[4096];
    if (text == NULL || op == NULL) {
        rc = asr_err_set(err, !ok ? ASR_EINVAL : ASR_ENOMEM, "post: cannot encode the request (%s)",
                         !ok ? "a field is not valid UTF-8, or out of memory" : "out of memory");
        goto fail;
    }
    snprintf(dir, sizeof(dir), "%s/outbound", q->state_dir);
    if ((op->req_path = asr_write_request_file(dir, "post", text, "post", err)) == NULL) {
        rc = err != NULL && err->code != 0 ? err->code : ASR_EIO;
        goto fail;
    }
    op->done = done;
    op->data = data;
    char *argv[] = {(char *)q->exe, op->req_path, NULL};
    struct asr_proc_opts o = {.argv = argv,
                              .timeout_ms = timeout + ASR_POST_GRACE_MS,
                              .kill_grace_ms = 1000,
                              .capture_cap = ASR_POST_OUTPUT_CAP,
                              .on_exit = exit_cb,
                              .data = op};
    rc = asr_proc_start(loop, &o, &op->proc, err);
    if (rc != 0)
        goto fail;
    free(text);
    if (out != NULL)
        *out = op;
    return 0;
fail:
    free(text);
    op_free(op);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Text that leaves the host
 * ------------------------------------------------------------------------------------------- */

char *asr_post_text(const char *s, size_t max)
{
    static const char mark[] = " [...]";
    size_t n = s != NULL ? strlen(s) : 0;
    struct asr_buf r;
    /* The redactor writes at most max + a marker's worth; what it cuts is never a secret's
     * bytes (redact.h). One byte over max tells a cut from an exact fit. */
    asr_buf_init(&r, max + 1);
    int rc = asr_redact(s != NULL ? s : "", n, &r, NULL);
    if (rc != 0 && rc != ASR_ETOOBIG) {
        asr_buf_free(&r);
        return NULL;
    }
    const unsigned char *t = (const unsigned char *)(r.data != NULL ? r.data : "");
    size_t tn = r.len;
    bool cut = rc == ASR_ETOOBIG || tn > max;
    size_t keep = cut ? (max > sizeof(mark) - 1 ? max - (sizeof(mark) - 1) : 0) : tn;
    if (keep > tn)
        keep = tn;
    char *out = malloc(keep + sizeof(mark));
    size_t j = 0;
    for (size_t i = 0; out != NULL && i < keep;) {
        size_t q = asr_utf8_seq(t + i, tn - i);
        if (q == 0) {
            out[j++] = '?';
            i++;
        } else if (i + q > keep) {
            break; /* a character across the cut */
        } else if (q == 1 && ((t[i] < 0x20 && t[i] != '\n' && t[i] != '\t') || t[i] == 0x7f)) {
            out[j++] = ' ';
            i++;
        } else {
            memcpy(out + j, t + i, q);
            j += q;
            i += q;
        }
    }
    if (out != NULL && cut) {
        memcpy(out + j, mark, sizeof(mark) - 1);
        j += sizeof(mark) - 1;
    }
    if (out != NULL)
        out[j] = '\0';
    asr_buf_free(&r);
    return out;
}

json_t *asr_post_json_text(const json_t *j, size_t max)
{
    if (json_is_string(j)) {
        char *t = asr_post_text(json_string_value(j), max);
        json_t *v = t != NULL ? json_string(t) : NULL;
        free(t);
        return v;
    }
    if (json_is_array(j)) {
        json_t *a = json_array();
        for (size_t i = 0; a != NULL && i < json_array_size(j); i++) {
            json_t *v = asr_post_json_text(json_array_get(j, i), max);
            if (v == NULL || json_array_append_new(a, v) != 0) {
                json_decref(a);
                a = NULL;
            }
        }
        return a;
    }
    if (json_is_object(j)) {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            json_t *c = o != NULL ? asr_post_json_text(v, max) : NULL;
            if (c == NULL || json_object_set_new(o, k, c) != 0) {
                json_decref(o);
                o = NULL;
                break;
            }
        }
        return o;
    }
    return json_deep_copy(j);
}
