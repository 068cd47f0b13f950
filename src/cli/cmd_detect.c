/*
 * cmd_detect.c - `asr detect -c FILE [LOGFILE|-] [--cloudwatch] [--service NAME]`.
 *
 * Offline detection: the same detector the daemon runs (src/detect/detector.c), fed from a file,
 * stdin, or CloudWatch Logs subscription payloads, writing to a private in-memory store. At the
 * end of the input every incident is printed as one JSON line, oldest first, in the format of
 * `asr incidents --json`. Nothing is written to the daemon's store. Grouping needs the time a
 * fault happened, so it applies to CloudWatch events (their timestamps) and not to file input.
 *
 * CloudWatch input is one delivery per line (the {"awslogs":{"data":...}} envelope, or the inner
 * JSON), or a whole file of gzip bytes. A delivery that cannot be decoded is reported on stderr
 * with its number and the decoder's reason, and the others are still processed; the exit status
 * is then 1.
 */
#include "asr/framer.h"
#include "asr/incident.h"
#include "asr/store.h"
#include "asr/timeutil.h"
#include "cli/cli.h"
#include "detect/cloudwatch.h"
#include "detect/detector.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CW_INPUT_MAX (256u << 20) /* bytes of CloudWatch input read in all */

static const char USAGE[] =
    "usage: asr detect -c FILE [LOGFILE|-] [--cloudwatch] [--service NAME]\n"
    "Runs detection over LOGFILE (or stdin) with the signatures and settings of FILE and prints\n"
    "the incidents as JSON lines at the end of the input. --cloudwatch reads CloudWatch Logs\n"
    "subscription payloads, one per line (or one gzip file). --service picks the service whose\n"
    "signatures apply (needed when FILE has several; for CloudWatch the service named like the\n"
    "last part of the log group is used otherwise). Incidents are grouped only for CloudWatch\n"
    "input, whose events carry their own time.\n";

struct run {
    struct asr_detector *det;
    const char *service;
    const char *source;
    int64_t at_ms; /* event time of the lines being fed (0: now) */
    int errors;
    bool stop; /* a store error: no point going on */
};

static void line_cb(void *data, const char *line, size_t len, bool cut, uint64_t end_offset)
{
    (void)cut;
    (void)end_offset;
    struct run *r = data;
    if (r->stop)
        return;
    int64_t us = asr_time_wall_us();
    struct asr_line ln = {.service = r->service,
                          .source = r->source,
                          .text = line,
                          .len = len,
                          .at_ms = r->at_ms != 0 ? r->at_ms : us / 1000,
                          .received_us = us};
    struct asr_err err = {0};
    if (asr_detector_line(r->det, &ln, &err) != 0) {
        cli_error("detect", "%s", err.msg);
        r->errors++;
        r->stop = true;
    }
}

/* Reads all of fd up to cap bytes into a new buffer; *len gets its size. */
static char *read_all(int fd, size_t cap, size_t *len, const char *name)
{
    size_t alloc = 1 << 16, n = 0;
    char *buf = malloc(alloc);
    for (;;) {
        if (buf == NULL) {
            cli_error("detect", "out of memory");
            return NULL;
        }
        if (n == alloc) {
            if (alloc >= cap) {
                cli_error("detect", "%s: more than %zu MiB of CloudWatch input", name, cap >> 20);
                free(buf);
                return NULL;
            }
            char *p = realloc(buf, alloc * 2);
            if (p == NULL)
                free(buf);
            buf = p;
            alloc *= 2;
            continue;
        }
        ssize_t k = read(fd, buf + n, alloc - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            cli_error("detect", "%s: cannot read: %s", name, strerror(errno));
            free(buf);
            return NULL;
        }
        if (k == 0)
            break;
        n += (size_t)k;
    }
    *len = n;
    return buf;
}

/* One delivery, decoded; its lines go to --service, or to the service its log group names. */
static void feed_delivery(struct run *r, const struct asr_config *cfg, const char *forced,
                          const char *data, size_t len, size_t number, struct asr_framer **fr)
{
    struct asr_cw_batch b = {0};
    struct asr_err err = {0};
    if (asr_cw_decode_envelope(data, len, NULL, &b, &err) != 0) {
        cli_error("detect", "payload %zu: %s", number, err.msg);
        r->errors++;
        return;
    }
    if (b.control) {
        asr_cw_batch_free(&b);
        return; /* AWS checking that the destination is reachable: nothing to detect */
    }
    const char *svc = forced != NULL ? forced : asr_cw_group_service(cfg, b.log_group);
    if (svc == NULL) {
        cli_error("detect",
                  "payload %zu: log group '%s' names no service of %s (use --service NAME)", number,
                  b.log_group, cfg->path);
        r->errors++;
        asr_cw_batch_free(&b);
        return;
    }
    char source[512];
    snprintf(source, sizeof(source), "cloudwatch:%s/%s", b.log_group, b.log_stream);
    r->service = svc;
    r->source = source;
    for (size_t i = 0; i < b.nevents && !r->stop; i++) {
        /* Each event is a line; a multi-line message becomes several, as in a file. */
        r->at_ms = b.events[i].timestamp_ms;
        asr_framer_reset(*fr, 0);
        asr_framer_feed(*fr, b.events[i].message, b.events[i].message_len);
        asr_framer_flush(*fr);
    }
    r->source = NULL;
    r->at_ms = 0;
    asr_cw_batch_free(&b);
}

static int print_incidents(struct asr_store *st)
{
    struct asr_incident *v = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    if (asr_store_incident_list(st, NULL, NULL, 0, &v, &n, &err) != 0) {
        cli_error("detect", "%s", err.msg);
        return ASR_EXIT_FAIL;
    }
    for (size_t i = n; i-- > 0;) {
        json_t *o = asr_incident_json(&v[i], NULL, 0);
        if (o != NULL)
            cli_print_json_line(o);
        json_decref(o);
    }
    asr_incident_list_free(v, n);
    return 0;
}

int cmd_detect(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "cvwl", 1, USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    if (o.config_path == NULL) {
        cli_error("usage", "asr detect needs -c FILE");
        fprintf(stderr, "%s", USAGE);
        return ASR_EXIT_USAGE;
    }
    const char *input = o.nargs > 0 ? o.args[0] : "-";
    struct asr_config *cfg = NULL;
    struct asr_err err = {0};
    if (asr_config_load_checked(o.config_path, false, &cfg, &err) != 0) {
        cli_error("config", "%s", err.msg);
        return ASR_EXIT_FAIL;
    }
    const char *service = o.service;
    if (service != NULL && asr_config_service(cfg, service) == NULL) {
        cli_error("detect", "no service '%s' in %s", service, cfg->path);
        asr_config_free(cfg);
        return ASR_EXIT_USAGE;
    }
    if (service == NULL && cfg->nservices == 1)
        service = cfg->services[0].name;
    if (service == NULL && !o.cloudwatch) {
        cli_error("detect", "%s has %zu services; choose one with --service NAME", cfg->path,
                  cfg->nservices);
        asr_config_free(cfg);
        return ASR_EXIT_USAGE;
    }
    int fd = strcmp(input, "-") == 0 ? STDIN_FILENO : open(input, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cli_error("detect", "%s: cannot open: %s", input, strerror(errno));
        asr_config_free(cfg);
        return ASR_EXIT_FAIL;
    }
    struct asr_store *st = NULL;
    struct asr_detector *det = NULL;
    struct asr_framer *fr = NULL;
    char source[4200];
    snprintf(source, sizeof(source), "%s%s",
             fd == STDIN_FILENO ? "stdin" : "file:", fd == STDIN_FILENO ? "" : input);
    struct run r = {.service = service, .source = source};
    int exit_code = ASR_EXIT_FAIL;
    if (asr_store_open_file(":memory:", &st, &err) != 0) {
        cli_error("detect", "%s", err.msg);
        goto out;
    }
    /* Lines of a file or stdin carry no time of their own here, only when asr read them, and a
     * whole day of log is read in a second: grouping by that time would put every incident
     * under the first. CloudWatch events have their own timestamps, so grouping stays. */
    if (!o.cloudwatch)
        cfg->detection.group_window_ms = 0;
    struct asr_detector_opts dopts = {.cfg = cfg, .store = st};
    if (asr_detector_create(&dopts, &det, &err) != 0) {
        cli_error("config", "%s", err.msg);
        goto out;
    }
    r.det = det;
    if (asr_framer_create(0, line_cb, &r, &fr) != 0) {
        cli_error("detect", "out of memory");
        goto out;
    }
    if (o.cloudwatch) {
        size_t len = 0;
        char *all = read_all(fd, CW_INPUT_MAX, &len, input);
        if (all == NULL)
            goto out;
        if (len >= 2 && (unsigned char)all[0] == 0x1f && (unsigned char)all[1] == 0x8b) {
            feed_delivery(&r, cfg, o.service, all, len, 1, &fr);
        } else {
            size_t number = 0;
            for (size_t i = 0; i < len && !r.stop;) {
                const char *nl = memchr(all + i, '\n', len - i);
                size_t end = nl != NULL ? (size_t)(nl - all) : len;
                number++;
                size_t b = i, e = end;
                while (b < e && (all[b] == ' ' || all[b] == '\t' || all[b] == '\r'))
                    b++;
                while (e > b && (all[e - 1] == ' ' || all[e - 1] == '\t' || all[e - 1] == '\r'))
                    e--;
                if (e > b)
                    feed_delivery(&r, cfg, o.service, all + b, e - b, number, &fr);
                i = end + 1;
            }
        }
        free(all);
    } else {
        char chunk[1 << 16];
        for (;;) {
            ssize_t k = read(fd, chunk, sizeof(chunk));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                cli_error("detect", "%s: cannot read: %s", input, strerror(errno));
                r.errors++;
                break;
            }
            if (k == 0 || r.stop)
                break;
            asr_framer_feed(fr, chunk, (size_t)k);
        }
        asr_framer_flush(fr);
    }
    if (asr_detector_flush(det, true, &err) != 0) {
        cli_error("detect", "%s", err.msg);
        goto out;
    }
    if (print_incidents(st) != 0)
        goto out;
    exit_code = r.errors > 0 ? ASR_EXIT_FAIL : ASR_EXIT_OK;
out:
    if (fd != STDIN_FILENO)
        close(fd);
    asr_framer_destroy(fr);
    asr_detector_destroy(det);
    asr_store_close(st);
    asr_config_free(cfg);
    return exit_code;
}
