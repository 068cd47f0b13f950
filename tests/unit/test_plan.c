/*
 * test_plan.c - the planner's order of strategies, on a real store: a playbook above the
 * threshold, a playbook whose patch leaves patch_paths (skipped, said in the rationale), the
 * crash-loop and after-deploy fallbacks, and escalation.
 */
#include "strategy/kb.h"
#include "strategy/plan.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

struct fx {
    char dir[64], path[128];
    struct asr_store *st;
    struct asr_service_cfg svc;
    char *globs[2];
    char *approval[1];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/asr-plan.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/asr.db", f->dir);
    struct asr_err err = {0};
    assert_int_equal(asr_store_open_file(f->path, &f->st, &err), 0);
    f->globs[0] = "src/**";
    f->svc.name = "shop";
    f->svc.policy.patch_paths = f->globs;
    f->svc.policy.approval = f->approval;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    asr_store_close(f->st);
    char p[160];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", f->path, sfx[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void put(struct fx *f, const char *ref, const char *sig, const char *symptoms,
                const char *steps)
{
    const char *sigs[] = {sig, NULL};
    char body[2048];
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"steps\":%s,\"verify\":{\"request\":{\"method\":\"GET\","
             "\"path\":\"/health\"},\"expect\":{\"status\":200}}}",
             ref, steps);
    struct asr_kb_doc d = {.kind = ASR_KB_PLAYBOOK,
                           .ref = ref,
                           .title = ref,
                           .signatures = sig != NULL ? sigs : NULL,
                           .symptoms = symptoms,
                           .body = body};
    struct asr_err err = {0};
    if (asr_kb_put(f->st, &d, NULL, &err) != 0)
        fail_msg("%s", err.msg);
}

static struct asr_incident inc_of(const char *kind, const char *sig, const char *line,
                                  int64_t count, int64_t first_seen)
{
    return (struct asr_incident){.id = 7,
                                 .fingerprint = "shop:x",
                                 .service = "shop",
                                 .kind = (char *)kind,
                                 .signature = (char *)sig,
                                 .line = (char *)line,
                                 .fields = "{\"route\":\"/orders\"}",
                                 .count = count,
                                 .first_seen = first_seen};
}

static void make(struct fx *f, const struct asr_incident *inc, struct asr_plan *p)
{
    struct asr_plan_ctx ctx = {.svc = &f->svc};
    struct asr_err err = {0};
    if (asr_plan_make(f->st, inc, &ctx, p, &err) != 0)
        fail_msg("%s", err.msg);
}

static const char *step(const struct asr_plan *p, size_t i)
{
    return json_string_value(json_object_get(json_array_get(p->steps, i), "action"));
}

static void test_playbook_and_bad_patch_skipped(void **state)
{
    struct fx *f = *state;
    /* The better-scoring playbook patches outside patch_paths: skipped, the next one used. */
    put(f, "bad-patch", "FAULT_Q", "query timeout",
        "[{\"action\":\"patch\",\"edits\":[{\"path\":\"etc/passwd\",\"search\":\"a\","
        "\"replace\":\"b\"}]}]");
    put(f, "restart-q", "FAULT_Q", "restart", "[{\"action\":\"restart\"}]");
    struct asr_incident inc = inc_of("signature", "FAULT_Q", "FAULT_Q query timeout", 1, 1000);
    struct asr_plan p;
    make(f, &inc, &p);
    assert_string_equal(p.strategy, "playbook");
    assert_string_equal(p.playbook, "restart-q");
    assert_string_equal(step(&p, 0), "restart");
    assert_non_null(strstr(p.rationale, "skipped: bad-patch"));
    assert_non_null(strstr(p.rationale, "outside the service's patch_paths"));
    assert_int_equal(json_array_size(p.sources), 2);
    assert_false(p.requires_approval);
    json_t *j = asr_plan_json(&p);
    assert_non_null(j);
    json_decref(j);
    asr_plan_free(&p);
}

static void test_approval(void **state)
{
    struct fx *f = *state;
    f->approval[0] = NULL;
    char *approval[] = {"restart", NULL};
    f->svc.policy.approval = approval;
    put(f, "restart-q", "FAULT_Q", "restart", "[{\"action\":\"restart\"}]");
    struct asr_incident inc = inc_of("signature", "FAULT_Q", "FAULT_Q", 1, 1000);
    struct asr_plan p;
    make(f, &inc, &p);
    assert_true(p.requires_approval);
    asr_plan_free(&p);
}

static void test_crash_loop_fallback(void **state)
{
    struct fx *f = *state;
    struct asr_incident inc = inc_of("exit", "exit", "slot blue exited on signal 11", 3, 1000);
    struct asr_plan p;
    make(f, &inc, &p);
    assert_string_equal(p.strategy, "fallback");
    assert_string_equal(step(&p, 0), "restart");
    assert_string_equal(step(&p, 1), "rollback");
    asr_plan_free(&p);
    inc.count = 1; /* one crash is not a loop */
    make(f, &inc, &p);
    assert_string_equal(step(&p, 0), "escalate");
    asr_plan_free(&p);
}

static void test_after_deploy_fallback(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    struct asr_release r = {0};
    const char *sha = "0123456789abcdef0123456789abcdef01234567";
    assert_int_equal(asr_store_service_upsert(f->st, "shop", &err), 0);
    assert_int_equal(asr_store_release_get_or_create(f->st, "shop", sha, "/tmp/x", &r, &err), 0);
    int64_t dep;
    assert_int_equal(asr_store_deployment_begin(f->st, "shop", "deploy", 0, r.id, &dep, &err), 0);
    assert_int_equal(asr_store_deployment_end(f->st, dep, ASR_DEPLOY_SUCCEEDED, NULL, &err), 0);
    asr_release_free(&r);
    struct asr_deployment d = {0};
    assert_int_equal(asr_store_deployment_last(f->st, "shop", &d, &err), 0);
    struct asr_incident inc =
        inc_of("generic", "generic:error", "ERROR something new", 1, d.ended_at + 60000);
    asr_deployment_free(&d);
    struct asr_plan p;
    make(f, &inc, &p);
    assert_string_equal(p.strategy, "fallback");
    assert_string_equal(step(&p, 0), "rollback");
    assert_non_null(strstr(p.rationale, "after deployment"));
    asr_plan_free(&p);
    /* Long after the deployment: a person decides. */
    inc.first_seen += 3600000;
    make(f, &inc, &p);
    assert_string_equal(step(&p, 0), "escalate");
    assert_true(p.confidence == 0.0);
    asr_plan_free(&p);
}

static void test_history_only_when_verified(void **state)
{
    struct fx *f = *state;
    const char *sigs[] = {"FAULT_H", NULL};
    struct asr_kb_doc d = {.kind = ASR_KB_INCIDENT,
                           .ref = "3",
                           .fingerprint = "shop:x",
                           .title = "incident 3",
                           .signatures = sigs,
                           .body = "{\"verified\":false,\"plan\":{\"steps\":[{\"action\":"
                                   "\"rollback\"}]}}"};
    struct asr_err err = {0};
    assert_int_equal(asr_kb_put(f->st, &d, NULL, &err), 0);
    struct asr_incident inc = inc_of("signature", "FAULT_H", "FAULT_H", 1, 1000);
    struct asr_plan p;
    make(f, &inc, &p);
    assert_string_equal(step(&p, 0), "escalate"); /* an unverified fix is not repeated */
    asr_plan_free(&p);
    d.body = "{\"verified\":true,\"plan\":{\"steps\":[{\"action\":\"rollback\"}]}}";
    assert_int_equal(asr_kb_put(f->st, &d, NULL, &err), 0);
    make(f, &inc, &p);
    assert_string_equal(p.strategy, "history");
    assert_string_equal(step(&p, 0), "rollback");
    asr_plan_free(&p);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_playbook_and_bad_patch_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_loop_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_deploy_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_only_when_verified, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
