/*
 * test_playbook.c - the playbook loader: the shipped playbooks, their patches against the demo
 * service's real source, the exact error messages, caps, duplicate ids and the JSON form.
 *
 * The demo files are read from ASR_SOURCE_DIR (set by CTest), so the test notices when someone
 * edits demo/app and a playbook's patch no longer applies.
 */
#include "strategy/playbook.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* A valid playbook that the error cases below change one line of. */
#define PB_HEAD                                                                                    \
    "id: t1\n"                                                                                     \
    "title: A test playbook\n"                                                                     \
    "match: {signature: FAULT_X}\n"                                                                \
    "symptoms: something broke\n"
#define PB_VERIFY "verify: {request: {method: GET, path: /health}, expect: {status: 200}}\n"
#define PB_STEPS "steps:\n  - action: restart\n"

static const char *source_dir(void)
{
    const char *d = getenv("ASR_SOURCE_DIR");
    return d != NULL ? d : ".";
}

/* The whole file at ASR_SOURCE_DIR/rel, NUL-terminated; the caller frees. */
static char *read_source(const char *rel, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", source_dir(), rel);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static size_t count_occurrences(const char *hay, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + nl, needle))
        n++;
    return n;
}

static int parse(const char *text, struct asr_playbook **pb, char *msg, size_t cap)
{
    struct asr_err err = {0};
    int rc = asr_playbook_parse("t.yaml", text, strlen(text), pb, &err);
    snprintf(msg, cap, "%s", err.msg);
    return rc;
}

/* Parses text, which must fail with ASR_ECONFIG and exactly the message want. */
static void expect_error(const char *text, const char *want)
{
    struct asr_playbook *pb = (struct asr_playbook *)1;
    char msg[600];
    int rc = parse(text, &pb, msg, sizeof(msg));
    if (rc != ASR_ECONFIG || strcmp(msg, want) != 0)
        fail_msg("input:\n%s\nrc %d, message:\n  %s\nwanted:\n  %s", text, rc, msg, want);
    assert_null(pb);
}

/* Appends s to the string in buf; the tests size their buffers. */
static void append(char *buf, size_t cap, const char *s)
{
    size_t l = strlen(buf);
    assert_true(l + strlen(s) < cap);
    snprintf(buf + l, cap - l, "%s", s);
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void test_demo_playbooks_load(void **state)
{
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/demo/playbooks", source_dir());
    struct asr_playbook_set *set = NULL;
    struct asr_err err = {0};
    int rc = asr_playbook_load_dir(dir, &set, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    assert_true(set->n >= 12);
    for (size_t i = 0; i < set->n; i++) {
        const struct asr_playbook *pb = set->items[i];
        assert_true(pb->nsteps >= 1 && pb->nsteps <= ASR_PLAYBOOK_MAX_STEPS);
        assert_true(pb->nsignatures > 0 || pb->template != NULL || pb->text != NULL);
        assert_true(strlen(pb->symptoms) > 100); /* enough words to be found by retrieval */
        assert_non_null(pb->verify.method);
        assert_int_equal(pb->verify.path[0], '/');
        if (i > 0)
            assert_true(strcmp(set->items[i - 1]->file, pb->file) < 0);
        assert_ptr_equal(asr_playbook_set_find(set, pb->id), pb);
    }
    const char *demo[][3] = {
        {"sql-malformed-report-query", "FAULT_SQL_INJECTION_TEST", "/test-fault/run"},
        {"upstream-timeout-too-short", "FAULT_EXTERNAL_API_LATENCY", "/test-fault/external-api"},
        {"db-statement-limit-too-short", "FAULT_DB_TIMEOUT", "/test-fault/db-timeout"},
    };
    for (size_t i = 0; i < sizeof(demo) / sizeof(demo[0]); i++) {
        const struct asr_playbook *pb = asr_playbook_set_find(set, demo[i][0]);
        assert_non_null(pb);
        assert_int_equal(pb->nsignatures, 1);
        assert_string_equal(pb->signatures[0], demo[i][1]);
        assert_string_equal(pb->verify.method, "POST");
        assert_string_equal(pb->verify.path, demo[i][2]);
        assert_int_equal(pb->verify.status, 200);
        assert_string_equal(pb->steps[0].action, "patch");
    }
    /* The general playbooks a knowledge base starts with. */
    const char *general[] = {"crash-loop",
                             "deploy-regression",
                             "out-of-memory",
                             "disk-full",
                             "dependency-connection-refused",
                             "tls-certificate-expired"};
    for (size_t i = 0; i < sizeof(general) / sizeof(general[0]); i++) {
        const struct asr_playbook *pb = asr_playbook_set_find(set, general[i]);
        assert_non_null(pb);
        assert_string_equal(pb->verify.path, "/health");
    }
    const struct asr_playbook *crash = asr_playbook_set_find(set, "crash-loop");
    assert_int_equal(crash->nsteps, 2);
    assert_string_equal(crash->steps[0].action, "restart");
    assert_string_equal(crash->steps[1].action, "rollback");
    assert_string_equal(asr_playbook_set_find(set, "deploy-regression")->steps[0].action,
                        "rollback");
    assert_null(asr_playbook_set_find(set, "no-such-playbook"));
    asr_playbook_set_free(set);
}

/* Every patch step of the shipped playbooks applies to the demo service exactly once. */
static void test_demo_patches_apply(void **state)
{
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/demo/playbooks", source_dir());
    struct asr_playbook_set *set = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_playbook_load_dir(dir, &set, &err), 0);
    size_t patches = 0;
    for (size_t i = 0; i < set->n; i++) {
        const struct asr_playbook *pb = set->items[i];
        for (size_t s = 0; s < pb->nsteps; s++) {
            if (strcmp(pb->steps[s].action, "patch") != 0)
                continue;
            const json_t *edits = json_object_get(pb->steps[s].args, "edits");
            size_t k;
            const json_t *e;
            json_array_foreach(edits, k, e)
            {
                const char *path = json_string_value(json_object_get(e, "path"));
                const char *search = json_string_value(json_object_get(e, "search"));
                const char *replace = json_string_value(json_object_get(e, "replace"));
                char rel[512];
                snprintf(rel, sizeof(rel), "demo/app/%s", path);
                size_t len;
                char *src = read_source(rel, &len);
                if (count_occurrences(src, search) != 1)
                    fail_msg("%s: the search text of edits[%zu] occurs %zu times in %s", pb->id, k,
                             count_occurrences(src, search), rel);
                /* Apply it, as the patch action will, and check that the file changed. */
                const char *at = strstr(src, search);
                size_t before = (size_t)(at - src), sl = strlen(search), rl = strlen(replace);
                char *out = malloc(len - sl + rl + 1);
                assert_non_null(out);
                memcpy(out, src, before);
                memcpy(out + before, replace, rl);
                memcpy(out + before + rl, at + sl, len - before - sl + 1);
                assert_string_not_equal(out, src);
                assert_int_equal(count_occurrences(out, search), 0);
                /* Search and replace are whole lines, as the block scalars give them. */
                assert_int_equal(search[sl - 1], '\n');
                assert_int_equal(replace[rl - 1], '\n');
                free(out);
                free(src);
                patches++;
            }
        }
    }
    assert_int_equal(patches, 3);
    /* The upstream answers after --delay-ms (demo/asr.yaml): the new timeout, and the replay's,
     * must be above that. */
    size_t len;
    char *cfg = read_source("demo/asr.yaml", &len);
    const char *delay = strstr(cfg, "--delay-ms, \"");
    assert_non_null(delay);
    long delay_ms = strtol(delay + strlen("--delay-ms, \""), NULL, 10);
    assert_true(delay_ms > 500); /* over the shop's faulty 500 ms: the fault is there */
    free(cfg);
    const struct asr_playbook *up = asr_playbook_set_find(set, "upstream-timeout-too-short");
    const char *rep = json_string_value(
        json_object_get(json_array_get(json_object_get(up->steps[0].args, "edits"), 0), "replace"));
    const char *eq = strchr(rep, '=');
    assert_non_null(eq);
    assert_true(strtol(eq + 1, NULL, 10) > delay_ms);
    assert_true(up->verify.timeout_ms > delay_ms);
    asr_playbook_set_free(set);
}

static void test_parse_fields(void **state)
{
    (void)state;
    const char *text = "id: full.v2_x\n"
                       "title: 'Full: every field'\n"
                       "version: 3\n"
                       "match:\n"
                       "  signature: [FAULT_A, generic:oom]\n"
                       "  template: \"x=<*> failed\"\n"
                       "  text: free text\n"
                       "  service: shop\n"
                       "symptoms: |\n"
                       "  line one\n"
                       "  line two\n"
                       "steps:\n"
                       "  - {action: restart}\n"
                       "  - action: patch\n"
                       "    message: 3000\n"
                       "    edits:\n"
                       "      - path: src/a.c\n"
                       "        search: |\n"
                       "          int x = 1;\n"
                       "\n"
                       "          int y;\n"
                       "        replace: |-\n"
                       "          int x = 2;\n"
                       "      - path: src/b.c\n"
                       "        search: |+\n"
                       "          keep\n"
                       "\n"
                       "        replace: \"\"\n"
                       "  - action: escalate\n"
                       "    reason: >\n"
                       "      folded\n"
                       "      text\n"
                       "verify:\n"
                       "  request:\n"
                       "    method: POST\n"
                       "    path: /orders?id=1\n"
                       "    headers: {X-Asr-Verification: '1', Content-Type: application/json}\n"
                       "    body: '{\"a\": 1}'\n"
                       "  expect: {status: 201, body_contains: ok, body_not_contains: error}\n"
                       "  timeout_ms: 1500\n";
    struct asr_playbook *pb = NULL;
    char msg[600];
    int rc = parse(text, &pb, msg, sizeof(msg));
    if (rc != 0)
        fail_msg("%s", msg);
    assert_string_equal(pb->file, "t.yaml");
    assert_string_equal(pb->id, "full.v2_x");
    assert_int_equal(pb->id_line, 1);
    assert_string_equal(pb->title, "Full: every field");
    assert_int_equal(pb->version, 3);
    assert_int_equal(pb->nsignatures, 2);
    assert_string_equal(pb->signatures[1], "generic:oom");
    assert_string_equal(pb->template, "x=<*> failed");
    assert_string_equal(pb->text, "free text");
    assert_string_equal(pb->service, "shop");
    assert_string_equal(pb->symptoms, "line one\nline two\n");
    assert_int_equal(pb->nsteps, 3);
    assert_int_equal(pb->steps[0].line, 13);
    assert_int_equal(json_object_size(pb->steps[0].args), 0);
    /* Plain scalars stay text: the actions take text, and 3000 is a message here. */
    assert_string_equal(json_string_value(json_object_get(pb->steps[1].args, "message")), "3000");
    const json_t *edits = json_object_get(pb->steps[1].args, "edits");
    assert_int_equal(json_array_size(edits), 2);
    /* Block scalars keep their bytes: "|" one final newline, "|-" none, "|+" all of them. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(edits, 0), "search")),
                        "int x = 1;\n\nint y;\n");
    assert_string_equal(json_string_value(json_object_get(json_array_get(edits, 0), "replace")),
                        "int x = 2;");
    assert_string_equal(json_string_value(json_object_get(json_array_get(edits, 1), "search")),
                        "keep\n\n");
    assert_string_equal(json_string_value(json_object_get(json_array_get(edits, 1), "replace")),
                        "");
    assert_string_equal(json_string_value(json_object_get(pb->steps[2].args, "reason")),
                        "folded text\n");
    const struct asr_playbook_verify *v = &pb->verify;
    assert_string_equal(v->method, "POST");
    assert_string_equal(v->path, "/orders?id=1");
    assert_int_equal(v->nheaders, 2);
    assert_string_equal(v->headers[0].name, "X-Asr-Verification");
    assert_string_equal(v->headers[0].value, "1");
    assert_string_equal(v->headers[1].value, "application/json");
    assert_string_equal(v->body, "{\"a\": 1}");
    assert_int_equal(v->status, 201);
    assert_string_equal(v->body_contains, "ok");
    assert_string_equal(v->body_not_contains, "error");
    assert_int_equal(v->timeout_ms, 1500);
    asr_playbook_free(pb);

    /* Defaults: no version, one signature as a scalar, the default timeout, no body. */
    rc = parse(PB_HEAD PB_STEPS PB_VERIFY, &pb, msg, sizeof(msg));
    if (rc != 0)
        fail_msg("%s", msg);
    assert_int_equal(pb->version, 0);
    assert_int_equal(pb->nsignatures, 1);
    assert_string_equal(pb->signatures[0], "FAULT_X");
    assert_null(pb->template);
    assert_null(pb->service);
    assert_null(pb->verify.body);
    assert_null(pb->verify.body_contains);
    assert_int_equal(pb->verify.nheaders, 0);
    assert_int_equal(pb->verify.timeout_ms, ASR_PLAYBOOK_DEFAULT_TIMEOUT_MS);
    asr_playbook_free(pb);
}

static void test_errors_schema(void **state)
{
    (void)state;
    expect_error(PB_HEAD PB_STEPS PB_VERIFY "owner: ops\n",
                 "t.yaml:8: owner: unknown key (expected one of: id, title, version, match, "
                 "symptoms, steps, verify)");
    expect_error(PB_HEAD PB_VERIFY, "t.yaml:1: (top level): missing required key 'steps'");
    expect_error(PB_HEAD "steps: []\n" PB_VERIFY, "t.yaml:5: steps: expected 1 to 16 steps, got 0");
    expect_error(PB_HEAD "steps: restart\n" PB_VERIFY,
                 "t.yaml:5: steps: expected a list of steps, got 'restart'");
    expect_error(PB_HEAD "steps:\n  - restart\n" PB_VERIFY,
                 "t.yaml:6: steps[0]: expected a mapping {action: NAME, ...arguments}, got "
                 "'restart'");
    expect_error(PB_HEAD "steps:\n  - {reason: x}\n" PB_VERIFY,
                 "t.yaml:6: steps[0]: missing required key 'action'");
    expect_error("id: t1\nid: t2\n", "t.yaml:2: id: duplicate key (first at line 1)");
    expect_error("id: ../etc\n", "t.yaml:1: id: expected an identifier "
                                 "([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}), got '../etc'");
    expect_error(
        "id: t1\ntitle: |\n  two\n  lines\n",
        "t.yaml:2: title: expected one line of at most 200 bytes, got 'two\\x0alines\\x0a'");
    expect_error("id: t1\ntitle: x\nversion: two\n",
                 "t.yaml:3: version: expected an integer from 1 to 1000000, got 'two'");
    expect_error("id: t1\ntitle: x\nmatch: {service: shop}\n",
                 "t.yaml:3: match: expected at least one of signature, template, text");
    expect_error("id: t1\ntitle: x\nmatch: {signature: [A, 'b c']}\n",
                 "t.yaml:3: match.signature[1]: expected a signature id "
                 "([A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}), got 'b c'");
    expect_error("id: t1\ntitle: x\nmatch: {signature: []}\n",
                 "t.yaml:3: match.signature: expected 1 to 32 signature ids, got 0");
    expect_error("id: t1\ntitle: x\nmatch: {text: a, service: Shop}\n",
                 "t.yaml:3: match.service: expected a service name ([a-z0-9][a-z0-9_-]{0,62}), "
                 "got 'Shop'");
    expect_error("id: t1\ntitle: x\nmatch: {text: a}\nsymptoms:\n",
                 "t.yaml:4: symptoms: expected text, got an empty value");
    expect_error("", "t.yaml:1: (top level): empty playbook (expected a mapping with id, title, "
                     "match, symptoms, steps and verify)");
    expect_error("- a\n", "t.yaml:1: (top level): expected a mapping, got a list");
    expect_error("id: t1\n---\nid: t2\n",
                 "t.yaml:2: yaml: more than one document (a playbook is one document)");
    expect_error("id: [t1\n", "t.yaml:2: yaml: did not find expected ',' or ']' (while parsing a "
                              "flow sequence at line 1)");
    expect_error("id: \"a\\0b\"\n", "t.yaml:1: id: expected an identifier "
                                    "([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}), got a value with a "
                                    "NUL byte");
}

static void test_errors_steps(void **state)
{
    (void)state;
    expect_error(PB_HEAD "steps:\n  - action: reboot\n" PB_VERIFY,
                 "t.yaml:6: steps[0]: action 'reboot' is not on the whitelist (restart, "
                 "rollback, patch, deploy, notify, escalate)");
    expect_error(PB_HEAD "steps:\n  - action: 'rm -rf'\n" PB_VERIFY,
                 "t.yaml:6: steps[0].action: expected an action name ([a-z][a-z0-9_]{0,63}), "
                 "got 'rm -rf'");
    expect_error(PB_HEAD "steps:\n  - action: restart\n    force: true\n" PB_VERIFY,
                 "t.yaml:7: steps[0]: action restart: unknown argument 'force'");
    expect_error(PB_HEAD "steps:\n  - action: escalate\n" PB_VERIFY,
                 "t.yaml:6: steps[0]: action escalate: reason: expected a string of 1 to 4096 "
                 "bytes");
    expect_error(PB_HEAD "steps:\n  - {action: restart, action: rollback}\n" PB_VERIFY,
                 "t.yaml:6: steps[0].action: duplicate key (first at line 6)");
    /* A patch that climbs out of the repository, reported at the edit's line. */
    expect_error(PB_HEAD "steps:\n"
                         "  - action: restart\n"
                         "  - action: patch\n"
                         "    edits:\n"
                         "      - {path: src/a.c, search: a, replace: b}\n"
                         "      - search: a\n"
                         "        path: ../x\n"
                         "        replace: b\n" PB_VERIFY,
                 "t.yaml:11: steps[1]: action patch: edits[1].path: '../x' is not a relative "
                 "path inside the repository");
    expect_error(PB_HEAD "steps:\n  - action: patch\n    edits:\n      - {path: /etc/passwd, "
                         "search: a, replace: b}\n" PB_VERIFY,
                 "t.yaml:8: steps[0]: action patch: edits[0].path: '/etc/passwd' is not a "
                 "relative path inside the repository");
    /* A newline in a value the validator quotes does not break the message's single line. */
    expect_error(PB_HEAD "steps:\n  - action: patch\n    edits: [{path: \"a\\nb\", search: a, "
                         "replace: b}]\n" PB_VERIFY,
                 "t.yaml:7: steps[0]: action patch: edits[0].path: 'a\\x0ab' is not a relative "
                 "path inside the repository");
    expect_error(PB_HEAD "steps:\n  - action: patch\n    edits: [{path: a.c, search: '', "
                         "replace: b}]\n" PB_VERIFY,
                 "t.yaml:7: steps[0]: action patch: edits[0].search: must not be empty");
    expect_error(PB_HEAD "steps:\n  - action: patch\n    edits: [{path: a.c, search: a, "
                         "replace: b, mode: x}]\n" PB_VERIFY,
                 "t.yaml:7: steps[0]: action patch: edits[0]: unknown argument 'mode'");
    expect_error(PB_HEAD "steps:\n  - action: patch\n    edits: [{path: a.c, search: a, "
                         "replace: [b]}]\n" PB_VERIFY,
                 "t.yaml:7: steps[0]: action patch: edits[0]: path, search and replace must all "
                 "be strings");
    expect_error(PB_HEAD "steps:\n  - action: patch\n    edits: [{path: a.c, search: a, "
                         "'bad key': b}]\n" PB_VERIFY,
                 "t.yaml:7: steps[0].edits[0].bad key: expected an argument name matching "
                 "[A-Za-z_][A-Za-z0-9_.-]{0,63}");
    expect_error(PB_HEAD
                 "steps:\n  - action: patch\n    edits: [{path: a.c, path: b.c}]\n" PB_VERIFY,
                 "t.yaml:7: steps[0].edits[0].path: duplicate key");
    char many[2048] = PB_HEAD "steps:\n";
    for (int i = 0; i < 17; i++)
        append(many, sizeof(many), "  - action: restart\n");
    append(many, sizeof(many), PB_VERIFY);
    expect_error(many, "t.yaml:6: steps: expected 1 to 16 steps, got 17");
}

static void test_errors_verify(void **state)
{
    (void)state;
    expect_error(PB_HEAD PB_STEPS "verify: {request: {method: GET, path: /health}}\n",
                 "t.yaml:7: verify: missing required key 'expect'");
    expect_error(PB_HEAD PB_STEPS
                 "verify: {request: {method: FETCH, path: /health}, expect: {status: 200}}\n",
                 "t.yaml:7: verify.request.method: expected one of GET, HEAD, POST, PUT, PATCH, "
                 "DELETE, OPTIONS, got 'FETCH'");
    expect_error(PB_HEAD PB_STEPS
                 "verify: {request: {method: GET, path: health}, expect: {status: 200}}\n",
                 "t.yaml:7: verify.request.path: expected a request path starting with '/' "
                 "(printable ASCII, no spaces), got 'health'");
    expect_error(PB_HEAD PB_STEPS
                 "verify: {request: {method: GET, path: /h}, expect: {status: 700}}\n",
                 "t.yaml:7: verify.expect.status: expected an integer from 100 to 599, got '700'");
    expect_error(PB_HEAD PB_STEPS "verify:\n  request: {method: GET, path: /h}\n  expect: "
                                  "{status: 200}\n  timeout_ms: 0\n",
                 "t.yaml:10: verify.timeout_ms: expected an integer from 1 to 600000, got '0'");
    expect_error(PB_HEAD PB_STEPS "verify:\n  request:\n    method: GET\n    path: /h\n    body: "
                                  "x\n  expect: {status: 200}\n",
                 "t.yaml:11: verify.request.body: a GET request carries no body");
    expect_error(PB_HEAD PB_STEPS "verify: {request: {method: POST, path: /h, headers: {Host: x}}, "
                                  "expect: {status: 200}}\n",
                 "t.yaml:7: verify.request.headers.Host: set by asr's probe, not by a playbook");
    expect_error(PB_HEAD PB_STEPS "verify: {request: {method: POST, path: /h, headers: {A: x, a: "
                                  "y}}, expect: {status: 200}}\n",
                 "t.yaml:7: verify.request.headers.a: duplicate header");
    expect_error(PB_HEAD PB_STEPS "verify: {request: {method: POST, path: /h, headers: {'a b': "
                                  "x}}, expect: {status: 200}}\n",
                 "t.yaml:7: verify.request.headers.a b: expected a header name (an HTTP token)");
    expect_error(PB_HEAD PB_STEPS
                 "verify: {request: {method: POST, path: /h, headers: {A: \"x\\r\\n"
                 "B: y\"}}, expect: {status: 200}}\n",
                 "t.yaml:7: verify.request.headers.A: expected one line of at most 4096 bytes, "
                 "got 'x\\x0d\\x0aB: y'");
}

static void test_alias_refused(void **state)
{
    (void)state;
    expect_error("id: &a t1\n", "t.yaml:1: yaml: anchor '&a' is not supported (anchors and "
                                "aliases are rejected; write the value out)");
    expect_error(PB_HEAD "steps:\n  - &s {action: restart}\n  - *s\n" PB_VERIFY,
                 "t.yaml:6: yaml: anchor '&s' is not supported (anchors and aliases are "
                 "rejected; write the value out)");
    expect_error("id: *a\n", "t.yaml:1: yaml: alias '*a' is not supported (anchors and aliases "
                             "are rejected; write the value out)");
    /* Nesting is capped before the tree is built. */
    char deep[256] = "id: ";
    for (int i = 0; i < 17; i++)
        append(deep, sizeof(deep), "[");
    expect_error(deep, "t.yaml:1: yaml: nesting deeper than 16 levels");
}

static void test_too_big(void **state)
{
    (void)state;
    size_t len = ASR_PLAYBOOK_MAX_BYTES + 1;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, '#', len);
    struct asr_playbook *pb = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_playbook_parse("big.yaml", text, len, &pb, &err), ASR_ETOOBIG);
    assert_string_equal(err.msg, "big.yaml:1: yaml: 262145 bytes is more than the cap of 262144 "
                                 "bytes (256 KiB)");
    assert_null(pb);

    char dir[] = "/tmp/asr-pb-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/big.yaml", dir);
    write_file(path, text, len);
    err = (struct asr_err){0};
    assert_int_equal(asr_playbook_load(path, &pb, &err), ASR_ETOOBIG);
    char want[512];
    snprintf(want, sizeof(want),
             "%s:1: yaml: the file is larger than the cap of 262144 bytes (256 KiB)", path);
    assert_string_equal(err.msg, want);
    unlink(path);
    free(text);

    /* A string cap inside a file that fits. */
    char sym[ASR_PLAYBOOK_MAX_SYMPTOMS + 200];
    int n = snprintf(sym, sizeof(sym), "id: t1\ntitle: x\nmatch: {text: a}\nsymptoms: ");
    memset(sym + n, 'w', ASR_PLAYBOOK_MAX_SYMPTOMS + 1);
    sym[n + ASR_PLAYBOOK_MAX_SYMPTOMS + 1] = '\0';
    expect_error(sym, "t.yaml:4: symptoms: 8193 bytes is more than the cap of 8192 bytes");

    assert_int_equal(asr_playbook_load(dir, &pb, &err), ASR_EIO);
    snprintf(want, sizeof(want), "%s: not a regular file", dir);
    assert_string_equal(err.msg, want);
    snprintf(path, sizeof(path), "%s/missing.yaml", dir);
    assert_int_equal(asr_playbook_load(path, &pb, &err), ASR_EIO);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err.msg, want);
    rmdir(dir);
}

static void test_duplicate_ids(void **state)
{
    (void)state;
    char dir[] = "/tmp/asr-pb-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *text = PB_HEAD PB_STEPS PB_VERIFY;
    const char *names[] = {"b.yml", "a.yaml", "notes.txt", ".hidden.yaml"};
    char path[256];
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        write_file(path, i >= 2 ? "not: [a playbook" : text,
                   strlen(i >= 2 ? "not: [a playbook" : text));
    }
    struct asr_playbook_set *set = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_playbook_load_dir(dir, &set, &err), ASR_ECONFIG);
    assert_null(set);
    char want[600];
    snprintf(want, sizeof(want), "%s/b.yml:1: id: duplicate id 't1' (also in %s/a.yaml:1)", dir,
             dir);
    assert_string_equal(err.msg, want);

    /* With distinct ids both load, in name order; other files are not playbooks. */
    snprintf(path, sizeof(path), "%s/b.yml", dir);
    const char *other = "id: t2\ntitle: B\nmatch: {text: b}\nsymptoms: s\n" PB_STEPS PB_VERIFY;
    write_file(path, other, strlen(other));
    assert_int_equal(asr_playbook_load_dir(dir, &set, &err), 0);
    assert_int_equal(set->n, 2);
    assert_string_equal(set->items[0]->id, "t1");
    assert_string_equal(set->items[1]->id, "t2");
    asr_playbook_set_free(set);

    /* One bad file fails the directory, with the file's own message. */
    snprintf(path, sizeof(path), "%s/c.yaml", dir);
    write_file(path, "id: t3\n", 7);
    assert_int_equal(asr_playbook_load_dir(dir, &set, &err), ASR_ECONFIG);
    snprintf(want, sizeof(want), "%s/c.yaml:1: (top level): missing required key 'title'", dir);
    assert_string_equal(err.msg, want);

    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/c.yaml", dir);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(asr_playbook_load_dir("/nonexistent-asr-dir", &set, &err), ASR_EIO);
}

/* The JSON form has the YAML's keys, so a dump parses back to the same playbook. */
static void test_json_round_trip(void **state)
{
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/demo/playbooks", source_dir());
    struct asr_playbook_set *set = NULL;
    struct asr_err err = {0};
    assert_int_equal(asr_playbook_load_dir(dir, &set, &err), 0);
    for (size_t i = 0; i < set->n; i++) {
        json_t *j = asr_playbook_json(set->items[i]);
        assert_non_null(j);
        char *dump = json_dumps(j, 0); /* JSON is YAML flow style */
        assert_non_null(dump);
        struct asr_playbook *back = NULL;
        int rc = asr_playbook_parse("dump", dump, strlen(dump), &back, &err);
        if (rc != 0)
            fail_msg("%s: %s\n%s", set->items[i]->id, err.msg, dump);
        json_t *j2 = asr_playbook_json(back);
        assert_true(json_equal(j, j2));
        assert_string_equal(back->symptoms, set->items[i]->symptoms);
        json_decref(j2);
        asr_playbook_free(back);
        free(dump);
        json_decref(j);
    }
    const struct asr_playbook *sql = asr_playbook_set_find(set, "sql-malformed-report-query");
    json_t *j = asr_playbook_json(sql);
    assert_string_equal(json_string_value(json_object_get(j, "id")), sql->id);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 1);
    json_t *sig = json_object_get(json_object_get(j, "match"), "signature");
    assert_int_equal(json_array_size(sig), 1);
    assert_string_equal(json_string_value(json_array_get(sig, 0)), "FAULT_SQL_INJECTION_TEST");
    json_t *step = json_array_get(json_object_get(j, "steps"), 0);
    assert_string_equal(json_string_value(json_object_get(step, "action")), "patch");
    json_t *edit = json_array_get(json_object_get(step, "edits"), 0);
    assert_string_equal(json_string_value(json_object_get(edit, "search")),
                        "static const char ORDERS_REPORT_SQL[] = \"SELECT FROM orders\";\n");
    json_t *verify = json_object_get(j, "verify");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(verify, "request"), "path")),
        "/test-fault/run");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(verify, "expect"), "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(verify, "timeout_ms")), 5000);
    assert_null(json_object_get(json_object_get(verify, "request"), "headers"));
    json_decref(j);
    asr_playbook_set_free(set);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    /* One case per line: tests/CMakeLists.txt makes each line its own CTest test. */
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_playbooks_load),
        cmocka_unit_test(test_demo_patches_apply),
        cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_errors_schema),
        cmocka_unit_test(test_errors_steps),
        cmocka_unit_test(test_errors_verify),
        cmocka_unit_test(test_alias_refused),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_duplicate_ids),
        cmocka_unit_test(test_json_round_trip),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
