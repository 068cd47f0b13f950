/*
 * cmd_git.c - `asr _git`: the daemon's git helper, run as a child process.
 *
 * The daemon never loads libgit2 itself. Initialising libgit2 pulls OpenSSL and friends into the
 * process (about 3 MB of resident memory), and a checkout is blocking I/O. So the daemon runs
 * these internal commands as short-lived children of its own binary, like every other blocking
 * job, and reads their output:
 *   asr _git resolve PATH [REF]        prints "<40-hex sha>\t<folder of PATH in its work tree>\n"
 *   asr _git export PATH SHA DEST      writes the commit's tree into DEST
 * Errors are one line on stderr and exit status 1. Not meant for people; not in `asr --help`.
 */
#include "asr/fsutil.h"
#include "asr/git.h"
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_git(int argc, char **argv)
{
    struct asr_err err = {0};
    if (argc >= 2 && argc <= 3 && strcmp(argv[0], "resolve") == 0) {
        char sha[41];
        char *prefix = NULL;
        int rc = asr_git_resolve(argv[1], argc == 3 ? argv[2] : NULL, sha, &prefix, &err);
        if (rc != 0) {
            fprintf(stderr, "%s\n", asr_err_msg(&err, rc));
            return ASR_EXIT_FAIL;
        }
        printf("%s\t%s\n", sha, prefix);
        free(prefix);
        return ASR_EXIT_OK;
    }
    if (argc == 4 && strcmp(argv[0], "export") == 0) {
        /* A partial export left by an interrupted deploy is cleared first. */
        if (asr_rmtree(argv[3]) != 0) {
            fprintf(stderr, "cannot remove the old partial export %s\n", argv[3]);
            return ASR_EXIT_FAIL;
        }
        int rc = asr_git_export(argv[1], argv[2], argv[3], &err);
        if (rc != 0) {
            fprintf(stderr, "%s\n", asr_err_msg(&err, rc));
            return ASR_EXIT_FAIL;
        }
        return ASR_EXIT_OK;
    }
    cli_error("_git", "usage: asr _git resolve PATH [REF] | asr _git export PATH SHA DEST");
    return ASR_EXIT_USAGE;
}
