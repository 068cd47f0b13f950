// The dashboard's browser test (issue 6 acceptance), run by tests/integration/test_dashboard.sh
// against a running `asr run` with the demo shop and an `api:` block.
//
// Headless Debian Chromium, driven by playwright-core, opens the dashboard once and never reloads
// it. The test (from node, not from the page) triggers a patch-class fault in the shop and waits
// for the incident to appear and reach "resolved" with its full stage bar; then it crashes the
// shop, whose restart plan needs approval, waits for "awaiting approval", checks that approving
// without the token shows the API's 401 on the page, types the token into the token field and
// presses the approve button with the keyboard, and waits for "resolved". Throughout it counts
// page errors, console errors, navigations, requests that are not GETs or leave the origin, and
// fails on any. It saves a screenshot.
//
// Environment: ASR_URL (the dashboard, e.g. http://127.0.0.1:7700/), ASR_API_TOKEN, SHOP_URL
// (the shop's proxy), SCREENSHOT (a path; SCREENSHOT_COPY a second one, optional),
// CHROMIUM (default /usr/bin/chromium), DEADLINE_S (default 50).
import { chromium } from 'playwright-core';
import { copyFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const env = (name, dflt) => {
  const v = process.env[name] ?? dflt;
  if (v === undefined || v === '') {
    console.error(`dashboard.mjs: the environment variable ${name} is not set`);
    process.exit(2);
  }
  return v;
};
const ASR_URL = env('ASR_URL');
const TOKEN = env('ASR_API_TOKEN');
const SHOP_URL = env('SHOP_URL');
const SCREENSHOT = env('SCREENSHOT');
const SCREENSHOT_COPY = process.env.SCREENSHOT_COPY || '';
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const DEADLINE_MS = Number(env('DEADLINE_S', '50')) * 1000;

const t0 = Date.now();
const since = () => ((Date.now() - t0) / 1000).toFixed(2) + ' s';
const log = (msg) => console.error(`[dashboard.mjs ${since()}] ${msg}`);
const left = () => Math.max(1000, DEADLINE_MS - (Date.now() - t0));
// How long after asr resolved an incident the page showed it (same host, same clock).
const LIVE_MAX_MS = 3000;
async function liveLag(page, id) {
  // The moment the row turned "resolved", recorded in the page by the observer set up below
  // (the test's own waits poll, so their time is later).
  const seenAt = await page.evaluate((i) => window.__resolvedAt[i], id);
  if (!seenAt) throw new Error(`incident ${id}: the observer saw no "resolved"`);
  const r = await fetch(new URL('/api/v1/incidents/' + id, ASR_URL));
  const inc = await r.json();
  if (!inc.resolved_at_ms) throw new Error(`incident ${id} shows resolved on the page, but not in the API`);
  const lag = seenAt - inc.resolved_at_ms;
  if (lag > LIVE_MAX_MS) throw new Error(`incident ${id}: the page showed "resolved" ${lag} ms after asr resolved it (over ${LIVE_MAX_MS} ms)`);
  return lag;
}

const problems = [];
const origin = new URL(ASR_URL).origin;
let navigations = 0;
let writes = [];
let expected401 = 0; // the browser logs the refused approve as a failed resource load

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    if (expected401 > 0 && /status of 401/.test(m.text())) { expected401--; return; }
    problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations++; });
  page.on('request', (r) => {
    if (!r.url().startsWith(origin + '/') && !r.url().startsWith('data:')) problems.push(`a request left the origin: ${r.url()}`);
    if (r.method() !== 'GET') writes.push(`${r.method()} ${new URL(r.url()).pathname}`);
  });
  page.on('requestfailed', (r) => {
    // The event stream is cut when the page closes; anything else failing is a problem.
    if (!r.url().includes('/api/v1/events')) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on('response', (r) => {
    // The one expected error: the approve attempt without a token.
    if (r.status() >= 400 && !(r.status() === 401 && r.request().method() === 'POST')) {
      problems.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
    }
  });

  await page.goto(ASR_URL, { waitUntil: 'load' });
  log('page loaded');

  // 1. The services with their health, and the live stream.
  const shopRow = page.locator('#services tr[data-service="shop"]');
  await shopRow.locator('.health', { hasText: 'healthy' }).waitFor({ timeout: 10000 });
  await page.locator('#services tr[data-service="upstream"] .health', { hasText: 'healthy' }).waitFor({ timeout: 10000 });
  const release = (await shopRow.locator('td').nth(1).textContent()).trim();
  if (!/^\S+$/.test(release) || release === '—') throw new Error(`the shop's release is not shown: '${release}'`);
  await page.locator('#live[data-state="live"]').waitFor({ timeout: 10000 });
  if (writes.length) throw new Error(`loading the page wrote: ${writes.join(', ')}`);
  log(`services shown (shop healthy, release ${release}), event stream live; no writes on load`);
  await page.evaluate(() => {
    window.__resolvedAt = {};
    const body = document.querySelector('#incidents tbody');
    const scan = () => {
      for (const r of body.rows) {
        if (r.dataset.status === 'resolved' && !window.__resolvedAt[r.dataset.incidentId]) window.__resolvedAt[r.dataset.incidentId] = Date.now();
      }
    };
    new MutationObserver(scan).observe(body, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'] });
  });

  // 2. A patch-class fault, triggered from node: the incident appears and is resolved, live.
  const fault = await fetch(SHOP_URL + '/test-fault/db-timeout', { method: 'POST' });
  if (fault.status !== 500) throw new Error(`the fault request gave ${fault.status}, not 500`);
  const tFault = Date.now();
  const row = page.locator('#incidents tbody tr', { hasText: 'FAULT_DB_TIMEOUT' });
  await row.waitFor({ timeout: 10000 });
  log(`incident row shown ${Date.now() - tFault} ms after the fault`);
  await row.locator('.status', { hasText: 'resolved' }).waitFor({ timeout: left() });
  const patchSeen = Date.now();
  await row.locator('.stages[data-reached="7"]').waitFor({ timeout: 5000 });
  // One remediation at a time per service: the next fault waits until this one is over.
  await row.locator('.remediation', { hasText: 'succeeded' }).waitFor({ timeout: 10000 });
  const patchId = Number(await row.getAttribute('data-incident-id'));
  log(`incident #${patchId} resolved on the page ${patchSeen - tFault} ms after the fault (${await liveLag(page, patchId)} ms after asr resolved it), all 7 stages`);

  // Opened with the keyboard: j moves to the newest incident, Enter opens it; its diff shows.
  await page.locator('body').focus();
  await page.keyboard.press('j');
  const focused = await page.evaluate(() => document.activeElement?.dataset?.incident);
  if (Number(focused) !== patchId) throw new Error(`j focused incident ${focused}, not ${patchId}`);
  await page.keyboard.press('Enter');
  await page.locator('#detail pre.diff', { hasText: 'DB_STATEMENT_LIMIT_MS' }).waitFor({ timeout: 10000 });
  await page.locator('#detail .steps li', { hasText: 'patch' }).waitFor({ timeout: 5000 });
  log('the incident opens with j + Enter: its plan and diff are shown');

  // 3. Approval mode: a crash, whose restart plan waits for an operator.
  await fetch(SHOP_URL + '/test-fault/crash', { method: 'POST' }).catch(() => null); // the shop dies
  const tCrash = Date.now();
  const waiting = page.locator('#incidents tbody tr', { has: page.locator('.remediation', { hasText: 'awaiting approval' }) });
  await waiting.waitFor({ timeout: Math.min(20000, left()) });
  const crashId = Number(await waiting.getAttribute('data-incident-id'));
  if (crashId === patchId) throw new Error('the crash did not open an incident of its own');
  const approve = page.locator('#approvals button[data-action="approve"]').first();
  await approve.waitFor({ timeout: 5000 });
  log(`incident #${crashId} awaits approval ${Date.now() - tCrash} ms after the crash`);

  // Without the token the API says 401, and the page says so.
  await page.locator('#token').fill('');
  expected401 = 1;
  await approve.focus();
  await page.keyboard.press('Enter');
  await page.locator('#errors li', { hasText: '401' }).waitFor({ timeout: 5000 });
  log('approving without the token shows the 401 on the page');

  // The token typed into its field, then Tab until the approve button, and Enter.
  await page.locator('#token').focus();
  await page.keyboard.type(TOKEN);
  let tabs = 0;
  for (; tabs < 30; tabs++) {
    await page.keyboard.press('Tab');
    const onApprove = await page.evaluate(() => document.activeElement?.dataset?.action === 'approve' &&
      document.activeElement.closest('#approvals') !== null);
    if (onApprove) break;
  }
  if (tabs === 30) throw new Error('the approve button cannot be reached with Tab from the token field');
  await page.keyboard.press('Enter');
  const crashRow = page.locator(`#incidents tbody tr[data-incident-id="${crashId}"]`);
  await crashRow.locator('.status', { hasText: 'resolved' }).waitFor({ timeout: left() });
  const crashSeen = Date.now();
  const crashLag = await liveLag(page, crashId);
  await page.locator('#approvals-panel').waitFor({ state: 'hidden', timeout: 5000 });
  log(`approved with the keyboard (${tabs + 1} Tabs from the token field); incident #${crashId} resolved ${crashSeen - tCrash} ms after the crash (${crashLag} ms after asr resolved it)`);
  if (await page.evaluate(() => window.location.search + window.location.hash) !== '') {
    throw new Error('the URL changed (the token must never be in it)');
  }

  // Both charts have their points from real data.
  await page.locator('#chart-mttr[data-points="2"]').waitFor({ timeout: 5000 });
  await page.locator('#chart-detect[data-points="2"]').waitFor({ timeout: 5000 });

  // The picture for the README: the patch incident open, next to the list and the charts.
  await page.locator(`button.row-open[data-incident="${patchId}"]`).focus();
  await page.keyboard.press('Enter');
  await page.locator('#detail pre.diff').waitFor({ timeout: 5000 });
  await page.locator('#errors-clear').click();
  await page.mouse.move(0, 0);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  if (SCREENSHOT_COPY) copyFileSync(SCREENSHOT, SCREENSHOT_COPY);
  log(`screenshot: ${SCREENSHOT}${SCREENSHOT_COPY ? ' and ' + SCREENSHOT_COPY : ''}`);

  // 4. Log lines are the attacker's: one with markup, sent to upstream's log through the
  // CloudWatch ingest, must show as text in the row and the detail, and nothing in it may run
  // or load (an <img> would fetch /x-img: the response check above would see its 404).
  const hostile = 'ERROR checkout failed: <img src="/x-img" onerror="window.__pwned=1"><script>window.__pwned=2</script> & "done"';
  const delivery = {
    messageType: 'DATA_MESSAGE', owner: '123456789012', logGroup: '/aws/ecs/upstream', logStream: 'dashboard-test',
    subscriptionFilters: ['all'], logEvents: [{ id: '1', timestamp: Date.now(), message: hostile }],
  };
  const ingest = await fetch(new URL('/api/v1/ingest/cloudwatch?service=upstream', ASR_URL), {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + TOKEN, 'Content-Type': 'application/json' },
    body: JSON.stringify({ awslogs: { data: gzipSync(Buffer.from(JSON.stringify(delivery))).toString('base64') } }),
  });
  if (ingest.status !== 200) throw new Error(`the CloudWatch ingest gave ${ingest.status}: ${await ingest.text()}`);
  const hostileRow = page.locator('#incidents tbody tr', { hasText: 'upstream' });
  await hostileRow.waitFor({ timeout: 10000 });
  const hostileId = await hostileRow.getAttribute('data-incident-id');
  await page.locator(`button.row-open[data-incident="${hostileId}"]`).focus();
  await page.keyboard.press('Enter');
  await page.locator('#detail pre', { hasText: '<script>window.__pwned=2</script>' }).first().waitFor({ timeout: 10000 });
  const pwned = await page.evaluate(() => [window.__pwned, document.querySelectorAll('main img, main script').length]);
  if (pwned[0] !== undefined || pwned[1] !== 0) throw new Error(`the hostile line ran or became markup: ${JSON.stringify(pwned)}`);
  log(`a log line with markup (incident #${hostileId}, through the CloudWatch ingest) shows as text; nothing ran`);

  if (navigations !== 1) problems.push(`the page navigated ${navigations} times (expected only the first load)`);
  const posts = writes.filter((w) => !/^POST \/api\/v1\/plans\/\d+\/approve$/.test(w));
  if (posts.length) problems.push(`unexpected writes: ${posts.join(', ')}`);
  if (writes.length !== 2) problems.push(`expected 2 approve requests (without and with the token), saw ${writes.length}`);
} catch (e) {
  failed = true;
  console.error(`dashboard.mjs: FAIL after ${since()}: ${e.message}`);
  try {
    const page = browser.contexts()[0]?.pages()[0];
    if (page) {
      await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, '') + '-failed.png', fullPage: true });
      console.error('--- the page ---\n' + (await page.locator('main').innerText()).slice(0, 4000));
    }
  } catch (e2) { /* the browser is gone */ }
} finally {
  await browser.close();
}
for (const p of problems) console.error(`dashboard.mjs: problem: ${p}`);
if (failed || problems.length) process.exit(1);
log('passed');
