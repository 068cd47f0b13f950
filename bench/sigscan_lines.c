/*
 * sigscan_lines.c - which lines the generic detectors flag, one output line per input line; run
 * by bench/detect_labels.sh to score the detectors against labelled logs.
 *
 *   sigscan_lines [FILE|-]
 *
 * asr itself only reports incidents (several flagged lines become one incident), so the
 * line-level score needs this small program. It reads FILE (or stdin) through the framer, as
 * `asr detect` does, builds a sigset with ASR_SIGSET_GENERIC and no configured signatures, and
 * mines every line with a template miner with the default options, in input order, exactly as
 * the detector does (src/detect/detector.c). For each line it prints
 *
 *   LINENO<TAB>KIND<TAB>TEMPLATE_ID
 *
 * LINENO counts from 1; KIND is the first generic detector that matched in table order
 * ("generic:fatal", "generic:oom", "generic:error": the one the detector reports) or "-";
 * TEMPLATE_ID is the cluster id the detector's miner gives the line, which is what a generic
 * incident's fingerprint ("SERVICE:template:ID") names, so the lines an incident counted can be
 * found. Exit status 0, or 1 with a message on stderr.
 */
#include "asr/framer.h"
#include "detect/signature.h"
#include "detect/template.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct run {
    struct asr_sigset *set;
    struct asr_miner *miner;
    unsigned long long lineno;
    int failed; /* a negative ASR_E* code once something went wrong */
};

/* Keeps the first generic hit, as the detector's hit_cb does. */
static bool hit_cb(void *data, const struct asr_sig_hit *hit)
{
    const char **kind = data;
    if (hit->generic && *kind == NULL)
        *kind = hit->id;
    return true;
}

static void line_cb(void *data, const char *line, size_t len, bool cut, uint64_t end_offset)
{
    (void)cut;
    (void)end_offset;
    struct run *r = data;
    if (r->failed)
        return;
    r->lineno++;
    const char *kind = NULL;
    int rc = asr_sigset_scan(r->set, line, len, hit_cb, &kind);
    struct asr_match m = {0};
    if (rc >= 0)
        rc = asr_miner_add(r->miner, line, len, &m);
    if (rc < 0) {
        fprintf(stderr, "sigscan_lines: line %llu: %s\n", r->lineno, asr_strerror(rc));
        r->failed = rc;
        return;
    }
    printf("%llu\t%s\t%llu\n", r->lineno, kind != NULL ? kind : "-",
           (unsigned long long)m.cluster_id);
}

int main(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "--help") == 0)) {
        fprintf(stderr, "usage: sigscan_lines [FILE|-]\n");
        return argc == 2 ? 0 : 2;
    }
    const char *path = argc == 2 ? argv[1] : "-";
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "sigscan_lines: %s: cannot open: %s\n", path, strerror(errno));
        return 1;
    }
    struct run r = {0};
    struct asr_framer *fr = NULL;
    struct asr_err err = {0};
    int status = 1;
    int rc = asr_sigset_create(NULL, 0, ASR_SIGSET_GENERIC, &r.set, &err);
    if (rc != 0) {
        fprintf(stderr, "sigscan_lines: %s\n", err.msg[0] ? err.msg : asr_strerror(rc));
        goto out;
    }
    if (asr_miner_create(NULL, &r.miner) != 0 || asr_framer_create(0, line_cb, &r, &fr) != 0) {
        fprintf(stderr, "sigscan_lines: out of memory\n");
        goto out;
    }
    char chunk[1 << 16];
    for (;;) {
        ssize_t k = read(fd, chunk, sizeof(chunk));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            fprintf(stderr, "sigscan_lines: %s: cannot read: %s\n", path, strerror(errno));
            goto out;
        }
        if (k == 0 || r.failed)
            break;
        asr_framer_feed(fr, chunk, (size_t)k);
    }
    asr_framer_flush(fr);
    if (r.failed == 0 && fflush(stdout) == 0)
        status = 0;
out:
    if (fd != STDIN_FILENO)
        close(fd);
    asr_framer_destroy(fr);
    asr_miner_destroy(r.miner);
    asr_sigset_destroy(r.set);
    return status;
}
