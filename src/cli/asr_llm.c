/*
 * asr_llm.c - `asr-llm`: the LLM worker, a binary of its own run as a child of asr.
 *
 * It is the only asr program that links libcurl (and so a TLS library): the daemon's resident
 * memory stays small, and a question to a provider never blocks it. It reads questions on stdin
 * and writes answers on stdout, one JSON object per line, in any order (each carries its id);
 * strategy/llm_worker.h has the exact shapes. It keeps one client (strategy/llm.h) while the llm
 * settings stay the same, so the circuit breaker counts every question it is sent. The API key is
 * read from the environment variable the settings name. It exits when its stdin closes and the
 * questions in flight are answered, or when its parent dies. Not meant for people.
 */
#include "asr/config.h"
#include "strategy/llm.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MAX_QUESTION (16u << 20)

static uv_loop_t *loop;
static uv_pipe_t in;
static struct asr_llm *client;
static char *client_key; /* the settings the client was made with, as compact JSON */
static size_t in_flight;
static bool eof;
static char *buf;
static size_t len, cap;

static void send_answer(json_t *a)
{
    char *s = json_dumps(a, JSON_COMPACT);
    if (s != NULL) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    free(s);
    json_decref(a);
}

static void send_error(json_int_t id, int rc, const char *msg)
{
    send_answer(json_pack("{s:I, s:i, s:s}", "id", id, "rc", rc, "error", msg));
}

static void maybe_finish(void)
{
    if (eof && in_flight == 0 && client != NULL) {
        asr_llm_destroy(client);
        client = NULL;
    }
}

static void done_cb(int rc, struct asr_llm_reply *r, const char *errmsg, void *data)
{
    json_int_t id = (json_int_t)(intptr_t)data;
    send_answer(json_pack("{s:I, s:i, s:s?, s:s?, s:s?, s:I, s:I, s:i, s:i, s:I, s:I}", "id", id,
                          "rc", rc, "error", errmsg, "text", r->text, "finish_reason",
                          r->finish_reason, "prompt_tokens", (json_int_t)r->prompt_tokens,
                          "completion_tokens", (json_int_t)r->completion_tokens, "http_status",
                          r->http_status, "attempts", r->attempts, "elapsed_ms",
                          (json_int_t)r->elapsed_ms, "waited_ms", (json_int_t)r->waited_ms));
    in_flight--;
    maybe_finish();
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int num(json_t *o, const char *k)
{
    return (int)json_integer_value(json_object_get(o, k));
}

/* The client for these settings: the current one, or a new one (the old one's questions then
 * end as cancelled). */
static int client_for(json_t *llm, struct asr_err *err)
{
    char *key = json_dumps(llm, JSON_COMPACT | JSON_SORT_KEYS);
    if (key == NULL)
        return asr_err_set(err, ASR_ENOMEM, "asr-llm: out of memory");
    if (client != NULL && strcmp(key, client_key) == 0) {
        free(key);
        return 0;
    }
    asr_llm_destroy(client);
    client = NULL;
    free(client_key);
    client_key = key;
    struct asr_llm_cfg cfg = {.provider = (char *)str(llm, "provider"),
                              .base_url = (char *)str(llm, "base_url"),
                              .model = (char *)str(llm, "model"),
                              .api_key_env = (char *)str(llm, "api_key_env"),
                              .timeout_ms = num(llm, "timeout_ms"),
                              .max_attempts = num(llm, "max_attempts"),
                              .max_tokens = num(llm, "max_tokens"),
                              .backoff_initial_ms = num(llm, "backoff_initial_ms"),
                              .backoff_max_ms = num(llm, "backoff_max_ms"),
                              .breaker_threshold = num(llm, "breaker_threshold"),
                              .breaker_cooldown_ms = num(llm, "breaker_cooldown_ms")};
    struct asr_llm_opts o;
    int rc = asr_llm_opts_from_cfg(&cfg, &o, err);
    if (rc == 0)
        rc = asr_llm_create(loop, &o, &client, err);
    if (rc != 0) {
        free(client_key); /* so the next question tries again (the variable may be set by then) */
        client_key = NULL;
    }
    return rc;
}

static void on_question(const char *line, size_t n)
{
    json_error_t je;
    json_t *q = json_loadb(line, n, 0, &je);
    json_t *id = json_object_get(q, "id"), *llm = json_object_get(q, "llm");
    const char *user = str(q, "user");
    if (!json_is_integer(id) || !json_is_object(llm) || user == NULL) {
        send_error(json_is_integer(id) ? json_integer_value(id) : 0, ASR_EPROTO,
                   "asr-llm: a question needs an integer id, an llm object and a user text");
        json_decref(q);
        return;
    }
    struct asr_err err = {0};
    int rc = client_for(llm, &err);
    if (rc == 0) {
        struct asr_llm_request r = {.system = str(q, "system"), .user = user};
        rc = asr_llm_complete(client, &r, done_cb, (void *)(intptr_t)json_integer_value(id));
        if (rc != 0)
            asr_err_set(&err, rc, "llm: the call could not start: %s", asr_strerror(rc));
        else
            in_flight++;
    }
    if (rc != 0)
        send_error(json_integer_value(id), rc, err.msg);
    json_decref(q);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    (void)suggested;
    static char chunk[65536];
    *b = uv_buf_init(chunk, sizeof(chunk));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    if (n < 0) {
        uv_read_stop(s);
        uv_close((uv_handle_t *)s, NULL);
        eof = true;
        maybe_finish();
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (b->base[i] == '\n') {
            on_question(buf, len);
            len = 0;
            continue;
        }
        if (len + 1 > cap) {
            size_t c = cap ? cap * 2 : 65536;
            char *nb = c <= MAX_QUESTION ? realloc(buf, c) : NULL;
            if (nb == NULL) {
                fprintf(stderr, "asr-llm: a question longer than %u bytes; stopping\n",
                        MAX_QUESTION);
                exit(1);
            }
            buf = nb;
            cap = c;
        }
        buf[len++] = b->base[i];
    }
}

int main(void)
{
    /* Die with the daemon, even if it is killed. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        return 1;
    signal(SIGPIPE, SIG_DFL);
    loop = uv_default_loop();
    if (uv_pipe_init(loop, &in, 0) != 0 || uv_pipe_open(&in, 0) != 0) {
        fprintf(stderr, "asr-llm: stdin is not a pipe\n");
        return 1;
    }
    uv_read_start((uv_stream_t *)&in, alloc_cb, read_cb);
    uv_run(loop, UV_RUN_DEFAULT);
    asr_llm_destroy(client);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    free(client_key);
    free(buf);
    return 0;
}
