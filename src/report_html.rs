//! `comb report --html FILE`: one self-contained page (no network, no
//! external assets). The report's JSON (the same schema as `--json`) is
//! embedded; a small script draws the run summary, a sortable and
//! filterable package table whose rows open their `why`, and the run's
//! dependency graph with failed and rebuilt packages marked.
//!
//! The page reads its initial view from the URL's fragment, e.g.
//! `report.html#sort=duration_ms&dir=desc&filter=lib&status=built&open=greet`,
//! so a link (or a test) can show one exact state.

use comb_engine::Report;

/// The page for `report`.
pub fn page(report: &Report) -> String {
    let json = serde_json::to_string(report).unwrap_or_else(|_| "{}".into());
    // Inside <script>, "</" would end the element early.
    let json = json.replace("</", "<\\/");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>comb report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>comb report</h1><div id=\"runinfo\"></div></header>\n\
         <section id=\"summary\"></section>\n\
         <section><h2>Packages</h2>\n\
         <div class=\"controls\"><input id=\"filter\" type=\"search\" placeholder=\"filter packages and reasons\">\n\
         <select id=\"status\"><option value=\"\">every status</option><option>hit</option><option>built</option>\
         <option>failed</option><option>skipped</option></select> <span id=\"shown\"></span></div>\n\
         <table id=\"packages\"><thead><tr>\
         <th data-key=\"name\">package</th><th data-key=\"status\">status</th><th data-key=\"stage\">stage</th>\
         <th data-key=\"duration_ms\">duration</th><th data-key=\"hit\">hit or miss</th><th data-key=\"reason\">reason</th>\
         </tr></thead><tbody></tbody></table></section>\n\
         <section><h2>Dependency graph</h2><div id=\"legend\"></div><div id=\"graph\"></div></section>\n\
         <section id=\"trend\"></section>\n\
         <script type=\"application/json\" id=\"data\">{json}</script>\n\
         <script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
}

const STYLE: &str = r##"
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 2em 2em; color: #222; }
header { display: flex; align-items: baseline; gap: 2em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #ddd; vertical-align: top; }
th { cursor: pointer; user-select: none; background: #f4f4f4; }
th.sorted-asc::after { content: " \25B2"; } th.sorted-desc::after { content: " \25BC"; }
tr.pkg { cursor: pointer; } tr.pkg:hover { background: #f8f8ff; }
tr.why td { background: #fafafa; font-size: 0.92em; white-space: pre-wrap; }
.status-hit { color: #2e7d32; } .status-built { color: #1565c0; font-weight: 600; }
.status-failed { color: #c62828; font-weight: 700; } .status-skipped { color: #ef6c00; }
.controls { margin: 0.5em 0; } #filter { width: 24em; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; min-width: 9em; }
.card b { display: block; font-size: 1.3em; }
#graph svg { border: 1px solid #ddd; background: #fff; }
#graph .node rect { stroke: #555; stroke-width: 1; rx: 4; }
#graph .node text { font-size: 11px; pointer-events: none; }
#graph .edge { stroke: #999; stroke-width: 1; fill: none; marker-end: url(#arrow); }
.legend span { display: inline-block; padding: 0 0.6em; margin-right: 0.5em; border: 1px solid #555; border-radius: 3px; }
pre.failure { background: #fff5f5; border-left: 3px solid #c62828; padding: 0.5em; overflow-x: auto; }
"##;

const SCRIPT: &str = r##"
"use strict";
const report = JSON.parse(document.getElementById("data").textContent);
const run = report.runs[0];
const colors = { hit: "#c8e6c9", built: "#bbdefb", failed: "#ffcdd2", skipped: "#ffe0b2" };
const el = (tag, attrs, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
};
const ms = (v) => v == null ? "-" : v < 60000 ? (v / 1000).toFixed(1) + "s"
  : Math.floor(v / 60000) + "m " + String(Math.floor(v / 1000) % 60).padStart(2, "0") + "s";
const pct = (r) => r == null ? "-" : (r * 100).toFixed(1) + "%";

function summary() {
  document.getElementById("runinfo").textContent =
    `run ${run.id} · ${run.status} · ${ms(run.duration_ms)} · ${run.command}`;
  const s = document.getElementById("summary");
  const cards = el("div", { class: "cards" });
  const card = (label, value) => cards.append(el("div", { class: "card" }, el("b", {}, String(value)), label));
  card("hit rate", pct(run.hit_rate));
  card("cache hits", run.total.hit);
  if (run.total.fetched) card("fetched (remote)", run.total.fetched);
  card("built", run.total.built);
  if (run.total.built_remotely) card("built on remote workers", run.total.built_remotely);
  card("failed", run.total.failed);
  card("skipped", run.total.skipped);
  card("time saved", ms(run.time_saved_ms));
  card("time spent", ms(run.time_spent_ms));
  s.append(el("h2", {}, "Run summary"), cards);
  const t = el("table", { id: "stages" });
  t.append(el("tr", {}, ...["stage", "hits", "built", "failed", "skipped", "hit rate"].map((h) => el("th", {}, h))));
  const order = ["index", "resolve", "fetch", "base-install", "base-build", "pkg-env", "build"];
  for (const [stage, c] of Object.entries(run.stages).sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]))) {
    const rate = c.hit + c.built + c.failed ? c.hit / (c.hit + c.built + c.failed) : null;
    t.append(el("tr", {}, ...[stage, c.hit, c.built, c.failed, c.skipped, pct(rate)].map((v) => el("td", {}, String(v)))));
  }
  s.append(t);
  if (run.critical_path.duration_ms > 0) {
    s.append(el("p", { id: "critical" }, `critical path (${ms(run.critical_path.duration_ms)}): ` +
      run.critical_path.packages.join(" → ")));
  }
  if (run.slowest.length) {
    s.append(el("p", {}, "slowest: " + run.slowest.map((x) => `${x.stage} ${x.name} ${ms(x.duration_ms)}`).join(", ")));
  }
  if (run.checks.length) {
    s.append(el("h2", {}, "Check results"));
    const tab = el("table", { id: "check-results" });
    tab.append(el("tr", {}, ...["package", "state", "compared with", "what differs or failed"].map((h) => el("th", {}, h))));
    const cls = { GOOD: "status-hit", BAD: "status-skipped", FAIL: "status-failed", SKIPPED: "status-skipped" };
    for (const c of run.checks) {
      const detail = c.state === "BAD" ? c.differences.join(", ") : (c.reason || "").split("\n")[0];
      const cell = el("td", {}, detail);
      if (c.diffoscope_excerpt) {
        cell.append(el("details", {}, el("summary", {}, "diffoscope"), el("pre", { class: "failure" }, c.diffoscope_excerpt)));
      } else if (c.diffoscope_note) {
        cell.append(el("div", {}, "no diffoscope: " + c.diffoscope_note));
      }
      tab.append(el("tr", { "data-check": c.package }, el("td", {}, c.package), el("td", { class: cls[c.state] || "" }, c.state),
        el("td", {}, c.compared_with || ""), cell));
    }
    s.append(tab);
  }
  for (const f of run.failures) {
    s.append(el("h3", {}, `failed: ${f.stage} ${f.name}`), el("pre", { class: "failure" }, f.reason));
  }
}

const rows = run.packages.map((p) => ({
  name: p.name, status: p.status, stage: p.stage, duration_ms: p.duration_ms,
  hit: p.status === "hit" ? "hit" : "miss",
  reason: p.error ? p.error.split("\n")[0] : (p.why.length ? `${p.why[0].stage} ${p.why[0].name}: ${(p.why[0].reasons[0] || "").split("\n")[0]}` : ""),
  pkg: p,
}));
const view = { key: "name", dir: "asc", filter: "", status: "", open: new Set() };

function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.get("sort")) view.key = h.get("sort");
  if (h.get("dir")) view.dir = h.get("dir");
  if (h.get("filter")) view.filter = h.get("filter");
  if (h.get("status")) view.status = h.get("status");
  for (const o of (h.get("open") || "").split(",").filter(Boolean)) view.open.add(o);
  document.getElementById("filter").value = view.filter;
  document.getElementById("status").value = view.status;
}

function whyText(p) {
  const lines = [];
  for (const s of p.why) {
    lines.push(`${s.stage} ${s.name}: ${s.status} in ${ms(s.duration_ms)}`);
    for (const r of s.reasons) for (const l of r.split("\n")) lines.push("    " + l);
  }
  if (p.error) lines.push(p.error);
  return lines.join("\n") || "a cache hit";
}

function table() {
  const body = document.querySelector("#packages tbody");
  body.replaceChildren();
  const f = view.filter.toLowerCase();
  const shown = rows.filter((r) => (!view.status || r.status === view.status) &&
    (!f || r.name.toLowerCase().includes(f) || r.reason.toLowerCase().includes(f)));
  const sign = view.dir === "desc" ? -1 : 1;
  shown.sort((a, b) => {
    const x = a[view.key], y = b[view.key];
    const c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
    return sign * c || a.name.localeCompare(b.name);
  });
  for (const r of shown) {
    const tr = el("tr", { class: "pkg", "data-name": r.name },
      el("td", {}, r.name), el("td", { class: "status-" + r.status }, r.status), el("td", {}, r.stage),
      el("td", {}, ms(r.duration_ms)), el("td", {}, r.hit), el("td", {}, r.reason));
    tr.addEventListener("click", () => {
      view.open.has(r.name) ? view.open.delete(r.name) : view.open.add(r.name);
      table();
    });
    body.append(tr);
    if (view.open.has(r.name)) {
      body.append(el("tr", { class: "why", "data-why": r.name }, el("td", { colspan: "6" }, whyText(r.pkg))));
    }
  }
  document.getElementById("shown").textContent = `${shown.length} of ${rows.length} packages`;
  for (const th of document.querySelectorAll("#packages th")) {
    th.classList.toggle("sorted-asc", th.dataset.key === view.key && view.dir === "asc");
    th.classList.toggle("sorted-desc", th.dataset.key === view.key && view.dir === "desc");
  }
}

function graph() {
  const names = Object.keys(run.graph);
  const box = document.getElementById("graph");
  if (!names.length) { box.textContent = "no graph was recorded for this run"; return; }
  const status = Object.fromEntries(run.packages.map((p) => [p.name, p.status]));
  // Layer: the longest chain of dependencies below a package.
  const layer = {};
  const depth = (n, seen) => {
    if (layer[n] != null) return layer[n];
    if (seen.has(n)) return 0;
    seen.add(n);
    const d = Math.max(-1, ...(run.graph[n] || []).map((m) => depth(m, seen))) + 1;
    return (layer[n] = d);
  };
  names.forEach((n) => depth(n, new Set()));
  const byLayer = [];
  for (const n of names.sort()) (byLayer[layer[n]] = byLayer[layer[n]] || []).push(n);
  const W = 150, H = 26, GX = 40, GY = 14;
  const pos = {};
  byLayer.forEach((ns, x) => ns.forEach((n, y) => (pos[n] = { x: 10 + x * (W + GX), y: 10 + y * (H + GY) })));
  const width = 20 + byLayer.length * (W + GX), height = 20 + Math.max(...byLayer.map((l) => l.length)) * (H + GY);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height);
  svg.innerHTML = '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#999"/></marker></defs>';
  for (const n of names) for (const d of run.graph[n] || []) {
    if (!pos[d]) continue;
    const line = document.createElementNS(NS, "path");
    const a = pos[d], b = pos[n];
    line.setAttribute("d", `M${a.x + W},${a.y + H / 2} C${a.x + W + GX / 2},${a.y + H / 2} ${b.x - GX / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}`);
    line.setAttribute("class", "edge");
    svg.append(line);
  }
  for (const n of names) {
    const g = document.createElementNS(NS, "g");
    g.setAttribute("class", "node status-" + (status[n] || "none"));
    g.setAttribute("data-name", n);
    const rect = document.createElementNS(NS, "rect");
    rect.setAttribute("x", pos[n].x); rect.setAttribute("y", pos[n].y);
    rect.setAttribute("width", W); rect.setAttribute("height", H);
    rect.setAttribute("fill", colors[status[n]] || "#eee");
    const text = document.createElementNS(NS, "text");
    text.setAttribute("x", pos[n].x + 6); text.setAttribute("y", pos[n].y + 17);
    text.textContent = n.length > 22 ? n.slice(0, 21) + "…" : n;
    const title = document.createElementNS(NS, "title");
    title.textContent = `${n}: ${status[n] || "not in this run"}`;
    g.append(rect, text, title);
    g.addEventListener("click", () => { view.open.add(n); table(); document.querySelector(`tr[data-name="${CSS.escape(n)}"]`)?.scrollIntoView(); });
    svg.append(g);
  }
  box.append(svg);
  document.getElementById("legend").className = "legend";
  document.getElementById("legend").append(...Object.entries(colors).map(([k, c]) => el("span", { style: "background:" + c }, k)));
}

function trend() {
  const t = document.getElementById("trend");
  if (report.trend.length > 1) {
    const stages = [...new Set(report.trend.flatMap((p) => Object.keys(p.hit_rate)))];
    const tab = el("table", { id: "trend-table" });
    tab.append(el("tr", {}, el("th", {}, "run"), ...stages.map((s) => el("th", {}, s))));
    for (const p of report.trend) tab.append(el("tr", {}, el("td", {}, String(p.run)), ...stages.map((s) => el("td", {}, pct(p.hit_rate[s])))));
    t.append(el("h2", {}, "Hit rate by stage over runs"), tab);
  }
  if (report.failing_since.length) {
    t.append(el("h2", {}, "Failing since"));
    const tab = el("table", { id: "failing-since" });
    tab.append(el("tr", {}, ...["package", "state", "since run", "check runs", "reason"].map((h) => el("th", {}, h))));
    for (const f of report.failing_since) {
      tab.append(el("tr", {}, el("td", {}, f.package), el("td", { class: f.state === "FAIL" ? "status-failed" : "status-skipped" }, f.state),
        el("td", {}, String(f.since_run)), el("td", {}, String(f.runs)), el("td", {}, (f.reason || "").split("\n")[0])));
    }
    t.append(tab);
  }
  if (report.checks.length) {
    t.append(el("h2", {}, "comb check runs"));
    const tab = el("table", { id: "check-runs" });
    tab.append(el("tr", {}, ...["run", "GOOD", "BAD", "FAIL", "SKIPPED"].map((h) => el("th", {}, h))));
    for (const c of report.checks) tab.append(el("tr", {}, ...[c.run, c.good, c.bad, c.fail, c.skipped].map((v) => el("td", {}, String(v)))));
    t.append(tab);
  }
  if (report.build_time_changes.length) {
    t.append(el("h2", {}, "Build times that changed sharply"));
    const ul = el("ul");
    for (const c of report.build_time_changes) ul.append(el("li", {}, `${c.package}: ${ms(c.before_ms)} → ${ms(c.after_ms)} (run ${c.run})`));
    t.append(ul);
  }
}

for (const th of document.querySelectorAll("#packages th")) {
  th.addEventListener("click", () => {
    view.dir = view.key === th.dataset.key && view.dir === "asc" ? "desc" : "asc";
    view.key = th.dataset.key;
    table();
  });
}
document.getElementById("filter").addEventListener("input", (e) => { view.filter = e.target.value; table(); });
document.getElementById("status").addEventListener("change", (e) => { view.status = e.target.value; table(); });
readHash();
summary();
table();
graph();
trend();
document.body.setAttribute("data-ready", "yes");
"##;
