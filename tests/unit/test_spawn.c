/*
 * test_spawn.c - child processes on the event loop (include/asr/spawn.h, src/core/spawn.c).
 *
 * Every test runs real processes on a real uv loop of its own: capture, exit status, a missing
 * command, timeouts with the SIGTERM -> SIGKILL escalation, killing the whole process group
 * (grandchildren included), splitting output into lines across read boundaries, the 64 KiB line
 * cut, env_extra, cwd, freeing a running process, and asr_proc_run_sync().
 *
 * The tests use /bin/sh to build small child programs (asr itself never runs a shell). Each test
 * ends by running its loop until no handle is left and checking that uv_loop_close() succeeds,
 * so a handle that asr forgot to close fails the test. A process counts as gone when kill(pid, 0)
 * fails or /proc says it is a zombie: orphaned grandchildren are reparented to PID 1, which in a
 * container may never reap them.
 */
#include "asr/buf.h"
#include "asr/error.h"
#include "asr/framer.h"
#include "asr/spawn.h"
#include "asr/timeutil.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINES 64
#define CUT_MARKER ASR_FRAMER_CUT_MARKER

/* What the callbacks saw. */
struct result {
    bool exited;
    int exit_calls;
    int status;
    int sig;
    bool timed_out;
    char *output; /* a copy of the captured output, taken in on_exit */
    bool output_truncated;
    int nlines;
    char *lines[MAX_LINES];
    size_t lens[MAX_LINES];
    int streams[MAX_LINES];
    bool free_in_exit; /* call asr_proc_free from on_exit */
    uint64_t exit_ms;
};

static void on_line(struct asr_proc *p, int stream, const char *line, size_t len, void *data)
{
    (void)p;
    struct result *r = data;
    assert_true(r->nlines < MAX_LINES);
    /* Only len counts: after a stripped CR, line[len] is that '\r', not a NUL. */
    r->lines[r->nlines] = strndup(line, len);
    r->lens[r->nlines] = len;
    r->streams[r->nlines] = stream;
    r->nlines++;
}

static void on_exit_cb(struct asr_proc *p, int exit_status, int term_signal, bool timed_out,
                       void *data)
{
    struct result *r = data;
    r->exited = true;
    r->exit_calls++;
    r->status = exit_status;
    r->sig = term_signal;
    r->timed_out = timed_out;
    r->exit_ms = asr_time_mono_ms();
    const struct asr_buf *out = asr_proc_output(p);
    free(r->output);
    r->output = strdup(asr_buf_cstr(out));
    r->output_truncated = out->truncated;
    assert_false(asr_proc_running(p));
    if (r->free_in_exit)
        asr_proc_free(p);
}

static void result_free(struct result *r)
{
    for (int i = 0; i < r->nlines; i++)
        free(r->lines[i]);
    free(r->output);
    memset(r, 0, sizeof(*r));
}

static void guard_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until *flag is set or ms have passed; returns *flag. */
static bool run_until(uv_loop_t *loop, const bool *flag, int ms)
{
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, guard_cb, (uint64_t)ms, 0);
    while (!*flag && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

/* Runs the loop until r has at least n lines or ms have passed; returns whether it has. */
static bool wait_lines(uv_loop_t *loop, const struct result *r, int n, int ms)
{
    uint64_t deadline = asr_time_mono_ms() + (uint64_t)ms;
    while (r->nlines < n && !r->exited && asr_time_mono_ms() < deadline) {
        bool never = false;
        run_until(loop, &never, 10);
    }
    return r->nlines >= n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Runs the loop until it has no handles left (at most 3 s), then closes it: fails if a handle
 * was left open. */
static void finish_loop(uv_loop_t *loop)
{
    uint64_t deadline = asr_time_mono_ms() + 3000;
    while (uv_loop_alive(loop) && asr_time_mono_ms() < deadline) {
        uv_run(loop, UV_RUN_NOWAIT);
        if (uv_loop_alive(loop))
            sleep_ms(1);
    }
    if (uv_loop_alive(loop))
        fail_msg("the loop still has active handles after the test");
    assert_int_equal(uv_loop_close(loop), 0);
}

/* True while pid exists and is not a zombie. */
static bool pid_alive(pid_t pid)
{
    if (kill(pid, 0) != 0)
        return errno != ESRCH;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char buf[512];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    if (rp == NULL || rp[1] == '\0')
        return false;
    char st = rp[2];
    return st != 'Z' && st != 'X';
}

static bool wait_gone(pid_t pid, int ms)
{
    uint64_t deadline = asr_time_mono_ms() + (uint64_t)ms;
    while (pid_alive(pid)) {
        if (asr_time_mono_ms() >= deadline)
            return false;
        sleep_ms(5);
    }
    return true;
}

/* Starts argv on loop with the given options (argv, on_line, on_exit and data filled in). */
static struct asr_proc *start(uv_loop_t *loop, struct asr_proc_opts *o, char *const *argv,
                              struct result *r)
{
    o->argv = argv;
    o->on_line = o->on_line ? o->on_line : on_line;
    o->on_exit = on_exit_cb;
    o->data = r;
    struct asr_proc *p = NULL;
    struct asr_err err = {0};
    int rc = asr_proc_start(loop, o, &p, &err);
    if (rc != 0)
        fail_msg("asr_proc_start(%s) = %d: %s", argv[0], rc, err.msg);
    assert_non_null(p);
    return p;
}

static void test_capture_echo(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    char *argv[] = {"/bin/echo", "hello", "world", NULL};
    struct asr_proc_opts o = {.capture_cap = 1024};
    struct asr_proc *p = start(&loop, &o, argv, &r);
    assert_true(asr_proc_pid(p) > 0);
    assert_true(asr_proc_running(p));
    assert_true(run_until(&loop, &r.exited, 4000));
    assert_int_equal(r.exit_calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.sig, 0);
    assert_false(r.timed_out);
    assert_string_equal(r.output, "hello world\n");
    assert_false(r.output_truncated);
    assert_int_equal(r.nlines, 1);
    assert_string_equal(r.lines[0], "hello world");
    assert_int_equal(r.streams[0], 1);
    finish_loop(&loop);
    result_free(&r);
}

static void test_capture_path_lookup_and_stderr(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    /* "sh" has no '/': found through PATH. stdout and stderr go to one capture. */
    char *argv[] = {"sh", "-c", "echo out; sleep 0.05; echo err >&2; sleep 0.05; echo out2", NULL};
    struct asr_proc_opts o = {.capture_cap = 1024};
    start(&loop, &o, argv, &r);
    assert_true(run_until(&loop, &r.exited, 4000));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.output, "out\nerr\nout2\n");
    assert_int_equal(r.nlines, 3);
    assert_string_equal(r.lines[0], "out");
    assert_int_equal(r.streams[0], 1);
    assert_string_equal(r.lines[1], "err");
    assert_int_equal(r.streams[1], 2);
    assert_string_equal(r.lines[2], "out2");
    assert_int_equal(r.streams[2], 1);
    finish_loop(&loop);
    result_free(&r);
}

static void test_capture_cap_truncates(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    char *argv[] = {"sh", "-c", "echo 0123456789abcdef; echo more", NULL};
    struct asr_proc_opts o = {.capture_cap = 10};
    start(&loop, &o, argv, &r);
    assert_true(run_until(&loop, &r.exited, 4000));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.output, "0123456789");
    assert_true(r.output_truncated);
    /* Lines are not affected by the capture cap. */
    assert_int_equal(r.nlines, 2);
    assert_string_equal(r.lines[0], "0123456789abcdef");
    assert_string_equal(r.lines[1], "more");
    finish_loop(&loop);
    result_free(&r);
}

static void test_exit_status(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    char *argv[] = {"sh", "-c", "exit 3", NULL};
    struct asr_proc_opts o = {0};
    start(&loop, &o, argv, &r);
    assert_true(run_until(&loop, &r.exited, 4000));
    assert_int_equal(r.status, 3);
    assert_int_equal(r.sig, 0);
    assert_false(r.timed_out);
    assert_int_equal(r.nlines, 0);
    /* Without capture_cap the output buffer stays empty. */
    assert_string_equal(r.output, "");
    finish_loop(&loop);
    result_free(&r);
}

static void test_killed_by_signal_status(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    char *argv[] = {"sleep", "30", NULL};
    struct asr_proc_opts o = {0};
    struct asr_proc *p = start(&loop, &o, argv, &r);
    asr_proc_signal(p, SIGKILL);
    assert_true(run_until(&loop, &r.exited, 4000));
    assert_int_equal(r.sig, SIGKILL);
    assert_int_equal(r.status, 128 + SIGKILL);
    assert_false(r.timed_out);
    finish_loop(&loop);
    result_free(&r);
}

static void test_missing_command(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char *argv[] = {"asr-test-no-such-command", "arg", NULL};
    struct result r = {0};
    struct asr_proc_opts o = {.argv = argv, .on_exit = on_exit_cb, .data = &r, .capture_cap = 64};
    struct asr_proc *p = (struct asr_proc *)&r;
    struct asr_err err = {0};
    int rc = asr_proc_start(&loop, &o, &p, &err);
    assert_int_equal(rc, ASR_ESPAWN);
    assert_null(p);
    assert_int_equal(err.code, ASR_ESPAWN);
    assert_non_null(strstr(err.msg, "'asr-test-no-such-command'"));
    assert_non_null(strstr(err.msg, "no such file or directory"));
    /* An absolute path that does not exist. */
    char *argv2[] = {"/nonexistent/asr-test/bin", NULL};
    o.argv = argv2;
    memset(&err, 0, sizeof(err));
    assert_int_equal(asr_proc_start(&loop, &o, &p, &err), ASR_ESPAWN);
    assert_non_null(strstr(err.msg, "/nonexistent/asr-test/bin"));
    /* A cwd that does not exist is named too. */
    char *argv3[] = {"/bin/echo", NULL};
    o.argv = argv3;
    o.cwd = "/nonexistent/asr-test-dir";
    memset(&err, 0, sizeof(err));
    assert_int_equal(asr_proc_start(&loop, &o, &p, &err), ASR_ESPAWN);
    assert_non_null(strstr(err.msg, "/nonexistent/asr-test-dir"));
    /* Empty argv. */
    char *argv4[] = {NULL};
    o.argv = argv4;
    o.cwd = NULL;
    assert_int_equal(asr_proc_start(&loop, &o, &p, &err), ASR_EINVAL);
    /* No callback ran, and every handle the failed starts made is closed. */
    finish_loop(&loop);
    assert_false(r.exited);
}

static void test_timeout_kills(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    char *argv[] = {"sleep", "30", NULL};
    struct asr_proc_opts o = {.timeout_ms = 200, .kill_grace_ms = 1000};
    uint64_t t0 = asr_time_mono_ms();
    struct asr_proc *p = start(&loop, &o, argv, &r);
    pid_t pid = asr_proc_pid(p);
    assert_true(run_until(&loop, &r.exited, 4000));
    uint64_t took = r.exit_ms - t0;
    assert_true(r.timed_out);
    assert_int_equal(r.sig, SIGTERM);
    assert_int_equal(r.status, 128 + SIGTERM);
    assert_true(took >= 190);
    assert_true(took < 200 + 1000);
    assert_true(wait_gone(pid, 1000));
    finish_loop(&loop);
    result_free(&r);
}

static void test_timeout_escalates_to_sigkill(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    /* SIGTERM is ignored (and stays ignored in the exec'd sleep): only SIGKILL ends it. */
    char *argv[] = {"sh", "-c", "trap '' TERM; sleep 30", NULL};
    struct asr_proc_opts o = {.timeout_ms = 150, .kill_grace_ms = 300};
    uint64_t t0 = asr_time_mono_ms();
    start(&loop, &o, argv, &r);
    assert_true(run_until(&loop, &r.exited, 4000));
    uint64_t took = r.exit_ms - t0;
    assert_true(r.timed_out);
    assert_int_equal(r.sig, SIGKILL);
    assert_int_equal(r.status, 128 + SIGKILL);
    assert_true(took >= 440);
    assert_true(took < 150 + 300 + 1500);
    finish_loop(&loop);
    result_free(&r);
}

static void test_stop_kills_process_group(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    char *argv[] = {"sh", "-c", "sleep 30 & echo $!; wait", NULL};
    struct asr_proc_opts o = {.kill_grace_ms = 2000};
    struct asr_proc *p = start(&loop, &o, argv, &r);
    pid_t pid = asr_proc_pid(p);
    assert_true(wait_lines(&loop, &r, 1, 4000));
    assert_int_equal(r.nlines, 1);
    pid_t grandchild = (pid_t)strtol(r.lines[0], NULL, 10);
    assert_true(grandchild > 0);
    assert_int_not_equal(grandchild, pid);
    assert_true(pid_alive(pid));
    assert_true(pid_alive(grandchild));
    uint64_t t0 = asr_time_mono_ms();
    asr_proc_stop(p, 0);
    assert_true(run_until(&loop, &r.exited, 4000));
    assert_false(r.timed_out);
    assert_int_equal(r.sig, SIGTERM);
    /* SIGTERM did it: no need to wait for the 2 s SIGKILL. */
    assert_true(r.exit_ms - t0 < 1500);
    assert_true(wait_gone(pid, 1000));
    if (!wait_gone(grandchild, 1000)) {
        kill(grandchild, SIGKILL);
        fail_msg("grandchild %d survived asr_proc_stop", (int)grandchild);
    }
    finish_loop(&loop);
    result_free(&r);
}

static void test_stop_after_leader_exited_reaches_group(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    /* The leader exits at once; its background child keeps the output pipes open, so on_exit
     * waits. Stopping the process must still reach that child: it is in the same group. */
    char *argv[] = {"sh", "-c", "sleep 30 & echo $!; exit 0", NULL};
    struct asr_proc_opts o = {.kill_grace_ms = 500};
    struct asr_proc *p = start(&loop, &o, argv, &r);
    pid_t pid = asr_proc_pid(p);
    assert_true(wait_lines(&loop, &r, 1, 4000));
    pid_t grandchild = (pid_t)strtol(r.lines[0], NULL, 10);
    assert_true(grandchild > 0);
    assert_true(wait_gone(pid, 2000)); /* the leader is gone */
    {
        bool never = false;
        run_until(&loop, &never, 100); /* let libuv reap it */
    }
    assert_true(pid_alive(grandchild));
    assert_false(r.exited); /* the pipes are still open */
    /* (Was a bug: signals did nothing once the leader had been reaped.) */
    asr_proc_stop(p, 0);
    bool exited = run_until(&loop, &r.exited, 2000);
    /* A process closes its files before it becomes a zombie: give it a moment. */
    bool survived = !wait_gone(grandchild, 1000);
    if (!exited)
        asr_proc_free(p);
    /* Clean up whatever happened, so the suite goes on. */
    kill(grandchild, SIGKILL);
    wait_gone(grandchild, 1000);
    finish_loop(&loop);
    result_free(&r);
    if (!exited)
        fail_msg("asr_proc_stop after the leader exited: on_exit did not come within 2 s");
    if (survived)
        fail_msg("asr_proc_stop after the leader exited: group member %d survived",
                 (int)grandchild);
}

static void test_leftover_child_does_not_hold_the_exit(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    /* A build step that leaves a background process behind, holding the output pipes: the exit
     * must still be reported (about a second later), and the leftover killed with its group. */
    char *argv[] = {"sh", "-c", "sleep 30 & echo $!; exit 4", NULL};
    struct asr_proc_opts o = {.kill_grace_ms = 500};
    uint64_t t0 = asr_time_mono_ms();
    start(&loop, &o, argv, &r);
    assert_true(wait_lines(&loop, &r, 1, 4000));
    pid_t leftover = (pid_t)strtol(r.lines[0], NULL, 10);
    assert_true(leftover > 0);
    bool exited = run_until(&loop, &r.exited, 4000);
    uint64_t ms = asr_time_mono_ms() - t0;
    bool gone = wait_gone(leftover, 1000);
    if (!gone)
        kill(leftover, SIGKILL);
    finish_loop(&loop);
    assert_true(exited);
    assert_int_equal(r.status, 4);
    assert_true(gone);
    assert_true(ms >= 900 && ms < 3000);
    result_free(&r);
}

static void test_free_running_process(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {0};
    char *argv[] = {"sleep", "30", NULL};
    struct asr_proc_opts o = {0};
    struct asr_proc *p = start(&loop, &o, argv, &r);
    pid_t pid = asr_proc_pid(p);
    asr_proc_free(p);
    /* The process is killed and reaped, the handles close, on_exit is not called. */
    finish_loop(&loop);
    assert_false(r.exited);
    assert_true(wait_gone(pid, 1000));
    result_free(&r);
}

static void test_free_after_exit_outside_callback(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = false};
    char *argv[] = {"/bin/echo", "x", NULL};
    struct asr_proc_opts o = {.capture_cap = 16};
    struct asr_proc *p = start(&loop, &o, argv, &r);
    assert_true(run_until(&loop, &r.exited, 4000));
    /* The handle is still valid after on_exit, with its output. */
    assert_false(asr_proc_running(p));
    assert_string_equal(asr_buf_cstr(asr_proc_output(p)), "x\n");
    /* Stopping or signalling an exited process is harmless. */
    asr_proc_stop(p, 0);
    asr_proc_signal(p, SIGTERM);
    asr_proc_free(p);
    finish_loop(&loop);
    result_free(&r);
}

static void test_lines_across_chunks(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    /* The pauses make each printf arrive in its own read. */
    char *argv[] = {"sh", "-c",
                    "printf 'ab'; sleep 0.1; printf 'c\\nde'; sleep 0.1; printf 'f\\r\\ng\\n\\n';"
                    " sleep 0.1; printf 'h\\r'; sleep 0.1; printf '\\nx\\ry\\r\\n'; sleep 0.1;"
                    " printf 'E1\\nE' >&2; sleep 0.1; printf 'last'",
                    NULL};
    struct asr_proc_opts o = {0};
    start(&loop, &o, argv, &r);
    assert_true(run_until(&loop, &r.exited, 4000));
    assert_int_equal(r.status, 0);
    const char *want[] = {"abc", "def", "g", "", "h", "x\ry", "E1", "last", "E"};
    const int want_stream[] = {1, 1, 1, 1, 1, 1, 2, 1, 2};
    /* The final stdout and stderr lines (no newline) come at EOF, in either order. */
    assert_int_equal(r.nlines, 9);
    for (int i = 0; i < 7; i++) {
        assert_string_equal(r.lines[i], want[i]);
        assert_int_equal(r.streams[i], want_stream[i]);
    }
    for (int i = 7; i < 9; i++) {
        if (r.streams[i] == 1)
            assert_string_equal(r.lines[i], "last");
        else
            assert_string_equal(r.lines[i], "E");
    }
    assert_int_not_equal(r.streams[7], r.streams[8]);
    finish_loop(&loop);
    result_free(&r);
}

static void test_long_line_cut(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    /* 200000 bytes, then "next"; then exactly 64 KiB, which is not cut; then a cut line at EOF
     * without a newline, which must not produce a second fragment. */
    char *argv[] = {"sh", "-c",
                    "head -c 200000 /dev/zero | tr '\\0' x; printf '\\nnext\\n';"
                    " head -c 65536 /dev/zero | tr '\\0' y; printf '\\nafter\\n';"
                    " head -c 70000 /dev/zero | tr '\\0' z",
                    NULL};
    struct asr_proc_opts o = {0};
    start(&loop, &o, argv, &r);
    assert_true(run_until(&loop, &r.exited, 4000));
    assert_int_equal(r.status, 0);
    assert_int_equal(r.nlines, 5);
    size_t cut_len = 65536 + strlen(CUT_MARKER);
    assert_int_equal(r.lens[0], cut_len);
    for (size_t i = 0; i < 65536; i++)
        if (r.lines[0][i] != 'x')
            fail_msg("line 0 byte %zu is %d", i, r.lines[0][i]);
    assert_string_equal(r.lines[0] + 65536, CUT_MARKER);
    assert_string_equal(r.lines[1], "next");
    assert_int_equal(r.lens[2], 65536);
    assert_int_equal(strspn(r.lines[2], "y"), 65536);
    assert_string_equal(r.lines[3], "after");
    assert_int_equal(r.lens[4], cut_len);
    assert_int_equal(strspn(r.lines[4], "z"), 65536);
    assert_string_equal(r.lines[4] + 65536, CUT_MARKER);
    finish_loop(&loop);
    result_free(&r);
}

static void test_env_extra_replaces(void **state)
{
    (void)state;
    setenv("ASR_TEST_VAR", "parent", 1);
    setenv("ASR_TEST_VAR_LONGER", "keep-longer", 1);
    setenv("ASR_TEST", "keep-shorter", 1);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct result r = {.free_in_exit = true};
    char *argv[] = {"env", NULL};
    char *extra[] = {"ASR_TEST_VAR=child", "ASR_TEST_NEW=new value", NULL};
    struct asr_proc_opts o = {.env_extra = extra, .capture_cap = 1 << 20};
    start(&loop, &o, argv, &r);
    assert_true(run_until(&loop, &r.exited, 4000));
    assert_int_equal(r.status, 0);
    int var = 0, longer = 0, shorter = 0, newv = 0, path = 0;
    for (int i = 0; i < r.nlines; i++) {
        if (strncmp(r.lines[i], "ASR_TEST_VAR=", 13) == 0) {
            var++;
            assert_string_equal(r.lines[i], "ASR_TEST_VAR=child");
        }
        longer += strcmp(r.lines[i], "ASR_TEST_VAR_LONGER=keep-longer") == 0;
        shorter += strcmp(r.lines[i], "ASR_TEST=keep-shorter") == 0;
        newv += strcmp(r.lines[i], "ASR_TEST_NEW=new value") == 0;
        path += strncmp(r.lines[i], "PATH=", 5) == 0;
    }
    assert_int_equal(var, 1);
    assert_int_equal(longer, 1);
    assert_int_equal(shorter, 1);
    assert_int_equal(newv, 1);
    if (getenv("PATH") != NULL)
        assert_int_equal(path, 1); /* the rest is inherited */
    /* The parent's environment is untouched. */
    assert_string_equal(getenv("ASR_TEST_VAR"), "parent");
    finish_loop(&loop);
    result_free(&r);
    unsetenv("ASR_TEST_VAR");
    unsetenv("ASR_TEST_VAR_LONGER");
    unsetenv("ASR_TEST");
}

static void test_cwd(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/asr-test-spawn-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char *real = realpath(dir, NULL);
    assert_non_null(real);
    char *argv[] = {"pwd", "-P", NULL};
    int status = -1;
    char *out = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_proc_run_sync(argv, NULL, real, 4000, 4096, &status, &out, &err), 0);
    assert_int_equal(status, 0);
    char want[4200];
    snprintf(want, sizeof(want), "%s\n", real);
    assert_string_equal(out, want);
    free(out);
    assert_int_equal(rmdir(real), 0);
    free(real);
}

static void test_run_sync(void **state)
{
    (void)state;
    struct asr_err err = {0};
    int status = -1;
    char *out = NULL;
    char *echo[] = {"/bin/echo", "sync", NULL};
    assert_int_equal(asr_proc_run_sync(echo, NULL, NULL, 4000, 1024, &status, &out, &err), 0);
    assert_int_equal(status, 0);
    assert_string_equal(out, "sync\n");
    free(out);

    /* Failure exit status is a status, not an error. */
    char *fail[] = {"sh", "-c", "echo oops >&2; exit 7", NULL};
    out = NULL;
    assert_int_equal(asr_proc_run_sync(fail, NULL, NULL, 4000, 1024, &status, &out, &err), 0);
    assert_int_equal(status, 7);
    assert_string_equal(out, "oops\n");
    free(out);

    /* env_extra and a NULL output pointer. */
    char *envp[] = {"sh", "-c", "test \"$ASR_SYNC\" = yes", NULL};
    char *extra[] = {"ASR_SYNC=yes", NULL};
    assert_int_equal(asr_proc_run_sync(envp, extra, NULL, 4000, 0, &status, NULL, &err), 0);
    assert_int_equal(status, 0);

    /* The cap applies to the returned output. */
    char *many[] = {"sh", "-c", "echo 0123456789", NULL};
    out = NULL;
    assert_int_equal(asr_proc_run_sync(many, NULL, NULL, 4000, 4, &status, &out, &err), 0);
    assert_string_equal(out, "0123");
    free(out);

    /* Timeout. */
    char *slow[] = {"sleep", "30", NULL};
    uint64_t t0 = asr_time_mono_ms();
    memset(&err, 0, sizeof(err));
    out = NULL;
    int rc = asr_proc_run_sync(slow, NULL, NULL, 200, 64, &status, &out, &err);
    assert_int_equal(rc, ASR_ETIMEOUT);
    assert_int_equal(err.code, ASR_ETIMEOUT);
    assert_non_null(strstr(err.msg, "sleep"));
    assert_int_equal(status, 128 + SIGTERM);
    assert_true(asr_time_mono_ms() - t0 < 2500);
    free(out);

    /* Missing command. */
    char *missing[] = {"asr-test-no-such-command", NULL};
    memset(&err, 0, sizeof(err));
    out = NULL;
    status = -1;
    rc = asr_proc_run_sync(missing, NULL, NULL, 1000, 64, &status, &out, &err);
    assert_int_equal(rc, ASR_ESPAWN);
    assert_non_null(strstr(err.msg, "asr-test-no-such-command"));
    assert_null(out);
    assert_int_equal(status, -1);
}

int main(int argc, char **argv)
{
    /* ctest runs each case in its own process: argv[1] names it. */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capture_echo),
        cmocka_unit_test(test_capture_path_lookup_and_stderr),
        cmocka_unit_test(test_capture_cap_truncates),
        cmocka_unit_test(test_exit_status),
        cmocka_unit_test(test_killed_by_signal_status),
        cmocka_unit_test(test_missing_command),
        cmocka_unit_test(test_timeout_kills),
        cmocka_unit_test(test_timeout_escalates_to_sigkill),
        cmocka_unit_test(test_stop_kills_process_group),
        cmocka_unit_test(test_stop_after_leader_exited_reaches_group),
        cmocka_unit_test(test_leftover_child_does_not_hold_the_exit),
        cmocka_unit_test(test_free_running_process),
        cmocka_unit_test(test_free_after_exit_outside_callback),
        cmocka_unit_test(test_lines_across_chunks),
        cmocka_unit_test(test_long_line_cut),
        cmocka_unit_test(test_env_extra_replaces),
        cmocka_unit_test(test_cwd),
        cmocka_unit_test(test_run_sync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
