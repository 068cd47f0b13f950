/*
 * asr_exec.c - the shim every child of the daemon starts through, in two forms:
 *
 *   asr-exec PPID -- COMMAND [ARG...]
 *   asr-exec --rlimit NAME=VALUE [--rlimit NAME=VALUE]... -- COMMAND [ARG...]
 *
 * The first is how every child starts. Service slots, builds and tests run in their own process
 * groups (so asr can signal the whole group), which also means nothing ends them if asr itself
 * dies. This form asks the kernel to SIGKILL it when its parent dies (PR_SET_PDEATHSIG), checks
 * the parent is still the one that started it (it may have died before the prctl), and then
 * replaces itself with COMMAND. The pid stays the same, so the daemon's view of the process does
 * not change.
 *
 * The second runs inside the build sandbox (recover/sandbox.c), as bubblewrap's command: it sets
 * the resource limits (NAME is as, nproc or fsize; VALUE in bytes, or processes for nproc; soft
 * and hard alike, so the build cannot raise them again) and then execs COMMAND. The limits are
 * set here, inside the sandbox's user namespace, rather than before bubblewrap starts, because
 * only there does RLIMIT_NPROC count the sandbox's own processes: outside, it counts every
 * process of the user (and is not enforced at all for root). Not meant for people.
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
#include <sys/resource.h>
#include <unistd.h>

static int usage(void)
{
    fprintf(stderr, "asr-exec: usage: asr-exec PPID -- COMMAND [ARG...]\n"
                    "       asr-exec --rlimit as|nproc|fsize=VALUE... -- COMMAND [ARG...]\n");
    return 2;
}

/* Applies one "NAME=VALUE" limit; returns 0, 2 for a malformed one, 127 if the kernel refused. */
static int apply_rlimit(const char *spec)
{
    static const struct {
        const char *name;
        int resource;
    } names[] = {{"as", RLIMIT_AS}, {"nproc", RLIMIT_NPROC}, {"fsize", RLIMIT_FSIZE}};
    const char *eq = strchr(spec, '=');
    int resource = -1;
    for (size_t i = 0; eq != NULL && i < sizeof(names) / sizeof(names[0]); i++)
        if ((size_t)(eq - spec) == strlen(names[i].name) &&
            strncmp(spec, names[i].name, (size_t)(eq - spec)) == 0)
            resource = names[i].resource;
    char *end = NULL;
    errno = 0;
    unsigned long long v = eq != NULL ? strtoull(eq + 1, &end, 10) : 0;
    if (resource < 0 || end == eq + 1 || *end != '\0' || errno != 0 || eq[1] == '-') {
        fprintf(stderr, "asr-exec: bad limit '%s' (expected as, nproc or fsize=NUMBER)\n", spec);
        return 2;
    }
    struct rlimit rl = {.rlim_cur = (rlim_t)v, .rlim_max = (rlim_t)v};
    if (setrlimit(resource, &rl) != 0) {
        fprintf(stderr, "asr: sandbox: cannot set limit %s: %s\n", spec, strerror(errno));
        return 127;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int cmd = 0; /* index of COMMAND */
    if (argc >= 2 && strcmp(argv[1], "--rlimit") == 0) {
        int i = 1;
        for (; i + 1 < argc && strcmp(argv[i], "--rlimit") == 0; i += 2) {
            int rc = apply_rlimit(argv[i + 1]);
            if (rc != 0)
                return rc;
        }
        if (i + 1 >= argc || strcmp(argv[i], "--") != 0)
            return usage();
        cmd = i + 1;
    } else {
        if (argc < 4 || strcmp(argv[2], "--") != 0)
            return usage();
        char *end = NULL;
        long ppid = strtol(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || ppid <= 1) {
            fprintf(stderr, "asr-exec: bad parent pid '%s'\n", argv[1]);
            return 2;
        }
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != (pid_t)ppid)
            return 127; /* asr is already gone: do not start anything */
        cmd = 3;
    }
    execvp(argv[cmd], argv + cmd);
    fprintf(stderr, "asr: exec '%s': %s\n", argv[cmd], strerror(errno));
    return 127;
}
