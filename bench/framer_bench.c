/*
 * framer_bench.c - how fast the line framer (src/core/framer.c) turns log bytes into lines.
 *
 * Usage: framer_bench FILE [RUNS]
 *
 * Measures, on the same file and in the same run (best of RUNS, default 3):
 *   - memchr:      counting newlines with memchr() over the file in memory (the floor: no
 *                  framer can be faster than finding the newlines);
 *   - framer:      asr_framer_feed() over the file in memory, in 64 KiB pieces as the tail
 *                  and the pipes deliver it, with a callback that only counts;
 *   - framer+read: the same, reading the file with pread() in 64 KiB chunks (as the tail does);
 *   - wc -l:       the coreutils line count of the file, started as a child process;
 *   - framer utf8: the framer over an in-memory copy in which every byte 'e' is replaced by
 *                  U+00E9 (two bytes), so most lines take the multibyte path.
 * Results are MB/s (10^6 bytes per second) of input, per second of CPU time (user + system,
 * the child's for wc -l), so that other work on a shared machine disturbs the figures less;
 * wall-clock MB/s are printed next to them. See bench/framer.md for figures.
 */
#include "asr/framer.h"
#include "asr/spawn.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PIECE (64 * 1024)

struct count {
    uint64_t lines, bytes, cut;
};

/* Wall and CPU seconds of one measurement. */
struct took {
    double wall, cpu;
};

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double children_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static struct took t_begin(void)
{
    struct took t = {clock_s(CLOCK_MONOTONIC), clock_s(CLOCK_PROCESS_CPUTIME_ID)};
    return t;
}

static struct took t_end(struct took t0)
{
    struct took t = {clock_s(CLOCK_MONOTONIC) - t0.wall,
                     clock_s(CLOCK_PROCESS_CPUTIME_ID) - t0.cpu};
    return t;
}

static void count_cb(void *data, const char *line, size_t len, bool cut, uint64_t end_offset)
{
    (void)line;
    (void)end_offset;
    struct count *c = data;
    c->lines++;
    c->bytes += len;
    c->cut += cut;
}

static struct took bench_memchr(const char *buf, size_t len, uint64_t *lines)
{
    struct took t0 = t_begin();
    uint64_t n = 0;
    const char *p = buf, *end = buf + len;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    *lines = n;
    return t_end(t0);
}

static struct took bench_framer(const char *buf, size_t len, struct count *c)
{
    struct asr_framer *f;
    memset(c, 0, sizeof(*c));
    if (asr_framer_create(0, count_cb, c, &f) != 0)
        exit(1);
    struct took t0 = t_begin();
    for (size_t i = 0; i < len; i += PIECE)
        asr_framer_feed(f, buf + i, len - i < PIECE ? len - i : PIECE);
    asr_framer_flush(f);
    struct took t = t_end(t0);
    asr_framer_destroy(f);
    return t;
}

static struct took bench_framer_read(const char *path, struct count *c)
{
    static char chunk[PIECE];
    struct asr_framer *f;
    memset(c, 0, sizeof(*c));
    if (asr_framer_create(0, count_cb, c, &f) != 0)
        exit(1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    struct took t0 = t_begin();
    off_t pos = 0;
    ssize_t n;
    while ((n = pread(fd, chunk, sizeof(chunk), pos)) > 0) {
        asr_framer_feed(f, chunk, (size_t)n);
        pos += n;
    }
    asr_framer_flush(f);
    struct took t = t_end(t0);
    close(fd);
    asr_framer_destroy(f);
    return t;
}

static struct took bench_wc(const char *path, uint64_t *lines)
{
    char *argv[] = {"wc", "-l", (char *)path, NULL};
    char *out = NULL;
    int status = -1;
    struct asr_err err = {0};
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = children_cpu_s();
    if (asr_proc_run_sync(argv, NULL, NULL, 600000, 4096, &status, &out, &err) != 0 ||
        status != 0) {
        fprintf(stderr, "wc -l: %s\n", err.msg);
        exit(1);
    }
    struct took t = {clock_s(CLOCK_MONOTONIC) - w0, children_cpu_s() - c0};
    *lines = strtoull(out, NULL, 10);
    free(out);
    return t;
}

static char *load(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(path);
        exit(1);
    }
    *len = (size_t)st.st_size;
    char *buf = malloc(*len ? *len : 1);
    size_t got = 0;
    ssize_t n;
    while (buf != NULL && got < *len && (n = read(fd, buf + got, *len - got)) > 0)
        got += (size_t)n;
    close(fd);
    if (buf == NULL || got != *len) {
        fprintf(stderr, "%s: cannot load\n", path);
        exit(1);
    }
    return buf;
}

/* The input with every 'e' turned into U+00E9: the same lines, mostly non-ASCII. */
static char *accented(const char *buf, size_t len, size_t *out_len)
{
    size_t n = len;
    for (size_t i = 0; i < len; i++)
        n += buf[i] == 'e';
    char *o = malloc(n);
    if (o == NULL)
        exit(1);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == 'e') {
            o[k++] = (char)0xC3;
            o[k++] = (char)0xA9;
        } else {
            o[k++] = buf[i];
        }
    }
    *out_len = n;
    return o;
}

static void best(struct took *b, struct took t)
{
    if (t.wall < b->wall)
        b->wall = t.wall;
    if (t.cpu < b->cpu)
        b->cpu = t.cpu;
}

static void row(const char *name, double mb, struct took t, uint64_t lines, const char *note)
{
    printf("%-12s %7.0f MB/s cpu %7.0f MB/s wall  %llu lines%s\n", name, mb / t.cpu, mb / t.wall,
           (unsigned long long)lines, note);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: framer_bench FILE [RUNS]\n");
        return 2;
    }
    const char *path = argv[1];
    int runs = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 3;
    if (runs < 1)
        runs = 1;
    size_t len;
    char *buf = load(path, &len);
    size_t ulen;
    char *ubuf = accented(buf, len, &ulen);
    const struct took none = {1e9, 1e9};
    struct took t_mem = none, t_fr = none, t_rd = none, t_wc = none, t_u = none;
    uint64_t l_mem = 0, l_wc = 0;
    struct count c_fr, c_rd, c_u;
    for (int r = 0; r < runs; r++) {
        best(&t_mem, bench_memchr(buf, len, &l_mem));
        best(&t_fr, bench_framer(buf, len, &c_fr));
        best(&t_rd, bench_framer_read(path, &c_rd));
        best(&t_wc, bench_wc(path, &l_wc));
        best(&t_u, bench_framer(ubuf, ulen, &c_u));
    }
    double mb = (double)len / 1e6;
    printf("input: %s, %.1f MB, %llu newlines, best of %d runs\n", path, mb,
           (unsigned long long)l_mem, runs);
    char cuts[3][64];
    snprintf(cuts[0], sizeof(cuts[0]), ", %llu cut", (unsigned long long)c_fr.cut);
    snprintf(cuts[1], sizeof(cuts[1]), ", %llu cut", (unsigned long long)c_rd.cut);
    snprintf(cuts[2], sizeof(cuts[2]), ", %llu cut, %.1f MB with e -> U+00E9",
             (unsigned long long)c_u.cut, (double)ulen / 1e6);
    row("memchr", mb, t_mem, l_mem, "");
    row("framer", mb, t_fr, c_fr.lines, cuts[0]);
    row("framer+read", mb, t_rd, c_rd.lines, cuts[1]);
    row("wc -l", mb, t_wc, l_wc, "");
    row("framer utf8", (double)ulen / 1e6, t_u, c_u.lines, cuts[2]);
    free(buf);
    free(ubuf);
    return 0;
}
