/*
 * test_policy.c - the policy gate (src/execute/policy.c) and the remediation store with its
 * journal (src/store/remediations.c), on a real SQLite file.
 */
#include "asr/remediation.h"
#include "execute/policy.h"
#include "store/store_int.h"

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
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/asr-policy.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/asr.db", f->dir);
    struct asr_err err = {0};
    assert_int_equal(asr_store_open_file(f->path, &f->st, &err), 0);
    f->svc.name = "shop";
    f->svc.policy.budget_remediations = 2;
    f->svc.policy.budget_per_ms = 3600000;
    f->svc.policy.cooldown_ms = 600000;
    /* Incidents 1..6 and a plan for each (plan i belongs to incident i). */
    for (int i = 1; i <= 6; i++) {
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO incidents (fingerprint, service, kind, signature, severity, source, "
                 "line, first_seen, last_seen, received_us, opened_at) VALUES ('shop:inc%d', "
                 "'shop', 'exit', 'exit', 'error', 'stderr', 'x', 1, 1, 1, 1);"
                 "INSERT INTO plans (incident_id, created_at, strategy, confidence, "
                 "requires_approval, body) VALUES (%d, 1, 'playbook', 0.5, 0, '{}');",
                 i, i);
        assert_int_equal(sqlite3_exec(asr_store_db(f->st), sql, NULL, NULL, NULL), SQLITE_OK);
    }
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

static enum asr_gate gate(struct fx *f, struct asr_gate_input in, char *why, size_t cap)
{
    struct asr_err err = {0};
    enum asr_gate g;
    in.svc = &f->svc;
    if (in.fingerprint == NULL)
        in.fingerprint = "shop:fp1";
    if (in.now == 0)
        in.now = asr_store_now(f->st);
    assert_int_equal(asr_policy_gate(f->st, &in, &g, why, cap, &err), 0);
    return g;
}

static void test_gate_order(void **state)
{
    struct fx *f = *state;
    char why[400];
    assert_int_equal(gate(f, (struct asr_gate_input){.services = 2}, why, sizeof(why)),
                     ASR_GATE_RUN);
    assert_int_equal(gate(f, (struct asr_gate_input){.only_escalate = true}, why, sizeof(why)),
                     ASR_GATE_ESCALATE);
    assert_int_equal(gate(f, (struct asr_gate_input){.requires_approval = true}, why, sizeof(why)),
                     ASR_GATE_APPROVAL);
    f->svc.policy.shadow = true;
    assert_int_equal(gate(f, (struct asr_gate_input){.requires_approval = true}, why, sizeof(why)),
                     ASR_GATE_SHADOW);
    f->svc.policy.shadow = false;
    /* One failing service is the fault itself; two of three is a freeze. */
    assert_int_equal(
        gate(f, (struct asr_gate_input){.services = 2, .unhealthy = 1}, why, sizeof(why)),
        ASR_GATE_RUN);
    assert_int_equal(
        gate(f, (struct asr_gate_input){.services = 3, .unhealthy = 2}, why, sizeof(why)),
        ASR_GATE_REFUSE);
    assert_non_null(strstr(why, "global freeze: 2 of 3"));
    assert_int_equal(
        gate(f, (struct asr_gate_input){.services = 5, .unhealthy = 2}, why, sizeof(why)),
        ASR_GATE_RUN);
}

static void test_in_flight_budget_cooldown(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    struct asr_remediation r = {0};
    bool created = false;
    char why[400];
    /* Plan 1 runs: a second remediation of shop is refused while it is in flight. */
    assert_int_equal(asr_remediation_open(f->st, 1, 1, "shop", "shop:fp1", ASR_REM_RUNNING, NULL,
                                          &r, &created, &err),
                     0);
    assert_true(created);
    assert_int_equal(gate(f, (struct asr_gate_input){.fingerprint = "shop:fp2"}, why, sizeof(why)),
                     ASR_GATE_REFUSE);
    assert_non_null(strstr(why, "in flight"));
    /* ...but the run itself is not counted against itself. */
    assert_int_equal(gate(f, (struct asr_gate_input){.fingerprint = "shop:fp2", .self_id = r.id},
                          why, sizeof(why)),
                     ASR_GATE_RUN);
    assert_int_equal(asr_remediation_set(f->st, r.id, ASR_REM_SUCCEEDED, "ok", NULL, &err), 0);
    /* Its fingerprint is in its cooldown; another fingerprint is not. */
    assert_int_equal(gate(f, (struct asr_gate_input){.fingerprint = "shop:fp1"}, why, sizeof(why)),
                     ASR_GATE_REFUSE);
    assert_non_null(strstr(why, "cooldown"));
    assert_int_equal(gate(f, (struct asr_gate_input){.fingerprint = "shop:fp2"}, why, sizeof(why)),
                     ASR_GATE_RUN);
    asr_remediation_free(&r);
    /* A second one ran: the budget of 2 is spent. Refused and shadowed ones do not count. */
    assert_int_equal(asr_remediation_open(f->st, 3, 3, "shop", "shop:fp1", ASR_REM_REFUSED, "x", &r,
                                          &created, &err),
                     0);
    asr_remediation_free(&r);
    assert_int_equal(gate(f, (struct asr_gate_input){.fingerprint = "shop:fp2"}, why, sizeof(why)),
                     ASR_GATE_RUN);
    assert_int_equal(asr_remediation_open(f->st, 2, 2, "shop", "shop:fp2", ASR_REM_RUNNING, NULL,
                                          &r, &created, &err),
                     0);
    assert_int_equal(asr_remediation_set(f->st, r.id, ASR_REM_FAILED, "no", NULL, &err), 0);
    asr_remediation_free(&r);
    f->svc.policy.cooldown_ms = 0;
    assert_int_equal(gate(f, (struct asr_gate_input){.fingerprint = "shop:fp9"}, why, sizeof(why)),
                     ASR_GATE_REFUSE);
    assert_non_null(strstr(why, "budget"));
}

static void test_remediation_once(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    struct asr_remediation r = {0}, again = {0};
    bool created = false;
    assert_int_equal(asr_remediation_open(f->st, 4, 4, "shop", "shop:fp2", ASR_REM_AWAITING, "wait",
                                          &r, &created, &err),
                     0);
    assert_true(created);
    assert_int_equal(r.started_at, 0);
    /* The same plan again (a restart): the row as it was, nothing new. */
    assert_int_equal(asr_remediation_open(f->st, 4, 4, "shop", "shop:fp2", ASR_REM_RUNNING, NULL,
                                          &again, &created, &err),
                     0);
    assert_false(created);
    assert_int_equal(again.id, r.id);
    assert_string_equal(again.state, ASR_REM_AWAITING);
    asr_remediation_free(&again);
    assert_int_equal(asr_remediation_set(f->st, r.id, ASR_REM_RUNNING, "approved", "ana", &err), 0);
    assert_int_equal(asr_remediation_get(f->st, r.id, &again, &err), 0);
    assert_string_equal(again.approved_by, "ana");
    assert_true(again.started_at > 0);
    asr_remediation_free(&again);
    assert_int_equal(asr_remediation_set(f->st, r.id, ASR_REM_SUCCEEDED, "done", NULL, &err), 0);
    /* A final state is final. */
    assert_int_equal(asr_remediation_set(f->st, r.id, ASR_REM_RUNNING, NULL, NULL, &err),
                     ASR_EINVAL);
    assert_non_null(strstr(err.msg, "already succeeded"));
    assert_int_equal(asr_remediation_of_incident(f->st, 4, &again, &err), 0);
    assert_int_equal(again.id, r.id);
    asr_remediation_free(&again);
    assert_int_equal(asr_remediation_of_incident(f->st, 5, &again, &err), ASR_ENOENT);
    asr_remediation_free(&r);
}

static void test_journal_once(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    struct asr_remediation r = {0};
    bool created = false, found = false, ok = false;
    assert_int_equal(asr_remediation_open(f->st, 5, 5, "shop", "shop:fp1", ASR_REM_RUNNING, NULL,
                                          &r, &created, &err),
                     0);
    const char *key = "rem:1:step:1";
    assert_int_equal(asr_journal_has(f->st, key, "intent", &found, &ok, &err), 0);
    assert_false(found);
    assert_int_equal(asr_journal_write(f->st, r.id, 1, "restart", "intent", key, false, NULL, &err),
                     0);
    /* An intent with no result: the step that a crash interrupted. */
    assert_int_equal(asr_journal_has(f->st, key, "intent", &found, &ok, &err), 0);
    assert_true(found);
    assert_int_equal(asr_journal_has(f->st, key, "result", &found, &ok, &err), 0);
    assert_false(found);
    assert_int_equal(asr_journal_write(f->st, r.id, 1, "restart", "intent", key, false, NULL, &err),
                     ASR_EINVAL);
    assert_int_equal(asr_journal_write(f->st, r.id, 1, "restart", "result", key, true,
                                       "{\"detail\":\"ok\"}", &err),
                     0);
    assert_int_equal(asr_journal_has(f->st, key, "result", &found, &ok, &err), 0);
    assert_true(found && ok);
    struct asr_remediation *v = NULL;
    size_t n = 0;
    assert_int_equal(asr_remediation_in_flight_all(f->st, &v, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, r.id);
    asr_remediations_free(v, n);
    asr_remediation_free(&r);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gate_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_flight_budget_cooldown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remediation_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
