/*
 * signature.h - match every signature of a service against a line in one pass.
 *
 * Second stage of detection (docs/detection.md). A sigset holds a service's configured
 * signatures (config.h: id, PCRE2-syntax regex with named captures, severity, dedupe fields)
 * and, when asked, the built-in generic detectors for errors nobody configured. All patterns are
 * compiled into one Hyperscan block-mode database, so a line is scanned once however many
 * signatures there are; only on the rare lines that match does PCRE2 (JIT) run the matching
 * pattern again to extract its named captures. A pattern Hyperscan cannot compile exactly (a
 * back-reference, a lookaround) is compiled in Hyperscan's prefilter mode and confirmed by PCRE2,
 * so every PCRE2 pattern works and the one-pass scan stays.
 *
 * Generic detectors (kind, severity), matched as whole words where that makes sense:
 *   "fatal"     FATAL, panic:, "Segmentation fault", SIGSEGV, "core dumped"       critical
 *   "oom"       "out of memory", "Out of memory", OutOfMemoryError, "Cannot allocate memory"
 *                                                                                critical
 *   "error"     ERROR, CRITICAL, SEVERE, FAILURE, Traceback (most recent call last), *Exception,
 *               assertion failures ("Assertion `...' failed", "assertion failed", AssertionError)
 *                                                                                error
 */
#ifndef ASR_DETECT_SIGNATURE_H
#define ASR_DETECT_SIGNATURE_H

#include "asr/config.h"
#include "asr/error.h"

#include <stdbool.h>
#include <stddef.h>

struct asr_sigset;

#define ASR_SIG_MAX_CAPTURES 16

struct asr_sig_capture {
    const char *name;  /* the group's name, owned by the sigset */
    const char *value; /* points into the scanned line; not NUL-terminated */
    size_t len;
};

/* One matching signature. Everything is valid only during the callback. */
struct asr_sig_hit {
    bool generic;              /* a built-in detector, not a configured signature */
    size_t index;              /* index into the configured signatures, or into the generic table */
    const char *id;            /* signature id, or "generic:<kind>" (e.g. "generic:error") */
    const char *severity;      /* "info" | "warning" | "error" | "critical" */
    const char *const *dedupe; /* the signature's dedupe field names (NULL-terminated; empty
                                  for generic detectors) */
    size_t ncaptures;          /* named groups that took part in the match, in pattern order */
    struct asr_sig_capture captures[ASR_SIG_MAX_CAPTURES];
};

/* Return false to stop the scan early. */
typedef bool (*asr_sig_hit_cb)(void *data, const struct asr_sig_hit *hit);

#define ASR_SIGSET_GENERIC 0x1u /* add the generic detectors */

/*
 * Compiles n signatures (may be 0) plus, with ASR_SIGSET_GENERIC, the generic detectors.
 * Checks that each dedupe name is a named group of its pattern. On failure returns ASR_ECONFIG
 * (or ASR_ENOMEM) and err names the signature and the reason, e.g.
 * "signature FAULT_X (line 23): pattern: missing closing parenthesis at offset 7" or
 * "signature FAULT_X (line 23): dedupe field 'route' is not a named group of the pattern".
 */
int asr_sigset_create(const struct asr_signature_cfg *sigs, size_t n, unsigned flags,
                      struct asr_sigset **out, struct asr_err *err);

/*
 * Scans one line. Calls cb for each matching signature: configured ones first, in config order,
 * then generic ones in table order, each at most once. Returns the number of hits reported, or
 * a negative ASR_E* code (ASR_ENOMEM, or ASR_EIO if the engine failed). Not thread-safe: a sigset
 * owns one scratch space.
 */
int asr_sigset_scan(struct asr_sigset *s, const char *line, size_t len, asr_sig_hit_cb cb,
                    void *data);

/* Number of configured signatures and of generic detectors in the set. */
size_t asr_sigset_count(const struct asr_sigset *s);
size_t asr_sigset_generic_count(const struct asr_sigset *s);

/* Frees the set; accepts NULL. */
void asr_sigset_destroy(struct asr_sigset *s);

#endif
