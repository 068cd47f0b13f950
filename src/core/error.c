/*
 * error.c - messages and names for the ASR_E* codes, generated from ASR_ERRNO_MAP.
 */
#include "asr/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *asr_strerror(int code)
{
    switch (code) {
    case ASR_OK:
        return "success";
#define ASR_ERR_MSG(name, msg)                                                                     \
    case ASR_E##name:                                                                              \
        return msg;
        ASR_ERRNO_MAP(ASR_ERR_MSG)
#undef ASR_ERR_MSG
    default:
        return "unknown error";
    }
}

const char *asr_errname(int code)
{
    switch (code) {
    case ASR_OK:
        return "ASR_OK";
#define ASR_ERR_NAME(name, msg)                                                                    \
    case ASR_E##name:                                                                              \
        return "ASR_E" #name;
        ASR_ERRNO_MAP(ASR_ERR_NAME)
#undef ASR_ERR_NAME
    default:
        return "ASR_EUNKNOWN";
    }
}

int asr_err_set(struct asr_err *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

const char *asr_err_msg(const struct asr_err *err, int code)
{
    if (err != NULL && err->code == code && err->msg[0] != '\0')
        return err->msg;
    return asr_strerror(code);
}
