// app: the dashboard's model and wiring. A snapshot (GET /api/state) and
// then the WebSocket orchfs.v1 stream from the snapshot's seq keep the model;
// each event changes it in place (a status, a worker, a cost, a task or a dep
// added or removed) and marks what to draw again, once per frame. The
// stream reconnects by itself and resumes from the last seq it was sent
// (after a 1013, or a daemon restart). Actions are writes to control files
// (over the stream, else POST); a failed one shows the error object's
// message beside its control. Text goes into the page as text, never as HTML.
//   http://127.0.0.1:8999/#token=TOKEN   (the token is then kept in this tab only)
import { layout, draw } from "./dag.js";
import { lines, bars } from "./plots.js";

const $ = (id) => document.getElementById(id);
const STATUSES = ["done", "skipped", "running", "ready", "blocked", "held", "failed", "killed"];
const CHANNELS = ["workers", "dag", "pipeline", "context", "metrics", "system", "telemetry"];
const DAG_MAX = 400;          // nodes drawn at most: more is not readable
const ROW_H = 24;             // the workers' rows, as app.css has them
const HIST = 600;             // points kept per telemetry series (1 a second)

// What a test (or a curious person) can read: window.orchfsDash.
const dash = (window.orchfsDash = { firstRenderMs: null, events: 0, snapshots: 0, connects: 0, seq: 0 });

let token = null, cfg = null;
const S = {
  pipeline: {}, tracks: new Map(), tasks: new Map(), workers: new Map(), wlist: [],
  metrics: null, context: null, tel: null,
  costTrack: new Map(), costModel: new Map(), tokens: new Map(),
  p99: [], eps: [], lastTel: null,
};
const dirty = new Set();
const ui = { task: null, worker: null, dagTrack: null, dagZoom: 1, dagNodes: new Map(), dagKey: "", trackRows: new Map() };

// --- the API ---

class ApiError extends Error {
  constructor(obj, status) {
    super((obj && obj.message) || `HTTP ${status}`);
    this.error = obj;
    this.status = status;
  }
}

// Over the stream while it is up (a refusal is then a reply, not a failed
// request the browser would log), else over HTTP.
function api(path, body) {
  if (live()) return wsCall({ op: body === undefined ? "read" : "write", path, body }).then((m) => m.result);
  return http(path, body);
}

async function http(path, body) {
  const opt = { headers: {}, cache: "no-store" };
  if (token) opt.headers.Authorization = "Bearer " + token;
  if (body !== undefined) {
    opt.method = "POST";
    opt.body = body;
    opt.headers["Content-Type"] = "text/plain; charset=utf-8";
  }
  let r;
  try {
    r = await fetch("/api/" + path, opt);
  } catch (e) {
    throw new ApiError({ message: `orchfs does not answer (${e.message})` }, 0);
  }
  const text = await r.text();
  if (!r.ok) {
    let obj = null;
    try { obj = JSON.parse(text).error; } catch { /* not an error object */ }
    throw new ApiError(obj || { message: text || r.statusText }, r.status);
  }
  return (r.headers.get("content-type") || "").startsWith("application/json") ? JSON.parse(text) : text;
}

// A worker's log from byte offset on: {text, next} (next: where to go on).
async function readLog(id, offset) {
  const path = `mma/workers/${id}/log`;
  if (live()) {
    const m = await wsCall({ op: "read", path, offset });
    return { text: m.result, next: m.next ?? m.size };
  }
  const text = await http(`${path}?offset=${offset}`);
  return { text, next: offset + new TextEncoder().encode(text).length };
}

const pending = new Map();
let reqId = 0;
function wsCall(msg) {
  return new Promise((resolve, reject) => {
    const id = ++reqId;
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new ApiError({ message: "orchfs did not answer within 10 s" }, 0));
    }, 10000);
    pending.set(id, { resolve, reject, timer });
    ws.send(JSON.stringify({ ...msg, id }));
  });
}

function answer(msg) {
  const p = pending.get(msg.id);
  pending.delete(msg.id);
  clearTimeout(p.timer);
  if (msg.ok) p.resolve(msg);
  else p.reject(new ApiError(msg.error, msg.error && msg.error.status));
}

function dropPending(why) {
  for (const p of pending.values()) {
    clearTimeout(p.timer);
    p.reject(new ApiError({ message: why }, 0));
  }
  pending.clear();
}

// Runs an action from a control: the control is disabled meanwhile, and a
// failure's message is shown in errEl, beside it.
async function act(control, errEl, fn) {
  errEl.textContent = "";
  control.disabled = true;
  try {
    await fn();
  } catch (e) {
    errEl.textContent = e.message;
    errEl.title = e.error ? JSON.stringify(e.error) : "";
  } finally {
    control.disabled = false;
  }
}

// --- formatting ---

const str = (s) => String(s ?? "");
const usd = (v) => (v == null ? "–" : v === 0 ? "$0" : "$" + (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(4)));
const num = (v) => (v >= 1e6 ? (v / 1e6).toFixed(1) + "M" : v >= 1e4 ? (v / 1e3).toFixed(0) + "k" : String(v ?? 0));
const bytes = (v) => (v >= 1 << 30 ? (v / (1 << 30)).toFixed(1) + " GiB" : (v / (1 << 20)).toFixed(1) + " MiB");
function dur(s) {
  if (s == null || !isFinite(s)) return "–";
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + "m " + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}
const ms = (ts) => (ts ? Date.parse(ts) : NaN);
function h(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const k in props || {}) {
    if (k === "class") e.className = props[k];
    else if (k === "data") Object.assign(e.dataset, props[k]);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), props[k]);
    else e[k] = props[k];
  }
  e.append(...kids.filter((k) => k != null && k !== false));
  return e;
}
const badge = (s) => h("span", { class: "st", data: { s: s || "" } }, s || "–");

function notice(text, kind) {
  const n = $("notice");
  n.hidden = !text;
  n.textContent = text || "";
  n.dataset.kind = kind || "";
}

function setConn(state, text) {
  const c = $("conn");
  c.dataset.state = state;
  c.textContent = text || state;
}

// --- the model ---

function usageZero() {
  return { input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, reports: 0, cost_usd: 0, models: {} };
}

function pushPoint(series, name, t, v) {
  if (!series.has(name)) series.set(name, []);
  const pts = series.get(name);
  pts.push([t, v]);
  if (pts.length > 4000) series.set(name, pts.filter((_, i) => i % 2 === 0 || i === pts.length - 1));
}

// Cost over time as the snapshot tells it: each worker's cost counted at its
// end (or start while it runs); the stream adds each report as it comes.
function costHistory(workers) {
  S.costTrack = new Map();
  S.costModel = new Map();
  S.tokens = new Map();
  const spent = workers.filter((w) => w.usage && w.usage.cost_usd > 0)
    .map((w) => [ms(w.ended_at || w.started_at), w]).filter(([t]) => isFinite(t)).sort((a, b) => a[0] - b[0]);
  const byTrack = new Map(), byModel = new Map();
  for (const [t, w] of spent) {
    const k = w.track || "(no track)";
    byTrack.set(k, (byTrack.get(k) || 0) + w.usage.cost_usd);
    pushPoint(S.costTrack, k, t, byTrack.get(k));
    for (const [m, u] of Object.entries(w.usage.models || {})) {
      byModel.set(m, (byModel.get(m) || 0) + u.cost_usd);
      pushPoint(S.costModel, m, t, byModel.get(m));
    }
  }
  const models = (S.metrics && S.metrics.total && S.metrics.total.models) || {};
  for (const [m, u] of Object.entries(models))
    S.tokens.set(m, { input: u.input_tokens, output: u.output_tokens, cache_read: u.cache_read_tokens, cache_write: u.cache_write_tokens });
}

function loadState(st) {
  S.pipeline = st.pipeline || {};
  S.tracks = new Map((st.tracks || []).map((t) => [t.id, t]));
  S.tasks = new Map((st.tasks || []).map((t) => [t.id, t]));
  S.workers = new Map((st.workers || []).map((w) => [w.id, w]));
  S.wlist = [...S.workers.keys()].sort((a, b) => b - a);
  S.metrics = st.metrics || null;
  S.context = st.context || null;
  dash.seq = Math.max(dash.seq, st.seq || 0);
  if (st.telemetry) onTelemetryData(st.telemetry, Date.now());
  costHistory(st.workers || []);
  dash.snapshots++;
  for (const d of ["bar", "tracks", "dag", "dagShape", "workers", "plots", "context", "task"]) dirty.add(d);
  schedule();
}

function recount() {
  // tracks' counts from the tasks themselves: an event never counts twice
  const by = new Map();
  for (const t of S.tasks.values()) {
    if (!by.has(t.track)) by.set(t.track, Object.fromEntries(STATUSES.map((s) => [s, 0])));
    by.get(t.track)[t.status] = (by.get(t.track)[t.status] || 0) + 1;
  }
  for (const tr of S.tracks.values()) {
    const c = by.get(tr.id);
    if (c) { tr.tasks_by_status = c; tr.task_count = Object.values(c).reduce((a, b) => a + b, 0); }
  }
}

// A track's budget is not in its track.created event: read once, then
// track.budget events keep it.
async function readBudget(id) {
  try {
    const v = parseFloat(await api(`mma/tracks/${id}/budget`));
    const tr = S.tracks.get(id);
    if (tr && tr.budget_usd === undefined) tr.budget_usd = isFinite(v) ? v : null;
    dirty.add("tracks");
    schedule();
  } catch { /* removed meanwhile */ }
}

function apply(ev) {
  const d = ev.data || {};
  const t = ms(ev.ts);
  switch (ev.type) {
  case "task.status": {
    const task = S.tasks.get(d.task);
    if (task) task.status = d.to;
    dirty.add("tracks").add("dag");
    if (ui.task === d.task) dirty.add("task");
    break;
  }
  case "task.retry": {
    const task = S.tasks.get(d.task);
    if (task) task.retries_left = d.retries_left;
    if (ui.task === d.task) dirty.add("task");
    break;
  }
  case "task.spawn_failed": if (ui.task === d.task) dirty.add("task"); break;
  case "track.status": {
    const tr = S.tracks.get(d.track);
    if (tr) tr.status = d.to;
    dirty.add("tracks");
    break;
  }
  case "track.budget": {
    const tr = S.tracks.get(d.track);
    if (tr) tr.budget_usd = d.budget_usd;
    dirty.add("tracks");
    break;
  }
  case "track.budget_exhausted": dirty.add("tracks"); break;
  // the graph's shape, from the events alone: no document to read again
  case "track.created":
    if (!S.tracks.has(d.track)) {
      S.tracks.set(d.track, { id: d.track, title: d.title, status: "active", cost_usd: 0, created_at: ev.ts, tasks_by_status: {}, task_count: 0, budget_usd: undefined });
      readBudget(d.track);
    }
    dirty.add("tracks").add("dagShape");
    break;
  case "dag.task_added":
    if (!S.tasks.has(d.task)) S.tasks.set(d.task, { id: d.task, track: d.track, status: "blocked", deps: [], workers: [] });
    dirty.add("tracks").add("dagShape");
    break;
  case "dag.task_removed":
    S.tasks.delete(d.task);
    if (ui.task === d.task) ui.task = null;
    dirty.add("tracks").add("dagShape");
    break;
  case "dag.dep_added": {
    const task = S.tasks.get(d.task);
    if (task && !task.deps.includes(d.dep)) task.deps.push(d.dep);
    dirty.add("dagShape");
    if (ui.task === d.task || ui.task === d.dep) dirty.add("task");
    break;
  }
  case "dag.dep_removed": {
    const task = S.tasks.get(d.task);
    if (task) task.deps = task.deps.filter((x) => x !== d.dep);
    dirty.add("dagShape");
    if (ui.task === d.task || ui.task === d.dep) dirty.add("task");
    break;
  }
  case "dag.track_removed": case "dag.track_archived":
    S.tracks.delete(d.track);
    for (const [id, task] of S.tasks) if (task.track === d.track) S.tasks.delete(id);
    if (ui.trackRows.has(d.track)) { ui.trackRows.get(d.track).tr.remove(); ui.trackRows.delete(d.track); }
    dirty.add("tracks").add("dagShape");
    break;
  case "pipeline.status": S.pipeline.status = d.to; dirty.add("bar"); break;
  case "pipeline.max_workers": S.pipeline.max_workers = d.to; dirty.add("bar"); break;
  case "worker.spawned": case "worker.adopted": {
    let w = S.workers.get(d.id);
    if (!w) {
      w = { id: d.id, task: d.task ?? null, track: d.track ?? null, pid: d.pid, command: d.command, runner: d.runner,
        status: "running", started_at: ev.ts, ended_at: null, exit_code: null, signal: null, usage: usageZero() };
      S.workers.set(d.id, w);
      S.wlist.unshift(d.id);   // ids only grow: the newest is first
      const task = S.tasks.get(d.task);
      if (task) { task.worker = d.id; task.workers = [...(task.workers || []), d.id]; }
    }
    w.status = "running";
    if (d.pid) w.pid = d.pid;
    dirty.add("workers");
    if (ui.task && ui.task === d.task) dirty.add("task");
    break;
  }
  case "worker.exited": case "worker.lost": {
    const w = S.workers.get(d.id);
    if (w) {
      w.status = d.status || (ev.type === "worker.lost" ? "lost" : "exited");
      w.exit_code = d.exit_code ?? null;
      w.signal = d.signal ?? null;
      w.ended_at = ev.ts;
      w.runtime_s = (t - ms(w.started_at)) / 1000;
      if (ui.task && ui.task === w.task) dirty.add("task");
    }
    dirty.add("workers");
    if (ui.worker === d.id) dirty.add("log");
    break;
  }
  case "worker.timeout": case "worker.signal": case "worker.runner_state": dirty.add("workers"); break;
  case "usage.reported": {
    const w = S.workers.get(d.worker);
    const add = (u) => {
      u.input_tokens += d.input_tokens; u.output_tokens += d.output_tokens;
      u.cache_read_tokens += d.cache_read_tokens; u.cache_write_tokens += d.cache_write_tokens;
      u.cost_usd += d.cost_usd; u.reports = (u.reports || 0) + 1;
    };
    if (w) add(w.usage);
    const tr = S.tracks.get(d.track);
    if (tr) tr.cost_usd = (tr.cost_usd || 0) + d.cost_usd;
    const k = d.track || "(no track)", m = d.model || "(no model)";
    const last = (series, key) => { const p = series.get(key); return p && p.length ? p[p.length - 1][1] : 0; };
    pushPoint(S.costTrack, k, t, last(S.costTrack, k) + d.cost_usd);
    pushPoint(S.costModel, m, t, last(S.costModel, m) + d.cost_usd);
    const tok = S.tokens.get(m) || { input: 0, output: 0, cache_read: 0, cache_write: 0 };
    tok.input += d.input_tokens; tok.output += d.output_tokens;
    tok.cache_read += d.cache_read_tokens; tok.cache_write += d.cache_write_tokens;
    S.tokens.set(m, tok);
    dirty.add("workers").add("tracks").add("plots");
    if (ui.task && ui.task === d.task) dirty.add("task");
    break;
  }
  case "context.injected": case "context.removed": refreshContext(); break;
  default: break;
  }
}

function onEvent(ev) {
  if (ev.seq <= dash.seq) return;   // already had (a resumed stream)
  // seqs come one after the other; a hole would be events this page missed
  if (dash.seq && ev.seq !== dash.seq + 1) (dash.holes = dash.holes || []).push([dash.seq, ev.seq]);
  dash.seq = ev.seq;
  dash.events++;
  apply(ev);
  schedule();
}

function onTelemetryData(d, now) {
  S.tel = d;
  const prev = S.lastTel;
  if (!prev || now - prev.t >= 1000) {
    const seq = dash.seq;   // what the page was sent: the frames carry no seq
    if (prev) {
      S.eps.push([now, Math.max(0, (seq - prev.seq) / ((now - prev.t) / 1000))]);
      S.p99.push([now, d.loop ? d.loop.p99_us : 0]);
      if (S.eps.length > HIST) S.eps.shift();
      if (S.p99.length > HIST) S.p99.shift();
      dirty.add("plots");
    }
    S.lastTel = { t: now, seq };
  }
  dirty.add("bar");
}

let contextTimer = null;
function refreshContext() {
  clearTimeout(contextTimer);
  contextTimer = setTimeout(async () => {
    try {
      S.context = await api("context/state");
      dirty.add("context");
      schedule();
    } catch (e) {
      $("err-inject").textContent = "Could not read the context: " + e.message;
    }
  }, 100);
}

// --- the stream ---

let ws = null, backoff = 250, subscribed = false, wsStopped = false;
const live = () => ws && subscribed && ws.readyState === WebSocket.OPEN;
function connect() {
  const scheme = cfg.tls ? "wss" : "ws";
  const url = `${scheme}://${location.hostname}:${cfg.ws_port}/` + (token ? "?token=" + encodeURIComponent(token) : "");
  setConn("connecting", "connecting");
  const sock = new WebSocket(url, "orchfs.v1");
  ws = sock;
  subscribed = false;
  let opened = false;
  sock.onopen = () => {
    opened = true;
    dash.connects++;
    sock.send(JSON.stringify({ op: "subscribe", id: "sub", channels: CHANNELS, since: dash.seq }));
  };
  sock.onmessage = (m) => {
    let msg;
    try { msg = JSON.parse(m.data); } catch { return; }
    if (typeof msg.id === "number" && pending.has(msg.id)) return answer(msg);
    if (msg.id === "sub") {
      if (msg.ok) {
        subscribed = true;
        backoff = 250;
        setConn("live", "live");
        notice("");
      } else {
        // the seq we had is gone (or the daemon is another one): start again from a snapshot
        resync(sock);
      }
      return;
    }
    if (msg.channel === "telemetry") {
      onTelemetryData(msg.data, Date.now());
      schedule();
    } else if (msg.seq !== undefined) {
      onEvent(msg);
    }
  };
  sock.onclose = (e) => {
    if (ws !== sock || wsStopped) return;
    subscribed = false;
    dropPending(`the stream from orchfs closed (code ${e.code}); try again`);
    const slow = e.code === 1013;
    if (slow) {
      dash.tooSlow = (dash.tooSlow || 0) + 1;
      const m = /last seq sent (\d+)/.exec(e.reason || "");
      if (m) dash.seq = Math.min(dash.seq, Number(m[1])) || dash.seq;
    }
    setConn("down", slow ? "too slow: resuming" : "reconnecting");
    if (!slow) notice(`The stream from orchfs is closed (code ${e.code}); reconnecting and resuming from seq ${dash.seq}.`);
    // refused before it opened: a daemon back with another token is told
    // as such, not retried for ever
    if (!opened) checkToken();
    const wait = slow ? 100 : backoff;
    backoff = Math.min(5000, backoff * 2);
    setTimeout(() => { if (!wsStopped && ws === sock) connect(); }, wait);
  };
}

async function checkToken() {
  try {
    await http("mma/pipeline/status");
  } catch (e) {
    if (e.status !== 401 && e.status !== 403) return;   // not up yet: the stream tries again
    wsStopped = true;
    ws = null;
    sessionStorage.removeItem("orchfs-token");
    token = null;
    askToken(`orchfs refused the token (${e.status}): ${e.message}. Paste the right one (STATE_DIR/token).`);
  }
}

async function resync(sock) {
  try {
    const st = await http("state");
    dash.seq = 0;
    loadState(st);
    dash.seq = st.seq;
    sock.send(JSON.stringify({ op: "subscribe", id: "sub", channels: CHANNELS, since: st.seq }));
  } catch (e) {
    notice("Could not read the state: " + e.message, "error");
    sock.close();
  }
}

// --- drawing ---

let frame = 0;
function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}

let lastBar = 0;
function render() {
  frame = 0;
  const now = performance.now();
  if (dirty.has("bar") && now - lastBar > 250) { renderBar(); lastBar = now; dirty.delete("bar"); }
  if (dirty.has("tracks") || dirty.has("dag")) recount();
  if (dirty.delete("tracks")) renderTracks();
  if (dirty.delete("dagShape")) { renderDagShape(); dirty.delete("dag"); }
  if (dirty.delete("dag")) recolourDag();
  if (dirty.delete("workers")) renderWorkers();
  if (dirty.delete("task")) renderTask();
  if (dirty.delete("log")) followLog();
  if (dirty.delete("context")) renderContext();
  if (dirty.delete("plots")) renderPlots();
  if (dash.firstRenderMs === null && dash.snapshots > 0) {
    dash.firstRenderMs = performance.now();
    document.body.dataset.ready = "1";
  }
  if (dirty.size) setTimeout(schedule, 250);   // what waits for its turn (the bar)
}

function renderBar() {
  const p = S.pipeline;
  const st = $("pipeline-status");
  st.textContent = p.status || "–";
  st.dataset.status = p.status || "";
  const mw = $("max-workers");
  if (document.activeElement !== mw && p.max_workers) mw.value = p.max_workers;
  const t = S.tel;
  $("stat-running").textContent = runningCount();
  if (t) {
    $("stat-tick").textContent = t.loop ? t.loop.rate_hz.toFixed(1) : "–";
    $("stat-p99").textContent = t.loop ? Math.round(t.loop.p99_us) + " µs" : "–";
    $("stat-cpu").textContent = t.process ? t.process.cpu_percent.toFixed(1) + " %" : "–";
    $("stat-rss").textContent = t.process ? bytes(t.process.rss_bytes) : "–";
  }
  const e = S.eps.length ? S.eps[S.eps.length - 1][1] : 0;
  $("stat-eps").textContent = e.toFixed(e < 10 ? 1 : 0);
}

function runningCount() {
  let n = 0;
  for (const w of S.workers.values()) if (w.status === "running") n++;
  return n;
}

// A track that has ended lasted until its last worker's end.
function trackEnds() {
  const ends = new Map();
  if ([...S.tracks.values()].every((t) => t.status === "active")) return ends;
  for (const w of S.workers.values())
    if (w.track && w.ended_at) ends.set(w.track, Math.max(ends.get(w.track) || 0, ms(w.ended_at)));
  return ends;
}

function trackDuration(tr, ends) {
  const start = ms(tr.created_at);
  if (tr.status === "active") return (Date.now() - start) / 1000;
  return (Math.max(start, ends.get(tr.id) || start) - start) / 1000;
}

function renderTracks() {
  const body = $("tracks").tBodies[0];
  $("tracks-empty").hidden = S.tracks.size > 0;
  for (const [id, row] of ui.trackRows) if (!S.tracks.has(id)) { row.tr.remove(); ui.trackRows.delete(id); }
  const ends = trackEnds();
  for (const tr of S.tracks.values()) {
    let row = ui.trackRows.get(tr.id);
    if (!row) {
      row = { bar: h("div", { class: "bar" }), counts: h("span", { class: "muted" }), status: h("td"),
        money: h("div", { class: "money" }, h("span")), cost: h("span"), dur: h("td", { class: "num" }),
        input: h("input", { type: "number", min: "0", step: "0.01" }), err: h("span", { class: "err" }) };
      const set = h("button", { type: "button", textContent: "Set" });
      row.input.dataset.track = tr.id;
      set.dataset.budget = tr.id;
      set.addEventListener("click", () => act(set, row.err, async () => {
        await api(`mma/tracks/${tr.id}/budget`, row.input.value.trim());
        row.input.blur();
      }));
      row.tr = h("tr", { data: { track: tr.id } },
        h("td", {}, h("b", { class: "mono" }, tr.id), h("div", { class: "muted" }, str(tr.title))),
        row.status,
        h("td", {}, h("div", { class: "barline" }, row.bar, row.counts)),
        h("td", {}, row.cost, row.money),
        h("td", { class: "budget" }, row.input, " ", set, " ", row.err),
        row.dur);
      body.append(row.tr);
      ui.trackRows.set(tr.id, row);
    }
    row.status.replaceChildren(badge(tr.status));
    const c = tr.tasks_by_status || {}, n = tr.task_count || 0;
    row.bar.replaceChildren(...STATUSES.filter((s) => c[s]).map((s) => {
      const seg = h("span", { title: `${s}: ${c[s]}` });
      seg.style.width = (100 * c[s]) / Math.max(1, n) + "%";
      seg.style.background = `var(--st-${s})`;
      return seg;
    }));
    row.bar.dataset.counts = JSON.stringify(c);
    row.counts.textContent = `${(c.done || 0) + (c.skipped || 0)}/${n}` + (c.running ? ` · ${c.running} running` : "") + (c.failed ? ` · ${c.failed} failed` : "");
    const budget = tr.budget_usd;
    row.cost.textContent = budget != null ? `${usd(tr.cost_usd || 0)} of ${usd(budget)}` : `${usd(tr.cost_usd || 0)} (no budget)`;
    const frac = budget ? Math.min(1, (tr.cost_usd || 0) / budget) : 0;
    row.money.firstChild.style.width = frac * 100 + "%";
    row.money.dataset.over = budget && tr.cost_usd >= budget ? "1" : "0";
    if (document.activeElement !== row.input) row.input.value = budget ?? "";
    row.dur.textContent = dur(trackDuration(tr, ends));
  }
}

// --- the DAG ---

function dagSelection() {
  const sel = $("dag-track");
  const want = [["", `all tracks (${S.tasks.size} tasks)`], ...[...S.tracks.values()].map((t) => [t.id, `${t.id} (${t.task_count || 0})`])];
  if (sel.options.length !== want.length || want.some(([v, l], i) => sel.options[i].value !== v || sel.options[i].text !== l))
    sel.replaceChildren(...want.map(([v, l]) => h("option", { value: v, textContent: l })));
  if (ui.dagTrack === null) {
    // all of them while that is readable, else the first track still at work
    const active = [...S.tracks.values()].find((t) => t.status === "active");
    ui.dagTrack = S.tasks.size <= DAG_MAX || !active ? "" : active.id;
  }
  if (ui.dagTrack && !S.tracks.has(ui.dagTrack)) ui.dagTrack = "";
  sel.value = ui.dagTrack;
}

function renderDagShape() {
  dagSelection();
  let tasks = [...S.tasks.values()].filter((t) => !ui.dagTrack || t.track === ui.dagTrack);
  const total = tasks.length;
  if (tasks.length > DAG_MAX) {
    // the work still to do first: what has finished matters least
    const open = tasks.filter((t) => t.status !== "done" && t.status !== "skipped");
    tasks = open.length >= DAG_MAX ? open.slice(0, DAG_MAX) : [...open, ...tasks.filter((t) => t.status === "done" || t.status === "skipped").slice(0, DAG_MAX - open.length)];
  }
  const ids = new Set(tasks.map((t) => t.id));
  const ghost = new Set();
  const edges = [];
  for (const t of tasks) for (const d of t.deps || []) {
    if (!ids.has(d) && S.tasks.has(d) && ghost.size < 50) ghost.add(d);
    if (ids.has(d) || ghost.has(d)) edges.push([d, t.id]);
  }
  const all = [...ids, ...ghost];
  const note = $("dag-note");
  note.hidden = total <= DAG_MAX;
  note.textContent = total > DAG_MAX ? `${total} tasks: drawing ${DAG_MAX} of them (those not finished first); pick a track to see fewer.` : "";
  const key = all.join(",") + "|" + edges.map((e) => e.join(">")).join(",");
  const g = key === ui.dagKey ? ui.dagGraph : layout(all, edges);
  const zoomWas = ui.dagZoom;
  if (!ui.dagZoomed) {
    // until the user zooms: the whole width when that stays readable
    const w = $("dag-scroll").clientWidth - 4;
    ui.dagZoom = w > 0 ? Math.max(0.8, Math.min(1, w / g.width)) : 1;
  }
  if (key === ui.dagKey && zoomWas === ui.dagZoom && ui.dagDrawn === ui.dagZoom) return recolourDag();
  ui.dagKey = key;
  ui.dagGraph = g;
  ui.dagDrawn = ui.dagZoom;
  ui.dagNodes = draw($("dag"), g, {
    statusOf: (id) => (S.tasks.get(id) || {}).status || "blocked",
    ghost,
    zoom: ui.dagZoom,
    onClick: (id) => selectTask(id),
  });
  highlightTask();
}

function recolourDag() {
  for (const [id, node] of ui.dagNodes) {
    const s = (S.tasks.get(id) || {}).status || "blocked";
    if (node.dataset.status !== s) {
      node.dataset.status = s;
      node.firstChild.textContent = `${id} (${s})`;
    }
  }
}

function highlightTask() {
  for (const [id, node] of ui.dagNodes) node.classList.toggle("sel", id === ui.task);
  for (const p of $("dag").querySelectorAll(".edge"))
    p.classList.toggle("hot", p.dataset.from === ui.task || p.dataset.to === ui.task);
}

function fitDag() {
  const g = ui.dagGraph;
  if (!g) return;
  const w = $("dag-scroll").clientWidth - 4;
  ui.dagZoom = Math.max(0.2, Math.min(1.5, w / g.width));
  ui.dagZoomed = true;
  dirty.add("dagShape");
  schedule();
}

// --- a task ---

let taskInfo = null, taskSeq = 0;
function selectTask(id) {
  ui.task = id;
  highlightTask();
  dirty.add("task");
  schedule();
}

async function renderTask() {
  const id = ui.task;
  if (!id) return;
  const my = ++taskSeq;
  $("task-title").textContent = id;
  try {
    taskInfo = await api(`mma/tasks/${encodeURIComponent(id)}/info.json`);
  } catch (e) {
    if (my !== taskSeq) return;
    $("task-panel").replaceChildren(h("p", { class: "err" }, e.message));
    return;
  }
  if (my !== taskSeq) return;
  const t = taskInfo;
  const kv = h("dl", { class: "kv" });
  const row = (k, v) => kv.append(h("dt", {}, k), h("dd", {}, v));
  row("title", str(t.title));
  row("status", badge(t.status));
  row("track", h("span", { class: "mono" }, t.track));
  row("command", h("code", {}, t.command));
  row("deps", t.deps.length ? h("span", {}, ...t.deps.map((d) => h("button", { class: "linkish mono", type: "button", textContent: d, onclick: () => selectTask(d) }))) : "none");
  const dependents = [...S.tasks.values()].filter((x) => (x.deps || []).includes(t.id)).map((x) => x.id);
  row("dependents", dependents.length ? h("span", {}, ...dependents.map((d) => h("button", { class: "linkish mono", type: "button", textContent: d, onclick: () => selectTask(d) }))) : "none");
  if (t.waiting) row("waiting", typeof t.waiting === "string" ? t.waiting : JSON.stringify(t.waiting));
  row("priority", String(t.priority));
  row("retries left", `${t.retries_left} of ${t.retries}`);
  if (t.model) row("model", t.model);
  if (t.usage) row("cost", `${usd(t.usage.cost_usd)} · ${num(t.usage.input_tokens)} in · ${num(t.usage.output_tokens)} out`);
  const actions = h("div", { class: "actions" });
  const err = h("span", { class: "err", id: "err-task" });
  for (const op of ["retry", "skip", "hold", "release", "cancel"]) {
    const b = h("button", { type: "button", textContent: op, data: { op } });
    b.addEventListener("click", () => act(b, err, () => api("mma/dag/mutate", `${op} ${t.id}`)));
    actions.append(b);
  }
  actions.append(err);
  const workers = h("table", { class: "grid" }, h("thead", {}, h("tr", {}, ...["worker", "status", "runtime", "exit", "cost"].map((c) => h("th", {}, c)))));
  const wb = h("tbody");
  for (const w of [...(t.workers || [])].reverse())
    wb.append(h("tr", {},
      h("td", {}, h("button", { class: "linkish mono", type: "button", textContent: "#" + w.id, onclick: () => selectWorker(w.id) })),
      h("td", {}, badge(w.status)), h("td", { class: "num" }, dur(w.runtime_s)),
      h("td", { class: "num" }, w.exit_code ?? w.signal ?? "–"), h("td", { class: "num" }, usd(w.usage ? w.usage.cost_usd : 0))));
  workers.append(wb);
  $("task-panel").replaceChildren(kv, actions, h("h2", {}, "Workers"), (t.workers || []).length ? workers : h("p", { class: "empty" }, "none yet"));
  $("task-panel").dataset.status = t.status;
}

// --- workers: a virtual list ---

function workerView() {
  const f = $("workers-filter").value;
  if (f === "all") return S.wlist;
  return S.wlist.filter((id) => {
    const running = S.workers.get(id).status === "running";
    return f === "running" ? running : !running;
  });
}

let view = [];
function renderWorkers() {
  view = workerView();
  $("workers-count").textContent = `${S.workers.size} (${runningCount()} running)`;
  $("workers-spacer").style.height = view.length * ROW_H + "px";
  paintRows();
  if (ui.worker !== null) $("btn-kill").disabled = (S.workers.get(ui.worker) || {}).status !== "running";
}

function paintRows() {
  const sc = $("workers-scroll");
  const first = Math.max(0, Math.floor(sc.scrollTop / ROW_H) - 5);
  const last = Math.min(view.length, first + Math.ceil(sc.clientHeight / ROW_H) + 10);
  const rows = $("workers-rows");
  rows.style.transform = `translateY(${first * ROW_H}px)`;
  const kids = [];
  const now = Date.now();
  for (let i = first; i < last; i++) {
    const w = S.workers.get(view[i]);
    const u = w.usage || usageZero();
    const runtime = w.runtime_s ?? (w.started_at ? ((w.ended_at ? ms(w.ended_at) : now) - ms(w.started_at)) / 1000 : null);
    const exit = w.exit_code != null ? String(w.exit_code) : w.signal ? "SIG" + w.signal : "–";
    const r = h("div", { class: "vrow" + (w.id === ui.worker ? " sel" : ""), data: { worker: w.id } },
      h("span", { class: "mono" }, "#" + w.id), h("span", { title: w.command || "" }, w.task || h("i", { class: "muted" }, str(w.command))),
      h("span", {}, badge(w.status)), h("span", { class: "r" }, dur(w.status === "running" ? (now - ms(w.started_at)) / 1000 : runtime)),
      h("span", { class: "r" }, num(u.input_tokens + u.output_tokens)), h("span", { class: "r" }, usd(u.cost_usd)), h("span", { class: "r" }, exit));
    kids.push(r);
  }
  rows.replaceChildren(...kids);
}

// --- a worker's log, followed ---

let logOffset = 0, logTimer = null, logBusy = false, logAgain = false;
function selectWorker(id) {
  ui.worker = id;
  logOffset = 0;
  $("log").textContent = "";
  $("err-kill").textContent = "";
  $("log-title").textContent = `#${id}` + (S.workers.get(id) && S.workers.get(id).task ? ` (task ${S.workers.get(id).task})` : "");
  $("btn-kill").disabled = (S.workers.get(id) || {}).status !== "running";
  $("log").dataset.worker = id;
  paintRows();
  followLog();
}

// Reads what the log has past what was shown; while the worker runs, again
// four times a second (logs have no events), as `orchfs logs -f` does.
async function followLog() {
  clearTimeout(logTimer);
  if (logBusy) { logAgain = true; return; }   // once the read in flight is back
  const id = ui.worker;
  if (id === null) return;
  logBusy = true;
  try {
    const { text, next } = await readLog(id, logOffset);
    if (ui.worker !== id) return;
    logOffset = next;
    if (text) {
      const pre = $("log");
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(text);
      if (pre.textContent.length > 400000) pre.textContent = pre.textContent.slice(-300000);
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
  } catch (e) {
    if (ui.worker === id) $("err-kill").textContent = "log: " + e.message;
  } finally {
    logBusy = false;
  }
  if (logAgain || ui.worker !== id) {
    logAgain = false;
    followLog();   // another worker was picked meanwhile, or it ended
  } else if ((S.workers.get(id) || {}).status === "running") {
    logTimer = setTimeout(followLog, 250);
  }
}

// --- context ---

function renderContext() {
  const c = S.context || { entries: [] };
  const body = $("context").tBodies[0];
  $("context-total").textContent = c.aggregate ? `${c.aggregate.entries} ${c.aggregate.entries === 1 ? "entry" : "entries"} · ~${num(c.aggregate.token_estimate)} tokens` : "";
  body.replaceChildren(...c.entries.map((e) => {
    const err = h("span", { class: "err" });
    const rm = h("button", { type: "button", textContent: "Remove", data: { remove: e.name } });
    rm.addEventListener("click", () => act(rm, err, () => api("context/remove", e.name)));
    return h("tr", { data: { entry: e.name } }, h("td", { class: "mono" }, e.name), h("td", {}, e.kind), h("td", { class: "mono" }, e.source || "–"),
      h("td", {}, h("span", { class: "st", data: { s: e.status === "fresh" ? "done" : e.status === "stale" ? "held" : "failed" } }, e.status)),
      h("td", { class: "num" }, num(e.token_estimate)), h("td", {}, rm, " ", err));
  }));
  if (!c.entries.length) body.append(h("tr", {}, h("td", { colSpan: 6, class: "empty" }, "No context: inject text or a path below.")));
}

// --- plots ---

function renderPlots() {
  const series = (m) => [...m].map(([name, pts]) => ({ name, pts }));
  lines($("plot-cost-track"), $("keys-cost-track"), series(S.costTrack), { step: true, fmt: (v) => usd(v) });
  lines($("plot-cost-model"), $("keys-cost-model"), series(S.costModel), { step: true, fmt: (v) => usd(v) });
  bars($("plot-tokens"), $("keys-tokens"), [...S.tokens].map(([name, values]) => ({ name, values })), ["input", "output", "cache_read", "cache_write"]);
  lines($("plot-p99"), null, [{ name: "p99", pts: S.p99 }]);
  lines($("plot-eps"), null, [{ name: "events/s", pts: S.eps }]);
}

// --- wiring ---

function wire() {
  const pipeErr = $("err-pipeline");
  $("btn-pause").addEventListener("click", (e) => act(e.currentTarget, pipeErr, () => api("mma/pipeline/pause", "pause")));
  $("btn-freeze").addEventListener("click", (e) => act(e.currentTarget, pipeErr, () => api("mma/pipeline/pause", "freeze")));
  $("btn-resume").addEventListener("click", (e) => act(e.currentTarget, pipeErr, () => api("mma/pipeline/resume", "resume")));
  $("btn-max-workers").addEventListener("click", (e) => act(e.currentTarget, $("err-max-workers"), async () => {
    await api("mma/pipeline/max_workers", $("max-workers").value.trim());
    $("max-workers").blur();
  }));
  $("max-workers").addEventListener("keydown", (e) => { if (e.key === "Enter") $("btn-max-workers").click(); });
  $("dag-track").addEventListener("change", (e) => { ui.dagTrack = e.target.value; dirty.add("dagShape"); schedule(); });
  $("dag-zoom-in").addEventListener("click", () => { ui.dagZoom = Math.min(3, ui.dagZoom * 1.25); ui.dagZoomed = true; dirty.add("dagShape"); schedule(); });
  $("dag-zoom-out").addEventListener("click", () => { ui.dagZoom = Math.max(0.15, ui.dagZoom / 1.25); ui.dagZoomed = true; dirty.add("dagShape"); schedule(); });
  $("dag-fit").addEventListener("click", fitDag);
  $("workers-scroll").addEventListener("scroll", () => requestAnimationFrame(paintRows), { passive: true });
  $("workers-rows").addEventListener("click", (e) => {
    const r = e.target.closest(".vrow");
    if (r) selectWorker(Number(r.dataset.worker));
  });
  $("workers-filter").addEventListener("change", () => { dirty.add("workers"); schedule(); });
  $("btn-kill").addEventListener("click", (e) => act(e.currentTarget, $("err-kill"), () => api("mma/workers/kill",
    JSON.stringify({ id: ui.worker, signal: $("kill-signal").value, grace_s: Number($("kill-grace").value || 0) }))));
  $("inject").addEventListener("submit", (e) => {
    e.preventDefault();
    const kind = $("inject-kind").value, value = $("inject-value").value, name = $("inject-name").value.trim();
    const body = { [kind === "text" ? "text" : "path"]: value };
    if (name) body.name = name;
    if (kind === "skeleton") body.kind = "skeleton";
    act($("btn-inject"), $("err-inject"), async () => {
      await api("context/inject", JSON.stringify(body));
      $("inject-value").value = "";
      $("inject-name").value = "";
    });
  });
  // runtimes and durations move on by themselves
  setInterval(() => { dirty.add("tracks").add("workers"); schedule(); }, 1000);
  window.addEventListener("resize", () => { dirty.add("plots"); schedule(); });
}

// --- the start: the token, then the snapshot, then the stream ---

function takeToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("orchfs-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);   // not in the history, nor shown
  }
  return sessionStorage.getItem("orchfs-token");
}

function askToken(message) {
  $("main").hidden = true;
  $("auth").hidden = false;
  const msg = $("auth-msg");
  if (message) { msg.textContent = message; msg.dataset.kind = "error"; }
  setConn("down", "no token");
  $("auth-token").focus();
}

async function start() {
  token = takeToken();
  if (!token) return askToken();
  // one request first: a wrong token is told here, clearly, not as a stream that never opens
  try {
    await http("mma/pipeline/status");
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      sessionStorage.removeItem("orchfs-token");
      token = null;
      return askToken(`orchfs refused the token (${e.status}): ${e.message}. Paste the right one (STATE_DIR/token).`);
    }
    notice(e.message + "; trying again", "error");
    setTimeout(start, 2000);
    return;
  }
  try {
    cfg = await (await fetch("/config.json", { cache: "no-store" })).json();
    $("auth").hidden = true;
    $("main").hidden = false;
    wsStopped = false;
    dash.seq = 0;   // a start afresh: the daemon may be another one
    loadState(await http("state"));
  } catch (e) {
    notice("Could not read the state: " + e.message, "error");
    setTimeout(start, 2000);
    return;
  }
  if (!cfg.ws_port) {
    notice("The WebSocket listener is off (--ws off): the page shows the state at load, and does not follow it.", "error");
    return;
  }
  connect();
}

$("auth").addEventListener("submit", (e) => {
  e.preventDefault();
  const v = $("auth-token").value.trim();
  if (!v) return;
  sessionStorage.setItem("orchfs-token", v);
  $("auth-token").value = "";
  start();
});
wire();
start();
