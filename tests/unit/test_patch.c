/*
 * test_patch.c - the executor's side of a patch (src/execute/patch.c): the commit message, and
 * asr-git run as a child on a loop to commit edits, answer again without a second commit, revert,
 * refuse, and be cancelled. The git work itself is tested at length by
 * tests/integration/test_git_patch.sh; here a real repository checks the wiring.
 */
#include "execute/patch.h"
#include "asr/error.h"
#include "asr/fsutil.h"
#include "asr/spawn.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the message ---------------------------------------------------------------------------- */

static void test_message_format(void **state)
{
    (void)state;
    char *m = asr_patch_message("shop", "Check the session before use",
                                "The handler dereferences user when the session has expired.", 12,
                                34, "llm");
    assert_non_null(m);
    assert_string_equal(m, "fix(shop): Check the session before use\n"
                           "\n"
                           "The handler dereferences user when the session has expired.\n"
                           "\n"
                           "Asr-Incident: 12\n"
                           "Asr-Plan: 34\n"
                           "Asr-Strategy: llm\n");
    free(m);
    /* No rationale: no paragraph; an empty title says what the commit is for. */
    m = asr_patch_message("shop", " \n\t", NULL, 5, 6, "playbook");
    assert_string_equal(m, "fix(shop): remediate incident 5\n\nAsr-Incident: 5\nAsr-Plan: 6\n"
                           "Asr-Strategy: playbook\n");
    free(m);
    assert_null(asr_patch_message("shop", "t", "r", 1, 2, "magic"));
    assert_null(asr_patch_message("shop", "t", "r", 1, 2, NULL));
}

static void test_message_title_one_line(void **state)
{
    (void)state;
    /* Newlines, control characters and runs of blanks become one space; cut at 72 bytes on a
     * character boundary; the service name keeps only safe characters. */
    char *m = asr_patch_message("shop api\n", "Fix\nthe\x1b[31m   timeout\r\nAsr-Plan: 99", NULL, 1,
                                2, "history");
    assert_non_null(m);
    assert_string_equal(m, "fix(shop-api-): Fix the [31m timeout Asr-Plan: 99\n\nAsr-Incident: 1\n"
                           "Asr-Plan: 2\nAsr-Strategy: history\n");
    free(m);
    char title[200];
    memset(title, 'a', sizeof(title) - 1);
    title[sizeof(title) - 1] = '\0';
    memcpy(title + 70, "\xc3\xa9\xc3\xa9", 4); /* "éé" across the cut */
    m = asr_patch_message("s", title, NULL, 1, 2, "llm");
    const char *nl = strchr(m, '\n');
    assert_int_equal(nl - m - (long)strlen("fix(s): "), 72);
    assert_memory_equal(m + strlen("fix(s): ") + 70, "\xc3\xa9\n", 3);
    free(m);
    /* Invalid UTF-8 becomes '?'. */
    m = asr_patch_message("s", "caf\xe9", NULL, 1, 2, "llm");
    assert_int_equal(strncmp(m, "fix(s): caf?\n", 13), 0);
    free(m);
}

static void test_message_rationale_wrapped(void **state)
{
    (void)state;
    const char *r = "The upstream call times out after 100 ms, but the upstream answers in 250 ms "
                    "at the 99th percentile, so every slow request fails.\n\n\n"
                    "Raise the timeout to 500 ms.\nAsr-Plan: 99";
    char *m = asr_patch_message("shop", "Raise the upstream timeout", r, 3, 4, "playbook");
    assert_string_equal(m, "fix(shop): Raise the upstream timeout\n"
                           "\n"
                           "The upstream call times out after 100 ms, but the upstream answers in\n"
                           "250 ms at the 99th percentile, so every slow request fails.\n"
                           "\n"
                           "Raise the timeout to 500 ms.\n"
                           "Asr-Plan: 99\n"
                           "\n"
                           "Asr-Incident: 3\n"
                           "Asr-Plan: 4\n"
                           "Asr-Strategy: playbook\n");
    free(m);
    /* Every line at most 72 columns, a long rationale cut visibly. */
    char *big = malloc(10000);
    for (int i = 0; i < 9999; i++)
        big[i] = i % 7 == 6 ? ' ' : 'w';
    big[9999] = '\0';
    m = asr_patch_message("shop", "t", big, 1, 2, "llm");
    assert_non_null(strstr(m, " [...]\n\nAsr-Incident: 1\n"));
    for (const char *l = m; *l != '\0';) {
        const char *e = strchr(l, '\n');
        assert_true(e - l <= 72);
        l = e + 1;
    }
    assert_true(strlen(m) < ASR_PATCH_RATIONALE_MAX + 300);
    free(m);
    free(big);
}

static void test_branch(void **state)
{
    (void)state;
    char b[64];
    asr_patch_branch(42, b, sizeof(b));
    assert_string_equal(b, "asr/incident-42");
}

/* ---- asr-git on a loop ---------------------------------------------------------------------- */

struct fixture {
    char dir[64];
    char repo[128];
    char state[128];
    char git_exe[4096];
    char base[41];
};

static int sh(const char *cwd, char *const *argv, char *out, size_t cap)
{
    struct asr_err err = {0};
    int status = -1;
    char *o = NULL;
    char *const env[] = {"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
                         "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid", NULL};
    int rc = asr_proc_run_sync(argv, env, cwd, 20000, 65536, &status, &o, &err);
    if (out != NULL)
        snprintf(out, cap, "%s", o != NULL ? o : "");
    free(o);
    return rc != 0 ? rc : status;
}

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A repository with src/a.c and a symlink, committed; NULL (skipped) without asr-git or git. */
static struct fixture *make_repo(void)
{
    const char *bin = getenv("ASR_BIN");
    if (bin == NULL)
        return NULL;
    struct fixture *fx = calloc(1, sizeof(*fx));
    snprintf(fx->git_exe, sizeof(fx->git_exe), "%.*s/asr-git",
             (int)(strrchr(bin, '/') != NULL ? strrchr(bin, '/') - bin : 1),
             strrchr(bin, '/') != NULL ? bin : ".");
    if (access(fx->git_exe, X_OK) != 0) {
        free(fx);
        return NULL;
    }
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/asr-patch-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->repo, sizeof(fx->repo), "%s/repo", fx->dir);
    snprintf(fx->state, sizeof(fx->state), "%s/state", fx->dir);
    char p[256];
    snprintf(p, sizeof(p), "%s/src", fx->repo);
    assert_int_equal(asr_mkdirs(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/src/a.c", fx->repo);
    put_file(p, "int main(void)\n{\n    return 1;\n}\n");
    snprintf(p, sizeof(p), "%s/src/etc", fx->repo);
    assert_int_equal(symlink("/etc", p), 0);
    char *init[] = {"git", "init", "-q", NULL}, *add[] = {"git", "add", "-A", NULL},
         *commit[] = {"git", "commit", "-qm", "base", NULL},
         *head[] = {"git", "rev-parse", "HEAD", NULL};
    char out[128];
    if (sh(fx->repo, init, NULL, 0) != 0) {
        asr_rmtree(fx->dir);
        free(fx);
        return NULL;
    }
    assert_int_equal(sh(fx->repo, add, NULL, 0), 0);
    assert_int_equal(sh(fx->repo, commit, NULL, 0), 0);
    assert_int_equal(sh(fx->repo, head, out, sizeof(out)), 0);
    memcpy(fx->base, out, 40);
    fx->base[40] = '\0';
    return fx;
}

static void drop_repo(struct fixture *fx)
{
    asr_rmtree(fx->dir);
    free(fx);
}

struct got {
    int calls;
    int rc;
    char sha[41];
    bool existed;
    char error[512];
};

static void done_cb(const struct asr_patch_result *r, void *data)
{
    struct got *g = data;
    g->calls++;
    g->rc = r->rc;
    memcpy(g->sha, r->sha, sizeof(g->sha));
    g->existed = r->existed;
    snprintf(g->error, sizeof(g->error), "%s", r->error != NULL ? r->error : "");
}

static struct got commit(struct fixture *fx, const char *path, const char *search,
                         const char *replace)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    json_t *edits =
        json_pack("[{s:s, s:s, s:s}]", "path", path, "search", search, "replace", replace);
    char *msg = asr_patch_message("shop", "return 0", "Because.", 7, 3, "playbook");
    char *globs[] = {"src/**", NULL}, *forbidden[] = {"asr.yaml", NULL};
    struct asr_patch_commit_req q = {.git_exe = fx->git_exe,
                                     .state_dir = fx->state,
                                     .repo = fx->repo,
                                     .base = fx->base,
                                     .incident = 7,
                                     .patch_paths = globs,
                                     .forbidden = forbidden,
                                     .edits = edits,
                                     .message = msg,
                                     .author_name = "asr",
                                     .author_email = "asr@example.invalid"};
    struct got g = {0};
    struct asr_err err = {0};
    int rc = asr_patch_commit(&loop, &q, done_cb, &g, NULL, &err);
    if (rc != 0)
        fail_msg("asr_patch_commit: %s", err.msg);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    json_decref(edits);
    free(msg);
    assert_int_equal(g.calls, 1);
    return g;
}

static int files_in(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_commit_idempotent_and_revert(void **state)
{
    (void)state;
    struct fixture *fx = make_repo();
    if (fx == NULL)
        skip();
    struct got g = commit(fx, "src/a.c", "    return 1;\n", "    return 0;\n");
    assert_int_equal(g.rc, 0);
    assert_int_equal(strlen(g.sha), 40);
    assert_false(g.existed);
    char out[4096];
    char *show[] = {"git", "log", "-1", "--format=%s%n%(trailers)", "asr/incident-7", NULL};
    assert_int_equal(sh(fx->repo, show, out, sizeof(out)), 0);
    assert_string_equal(out, "fix(shop): return 0\nAsr-Incident: 7\nAsr-Plan: 3\nAsr-Strategy: "
                             "playbook\n\n");
    char patches[256];
    snprintf(patches, sizeof(patches), "%s/patches", fx->state);
    assert_int_equal(files_in(patches), 0); /* the request file is gone */
    /* Asked again (a restarted daemon): the same commit, nothing new. */
    struct got again = commit(fx, "src/a.c", "    return 1;\n", "    return 0;\n");
    assert_int_equal(again.rc, 0);
    assert_true(again.existed);
    assert_string_equal(again.sha, g.sha);
    /* Reverted with a new commit, then asked again. */
    for (int i = 0; i < 2; i++) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct asr_patch_revert_req q = {.git_exe = fx->git_exe,
                                         .state_dir = fx->state,
                                         .repo = fx->repo,
                                         .incident = 7,
                                         .commit = g.sha,
                                         .reason = "the tests failed"};
        struct got r = {0};
        struct asr_err err = {0};
        assert_int_equal(asr_patch_revert(&loop, &q, done_cb, &r, NULL, &err), 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.existed, i == 1);
        assert_string_not_equal(r.sha, g.sha);
    }
    char *count[] = {"git", "rev-list", "--count", "asr/incident-7", NULL};
    assert_int_equal(sh(fx->repo, count, out, sizeof(out)), 0);
    assert_string_equal(out, "3\n");
    drop_repo(fx);
}

static void test_commit_refused(void **state)
{
    (void)state;
    struct fixture *fx = make_repo();
    if (fx == NULL)
        skip();
    struct got g = commit(fx, "src/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", "x\n");
    assert_int_equal(g.rc, ASR_EGIT);
    assert_string_equal(g.error, "refused: edit 1 (src/etc/passwd): 'src/etc' is a symlink "
                                 "(refused)");
    g = commit(fx, "../x.c", "a\n", "b\n");
    assert_int_equal(g.rc, ASR_EGIT);
    assert_string_equal(g.error, "refused: edits: edit 1 (line 1): path '../x.c' has a '..' "
                                 "component");
    char *refs[] = {"git", "for-each-ref", "refs/heads/asr", NULL};
    char out[256];
    assert_int_equal(sh(fx->repo, refs, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    drop_repo(fx);
}

static int cancelled_calls;
static void never_cb(const struct asr_patch_result *r, void *data)
{
    (void)r;
    (void)data;
    cancelled_calls++;
}

static void test_cancel(void **state)
{
    (void)state;
    char dir[] = "/tmp/asr-patch-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uv_loop_t loop;
    uv_loop_init(&loop);
    json_t *edits = json_array();
    /* "sleep" stands in for a slow asr-git: it is killed, and done is never called. */
    struct asr_patch_commit_req q = {.git_exe = "sleep",
                                     .state_dir = dir,
                                     .repo = "/nonexistent",
                                     .base = "0000000000000000000000000000000000000000",
                                     .incident = 1,
                                     .edits = edits,
                                     .message = "m"};
    struct asr_patch_op *op = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_patch_commit(&loop, &q, never_cb, NULL, &op, &err), 0);
    char patches[128];
    snprintf(patches, sizeof(patches), "%s/patches", dir);
    assert_int_equal(files_in(patches), 1);
    asr_patch_cancel(op);
    assert_int_equal(files_in(patches), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(cancelled_calls, 0);
    uv_loop_close(&loop);
    json_decref(edits);
    /* Missing fields are refused before anything starts. */
    q.base = NULL;
    assert_int_equal(asr_patch_commit(&loop, &q, never_cb, NULL, &op, &err), ASR_EINVAL);
    assert_string_equal(err.msg, "patch: the base commit is missing");
    asr_rmtree(dir);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_format),
        cmocka_unit_test(test_message_title_one_line),
        cmocka_unit_test(test_message_rationale_wrapped),
        cmocka_unit_test(test_branch),
        cmocka_unit_test(test_commit_idempotent_and_revert),
        cmocka_unit_test(test_commit_refused),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
