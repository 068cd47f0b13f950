// asr's dashboard (issue 6): vanilla JS, no framework, nothing loaded from elsewhere.
//
// What it does, in order: it opens the event stream (/api/v1/events), then reads the status, the
// incidents and the plans awaiting approval once (GETs only: loading the page changes nothing).
// After that every event refreshes just what it touches: the incident it names, the service it
// names (and that service's unfinished incidents, whose stages move with deploy and build
// events), and the plans awaiting approval. Opening the stream first means nothing that happens
// during the first reads is missed. The only writes are the approve and reject buttons, which
// send the operator's token (typed into the page, kept in sessionStorage, never in a URL).
//
// Everything that comes from the API (log lines above all: they are attacker-controlled) reaches
// the page through textContent or SVG attributes set one by one, never through innerHTML.
'use strict';

(function () {
  const STAGES = ['detected', 'planned', 'committed', 'built', 'tested', 'deployed', 'verified'];
  const STAGE_SHORT = { detected: 'detect', planned: 'plan', committed: 'commit', built: 'build', tested: 'test', deployed: 'deploy', verified: 'verify' };
  const INCIDENT_LIMIT = 200;
  const EVENT_LOG_MAX = 100;
  const TOKEN_KEY = 'asr.token';

  const state = {
    daemon: null,
    services: new Map(),   // name -> SERVICE
    incidents: new Map(),  // id -> INCIDENT_SUMMARY (or the fuller detail once fetched)
    details: new Map(),    // id -> the GET /api/v1/incidents/ID answer
    plans: new Map(),      // plan id -> PLAN awaiting approval
    selected: null,        // incident id the keyboard is on
    open: null,            // incident id shown in the detail panel
    loaded: false,
    queued: [],            // events that arrived before the first reads finished
    lastEventId: null,
  };

  const $ = (id) => document.getElementById(id);

  // ---- small DOM helpers: text only ----------------------------------------------------------

  // el('td', {class: 'x', title: 't'}, child...) with children as nodes or strings (text nodes).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function badge(text, tone, cls) {
    return el('span', { class: 'badge ' + (tone || '') + (cls ? ' ' + cls : '') }, text);
  }

  // ---- formatting ----------------------------------------------------------------------------

  function fmtDur(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return '—';
    if (ms < 0) ms = 0;
    if (ms < 10 && ms !== Math.round(ms)) return ms.toFixed(1) + ' ms';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 10000) return (ms / 1000).toFixed(2) + ' s';
    if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
    const m = Math.floor(ms / 60000);
    if (m < 60) return m + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
    const h = Math.floor(m / 60);
    return h + ' h ' + (m % 60) + ' min';
  }

  const pad = (n, w) => String(n).padStart(w || 2, '0');
  function fmtTime(ms, withMs) {
    if (ms === null || ms === undefined) return '—';
    const d = new Date(ms);
    const t = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    return withMs ? t + '.' + pad(d.getMilliseconds(), 3) : t;
  }
  function fmtDateTime(ms) {
    if (ms === null || ms === undefined) return '—';
    const d = new Date(ms);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + fmtTime(ms, true);
  }

  const words = (s) => (s === null || s === undefined ? '—' : String(s).replace(/_/g, ' '));
  const short = (sha) => (sha ? String(sha).slice(0, 10) : '—');

  // Any API value as one line of text (objects as compact JSON), capped.
  function asText(v, cap) {
    let s;
    if (v === null || v === undefined) s = '';
    else if (typeof v === 'string') s = v;
    else {
      try { s = JSON.stringify(v); } catch (e) { s = String(v); }
    }
    cap = cap || 400;
    return s.length > cap ? s.slice(0, cap) + '…' : s;
  }

  function healthTone(h) {
    if (h === 'healthy') return 'ok';
    if (h === 'starting') return 'info';
    if (h === 'stopped') return '';
    return 'bad';
  }
  function remediationTone(s) {
    switch (s) {
      case 'succeeded': return 'ok';
      case 'running': return 'info';
      case 'awaiting_approval': return 'warn';
      case 'shadowed': return '';
      default: return 'bad'; // failed, escalated, rejected, refused
    }
  }

  // ---- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  // One request; resolves to the parsed JSON body, rejects with an ApiError that names the
  // status and the server's own words ({"error": ...}).
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    const init = { method, headers, cache: 'no-store', credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, method + ' ' + path + ': asr did not answer (' + e.message + ')');
    }
    const text = await res.text();
    let json = null;
    if (text) {
      try { json = JSON.parse(text); } catch (e) { json = null; }
    }
    if (!res.ok) {
      const why = json && typeof json.error === 'string' ? json.error : text.slice(0, 200) || res.statusText;
      throw new ApiError(res.status, method + ' ' + path + ': ' + res.status + ' ' + why);
    }
    if (json === null) throw new ApiError(res.status, method + ' ' + path + ': the answer is not JSON');
    return json;
  }

  // ---- errors on the page --------------------------------------------------------------------

  function showError(msg) {
    const list = $('error-list');
    list.append(el('li', { text: fmtTime(Date.now()) + '  ' + msg }));
    while (list.children.length > 6) list.firstElementChild.remove();
    $('errors').hidden = false;
  }
  function clearErrors() {
    $('error-list').replaceChildren();
    $('errors').hidden = true;
  }

  // ---- refreshing what an event touches ------------------------------------------------------

  // One fetch per key at a time: a key asked for again while its fetch runs is fetched once more
  // after it, so an older answer never lands after a newer one.
  function refresher(fetchOne) {
    const running = new Set();
    const again = new Set();
    return function refresh(key) {
      if (running.has(key)) { again.add(key); return; }
      running.add(key);
      fetchOne(key)
        .catch((e) => {
          if (!(e instanceof ApiError && e.status === 404)) showError(e.message);
        })
        .finally(() => {
          running.delete(key);
          if (again.delete(key)) refresh(key);
        });
    };
  }

  const refreshIncident = refresher(async (id) => {
    const d = await api('GET', '/api/v1/incidents/' + encodeURIComponent(id));
    state.details.set(d.id, d);
    state.incidents.set(d.id, d);
    renderIncidents();
    renderCharts();
    if (state.open === d.id) renderDetail();
  });

  const refreshService = refresher(async (name) => {
    const s = await api('GET', '/api/v1/services/' + encodeURIComponent(name));
    state.services.set(s.name, s);
    renderServices();
  });

  const refreshStatus = refresher(async () => {
    const st = await api('GET', '/api/v1/status');
    state.daemon = st.daemon || null;
    for (const s of st.services || []) state.services.set(s.name, s);
    renderDaemon();
    renderServices();
  });

  const refreshPlans = refresher(async () => {
    const r = await api('GET', '/api/v1/plans?status=awaiting_approval');
    state.plans = new Map((r.plans || []).map((p) => [p.id, p]));
    renderApprovals();
    if (state.open !== null) renderDetail();
  });

  // Events come in bursts (a deploy is several); touched keys are gathered for 50 ms.
  const pending = { incidents: new Set(), services: new Set(), plans: false, status: false, timer: null };
  function touch(ev) {
    if (ev.incident !== null && ev.incident !== undefined) pending.incidents.add(ev.incident);
    if (ev.service) {
      pending.services.add(ev.service);
      // Stages such as built, tested and deployed move with service events that may not name
      // the incident: the service's incidents with a remediation running are read again (not
      // every open one: escalated incidents stay open, and their stages no longer move).
      for (const inc of state.incidents.values()) {
        if (inc.service === ev.service && running(inc)) pending.incidents.add(inc.id);
      }
    }
    const k = String(ev.kind || '');
    if (/^(plan|remediation|action|incident)\./.test(k)) pending.plans = true;
    if (/^(incident|daemon)\./.test(k)) pending.status = true; // the detection counters
    if (!pending.timer) pending.timer = setTimeout(flush, 50);
  }
  function flush() {
    pending.timer = null;
    for (const id of pending.incidents) refreshIncident(id);
    if (pending.status) refreshStatus('status'); // it has every service
    else for (const name of pending.services) refreshService(name);
    if (pending.plans) refreshPlans('awaiting');
    pending.incidents.clear();
    pending.status = false;
    pending.services.clear();
    pending.plans = false;
  }
  function running(inc) {
    return !!inc.remediation && inc.remediation.state === 'running';
  }

  // ---- the event stream ----------------------------------------------------------------------

  let source = null;
  function setLive(s, text) {
    const live = $('live');
    live.dataset.state = s;
    live.textContent = 'events: ' + text;
  }

  function connect() {
    const url = '/api/v1/events' + (state.lastEventId !== null ? '?after=' + encodeURIComponent(state.lastEventId) : '');
    source = new EventSource(url);
    source.onopen = () => {
      setLive('live', 'live');
      if (!state.loaded) load();
    };
    source.onmessage = (m) => {
      if (m.lastEventId) state.lastEventId = m.lastEventId;
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      logEvent(ev);
      if (!state.loaded) state.queued.push(ev);
      else touch(ev);
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (the server refused the stream): try again in a while, resuming
        // after the last event seen.
        setLive('down', 'disconnected, retrying');
        source.close();
        setTimeout(connect, 3000);
      } else {
        setLive('connecting', 'reconnecting');
      }
      if (!state.loaded) load(); // show what there is even without the stream
    };
  }

  function logEvent(ev) {
    const list = $('events');
    const parts = [fmtTime(ev.at, true), ev.kind || '?'];
    if (ev.service) parts.push(ev.service);
    if (ev.incident !== null && ev.incident !== undefined) parts.push('#' + ev.incident);
    if (ev.actor) parts.push('by ' + ev.actor);
    const detail = ev.detail && typeof ev.detail === 'object' && !Object.keys(ev.detail).length ? '' : asText(ev.detail, 200);
    if (detail) parts.push(detail);
    const li = el('li', { text: parts.join('  '), title: asText(ev.detail, 2000) });
    list.prepend(li);
    $('events-empty').hidden = true;
    while (list.children.length > EVENT_LOG_MAX) list.lastElementChild.remove();
  }

  // ---- the first reads -----------------------------------------------------------------------

  let loading = false;
  async function load() {
    if (loading || state.loaded) return;
    loading = true;
    const [st, inc, plans] = await Promise.allSettled([
      api('GET', '/api/v1/status'),
      api('GET', '/api/v1/incidents?limit=' + INCIDENT_LIMIT),
      api('GET', '/api/v1/plans?status=awaiting_approval'),
    ]);
    if (st.status === 'fulfilled') {
      state.daemon = st.value.daemon || null;
      for (const s of st.value.services || []) state.services.set(s.name, s);
    } else showError(st.reason.message);
    if (inc.status === 'fulfilled') {
      for (const i of inc.value.incidents || []) state.incidents.set(i.id, i);
    } else showError(inc.reason.message);
    if (plans.status === 'fulfilled') {
      state.plans = new Map((plans.value.plans || []).map((p) => [p.id, p]));
    } else showError(plans.reason.message);
    state.loaded = true;
    loading = false;
    renderDaemon();
    renderServices();
    renderIncidents();
    renderCharts();
    renderApprovals();
    for (const ev of state.queued) touch(ev);
    state.queued = [];
  }

  // ---- services ------------------------------------------------------------------------------

  function renderDaemon() {
    const d = state.daemon;
    if (!d) { $('daemon').textContent = 'daemon: unknown'; return; }
    const parts = ['pid ' + d.pid];
    if (d.uptime_ms !== undefined) parts.push('up ' + fmtDur(d.uptime_ms));
    if (d.config) parts.push(String(d.config));
    const det = d.detection;
    if (det) parts.push('lines ' + det.lines + ', faults ' + det.faults + ', incidents ' + det.opened);
    $('daemon').textContent = parts.join(' · ');
  }

  function renderServices() {
    const body = $('services').tBodies[0];
    const rows = [];
    const names = [...state.services.keys()].sort();
    for (const name of names) {
      const s = state.services.get(name);
      const notes = [];
      if (s.failed_reason) notes.push(s.failed_reason);
      if (s.circuit && s.circuit.state) notes.push('circuit ' + s.circuit.state + (s.circuit.why ? ': ' + s.circuit.why : ''));
      if (s.deploying) notes.push('deploying ' + (s.deploying.kind || '') + ' ' + short(s.deploying.commit));
      const proxy = s.proxy || {};
      rows.push(el('tr', { 'data-service': s.name },
        el('th', { scope: 'row' }, s.name),
        el('td', null, badge(s.health || 'unknown', healthTone(s.health), 'health')),
        el('td', { class: 'mono' }, s.release === null || s.release === undefined ? '—' : String(s.release)),
        el('td', { class: 'mono', title: s.commit || '' }, short(s.commit)),
        el('td', null, s.active_slot || '—'),
        el('td', { class: 'num' }, String(s.restarts ?? 0)),
        el('td', { class: 'num', title: 'proxy 5xx: ' + (proxy.proxy_5xx ?? 0) }, String(proxy.requests_total ?? '—')),
        el('td', { class: 'small' }, notes.join('; '))));
    }
    body.replaceChildren(...rows);
  }

  // ---- incidents -----------------------------------------------------------------------------

  function order() {
    return [...state.incidents.keys()].sort((a, b) => b - a);
  }

  function stageBar(inc, compact) {
    const st = inc.stages || {};
    const base = st.first_seen ?? inc.first_seen_ms;
    const rem = inc.remediation && inc.remediation.state;
    const over = inc.status === 'resolved' || ['failed', 'escalated', 'rejected', 'refused', 'shadowed', 'succeeded'].includes(rem);
    const bar = el('div', { class: 'stages' + (compact ? ' compact' : ''), role: 'list', 'aria-label': 'stages of incident ' + inc.id });
    let reached = 0;
    for (const name of STAGES) {
      const at = st[name];
      const has = at !== null && at !== undefined;
      if (has) reached++;
      const cls = 'stage ' + (has ? 'reached' : over ? 'skipped' : 'waiting');
      const t = has ? '+' + fmtDur(at - base) : over ? 'n/a' : '…';
      bar.append(el('div', {
        class: cls, role: 'listitem', 'data-stage': name, 'data-reached': has ? '1' : '0',
        title: name + ': ' + (has ? '+' + fmtDur(at - base) + ' at ' + fmtTime(at, true) : over ? 'not part of this remediation' : 'not yet'),
      }, compact ? STAGE_SHORT[name] : name, el('span', { class: 't' }, t)));
    }
    bar.dataset.reached = String(reached);
    return bar;
  }

  function incidentRow(inc) {
    const rem = inc.remediation;
    const open = el('button', {
      type: 'button', class: 'row-open', 'data-incident': inc.id,
      'aria-label': 'Open incident ' + inc.id,
      onclick: () => { select(inc.id, false); openIncident(inc.id); },
      onfocus: () => select(inc.id, false),
    }, '#' + inc.id);
    const tr = el('tr', { 'data-incident-id': inc.id, 'data-status': inc.status || '' },
      el('td', null, open),
      el('td', { title: asText(inc.line, 1000) },
        el('span', { class: 'mono sig' }, inc.signature || inc.kind || '—'),
        el('span', { class: 'muted small svc' }, (inc.service || '?') + (inc.opened_at_ms ? ' · ' + fmtTime(inc.opened_at_ms) : ''))),
      el('td', { class: 'states' }, badge(inc.status || '?', inc.status === 'resolved' ? 'ok' : 'warn', 'status'),
        rem ? badge(words(rem.state), remediationTone(rem.state), 'remediation') : el('span', { class: 'muted small remediation' }, 'no remediation')),
      el('td', null, stageBar(inc, true)),
      el('td', { class: 'num' }, fmtDur(inc.mttr_ms)));
    if (state.selected === inc.id) tr.classList.add('selected');
    return tr;
  }

  // Rows are updated in place (cells replaced, the row kept) so that keyboard focus on a row's
  // button survives the live updates.
  function renderIncidents() {
    const body = $('incidents').tBodies[0];
    const ids = order();
    const existing = new Map([...body.rows].map((r) => [Number(r.dataset.incidentId), r]));
    ids.forEach((id, i) => {
      const inc = state.incidents.get(id);
      const fresh = incidentRow(inc);
      let row = existing.get(id);
      if (row) {
        existing.delete(id);
        // Keep the focused button: copy the new cells' content except the first cell.
        row.dataset.status = fresh.dataset.status;
        row.classList.toggle('selected', state.selected === id);
        for (let c = 1; c < fresh.cells.length; c++) row.cells[c].replaceWith(fresh.cells[c].cloneNode(true));
      } else {
        row = fresh;
      }
      if (body.rows[i] !== row) body.insertBefore(row, body.rows[i] || null);
    });
    for (const row of existing.values()) row.remove();
    $('incidents-empty').hidden = ids.length > 0;
  }

  function select(id, focus) {
    state.selected = id;
    for (const r of $('incidents').tBodies[0].rows) r.classList.toggle('selected', Number(r.dataset.incidentId) === id);
    if (focus) {
      const b = document.querySelector('button.row-open[data-incident="' + id + '"]');
      if (b) { b.focus(); b.scrollIntoView({ block: 'nearest' }); }
    }
  }

  function move(delta) {
    const ids = order();
    if (!ids.length) return;
    let i = ids.indexOf(state.selected);
    i = i < 0 ? (delta > 0 ? 0 : ids.length - 1) : Math.min(ids.length - 1, Math.max(0, i + delta));
    select(ids[i], true);
  }

  function openIncident(id) {
    state.open = id;
    renderDetail();
    refreshIncident(id);
  }

  // ---- the detail panel ----------------------------------------------------------------------

  function lineText(x) {
    if (x === null || x === undefined) return '';
    if (typeof x === 'string') return x;
    if (typeof x === 'object') return String(x.line ?? x.text ?? x.message ?? asText(x, 2000));
    return String(x);
  }

  function linesPre(lines, cap) {
    const arr = Array.isArray(lines) ? lines : lines ? [lines] : [];
    return el('pre', null, arr.slice(0, cap || 200).map(lineText).join('\n'));
  }

  // A unified diff, one span per line, classed by its first character (text only).
  function diffPre(diff) {
    const pre = el('pre', { class: 'diff', 'aria-label': 'diff' });
    const lines = String(diff).split('\n');
    for (const line of lines.slice(0, 2000)) {
      let cls = '';
      if (line.startsWith('+++') || line.startsWith('---') || line.startsWith('diff ') || line.startsWith('index ')) cls = 'meta';
      else if (line.startsWith('@@')) cls = 'hunk';
      else if (line.startsWith('+')) cls = 'add';
      else if (line.startsWith('-')) cls = 'del';
      pre.append(cls ? el('span', { class: cls }, line) : document.createTextNode(line + '\n'));
    }
    return pre;
  }

  function dl(pairs) {
    const list = el('dl');
    for (const [k, v, wide] of pairs) {
      if (v === undefined || v === null || v === '') continue;
      list.append(el('dt', wide ? { class: 'wide' } : null, k), el('dd', wide ? { class: 'wide' } : null, v));
    }
    return list;
  }

  function stepText(step) {
    if (!step || typeof step !== 'object') return asText(step);
    const rest = Object.assign({}, step);
    const parts = [String(rest.action || '?')];
    delete rest.action;
    if (typeof rest.message === 'string') { parts.push('"' + asText(rest.message, 200) + '"'); delete rest.message; }
    if (Array.isArray(rest.edits)) {
      const files = [...new Set(rest.edits.map((e) => (e && e.path) || '?'))];
      parts.push(rest.edits.length + (rest.edits.length === 1 ? ' edit in ' : ' edits in ') + files.join(', '));
      delete rest.edits;
    }
    for (const [k, v] of Object.entries(rest)) {
      if (v !== null && v !== undefined && v !== '') parts.push(k + ' ' + asText(v, 120));
    }
    return parts.join(' · ');
  }

  function verifyText(v) {
    if (!v || typeof v !== 'object') return null;
    const req = v.request || {};
    const exp = v.expect || {};
    let t = (req.method || 'GET') + ' ' + (req.path || '/');
    if (exp.status !== undefined) t += ', expecting ' + exp.status;
    if (exp.body_contains) t += ' and a body containing ' + asText(exp.body_contains, 80);
    return t;
  }

  function sourceText(src) {
    if (!src || typeof src !== 'object') return asText(src, 120);
    const head = [src.kind, src.ref].filter(Boolean).join(' ');
    const title = src.title ? ' "' + asText(src.title, 80) + '"' : '';
    const score = typeof src.score === 'number' ? ' (score ' + src.score.toFixed(2) + (src.why ? ': ' + asText(src.why, 120) : '') + ')' : '';
    return (head || asText(src, 120)) + title + score;
  }

  function approvalButtons(planId, incidentId) {
    return el('div', { class: 'actions' },
      el('button', {
        type: 'button', class: 'approve', 'data-action': 'approve', 'data-plan': planId,
        onclick: (e) => decide(e.currentTarget, planId, 'approve'),
      }, 'Approve plan #' + planId),
      el('button', {
        type: 'button', class: 'reject', 'data-action': 'reject', 'data-plan': planId,
        onclick: (e) => decide(e.currentTarget, planId, 'reject'),
      }, 'Reject'),
      incidentId !== undefined && incidentId !== null
        ? el('span', { class: 'muted small' }, 'incident #' + incidentId)
        : null);
  }

  function renderDetail() {
    const id = state.open;
    const box = $('detail');
    if (id === null || !state.incidents.has(id)) {
      box.hidden = true;
      $('detail-empty').hidden = false;
      return;
    }
    const inc = state.incidents.get(id);
    const d = state.details.get(id) || inc;
    const st = d.stages || {};
    const latency = st.detected != null && st.first_seen != null ? st.detected - st.first_seen : null;
    const rem = d.remediation && typeof d.remediation === 'object' ? d.remediation : null;
    const plan = d.plan && typeof d.plan === 'object' ? d.plan : null;
    const planId = plan ? plan.id : rem ? rem.plan : null;
    const parts = [];

    parts.push(el('h3', { id: 'detail-title' }, '#' + d.id + ' ' + (d.signature || d.kind || '') + ' on ' + (d.service || '?')));
    parts.push(el('p', null,
      badge(d.status || '?', d.status === 'resolved' ? 'ok' : 'warn', 'status'), ' ',
      rem ? badge('remediation ' + words(rem.state), remediationTone(rem.state), 'remediation') : null));
    if (rem && rem.state === 'awaiting_approval' && planId !== null && planId !== undefined) {
      parts.push(approvalButtons(planId));
    }
    parts.push(stageBar(d));
    if (d.line) parts.push(linesPre([d.line]));
    const fields = dl([
      ['kind', d.kind], ['severity', d.severity], ['source', d.source],
      ['release', d.release === null || d.release === undefined ? null : /^[0-9a-f]{40}$/.test(String(d.release)) ? short(d.release) : String(d.release)],
      ['count', d.count === undefined ? null : String(d.count)],
      ['first seen', fmtDateTime(d.first_seen_ms ?? st.first_seen)],
      ['detected', latency === null ? null : 'after ' + fmtDur(latency)],
      ['resolved', d.resolved_at_ms ? fmtDateTime(d.resolved_at_ms) : null],
      ['MTTR', d.mttr_ms == null ? null : fmtDur(d.mttr_ms)],
      ['resolution', d.resolution ? asText(d.resolution, 500) : null, true],
      ['fields', d.fields && typeof d.fields === 'object' && Object.keys(d.fields).length
        ? Object.entries(d.fields).map(([k, v]) => k + '=' + asText(v, 120)).join('  ') : null, true],
    ]);
    fields.classList.add('fields');
    parts.push(fields);

    parts.push(el('h3', null, 'Plan' + (planId != null ? ' #' + planId : '')));
    if (plan) {
      parts.push(dl([
        ['strategy', plan.strategy],
        ['confidence', typeof plan.confidence === 'number' ? plan.confidence.toFixed(2) : plan.confidence == null ? null : String(plan.confidence)],
        ['status', plan.status], ['approval', plan.requires_approval ? 'required' : 'not required'],
        ['why', plan.why || plan.reason || plan.rationale ? asText(plan.why || plan.reason || plan.rationale, 600) : null],
        ['playbook', plan.playbook ? asText(plan.playbook) : null],
        ['verify by', verifyText(plan.verify)],
        ['model', plan.llm ? asText(plan.llm, 200) : null],
      ]));
      const steps = Array.isArray(plan.steps) ? plan.steps : [];
      if (steps.length) parts.push(el('ol', { class: 'steps' }, ...steps.map((s) => el('li', null, stepText(s)))));
      const sources = Array.isArray(plan.sources) ? plan.sources : [];
      if (sources.length) {
        parts.push(el('details', { class: 'sources' }, el('summary', null, 'What was considered (' + sources.length + ')'),
          el('ul', null, ...sources.slice(0, 20).map((src) => el('li', { class: 'small' }, sourceText(src))))));
      }
    } else {
      parts.push(el('p', { class: 'muted' }, state.details.has(id) ? 'No plan.' : 'Loading…'));
    }

    const patch = d.patch && typeof d.patch === 'object' ? d.patch : null;
    if (patch) {
      parts.push(el('h3', null, 'Diff'));
      parts.push(dl([['commit', patch.commit ? short(patch.commit) : null], ['branch', patch.branch]]));
      if (patch.diff) parts.push(diffPre(patch.diff));
    }

    for (const [label, r] of [['Build', d.build], ['Test', d.test]]) {
      if (!r || typeof r !== 'object') continue;
      parts.push(el('details', null,
        el('summary', null, label + ': ' + (typeof r.status === 'number' ? (r.status === 0 ? 'passed (exit 0)' : 'failed (exit ' + r.status + ')') : words(r.status)) +
          (r.ms != null ? ' in ' + fmtDur(r.ms) : '')),
        linesPre(String(r.output || '').split('\n'), 400)));
    }
    if (d.verification && typeof d.verification === 'object') {
      const v = d.verification;
      parts.push(el('p', null, 'Verification: ', badge(v.ok ? 'ok' : 'failed', v.ok ? 'ok' : 'bad'), ' ', asText(v.detail, 500)));
    }

    if (rem) {
      parts.push(el('h3', null, 'Remediation' + (rem.id != null ? ' #' + rem.id : '')));
      parts.push(dl([['state', words(rem.state)], ['reason', rem.reason ? asText(rem.reason, 500) : null],
        ['approved by', rem.approved_by ? asText(rem.approved_by) : null]]));
      const journal = Array.isArray(rem.journal) ? rem.journal : [];
      if (journal.length) {
        const t = el('table', { class: 'journal' },
          el('thead', null, el('tr', null, ...['+time', 'step', 'action', 'phase', 'ok', 'detail'].map((h) => el('th', { scope: 'col' }, h)))));
        const tb = el('tbody');
        for (const j of journal) {
          tb.append(el('tr', null,
            el('td', { class: 'num' }, j.ms_from_first_seen == null ? '—' : '+' + fmtDur(j.ms_from_first_seen)),
            el('td', { class: 'num' }, String(j.step ?? '')),
            el('td', null, String(j.action ?? '')),
            el('td', null, String(j.phase ?? '')),
            el('td', null, j.ok === undefined || j.ok === null ? '' : j.ok ? 'yes' : 'no'),
            el('td', { class: 'small' }, asText(j.detail, 300))));
        }
        t.append(tb);
        parts.push(el('details', null, el('summary', null, 'Journal (' + journal.length + ' rows)'), t));
      }
    }

    const timeline = Array.isArray(d.timeline) ? d.timeline : [];
    if (timeline.length) {
      parts.push(el('h3', null, 'Timeline'));
      parts.push(el('ol', { class: 'timeline' }, ...timeline.slice(0, 100).map((n) => {
        if (typeof n !== 'object' || n === null) return el('li', null, asText(n));
        const at = n.at ?? n.at_ms ?? n.ms;
        const rest = Object.assign({}, n);
        delete rest.at; delete rest.at_ms; delete rest.ms;
        const what = rest.note ?? rest.text ?? rest.message ?? rest.detail;
        const text = rest.kind && what !== undefined ? rest.kind + ': ' + asText(what, 300) : what !== undefined ? asText(what, 300) : asText(rest, 300);
        return el('li', null, (at ? fmtTime(at, true) + '  ' : '') + text);
      })));
    }
    if (d.context_before || d.context_after) {
      parts.push(el('details', null, el('summary', null, 'Log context'),
        linesPre([].concat(d.context_before || [], ['— the fault —'], d.line ? [d.line] : [], d.context_after || []), 200)));
    }

    box.replaceChildren(...parts);
    box.hidden = false;
    $('detail-empty').hidden = true;
  }

  // ---- approvals -----------------------------------------------------------------------------

  function renderApprovals() {
    const list = $('approvals');
    const items = [];
    for (const p of [...state.plans.values()].sort((a, b) => a.id - b.id)) {
      const inc = state.incidents.get(p.incident_id);
      const steps = Array.isArray(p.steps) ? p.steps.map((s) => (s && s.action) || '?').join(' → ') : '';
      items.push(el('li', { 'data-plan': p.id },
        el('span', null, 'Plan #' + p.id + ' for incident #' + p.incident_id +
          (inc ? ' (' + (inc.signature || inc.kind) + ' on ' + inc.service + ')' : '') +
          (p.strategy ? ', ' + p.strategy : '') + (steps ? ': ' + steps : '')),
        approvalButtons(p.id),
        el('button', { type: 'button', onclick: () => { select(p.incident_id, true); openIncident(p.incident_id); } }, 'Show incident')));
    }
    list.replaceChildren(...items);
    $('approvals-panel').hidden = items.length === 0;
  }

  async function decide(button, planId, verb) {
    const body = verb === 'approve' ? { by: 'dashboard' } : { reason: 'rejected in the dashboard' };
    button.disabled = true;
    try {
      await api('POST', '/api/v1/plans/' + encodeURIComponent(planId) + '/' + verb, body);
      refreshPlans('awaiting');
      const p = state.plans.get(planId);
      if (p) refreshIncident(p.incident_id);
      if (state.open !== null) refreshIncident(state.open);
    } catch (e) {
      let msg = verb + ' plan #' + planId + ' refused: ' + e.message;
      if (e.status === 401) msg += ' (type the API token above)';
      else if (e.status === 403) msg += ' (this asr has no API token configured: use asr approve / asr reject)';
      showError(msg);
    } finally {
      button.disabled = false;
    }
  }

  // ---- charts: inline SVG, one point per incident --------------------------------------------

  function drawChart(node, points, label, minScale) {
    const W = 300, H = 150, L = 46, R = 14, T = 8, B = 22;
    node.replaceChildren();
    if (!points.length) {
      node.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, 'no incidents yet'));
      node.setAttribute('aria-label', label + ': no data yet');
      return;
    }
    points.sort((a, b) => a.x - b.x);
    const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
    const x0 = Math.min(...xs), x1 = Math.max(...xs);
    const ymax = niceMax(Math.max(...ys, minScale || 1));
    const px = (x) => (x1 === x0 ? (L + W - R) / 2 : L + ((x - x0) / (x1 - x0)) * (W - L - R));
    const py = (y) => T + (1 - y / ymax) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const v = (ymax * i) / 4;
      node.append(svg('line', { x1: L, x2: W - R, y1: py(v), y2: py(v), class: i ? 'grid-line' : 'axis' }));
      node.append(svg('text', { x: L - 4, y: py(v) + 3, 'text-anchor': 'end' }, fmtDur(v)));
    }
    node.append(svg('line', { x1: L, x2: L, y1: T, y2: H - B, class: 'axis' }));
    const ticks = x1 === x0 ? [x0] : [x0, (x0 + x1) / 2, x1];
    ticks.forEach((t, i) => {
      node.append(svg('text', { x: px(t), y: H - B + 14, 'text-anchor': ticks.length === 1 ? 'middle' : ['start', 'middle', 'end'][i] }, fmtTime(t)));
    });
    if (points.length > 1) {
      node.append(svg('polyline', { class: 'line', points: points.map((p) => px(p.x).toFixed(1) + ',' + py(p.y).toFixed(1)).join(' ') }));
    }
    for (const p of points) {
      const c = svg('circle', { cx: px(p.x).toFixed(1), cy: py(p.y).toFixed(1), r: 3.5, class: 'dot' + (p.open ? ' open' : '') });
      c.append(svg('title', {}, p.title));
      node.append(c);
    }
    const sorted = [...ys].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    node.setAttribute('aria-label', label + ': ' + points.length + ' incidents, latest ' + fmtDur(points[points.length - 1].y) +
      ', median ' + fmtDur(median) + ', highest ' + fmtDur(sorted[sorted.length - 1]));
    node.dataset.points = String(points.length);
  }

  function niceMax(v) {
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 4, 6, 8, 10]) if (m * e >= v) return m * e;
    return 10 * e;
  }

  function renderCharts() {
    const mttr = [], detect = [];
    for (const inc of state.incidents.values()) {
      const st = inc.stages || {};
      const first = st.first_seen ?? inc.first_seen_ms;
      const name = '#' + inc.id + ' ' + (inc.signature || inc.kind || '') + ' (' + (inc.service || '?') + ')';
      if (inc.mttr_ms !== null && inc.mttr_ms !== undefined && first != null) {
        mttr.push({ x: first, y: inc.mttr_ms, title: name + ': MTTR ' + fmtDur(inc.mttr_ms) });
      }
      if (st.detected != null && first != null) {
        const lat = st.detected - first;
        detect.push({ x: first, y: lat, open: inc.status !== 'resolved', title: name + ': detected after ' + fmtDur(lat) });
      }
    }
    drawChart($('chart-mttr'), mttr, 'MTTR per incident', 1000);
    drawChart($('chart-detect'), detect, 'Detection latency per incident', 10);
  }

  // ---- keyboard and token --------------------------------------------------------------------

  function typing(t) {
    return t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
  }

  document.addEventListener('keydown', (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey || typing(e.target)) return;
    const inList = e.target.closest && e.target.closest('#incidents');
    if (e.key === 'j' || (inList && e.key === 'ArrowDown')) { e.preventDefault(); move(1); }
    else if (e.key === 'k' || (inList && e.key === 'ArrowUp')) { e.preventDefault(); move(-1); }
    else if (e.key === 'Enter' && !(e.target instanceof HTMLButtonElement || e.target instanceof HTMLAnchorElement) &&
             state.selected !== null) {
      e.preventDefault();
      openIncident(state.selected);
    } else if (e.key === 'Escape' && state.open !== null) {
      select(state.open, true);
    }
  });

  function initToken() {
    const input = $('token');
    input.value = token();
    input.addEventListener('input', () => {
      try {
        if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
        else sessionStorage.removeItem(TOKEN_KEY);
      } catch (e) { showError('the token cannot be kept: ' + e.message); }
    });
    $('token-clear').addEventListener('click', () => {
      input.value = '';
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
      input.focus();
    });
    $('errors-clear').addEventListener('click', clearErrors);
  }

  initToken();
  renderCharts();
  connect();
  // If the stream neither opens nor fails quickly, read the state anyway.
  setTimeout(load, 1500);
})();
