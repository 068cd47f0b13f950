/*
 * cmd_exec.c - `asr _exec PPID -- ARGV...`: the shim every child of the daemon starts through.
 *
 * Service slots, builds and tests run in their own process groups (so asr can signal the
 * whole group), which also means nothing ends them if asr itself dies. This shim asks the kernel
 * to SIGKILL it when its parent dies (PR_SET_PDEATHSIG), checks the parent is still the one that
 * started it (it may have died before the prctl), and then replaces itself with ARGV. The pid
 * stays the same, so the daemon's view of the process does not change. Not meant for people.
 */
#include "cli/cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int cmd_exec(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "--") != 0) {
        cli_error("_exec", "usage: asr _exec PPID -- COMMAND [ARG...]");
        return ASR_EXIT_USAGE;
    }
    char *end = NULL;
    long ppid = strtol(argv[0], &end, 10);
    if (end == argv[0] || *end != '\0' || ppid <= 1) {
        cli_error("_exec", "bad parent pid '%s'", argv[0]);
        return ASR_EXIT_USAGE;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != (pid_t)ppid)
        return 127; /* asr is already gone: do not start anything */
    execvp(argv[2], argv + 2);
    fprintf(stderr, "asr: exec '%s': %s\n", argv[2], strerror(errno));
    return 127;
}
