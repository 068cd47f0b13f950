/*
 * patch.c - the commit message of a patch, and asr-git run as a child to commit or revert it
 * (see patch.h; docs/patching.md).
 *
 * Place in the pipeline: EXECUTE. The request goes to asr-git as a file in the state dir rather
 * than on its stdin: spawn.c gives children no stdin, and a file is argv-only, visible to the
 * operator while the child runs, and removed when it exits. asr-git answers one line on stdout
 * ("<sha>\tcreated", "<sha>\tpushed" or "<sha>\texisting") or one line on stderr and exit
 * status 1.
 */
#include "execute/patch.h"
#include "asr/fsutil.h"
#include "asr/spawn.h"
#include "asr/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
 * The message
 * ------------------------------------------------------------------------------------------- */

struct text {
    char *p;
    size_t n, cap;
};

static bool put(struct text *t, const char *s, size_t n)
{
    if (t->n + n + 1 > t->cap) {
        size_t nc = t->cap ? t->cap : 256;
        while (nc < t->n + n + 1)
            nc *= 2;
        char *np = realloc(t->p, nc);
        if (np == NULL)
            return false;
        t->p = np;
        t->cap = nc;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = '\0';
    return true;
}

/* s cleaned into one paragraph-preserving text: control characters but "\n" become spaces,
 * invalid UTF-8 '?', blanks runs one space, lines trimmed, runs of blank lines one (keep_nl),
 * or everything on one line (!keep_nl); cut at max bytes on a character boundary, with mark. */
static char *clean(const char *s, size_t max, bool keep_nl, const char *mark)
{
    struct text t = {0};
    size_t n = s != NULL ? strlen(s) : 0;
    bool space = false, cut = false;
    int newlines = 0;
    if (!put(&t, "", 0))
        return NULL;
    for (size_t i = 0; i < n && !cut;) {
        size_t q = asr_utf8_seq((const unsigned char *)s + i, n - i);
        unsigned char c = (unsigned char)s[i];
        if (q == 1 && c == '\n' && keep_nl) {
            newlines++;
            space = false;
            i++;
            continue;
        }
        if (q == 1 && (c < 0x20 || c == 0x7f || c == ' ')) {
            space = true;
            i++;
            continue;
        }
        const char *ch = q == 0 ? "?" : s + i;
        size_t chl = q == 0 ? 1 : q;
        i += q == 0 ? 1 : q;
        const char *sep = "";
        if (t.n > 0 && newlines > 1)
            sep = "\n\n";
        else if (t.n > 0 && newlines == 1)
            sep = "\n";
        else if (t.n > 0 && space)
            sep = " ";
        newlines = 0;
        space = false;
        if (t.n + strlen(sep) + chl > max) {
            cut = true;
            break;
        }
        if (!put(&t, sep, strlen(sep)) || !put(&t, ch, chl)) {
            free(t.p);
            return NULL;
        }
    }
    if (cut && mark != NULL) {
        size_t m = strlen(mark);
        size_t keep = t.n + m > max ? (max > m ? max - m : 0) : t.n;
        while (keep > 0 && ((unsigned char)t.p[keep] & 0xC0) == 0x80)
            keep--;
        t.n = keep;
        if (!put(&t, mark, m)) {
            free(t.p);
            return NULL;
        }
    }
    return t.p;
}

/* Appends text wrapped at ASR_PATCH_WRAP columns (words longer than a line stay whole). */
static bool put_wrapped(struct text *t, const char *s)
{
    while (*s != '\0') {
        const char *eol = strchr(s, '\n');
        size_t ln = eol != NULL ? (size_t)(eol - s) : strlen(s);
        size_t col = 0;
        const char *w = s, *end = s + ln;
        while (w < end) {
            const char *sp = memchr(w, ' ', (size_t)(end - w));
            size_t wl = sp != NULL ? (size_t)(sp - w) : (size_t)(end - w);
            size_t cols = 0;
            for (size_t i = 0; i < wl; i++)
                cols += ((unsigned char)w[i] & 0xC0) != 0x80;
            if (col > 0 && col + 1 + cols > ASR_PATCH_WRAP) {
                if (!put(t, "\n", 1))
                    return false;
                col = 0;
            } else if (col > 0) {
                if (!put(t, " ", 1))
                    return false;
                col++;
            }
            if (!put(t, w, wl))
                return false;
            col += cols;
            w += wl + (sp != NULL);
        }
        if (!put(t, "\n", 1))
            return false;
        s = eol != NULL ? eol + 1 : end;
    }
    return true;
}

char *asr_patch_message(const char *service, const char *title, const char *rationale,
                        int64_t incident, int64_t plan, const char *strategy)
{
    if (strategy == NULL || (strcmp(strategy, "playbook") != 0 &&
                             strcmp(strategy, "history") != 0 && strcmp(strategy, "llm") != 0))
        return NULL;
    char svc[64];
    size_t j = 0;
    for (size_t i = 0; service != NULL && service[i] != '\0' && j + 1 < sizeof(svc); i++) {
        char c = service[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        svc[j++] = ok ? c : '-';
    }
    svc[j] = '\0';
    char *t = clean(title, ASR_PATCH_TITLE_MAX, false, NULL);
    char *r = clean(rationale, ASR_PATCH_RATIONALE_MAX, true, " [...]");
    struct text m = {0};
    bool ok = t != NULL && r != NULL;
    char line[160];
    if (ok && t[0] == '\0') {
        free(t);
        snprintf(line, sizeof(line), "remediate incident %" PRId64, incident);
        t = strdup(line);
        ok = t != NULL;
    }
    if (ok) {
        snprintf(line, sizeof(line), "fix(%s): ", svc[0] != '\0' ? svc : "service");
        ok = put(&m, line, strlen(line)) && put(&m, t, strlen(t)) && put(&m, "\n\n", 2);
    }
    if (ok && r[0] != '\0')
        ok = put_wrapped(&m, r) && put(&m, "\n", 1);
    if (ok) {
        snprintf(line, sizeof(line),
                 "Asr-Incident: %" PRId64 "\nAsr-Plan: %" PRId64 "\nAsr-Strategy: %s\n", incident,
                 plan, strategy);
        ok = put(&m, line, strlen(line));
    }
    free(t);
    free(r);
    if (!ok) {
        free(m.p);
        return NULL;
    }
    return m.p;
}

void asr_patch_branch(int64_t incident, char *buf, size_t cap)
{
    snprintf(buf, cap, "asr/incident-%" PRId64, incident);
}

/* ---------------------------------------------------------------------------------------------
 * asr-git as a child
 * ------------------------------------------------------------------------------------------- */

struct asr_patch_op {
    struct asr_proc *proc;
    char *req_path;
    asr_patch_done_cb done;
    void *data;
};

static void op_free(struct asr_patch_op *op)
{
    if (op == NULL)
        return;
    if (op->req_path != NULL)
        unlink(op->req_path);
    free(op->req_path);
    free(op);
}

void asr_patch_cancel(struct asr_patch_op *op)
{
    if (op == NULL)
        return;
    asr_proc_free(op->proc); /* kills the group if it still runs; no exit callback then */
    op_free(op);
}

static void exit_cb(struct asr_proc *p, int status, int sig, bool timed_out, void *data)
{
    (void)sig;
    struct asr_patch_op *op = data;
    struct asr_patch_result r = {0};
    char out[1024];
    snprintf(out, sizeof(out), "%s", asr_buf_cstr(asr_proc_output(p)));
    size_t l = strlen(out);
    while (l > 0 && (out[l - 1] == '\n' || out[l - 1] == '\r'))
        out[--l] = '\0';
    char *tab = strchr(out, '\t');
    if (timed_out) {
        r.rc = ASR_ETIMEOUT;
        r.error = "asr-git timed out";
    } else if (status == 0 && tab != NULL && tab - out == 40 &&
               (strcmp(tab + 1, "created") == 0 || strcmp(tab + 1, "existing") == 0 ||
                strcmp(tab + 1, "pushed") == 0)) {
        memcpy(r.sha, out, 40);
        r.sha[40] = '\0';
        r.existed = strcmp(tab + 1, "existing") == 0;
    } else {
        r.rc = ASR_EGIT;
        r.error = l > 0 ? out : "asr-git failed without a message";
    }
    asr_proc_free(p);
    op->proc = NULL;
    asr_patch_done_cb done = op->done;
    void *d = op->data;
    op_free(op); /* before the callback, which may start the next operation */
    done(&r, d);
}

/* Writes the request into a new file of <state_dir>/patches (0600, O_EXCL) and starts asr-git. */
static int start(uv_loop_t *loop, const char *git_exe, const char *state_dir, const char *cmd,
                 json_t *req, int timeout_ms, asr_patch_done_cb done, void *data,
                 struct asr_patch_op **out, struct asr_err *err)
{
    char *text = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    struct asr_patch_op *op = calloc(1, sizeof(*op));
    char dir[4096];
    int rc = 0;
    if (text == NULL || op == NULL) {
        rc = asr_err_set(err, ASR_ENOMEM, "patch: out of memory");
        goto fail;
    }
    snprintf(dir, sizeof(dir), "%s/patches", state_dir);
    if ((op->req_path = asr_write_request_file(dir, cmd, text, "patch", err)) == NULL) {
        rc = err != NULL && err->code != 0 ? err->code : ASR_EIO;
        goto fail;
    }
    op->done = done;
    op->data = data;
    char *argv[] = {(char *)git_exe, (char *)cmd, op->req_path, NULL};
    struct asr_proc_opts o = {.argv = argv,
                              .timeout_ms = timeout_ms > 0 ? timeout_ms : ASR_PATCH_TIMEOUT_MS,
                              .kill_grace_ms = 1000,
                              .capture_cap = ASR_PATCH_OUTPUT_CAP,
                              .on_exit = exit_cb,
                              .data = op};
    rc = asr_proc_start(loop, &o, &op->proc, err);
    if (rc != 0)
        goto fail;
    free(text);
    if (out != NULL)
        *out = op;
    return 0;
fail:
    free(text);
    op_free(op);
    return rc;
}

static json_t *strv_json(asr_argv v)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && v != NULL && v[i] != NULL; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static int need(const char *v, const char *what, struct asr_err *err)
{
    if (v == NULL || v[0] == '\0')
        return asr_err_set(err, ASR_EINVAL, "patch: %s is missing", what);
    return 0;
}

int asr_patch_commit(uv_loop_t *loop, const struct asr_patch_commit_req *q, asr_patch_done_cb done,
                     void *data, struct asr_patch_op **out, struct asr_err *err)
{
    int rc = need(q->git_exe, "the asr-git binary", err);
    if (rc == 0)
        rc = need(q->state_dir, "the state dir", err);
    if (rc == 0)
        rc = need(q->repo, "the repository", err);
    if (rc == 0)
        rc = need(q->base, "the base commit", err);
    if (rc == 0)
        rc = need(q->message, "the message", err);
    if (rc == 0 && !json_is_array(q->edits))
        rc = asr_err_set(err, ASR_EINVAL, "patch: the edits must be a list");
    if (rc != 0)
        return rc;
    char branch[64];
    asr_patch_branch(q->incident, branch, sizeof(branch));
    json_t *req =
        json_pack("{s:s, s:s, s:s, s:o, s:o, s:O, s:s, s:{s:s, s:s}}", "repo", q->repo, "base",
                  q->base, "branch", branch, "patch_paths", strv_json(q->patch_paths), "forbidden",
                  strv_json(q->forbidden), "edits", q->edits, "message", q->message, "author",
                  "name", q->author_name != NULL ? q->author_name : "asr", "email",
                  q->author_email != NULL ? q->author_email : "asr@localhost");
    rc = start(loop, q->git_exe, q->state_dir, "commit-edits", req, q->timeout_ms, done, data, out,
               err);
    json_decref(req);
    return rc;
}

int asr_patch_revert(uv_loop_t *loop, const struct asr_patch_revert_req *q, asr_patch_done_cb done,
                     void *data, struct asr_patch_op **out, struct asr_err *err)
{
    int rc = need(q->git_exe, "the asr-git binary", err);
    if (rc == 0)
        rc = need(q->state_dir, "the state dir", err);
    if (rc == 0)
        rc = need(q->repo, "the repository", err);
    if (rc == 0)
        rc = need(q->commit, "the commit to revert", err);
    if (rc != 0)
        return rc;
    char branch[64];
    asr_patch_branch(q->incident, branch, sizeof(branch));
    json_t *req = json_pack("{s:s, s:s, s:s, s:s*, s:{s:s, s:s}}", "repo", q->repo, "branch",
                            branch, "commit", q->commit, "reason", q->reason, "author", "name",
                            q->author_name != NULL ? q->author_name : "asr", "email",
                            q->author_email != NULL ? q->author_email : "asr@localhost");
    rc = start(loop, q->git_exe, q->state_dir, "revert", req, q->timeout_ms, done, data, out, err);
    json_decref(req);
    return rc;
}

/* ---- a killed asr-git's ref lock -------------------------------------------------------------
 */

/* The first line of a small file, without its newline, into buf; false if unreadable. */
static bool read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    bool ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    if (ok)
        buf[strcspn(buf, "\r\n")] = '\0';
    return ok;
}

/* The directory holding refs/ of the repository around folder (the common dir of a linked work
 * tree), into out. */
static int git_common_dir(const char *folder, char *out, size_t cap, struct asr_err *err)
{
    char dir[PATH_MAX];
    if (realpath(folder, dir) == NULL)
        return asr_err_set(err, ASR_EIO, "patch: %s: %s", folder, strerror(errno));
    for (;;) {
        char dotgit[PATH_MAX], line[PATH_MAX], gd[PATH_MAX], common[PATH_MAX];
        struct stat st;
        if (snprintf(dotgit, sizeof(dotgit), "%s/.git", dir) >= (int)sizeof(dotgit))
            return asr_err_set(err, ASR_EINVAL, "patch: %s: path too long", folder);
        bool is_dir = stat(dotgit, &st) == 0 && S_ISDIR(st.st_mode);
        bool is_link = !is_dir && stat(dotgit, &st) == 0 && S_ISREG(st.st_mode) &&
                       read_line(dotgit, line, sizeof(line)) && strncmp(line, "gitdir: ", 8) == 0;
        int n = -1;
        if (is_dir) {
            n = snprintf(out, cap, "%s", dotgit);
        } else if (is_link) {
            /* A linked work tree: its refs live in the common dir, if it names one. */
            n = line[8] == '/' ? snprintf(gd, sizeof(gd), "%s", line + 8)
                               : snprintf(gd, sizeof(gd), "%s/%s", dir, line + 8);
            char cd[PATH_MAX];
            if (n >= 0 && (size_t)n < sizeof(gd) &&
                snprintf(cd, sizeof(cd), "%s/commondir", gd) < (int)sizeof(cd) &&
                read_line(cd, common, sizeof(common)))
                n = common[0] == '/' ? snprintf(out, cap, "%s", common)
                                     : snprintf(out, cap, "%s/%s", gd, common);
            else if (n >= 0 && (size_t)n < sizeof(gd))
                n = snprintf(out, cap, "%s", gd);
        }
        if (is_dir || is_link) {
            if (n < 0 || (size_t)n >= cap)
                return asr_err_set(err, ASR_EINVAL, "patch: %s: git dir path too long", folder);
            return 0;
        }
        char *slash = strrchr(dir, '/');
        if (slash == NULL || slash == dir)
            return asr_err_set(err, ASR_ENOENT, "patch: %s is not inside a git repository", folder);
        *slash = '\0';
    }
}

int asr_patch_clear_stale_lock(const char *repo, int64_t incident, bool *removed,
                               struct asr_err *err)
{
    *removed = false;
    char common[PATH_MAX], branch[64], lock[PATH_MAX + 96];
    int rc = git_common_dir(repo, common, sizeof(common), err);
    if (rc != 0)
        return rc;
    asr_patch_branch(incident, branch, sizeof(branch));
    if (snprintf(lock, sizeof(lock), "%s/refs/heads/%s.lock", common, branch) >= (int)sizeof(lock))
        return asr_err_set(err, ASR_EINVAL, "patch: %s: git dir path too long", repo);
    if (unlink(lock) == 0) {
        *removed = true;
        return 0;
    }
    if (errno == ENOENT)
        return 0;
    return asr_err_set(err, ASR_EIO, "patch: cannot remove %s: %s", lock, strerror(errno));
}

int asr_patch_push(uv_loop_t *loop, const struct asr_patch_push_req *q, asr_patch_done_cb done,
                   void *data, struct asr_patch_op **out, struct asr_err *err)
{
    int rc = need(q->git_exe, "the asr-git binary", err);
    if (rc == 0)
        rc = need(q->state_dir, "the state dir", err);
    if (rc == 0)
        rc = need(q->repo, "the repository", err);
    if (rc == 0)
        rc = need(q->remote, "the remote (git.remote)", err);
    if (rc != 0)
        return rc;
    char branch[64];
    asr_patch_branch(q->incident, branch, sizeof(branch));
    json_t *req =
        json_pack("{s:s, s:s, s:s, s:s*, s:s*, s:b}", "repo", q->repo, "branch", branch, "remote",
                  q->remote, "sha", q->sha, "token_env", q->token_env, "force", q->force);
    if (req == NULL)
        return asr_err_set(err, ASR_EINVAL, "patch: a push field is not valid UTF-8");
    rc = start(loop, q->git_exe, q->state_dir, "push", req, q->timeout_ms, done, data, out, err);
    json_decref(req);
    return rc;
}
