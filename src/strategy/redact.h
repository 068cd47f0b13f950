/*
 * redact.h - the one redactor that everything leaving the host passes through.
 *
 * LLM prompts (and, later, GitHub issues and pull requests) carry log lines, request bodies and
 * source excerpts from the monitored services, and those can hold credentials. asr_redact() copies
 * a text and replaces every secret it recognises with "[REDACTED:<kind>]", so the marker says
 * what was removed without saying anything about its value. It looks through the encodings a
 * secret usually hides in: JSON string escapes (\" \/ \n \uXXXX, also doubly escaped), URL
 * percent-encoding (also %25-doubled), and a credential wrapped onto the next line. What is
 * recognised, and what is deliberately left alone, is listed in docs/redaction.md.
 *
 * The scan is a hand-written single pass (no regex backtracking), linear in the input; it is
 * idempotent: redacting a redacted text changes nothing.
 */
#ifndef ASR_STRATEGY_REDACT_H
#define ASR_STRATEGY_REDACT_H

#include "asr/buf.h"

#include <stddef.h>

/* Every marker starts with this; the kind name and "]" follow. */
#define ASR_REDACT_MARKER_PREFIX "[REDACTED:"

/* The kinds of secret, specific before generic, with the name used in the marker. */
#define ASR_REDACT_KIND_MAP(X)                                                                     \
    X(AWS_ACCESS_KEY, "aws_access_key_id")                                                         \
    X(AWS_SECRET_KEY, "aws_secret_key")                                                            \
    X(GITHUB_TOKEN, "github_token")                                                                \
    X(GITLAB_TOKEN, "gitlab_token")                                                                \
    X(SLACK_TOKEN, "slack_token")                                                                  \
    X(SLACK_WEBHOOK, "slack_webhook")                                                              \
    X(GOOGLE_API_KEY, "google_api_key")                                                            \
    X(OPENAI_KEY, "openai_key")                                                                    \
    X(ANTHROPIC_KEY, "anthropic_key")                                                              \
    X(STRIPE_KEY, "stripe_key")                                                                    \
    X(NPM_TOKEN, "npm_token")                                                                      \
    X(JWT, "jwt")                                                                                  \
    X(PRIVATE_KEY, "private_key")                                                                  \
    X(BEARER, "bearer_token")                                                                      \
    X(BASIC_AUTH, "basic_auth")                                                                    \
    X(AUTHORIZATION, "authorization")                                                              \
    X(URL_PASSWORD, "url_password")                                                                \
    X(CONNECTION_STRING, "connection_string")                                                      \
    X(PASSWORD, "password")                                                                        \
    X(TOKEN, "token")                                                                              \
    X(API_KEY, "api_key")                                                                          \
    X(SECRET, "secret")

enum asr_redact_kind {
#define ASR_REDACT_ENUM(name, str) ASR_REDACT_##name,
    ASR_REDACT_KIND_MAP(ASR_REDACT_ENUM)
#undef ASR_REDACT_ENUM
        ASR_REDACT_KINDS
};

/* What one call removed: the number of markers written, in total and per kind. */
struct asr_redact_stats {
    size_t redactions;
    size_t by_kind[ASR_REDACT_KINDS];
};

/*
 * Appends the len bytes of in (any bytes, NULs included) to out with every recognised secret
 * replaced by "[REDACTED:<kind>]". The caller owns out and its cap; bytes of a secret are never
 * appended, so a cut at the cap cannot expose one. st may be NULL; otherwise it is reset and then
 * filled. Returns 0, ASR_ETOOBIG (out reached its cap: what fits was appended, out->truncated is
 * set) or ASR_ENOMEM (out may hold a partial copy; discard it).
 */
int asr_redact(const char *in, size_t len, struct asr_buf *out, struct asr_redact_stats *st);

/* The static marker name of a kind ("aws_access_key_id", ...), or "unknown". */
const char *asr_redact_kind_name(int kind);

#endif
