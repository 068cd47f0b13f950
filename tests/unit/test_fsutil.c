/*
 * test_fsutil.c - paths, directories and atomic writes (include/asr/fsutil.h).
 *
 * Each test works in its own mkdtemp() directory under $TMPDIR (or /tmp) and removes it at the
 * end with asr_rmtree() (whose result is checked too). The rmtree tests put symlinks to a second
 * scratch directory inside the tree: everything behind them must survive.
 */
#include "asr/error.h"
#include "asr/fsutil.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh scratch directory; the caller frees the string and removes the directory. */
static char *scratch(void)
{
    const char *t = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/asr-test-fsutil-XXXXXX", t != NULL && *t ? t : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    char *copy = strdup(d);
    assert_non_null(copy);
    return copy;
}

static char *join(const char *a, const char *b)
{
    char *p = asr_path_join(a, b);
    assert_non_null(p);
    return p;
}

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *data = malloc(1 << 20);
    assert_non_null(data);
    size_t n = fread(data, 1, (1 << 20) - 1, f);
    data[n] = '\0';
    fclose(f);
    if (len != NULL)
        *len = n;
    return data;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void test_path_join(void **state)
{
    (void)state;
    char *p = join("a", "b");
    assert_string_equal(p, "a/b");
    free(p);
    p = join("/srv/app/", "data");
    assert_string_equal(p, "/srv/app/data");
    free(p);
    p = join("/srv/app", "");
    assert_string_equal(p, "/srv/app");
    free(p);
    p = join("/", "etc");
    assert_string_equal(p, "/etc");
    free(p);
    p = join("x/y", "z/w.txt");
    assert_string_equal(p, "x/y/z/w.txt");
    free(p);
}

static void test_mkdirs_nested_and_existing(void **state)
{
    (void)state;
    umask(022);
    char *root = scratch();
    char *deep = join(root, "a/b/c/d");
    assert_int_equal(asr_mkdirs(deep, 0755), 0);
    assert_true(asr_is_dir(deep));
    char *mid = join(root, "a/b");
    assert_true(asr_is_dir(mid));
    struct stat st;
    assert_int_equal(stat(mid, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755);
    /* Existing: again the whole path, and a prefix of it. */
    assert_int_equal(asr_mkdirs(deep, 0755), 0);
    assert_int_equal(asr_mkdirs(mid, 0755), 0);
    assert_int_equal(asr_mkdirs(root, 0755), 0);
    /* A trailing slash is fine. */
    char *slash = join(root, "e/f/");
    assert_int_equal(asr_mkdirs(slash, 0700), 0);
    char *f = join(root, "e/f");
    assert_true(asr_is_dir(f));
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    assert_int_equal(asr_rmtree(root), 0);
    assert_false(exists(root));
    free(f);
    free(slash);
    free(mid);
    free(deep);
    free(root);
}

static void test_mkdirs_errors(void **state)
{
    (void)state;
    char *root = scratch();
    /* A file where a directory should be. */
    char *file = join(root, "file");
    put_file(file, "x");
    assert_int_equal(asr_mkdirs(file, 0755), ASR_EIO);
    char *under = join(root, "file/sub");
    assert_int_equal(asr_mkdirs(under, 0755), ASR_EIO);
    assert_false(asr_is_dir(file));
    /* Empty and over-long paths. */
    assert_int_equal(asr_mkdirs("", 0755), ASR_EINVAL);
    char *longp = malloc(5000);
    assert_non_null(longp);
    memset(longp, 'a', 4999);
    longp[0] = '/';
    longp[4999] = '\0';
    assert_int_equal(asr_mkdirs(longp, 0755), ASR_EINVAL);
    free(longp);
    assert_int_equal(asr_rmtree(root), 0);
    free(under);
    free(file);
    free(root);
}

static void test_is_dir(void **state)
{
    (void)state;
    char *root = scratch();
    char *file = join(root, "f");
    put_file(file, "");
    assert_true(asr_is_dir(root));
    assert_false(asr_is_dir(file));
    char *missing = join(root, "missing");
    assert_false(asr_is_dir(missing));
    assert_int_equal(asr_rmtree(root), 0);
    free(missing);
    free(file);
    free(root);
}

static void test_rmtree_nested_with_outside_symlink(void **state)
{
    (void)state;
    char *root = scratch();
    char *outside = scratch();
    char *keep = join(outside, "keep.txt");
    put_file(keep, "precious");
    char *keepdir = join(outside, "keepdir");
    assert_int_equal(mkdir(keepdir, 0755), 0);

    char *tree = join(root, "tree");
    char *deep = join(tree, "x/y/z");
    assert_int_equal(asr_mkdirs(deep, 0755), 0);
    char *f1 = join(tree, "top.txt");
    char *f2 = join(tree, "x/y/mid.txt");
    char *f3 = join(deep, "leaf.txt");
    put_file(f1, "1");
    put_file(f2, "2");
    put_file(f3, "3");
    /* A symlink to a directory outside the tree, one to a file outside, and a dangling one. */
    char *link_dir = join(tree, "x/out");
    char *link_file = join(deep, "keep-link");
    char *dangling = join(tree, "dangling");
    assert_int_equal(symlink(outside, link_dir), 0);
    assert_int_equal(symlink(keep, link_file), 0);
    assert_int_equal(symlink("/nonexistent/asr-test", dangling), 0);
    /* A read-only (empty) directory is still removable: its parent is writable. */
    char *ro = join(tree, "ro");
    assert_int_equal(mkdir(ro, 0555), 0);

    assert_int_equal(asr_rmtree(tree), 0);
    assert_false(exists(tree));
    /* Everything outside survived. */
    assert_true(asr_is_dir(outside));
    assert_true(asr_is_dir(keepdir));
    char *content = slurp(keep, NULL);
    assert_string_equal(content, "precious");
    free(content);
    assert_int_equal(count_entries(outside), 2);
    assert_int_equal(count_entries(root), 0);

    assert_int_equal(asr_rmtree(root), 0);
    assert_int_equal(asr_rmtree(outside), 0);
    assert_false(exists(outside));
    free(ro);
    free(dangling);
    free(link_file);
    free(link_dir);
    free(f3);
    free(f2);
    free(f1);
    free(deep);
    free(tree);
    free(keepdir);
    free(keep);
    free(outside);
    free(root);
}

static void test_rmtree_symlink_root_and_file_and_missing(void **state)
{
    (void)state;
    char *root = scratch();
    char *outside = scratch();
    char *keep = join(outside, "k");
    put_file(keep, "k");
    /* The path itself is a symlink to a directory: the link goes, the target stays. */
    char *link = join(root, "link");
    assert_int_equal(symlink(outside, link), 0);
    assert_int_equal(asr_rmtree(link), 0);
    assert_false(exists(link));
    assert_true(exists(keep));
    /* A plain file. */
    char *file = join(root, "file");
    put_file(file, "x");
    assert_int_equal(asr_rmtree(file), 0);
    assert_false(exists(file));
    /* Missing is success. */
    char *missing = join(root, "no/such/path");
    assert_int_equal(asr_rmtree(missing), 0);
    assert_int_equal(asr_rmtree(root), 0);
    assert_int_equal(asr_rmtree(outside), 0);
    free(missing);
    free(file);
    free(link);
    free(keep);
    free(outside);
    free(root);
}

static void test_write_file_atomic(void **state)
{
    (void)state;
    umask(022);
    char *root = scratch();
    char *path = join(root, "state.json");
    const char *v1 = "{\"version\": 1, \"long\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n";
    assert_int_equal(asr_write_file_atomic(path, v1, strlen(v1), 0600), 0);
    size_t len;
    char *got = slurp(path, &len);
    assert_int_equal(len, strlen(v1));
    assert_string_equal(got, v1);
    free(got);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(S_ISREG(st.st_mode));

    /* Replacing with shorter content leaves no trace of the old, and takes the new mode. */
    const char *v2 = "{\"v\":2}";
    assert_int_equal(asr_write_file_atomic(path, v2, strlen(v2), 0644), 0);
    got = slurp(path, &len);
    assert_int_equal(len, strlen(v2));
    assert_string_equal(got, v2);
    free(got);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    /* No temporary file is left behind. */
    assert_int_equal(count_entries(root), 1);

    /* Binary data with NULs, and an empty file. */
    const char bin[] = {'a', '\0', 'b', '\n', '\0'};
    char *bpath = join(root, "bin");
    assert_int_equal(asr_write_file_atomic(bpath, bin, sizeof(bin), 0640), 0);
    got = slurp(bpath, &len);
    assert_int_equal(len, sizeof(bin));
    assert_memory_equal(got, bin, sizeof(bin));
    free(got);
    assert_int_equal(stat(bpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    char *epath = join(root, "empty");
    assert_int_equal(asr_write_file_atomic(epath, "", 0, 0644), 0);
    assert_int_equal(stat(epath, &st), 0);
    assert_int_equal(st.st_size, 0);

    /* A large payload (several write() calls' worth on some systems). */
    size_t big_len = 3u << 20;
    char *big = malloc(big_len);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)(i * 31u);
    char *bigpath = join(root, "big");
    assert_int_equal(asr_write_file_atomic(bigpath, big, big_len, 0644), 0);
    assert_int_equal(stat(bigpath, &st), 0);
    assert_int_equal(st.st_size, (off_t)big_len);
    FILE *f = fopen(bigpath, "rb");
    assert_non_null(f);
    char *back = malloc(big_len);
    assert_non_null(back);
    assert_int_equal(fread(back, 1, big_len, f), big_len);
    fclose(f);
    assert_memory_equal(back, big, big_len);
    free(back);
    free(big);

    assert_int_equal(count_entries(root), 4);
    assert_int_equal(asr_rmtree(root), 0);
    free(bigpath);
    free(epath);
    free(bpath);
    free(path);
    free(root);
}

static void test_write_file_atomic_errors(void **state)
{
    (void)state;
    char *root = scratch();
    char *missing_dir = join(root, "no/such/dir/file");
    assert_int_equal(asr_write_file_atomic(missing_dir, "x", 1, 0644), ASR_EIO);
    /* Target is a directory: rename fails, and the temp file is cleaned up. */
    char *dir = join(root, "adir");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(asr_write_file_atomic(dir, "x", 1, 0644), ASR_EIO);
    assert_true(asr_is_dir(dir));
    assert_int_equal(count_entries(root), 1);
    assert_int_equal(asr_rmtree(root), 0);
    free(dir);
    free(missing_dir);
    free(root);
}

int main(int argc, char **argv)
{
    /* ctest runs each case in its own process: argv[1] names it. */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_join),
        cmocka_unit_test(test_mkdirs_nested_and_existing),
        cmocka_unit_test(test_mkdirs_errors),
        cmocka_unit_test(test_is_dir),
        cmocka_unit_test(test_rmtree_nested_with_outside_symlink),
        cmocka_unit_test(test_rmtree_symlink_root_and_file_and_missing),
        cmocka_unit_test(test_write_file_atomic),
        cmocka_unit_test(test_write_file_atomic_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
