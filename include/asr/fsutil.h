/*
 * fsutil.h - small file-system helpers: paths, directories, atomic writes.
 */
#ifndef ASR_FSUTIL_H
#define ASR_FSUTIL_H

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

#endif
