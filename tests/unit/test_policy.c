/*
 * test_policy.c - the policy gate (src/execute/policy.c) and the remediation store with its
 * journal (src/store/remediations.c), on a real SQLite file; and the circuit of a service in a
 * storm, set up from the rows the supervisor and the executor write, on the store's clock.
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
    int64_t now; /* the store's clock, when a test sets it */
};

static int64_t clock_cb(void *arg)
{
    return ((struct fx *)arg)->now;
}

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
    f->svc.restart.window_ms = 60000;
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

/* The gate as the executor calls it, with its quiet output. */
static enum asr_gate gate_q(struct fx *f, const char *fp, bool *quiet, char *why, size_t cap)
{
    *quiet = true; /* the gate must set it either way */
    return gate(f, (struct asr_gate_input){.fingerprint = fp, .quiet = quiet}, why, cap);
}

/* Records a decision the way the executor does: the plan's remediation, in state, with why. */
static int64_t decide(struct fx *f, int plan, const char *fp, const char *state, const char *why)
{
    struct asr_err err = {0};
    struct asr_remediation r = {0};
    bool created = false;
    assert_int_equal(
        asr_remediation_open(f->st, plan, plan, "shop", fp, state, why, &r, &created, &err), 0);
    assert_true(created);
    int64_t id = r.id;
    asr_remediation_free(&r);
    return id;
}

static void event(struct fx *f, int64_t at, const char *kind, const char *detail)
{
    struct asr_err err = {0};
    f->now = at;
    assert_int_equal(asr_store_event_add(f->st, "shop", "supervisor", kind, detail, &err), 0);
}

/* A storm on the store's clock: shop deployed at 1000 s, then crashing every second. */
static void storm(struct fx *f, int64_t from, int64_t to)
{
    for (int64_t t = from; t < to; t += 1000)
        event(f, t, "slot.exited", "slot=blue pid=1 exited with status 3 (was ready)");
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

/* The supervisor spent the restart budget: the circuit opens; the first refusal says so (loud),
 * the next ones are recorded quietly; a deploy closes it. */
static void test_circuit_restart_budget(void **state)
{
    struct fx *f = *state;
    asr_store_set_clock(f->st, clock_cb, f);
    char why[400];
    bool quiet = false;
    event(f, 1000000, "deploy.switched", "deployment=1 kind=start");
    storm(f, 1001000, 1021000);
    f->now = 1021500;
    /* Crashing, but nothing spent yet: asr acts. */
    assert_int_equal(gate_q(f, "shop:exit:code=3", &quiet, why, sizeof(why)), ASR_GATE_RUN);
    assert_false(quiet);
    event(f, 1021000, "service.failed", "20 restarts within 60000 ms; last: exited with status 3");
    f->now = 1022000;
    assert_int_equal(gate_q(f, "shop:exit:code=3", &quiet, why, sizeof(why)), ASR_GATE_REFUSE);
    assert_false(quiet);
    assert_non_null(strstr(why, "circuit opened at 1970-01-01T00:17:01Z: "));
    assert_non_null(strstr(why, "restart budget is spent (20 restarts within 60000 ms"));
    assert_non_null(strstr(why, "asr deploy shop --ref FIX, or asr rollback shop"));
    decide(f, 1, "shop:exit:code=3", ASR_REM_REFUSED, why);
    /* One escalation: every later incident of shop is recorded, not escalated again. */
    for (int i = 2; i <= 4; i++) {
        f->now += 5000;
        assert_int_equal(gate_q(f, "shop:other", &quiet, why, sizeof(why)), ASR_GATE_REFUSE);
        assert_true(quiet);
        assert_non_null(strstr(why, "circuit open since 1970-01-01T00:17:01Z: "));
        decide(f, i, "shop:other", ASR_REM_REFUSED, why);
    }
    /* Even a plan that only escalates: the circuit's escalation covers it. */
    assert_int_equal(
        gate(f, (struct asr_gate_input){.only_escalate = true, .quiet = &quiet}, why, sizeof(why)),
        ASR_GATE_REFUSE);
    assert_true(quiet);
    bool open = false;
    int64_t since = 0;
    struct asr_err err = {0};
    assert_int_equal(
        asr_policy_circuit(f->st, &f->svc, f->now, &open, &since, why, sizeof(why), &err), 0);
    assert_true(open);
    assert_int_equal(since, 1021000);
    /* An operator deploys: closed, asr acts again. */
    event(f, 1100000, "deploy.switched", "deployment=2 kind=deploy");
    assert_int_equal(gate_q(f, "shop:exit:code=3", &quiet, why, sizeof(why)), ASR_GATE_RUN);
    assert_false(quiet);
    /* Failed again later: a new opening, announced again. */
    event(f, 1200000, "service.failed", "20 restarts within 60000 ms; last: killed by signal 9");
    assert_int_equal(gate_q(f, "shop:exit:code=3", &quiet, why, sizeof(why)), ASR_GATE_REFUSE);
    assert_false(quiet);
    assert_non_null(strstr(why, "circuit opened at 1970-01-01T00:20:00Z"));
}

/* A remediation that ran while the service kept crashing and did not remove the fault opens the
 * circuit; its own escalation says so (asr_policy_run_ended). It closes after restart.window_ms
 * without a crash, or a deploy; a failed fix of a service that did not crash (a bad patch)
 * leaves it closed. */
static void test_circuit_failed_fix(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    asr_store_set_clock(f->st, clock_cb, f);
    char why[400], note[700];
    bool quiet = false;
    f->svc.policy.budget_remediations = 10;
    event(f, 1000000, "deploy.switched", "deployment=1 kind=start");
    /* A bad patch: it failed, the service never crashed: closed. */
    f->now = 1001000;
    int64_t bad = decide(f, 1, "shop:FAULT_DB_TIMEOUT", ASR_REM_RUNNING, NULL);
    f->now = 1005000;
    assert_int_equal(asr_remediation_set(f->st, bad, ASR_REM_FAILED, "tests failed", NULL, &err),
                     0);
    assert_int_equal(
        asr_policy_run_ended(f->st, &f->svc, bad, false, f->now, note, sizeof(note), &err), 0);
    assert_string_equal(note, "");
    f->svc.policy.cooldown_ms = 0;
    assert_int_equal(gate_q(f, "shop:x", &quiet, why, sizeof(why)), ASR_GATE_RUN);
    /* A storm: remediation 2 runs (its restart deploys), the crashes go on, it fails. */
    storm(f, 1010000, 1012000);
    f->now = 1012100;
    int64_t rem = decide(f, 2, "shop:exit:code=3", ASR_REM_RUNNING, NULL);
    event(f, 1012500, "deploy.switched", "deployment=2 kind=deploy");
    storm(f, 1013000, 1016000);
    f->now = 1016100;
    assert_int_equal(
        asr_remediation_set(f->st, rem, ASR_REM_FAILED, "no step removed the fault", NULL, &err),
        0);
    assert_int_equal(
        asr_policy_run_ended(f->st, &f->svc, rem, false, f->now, note, sizeof(note), &err), 1);
    assert_non_null(strstr(note, "; the circuit of shop is open since 1970-01-01T00:16:56Z: "));
    assert_non_null(strstr(note, "remediation 2 (incident 2) did not remove the fault and shop "
                                 "crashed 3 times while it ran"));
    assert_non_null(strstr(note, "or it runs 60 s without a crash"));
    /* That escalation announced it: the next incidents are quiet. */
    storm(f, 1017000, 1030000);
    f->now = 1030500;
    assert_int_equal(gate_q(f, "shop:exit:code=4", &quiet, why, sizeof(why)), ASR_GATE_REFUSE);
    assert_true(quiet);
    assert_non_null(strstr(why, "circuit open since 1970-01-01T00:16:56Z: remediation 2"));
    decide(f, 3, "shop:exit:code=4", ASR_REM_REFUSED, why);
    /* The storm goes on with gaps shorter than the window (back-off): still open. */
    event(f, 1080000, "slot.exited", "slot=blue pid=9 exited with status 3 (was ready)");
    f->now = 1100000;
    assert_int_equal(gate_q(f, "shop:exit:code=5", &quiet, why, sizeof(why)), ASR_GATE_REFUSE);
    assert_true(quiet);
    decide(f, 4, "shop:exit:code=5", ASR_REM_REFUSED, why);
    /* The supervisor gives up on it: no crash any more, but a failed service is not calm, so the
     * circuit stays open since the failed fix, and it was announced then. */
    event(f, 1081000, "service.failed", "20 restarts within 60000 ms; last: exited with status 3");
    f->now = 1300000;
    assert_int_equal(gate_q(f, "shop:exit:code=7", &quiet, why, sizeof(why)), ASR_GATE_REFUSE);
    assert_true(quiet);
    assert_non_null(strstr(why, "circuit open since 1970-01-01T00:16:56Z: shop's restart budget "
                                "is spent (20 restarts within 60000 ms; last: exited with status "
                                "3): it is down and not restarted; remediation 2"));
    assert_non_null(strstr(why, "until an operator deploys (asr deploy shop --ref FIX, or asr "
                                "rollback shop)"));
    assert_null(strstr(why, "without a crash"));
    decide(f, 5, "shop:exit:code=7", ASR_REM_REFUSED, why);
    event(f, 1300500, "deploy.switched", "deployment=3 kind=deploy");
    f->now = 1301000;
    assert_int_equal(gate_q(f, "shop:exit:code=6", &quiet, why, sizeof(why)), ASR_GATE_RUN);
}

/* The failed fix of a crashing service, then a minute without a crash, or a deploy. */
static void test_circuit_calm(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    asr_store_set_clock(f->st, clock_cb, f);
    char why[400];
    bool quiet = false;
    f->svc.policy.budget_remediations = 10;
    event(f, 1000000, "deploy.switched", "deployment=1 kind=start");
    f->now = 1012100;
    int64_t rem = decide(f, 2, "shop:exit:code=3", ASR_REM_RUNNING, NULL);
    event(f, 1012500, "deploy.switched", "deployment=2 kind=deploy");
    storm(f, 1013000, 1016000);
    f->now = 1016100;
    assert_int_equal(asr_remediation_set(f->st, rem, ASR_REM_FAILED, "no", NULL, &err), 0);
    storm(f, 1017000, 1030000);
    event(f, 1080000, "slot.exited", "slot=blue pid=9 exited with status 3 (was ready)");
    /* A minute without a crash closes it... */
    bool open = true;
    int64_t since = 0;
    assert_int_equal(
        asr_policy_circuit(f->st, &f->svc, 1140001, &open, &since, why, sizeof(why), &err), 0);
    assert_false(open);
    assert_int_equal(
        asr_policy_circuit(f->st, &f->svc, 1139999, &open, &since, why, sizeof(why), &err), 0);
    assert_true(open);
    /* ...and so does a deploy, at once. */
    event(f, 1100500, "deploy.switched", "deployment=3 kind=deploy");
    f->now = 1101000;
    assert_int_equal(gate_q(f, "shop:exit:code=6", &quiet, why, sizeof(why)), ASR_GATE_RUN);
    assert_false(quiet);
}

/* The remediation budget: spent, the circuit opens; announced once; the window closes it. */
static void test_circuit_budget(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    asr_store_set_clock(f->st, clock_cb, f);
    f->svc.policy.cooldown_ms = 0;
    char why[400];
    bool quiet = false;
    /* Two remediations ran and succeeded (no storm): the budget of 2 per hour is spent. */
    for (int i = 1; i <= 2; i++) {
        f->now = 1000000 + i * 10000;
        int64_t id = decide(f, i, "shop:fp", ASR_REM_RUNNING, NULL);
        f->now += 3000;
        assert_int_equal(asr_remediation_set(f->st, id, ASR_REM_SUCCEEDED, "ok", NULL, &err), 0);
    }
    f->now = 1100000;
    assert_int_equal(gate_q(f, "shop:fp9", &quiet, why, sizeof(why)), ASR_GATE_REFUSE);
    assert_false(quiet);
    assert_non_null(strstr(why, "circuit opened at 1970-01-01T00:17:00Z: "));
    assert_non_null(strstr(why, "the remediation budget of shop is spent: 2 remediations within "
                                "3600 s"));
    assert_non_null(strstr(why, "fewer than 2 remediations ran in the last 3600 s"));
    decide(f, 3, "shop:fp9", ASR_REM_REFUSED, why);
    f->now = 1200000;
    assert_int_equal(gate_q(f, "shop:fp8", &quiet, why, sizeof(why)), ASR_GATE_REFUSE);
    assert_true(quiet);
    assert_non_null(strstr(why, "budget"));
    decide(f, 4, "shop:fp8", ASR_REM_REFUSED, why);
    /* Refused ones do not count; an hour after the first one, one remediation fits again. */
    f->now = 1000000 + 10000 + 3600000 + 1;
    assert_int_equal(gate_q(f, "shop:fp7", &quiet, why, sizeof(why)), ASR_GATE_RUN);
}

/* Incidents that come while a remediation runs are held on it, quietly; its end escalates them:
 * with the circuit after a failure, in one line after a success if they are still open. */
static void test_held_on_run(void **state)
{
    struct fx *f = *state;
    struct asr_err err = {0};
    char why[400], note[700];
    bool quiet = false;
    f->svc.policy.budget_remediations = 10;
    int64_t rem = decide(f, 1, "shop:exit:code=3", ASR_REM_RUNNING, NULL);
    for (int i = 2; i <= 3; i++) {
        assert_int_equal(gate_q(f, "shop:template:2", &quiet, why, sizeof(why)), ASR_GATE_REFUSE);
        assert_true(quiet);
        char want[80];
        snprintf(want, sizeof(want), "held on remediation %lld (incident 1), in flight",
                 (long long)rem);
        assert_non_null(strstr(why, want));
        decide(f, i, "shop:template:2", ASR_REM_REFUSED, why);
    }
    assert_int_equal(asr_remediation_set(f->st, rem, ASR_REM_SUCCEEDED, "ok", NULL, &err), 0);
    assert_int_equal(asr_policy_run_ended(f->st, &f->svc, rem, true, asr_store_now(f->st), note,
                                          sizeof(note), &err),
                     1);
    assert_non_null(strstr(note, "incidents 2, 3 of shop escalated to a person: held while "
                                 "remediation 1 ran"));
    /* Resolved ones are not escalated again. */
    assert_int_equal(
        sqlite3_exec(asr_store_db(f->st),
                     "UPDATE incidents SET status = 'resolved', resolved_at = 1 WHERE id = 2", NULL,
                     NULL, NULL),
        SQLITE_OK);
    assert_int_equal(asr_policy_run_ended(f->st, &f->svc, rem, true, asr_store_now(f->st), note,
                                          sizeof(note), &err),
                     1);
    assert_non_null(strstr(note, "incident 3 of shop escalated"));
    /* After a failure, the held ones are named with it (no storm here: no circuit). */
    int64_t rem2 = decide(f, 4, "shop:x", ASR_REM_RUNNING, NULL);
    assert_int_equal(gate_q(f, "shop:y", &quiet, why, sizeof(why)), ASR_GATE_REFUSE);
    decide(f, 5, "shop:y", ASR_REM_REFUSED, why);
    assert_int_equal(asr_remediation_set(f->st, rem2, ASR_REM_FAILED, "no", NULL, &err), 0);
    assert_int_equal(asr_policy_run_ended(f->st, &f->svc, rem2, false, asr_store_now(f->st), note,
                                          sizeof(note), &err),
                     1);
    assert_string_equal(note, "; held on it: incident 5");
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
        cmocka_unit_test_setup_teardown(test_circuit_restart_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_circuit_failed_fix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_circuit_calm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_circuit_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_on_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
