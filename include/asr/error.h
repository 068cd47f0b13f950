/*
 * error.h - the one table of asr error codes.
 *
 * Every fallible function returns 0 (or a non-negative count) on success and a negative ASR_E*
 * code on failure. The codes and their messages live in ASR_ERRNO_MAP below; asr_strerror() and
 * asr_errname() are generated from it, in the manner of libuv's uv_strerror().
 * Functions that can say more (which file, which line, which key) also fill a struct asr_err.
 */
#ifndef ASR_ERROR_H
#define ASR_ERROR_H

#include <stddef.h>

#define ASR_ERRNO_MAP(X)                                                                           \
    X(NOMEM, "out of memory")                                                                      \
    X(INVAL, "invalid argument")                                                                   \
    X(IO, "input/output error")                                                                    \
    X(NOENT, "no such file or object")                                                             \
    X(EXIST, "already exists")                                                                     \
    X(PARSE, "parse error")                                                                        \
    X(CONFIG, "invalid configuration")                                                             \
    X(TOOBIG, "value exceeds its cap")                                                             \
    X(TIMEOUT, "timed out")                                                                        \
    X(SPAWN, "could not start process")                                                            \
    X(EXIT, "process exited with failure")                                                         \
    X(DB, "database error")                                                                        \
    X(GIT, "git error")                                                                            \
    X(NET, "network error")                                                                        \
    X(BUSY, "busy")                                                                                \
    X(STATE, "operation not valid in the current state")                                           \
    X(UNHEALTHY, "service did not become healthy")                                                 \
    X(BUILD, "build failed")                                                                       \
    X(TEST, "tests failed")                                                                        \
    X(NODAEMON, "daemon is not running")                                                           \
    X(PROTO, "protocol error")                                                                     \
    X(CANCELED, "canceled")

enum asr_errno {
    ASR_OK = 0,
#define ASR_ERR_ENUM(name, msg) ASR_E##name,
    ASR_ERRNO_FIRST_ = -1000,
    ASR_ERRNO_MAP(ASR_ERR_ENUM)
#undef ASR_ERR_ENUM
        ASR_ERRNO_LAST_
};

/* Static message for a code (never NULL, "unknown error" for anything else). */
const char *asr_strerror(int code);
/* Static symbolic name, e.g. "ASR_ECONFIG". */
const char *asr_errname(int code);

/*
 * A detailed error: the code and a human sentence that names what failed and why.
 * Callers own the struct (usually on the stack); functions write into msg with asr_err_set().
 */
struct asr_err {
    int code;
    char msg[512];
};

/* Records code and a printf-style message in err (err may be NULL); returns code. */
int asr_err_set(struct asr_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The message of err if one was set, else asr_strerror(code). */
const char *asr_err_msg(const struct asr_err *err, int code);

#endif
