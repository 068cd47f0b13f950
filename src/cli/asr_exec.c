/*
 * asr_exec.c - `asr-exec PPID -- ARGV...`: the shim every child of the daemon starts through.
 *
 * Service slots, builds and tests run in their own process groups (so asr can signal the
 * whole group), which also means nothing ends them if asr itself dies. This shim asks the kernel
 * to SIGKILL it when its parent dies (PR_SET_PDEATHSIG), checks the parent is still the one that
 * started it (it may have died before the prctl), and then replaces itself with ARGV. The pid
 * stays the same, so the daemon's view of the process does not change. Not meant for people.
 *
 * It is its own small binary, installed next to `asr`, with no library but libc: loading the
 * full asr binary (libuv, SQLite, libgit2 and its TLS stack) cost 5 ms on every slot start, and
 * a crash restart takes about 20 ms in all.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "asr-exec: usage: asr-exec PPID -- COMMAND [ARG...]\n");
        return 2;
    }
    char *end = NULL;
    long ppid = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || ppid <= 1) {
        fprintf(stderr, "asr-exec: bad parent pid '%s'\n", argv[1]);
        return 2;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != (pid_t)ppid)
        return 127; /* asr is already gone: do not start anything */
    execvp(argv[3], argv + 3);
    fprintf(stderr, "asr: exec '%s': %s\n", argv[3], strerror(errno));
    return 127;
}
