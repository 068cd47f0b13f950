/*
 * template.h - online log template miner (Drain family).
 *
 * Part of detection (issue 3): every log message is turned into a template, with `<*>` where the
 * message had a variable, and a cluster id that is stable across runs for the same input order.
 * The incident layer uses the id as the fingerprint of errors nobody configured; `asr templates`
 * prints the ids and templates for a whole file (src/cli/cmd_templates.c).
 *
 * Algorithm (Drain with depth 4, refined; bench/templates.md has the measurements):
 * - Tokenise on whitespace. Each token is split at delimiters (= , ; ( ) [ ] { } < > ' " : |)
 *   into pieces; a piece is a variable when an alphanumeric run in it starts with a digit
 *   (42, 10.0.0.1, 0x1f, blk_-123), when it is an absolute path or long hex, or when it is `<*>`
 *   from a preprocessing mask. Variable pieces become `<*>`, so `ambient=30` has the shape
 *   `ambient=<*>` and `(TID 12),` the shape `(TID <*>),`; a name joined to a number keeps the
 *   name (`node-12` -> `node-<*>`, `core.7` -> `core.<*>`); host:port and /address are one
 *   value; a token that is all variable is `<*>`. Tokens are compared by the 64-bit hash of
 *   their shape. Names with a digit inside (eth1, Slf4jLogger) stay constants.
 * - Route by token count and first token (only a plain word gets a route of its own; a word with
 *   no match there may still join a cluster that starts with a variable).
 * - Join the most similar cluster of the route if Drain's similarity (agreeing constant
 *   positions / length) reaches the threshold, with two refinements for plain words (no digit,
 *   not a month, weekday or zone name): a cluster holding a different plain word in some
 *   position is never joined (`Link ok` and `Link error` stay apart), and a position where one
 *   side has a plain word and the other a variable counts half a position against the
 *   similarity.
 * - Where a joined template and the message differ, the position becomes `<*>`, keeping the
 *   delimiters both share at the front and back (`[node_A8]` + `[node_B8]` -> `[<*>]`).
 * Memory is bounded: at most max_clusters clusters (least recently used is evicted), at most
 * max_tokens tokens per message (the rest folds into one `<*>`), tokens longer than
 * max_token_len are variables.
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
/* Restores a cluster saved earlier: its id and template (tokens separated by single spaces,
 * "<*>" for variables), as reported by asr_miner_foreach(), so that a fingerprint survives a
 * restart. Call before the first asr_miner_add(). A cluster's matching state is a function of its
 * template alone, so a later message that the cluster would have absorbed before the save joins
 * it again with the same id; new clusters get ids above every restored id. Restoring past
 * max_clusters evicts the least recently restored cluster. The template is copied; the restored
 * cluster's count starts at 0 (callers that need counts across restarts keep them with the id).
 * 0, ASR_EINVAL (id 0, id already used, empty template, more than max_tokens tokens, a NUL byte)
 * or ASR_ENOMEM. */
int asr_miner_restore(struct asr_miner *m, uint64_t id, const char *tmpl, size_t len);
/* Calls cb for every cluster held, in id order, with its template (NUL-terminated, owned by the
 * miner, valid during the call) and the number of messages it has absorbed since it was created
 * or restored. cb must not change the miner. */
void asr_miner_foreach(const struct asr_miner *m,
                       void (*cb)(void *data, uint64_t id, const char *tmpl, size_t len,
                                  uint64_t count),
                       void *data);
/* Frees the miner; accepts NULL. */
void asr_miner_destroy(struct asr_miner *m);

#endif
