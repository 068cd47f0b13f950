/*
 * asr_post.c - `asr-post`: one outbound HTTP request, a binary of its own run as a child of asr.
 *
 * The daemon must not link libcurl (its TLS library alone would take the idle daemon past its
 * 10 MB budget; docs/llm.md), yet it sends webhook notifications and talks to GitHub's REST API
 * (src/execute/notify.c, github.c). So each such request runs in this short-lived helper, like
 * git work runs in asr-git: the daemon writes the request, starts `asr-post REQUEST` on its loop
 * (src/execute/post.c) and reads one line back.
 *
 *   asr-post [REQUEST]   REQUEST is a file holding the JSON request, or stdin when absent or "-"
 *
 * The request, strict JSON (unknown and duplicate keys refused):
 *   {"url": "https://...", "method": "POST", "headers": {"Name": "value", ...},
 *    "body": "...", "timeout_ms": 5000, "token_env": "GITHUB_TOKEN"}
 * Only url is required; method defaults to POST with a body and GET without one. token_env names
 * the environment variable whose value goes into "Authorization: Bearer ...": the helper reads it
 * itself, so the token never crosses a pipe, a file or argv, and it is never sent over plain http
 * except to a loopback host. Authorization, Host, Content-Length, Transfer-Encoding, Connection
 * and Proxy-* cannot be set as headers.
 *
 * The answer is one JSON line on stdout:
 *   {"status": 200, "body": "...", "truncated": false, "headers": {...}, "error": null}
 * status is the HTTP status (0 when no response came); body is the response body, at most
 * ASR_POST_BODY_CAP bytes (the transfer is aborted there and truncated is true), made valid UTF-8
 * and with the token, should the server echo it, replaced by "[token]"; headers holds the few
 * response headers a caller may need (location, retry-after, x-ratelimit-*), lowercased. error
 * says what went wrong when no response came, naming only the URL's scheme, host and port (a
 * webhook URL's path often is a secret of its own). Exit status 0 when a response came (whatever
 * its status), 1 when none did (connection, DNS, TLS), 2 when the request itself is refused, 3
 * when the request timed out.
 *
 * One request per run: no retries, no redirects followed (a 3xx is returned as is), http and https
 * only, proxies from the environment ignored, TLS verification on. Nothing is written to stderr,
 * so the daemon, which reads stdout and stderr together, sees only the answer line.
 */
#include "asr/utf8.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <signal.h>

#define ASR_POST_REQUEST_CAP (2u << 20) /* bytes of one request */
#define ASR_POST_SEND_CAP (1u << 20)    /* bytes of a request body */
#define ASR_POST_BODY_CAP (64u * 1024u) /* bytes of a response body kept */
#define MAX_HEADERS 32
#define MAX_HEADER_VALUE 8192
#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TIMEOUT_MS 300000
#define MAX_TOKEN 4096

/* Response headers passed back to the caller, lowercased. */
static const char *const kept_headers[] = {
    "location",          "retry-after",          "x-ratelimit-limit",   "x-ratelimit-remaining",
    "x-ratelimit-reset", "x-ratelimit-resource", "x-github-request-id", NULL};

/* Request headers that only the helper sets (or that would let a request smuggle another). */
static const char *const forbidden_headers[] = {"authorization",
                                                "proxy-authorization",
                                                "host",
                                                "content-length",
                                                "transfer-encoding",
                                                "connection",
                                                "expect",
                                                "upgrade",
                                                "te",
                                                "trailer",
                                                "keep-alive",
                                                "proxy-connection",
                                                NULL};

struct answer {
    long status;
    char *body;
    size_t len;
    bool truncated;
    json_t *headers;
    char error[512];
};

static const char *token; /* the bearer token, for scrubbing; NULL without one */

static void emit(struct answer *a, int exit_code)
{
    /* The error is one printable ASCII line (it may quote request bytes). */
    for (char *p = a->error; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    /* The body, valid UTF-8 (invalid bytes and NUL as '?') and without the token. */
    char *clean = malloc(a->len + 1);
    size_t n = 0;
    for (size_t i = 0; clean != NULL && i < a->len;) {
        size_t q = asr_utf8_seq((const unsigned char *)a->body + i, a->len - i);
        if (q == 0 || a->body[i] == '\0') {
            clean[n++] = '?';
            i++;
            continue;
        }
        memcpy(clean + n, a->body + i, q);
        n += q;
        i += q;
    }
    if (clean != NULL)
        clean[n] = '\0';
    json_t *body = NULL;
    size_t tl = token != NULL ? strlen(token) : 0;
    if (clean != NULL && tl > 0 && strstr(clean, token) != NULL) {
        /* Each echo of the token (tl bytes) becomes "[token]" (7 bytes). */
        char *out = malloc(n + (n / tl + 1) * 7 + 1);
        size_t m = 0;
        for (size_t i = 0; out != NULL && i < n;) {
            if (i + tl <= n && memcmp(clean + i, token, tl) == 0) {
                memcpy(out + m, "[token]", 7);
                m += 7;
                i += tl;
            } else {
                out[m++] = clean[i++];
            }
        }
        if (out != NULL)
            body = json_stringn(out, m);
        free(out);
    } else if (clean != NULL) {
        body = json_stringn(clean, n);
    }
    free(clean);
    json_t *o = json_pack("{s:i, s:o, s:b, s:O, s:s?}", "status", (int)a->status, "body",
                          body != NULL ? body : json_string(""), "truncated", a->truncated,
                          "headers", a->headers != NULL ? a->headers : json_object(), "error",
                          a->error[0] != '\0' ? a->error : NULL);
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s != NULL)
        printf("%s\n", s);
    else
        printf("{\"status\":0,\"body\":\"\",\"truncated\":false,\"headers\":{},\"error\":"
               "\"asr-post: out of memory\"}\n");
    fflush(stdout);
    free(s);
    json_decref(o);
    json_decref(a->headers);
    free(a->body);
    exit(exit_code);
}

__attribute__((format(printf, 3, 4))) static void fail(struct answer *a, int code, const char *fmt,
                                                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->error, sizeof(a->error), fmt, ap);
    va_end(ap);
    emit(a, code);
}

/* ---- the request ------------------------------------------------------------------------- */

static char *read_all(FILE *f, size_t cap, size_t *len, bool *too_big)
{
    char *b = malloc(cap + 1);
    size_t n = b != NULL ? fread(b, 1, cap + 1, f) : 0;
    *too_big = n > cap;
    if (b == NULL || ferror(f)) {
        free(b);
        return NULL;
    }
    *len = n;
    return b;
}

static bool is_token_char(char c)
{
    return isalnum((unsigned char)c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ident(const char *s)
{
    if (s[0] == '\0' || isdigit((unsigned char)s[0]))
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    return true;
}

static bool is_loopback(const char *host)
{
    return strcasecmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0;
}

/* "scheme://host:port" of the URL for messages (never its path or query). */
static void url_origin(CURLU *u, char *out, size_t cap)
{
    char *scheme = NULL, *host = NULL, *port = NULL;
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    snprintf(out, cap, "%s://%s:%s", scheme != NULL ? scheme : "?", host != NULL ? host : "?",
             port != NULL ? port : "?");
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
}

static size_t body_cb(char *p, size_t size, size_t nmemb, void *data)
{
    struct answer *a = data;
    size_t n = size * nmemb;
    if (a->len + n > ASR_POST_BODY_CAP) {
        size_t room = ASR_POST_BODY_CAP - a->len;
        memcpy(a->body + a->len, p, room);
        a->len += room;
        a->truncated = true;
        return 0; /* aborts the transfer: the rest is not wanted */
    }
    memcpy(a->body + a->len, p, n);
    a->len += n;
    return n;
}

static size_t header_cb(char *p, size_t size, size_t nmemb, void *data)
{
    struct answer *a = data;
    size_t n = size * nmemb;
    const char *colon = memchr(p, ':', n);
    if (colon == NULL)
        return n;
    size_t kl = (size_t)(colon - p);
    for (size_t i = 0; kept_headers[i] != NULL; i++) {
        if (strlen(kept_headers[i]) != kl || strncasecmp(p, kept_headers[i], kl) != 0)
            continue;
        const char *v = colon + 1, *end = p + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        size_t vl = (size_t)(end - v) < 1024 ? (size_t)(end - v) : 1024;
        char val[1025];
        size_t j = 0;
        for (size_t k = 0; k < vl; k++)
            val[j++] = (unsigned char)v[k] >= 0x20 && (unsigned char)v[k] < 0x7f ? v[k] : '?';
        val[j] = '\0';
        json_object_set_new(a->headers, kept_headers[i], json_string(val));
    }
    return n;
}

/* Wipes and frees a header list (one entry holds the token). */
static void wipe_list(struct curl_slist *l)
{
    for (struct curl_slist *e = l; e != NULL; e = e->next)
        explicit_bzero(e->data, strlen(e->data));
    curl_slist_free_all(l);
}

int main(int argc, char **argv)
{
    struct answer a = {0};
    a.headers = json_object();
    a.body = malloc(ASR_POST_BODY_CAP + 1);
    if (a.headers == NULL || a.body == NULL)
        fail(&a, 1, "asr-post: out of memory");
    /* Dies with its parent (the daemon starts it through asr-exec, which does the same). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc > 2)
        fail(&a, 2, "usage: asr-post [REQUEST]");
    const char *path = argc == 2 ? argv[1] : NULL;
    FILE *f = path == NULL || strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        fail(&a, 2, "asr-post: cannot open the request %s: %s", path, strerror(errno));
    size_t len = 0;
    bool too_big = false;
    char *text = read_all(f, ASR_POST_REQUEST_CAP, &len, &too_big);
    if (f != stdin)
        fclose(f);
    if (text == NULL)
        fail(&a, 2, "asr-post: cannot read the request");
    if (too_big)
        fail(&a, 2, "asr-post: the request is larger than %u bytes", ASR_POST_REQUEST_CAP);

    json_error_t je;
    json_t *req = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!json_is_object(req))
        fail(&a, 2, "asr-post: the request is not a JSON object: %s (line %d)",
             req == NULL ? je.text : "another type", je.line);
    static const char *const keys[] = {"url",        "method",    "headers", "body",
                                       "timeout_ms", "token_env", NULL};
    const char *k;
    json_t *v;
    json_object_foreach(req, k, v)
    {
        bool ok = false;
        for (size_t i = 0; keys[i] != NULL && !ok; i++)
            ok = strcmp(k, keys[i]) == 0;
        if (!ok)
            fail(&a, 2, "asr-post: unknown key '%.40s' in the request", k);
    }
    json_t *jurl = json_object_get(req, "url"), *jmethod = json_object_get(req, "method"),
           *jheaders = json_object_get(req, "headers"), *jbody = json_object_get(req, "body"),
           *jtimeout = json_object_get(req, "timeout_ms"),
           *jtoken = json_object_get(req, "token_env");
    if (!json_is_string(jurl) || json_string_length(jurl) == 0 || json_string_length(jurl) > 8192 ||
        strlen(json_string_value(jurl)) != json_string_length(jurl))
        fail(&a, 2, "asr-post: 'url' must be a string of 1 to 8192 bytes");
    if (jbody != NULL && (!json_is_string(jbody) || json_string_length(jbody) > ASR_POST_SEND_CAP))
        fail(&a, 2, "asr-post: 'body' must be a string of at most %u bytes", ASR_POST_SEND_CAP);
    const char *method = jbody != NULL ? "POST" : "GET";
    if (jmethod != NULL) {
        static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
        bool ok = false;
        for (size_t i = 0; json_is_string(jmethod) && methods[i] != NULL && !ok; i++)
            ok = strcmp(json_string_value(jmethod), methods[i]) == 0;
        if (!ok)
            fail(&a, 2, "asr-post: 'method' must be GET, POST, PUT, PATCH or DELETE");
        method = json_string_value(jmethod);
    }
    if (strcmp(method, "GET") == 0 && jbody != NULL)
        fail(&a, 2, "asr-post: a GET request has no body");
    long timeout_ms = DEFAULT_TIMEOUT_MS;
    if (jtimeout != NULL) {
        if (!json_is_integer(jtimeout) || json_integer_value(jtimeout) < 1 ||
            json_integer_value(jtimeout) > MAX_TIMEOUT_MS)
            fail(&a, 2, "asr-post: 'timeout_ms' must be an integer in 1..%d", MAX_TIMEOUT_MS);
        timeout_ms = (long)json_integer_value(jtimeout);
    }

    /* The URL: http or https, no credentials in it. */
    CURLU *u = curl_url();
    char origin[600] = "?";
    char *scheme = NULL, *host = NULL, *user = NULL, *pass = NULL;
    if (u == NULL)
        fail(&a, 1, "asr-post: out of memory");
    if (curl_url_set(u, CURLUPART_URL, json_string_value(jurl), 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        fail(&a, 2, "asr-post: 'url' is not a valid URL");
    url_origin(u, origin, sizeof(origin));
    if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)
        fail(&a, 2, "asr-post: %s: only http and https are allowed", origin);
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK)
        fail(&a, 2, "asr-post: %s: the URL carries credentials; name a token_env instead", origin);
    bool plain_remote = strcmp(scheme, "http") == 0 && !is_loopback(host);

    /* The headers. */
    struct curl_slist *hl = NULL;
    bool has_ctype = false;
    if (jheaders != NULL && !json_is_object(jheaders))
        fail(&a, 2, "asr-post: 'headers' must be an object of strings");
    if (json_object_size(jheaders) > MAX_HEADERS)
        fail(&a, 2, "asr-post: more than %d headers", MAX_HEADERS);
    json_object_foreach(jheaders, k, v)
    {
        size_t kl = strlen(k);
        bool ok = kl > 0 && kl <= 128;
        for (size_t i = 0; ok && i < kl; i++)
            ok = is_token_char(k[i]);
        if (!ok)
            fail(&a, 2, "asr-post: header name '%.40s' is not an HTTP token", k);
        for (size_t i = 0; forbidden_headers[i] != NULL; i++)
            if (strcasecmp(k, forbidden_headers[i]) == 0)
                fail(&a, 2, "asr-post: header %s cannot be set by a request%s", k,
                     strcasecmp(k, "authorization") == 0 ? " (name a token_env)" : "");
        const char *o;
        json_t *ov;
        json_object_foreach(jheaders, o, ov)
        {
            if (o != k && strcasecmp(o, k) == 0)
                fail(&a, 2, "asr-post: header %s is given twice", k);
        }
        if (!json_is_string(v) || json_string_length(v) > MAX_HEADER_VALUE)
            fail(&a, 2, "asr-post: header %s: the value must be a string of at most %d bytes", k,
                 MAX_HEADER_VALUE);
        const char *val = json_string_value(v);
        if (strlen(val) != json_string_length(v))
            fail(&a, 2, "asr-post: header %s: the value holds a NUL byte", k);
        for (const char *p = val; *p != '\0'; p++)
            if ((unsigned char)*p < 0x20 && *p != '\t')
                fail(&a, 2, "asr-post: header %s: the value holds a control character", k);
        has_ctype = has_ctype || strcasecmp(k, "content-type") == 0;
        size_t ll = kl + strlen(val) + 3;
        char *line = malloc(ll);
        if (line == NULL)
            fail(&a, 1, "asr-post: out of memory");
        snprintf(line, ll, "%s: %s", k, val);
        struct curl_slist *nl = curl_slist_append(hl, line);
        free(line);
        if (nl == NULL)
            fail(&a, 1, "asr-post: out of memory");
        hl = nl;
    }
    if (jbody != NULL && !has_ctype)
        hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:"); /* no 100-continue round trip */

    /* The token, from the environment the helper inherited. */
    if (jtoken != NULL) {
        if (!json_is_string(jtoken) || !is_ident(json_string_value(jtoken)) ||
            json_string_length(jtoken) > 128)
            fail(&a, 2, "asr-post: 'token_env' must be an environment variable name");
        const char *name = json_string_value(jtoken);
        token = getenv(name);
        if (token == NULL || token[0] == '\0')
            fail(&a, 2, "asr-post: the environment variable %s (token_env) is not set", name);
        if (strlen(token) > MAX_TOKEN)
            fail(&a, 2, "asr-post: the token in %s is longer than %d bytes", name, MAX_TOKEN);
        for (const char *p = token; *p != '\0'; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                fail(&a, 2, "asr-post: the token in %s holds a space or a control character", name);
        if (plain_remote)
            fail(&a, 2,
                 "asr-post: %s: refusing to send a token over plain http to a host that is not "
                 "loopback; use https",
                 origin);
        size_t tl = strlen(token) + 32;
        char *auth = malloc(tl);
        if (auth == NULL)
            fail(&a, 1, "asr-post: out of memory");
        snprintf(auth, tl, "Authorization: Bearer %s", token);
        struct curl_slist *nl = curl_slist_append(hl, auth);
        explicit_bzero(auth, strlen(auth));
        free(auth);
        if (nl == NULL)
            fail(&a, 1, "asr-post: out of memory");
        hl = nl;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        fail(&a, 1, "asr-post: cannot initialise libcurl");
    CURL *h = curl_easy_init();
    char curl_err[CURL_ERROR_SIZE] = "";
    if (h == NULL)
        fail(&a, 1, "asr-post: out of memory");
    curl_easy_setopt(h, CURLOPT_CURLU, u);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* ignore http_proxy and friends */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 15000 ? timeout_ms : 15000L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "asr-post/0.1");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        const char *b = jbody != NULL ? json_string_value(jbody) : "";
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE,
                         (long)(jbody != NULL ? json_string_length(jbody) : 0));
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, b);
    }
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a.status);
    curl_easy_cleanup(h);
    wipe_list(hl);
    curl_url_cleanup(u);
    if (cc == CURLE_WRITE_ERROR && a.truncated && a.status > 0)
        cc = CURLE_OK; /* the body reached its cap: the answer is what came */
    if (cc != CURLE_OK && a.status > 0 && cc != CURLE_OPERATION_TIMEDOUT)
        cc = CURLE_OK; /* a response came, then the connection broke: its status stands */
    if (cc != CURLE_OK) {
        a.status = 0;
        const char *why = curl_err[0] != '\0' ? curl_err : curl_easy_strerror(cc);
        /* libcurl's messages can name the URL; keep only the reason, with the origin. */
        char clean[300];
        size_t j = 0;
        for (size_t i = 0; why[i] != '\0' && j + 1 < sizeof(clean); i++)
            clean[j++] =
                (unsigned char)why[i] >= 0x20 && (unsigned char)why[i] < 0x7f ? why[i] : '?';
        clean[j] = '\0';
        fail(&a, cc == CURLE_OPERATION_TIMEDOUT ? 3 : 1, "%s %s: %s%s", method, origin,
             cc == CURLE_OPERATION_TIMEDOUT ? "timed out: " : "", clean);
    }
    curl_free(scheme);
    curl_free(host);
    json_decref(req); /* method pointed into it */
    emit(&a, 0);
}
