/*
 * test_tail.c - following a log file (src/detect/tail.h, src/detect/tail.c).
 *
 * Every test writes real files in its own temporary directory under /tmp and runs a real uv
 * loop: appends, a line completed by a later write, rename rotation with writes to the old and
 * the new file, copy-truncate, a path (and its directory) that appears later, resuming from a
 * saved position (same file, truncated file, file rotated to PATH.1 with an unread remainder),
 * from_end, asr_tail_stop from inside on_line, inotify without the poll fallback, and a 20 MB
 * backlog that must arrive whole, in order, without holding the loop. Each test ends by
 * stopping the tail and checking that the loop closes with no handle left.
 */
#include "asr/error.h"
#include "asr/timeutil.h"
#include "detect/tail.h"

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
#include <time.h>
#include <unistd.h>

#define MAX_KEEP 64 /* lines kept as text; a backlog only counts and checks order */

/* What the callbacks saw. */
struct seen {
    size_t nlines;
    char *lines[MAX_KEEP];
    struct asr_tail_pos pos[MAX_KEEP];
    bool cut[MAX_KEEP];
    int events[16];
    size_t nevents;
    char last_event[512];
    /* Backlog mode: lines are "<n> ..." and must come as 0, 1, 2, ... */
    bool numbered;
    long next_number;
    bool out_of_order;
    struct asr_tail_pos last_pos;
    /* Stop the tail from inside on_line once this many lines have come (0: never). */
    size_t stop_after;
    struct asr_tail *tail;
};

static void on_line(void *data, const char *line, size_t len, bool cut,
                    const struct asr_tail_pos *pos)
{
    struct seen *s = data;
    assert_null(memchr(line, '\n', len));
    if (s->numbered) {
        if (strtol(line, NULL, 10) != s->next_number)
            s->out_of_order = true;
        s->next_number++;
    } else if (s->nlines < MAX_KEEP) {
        s->lines[s->nlines] = strndup(line, len);
        s->pos[s->nlines] = *pos;
        s->cut[s->nlines] = cut;
    }
    s->last_pos = *pos;
    s->nlines++;
    if (s->stop_after > 0 && s->nlines == s->stop_after) {
        asr_tail_stop(s->tail);
        s->tail = NULL;
    }
}

static void on_event(void *data, enum asr_tail_event ev, const char *detail)
{
    struct seen *s = data;
    if (s->nevents < sizeof(s->events) / sizeof(s->events[0]))
        s->events[s->nevents++] = (int)ev;
    snprintf(s->last_event, sizeof(s->last_event), "%s", detail);
}

static bool saw_event(const struct seen *s, enum asr_tail_event ev)
{
    for (size_t i = 0; i < s->nevents; i++)
        if (s->events[i] == (int)ev)
            return true;
    return false;
}

static void seen_free(struct seen *s)
{
    for (size_t i = 0; i < s->nlines && i < MAX_KEEP; i++)
        free(s->lines[i]);
}

/* A fresh directory under /tmp, removed (with its files) by rm_dir. */
static char *make_dir(void)
{
    char tmpl[] = "/tmp/asr-test-tail-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void rm_dir(char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_dir(strdup(p));
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
    free(dir);
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

/* Appends s to path (creating it). */
static void append(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    write_all(fd, s, strlen(s));
    close(fd);
}

static struct asr_tail_pos identity(const char *path, uint64_t offset)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    struct asr_tail_pos p = {(uint64_t)st.st_dev, (uint64_t)st.st_ino, offset};
    return p;
}

static void guard_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop for ms milliseconds. */
static void run_for(uv_loop_t *loop, int ms)
{
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, guard_cb, (uint64_t)ms, 0);
    while (!expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Runs the loop until s has at least n lines or ms have passed; returns whether it has. */
static bool wait_lines(uv_loop_t *loop, const struct seen *s, size_t n, int ms)
{
    uint64_t deadline = asr_time_mono_ms() + (uint64_t)ms;
    while (s->nlines < n && asr_time_mono_ms() < deadline)
        run_for(loop, 5);
    return s->nlines >= n;
}

static struct asr_tail *start(uv_loop_t *loop, struct asr_tail_opts *o, const char *path,
                              struct seen *s)
{
    o->path = path;
    o->on_line = on_line;
    o->on_event = on_event;
    o->data = s;
    if (o->poll_ms == 0)
        o->poll_ms = 50;
    struct asr_tail *t = NULL;
    struct asr_err err = {0};
    int rc = asr_tail_start(loop, o, &t, &err);
    if (rc != 0)
        fail_msg("asr_tail_start(%s) = %d: %s", path, rc, err.msg);
    s->tail = t;
    return t;
}

/* Stops the tail (if on_line has not) and closes the loop: fails if a handle was left. */
static void finish(uv_loop_t *loop, struct seen *s)
{
    asr_tail_stop(s->tail);
    s->tail = NULL;
    for (int i = 0; i < 100 && uv_loop_alive(loop); i++)
        uv_run(loop, UV_RUN_NOWAIT);
    if (uv_loop_alive(loop))
        fail_msg("the loop still has active handles after asr_tail_stop");
    assert_int_equal(uv_loop_close(loop), 0);
}

static void expect_lines(const struct seen *s, const char *const *want, size_t n)
{
    if (s->nlines != n)
        fail_msg("%zu lines, wanted %zu (first: %s)", s->nlines, n, s->nlines ? s->lines[0] : "-");
    for (size_t i = 0; i < n; i++)
        assert_string_equal(s->lines[i], want[i]);
}

static void test_start_args(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct asr_tail *t = (struct asr_tail *)&loop;
    struct asr_err err = {0};
    struct asr_tail_opts o = {.on_line = on_line};
    assert_int_equal(asr_tail_start(&loop, &o, &t, &err), ASR_EINVAL);
    assert_null(t);
    o.path = "";
    assert_int_equal(asr_tail_start(&loop, &o, &t, &err), ASR_EINVAL);
    o.path = "/tmp/dir/";
    assert_int_equal(asr_tail_start(&loop, &o, &t, &err), ASR_EINVAL);
    assert_non_null(strstr(err.msg, "/tmp/dir/"));
    o.path = "/tmp/x.log";
    o.on_line = NULL;
    assert_int_equal(asr_tail_start(&loop, &o, &t, &err), ASR_EINVAL);
    asr_tail_stop(NULL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_append_and_read(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    append(path, "first\nsecond\r\n");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    struct asr_tail_opts o = {0};
    struct asr_tail *t = start(&loop, &o, path, &s);
    assert_int_equal(s.nlines, 0); /* the first read happens on the loop */
    assert_true(wait_lines(&loop, &s, 2, 2000));
    append(path, "third\n");
    assert_true(wait_lines(&loop, &s, 3, 2000));
    const char *want[] = {"first", "second", "third"};
    expect_lines(&s, want, 3);
    struct asr_tail_pos id = identity(path, 0);
    assert_int_equal(s.pos[0].ino, id.ino);
    assert_int_equal(s.pos[0].dev, id.dev);
    assert_int_equal(s.pos[0].offset, 6);
    assert_int_equal(s.pos[1].offset, 14);
    assert_int_equal(s.pos[2].offset, 20);
    struct asr_tail_pos p;
    asr_tail_position(t, &p);
    assert_int_equal(p.offset, 20);
    assert_int_equal(p.ino, id.ino);
    assert_true(saw_event(&s, ASR_TAIL_OPENED));
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    rm_dir(dir);
}

static void test_partial_line_completed_later(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    append(path, "done\nhal");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    struct asr_tail_opts o = {0};
    struct asr_tail *t = start(&loop, &o, path, &s);
    assert_true(wait_lines(&loop, &s, 1, 2000));
    run_for(&loop, 200);
    assert_int_equal(s.nlines, 1); /* "hal" is not a line yet */
    struct asr_tail_pos p;
    asr_tail_position(t, &p);
    assert_int_equal(p.offset, 5); /* a resume would read "hal" again */
    append(path, "f a line\n");
    assert_true(wait_lines(&loop, &s, 2, 2000));
    const char *want[] = {"done", "half a line"};
    expect_lines(&s, want, 2);
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    rm_dir(dir);
}

static void test_rename_rotation(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    char *old = join(dir, "app.log.1");
    append(path, "1\n2\n");
    int wfd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    assert_true(wfd >= 0);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    struct asr_tail_opts o = {0};
    start(&loop, &o, path, &s);
    assert_true(wait_lines(&loop, &s, 2, 2000));
    uint64_t old_ino = identity(path, 0).ino;
    /* logrotate renames; the service still writes to the old file for a while. */
    write_all(wfd, "3\npart", 6);
    assert_int_equal(rename(path, old), 0);
    write_all(wfd, "ial\n4\n", 6);
    assert_true(wait_lines(&loop, &s, 5, 2000));
    assert_true(saw_event(&s, ASR_TAIL_MISSING));
    /* A last line without a newline, then the service reopens its log. */
    write_all(wfd, "5", 1);
    run_for(&loop, 100);
    close(wfd);
    append(path, "new 1\nnew 2\n");
    assert_true(wait_lines(&loop, &s, 8, 2000));
    const char *want[] = {"1", "2", "3", "partial", "4", "5", "new 1", "new 2"};
    expect_lines(&s, want, 8);
    assert_true(saw_event(&s, ASR_TAIL_ROTATED));
    /* The old file's lines carry its identity; the new file's start again at 0. */
    assert_int_equal(s.pos[5].ino, old_ino);
    assert_int_equal(s.pos[5].offset, 17);
    assert_int_not_equal(s.pos[6].ino, old_ino);
    assert_int_equal(s.pos[6].offset, 6);
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    free(old);
    rm_dir(dir);
}

static void test_rotation_between_reads(void **state)
{
    (void)state;
    /* Everything happens while the loop does not run: the old file is still read to its end
     * before the new one is opened. */
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    char *old = join(dir, "app.log.1");
    append(path, "a\n");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    struct asr_tail_opts o = {0};
    start(&loop, &o, path, &s);
    assert_true(wait_lines(&loop, &s, 1, 2000));
    append(path, "b\nc");
    assert_int_equal(rename(path, old), 0);
    append(path, "d\n");
    assert_true(wait_lines(&loop, &s, 4, 2000));
    const char *want[] = {"a", "b", "c", "d"};
    expect_lines(&s, want, 4);
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    free(old);
    rm_dir(dir);
}

static void test_copy_truncate(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    append(path, "before one\nbefore two\n");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    struct asr_tail_opts o = {0};
    start(&loop, &o, path, &s);
    assert_true(wait_lines(&loop, &s, 2, 2000));
    /* logrotate copytruncate: the same inode is cut to 0, then the service goes on. */
    assert_int_equal(truncate(path, 0), 0);
    append(path, "after\n");
    assert_true(wait_lines(&loop, &s, 3, 2000));
    const char *want[] = {"before one", "before two", "after"};
    expect_lines(&s, want, 3);
    assert_true(saw_event(&s, ASR_TAIL_TRUNCATED));
    assert_int_equal(s.pos[2].offset, 6);
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    rm_dir(dir);
}

static void test_missing_then_created(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *sub = join(dir, "logs");
    char *path = join(sub, "app.log");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    /* from_end only concerns a file that exists at the start: one that appears later is
     * read from its beginning. Even its directory is missing at first. */
    struct asr_tail_opts o = {.from_end = true};
    start(&loop, &o, path, &s);
    run_for(&loop, 150);
    assert_int_equal(s.nlines, 0);
    assert_true(saw_event(&s, ASR_TAIL_MISSING));
    assert_int_equal(mkdir(sub, 0755), 0);
    run_for(&loop, 150);
    append(path, "x\ny\n");
    assert_true(wait_lines(&loop, &s, 2, 2000));
    const char *want[] = {"x", "y"};
    expect_lines(&s, want, 2);
    /* Deleted and created again: the new file is read from 0. */
    assert_int_equal(unlink(path), 0);
    run_for(&loop, 150);
    append(path, "z\n");
    assert_true(wait_lines(&loop, &s, 3, 2000));
    assert_string_equal(s.lines[2], "z");
    assert_int_equal(s.pos[2].offset, 2);
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    free(sub);
    rm_dir(dir);
}

static void test_resume_same_file(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    append(path, "l1\nl2\nl3\n");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    struct asr_tail_opts o = {.start = identity(path, 3), .from_end = true};
    struct asr_tail *t = start(&loop, &o, path, &s);
    struct asr_tail_pos p;
    asr_tail_position(t, &p); /* before any read: the saved position */
    assert_int_equal(p.offset, 3);
    assert_true(wait_lines(&loop, &s, 2, 2000));
    run_for(&loop, 100);
    const char *want[] = {"l2", "l3"};
    expect_lines(&s, want, 2);
    assert_int_equal(s.pos[1].offset, 9);
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    rm_dir(dir);
}

static void test_resume_truncated_file(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    append(path, "l1\nl2\n");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    /* Saved at 100, but the file is 6 bytes long: it was truncated meanwhile. */
    struct asr_tail_opts o = {.start = identity(path, 100)};
    start(&loop, &o, path, &s);
    assert_true(wait_lines(&loop, &s, 2, 2000));
    run_for(&loop, 100);
    const char *want[] = {"l1", "l2"};
    expect_lines(&s, want, 2);
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    rm_dir(dir);
}

static void test_resume_rotated_to_path_1(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    char *old = join(dir, "app.log.1");
    append(path, "l1\nl2\nl3\nl4");
    struct asr_tail_pos saved = identity(path, 3); /* l1 was taken before the restart */
    /* While asr was down: rotated, and the service wrote to the new file. */
    assert_int_equal(rename(path, old), 0);
    append(path, "n1\nn2\n");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    struct asr_tail_opts o = {.start = saved, .from_end = true};
    start(&loop, &o, path, &s);
    assert_true(wait_lines(&loop, &s, 5, 2000));
    run_for(&loop, 100);
    const char *want[] = {"l2", "l3", "l4", "n1", "n2"};
    expect_lines(&s, want, 5);
    assert_int_equal(s.pos[2].ino, saved.ino);
    assert_int_equal(s.pos[2].offset, 11);
    assert_int_equal(s.pos[3].ino, identity(path, 0).ino);
    assert_true(saw_event(&s, ASR_TAIL_ROTATED));
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    free(old);
    rm_dir(dir);
}

static void test_resume_saved_file_gone(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    append(path, "other\n");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    /* An identity no file has: the file at the path is read from 0. */
    struct asr_tail_opts o = {.start = {1, 1, 3}};
    start(&loop, &o, path, &s);
    assert_true(wait_lines(&loop, &s, 1, 2000));
    assert_string_equal(s.lines[0], "other");
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    rm_dir(dir);
}

static void test_from_end(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    append(path, "old 1\nold 2\n");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    struct asr_tail_opts o = {.from_end = true};
    struct asr_tail *t = start(&loop, &o, path, &s);
    run_for(&loop, 150);
    assert_int_equal(s.nlines, 0);
    struct asr_tail_pos p;
    asr_tail_position(t, &p);
    assert_int_equal(p.offset, 12);
    append(path, "new\n");
    assert_true(wait_lines(&loop, &s, 1, 2000));
    run_for(&loop, 100);
    const char *want[] = {"new"};
    expect_lines(&s, want, 1);
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    rm_dir(dir);
}

static void test_stop_inside_on_line(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    append(path, "1\n2\n3\n4\n5\n6\n");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {.stop_after = 3};
    struct asr_tail_opts o = {0};
    start(&loop, &o, path, &s);
    assert_true(wait_lines(&loop, &s, 3, 2000));
    append(path, "7\n");
    run_for(&loop, 200);
    assert_null(s.tail);
    assert_int_equal(s.nlines, 3); /* nothing after the stop, not even the rest of the chunk */
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    rm_dir(dir);
}

static void test_stop_inside_on_line_at_rotation(void **state)
{
    (void)state;
    /* The stop comes from the old file's flushed last line, in the middle of the rotation. */
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    char *old = join(dir, "app.log.1");
    append(path, "a\nlast");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {.stop_after = 2};
    struct asr_tail_opts o = {0};
    start(&loop, &o, path, &s);
    assert_true(wait_lines(&loop, &s, 1, 2000));
    assert_int_equal(rename(path, old), 0);
    append(path, "new\n");
    assert_true(wait_lines(&loop, &s, 2, 2000));
    run_for(&loop, 200);
    assert_int_equal(s.nlines, 2);
    assert_string_equal(s.lines[1], "last");
    assert_false(saw_event(&s, ASR_TAIL_ROTATED)); /* no callback after the stop */
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    free(old);
    rm_dir(dir);
}

static void test_inotify_without_polling(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    append(path, "a\n");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    /* The poll fallback would take a minute: only the directory watch can be this quick. */
    struct asr_tail_opts o = {.poll_ms = 60000};
    start(&loop, &o, path, &s);
    assert_true(wait_lines(&loop, &s, 1, 1000));
    uint64_t t0 = asr_time_mono_ms();
    append(path, "b\n");
    assert_true(wait_lines(&loop, &s, 2, 1000));
    char *old = join(dir, "app.log.1");
    assert_int_equal(rename(path, old), 0);
    append(path, "c\n");
    assert_true(wait_lines(&loop, &s, 3, 1000));
    assert_true(asr_time_mono_ms() - t0 < 1000);
    assert_string_equal(s.lines[2], "c");
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    free(old);
    rm_dir(dir);
}

static void test_long_line_cut(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    char big[300];
    memset(big, 'x', sizeof(big) - 2);
    big[sizeof(big) - 2] = '\n';
    big[sizeof(big) - 1] = '\0';
    append(path, big);
    append(path, "ok\n");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct seen s = {0};
    struct asr_tail_opts o = {.max_line = 100};
    struct asr_tail *t = start(&loop, &o, path, &s);
    assert_true(wait_lines(&loop, &s, 2, 2000));
    assert_true(s.cut[0]);
    assert_int_equal(strncmp(s.lines[0], big, 100), 0);
    assert_string_equal(s.lines[1], "ok");
    struct asr_tail_pos p;
    asr_tail_position(t, &p);
    assert_int_equal(p.offset, 302);
    finish(&loop, &s);
    seen_free(&s);
    free(path);
    rm_dir(dir);
}

static void count_cb(uv_prepare_t *h)
{
    (*(unsigned long *)h->data)++;
}

static void test_large_backlog(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = join(dir, "app.log");
    /* 20 MB of numbered lines of varying length. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    static char chunk[1 << 16];
    size_t fill = 0, total = 0;
    long n = 0;
    while (total + fill < 20u * 1000 * 1000) {
        char line[256];
        int l = snprintf(line, sizeof(line), "%ld GET /api/items/%ld?q=%.*s HTTP/1.1 200\n", n,
                         n * 7, (int)(n % 120),
                         "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuv"
                         "wxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopq"
                         "rstuvwxyzabcdefghijklmnopqrstuvwxyz");
        if (fill + (size_t)l > sizeof(chunk)) {
            write_all(fd, chunk, fill);
            total += fill;
            fill = 0;
        }
        memcpy(chunk + fill, line, (size_t)l);
        fill += (size_t)l;
        n++;
    }
    write_all(fd, chunk, fill);
    total += fill;
    close(fd);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    /* A prepare handle counts loop iterations: the tail must let the loop turn between
     * chunks instead of reading 20 MB in one callback. */
    unsigned long turns = 0;
    uv_prepare_t prep;
    uv_prepare_init(&loop, &prep);
    prep.data = &turns;
    uv_prepare_start(&prep, count_cb);
    struct seen s = {.numbered = true};
    struct asr_tail_opts o = {0};
    struct asr_tail *t = start(&loop, &o, path, &s);
    uint64_t t0 = asr_time_mono_ms();
    assert_true(wait_lines(&loop, &s, (size_t)n, 20000));
    uint64_t ms = asr_time_mono_ms() - t0;
    run_for(&loop, 100);
    assert_int_equal(s.nlines, (size_t)n);
    assert_false(s.out_of_order);
    assert_int_equal(s.last_pos.offset, total);
    struct asr_tail_pos p;
    asr_tail_position(t, &p);
    assert_int_equal(p.offset, total);
    assert_true(turns >= total / (64 * 1024));
    print_message("backlog: %ld lines, %zu bytes in %llu ms over %lu loop turns\n", n, total,
                  (unsigned long long)ms, turns);
    uv_close((uv_handle_t *)&prep, NULL);
    finish(&loop, &s);
    free(path);
    rm_dir(dir);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_args),
        cmocka_unit_test(test_append_and_read),
        cmocka_unit_test(test_partial_line_completed_later),
        cmocka_unit_test(test_rename_rotation),
        cmocka_unit_test(test_rotation_between_reads),
        cmocka_unit_test(test_copy_truncate),
        cmocka_unit_test(test_missing_then_created),
        cmocka_unit_test(test_resume_same_file),
        cmocka_unit_test(test_resume_truncated_file),
        cmocka_unit_test(test_resume_rotated_to_path_1),
        cmocka_unit_test(test_resume_saved_file_gone),
        cmocka_unit_test(test_from_end),
        cmocka_unit_test(test_stop_inside_on_line),
        cmocka_unit_test(test_stop_inside_on_line_at_rotation),
        cmocka_unit_test(test_inotify_without_polling),
        cmocka_unit_test(test_long_line_cut),
        cmocka_unit_test(test_large_backlog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
