# The dashboard in a real browser (issue 6 acceptance): the daemon serves the demo shop with the
# demo playbooks and an `api:` block with a token; headless Debian Chromium, driven by
# playwright-core (tests/browser/dashboard.mjs, pinned by its package-lock.json), opens the
# dashboard once and, without a reload, sees a patch-class fault's incident appear and reach
# "resolved" with its stage bar, then approves a crash's restart plan (the shop's policy wants
# approval for restarts) by typing the token and pressing the approve button with the keyboard,
# and sees that incident resolved too. The daemon's store must agree with what the page showed.
# Screenshot: $WORK/dashboard.png; with UPDATE_SCREENSHOT=1 also docs/dashboard.png.
source "$(dirname "$0")/lib.sh"

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
for tool in node npm; do
    command -v "$tool" >/dev/null ||
        { log "FAIL: '$tool' is not installed (scripts/install-deps.sh installs nodejs and npm)"; exit 1; }
done
[ -x "$CHROMIUM" ] || { log "FAIL: no Chromium at $CHROMIUM (scripts/install-deps.sh installs chromium)"; exit 1; }

setup
API_PORT=$(free_port)
sed -i 's/deploy: {healthy_timeout_ms: 5000,/deploy: {verify_window_ms: 500, healthy_timeout_ms: 5000,/' "$CFG"
sed -i 's|^    policy: .*|    policy: {patch_paths: ["src/**"], approval: [restart], budget: {remediations: 6, per: 1h}, cooldown: 10m}|' "$CFG"
cat >>"$CFG" <<EOF
playbooks: $ASR_SOURCE_DIR/demo/playbooks
api:
  listen: 127.0.0.1:$API_PORT
  token_env: ASR_API_TOKEN
EOF
"$ASR_BIN" config check -c "$CFG" >/dev/null || fail "config check: $("$ASR_BIN" config check -c "$CFG" 2>&1)"

# The token reaches asr and the browser test through the environment only.
ASR_API_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export ASR_API_TOKEN

# The browser test runs from a copy, with its dependencies installed from the committed lock file.
cp -r "$ASR_SOURCE_DIR/tests/browser" "$WORK/browser"
rm -rf "$WORK/browser/node_modules"
npm ci --prefix "$WORK/browser" --prefer-offline --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1 ||
    { cat "$WORK/npm.log" >&2; fail "npm ci of tests/browser"; }
grep -q '"version": "1.57.0"' "$WORK/browser/node_modules/playwright-core/package.json" ||
    fail "npm ci did not install playwright-core 1.57.0"

start_daemon
wait_for "shop healthy" 30 healthy "$SHOP_PORT"
wait_for "upstream healthy" 30 healthy "$UPSTREAM_PORT"
served() { [ "$(http GET "http://127.0.0.1:$API_PORT/")" = 200 ]; }
wait_for "the dashboard served" 10 served

# The page and its assets, as the browser gets them: nothing loaded from elsewhere.
page=$(curl -s -m 5 "http://127.0.0.1:$API_PORT/")
echo "$page" | grep -q "Content-Security-Policy\" content=\"default-src 'self'" || fail "the page has no CSP meta tag"
if echo "$page" | grep -Eq '(src|href)="(https?:)?//'; then fail "the page loads something from elsewhere"; fi
for asset in app.js app.css; do
    expect_eq "/assets/$asset served" 200 "$(http GET "http://127.0.0.1:$API_PORT/assets/$asset")"
done
ctype() { curl -s -m 5 -o /dev/null -w '%{content_type}' "http://127.0.0.1:$API_PORT$1"; }
ctype / | grep -q '^text/html' || fail "/ content type: $(ctype /)"
ctype /assets/app.js | grep -Eq '^(text|application)/javascript' || fail "app.js content type: $(ctype /assets/app.js)"
ctype /assets/app.css | grep -q '^text/css' || fail "app.css content type: $(ctype /assets/app.css)"

shot=$WORK/dashboard.png
copy=""
[ "${UPDATE_SCREENSHOT:-0}" = 1 ] && copy=$ASR_SOURCE_DIR/docs/dashboard.png
t0=$SECONDS
# TMPDIR in $WORK: Chromium's profile lives there, so the teardown ends anything left behind.
(cd "$WORK/browser" && TMPDIR=$WORK ASR_URL="http://127.0.0.1:$API_PORT/" SHOP_URL="http://127.0.0.1:$SHOP_PORT" \
    SCREENSHOT="$shot" SCREENSHOT_COPY="$copy" CHROMIUM="$CHROMIUM" DEADLINE_S=45 node dashboard.mjs) ||
    fail "the browser test (dashboard.mjs) failed"
pass "the browser test passed in $((SECONDS - t0)) s"
[ -s "$shot" ] || fail "no screenshot at $shot"

# What the page showed is what the store holds.
expect_eq "the patch incident resolved" resolved "$(db "select status from incidents where signature='FAULT_DB_TIMEOUT'")"
crash=$(db "select max(id) from incidents where kind='exit'")
expect_eq "the crash incident resolved" resolved "$(db "select status from incidents where id=$crash")"
expect_eq "its restart remediated" succeeded "$(db "select state from remediations where incident_id=$crash order by id desc limit 1")"
expect_eq "approved by the dashboard" dashboard "$(db "select approved_by from remediations where incident_id=$crash order by id desc limit 1")"
"$ASR_BIN" audit verify --state-dir "$STATE" >/dev/null || fail "audit verify"
if grep -q "$ASR_API_TOKEN" "$WORK/daemon.log"; then fail "the token is in the daemon's log"; fi
if grep -rqs "$ASR_API_TOKEN" "$STATE"; then fail "the token is in the state dir"; fi
pass "dashboard"
