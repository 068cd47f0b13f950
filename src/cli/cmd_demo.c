/*
 * cmd_demo.c - `asr demo [--report FILE]`: the closed loop, end to end, on the demo shop.
 *
 * It is the product's main job shown on one machine (docs/execution.md, "The demo"). In a
 * temporary directory it makes a git repository of the demo (demo/app, demo/upstream, the
 * config and the playbooks), starts `asr run` on it as a child, and triggers the shop's three
 * faults and a crash one after another. asr detects, plans, commits, builds, tests, cuts over,
 * verifies and resolves each one on its own; this command only watches. It reads the daemon's
 * store read-only (SQLite's WAL lets it read while the daemon writes) and prints each stage as
 * it lands there, with its time from the first fault line; then asr's overhead per fault, a
 * table against the targets, the git log of the fixes and `asr audit verify`. --report writes
 * every stage's timestamp per fault as JSON.
 *
 * Where the demo comes from: --source DIR, else the demo/ folder of the source tree this binary
 * was built from (ASR_SOURCE_DIR, compiled in by CMake for this file only, so a build directory
 * anywhere finds it), else ../demo next to the binary (a build tree moved with its sources).
 *
 * Processes: git, cp, make and `asr audit verify` run to completion as argv children
 * (asr_proc_run_sync). The daemon is forked and exec'd directly, its output going straight to a
 * file: this command blocks between polls, and no pipe of the daemon may fill meanwhile. The
 * daemon gets PR_SET_PDEATHSIG, so it stops if this command dies; it is stopped with SIGTERM
 * (SIGKILL after 30 s) and waited for. One thread; the HTTP requests run on a private libuv loop.
 */
#include "asr/config.h"
#include "asr/fsutil.h"
#include "asr/spawn.h"
#include "asr/timeutil.h"
#include "asr/utf8.h"
#include "cli/cli.h"
#include "recover/health.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef ASR_SOURCE_DIR
#define ASR_SOURCE_DIR ""
#endif

static const char USAGE[] =
    "usage: asr demo [--report FILE] [--source DIR] [--ports SHOP,UPSTREAM] [--keep]\n"
    "The closed loop on the demo shop, with no human step: in a temporary git repository asr\n"
    "serves the shop and its upstream, the shop's three faults and a crash are triggered one\n"
    "after another, and asr detects, plans, commits, builds, tests, cuts over and verifies a fix\n"
    "for each. Prints every stage with its time from the first fault line, asr's own overhead,\n"
    "the git log of the fixes and `asr audit verify`. Exit 0 only if all 4 are resolved.\n"
    "  --report FILE          write every stage's timestamps per fault as JSON\n"
    "  --source DIR           the demo folder (default: demo/ of asr's source tree)\n"
    "  --ports SHOP,UPSTREAM  the proxies' ports (default: the config's, 8080 and 8081)\n"
    "  --keep                 keep the temporary directory (repository, state, daemon log)\n";

#define DEMO_SERVICE "shop"
#define POLL_MS 20
#define START_TIMEOUT_MS 180000 /* the first build of both services, then health */
#define FAULT_TIMEOUT_MS 60000  /* from the faulting request to a final state */
#define STOP_TIMEOUT_MS 30000   /* SIGTERM to SIGKILL */
#define VERIFY_WINDOW_MS 300    /* a fix must stay good this long to count */
#define TARGET_PATCH_MS 5000
#define TARGET_CRASH_MS 1000
#define TARGET_OWN_MS 100

/* The faults, in the order they are triggered: POST /test-fault/<route>. */
static const struct {
    const char *route;
    bool crash; /* a crash (target 1 s) rather than a patch-class fault (target 5 s) */
} FAULTS[] = {{"db-timeout", false}, {"run", false}, {"external-api", false}, {"crash", true}};
#define NFAULTS (sizeof(FAULTS) / sizeof(FAULTS[0]))

/* The stages of a fault, in order. Each is a wall-clock ms from the store, or 0 when unknown. */
enum stage {
    ST_FIRST_SEEN,     /* incidents.first_seen: the first fault line */
    ST_DETECTED,       /* incidents.opened_at: the incident is on disk */
    ST_PLANNED,        /* plans.created_at */
    ST_STARTED,        /* remediations.started_at: the policy gate let it run */
    ST_STEP,           /* the journal's intent row of the step that ran last */
    ST_COMMITTED,      /* the journal's commit row (rem:<id>:commit:<n>) of a patch */
    ST_DEPLOY_STARTED, /* the deploy.started event: the commit resolved, the release recorded */
    ST_BUILT,          /* the build's end */
    ST_TESTED,         /* the tests' end */
    ST_SLOT_STARTED,   /* the slot.started event of the new slot */
    ST_CUT_OVER,       /* the deploy.switched event: the proxy sends to the new slot */
    ST_REPLAY,         /* the journal's verify intent row: the replay is sent */
    ST_VERIFIED,       /* the journal's verify result row, when ok */
    ST_RESOLVED,       /* incidents.resolved_at */
    ST_N
};
static const char *const STAGE_NAMES[ST_N] = {
    "first_seen", "detected", "planned",      "started",  "step",   "committed", "deploy_started",
    "built",      "tested",   "slot_started", "cut_over", "replay", "verified",  "resolved"};

/* What the store says about one fault; re-read whole at every poll (a few rows). */
struct fault {
    const char *route;
    bool crash;
    int64_t before_incident, before_event; /* the newest ids before the request */
    int64_t triggered_at;
    int http_status;  /* of the faulting request; 0: no answer */
    int after_status; /* of the same request after the fix (X-Asr-Verification: 1) */

    int64_t incident;
    char signature[128], kind[16], status[16], line[512];
    int64_t at[ST_N];
    int64_t plan;
    char strategy[16], playbook[128], why[256];
    double score;
    int64_t rem;
    char rem_state[24], rem_reason[512];
    bool approved_by_person;
    int step; /* the step that ran last (1-based), 0: none yet */
    char action[16];
    bool step_done, step_ok, verify_done, verify_ok;
    char step_detail[400], verify_detail[400];
    char commit[41], branch[80];
    int64_t deployment;
    bool already_built, deploy_failed;
    char slot[16], deploy_reason[300];
    int build_status, test_status;
    int64_t build_ms, test_ms;
    int64_t built_seen, tested_seen; /* the release's updated_at, caught right after each */

    unsigned printed; /* a bit per stage printed */
    bool failed_printed, verify_fail_printed;
    bool done, timed_out;
};

/* asr's overhead for one resolved fault: MTTR - build - test, split (docs/execution.md). */
struct overhead {
    bool ok;
    int64_t mttr, build, test, total;
    int64_t window, health; /* waits asr chose by config */
    int64_t replay;         /* the service answering the replayed request */
    int64_t earlier;        /* steps before the one that removed the fault */
    int64_t detect, plan, gate, start, commit, resolve, export_spawn, cutover, finish;
    bool has_commit; /* a patch's commit (asr-git commit-edits) */
    int64_t own;
};

struct demo {
    char exe[PATH_MAX];
    const char *source;
    const char *report;
    int shop_port, upstream_port; /* 0: the config's */
    bool keep;
    char work[PATH_MAX], repo[PATH_MAX], state[PATH_MAX], cfg_path[PATH_MAX], log_path[PATH_MAX];
    struct asr_config *cfg;
    const struct asr_service_cfg *shop;
    pid_t daemon;
    sqlite3 *db;
    uv_loop_t loop;
    bool loop_init;
    bool tty;
    int playbooks_indexed;
    struct fault faults[NFAULTS];
    size_t nrun;
    bool audit_ok;
    char *audit_out;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void heading(const struct demo *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void heading(const struct demo *d, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printf(d->tty ? "\n\033[1m== %s\033[0m\n" : "\n== %s\n", msg);
    fflush(stdout);
}

/* Prints s with control characters as \xNN, at most max bytes: log text is the service's. */
static void print_safe(const char *s, size_t max)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++, n++) {
        if (n == max) {
            fputs("...", stdout);
            return;
        }
        if (*p < 0x20 || *p == 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
}

/* Prints each line of text indented by 3 spaces (escaped). */
static void print_indented(const char *text)
{
    const char *p = text != NULL ? text : "";
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        char line[1024];
        snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) - 1 ? n : sizeof(line) - 1), p);
        fputs("   ", stdout);
        print_safe(line, 300);
        putchar('\n');
        p += n;
        if (*p == '\n')
            p++;
    }
    fflush(stdout);
}

/* ---- children ---------------------------------------------------------------------------------
 */

/* Runs argv to completion (cwd may be NULL); its output in *out (caller frees; may be NULL).
 * Returns its exit status, or -1 after printing why it could not run. */
static int run(char *const *argv, const char *cwd, int timeout_ms, char **out)
{
    int status = -1;
    char *output = NULL;
    struct asr_err err = {0};
    int rc = asr_proc_run_sync(argv, NULL, cwd, timeout_ms, 64 * 1024, &status, &output, &err);
    if (rc != 0) {
        cli_error("demo", "%s", asr_err_msg(&err, rc));
        free(output);
        return -1;
    }
    if (out != NULL)
        *out = output;
    else
        free(output);
    return status;
}

/* Runs a git command in the demo repository; fails loudly with its output. */
static int git(struct demo *d, const char *what, char **out, ...)
{
    char *argv[24] = {"git",
                      "-c",
                      "user.name=demo",
                      "-c",
                      "user.email=demo@asr.invalid",
                      "-c",
                      "commit.gpgsign=false",
                      "-c",
                      "core.hooksPath=/dev/null",
                      "-c",
                      "color.ui=never",
                      "-C",
                      d->repo};
    int n = 13;
    va_list ap;
    va_start(ap, out);
    for (char *a = va_arg(ap, char *); a != NULL && n < 23; a = va_arg(ap, char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char *output = NULL;
    int st = run(argv, NULL, 60000, &output);
    if (st != 0 && st != -1)
        cli_error("demo", "git %s failed (exit status %d): %s", what, st,
                  output != NULL ? output : "");
    if (st == 0 && out != NULL)
        *out = output;
    else
        free(output);
    return st == 0 ? 0 : -1;
}

/* ---- the daemon -------------------------------------------------------------------------------
 */

static int daemon_start(struct demo *d)
{
    int fd = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        cli_error("demo", "cannot create %s: %s", d->log_path, strerror(errno));
        return -1;
    }
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0) {
        cli_error("demo", "cannot open /dev/null: %s", strerror(errno));
        close(fd);
        return -1;
    }
    char *argv[] = {d->exe, "run", "-c", d->cfg_path, "--state-dir", d->state, NULL};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        cli_error("demo", "cannot start asr run: fork: %s", strerror(errno));
        close(fd);
        close(null);
        return -1;
    }
    if (pid == 0) {
        /* The child: only async-signal-safe calls until exec. It stops when we die, and has its
         * own process group, so a Ctrl-C reaches us and we stop it in order. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        dup2(null, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(d->exe, argv);
        static const char msg[] = "asr: demo: cannot exec asr run\n";
        ssize_t w = write(2, msg, sizeof(msg) - 1);
        (void)w;
        _exit(127);
    }
    close(fd);
    close(null);
    d->daemon = pid;
    return 0;
}

/* true while the daemon runs; reaps it (and forgets it) once it has exited. */
static bool daemon_alive(struct demo *d)
{
    if (d->daemon <= 0)
        return false;
    int st;
    pid_t r = waitpid(d->daemon, &st, WNOHANG);
    if (r == d->daemon) {
        d->daemon = 0;
        return false;
    }
    return true;
}

/* SIGTERM, then SIGKILL after STOP_TIMEOUT_MS. Returns its exit status (-1: killed). */
static int daemon_stop(struct demo *d)
{
    if (d->daemon <= 0)
        return 0;
    kill(d->daemon, SIGTERM);
    int st = 0;
    for (int waited = 0;; waited += POLL_MS) {
        pid_t r = waitpid(d->daemon, &st, WNOHANG);
        if (r == d->daemon || (r < 0 && errno != EINTR))
            break;
        if (waited >= STOP_TIMEOUT_MS) {
            cli_error("demo", "asr run (pid %d) did not stop within %d s of SIGTERM; killing it",
                      (int)d->daemon, STOP_TIMEOUT_MS / 1000);
            kill(d->daemon, SIGKILL);
            waitpid(d->daemon, &st, 0);
            d->daemon = 0;
            return -1;
        }
        sleep_ms(POLL_MS);
    }
    d->daemon = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The last lines of the daemon's log, to stderr (when something went wrong). */
static void log_tail(const struct demo *d, int lines)
{
    FILE *f = fopen(d->log_path, "r");
    if (f == NULL)
        return;
    static char buf[64 * 1024];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t i = n > 0 && buf[n - 1] == '\n' ? n - 1 : n;
    for (int k = 0; i > 0; i--)
        if (buf[i - 1] == '\n' && ++k == lines)
            break;
    fprintf(stderr, "--- the last lines of %s ---\n%s", d->log_path, buf + i);
}

/* ---- HTTP, on a private loop ------------------------------------------------------------------
 */

struct answer {
    bool done;
    int status;
};

static void answer_cb(int status, const char *body, size_t len, const char *why, void *data)
{
    (void)body;
    (void)len;
    (void)why;
    struct answer *a = data;
    a->done = true;
    a->status = status;
}

/* METHOD path on host:port; the status, or 0 when there was no answer. */
static int http(struct demo *d, const char *host, int port, const char *method, const char *path,
                const char *headers, int timeout_ms)
{
    struct answer a = {0};
    struct asr_probe *p = asr_request_start(&d->loop, host, port, method, path, headers, NULL, 0,
                                            4096, timeout_ms, answer_cb, &a);
    if (p == NULL)
        return 0;
    while (!a.done)
        uv_run(&d->loop, UV_RUN_ONCE);
    uv_run(&d->loop, UV_RUN_NOWAIT); /* let the request's handles close */
    return a.status;
}

static bool healthy(struct demo *d, const struct asr_service_cfg *s)
{
    return http(d, s->listen_host, s->listen_port, "GET", s->health.path, NULL, 2000) == 200;
}

/* Whether host:port can be bound (nothing listens there). */
static bool port_free(const char *host, int port)
{
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, ps, &hints, &ai) != 0 || ai == NULL)
        return false;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
              bind(fd, ai->ai_addr, ai->ai_addrlen) == 0;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return ok;
}

/* A port on 127.0.0.1 that no one listens on now (the kernel's pick), or 0. */
static int any_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* ---- setting up -------------------------------------------------------------------------------
 */

/* The demo folder: --source, else the source tree's demo/, else ../demo next to the binary. */
static int find_source(struct demo *d, char *out, size_t cap)
{
    char cand[2][PATH_MAX];
    int n = 0;
    if (d->source != NULL) {
        snprintf(cand[n++], PATH_MAX, "%s", d->source);
    } else {
        if (ASR_SOURCE_DIR[0] != '\0')
            snprintf(cand[n++], PATH_MAX, "%s/demo", ASR_SOURCE_DIR);
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", d->exe);
        char *slash = strrchr(dir, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(cand[n++], PATH_MAX, "%.4000s/../demo", dir);
        }
    }
    static const char *const need[] = {"app", "upstream", "asr.yaml", "playbooks"};
    for (int i = 0; i < n; i++) {
        char p[PATH_MAX + 32];
        size_t k;
        for (k = 0; k < 4; k++) {
            snprintf(p, sizeof(p), "%s/%s", cand[i], need[k]);
            if (access(p, R_OK) != 0)
                break;
        }
        if (k == 4) {
            if (realpath(cand[i], out) == NULL || strlen(out) >= cap) {
                cli_error("demo", "%s: %s", cand[i], strerror(errno));
                return -1;
            }
            return 0;
        }
        if (d->source != NULL || i == n - 1) {
            cli_error("demo", "%s is not the demo folder: %s is missing (%s)", cand[i], p,
                      d->source != NULL ? "check --source"
                                        : "pass the demo/ folder of asr's sources with --source");
            return -1;
        }
    }
    cli_error("demo", "cannot find the demo folder; pass it with --source DIR");
    return -1;
}

/* Reads a small text file (at most 1 MiB) into a new string; NULL after printing why. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        cli_error("demo", "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1024 * 1024;
    char *s = malloc(cap + 1);
    size_t n = s != NULL ? fread(s, 1, cap + 1, f) : 0;
    fclose(f);
    if (s == NULL || n > cap) {
        cli_error("demo", "%s: %s", path, s == NULL ? "out of memory" : "larger than 1 MiB");
        free(s);
        return NULL;
    }
    s[n] = '\0';
    return s;
}

/* Replaces every occurrence of from with to in *text (reallocated); returns how many. */
static int replace_all(char **text, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to);
    int count = 0;
    for (const char *p = strstr(*text, from); p != NULL; p = strstr(p + fl, from))
        count++;
    if (count == 0)
        return 0;
    size_t n = strlen(*text) + (size_t)count * (tl > fl ? tl - fl : 0) + 1;
    char *out = malloc(n), *o = out;
    if (out == NULL)
        return -1;
    const char *p = *text;
    for (const char *q = strstr(p, from); q != NULL; q = strstr(p, from)) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, tl);
        o += tl;
        p = q + fl;
    }
    memcpy(o, p, strlen(p) + 1); /* fits: n counted it */
    free(*text);
    *text = out;
    return count;
}

/*
 * The demo's config, adjusted as the closed loop needs: the playbooks directory (indexed when
 * the daemon starts), a verify window of VERIFY_WINDOW_MS (a fix must stay good that long to
 * count), and the ports if --ports moved them. Then loaded, so a mistake is named here rather
 * than by the daemon.
 */
static int write_config(struct demo *d, const char *source)
{
    char src[PATH_MAX + 16];
    snprintf(src, sizeof(src), "%s/asr.yaml", source);
    struct asr_config *orig = NULL;
    struct asr_err err = {0};
    int rc = asr_config_load(src, &orig, &err);
    if (rc != 0) {
        cli_error("demo", "%s", asr_err_msg(&err, rc));
        return -1;
    }
    const struct asr_service_cfg *shop = asr_config_service(orig, DEMO_SERVICE);
    const struct asr_service_cfg *up = asr_config_service(orig, "upstream");
    char *text = read_text(d->cfg_path);
    bool ok = text != NULL;
    if (ok && (shop == NULL || up == NULL)) {
        cli_error("demo", "%s: the demo needs the services shop and upstream", src);
        ok = false;
    }
    int moves[2][2] = {{shop != NULL ? shop->listen_port : 0, d->shop_port},
                       {up != NULL ? up->listen_port : 0, d->upstream_port}};
    for (int i = 0; ok && i < 2; i++) {
        if (moves[i][1] == 0 || moves[i][1] == moves[i][0])
            continue;
        const char *host = i == 0 ? shop->listen_host : up->listen_host;
        char from[96], to[96];
        snprintf(from, sizeof(from), "%s:%d", host, moves[i][0]);
        snprintf(to, sizeof(to), "%s:%d", host, moves[i][1]);
        if (replace_all(&text, from, to) <= 0) {
            cli_error("demo", "%s: cannot move %s to port %d: '%s' is not in the file", src,
                      i == 0 ? "shop" : "upstream", moves[i][1], from);
            ok = false;
        }
    }
    char window[64];
    snprintf(window, sizeof(window), "deploy: {verify_window_ms: %d, ", VERIFY_WINDOW_MS);
    if (ok && replace_all(&text, "deploy: {", window) <= 0) {
        cli_error("demo", "%s: no 'deploy: {' mapping to set verify_window_ms in", src);
        ok = false;
    }
    /* The playbooks, and the API with its dashboard on a free port (read-only: no token). */
    char extra[128] = "";
    if (orig->playbooks == NULL)
        snprintf(extra, sizeof(extra), "playbooks: ./playbooks\n");
    int api_port = orig->api.listen_host == NULL ? any_free_port() : 0;
    if (api_port > 0)
        snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
                 "api: {listen: 127.0.0.1:%d}\n", api_port);
    if (ok && extra[0] != '\0') {
        size_t n = strlen(text);
        char *t = realloc(text, n + sizeof(extra) + 1);
        if (t == NULL) {
            ok = false;
        } else {
            text = t;
            snprintf(text + n, sizeof(extra) + 1, "%s%s", n > 0 && text[n - 1] != '\n' ? "\n" : "",
                     extra);
        }
    }
    asr_config_free(orig);
    if (ok && asr_write_file_atomic(d->cfg_path, text, strlen(text), 0644) != 0) {
        cli_error("demo", "cannot write %s: %s", d->cfg_path, strerror(errno));
        ok = false;
    }
    free(text);
    if (!ok)
        return -1;
    if ((rc = asr_config_load(d->cfg_path, &d->cfg, &err)) != 0) {
        cli_error("demo", "the adjusted config: %s", asr_err_msg(&err, rc));
        return -1;
    }
    d->shop = asr_config_service(d->cfg, DEMO_SERVICE);
    return 0;
}

static int setup(struct demo *d)
{
    char source[PATH_MAX];
    if (find_source(d, source, sizeof(source)) != 0)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(d->work, sizeof(d->work), "%.3000s/asr-demo.XXXXXX",
             tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
    if (mkdtemp(d->work) == NULL) {
        cli_error("demo", "cannot create a temporary directory %s: %s", d->work, strerror(errno));
        d->work[0] = '\0';
        return -1;
    }
    snprintf(d->repo, sizeof(d->repo), "%.3000s/repo", d->work);
    snprintf(d->state, sizeof(d->state), "%.3000s/state", d->work);
    snprintf(d->cfg_path, sizeof(d->cfg_path), "%.3000s/repo/asr.yaml", d->work);
    snprintf(d->log_path, sizeof(d->log_path), "%.3000s/asr.log", d->work);
    if (asr_mkdirs(d->repo, 0700) != 0) {
        cli_error("demo", "cannot create %s: %s", d->repo, strerror(errno));
        return -1;
    }
    char app[PATH_MAX + 16], up[PATH_MAX + 16], yaml[PATH_MAX + 16], pb[PATH_MAX + 16];
    snprintf(app, sizeof(app), "%s/app", source);
    snprintf(up, sizeof(up), "%s/upstream", source);
    snprintf(yaml, sizeof(yaml), "%s/asr.yaml", source);
    snprintf(pb, sizeof(pb), "%s/playbooks", source);
    char *cp[] = {"cp", "-R", "--", app, up, yaml, pb, d->repo, NULL};
    int st = run(cp, NULL, 60000, NULL);
    if (st != 0) {
        if (st > 0)
            cli_error("demo", "copying %s into %s failed (cp exit status %d)", source, d->repo, st);
        return -1;
    }
    /* What a build in the source tree left behind is not part of the demo's first commit. */
    const char *dirs[] = {"app", "upstream"};
    for (int i = 0; i < 2; i++) {
        char dir[PATH_MAX + 16];
        snprintf(dir, sizeof(dir), "%s/%s", d->repo, dirs[i]);
        char *mk[] = {"make", "-s", "-C", dir, "clean", NULL};
        run(mk, NULL, 60000, NULL);
    }
    if (write_config(d, source) != 0)
        return -1;
    for (size_t i = 0; i < d->cfg->nservices; i++) {
        const struct asr_service_cfg *s = &d->cfg->services[i];
        if (!port_free(s->listen_host, s->listen_port)) {
            cli_error("demo",
                      "port %d (%s, the %s service's address) is already in use: stop whatever "
                      "serves it and retry, or choose other ports with --ports",
                      s->listen_port, s->listen_host, s->name);
            return -1;
        }
    }
    if (git(d, "init", NULL, "init", "-q", (char *)NULL) != 0 ||
        git(d, "add", NULL, "add", "-A", (char *)NULL) != 0 ||
        git(d, "commit", NULL, "commit", "-q", "-m", "shop: initial version, with its faults",
            (char *)NULL) != 0)
        return -1;
    return 0;
}

/* Starts the daemon and waits for every service to answer its health check through its proxy,
 * then opens the store read-only. */
static int start(struct demo *d)
{
    if (daemon_start(d) != 0)
        return -1;
    int64_t t0 = asr_time_wall_ms();
    for (size_t i = 0; i < d->cfg->nservices; i++) {
        const struct asr_service_cfg *s = &d->cfg->services[i];
        while (!healthy(d, s)) {
            if (interrupted)
                return -1;
            if (!daemon_alive(d)) {
                cli_error("demo", "asr run exited before %s was healthy", s->name);
                log_tail(d, 40);
                return -1;
            }
            if (asr_time_wall_ms() - t0 > START_TIMEOUT_MS) {
                cli_error("demo", "%s was not healthy on %s:%d within %d s", s->name,
                          s->listen_host, s->listen_port, START_TIMEOUT_MS / 1000);
                log_tail(d, 40);
                return -1;
            }
            sleep_ms(50);
        }
    }
    char db[PATH_MAX + 16];
    snprintf(db, sizeof(db), "%s/asr.db", d->state);
    if (sqlite3_open_v2(db, &d->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        cli_error("demo", "cannot open %s read-only: %s", db,
                  d->db != NULL ? sqlite3_errmsg(d->db) : "out of memory");
        return -1;
    }
    sqlite3_busy_timeout(d->db, 5000);
    printf("   the shop and its upstream are up in %.1f s",
           (double)(asr_time_wall_ms() - t0) / 1e3);
    /* The daemon logs how many playbooks it indexed at start. */
    char *log = read_text(d->log_path);
    const char *p = log != NULL ? strstr(log, "playbooks: ") : NULL;
    int a, b;
    if (p != NULL && sscanf(p, "playbooks: %d of %d indexed", &a, &b) == 2)
        printf("; %d of %d playbooks indexed", a, b);
    free(log);
    printf("\n");
    for (size_t i = 0; i < d->cfg->nservices; i++)
        printf("   %s on http://%s:%d\n", d->cfg->services[i].name, d->cfg->services[i].listen_host,
               d->cfg->services[i].listen_port);
    if (d->cfg->api.listen_host != NULL)
        printf("   dashboard on http://%s:%d/ (live while the demo runs)\n",
               d->cfg->api.listen_host, d->cfg->api.listen_port);
    fflush(stdout);
    return 0;
}

/* ---- reading the store ------------------------------------------------------------------------
 */

static sqlite3_stmt *prepare(struct demo *d, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK) {
        cli_error("demo", "store: %s: %s", sql, sqlite3_errmsg(d->db));
        return NULL;
    }
    return s;
}

/* Copies s (NULL: "") into out, cut at cap without splitting a UTF-8 sequence. */
static void copy(char *out, size_t cap, const char *s)
{
    snprintf(out, cap, "%s", s != NULL ? s : "");
    out[asr_utf8_valid_prefix((const unsigned char *)out, strlen(out))] = '\0';
}

static void col_text(sqlite3_stmt *s, int i, char *out, size_t cap)
{
    copy(out, cap, (const char *)sqlite3_column_text(s, i));
}

/* One integer from a query with up to one integer parameter; fallback when no row. */
static int64_t query_int(struct demo *d, const char *sql, int64_t param, int64_t fallback)
{
    sqlite3_stmt *s = prepare(d, sql);
    if (s == NULL)
        return fallback;
    if (sqlite3_bind_parameter_count(s) > 0)
        sqlite3_bind_int64(s, 1, param);
    int64_t v = fallback;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* "key=<integer>" in an event's detail; 0 when absent. */
static int64_t detail_int(const char *detail, const char *key)
{
    const char *p = strstr(detail, key);
    return p != NULL ? strtoll(p + strlen(key), NULL, 10) : 0;
}

/* "key=<word>" in an event's detail, into out. */
static void detail_word(const char *detail, const char *key, char *out, size_t cap)
{
    const char *p = strstr(detail, key);
    size_t n = 0;
    if (p != NULL) {
        p += strlen(key);
        while (p[n] != '\0' && p[n] != ' ' && n + 1 < cap)
            n++;
    }
    snprintf(out, cap, "%.*s", (int)n, p != NULL ? p : "");
}

/* A journal key "rem:<id>:<what>:<n>[:r<gen>]": what into out, returns n (0: not one). */
static int key_parts(const char *key, char *what, size_t cap)
{
    const char *p = strchr(key, ':');
    p = p != NULL ? strchr(p + 1, ':') : NULL;
    const char *q = p != NULL ? strchr(p + 1, ':') : NULL;
    if (q == NULL)
        return 0;
    snprintf(what, cap, "%.*s", (int)(q - p - 1), p + 1);
    return (int)strtol(q + 1, NULL, 10);
}

static void read_plan(struct demo *d, struct fault *f)
{
    sqlite3_stmt *s = prepare(d, "SELECT id, created_at, strategy, body FROM plans "
                                 "WHERE incident_id = ? ORDER BY id DESC LIMIT 1");
    if (s == NULL)
        return;
    sqlite3_bind_int64(s, 1, f->incident);
    if (sqlite3_step(s) == SQLITE_ROW) {
        f->plan = sqlite3_column_int64(s, 0);
        f->at[ST_PLANNED] = sqlite3_column_int64(s, 1);
        col_text(s, 2, f->strategy, sizeof(f->strategy));
        json_t *body = json_loads((const char *)sqlite3_column_text(s, 3), 0, NULL);
        const char *pb = json_string_value(json_object_get(body, "playbook"));
        copy(f->playbook, sizeof(f->playbook), pb);
        json_t *src = json_array_get(json_object_get(body, "sources"), 0);
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(body, "sources"), i, v)
        {
            const char *ref = json_string_value(json_object_get(v, "ref"));
            if (pb != NULL && ref != NULL && strcmp(ref, pb) == 0) {
                src = v;
                break;
            }
        }
        f->score = json_is_number(json_object_get(src, "score"))
                       ? json_number_value(json_object_get(src, "score"))
                       : json_number_value(json_object_get(body, "confidence"));
        const char *why = json_string_value(json_object_get(src, "why"));
        copy(f->why, sizeof(f->why), why);
        json_decref(body);
    }
    sqlite3_finalize(s);
}

static void read_remediation(struct demo *d, struct fault *f)
{
    sqlite3_stmt *s =
        prepare(d, "SELECT id, state, reason, approved_by, started_at FROM remediations "
                   "WHERE incident_id = ? ORDER BY id DESC LIMIT 1");
    if (s == NULL)
        return;
    sqlite3_bind_int64(s, 1, f->incident);
    if (sqlite3_step(s) == SQLITE_ROW) {
        f->rem = sqlite3_column_int64(s, 0);
        col_text(s, 1, f->rem_state, sizeof(f->rem_state));
        col_text(s, 2, f->rem_reason, sizeof(f->rem_reason));
        f->approved_by_person = sqlite3_column_type(s, 3) != SQLITE_NULL;
        f->at[ST_STARTED] = sqlite3_column_int64(s, 4);
    }
    sqlite3_finalize(s);
}

/* The journal: the step that ran last, its commit and its verification. */
static void read_journal(struct demo *d, struct fault *f)
{
    sqlite3_stmt *s =
        prepare(d, "SELECT step, action, phase, idem_key, at, ok, detail FROM journal "
                   "WHERE remediation_id = ? ORDER BY id");
    if (s == NULL)
        return;
    sqlite3_bind_int64(s, 1, f->rem);
    while (sqlite3_step(s) == SQLITE_ROW) {
        int step = sqlite3_column_int(s, 0);
        const char *phase = (const char *)sqlite3_column_text(s, 2);
        char what[16];
        if (key_parts((const char *)sqlite3_column_text(s, 3), what, sizeof(what)) == 0)
            continue;
        int64_t at = sqlite3_column_int64(s, 4);
        bool ok = sqlite3_column_int(s, 5) == 1, result = strcmp(phase, "result") == 0;
        if (step > f->step) {
            /* A new step: what the one before did is no longer this fault's current step. */
            f->step = step;
            f->step_done = f->verify_done = f->verify_ok = false;
            f->verify_fail_printed = false;
            f->commit[0] = f->branch[0] = '\0';
            f->built_seen = f->tested_seen = 0;
            for (int k = ST_STEP; k < ST_RESOLVED; k++)
                f->at[k] = 0;
            f->printed &= (1u << ST_STEP) - 1;
        }
        if (step != f->step)
            continue;
        json_t *det = json_loads((const char *)sqlite3_column_text(s, 6), 0, NULL);
        const char *text = json_string_value(json_object_get(det, "detail"));
        if (strcmp(what, "step") == 0 && !result) {
            f->at[ST_STEP] = at;
            col_text(s, 1, f->action, sizeof(f->action));
        } else if (strcmp(what, "step") == 0) {
            f->step_done = true;
            f->step_ok = ok;
            copy(f->step_detail, sizeof(f->step_detail), text);
        } else if (strcmp(what, "commit") == 0 && result && ok) {
            const char *c = json_string_value(json_object_get(det, "commit"));
            const char *b = json_string_value(json_object_get(det, "branch"));
            if (c != NULL && strlen(c) == 40) {
                snprintf(f->commit, sizeof(f->commit), "%.40s", c);
                f->at[ST_COMMITTED] = at;
            }
            if (b != NULL)
                copy(f->branch, sizeof(f->branch), b);
        } else if (strcmp(what, "verify") == 0 && !result) {
            f->at[ST_REPLAY] = at;
        } else if (strcmp(what, "verify") == 0) {
            f->verify_done = true;
            f->verify_ok = ok;
            f->at[ST_VERIFIED] = ok ? at : 0;
            copy(f->verify_detail, sizeof(f->verify_detail), text);
        }
        json_decref(det);
    }
    sqlite3_finalize(s);
}

/* The deployment of the current step, from the service's events since it began. */
static void read_deployment(struct demo *d, struct fault *f)
{
    f->deployment = 0;
    sqlite3_stmt *s = prepare(d, "SELECT at, kind, detail FROM events WHERE service = ? AND id > ? "
                                 "AND at >= ? AND kind IN ('deploy.started', 'slot.started', "
                                 "'deploy.switched', 'deploy.failed') ORDER BY id LIMIT 500");
    if (s == NULL)
        return;
    sqlite3_bind_text(s, 1, DEMO_SERVICE, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, f->before_event);
    sqlite3_bind_int64(s, 3, f->at[ST_STEP]);
    while (sqlite3_step(s) == SQLITE_ROW) {
        int64_t at = sqlite3_column_int64(s, 0);
        const char *kind = (const char *)sqlite3_column_text(s, 1);
        const char *det = (const char *)sqlite3_column_text(s, 2);
        det = det != NULL ? det : "";
        if (strcmp(kind, "deploy.started") == 0) {
            f->deployment = detail_int(det, "deployment=");
            f->already_built = strstr(det, "(already built)") != NULL;
            f->deploy_failed = false;
            f->at[ST_DEPLOY_STARTED] = at;
            f->at[ST_SLOT_STARTED] = f->at[ST_CUT_OVER] = 0;
        } else if (f->deployment == 0) {
            continue;
        } else if (strcmp(kind, "slot.started") == 0 && f->at[ST_CUT_OVER] == 0) {
            f->at[ST_SLOT_STARTED] = at;
        } else if (strcmp(kind, "deploy.switched") == 0 &&
                   detail_int(det, "deployment=") == f->deployment) {
            f->at[ST_CUT_OVER] = at;
            detail_word(det, "slot=", f->slot, sizeof(f->slot));
        } else if (strcmp(kind, "deploy.failed") == 0 &&
                   detail_int(det, "deployment=") == f->deployment) {
            f->deploy_failed = true;
            const char *c = strstr(det, ": ");
            copy(f->deploy_reason, sizeof(f->deploy_reason), c != NULL ? c + 2 : det);
        }
    }
    sqlite3_finalize(s);
    if (f->deployment == 0 || f->already_built)
        return;
    /* The release being built. Its build and test have no timestamps of their own (updated_at
     * moves on with every change), so the end of each is caught here as it happens: right after
     * the build, updated_at is the build's end; right after the tests, the tests' end. */
    s = prepare(d, "SELECT r.build_status, r.build_ms, r.test_status, r.test_ms, r.state, "
                   "r.updated_at FROM deployments d JOIN releases r ON r.id = d.to_release "
                   "WHERE d.id = ?");
    if (s == NULL)
        return;
    sqlite3_bind_int64(s, 1, f->deployment);
    if (sqlite3_step(s) == SQLITE_ROW) {
        f->build_status = sqlite3_column_int(s, 0);
        f->build_ms = sqlite3_column_int64(s, 1);
        f->test_status = sqlite3_column_int(s, 2);
        f->test_ms = sqlite3_column_int64(s, 3);
        const char *state = (const char *)sqlite3_column_text(s, 4);
        int64_t upd = sqlite3_column_int64(s, 5);
        bool building = strcmp(state, "building") == 0;
        if (f->built_seen == 0 && f->build_status != -1 && f->test_status == -1 && building)
            f->built_seen = upd;
        if (f->tested_seen == 0 && f->test_status != -1 && (building || !strcmp(state, "built")))
            f->tested_seen = upd;
    }
    sqlite3_finalize(s);
    /* What was not caught is derived: the tests end just before the new slot starts (the release
     * is published and a slot taken in between), and the build ends test_ms before that. */
    f->at[ST_TESTED] = f->tested_seen != 0    ? f->tested_seen
                       : f->test_status != -1 ? f->at[ST_SLOT_STARTED]
                                              : 0;
    f->at[ST_BUILT] = f->built_seen != 0 ? f->built_seen
                      : f->build_status != -1 && f->at[ST_TESTED] != 0
                          ? f->at[ST_TESTED] - f->test_ms
                          : 0;
}

/* Re-reads everything the store holds about the fault. */
static void refresh(struct demo *d, struct fault *f)
{
    if (f->incident == 0) {
        f->incident = query_int(d,
                                "SELECT id FROM incidents WHERE id > ? AND parent_id IS NULL "
                                "AND service = '" DEMO_SERVICE "' ORDER BY id LIMIT 1",
                                f->before_incident, 0);
        if (f->incident == 0)
            return;
    }
    sqlite3_stmt *s = prepare(d, "SELECT signature, kind, status, line, first_seen, opened_at, "
                                 "resolved_at FROM incidents WHERE id = ?");
    if (s == NULL)
        return;
    sqlite3_bind_int64(s, 1, f->incident);
    if (sqlite3_step(s) == SQLITE_ROW) {
        col_text(s, 0, f->signature, sizeof(f->signature));
        col_text(s, 1, f->kind, sizeof(f->kind));
        col_text(s, 2, f->status, sizeof(f->status));
        col_text(s, 3, f->line, sizeof(f->line));
        f->at[ST_FIRST_SEEN] = sqlite3_column_int64(s, 4);
        f->at[ST_DETECTED] = sqlite3_column_int64(s, 5);
        f->at[ST_RESOLVED] = sqlite3_column_int64(s, 6);
    }
    sqlite3_finalize(s);
    read_plan(d, f);
    read_remediation(d, f);
    if (f->rem == 0)
        return;
    read_journal(d, f);
    if (f->at[ST_STEP] != 0)
        read_deployment(d, f);
}

static bool final_state(const char *st)
{
    return strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0 ||
           strcmp(st, "escalated") == 0 || strcmp(st, "refused") == 0 ||
           strcmp(st, "rejected") == 0 || strcmp(st, "shadowed") == 0;
}

static bool resolved(const struct fault *f)
{
    return strcmp(f->rem_state, "succeeded") == 0 && f->at[ST_RESOLVED] != 0 &&
           !f->approved_by_person;
}

/* ---- the timeline -----------------------------------------------------------------------------
 */

static void stage_line(const struct fault *f, int64_t at, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void stage_line(const struct fault *f, int64_t at, const char *name, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printf("   +%6lld ms  %-10s ", (long long)(at - f->at[ST_FIRST_SEEN]), name);
    print_safe(msg, 400);
    putchar('\n');
}

/* Prints the stages the store has that were not printed yet, in order. */
static void print_new(struct fault *f)
{
    for (int k = 0; k < ST_N; k++) {
        if (f->at[k] == 0 || (f->printed & (1u << k)))
            continue;
        int64_t at = f->at[k];
        switch (k) {
        case ST_DETECTED:
            printf("   incident %lld: %s (%s), first fault line: ", (long long)f->incident,
                   f->signature, f->kind);
            print_safe(f->line, 160);
            putchar('\n');
            stage_line(f, at, "detected", "%s, %lld ms after the first fault line", f->signature,
                       (long long)(at - f->at[ST_FIRST_SEEN]));
            break;
        case ST_PLANNED:
            stage_line(f, at, "planned", "strategy %s, playbook %s (score %.2f: %s)", f->strategy,
                       f->playbook[0] != '\0' ? f->playbook : "-", f->score, f->why);
            break;
        case ST_STEP:
            stage_line(f, at, "step", "%d: %s (remediation %lld; the policy gate let it run)",
                       f->step, f->action, (long long)f->rem);
            break;
        case ST_COMMITTED:
            stage_line(f, at, "committed", "%.12s on %s", f->commit, f->branch);
            break;
        case ST_DEPLOY_STARTED:
            if (f->already_built)
                stage_line(f, at, "deploy",
                           "the running release again, already built: no "
                           "build, no test");
            break;
        case ST_BUILT:
            stage_line(f, at, "built", "in %lld ms", (long long)f->build_ms);
            break;
        case ST_TESTED:
            stage_line(f, at, "tested", "in %lld ms", (long long)f->test_ms);
            break;
        case ST_CUT_OVER:
            stage_line(f, at, "cut over", "to slot %s, healthy %lld ms after it started", f->slot,
                       (long long)(at - f->at[ST_SLOT_STARTED]));
            break;
        case ST_VERIFIED:
            stage_line(f, at, "verified", "%s", f->verify_detail);
            break;
        case ST_RESOLVED:
            if (strcmp(f->rem_state, "succeeded") == 0)
                stage_line(f, at, "resolved",
                           "MTTR %lld ms (first fault line to verified and "
                           "resolved)",
                           (long long)(at - f->at[ST_FIRST_SEEN]));
            break;
        default:
            break;
        }
        f->printed |= 1u << k;
    }
    if (f->verify_done && !f->verify_ok && !f->verify_fail_printed) {
        printf("   step %d did not remove the fault: ", f->step);
        print_safe(f->verify_detail, 400);
        putchar('\n');
        f->verify_fail_printed = true;
    }
    if (f->rem != 0 && final_state(f->rem_state) && strcmp(f->rem_state, "succeeded") != 0 &&
        !f->failed_printed) {
        printf("   remediation %lld %s: ", (long long)f->rem, f->rem_state);
        print_safe(f->rem_reason, 400);
        putchar('\n');
        f->failed_printed = true;
    }
    fflush(stdout);
}

/* ---- overhead ---------------------------------------------------------------------------------
 */

/*
 * asr's overhead = MTTR - the build command's time - the test command's time, split into the
 * waits asr chose by config (the verify window; health checks until the new slot was healthy),
 * the service's own time (answering the replayed request), the steps before the one that worked,
 * and asr's own work: the rest. The parts telescope over the stage timestamps, so they add up to
 * the MTTR exactly.
 */
static struct overhead overhead_of(const struct demo *d, const struct fault *f)
{
    struct overhead o = {0};
    const int64_t *t = f->at;
    bool built = !f->already_built && f->build_status != -1;
    if (!resolved(f) || t[ST_DEPLOY_STARTED] == 0 || t[ST_SLOT_STARTED] == 0 ||
        t[ST_CUT_OVER] == 0 || t[ST_REPLAY] == 0 || t[ST_VERIFIED] == 0 || t[ST_STEP] == 0 ||
        (strcmp(f->action, "patch") == 0 && t[ST_COMMITTED] == 0))
        return o;
    o.ok = true;
    o.mttr = t[ST_RESOLVED] - t[ST_FIRST_SEEN];
    o.build = built ? f->build_ms : 0;
    o.test = built && f->test_status != -1 ? f->test_ms : 0;
    o.total = o.mttr - o.build - o.test;
    int64_t window = d->shop->deploy.verify_window_ms;
    int64_t verify = t[ST_VERIFIED] - t[ST_REPLAY];
    o.window = verify < window ? verify : window;
    o.replay = verify - o.window;
    o.health = t[ST_CUT_OVER] - t[ST_SLOT_STARTED];
    o.detect = t[ST_DETECTED] - t[ST_FIRST_SEEN];
    o.plan = t[ST_PLANNED] - t[ST_DETECTED];
    o.gate = t[ST_STARTED] - t[ST_PLANNED];
    if (f->step > 1)
        o.earlier = t[ST_STEP] - t[ST_STARTED];
    else
        o.start = t[ST_STEP] - t[ST_STARTED];
    if (strcmp(f->action, "patch") == 0) {
        o.has_commit = true;
        o.commit = t[ST_COMMITTED] - t[ST_STEP];
        o.resolve = t[ST_DEPLOY_STARTED] - t[ST_COMMITTED];
    } else {
        o.resolve = t[ST_DEPLOY_STARTED] - t[ST_STEP];
    }
    o.export_spawn = t[ST_SLOT_STARTED] - t[ST_DEPLOY_STARTED] - o.build - o.test;
    o.cutover = t[ST_REPLAY] - t[ST_CUT_OVER];
    o.finish = t[ST_RESOLVED] - t[ST_VERIFIED];
    o.own = o.detect + o.plan + o.gate + o.start + o.commit + o.resolve + o.export_spawn +
            o.cutover + o.finish;
    return o;
}

static void print_overhead(const struct overhead *o)
{
    if (!o->ok)
        return;
    printf("   overhead   %lld ms = MTTR %lld - build %lld - test %lld:\n", (long long)o->total,
           (long long)o->mttr, (long long)o->build, (long long)o->test);
    printf("     %6lld ms  waits asr chose by config: verify window %lld, health checks until "
           "the new slot was healthy %lld\n",
           (long long)(o->window + o->health), (long long)o->window, (long long)o->health);
    printf("     %6lld ms  the service answering the replayed request\n", (long long)o->replay);
    if (o->earlier != 0)
        printf("     %6lld ms  earlier steps that did not remove the fault\n",
               (long long)o->earlier);
    printf("     %6lld ms  asr's own work: detect %lld, plan %lld, gate %lld, start %lld, ",
           (long long)o->own, (long long)o->detect, (long long)o->plan, (long long)o->gate,
           (long long)o->start);
    if (o->has_commit)
        printf("commit %lld, ", (long long)o->commit);
    printf("resolve %lld, ", (long long)o->resolve);
    printf("export+publish+spawn %lld, cutover %lld, verdict+resolve %lld\n",
           (long long)o->export_spawn, (long long)o->cutover, (long long)o->finish);
    fflush(stdout);
}

/* ---- one fault --------------------------------------------------------------------------------
 */

/* Triggers the fault and follows it until it is resolved, ends otherwise, or times out.
 * Returns -1 when the demo cannot go on (interrupted, the daemon gone, a timeout). */
static int run_fault(struct demo *d, struct fault *f, size_t n)
{
    const char *host = d->shop->listen_host;
    int port = d->shop->listen_port;
    char path[128];
    snprintf(path, sizeof(path), "/test-fault/%s", f->route);
    heading(d, "%zu. POST %s", n, path);
    f->before_incident = query_int(d, "SELECT coalesce(max(id), 0) FROM incidents", 0, 0);
    f->before_event = query_int(d, "SELECT coalesce(max(id), 0) FROM events", 0, 0);
    f->build_status = f->test_status = -1;
    f->triggered_at = asr_time_wall_ms();
    f->http_status = http(d, host, port, "POST", path, NULL, 10000);
    printf("   the request got %d; asr takes it from here\n", f->http_status);
    fflush(stdout);
    for (;;) {
        refresh(d, f);
        print_new(f);
        if (f->rem != 0 && final_state(f->rem_state) &&
            (strcmp(f->rem_state, "succeeded") != 0 || f->at[ST_RESOLVED] != 0))
            break;
        if (strcmp(f->rem_state, "awaiting_approval") == 0) {
            printf("   remediation %lld awaits a person's approval: not what this demo shows\n",
                   (long long)f->rem);
            break;
        }
        if (interrupted) {
            cli_error("demo", "interrupted");
            return -1;
        }
        if (!daemon_alive(d)) {
            cli_error("demo", "asr run exited during the fault %s", path);
            log_tail(d, 40);
            return -1;
        }
        if (asr_time_wall_ms() - f->triggered_at > FAULT_TIMEOUT_MS) {
            f->timed_out = true;
            cli_error("demo", "POST %s: %s within %d s", path,
                      f->incident == 0 ? "no incident opened"
                      : f->rem == 0    ? "the incident got no remediation"
                                       : "the remediation did not end",
                      FAULT_TIMEOUT_MS / 1000);
            log_tail(d, 40);
            return -1;
        }
        sleep_ms(POLL_MS);
    }
    f->done = true;
    struct overhead o = overhead_of(d, f);
    print_overhead(&o);
    if (!f->crash) {
        f->after_status = http(d, host, port, "POST", path, "X-Asr-Verification: 1\r\n", 10000);
        printf("   the same request now: %d\n", f->after_status);
    }
    /* The next fault starts from a healthy shop. */
    int64_t t0 = asr_time_wall_ms();
    while (!healthy(d, d->shop) && !interrupted && asr_time_wall_ms() - t0 < 30000)
        sleep_ms(50);
    fflush(stdout);
    return 0;
}

/* ---- the report -------------------------------------------------------------------------------
 */

/* Sets key to v in o; a NULL v (out of memory, or text that is not UTF-8) becomes null. */
static void set(json_t *o, const char *key, json_t *v)
{
    json_object_set_new(o, key, v != NULL ? v : json_null());
}

static json_t *int_or_null(bool known, int64_t v)
{
    return known ? json_integer((json_int_t)v) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

static json_t *journal_json(struct demo *d, const struct fault *f)
{
    json_t *a = json_array();
    sqlite3_stmt *s = prepare(d, "SELECT at, step, action, phase, idem_key, ok, detail FROM "
                                 "journal WHERE remediation_id = ? ORDER BY id");
    if (s == NULL)
        return a;
    sqlite3_bind_int64(s, 1, f->rem);
    while (sqlite3_step(s) == SQLITE_ROW) {
        int64_t at = sqlite3_column_int64(s, 0);
        const char *phase = (const char *)sqlite3_column_text(s, 3);
        json_t *det = json_loads((const char *)sqlite3_column_text(s, 6), 0, NULL);
        json_t *row = json_object();
        set(row, "at", json_integer((json_int_t)at));
        set(row, "ms_from_first_seen", json_integer((json_int_t)(at - f->at[ST_FIRST_SEEN])));
        set(row, "step", json_integer(sqlite3_column_int(s, 1)));
        set(row, "action", str_or_null((const char *)sqlite3_column_text(s, 2)));
        set(row, "phase", str_or_null(phase));
        set(row, "key", str_or_null((const char *)sqlite3_column_text(s, 4)));
        set(row, "ok",
            strcmp(phase, "result") == 0 ? json_boolean(sqlite3_column_int(s, 5) == 1)
                                         : json_null());
        set(row, "detail", json_incref(json_object_get(det, "detail")));
        json_array_append_new(a, row);
        json_decref(det);
    }
    sqlite3_finalize(s);
    return a;
}

static json_t *overhead_json(const struct overhead *o)
{
    if (!o->ok)
        return json_null();
    json_t *waits = json_object(), *service = json_object(), *own = json_object();
    set(waits, "total_ms", json_integer(o->window + o->health));
    set(waits, "verify_window_ms", json_integer(o->window));
    set(waits, "health_until_healthy_ms", json_integer(o->health));
    set(service, "replay_answer_ms", json_integer(o->replay));
    set(own, "total_ms", json_integer(o->own));
    set(own, "detect_ms", json_integer(o->detect));
    set(own, "plan_ms", json_integer(o->plan));
    set(own, "gate_ms", json_integer(o->gate));
    set(own, "start_step_ms", json_integer(o->start));
    set(own, "commit_ms", int_or_null(o->has_commit, o->commit));
    set(own, "resolve_ms", json_integer(o->resolve));
    set(own, "export_publish_spawn_ms", json_integer(o->export_spawn));
    set(own, "cutover_ms", json_integer(o->cutover));
    set(own, "verdict_and_resolve_ms", json_integer(o->finish));
    json_t *j = json_object();
    set(j, "definition",
        json_string("total = MTTR - build_ms - test_ms = config_waits + service "
                    "+ earlier_steps + own"));
    set(j, "total_ms", json_integer(o->total));
    set(j, "config_waits", waits);
    set(j, "service", service);
    set(j, "earlier_steps_ms", json_integer(o->earlier));
    set(j, "own", own);
    set(j, "own_target_ms", json_integer(TARGET_OWN_MS));
    set(j, "own_met", json_boolean(o->own < TARGET_OWN_MS));
    return j;
}

static json_t *fault_json(struct demo *d, const struct fault *f)
{
    json_t *stages = json_object();
    for (int k = 0; k < ST_N; k++) {
        json_t *st = NULL;
        if (f->at[k] != 0) {
            st = json_object();
            set(st, "at", json_integer((json_int_t)f->at[k]));
            set(st, "ms_from_first_seen",
                json_integer((json_int_t)(f->at[k] - f->at[ST_FIRST_SEEN])));
        }
        set(stages, STAGE_NAMES[k], st);
    }
    /* The stages whose time is not a row's own timestamp, and what it is instead. */
    json_t *derived = json_object();
    if (f->at[ST_BUILT] != 0)
        set(derived, "built",
            json_string(f->built_seen != 0 ? "releases.updated_at, read right after the build"
                                           : "tested - test_ms"));
    if (f->at[ST_TESTED] != 0)
        set(derived, "tested",
            json_string(f->tested_seen != 0 ? "releases.updated_at, read right after the tests"
                                            : "slot_started (the release is published and a "
                                              "slot started right after the tests)"));
    bool ok = resolved(f);
    int64_t target = f->crash ? TARGET_CRASH_MS : TARGET_PATCH_MS;
    int64_t mttr = f->at[ST_RESOLVED] - f->at[ST_FIRST_SEEN];
    struct overhead o = overhead_of(d, f);
    json_t *j = json_object();
    set(j, "route", json_string(f->route));
    set(j, "class", json_string(f->crash ? "crash" : "patch"));
    set(j, "triggered_at", json_integer((json_int_t)f->triggered_at));
    set(j, "http_status", json_integer(f->http_status));
    set(j, "incident", int_or_null(f->incident != 0, f->incident));
    set(j, "signature", str_or_null(f->signature));
    set(j, "kind", str_or_null(f->kind));
    set(j, "incident_status", str_or_null(f->status));
    set(j, "plan", int_or_null(f->plan != 0, f->plan));
    set(j, "strategy", str_or_null(f->strategy));
    set(j, "playbook", str_or_null(f->playbook));
    set(j, "score", f->plan != 0 ? json_real(f->score) : json_null());
    set(j, "why", str_or_null(f->why));
    set(j, "remediation", int_or_null(f->rem != 0, f->rem));
    set(j, "outcome",
        json_string(f->rem != 0    ? f->rem_state
                    : f->timed_out ? "timed_out"
                                   : "none"));
    set(j, "reason", str_or_null(f->rem_reason));
    set(j, "resolved_without_help", json_boolean(ok));
    set(j, "step", int_or_null(f->step != 0, f->step));
    set(j, "action", str_or_null(f->action));
    set(j, "commit", str_or_null(f->commit));
    set(j, "branch", str_or_null(f->branch));
    set(j, "slot", str_or_null(f->slot));
    set(j, "verification", str_or_null(f->verify_detail));
    set(j, "stages", stages);
    set(j, "derived_stages", derived);
    set(j, "build_ms", int_or_null(!f->already_built && f->build_status != -1, f->build_ms));
    set(j, "test_ms", int_or_null(!f->already_built && f->test_status != -1, f->test_ms));
    set(j, "mttr_ms", int_or_null(ok, mttr));
    set(j, "mttr_target_ms", json_integer(target));
    set(j, "mttr_met", json_boolean(ok && mttr < target));
    set(j, "overhead", overhead_json(&o));
    set(j, "after_fix_status", int_or_null(!f->crash && f->after_status != 0, f->after_status));
    set(j, "journal", f->rem != 0 ? journal_json(d, f) : json_array());
    return j;
}

static int write_report(struct demo *d, int nresolved)
{
    double load[3] = {-1, -1, -1};
    if (getloadavg(load, 3) != 3)
        load[0] = load[1] = load[2] = -1;
    json_t *machine = json_object(), *cfg = json_object(), *faults = json_array();
    set(machine, "cpus", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    set(machine, "loadavg", json_pack("[f, f, f]", load[0], load[1], load[2]));
    set(cfg, "verify_window_ms", json_integer(d->shop->deploy.verify_window_ms));
    set(cfg, "health_interval_ms", json_integer(d->shop->health.interval_ms));
    set(cfg, "health_rise", json_integer(d->shop->health.rise));
    set(cfg, "healthy_timeout_ms", json_integer(d->shop->deploy.healthy_timeout_ms));
    for (size_t i = 0; i < d->nrun; i++)
        json_array_append_new(faults, fault_json(d, &d->faults[i]));
    json_t *r = json_object();
    set(r, "version", json_integer(1));
    set(r, "written_at", json_integer((json_int_t)asr_time_wall_ms()));
    set(r, "machine", machine);
    set(r, "config", cfg);
    set(r, "targets",
        json_pack("{s:i, s:i, s:i}", "patch_mttr_ms", TARGET_PATCH_MS, "crash_mttr_ms",
                  TARGET_CRASH_MS, "own_work_ms", TARGET_OWN_MS));
    set(r, "faults", faults);
    set(r, "resolved_without_help", json_integer(nresolved));
    set(r, "total", json_integer((json_int_t)NFAULTS));
    set(r, "audit_ok", json_boolean(d->audit_ok));
    set(r, "audit", str_or_null(d->audit_out));
    char *text = json_dumps(r, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(r);
    int rc = -1;
    if (text == NULL)
        cli_error("demo", "report: out of memory");
    else if (asr_write_file_atomic(d->report, text, strlen(text), 0644) != 0)
        cli_error("demo", "cannot write the report %s: %s", d->report, strerror(errno));
    else
        rc = 0;
    free(text);
    return rc;
}

/* ---- the end ----------------------------------------------------------------------------------
 */

static int summary(struct demo *d)
{
    heading(d, "The figures (targets on a 2-core machine; this one has %ld cores)",
            sysconf(_SC_NPROCESSORS_ONLN));
    printf("   %-14s %-27s %-29s %-10s %-24s %s\n", "fault", "signature", "playbook", "outcome",
           "MTTR (target)", "asr's own work (target)");
    int n = 0;
    for (size_t i = 0; i < d->nrun; i++) {
        const struct fault *f = &d->faults[i];
        bool ok = resolved(f);
        n += ok;
        int64_t target = f->crash ? TARGET_CRASH_MS : TARGET_PATCH_MS;
        int64_t mttr = f->at[ST_RESOLVED] - f->at[ST_FIRST_SEEN];
        char m[48] = "-", own[48] = "-";
        if (ok)
            snprintf(m, sizeof(m), "%lld ms (< %lld s) %s", (long long)mttr,
                     (long long)target / 1000, mttr < target ? "met" : "MISSED");
        struct overhead o = overhead_of(d, f);
        if (o.ok)
            snprintf(own, sizeof(own), "%lld ms (< %d ms) %s", (long long)o.own, TARGET_OWN_MS,
                     o.own < TARGET_OWN_MS ? "met" : "MISSED");
        printf("   %-14s %-27.27s %-29.29s %-10s %-24s %s\n", f->route,
               f->signature[0] != '\0' ? f->signature : "-",
               f->playbook[0] != '\0' ? f->playbook : "-",
               f->rem != 0 ? f->rem_state : (f->timed_out ? "timed out" : "-"), m, own);
    }
    printf("   %d of %zu faults resolved with no human step\n", n, NFAULTS);
    fflush(stdout);
    return n;
}

static void show_git(struct demo *d)
{
    heading(d, "The fixes in git (branches asr/incident-<id>; the operator's branch untouched)");
    char *out = NULL;
    if (git(d, "log", &out, "log", "--oneline", "--decorate=short", "--branches=asr/*", "^HEAD",
            (char *)NULL) == 0)
        print_indented(out);
    free(out);
    out = NULL;
    if (git(d, "log", &out, "log", "-1", "--oneline", "--no-decorate", "HEAD", (char *)NULL) == 0) {
        out[strcspn(out, "\n")] = '\0';
        printf("   operator's HEAD: ");
        print_safe(out, 300);
        putchar('\n');
    }
    free(out);
}

static void show_audit(struct demo *d)
{
    heading(d, "The audit chain");
    char *argv[] = {d->exe, "audit", "verify", "--state-dir", d->state, NULL};
    char *out = NULL;
    int st = run(argv, NULL, 120000, &out);
    d->audit_ok = st == 0;
    print_indented(out);
    if (st > 0)
        printf("   asr audit verify exited %d\n", st);
    d->audit_out = out;
}

static int parse_ports(const char *s, struct demo *d)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (*end != ',')
        return -1;
    long b = strtol(end + 1, &end, 10);
    if (*end != '\0' || a < 1 || a > 65535 || b < 1 || b > 65535 || a == b)
        return -1;
    d->shop_port = (int)a;
    d->upstream_port = (int)b;
    return 0;
}

static int parse_args(int argc, char **argv, struct demo *d, bool *help)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("%s", USAGE);
            *help = true;
            return 0;
        }
        if (strcmp(a, "--keep") == 0) {
            d->keep = true;
            continue;
        }
        bool valued =
            strcmp(a, "--report") == 0 || strcmp(a, "--source") == 0 || strcmp(a, "--ports") == 0;
        if (!valued) {
            cli_error("usage", a[0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'", a);
            fprintf(stderr, "%s", USAGE);
            return ASR_EXIT_USAGE;
        }
        if (i + 1 >= argc || argv[i + 1][0] == '\0') {
            cli_error("usage", "option '%s' needs a value", a);
            return ASR_EXIT_USAGE;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--report") == 0) {
            d->report = v;
        } else if (strcmp(a, "--source") == 0) {
            d->source = v;
        } else if (parse_ports(v, d) != 0) {
            cli_error("usage",
                      "--ports expects two different ports SHOP,UPSTREAM (1-65535), got "
                      "'%s'",
                      v);
            return ASR_EXIT_USAGE;
        }
    }
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    static struct demo d; /* large; one per process */
    memset(&d, 0, sizeof(d));
    bool help = false;
    int rc = parse_args(argc, argv, &d, &help);
    if (rc != 0 || help)
        return rc;
    ssize_t n = readlink("/proc/self/exe", d.exe, sizeof(d.exe) - 1);
    if (n <= 0) {
        cli_error("demo", "cannot find the asr binary through /proc/self/exe: %s", strerror(errno));
        return ASR_EXIT_FAIL;
    }
    d.exe[n] = '\0';
    d.tty = isatty(STDOUT_FILENO);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&d.loop) != 0) {
        cli_error("demo", "cannot create an event loop");
        return ASR_EXIT_FAIL;
    }
    d.loop_init = true;

    rc = ASR_EXIT_FAIL;
    heading(&d, "The closed loop: asr fixes the demo shop's faults on its own");
    if (setup(&d) != 0)
        goto out;
    printf("   a git repository of the demo in %s\n", d.repo);
    fflush(stdout);
    if (start(&d) != 0)
        goto out;
    for (size_t i = 0; i < NFAULTS; i++) {
        struct fault *f = &d.faults[i];
        f->route = FAULTS[i].route;
        f->crash = FAULTS[i].crash;
        d.nrun = i + 1;
        if (run_fault(&d, f, i + 1) != 0)
            break;
    }
    int resolved_n = summary(&d);
    show_git(&d);
    show_audit(&d);
    bool reported = true;
    if (d.report != NULL) {
        reported = write_report(&d, resolved_n) == 0;
        if (reported)
            printf("\n   report written to %s\n", d.report);
    }
    if (resolved_n == (int)NFAULTS && d.audit_ok && reported)
        rc = ASR_EXIT_OK;

out:
    if (d.daemon > 0) {
        int st = daemon_stop(&d);
        if (st != 0) {
            cli_error("demo", "asr run exited with status %d", st);
            log_tail(&d, 20);
            rc = ASR_EXIT_FAIL;
        }
    }
    if (d.db != NULL)
        sqlite3_close(d.db);
    if (d.loop_init) {
        uv_run(&d.loop, UV_RUN_DEFAULT);
        uv_loop_close(&d.loop);
    }
    if (d.work[0] != '\0') {
        if (d.keep)
            printf("   kept %s (repository, state, daemon log asr.log)\n", d.work);
        else
            asr_rmtree(d.work);
    }
    asr_config_free(d.cfg);
    free(d.audit_out);
    fflush(stdout);
    return rc;
}
