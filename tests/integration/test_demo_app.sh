# The demo service's own test suites (demo/app and demo/upstream), run on a clean copy the way
# asr runs them for a release, plus a check that each of the three faults has the one-line fix
# its README promises: applied, the suite passes with every fault fixed.
source "$(dirname "$0")/lib.sh"
setup
make -s -C "$REPO/upstream" test > "$WORK/upstream-test.log" 2>&1 || { cat "$WORK/upstream-test.log"; fail "upstream tests"; }
pass "demo/upstream: make test"
make -s -C "$REPO/app" test > "$WORK/app-test.log" 2>&1 || { cat "$WORK/app-test.log"; fail "shop tests"; }
pass "demo/app: make test"

replace_once "$REPO/app/src/db.c" 'ORDERS_REPORT_SQL[] = "SELECT FROM orders";' 'ORDERS_REPORT_SQL[] = "SELECT count(*) FROM orders";'
replace_once "$REPO/app/src/routes.c" 'UPSTREAM_TIMEOUT_MS = 500;' 'UPSTREAM_TIMEOUT_MS = 3000;'
replace_once "$REPO/app/src/db.c" 'DB_STATEMENT_LIMIT_MS = 50;' 'DB_STATEMENT_LIMIT_MS = 5000;'
make -s -C "$REPO/app" clean >/dev/null
EXPECT_FAULTS=fixed make -s -C "$REPO/app" test > "$WORK/fixed-test.log" 2>&1 || { cat "$WORK/fixed-test.log"; fail "shop tests with the faults fixed"; }
pass "demo/app: make test with all three faults fixed (EXPECT_FAULTS=fixed)"
