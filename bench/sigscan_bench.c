/*
 * sigscan_bench.c - signature scan speed (src/detect/signature.c), run by bench/sigscan.sh.
 *
 *   sigscan_bench gen DIR MB        writes DIR/sigs.tsv (100 signatures: 50 literals, 50 regexes
 *                                   with named captures, "ID<TAB>PCRE2 pattern"), DIR/grep.txt
 *                                   (the same patterns as POSIX ERE for grep -E -f) and DIR/log.txt
 *                                   (MB megabytes of log lines in Loghub-like shapes, about 0.1%
 *                                   of them carrying a signature hit)
 *   sigscan_bench scan [--generic] [--block|--framer] SIGS LOG
 *                                   scans LOG and prints bytes, lines, lines with a hit, hits,
 *                                   seconds (wall and CPU), GB/s and lines/s:
 *                                   default: 64 MiB chunks cut with memchr, asr_sigset_scan()
 *                                            per line;
 *                                   --framer: the chunks through the line framer (as the daemon
 *                                            gets lines), asr_sigset_scan() per line;
 *                                   --block: asr_sigset_scan_block() on each chunk's whole lines.
 *
 * Only the read-and-scan loop is timed (reading from the page cache is included, as it is for
 * grep). Both wall-clock and CPU time are printed: on a shared machine the CPU time of the one
 * thread is the fairer "one core" figure.
 * The generator is here rather than in a script so that 1 GB is written in seconds and the data
 * never needs committing: a fixed xorshift seed makes it the same file on every machine.
 */
#include "asr/config.h"
#include "asr/framer.h"
#include "detect/signature.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NSIG 100
#define CHUNK (64u << 20)

/* ---- generator ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static unsigned pick(unsigned n)
{
    return (unsigned)(next() % n);
}

static const char *const comps[50] = {
    "payment",  "refund",   "invoice",   "ledger",    "cart",     "checkout",  "catalog",
    "search",   "pricing",  "shipping",  "tracking",  "billing",  "account",   "session",
    "login",    "signup",   "profile",   "avatar",    "upload",   "download",  "thumbnail",
    "mailer",   "notifier", "sms",       "push",      "webhook",  "scheduler", "cron",
    "exporter", "importer", "indexer",   "crawler",   "resolver", "balancer",  "gateway",
    "auth",     "token",    "oauth",     "saml",      "ldap",     "quota",     "limiter",
    "cache",    "registry", "inventory", "warehouse", "fraud",    "risk",      "ranking",
    "audit"};

/* Regex signature i in PCRE2 syntax (with named groups) or in ERE for grep (plain groups,
 * [0-9] for \d, no \w inside brackets). Five shapes, each with a component name per index. */
static int regex_sig(char *out, size_t cap, unsigned i, bool ere)
{
    const char *c = comps[i];
    const char *d = ere ? "[0-9]" : "\\d";
    switch (i % 5) {
    case 0:
        return snprintf(out, cap, "%s (%s\\w+) failed after (%s%s+) ms", c, ere ? "" : "?<op>",
                        ere ? "" : "?<ms>", d);
    case 1:
        return snprintf(out, cap, "%s: upstream (%s[a-z0-9.-]+):(%s%s+) timed out", c,
                        ere ? "" : "?<host>", ere ? "" : "?<port>", d);
    case 2:
        return snprintf(out, cap, "%s connection to (%s%s+\\.%s+\\.%s+\\.%s+) refused", c,
                        ere ? "" : "?<ip>", d, d, d, d);
    case 3:
        return snprintf(out, cap, "user=(%s\\w+) %s denied for (%s/\\S+)", ere ? "" : "?<user>", c,
                        ere ? "" : "?<res>");
    default:
        return snprintf(out, cap, "%s queue (%s\\w+) depth (%s%s{5,}) exceeds", c,
                        ere ? "" : "?<q>", ere ? "" : "?<depth>", d);
    }
}

/* A line that matches regex signature i. */
static int regex_hit(char *out, size_t cap, unsigned i)
{
    const char *c = comps[i];
    switch (i % 5) {
    case 0:
        return snprintf(out, cap, "%s capture failed after %u ms", c, 100 + pick(5000));
    case 1:
        return snprintf(out, cap, "%s: upstream api-%u.internal:%u timed out", c, pick(9),
                        8000 + pick(100));
    case 2:
        return snprintf(out, cap, "%s connection to 10.%u.%u.%u refused", c, pick(256), pick(256),
                        pick(256));
    case 3:
        return snprintf(out, cap, "user=u%u %s denied for /api/v1/items/%u", pick(99999), c,
                        pick(99999));
    default:
        return snprintf(out, cap, "%s queue q%u depth %u exceeds limit", c, pick(9),
                        100000 + pick(900000));
    }
}

static const char *const levels[] = {"INFO", "INFO", "INFO", "INFO", "DEBUG", "INFO", "WARN"};
static const char *const methods[] = {"GET", "GET", "GET", "POST", "PUT", "DELETE"};
static const char *const paths[] = {"/api/v1/orders", "/api/v1/items",  "/health",
                                    "/api/v1/users",  "/static/app.js", "/api/v1/cart"};

/* One background line in one of eight Loghub-like shapes; msg, if set, replaces its text. */
static int shape_line(char *o, size_t cap, const char *msg)
{
    unsigned s = pick(8), h = pick(24), m = pick(60), sec = pick(60);
    const char *lv = levels[pick(7)];
    char text[256];
    if (msg == NULL) {
        switch (pick(6)) {
        case 0:
            snprintf(text, sizeof(text), "PacketResponder %u for block blk_%llu terminating",
                     pick(3), (unsigned long long)(next() >> 4));
            break;
        case 1:
            snprintf(text, sizeof(text), "Received block blk_-%llu of size %u from /10.251.%u.%u",
                     (unsigned long long)(next() >> 4), pick(67108864), pick(256), pick(256));
            break;
        case 2:
            snprintf(text, sizeof(text), "request done method=%s path=%s/%u status=200 dur_ms=%u",
                     methods[pick(6)], paths[pick(6)], pick(100000), pick(900));
            break;
        case 3:
            snprintf(text, sizeof(text),
                     "Accepted publickey for deploy from 173.234.%u.%u port %u "
                     "ssh2",
                     pick(256), pick(256), 1024 + pick(60000));
            break;
        case 4:
            snprintf(text, sizeof(text), "cache hit key=user:%u ratio=0.%u session=%016llx",
                     pick(1000000), pick(100), (unsigned long long)next());
            break;
        default:
            snprintf(text, sizeof(text), "jk2_init() Found child %u in scoreboard slot %u",
                     pick(30000), pick(10));
            break;
        }
        msg = text;
    }
    switch (s) {
    case 0: /* HDFS */
        return snprintf(o, cap, "0811%02u %02u%02u%02u %u %s dfs.DataNode$PacketResponder: %s\n",
                        1 + pick(28), h, m, sec, pick(3000), lv, msg);
    case 1: /* Apache error log */
        return snprintf(o, cap, "[Sun Dec 04 %02u:%02u:%02u 2005] [notice] %s\n", h, m, sec, msg);
    case 2: /* OpenSSH / syslog */
        return snprintf(o, cap, "Dec 10 %02u:%02u:%02u LabSZ sshd[%u]: %s\n", h, m, sec,
                        pick(30000), msg);
    case 3: /* Spark / log4j */
        return snprintf(o, cap,
                        "17/06/09 %02u:%02u:%02u %s executor.CoarseGrainedExecutorBackend: %s\n", h,
                        m, sec, lv, msg);
    case 4: /* logfmt */
        return snprintf(
            o, cap, "ts=2024-05-01T%02u:%02u:%02u.%03uZ level=%s req_id=%016llx msg=\"%s\"\n", h, m,
            sec, pick(1000), pick(7) ? "info" : "debug", (unsigned long long)next(), msg);
    case 5: /* JSON */
        return snprintf(o, cap,
                        "{\"ts\":\"2024-05-01T%02u:%02u:%02u.%03uZ\",\"level\":\"info\","
                        "\"ip\":\"10.0.%u.%u\",\"msg\":\"%s\"}\n",
                        h, m, sec, pick(1000), pick(256), pick(256), msg);
    case 6: /* nginx access log */
        return snprintf(o, cap,
                        "10.0.%u.%u - - [01/May/2024:%02u:%02u:%02u +0000] \"%s %s/%u HTTP/1.1\" "
                        "200 %u \"-\" \"Mozilla/5.0 (%s)\"\n",
                        pick(256), pick(256), h, m, sec, methods[pick(6)], paths[pick(6)],
                        pick(100000), pick(100000), msg);
    default: /* Java application log */
        return snprintf(o, cap,
                        "2024-05-01 %02u:%02u:%02u,%03u %s [pool-%u-thread-%u] c.e.%s - %s\n", h, m,
                        sec, pick(1000), lv, pick(8), pick(64), comps[pick(50)], msg);
    }
}

static int gen(const char *dir, long mb)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/sigs.tsv", dir);
    FILE *sigs = fopen(path, "w");
    snprintf(path, sizeof(path), "%s/grep.txt", dir);
    FILE *ere = fopen(path, "w");
    snprintf(path, sizeof(path), "%s/log.txt", dir);
    FILE *log = fopen(path, "w");
    if (!sigs || !ere || !log) {
        fprintf(stderr, "sigscan_bench: cannot write into %s\n", dir);
        return 1;
    }
    char buf[512];
    for (unsigned i = 0; i < NSIG / 2; i++) {
        fprintf(sigs, "FAULT_CODE_%04u\tFAULT_CODE_%04u\n", 17 * (i + 1), 17 * (i + 1));
        fprintf(ere, "FAULT_CODE_%04u\n", 17 * (i + 1));
    }
    for (unsigned i = 0; i < NSIG / 2; i++) {
        regex_sig(buf, sizeof(buf), i, false);
        fprintf(sigs, "RX_%s_%u\t%s\n", comps[i], i % 5, buf);
        regex_sig(buf, sizeof(buf), i, true);
        fprintf(ere, "%s\n", buf);
    }
    uint64_t want = (uint64_t)mb << 20, done = 0, lines = 0, hits = 0;
    char line[1024], msg[256];
    static char out[1 << 20];
    size_t olen = 0;
    while (done < want) {
        int n;
        unsigned r = pick(100000);
        if (r < 50) { /* 0.05%: a literal fault code in an error line */
            snprintf(msg, sizeof(msg), "request failed code=FAULT_CODE_%04u route=%s/%u",
                     17 * (1 + pick(NSIG / 2)), paths[pick(6)], pick(1000));
            n = shape_line(line, sizeof(line), msg);
            hits++;
        } else if (r < 100) { /* 0.05%: a regex signature */
            regex_hit(msg, sizeof(msg), pick(NSIG / 2));
            n = shape_line(line, sizeof(line), msg);
            hits++;
        } else if (r < 150) { /* 0.05%: an error only the generic detectors see */
            n = shape_line(line, sizeof(line),
                           pick(2) ? "ERROR connection reset by peer"
                                   : "java.lang.IllegalStateException: closed");
        } else {
            n = shape_line(line, sizeof(line), NULL);
        }
        if (n < 0 || (size_t)n >= sizeof(line))
            n = (int)strlen(line);
        if (olen + (size_t)n > sizeof(out)) {
            fwrite(out, 1, olen, log);
            olen = 0;
        }
        memcpy(out + olen, line, (size_t)n);
        olen += (size_t)n;
        done += (uint64_t)n;
        lines++;
    }
    fwrite(out, 1, olen, log);
    int bad = ferror(sigs) || ferror(ere) || ferror(log);
    bad |= fclose(sigs) | fclose(ere) | fclose(log);
    if (bad) {
        fprintf(stderr, "sigscan_bench: write error in %s\n", dir);
        return 1;
    }
    printf("generated %llu bytes, %llu lines, %llu signature lines (%.3f%%)\n",
           (unsigned long long)done, (unsigned long long)lines, (unsigned long long)hits,
           100.0 * (double)hits / (double)lines);
    return 0;
}

/* ---- scan ---- */

struct counts {
    uint64_t hits, hit_lines;
};

static bool count_cb(void *data, const struct asr_sig_hit *h)
{
    (void)h;
    struct counts *c = data;
    c->hits++;
    return true;
}

/* Block mode: hits come with their line; count a line once (hits of a line are adjacent). */
struct block_counts {
    struct counts c;
    const char *last;
};

static bool block_cb(void *data, const char *line, size_t len, const struct asr_sig_hit *h)
{
    (void)len;
    (void)h;
    struct block_counts *b = data;
    b->c.hits++;
    if (line != b->last)
        b->c.hit_lines++;
    b->last = line;
    return true;
}

/* Framer mode: every line as the daemon gets it, through the framer, then asr_sigset_scan. */
struct framer_ctx {
    struct asr_sigset *set;
    struct counts c;
    uint64_t lines;
    int rc;
};

static void framer_line_cb(void *data, const char *line, size_t len, bool cut, uint64_t end)
{
    (void)cut;
    (void)end;
    struct framer_ctx *f = data;
    uint64_t before = f->c.hits;
    int rc = asr_sigset_scan(f->set, line, len, count_cb, &f->c);
    if (rc < 0)
        f->rc = rc;
    f->c.hit_lines += f->c.hits != before;
    f->lines++;
}

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double now(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* CPU time of the process (user + system; the bench has one thread). */
static double cpu(void)
{
    return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

/* Reads "ID<TAB>pattern" lines into sigs (strings owned by the caller, freed at exit). */
static size_t load_sigs(const char *path, struct asr_signature_cfg *sigs, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    static const char *const none[] = {NULL};
    char line[4096];
    size_t n = 0;
    while (n < cap && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = '\0';
        sigs[n] = (struct asr_signature_cfg){.id = strdup(line),
                                             .pattern = strdup(tab + 1),
                                             .severity = (char *)"error",
                                             .dedupe = (asr_argv)none,
                                             .line = (int)n + 1};
        n++;
    }
    fclose(f);
    return n;
}

/* Newlines in p[0..n), eight bytes at a time (the block mode never splits lines itself, and a
 * memchr call per line would cost more than the scan saves). */
static uint64_t count_newlines(const char *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, low7 = 0x7f7f7f7f7f7f7f7full;
    uint64_t count = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        uint64_t x = w ^ (ones * '\n');              /* a zero byte where w had '\n' */
        uint64_t t = ((x & low7) + low7) | x;        /* high bit set in every non-zero byte */
        count += (((~t & ~low7) >> 7) * ones) >> 56; /* sum of the 0/1 bytes */
    }
    for (; i < n; i++)
        count += p[i] == '\n';
    return count;
}

static int scan(int argc, char **argv)
{
    bool generic = false;
    const char *mode = "lines";
    int a = 0;
    for (; a < argc && argv[a][0] == '-'; a++) {
        if (strcmp(argv[a], "--generic") == 0)
            generic = true;
        else if (strcmp(argv[a], "--block") == 0)
            mode = "block";
        else if (strcmp(argv[a], "--framer") == 0)
            mode = "framer";
        else
            break;
    }
    if (argc - a != 2) {
        fprintf(stderr, "usage: sigscan_bench scan [--generic] [--block|--framer] SIGS LOG\n");
        return 2;
    }
    static struct asr_signature_cfg sigs[1024];
    size_t n = load_sigs(argv[a], sigs, 1024);
    struct asr_sigset *set = NULL;
    struct asr_err err = {0};
    double t0 = now();
    int rc = asr_sigset_create(sigs, n, generic ? ASR_SIGSET_GENERIC : 0, &set, &err);
    if (rc) {
        fprintf(stderr, "sigscan_bench: %s\n", asr_err_msg(&err, rc));
        return 1;
    }
    double tc = now() - t0;
    int fd = open(argv[a + 1], O_RDONLY);
    char *buf = malloc(CHUNK);
    if (fd < 0 || !buf) {
        fprintf(stderr, "sigscan_bench: %s: %s\n", argv[a + 1], strerror(errno));
        return 1;
    }
    struct counts c = {0};
    uint64_t bytes = 0, lines = 0;
    size_t have = 0;
    struct block_counts bc = {{0}, NULL};
    struct framer_ctx fc = {set, {0}, 0, 0};
    struct asr_framer *fr = NULL;
    if (strcmp(mode, "framer") == 0 && asr_framer_create(0, framer_line_cb, &fc, &fr) != 0) {
        fprintf(stderr, "sigscan_bench: no framer\n");
        return 1;
    }
    if (strcmp(mode, "block") == 0) {
        /* The block database is built on the first call; keep that out of the timing, as
         * asr_sigset_create() is. */
        t0 = now();
        asr_sigset_scan_block(set, "x\n", 2, block_cb, &bc);
        tc += now() - t0;
        bc = (struct block_counts){{0}, NULL};
    }
    t0 = now();
    double c0 = cpu();
    for (;;) {
        ssize_t r = read(fd, buf + have, CHUNK - have);
        if (r < 0) {
            fprintf(stderr, "sigscan_bench: read: %s\n", strerror(errno));
            return 1;
        }
        bytes += (uint64_t)r;
        if (fr) {
            asr_framer_feed(fr, buf, (size_t)r);
            if (r == 0)
                asr_framer_flush(fr);
            if (fc.rc < 0) {
                fprintf(stderr, "sigscan_bench: scan: %s\n", asr_strerror(fc.rc));
                return 1;
            }
            if (r == 0)
                break;
            continue;
        }
        have += (size_t)r;
        char *p = buf, *end = buf + have;
        if (strcmp(mode, "block") == 0) {
            /* Whole lines only: up to the last newline, or everything at EOF. */
            char *last = r == 0 ? end : memrchr(buf, '\n', have);
            size_t whole = last == end ? have : last ? (size_t)(last - buf) + 1 : 0;
            if (whole == 0 && have == CHUNK)
                whole = have; /* a 64 MiB line: scan it as it is */
            if ((rc = asr_sigset_scan_block(set, buf, whole, block_cb, &bc)) < 0) {
                fprintf(stderr, "sigscan_bench: scan: %s\n", asr_strerror(rc));
                return 1;
            }
            lines += count_newlines(buf, whole);
            if (r == 0 && whole > 0 && buf[whole - 1] != '\n')
                lines++;
            p = buf + whole;
        } else {
            for (;;) {
                char *nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl) {
                    if (r == 0 && p < end)
                        nl = end; /* last line without a newline */
                    else
                        break;
                }
                uint64_t before = c.hits;
                if ((rc = asr_sigset_scan(set, p, (size_t)(nl - p), count_cb, &c)) < 0) {
                    fprintf(stderr, "sigscan_bench: scan: %s\n", asr_strerror(rc));
                    return 1;
                }
                c.hit_lines += c.hits != before;
                lines++;
                p = nl + 1;
                if (nl == end)
                    break;
            }
            if (have == CHUNK && p == buf)
                p = end; /* a 64 MiB line: drop it, as the framer cuts it */
        }
        have = p < end ? (size_t)(end - p) : 0;
        if (r == 0)
            break;
        memmove(buf, p, have);
    }
    double t = now() - t0, tcpu = cpu() - c0;
    if (fr) {
        c = fc.c;
        lines = fc.lines;
    } else if (strcmp(mode, "block") == 0) {
        c = bc.c;
    }
    asr_framer_destroy(fr);
    printf("asr %-6s %-11s sigs=%zu+%zu compile_ms=%.0f bytes=%llu lines=%llu hit_lines=%llu "
           "hits=%llu wall_s=%.3f cpu_s=%.3f GB/s(cpu)=%.3f GB/s(wall)=%.3f Mlines/s(cpu)=%.2f\n",
           mode, generic ? "generic-on" : "generic-off", asr_sigset_count(set),
           asr_sigset_generic_count(set), tc * 1e3, (unsigned long long)bytes,
           (unsigned long long)lines, (unsigned long long)c.hit_lines, (unsigned long long)c.hits,
           t, tcpu, (double)bytes / tcpu / 1e9, (double)bytes / t / 1e9,
           (double)lines / tcpu / 1e6);
    close(fd);
    free(buf);
    asr_sigset_destroy(set);
    for (size_t i = 0; i < n; i++) {
        free(sigs[i].id);
        free(sigs[i].pattern);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "gen") == 0) {
        char *e;
        long mb = strtol(argv[3], &e, 10);
        if (*e || mb <= 0) {
            fprintf(stderr, "sigscan_bench: MB must be a positive number\n");
            return 2;
        }
        return gen(argv[2], mb);
    }
    if (argc >= 2 && strcmp(argv[1], "scan") == 0)
        return scan(argc - 2, argv + 2);
    fprintf(stderr, "usage: sigscan_bench gen DIR MB | sigscan_bench scan [--generic] SIGS LOG\n");
    return 2;
}
