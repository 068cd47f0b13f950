/*
 * test_edits.c - search/replace edits (src/strategy/edits.c): parsing LLM replies, the unified
 * diff fallback, path checks against patch_paths, and applying edits to real files in a mkdtemp
 * tree.
 *
 * Every refusal is checked with its exact one-line message, since those messages go back to the
 * planner (and to the operator) as the reason a patch was not used.
 */
#include "strategy/edits.h"
#include "asr/error.h"
#include "asr/fsutil.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------------------------- */

/* Parses text; on failure returns the message (and checks the contract), on success "". */
static const char *parse_msg(const char *text, int *rc_out)
{
    static struct asr_err err;
    struct asr_edits e;
    memset(&err, 0, sizeof(err));
    int rc = asr_edits_parse(text, strlen(text), &e, &err);
    if (rc_out != NULL)
        *rc_out = rc;
    if (rc == 0) {
        asr_edits_free(&e);
        return "";
    }
    assert_int_equal(err.code, rc);
    assert_null(e.v);
    assert_int_equal(e.n, 0);
    assert_null(e.rationale);
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(strncmp(err.msg, "edits: ", 7), 0);
    return err.msg;
}

#define EXPECT_PARSE_ERR(text, code, msg)                                                          \
    do {                                                                                           \
        int rc_;                                                                                   \
        assert_string_equal(parse_msg(text, &rc_), msg);                                           \
        assert_int_equal(rc_, code);                                                               \
    } while (0)

static void parse_ok(const char *text, struct asr_edits *e)
{
    struct asr_err err = {0};
    int rc = asr_edits_parse(text, strlen(text), e, &err);
    if (rc != 0)
        fail_msg("parse failed: %s", err.msg);
    assert_non_null(e->rationale);
    for (size_t i = 0; i < e->n; i++) {
        assert_int_equal(strlen(e->v[i].search), e->v[i].search_len);
        assert_int_equal(strlen(e->v[i].replace), e->v[i].replace_len);
    }
}

static char *make_tree(void)
{
    char tmpl[] = "/tmp/asr-edits-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char *root = strdup(tmpl);
    assert_non_null(root);
    return root;
}

static void put(const char *root, const char *rel, const char *content, mode_t mode)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    assert_int_equal(asr_mkdirs(dir, 0755), 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

/* The contents of root/rel (caller frees), or NULL when it does not exist. */
static char *get(const char *root, const char *rel)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *b = malloc(1 << 20);
    assert_non_null(b);
    size_t n = fread(b, 1, (1 << 20) - 1, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

static void expect_file(const char *root, const char *rel, const char *want)
{
    char *got = get(root, rel);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static mode_t mode_of(const char *root, const char *rel)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode & 07777;
}

/* Number of entries of root/rel whose name starts with ".asr-edit" (left-over temp files). */
static int temps_in(const char *root, const char *rel)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strncmp(de->d_name, ".asr-edit", 9) == 0;
    closedir(d);
    return n;
}

/* Parses reply and applies it to root; returns the code and leaves the message in msg. */
static int apply_reply(const char *reply, const char *root, char *msg, size_t cap)
{
    struct asr_edits e;
    parse_ok(reply, &e);
    struct asr_err err = {0};
    int rc = asr_edits_apply(&e, root, &err);
    if (rc != 0) {
        assert_int_equal(err.code, rc);
        assert_null(strchr(err.msg, '\n'));
    }
    snprintf(msg, cap, "%s", rc != 0 ? err.msg : "");
    asr_edits_free(&e);
    return rc;
}

static void drop_tree(char *root)
{
    assert_int_equal(asr_rmtree(root), 0);
    free(root);
}

/* ---- parsing -------------------------------------------------------------------------------- */

static void test_parse_one_block(void **state)
{
    (void)state;
    struct asr_edits e;
    parse_ok("The handler dereferences a NULL user when the session expired.\n"
             "src/handler.c\n"
             "<<<<<<< SEARCH\n"
             "    if (user->id == 0)\n"
             "=======\n"
             "    if (user == NULL || user->id == 0)\n"
             ">>>>>>> REPLACE\n"
             "This returns 401 instead of crashing.\n",
             &e);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.format, ASR_EDITS_BLOCKS);
    assert_string_equal(e.v[0].path, "src/handler.c");
    assert_string_equal(e.v[0].search, "    if (user->id == 0)\n");
    assert_string_equal(e.v[0].replace, "    if (user == NULL || user->id == 0)\n");
    assert_int_equal(e.v[0].line, 3);
    assert_string_equal(e.rationale,
                        "The handler dereferences a NULL user when the session expired.\n"
                        "This returns 401 instead of crashing.");
    asr_edits_free(&e);
    asr_edits_free(&e); /* a freed struct is zeroed and may be freed again */
}

static void test_parse_several_blocks_fenced(void **state)
{
    (void)state;
    struct asr_edits e;
    parse_ok("Two changes:\n"
             "\n"
             "src/a.c\n"
             "```c\n"
             "<<<<<<< SEARCH\n"
             "int a;\n"
             "int b;\n"
             "=======\n"
             "int a = 0;\n"
             ">>>>>>> REPLACE\n"
             "```\n"
             "\n"
             "```python\n"
             "lib/x/b.py\n"
             "<<<<<<< SEARCH\n"
             "x = 1\n"
             "=======\n"
             ">>>>>>> REPLACE\n"
             "```\n"
             "`src/c.c`\n"
             "<<<<<<< SEARCH  \n"
             "\n"
             "=======\t\n"
             "\n"
             "\n"
             ">>>>>>> REPLACE\n"
             "\n"
             "Done.\n",
             &e);
    assert_int_equal(e.n, 3);
    assert_string_equal(e.v[0].path, "src/a.c");
    assert_string_equal(e.v[0].search, "int a;\nint b;\n");
    assert_string_equal(e.v[0].replace, "int a = 0;\n");
    assert_int_equal(e.v[0].line, 5);
    assert_string_equal(e.v[1].path, "lib/x/b.py");
    assert_string_equal(e.v[1].search, "x = 1\n");
    assert_int_equal(e.v[1].replace_len, 0);
    assert_string_equal(e.v[2].path, "src/c.c");
    assert_string_equal(e.v[2].search, "\n");
    assert_string_equal(e.v[2].replace, "\n\n");
    assert_string_equal(e.rationale, "Two changes:\n\nDone.");
    asr_edits_free(&e);
}

static void test_parse_crlf_reply(void **state)
{
    (void)state;
    struct asr_edits e;
    parse_ok("Fix.\r\nsrc/a.c\r\n<<<<<<< SEARCH\r\nold\r\n=======\r\nnew\r\n>>>>>>> REPLACE\r\n",
             &e);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.v[0].path, "src/a.c");
    assert_string_equal(e.v[0].search, "old\n");
    assert_string_equal(e.v[0].replace, "new\n");
    assert_string_equal(e.rationale, "Fix.");
    asr_edits_free(&e);
    /* No final newline after the end marker, no rationale. */
    parse_ok("src/a.c\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE", &e);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.rationale, "");
    asr_edits_free(&e);
}

static void test_parse_create_block(void **state)
{
    (void)state;
    struct asr_edits e;
    parse_ok("src/new.h\n<<<<<<< SEARCH\n=======\n#pragma once\n>>>>>>> REPLACE\n", &e);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.v[0].search_len, 0);
    assert_string_equal(e.v[0].search, "");
    assert_string_equal(e.v[0].replace, "#pragma once\n");
    asr_edits_free(&e);
}

static void test_parse_marker_like_lines_are_content(void **state)
{
    (void)state;
    struct asr_edits e;
    /* Indented markers, eight '=' and markers with text after them are ordinary lines. */
    parse_ok("docs/a.md\n"
             "<<<<<<< SEARCH\n"
             "Title\n"
             "========\n"
             "  =======\n"
             "<<<<<<< HEAD\n"
             "=======x\n"
             "=======\n"
             " >>>>>>> REPLACE\n"
             ">>>>>>> REPLACED\n"
             ">>>>>>> REPLACE\n",
             &e);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.v[0].search, "Title\n========\n  =======\n<<<<<<< HEAD\n=======x\n");
    assert_string_equal(e.v[0].replace, " >>>>>>> REPLACE\n>>>>>>> REPLACED\n");
    asr_edits_free(&e);
}

static void test_parse_malformed_markers(void **state)
{
    (void)state;
    EXPECT_PARSE_ERR("fix\n=======\n", ASR_EPARSE,
                     "edits: line 2: stray '=======' outside an edit block (no '<<<<<<< SEARCH' "
                     "before it)");
    EXPECT_PARSE_ERR("src/a.c\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n>>>>>>> REPLACE\n",
                     ASR_EPARSE,
                     "edits: line 7: stray '>>>>>>> REPLACE' outside an edit block (no '<<<<<<< "
                     "SEARCH' before it)");
    EXPECT_PARSE_ERR("src/a.c\n<<<<<<< SEARCH\na\n>>>>>>> REPLACE\n", ASR_EPARSE,
                     "edits: block 1 (line 2): line 4: '>>>>>>> REPLACE' before '======='");
    EXPECT_PARSE_ERR("src/a.c\n<<<<<<< SEARCH\na\n<<<<<<< SEARCH\n=======\nb\n>>>>>>> REPLACE\n",
                     ASR_EPARSE,
                     "edits: block 1 (line 2): line 4: a second '<<<<<<< SEARCH' before '======='");
    EXPECT_PARSE_ERR("src/a.c\n<<<<<<< SEARCH\na\n=======\nb\n=======\nc\n>>>>>>> REPLACE\n",
                     ASR_EPARSE,
                     "edits: block 1 (line 2): line 6: a second '=======' in the block");
    EXPECT_PARSE_ERR("src/a.c\n<<<<<<< SEARCH\na\n=======\nb\n<<<<<<< SEARCH\n", ASR_EPARSE,
                     "edits: block 1 (line 2): line 6: '<<<<<<< SEARCH' before '>>>>>>> REPLACE'");
    EXPECT_PARSE_ERR("src/a.c\n<<<<<<< SEARCH\na\nb\n", ASR_EPARSE,
                     "edits: block 1 (line 2): the reply ends before '======='");
    EXPECT_PARSE_ERR("src/a.c\n<<<<<<< SEARCH\na\n=======\nb\n", ASR_EPARSE,
                     "edits: block 1 (line 2): the reply ends before '>>>>>>> REPLACE'");
    /* The second block is the broken one, and says so. */
    EXPECT_PARSE_ERR("src/a.c\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"
                     "src/b.c\n<<<<<<< SEARCH\na\n",
                     ASR_EPARSE, "edits: block 2 (line 8): the reply ends before '======='");
}

static void test_parse_malformed_paths(void **state)
{
    (void)state;
    EXPECT_PARSE_ERR("<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n", ASR_EPARSE,
                     "edits: block 1 (line 1): no file path on the line before '<<<<<<< SEARCH'");
    EXPECT_PARSE_ERR("```c\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n", ASR_EPARSE,
                     "edits: block 1 (line 2): no file path on the line before '<<<<<<< SEARCH'");
    EXPECT_PARSE_ERR("src/a.c\n\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n", ASR_EPARSE,
                     "edits: block 1 (line 3): no file path on the line before '<<<<<<< SEARCH'");
    EXPECT_PARSE_ERR("Here is the fix:\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n",
                     ASR_EPARSE,
                     "edits: block 1 (line 2): the line before '<<<<<<< SEARCH' is not a file "
                     "path: 'Here is the fix:'");
    /* A path line cannot be shared with the previous block's end. */
    EXPECT_PARSE_ERR("src/a.c\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"
                     "<<<<<<< SEARCH\nc\n=======\nd\n>>>>>>> REPLACE\n",
                     ASR_EPARSE,
                     "edits: block 2 (line 7): no file path on the line before '<<<<<<< SEARCH'");
    /* Control characters in the quoted line are shown as '?'. */
    EXPECT_PARSE_ERR("File: \x1b[31msrc/a.c\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n",
                     ASR_EPARSE,
                     "edits: block 1 (line 2): the line before '<<<<<<< SEARCH' is not a file "
                     "path: 'File: ?[31msrc/a.c'");
}

static void test_parse_malformed_other(void **state)
{
    (void)state;
    EXPECT_PARSE_ERR("src/a.c\n<<<<<<< SEARCH\n=======\n>>>>>>> REPLACE\n", ASR_EPARSE,
                     "edits: block 1 (line 2): SEARCH and REPLACE are both empty");
    EXPECT_PARSE_ERR("I could not find the bug.\n", ASR_EPARSE,
                     "edits: no SEARCH/REPLACE block and no unified diff in the reply");
    EXPECT_PARSE_ERR("", ASR_EPARSE,
                     "edits: no SEARCH/REPLACE block and no unified diff in the reply");
    EXPECT_PARSE_ERR("src/a.c\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"
                     "--- a/src/b.c\n+++ b/src/b.c\n@@ -1 +1 @@\n-x\n+y\n",
                     ASR_EPARSE,
                     "edits: line 7: a unified diff mixed with SEARCH/REPLACE blocks (use one "
                     "format)");
    /* A diff inside a SEARCH block is content, not a second format. */
    assert_string_equal(parse_msg("a.diff\n<<<<<<< SEARCH\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n"
                                  "=======\n>>>>>>> REPLACE\n",
                                  NULL),
                        "");
    /* A NUL byte anywhere. */
    static const char nul[] = "src/a.c\n<<<<<<< SEARCH\na\0b\n=======\nb\n>>>>>>> REPLACE\n";
    struct asr_edits e;
    struct asr_err err = {0};
    assert_int_equal(asr_edits_parse(nul, sizeof(nul) - 1, &e, &err), ASR_EPARSE);
    assert_string_equal(err.msg, "edits: line 3: NUL byte in the reply");
}

static void test_parse_caps(void **state)
{
    (void)state;
    struct asr_edits e;
    struct asr_err err = {0};
    /* The reply cap. */
    size_t big = ASR_EDITS_MAX_REPLY + 1;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, 'x', big);
    text[big] = '\0';
    assert_int_equal(asr_edits_parse(text, big, &e, &err), ASR_ETOOBIG);
    assert_string_equal(err.msg, "edits: reply of 262145 bytes exceeds the cap of 262144");
    /* The SEARCH cap: 70,000 bytes of lines. */
    size_t j = 0;
    j += (size_t)snprintf(text + j, big - j, "src/a.c\n<<<<<<< SEARCH\n");
    for (int i = 0; i < 7000; i++)
        j += (size_t)snprintf(text + j, big - j, "123456789\n");
    j += (size_t)snprintf(text + j, big - j, "=======\n>>>>>>> REPLACE\n");
    assert_int_equal(asr_edits_parse(text, j, &e, &err), ASR_ETOOBIG);
    assert_string_equal(err.msg, "edits: block 1 (line 2): SEARCH is longer than 65536 bytes");
    /* The block cap. */
    j = 0;
    for (int i = 0; i < ASR_EDITS_MAX_BLOCKS + 1; i++)
        j += (size_t)snprintf(text + j, big - j,
                              "src/a%d.c\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n", i);
    assert_int_equal(asr_edits_parse(text, j, &e, &err), ASR_ETOOBIG);
    assert_string_equal(err.msg, "edits: block 33 (line 194): more than 32 edit blocks");
    /* Exactly the cap is fine. */
    j -= strlen("src/a32.c\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n");
    text[j] = '\0';
    parse_ok(text, &e);
    assert_int_equal(e.n, ASR_EDITS_MAX_BLOCKS);
    asr_edits_free(&e);
    /* Deeply repeated markers fail fast at the first repeat. */
    j = (size_t)snprintf(text, big, "src/a.c\n");
    while (j + 16 < ASR_EDITS_MAX_REPLY)
        j += (size_t)snprintf(text + j, big - j, "<<<<<<< SEARCH\n");
    assert_int_equal(asr_edits_parse(text, j, &e, &err), ASR_EPARSE);
    assert_string_equal(
        err.msg, "edits: block 1 (line 2): line 3: a second '<<<<<<< SEARCH' before '======='");
    /* A long rationale is cut visibly. */
    j = 0;
    for (int i = 0; i < 1000; i++)
        j += (size_t)snprintf(text + j, big - j, "word ");
    j += (size_t)snprintf(text + j, big - j,
                          "\nsrc/a.c\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n");
    parse_ok(text, &e);
    assert_int_equal(strlen(e.rationale), ASR_EDITS_MAX_RATIONALE);
    assert_string_equal(e.rationale + ASR_EDITS_MAX_RATIONALE - 6, " [...]");
    asr_edits_free(&e);
    free(text);
}

static void test_parse_rationale_cleaned(void **state)
{
    (void)state;
    struct asr_edits e;
    parse_ok("\n\nBad\x1b[2J byte \xff here\tand tab\n\nsrc/a.c\n<<<<<<< SEARCH\na\n=======\nb\n"
             ">>>>>>> REPLACE\n\n\n",
             &e);
    assert_string_equal(e.rationale, "Bad [2J byte ? here\tand tab");
    asr_edits_free(&e);
}

/* ---- unified diff fallback ------------------------------------------------------------------ */

static void test_parse_diff(void **state)
{
    (void)state;
    struct asr_edits e;
    parse_ok("The bounds check is off by one.\n"
             "```diff\n"
             "diff --git a/src/a.c b/src/a.c\n"
             "index 1234567..89abcde 100644\n"
             "--- a/src/a.c\t2024-01-01 00:00:00\n"
             "+++ b/src/a.c\n"
             "@@ -10,4 +10,4 @@ int f(void)\n"
             " int i;\n"
             "-for (i = 0; i <= n; i++)\n"
             "+for (i = 0; i < n; i++)\n"
             "\n"
             "     x();\n"
             "@@ -30,2 +30,3 @@\n"
             " return 0;\n"
             "+/* end */\n"
             " }\n"
             "\\ No newline at end of file\n"
             "--- /dev/null\n"
             "+++ b/src/new.c\n"
             "@@ -0,0 +1,2 @@\n"
             "+int x;\n"
             "+int y;\n"
             "```\n"
             "Tested by hand.\n",
             &e);
    assert_int_equal(e.format, ASR_EDITS_DIFF);
    assert_int_equal(e.n, 3);
    assert_string_equal(e.v[0].path, "src/a.c");
    assert_string_equal(e.v[0].search, "int i;\nfor (i = 0; i <= n; i++)\n\n    x();\n");
    assert_string_equal(e.v[0].replace, "int i;\nfor (i = 0; i < n; i++)\n\n    x();\n");
    assert_int_equal(e.v[0].line, 7);
    assert_string_equal(e.v[1].path, "src/a.c");
    assert_string_equal(e.v[1].search, "return 0;\n}\n");
    assert_string_equal(e.v[1].replace, "return 0;\n/* end */\n}\n");
    assert_string_equal(e.v[2].path, "src/new.c");
    assert_int_equal(e.v[2].search_len, 0);
    assert_string_equal(e.v[2].replace, "int x;\nint y;\n");
    assert_string_equal(e.rationale, "The bounds check is off by one.\nTested by hand.");
    asr_edits_free(&e);
    /* Without a/ b/ prefixes and with omitted counts. */
    parse_ok("--- src/a.c\n+++ src/a.c\n@@ -3 +3 @@\n-old\n+new\n", &e);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.v[0].path, "src/a.c");
    assert_string_equal(e.v[0].search, "old\n");
    assert_string_equal(e.v[0].replace, "new\n");
    asr_edits_free(&e);
}

static void test_parse_diff_malformed(void **state)
{
    (void)state;
    EXPECT_PARSE_ERR("--- a/x.c\n+++ b/x.c\n@@ -1,2 +1,2 nonsense\n", ASR_EPARSE,
                     "edits: hunk 1 (line 3): malformed hunk header (want '@@ -A,B +C,D @@')");
    EXPECT_PARSE_ERR("--- a/x.c\n+++ b/x.c\n@@ -1,2 +1,3 @@\n a\n-b\n+c\n", ASR_EPARSE,
                     "edits: hunk 1 (line 3): the reply ends 0 old and 1 new lines short of what "
                     "the header counts");
    EXPECT_PARSE_ERR("--- a/x.c\n+++ b/x.c\n@@ -1,2 +1,2 @@\n a\n-b\n-c\n+d\n", ASR_EPARSE,
                     "edits: hunk 1 (line 3): line 6 does not fit the header's counts: '-c'");
    EXPECT_PARSE_ERR("--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-b\n+c\n+d\n", ASR_EPARSE,
                     "edits: hunk 1 (line 3): line 6 is past the lines the header counts");
    EXPECT_PARSE_ERR("--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n*b\n", ASR_EPARSE,
                     "edits: hunk 1 (line 3): line 4 does not fit the header's counts: '*b'");
    EXPECT_PARSE_ERR("--- a/x.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-b\n", ASR_EPARSE,
                     "edits: line 2: deleting a file (+++ /dev/null) is not supported");
    EXPECT_PARSE_ERR("--- a/x.c\n+++ b/y.c\n@@ -1 +1 @@\n-b\n+c\n", ASR_EPARSE,
                     "edits: line 1: renaming a file is not supported ('x.c' to 'y.c')");
    EXPECT_PARSE_ERR("--- a/x.c\n+++ b/x.c\n@@ -0,0 +1 @@\n+c\n", ASR_EPARSE,
                     "edits: hunk 1 (line 3): no context or removed lines, so it cannot be placed");
    EXPECT_PARSE_ERR("--- /dev/null\n+++ b/x.c\n@@ -0,0 +1 @@\n+c\n@@ -0,0 +2 @@\n+d\n", ASR_EPARSE,
                     "edits: hunk 2 (line 5): a new file (--- /dev/null) has one hunk");
    EXPECT_PARSE_ERR("--- /dev/null\n+++ b/x.c\n@@ -1 +1 @@\n c\n", ASR_EPARSE,
                     "edits: hunk 1 (line 3): a new file (--- /dev/null) has only added lines");
    EXPECT_PARSE_ERR("--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n=======\n", ASR_EPARSE,
                     "edits: line 6: stray '=======' outside an edit block (no '<<<<<<< SEARCH' "
                     "before it)");
}

static void test_add(void **state)
{
    (void)state;
    struct asr_edits e = {0};
    struct asr_err err = {0};
    assert_int_equal(asr_edits_add(&e, "src/a.c", "a\r\nb", 4, "c", 1, 12, &err), 0);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.v[0].search, "a\nb\n");
    assert_string_equal(e.v[0].replace, "c\n");
    assert_int_equal(e.v[0].line, 12);
    assert_int_equal(asr_edits_add(&e, "src/a.c", "", 0, "", 0, 13, &err), ASR_EPARSE);
    assert_string_equal(err.msg, "edits: edit at line 13: SEARCH and REPLACE are both empty");
    assert_int_equal(asr_edits_add(&e, "src/a.c", "a\0b", 3, "", 0, 14, &err), ASR_EPARSE);
    assert_string_equal(err.msg, "edits: edit at line 14: NUL byte in SEARCH");
    assert_int_equal(asr_edits_add(&e, "", "a", 1, "", 0, 15, &err), ASR_EPARSE);
    assert_string_equal(err.msg, "edits: edit at line 15: no file path");
    assert_int_equal(e.n, 1);
    asr_edits_free(&e);
}

/* ---- paths ---------------------------------------------------------------------------------- */

/* The message of check_paths for one edit of path against globs, "" when accepted. */
static const char *check_msg(const char *path, char **globs)
{
    static struct asr_err err;
    memset(&err, 0, sizeof(err));
    struct asr_edits e = {0};
    assert_int_equal(asr_edits_add(&e, path, "a", 1, "b", 1, 7, &err), 0);
    int rc = asr_edits_check_paths(&e, globs, &err);
    asr_edits_free(&e);
    if (rc == 0)
        return "";
    assert_int_equal(rc, ASR_EINVAL);
    assert_int_equal(err.code, ASR_EINVAL);
    return err.msg;
}

/* The globs of patch_paths, as check_paths applies them (through asr_path_allowed). */
static void test_glob_match(void **state)
{
    (void)state;
    static const struct {
        const char *glob, *path;
        bool want;
    } cases[] = {
        {"src/**", "src/a.c", true},
        {"src/**", "src/x/y/z.c", true},
        {"src/**", "src", false},
        {"src/**", "lib/a.c", false},
        {"src/**", "srcx/a.c", false},
        {"src/*.c", "src/a.c", true},
        {"src/*.c", "src/x/a.c", false},
        {"src/*.c", "src/a.h", false},
        {"src/?.c", "src/a.c", true},
        {"src/?.c", "src/ab.c", false},
        {"**/*.py", "a.py", true},
        {"**/*.py", "x/y/a.py", true},
        {"src/**/test_*.c", "src/test_a.c", true},
        {"src/**/test_*.c", "src/u/v/test_a.c", true},
        {"src/**/test_*.c", "src/u/v/a.c", false},
        {"src/**.c", "src/a.c", true},
        {"src/**.c", "src/x/a.c", false},
        {"**", "a", true},
        {"**", "a/b/c", true},
        {"Makefile", "Makefile", true},
        {"Makefile", "src/Makefile", false},
        {"src/**/**/x", "src/x", true},
        {"*", "a.c", true},
        {"*", "x/a.c", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *globs[] = {(char *)cases[i].glob, NULL};
        if ((check_msg(cases[i].path, globs)[0] == '\0') != cases[i].want)
            fail_msg("glob '%s' path '%s': want %d", cases[i].glob, cases[i].path, cases[i].want);
    }
}

static void test_check_paths_accept(void **state)
{
    (void)state;
    char *globs[] = {"src/**", "tests/*.py", NULL};
    assert_string_equal(check_msg("src/a.c", globs), "");
    assert_string_equal(check_msg("src/x/y/z.c", globs), "");
    assert_string_equal(check_msg("src/a-b_c+d@e,f=g.c", globs), "");
    assert_string_equal(check_msg("tests/test_a.py", globs), "");
    assert_string_equal(check_msg("src/.hidden", globs), "");
    assert_string_equal(check_msg("src/..a", globs), "");
    /* Several edits: the first refused one is named. */
    struct asr_edits e;
    struct asr_err err = {0};
    parse_ok("src/a.c\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"
             "lib/b.c\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n",
             &e);
    assert_int_equal(asr_edits_check_paths(&e, globs, &err), ASR_EINVAL);
    assert_string_equal(err.msg,
                        "edits: edit 2 (line 8): path 'lib/b.c' is outside patch_paths (src/**, "
                        "tests/*.py)");
    asr_edits_free(&e);
}

static void test_check_paths_refuse(void **state)
{
    (void)state;
    char *globs[] = {"src/**", NULL};
    static const struct {
        const char *path, *msg;
    } cases[] = {
        {"src/../../etc/passwd", "path 'src/../../etc/passwd' has a '..' component"},
        {"/etc/passwd", "path '/etc/passwd' is absolute"},
        {"src/%2e%2e/x",
         "path 'src/%2e%2e/x' contains '%' (only letters, digits and . _ - + @ , = / are allowed)"},
        {"src/\xd0\xb0.c", "path 'src/??.c' contains a non-ASCII byte (0xd0 at offset 4)"},
        {"src\xe2\x88\x95..\xe2\x88\x95x", "path 'src???..???x' contains a non-ASCII byte (0xe2 at "
                                           "offset 3)"},
        {"src\\..\\x", "path 'src\\..\\x' contains a backslash"},
        {"src//a.c", "path 'src//a.c' has an empty component ('//' or a trailing '/')"},
        {"src/", "path 'src/' has an empty component ('//' or a trailing '/')"},
        {"./src/a.c", "path './src/a.c' has a '.' component"},
        {"src/./a.c", "path 'src/./a.c' has a '.' component"},
        {"src/..", "path 'src/..' has a '..' component"},
        {"src/.git/hooks/pre-commit", "path 'src/.git/hooks/pre-commit' has a '.git' component"},
        {"src/.GIT/config", "path 'src/.GIT/config' has a '.git' component"},
        {"src/a\x1b[0m.c", "path 'src/a?[0m.c' contains a control character (0x1b at offset 5)"},
        {"src/a b.c", "path 'src/a b.c' contains ' ' (only letters, digits and . _ - + @ , = / are "
                      "allowed)"},
        {"src/*.c", "path 'src/*.c' contains '*' (only letters, digits and . _ - + @ , = / are "
                    "allowed)"},
        {"src", "path 'src' is outside patch_paths (src/**)"},
        {"lib/a.c", "path 'lib/a.c' is outside patch_paths (src/**)"},
        {"SRC/a.c", "path 'SRC/a.c' is outside patch_paths (src/**)"},
        {"src/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/1/2/3/4/5/6/7",
         "path 'src/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/...' has more than 32 components"},
    };
    char want[512];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(want, sizeof(want), "edits: edit 1 (line 7): %s", cases[i].msg);
        const char *got = check_msg(cases[i].path, globs);
        if (strcmp(got, want) != 0)
            fail_msg("path '%s':\n got  %s\n want %s", cases[i].path, got, want);
    }
    /* Too long. */
    char longp[600];
    memcpy(longp, "src/", 4);
    memset(longp + 4, 'a', sizeof(longp) - 5);
    longp[sizeof(longp) - 1] = '\0';
    assert_string_equal(check_msg(longp, globs),
                        "edits: edit 1 (line 7): path "
                        "'src/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is longer than 512 bytes");
    /* No patch_paths: nothing is allowed. */
    char *none[] = {NULL};
    assert_string_equal(check_msg("src/a.c", none),
                        "edits: edit 1 (line 7): path 'src/a.c' refused: the service has no "
                        "patch_paths, so no patch is allowed");
    assert_string_equal(check_msg("src/a.c", NULL),
                        "edits: edit 1 (line 7): path 'src/a.c' refused: the service has no "
                        "patch_paths, so no patch is allowed");
}

/* ---- applying ------------------------------------------------------------------------------- */

static void test_apply_basic_keeps_mode(void **state)
{
    (void)state;
    char *root = make_tree();
    put(root, "src/a.c", "int main(void)\n{\n    return 1;\n}\n", 0750);
    char msg[512];
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\n    return 1;\n=======\n"
                                 "    return 0;\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     0);
    expect_file(root, "src/a.c", "int main(void)\n{\n    return 0;\n}\n");
    assert_int_equal(mode_of(root, "src/a.c"), 0750);
    assert_int_equal(temps_in(root, "src"), 0);
    drop_tree(root);
}

/* asr_edits_check: the same verdicts as asr_edits_apply, and nothing written either way. */
static void test_check_writes_nothing(void **state)
{
    (void)state;
    char *root = make_tree();
    put(root, "src/a.c", "int x = 1;\nint y = 1;\n", 0644);
    struct asr_edits e = {0};
    struct asr_err err = {0};
    parse_ok("src/a.c\n<<<<<<< SEARCH\nint x = 1;\n=======\nint x = 2;\n>>>>>>> REPLACE\n"
             "src/new.c\n<<<<<<< SEARCH\n=======\nint z;\n>>>>>>> REPLACE\n",
             &e);
    assert_int_equal(asr_edits_check(&e, root, &err), 0);
    expect_file(root, "src/a.c", "int x = 1;\nint y = 1;\n");
    assert_null(get(root, "src/new.c"));
    assert_int_equal(temps_in(root, "src"), 0);
    asr_edits_free(&e);
    parse_ok("src/a.c\n<<<<<<< SEARCH\nint w = 1;\n=======\nint w = 2;\n>>>>>>> REPLACE\n", &e);
    assert_int_not_equal(asr_edits_check(&e, root, &err), 0);
    assert_non_null(strstr(err.msg, "src/a.c"));
    expect_file(root, "src/a.c", "int x = 1;\nint y = 1;\n");
    asr_edits_free(&e);
    drop_tree(root);
}

static void test_apply_exactly_once(void **state)
{
    (void)state;
    char *root = make_tree();
    const char *orig = "a();\nx = 1;\nb();\nx = 1;\nc();\nx = 1;\nfoo x = 2;\n";
    put(root, "src/a.c", orig, 0644);
    char msg[512];
    assert_int_equal(
        apply_reply("src/a.c\n<<<<<<< SEARCH\nx = 1;\n=======\nx = 3;\n>>>>>>> REPLACE\n", root,
                    msg, sizeof(msg)),
        ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/a.c, line 2): SEARCH occurs 3 times (lines 2, "
                             "4, 6...); it must occur exactly once, so include more surrounding "
                             "lines");
    assert_int_equal(
        apply_reply("src/a.c\n<<<<<<< SEARCH\nx = 1;\nb();\n=======\nx = 3;\n>>>>>>> REPLACE\n"
                    "src/a.c\n<<<<<<< SEARCH\nx = 1;\n=======\nx = 3;\n>>>>>>> REPLACE\n",
                    root, msg, sizeof(msg)),
        ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 2 (src/a.c, line 9): SEARCH occurs 2 times (lines 3 "
                             "and 5); it must occur exactly once, so include more surrounding "
                             "lines");
    assert_int_equal(
        apply_reply("src/a.c\n<<<<<<< SEARCH\nd();\n=======\nx = 3;\n>>>>>>> REPLACE\n", root, msg,
                    sizeof(msg)),
        ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/a.c, line 2): SEARCH not found in the file");
    /* A match inside a line does not count: "x = 2;" only occurs after "foo ". */
    assert_int_equal(
        apply_reply("src/a.c\n<<<<<<< SEARCH\nx = 2;\n=======\nx = 3;\n>>>>>>> REPLACE\n", root,
                    msg, sizeof(msg)),
        ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/a.c, line 2): SEARCH not found in the file");
    expect_file(root, "src/a.c", orig);
    drop_tree(root);
}

/* The whitespace-tolerant match (issue 5): when SEARCH does not occur exactly, the one place
 * where its lines equal the file's with leading and trailing blanks ignored and inner runs of
 * blanks equal. It replaced the old "it matches at line N if whitespace is ignored" hint. */
static void test_apply_whitespace_tolerant(void **state)
{
    (void)state;
    char *root = make_tree();
    const char *orig = "int f(void)\n{\n    int x = 1;  \n    return x;\n}\n";
    put(root, "src/a.c", orig, 0644);
    char msg[512];
    /* Trailing blanks in the file only. */
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\n    int x = 1;\n    return x;\n"
                                 "=======\n    return 1;\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     0);
    expect_file(root, "src/a.c", "int f(void)\n{\n    return 1;\n}\n");
    /* Other indentation (tabs for spaces) and inner runs of blanks. */
    put(root, "src/a.c", orig, 0644);
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\n\tint   x\t= 1;\n\treturn x;\n"
                                 "=======\n    return 2;\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     0);
    expect_file(root, "src/a.c", "int f(void)\n{\n    return 2;\n}\n");
    /* Never fuzzy: one character off, a blank that is not there, a missing blank line. */
    put(root, "src/a.c", orig, 0644);
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\n  int x = 2;\n  return x;\n"
                                 "=======\n    return 1;\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/a.c, line 2): SEARCH not found in the file");
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\nint x=1;\n=======\nint x;\n"
                                 ">>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/a.c, line 2): SEARCH not found in the file");
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\n{\n\n  int x = 1;\n=======\nx\n"
                                 ">>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/a.c, line 2): SEARCH not found in the file");
    expect_file(root, "src/a.c", orig);
    drop_tree(root);
}

/* The tolerant match must be unique too, and an exact match always wins over it. */
static void test_apply_whitespace_tolerant_unique(void **state)
{
    (void)state;
    char *root = make_tree();
    const char *orig = "if (a)\n  x = 1;\nif (b)\n\tx  =  1;\nif (c)\n    x = 1;\n";
    put(root, "src/a.c", orig, 0644);
    char msg[512];
    /* Exactly once as written ("    x = 1;" at line 6), although three lines match loosely. */
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\n    x = 1;\n=======\n    x = 3;\n"
                                 ">>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     0);
    expect_file(root, "src/a.c", "if (a)\n  x = 1;\nif (b)\n\tx  =  1;\nif (c)\n    x = 3;\n");
    put(root, "src/a.c", orig, 0644);
    /* Not exactly, and three times loosely (lines 2, 4 and 6). */
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\n x = 1;\n=======\nx = 3;\n"
                                 ">>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/a.c, line 2): SEARCH not found exactly, and with "
                             "whitespace ignored it occurs 3 times (lines 2, 4, 6...); it must "
                             "occur exactly once, so include more surrounding lines");
    /* More lines make it unique. */
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\nif (b)\n x = 1;\n=======\nif (b)\n"
                                 "\tx = 2;\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     0);
    expect_file(root, "src/a.c", "if (a)\n  x = 1;\nif (b)\n\tx = 2;\nif (c)\n    x = 1;\n");
    drop_tree(root);
}

/* The buffer-level core: CRLF files, files without a final newline, creates, text only. */
static void test_apply_buffer(void **state)
{
    (void)state;
    struct asr_edits e = {0};
    struct asr_err err = {0};
    char *out = NULL;
    size_t n = 0;
    assert_int_equal(asr_edits_add(&e, "a.c", "  b  c\n", 7, "B\n", 2, 1, &err), 0);
    assert_int_equal(asr_edits_add(&e, "other.c", "x\n", 2, "y\n", 2, 2, &err), 0);
    /* CRLF, the tolerant match on the last line that has no final newline. */
    const char *crlf = "a\r\nb \t c \r\nlast";
    assert_int_equal(asr_edits_apply_buffer(&e, "a.c", crlf, strlen(crlf), &out, &n, &err), 0);
    assert_string_equal(out, "a\r\nB\r\nlast");
    assert_int_equal(n, strlen(out));
    free(out);
    const char *nonl = "a\nb c";
    assert_int_equal(asr_edits_apply_buffer(&e, "a.c", nonl, strlen(nonl), &out, &n, &err), 0);
    assert_string_equal(out, "a\nB");
    free(out);
    /* A binary file, a missing file, a path no edit names. */
    assert_int_equal(asr_edits_apply_buffer(&e, "a.c", "b c\n\0x", 6, &out, &n, &err), ASR_EINVAL);
    assert_string_equal(err.msg, "edits: a.c: a binary file (NUL byte at offset 4); only text "
                                 "files are edited");
    assert_null(out);
    assert_int_equal(asr_edits_apply_buffer(&e, "a.c", NULL, 0, &out, &n, &err), ASR_ENOENT);
    assert_string_equal(err.msg, "edits: edit 1 (a.c, line 1): no such file");
    assert_int_equal(asr_edits_apply_buffer(&e, "b.c", "x\n", 2, &out, &n, &err), ASR_EINVAL);
    assert_string_equal(err.msg, "edits: no edit names b.c");
    /* Invalid UTF-8 in the result (here: already in the file). */
    assert_int_equal(asr_edits_apply_buffer(&e, "a.c", "\xff\nb c\n", 6, &out, &n, &err),
                     ASR_EINVAL);
    assert_string_equal(err.msg, "edits: a.c: the result is not valid UTF-8 (at offset 0); only "
                                 "text is written");
    asr_edits_free(&e);
    /* A create. */
    assert_int_equal(asr_edits_add(&e, "new.c", "", 0, "int z;\n", 7, 1, &err), 0);
    assert_int_equal(asr_edits_apply_buffer(&e, "new.c", NULL, 0, &out, &n, &err), 0);
    assert_string_equal(out, "int z;\n");
    free(out);
    assert_int_equal(asr_edits_apply_buffer(&e, "new.c", "x\n", 2, &out, &n, &err), ASR_EINVAL);
    asr_edits_free(&e);
}

static void test_apply_same_file_in_order(void **state)
{
    (void)state;
    char *root = make_tree();
    put(root, "src/a.c", "one\ntwo\nthree\n", 0644);
    char msg[512];
    /* The second edit matches only what the first one wrote. */
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\ntwo\n=======\nTWO\n>>>>>>> REPLACE\n"
                                 "src/a.c\n<<<<<<< SEARCH\nTWO\nthree\n=======\n2\n3\n"
                                 ">>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     0);
    expect_file(root, "src/a.c", "one\n2\n3\n");
    drop_tree(root);
}

static void test_apply_all_or_nothing(void **state)
{
    (void)state;
    char *root = make_tree();
    put(root, "src/a.c", "alpha\n", 0644);
    put(root, "src/b.c", "beta\n", 0644);
    char msg[512];
    assert_int_equal(
        apply_reply("src/a.c\n<<<<<<< SEARCH\nalpha\n=======\nALPHA\n>>>>>>> REPLACE\n"
                    "src/b.c\n<<<<<<< SEARCH\ngamma\n=======\nGAMMA\n>>>>>>> REPLACE\n",
                    root, msg, sizeof(msg)),
        ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 2 (src/b.c, line 8): SEARCH not found in the file");
    expect_file(root, "src/a.c", "alpha\n");
    expect_file(root, "src/b.c", "beta\n");
    assert_int_equal(temps_in(root, "src"), 0);
    /* A write that fails (here: the temp name of the second file is taken) leaves both files as
     * they were and no temp file of its own behind. */
    char taken[4096];
    snprintf(taken, sizeof(taken), "%s/src/.asr-edit.%ld.1", root, (long)getpid());
    assert_int_equal(mkdir(taken, 0755), 0);
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\nalpha\n=======\nALPHA\n>>>>>>> REPLACE\n"
                                 "src/b.c\n<<<<<<< SEARCH\nbeta\n=======\nBETA\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_EIO);
    assert_string_equal(msg, "edits: src/b.c: cannot write a temp file: File exists");
    expect_file(root, "src/a.c", "alpha\n");
    expect_file(root, "src/b.c", "beta\n");
    assert_int_equal(temps_in(root, "src"), 1); /* only the directory made above */
    assert_int_equal(rmdir(taken), 0);
    drop_tree(root);
}

static void test_apply_symlink_escape(void **state)
{
    (void)state;
    char *root = make_tree();
    char *outside = make_tree();
    put(outside, "passwd", "root:x:0:0\n", 0644);
    put(root, "src/a.c", "x\n", 0644);
    char link[4096], target[4096];
    snprintf(link, sizeof(link), "%s/src/link", root);
    assert_int_equal(symlink(outside, link), 0);
    snprintf(link, sizeof(link), "%s/src/pw", root);
    snprintf(target, sizeof(target), "%s/passwd", outside);
    assert_int_equal(symlink(target, link), 0);
    char msg[512];
    /* A directory symlink in the middle of the path. */
    assert_int_equal(apply_reply("src/link/passwd\n<<<<<<< SEARCH\nroot:x:0:0\n=======\n"
                                 "root::0:0\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/link/passwd): directory 'src/link' is a symlink "
                             "(refused)");
    /* A symlink as the file itself. */
    assert_int_equal(apply_reply("src/pw\n<<<<<<< SEARCH\nroot:x:0:0\n=======\nroot::0:0\n"
                                 ">>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/pw): the file is a symlink (refused)");
    /* Creating through a symlinked directory. */
    assert_int_equal(apply_reply("src/link/new\n<<<<<<< SEARCH\n=======\nowned\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/link/new): directory 'src/link' is a symlink "
                             "(refused)");
    /* Creating over an existing symlink. */
    assert_int_equal(apply_reply("src/pw\n<<<<<<< SEARCH\n=======\nowned\n>>>>>>> REPLACE\n", root,
                                 msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/pw): the file is a symlink (refused)");
    /* A hostile path that slipped past the path check is refused by apply too. */
    struct asr_edits e = {0};
    struct asr_err err = {0};
    assert_int_equal(asr_edits_add(&e, "src/../../x", "a", 1, "b", 1, 3, &err), 0);
    assert_int_equal(asr_edits_apply(&e, root, &err), ASR_EINVAL);
    assert_string_equal(err.msg, "edits: edit 1 (line 3): path 'src/../../x' has a '..' component");
    asr_edits_free(&e);
    expect_file(outside, "passwd", "root:x:0:0\n");
    char *none = get(outside, "new");
    assert_null(none);
    drop_tree(root);
    drop_tree(outside);
}

static void test_apply_not_regular(void **state)
{
    (void)state;
    char *root = make_tree();
    put(root, "src/a.c", "x\n", 0644);
    char fifo[4096];
    snprintf(fifo, sizeof(fifo), "%s/src/fifo", root);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    char msg[512];
    assert_int_equal(apply_reply("src/fifo\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", root,
                                 msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/fifo): not a regular file");
    assert_int_equal(apply_reply("src/a.c/b\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/a.c/b): directory 'src/a.c' is not a directory");
    drop_tree(root);
}

static void test_apply_crlf_and_final_newline(void **state)
{
    (void)state;
    char *root = make_tree();
    put(root, "src/win.c", "a\r\nb\r\nc\r\n", 0644);
    put(root, "src/nonl.c", "a\nb\nlast", 0644);
    put(root, "src/winnonl.c", "a\r\nlast", 0644);
    char msg[512];
    /* A CRLF reply editing a CRLF file and two files without a final newline. */
    assert_int_equal(apply_reply("src/win.c\r\n<<<<<<< SEARCH\r\nb\r\n=======\r\nB\r\nB2\r\n"
                                 ">>>>>>> REPLACE\r\n"
                                 "src/nonl.c\n<<<<<<< SEARCH\nlast\n=======\nLAST\n"
                                 ">>>>>>> REPLACE\n"
                                 "src/winnonl.c\n<<<<<<< SEARCH\na\nlast\n=======\nA\nLAST\n"
                                 ">>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     0);
    expect_file(root, "src/win.c", "a\r\nB\r\nB2\r\nc\r\n");
    expect_file(root, "src/nonl.c", "a\nb\nLAST");
    expect_file(root, "src/winnonl.c", "A\r\nLAST");
    drop_tree(root);
}

static void test_apply_create(void **state)
{
    (void)state;
    char *root = make_tree();
    put(root, "src/a.c", "x\n", 0644);
    char msg[512];
    assert_int_equal(apply_reply("src/new.h\n<<<<<<< SEARCH\n=======\n#pragma once\n"
                                 ">>>>>>> REPLACE\n"
                                 "src/new.h\n<<<<<<< SEARCH\n#pragma once\n=======\n"
                                 "#pragma once\nint f(void);\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     0);
    expect_file(root, "src/new.h", "#pragma once\nint f(void);\n");
    assert_int_equal(mode_of(root, "src/new.h"), 0644);
    assert_int_equal(apply_reply("src/a.c\n<<<<<<< SEARCH\n=======\ny\n>>>>>>> REPLACE\n", root,
                                 msg, sizeof(msg)),
                     ASR_EINVAL);
    assert_string_equal(msg, "edits: edit 1 (src/a.c, line 2): creates a file that already exists");
    assert_int_equal(apply_reply("src/no/dir.c\n<<<<<<< SEARCH\n=======\ny\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_ENOENT);
    assert_string_equal(msg, "edits: edit 1 (src/no/dir.c): directory 'src/no' does not exist");
    assert_int_equal(apply_reply("src/gone.c\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_ENOENT);
    assert_string_equal(msg, "edits: edit 1 (src/gone.c, line 2): no such file");
    expect_file(root, "src/a.c", "x\n");
    drop_tree(root);
}

static void test_apply_diff(void **state)
{
    (void)state;
    char *root = make_tree();
    put(root, "src/a.c", "int f(int n)\n{\n    for (int i = 0; i <= n; i++)\n        g(i);\n}\n",
        0644);
    char msg[512];
    assert_int_equal(apply_reply("--- a/src/a.c\n+++ b/src/a.c\n@@ -2,3 +2,3 @@\n {\n"
                                 "-    for (int i = 0; i <= n; i++)\n"
                                 "+    for (int i = 0; i < n; i++)\n"
                                 "         g(i);\n",
                                 root, msg, sizeof(msg)),
                     0);
    expect_file(root, "src/a.c",
                "int f(int n)\n{\n    for (int i = 0; i < n; i++)\n        g(i);\n}\n");
    drop_tree(root);
}

static void test_apply_caps(void **state)
{
    (void)state;
    char *root = make_tree();
    put(root, "src/a.c", "x\n", 0644);
    char path[4096];
    snprintf(path, sizeof(path), "%s/src/big.c", root);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, ASR_EDITS_MAX_FILE + 1), 0);
    close(fd);
    char msg[512];
    assert_int_equal(apply_reply("src/big.c\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n",
                                 root, msg, sizeof(msg)),
                     ASR_ETOOBIG);
    assert_string_equal(msg, "edits: edit 1 (src/big.c): file of 8388609 bytes exceeds the cap "
                             "of 8388608");
    /* A missing tree. */
    struct asr_edits e = {0};
    struct asr_err err = {0};
    assert_int_equal(asr_edits_add(&e, "src/a.c", "x", 1, "y", 1, 1, &err), 0);
    assert_int_equal(asr_edits_apply(&e, "/nonexistent/asr-edits", &err), ASR_ENOENT);
    assert_string_equal(err.msg,
                        "edits: cannot open the tree /nonexistent/asr-edits: No such file or "
                        "directory");
    asr_edits_free(&e);
    drop_tree(root);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_one_block),
        cmocka_unit_test(test_parse_several_blocks_fenced),
        cmocka_unit_test(test_parse_crlf_reply),
        cmocka_unit_test(test_parse_create_block),
        cmocka_unit_test(test_parse_marker_like_lines_are_content),
        cmocka_unit_test(test_parse_malformed_markers),
        cmocka_unit_test(test_parse_malformed_paths),
        cmocka_unit_test(test_parse_malformed_other),
        cmocka_unit_test(test_parse_caps),
        cmocka_unit_test(test_parse_rationale_cleaned),
        cmocka_unit_test(test_parse_diff),
        cmocka_unit_test(test_parse_diff_malformed),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_glob_match),
        cmocka_unit_test(test_check_paths_accept),
        cmocka_unit_test(test_check_paths_refuse),
        cmocka_unit_test(test_apply_basic_keeps_mode),
        cmocka_unit_test(test_check_writes_nothing),
        cmocka_unit_test(test_apply_exactly_once),
        cmocka_unit_test(test_apply_whitespace_tolerant),
        cmocka_unit_test(test_apply_whitespace_tolerant_unique),
        cmocka_unit_test(test_apply_buffer),
        cmocka_unit_test(test_apply_same_file_in_order),
        cmocka_unit_test(test_apply_all_or_nothing),
        cmocka_unit_test(test_apply_symlink_escape),
        cmocka_unit_test(test_apply_not_regular),
        cmocka_unit_test(test_apply_crlf_and_final_newline),
        cmocka_unit_test(test_apply_create),
        cmocka_unit_test(test_apply_diff),
        cmocka_unit_test(test_apply_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
