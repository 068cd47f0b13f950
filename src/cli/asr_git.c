/*
 * asr_git.c - `asr-git`: the daemon's git helper, a binary of its own run as a child process.
 *
 * The daemon never loads libgit2. libgit2 brings OpenSSL, mbedTLS, Kerberos and libssh2 with it
 * (megabytes of resident memory even unused), and a checkout is blocking I/O. So git work runs
 * in this separate, short-lived program, installed next to `asr` (like asr-exec), and the
 * daemon reads its output:
 *   asr-git resolve PATH [REF]        prints "<40-hex sha>\t<folder of PATH in its work tree>\n"
 *   asr-git export PATH SHA DEST      writes the commit's tree into DEST
 * Errors are one line on stderr and exit status 1. Not meant for people.
 */
#include "asr/fsutil.h"
#include "asr/git.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    fprintf(stderr, "usage: asr-git resolve PATH [REF] | asr-git export PATH SHA DEST\n");
    return 2;
}
