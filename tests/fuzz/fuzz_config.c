/*
 * fuzz_config.c - libFuzzer target for the YAML config loader (src/core/config.c).
 *
 * Feeds arbitrary bytes to asr_config_parse() with command and filesystem checks off, so the
 * result depends only on the input, and frees whatever comes back. Crashes, leaks, sanitizer
 * reports and a message that is not one line are all findings. The seeds in
 * tests/fuzz/corpus/config/ are replayed by every ordinary test run (see replay_main.c).
 */
#include "asr/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct asr_config *cfg = NULL;
    struct asr_err err = {0};
    int rc = asr_config_parse("fuzz.yaml", "/fuzz", (const char *)data, size, false, &cfg, &err);
    if (rc == 0) {
        /* Touch what a caller would: every service by name, every argv. */
        for (size_t i = 0; i < cfg->nservices; i++) {
            const struct asr_service_cfg *s = &cfg->services[i];
            if (asr_config_service(cfg, s->name) != s || s->listen_port < 1 ||
                s->listen_port > 65535 || asr_argv_len(s->start) == 0)
                abort();
            (void)asr_argv_len(s->build);
            (void)asr_argv_len(s->test);
            (void)asr_argv_len(s->env);
        }
        asr_config_free(cfg);
    } else if (cfg != NULL || err.code != rc || strchr(err.msg, '\n') != NULL) {
        abort();
    }
    return 0;
}
