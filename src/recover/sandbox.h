/*
 * sandbox.h - the sandbox that a release's build and test commands run in (RECOVER stage).
 *
 * A release is built and tested by commands from its own commit, which may be a patch an LLM
 * wrote. They run under bubblewrap: no network (their own loopback only), the whole filesystem
 * read-only but for the release directory, fresh /dev, /proc and /tmp, no capabilities, their
 * own user, PID, IPC and UTS namespaces, and resource limits (address space, processes, file
 * size) set by the asr-exec shim inside the sandbox. docs/sandbox.md says what is allowed and
 * why. The service's start command is not sandboxed: it serves traffic.
 */
#ifndef ASR_RECOVER_SANDBOX_H
#define ASR_RECOVER_SANDBOX_H

#include "asr/config.h"
#include "asr/error.h"

/*
 * Finds bwrap in PATH and runs `bwrap <the sandbox's namespaces> -- true` once per process (the
 * daemon calls it as its first service with `sandbox: bwrap` is created), and remembers the
 * answer: later calls return it without running anything. Returns 0 when builds can be
 * sandboxed, else ASR_ENOENT (bwrap is not installed) or ASR_ESPAWN (bwrap cannot create its
 * namespaces on this host), with err saying which and how to fix it, e.g. "bubblewrap is not
 * installed (apt-get install bubblewrap)". It blocks for the probe, about 10 ms, bounded by a
 * 10 s timeout; the result is logged once.
 */
int asr_sandbox_probe(struct asr_err *err);

/*
 * A new argv that runs argv inside the sandbox: bubblewrap with release_dir (absolute) bound
 * writable and cwd as the working directory, and exec_shim (the asr-exec binary) setting d's
 * limits before it execs argv. The caller frees *out with asr_sandbox_argv_free. Call only after
 * asr_sandbox_probe returned 0. Returns 0, ASR_EINVAL (no shim) or ASR_ENOMEM.
 */
int asr_sandbox_argv(const struct asr_deploy_cfg *d, const char *exec_shim, const char *release_dir,
                     const char *cwd, char *const *argv, char ***out, struct asr_err *err);
void asr_sandbox_argv_free(char **argv);

/* One line for logs and events: "bwrap (no network, writable: the release dir only; memory
 * 4096 MiB, 1024 processes, files 1024 MiB)" or "none (unsandboxed)". */
void asr_sandbox_describe(const struct asr_deploy_cfg *d, char *buf, size_t cap);

#endif
