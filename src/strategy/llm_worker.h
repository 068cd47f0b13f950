/*
 * llm_worker.h - asking the LLM from a process that does not link libcurl.
 *
 * STRATEGY stage (docs/llm.md, "The worker"). The LLM client (llm.h) needs libcurl, and libcurl
 * brings a TLS library whose load alone costs the daemon several megabytes of resident memory
 * (its idle budget is 10 MB, bench/idle.sh). So questions go to `asr-llm` (src/cli/asr_llm.c), a
 * helper binary installed next to asr, over its stdin and stdout, one JSON object per line:
 *
 *   question  {"id": N, "llm": {provider, base_url, model, api_key_env, timeout_ms,
 *              max_attempts, max_tokens, backoff_initial_ms, backoff_max_ms, breaker_threshold,
 *              breaker_cooldown_ms}, "system": S, "user": U}
 *   answer    {"id": N, "rc": 0 or an ASR_E* code, "error": "llm: ..." or null, "text",
 *              "finish_reason", "prompt_tokens", "completion_tokens", "http_status", "attempts",
 *              "elapsed_ms", "waited_ms"}
 *
 * The worker reads the API key from the environment variable the config names (it inherits the
 * daemon's environment): the key never crosses the pipe. The daemon keeps one worker for its
 * life, started at the first question, so the client's circuit breaker sees every question; it
 * dies with the daemon (PR_SET_PDEATHSIG, and EOF on its stdin). `asr plan` runs one worker for
 * one question (asr_llm_ask_sync).
 */
#ifndef ASR_STRATEGY_LLM_WORKER_H
#define ASR_STRATEGY_LLM_WORKER_H

#include "asr/config.h"
#include "asr/error.h"
#include "strategy/llm.h"

#include <uv.h>

#define ASR_LLM_WORKER_MAX_LINE (8u << 20) /* bytes of one answer line read from the worker */

struct asr_llm_worker;

/* Called once per question, on the loop, never from inside asr_llm_worker_ask. rc, reply and
 * errmsg as an asr_llm_done_cb gets them (llm.h); reply is valid during the call only, and the
 * callback may take reply->text by setting it to NULL. A worker that exits or sends garbage ends
 * its questions with ASR_EPROTO; asr_llm_worker_destroy ends them with ASR_ECANCELED. */
typedef void (*asr_llm_answer_cb)(int rc, struct asr_llm_reply *reply, const char *errmsg,
                                  void *data);

/* A worker handle on loop; exe is the asr-llm binary (copied). Nothing starts until the first
 * question. Returns 0 or ASR_ENOMEM. */
int asr_llm_worker_create(uv_loop_t *loop, const char *exe, struct asr_llm_worker **out,
                          struct asr_err *err);
/* Sends a question (the worker is started if it is not running). Returns 0 (cb will run), or
 * ASR_ESPAWN/ASR_ENOMEM/ASR_EINVAL with err set (cb will not run). */
int asr_llm_worker_ask(struct asr_llm_worker *w, const struct asr_llm_cfg *cfg, const char *system,
                       const char *user, asr_llm_answer_cb cb, void *data, struct asr_err *err);
/* Questions sent and not answered yet. */
size_t asr_llm_worker_pending(const struct asr_llm_worker *w);
/* Ends pending questions (ASR_ECANCELED, their callbacks run before this returns), closes the
 * worker's stdin so it exits, and frees the handle once its handles are closed. NULL is fine. */
void asr_llm_worker_destroy(struct asr_llm_worker *w);

/* One question on a private loop with a fresh worker. *out is filled in every case (text only on
 * success) and released with asr_llm_reply_free. Returns rc as above, err set on failure. */
int asr_llm_ask_sync(const char *exe, const struct asr_llm_cfg *cfg, const char *system,
                     const char *user, struct asr_llm_reply *out, struct asr_err *err);

#endif
