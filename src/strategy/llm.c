/*
 * llm.c - the LLM client's transport (see llm.h): libcurl's multi interface on the caller's uv
 * loop, retries with jittered back-off, the circuit breaker, and the synchronous wrapper.
 *
 * How libcurl meets libuv: CURLMOPT_SOCKETFUNCTION tells us which sockets libcurl wants watched
 * and for what; each gets a uv_poll (struct sock) whose events go back through
 * curl_multi_socket_action(). CURLMOPT_TIMERFUNCTION sets the client's one uv_timer, whose expiry
 * calls curl_multi_socket_action(CURL_SOCKET_TIMEOUT). After every action, finished transfers are
 * read with curl_multi_info_read() and judged (on_attempt_done): success, a retry after a
 * back-off on the call's own uv_timer, or the end of the call. User callbacks run only from
 * there, never from inside a libcurl callback, so a done callback may start calls or destroy the
 * client.
 *
 * Lifetime: the client, each call and each socket own one uv handle; memory goes when the
 * handle's close callback has run, and the client is freed with its last handle. libcurl's
 * global state is set up with the first client and torn down with the last.
 */
#include "strategy/llm.h"
#include "asr/config.h"
#include "asr/buf.h"
#include "asr/timeutil.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEF_TIMEOUT_MS 60000
#define DEF_ATTEMPTS 3
#define DEF_BACKOFF_MS 500
#define DEF_BACKOFF_MAX_MS 30000
#define DEF_BREAKER 5
#define DEF_COOLDOWN_MS 60000
#define DEF_MAX_REPLY ((size_t)1 << 20)
#define DEF_MAX_TOKENS 4096
#define MAX_CONNECT_MS 15000
#define MAX_PROMPT_BYTES ((size_t)16 << 20)

enum breaker_state { CLOSED, OPEN, HALF_OPEN };

struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct asr_llm *c;
    struct sock *next, *prev;
};

struct call {
    struct asr_llm *c;
    struct call *next, *prev;
    uv_timer_t timer; /* back-off between attempts, or the delivery of a refusal */
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    struct asr_buf resp;
    bool toobig;
    bool probe; /* the half-open breaker's trial call */
    asr_llm_done_cb done;
    void *data;
    uint64_t started_ms;
    int64_t waited_ms;
    int attempts;
    int last_status;
    int refused_rc; /* set when the breaker refused the call; delivered from the timer */
    char errbuf[CURL_ERROR_SIZE];
    char msg[512];
};

struct asr_llm {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int open_handles;
    bool closing;
    enum asr_llm_provider provider;
    char *url;
    char *model;
    char *key;
    char *proxy;
    struct asr_llm_opts o; /* numbers with defaults applied; the strings above */
    struct call *calls;
    struct sock *socks;
    enum breaker_state state;
    int consecutive;
    uint64_t open_until_ms;
    bool probe_in_flight;
    char last_error[200];
    uint64_t rng;
};

static int global_refs;

/* ---- small helpers --------------------------------------------------------------------------- */

static uint64_t next_rand(struct asr_llm *c)
{
    /* xorshift64*: jitter only, no secrecy needed. */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * 2685821657736338717ULL;
}

/* Replaces every copy of the key in s (in place) with "[key]"; the key never reaches a message. */
static void scrub_key(const struct asr_llm *c, char *s)
{
    size_t klen = c->key ? strlen(c->key) : 0;
    if (klen < 4)
        return;
    char *p;
    while ((p = strstr(s, c->key)) != NULL) {
        memcpy(p, "[key]", 5);
        memmove(p + 5, p + klen, strlen(p + klen) + 1);
    }
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static bool is_loopback(const char *host)
{
    return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0;
}

/* Checks base_url and builds the endpoint URL of the provider into c->url. */
static int build_url(struct asr_llm *c, const char *base, struct asr_err *err)
{
    CURLU *u = curl_url();
    if (u == NULL)
        return asr_err_set(err, ASR_ENOMEM, "llm: out of memory");
    int rc = 0;
    char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL, *frag = NULL;
    if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rc = asr_err_set(err, ASR_EINVAL, "llm: base_url \"%.200s\" is not a valid URL", base);
        goto out;
    }
    if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) {
        rc = asr_err_set(err, ASR_EINVAL, "llm: base_url \"%.200s\": scheme must be https or http",
                         base);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
        /* Not echoed: a URL with credentials or a ?key= is exactly what must not be printed. */
        rc = asr_err_set(err, ASR_EINVAL,
                         "llm: base_url must not carry credentials, a query or a fragment "
                         "(the key goes in api_key_env)");
        goto out;
    }
    if (c->key != NULL && strcmp(scheme, "http") == 0 && !is_loopback(host)) {
        rc = asr_err_set(err, ASR_EINVAL,
                         "llm: base_url \"%.200s\": refusing to send the API key over plain http "
                         "to a host that is not loopback; use https",
                         base);
        goto out;
    }
    struct asr_buf b;
    asr_buf_init(&b, 4096);
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    asr_buf_append(&b, base, blen);
    switch (c->provider) {
    case ASR_LLM_OPENAI:
        asr_buf_puts(&b, "/chat/completions");
        break;
    case ASR_LLM_GEMINI:
        asr_buf_printf(&b, "/models/%s:generateContent", c->model);
        break;
    case ASR_LLM_ANTHROPIC:
        asr_buf_puts(&b, "/v1/messages");
        break;
    }
    if (b.truncated || b.data == NULL) {
        asr_buf_free(&b);
        rc = asr_err_set(err, ASR_EINVAL, "llm: base_url is too long");
        goto out;
    }
    c->url = asr_buf_steal(&b);
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(query);
    curl_free(frag);
    curl_url_cleanup(u);
    return rc;
}

/* ---- handle bookkeeping ---------------------------------------------------------------------- */

static void client_free(struct asr_llm *c)
{
    free(c->url);
    free(c->model);
    wipe_free(c->key);
    free(c->proxy);
    free(c);
    if (--global_refs == 0)
        curl_global_cleanup();
}

static void handle_closed(struct asr_llm *c)
{
    if (--c->open_handles == 0 && c->closing)
        client_free(c);
}

static void client_timer_closed_cb(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void sock_closed_cb(uv_handle_t *h)
{
    struct sock *s = h->data;
    struct asr_llm *c = s->c;
    free(s);
    handle_closed(c);
}

static void sock_close(struct sock *s)
{
    struct asr_llm *c = s->c;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, sock_closed_cb);
}

static void free_headers(struct curl_slist *h)
{
    for (struct curl_slist *p = h; p != NULL; p = p->next)
        explicit_bzero(p->data, strlen(p->data)); /* one of them holds the key */
    curl_slist_free_all(h);
}

static void call_closed_cb(uv_handle_t *h)
{
    struct call *k = h->data;
    struct asr_llm *c = k->c;
    free_headers(k->headers);
    free(k->body);
    asr_buf_free(&k->resp);
    free(k);
    handle_closed(c);
}

/* ---- the breaker ----------------------------------------------------------------------------- */

/* Decides whether a new call may go out; fills msg and returns ASR_EBUSY if not. */
static int breaker_admit(struct asr_llm *c, struct call *k)
{
    uint64_t now = asr_time_mono_ms();
    if (c->state == OPEN && now >= c->open_until_ms)
        c->state = HALF_OPEN;
    if (c->state == OPEN) {
        snprintf(k->msg, sizeof(k->msg),
                 "llm: circuit open after %d consecutive failures; retry after %llu ms (last: %s)",
                 c->consecutive, (unsigned long long)(c->open_until_ms - now), c->last_error);
        return ASR_EBUSY;
    }
    if (c->state == HALF_OPEN) {
        if (c->probe_in_flight) {
            snprintf(k->msg, sizeof(k->msg),
                     "llm: circuit half-open after %d consecutive failures; a trial call is in "
                     "flight (last: %s)",
                     c->consecutive, c->last_error);
            return ASR_EBUSY;
        }
        k->probe = true;
        c->probe_in_flight = true;
    }
    return 0;
}

/* Records the outcome of a call that went out. counted: a failure of the provider. */
static void breaker_record(struct asr_llm *c, struct call *k, int rc, bool counted)
{
    if (k->probe)
        c->probe_in_flight = false;
    if (rc == ASR_ECANCELED)
        return;
    if (!counted) {
        c->consecutive = 0;
        c->state = CLOSED;
        return;
    }
    c->consecutive++;
    snprintf(c->last_error, sizeof(c->last_error), "%.199s", k->msg);
    if (k->probe || c->consecutive >= c->o.breaker_threshold) {
        c->state = OPEN;
        c->open_until_ms = asr_time_mono_ms() + (uint64_t)c->o.breaker_cooldown_ms;
    }
}

/* ---- ending a call --------------------------------------------------------------------------- */

/*
 * Ends a call: fills the reply, updates the breaker, runs the user's callback and closes the
 * call's timer (which frees it). reply may hold parsed fields; it is freed here.
 */
static void finish(struct call *k, int rc, struct asr_llm_reply *reply, bool counted)
{
    struct asr_llm *c = k->c;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->next = k->prev = NULL;
    scrub_key(c, k->msg);
    if (k->refused_rc == 0)
        breaker_record(c, k, rc, counted);
    reply->http_status = k->last_status;
    reply->attempts = k->attempts;
    reply->elapsed_ms = (int64_t)(asr_time_mono_ms() - k->started_ms);
    reply->waited_ms = k->waited_ms;
    uv_timer_stop(&k->timer);
    if (k->done != NULL)
        k->done(rc, reply, rc == 0 ? NULL : k->msg, k->data);
    asr_llm_reply_free(reply);
    uv_close((uv_handle_t *)&k->timer, call_closed_cb);
}

static void finish_err(struct call *k, int rc, bool counted)
{
    struct asr_llm_reply r = {.prompt_tokens = -1, .completion_tokens = -1};
    finish(k, rc, &r, counted);
}

/* ---- attempts -------------------------------------------------------------------------------- */

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct call *k = userdata;
    size_t n = size * nmemb;
    if (n > k->resp.cap - k->resp.len) {
        k->toobig = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return asr_buf_append(&k->resp, ptr, n) == 0 ? n : 0;
}

/* Starts one attempt of a call; 0 or ASR_ENOMEM (the call is not ended here). */
static int start_attempt(struct call *k)
{
    struct asr_llm *c = k->c;
    CURL *e = curl_easy_init();
    if (e == NULL)
        return ASR_ENOMEM;
    k->attempts++;
    k->toobig = false;
    k->last_status = 0;
    k->errbuf[0] = '\0';
    asr_buf_reset(&k->resp);
    long connect_ms = c->o.timeout_ms < MAX_CONNECT_MS ? c->o.timeout_ms : MAX_CONNECT_MS;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, c->url);
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    bad |= curl_easy_setopt(e, CURLOPT_PROXY, c->proxy ? c->proxy : "");
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->o.timeout_ms);
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->o.max_reply_bytes);
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, k->headers);
    bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, k->body);
    bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(k->body));
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "asr/0.1");
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, k);
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, k->errbuf);
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, k);
    if (bad != 0 || curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return ASR_ENOMEM;
    }
    k->easy = e;
    return 0;
}

static void call_timer_cb(uv_timer_t *t)
{
    struct call *k = t->data;
    if (k->refused_rc != 0) {
        finish_err(k, k->refused_rc, false);
        return;
    }
    if (start_attempt(k) != 0) {
        snprintf(k->msg, sizeof(k->msg), "llm: %s: out of memory starting attempt %d",
                 asr_llm_provider_name(k->c->provider), k->attempts + 1);
        finish_err(k, ASR_ENOMEM, false);
    }
}

/* The back-off before attempt n+1 after n attempts: drawn from [base/2, base]. */
static int64_t backoff_ms(struct asr_llm *c, int n)
{
    int64_t base = c->o.backoff_initial_ms;
    for (int i = 1; i < n && base < c->o.backoff_max_ms; i++)
        base *= 2;
    if (base > c->o.backoff_max_ms)
        base = c->o.backoff_max_ms;
    int64_t half = base / 2;
    return half + (int64_t)(next_rand(c) % (uint64_t)(base - half + 1));
}

static bool retryable_curl(CURLcode r)
{
    switch (r) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static bool retryable_status(int st)
{
    return st == 408 || st == 429 || st == 500 || st == 502 || st == 503 || st == 504 || st == 529;
}

/* Judges a finished attempt: the call ends, or the next attempt is scheduled. */
static void on_attempt_done(struct call *k, CURLcode result, int status, int64_t retry_after_ms)
{
    struct asr_llm *c = k->c;
    const char *who = asr_llm_provider_name(c->provider);
    k->last_status = status;
    bool retry = false;
    int rc;
    struct asr_err err = {0};

    if (result == CURLE_FILESIZE_EXCEEDED || (result == CURLE_WRITE_ERROR && k->toobig)) {
        snprintf(k->msg, sizeof(k->msg),
                 "llm: %s: reply body exceeds max_reply_bytes (%zu bytes); transfer aborted", who,
                 c->o.max_reply_bytes);
        finish_err(k, ASR_ETOOBIG, true);
        return;
    }
    if (result != CURLE_OK) {
        rc = result == CURLE_OPERATION_TIMEDOUT ? ASR_ETIMEOUT : ASR_ENET;
        retry = retryable_curl(result);
        if (result == CURLE_OPERATION_TIMEDOUT)
            snprintf(k->msg, sizeof(k->msg), "llm: %s: %s: no complete reply within %d ms", who,
                     c->url, c->o.timeout_ms);
        else
            snprintf(k->msg, sizeof(k->msg), "llm: %s: %s: %s%s%s", who, c->url,
                     curl_easy_strerror(result), k->errbuf[0] ? ": " : "", k->errbuf);
        retry_after_ms = -1;
    } else if (status >= 200 && status < 300) {
        struct asr_llm_reply reply;
        rc = asr_llm_parse_reply(c->provider, asr_buf_cstr(&k->resp), k->resp.len, &reply, &err);
        if (rc == 0) {
            finish(k, 0, &reply, false);
            return;
        }
        snprintf(k->msg, sizeof(k->msg), "%s", asr_err_msg(&err, rc));
        int kind = asr_llm_finish_kind(c->provider, reply.finish_reason);
        /* A cut or refused answer is still a working provider: the breaker does not count it. */
        finish(k, rc, &reply, !(kind == 1 || kind == 2));
        return;
    } else if (status >= 300 && status < 400) {
        snprintf(k->msg, sizeof(k->msg),
                 "llm: %s: %s: HTTP %d redirect not followed (base_url must name the API itself)",
                 who, c->url, status);
        finish_err(k, ASR_EPROTO, true);
        return;
    } else {
        struct asr_llm_error_info info;
        asr_llm_parse_error(c->provider, asr_buf_cstr(&k->resp), k->resp.len, &info);
        rc = (status == 401 || status == 403 || status == 404) ? ASR_ECONFIG : ASR_ENET;
        retry = retryable_status(status) && !info.quota;
        if (retry_after_ms < 0)
            retry_after_ms = info.retry_delay_ms;
        snprintf(k->msg, sizeof(k->msg), "llm: %s: %sHTTP %d%s%s%s%s%s", who,
                 info.quota ? "quota or spend limit exhausted, not retried: " : "", status,
                 info.kind[0] ? " (" : "", info.kind, info.kind[0] ? ")" : "",
                 info.message[0] ? ": " : "", info.message);
    }

    if (retry && k->attempts < c->o.max_attempts) {
        int64_t wait;
        if (retry_after_ms > c->o.backoff_max_ms) {
            size_t n = strlen(k->msg);
            snprintf(k->msg + n, sizeof(k->msg) - n,
                     "; the provider asks to wait %lld ms, more than backoff_max_ms (%d): not "
                     "retried",
                     (long long)retry_after_ms, c->o.backoff_max_ms);
            finish_err(k, rc, true);
            return;
        }
        if (retry_after_ms > 0)
            wait = retry_after_ms + (int64_t)(next_rand(c) % (uint64_t)(retry_after_ms / 10 + 1));
        else
            wait = backoff_ms(c, k->attempts);
        if (wait > c->o.backoff_max_ms)
            wait = c->o.backoff_max_ms;
        k->waited_ms += wait;
        uv_timer_start(&k->timer, call_timer_cb, (uint64_t)wait, 0);
        return;
    }
    if (k->attempts > 1) {
        size_t n = strlen(k->msg);
        snprintf(k->msg + n, sizeof(k->msg) - n, " (after %d attempts)", k->attempts);
    }
    finish_err(k, rc, true);
}

/* Reads libcurl's finished transfers. Stops when a callback destroyed the client. */
static void check_multi_info(struct asr_llm *c)
{
    CURLMsg *m;
    int left;
    while (!c->closing && (m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode result = m->data.result;
        struct call *k = NULL;
        long status = 0;
        curl_off_t ra = -1;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&k);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &ra) != CURLE_OK || ra <= 0)
            ra = -1;
        curl_multi_remove_handle(c->multi, e);
        curl_easy_cleanup(e);
        k->easy = NULL;
        int64_t ra_ms = ra < 0 ? -1 : (ra > 86400 ? 86400000 : (int64_t)ra * 1000);
        on_attempt_done(k, result, (int)status, ra_ms);
    }
}

/* ---- libcurl <-> libuv ------------------------------------------------------------------------
 */

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct sock *s = h->data;
    struct asr_llm *c = s->c;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    check_multi_info(c);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e;
    struct asr_llm *c = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            sock_close(s);
            if (c->multi != NULL)
                curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->c = c;
        s->poll.data = s;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        c->open_handles++;
        curl_multi_assign(c->multi, fd, s);
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&s->poll, ev, poll_cb);
    return 0;
}

static void client_timer_cb(uv_timer_t *t)
{
    struct asr_llm *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(c);
}

static int timer_func(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    struct asr_llm *c = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, client_timer_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- public API ------------------------------------------------------------------------------ */

static int positive_or(int v, int def)
{
    return v > 0 ? v : def;
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

int asr_llm_create(uv_loop_t *loop, const struct asr_llm_opts *o, struct asr_llm **out,
                   struct asr_err *err)
{
    *out = NULL;
    enum asr_llm_provider p;
    if (loop == NULL || o == NULL)
        return asr_err_set(err, ASR_EINVAL, "llm: no loop or options");
    if (asr_llm_provider_parse(o->provider, &p) != 0)
        return asr_err_set(err, ASR_EINVAL,
                           "llm: provider \"%.40s\" is not one of openai, gemini, anthropic",
                           o->provider ? o->provider : "(null)");
    if (o->model == NULL || o->model[0] == '\0' || strlen(o->model) > 200 || !printable(o->model))
        return asr_err_set(err, ASR_EINVAL,
                           "llm: model is missing, longer than 200 bytes or not printable");
    const char *model = o->model;
    if (p == ASR_LLM_GEMINI && strncmp(model, "models/", 7) == 0)
        model += 7;
    if (p == ASR_LLM_GEMINI &&
        (model[0] == '\0' || strspn(model, "abcdefghijklmnopqrstuvwxyz"
                                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789._-") != strlen(model)))
        return asr_err_set(err, ASR_EINVAL,
                           "llm: gemini model \"%.200s\" may hold only letters, digits, '.', '_' "
                           "and '-' (it becomes part of the URL)",
                           o->model);
    if (o->api_key != NULL && o->api_key[0] != '\0' &&
        (strlen(o->api_key) > 1024 || !printable(o->api_key)))
        return asr_err_set(err, ASR_EINVAL,
                           "llm: api_key is longer than 1024 bytes or holds spaces or control "
                           "characters (value not shown)");

    struct asr_llm *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return asr_err_set(err, ASR_ENOMEM, "llm: out of memory");
    if (global_refs++ == 0)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    c->loop = loop;
    c->provider = p;
    c->o = *o;
    c->o.provider = c->o.base_url = c->o.model = c->o.api_key = c->o.proxy = NULL;
    c->o.timeout_ms = positive_or(o->timeout_ms, DEF_TIMEOUT_MS);
    c->o.max_attempts = positive_or(o->max_attempts, DEF_ATTEMPTS);
    c->o.backoff_initial_ms = positive_or(o->backoff_initial_ms, DEF_BACKOFF_MS);
    c->o.backoff_max_ms = positive_or(o->backoff_max_ms, DEF_BACKOFF_MAX_MS);
    if (c->o.backoff_max_ms < c->o.backoff_initial_ms)
        c->o.backoff_max_ms = c->o.backoff_initial_ms;
    c->o.breaker_threshold = positive_or(o->breaker_threshold, DEF_BREAKER);
    c->o.breaker_cooldown_ms = positive_or(o->breaker_cooldown_ms, DEF_COOLDOWN_MS);
    c->o.max_reply_bytes = o->max_reply_bytes > 0 ? o->max_reply_bytes : DEF_MAX_REPLY;
    c->o.max_tokens = positive_or(o->max_tokens, DEF_MAX_TOKENS);
    c->rng = (asr_time_mono_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c) | 1;
    snprintf(c->last_error, sizeof(c->last_error), "none");

    c->model = strdup(model);
    c->key = (o->api_key && o->api_key[0]) ? strdup(o->api_key) : NULL;
    c->proxy = o->proxy ? strdup(o->proxy) : NULL;
    int rc = 0;
    if (c->model == NULL || (o->api_key && o->api_key[0] && c->key == NULL) ||
        (o->proxy && c->proxy == NULL)) {
        rc = asr_err_set(err, ASR_ENOMEM, "llm: out of memory");
        goto fail;
    }
    const char *base = o->base_url;
    if (base == NULL || base[0] == '\0')
        base = p == ASR_LLM_OPENAI   ? "https://api.openai.com/v1"
               : p == ASR_LLM_GEMINI ? "https://generativelanguage.googleapis.com/v1beta"
                                     : "https://api.anthropic.com";
    if ((rc = build_url(c, base, err)) != 0)
        goto fail;
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "llm: out of memory (curl_multi_init)");
        goto fail;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_func);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 1;
    *out = c;
    return 0;
fail:
    client_free(c);
    return rc;
}

/* The request headers of the client's protocol, the key among them; NULL when out of memory. */
static struct curl_slist *make_headers(const struct asr_llm *c)
{
    struct curl_slist *h = NULL, *t;
    const char *fixed[] = {
        "Content-Type: application/json", "Accept: application/json",
        "Expect:", c->provider == ASR_LLM_ANTHROPIC ? "anthropic-version: 2023-06-01" : NULL};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (fixed[i] == NULL)
            continue;
        if ((t = curl_slist_append(h, fixed[i])) == NULL)
            goto fail;
        h = t;
    }
    if (c->key != NULL) {
        const char *name = c->provider == ASR_LLM_OPENAI   ? "Authorization: Bearer "
                           : c->provider == ASR_LLM_GEMINI ? "x-goog-api-key: "
                                                           : "x-api-key: ";
        size_t n = strlen(name) + strlen(c->key) + 1;
        char *line = malloc(n);
        if (line == NULL)
            goto fail;
        snprintf(line, n, "%s%s", name, c->key);
        t = curl_slist_append(h, line);
        wipe_free(line);
        if (t == NULL)
            goto fail;
        h = t;
    }
    return h;
fail:
    free_headers(h);
    return NULL;
}

int asr_llm_complete(struct asr_llm *c, const struct asr_llm_request *r, asr_llm_done_cb done,
                     void *data)
{
    if (c == NULL || c->closing)
        return ASR_ECANCELED;
    if (r == NULL || r->user == NULL || r->user[0] == '\0' || done == NULL)
        return ASR_EINVAL;
    if (strlen(r->user) > MAX_PROMPT_BYTES ||
        (r->system != NULL && strlen(r->system) > MAX_PROMPT_BYTES))
        return ASR_ETOOBIG;
    struct call *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return ASR_ENOMEM;
    k->c = c;
    k->done = done;
    k->data = data;
    k->started_ms = asr_time_mono_ms();
    asr_buf_init(&k->resp, c->o.max_reply_bytes);
    int rc = asr_llm_build_request(c->provider, c->model, c->o.max_tokens, r, &k->body);
    if (rc == 0 && (k->headers = make_headers(c)) == NULL)
        rc = ASR_ENOMEM;
    if (rc != 0) {
        free_headers(k->headers);
        free(k->body);
        free(k);
        return rc;
    }
    uv_timer_init(c->loop, &k->timer);
    k->timer.data = k;
    c->open_handles++;
    k->next = c->calls;
    if (c->calls)
        c->calls->prev = k;
    c->calls = k;
    rc = breaker_admit(c, k);
    if (rc != 0) {
        /* Refused at once, but reported from the loop like every other outcome. */
        k->refused_rc = rc;
        uv_timer_start(&k->timer, call_timer_cb, 0, 0);
        return 0;
    }
    if (start_attempt(k) != 0) {
        if (k->probe)
            c->probe_in_flight = false;
        k->done = NULL;
        struct asr_llm_reply dummy = {0};
        k->refused_rc = ASR_ENOMEM; /* keeps the breaker out of it */
        finish(k, ASR_ENOMEM, &dummy, false);
        return ASR_ENOMEM;
    }
    return 0;
}

void asr_llm_destroy(struct asr_llm *c)
{
    if (c == NULL || c->closing)
        return;
    c->closing = true;
    while (c->calls != NULL) {
        struct call *k = c->calls;
        if (k->easy != NULL) {
            curl_multi_remove_handle(c->multi, k->easy);
            curl_easy_cleanup(k->easy);
            k->easy = NULL;
        }
        snprintf(k->msg, sizeof(k->msg), "llm: %s: client destroyed before the reply arrived",
                 asr_llm_provider_name(c->provider));
        k->refused_rc = 0;
        finish_err(k, ASR_ECANCELED, false);
    }
    CURLM *m = c->multi;
    c->multi = NULL;
    curl_multi_cleanup(m); /* closes cached connections; their sockets leave via socket_cb */
    while (c->socks != NULL) {
        uv_poll_stop(&c->socks->poll);
        sock_close(c->socks);
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, client_timer_closed_cb);
}

/* ---- the synchronous wrapper ------------------------------------------------------------------
 */

struct sync_state {
    bool done;
    int rc;
    struct asr_llm_reply *out;
    struct asr_err *err;
};

static void sync_done_cb(int rc, struct asr_llm_reply *reply, const char *errmsg, void *data)
{
    struct sync_state *st = data;
    st->done = true;
    st->rc = rc;
    *st->out = *reply;
    reply->text = NULL;
    reply->finish_reason = NULL;
    if (rc != 0)
        asr_err_set(st->err, rc, "%s", errmsg ? errmsg : asr_strerror(rc));
}

int asr_llm_opts_from_cfg(const struct asr_llm_cfg *cfg, struct asr_llm_opts *o,
                          struct asr_err *err)
{
    memset(o, 0, sizeof(*o));
    if (cfg == NULL || cfg->provider == NULL || strcmp(cfg->provider, "none") == 0)
        return asr_err_set(err, ASR_ECONFIG, "llm: no provider is configured (llm.provider)");
    const char *key = NULL;
    if (cfg->api_key_env != NULL) {
        key = getenv(cfg->api_key_env);
        if (key == NULL || key[0] == '\0')
            return asr_err_set(err, ASR_ECONFIG,
                               "llm: the environment variable %s (llm.api_key_env) is not set",
                               cfg->api_key_env);
    }
    *o = (struct asr_llm_opts){.provider = cfg->provider,
                               .base_url = cfg->base_url,
                               .model = cfg->model,
                               .api_key = key,
                               .timeout_ms = cfg->timeout_ms,
                               .max_attempts = cfg->max_attempts,
                               .backoff_initial_ms = cfg->backoff_initial_ms,
                               .backoff_max_ms = cfg->backoff_max_ms,
                               .breaker_threshold = cfg->breaker_threshold,
                               .breaker_cooldown_ms = cfg->breaker_cooldown_ms,
                               .max_tokens = cfg->max_tokens};
    return 0;
}

int asr_llm_complete_sync(const struct asr_llm_opts *o, const struct asr_llm_request *r,
                          struct asr_llm_reply *out, struct asr_err *err)
{
    memset(out, 0, sizeof(*out));
    out->prompt_tokens = out->completion_tokens = -1;
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return asr_err_set(err, ASR_ENOMEM, "llm: cannot create an event loop");
    struct asr_llm *c = NULL;
    struct sync_state st = {.out = out, .err = err};
    int rc = asr_llm_create(&loop, o, &c, err);
    if (rc == 0) {
        rc = asr_llm_complete(c, r, sync_done_cb, &st);
        if (rc != 0)
            asr_err_set(err, rc, "llm: cannot start the call: %s", asr_strerror(rc));
        while (rc == 0 && !st.done)
            uv_run(&loop, UV_RUN_ONCE);
        if (rc == 0)
            rc = st.rc;
        asr_llm_destroy(c);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}
