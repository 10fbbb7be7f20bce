// Trellis dashboard. No build step, no dependencies. Every piece of job data
// is written with textContent or setAttribute, never as HTML.
"use strict";

const body = document.body;
const page = body.dataset.page;
const pageID = body.dataset.id;
const readOnly = body.dataset.readonly === "true";
const devMode = body.dataset.development === "true";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
// the engine's states (dag.States), in lifecycle order: the one vocabulary of every card, table and filter
const STATES = body.dataset.states.split(" ");

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

async function api(path, opts = {}) {
  const init = { method: opts.method || "GET", headers: { Accept: "application/json" } };
  if (init.method !== "GET") {
    init.headers["X-CSRF-Token"] = csrf;
    if (opts.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
  }
  const res = await fetch(path, init);
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok && !(opts.accept || []).includes(res.status)) {
    throw new Error((data && data.error) || res.status + " " + res.statusText);
  }
  return data;
}

function flash(msg, bad) {
  const f = document.getElementById("flash");
  clear(f).append(el("p", { class: bad ? "bad" : "good" }, msg));
}

function stateBadge(s) { return el("span", { class: "state s-" + s }, s); }
function fmtMs(v) {
  if (v === undefined || v === null) return "–";
  if (v < 1000) return v.toFixed(v < 10 ? 1 : 0) + " ms";
  if (v < 60000) return (v / 1000).toFixed(1) + " s";
  return (v / 60000).toFixed(1) + " min";
}
// A time shows as "2 min ago" (or "in 2 min"), the absolute time on hover;
// tick() keeps the words current.
function ago(t, now) {
  const d = (now - new Date(t).getTime()) / 1000;
  const a = Math.abs(d);
  if (a < 5) return "just now";
  const n = a < 60 ? Math.floor(a) + " s" : a < 3600 ? Math.floor(a / 60) + " min" :
    a < 86400 ? Math.floor(a / 3600) + " h" : Math.floor(a / 86400) + " d";
  return d > 0 ? n + " ago" : "in " + n;
}
function timeAgo(t) {
  if (!t) return "–";
  const iso = new Date(t).toISOString();
  return el("time", { class: "ago", datetime: iso, title: new Date(t).toLocaleString() }, ago(t, Date.now()));
}
function tick() {
  const now = Date.now();
  for (const e of document.querySelectorAll("time.ago")) e.textContent = ago(e.getAttribute("datetime"), now);
}
// Job, flow and queue names go in a query parameter, never a path segment:
// the IDs "." and ".." are legal, and a browser resolves them out of a path.
// svg makes an SVG element, as el does an HTML one (the flow view, the charts).
const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function named(path, id, param) { return path + "?" + (param || "id") + "=" + encodeURIComponent(id); }
function jobLink(id) { return el("a", { href: named("job", id) }, id); }
function flowLink(id) { return el("a", { href: named("flow", id) }, id); }

function table(t, headers, rows) {
  clear(t);
  t.append(el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))));
  const tb = el("tbody");
  for (const r of rows) tb.append(el("tr", {}, ...r.map((c) => el("td", {}, c))));
  if (rows.length === 0) tb.append(el("tr", {}, el("td", { colspan: headers.length, class: "empty" }, "nothing here")));
  t.append(tb);
}

function jobRows(jobs) {
  return jobs.map((j) => [jobLink(j.id), j.type, stateBadge(j.state), j.attempt + "/" + j.maxAttempts,
    flowLink(j.flowId), timeAgo(j.updatedAt), j.error ? j.error.message : (j.reason || "")]);
}
const JOB_HEADERS = ["Job", "Type", "State", "Attempts", "Flow", "Updated", "Error / reason"];

// ---- live updates -------------------------------------------------------
// A burst of events makes one refresh; the job lists (jobs, failed), which
// read a page of jobs each time, refresh at most every few seconds.
let refreshTimer = null;
let lastRefresh = 0;
let onEvents = () => {};
function live(refresh, filter, every) {
  onEvents = (evs) => {
    if (filter && !evs.some(filter)) return;
    if (refreshTimer) return;
    const gap = typeof every === "function" ? every() : every || 0;
    const wait = Math.max(250, gap - (Date.now() - lastRefresh));
    refreshTimer = setTimeout(() => { refreshTimer = null; lastRefresh = Date.now(); refresh(); }, wait);
  };
}
function connect() {
  const dot = document.getElementById("live");
  const es = new EventSource("api/events");
  es.onopen = () => { dot.className = "live on"; };
  es.onerror = () => { dot.className = "live off"; };
  es.addEventListener("transition", (m) => {
    let evs = [];
    try { evs = JSON.parse(m.data); } catch (_) { return; }
    activity(evs);
    if (page === "flow") recolor(evs);
    onEvents(evs);
  });
}

// the overview's feed of the newest transitions
function activity(evs) {
  const list = document.getElementById("activity");
  if (!list) return;
  for (const e of evs.slice(-20)) {
    list.prepend(el("li", {}, timeAgo(e.at), " ", jobLink(e.node), " ", e.from ? stateBadge(e.from) : "", e.from ? " → " : "",
      stateBadge(e.to), e.attempt ? " attempt " + e.attempt : "", e.worker ? " on " + e.worker : ""));
  }
  while (list.children.length > 30) list.removeChild(list.lastChild);
}

// ---- overview -----------------------------------------------------------
function renderCounts(st) {
  const c = document.getElementById("counts");
  if (!c) return;
  clear(c);
  // a card per state, named as the engine names it, linking to its jobs
  for (const s of STATES) {
    c.append(el("a", { class: "stat s-" + s, href: "jobs?state=" + s, "data-state": s },
      el("span", { class: "n" }, st.counts[s] || 0), el("span", {}, s)));
  }
}

async function overview() {
  const [st, hl] = await Promise.all([
    api("api/queue-stats?includeJobs=true&limit=15"),
    api("api/admin/queue-health", { accept: [503] }),
  ]);
  renderCounts(st);
  const r = clear(document.getElementById("rates"));
  const card = (label, v, title) => el("div", { class: "stat", title }, el("span", { class: "n" }, v), el("span", {}, label));
  // the p95 comes from a histogram of durations: an estimate, not a measurement
  const p95 = st.p95DurationMs === 0 ? "–" : (st.p95Capped ? "≥ " : "≈ ") + fmtMs(st.p95DurationMs);
  r.append(card("jobs / minute (" + st.windowMinutes + " min)", st.processingRate.toFixed(1)),
    card("error rate", st.errorRate.toFixed(1) + " %"), card("average time", fmtMs(st.avgDurationMs)),
    card("p95 time (estimate)", p95, "estimated from a histogram of step durations, linear within the bucket it falls in" +
      (st.p95Capped ? "; the histogram ends at 1 min" : "")), card("retries", st.retries));
  const h = clear(document.getElementById("health"));
  h.className = "card health h-" + hl.status;
  h.append(el("h2", {}, "Health: " + hl.status));
  const list = el("ul");
  for (const f of hl.findings) {
    list.append(el("li", { class: "sev-" + f.severity }, el("b", {}, f.severity + " · " + f.check + ": "), f.reason,
      el("br"), el("small", {}, "→ " + f.recommendation)));
  }
  if (hl.findings.length === 0) list.append(el("li", {}, "All checks pass."));
  h.append(list, el("p", { class: "muted" }, "live runners: " + hl.metrics.liveRunners +
    " · stalled: " + hl.metrics.stalled + " · oldest ready job: " + hl.metrics.oldestWaitingSeconds.toFixed(0) + " s" +
    " · Redis maxmemory-policy: " + hl.metrics.maxmemoryPolicy));
  for (const rn of hl.metrics.liveRunnerDetails || []) {
    const i = rn.info;
    h.append(el("p", { class: "muted" }, "runner " + rn.id + (i ? " on " + i.host + " · queues " + i.queues.join(", ") +
      " · types " + i.types.join(", ") + " · " + i.inFlight + "/" + i.concurrency + " running" : " (sends no record)")));
  }
  const queues = Object.keys(st.byQueue).concat(st.paused).filter((q, i, a) => a.indexOf(q) === i).sort();
  table(document.getElementById("queue-table"), ["Queue", "ready", "delayed", "active", "failed", "Status", ""],
    queues.map((q) => {
      const c = st.byQueue[q] || {};
      const paused = st.paused.includes(q);
      const verb = paused ? "resume" : "pause";
      return [q, c.ready || 0, c.delayed || 0, c.active || 0, c.failed || 0, paused ? "paused" : "running", readOnly ? "" :
        el("button", { type: "button", onclick: () => act(named("api/queue/" + verb, q, "queue"), (paused ? "Resumed " : "Paused ") + q) }, paused ? "Resume" : "Pause")];
    }));
  const types = Object.keys(st.byType).sort();
  table(document.getElementById("by-type"), ["Type", ...STATES],
    types.map((t) => [t, ...STATES.map((s) => st.byType[t][s] || 0)]));
  table(document.getElementById("recent"), JOB_HEADERS, jobRows(st.jobs || []));
}

// ---- failed-job analysis ------------------------------------------------
async function failed() {
  const f = await api("api/failures");
  table(document.getElementById("failed-types"), ["Type", "Failed", ""],
    Object.keys(f.byType).sort().map((t) => [t, f.byType[t], readOnly ? "" :
      el("button", { type: "button", onclick: () => act("api/jobs/retry-failed?type=" + encodeURIComponent(t), "Retried failed " + t) }, "Retry all")]));
  table(document.getElementById("failed-groups"), ["Type", "Error", "Count", "Last", "Jobs"],
    f.groups.map((g) => [g.type, el("code", {}, g.error), g.count, timeAgo(g.lastAt),
      el("span", {}, ...g.jobIds.slice(0, 5).flatMap((id) => [jobLink(id), " "]))]));
  const res = await api("api/jobs?state=failed&limit=" + LIMIT);
  document.getElementById("failed-count").textContent = res.total + " failed jobs" + (res.total > res.jobs.length ? " · the latest " + res.jobs.length : "") +
    (res.truncated ? " (scan limit reached)" : "");
  listTable(document.getElementById("failed-jobs"), failedBulk, res.jobs);
}
let failedBulk = null;
function initFailed() {
  const bar = document.getElementById("failed-bulk");
  if (bar) failedBulk = bulkBar(bar, [["retry", "Retry"]].concat(devMode ? [["remove", "Remove flows"]] : []));
}

async function act(path, done) {
  try {
    const res = await api(path, { method: "POST" });
    flash(done + (res && res.retried !== undefined ? ": " + res.retried + " jobs" : ""));
    render();
  } catch (e) { flash(e.message, true); }
}

// ---- bulk actions -----------------------------------------------------------
// A list's checkboxes select jobs for its bar's buttons, which send them to
// /api/jobs/bulk in one request. A selection lasts while its jobs are shown.
function bulkBar(bar, actions) {
  const b = { selected: new Set(), shown: [], all: null };
  const count = el("span", { class: "muted" });
  const buttons = actions.map(([action, label]) => el("button", { type: "button", "data-action": action, onclick: () => send(action, label) }, label));
  clear(bar).append(...buttons.flatMap((x) => [x, " "]), count);
  b.update = () => {
    count.textContent = b.selected.size ? b.selected.size + " selected" : "select jobs to act on them";
    for (const x of buttons) x.disabled = b.selected.size === 0;
    if (b.all) b.all.checked = b.shown.length > 0 && b.shown.every((id) => b.selected.has(id));
  };
  async function send(action, label) {
    try {
      const r = await api("api/jobs/bulk", { method: "POST", body: { action, ids: [...b.selected] } });
      const bad = r.results.filter((x) => !x.ok);
      flash(label + ": " + r.ok + " of " + r.results.length + " jobs" + (bad.length ? "; " + bad.map((x) => x.id + ": " + x.error).join("; ") : ""), bad.length > 0);
      b.selected.clear();
      b.update();
      render();
    } catch (e) { flash(e.message, true); }
  }
  b.update();
  return b;
}
// listTable shows jobs, with a checkbox each and one for all when b is a bulk bar.
function listTable(t, b, jobs) {
  if (!b) { table(t, JOB_HEADERS, jobRows(jobs)); return; }
  b.shown = jobs.map((j) => j.id);
  for (const id of [...b.selected]) if (!b.shown.includes(id)) b.selected.delete(id);
  const boxes = [];
  b.all = el("input", { type: "checkbox", class: "select-all", "aria-label": "select all shown", onchange: (e) => {
    for (const id of b.shown) if (e.target.checked) b.selected.add(id); else b.selected.delete(id);
    for (const x of boxes) x.checked = e.target.checked;
    b.update();
  } });
  const rows = jobRows(jobs).map((r, i) => {
    const id = jobs[i].id;
    const box = el("input", { type: "checkbox", class: "select", "data-id": id, "aria-label": "select " + id, onchange: (e) => {
      if (e.target.checked) b.selected.add(id); else b.selected.delete(id);
      b.update();
    } });
    box.checked = b.selected.has(id);
    boxes.push(box);
    return [box].concat(r);
  });
  table(t, [b.all].concat(JOB_HEADERS), rows);
  b.update();
}

// ---- jobs list ----------------------------------------------------------
// Pages go by cursor: jobPages holds the cursor and first row of each page
// shown so far, the last one being the page on screen.
let jobPages = [{ cursor: "", start: 0 }];
const LIMIT = 50;
async function jobs() {
  const form = document.getElementById("job-filter");
  const params = new URLSearchParams(new FormData(form));
  for (const [k, v] of [...params]) if (!v) params.delete(k);
  const page = jobPages[jobPages.length - 1];
  if (page.cursor) params.set("cursor", page.cursor);
  params.set("limit", LIMIT);
  let res = await api("api/jobs?" + params);
  // a search page reads a bounded number of jobs: go on past empty ones, a
  // few at a time
  for (let more = 9; more > 0 && !res.jobs.length && res.next; more--) {
    params.set("cursor", res.next);
    res = await api("api/jobs?" + params);
  }
  page.next = res.next || "";
  page.end = page.start + res.jobs.length;
  const total = res.total < 0 ? "" : res.total + " jobs";
  const shown = res.jobs.length ? "showing " + (page.start + 1) + "–" + page.end : (res.next ? "none on this page, search goes on" : "");
  document.getElementById("job-count").textContent = [total, shown].filter(Boolean).join(" · ") +
    (res.truncated ? " (scan limit reached)" : "");
  listTable(document.getElementById("jobs"), jobsBulk, res.jobs);
  document.getElementById("prev").disabled = jobPages.length === 1;
  document.getElementById("next").disabled = !page.next;
}
let jobsBulk = null;
function initJobs() {
  const bar = document.getElementById("jobs-bulk");
  if (bar) jobsBulk = bulkBar(bar, [["retry", "Retry"], ["cancel", "Cancel"]].concat(devMode ? [["remove", "Remove flows"]] : []));
  const form = document.getElementById("job-filter");
  const q = new URLSearchParams(location.search);
  for (const k of ["state", "type", "queue", "q"]) if (q.get(k)) form.elements[k].value = q.get(k);
  form.addEventListener("submit", (e) => { e.preventDefault(); jobPages = [{ cursor: "", start: 0 }]; jobs(); });
  document.getElementById("prev").onclick = () => { if (jobPages.length > 1) jobPages.pop(); jobs(); };
  document.getElementById("next").onclick = () => {
    const page = jobPages[jobPages.length - 1];
    if (page.next) { jobPages.push({ cursor: page.next, start: page.end }); jobs(); }
  };
}

// ---- job detail ---------------------------------------------------------
function pretty(v) { return v === undefined || v === null ? "" : JSON.stringify(v, null, 2); }
async function job() {
  const j = await api(named("api/job", pageID));
  const s = document.getElementById("job-state");
  s.className = "state s-" + j.state; s.textContent = j.state;
  document.getElementById("job-attempts").textContent = j.attempt + " of " + j.maxAttempts;
  document.getElementById("job-payload").textContent = pretty(j.payload);
  const show = (id, on) => { document.getElementById(id).hidden = !on; };
  document.getElementById("job-result").textContent = pretty(j.result);
  show("job-result-card", j.result !== undefined && j.result !== null);
  show("job-error-card", !!j.error);
  if (j.error) {
    document.getElementById("job-error-attempt").textContent = j.error.attempt;
    document.getElementById("job-error").textContent = j.error.message;
    document.getElementById("job-stack").textContent = j.error.stack || "";
    show("job-stack-box", !!j.error.stack);
  }
  const waits = j.waitsFor || [];
  const wl = document.getElementById("job-waits");
  clear(wl);
  for (const w of waits) wl.append(el("li", {}, w));
  show("job-waits-card", waits.length > 0);
  const rel = (j.parentJobs || []).map((r) => ["parent", r]).concat((j.childJobs || []).map((r) => ["child", r]));
  show("job-related-card", rel.length > 0);
  document.getElementById("job-related-more").textContent = "… and " + (j.relatedMore || 0) + " more not listed";
  show("job-related-more", (j.relatedMore || 0) > 0);
  if (rel.length) {
    table(document.getElementById("job-related"), ["Relation", "Job", "Type", "State"],
      rel.map(([k, r]) => [k, jobLink(r.id), r.type || "", r.state ? stateBadge(r.state) : "gone"]));
  }
  const att = j.attempts || [];
  show("job-attempts-card", att.length > 0);
  if (att.length) {
    const inBatch = att.some((a) => a.batch); // the Batch column only for a batch step's job
    table(document.getElementById("job-attempt-list"), ["Attempt", "Start", "End", "Duration", "Worker"].concat(inBatch ? ["Batch"] : [], ["Outcome", "Error"]),
      att.map((a) => [a.attempt, timeAgo(a.start), a.end ? timeAgo(a.end) : "running",
        a.durationMs === undefined ? "" : a.durationMs + " ms", a.worker || ""].concat(inBatch ? [a.batch || ""] : [],
        [a.outcome ? stateBadge(a.outcome) : "", a.stack || a.logs ? el("details", {}, el("summary", {}, a.error || "details"),
          ...(a.stack ? [el("pre", {}, a.stack)] : []), ...(a.logs ? [el("pre", { class: "logs" }, a.logs)] : [])) : a.error || ""])));
  }
  const batched = (j.timeline || []).some((t) => t.batch);
  table(document.getElementById("job-timeline"), ["State", "At", "Attempt", "Worker"].concat(batched ? ["Batch"] : []),
    (j.timeline || []).map((t) => [stateBadge(t.to), timeAgo(t.at), t.attempt, t.worker || ""].concat(batched ? [t.batch || ""] : [])));
  document.getElementById("job-logs").textContent = j.logs || "";
  show("job-logs-card", !!j.logs);
  jobActions(document.getElementById("job-actions"), j);
}
function jobActions(p, j) {
  clear(p);
  if (readOnly) return;
  const terminal = ["succeeded", "failed", "skipped", "cancelled"].includes(j.state);
  if (j.state === "failed" || j.state === "cancelled")
    p.append(el("button", { type: "button", onclick: () => act(named("api/job/retry", j.id), "Retried " + j.id) }, "Retry"), " ");
  if (!terminal)
    p.append(el("button", { type: "button", onclick: () => act(named("api/job/cancel", j.id), "Cancelled " + j.id) }, "Cancel"), " ");
  if (terminal && devMode)
    p.append(el("button", { type: "button", onclick: () => act(named("api/job/remove", j.id), "Removed the flow of " + j.id) }, "Remove flow"), " ");
}

// ---- flow graph -----------------------------------------------------------
// The live view draws the server's layout (api/flow/view): a bounded
// projection of the flow whose groups of siblings expand on a click. The
// page pans (drag), zooms (wheel, buttons) and fits the flow to its box.
let flowNodes = null; // the flow's node IDs, or null when it is too large to list
let expanded = new Set();
let scene = null;
let viewBox = null; // [x, y, w, h] the user panned or zoomed to; null: fit
async function flowPage() {
  const on = document.getElementById("rendered").checked;
  const box = document.getElementById("graph");
  const img = document.getElementById("graph-img");
  box.hidden = on;
  img.hidden = !on;
  document.getElementById("graph-tools").hidden = on;
  const r = box.getBoundingClientRect();
  const q = "&w=" + Math.max(200, Math.round(r.width || 1280)) + "&h=" + Math.max(200, Math.round(r.height || 800)) +
    (expanded.size ? "&expand=" + [...expanded].join(",") : "");
  const f = await api(named("api/flow/view", pageID) + q);
  flowNodes = f.members ? new Set(f.members) : null;
  scene = f.scene;
  const info = scene.info;
  document.getElementById("flow-summary").textContent = f.nodes + " jobs · " + (f.done ? "finished" : "running") + " · " +
    STATES.filter((s) => f.counts[s]).map((s) => f.counts[s] + " " + s).join(", ") +
    (info.boxes < f.nodes ? " · drawn in " + info.boxes + " boxes: click a “+N more” box to expand it" : "");
  const cf = document.getElementById("cancel-flow");
  if (cf) {
    cf.hidden = f.done;
    cf.onclick = () => act(named("api/flow/cancel", pageID), "Cancelled the flow");
  }
  if (on) {
    img.src = named("api/flow/graph.svg", pageID) + "&t=" + Date.now();
    return;
  }
  drawScene(box, scene);
}
function drawScene(box, sc) {
  const root = svg("svg", { id: "graph-svg", role: "img", "aria-label": "the flow's graph", width: "100%", height: "100%" });
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "edge-head" }));
  defs.append(marker); root.append(defs);
  const world = svg("g", { id: "graph-world" });
  sc.edges.forEach((e, i) => {
    world.append(svg("polyline", { points: e.points.map((p) => p[0] + "," + p[1]).join(" "), class: "edge" + (e.spawn ? " spawn" : ""),
      "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to, "data-i": i }));
  });
  sc.boxes.forEach((b, i) => {
    const cls = "node k-" + b.kind + (b.state ? " s-" + b.state : "") + (b.grown ? " grown" : "") + (b.expanded ? " expanded" : "");
    const g = svg("g", { class: cls, transform: "translate(" + b.x + "," + b.y + ")", tabindex: 0, "data-id": b.id, "data-i": i });
    g.append(svg("rect", { width: b.w, height: b.h, rx: 6, "data-x": b.x, "data-y": b.y }));
    const max = Math.floor((b.w - 14) / 6.3);
    b.lines.forEach((line, k) => g.append(svg("text", { x: 7, y: 17 + k * 14, class: k === 0 ? "t1" : "t2" }, line.length > max ? line.slice(0, max - 1) + "…" : line)));
    let tip = b.lines.join("\n");
    if (b.grown) tip += "\ngrown at run time by an expansion";
    if (b.kind === "group") tip += "\nclick to draw the group whole";
    if (b.kind === "external") tip += "\na job of another flow: click to open it";
    g.append(svg("title", {}, tip));
    const open = () => {
      if (b.kind === "node") nodePanel(b.id, b);
      else if (b.kind === "group") { expanded.add(b.group); render(); }
      else if (b.kind === "external") location.href = named("job", b.id);
    };
    g.addEventListener("click", open);
    g.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
    world.append(g);
  });
  root.append(world);
  clear(box).append(root);
  panZoom(root);
  setView(viewBox || fitBox());
}
// fitBox is the view of the whole scene, centred, never enlarged past 1:1.
function fitBox() {
  const r = document.getElementById("graph").getBoundingClientRect();
  const s = Math.min(r.width / scene.width, r.height / scene.height, 1);
  const w = r.width / s, h = r.height / s;
  return [(scene.width - w) / 2, (scene.height - h) / 2, w, h];
}
function setView(vb) {
  viewBox = vb;
  const root = document.getElementById("graph-svg");
  if (root) root.setAttribute("viewBox", vb.join(" "));
}
function zoom(k, cx, cy) {
  const [x, y, w, h] = viewBox;
  if (cx === undefined) { cx = x + w / 2; cy = y + h / 2; }
  const nw = Math.min(Math.max(w / k, 50), Math.max(scene.width, scene.height) * 4);
  const f = nw / w;
  setView([cx - (cx - x) * f, cy - (cy - y) * f, w * f, h * f]);
}
function panZoom(root) {
  let drag = null;
  const toWorld = (ev) => {
    const r = root.getBoundingClientRect();
    return [viewBox[0] + (ev.clientX - r.left) / r.width * viewBox[2], viewBox[1] + (ev.clientY - r.top) / r.height * viewBox[3]];
  };
  root.addEventListener("wheel", (ev) => { ev.preventDefault(); const [cx, cy] = toWorld(ev); zoom(ev.deltaY < 0 ? 1.2 : 1 / 1.2, cx, cy); }, { passive: false });
  root.addEventListener("pointerdown", (ev) => {
    if (ev.target.closest("g.node")) return;
    drag = { x: ev.clientX, y: ev.clientY, vb: viewBox.slice() };
    root.setPointerCapture(ev.pointerId);
  });
  root.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const r = root.getBoundingClientRect();
    const k = drag.vb[2] / r.width;
    setView([drag.vb[0] - (ev.clientX - drag.x) * k, drag.vb[1] - (ev.clientY - drag.y) * k, drag.vb[2], drag.vb[3]]);
  });
  root.addEventListener("pointerup", () => { drag = null; });
}
// recolor gives the boxes of jobs that changed state their new colour at
// once; the next layout (throttled) redraws groups and labels.
function recolor(evs) {
  for (const e of evs) {
    const g = document.querySelector('#graph g.node.k-node[data-id="' + CSS.escape(e.node) + '"]');
    if (!g) continue;
    for (const c of [...g.classList]) if (c.startsWith("s-")) g.classList.remove(c);
    g.classList.add("s-" + e.to);
  }
}
function initFlow() {
  document.getElementById("rendered").onchange = () => render();
  document.getElementById("graph-fit").onclick = () => setView(fitBox());
  document.getElementById("graph-in").onclick = () => zoom(1.25);
  document.getElementById("graph-out").onclick = () => zoom(0.8);
  document.getElementById("graph-collapse").onclick = () => { expanded = new Set(); viewBox = null; render(); };
}
async function nodePanel(id, b) {
  const j = await api(named("api/job", id));
  document.getElementById("node-panel").hidden = false;
  const t = clear(document.getElementById("node-title"));
  t.append(jobLink(j.id), " ", stateBadge(j.state));
  const d = clear(document.getElementById("node-detail"));
  d.append(el("p", {}, j.type + " · attempt " + j.attempt + " of " + j.maxAttempts + (j.reason ? " · " + j.reason : "")));
  if (j.error) d.append(el("pre", { class: "bad" }, j.error.message));
  d.append(el("pre", {}, pretty(j.payload)));
  const p = el("p", { class: "actions" });
  jobActions(p, j);
  if (b && b.expanded)
    p.append(el("button", { type: "button", onclick: () => { expanded.delete(b.group); render(); } }, "Collapse its group"), " ");
  d.append(p);
}

// ---- runners --------------------------------------------------------------
// Heartbeats make no events, so the page polls (a runner beats every few seconds).
async function runnersPage() {
  const res = await api("api/runners");
  document.getElementById("runner-count").textContent = res.runners.length + (res.runners.length === 1 ? " live runner" : " live runners") + " (a heartbeat in the last " +
    res.timeoutSeconds + " s)";
  const list = (xs) => (xs && xs.length ? xs.join(", ") : "–");
  table(document.getElementById("runners"), ["Runner", "Host", "Version", "Queues", "Types", "Concurrency", "In flight", "Started", "Last heartbeat"],
    res.runners.map((rn) => {
      const i = rn.info;
      if (!i) return [rn.id, "(sends no record)", "", "", "", "", "", "", timeAgo(rn.lastSeen)];
      return [rn.id, i.host + (i.pid ? " (pid " + i.pid + ")" : ""), i.version || "–", list(i.queues), list(i.types),
        i.concurrency, i.inFlight, timeAgo(i.started), timeAgo(rn.lastSeen)];
    }));
}

// ---- charts ---------------------------------------------------------------
// One line chart per series of /api/charts, a point per minute.
const CHART_SERIES = [
  { key: "finished", title: "Throughput", unit: "runs/min", fmt: (v) => String(v) },
  { key: "failed", title: "Failures", unit: "failed for good/min", fmt: (v) => String(v) },
  { key: "p50Ms", title: "Duration p50", unit: "estimated", fmt: fmtMs, timed: true },
  { key: "p95Ms", title: "Duration p95", unit: "estimated", fmt: fmtMs, timed: true },
  { key: "backlog", title: "Backlog", unit: "ready + delayed, as runners saw it", fmt: (v) => String(v),
    value: (p) => (p.backlog ? p.backlog.ready + p.backlog.delayed : null) },
];
function hhmm(t) {
  const d = new Date(t);
  return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
}
// niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
// countMax is niceMax for counts, whose middle line must be a whole number.
function countMax(v) { return v <= 2 ? 2 : v <= 4 ? 4 : v <= 10 ? 10 : niceMax(v); }
// lineChart draws points (a value, or null for none) over their minutes.
function lineChart(s, points) {
  const W = 560, H = 180, L = 64, R = 12, T = 10, B = 28;
  const vals = points.map((p) => (s.value ? s.value(p) : s.timed && p.finished === 0 ? null : p[s.key]));
  const high = Math.max(0, ...vals.filter((v) => v !== null));
  const top = s.timed ? niceMax(high) : countMax(high);
  const x = (i) => L + (points.length > 1 ? (i * (W - L - R)) / (points.length - 1) : 0);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const g = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart", role: "img", "aria-label": s.title });
  for (const f of [0, 0.5, 1]) {
    g.append(svg("line", { class: "grid-line", x1: L, x2: W - R, y1: y(top * f), y2: y(top * f) }));
    g.append(svg("text", { class: "y-label", x: L - 6, y: y(top * f) + 4, "text-anchor": "end" }, f ? s.fmt(top * f) : "0"));
  }
  const ticks = points.length > 1 ? [0, Math.floor((points.length - 1) / 2), points.length - 1] : [0];
  for (const i of ticks) {
    g.append(svg("text", { class: "x-label", x: x(i), y: H - 8, "text-anchor": i === 0 ? "start" : i === points.length - 1 ? "end" : "middle" },
      hhmm(points[i].start)));
  }
  let d = "", pen = false;
  vals.forEach((v, i) => {
    if (v === null) { pen = false; return; }
    d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
    pen = true;
  });
  if (d) g.append(svg("path", { class: "series", d: d }));
  vals.forEach((v, i) => {
    if (v === null) return;
    const dot = svg("circle", { class: "point", cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5 });
    dot.append(svg("title", {}, hhmm(points[i].start) + ": " + s.fmt(v) +
      (s.key === "p95Ms" && points[i].p95Capped ? " or more" : "") + (s.timed ? "" : " " + s.unit)));
    g.append(dot);
  });
  return el("div", { class: "card chart-card", "data-series": s.key }, el("h2", {}, s.title, " ", el("small", {}, s.unit)), g);
}
function chartQuery() {
  const f = document.getElementById("chart-filter").elements;
  const q = new URLSearchParams();
  if (f.queue.value) q.set("queue", f.queue.value);
  if (f.type.value) q.set("type", f.type.value);
  q.set("minutes", f.minutes.value);
  return q;
}
// fillSelect offers names, keeping the selected one even when it is gone.
function fillSelect(sel, names) {
  const keep = sel.value;
  while (sel.options.length > 1) sel.remove(1);
  for (const n of new Set(names.concat(keep ? [keep] : []))) sel.append(el("option", { value: n }, n));
  sel.value = keep;
}
async function chartsPage() {
  const q = chartQuery();
  history.replaceState(null, "", "charts?" + q);
  const c = await api("api/charts?" + q);
  fillSelect(document.getElementById("chart-queue"), c.queues);
  fillSelect(document.getElementById("chart-type"), c.types);
  clear(document.getElementById("chart-backlog")).append(
    el("div", { class: "stat s-ready" }, el("span", {}, "ready now"), el("span", { class: "n", id: "backlog-ready" }, c.backlog.ready)),
    el("div", { class: "stat s-delayed" }, el("span", {}, "delayed now"), el("span", { class: "n", id: "backlog-delayed" }, c.backlog.delayed)));
  clear(document.getElementById("charts")).append(...CHART_SERIES.map((s) => lineChart(s, c.points)));
}
function initCharts() {
  const f = document.getElementById("chart-filter");
  const q = new URLSearchParams(location.search);
  for (const k of ["queue", "type", "minutes"]) {
    const v = q.get(k);
    if (!v) continue;
    const sel = f.elements[k];
    if (![...sel.options].some((o) => o.value === v)) sel.append(el("option", { value: v }, v));
    sel.value = v;
  }
  f.addEventListener("change", () => render());
  setInterval(() => render(), 30000); // a new minute starts without an event
}

// ---- cleanup --------------------------------------------------------------
function initCleanup() {
  if (!document.getElementById("clean-form")) return; // read-only
  document.getElementById("clean-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = e.target.elements.olderThan.value;
    try {
      const r = await api("api/clean?olderThan=" + encodeURIComponent(v), { method: "POST" });
      flash("Removed " + r.removed + " finished jobs older than " + r.olderThan);
    } catch (err) { flash(err.message, true); }
  });
  document.getElementById("retry-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = e.target.elements.type.value;
    try {
      const r = await api("api/jobs/retry-failed" + (t ? "?type=" + encodeURIComponent(t) : ""), { method: "POST" });
      flash("Retried " + r.retried + " failed jobs");
    } catch (err) { flash(err.message, true); }
  });
  const c = document.getElementById("clear");
  if (c) c.addEventListener("click", () => clearNamespace());
}

// clearNamespace deletes everything in the namespace (development mode only), then calls done.
async function clearNamespace(done) {
  if (!confirm("Delete everything in this namespace?")) return;
  try {
    const r = await api("api/clear", { method: "POST" });
    flash("Cleared " + r.deletedKeys + " keys");
    if (done) done();
  } catch (err) { flash(err.message, true); }
}

// ---- queue test -------------------------------------------------------------
function rid(p) { return p + "-" + Math.random().toString(36).slice(2, 10); }
const SAMPLES = {
  TEST: () => ({ message: "Hello from the queue-test page", sleepMs: 0, failTimes: 0 }),
  USER_ACTION: () => ({ userId: "user-123", action: "workout_viewed", details: { planId: rid("plan"), source: "queue-test" } }),
  NOTIFICATION: () => ({ userId: "user-123", title: "Workout complete!", message: "Great job on finishing your workout!", type: "success", actionUrl: "/workouts" }),
  EMAIL: () => ({ to: "client@example.com", subject: "Your new plan", body: "Your trainer published a new plan." }),
  DATA_SYNC: () => ({ planId: rid("plan"), direction: "export" }),
  WORKOUT_UPDATE: () => ({ exercisePlanId: rid("plan"), phaseId: rid("phase"), sessionId: rid("session"), exerciseId: rid("exercise"), changes: { sets: 4, reps: 12, weight: 135 } }),
  WORKOUT_PLAN_CREATE: () => ({ planId: rid("plan"), name: "My Workout Plan", clientId: "client-456", trainerId: "trainer-789", isActive: true }),
  WORKOUT_PHASE_CREATE: () => ({ planId: rid("plan"), clientId: "client-456", trainerId: "trainer-789", phase: { id: rid("phase"), name: "Strength Phase", orderNumber: 1, isActive: true } }),
  WORKOUT_PHASE_UPDATE: () => ({ planId: rid("plan"), phaseId: rid("phase"), changes: { name: "Hypertrophy Phase", orderNumber: 2 } }),
  WORKOUT_PHASE_DELETE: () => ({ planId: rid("plan"), phaseId: rid("phase") }),
  WORKOUT_SESSION_CREATE: () => ({ planId: rid("plan"), phaseId: rid("phase"), session: { id: rid("session"), name: "Upper Body", orderNumber: 1 } }),
  WORKOUT_SESSION_UPDATE: () => ({ planId: rid("plan"), phaseId: rid("phase"), sessionId: rid("session"), changes: { name: "Upper Body A" } }),
  WORKOUT_SESSION_DELETE: () => ({ planId: rid("plan"), phaseId: rid("phase"), sessionId: rid("session") }),
  WORKOUT_EXERCISE_CREATE: () => ({ planId: rid("plan"), phaseId: rid("phase"), sessionId: rid("session"), exercise: { id: rid("exercise"), name: "Bench Press", orderNumber: 1, sets: 4, reps: 8, weight: 80, rest: 90, tempo: "3-1-1", notes: "" } }),
  WORKOUT_EXERCISE_UPDATE: () => ({ planId: rid("plan"), phaseId: rid("phase"), sessionId: rid("session"), exerciseId: rid("exercise"), changes: { sets: 5, reps: 5, weight: 90 } }),
  WORKOUT_EXERCISE_DELETE: () => ({ planId: rid("plan"), phaseId: rid("phase"), sessionId: rid("session"), exerciseId: rid("exercise") }),
  WORKOUT_PLAN_FULL_SAVE: () => ({
    planId: rid("plan"), name: "Full Plan", clientId: "client-456", trainerId: "trainer-789", isActive: true,
    phases: [1, 2].map((p) => ({ id: rid("phase"), name: "Phase " + p, orderNumber: p, isActive: true,
      sessions: [1, 2].map((s) => ({ id: rid("session"), name: "Session " + s, orderNumber: s,
        exercises: [1, 2, 3].map((x) => ({ id: rid("exercise"), name: "Exercise " + x, orderNumber: x, sets: 3, reps: 10, weight: 20, rest: 60 })) })) })),
  }),
};
function envelope(type) {
  return { messageType: type, timestamp: new Date().toISOString(), userId: "user-123", metadata: { source: "queue-test" }, data: SAMPLES[type]() };
}
const sent = [];
async function initQueueTest() {
  const sel = document.getElementById("msg-type");
  if (!sel) return; // read-only
  let types = Object.keys(SAMPLES);
  try {
    const t = await api("api/types");
    if (t.types.length) types = types.filter((x) => t.types.includes(x)).concat(t.types.filter((x) => !(x in SAMPLES)));
  } catch (_) { /* keep the built-in list */ }
  for (const t of types) sel.append(el("option", { value: t }, t));
  await fillQueues();
  const ta = document.getElementById("message");
  const fill = () => { if (SAMPLES[sel.value]) ta.value = JSON.stringify(envelope(sel.value), null, 2); };
  sel.addEventListener("change", fill);
  document.getElementById("sample").addEventListener("click", fill);
  fill();
  document.getElementById("enqueue-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target.elements;
    let message;
    try { message = JSON.parse(ta.value); } catch (err) { flash("The message is not valid JSON: " + err.message, true); return; }
    const options = {};
    for (const k of ["delay", "attempts", "priority"]) if (Number(f[k].value)) options[k] = Number(f[k].value);
    options.queue = f.queue.value;
    if (f.jobId.value.trim()) options.jobId = f.jobId.value.trim();
    const after = f.after.value.split(",").map((s) => s.trim()).filter(Boolean);
    try {
      const r = await api("api/enqueue", { method: "POST", body: { message, options, after } });
      // an existing ID enqueues nothing: the job already there is the one listed
      if (!sent.some((s) => s.id === r.jobId)) sent.unshift({ id: r.jobId, type: message.messageType, state: r.state });
      flash((r.existed ? "Already there: " : "Enqueued ") + r.jobId);
      refreshSent();
    } catch (err) { flash(err.message, true); }
  });
  const cq = document.getElementById("clear-queue");
  if (cq) cq.addEventListener("click", () => clearNamespace(() => { sent.length = 0; refreshSent(); }));
}
// fillQueues offers, after the default queue, every queue that holds jobs,
// is paused or that a live runner serves.
async function fillQueues() {
  const qs = document.getElementById("queue-select");
  const names = new Set();
  try {
    const [st, rs] = await Promise.all([api("api/queue-stats"), api("api/runners")]);
    for (const q of Object.keys(st.byQueue).concat(st.paused)) names.add(q);
    for (const rn of rs.runners) for (const q of (rn.info ? rn.info.queues : [])) names.add(q);
  } catch (_) { /* the default queue alone */ }
  for (const o of qs.options) names.delete(o.value);
  for (const q of [...names].sort()) qs.append(el("option", { value: q }, q));
}
async function refreshSent() {
  const ids = sent.slice(0, 20);
  if (!document.getElementById("sent")) { renderCounts(await api("api/queue-stats")); return; }
  await Promise.all(ids.map(async (s) => {
    try { const j = await api(named("api/job", s.id)); s.state = j.state; s.flowId = j.flowId; s.queue = j.queue; s.error = j.error ? j.error.message : ""; } catch (_) { /* removed */ }
  }));
  table(document.getElementById("sent"), ["Job", "Type", "Queue", "State", "Flow", "Error"],
    ids.map((s) => [jobLink(s.id), s.type, s.queue || "", stateBadge(s.state), s.flowId ? flowLink(s.flowId) : "", s.error || ""]));
  renderCounts(await api("api/queue-stats"));
}

// ---- boot -----------------------------------------------------------------
const pages = {
  overview: { render: overview },
  failed: { init: initFailed, render: failed, every: 5000 },
  jobs: { init: initJobs, render: jobs, every: 3000 },
  job: { render: job },
  // a flow too large to list its members costs the server more to lay out: it refreshes less often
  flow: { init: initFlow, render: flowPage, filter: (e) => !flowNodes || flowNodes.has(e.node), every: () => (flowNodes ? 1000 : 10000) },
  runners: { init: () => { setInterval(() => render(), 5000); }, render: runnersPage },
  cleanup: { init: initCleanup },
  "queue-test": { init: initQueueTest, render: refreshSent },
  charts: { init: initCharts, render: chartsPage, every: 10000 },
};
let render = () => {};
(async function boot() {
  const nav = document.querySelector('[data-nav="' + page + '"]');
  if (nav) nav.classList.add("current");
  const p = pages[page] || {};
  if (p.render) render = () => p.render().catch((e) => flash(e.message, true));
  if (p.init) await p.init();
  if (p.render && !(page === "job" && !document.getElementById("job-state"))) {
    render();
    live(render, p.filter, p.every);
  }
  setInterval(tick, 10000);
  connect();
})();
