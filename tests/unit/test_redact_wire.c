/*
 * test_redact_wire.c - no secret reaches the wire: every byte the LLM client sends is checked.
 *
 * test_redact.c shows that asr_redact() removes the synthetic secrets of synth_secrets.h from
 * one line at a time. This test shows the same for what actually leaves the host: it puts all
 * 3,500 encoded lines (1,100 secrets in 22 formats, written plain, JSON-escaped, URL-encoded and
 * split across lines) into incidents - in the fault line, in the context_before and
 * context_after JSON arrays and in the fields JSON object, many per incident - builds each
 * prompt with asr_prompt_build() (with a repository whose one source file inside patch_paths
 * holds a few more secrets), and sends it through the asr-llm worker (asr_llm_ask_sync, the
 * path `asr plan` and the daemon use) to tests/llm_server.py as OpenAI, Gemini and Anthropic.
 * The server appends every request body it receives to a file (LLM_RECORD); the test reads it
 * back and looks at every byte of every body in three views: the body as sent, its JSON strings
 * decoded, and those decoded again until no JSON escape or percent-encoding is left. No 10-byte
 * window of any secret's random part may appear in any view, in any of its forms (raw,
 * JSON-escaped with and without "\/", URL-encoded, percent-decoded, or with its line breaks
 * removed, for the forms split across lines).
 *
 * test_wire_secret_at_the_cut does the same with each format's line padded so that the 8 KiB
 * that prompt.c keeps of each part ends inside the secret: the cut must not leave a secret's
 * head that the redactor no longer recognises.
 *
 * So that the test cannot pass by sending nothing: every prompt must arrive three times, each
 * body must carry the prompt's user text exactly, and each line's tag and the first bytes of
 * the line (its timestamp, the non-secret part) must be in it. And so that it cannot pass by
 * looking badly: test_checker_catches_unredacted runs the same checker over every line in every
 * slot without redaction, and test_unredacted_on_the_wire sends unredacted prompts to the server
 * and reads them back; both must find the secrets.
 */
#include "asr/buf.h"
#include "asr/config.h"
#include "asr/error.h"
#include "asr/incident.h"
#include "asr/timeutil.h"
#include "strategy/llm_worker.h"
#include "strategy/prompt.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "synth_secrets.h"

extern char **environ;

/* --- where a line goes in an incident -------------------------------------------------------- */

enum { SLOT_LINE, SLOT_BEFORE, SLOT_AFTER, SLOT_FIELDS, NSLOTS };
static const char *const SLOT_NAMES[NSLOTS] = {"line", "context_before", "context_after", "fields"};

/* Bytes of one slot's text, below the 8 KiB that prompt.c keeps of each part, so no line is cut. */
enum { SLOT_BUDGET = 7600, PART_CAP = 8192 };

/* The prefix of a line that holds no secret: every embed() style and every encoding starts with
 * at least this much timestamp or log-record boilerplate (synth_secrets.h). */
enum { PLAIN_PREFIX = 24 };

#define ROUTE "/api/orders"
#define SOURCE_MARK "orders_handler_v2" /* a non-secret word of the source file */
#define NPROTOS 3
static const char *const PROTOS[NPROTOS] = {"openai", "gemini", "anthropic"};

/* --- the corpus: secrets, encoded lines, incidents ------------------------------------------- */

struct sec {
    char *distinct; /* the random part that must not survive */
    int format;     /* index into FORMAT_NAMES, or -1 for a secret of the source file */
};

struct item {
    char *line; /* "wNNNNN " + the generator's encoded line */
    int secret, enc, slot;
    size_t prompt;
};

struct incident_text {
    char *line, *before, *after, *fields;
    size_t first, last; /* its items, [first, last) */
};

struct corpus {
    struct sec *secs;
    size_t nsecs, nfile_secs;
    struct item *items;
    size_t nitems;
    struct incident_text *incs;
    size_t nincs;
    char tmp[64], repo[128], record[128];
};

static struct corpus C;

static void add_item(const char *line, const struct secret *s, int enc, void *arg)
{
    (void)arg;
    if (enc == ENC_PLAIN) { /* the generator writes ENC_PLAIN first for every secret */
        struct sec *e = &C.secs[C.nsecs++];
        e->distinct = strdup(s->distinct);
        e->format = -1;
        for (int f = 0; f < NFORMATS; f++)
            if (s->format == FORMAT_NAMES[f])
                e->format = f;
        assert_non_null(e->distinct);
        assert_true(e->format >= 0);
    }
    struct item *it = &C.items[C.nitems];
    size_t n = strlen(line) + 16;
    it->line = malloc(n);
    assert_non_null(it->line);
    snprintf(it->line, n, "w%05zu %s", C.nitems, line);
    it->secret = (int)C.nsecs - 1;
    it->enc = enc;
    C.nitems++;
}

/* Bytes s takes as a JSON string body (jansson's escaping: no "\/"). */
static size_t esc_len(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        n += *p == '"' || *p == '\\' || *p == '\n' || *p == '\r' || *p == '\t' ? 2
             : *p < 0x20                                                       ? 6
                                                                               : 1;
    return n;
}

static size_t slot_cost(int slot, const char *line)
{
    return slot == SLOT_LINE     ? strlen(line) + 1
           : slot == SLOT_FIELDS ? esc_len(line) + 12
                                 : esc_len(line) + 3;
}

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(s);
    json_decref(j);
    return s;
}

/* The texts of one incident from items [first, last). */
static void fill_incident(struct incident_text *t, size_t first, size_t last)
{
    struct asr_buf line;
    asr_buf_init(&line, PART_CAP);
    json_t *before = json_array(), *after = json_array(), *fields = json_object();
    assert_int_equal(json_object_set_new(fields, "route", json_string(ROUTE)), 0);
    for (size_t i = first; i < last; i++) {
        const struct item *it = &C.items[i];
        char key[32];
        switch (it->slot) {
        case SLOT_LINE:
            if (line.len > 0)
                assert_int_equal(asr_buf_puts(&line, " "), 0);
            assert_int_equal(asr_buf_puts(&line, it->line), 0);
            break;
        case SLOT_BEFORE:
            assert_int_equal(json_array_append_new(before, json_string(it->line)), 0);
            break;
        case SLOT_AFTER:
            assert_int_equal(json_array_append_new(after, json_string(it->line)), 0);
            break;
        default:
            snprintf(key, sizeof(key), "m%zu", i - first);
            assert_int_equal(json_object_set_new(fields, key, json_string(it->line)), 0);
            break;
        }
    }
    t->line = asr_buf_steal(&line);
    t->before = dump(before);
    t->after = dump(after);
    t->fields = dump(fields);
    t->first = first;
    t->last = last;
    /* prompt.c keeps 8 KiB of each part: all of every line must fit. */
    assert_true(strlen(t->line) < PART_CAP && strlen(t->before) < PART_CAP);
    assert_true(strlen(t->after) < PART_CAP && strlen(t->fields) < PART_CAP);
}

/*
 * Lines go to the slots of the current incident in turn (line, context_before, context_after,
 * fields), each slot filled up to SLOT_BUDGET, then the next incident begins; the generator's
 * order (secret by secret, format by format) makes every format in every encoding land in every
 * slot, which test_wire_redaction checks.
 */
static void place_items(void)
{
    size_t used[NSLOTS] = {0}, first = 0;
    int slot = 0;
    C.incs = calloc(C.nitems, sizeof(*C.incs));
    assert_non_null(C.incs);
    for (size_t i = 0; i < C.nitems; i++) {
        struct item *it = &C.items[i];
        while (used[slot] + slot_cost(slot, it->line) > SLOT_BUDGET) {
            if (++slot == NSLOTS) {
                fill_incident(&C.incs[C.nincs++], first, i);
                first = i;
                slot = 0;
                memset(used, 0, sizeof(used));
            }
        }
        used[slot] += slot_cost(slot, it->line);
        it->slot = slot;
        it->prompt = C.nincs;
    }
    fill_incident(&C.incs[C.nincs++], first, C.nitems);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* A repository whose one source file (inside patch_paths, naming the route) holds a few secrets
 * of its own, from the same generator on another seed. */
static void make_repo(void)
{
    static const int formats[] = {0, 1, 8, 9, 14, 18, 19};
    char path[256];
    snprintf(C.repo, sizeof(C.repo), "%s/repo", C.tmp);
    snprintf(path, sizeof(path), "%s/src", C.repo);
    assert_int_equal(mkdir(C.repo, 0700), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    struct asr_buf src;
    asr_buf_init(&src, 64 * 1024);
    assert_int_equal(asr_buf_puts(&src, "/* orders.c - the handlers of " ROUTE ". */\n"
                                        "#include <stdio.h>\n\n"),
                     0);
    static struct secret s;
    rng_state = 77;
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        make_secret(formats[i], &s);
        assert_int_equal(asr_buf_printf(&src, "/* seen in production: %s */\n", s.text), 0);
        struct sec *e = &C.secs[C.nsecs++];
        e->distinct = strdup(s.distinct);
        e->format = -1;
        C.nfile_secs++;
    }
    assert_int_equal(asr_buf_puts(&src,
                                  "\nint " SOURCE_MARK "(const char *route)\n{\n"
                                  "    if (route == NULL)\n        return -1; /* the fault: " ROUTE
                                  " without a body */\n    return puts(route) < 0;\n}\n"),
                     0);
    snprintf(path, sizeof(path), "%s/src/orders.c", C.repo);
    write_file(path, asr_buf_cstr(&src));
    asr_buf_free(&src);
}

/* --- the checker ----------------------------------------------------------------------------- */

/*
 * Every window of every form of every secret, in an open-addressing table keyed by a hash of the
 * window's bytes, so each byte of the bodies is looked up once per window length instead of
 * each secret being searched for in each body.
 */
enum { WIN = 10, NFORMS = 6 };
static const char *const FORM_NAMES[NFORMS] = {"raw",         "json-escaped", "json (no \\/)",
                                               "url-encoded", "url-decoded",  "joined"};

struct win {
    uint64_t h; /* 0: empty */
    uint32_t secret;
    uint16_t form, len;
    uint32_t off;
};

struct checker {
    char *forms[NFORMS]; /* per secret: nsecs * NFORMS strings */
    char **form;
    struct win *slot;
    size_t mask;
    bool has_len[WIN + 1];
};

static struct checker K;

static uint64_t win_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ n;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h | 1;
}

static void json_escape_noslash(const char *in, char *out)
{
    size_t j = 0;
    for (const char *p = in; *p; p++) {
        if (*p == '"' || *p == '\\' || *p == '\n' || *p == '\r') {
            out[j++] = '\\';
            out[j++] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : *p;
        } else {
            out[j++] = *p;
        }
    }
    out[j] = '\0';
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* One round of decoding: JSON string escapes (\uXXXX as UTF-8) and %XX. Returns the new length;
 * out needs n + 1 bytes (decoding never grows the text). */
static size_t decode_round(const char *in, size_t n, char *out)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '%' && i + 2 < n && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            out[j++] = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 2;
        } else if (c == '\\' && i + 5 < n && in[i + 1] == 'u' && hexval(in[i + 2]) >= 0 &&
                   hexval(in[i + 3]) >= 0 && hexval(in[i + 4]) >= 0 && hexval(in[i + 5]) >= 0) {
            unsigned cp = (unsigned)(hexval(in[i + 2]) << 12 | hexval(in[i + 3]) << 8 |
                                     hexval(in[i + 4]) << 4 | hexval(in[i + 5]));
            if (cp < 0x80) {
                out[j++] = (char)cp;
            } else if (cp < 0x800) {
                out[j++] = (char)(0xC0 | cp >> 6);
                out[j++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[j++] = (char)(0xE0 | cp >> 12);
                out[j++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[j++] = (char)(0x80 | (cp & 0x3F));
            }
            i += 5;
        } else if (c == '\\' && i + 1 < n && strchr("\"\\/nrtbf", in[i + 1]) != NULL) {
            char e = in[i + 1];
            out[j++] = e == 'n'   ? '\n'
                       : e == 'r' ? '\r'
                       : e == 't' ? '\t'
                       : e == 'b' ? '\b'
                       : e == 'f' ? '\f'
                                  : e;
            i++;
        } else {
            out[j++] = c;
        }
    }
    out[j] = '\0';
    return j;
}

static void checker_add(uint32_t secret, uint16_t form, const char *text)
{
    size_t n = strlen(text), w = n < WIN ? n : WIN;
    K.has_len[w] = true;
    for (size_t i = 0; i + w <= n; i++) {
        uint64_t h = win_hash(text + i, w);
        size_t k = (size_t)h & K.mask;
        bool dup = false;
        while (K.slot[k].h != 0 && !dup) {
            const struct win *o = &K.slot[k];
            dup = o->h == h && o->len == w && o->secret == secret &&
                  memcmp(K.form[o->secret * NFORMS + o->form] + o->off, text + i, w) == 0;
            k = (k + 1) & K.mask;
        }
        if (!dup)
            K.slot[k] = (struct win){h, secret, form, (uint16_t)w, (uint32_t)i};
    }
}

/* The forms of every secret of the corpus, and their windows. */
static void checker_build(void)
{
    if (K.form != NULL)
        return;
    K.form = calloc(C.nsecs * NFORMS, sizeof(char *));
    assert_non_null(K.form);
    size_t windows = 0;
    for (size_t s = 0; s < C.nsecs; s++) {
        const char *d = C.secs[s].distinct;
        size_t n = strlen(d);
        char **f = &K.form[s * NFORMS];
        for (int i = 0; i < NFORMS; i++) {
            f[i] = calloc(6 * n + 1, 1);
            assert_non_null(f[i]);
        }
        memcpy(f[0], d, n);
        json_escape(d, f[1], 6 * n + 1);
        json_escape_noslash(d, f[2]);
        url_encode(d, f[3], 6 * n + 1);
        decode_round(d, n, f[4]);
        size_t j = 0;
        for (const char *p = d; *p; p++)
            if (*p != '\n' && *p != '\r')
                f[5][j++] = *p;
        for (int i = 0; i < NFORMS; i++)
            windows += strlen(f[i]);
    }
    size_t cap = 1;
    while (cap < 2 * windows + 16)
        cap <<= 1;
    K.slot = calloc(cap, sizeof(*K.slot));
    assert_non_null(K.slot);
    K.mask = cap - 1;
    for (size_t s = 0; s < C.nsecs; s++)
        for (int i = 0; i < NFORMS; i++)
            checker_add((uint32_t)s, (uint16_t)i, K.form[s * NFORMS + i]);
}

struct scan {
    bool *found;       /* per secret: seen in this scan */
    size_t bytes;      /* bytes looked at */
    const char *where; /* for messages */
    size_t printed, max_print;
};

/* Looks up every window of every length of view (n bytes) in the table. */
static void scan_view(struct scan *sc, const char *view, size_t n, const char *vname)
{
    sc->bytes += n;
    for (size_t w = 1; w <= WIN; w++) {
        if (!K.has_len[w])
            continue;
        for (size_t i = 0; i + w <= n; i++) {
            uint64_t h = win_hash(view + i, w);
            for (size_t k = (size_t)h & K.mask; K.slot[k].h != 0; k = (k + 1) & K.mask) {
                const struct win *o = &K.slot[k];
                if (o->h != h || o->len != w ||
                    memcmp(K.form[o->secret * NFORMS + o->form] + o->off, view + i, w) != 0)
                    continue;
                if (!sc->found[o->secret] && sc->printed++ < sc->max_print) {
                    const struct sec *e = &C.secs[o->secret];
                    size_t from = i > 40 ? i - 40 : 0, to = i + w + 40 < n ? i + w + 40 : n;
                    print_error("leak in %s (%s view): secret %u (%s) as %s: \"%.*s\"\n"
                                "  secret: %s\n  around: %.*s\n",
                                sc->where, vname, o->secret,
                                e->format >= 0 ? FORMAT_NAMES[e->format] : "source file",
                                FORM_NAMES[o->form], (int)w, view + i, e->distinct,
                                (int)(to - from), view + from);
                }
                sc->found[o->secret] = true;
            }
        }
    }
}

/* Appends every string value of j (object keys too) to b, one per line. */
static void strings_of(const json_t *j, struct asr_buf *b)
{
    if (json_is_string(j)) {
        assert_int_equal(asr_buf_append(b, json_string_value(j), json_string_length(j)), 0);
        assert_int_equal(asr_buf_append(b, "\n", 1), 0);
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++)
            strings_of(json_array_get(j, i), b);
    } else if (json_is_object(j)) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            assert_int_equal(asr_buf_puts(b, k), 0);
            assert_int_equal(asr_buf_append(b, "\n", 1), 0);
            strings_of(v, b);
        }
    }
}

/*
 * Checks a request body in three views: as sent; its JSON strings decoded (the prompt as the
 * model reads it); and those decoded again (JSON escapes, \uXXXX, %XX) until nothing changes,
 * so a secret under any stack of these encodings shows in the last view as its raw self.
 */
static void check_body(struct scan *sc, const char *body, size_t n)
{
    scan_view(sc, body, n, "sent");
    json_error_t je;
    json_t *j = json_loadb(body, n, JSON_ALLOW_NUL, &je);
    if (j == NULL)
        fail_msg("%s: the body is not JSON: %s", sc->where, je.text);
    struct asr_buf b;
    asr_buf_init(&b, 64u << 20);
    strings_of(j, &b);
    json_decref(j);
    scan_view(sc, b.data, b.len, "decoded");
    char *cur = malloc(b.len + 1), *next = malloc(b.len + 1);
    assert_non_null(cur);
    assert_non_null(next);
    memcpy(cur, b.data, b.len + 1);
    size_t len = b.len;
    for (int round = 0; round < 8; round++) {
        size_t l2 = decode_round(cur, len, next);
        bool same = l2 == len && memcmp(cur, next, len) == 0;
        char *t = cur;
        cur = next;
        next = t;
        len = l2;
        if (same)
            break;
    }
    if (len != b.len || memcmp(cur, b.data, len) != 0)
        scan_view(sc, cur, len, "fully decoded");
    free(cur);
    free(next);
    asr_buf_free(&b);
}

/* --- the server and the worker --------------------------------------------------------------- */

static pid_t server_pid = -1;
static int server_port;
static char exe[4096];

static const char *source_dir(void)
{
    static char dir[4096];
    const char *env = getenv("ASR_SOURCE_DIR");
    if (env != NULL && env[0] != '\0')
        return env;
    snprintf(dir, sizeof(dir), "%s", __FILE__);
    char *cut = strstr(dir, "/tests/unit/test_redact_wire.c");
    if (cut != NULL)
        *cut = '\0';
    return dir;
}

/* Starts llm_server.py with LLM_RECORD set, waits for "listening PORT". */
static int start_server(void)
{
    char script[4200], key[64];
    snprintf(script, sizeof(script), "%s/tests/llm_server.py", source_dir());
    snprintf(key, sizeof(key), "wire-test-%08lx%08lx", (unsigned long)getpid(),
             (unsigned long)asr_time_mono_us());
    /* The worker reads the key from the variable api_key_env names, the server from the same. */
    if (setenv("LLM_TEST_KEY", key, 1) != 0 || setenv("LLM_RECORD", C.record, 1) != 0)
        return -1;
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    char *argv[] = {"python3", "-u", script, NULL};
    int rc = posix_spawnp(&server_pid, "python3", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        fprintf(stderr, "test_redact_wire: cannot start python3: %s\n", strerror(rc));
        return -1;
    }
    char line[64] = {0};
    size_t len = 0;
    uint64_t deadline = asr_time_mono_ms() + 10000;
    while (len < sizeof(line) - 1 && strchr(line, '\n') == NULL && asr_time_mono_ms() < deadline) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t got = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fds[0]);
    if (sscanf(line, "listening %d", &server_port) != 1) {
        fprintf(stderr, "test_redact_wire: the test server did not start (got \"%s\")\n", line);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    const char *bin = getenv("ASR_BIN");
    if (bin == NULL || strrchr(bin, '/') == NULL) {
        fprintf(stderr, "test_redact_wire: set ASR_BIN to the asr binary (asr-llm is beside it)\n");
        return -1;
    }
    snprintf(exe, sizeof(exe), "%.*s/asr-llm", (int)(strrchr(bin, '/') - bin), bin);
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, "test_redact_wire: %s: %s\n", exe, strerror(errno));
        return -1;
    }
    snprintf(C.tmp, sizeof(C.tmp), "/tmp/asr-wire-XXXXXX");
    if (mkdtemp(C.tmp) == NULL)
        return -1;
    snprintf(C.record, sizeof(C.record), "%s/record.jsonl", C.tmp);
    C.secs = calloc(NFORMATS * PER_FORMAT + 16, sizeof(*C.secs));
    C.items = calloc(NFORMATS * PER_FORMAT * NENC, sizeof(*C.items));
    if (C.secs == NULL || C.items == NULL)
        return -1;
    for_each_secret_line(add_item, NULL);
    place_items();
    make_repo();
    return start_server();
}

static int teardown(void **state)
{
    (void)state;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
    if (getenv("ASR_WIRE_KEEP") != NULL) { /* to look at what was sent */
        fprintf(stderr, "test_redact_wire: kept %s\n", C.tmp);
    } else {
        char path[256];
        snprintf(path, sizeof(path), "%s/src/orders.c", C.repo);
        unlink(path);
        snprintf(path, sizeof(path), "%s/src", C.repo);
        rmdir(path);
        rmdir(C.repo);
        unlink(C.record);
        rmdir(C.tmp);
    }
    for (size_t i = 0; i < C.nsecs; i++)
        free(C.secs[i].distinct);
    for (size_t i = 0; i < C.nitems; i++)
        free(C.items[i].line);
    for (size_t i = 0; i < C.nincs; i++) {
        free(C.incs[i].line);
        free(C.incs[i].before);
        free(C.incs[i].after);
        free(C.incs[i].fields);
    }
    if (K.form != NULL)
        for (size_t i = 0; i < C.nsecs * NFORMS; i++)
            free(K.form[i]);
    free(K.form);
    free(K.slot);
    free(C.secs);
    free(C.items);
    free(C.incs);
    return 0;
}

static void llm_cfg(struct asr_llm_cfg *cfg, int proto, char *base, size_t cap)
{
    snprintf(base, cap, "http://127.0.0.1:%d%s", server_port,
             proto == 0   ? "/v1"
             : proto == 1 ? "/v1beta"
                          : "");
    *cfg = (struct asr_llm_cfg){.provider = (char *)PROTOS[proto],
                                .base_url = base,
                                .model = "ok",
                                .api_key_env = "LLM_TEST_KEY",
                                .timeout_ms = 30000,
                                .max_attempts = 1, /* one body per question, so counts are exact */
                                .max_tokens = 256,
                                .backoff_initial_ms = 100,
                                .backoff_max_ms = 1000,
                                .breaker_threshold = 5,
                                .breaker_cooldown_ms = 1000};
}

/* Sends user over all three protocols; the "ok" model echoes it, which proves it arrived whole. */
static void send_all(const char *system, const char *user)
{
    for (int p = 0; p < NPROTOS; p++) {
        char base[128];
        struct asr_llm_cfg cfg;
        llm_cfg(&cfg, p, base, sizeof(base));
        struct asr_llm_reply r;
        struct asr_err err = {0};
        int rc = asr_llm_ask_sync(exe, &cfg, system, user, &r, &err);
        if (rc != 0)
            fail_msg("%s: %s", PROTOS[p], err.msg);
        char want[64];
        int wl = snprintf(want, sizeof(want), "hello from the test server (%s): ", PROTOS[p]);
        assert_true(r.len == (size_t)wl + strlen(user));
        assert_memory_equal(r.text, want, (size_t)wl);
        assert_memory_equal(r.text + wl, user, strlen(user));
        asr_llm_reply_free(&r);
    }
}

struct record {
    char *path;
    char *body;
    size_t len;
};

/* The bodies the server recorded, in the order it received them. */
static struct record *read_records(size_t *n)
{
    FILE *f = fopen(C.record, "r");
    assert_non_null(f);
    size_t cap = 16;
    struct record *v = calloc(cap, sizeof(*v));
    assert_non_null(v);
    *n = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) > 0) {
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)got, JSON_ALLOW_NUL, &je);
        if (j == NULL)
            fail_msg("%s: record %zu is not JSON: %s", C.record, *n + 1, je.text);
        json_t *p = json_object_get(j, "path"), *b = json_object_get(j, "body");
        assert_true(json_is_string(p) && json_is_string(b));
        if (*n == cap) {
            cap *= 2;
            v = realloc(v, cap * sizeof(*v));
            assert_non_null(v);
        }
        v[*n].path = strdup(json_string_value(p));
        v[*n].len = json_string_length(b);
        v[*n].body = malloc(v[*n].len + 1);
        assert_non_null(v[*n].path);
        assert_non_null(v[*n].body);
        memcpy(v[*n].body, json_string_value(b), v[*n].len + 1);
        (*n)++;
        json_decref(j);
    }
    free(line);
    fclose(f);
    return v;
}

static void free_records(struct record *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].path);
        free(v[i].body);
    }
    free(v);
}

static void truncate_record(void)
{
    FILE *f = fopen(C.record, "w");
    assert_non_null(f);
    fclose(f);
}

/* The user text of a request body of proto (the server has checked its shape). */
static char *user_of(const char *body, size_t n, int proto)
{
    json_t *j = json_loadb(body, n, JSON_ALLOW_NUL, NULL);
    assert_non_null(j);
    const json_t *u;
    if (proto == 0) {
        json_t *m = json_object_get(j, "messages");
        u = json_object_get(json_array_get(m, json_array_size(m) - 1), "content");
    } else if (proto == 1) {
        u = json_object_get(
            json_array_get(
                json_object_get(json_array_get(json_object_get(j, "contents"), 0), "parts"), 0),
            "text");
    } else {
        u = json_object_get(json_array_get(json_object_get(j, "messages"), 0), "content");
    }
    assert_true(json_is_string(u));
    char *s = strdup(json_string_value(u));
    assert_non_null(s);
    json_decref(j);
    return s;
}

static const char *const PATHS[NPROTOS] = {"/v1/chat/completions",
                                           "/v1beta/models/ok:generateContent", "/v1/messages"};

/* The prefix of item it as its slot writes it into the prompt (before redaction). */
static void expected_prefix(const struct item *it, char *out, size_t cap)
{
    char raw[64];
    /* the tag "wNNNNN " and the first bytes of the line, which hold no secret */
    snprintf(raw, sizeof(raw), "%.*s", 7 + PLAIN_PREFIX, it->line);
    if (it->slot == SLOT_LINE) {
        snprintf(out, cap, "%s", raw);
    } else {
        json_t *s = json_string(raw);
        char *d = json_dumps(s, JSON_ENCODE_ANY);
        assert_non_null(d);
        snprintf(out, cap, "%.*s", (int)strlen(d) - 2, d + 1); /* without the quotes */
        free(d);
        json_decref(s);
    }
}

/* --- tests ----------------------------------------------------------------------------------- */

static void build_prompt(size_t i, struct asr_prompt *p)
{
    static char *globs[] = {"src/*.c", NULL};
    const struct incident_text *t = &C.incs[i];
    struct asr_incident inc = {.id = (int64_t)i + 1,
                               .service = "orders",
                               .kind = "generic",
                               .signature = "generic:error",
                               .severity = "error",
                               .source = "stdout",
                               .line = t->line,
                               .fields = t->fields,
                               .context_before = t->before,
                               .context_after = t->after,
                               .status = ASR_INCIDENT_OPEN,
                               .count = 1};
    struct asr_prompt_input in = {.inc = &inc, .repo_dir = C.repo, .patch_paths = globs};
    struct asr_err err = {0};
    if (asr_prompt_build(&in, p, &err) != 0)
        fail_msg("prompt %zu: %s", i, err.msg);
    assert_true(strlen(p->user) <= ASR_PROMPT_MAX_BYTES);
    assert_int_equal(p->nfiles, 1);
    assert_string_equal(p->files[0], "src/orders.c");
}

static void test_wire_redaction(void **state)
{
    (void)state;
    truncate_record();
    checker_build();

    /* Coverage: every format in every encoding it has, in every slot. */
    bool seen[NFORMATS][NENC][NSLOTS] = {{{false}}}, has[NFORMATS][NENC] = {{false}};
    size_t by_enc[NENC] = {0};
    for (size_t i = 0; i < C.nitems; i++) {
        const struct item *it = &C.items[i];
        int f = C.secs[it->secret].format;
        seen[f][it->enc][it->slot] = has[f][it->enc] = true;
        by_enc[it->enc]++;
    }
    size_t combos = 0, nformats = 0;
    for (int f = 0; f < NFORMATS; f++) {
        nformats += has[f][ENC_PLAIN];
        for (int e = 0; e < NENC; e++)
            for (int s = 0; s < NSLOTS && has[f][e]; s++) {
                if (!seen[f][e][s])
                    fail_msg("%s %s never in %s", FORMAT_NAMES[f], ENC_NAMES[e], SLOT_NAMES[s]);
                combos++;
            }
    }

    /* Build every prompt and send it three times. */
    char **users = calloc(C.nincs, sizeof(char *));
    assert_non_null(users);
    size_t redactions = 0, max_user = 0;
    for (size_t i = 0; i < C.nincs; i++) {
        struct asr_prompt p;
        build_prompt(i, &p);
        redactions += p.redactions;
        max_user = strlen(p.user) > max_user ? strlen(p.user) : max_user;
        send_all(p.system, p.user);
        users[i] = strdup(p.user);
        assert_non_null(users[i]);
        asr_prompt_free(&p);
    }

    /* Every byte of every body the server received. */
    size_t n = 0, raw_bytes = 0, leaks = 0;
    struct record *rec = read_records(&n);
    assert_int_equal(n, C.nincs * NPROTOS);
    bool *found = calloc(C.nsecs, sizeof(bool)), *any = calloc(C.nsecs, sizeof(bool));
    assert_non_null(found);
    assert_non_null(any);
    struct scan sc = {.found = found, .max_print = 20};
    for (size_t b = 0; b < n; b++) {
        size_t pi = b / NPROTOS;
        int proto = (int)(b % NPROTOS);
        char where[96];
        snprintf(where, sizeof(where), "body %zu (prompt %zu, %s)", b, pi, PROTOS[proto]);
        sc.where = where;
        memset(found, 0, C.nsecs * sizeof(bool));
        assert_string_equal(rec[b].path, PATHS[proto]);
        scan_view(&sc, rec[b].path, strlen(rec[b].path), "path");
        check_body(&sc, rec[b].body, rec[b].len);
        raw_bytes += rec[b].len;
        for (size_t s = 0; s < C.nsecs; s++) {
            leaks += found[s];
            any[s] |= found[s];
        }
        /* It carried this prompt, all of it: the user text exactly, each line's tag and its
         * non-secret start, and the source file. */
        char *user = user_of(rec[b].body, rec[b].len, proto);
        assert_string_equal(user, users[pi]);
        for (size_t i = C.incs[pi].first; i < C.incs[pi].last; i++) {
            char want[128];
            expected_prefix(&C.items[i], want, sizeof(want));
            if (strstr(user, want) == NULL)
                fail_msg("%s: line %zu (%s) is missing: \"%s\"", where, i,
                         SLOT_NAMES[C.items[i].slot], want);
        }
        assert_non_null(strstr(user, SOURCE_MARK));
        assert_non_null(strstr(user, "[REDACTED:"));
        free(user);
    }
    size_t leaked = 0;
    for (size_t s = 0; s < C.nsecs; s++)
        leaked += any[s];
    print_message("redact_wire: %zu secrets in %zu formats (+%zu in the source file), %d encodings "
                  "(plain %zu, json %zu, url %zu, split %zu) = %zu lines in %d places (%zu "
                  "format x encoding x place combinations, all covered)\n",
                  C.nsecs - C.nfile_secs, nformats, C.nfile_secs, NENC, by_enc[ENC_PLAIN],
                  by_enc[ENC_JSON], by_enc[ENC_URL], by_enc[ENC_SPLIT], C.nitems, NSLOTS, combos);
    print_message("redact_wire: %zu prompts (largest %zu bytes, %zu redactions), %zu bodies (%zu x "
                  "%d protocols), %zu bytes sent, %zu bytes checked in all views: %zu leaks, %zu "
                  "secrets leaked\n",
                  C.nincs, max_user, redactions, n, C.nincs, NPROTOS, raw_bytes, sc.bytes, leaks,
                  leaked);
    assert_true(C.nsecs - C.nfile_secs >= 1000);
    assert_true(nformats >= 12);
    assert_int_equal(leaks, 0);
    for (size_t i = 0; i < C.nincs; i++)
        free(users[i]);
    free(users);
    free(found);
    free(any);
    free_records(rec, n);
}

/* The text of one item alone, as its slot would hold it. */
static char *slot_text(const struct item *it)
{
    if (it->slot == SLOT_LINE)
        return strdup(it->line);
    json_t *j;
    if (it->slot == SLOT_FIELDS) {
        j = json_object();
        json_object_set_new(j, "route", json_string(ROUTE));
        json_object_set_new(j, "m0", json_string(it->line));
    } else {
        j = json_array();
        json_array_append_new(j, json_string(it->line));
    }
    return dump(j);
}

/* A request body (OpenAI's shape) carrying user, as the client would send it. */
static char *body_of(const char *user)
{
    json_t *m = json_pack("{s:s, s:[{s:s, s:s}], s:i}", "model", "ok", "messages", "role", "user",
                          "content", user, "max_tokens", 256);
    assert_non_null(m);
    return dump(m);
}

/* Negative control: without redaction the checker finds every secret, in every encoding and
 * every slot, each line checked alone in a body of its own. */
static void test_checker_catches_unredacted(void **state)
{
    (void)state;
    checker_build();
    bool *found = calloc(C.nsecs, sizeof(bool));
    assert_non_null(found);
    struct scan sc = {.found = found, .max_print = 0, .where = "unredacted"};
    size_t caught = 0;
    for (size_t i = 0; i < C.nitems; i++) {
        const struct item *it = &C.items[i];
        char *text = slot_text(it), *body = body_of(text);
        memset(found, 0, C.nsecs * sizeof(bool));
        check_body(&sc, body, strlen(body));
        if (!found[it->secret])
            fail_msg("the checker missed secret %d (%s, %s, in %s): %s", it->secret,
                     FORMAT_NAMES[C.secs[it->secret].format], ENC_NAMES[it->enc],
                     SLOT_NAMES[it->slot], C.secs[it->secret].distinct);
        caught++;
        free(body);
        free(text);
    }
    /* The source file's secrets, in the file as written. */
    char path[256];
    snprintf(path, sizeof(path), "%s/src/orders.c", C.repo);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char src[65536];
    size_t n = fread(src, 1, sizeof(src) - 1, f);
    fclose(f);
    src[n] = '\0';
    char *body = body_of(src);
    memset(found, 0, C.nsecs * sizeof(bool));
    check_body(&sc, body, strlen(body));
    for (size_t s = C.nsecs - C.nfile_secs; s < C.nsecs; s++) {
        assert_true(found[s]);
        caught++;
    }
    free(body);
    print_message("redact_wire: negative control: %zu of %zu unredacted lines (and source-file "
                  "secrets) caught\n",
                  caught, C.nitems + C.nfile_secs);
    free(found);
}

/* Negative control on the wire: the first incident's texts sent without redaction reach the
 * record, and the same reading and checking as test_wire_redaction finds every secret in it. */
static void test_unredacted_on_the_wire(void **state)
{
    (void)state;
    truncate_record();
    checker_build();
    const struct incident_text *t = &C.incs[0];
    struct asr_buf u;
    asr_buf_init(&u, 1u << 20);
    assert_int_equal(asr_buf_printf(&u,
                                    "line: %s\nfields: %s\ncontext before: %s\n"
                                    "context after: %s\n",
                                    t->line, t->fields, t->before, t->after),
                     0);
    send_all("unredacted, on purpose", asr_buf_cstr(&u));
    size_t n = 0;
    struct record *rec = read_records(&n);
    assert_int_equal(n, NPROTOS);
    bool *found = calloc(C.nsecs, sizeof(bool));
    assert_non_null(found);
    struct scan sc = {.found = found, .max_print = 0, .where = "unredacted"};
    for (size_t b = 0; b < n; b++) {
        memset(found, 0, C.nsecs * sizeof(bool));
        check_body(&sc, rec[b].body, rec[b].len);
        for (size_t i = t->first; i < t->last; i++)
            if (!found[C.items[i].secret])
                fail_msg("%s: the checker missed secret %d (%s)", PROTOS[b], C.items[i].secret,
                         ENC_NAMES[C.items[i].enc]);
    }
    print_message("redact_wire: negative control on the wire: the %zu lines of prompt 0 sent "
                  "unredacted, their secrets found in all %zu bodies\n",
                  t->last - t->first, n);
    free(found);
    free_records(rec, n);
    asr_buf_free(&u);
}

/* The first offset of text (n bytes) where a window of secret s begins, or n. */
static size_t first_hit(const char *text, size_t n, size_t s)
{
    for (size_t i = 0; i < n; i++)
        for (size_t w = WIN; w >= 1; w--) {
            if (!K.has_len[w] || i + w > n)
                continue;
            uint64_t h = win_hash(text + i, w);
            for (size_t k = (size_t)h & K.mask; K.slot[k].h != 0; k = (k + 1) & K.mask) {
                const struct win *o = &K.slot[k];
                if (o->h == h && o->len == w && o->secret == s &&
                    memcmp(K.form[o->secret * NFORMS + o->form] + o->off, text + i, w) == 0)
                    return i;
            }
        }
    return n;
}

/* The text of slot holding a padding line and then line, with pad bytes of padding. */
static char *padded_slot(int slot, size_t pad, const char *line)
{
    char *x = malloc(pad + 1);
    assert_non_null(x);
    memset(x, 'x', pad);
    x[pad] = '\0';
    char *out;
    if (slot == SLOT_LINE) {
        size_t n = pad + strlen(line) + 2;
        out = malloc(n);
        assert_non_null(out);
        snprintf(out, n, "%s %s", x, line);
    } else if (slot == SLOT_FIELDS) {
        out = dump(json_pack("{s:s, s:s, s:s}", "route", ROUTE, "pad", x, "m0", line));
    } else {
        out = dump(json_pack("[s, s]", x, line));
    }
    free(x);
    return out;
}

/*
 * prompt.c keeps 8 KiB of each part. A secret that straddles that cut must not leave its head
 * behind in a shape the redactor no longer recognises (an AKIA id short of its 16 characters, a
 * JWT without its signature, a token under its minimum length). For each format, each slot and
 * two cut points (10 and 24 bytes into the secret as the slot writes it), a line is padded so
 * that byte 8192 of the part falls there; the prompts go over the wire as above.
 */
static void test_wire_secret_at_the_cut(void **state)
{
    (void)state;
    truncate_record();
    checker_build();
    static const size_t heads[] = {10, 24};
    enum { NHEADS = sizeof(heads) / sizeof(heads[0]) };
    /* The first secret of each format, and one of its lines per slot: plain, JSON-escaped,
     * URL-encoded, and the split form where the format has one. */
    size_t pick[NFORMATS][NSLOTS];
    for (int f = 0; f < NFORMATS; f++)
        for (int s = 0; s < NSLOTS; s++) {
            int want = s < 3 ? s : ENC_SPLIT;
            pick[f][s] = SIZE_MAX;
            for (size_t i = 0; i < C.nitems && C.items[i].secret <= f; i++)
                if (C.items[i].secret == f && (C.items[i].enc == want || C.items[i].enc == 0) &&
                    (pick[f][s] == SIZE_MAX || C.items[i].enc == want))
                    pick[f][s] = i;
            assert_true(pick[f][s] != SIZE_MAX);
        }
    size_t nprompts = 0, straddles = 0;
    char **users = calloc(NFORMATS * NHEADS, sizeof(char *));
    size_t(*items)[NSLOTS] = calloc(NFORMATS * NHEADS, sizeof(*items));
    assert_non_null(users);
    assert_non_null(items);
    for (size_t h = 0; h < NHEADS; h++)
        for (int f = 0; f < NFORMATS; f++) {
            char *part[NSLOTS];
            for (int s = 0; s < NSLOTS; s++) {
                /* Rotate, so each slot sees every format. */
                const struct item *it = &C.items[pick[(f + s) % NFORMATS][s]];
                items[nprompts][s] = pick[(f + s) % NFORMATS][s];
                char *probe = padded_slot(s, 100, it->line);
                size_t at = first_hit(probe, strlen(probe), (size_t)it->secret);
                assert_true(at < strlen(probe) && at + heads[h] < PART_CAP + 100);
                free(probe);
                part[s] = padded_slot(s, PART_CAP + 100 - at - heads[h], it->line);
                at = first_hit(part[s], strlen(part[s]), (size_t)it->secret);
                assert_int_equal(at + heads[h], PART_CAP);
                straddles++;
            }
            struct asr_incident inc = {.service = "orders",
                                       .kind = "generic",
                                       .signature = "generic:error",
                                       .severity = "error",
                                       .source = "stdout",
                                       .line = part[SLOT_LINE],
                                       .fields = part[SLOT_FIELDS],
                                       .context_before = part[SLOT_BEFORE],
                                       .context_after = part[SLOT_AFTER],
                                       .status = ASR_INCIDENT_OPEN,
                                       .count = 1};
            static char *globs[] = {"src/*.c", NULL};
            struct asr_prompt_input in = {.inc = &inc, .repo_dir = C.repo, .patch_paths = globs};
            struct asr_prompt p;
            struct asr_err err = {0};
            if (asr_prompt_build(&in, &p, &err) != 0)
                fail_msg("cut prompt %zu: %s", nprompts, err.msg);
            send_all(p.system, p.user);
            users[nprompts++] = strdup(p.user);
            asr_prompt_free(&p);
            for (int s = 0; s < NSLOTS; s++)
                free(part[s]);
        }
    size_t n = 0, leaks = 0, missing = 0;
    struct record *rec = read_records(&n);
    assert_int_equal(n, nprompts * NPROTOS);
    bool *found = calloc(C.nsecs, sizeof(bool));
    assert_non_null(found);
    struct scan sc = {.found = found, .max_print = 20};
    for (size_t b = 0; b < n; b++) {
        char where[96];
        snprintf(where, sizeof(where), "cut body %zu (prompt %zu, %s)", b, b / NPROTOS,
                 PROTOS[b % NPROTOS]);
        sc.where = where;
        memset(found, 0, C.nsecs * sizeof(bool));
        check_body(&sc, rec[b].body, rec[b].len);
        for (size_t s = 0; s < C.nsecs; s++)
            leaks += found[s];
        char *user = user_of(rec[b].body, rec[b].len, (int)(b % NPROTOS));
        assert_string_equal(user, users[b / NPROTOS]);
        /* Each line's tag stands before its secret, so it is sent. */
        for (int s = 0; s < NSLOTS; s++) {
            char tag[16];
            snprintf(tag, sizeof(tag), "w%05zu ", items[b / NPROTOS][s]);
            if (strstr(user, tag) == NULL && missing++ < 10)
                print_error("%s: the line %s in %s is missing\n", where, tag, SLOT_NAMES[s]);
        }
        free(user);
    }
    print_message("redact_wire: secrets at the 8 KiB cut: %zu straddles (%d formats x %d places "
                  "x %d cut points) in %zu prompts, %zu bodies, %zu bytes checked: %zu leaks, %zu "
                  "lines missing\n",
                  straddles, NFORMATS, NSLOTS, (int)NHEADS, nprompts, n, sc.bytes, leaks, missing);
    assert_int_equal(leaks, 0);
    assert_int_equal(missing, 0);
    for (size_t i = 0; i < nprompts; i++)
        free(users[i]);
    free(users);
    free(items);
    free(found);
    free_records(rec, n);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_redaction),
        cmocka_unit_test(test_wire_secret_at_the_cut),
        cmocka_unit_test(test_checker_catches_unredacted),
        cmocka_unit_test(test_unredacted_on_the_wire),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
