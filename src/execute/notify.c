/*
 * notify.c - webhook notifications (see notify.h; docs/notify.md).
 *
 * Place in the pipeline: EXECUTE, beside the executor. An event is built here (every string
 * redacted and capped), then POSTed by the asr-post helper through post.c. The answer becomes one
 * result: 2xx is delivered; anything else says what the receiver said, in one printable line.
 */
#include "execute/notify.h"
#include "asr/timeutil.h"
#include "execute/post.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[ASR_NOTIFY_KINDS] = {
    "remediated", "failed", "escalated", "awaiting_approval", "notify", "circuit_open",
};

const char *asr_notify_kind_name(enum asr_notify_kind kind)
{
    return (int)kind >= 0 && kind < ASR_NOTIFY_KINDS ? kind_names[kind] : NULL;
}

bool asr_notify_configured(const struct asr_config *cfg)
{
    return cfg != NULL && cfg->notify.url != NULL;
}

const char *asr_notify_refusal(const struct asr_config *cfg)
{
    return asr_notify_configured(cfg)
               ? NULL
               : "notifications are off: the config has no notify block (notify: {url: ...})";
}

int asr_notify_key(enum asr_notify_kind kind, int64_t incident, int64_t remediation, int step,
                   char *buf, size_t cap)
{
    const char *k = asr_notify_kind_name(kind);
    if (k == NULL || buf == NULL || cap == 0)
        return ASR_EINVAL;
    char st[24] = "";
    if (step >= 0)
        snprintf(st, sizeof(st), "-%d", step);
    int n;
    if (remediation > 0)
        n = snprintf(buf, cap, "asr-rem%" PRId64 "-%s%s", remediation, k, st);
    else if (incident > 0)
        n = snprintf(buf, cap, "asr-inc%" PRId64 "-%s%s", incident, k, st);
    else
        n = snprintf(buf, cap, "asr-%s-%" PRId64 "%s", k, asr_time_wall_ms(), st);
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return ASR_EINVAL;
    }
    return 0;
}

/* Adds key: the cleaned copy of s, if s is given. False without memory. */
static bool put_text(json_t *o, const char *key, const char *s, size_t max)
{
    if (s == NULL)
        return true;
    char *t = asr_post_text(s, max);
    bool ok = t != NULL && json_object_set_new(o, key, json_string(t)) == 0;
    free(t);
    return ok;
}

static bool put_id(json_t *o, const char *key, int64_t v)
{
    return v <= 0 || json_object_set_new(o, key, json_integer((json_int_t)v)) == 0;
}

/* The one line a chat receiver shows, e.g. "asr: shop: incident 12 remediated in 3.6 s". */
static char *one_line(const struct asr_notify_info *in)
{
    char inc[32] = "", tail[64] = "";
    if (in->incident > 0)
        snprintf(inc, sizeof(inc), " incident %" PRId64, in->incident);
    const char *what = "";
    switch (in->kind) {
    case ASR_NOTIFY_REMEDIATED:
        what = " remediated";
        if (in->mttr_ms >= 0)
            snprintf(tail, sizeof(tail), " in %" PRId64 ".%01" PRId64 " s", in->mttr_ms / 1000,
                     (in->mttr_ms % 1000) / 100);
        break;
    case ASR_NOTIFY_FAILED:
        what = " remediation failed";
        break;
    case ASR_NOTIFY_ESCALATED:
        what = " escalated to a person";
        break;
    case ASR_NOTIFY_AWAITING_APPROVAL:
        what = " awaits approval (asr approve / asr reject)";
        break;
    case ASR_NOTIFY_NOTIFY:
        what = "";
        break;
    case ASR_NOTIFY_CIRCUIT_OPEN:
        what = " circuit open: remediations stopped";
        break;
    default:
        break;
    }
    const char *detail = in->kind == ASR_NOTIFY_NOTIFY ? in->message : in->reason;
    size_t cap = 128 + (in->service != NULL ? strlen(in->service) : 0) +
                 (detail != NULL ? strlen(detail) : 0);
    char *s = malloc(cap);
    if (s != NULL)
        snprintf(s, cap, "asr: %s%s%s%s%s%s%s", in->service != NULL ? in->service : "",
                 in->service != NULL ? ":" : "", inc, what, tail, detail != NULL ? ": " : "",
                 detail != NULL ? detail : "");
    return s;
}

json_t *asr_notify_event(const struct asr_notify_info *in)
{
    const char *kind = in != NULL ? asr_notify_kind_name(in->kind) : NULL;
    if (kind == NULL)
        return NULL;
    char when[32];
    asr_time_format_utc(in->at_ms > 0 ? in->at_ms : asr_time_wall_ms(), when, sizeof(when));
    json_t *o = json_pack("{s:s, s:s, s:s}", "kind", kind, "time", when, "source", "asr");
    char *text = one_line(in);
    bool ok = o != NULL && text != NULL && put_text(o, "text", text, ASR_NOTIFY_SUMMARY_MAX) &&
              put_text(o, "service", in->service, ASR_NOTIFY_NAME_MAX) &&
              put_id(o, "incident", in->incident) && put_id(o, "plan", in->plan) &&
              put_id(o, "remediation", in->remediation) &&
              put_text(o, "signature", in->signature, ASR_NOTIFY_NAME_MAX) &&
              put_text(o, "summary", in->summary, ASR_NOTIFY_SUMMARY_MAX) &&
              put_text(o, "reason", in->reason, ASR_NOTIFY_REASON_MAX) &&
              put_text(o, "message", in->message, ASR_NOTIFY_SUMMARY_MAX) &&
              (in->mttr_ms < 0 ||
               json_object_set_new(o, "mttr_ms", json_integer((json_int_t)in->mttr_ms)) == 0) &&
              put_text(o, "branch", in->branch, ASR_NOTIFY_NAME_MAX) &&
              put_text(o, "commit", in->commit, ASR_NOTIFY_NAME_MAX) &&
              put_text(o, "pull_request", in->pull_request, ASR_NOTIFY_NAME_MAX);
    free(text);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---------------------------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------------------------- */

struct asr_notify_op {
    struct asr_post_op *post;
    asr_notify_done_cb done;
    void *data;
};

static bool key_ok(const char *k)
{
    size_t n = k != NULL ? strlen(k) : 0;
    if (n == 0 || n > ASR_NOTIFY_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)k[i]) && strchr("._:-", k[i]) == NULL)
            return false;
    return true;
}

/* A short printable excerpt of a receiver's answer, for a one-line message. */
static void excerpt(const char *body, char *out, size_t cap)
{
    size_t j = 0;
    bool space = false;
    for (size_t i = 0; body != NULL && body[i] != '\0' && j + 5 < cap; i++) {
        unsigned char c = (unsigned char)body[i];
        if (c <= 0x20 || c >= 0x7f) {
            space = j > 0;
            continue;
        }
        if (space)
            out[j++] = ' ';
        space = false;
        out[j++] = (char)c;
    }
    if (body != NULL && j + 5 >= cap)
        memcpy(out + j, "...", 3), j += 3;
    out[j] = '\0';
}

static void post_done_cb(const struct asr_post_result *p, void *data)
{
    struct asr_notify_op *op = data;
    struct asr_notify_result r = {.rc = p->rc, .status = p->status};
    char msg[512], ex[240];
    if (p->rc != 0) {
        snprintf(msg, sizeof(msg), "notify: %s", p->error != NULL ? p->error : "failed");
        r.error = msg;
    } else if (p->status >= 200 && p->status < 300) {
        r.error = NULL;
    } else {
        excerpt(p->body, ex, sizeof(ex));
        r.rc = p->status == 401 || p->status == 403 || p->status == 404 ? ASR_ECONFIG : ASR_ENET;
        if (p->status >= 300 && p->status < 400)
            snprintf(msg, sizeof(msg),
                     "notify: the webhook answered %d (a redirect; redirects are not followed)",
                     p->status);
        else
            snprintf(msg, sizeof(msg), "notify: the webhook answered %d%s%s", p->status,
                     ex[0] != '\0' ? ": " : "", ex);
        r.error = msg;
    }
    asr_notify_done_cb done = op->done;
    void *d = op->data;
    free(op);
    done(&r, d);
}

int asr_notify_send(uv_loop_t *loop, const struct asr_notify_env *env,
                    const struct asr_notify_cfg *cfg, const json_t *event, const char *key,
                    asr_notify_done_cb done, void *data, struct asr_notify_op **out,
                    struct asr_err *err)
{
    if (out != NULL)
        *out = NULL;
    if (cfg == NULL || cfg->url == NULL)
        return asr_err_set(err, ASR_ECONFIG, "notify: notifications are off (no notify block)");
    if (!json_is_object(event))
        return asr_err_set(err, ASR_EINVAL, "notify: the event must be a JSON object");
    if (!key_ok(key))
        return asr_err_set(err, ASR_EINVAL,
                           "notify: the idempotency key must be 1 to %d letters, digits and . _ "
                           ": -",
                           ASR_NOTIFY_KEY_MAX);
    if (env == NULL || env->post_exe == NULL || env->state_dir == NULL || done == NULL)
        return asr_err_set(err, ASR_EINVAL,
                           "notify: the asr-post binary, the state dir and a "
                           "callback are needed");
    /* Redacted again: an event built by hand must not leak either (redacting is idempotent). */
    json_t *body = asr_post_json_text(event, ASR_NOTIFY_SUMMARY_MAX);
    json_t *headers = json_pack("{s:s, s:s, s:s}", "Content-Type", "application/json",
                                "Idempotency-Key", key, "User-Agent", "asr/0.1.0");
    char *text = NULL;
    if (body != NULL && json_object_set_new(body, "id", json_string(key)) == 0)
        text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    struct asr_notify_op *op = calloc(1, sizeof(*op));
    int rc = 0;
    if (text == NULL || headers == NULL || op == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "notify: out of memory");
        goto out;
    }
    op->done = done;
    op->data = data;
    struct asr_post_req pr = {.exe = env->post_exe,
                              .state_dir = env->state_dir,
                              .url = cfg->url,
                              .method = "POST",
                              .headers = headers,
                              .body = text,
                              .token_env = cfg->token_env,
                              .timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000};
    rc = asr_post_start(loop, &pr, post_done_cb, op, &op->post, err);
    if (rc == 0 && out != NULL)
        *out = op;
out:
    if (rc != 0)
        free(op);
    free(text);
    json_decref(body);
    json_decref(headers);
    return rc;
}

void asr_notify_cancel(struct asr_notify_op *op)
{
    if (op == NULL)
        return;
    asr_post_cancel(op->post);
    free(op);
}

int asr_notify_pid(const struct asr_notify_op *op)
{
    return op != NULL ? asr_post_pid(op->post) : 0;
}
