/*
 * fsutil.c - paths, directories and atomic writes (see fsutil.h).
 */
#include "asr/fsutil.h"
#include "asr/error.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int asr_mkdirs(const char *path, unsigned mode)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return ASR_EINVAL;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return ASR_EIO;
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return ASR_EIO;
    return asr_is_dir(buf) ? 0 : ASR_EIO;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
    return rc != 0 && errno != ENOENT ? -1 : 0;
}

int asr_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : ASR_EIO;
    if (!S_ISDIR(st.st_mode))
        return unlink(path) == 0 ? 0 : ASR_EIO;
    return nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : ASR_EIO;
}

char *asr_path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (p == NULL)
        return NULL;
    memcpy(p, a, la);
    size_t n = la;
    if (lb > 0) {
        if (n > 0 && p[n - 1] != '/')
            p[n++] = '/';
        memcpy(p + n, b, lb);
        n += lb;
    }
    p[n] = '\0';
    return p;
}

bool asr_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int asr_write_file_atomic(const char *path, const char *data, size_t len, unsigned mode)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
        return ASR_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return ASR_EIO;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return ASR_EIO;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return ASR_EIO;
    }
    return 0;
}

char *asr_write_request_file(const char *dir, const char *name, const char *text, const char *what,
                             struct asr_err *err)
{
    static unsigned seq;
    if (asr_mkdirs(dir, 0700) != 0) {
        asr_err_set(err, ASR_EIO, "%s: cannot create %s: %s", what, dir, strerror(errno));
        return NULL;
    }
    char path[4200];
    if (snprintf(path, sizeof(path), "%s/%s-%ld-%u.json", dir, name, (long)getpid(), ++seq) >=
        (int)sizeof(path)) {
        asr_err_set(err, ASR_EIO, "%s: %s: path too long", what, dir);
        return NULL;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        asr_err_set(err, ASR_EIO, "%s: cannot create %s: %s", what, path, strerror(errno));
        return NULL;
    }
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    int e = errno;
    close(fd);
    char *copy = off == n ? strdup(path) : NULL;
    if (copy == NULL) {
        asr_err_set(err, off < n ? ASR_EIO : ASR_ENOMEM, "%s: cannot write %s: %s", what, path,
                    off < n ? strerror(e) : "out of memory");
        unlink(path);
    }
    return copy;
}
