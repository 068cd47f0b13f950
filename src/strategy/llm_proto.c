/*
 * llm_proto.c - the three wire protocols of the LLM client (see llm.h and docs/llm.md): request
 * bodies, strict reply parsing and error bodies. No I/O here: llm.c moves the bytes.
 *
 * Replies are outside data. They are parsed with jansson (duplicate keys rejected, no NUL in
 * strings, nothing after the value) and every field used is checked for presence and type; the
 * messages name the field. A reply cut off by the token limit is reported as ASR_ETOOBIG and its
 * text is dropped, so half an edit block can never reach the planner.
 */
#include "strategy/llm.h"
#include "asr/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int asr_llm_provider_parse(const char *name, enum asr_llm_provider *out)
{
    if (name == NULL)
        return ASR_EINVAL;
    if (strcmp(name, "openai") == 0)
        *out = ASR_LLM_OPENAI;
    else if (strcmp(name, "gemini") == 0)
        *out = ASR_LLM_GEMINI;
    else if (strcmp(name, "anthropic") == 0)
        *out = ASR_LLM_ANTHROPIC;
    else
        return ASR_EINVAL;
    return 0;
}

const char *asr_llm_provider_name(enum asr_llm_provider p)
{
    switch (p) {
    case ASR_LLM_OPENAI:
        return "openai";
    case ASR_LLM_GEMINI:
        return "gemini";
    case ASR_LLM_ANTHROPIC:
        return "anthropic";
    }
    return "?";
}

/* ---- requests -------------------------------------------------------------------------------- */

/* {"parts": [{"text": s}]} plus an optional role; NULL when out of memory. */
static json_t *gemini_content(const char *role, const char *text)
{
    return role ? json_pack("{s:s, s:[{s:s}]}", "role", role, "parts", "text", text)
                : json_pack("{s:[{s:s}]}", "parts", "text", text);
}

int asr_llm_build_request(enum asr_llm_provider p, const char *model, int max_tokens,
                          const struct asr_llm_request *r, char **out)
{
    *out = NULL;
    bool has_system = r->system != NULL && r->system[0] != '\0';
    json_t *root = NULL;
    switch (p) {
    case ASR_LLM_OPENAI: {
        json_t *msgs = json_array();
        if (msgs != NULL && has_system)
            json_array_append_new(msgs,
                                  json_pack("{s:s, s:s}", "role", "system", "content", r->system));
        if (msgs != NULL)
            json_array_append_new(msgs,
                                  json_pack("{s:s, s:s}", "role", "user", "content", r->user));
        if (msgs != NULL && json_array_size(msgs) == (has_system ? 2u : 1u))
            root = json_pack("{s:s, s:o, s:i}", "model", model, "messages", msgs, "max_tokens",
                             max_tokens);
        else
            json_decref(msgs);
        break;
    }
    case ASR_LLM_GEMINI:
        /* The model is in the URL; generationConfig carries the output limit. */
        root = json_pack("{s:[o], s:{s:i}}", "contents", gemini_content("user", r->user),
                         "generationConfig", "maxOutputTokens", max_tokens);
        if (root != NULL && has_system &&
            json_object_set_new(root, "systemInstruction", gemini_content(NULL, r->system)) != 0) {
            json_decref(root);
            root = NULL;
        }
        break;
    case ASR_LLM_ANTHROPIC:
        root = json_pack("{s:s, s:i, s:[{s:s, s:s}]}", "model", model, "max_tokens", max_tokens,
                         "messages", "role", "user", "content", r->user);
        if (root != NULL && has_system &&
            json_object_set_new(root, "system", json_string(r->system)) != 0) {
            json_decref(root);
            root = NULL;
        }
        break;
    }
    if (root == NULL)
        return ASR_ENOMEM;
    *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return *out ? 0 : ASR_ENOMEM;
}

/* ---- replies --------------------------------------------------------------------------------- */

/* Copies s into dst as printable ASCII (anything else becomes '?'), cut to fit. */
static void copy_printable(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s != NULL && s[n] != '\0' && n + 1 < cap; n++) {
        unsigned char ch = (unsigned char)s[n];
        dst[n] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    dst[n] = '\0';
}

/* Parses body as one JSON object; NULL with err set otherwise. */
static json_t *load_object(const char *who, const char *body, size_t len, struct asr_err *err)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        char why[JSON_ERROR_TEXT_LENGTH];
        copy_printable(why, sizeof(why), je.text); /* it may quote bytes of the reply */
        asr_err_set(err, ASR_EPROTO, "llm: %s: reply is not valid JSON: %s at byte %d", who, why,
                    je.position);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        asr_err_set(err, ASR_EPROTO, "llm: %s: reply is not a JSON object", who);
        return NULL;
    }
    return root;
}

/* Reads an optional non-negative integer field; -1 when absent; ASR_EPROTO when mistyped. */
static int opt_count(const char *who, json_t *obj, const char *path, const char *key, int64_t *out,
                     struct asr_err *err)
{
    *out = -1;
    if (obj == NULL)
        return 0;
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return asr_err_set(err, ASR_EPROTO, "llm: %s: %s.%s is not a non-negative integer", who,
                           path, key);
    *out = (int64_t)json_integer_value(v);
    return 0;
}

/* Reads the usage object (optional; when present, it must be an object of counts). */
static int read_usage(const char *who, json_t *root, const char *name, const char *in_key,
                      const char *out_key, const char *extra_out_key, struct asr_llm_reply *out,
                      struct asr_err *err)
{
    json_t *u = json_object_get(root, name);
    if (u == NULL || json_is_null(u))
        return 0;
    if (!json_is_object(u))
        return asr_err_set(err, ASR_EPROTO, "llm: %s: %s is not an object", who, name);
    int rc = opt_count(who, u, name, in_key, &out->prompt_tokens, err);
    if (rc == 0)
        rc = opt_count(who, u, name, out_key, &out->completion_tokens, err);
    int64_t extra = -1;
    if (rc == 0 && extra_out_key != NULL)
        rc = opt_count(who, u, name, extra_out_key, &extra, err);
    if (rc == 0 && extra > 0)
        out->completion_tokens = (out->completion_tokens > 0 ? out->completion_tokens : 0) + extra;
    return rc;
}

static int set_finish(struct asr_llm_reply *out, const char *reason)
{
    free(out->finish_reason);
    out->finish_reason = strdup(reason);
    return out->finish_reason ? 0 : ASR_ENOMEM;
}

static const char *const openai_ok[] = {"stop", NULL};
static const char *const openai_refused[] = {"content_filter", NULL};
static const char *const gemini_ok[] = {"STOP", NULL};
static const char *const gemini_refused[] = {
    "SAFETY", "RECITATION",   "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE",
    "OTHER",  "IMAGE_SAFETY", NULL};
static const char *const anthropic_ok[] = {"end_turn", "stop_sequence", NULL};
static const char *const anthropic_refused[] = {"refusal", NULL};

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

int asr_llm_finish_kind(enum asr_llm_provider p, const char *reason)
{
    if (reason == NULL)
        return 3;
    switch (p) {
    case ASR_LLM_OPENAI:
        return in_list(reason, openai_ok)        ? 0
               : strcmp(reason, "length") == 0   ? 1
               : in_list(reason, openai_refused) ? 2
                                                 : 3;
    case ASR_LLM_GEMINI:
        return in_list(reason, gemini_ok)          ? 0
               : strcmp(reason, "MAX_TOKENS") == 0 ? 1
               : in_list(reason, gemini_refused)   ? 2
                                                   : 3;
    case ASR_LLM_ANTHROPIC:
        return in_list(reason, anthropic_ok)        ? 0
               : strcmp(reason, "max_tokens") == 0  ? 1
               : in_list(reason, anthropic_refused) ? 2
                                                    : 3;
    }
    return 3;
}

/* Checks a finish reason: a cut reply is ASR_ETOOBIG, a refused or unknown one ASR_EPROTO. */
static int judge_finish(enum asr_llm_provider p, const char *raw, struct asr_err *err)
{
    const char *who = asr_llm_provider_name(p);
    char reason[48];
    copy_printable(reason, sizeof(reason), raw); /* outside data, going into a message */
    switch (asr_llm_finish_kind(p, raw)) {
    case 0:
        return 0;
    case 1:
        return asr_err_set(err, ASR_ETOOBIG,
                           "llm: %s: reply cut off by the token limit (finish reason %s); "
                           "not used, raise max_tokens or shorten the prompt",
                           who, reason);
    case 2:
        return asr_err_set(err, ASR_EPROTO, "llm: %s: reply refused (finish reason %s)", who,
                           reason);
    default:
        return asr_err_set(err, ASR_EPROTO, "llm: %s: unexpected finish reason \"%s\"", who,
                           reason);
    }
}

static int take_text(const char *who, struct asr_buf *b, struct asr_llm_reply *out,
                     struct asr_err *err)
{
    if (b->len == 0)
        return asr_err_set(err, ASR_EPROTO, "llm: %s: reply has no text", who);
    out->len = b->len;
    out->text = asr_buf_steal(b);
    return 0;
}

/*
 * OpenAI Chat Completions: choices[0].message.content (string), choices[0].finish_reason
 * ("stop"; "length" = cut; "content_filter" or a message.refusal = refused),
 * usage.prompt_tokens / usage.completion_tokens.
 */
static int parse_openai(json_t *root, struct asr_llm_reply *out, struct asr_err *err)
{
    const char *who = "openai";
    int rc = read_usage(who, root, "usage", "prompt_tokens", "completion_tokens", NULL, out, err);
    if (rc != 0)
        return rc;
    json_t *choices = json_object_get(root, "choices");
    if (!json_is_array(choices) || json_array_size(choices) == 0)
        return asr_err_set(err, ASR_EPROTO, "llm: %s: reply has no choices[] array", who);
    json_t *ch = json_array_get(choices, 0);
    if (!json_is_object(ch))
        return asr_err_set(err, ASR_EPROTO, "llm: %s: choices[0] is not an object", who);
    json_t *fr = json_object_get(ch, "finish_reason");
    if (!json_is_string(fr))
        return asr_err_set(err, ASR_EPROTO, "llm: %s: choices[0].finish_reason is missing", who);
    if ((rc = set_finish(out, json_string_value(fr))) != 0)
        return rc;
    json_t *msg = json_object_get(ch, "message");
    if (!json_is_object(msg))
        return asr_err_set(err, ASR_EPROTO, "llm: %s: choices[0].message is not an object", who);
    json_t *refusal = json_object_get(msg, "refusal");
    if (json_is_string(refusal) && json_string_length(refusal) > 0)
        return asr_err_set(err, ASR_EPROTO, "llm: %s: reply refused (message.refusal)", who);
    if ((rc = judge_finish(ASR_LLM_OPENAI, json_string_value(fr), err)) != 0)
        return rc;
    json_t *content = json_object_get(msg, "content");
    if (!json_is_string(content))
        return asr_err_set(err, ASR_EPROTO,
                           "llm: %s: choices[0].message.content is missing or not a string", who);
    struct asr_buf b;
    asr_buf_init(&b, json_string_length(content));
    if (asr_buf_append(&b, json_string_value(content), json_string_length(content)) != 0) {
        asr_buf_free(&b);
        return ASR_ENOMEM;
    }
    rc = take_text(who, &b, out, err);
    asr_buf_free(&b);
    return rc;
}

/*
 * Gemini generateContent: candidates[0].content.parts[].text (concatenated; thought parts
 * skipped), candidates[0].finishReason ("STOP"; "MAX_TOKENS" = cut; SAFETY, RECITATION, ... =
 * refused), promptFeedback.blockReason when the prompt itself was blocked,
 * usageMetadata.promptTokenCount / candidatesTokenCount (+ thoughtsTokenCount).
 */
static int parse_gemini(json_t *root, struct asr_llm_reply *out, struct asr_err *err)
{
    const char *who = "gemini";
    int rc = read_usage(who, root, "usageMetadata", "promptTokenCount", "candidatesTokenCount",
                        "thoughtsTokenCount", out, err);
    if (rc != 0)
        return rc;
    json_t *cands = json_object_get(root, "candidates");
    if (!json_is_array(cands) || json_array_size(cands) == 0) {
        json_t *pf = json_object_get(root, "promptFeedback");
        json_t *br = json_is_object(pf) ? json_object_get(pf, "blockReason") : NULL;
        if (json_is_string(br)) {
            if ((rc = set_finish(out, json_string_value(br))) != 0)
                return rc;
            char why[48];
            copy_printable(why, sizeof(why), json_string_value(br));
            return asr_err_set(err, ASR_EPROTO, "llm: %s: prompt blocked (blockReason %s)", who,
                               why);
        }
        return asr_err_set(err, ASR_EPROTO, "llm: %s: reply has no candidates[] array", who);
    }
    json_t *cand = json_array_get(cands, 0);
    if (!json_is_object(cand))
        return asr_err_set(err, ASR_EPROTO, "llm: %s: candidates[0] is not an object", who);
    json_t *fr = json_object_get(cand, "finishReason");
    if (!json_is_string(fr))
        return asr_err_set(err, ASR_EPROTO, "llm: %s: candidates[0].finishReason is missing", who);
    if ((rc = set_finish(out, json_string_value(fr))) != 0)
        return rc;
    if ((rc = judge_finish(ASR_LLM_GEMINI, json_string_value(fr), err)) != 0)
        return rc;
    json_t *content = json_object_get(cand, "content");
    json_t *parts = json_is_object(content) ? json_object_get(content, "parts") : NULL;
    if (!json_is_array(parts))
        return asr_err_set(err, ASR_EPROTO,
                           "llm: %s: candidates[0].content.parts is missing or not an array", who);
    struct asr_buf b;
    asr_buf_init(&b, (size_t)-1 / 2);
    size_t i;
    json_t *part;
    json_array_foreach(parts, i, part)
    {
        if (!json_is_object(part)) {
            asr_buf_free(&b);
            return asr_err_set(err, ASR_EPROTO, "llm: %s: parts[%zu] is not an object", who, i);
        }
        if (json_is_true(json_object_get(part, "thought")))
            continue;
        json_t *t = json_object_get(part, "text");
        if (t == NULL)
            continue; /* another kind of part (none is asked for); it carries no answer text */
        if (!json_is_string(t)) {
            asr_buf_free(&b);
            return asr_err_set(err, ASR_EPROTO, "llm: %s: parts[%zu].text is not a string", who, i);
        }
        if (asr_buf_append(&b, json_string_value(t), json_string_length(t)) != 0) {
            asr_buf_free(&b);
            return ASR_ENOMEM;
        }
    }
    rc = take_text(who, &b, out, err);
    asr_buf_free(&b);
    return rc;
}

/*
 * Anthropic Messages: type "message", content[] blocks whose type is "text" (others, such as
 * thinking, skipped), stop_reason ("end_turn" or "stop_sequence"; "max_tokens" = cut;
 * "refusal" = refused), usage.input_tokens / usage.output_tokens.
 */
static int parse_anthropic(json_t *root, struct asr_llm_reply *out, struct asr_err *err)
{
    const char *who = "anthropic";
    int rc = read_usage(who, root, "usage", "input_tokens", "output_tokens", NULL, out, err);
    if (rc != 0)
        return rc;
    json_t *type = json_object_get(root, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "message") != 0)
        return asr_err_set(err, ASR_EPROTO, "llm: %s: reply type is not \"message\"", who);
    json_t *sr = json_object_get(root, "stop_reason");
    if (!json_is_string(sr))
        return asr_err_set(err, ASR_EPROTO, "llm: %s: stop_reason is missing", who);
    if ((rc = set_finish(out, json_string_value(sr))) != 0)
        return rc;
    if ((rc = judge_finish(ASR_LLM_ANTHROPIC, json_string_value(sr), err)) != 0)
        return rc;
    json_t *content = json_object_get(root, "content");
    if (!json_is_array(content))
        return asr_err_set(err, ASR_EPROTO, "llm: %s: content is missing or not an array", who);
    struct asr_buf b;
    asr_buf_init(&b, (size_t)-1 / 2);
    size_t i;
    json_t *blk;
    json_array_foreach(content, i, blk)
    {
        json_t *bt = json_is_object(blk) ? json_object_get(blk, "type") : NULL;
        if (!json_is_string(bt)) {
            asr_buf_free(&b);
            return asr_err_set(err, ASR_EPROTO, "llm: %s: content[%zu].type is missing", who, i);
        }
        if (strcmp(json_string_value(bt), "text") != 0)
            continue;
        json_t *t = json_object_get(blk, "text");
        if (!json_is_string(t)) {
            asr_buf_free(&b);
            return asr_err_set(err, ASR_EPROTO, "llm: %s: content[%zu].text is not a string", who,
                               i);
        }
        if (asr_buf_append(&b, json_string_value(t), json_string_length(t)) != 0) {
            asr_buf_free(&b);
            return ASR_ENOMEM;
        }
    }
    rc = take_text(who, &b, out, err);
    asr_buf_free(&b);
    return rc;
}

int asr_llm_parse_reply(enum asr_llm_provider p, const char *body, size_t len,
                        struct asr_llm_reply *out, struct asr_err *err)
{
    memset(out, 0, sizeof(*out));
    out->prompt_tokens = out->completion_tokens = -1;
    const char *who = asr_llm_provider_name(p);
    json_t *root = load_object(who, body, len, err);
    if (root == NULL)
        return ASR_EPROTO;
    int rc = ASR_EINVAL;
    switch (p) {
    case ASR_LLM_OPENAI:
        rc = parse_openai(root, out, err);
        break;
    case ASR_LLM_GEMINI:
        rc = parse_gemini(root, out, err);
        break;
    case ASR_LLM_ANTHROPIC:
        rc = parse_anthropic(root, out, err);
        break;
    }
    json_decref(root);
    if (rc == ASR_ENOMEM)
        asr_err_set(err, rc, "llm: %s: out of memory reading the reply", who);
    if (rc != 0) {
        free(out->text);
        out->text = NULL;
        out->len = 0;
    }
    return rc;
}

/* ---- error bodies ---------------------------------------------------------------------------- */

/* "55s", "1.5s" -> milliseconds; -1 when it is not a protobuf Duration string. */
static int64_t parse_duration_s(const char *s)
{
    int64_t ms = 0;
    size_t i = 0;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (ms > 86400000)
            return -1;
        ms = ms * 10 + (s[i] - '0') * 1000;
    }
    int64_t scale = 100;
    if (s[i] == '.')
        for (i++; s[i] >= '0' && s[i] <= '9'; i++, scale /= 10)
            ms += (s[i] - '0') * scale;
    return (s[i] == 's' && s[i + 1] == '\0') ? ms : -1;
}

static void gemini_details(json_t *details, struct asr_llm_error_info *out)
{
    size_t i, j;
    json_t *d, *v;
    json_array_foreach(details, i, d)
    {
        const char *t = json_string_value(json_object_get(d, "@type"));
        if (t == NULL)
            continue;
        if (strstr(t, "google.rpc.RetryInfo") != NULL) {
            const char *delay = json_string_value(json_object_get(d, "retryDelay"));
            if (delay != NULL)
                out->retry_delay_ms = parse_duration_s(delay);
        } else if (strstr(t, "google.rpc.QuotaFailure") != NULL) {
            /* A per-day quota does not come back within any back-off we would wait. */
            json_t *viol = json_object_get(d, "violations");
            json_array_foreach(viol, j, v)
            {
                const char *id = json_string_value(json_object_get(v, "quotaId"));
                if (id != NULL && strstr(id, "PerDay") != NULL)
                    out->quota = 1;
            }
        }
    }
}

void asr_llm_parse_error(enum asr_llm_provider p, const char *body, size_t len,
                         struct asr_llm_error_info *out)
{
    memset(out, 0, sizeof(*out));
    out->retry_delay_ms = -1;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *e = json_is_object(root) ? json_object_get(root, "error") : NULL;
    if (json_is_string(e)) { /* some compatible servers send {"error": "text"} */
        copy_printable(out->message, sizeof(out->message), json_string_value(e));
        json_decref(root);
        return;
    }
    if (!json_is_object(e)) {
        json_decref(root);
        return;
    }
    copy_printable(out->message, sizeof(out->message),
                   json_string_value(json_object_get(e, "message")));
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *status = json_string_value(json_object_get(e, "status"));
    switch (p) {
    case ASR_LLM_OPENAI:
        copy_printable(out->kind, sizeof(out->kind), code ? code : type);
        if ((code && strcmp(code, "insufficient_quota") == 0) ||
            (type && strcmp(type, "insufficient_quota") == 0))
            out->quota = 1;
        break;
    case ASR_LLM_GEMINI:
        copy_printable(out->kind, sizeof(out->kind), status);
        if (json_is_array(json_object_get(e, "details")))
            gemini_details(json_object_get(e, "details"), out);
        break;
    case ASR_LLM_ANTHROPIC: {
        copy_printable(out->kind, sizeof(out->kind), type);
        json_t *det = json_object_get(e, "details");
        const char *ec =
            json_is_object(det) ? json_string_value(json_object_get(det, "error_code")) : NULL;
        if ((ec && strcmp(ec, "enforced_spend_limit_reached") == 0) ||
            (type && strcmp(type, "billing_error") == 0))
            out->quota = 1;
        break;
    }
    }
    json_decref(root);
}
