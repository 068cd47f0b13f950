/*
 * fsutil.h - small file-system helpers: paths, directories, atomic writes.
 */
#ifndef ASR_FSUTIL_H
#define ASR_FSUTIL_H

#include "asr/error.h"

#include <stdbool.h>
#include <stddef.h>

/* mkdir -p with the given mode for created directories. Returns 0 or ASR_EIO. */
int asr_mkdirs(const char *path, unsigned mode);
/* rm -rf without following symlinks. A missing path is success. Returns 0 or ASR_EIO. */
int asr_rmtree(const char *path);
/* "a" + "/" + "b" into a new string (b may be ""; caller frees); NULL when out of memory. */
char *asr_path_join(const char *a, const char *b);
bool asr_is_dir(const char *path);
/* Writes data to path atomically (temp file, fsync, rename). Returns 0 or ASR_EIO. */
int asr_write_file_atomic(const char *path, const char *data, size_t len, unsigned mode);
/* A request for a helper process (asr-git, asr-post): text written to a new file
 * <dir>/<name>-<pid>-<n>.json, 0600, never an existing file or through a symlink (O_EXCL,
 * O_NOFOLLOW), dir made 0700 if missing; not synced (the file lives as long as the helper). what
 * names the caller in errors. Returns the path (caller frees and unlinks), or NULL with err set
 * (ASR_EIO, ASR_ENOMEM). */
char *asr_write_request_file(const char *dir, const char *name, const char *text, const char *what,
                             struct asr_err *err);

#endif
