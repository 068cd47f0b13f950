/*
 * fuzz_cloudwatch.c - libFuzzer target for the CloudWatch Logs subscription decoder
 * (src/detect/cloudwatch.c).
 *
 * Feeds arbitrary bytes to asr_cw_decode_envelope() with small limits, so bombs and long
 * messages hit their caps quickly, then checks the contract: on success every event is within
 * the message cap (plus the marker) and NUL-terminated; on failure the batch is zeroed, the code
 * matches err and the message is one line starting "cloudwatch: ". The seeds in
 * tests/fuzz/corpus/cloudwatch/ are replayed by every ordinary test run (see replay_main.c).
 */
#include "detect/cloudwatch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct asr_cw_limits lim = {.max_input_bytes = 1 << 20,
                                .max_decompressed_bytes = 1 << 20,
                                .max_events = 100,
                                .max_message_bytes = 64};
    struct asr_cw_batch b;
    struct asr_err err = {0};
    int rc = asr_cw_decode_envelope((const char *)data, size, &lim, &b, &err);
    if (rc == 0) {
        if (b.message_type == NULL || b.owner == NULL || b.log_group == NULL ||
            b.log_stream == NULL || b.nevents > lim.max_events)
            abort();
        for (size_t i = 0; i < b.nevents; i++) {
            const struct asr_cw_event *e = &b.events[i];
            if (e->id == NULL || e->message == NULL ||
                e->message_len > lim.max_message_bytes + strlen(ASR_CW_CUT_MARKER) ||
                e->message[e->message_len] != '\0')
                abort();
        }
        asr_cw_batch_free(&b);
    } else if (b.message_type != NULL || b.events != NULL || err.code != rc ||
               strchr(err.msg, '\n') != NULL || strncmp(err.msg, "cloudwatch: ", 12) != 0) {
        abort();
    }
    return 0;
}
