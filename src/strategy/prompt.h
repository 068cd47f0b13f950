/*
 * prompt.h - what asr would send to a language model about an incident, and nothing more.
 *
 * STRATEGY stage (docs/llm.md, "The prompt"). The model sees:
 *   - a fixed system message: its only job (search/replace edits inside the allowed paths, plus
 *     a short rationale), and that everything between the untrusted markers is data;
 *   - the incident (line, context, fields, template) between markers made of a random nonce, so
 *     a log line cannot close them, with control, ANSI and bidi characters shown as \uXXXX;
 *   - the best playbooks retrieved (what operators wrote about similar faults);
 *   - the source files most likely involved: files inside the service's patch_paths that name
 *     the incident's route or identifiers, ranked by how many they name, capped.
 * Every byte of the user message goes through the redactor (redact.h) after it is assembled,
 * so a secret in a log line or in a source file never leaves the host.
 */
#ifndef ASR_STRATEGY_PROMPT_H
#define ASR_STRATEGY_PROMPT_H

#include "asr/config.h"
#include "asr/error.h"
#include "asr/incident.h"
#include "strategy/kb.h"

#include <stddef.h>

#define ASR_PROMPT_MAX_BYTES (128 * 1024) /* the user message, after redaction */
#define ASR_PROMPT_MAX_FILES 3            /* source files included */
#define ASR_PROMPT_MAX_FILE_BYTES (12 * 1024)

struct asr_prompt_input {
    const struct asr_incident *inc;
    const struct asr_kb_hit *hits; /* may be NULL */
    size_t nhits;
    const char *repo_dir; /* the service's source tree to search, or NULL */
    asr_argv patch_paths; /* only files inside these are shown (and may be edited) */
};

struct asr_prompt {
    char *system;
    char *user;
    size_t redactions;                 /* secrets replaced in user */
    char *files[ASR_PROMPT_MAX_FILES]; /* the source files included, relative to repo_dir */
    size_t nfiles;
};

/* Builds the prompt. Returns 0, ASR_ENOMEM, or ASR_EIO when the nonce cannot be drawn. */
int asr_prompt_build(const struct asr_prompt_input *in, struct asr_prompt *out,
                     struct asr_err *err);
void asr_prompt_free(struct asr_prompt *p);

#endif
