/*
 * fuzz_playbook.c - libFuzzer target for the playbook loader (src/strategy/playbook.c).
 *
 * Feeds arbitrary bytes to asr_playbook_parse() and frees whatever comes back. Crashes, leaks,
 * sanitizer reports, a message that is not one line and an error code that disagrees with the
 * message are findings. A playbook that loads must also survive the round trip through its JSON
 * form: the dump (ASCII-only, so YAML reads every character as an escape) parses back to the
 * same JSON, unless the dump itself is refused (over the size cap, or a character outside the
 * Basic Multilingual Plane, which libyaml cannot read from a \u escape pair).
 * The seeds in tests/fuzz/corpus/playbook/ are replayed by every ordinary test run.
 */
#include "strategy/playbook.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct asr_playbook *pb = NULL;
    struct asr_err err = {0};
    int rc = asr_playbook_parse("fuzz.yaml", (const char *)data, size, &pb, &err);
    if (rc != 0) {
        if (pb != NULL || err.code != rc || strchr(err.msg, '\n') != NULL ||
            strncmp(err.msg, "fuzz.yaml", 9) != 0)
            abort();
        return 0;
    }
    if (pb->nsteps == 0 || pb->nsteps > ASR_PLAYBOOK_MAX_STEPS || pb->verify.method == NULL ||
        (pb->nsignatures == 0 && pb->template == NULL && pb->text == NULL))
        abort();
    json_t *j = asr_playbook_json(pb);
    char *dump = j != NULL ? json_dumps(j, JSON_ENSURE_ASCII) : NULL;
    if (dump != NULL) {
        struct asr_playbook *back = NULL;
        if (asr_playbook_parse("dump", dump, strlen(dump), &back, &err) == 0) {
            json_t *j2 = asr_playbook_json(back);
            if (j2 != NULL && !json_equal(j, j2))
                abort();
            json_decref(j2);
            asr_playbook_free(back);
        }
        free(dump);
    }
    json_decref(j);
    asr_playbook_free(pb);
    return 0;
}
