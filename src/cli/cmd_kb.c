/*
 * cmd_kb.c - `asr kb add FILE|DIR`, `asr kb list`, `asr kb search QUERY`: the knowledge base
 * from the command line (src/strategy/kb.c; docs/knowledge.md).
 *
 * add loads and validates playbooks (src/strategy/playbook.c) and indexes them; a file that does
 * not validate is refused with its FILE:LINE error and nothing of it is indexed. The commands
 * work on the store of the state dir, whether or not a daemon runs.
 */
#include "asr/store.h"
#include "cli/cli.h"
#include "strategy/kb.h"
#include "strategy/playbook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char USAGE[] =
    "usage: asr kb add FILE|DIR [-c FILE] [--state-dir DIR]\n"
    "       asr kb list [--json] [-c FILE] [--state-dir DIR]\n"
    "       asr kb search QUERY [--service NAME] [--limit N] [--json] [-c FILE] [--state-dir DIR]\n"
    "add indexes a playbook, or every *.yaml/*.yml playbook of a directory (validated first);\n"
    "search ranks playbooks and past incidents for a text, and says why each one matched.\n";

static int add(const struct cli_opts *o, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        cli_error("kb", "%s: no such file or directory", path);
        return ASR_EXIT_FAIL;
    }
    struct asr_err err = {0};
    struct asr_playbook_set *set = NULL;
    struct asr_playbook *one = NULL;
    int rc = S_ISDIR(sb.st_mode) ? asr_playbook_load_dir(path, &set, &err)
                                 : asr_playbook_load(path, &one, &err);
    if (rc != 0) {
        cli_error("kb", "%s", err.msg);
        return ASR_EXIT_FAIL;
    }
    struct asr_store *st = cli_open_store(o, "kb");
    int exit_code = ASR_EXIT_OK;
    size_t n = set != NULL ? set->n : 1;
    for (size_t i = 0; st != NULL && i < n; i++) {
        const struct asr_playbook *pb = set != NULL ? set->items[i] : one;
        if (asr_kb_put_playbook(st, pb, &err) != 0) {
            cli_error("kb", "%s: %s", pb->file, err.msg);
            exit_code = ASR_EXIT_FAIL;
            break;
        }
        printf("indexed playbook %s (%s)\n", pb->id, pb->file);
    }
    if (st == NULL)
        exit_code = ASR_EXIT_FAIL;
    else if (exit_code == ASR_EXIT_OK && asr_kb_optimize(st, &err) != 0)
        cli_error("kb", "%s", err.msg); /* the documents are in; only slower to search */
    asr_store_close(st);
    asr_playbook_set_free(set);
    asr_playbook_free(one);
    return exit_code;
}

static json_t *hit_json(const struct asr_kb_hit *h)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:f, s:f, s:b, s:b, s:I, s:I, s:s}", "kind", h->kind, "ref",
                  h->ref, "title", h->title, "score", h->score, "bm25", h->bm25, "exact_signature",
                  h->exact_signature, "exact_fingerprint", h->exact_fingerprint, "successes",
                  (json_int_t)h->successes, "failures", (json_int_t)h->failures, "why", h->why);
    if (o != NULL && h->source != NULL)
        json_object_set_new(o, "source", json_string(h->source));
    return o;
}

static int list_or_search(const struct cli_opts *o, const char *query)
{
    struct asr_store *st = cli_open_store(o, "kb");
    if (st == NULL)
        return ASR_EXIT_FAIL;
    struct asr_kb_hit *h = NULL;
    size_t n = 0;
    struct asr_err err = {0};
    struct asr_kb_query q = {.text = query, .service = o->service, .limit = o->limit};
    int rc =
        query != NULL ? asr_kb_search(st, &q, &h, &n, &err) : asr_kb_list(st, NULL, &h, &n, &err);
    if (rc != 0) {
        cli_error("kb", "%s", err.msg);
        asr_store_close(st);
        return ASR_EXIT_FAIL;
    }
    if (!o->json && query != NULL)
        printf("%-6s %-9s %-34s %s\n", "SCORE", "KIND", "REF", "WHY");
    if (!o->json && query == NULL)
        printf("%-9s %-34s %s\n", "KIND", "REF", "TITLE");
    for (size_t i = 0; i < n; i++) {
        if (o->json) {
            json_t *j = hit_json(&h[i]);
            cli_print_json_line(j);
            json_decref(j);
        } else if (query != NULL) {
            printf("%-6.3f %-9s %-34s %s\n", h[i].score, h[i].kind, h[i].ref, h[i].why);
        } else {
            printf("%-9s %-34s %s\n", h[i].kind, h[i].ref, h[i].title);
        }
    }
    asr_kb_hits_free(h, n);
    asr_store_close(st);
    return ASR_EXIT_OK;
}

int cmd_kb(int argc, char **argv)
{
    struct cli_opts o;
    int rc = cli_parse(argc, argv, "csjvn", 2, USAGE, &o);
    if (rc != 0 || o.help)
        return rc;
    const char *sub = o.nargs > 0 ? o.args[0] : "";
    if (strcmp(sub, "add") == 0 && o.nargs == 2)
        return add(&o, o.args[1]);
    if (strcmp(sub, "list") == 0 && o.nargs == 1)
        return list_or_search(&o, NULL);
    if (strcmp(sub, "search") == 0 && o.nargs == 2)
        return list_or_search(&o, o.args[1]);
    cli_error("usage", "expected 'kb add FILE|DIR', 'kb list' or 'kb search QUERY'");
    fprintf(stderr, "%s", USAGE);
    return ASR_EXIT_USAGE;
}
