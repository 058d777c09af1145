// The gridwatch dashboard: module statuses, time-series panels (Plotly) and the pipeline page.
"use strict";

const RANGE_MS = { "6h": 6 * 3600e3, "2d": 2 * 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3, "1y": 365 * 86400e3 };
const STATUS_COLOURS = { "-1": "#ffffff", "0": "#2e9e44", "1": "#f2c12e", "2": "#d7263d" };
const STATUS_NAMES = { "-1": "N/A", "0": "available", "1": "degraded", "2": "unavailable" };
const state = { settings: null, range: "6h", view: "overview", timer: null, loads: 0, startedAt: 0 };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  // The server wants a token (or the session's has been revoked): sign in again.
  if (response.status === 401) { location.assign("/login"); throw new Error("signing in"); }
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

// -- status overview ---------------------------------------------------------------------------

async function loadStatus() {
  const answer = await getJSON("/api/v1/status");
  const box = document.getElementById("modules");
  box.replaceChildren(...answer.modules.map((m) => el("div",
    { class: `module status-${m.colour}`, "data-module": m.module, "data-status": m.status },
    el("div", { class: "name" }, m.title),
    el("div", { class: "state" }, m.status),
    el("div", { class: "reasons" }, m.reasons.join("; ") || `data ${ago(m.last_data)}`),
  )));
  const counts = Object.entries(answer.counts).map(([k, v]) => `${v} ${k}`).join(" · ");
  document.getElementById("status-counts").textContent = counts || "no modules configured";
}

// -- panels --------------------------------------------------------------------------------------

function panelUrl(panel) {
  const end = Date.now();
  const params = new URLSearchParams({
    measurement: panel.measurement, start: String(end - RANGE_MS[state.range]), end: String(end),
    aggregate: panel.aggregate, max_points: String(panel.max_points),
  });
  if (panel.fields.length) params.set("fields", panel.fields.join(","));
  if (panel.group_by.length) params.set("group_by", panel.group_by.join(","));
  if (panel.store) params.set("store", panel.store);
  for (const [tag, values] of Object.entries(panel.where)) params.append("where", `${tag}=${values.join("|")}`);
  return `/api/v1/query?${params}`;
}

function seriesName(series, answer) {
  const tags = Object.values(series.tags).join(" ");
  const many = new Set(answer.series.map((s) => s.field)).size > 1;
  return [tags, many || !tags ? series.field : ""].filter(Boolean).join(" · ");
}

function traces(panel, answer) {
  if (panel.kind === "status") {
    const times = [...new Set(answer.series.flatMap((s) => s.times))].sort((a, b) => a - b);
    // A status holds until the next one: carry each row's last known status forward.
    const z = answer.series.map((s) => {
      const at = new Map(s.times.map((t, i) => [t, s.values[i]]));
      let last = null;
      return times.map((t) => (last = at.has(t) ? at.get(t) : last));
    });
    return [{
      type: "heatmap", x: times.map((t) => new Date(t)), y: answer.series.map((s) => seriesName(s, answer)), z,
      zmin: -1, zmax: 2, showscale: false, xgap: 0, ygap: 2,
      colorscale: [[0, STATUS_COLOURS["-1"]], [0.25, STATUS_COLOURS["-1"]], [0.25, STATUS_COLOURS["0"]],
        [0.5, STATUS_COLOURS["0"]], [0.5, STATUS_COLOURS["1"]], [0.75, STATUS_COLOURS["1"]],
        [0.75, STATUS_COLOURS["2"]], [1, STATUS_COLOURS["2"]]],
      hovertemplate: "%{y}<br>%{x}<br>%{customdata}<extra></extra>",
      customdata: z.map((row) => row.map((v) => STATUS_NAMES[String(v)] ?? "no data")),
    }];
  }
  return answer.series.map((s) => ({
    x: s.times.map((t) => new Date(t)), y: s.values, name: seriesName(s, answer),
    type: panel.kind === "bar" ? "bar" : "scatter", mode: s.times.length < 40 ? "lines+markers" : "lines",
    stackgroup: panel.kind === "area" ? "one" : undefined, line: { width: 1.5 },
  }));
}

async function loadPanel(panel, index) {
  const box = document.getElementById(`chart-${index}`);
  const answer = await getJSON(panelUrl(panel));
  const meta = document.getElementById(`meta-${index}`);
  meta.textContent = `${answer.tier} · ${Math.round(answer.interval_ms / 1000)} s bins · ${answer.took_ms.toFixed(1)} ms`;
  box.dataset.points = String(answer.points);
  box.dataset.tier = answer.tier;
  box.dataset.range = state.range;
  box.dataset.loads = String(Number(box.dataset.loads || 0) + 1);
  if (!window.Plotly) {
    box.replaceChildren(el("div", { class: "empty" }, "charts need the plotly package"));
    return;
  }
  const start = new Date(answer.start), end = new Date(answer.end);
  const layout = {
    margin: { l: panel.kind === "status" ? 150 : 55, r: 10, t: 8, b: 30 }, showlegend: panel.kind !== "status",
    legend: { orientation: "h", y: -0.18, font: { size: 10 } }, barmode: "stack",
    xaxis: { range: [start, end], type: "date" }, yaxis: { title: { text: panel.unit || "" }, automargin: true },
    paper_bgcolor: "#fff", plot_bgcolor: "#fff", font: { size: 11 },
  };
  await Plotly.react(box, traces(panel, answer), layout, { displayModeBar: false, responsive: true });
}

function buildPanels() {
  const box = document.getElementById("panels");
  box.replaceChildren(...state.settings.panels.map((panel, i) => el("div", { class: "panel" },
    el("h3", {}, panel.title, el("small", { id: `meta-${i}` }, "")),
    el("div", { class: "chart", id: `chart-${i}`, "data-panel": String(i), "data-kind": panel.kind }),
  )));
}

async function loadPanels() {
  await Promise.all(state.settings.panels.map((panel, i) => loadPanel(panel, i).catch((error) => {
    document.getElementById(`meta-${i}`).textContent = String(error.message || error);
  })));
}

// -- pipeline page -------------------------------------------------------------------------------

function cell(value, numeric) { return el("td", numeric ? { class: "num" } : {}, value ?? "–"); }

async function loadPipeline() {
  const view = await getJSON("/api/v1/pipeline");
  document.querySelector("#components tbody").replaceChildren(...view.components.map((c) => el("tr",
    { "data-component": c.id },
    cell(c.id), cell(c.kind), cell(c.type), el("td", { class: `state-${c.state}` }, c.state),
    cell(c.counters.received ?? 0, true), cell(c.counters.sent ?? 0, true),
    cell(c.counters.errors ?? 0, true), cell(c.counters.dropped ?? 0, true), cell(c.lag, true),
  )));
  const total = document.getElementById("deadletter-total");
  total.textContent = String(view.dead_letters.total);
  total.className = view.dead_letters.total ? "badge bad" : "badge";
  document.querySelector("#deadletters tbody").replaceChildren(...view.dead_letters.recent.map((d) => el("tr", {},
    cell(new Date(d.time).toISOString()), cell(d.component), cell(d.attempts, true), cell(d.reason))));
  document.querySelector("#topics tbody").replaceChildren(...view.topics.map((t) => el("tr", {},
    cell(t.name), cell(t.records, true), cell(t.end, true), cell(t.bytes, true))));
}

// -- navigation and refresh ----------------------------------------------------------------------

async function refresh() {
  try {
    if (state.view === "pipeline") await loadPipeline();
    else await Promise.all([loadStatus(), loadPanels()]);
    state.loads += 1;
    document.body.dataset.loads = String(state.loads);
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    document.getElementById("updated").textContent = `update failed: ${error.message || error}`;
  }
}

// Until every panel has data (a pipeline that just started), look again every second.
function waitingForData() {
  if (state.view !== "overview" || Date.now() - state.startedAt > 60e3) return false;
  const empty = [...document.querySelectorAll(".chart")].some((c) => !Number(c.dataset.points || 0));
  return empty || !document.querySelector(".module:not(.status-white)");
}

async function loop() {
  await refresh();
  const delay = waitingForData() ? 1000 : state.settings.refresh_s * 1000;
  state.timer = setTimeout(loop, delay);
}

function show() {
  const [view, range] = (location.hash.replace(/^#/, "") || "overview").split("/");
  state.view = view === "pipeline" ? "pipeline" : "overview";
  if (range && RANGE_MS[range]) state.range = range;
  document.getElementById("overview").hidden = state.view !== "overview";
  document.getElementById("pipeline").hidden = state.view !== "pipeline";
  document.getElementById("ranges").hidden = state.view !== "overview";
  for (const name of ["overview", "pipeline"]) {
    document.getElementById(`nav-${name}`).classList.toggle("active", state.view === name);
  }
  for (const button of document.querySelectorAll("#ranges button")) {
    button.classList.toggle("active", button.dataset.range === state.range);
  }
}

async function start() {
  state.settings = await getJSON("/api/v1/dashboard");
  state.range = state.settings.default_range;
  document.getElementById("title").textContent = state.settings.title;
  document.title = state.settings.title;
  document.getElementById("ranges").replaceChildren(...state.settings.ranges.map((range) => {
    const button = el("button", { type: "button", "data-range": range }, range);
    button.addEventListener("click", () => { location.hash = `overview/${range}`; });
    return button;
  }));
  buildPanels();
  window.addEventListener("hashchange", () => { show(); refresh(); });
  state.startedAt = Date.now();
  show();
  loop();
}

start();
