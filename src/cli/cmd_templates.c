/*
 * cmd_templates.c - `asr templates --format FORMAT [--mask REGEX]... LOGFILE`.
 *
 * Offline template mining of a whole log file (issue 3, bench/templates.sh): every line is split
 * by the Loghub header FORMAT, its <Content> masked by each --mask regex in order and mined
 * (src/detect/template.c). Output is CSV `LineId,ClusterId,EventTemplate` with each cluster's
 * FINAL template, so the file is mined completely before anything is printed. Clusters that end
 * with the same template are reported under one id (the smallest), as the Loghub benchmark
 * groups by template string. --time prints the mining throughput to stderr.
 */
#include "cli/cli.h"
#include "detect/logformat.h"
#include "detect/template.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_MASKS 32
#define LINE_CAP (64 * 1024)
#define CONTENT_CAP ((size_t)4 << 30) /* all masked content of the file, held in memory */

static const char USAGE[] =
    "usage: asr templates --format FORMAT [--mask REGEX]... [--time] LOGFILE\n"
    "\n"
    "Mines log templates and writes CSV LineId,ClusterId,EventTemplate to stdout. FORMAT is\n"
    "the Loghub header syntax, e.g. '<Date> <Time> <Level> <Component>: <Content>'; each --mask\n"
    "regex (PCRE2) is replaced by <*> in the content before mining, in order.\n";

struct tmpl_by_id {
    uint64_t id;
    const char *t;
};

static int cmp_tmpl(const void *a, const void *b)
{
    const struct tmpl_by_id *x = a, *y = b;
    int c = strcmp(x->t, y->t);
    if (c)
        return c;
    return x->id < y->id ? -1 : x->id > y->id;
}

int cmd_templates(int argc, char **argv)
{
    const char *format = NULL, *path = NULL;
    const char *masks[MAX_MASKS];
    size_t nmasks = 0;
    bool timing = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("%s", USAGE);
            return ASR_EXIT_OK;
        } else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
            format = argv[++i];
        } else if (strcmp(argv[i], "--mask") == 0 && i + 1 < argc) {
            if (nmasks == MAX_MASKS) {
                cli_error("usage", "at most %d --mask options", MAX_MASKS);
                return ASR_EXIT_USAGE;
            }
            masks[nmasks++] = argv[++i];
        } else if (strcmp(argv[i], "--time") == 0) {
            timing = true;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_error("usage", "templates: unknown or incomplete option '%s'", argv[i]);
            fprintf(stderr, "%s", USAGE);
            return ASR_EXIT_USAGE;
        } else if (!path) {
            path = argv[i];
        } else {
            cli_error("usage", "templates: unexpected argument '%s'", argv[i]);
            return ASR_EXIT_USAGE;
        }
    }
    if (!format || !path) {
        cli_error("usage", "templates: needs --format FORMAT and LOGFILE");
        fprintf(stderr, "%s", USAGE);
        return ASR_EXIT_USAGE;
    }

    int ret = ASR_EXIT_FAIL;
    struct asr_err err = {0};
    struct asr_logformat *fmt = NULL;
    struct asr_masks *mk = NULL;
    struct asr_miner *miner = NULL;
    FILE *in = NULL;
    char *line = NULL;
    size_t linecap = 0;
    struct asr_buf content, masked, out;
    asr_buf_init(&content, CONTENT_CAP);
    asr_buf_init(&masked, LINE_CAP * 4);
    asr_buf_init(&out, (size_t)1 << 30);
    size_t *offs = NULL, nlines = 0, offcap = 0;
    uint64_t *ids = NULL;
    char **tmpl = NULL; /* latest template per cluster id (index = id) */
    size_t ntmpl = 0;
    uint64_t *canon = NULL;
    struct tmpl_by_id *sorted = NULL;
    int rc;

    if ((rc = asr_logformat_create(format, &fmt, &err)) != 0) {
        cli_error("templates", "%s", asr_err_msg(&err, rc));
        goto out;
    }
    if ((rc = asr_masks_create(masks, nmasks, &mk, &err)) != 0) {
        cli_error("templates", "%s", asr_err_msg(&err, rc));
        goto out;
    }
    in = fopen(path, "rb");
    if (!in) {
        cli_error("templates", "cannot open %s: %s", path, strerror(errno));
        goto out;
    }

    /* Phase 1: split and mask every line; contents go into one buffer, NUL-separated. */
    ssize_t n;
    while ((n = getline(&line, &linecap, in)) >= 0) {
        const char *c;
        size_t clen;
        if ((size_t)n > LINE_CAP)
            n = LINE_CAP; /* a cut line is mined by its first 64 KiB */
        if (asr_logformat_content(fmt, line, (size_t)n, &c, &clen) != 0) {
            cli_error("templates", "%s:%zu: line does not match the format", path, nlines + 1);
            goto out;
        }
        if ((rc = asr_masks_apply(mk, c, clen, &masked)) != 0) {
            cli_error("templates", "%s:%zu: masking failed: %s", path, nlines + 1,
                      asr_strerror(rc));
            goto out;
        }
        if (nlines == offcap) {
            offcap = offcap ? offcap * 2 : 4096;
            size_t *p = realloc(offs, offcap * sizeof(*offs));
            if (!p) {
                cli_error("templates", "out of memory");
                goto out;
            }
            offs = p;
        }
        offs[nlines++] = content.len;
        if (asr_buf_append(&content, masked.data ? masked.data : "", masked.len) != 0 ||
            asr_buf_append(&content, "", 1) != 0) {
            cli_error("templates", "%s: file too large (content cap %zu bytes)", path,
                      (size_t)CONTENT_CAP);
            goto out;
        }
    }
    if (ferror(in)) {
        cli_error("templates", "reading %s: %s", path, strerror(errno));
        goto out;
    }

    /* Phase 2: mine. */
    struct asr_miner_opts mo;
    asr_miner_opts_default(&mo);
    mo.max_clusters = nlines > mo.max_clusters ? nlines : mo.max_clusters;
    if (asr_miner_create(&mo, &miner) != 0 ||
        !(ids = malloc((nlines ? nlines : 1) * sizeof(*ids)))) {
        cli_error("templates", "out of memory");
        goto out;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < nlines; i++) {
        struct asr_match mt;
        const char *c = content.data + offs[i];
        size_t clen = (i + 1 < nlines ? offs[i + 1] : content.len) - offs[i] - 1;
        if (asr_miner_add(miner, c, clen, &mt) != 0) {
            cli_error("templates", "out of memory");
            goto out;
        }
        ids[i] = mt.cluster_id;
        if (mt.changed) {
            if (mt.cluster_id >= ntmpl) {
                size_t nn = ntmpl ? ntmpl * 2 : 1024;
                while (nn <= mt.cluster_id)
                    nn *= 2;
                char **p = realloc(tmpl, nn * sizeof(*tmpl));
                if (!p) {
                    cli_error("templates", "out of memory");
                    goto out;
                }
                memset(p + ntmpl, 0, (nn - ntmpl) * sizeof(*p));
                tmpl = p;
                ntmpl = nn;
            }
            free(tmpl[mt.cluster_id]);
            if (!(tmpl[mt.cluster_id] = strdup(mt.tmpl))) {
                cli_error("templates", "out of memory");
                goto out;
            }
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (timing) {
        double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        fprintf(stderr, "asr: templates: mined %zu lines in %.3f s: %.0f lines/s, %zu clusters\n",
                nlines, s, s > 0 ? (double)nlines / s : 0.0, asr_miner_count(miner));
    }

    /* Clusters with the same final template share the smallest id among them. */
    size_t nc = 0;
    canon = calloc(ntmpl ? ntmpl : 1, sizeof(*canon));
    sorted = malloc((ntmpl ? ntmpl : 1) * sizeof(*sorted));
    if (!canon || !sorted) {
        cli_error("templates", "out of memory");
        goto out;
    }
    for (size_t id = 0; id < ntmpl; id++)
        if (tmpl[id])
            sorted[nc++] = (struct tmpl_by_id){id, tmpl[id]};
    qsort(sorted, nc, sizeof(*sorted), cmp_tmpl);
    for (size_t i = 0; i < nc; i++)
        canon[sorted[i].id] = (i > 0 && strcmp(sorted[i].t, sorted[i - 1].t) == 0)
                                  ? canon[sorted[i - 1].id]
                                  : sorted[i].id;

    /* Phase 3: print. */
    fputs("LineId,ClusterId,EventTemplate\n", stdout);
    for (size_t i = 0; i < nlines; i++) {
        asr_buf_reset(&out);
        asr_buf_printf(&out, "%zu,%llu,", i + 1, (unsigned long long)canon[ids[i]]);
        asr_csv_field(&out, tmpl[ids[i]], strlen(tmpl[ids[i]]));
        asr_buf_append(&out, "\n", 1);
        fwrite(out.data, 1, out.len, stdout);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error("templates", "writing output: %s", strerror(errno));
        goto out;
    }
    ret = ASR_EXIT_OK;
out:
    if (in)
        fclose(in);
    free(line);
    for (size_t i = 0; i < ntmpl; i++)
        free(tmpl[i]);
    free(tmpl);
    free(canon);
    free(sorted);
    free(ids);
    free(offs);
    asr_buf_free(&content);
    asr_buf_free(&masked);
    asr_buf_free(&out);
    asr_miner_destroy(miner);
    asr_masks_destroy(mk);
    asr_logformat_destroy(fmt);
    return ret;
}
