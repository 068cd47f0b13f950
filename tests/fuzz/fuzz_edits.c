/*
 * fuzz_edits.c - libFuzzer target for the edit-block parser and the path check
 * (src/strategy/edits.c).
 *
 * Feeds arbitrary bytes to asr_edits_parse() as an LLM reply, then checks the contract. On
 * success: 1..ASR_EDITS_MAX_BLOCKS edits, each with a non-empty path, texts without NUL bytes
 * within their cap and made of whole lines, SEARCH empty only for a create (whose REPLACE is not
 * empty), and a rationale within its cap without control characters other than newline and tab.
 * Then asr_edits_check_paths() must give the same answer twice, accept the set exactly when it
 * accepts every edit on its own, and accept only paths that are relative and free of "..", "."
 * and empty components. On failure: the edits are zeroed, the code matches err and the message is
 * one line starting "edits: ". The seeds in tests/fuzz/corpus/edits/ are replayed by every
 * ordinary test run (see replay_main.c).
 */
#include "strategy/edits.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *s, size_t n)
{
    if (s == NULL || strlen(s) != n || n > ASR_EDITS_MAX_TEXT || (n > 0 && s[n - 1] != '\n'))
        abort();
}

/* An accepted path, checked independently of edits.c's own rules. */
static void check_safe(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || p[0] == '/' || p[n - 1] == '/' || strstr(p, "//") != NULL ||
        strchr(p, '\\') != NULL || strchr(p, '%') != NULL)
        abort();
    for (const char *seg = p; seg != NULL;) {
        const char *slash = strchr(seg, '/');
        size_t m = slash != NULL ? (size_t)(slash - seg) : strlen(seg);
        if ((m == 1 && seg[0] == '.') || (m == 2 && seg[0] == '.' && seg[1] == '.'))
            abort();
        seg = slash != NULL ? slash + 1 : NULL;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct asr_edits e;
    struct asr_err err = {0};
    int rc = asr_edits_parse((const char *)data, size, &e, &err);
    if (rc != 0) {
        if (e.v != NULL || e.n != 0 || e.rationale != NULL || err.code != rc ||
            strchr(err.msg, '\n') != NULL || strncmp(err.msg, "edits: ", 7) != 0)
            abort();
        return 0;
    }
    if (e.n == 0 || e.n > ASR_EDITS_MAX_BLOCKS || e.rationale == NULL ||
        strlen(e.rationale) > ASR_EDITS_MAX_RATIONALE ||
        (e.format != ASR_EDITS_BLOCKS && e.format != ASR_EDITS_DIFF))
        abort();
    for (const char *r = e.rationale; *r != '\0'; r++)
        if (((unsigned char)*r < 0x20 && *r != '\n' && *r != '\t') || *r == 0x7f)
            abort();
    for (size_t i = 0; i < e.n; i++) {
        const struct asr_edit *ed = &e.v[i];
        if (ed->path == NULL || ed->path[0] == '\0' || ed->line < 1)
            abort();
        check_text(ed->search, ed->search_len);
        check_text(ed->replace, ed->replace_len);
        if (ed->search_len == 0 && ed->replace_len == 0)
            abort();
    }
    char *globs[] = {"src/**", "lib/*.c", "**/test_?.py", NULL};
    struct asr_err e1 = {0}, e2 = {0};
    int r1 = asr_edits_check_paths(&e, globs, &e1);
    int r2 = asr_edits_check_paths(&e, globs, &e2);
    if (r1 != r2 || strcmp(e1.msg, e2.msg) != 0 || (r1 != 0 && r1 != ASR_EINVAL))
        abort();
    bool all = true;
    for (size_t i = 0; i < e.n; i++) {
        struct asr_edits one = {.v = &e.v[i], .n = 1, .rationale = e.rationale};
        struct asr_err e3 = {0};
        int r3 = asr_edits_check_paths(&one, globs, &e3);
        if (r3 == 0)
            check_safe(e.v[i].path);
        else if (strchr(e3.msg, '\n') != NULL || strncmp(e3.msg, "edits: edit 1 ", 14) != 0)
            abort();
        all = all && r3 == 0;
    }
    if (all != (r1 == 0))
        abort();
    asr_edits_free(&e);
    return 0;
}
