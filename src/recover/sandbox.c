/*
 * sandbox.c - bubblewrap around a release's build and test commands (see sandbox.h and
 * docs/sandbox.md). Called by service.c's run_step for every build and test.
 *
 * The command line, and why each part is there:
 *   --unshare-user/-ipc/-pid/-net/-uts, --unshare-cgroup-try
 *       own namespaces: no network but a private loopback (bubblewrap brings `lo` up, so a test
 *       suite may still listen on and talk to 127.0.0.1 inside); no signals to, or view of,
 *       processes outside; and RLIMIT_NPROC counts the sandbox's processes only (below).
 *   --die-with-parent   bubblewrap's children die with it; with the PID namespace, killing
 *       the process group on a timeout ends everything inside, even processes that left the
 *       group (setsid) or daemonized.
 *   --cap-drop ALL      no capabilities, also when asr runs as root (bubblewrap keeps them for
 *       root otherwise), so nothing inside can remount the read-only tree.
 *   --ro-bind / /       the whole filesystem, read-only: compilers, headers, $HOME, caches.
 *   --dev /dev, --proc /proc, --tmpfs /tmp   fresh ones, private to this sandbox (TMPDIR=/tmp).
 *   --ro-bind SHIM SHIM   the asr-exec shim, in case it lives under /tmp.
 *   --bind RELEASE RELEASE   the release directory, the only writable place that outlives it.
 * No --new-session: it would move the command out of the process group that the timeout kills.
 * The shim's only way to a terminal would be the daemon's, and builds have none (setsid, stdin
 * from /dev/null).
 *
 * The limits are set by `asr-exec --rlimit ...` as bubblewrap's command, inside the new user
 * namespace, where the kernel counts RLIMIT_NPROC for that namespace: the sandbox's own
 * processes, not every process of the user (as it would outside, for an unsandboxed build or a
 * limit set before bubblewrap starts). Measured: as an ordinary user, a limit of 32 stops the
 * 31st fork inside the sandbox. The kernel never enforces RLIMIT_NPROC for uid 0, and bubblewrap
 * maps root to root, so a daemon running as root gets no process cap (60 forks went through a
 * limit of 32): the probe says so in the log, and docs/sandbox.md tells to run asr as a user.
 */
#include "recover/sandbox.h"
#include "asr/log.h"
#include "asr/spawn.h"
#include "asr/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROBE_TIMEOUT_MS 10000
#define MAX_EXTRA_ARGS 48 /* every argument the sandbox adds around the command */

/* The namespaces and mounts of every sandbox, the probe's included. */
static const char *const base_args[] = {"--unshare-user",
                                        "--unshare-ipc",
                                        "--unshare-pid",
                                        "--unshare-net",
                                        "--unshare-uts",
                                        "--unshare-cgroup-try",
                                        "--die-with-parent",
                                        "--cap-drop",
                                        "ALL",
                                        "--ro-bind",
                                        "/",
                                        "/",
                                        "--dev",
                                        "/dev",
                                        "--proc",
                                        "/proc",
                                        "--tmpfs",
                                        "/tmp",
                                        NULL};

/* The probe's answer, for the life of the process. */
static struct {
    bool done;
    int rc;
    char msg[512];
    char bwrap[4096];
} probe;

/* The absolute path of an executable name in $PATH, into out; false if there is none. */
static bool find_in_path(const char *name, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    if (path == NULL || path[0] == '\0')
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path != '\0') {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        if (len > 0 && path[0] == '/') {
            struct stat st;
            int n = snprintf(out, cap, "%.*s/%s", (int)len, path, name);
            if (n > 0 && (size_t)n < cap && stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
                access(out, X_OK) == 0)
                return true;
        }
        path += len;
        if (*path == ':')
            path++;
    }
    return false;
}

int asr_sandbox_probe(struct asr_err *err)
{
    if (probe.done)
        return probe.rc != 0 ? asr_err_set(err, probe.rc, "%s", probe.msg) : 0;
    probe.done = true;
    if (!find_in_path("bwrap", probe.bwrap, sizeof(probe.bwrap))) {
        probe.rc = ASR_ENOENT;
        snprintf(probe.msg, sizeof(probe.msg),
                 "bubblewrap is not installed (apt-get install bubblewrap)");
        asr_warn("sandbox: %s; builds with deploy.sandbox: bwrap are refused", probe.msg);
        return asr_err_set(err, probe.rc, "%s", probe.msg);
    }
    const char *argv[sizeof(base_args) / sizeof(base_args[0]) + 4];
    size_t n = 0;
    argv[n++] = probe.bwrap;
    for (size_t i = 0; base_args[i] != NULL; i++)
        argv[n++] = base_args[i];
    argv[n++] = "--";
    argv[n++] = "true";
    argv[n] = NULL;
    uint64_t t0 = asr_time_mono_us();
    int status = 0;
    char *out = NULL;
    struct asr_err e = {0};
    int rc = asr_proc_run_sync((char *const *)argv, NULL, "/", PROBE_TIMEOUT_MS, 4096, &status,
                               &out, &e);
    uint64_t us = asr_time_mono_us() - t0;
    if (rc == 0 && status == 0) {
        free(out);
        probe.rc = 0;
        asr_info("sandbox: %s works (probe %llu.%llu ms): builds and tests run without network, "
                 "read-only outside their release",
                 probe.bwrap, (unsigned long long)(us / 1000),
                 (unsigned long long)(us % 1000 / 100));
        if (geteuid() == 0)
            asr_warn("sandbox: asr runs as root, and the kernel does not enforce "
                     "deploy.sandbox_procs (RLIMIT_NPROC) for root; run asr as an ordinary user "
                     "to cap the processes of a build");
        return 0;
    }
    /* bwrap's own message, on one line: "bwrap: setting up uid map: Permission denied". */
    char why[160] = "";
    if (rc != 0)
        snprintf(why, sizeof(why), "%.150s", e.msg);
    else if (out != NULL && out[0] != '\0')
        snprintf(why, sizeof(why), "%.*s", (int)strcspn(out, "\r\n"), out);
    else
        snprintf(why, sizeof(why), "exit status %d", status);
    free(out);
    probe.rc = ASR_ESPAWN;
    snprintf(probe.msg, sizeof(probe.msg),
             "bubblewrap (%.120s) cannot create its namespaces on this host: %s (allow "
             "unprivileged user namespaces, e.g. sysctl -w kernel.unprivileged_userns_clone=1)",
             probe.bwrap, why);
    asr_warn("sandbox: %s; builds with deploy.sandbox: bwrap are refused", probe.msg);
    return asr_err_set(err, probe.rc, "%s", probe.msg);
}

void asr_sandbox_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (char **a = argv; *a != NULL; a++)
        free(*a);
    free(argv);
}

/* Appends a copy of s at argv[*n]; false without memory. */
static bool push(char **argv, size_t *n, const char *s)
{
    return (argv[(*n)++] = strdup(s)) != NULL;
}

/* Appends `--rlimit NAME=VALUE` for the shim. */
static bool push_limit(char **argv, size_t *n, const char *name, unsigned long long v)
{
    char b[64];
    snprintf(b, sizeof(b), "%s=%llu", name, v);
    return push(argv, n, "--rlimit") && push(argv, n, b);
}

int asr_sandbox_argv(const struct asr_deploy_cfg *d, const char *exec_shim, const char *release_dir,
                     const char *cwd, char *const *argv, char ***out, struct asr_err *err)
{
    *out = NULL;
    if (exec_shim == NULL)
        return asr_err_set(err, ASR_EINVAL,
                           "sandbox: the asr-exec helper is not set (only asr run sandboxes)");
    if (probe.rc != 0 || probe.bwrap[0] == '\0')
        return asr_err_set(err, ASR_ESTATE, "sandbox: bubblewrap was not probed");
    size_t argc = 0;
    while (argv[argc] != NULL)
        argc++;
    char **v = calloc(argc + MAX_EXTRA_ARGS + 1, sizeof(char *));
    if (v == NULL)
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    size_t n = 0;
    bool ok = push(v, &n, probe.bwrap);
    for (size_t i = 0; ok && base_args[i] != NULL; i++)
        ok = push(v, &n, base_args[i]);
    ok = ok && push(v, &n, "--ro-bind") && push(v, &n, exec_shim) && push(v, &n, exec_shim) &&
         push(v, &n, "--bind") && push(v, &n, release_dir) && push(v, &n, release_dir) &&
         push(v, &n, "--chdir") && push(v, &n, cwd) && push(v, &n, "--setenv") &&
         push(v, &n, "TMPDIR") && push(v, &n, "/tmp") && push(v, &n, "--") &&
         push(v, &n, exec_shim);
    const unsigned long long mib = 1024ULL * 1024ULL;
    if (ok && d->sandbox_memory_mb > 0)
        ok = push_limit(v, &n, "as", (unsigned long long)d->sandbox_memory_mb * mib);
    if (ok && d->sandbox_procs > 0)
        ok = push_limit(v, &n, "nproc", (unsigned long long)d->sandbox_procs);
    if (ok && d->sandbox_file_mb > 0)
        ok = push_limit(v, &n, "fsize", (unsigned long long)d->sandbox_file_mb * mib);
    ok = ok && push(v, &n, "--");
    for (size_t i = 0; ok && i < argc; i++)
        ok = push(v, &n, argv[i]);
    if (!ok) {
        asr_sandbox_argv_free(v);
        return asr_err_set(err, ASR_ENOMEM, "out of memory");
    }
    *out = v;
    return 0;
}

void asr_sandbox_describe(const struct asr_deploy_cfg *d, char *buf, size_t cap)
{
    if (d->sandbox == ASR_SANDBOX_NONE) {
        snprintf(buf, cap, "none (unsandboxed)");
        return;
    }
    char mem[32] = "no limit", procs[48] = "no limit", file[32] = "no limit";
    if (d->sandbox_memory_mb > 0)
        snprintf(mem, sizeof(mem), "%d MiB", d->sandbox_memory_mb);
    if (d->sandbox_procs > 0)
        snprintf(procs, sizeof(procs), "%d%s", d->sandbox_procs,
                 geteuid() == 0 ? " (not enforced for root)" : "");
    if (d->sandbox_file_mb > 0)
        snprintf(file, sizeof(file), "%d MiB", d->sandbox_file_mb);
    snprintf(buf, cap,
             "bwrap (no network, writable: the release dir only; memory %s, processes %s, "
             "file size %s)",
             mem, procs, file);
}
