/*
 * test_patch_push.c - `asr-git push` (src/execute/git.c asr_git_push) run by asr_patch_push
 * (src/execute/patch.c) on a real uv loop, into real bare repositories: pushed, then "existing"
 * the second time, fast-forwarded after a new commit, refused when another writer moved the
 * remote branch (and replaced only when forced), to a remote named in the repository, over smart
 * HTTP with a token (tests/git_http_server.py: accepted, refused, missing) and never with any ref
 * but the asr/ branch. After each push `git fsck --strict` of the remote is clean, the remote holds
 * only what was pushed, and the local repository gained no ref.
 */
#include "asr/error.h"
#include "asr/fsutil.h"
#include "asr/spawn.h"
#include "execute/patch.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pyserver.h"

#define assert_has(hay, needle)                                                                    \
    do {                                                                                           \
        const char *h_ = (hay);                                                                    \
        if (h_ == NULL || strstr(h_, (needle)) == NULL)                                            \
            fail_msg("expected \"%s\" in \"%s\"", (needle), h_ != NULL ? h_ : "(null)");           \
    } while (0)

struct fx {
    struct pyserver srv; /* started by the test that needs it; stopped by teardown */
    char dir[64], repo[128], bare[128], state[128], git_exe[4096];
    char tip[41];
    uv_loop_t loop;
};

/* Runs argv in cwd; returns the exit status (or a negative ASR_E*), output into out. */
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

static void git_ok(const char *cwd, char *const *argv)
{
    char out[4096];
    int rc = sh(cwd, argv, out, sizeof(out));
    if (rc != 0)
        fail_msg("%s %s: exit %d: %s", argv[0], argv[1], rc, out);
}

static void rev(const char *cwd, const char *ref, char sha[41])
{
    char out[256];
    char *argv[] = {"git", "rev-parse", (char *)ref, NULL};
    assert_int_equal(sh(cwd, argv, out, sizeof(out)), 0);
    memcpy(sha, out, 40);
    sha[40] = '\0';
}

/* A commit on the work tree's asr/incident-7, made with git itself. */
static void commit_on_branch(struct fx *f, const char *text)
{
    char *co[] = {"git", "checkout", "-q", "asr/incident-7", NULL};
    char *add[] = {"git", "add", "a.txt", NULL};
    char *ci[] = {"git", "commit", "-qm", (char *)text, NULL};
    char *back[] = {"git", "checkout", "-q", "main", NULL};
    git_ok(f->repo, co);
    char p[256];
    snprintf(p, sizeof(p), "%s/a.txt", f->repo);
    FILE *fp = fopen(p, "a");
    fputs(text, fp);
    fclose(fp);
    git_ok(f->repo, add);
    git_ok(f->repo, ci);
    git_ok(f->repo, back);
    rev(f->repo, "asr/incident-7", f->tip);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->srv.pid = -1;
    if (!pys_helper("asr-git", f->git_exe, sizeof(f->git_exe))) {
        fprintf(stderr, "test_patch_push: asr-git not found next to ASR_BIN\n");
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/asr-push-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->repo, sizeof(f->repo), "%s/repo", f->dir);
    snprintf(f->bare, sizeof(f->bare), "%s/remote.git", f->dir);
    snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
    char *init[] = {"git", "init", "-q", "-b", "main", f->repo, NULL};
    char *binit[] = {"git", "init", "-q", "--bare", f->bare, NULL};
    git_ok(f->dir, init);
    git_ok(f->dir, binit);
    char p[256];
    snprintf(p, sizeof(p), "%s/a.txt", f->repo);
    FILE *fp = fopen(p, "w");
    fputs("base\n", fp);
    fclose(fp);
    char *add[] = {"git", "add", "a.txt", NULL};
    char *ci[] = {"git", "commit", "-qm", "base", NULL};
    char *br[] = {"git", "branch", "asr/incident-7", NULL};
    git_ok(f->repo, add);
    git_ok(f->repo, ci);
    git_ok(f->repo, br);
    commit_on_branch(f, "fix 1\n");
    uv_loop_init(&f->loop);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    pys_loop_close(&f->loop);
    pys_stop(&f->srv);
    asr_rmtree(f->dir);
    free(f);
    return 0;
}

struct got {
    bool done, existed;
    int rc;
    char sha[41], error[512];
};

static void done_cb(const struct asr_patch_result *r, void *data)
{
    struct got *g = data;
    g->done = true;
    g->rc = r->rc;
    g->existed = r->existed;
    snprintf(g->sha, sizeof(g->sha), "%s", r->sha);
    snprintf(g->error, sizeof(g->error), "%s", r->error != NULL ? r->error : "");
}

static struct got push(struct fx *f, const char *remote, const char *sha, const char *token_env,
                       bool force)
{
    struct asr_patch_push_req q = {.git_exe = f->git_exe,
                                   .state_dir = f->state,
                                   .repo = f->repo,
                                   .incident = 7,
                                   .sha = sha,
                                   .remote = remote,
                                   .token_env = token_env,
                                   .force = force};
    struct got g = {0};
    struct asr_err err = {0};
    if (asr_patch_push(&f->loop, &q, done_cb, &g, NULL, &err) != 0)
        fail_msg("asr_patch_push: %s", err.msg);
    assert_true(pys_run_until(&f->loop, &g.done, 60000));
    return g;
}

/* The refs of a repository, one "<sha> <ref>" per line. */
static void refs_of(const char *repo, char *out, size_t cap)
{
    char *argv[] = {"git", "for-each-ref", "--format=%(objectname) %(refname)", NULL};
    assert_int_equal(sh(repo, argv, out, cap), 0);
}

static void fsck_clean(const char *repo)
{
    char out[4096];
    char *argv[] = {"git", "fsck", "--strict", "--no-progress", NULL};
    int rc = sh(repo, argv, out, sizeof(out));
    if (rc != 0 || strstr(out, "error") != NULL || strstr(out, "missing") != NULL)
        fail_msg("git fsck of %s: exit %d: %s", repo, rc, out);
}

static void test_push_then_existing(void **state)
{
    struct fx *f = *state;
    char before[4096], after[4096], remote_refs[4096], want[256];
    refs_of(f->repo, before, sizeof(before));
    struct got g = push(f, f->bare, f->tip, NULL, false);
    assert_int_equal(g.rc, 0);
    assert_false(g.existed);
    assert_string_equal(g.sha, f->tip);
    refs_of(f->bare, remote_refs, sizeof(remote_refs));
    snprintf(want, sizeof(want), "%s refs/heads/asr/incident-7\n", f->tip);
    assert_string_equal(remote_refs, want); /* that branch, and nothing else */
    fsck_clean(f->bare);
    /* Asked again: the remote has it, nothing is sent. */
    g = push(f, f->bare, f->tip, NULL, false);
    assert_int_equal(g.rc, 0);
    assert_true(g.existed);
    assert_string_equal(g.sha, f->tip);
    /* The local repository gained no ref (no remote-tracking branch), the request files are
     * gone. */
    refs_of(f->repo, after, sizeof(after));
    assert_string_equal(before, after);
    char d[256];
    snprintf(d, sizeof(d), "%s/patches", f->state);
    char *ls[] = {"ls", "-A", d, NULL};
    char out[256];
    assert_int_equal(sh(NULL, ls, out, sizeof(out)), 0);
    assert_string_equal(out, "");

    /* A new commit on the branch (a revert, the next plan): fast-forwarded. */
    commit_on_branch(f, "revert of fix 1\n");
    g = push(f, "file://", NULL, NULL, false); /* a URL without a path: refused by libgit2 */
    assert_int_not_equal(g.rc, 0);
    char url[300];
    snprintf(url, sizeof(url), "file://%s", f->bare);
    g = push(f, url, NULL, NULL, false);
    assert_int_equal(g.rc, 0);
    assert_false(g.existed);
    assert_string_equal(g.sha, f->tip);
    refs_of(f->bare, remote_refs, sizeof(remote_refs));
    snprintf(want, sizeof(want), "%s refs/heads/asr/incident-7\n", f->tip);
    assert_string_equal(remote_refs, want);
    fsck_clean(f->bare);
}

static void test_push_another_writer(void **state)
{
    struct fx *f = *state;
    struct got g = push(f, f->bare, NULL, NULL, false);
    assert_int_equal(g.rc, 0);
    /* Someone else pushes a commit to the remote's asr/incident-7 that asr does not have. */
    char other[128], their[41];
    snprintf(other, sizeof(other), "%s/other", f->dir);
    char *clone[] = {"git", "clone", "-q", "-b", "asr/incident-7", f->bare, other, NULL};
    git_ok(f->dir, clone);
    char p[256];
    snprintf(p, sizeof(p), "%s/b.txt", other);
    FILE *fp = fopen(p, "w");
    fputs("theirs\n", fp);
    fclose(fp);
    char *add[] = {"git", "add", "b.txt", NULL};
    char *ci[] = {"git", "commit", "-qm", "theirs", NULL};
    char *pu[] = {"git", "push", "-q", "origin", "asr/incident-7", NULL};
    git_ok(other, add);
    git_ok(other, ci);
    git_ok(other, pu);
    rev(other, "HEAD", their);
    /* asr's branch moves on too: the remote's tip is not in its history. */
    commit_on_branch(f, "fix 2\n");
    g = push(f, f->bare, NULL, NULL, false);
    assert_int_equal(g.rc, ASR_EGIT);
    assert_has(g.error, "not in the history");
    assert_has(g.error, "not forced");
    char refs[4096], want[256];
    refs_of(f->bare, refs, sizeof(refs));
    snprintf(want, sizeof(want), "%s refs/heads/asr/incident-7\n", their);
    assert_string_equal(refs, want);
    /* Forced: that asr branch (and only it) is replaced. */
    g = push(f, f->bare, f->tip, NULL, true);
    assert_int_equal(g.rc, 0);
    refs_of(f->bare, refs, sizeof(refs));
    snprintf(want, sizeof(want), "%s refs/heads/asr/incident-7\n", f->tip);
    assert_string_equal(refs, want);
    fsck_clean(f->bare);
}

static void test_push_named_remote_and_refusals(void **state)
{
    struct fx *f = *state;
    char *ra[] = {"git", "remote", "add", "origin", f->bare, NULL};
    git_ok(f->repo, ra);
    struct got g = push(f, "origin", f->tip, NULL, false);
    assert_int_equal(g.rc, 0);
    assert_false(g.existed);
    g = push(f, "nosuch", NULL, NULL, false);
    assert_int_equal(g.rc, ASR_EGIT);
    assert_has(g.error, "'nosuch' is not a remote of the repository");
    /* The branch is not at the commit the executor made. */
    g = push(f, f->bare, "0123456789abcdef0123456789abcdef01234567", NULL, false);
    assert_int_equal(g.rc, ASR_EGIT);
    assert_has(g.error, "is at");
    /* ssh and credentials in URLs are refused. */
    char *ru[] = {"git", "remote", "add", "gh", "git@github.com:acme/shop.git", NULL};
    git_ok(f->repo, ru);
    g = push(f, "gh", NULL, NULL, false);
    assert_int_equal(g.rc, ASR_EGIT);
    assert_has(g.error, "ssh remote");
    g = push(f, "https://user:pw@github.com/acme/shop.git", NULL, NULL, false);
    assert_int_equal(g.rc, ASR_EGIT);
    assert_has(g.error, "carries credentials");
    /* No branch for another incident. */
    struct asr_patch_push_req q = {.git_exe = f->git_exe,
                                   .state_dir = f->state,
                                   .repo = f->repo,
                                   .incident = 99,
                                   .remote = f->bare};
    struct asr_err err = {0};
    g = (struct got){0};
    assert_int_equal(asr_patch_push(&f->loop, &q, done_cb, &g, NULL, &err), 0);
    assert_true(pys_run_until(&f->loop, &g.done, 60000));
    assert_int_equal(g.rc, ASR_EGIT);
    assert_has(g.error, "no branch asr/incident-99");
    q.remote = NULL;
    assert_int_equal(asr_patch_push(&f->loop, &q, done_cb, &g, NULL, &err), ASR_EINVAL);
    assert_has(err.msg, "git.remote");
}

/* asr-git push REQUEST run directly: any branch but an asr/ one is refused before anything is
 * opened, so no other ref can ever be pushed. */
static void test_push_refuses_other_refs(void **state)
{
    struct fx *f = *state;
    static const char *const branches[] = {
        "main", "refs/heads/main", "asr/../main", "asr/x:refs/heads/main", "+asr/x", "asr/x.lock",
        "asr/", "ASR/x",           "asr/x y",     "refs/tags/v1",          "HEAD",   "*"};
    char path[256], refs[4096];
    snprintf(path, sizeof(path), "%s/req.json", f->dir);
    for (size_t i = 0; i < sizeof(branches) / sizeof(branches[0]); i++) {
        json_t *r = json_pack("{s:s, s:s, s:s, s:b}", "repo", f->repo, "branch", branches[i],
                              "remote", f->bare, "force", true);
        assert_int_equal(json_dump_file(r, path, 0), 0);
        json_decref(r);
        char *argv[] = {f->git_exe, "push", path, NULL};
        char out[1024];
        int status = sh(NULL, argv, out, sizeof(out));
        if (status != 1 || strstr(out, "refused") == NULL)
            fail_msg("branch '%s': exit %d: %s", branches[i], status, out);
    }
    /* Unknown keys (a refspec smuggled in) are refused too. */
    json_t *r = json_pack("{s:s, s:s, s:s, s:s}", "repo", f->repo, "branch", "asr/incident-7",
                          "remote", f->bare, "refspec", "refs/heads/main:refs/heads/main");
    assert_int_equal(json_dump_file(r, path, 0), 0);
    json_decref(r);
    char *argv[] = {f->git_exe, "push", path, NULL};
    char out[1024];
    assert_int_equal(sh(NULL, argv, out, sizeof(out)), 1);
    assert_has(out, "unknown key 'refspec'");
    refs_of(f->bare, refs, sizeof(refs));
    assert_string_equal(refs, "");
}

static void test_push_https_token(void **state)
{
    struct fx *f = *state;
    char token[64], tokvar[128], root[128], record[128];
    snprintf(token, sizeof(token), "ghp_push%08lx%08lx", (unsigned long)getpid(),
             (unsigned long)asr_time_mono_us());
    snprintf(tokvar, sizeof(tokvar), "GIT_TEST_TOKEN=%s", token);
    snprintf(root, sizeof(root), "GIT_TEST_ROOT=%s", f->dir);
    snprintf(record, sizeof(record), "%s/git.jsonl", f->dir);
    char *env[] = {tokvar, root, NULL};
    struct pyserver *srv = &f->srv;
    assert_int_equal(pys_start(srv, "git_http_server.py", "GIT_RECORD", record, env), 0);
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/remote.git", srv->port);
    setenv("ASR_TEST_PUSH_TOKEN", token, 1);
    setenv("ASR_TEST_PUSH_WRONG", "ghp_wrong0000000000000000", 1);
    unsetenv("ASR_TEST_PUSH_UNSET");

    /* No token configured, an unset variable, a wrong token: refused, nothing pushed. */
    struct got g = push(f, url, NULL, NULL, false);
    assert_int_equal(g.rc, ASR_EGIT);
    assert_has(g.error, "names no token");
    g = push(f, url, NULL, "ASR_TEST_PUSH_UNSET", false);
    assert_has(g.error, "ASR_TEST_PUSH_UNSET (token_env) is not set");
    g = push(f, url, NULL, "ASR_TEST_PUSH_WRONG", false);
    assert_int_equal(g.rc, ASR_EGIT);
    assert_has(g.error, "refused the token in ASR_TEST_PUSH_WRONG");
    assert_null(strstr(g.error, "ghp_wrong"));
    char refs[4096];
    refs_of(f->bare, refs, sizeof(refs));
    assert_string_equal(refs, "");

    /* The right one: pushed as x-access-token, then existing. */
    g = push(f, url, f->tip, "ASR_TEST_PUSH_TOKEN", false);
    if (g.rc != 0)
        fail_msg("push over http: %s", g.error);
    assert_false(g.existed);
    g = push(f, url, f->tip, "ASR_TEST_PUSH_TOKEN", false);
    assert_int_equal(g.rc, 0);
    assert_true(g.existed);
    char want[256];
    refs_of(f->bare, refs, sizeof(refs));
    snprintf(want, sizeof(want), "%s refs/heads/asr/incident-7\n", f->tip);
    assert_string_equal(refs, want);
    fsck_clean(f->bare);
    json_t *recs = pys_records(srv);
    bool pushed = false;
    for (size_t i = 0; i < json_array_size(recs); i++) {
        json_t *r = json_array_get(recs, i);
        if (json_is_true(json_object_get(r, "authorized"))) {
            assert_string_equal(json_string_value(json_object_get(r, "user")), "x-access-token");
            pushed |= strcmp(json_string_value(json_object_get(r, "path")),
                             "/remote.git/git-receive-pack") == 0;
        }
    }
    assert_true(pushed);
    json_decref(recs);
    pys_stop(srv);

    /* A token is never sent over plain http to a host that is not loopback. */
    g = push(f, "http://git.example.invalid/remote.git", NULL, "ASR_TEST_PUSH_TOKEN", false);
    assert_int_equal(g.rc, ASR_EGIT);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_then_existing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_another_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_named_remote_and_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_refuses_other_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_https_token, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
