/*
 * fuzz_github_answer.c - libFuzzer target for what GitHub and the asr-post helper answer
 * (src/execute/github.c, src/execute/post.c).
 *
 * The first byte picks the request and the layer; it is chosen so that seeds read as text:
 *   bit 0    the request: 0 lists the open pull requests (200), 1 creates one (201)
 *   bit 1    0: the rest is the helper's output (noise, then its answer line
 *            {"status", "body", "truncated", "headers", "error"}), read by
 *            asr_post_parse_answer with the exit status in bits 2-3 and "timed out" in bit 4,
 *            then, as the daemon does, by asr_github_parse_answer;
 *            1: the rest is "SSSF" and an HTTP body given to asr_github_parse_answer directly:
 *            SSS the status in three digits (other bytes count as digits too), F flags:
 *            bit 0 the body was truncated, bit 1 a retry-after header, bit 2
 *            x-ratelimit-remaining 0, bit 3 x-ratelimit-reset, bit 4 no response came
 * So '@' and 'A' start a helper line for the list and the creation, 'B' and 'C' a body
 * ("B200@[...]").
 *
 * The contract checked: the helper's answer is a response (rc 0, a status of 100-999, no error)
 * or a failure (status 0, one printable line of error); the body and headers are never NULL.
 * GitHub's answer is a pull request (number > 0, a printable html_url; existed only for a list),
 * "create" (an empty list only), or an error code with one printable line "github: ..."; the
 * status is the helper's. The seeds in tests/fuzz/corpus/github_answer/ are replayed by every
 * ordinary test run (see replay_main.c).
 */
#include "execute/github.h"
#include "execute/post.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* s is one line of printable ASCII, shorter than cap. */
static int printable_line(const char *s, size_t cap)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] >= 0x7f)
            return 0;
    return n < cap;
}

static void check_post(const struct asr_post_answer *a, bool timed_out)
{
    const struct asr_post_result *r = &a->r;
    bool known = r->rc == 0 || r->rc == ASR_ETIMEOUT || r->rc == ASR_EPROTO ||
                 r->rc == ASR_EINVAL || r->rc == ASR_ENET;
    if (!known || r->body == NULL || !json_is_object(r->headers) ||
        (timed_out && r->rc != ASR_ETIMEOUT))
        abort();
    if (r->rc == 0 && (r->status < 100 || r->status > 999 || r->error != NULL ||
                       json_integer_value(json_object_get(a->line, "status")) != r->status))
        abort();
    if (r->rc != 0 &&
        (r->status != 0 || r->error == NULL || !printable_line(r->error, sizeof(a->msg))))
        abort();
}

static void check_github(enum asr_github_step step, const struct asr_post_result *p,
                         const struct asr_github_answer *a)
{
    const struct asr_github_pr_result *r = &a->r;
    bool known = r->rc == 0 || r->rc == ASR_ECONFIG || r->rc == ASR_EBUSY || r->rc == ASR_EINVAL ||
                 r->rc == ASR_ENET || r->rc == ASR_ETIMEOUT || r->rc == ASR_EPROTO;
    if (!known || r->status != p->status || (p->rc != 0 && r->rc != p->rc))
        abort();
    /* The statuses the executor tells apart (github.h). */
    int s = p->rc == 0 ? p->status : 0;
    if ((s == 429 && r->rc != ASR_EBUSY) || (s == 422 && r->rc != ASR_EINVAL) ||
        (s == 401 && (r->rc != ASR_ECONFIG || strstr(r->error, "$GITHUB_TOKEN") == NULL)) ||
        (s == 404 && r->rc != ASR_ECONFIG) || (s >= 300 && s < 400 && r->rc != ASR_EPROTO) ||
        (s >= 500 && r->rc != ASR_ENET))
        abort();
    if (r->rc != 0) {
        if (r->error == NULL || strncmp(r->error, "github: ", 8) != 0 ||
            !printable_line(r->error, sizeof(a->msg)) || r->html_url != NULL || r->existed ||
            a->create)
            abort();
    } else if (a->create) {
        if (step != ASR_GITHUB_LIST || p->status != 200 || r->number != 0 || r->html_url != NULL ||
            r->existed || r->error != NULL)
            abort();
    } else if (r->number <= 0 || r->html_url == NULL || r->error != NULL ||
               !printable_line(r->html_url, sizeof(a->url)) ||
               r->existed != (step == ASR_GITHUB_LIST) ||
               p->status != (step == ASR_GITHUB_LIST ? 200 : 201)) {
        abort();
    }
}

/* A byte as a decimal digit: '0'-'9' as themselves, any other byte as some digit. */
static int digit(uint8_t b)
{
    return (uint8_t)(b - '0') % 10;
}

/* The "SSSF<body>" form: a response made up here, the body as the helper hands it on. */
static void direct(enum asr_github_step step, const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    char *body = malloc(size - 4 + 1);
    json_t *headers = json_object();
    if (body == NULL || headers == NULL)
        abort();
    memcpy(body, data + 4, size - 4);
    body[size - 4] = '\0';
    uint8_t f = data[3];
    struct asr_post_result p = {
        .status = digit(data[0]) * 100 + digit(data[1]) * 10 + digit(data[2]),
        .body = body,
        .truncated = (f & 1) != 0,
        .headers = headers,
    };
    if (f & 2)
        json_object_set_new(headers, "retry-after", json_string("60"));
    if (f & 4)
        json_object_set_new(headers, "x-ratelimit-remaining", json_string("0"));
    if (f & 8)
        json_object_set_new(headers, "x-ratelimit-reset", json_string("1700000000"));
    if (f & 16) {
        p.rc = ASR_ENET;
        p.status = 0;
        p.body = "";
        p.error = "asr-post: https://api.github.com:443: Could not resolve host";
    }
    struct asr_github_answer a;
    asr_github_parse_answer(step, &p, "GITHUB_TOKEN", &a);
    check_github(step, &p, &a);
    json_decref(headers);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    enum asr_github_step step = (data[0] & 1) != 0 ? ASR_GITHUB_CREATE : ASR_GITHUB_LIST;
    if ((data[0] & 2) != 0) {
        direct(step, data + 1, size - 1);
        return 0;
    }
    int exit_status = (data[0] >> 2) & 3;
    bool timed_out = (data[0] & 16) != 0;
    struct asr_post_answer pa;
    asr_post_parse_answer((const char *)data + 1, size - 1, exit_status, timed_out, &pa);
    check_post(&pa, timed_out);
    struct asr_github_answer a;
    asr_github_parse_answer(step, &pa.r, "GITHUB_TOKEN", &a);
    check_github(step, &pa.r, &a);
    asr_post_answer_free(&pa);
    return 0;
}
