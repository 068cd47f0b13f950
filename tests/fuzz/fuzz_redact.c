/*
 * fuzz_redact.c - libFuzzer target for the redactor (src/strategy/redact.c).
 *
 * Redacts arbitrary bytes twice: once into a buffer with a cap taken from the first input byte
 * (so caps from 0 up are exercised) and once without a cap, then checks the contract: the capped
 * output never exceeds its cap and is a prefix of the uncapped one; success or ASR_ETOOBIG only;
 * the stats count what was written; and redacting the output again changes nothing. The seeds in
 * tests/fuzz/corpus/redact/ are replayed by every ordinary test run (see replay_main.c).
 */
#include "asr/error.h"
#include "strategy/redact.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cap = size > 0 ? (size_t)data[0] * 4 : 0;
    struct asr_buf full, capped, again;
    asr_buf_init(&full, 1u << 26);
    asr_buf_init(&capped, cap);
    asr_buf_init(&again, 1u << 26);
    struct asr_redact_stats st;
    if (asr_redact((const char *)data, size, &full, &st) != 0)
        abort();
    size_t sum = 0;
    for (int k = 0; k < ASR_REDACT_KINDS; k++)
        sum += st.by_kind[k];
    if (sum != st.redactions)
        abort();
    int rc = asr_redact((const char *)data, size, &capped, NULL);
    if ((rc != 0 && rc != ASR_ETOOBIG) || capped.len > cap || capped.len > full.len ||
        (rc == 0) != (capped.len == full.len) ||
        (capped.len > 0 && memcmp(capped.data, full.data, capped.len) != 0))
        abort();
    if (asr_redact(asr_buf_cstr(&full), full.len, &again, &st) != 0 || again.len != full.len ||
        (full.len > 0 && memcmp(again.data, full.data, full.len) != 0))
        abort(); /* not idempotent */
    asr_buf_free(&full);
    asr_buf_free(&capped);
    asr_buf_free(&again);
    return 0;
}
