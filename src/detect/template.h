/*
 * template.h - online log template miner (Drain family).
 *
 * Part of detection (issue 3): every log message is turned into a template, with `<*>` where the
 * message had a variable, and a cluster id that is stable across runs for the same input order.
 * The incident layer uses the id as the fingerprint of errors nobody configured; `asr templates`
 * prints the ids and templates for a whole file (src/cli/cmd_templates.c).
 *
 * Algorithm: tokenise on whitespace; mask variable tokens (anything with a digit, long hex,
 * absolute paths, `<*>` from preprocessing) before clustering; route by token count and first
 * token as Drain with depth 4 does; join the most similar cluster of the route if Drain's
 * similarity reaches the threshold, else start a new cluster; positions that differ become `<*>`.
 * Memory is bounded: at most max_clusters clusters (least recently used is evicted), at most
 * max_tokens tokens per message (the rest folds into one `<*>`), tokens longer than
 * max_token_len are variables. Tokens are compared by 64-bit hash.
 */
#ifndef ASR_DETECT_TEMPLATE_H
#define ASR_DETECT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct asr_miner;

struct asr_miner_opts {
    double sim_threshold;      /* join a cluster when similarity >= this (default 0.5) */
    size_t max_clusters;       /* cap; the least recently used cluster is evicted (10000) */
    size_t max_tokens;         /* tokens per message; the rest fold into one `<*>` (256) */
    size_t max_token_len;      /* longer tokens are variables (256) */
    bool digits_are_variables; /* a token containing a digit is a variable (true) */
};

/* The result of adding one message. tmpl points into the miner and is valid until the next
 * call to asr_miner_add() or asr_miner_destroy(). */
struct asr_match {
    uint64_t cluster_id; /* 1, 2, 3... in order of creation; never reused */
    const char *tmpl;    /* the cluster's current template, NUL-terminated */
    size_t tmpl_len;
    bool created; /* this message started the cluster */
    bool changed; /* the template changed (or was created) with this message */
};

/* Fills o with the defaults above. */
void asr_miner_opts_default(struct asr_miner_opts *o);
/* Creates a miner (opts NULL: defaults). 0, ASR_EINVAL for bad options, or ASR_ENOMEM. */
int asr_miner_create(const struct asr_miner_opts *opts, struct asr_miner **out);
/* Mines one message of len bytes (need not be NUL-terminated). 0 or ASR_ENOMEM. */
int asr_miner_add(struct asr_miner *m, const char *msg, size_t len, struct asr_match *out);
/* Number of clusters held now, and evicted so far. */
size_t asr_miner_count(const struct asr_miner *m);
uint64_t asr_miner_evicted(const struct asr_miner *m);
/* Frees the miner; accepts NULL. */
void asr_miner_destroy(struct asr_miner *m);

#endif
