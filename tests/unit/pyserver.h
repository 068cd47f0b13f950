/*
 * pyserver.h - the local stand-ins for outside services (tests/webhook_server.py,
 * tests/github_server.py, tests/git_http_server.py), started by the outbound tests
 * (test_notify.c, test_github.c, test_patch_push.c, test_outbound_secrets.c), and what those
 * tests share: a private uv loop run until a callback has fired, the helper binaries next to
 * ASR_BIN, and the servers' request records read back as JSON.
 *
 * A header of static functions, like synth_secrets.h, so that the tests' CMake glob (one program
 * per tests/unit/test_*.c) needs no per-test source list. PYS_FN marks functions a test may leave
 * unused.
 */
#ifndef ASR_TESTS_PYSERVER_H
#define ASR_TESTS_PYSERVER_H

#include "asr/timeutil.h"

#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#define PYS_FN static __attribute__((unused))

extern char **environ;

struct pyserver {
    pid_t pid;
    int port;
    char record[256]; /* the file it appends its requests to */
};

/* tests/<name> from ASR_SOURCE_DIR, or from this file's place in the tree. */
PYS_FN void pys_source_path(const char *name, char *out, size_t cap)
{
    const char *src = getenv("ASR_SOURCE_DIR");
    if (src != NULL) {
        snprintf(out, cap, "%s/tests/%s", src, name);
        return;
    }
    snprintf(out, cap, "%s", __FILE__);
    char *slash = strstr(out, "/unit/pyserver.h");
    if (slash != NULL)
        snprintf(slash, cap - (size_t)(slash - out), "/%s", name);
}

/* A helper binary (asr-post, asr-git) next to ASR_BIN; false when there is none. */
PYS_FN bool pys_helper(const char *name, char *out, size_t cap)
{
    const char *bin = getenv("ASR_BIN");
    if (bin == NULL)
        return false;
    const char *slash = strrchr(bin, '/');
    if (slash == NULL)
        snprintf(out, cap, "./%s", name);
    else
        snprintf(out, cap, "%.*s/%s", (int)(slash - bin), bin, name);
    return access(out, X_OK) == 0;
}

/*
 * Starts python3 tests/<script> with the extra environment entries env (NULL-terminated, may be
 * NULL) plus <record_var>=<record> when record_var is given; waits (at most 10 s) for its
 * "listening PORT". Returns 0 or -1.
 */
PYS_FN int pys_start(struct pyserver *s, const char *script, const char *record_var,
                     const char *record, char *const *env)
{
    char path[4096];
    pys_source_path(script, path, sizeof(path));
    memset(s, 0, sizeof(*s));
    s->pid = -1;
    size_t n = 0, m = 0;
    while (environ[n] != NULL)
        n++;
    while (env != NULL && env[m] != NULL)
        m++;
    char **envp = calloc(n + m + 2, sizeof(char *));
    char rv[400];
    if (envp == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        envp[i] = environ[i];
    for (size_t i = 0; i < m; i++)
        envp[n + i] = env[i];
    if (record_var != NULL) {
        snprintf(s->record, sizeof(s->record), "%s", record);
        snprintf(rv, sizeof(rv), "%s=%s", record_var, record);
        envp[n + m] = rv;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        free(envp);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    char *argv[] = {"python3", "-u", path, NULL};
    int rc = posix_spawnp(&s->pid, "python3", &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        fprintf(stderr, "pyserver: cannot start python3 %s: %s\n", path, strerror(rc));
        s->pid = -1;
        return -1;
    }
    char line[64] = {0};
    size_t len = 0;
    uint64_t deadline = asr_time_mono_ms() + 10000;
    while (len < sizeof(line) - 1 && strchr(line, '\n') == NULL && asr_time_mono_ms() < deadline) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t got = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fds[0]);
    if (sscanf(line, "listening %d", &s->port) != 1) {
        fprintf(stderr, "pyserver: %s did not start (got \"%s\")\n", script, line);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = -1;
        return -1;
    }
    return 0;
}

PYS_FN void pys_stop(struct pyserver *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = -1;
    }
}

/* The server's record: one JSON object per line, as a JSON list (caller decrefs). */
PYS_FN json_t *pys_records(const struct pyserver *s)
{
    json_t *all = json_array();
    FILE *f = fopen(s->record, "r");
    if (f == NULL)
        return all;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_t *j = json_loadb(line, (size_t)n, 0, NULL);
        if (j != NULL)
            json_array_append_new(all, j);
    }
    free(line);
    fclose(f);
    return all;
}

/* The whole record file as text (caller frees). */
PYS_FN char *pys_record_text(const struct pyserver *s)
{
    FILE *f = fopen(s->record, "r");
    if (f == NULL)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = b != NULL ? fread(b, 1, (size_t)n, f) : 0;
    fclose(f);
    if (b != NULL)
        b[got] = '\0';
    return b;
}

/* Runs loop until *flag is set or ms pass; returns whether it was set. */
PYS_FN bool pys_run_until(uv_loop_t *loop, const bool *flag, int ms)
{
    uint64_t deadline = asr_time_mono_ms() + (uint64_t)ms;
    while (!*flag && asr_time_mono_ms() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    return *flag;
}

/* Runs the loop until nothing is left on it (handles of finished children close), then closes
 * it. */
PYS_FN void pys_loop_close(uv_loop_t *loop)
{
    for (int i = 0; i < 200 && uv_loop_alive(loop); i++)
        uv_run(loop, UV_RUN_NOWAIT), usleep(10000);
    uv_loop_close(loop);
}

/* A port nothing listens on: bound, read, closed. */
PYS_FN int pys_dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

/* Whether the file at path holds needle (false when it cannot be read). */
PYS_FN bool pys_file_has(const char *path, const char *needle, size_t nlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    for (size_t i = 0; i + nlen <= n; i++)
        if (memcmp(buf + i, needle, nlen) == 0)
            return true;
    return false;
}

#endif
