/*
 * asr_git.c - `asr-git`: the daemon's git helper, a binary of its own run as a child process.
 *
 * The daemon never loads libgit2. libgit2 brings OpenSSL, mbedTLS, Kerberos and libssh2 with it
 * (megabytes of resident memory even unused), and a checkout is blocking I/O. So git work runs
 * in this separate, short-lived program, installed next to `asr` (like asr-exec), and the
 * daemon reads its output:
 *   asr-git resolve PATH [REF]        prints "<40-hex sha>\t<folder of PATH in its work tree>\n"
 *   asr-git export PATH SHA DEST      writes the commit's tree into DEST
 *   asr-git commit-edits [REQUEST]    commits edits in memory on a branch (asr_git_commit_edits)
 *   asr-git revert [REQUEST]          reverts a commit of a branch with a new commit
 *   asr-git push [REQUEST]            pushes an asr/ branch to a remote (asr_git_push)
 * REQUEST is a file holding the JSON request (the daemon writes it into its state dir; see
 * execute/patch.c), or stdin when absent or "-". commit-edits and revert print
 * "<40-hex sha>\tcreated\n", or "<40-hex sha>\texisting\n" when the branch already held that
 * commit (nothing was written); push prints "<40-hex sha>\tpushed\n", or
 * "<40-hex sha>\texisting\n" when the remote already had the branch at that commit (nothing was
 * sent). A token for an https remote is read from the environment variable the request names.
 * Errors are one line on stderr and exit status 1. Not meant for people.
 */
#include "asr/fsutil.h"
#include "asr/git.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads the request (at most one byte over the cap, so the cap is reported); NULL on error. */
static char *read_request(const char *path, size_t *len)
{
    FILE *f = path == NULL || strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "request: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = (size_t)ASR_GIT_MAX_REQUEST + 1;
    char *b = malloc(cap);
    size_t n = b != NULL ? fread(b, 1, cap, f) : 0;
    bool bad = b == NULL || ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad) {
        fprintf(stderr, "request: cannot read it\n");
        free(b);
        return NULL;
    }
    *len = n;
    return b;
}

static int run_request(const char *cmd, const char *path)
{
    struct asr_err err = {0};
    size_t len = 0;
    char *req = read_request(path, &len);
    if (req == NULL)
        return 1;
    char sha[41];
    bool existed = false;
    bool push = strcmp(cmd, "push") == 0;
    int rc = strcmp(cmd, "revert") == 0 ? asr_git_revert(req, len, sha, &existed, &err)
             : push                     ? asr_git_push(req, len, sha, &existed, &err)
                                        : asr_git_commit_edits(req, len, sha, &existed, &err);
    free(req);
    if (rc != 0) {
        fprintf(stderr, "%s\n", asr_err_msg(&err, rc));
        return 1;
    }
    printf("%s\t%s\n", sha, existed ? "existing" : push ? "pushed" : "created");
    return 0;
}

int main(int argc, char **argv)
{
    struct asr_err err = {0};
    argc--;
    argv++;
    if (argc >= 2 && argc <= 3 && strcmp(argv[0], "resolve") == 0) {
        char sha[41];
        char *prefix = NULL;
        int rc = asr_git_resolve(argv[1], argc == 3 ? argv[2] : NULL, sha, &prefix, &err);
        if (rc != 0) {
            fprintf(stderr, "%s\n", asr_err_msg(&err, rc));
            return 1;
        }
        printf("%s\t%s\n", sha, prefix);
        free(prefix);
        return 0;
    }
    if (argc == 4 && strcmp(argv[0], "export") == 0) {
        /* A partial export left by an interrupted deploy is cleared first. */
        if (asr_rmtree(argv[3]) != 0) {
            fprintf(stderr, "cannot remove the old partial export %s\n", argv[3]);
            return 1;
        }
        int rc = asr_git_export(argv[1], argv[2], argv[3], &err);
        if (rc != 0) {
            fprintf(stderr, "%s\n", asr_err_msg(&err, rc));
            return 1;
        }
        return 0;
    }
    if (argc >= 1 && argc <= 2 &&
        (strcmp(argv[0], "commit-edits") == 0 || strcmp(argv[0], "revert") == 0 ||
         strcmp(argv[0], "push") == 0))
        return run_request(argv[0], argc == 2 ? argv[1] : NULL);
    fprintf(stderr, "usage: asr-git resolve PATH [REF] | asr-git export PATH SHA DEST | "
                    "asr-git commit-edits|revert|push [REQUEST]\n");
    return 2;
}
