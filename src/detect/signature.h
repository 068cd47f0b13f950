/*
 * signature.h - match every signature of a service against a line in one pass.
 *
 * Second stage of detection (docs/detection.md). A sigset holds a service's configured
 * signatures (config.h: id, PCRE2-syntax regex with named captures, severity, dedupe fields)
 * and, when asked, the built-in generic detectors for errors nobody configured. All patterns are
 * compiled into one Hyperscan block-mode database, so a line is scanned once however many
 * signatures there are; only on the rare lines that match does PCRE2 (JIT) run the matching
 * pattern again to extract its named captures. A pattern Hyperscan cannot compile exactly (a
 * back-reference, a lookaround, an atomic group) is compiled in Hyperscan's prefilter mode and
 * confirmed by PCRE2, so the one-pass scan stays. The few PCRE2 constructs that Hyperscan cannot
 * take even as a prefilter (\K, subroutine calls, conditionals, backtracking control verbs,
 * bounded repeats above about 32k) make asr_sigset_create() fail with Hyperscan's reason: such a
 * signature would otherwise need PCRE2 on every line, and that cost should be visible, not silent.
 * Both engines run in UTF-8 mode (`.` is one character; \w, \d, \s are ASCII as in PCRE2's
 * default). Patterns are capped at 4096 bytes.
 *
 * Generic detectors (kind, severity), matched as whole words where that makes sense (the table
 * in signature.c says exactly what is and is not a hit; "ERRORS_TOTAL=0", "ERROR=0",
 * "0 errors", "NON-FATAL" are not):
 *   "fatal"     FATAL, panic:, "fatal error:", "panicked at", "Segmentation fault", SIGSEGV,
 *               "core dumped", level=fatal|panic (logfmt, JSON)                    critical
 *   "oom"       "out of memory" (any case), OutOfMemoryError, "Cannot allocate memory",
 *               MemoryError, std::bad_alloc, oom-kill, OOMKilled                   critical
 *   "error"     ERROR, CRITICAL, SEVERE, FAILURE, level=error|err|critical (logfmt, JSON),
 *               Traceback (most recent call last), *Exception, assertion failures
 *               ("Assertion `...' failed", "assertion failed", AssertionError)    error
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
    const char *value; /* points into the scanned line (into the set's repaired copy of it if
                          the line was not valid UTF-8); not NUL-terminated */
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
/* Compile the Hyperscan database in a short-lived child process (fork) and load its serialized
 * form: for the daemon, so that the compiler's megabytes of code and heap are never resident in
 * a process that runs for months. The result is the same set; errors are the same messages. */
#define ASR_SIGSET_APART 0x2u

/*
 * Compiles n signatures (may be 0) plus, with ASR_SIGSET_GENERIC, the generic detectors.
 * Checks that each dedupe name is a named group of its pattern. On failure returns ASR_ECONFIG
 * (or ASR_ENOMEM, or ASR_EINVAL for a NULL id or pattern) and err names the signature and the
 * reason, e.g. "signature FAULT_X (line 23): pattern: missing closing parenthesis at offset 7" or
 * "signature FAULT_X (line 23): dedupe field 'route' is not a named group of the pattern".
 */
int asr_sigset_create(const struct asr_signature_cfg *sigs, size_t n, unsigned flags,
                      struct asr_sigset **out, struct asr_err *err);

/*
 * Scans one line. Calls cb for each matching signature: configured ones first, in config order,
 * then generic ones in table order, each at most once. Returns the number of hits reported, or
 * a negative ASR_E* code (ASR_ENOMEM, ASR_ETOOBIG for a line of 4 GiB or more, or ASR_EIO if the
 * engine failed). A line that is not valid UTF-8 (the framer guarantees it is) is scanned as the
 * framer would have repaired it, each bad byte replaced by U+FFFD. Not thread-safe: a sigset
 * owns one scratch space.
 */
int asr_sigset_scan(struct asr_sigset *s, const char *line, size_t len, asr_sig_hit_cb cb,
                    void *data);

/* A hit of asr_sigset_scan_block(), with the line (len bytes, without its newline) it is in. */
typedef bool (*asr_sig_line_hit_cb)(void *data, const char *line, size_t len,
                                    const struct asr_sig_hit *hit);

/*
 * Scans a block of lines, each ended by '\n' (the last one may lack it), with the results of
 * calling asr_sigset_scan() on each line in turn: the same hits, in line order and within a
 * line in the same order, until cb returns false. It is the fast path for bulk input (a chunk
 * of a file, a CloudWatch batch): one Hyperscan call for the whole block finds the few lines
 * that can match, and only those are scanned one by one (bench/sigscan.md: ~0.8 GB/s line by
 * line against several GB/s per block for 100 signatures). The block database is compiled on
 * the first call (roughly as long as asr_sigset_create took). Returns the number of hits, or a
 * negative ASR_E* code as asr_sigset_scan does (ASR_ETOOBIG for a block of 4 GiB or more).
 */
int asr_sigset_scan_block(struct asr_sigset *s, const char *buf, size_t len, asr_sig_line_hit_cb cb,
                          void *data);

/* Number of configured signatures and of generic detectors in the set. */
size_t asr_sigset_count(const struct asr_sigset *s);
size_t asr_sigset_generic_count(const struct asr_sigset *s);

/* Frees the set; accepts NULL. */
void asr_sigset_destroy(struct asr_sigset *s);

#endif
