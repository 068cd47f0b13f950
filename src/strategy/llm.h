/*
 * llm.h - the LLM client (STRATEGY stage): one non-streaming completion per call, over HTTP.
 *
 * The planner asks a language model for a patch only when nothing known fits an incident. This
 * module is the transport for that question and nothing more: it sends a system text and a user
 * text to one provider, and hands back the model's answer, the finish reason and the token usage.
 * Prompts, redaction and edit-block parsing live elsewhere (strategy/prompt, strategy/redact,
 * strategy/edits); this file never looks inside the texts it carries.
 *
 * Three wire protocols (docs/llm.md has the exact request and response shapes):
 *   "openai"    POST {base_url}/chat/completions             Authorization: Bearer KEY
 *               OpenAI itself, and every server that speaks Chat Completions: Gemini's
 *               compatibility endpoint, vLLM, llama.cpp server, Ollama (set base_url).
 *   "gemini"    POST {base_url}/models/{model}:generateContent  x-goog-api-key: KEY
 *   "anthropic" POST {base_url}/v1/messages                   x-api-key: KEY,
 *                                                             anthropic-version: 2023-06-01
 *
 * Everything runs on the caller's libuv loop: libcurl's multi interface is driven by
 * curl_multi_socket_action() from one uv_poll per socket and one uv_timer, so a slow provider
 * never stalls the loop. asr_llm_complete_sync() runs the same code on a private loop, for the
 * CLI and tests.
 *
 * What a call does:
 *   - one attempt has a hard timeout (timeout_ms, connect included);
 *   - connect failures, timeouts, HTTP 408/429/500/502/503/504/529 are retried up to
 *     max_attempts in all, after a jittered exponential back-off (backoff_initial_ms doubling up
 *     to backoff_max_ms, each wait drawn from [half, full]); a Retry-After (seconds or HTTP-date,
 *     or Gemini's RetryInfo.retryDelay) replaces the back-off; if it asks for more than
 *     backoff_max_ms the call fails at once instead of hammering the provider;
 *   - never retried: other 4xx (400, 401, 403, 404, ...), a 429 that says the quota or spend
 *     limit is exhausted (OpenAI insufficient_quota, Gemini per-day quota or depleted credits,
 *     Anthropic enforced_spend_limit_reached), a reply cut off by the length limit, a refused
 *     reply, a malformed reply, an oversize reply;
 *   - a reply cut off by the token limit is never returned as text: the call fails with
 *     ASR_ETOOBIG and the reply carries finish_reason and usage (the tokens were still spent);
 *   - after breaker_threshold consecutive failed calls (transport, HTTP or malformed replies;
 *     a truncated or refused reply proves the provider works and does not count) the client
 *     refuses new calls at once with ASR_EBUSY until breaker_cooldown_ms has passed; then one
 *     trial call goes through (half-open): its success closes the breaker, its failure opens it
 *     for another cooldown.
 *
 * Security: the API key goes only into the provider's auth header of requests to base_url. It is
 * never put in a URL, never logged, and scrubbed from every error message (a provider that
 * echoes it back gets "[key]"). TLS peer and host verification stay on (libcurl's defaults),
 * redirects are not followed, only http and https are allowed, proxies from the environment
 * (http_proxy, HTTPS_PROXY, ...) are ignored unless opts.proxy names one explicitly, and a key
 * is never sent over plain http except to a loopback host (127.0.0.0/8, ::1, localhost).
 * base_url must not carry credentials, a query or a fragment.
 */
#ifndef ASR_STRATEGY_LLM_H
#define ASR_STRATEGY_LLM_H

#include "asr/error.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Options of a client. Strings are copied by asr_llm_create; zero numbers take the defaults. */
struct asr_llm_opts {
    const char *provider;    /* "openai" | "gemini" | "anthropic" (required) */
    const char *base_url;    /* NULL: https://api.openai.com/v1,
                                https://generativelanguage.googleapis.com/v1beta,
                                https://api.anthropic.com */
    const char *model;       /* required */
    const char *api_key;     /* the key itself (the caller reads the env var the config names);
                                NULL or "" sends no auth header (local servers) */
    const char *proxy;       /* explicit proxy URL, or NULL for none (env proxies are ignored) */
    int timeout_ms;          /* per attempt, connect included; default 60000 */
    int max_attempts;        /* attempts per call, first included; default 3 */
    int backoff_initial_ms;  /* first back-off; default 500 */
    int backoff_max_ms;      /* longest back-off and longest Retry-After honoured; default 30000 */
    int breaker_threshold;   /* consecutive failed calls that open the breaker; default 5 */
    int breaker_cooldown_ms; /* how long it stays open; default 60000 */
    size_t max_reply_bytes;  /* cap on a response body; default 1 MiB */
    int max_tokens;          /* the model's output limit sent with each request; default 4096 */
};

/* One question. user is required; system may be NULL or "" (then none is sent). */
struct asr_llm_request {
    const char *system;
    const char *user;
};

/*
 * The outcome of a call. On success text holds the answer (NUL-terminated, valid UTF-8, len
 * bytes) and finish_reason the provider's word for a normal stop ("stop", "STOP", "end_turn").
 * On failure text is NULL, but whatever was learned is kept: http_status of the last attempt
 * (0 when none), attempts, elapsed_ms, and for a truncated or refused reply its finish_reason
 * and token usage. Token counts are -1 when the provider did not report them.
 */
struct asr_llm_reply {
    char *text;
    size_t len;
    char *finish_reason;
    int64_t prompt_tokens;
    int64_t completion_tokens; /* Gemini: candidates plus thoughts tokens (both are billed) */
    int http_status;
    int attempts;
    int64_t elapsed_ms; /* from asr_llm_complete to the outcome, back-off included */
    int64_t waited_ms;  /* of which spent waiting between attempts */
};

struct asr_llm;

/*
 * Called exactly once per accepted call, always from the loop, never from inside
 * asr_llm_complete. rc is 0 or a negative ASR_E* code:
 *   ASR_ENET      connection failed, or an HTTP error status (after retries, if retryable)
 *   ASR_ETIMEOUT  the last attempt timed out
 *   ASR_ECONFIG   HTTP 401/403/404: key, permissions or model name are wrong
 *   ASR_EPROTO    malformed or incomplete reply, a refused reply, or a redirect
 *   ASR_ETOOBIG   the body exceeded max_reply_bytes, or the answer hit the token limit
 *   ASR_EBUSY     the circuit breaker is open (no request was sent)
 *   ASR_ECANCELED the client was destroyed first
 * errmsg is NULL on success, else one line starting "llm: " that never contains the key.
 * reply is never NULL and is valid during the callback only; the callback may take reply->text
 * or reply->finish_reason by setting the field to NULL (it then frees it).
 */
typedef void (*asr_llm_done_cb)(int rc, struct asr_llm_reply *reply, const char *errmsg,
                                void *data);

/*
 * Creates a client on loop. Returns 0 and *out, or ASR_EINVAL (unknown provider, missing model,
 * bad base_url, a key over plain http to a non-loopback host; err says which) or ASR_ENOMEM.
 * The client keeps a copy of the key, wiped on destroy.
 */
int asr_llm_create(uv_loop_t *loop, const struct asr_llm_opts *o, struct asr_llm **out,
                   struct asr_err *err);

/*
 * Starts a call. Returns 0 (done will run later) or ASR_EINVAL/ASR_ENOMEM/ASR_ECANCELED (done
 * will not run). The request texts are copied into the request body before this returns. Several
 * calls may be in flight on one client.
 */
int asr_llm_complete(struct asr_llm *c, const struct asr_llm_request *r, asr_llm_done_cb done,
                     void *data);

/*
 * Destroys a client (NULL is fine), also from inside a done callback. Calls still in flight end
 * with ASR_ECANCELED, their done callbacks running before this returns. Handles close
 * asynchronously: the memory is freed once the loop has run their close callbacks.
 */
void asr_llm_destroy(struct asr_llm *c);

/*
 * One call on a private loop with a fresh client (so no breaker history). Returns rc as above;
 * *out is filled in every case (text only on success) and must be released with
 * asr_llm_reply_free. err gets the message on failure.
 */
int asr_llm_complete_sync(const struct asr_llm_opts *o, const struct asr_llm_request *r,
                          struct asr_llm_reply *out, struct asr_err *err);

struct asr_llm_cfg;
/*
 * The options for the config's llm section (asr/config.h): the key is read from the environment
 * variable it names. Returns 0, or ASR_ECONFIG when the provider is "none" or the variable is
 * named but unset or empty (err names it; the key itself is never in a message). The strings
 * point into cfg and the environment: use the options before either changes.
 */
int asr_llm_opts_from_cfg(const struct asr_llm_cfg *cfg, struct asr_llm_opts *o,
                          struct asr_err *err);

/* Frees the strings of a reply and zeroes it (NULL and zeroed replies are fine). It lives in
 * llm_worker.c, so that programs without the client (the daemon) can use it too. */
void asr_llm_reply_free(struct asr_llm_reply *r);

/* ---- internal: the protocol adapters (llm_proto.c), exposed for tests and the fuzzer -------- */

enum asr_llm_provider { ASR_LLM_OPENAI, ASR_LLM_GEMINI, ASR_LLM_ANTHROPIC };

/* "openai" | "gemini" | "anthropic" -> provider; ASR_EINVAL for anything else. */
int asr_llm_provider_parse(const char *name, enum asr_llm_provider *out);
const char *asr_llm_provider_name(enum asr_llm_provider p);

/*
 * Builds the JSON request body (a malloc'd string the caller frees) for one question.
 * Returns 0 or ASR_ENOMEM.
 */
int asr_llm_build_request(enum asr_llm_provider p, const char *model, int max_tokens,
                          const struct asr_llm_request *r, char **out);

/*
 * Parses a 2xx response body strictly. Returns 0 with out->text, len, finish_reason and token
 * counts set; or ASR_EPROTO (not JSON, missing or mistyped fields, an empty or refused answer,
 * an unexpected finish reason) or ASR_ETOOBIG (cut off by the token limit), with err saying
 * which field and out holding whatever was read (finish_reason, usage). out is zeroed first and
 * must be freed with asr_llm_reply_free in every case.
 */
int asr_llm_parse_reply(enum asr_llm_provider p, const char *body, size_t len,
                        struct asr_llm_reply *out, struct asr_err *err);

/* How a finish reason reads: 0 a normal stop, 1 cut off by the token limit, 2 refused by the
 * provider's filters, 3 unknown. */
int asr_llm_finish_kind(enum asr_llm_provider p, const char *reason);

/* What an error body (any status) says, for messages and the retry decision. */
struct asr_llm_error_info {
    char message[200];      /* the provider's message, printable ASCII only, cut; "" if none */
    char kind[64];          /* error.type / error.code / error.status; "" if none */
    int quota;              /* the quota or spend limit is exhausted: retrying will not help */
    int64_t retry_delay_ms; /* Gemini RetryInfo.retryDelay, or -1 */
};

/* Reads an error body; never fails (an unreadable body leaves the fields empty). */
void asr_llm_parse_error(enum asr_llm_provider p, const char *body, size_t len,
                         struct asr_llm_error_info *out);

#endif
