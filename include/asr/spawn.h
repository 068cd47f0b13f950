/*
 * spawn.h - child processes on the event loop: argv only, never a shell.
 *
 * Each child runs in its own session and process group (setsid), so a signal to the group
 * reaches the grandchildren a service or a build may start. A timeout sends SIGTERM to the
 * group, then SIGKILL after the grace period. stdout and stderr are read by the loop, either
 * into one capped buffer (builds, tests) or line by line to a callback (services), or both.
 */
#ifndef ASR_SPAWN_H
#define ASR_SPAWN_H

#include "asr/buf.h"
#include "asr/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct asr_proc;

#define ASR_SPAWN_MAX_ARGS 256

/*
 * Makes every later child start as `EXE PID -- argv...` (the asr-exec binary; see
 * cli/asr_exec.c), which sets PR_SET_PDEATHSIG so the child is killed if asr dies, even by
 * SIGKILL, and then execs argv. The daemon sets this; tests and one-shot commands do not. With a
 * shim, a command that cannot be executed exits 127 with the reason on stderr, instead of
 * failing in asr_proc_start. exe must outlive every child.
 */
void asr_spawn_set_shim(const char *exe);
/* The shim set by asr_spawn_set_shim, or NULL. The build sandbox runs it a second time, inside
 * bubblewrap, to set the resource limits (recover/sandbox.c). */
const char *asr_spawn_shim(void);

/* Called once per complete output line, as the line framer makes it (include/asr/framer.h):
 * without the newline or the CR of a CRLF, NUL and invalid UTF-8 replaced by U+FFFD, cut at
 * ASR_LINE_MAX (64 KiB) with ASR_FRAMER_CUT_MARKER; a last line without a newline comes at EOF.
 * stream is 1 for stdout, 2 for stderr. */
typedef void (*asr_proc_line_cb)(struct asr_proc *p, int stream, const char *line, size_t len,
                                 void *data);
/* Called once when the process has exited and its output pipes are drained.
 * exit_status is the exit code, or 128 + signal number; timed_out says the timeout fired. */
typedef void (*asr_proc_exit_cb)(struct asr_proc *p, int exit_status, int term_signal,
                                 bool timed_out, void *data);

struct asr_proc_opts {
    char *const *argv;      /* argv[0] is looked up in PATH when it has no '/' */
    char *const *env_extra; /* "NAME=value" added to (or replacing in) the parent's environment */
    const char *cwd;        /* NULL: the parent's */
    int timeout_ms;         /* 0: none */
    int kill_grace_ms;      /* SIGTERM to SIGKILL after a timeout or asr_proc_stop; default 5000 */
    size_t capture_cap;     /* >0: collect stdout+stderr interleaved into a buffer of this cap */
    asr_proc_line_cb on_line;
    asr_proc_exit_cb on_exit;
    void *data;
};

/*
 * Starts a process. On success *out is the handle, owned by the caller until on_exit has run;
 * then the caller must call asr_proc_free (also allowed inside on_exit). Returns ASR_ESPAWN
 * with err naming the command and the reason (e.g. "spawn 'nosuch': no such file or directory").
 */
int asr_proc_start(uv_loop_t *loop, const struct asr_proc_opts *opts, struct asr_proc **out,
                   struct asr_err *err);
/* Asks the process group to stop: SIGTERM now, SIGKILL after grace_ms (<=0: the opts' grace). */
void asr_proc_stop(struct asr_proc *p, int grace_ms);
/* Sends sig to the whole process group. */
void asr_proc_signal(struct asr_proc *p, int sig);
pid_t asr_proc_pid(const struct asr_proc *p);
bool asr_proc_running(const struct asr_proc *p);
/* The captured output (capture_cap > 0); valid until asr_proc_free. */
const struct asr_buf *asr_proc_output(const struct asr_proc *p);
/* Frees the handle. If the process still runs it is killed (SIGKILL to the group) and its
 * handles are closed in the background; on_exit is then not called. */
void asr_proc_free(struct asr_proc *p);

/*
 * Runs argv to completion on a private loop (for the CLI and tests): captured output up to cap
 * in *output (caller frees; may be NULL), exit status in *status. Returns 0, ASR_ESPAWN or
 * ASR_ETIMEOUT.
 */
int asr_proc_run_sync(char *const *argv, char *const *env_extra, const char *cwd, int timeout_ms,
                      size_t cap, int *status, char **output, struct asr_err *err);

#endif
