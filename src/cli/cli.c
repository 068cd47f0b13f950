/*
 * cli.c - option parsing and helpers shared by the subcommands (see cli.h).
 */
#include "cli/cli.h"

#include "asr/store.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_helper_path(const char *name, char *out, size_t cap, const char *what)
{
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sl <= 0) {
        cli_error(what, "cannot find the asr binary through /proc/self/exe: %s", strerror(errno));
        return -1;
    }
    self[sl] = '\0';
    char *slash = strrchr(self, '/');
    int n =
        snprintf(out, cap, "%.*s/%s", slash ? (int)(slash - self) : 1, slash ? self : ".", name);
    if (n < 0 || (size_t)n >= cap) {
        cli_error(what, "the path of %s is too long", name);
        return -1;
    }
    if (access(out, X_OK) != 0) {
        cli_error(what, "cannot run %s (it is installed next to asr): %s", out, strerror(errno));
        return -1;
    }
    return 0;
}

void cli_error(const char *what, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "asr: %s: %s\n", what, msg);
}

int cli_parse(int argc, char **argv, const char *allowed, int max_args, const char *usage,
              struct cli_opts *o)
{
    static const struct {
        char key;
        const char *shortname, *longname;
        bool has_value;
    } table[] = {
        {'c', "-c", "--config", true},    {'s', NULL, "--state-dir", true},
        {'j', NULL, "--json", false},     {'r', NULL, "--ref", true},
        {'l', NULL, "--log-level", true}, {'p', NULL, "--report", true},
        {'v', NULL, "--service", true},   {'w', NULL, "--cloudwatch", false},
        {'t', NULL, "--status", true},    {'n', NULL, "--limit", true},
        {'e', NULL, "--reason", true},    {'R', NULL, "--replan", false},
        {'o', NULL, "--outcome", true},
    };
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("%s", usage);
            o->help = true;
            return 0;
        }
        if (a[0] == '-' && a[1] != '\0') {
            size_t k;
            for (k = 0; k < sizeof(table) / sizeof(table[0]); k++) {
                bool m = (table[k].shortname && strcmp(a, table[k].shortname) == 0) ||
                         strcmp(a, table[k].longname) == 0;
                if (m && strchr(allowed, table[k].key) != NULL)
                    break;
            }
            if (k == sizeof(table) / sizeof(table[0])) {
                cli_error("usage", "unknown option '%s'", a);
                fprintf(stderr, "%s", usage);
                return ASR_EXIT_USAGE;
            }
            const char *val = NULL;
            if (table[k].has_value) {
                if (i + 1 >= argc) {
                    cli_error("usage", "option '%s' needs a value", a);
                    return ASR_EXIT_USAGE;
                }
                val = argv[++i];
            }
            switch (table[k].key) {
            case 'c':
                o->config_path = val;
                break;
            case 's':
                o->state_dir = val;
                break;
            case 'j':
                o->json = true;
                break;
            case 'r':
                o->ref = val;
                break;
            case 'l':
                o->log_level = val;
                break;
            case 'p':
                o->report = val;
                break;
            case 'v':
                o->service = val;
                break;
            case 'w':
                o->cloudwatch = true;
                break;
            case 't':
                o->status = val;
                break;
            case 'n': {
                char *end;
                long v = strtol(val, &end, 10);
                if (*val == '\0' || *end != '\0' || v < 1 || v > 1000000) {
                    cli_error("usage", "--limit expects a number from 1 to 1000000, got '%s'", val);
                    return ASR_EXIT_USAGE;
                }
                o->limit = (int)v;
                break;
            }
            case 'e':
                o->reason = val;
                break;
            case 'R':
                o->replan = true;
                break;
            case 'o':
                o->outcome = val;
                break;
            }
            continue;
        }
        if (o->nargs >= max_args || o->nargs >= 8) {
            cli_error("usage", "unexpected argument '%s'", a);
            fprintf(stderr, "%s", usage);
            return ASR_EXIT_USAGE;
        }
        o->args[o->nargs++] = argv[i];
    }
    return 0;
}

static char *absolute(const char *p)
{
    if (p[0] == '/')
        return strdup(p);
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return NULL;
    size_t n = strlen(cwd) + strlen(p) + 2;
    char *r = malloc(n);
    if (r != NULL)
        snprintf(r, n, "%s/%s", cwd, p);
    return r;
}

char *cli_state_dir(const struct cli_opts *o)
{
    if (o->state_dir != NULL)
        return absolute(o->state_dir);
    if (o->config_path != NULL) {
        struct asr_config *cfg = NULL;
        struct asr_err err = {0};
        int rc = asr_config_load(o->config_path, &cfg, &err);
        if (rc != 0) {
            cli_error("config", "%s", asr_err_msg(&err, rc));
            return NULL;
        }
        char *d = strdup(cfg->state_dir);
        asr_config_free(cfg);
        return d;
    }
    const char *env = getenv("ASR_STATE_DIR");
    return absolute(env != NULL && env[0] != '\0' ? env : ".asr");
}

void cli_print_json_line(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s != NULL) {
        printf("%s\n", s);
        free(s);
    }
}

void cli_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s != NULL) {
        printf("%s\n", s);
        free(s);
    }
}

struct asr_store *cli_open_store(const struct cli_opts *o, const char *what)
{
    char *sd = cli_state_dir(o);
    if (sd == NULL)
        return NULL;
    struct asr_store *st = NULL;
    struct asr_err err = {0};
    if (asr_store_open(sd, &st, &err) != 0)
        cli_error(what, "%s", err.msg);
    free(sd);
    return st;
}
