/*
 * kb.h - the knowledge base: playbooks and past incidents, and how an incident finds them.
 *
 * STRATEGY stage (docs/knowledge.md). Documents live in asr.db (migration 3): kb_docs (one row
 * per playbook or past incident, its JSON body), kb_signatures (the signatures a document
 * answers to), kb_fts (an FTS5 index whose tokenizer keeps identifiers such as parse_request and
 * FAULT_DB_TIMEOUT whole) and kb_outcomes (what worked, per signature).
 *
 * Retrieval (asr_kb_search) ranks in three layers, and every hit says why it ranked:
 *   1. exact: documents that answer to the incident's signature or fingerprint;
 *   2. text: BM25 over symptoms, title, template, message, fields, route and service, with
 *      column weights (symptoms and template count most);
 *   3. learned: fixes that were verified for this signature rank up, failed ones rank down.
 * A document restricted to a service is only found for that service.
 */
#ifndef ASR_STRATEGY_KB_H
#define ASR_STRATEGY_KB_H

#include "asr/error.h"
#include "asr/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ASR_KB_PLAYBOOK "playbook"
#define ASR_KB_INCIDENT "incident"

/* A document to index. Text fields may be NULL. Strings are copied. */
struct asr_kb_doc {
    const char *kind;              /* ASR_KB_PLAYBOOK or ASR_KB_INCIDENT */
    const char *ref;               /* playbook id, or incident id in decimal */
    const char *service;           /* restricts the document to a service, or NULL */
    const char *fingerprint;       /* incidents: their fingerprint */
    const char *title;             /* required */
    const char *const *signatures; /* NULL-terminated, or NULL */
    const char *symptoms;          /* text an operator wrote about the fault */
    const char *tmpl;              /* a log template with <*> */
    const char *message;           /* a fault line */
    const char *fields;            /* captured fields, as text */
    const char *route;             /* e.g. /orders */
    const char *body;              /* JSON text kept as is (the playbook, or incident + plan) */
    const char *source;            /* where it came from (a file), or NULL */
};

/* Adds or replaces (by kind and ref) a document. *id gets its id (may be NULL). */
int asr_kb_put(struct asr_store *st, const struct asr_kb_doc *d, int64_t *id, struct asr_err *err);
struct asr_playbook;
/* Adds or replaces a playbook (playbook.h): its title, symptoms, match.template (as the
 * template), match.text (as the message an operator expects), signatures and service, with the
 * playbook as JSON for its body. The one way playbooks are indexed (asr kb add, tests, benches). */
int asr_kb_put_playbook(struct asr_store *st, const struct asr_playbook *pb, struct asr_err *err);
/* Removes a document; ASR_ENOENT if there is none. */
int asr_kb_delete(struct asr_store *st, const char *kind, const char *ref, struct asr_err *err);

/* What to look for: an incident's parts, or free text. NULL fields are not used. */
struct asr_kb_query {
    const char *service;
    const char *signature;
    const char *fingerprint;
    const char *tmpl;
    const char *message;
    const char *fields;
    const char *route;
    const char *text; /* free text (asr kb search) */
    const char *kind; /* only this kind, or NULL for both */
    int limit;        /* hits wanted, default 5 */
};

struct asr_kb_hit {
    int64_t doc_id;
    char *kind, *ref, *title, *body, *source;
    double score; /* 0..1: how confident the match is */
    double bm25;  /* the text score (higher is better; 0 when not matched by text) */
    bool exact_signature, exact_fingerprint;
    int64_t successes, failures; /* the learned record for the query's signature */
    char why[320];               /* "signature FAULT_DB_TIMEOUT; text 0.71 (bm25 8.4); history
                                    2 verified, 0 failed" */
};

/* Hits best first, at most q->limit. The caller frees with asr_kb_hits_free. A query with no
 * usable term and no signature or fingerprint returns no hit. */
int asr_kb_search(struct asr_store *st, const struct asr_kb_query *q, struct asr_kb_hit **out,
                  size_t *n, struct asr_err *err);
/* Documents of a kind (NULL: all), by kind and ref; scores are 0. */
int asr_kb_list(struct asr_store *st, const char *kind, struct asr_kb_hit **out, size_t *n,
                struct asr_err *err);
void asr_kb_hits_free(struct asr_kb_hit *v, size_t n);

/* Learns from a remediation: the document's fix was verified (success) or not, for signature. */
int asr_kb_record_outcome(struct asr_store *st, int64_t doc_id, const char *signature, bool success,
                          int64_t mttr_ms, struct asr_err *err);

/* Merges the text index into one segment (after adding many documents; `asr kb add` does it). */
int asr_kb_optimize(struct asr_store *st, struct asr_err *err);

/* Number of documents (for status and benchmarks). */
int64_t asr_kb_count(struct asr_store *st);

#endif
