/*
 * fuzz_llm_reply.c - libFuzzer target for the LLM reply parsers (src/strategy/llm_proto.c).
 *
 * The first byte picks the protocol (openai, gemini, anthropic), the rest is a response body.
 * Each input goes through asr_llm_parse_reply() (the 2xx path) and asr_llm_parse_error() (every
 * other status), and the contract is checked: on success the text is non-empty, NUL-terminated
 * and exactly len bytes with no NUL inside; on failure there is no text, err holds the code and
 * one printable line starting "llm: "; the error summary is printable ASCII with a sane retry
 * delay. The seeds in tests/fuzz/corpus/llm_reply/ are replayed by every ordinary test run.
 */
#include "strategy/llm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int printable_line(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    enum asr_llm_provider p = (enum asr_llm_provider)(data[0] % 3);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    struct asr_llm_reply r;
    struct asr_err err = {0};
    int rc = asr_llm_parse_reply(p, body, len, &r, &err);
    if (rc == 0) {
        if (r.text == NULL || r.len == 0 || strlen(r.text) != r.len || r.finish_reason == NULL ||
            asr_llm_finish_kind(p, r.finish_reason) != 0)
            abort();
    } else if (r.text != NULL || r.len != 0 || err.code != rc ||
               strncmp(err.msg, "llm: ", 5) != 0 || !printable_line(err.msg) ||
               (rc != ASR_EPROTO && rc != ASR_ETOOBIG && rc != ASR_ENOMEM)) {
        abort();
    }
    if (r.prompt_tokens < -1 || r.completion_tokens < -1)
        abort();
    asr_llm_reply_free(&r);

    struct asr_llm_error_info info;
    asr_llm_parse_error(p, body, len, &info);
    if (!printable_line(info.message) || !printable_line(info.kind) || info.retry_delay_ms < -1 ||
        (info.quota != 0 && info.quota != 1))
        abort();
    return 0;
}
