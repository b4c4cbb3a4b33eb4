/**
 * The human status page served at `/`: one card per migration from `GET /api/perf` and the overall state from
 * `GET /api/healthz`, refreshing itself, with the controls an operator needs during an incident (pause, resume,
 * cancel, retry, live tuning) once the admin token is entered: the token stays in the tab's session storage
 * and goes only into the `Authorization` header of control requests.
 *
 * A single self-contained string so every runtime (Node, Workers, Deno, Bun) can serve it from the shared
 * Hono app without a file system, a build step or a CDN. The page makes no request to any other origin; the
 * API paths are relative so the app also works mounted under a path prefix.
 *
 * Safety: every value from the API reaches the DOM through `textContent` or an attribute setter — never
 * through HTML parsing — so a migration name or error message cannot inject markup.
 *
 * The style and script live in `String.raw` templates: they must not contain a backtick or a dollar-brace
 * (it would interpolate here instead of in the browser); backslashes reach the browser as written.
 */

// biome-ignore lint/complexity/noUselessStringRaw: a backslash added later (a regex) must reach the browser as written
const STYLE = String.raw`
:root {
  color-scheme: light dark;
  --bg: #f5f6f8; --card: #ffffff; --fg: #1c2330; --muted: #5d6878; --line: #e2e6ec;
  --track: #e7eaf0; --accent: #2f6fed; --ok: #1f8a4c; --warn: #a86400; --bad: #c62f3a; --idle: #6b7585;
  --ok-bg: #e3f4ea; --warn-bg: #fdf1de; --bad-bg: #fbe5e7; --idle-bg: #eceef2; --run-bg: #e5edfd;
  --radius: 12px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #11151c; --card: #1a2029; --fg: #e6eaf0; --muted: #9aa4b2; --line: #2a323e;
    --track: #2a323e; --accent: #6c9bff; --ok: #4cc47f; --warn: #f0a941; --bad: #ff6b76; --idle: #9aa4b2;
    --ok-bg: #173325; --warn-bg: #3a2c14; --bad-bg: #3d1a1f; --idle-bg: #252c37; --run-bg: #1b2a48;
  }
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; background: var(--bg); color: var(--fg); line-height: 1.45; -webkit-text-size-adjust: 100%; }
main { max-width: 880px; margin: 0 auto; padding: 20px 16px 40px; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 10px 16px; margin-bottom: 18px; }
h1 { font-size: 1.35rem; margin: 0; letter-spacing: -0.01em; }
h1 small { font-weight: 400; color: var(--muted); font-size: 0.95rem; margin-left: 6px; }
.overall { display: inline-flex; align-items: center; gap: 8px; padding: 5px 12px; border-radius: 999px;
  font-weight: 600; font-size: 0.9rem; background: var(--idle-bg); color: var(--idle); }
.overall::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: currentColor; }
.overall[data-state="running"] { background: var(--run-bg); color: var(--accent); }
.overall[data-state="steady"] { background: var(--ok-bg); color: var(--ok); }
.overall[data-state="failed"] { background: var(--bad-bg); color: var(--bad); }
.overall[data-state="unavailable"] { background: var(--warn-bg); color: var(--warn); }
.meta { margin-left: auto; color: var(--muted); font-size: 0.85rem; display: flex; align-items: center; gap: 10px; }
button { font: inherit; }
.refresh { border: 1px solid var(--line); background: var(--card); color: var(--fg); border-radius: 8px;
  padding: 4px 10px; cursor: pointer; }
.refresh:hover { border-color: var(--accent); }
.refresh:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.alert { border-radius: var(--radius); padding: 12px 14px; margin-bottom: 16px; background: var(--bad-bg);
  color: var(--bad); border: 1px solid color-mix(in srgb, var(--bad) 35%, transparent); overflow-wrap: anywhere; }
.alert strong { display: block; margin-bottom: 2px; }
.list { display: grid; gap: 14px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: var(--radius); padding: 16px 18px;
  box-shadow: 0 1px 2px rgba(16, 24, 40, 0.04); }
.card-head { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 12px; margin-bottom: 12px; }
.name { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.98rem; font-weight: 600;
  overflow-wrap: anywhere; margin: 0; }
.badge { font-size: 0.75rem; font-weight: 700; text-transform: uppercase; letter-spacing: 0.04em;
  padding: 3px 9px; border-radius: 999px; background: var(--idle-bg); color: var(--idle); }
.badge[data-status="running"] { background: var(--run-bg); color: var(--accent); }
.badge[data-status="done"] { background: var(--ok-bg); color: var(--ok); }
.badge[data-status="failed"] { background: var(--bad-bg); color: var(--bad); }
.badge[data-status="paused"], .badge[data-status="unknown"] { background: var(--warn-bg); color: var(--warn); }
.pct { margin-left: auto; font-variant-numeric: tabular-nums; font-weight: 700; font-size: 1.05rem; }
.bar { height: 12px; border-radius: 999px; background: var(--track); overflow: hidden; }
.fill { height: 100%; width: 0; border-radius: 999px; background: var(--accent); transition: width 0.6s ease; }
.fill[data-status="done"] { background: var(--ok); }
.fill[data-status="failed"] { background: var(--bad); }
.fill[data-status="paused"], .fill[data-status="unknown"], .fill[data-status="cancelled"] { background: var(--idle); }
.fill[data-status="running"] { background-image: linear-gradient(90deg, transparent 0, rgba(255,255,255,0.25) 50%, transparent 100%);
  background-size: 200% 100%; animation: sweep 1.6s linear infinite; }
@keyframes sweep { from { background-position: 200% 0; } to { background-position: -200% 0; } }
@media (prefers-reduced-motion: reduce) { .fill { transition: none; } .fill[data-status="running"] { animation: none; } }
.rows { margin: 8px 0 12px; color: var(--muted); font-size: 0.92rem; font-variant-numeric: tabular-nums; }
.rows b { color: var(--fg); font-weight: 600; }
dl { display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr)); gap: 10px 16px; margin: 0; }
dl div { min-width: 0; }
dl div[data-field="owner"] { grid-column: span 2; }
dt { color: var(--muted); font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.05em; }
dd { margin: 2px 0 0; font-variant-numeric: tabular-nums; font-weight: 600; overflow-wrap: anywhere; }
.note { margin: 12px 0 0; padding: 8px 12px; border-radius: 8px; font-size: 0.9rem; overflow-wrap: anywhere;
  background: var(--idle-bg); color: var(--fg); }
.note[data-kind="error"] { background: var(--bad-bg); color: var(--bad); }
.note[data-kind="throttle"], .note[data-kind="stuck"] { background: var(--warn-bg); color: var(--warn); }
.flag { font-size: 0.75rem; font-weight: 700; text-transform: uppercase; letter-spacing: 0.04em;
  padding: 3px 9px; border-radius: 999px; background: var(--warn-bg); color: var(--warn); }
.empty { text-align: center; color: var(--muted); padding: 36px 16px; background: var(--card);
  border: 1px dashed var(--line); border-radius: var(--radius); }
.token { display: flex; flex-wrap: wrap; align-items: center; gap: 8px; margin: 0 0 16px; font-size: 0.88rem; }
.token label { color: var(--muted); }
.token input { font: inherit; padding: 4px 8px; border: 1px solid var(--line); border-radius: 8px; background: var(--card);
  color: var(--fg); min-width: 0; width: 14em; }
.token [data-set="true"] { color: var(--ok); }
.actions { display: flex; flex-wrap: wrap; align-items: center; gap: 8px; margin-top: 12px; }
.action, .token button { border: 1px solid var(--line); background: var(--card); color: var(--fg); border-radius: 8px;
  padding: 4px 12px; cursor: pointer; font-weight: 600; }
.action:hover, .token button:hover { border-color: var(--accent); }
.action:focus-visible, .token button:focus-visible, .token input:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.action[data-action="cancel"] { color: var(--bad); }
.action:disabled { opacity: 0.55; cursor: progress; }
.tune { display: inline-flex; flex-wrap: wrap; align-items: center; gap: 6px; font-size: 0.85rem; color: var(--muted); }
.tune input { font: inherit; width: 6.5em; padding: 3px 6px; border: 1px solid var(--line); border-radius: 6px;
  background: var(--card); color: var(--fg); }
.answer { margin: 8px 0 0; font-size: 0.85rem; color: var(--muted); overflow-wrap: anywhere; }
.answer[data-ok="false"] { color: var(--bad); }
.fleet { background: var(--card); border: 1px solid var(--line); border-radius: var(--radius); padding: 14px 18px;
  margin-top: 14px; }
.fleet h2 { font-size: 1rem; margin: 0 0 6px; }
.fleet p { margin: 0; color: var(--muted); font-size: 0.9rem; font-variant-numeric: tabular-nums; }
.fleet ul { margin: 8px 0 0; padding-left: 18px; font-size: 0.88rem; }
.fleet li { overflow-wrap: anywhere; }
.fleet li[data-status="failed"], .fleet li[data-status="unreachable"] { color: var(--bad); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 10px 16px; margin-top: 12px; }
.chart { margin: 0; }
.chart figcaption { color: var(--muted); font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.05em; }
.chart svg { display: block; width: 100%; height: 56px; margin-top: 4px; overflow: visible; }
.chart polyline { fill: none; stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.chart line { stroke: var(--warn); stroke-width: 1; stroke-dasharray: 4 3; vector-effect: non-scaling-stroke; }
.chart .caption { margin: 2px 0 0; color: var(--muted); font-size: 0.8rem; font-variant-numeric: tabular-nums; }
footer { margin-top: 22px; color: var(--muted); font-size: 0.8rem; text-align: center; }
footer a { color: inherit; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
@media (max-width: 520px) {
  main { padding: 14px 12px 32px; }
  .meta { margin-left: 0; width: 100%; justify-content: space-between; }
  .card { padding: 14px; }
  dl { grid-template-columns: repeat(2, minmax(0, 1fr)); }
}
`;

// String.raw: the backslashes in the script (regexes, \u escapes) must reach the browser as written.
const SCRIPT = String.raw`
(function () {
  "use strict";
  var FAST_MS = 1500;
  var IDLE_MS = 10000;
  var ERROR_MS = 5000;
  var listEl = document.getElementById("migrations");
  var overallEl = document.getElementById("overall");
  var alertEl = document.getElementById("alert");
  var updatedEl = document.getElementById("updated");
  var liveEl = document.getElementById("live");
  var refreshBtn = document.getElementById("refresh");
  var timer = null;
  var inFlight = false;
  var lastAnnouncement = "";
  var cards = new Map();
  var fleetEl = document.getElementById("fleet");
  // Tenants listed by name at most; the summary counts them all.
  var FLEET_LISTED = 50;
  // Set once GET api/fleet answered 404: this server has no fleet, and will not grow one while the page is open.
  var noFleet = false;
  var tokenForm = document.getElementById("token-form");
  var tokenInput = document.getElementById("token");
  var tokenState = document.getElementById("token-state");
  var forgetBtn = document.getElementById("forget");
  // The admin token lives in this tab's session storage only: never in a URL, a cookie or a log.
  var TOKEN_KEY = "trickle.adminToken";
  // Which controls a status offers (the control API refuses the others with 409 anyway).
  var ACTIONS = { running: ["pause", "cancel"], pending: ["pause", "cancel"], paused: ["resume", "cancel"],
    failed: ["retry"], cancelled: ["retry"] };
  var ACTION_LABELS = { pause: "Pause", resume: "Resume", cancel: "Cancel", retry: "Retry" };
  var intFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var rateFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function toNumber(value) {
    if (typeof value === "number") return Number.isFinite(value) ? value : null;
    if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value))) return Number(value);
    return null;
  }

  // Counters may arrive as exact decimal strings (bigint on the server); group their digits without rounding.
  function formatCount(value) {
    if (typeof value === "string" && /^-?[0-9]+$/.test(value)) return value.replace(/[0-9](?=(?:[0-9]{3})+$)/g, "$&,");
    var n = toNumber(value);
    return n === null ? "?" : intFormat.format(n);
  }

  function formatDuration(seconds) {
    var s = toNumber(seconds);
    if (s === null || s < 0) return "—";
    if (s < 10) return (Math.round(s * 10) / 10) + " s";
    s = Math.round(s);
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    var h = Math.floor(m / 60);
    if (h < 48) return h + " h " + (m % 60) + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }

  // Coarse durations for the ETA band: "45 s", "12 min", "3 h 10 min".
  function formatCoarse(seconds) {
    var s = toNumber(seconds);
    if (s === null || s < 0) return "?";
    s = Math.round(s);
    if (s < 60) return s + " s";
    var m = Math.round(s / 60);
    if (m < 60) return m + " min";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  // The ETA band (p10–p90) when the API has one, else the single estimate.
  function formatEta(item) {
    var low = toNumber(item.etaLowSeconds);
    if (low === null) return formatDuration(item.etaSeconds);
    var high = toNumber(item.etaHighSeconds);
    var a = formatCoarse(low);
    if (high === null) return "\u2265 " + a;
    var b = formatCoarse(high);
    return a === b ? a : a + "\u2013" + b;
  }

  function formatTime(text) {
    if (!text) return "—";
    var iso = /^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}/.test(text) ? text.replace(" ", "T") + "Z" : text;
    var ms = Date.parse(iso);
    if (!Number.isFinite(ms)) return String(text);
    var date = new Date(ms);
    // One format everywhere, 24-hour with the zone, so times from different fields compare at a glance.
    var clock = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZoneName: "short" };
    if (date.toDateString() === new Date().toDateString()) return date.toLocaleTimeString(undefined, clock);
    return date.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + date.toLocaleTimeString(undefined, clock);
  }

  function percentOf(item) {
    var given = toNumber(item.percent);
    if (given !== null) return Math.max(0, Math.min(100, given));
    if (item.status === "done") return 100;
    var done = toNumber(item.rowsProcessed);
    var total = toNumber(item.rowsTotal);
    if (done === null || total === null || total <= 0) return 0;
    return Math.max(0, Math.min(100, (done / total) * 100));
  }

  function formatPercent(p) {
    if (p >= 100) return "100%";
    if (p > 0 && p < 0.1) return "<0.1%";
    return (Math.floor(p * 10) / 10).toFixed(1) + "%";
  }

  function statusOf(item) {
    return typeof item.status === "string" && item.status !== "" ? item.status : "unknown";
  }

  function storedToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  function showTokenState() {
    var set = storedToken() !== "";
    tokenState.textContent = set ? "Controls enabled for this tab" : "Enter it to pause, resume, cancel, retry or tune";
    tokenState.dataset.set = set ? "true" : "false";
    forgetBtn.hidden = !set;
  }

  // Sends one control request; the answer (or the problem the API names) is shown on the card.
  function control(card, method, path, body, describe) {
    var token = storedToken();
    if (!token) {
      say(card, false, "Enter the admin token above to use the controls.");
      tokenInput.focus();
      return;
    }
    card.actions.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    fetch(API_BASE + "api/migrations/" + encodeURIComponent(card.card.dataset.name) + path, {
      method: method,
      headers: { authorization: "Bearer " + token, "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
    }).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = JSON.parse(text); } catch (e) { data = null; }
        if (res.ok) say(card, true, describe(data || {}));
        else {
          var detail = data && (data.detail || data.error) ? String(data.detail || data.error) : "HTTP " + res.status;
          say(card, false, detail + (res.status === 401 ? " — check the admin token" : ""));
        }
      });
    }, function (e) {
      say(card, false, "The request failed: " + (e && e.message ? e.message : String(e)));
    }).then(function () {
      card.actions.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
      refresh();
    });
  }

  function say(card, ok, text) {
    card.answer.textContent = text;
    card.answer.dataset.ok = ok ? "true" : "false";
    card.answer.hidden = false;
  }

  function buildActions(card) {
    var buttons = {};
    Object.keys(ACTION_LABELS).forEach(function (action) {
      var b = el("button", "action", ACTION_LABELS[action]);
      b.type = "button";
      b.dataset.action = action;
      b.addEventListener("click", function () {
        var name = card.card.dataset.name;
        if (action === "cancel" && !window.confirm("Cancel " + name + "? Rows already changed stay changed; retry starts a new run.")) return;
        control(card, "POST", "/" + action, { note: "status page" }, function (d) {
          return ACTION_LABELS[action] + ": " + String(d.from) + " → " + String(d.to);
        });
      });
      buttons[action] = b;
      card.actions.append(b);
    });
    var tune = el("form", "tune");
    var step = el("input");
    step.type = "number"; step.min = "1"; step.name = "stepTargetMs"; step.placeholder = "step ms";
    step.setAttribute("aria-label", "Step target in milliseconds");
    var pause = el("input");
    pause.type = "number"; pause.min = "0"; pause.name = "yieldMs"; pause.placeholder = "pause ms";
    pause.setAttribute("aria-label", "Pause between steps in milliseconds");
    var apply = el("button", "action", "Tune");
    apply.type = "submit";
    apply.dataset.action = "tune";
    tune.append(el("span", "", "Step"), step, el("span", "", "pause"), pause, apply);
    tune.addEventListener("submit", function (event) {
      event.preventDefault();
      var patch = {};
      if (step.value !== "") patch.stepTargetMs = Number(step.value);
      if (pause.value !== "") patch.yieldMs = Number(pause.value);
      control(card, "PATCH", "", patch, function (d) {
        return "Tuned from the next lease on: " + JSON.stringify(d.tuning || {});
      });
    });
    card.actions.append(tune);
    card.buttons = buttons;
    card.tune = tune;
  }

  var SVG_NS = "http://www.w3.org/2000/svg";
  var CHART_W = 300;
  var CHART_H = 56;

  function buildChart(title) {
    var figure = el("figure", "chart");
    figure.append(el("figcaption", "", title));
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + CHART_W + " " + CHART_H);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    var line = document.createElementNS(SVG_NS, "polyline");
    var target = document.createElementNS(SVG_NS, "line");
    svg.append(target, line);
    var caption = el("p", "caption");
    figure.append(svg, caption);
    return { figure: figure, svg: svg, line: line, target: target, caption: caption };
  }

  // Draws the values left to right (oldest first) scaled to the chart, with an optional dashed target line.
  function drawChart(chart, values, target, label) {
    var top = Math.max.apply(null, values.concat(target !== null ? [target * 1.25] : [])) || 1;
    var y = function (v) { return (CHART_H - (v / top) * CHART_H).toFixed(1); };
    var step = values.length > 1 ? CHART_W / (values.length - 1) : 0;
    chart.line.setAttribute("points", values.map(function (v, i) { return (i * step).toFixed(1) + "," + y(v); }).join(" "));
    chart.target.hidden = target === null;
    if (target !== null) {
      chart.target.setAttribute("x1", "0");
      chart.target.setAttribute("x2", String(CHART_W));
      chart.target.setAttribute("y1", y(target));
      chart.target.setAttribute("y2", y(target));
    }
    chart.svg.setAttribute("aria-label", label);
    chart.caption.textContent = label;
  }

  function quantile(sorted, q) {
    return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0;
  }

  // The last steps this process committed: their durations against the target, and rows per second within each;
  // and, when the throttle's probe is on, the probe query's latency against its limit.
  function updateCharts(card, steps, targetMs, probes) {
    var list = Array.isArray(steps) ? steps.filter(function (s) { return s && toNumber(s.durationMs) !== null; }) : [];
    var runs = Array.isArray(probes) ? probes.filter(function (p) { return p && toNumber(p.durationMs) !== null; }) : [];
    card.charts.hidden = list.length < 2 && runs.length < 2;
    card.durationChart.figure.hidden = list.length < 2;
    card.rateChart.figure.hidden = list.length < 2;
    card.probeChart.figure.hidden = runs.length < 2;
    if (runs.length >= 2) updateProbeChart(card.probeChart, runs);
    if (list.length < 2) return;
    var durations = list.map(function (s) { return toNumber(s.durationMs); });
    var sorted = durations.slice().sort(function (a, b) { return a - b; });
    var target = toNumber(targetMs);
    drawChart(card.durationChart, durations, target,
      list.length + " steps: p50 " + rateFormat.format(quantile(sorted, 0.5)) + " ms, max " + rateFormat.format(sorted[sorted.length - 1]) +
      " ms" + (target !== null ? " (target " + intFormat.format(target) + " ms)" : ""));
    var rates = list.map(function (s) {
      var ms = toNumber(s.durationMs);
      var rows = toNumber(s.rows);
      return ms > 0 && rows !== null ? rows / (ms / 1000) : 0;
    });
    drawChart(card.rateChart, rates, null, "last " + intFormat.format(rates[rates.length - 1]) + " rows/s while stepping");
  }

  function updateProbeChart(chart, runs) {
    var latencies = runs.map(function (p) { return toNumber(p.durationMs); });
    var limit = toNumber(runs[runs.length - 1].limitMs);
    var failed = runs.filter(function (p) { return p.ok === false; }).length;
    drawChart(chart, latencies, limit,
      runs.length + " probes: last " + rateFormat.format(latencies[latencies.length - 1]) + " ms, max " +
      rateFormat.format(Math.max.apply(null, latencies)) + " ms" + (limit !== null ? " (limit " + intFormat.format(limit) + " ms)" : "") +
      (failed > 0 ? ", " + failed + " failed" : ""));
  }

  function buildCard() {
    var card = el("article", "card");
    var head = el("div", "card-head");
    var name = el("h2", "name");
    var badge = el("span", "badge");
    var pct = el("span", "pct");
    var stuck = el("span", "flag", "stuck");
    stuck.dataset.flag = "stuck";
    stuck.title = "Running, but the cursor has not moved for a while";
    var throttled = el("span", "flag", "throttled");
    throttled.dataset.flag = "throttled";
    head.append(name, badge, stuck, throttled, pct);
    var bar = el("div", "bar");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    var fill = el("div", "fill");
    bar.append(fill);
    var rows = el("p", "rows");
    var stats = el("dl");
    var fields = {};
    [["rate", "Rate"], ["eta", "ETA"], ["elapsed", "Elapsed"], ["batch", "Batch size"],
     ["steps", "Steps"], ["quarantined", "Quarantined"], ["verified", "Verified"], ["started", "Started"],
     ["updated", "Last update"], ["ended", "Ended"], ["owner", "Lease"]].forEach(function (f) {
      var wrap = el("div");
      wrap.append(el("dt", "", f[1]));
      var dd = el("dd");
      wrap.append(dd);
      wrap.dataset.field = f[0];
      stats.append(wrap);
      fields[f[0]] = { wrap: wrap, value: dd };
    });
    var note = el("p", "note");
    var charts = el("div", "charts");
    var durationChart = buildChart("Step duration");
    var rateChart = buildChart("Rows per second");
    var probeChart = buildChart("Probe query latency");
    charts.append(durationChart.figure, rateChart.figure, probeChart.figure);
    charts.hidden = true;
    var actions = el("div", "actions");
    var answer = el("p", "answer");
    answer.setAttribute("role", "status");
    answer.hidden = true;
    card.append(head, bar, rows, stats, note, charts, actions, answer);
    var built = { card: card, name: name, badge: badge, pct: pct, bar: bar, fill: fill, rows: rows, fields: fields, note: note,
      stuck: stuck, throttled: throttled, actions: actions, answer: answer, charts: charts, durationChart: durationChart,
      rateChart: rateChart, probeChart: probeChart };
    buildActions(built);
    return built;
  }

  function setField(card, key, text, show) {
    var f = card.fields[key];
    f.value.textContent = text;
    f.wrap.hidden = !show;
  }

  function updateCard(card, item) {
    var status = statusOf(item);
    var p = percentOf(item);
    var name = String(item.name);
    card.card.dataset.name = name;
    card.card.dataset.status = status;
    card.name.textContent = name;
    card.badge.textContent = status;
    card.badge.dataset.status = status;
    card.pct.textContent = formatPercent(p);
    card.fill.style.width = p.toFixed(2) + "%";
    card.fill.dataset.status = status;
    card.bar.setAttribute("aria-valuenow", p.toFixed(1));
    card.bar.setAttribute("aria-label", name + " progress");
    card.bar.setAttribute("aria-valuetext", formatPercent(p) + ", " + formatCount(item.rowsProcessed) + " of " + formatCount(item.rowsTotal) + " rows");
    card.rows.textContent = "";
    if (status === "pending" && !toNumber(item.rowsTotal)) card.rows.textContent = "Not started yet";
    else card.rows.append(el("b", "", formatCount(item.rowsProcessed)), " / " + formatCount(item.rowsTotal) + " rows");

    var rate = toNumber(item.rate);
    var busy = toNumber(item.busyRate);
    var rateText = rate !== null && rate > 0 ? (rate >= 100 ? intFormat : rateFormat).format(rate) + " rows/s" : "—";
    var running = status === "running";
    setField(card, "rate", rateText, running || (rate !== null && rate > 0));
    // The busy rate (rows per second spent inside steps) is for tuning; keep it out of the way.
    card.fields.rate.value.title = busy !== null && busy > 0 ? intFormat.format(busy) + " rows/s while stepping" : "";
    setField(card, "eta", running ? formatEta(item) : "—", running);
    card.fields.eta.value.title = running && item.etaLowSeconds != null ? "Most likely " + formatDuration(item.etaSeconds) + "; the range is p10\u2013p90 of recent rates, at least the \u00b125\u00a0% the estimate is held to" : "";
    var quarantined = toNumber(item.quarantined);
    setField(card, "quarantined", formatCount(item.quarantined) + " rows", quarantined !== null && quarantined > 0);
    var residual = toNumber(item.residual);
    setField(card, "verified", item.verifiedAt ? formatTime(item.verifiedAt) + (residual ? ", " + formatCount(item.residual) + " left" : ", 0 left") : "—", !!item.verifiedAt);
    setField(card, "elapsed", formatDuration(item.elapsedSeconds), toNumber(item.elapsedSeconds) !== null && item.startedAt != null);
    setField(card, "batch", formatCount(item.batchSize), toNumber(item.batchSize) !== null && running);
    setField(card, "steps", formatCount(item.steps), toNumber(item.steps) !== null && toNumber(item.steps) > 0);
    setField(card, "started", formatTime(item.startedAt), !!item.startedAt);
    setField(card, "updated", formatTime(item.lastUpdateAt), !!item.lastUpdateAt && !item.endedAt);
    setField(card, "ended", formatTime(item.endedAt), !!item.endedAt);
    setField(card, "owner", item.leaseOwner ? String(item.leaseOwner) : "—", !!item.leaseOwner);

    var stuck = item.stuck === true;
    var throttle = item.throttle && typeof item.throttle === "object" ? item.throttle : null;
    card.card.dataset.stuck = stuck ? "true" : "false";
    card.stuck.hidden = !stuck;
    card.throttled.hidden = !throttle;
    var error = item.errorMessage ? String(item.errorMessage) : "";
    var reason = item.reason ? String(item.reason) : "";
    if (error) {
      // What to do next, not only what happened.
      card.note.textContent = item.owned === false
        ? "Last error: " + error + " — this migration belongs to the application, not to trickle: see its own logs."
        : "Last error: " + error + " — fix the cause, then Retry. Rows skipped as poison rows: trickle failures " + String(item.name) + ".";
      card.note.dataset.kind = "error";
    } else if (throttle) {
      card.note.textContent = "Throttled until " + formatTime(throttle.until) + ": " + String(throttle.reason);
      card.note.dataset.kind = "throttle";
    } else if (stuck) {
      card.note.textContent = "No progress since " + formatTime(item.progressAt || item.lastUpdateAt) + (reason ? " \u2014 " + reason : "");
      card.note.dataset.kind = "stuck";
    } else if (reason) {
      card.note.textContent = reason;
      card.note.dataset.kind = "reason";
    } else {
      card.note.textContent = "";
    }
    card.note.hidden = !error && !reason && !throttle && !stuck;

    var offered = ACTIONS[status] || [];
    Object.keys(card.buttons).forEach(function (action) { card.buttons[action].hidden = offered.indexOf(action) < 0; });
    card.tune.hidden = status === "done";
    // A row this service does not run (the application's own migration) is shown, never controlled.
    card.actions.hidden = status === "done" || status === "unknown" || item.owned === false;
    card.card.dataset.owned = item.owned === false ? "false" : "true";
  }

  function renderList(items, perfData) {
    var recentSteps = (perfData && perfData.recentSteps) || {};
    var recentProbes = (perfData && perfData.recentProbes) || {};
    var targetMs = perfData ? perfData.stepTargetMs : null;
    var seen = new Set();
    items.forEach(function (item, index) {
      var key = String(item.name);
      seen.add(key);
      var card = cards.get(key);
      if (!card) {
        card = buildCard();
        cards.set(key, card);
      }
      updateCard(card, item);
      updateCharts(card, recentSteps[key], targetMs, recentProbes[key]);
      if (listEl.children[index] !== card.card) listEl.insertBefore(card.card, listEl.children[index] || null);
    });
    cards.forEach(function (card, key) {
      if (!seen.has(key)) {
        card.card.remove();
        cards.delete(key);
      }
    });
    if (items.length === 0) {
      var empty = el("p", "empty", "No migrations registered.");
      listEl.replaceChildren(empty);
    } else {
      var stale = listEl.querySelector(".empty");
      if (stale) stale.remove();
    }
  }

  // The fleet section, when the server has one: counts, then the tenants that are not done, the broken ones
  // first. GET api/fleet answers 404 without one; the page then stops asking.
  function renderFleet(result) {
    if (result && result.value && result.value.status === 404) noFleet = true;
    var view = result && result.value && result.value.ok ? result.value.data : null;
    if (!view || !view.summary || !Array.isArray(view.tenants)) {
      fleetEl.hidden = true;
      return;
    }
    var s = view.summary;
    fleetEl.replaceChildren();
    fleetEl.append(el("h2", "", "Fleet"));
    fleetEl.append(el("p", "summary", formatCount(s.total) + " tenants: " + formatCount(s.done) + " done, " +
      formatCount(s.running) + " running, " + formatCount(s.pending) + " pending, " + formatCount(s.failed) + " failed, " +
      formatCount(s.unreachable) + " unreachable \u00b7 read " + formatTime(view.takenAt)));
    var rank = { failed: 0, unreachable: 1, running: 2, pending: 3 };
    var open = view.tenants.filter(function (t) { return t && t.status !== "done"; });
    var order = function (t) { return t.status in rank ? rank[t.status] : 4; };
    open.sort(function (a, b) { return order(a) - order(b); });
    if (open.length > 0) {
      var list = el("ul");
      open.slice(0, FLEET_LISTED).forEach(function (t) {
        var li = el("li", "", String(t.database) + ": " + String(t.status) + (t.detail ? " \u2014 " + String(t.detail) : ""));
        li.dataset.status = String(t.status);
        list.append(li);
      });
      if (open.length > FLEET_LISTED) list.append(el("li", "", "\u2026 and " + formatCount(open.length - FLEET_LISTED) + " more"));
      fleetEl.append(list);
    }
    fleetEl.hidden = false;
  }

  function overallState(health, healthError, items) {
    if (healthError || (health && health.async_migrations_error)) return ["unavailable", "Status unavailable"];
    if (health && health.ready === false) return ["running", "Starting"];
    var running = health ? health.async_migrations_running === true : items.some(function (i) { return statusOf(i) === "running"; });
    if (running) return ["running", "Backfilling"];
    if (items.some(function (i) { return statusOf(i) === "failed"; })) return ["failed", "Failed"];
    return ["steady", "Steady state"];
  }

  function showAlert(messages) {
    alertEl.replaceChildren();
    if (messages.length === 0) {
      alertEl.hidden = true;
      return;
    }
    alertEl.append(el("strong", "", "Migration state could not be read"));
    messages.forEach(function (m) { alertEl.append(el("div", "", m)); });
    alertEl.hidden = false;
  }

  function announce(text) {
    if (text === lastAnnouncement) return;
    lastAnnouncement = text;
    liveEl.textContent = text;
  }

  // Mounted under a prefix and opened without the trailing slash (/admin/trickle), relative paths would
  // resolve one level up; the last path segment puts them back under the prefix.
  var API_BASE = /\/$/.test(location.pathname) ? "" : (location.pathname.split("/").pop() || "") + "/";

  function readJson(path) {
    return fetch(API_BASE + path, { headers: { accept: "application/json" }, cache: "no-store" }).then(function (res) {
      return res.text().then(function (body) {
        var data = null;
        try { data = JSON.parse(body); } catch (e) { data = null; }
        if (data === null || typeof data !== "object") throw new Error(path + ": HTTP " + res.status + " (not JSON)");
        return { ok: res.ok, status: res.status, data: data, headerError: res.headers.get("X-Async-Migrations-Error") };
      });
    });
  }

  function settle(promise) {
    return promise.then(function (v) { return { value: v }; }, function (e) { return { error: e && e.message ? e.message : String(e) }; });
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = null;
    if (document.hidden) {
      updatedEl.dataset.paused = "true";
      return;
    }
    timer = setTimeout(refresh, ms);
  }

  function refresh() {
    if (inFlight) return;
    inFlight = true;
    clearTimeout(timer);
    var fleet = noFleet ? Promise.resolve(null) : settle(readJson("api/fleet"));
    Promise.all([settle(readJson("api/perf")), settle(readJson("api/healthz")), fleet]).then(function (results) {
      var perf = results[0];
      var health = results[1];
      renderFleet(results[2]);
      var errors = [];
      var items = [];
      if (perf.error) errors.push(perf.error);
      else {
        if (Array.isArray(perf.value.data.asyncMigrations)) items = perf.value.data.asyncMigrations.filter(function (i) { return i && typeof i === "object"; });
        else errors.push("api/perf: no asyncMigrations array (HTTP " + perf.value.status + ")");
        if (perf.value.headerError) errors.push(perf.value.headerError);
        if (perf.value.data.asyncMigrationsError) errors.push(String(perf.value.data.asyncMigrationsError));
      }
      var healthData = health.error ? null : health.value.data;
      if (health.error) errors.push(health.error);
      else if (healthData.async_migrations_error) errors.push(String(healthData.async_migrations_error));
      if (perf.error && healthData && Array.isArray(healthData.async_migrations)) items = healthData.async_migrations;

      var uniqueErrors = errors.filter(function (m, i) { return errors.indexOf(m) === i; });
      var state = overallState(healthData, health.error, items);
      overallEl.dataset.state = state[0];
      overallEl.textContent = state[1];
      showAlert(uniqueErrors);
      var perfData = perf.error ? null : perf.value.data;
      renderList(items, perfData);
      updatedEl.textContent = "Updated " + formatTime(new Date().toISOString());
      delete updatedEl.dataset.paused;
      announce(state[1] + ". " + items.map(function (i) { return String(i.name) + ": " + statusOf(i); }).join(", "));

      var active = state[0] === "running" || items.some(function (i) { var s = statusOf(i); return s === "running" || s === "pending"; });
      inFlight = false;
      schedule(uniqueErrors.length > 0 ? ERROR_MS : active ? FAST_MS : IDLE_MS);
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
      updatedEl.dataset.paused = "true";
    } else {
      refresh();
    }
  });
  refreshBtn.addEventListener("click", refresh);
  tokenForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var value = tokenInput.value.trim();
    tokenInput.value = "";
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
    } catch (e) {
      tokenState.textContent = "This browser keeps no session storage; the controls cannot be used here";
      return;
    }
    showTokenState();
  });
  forgetBtn.addEventListener("click", function () {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
    showTokenState();
  });
  showTokenState();
  refresh();
})();
`;

/** The complete status page; no external resources. */
export const STATUS_PAGE_HTML: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="referrer" content="no-referrer">
<title>trickle · migration status</title>
<style>${STYLE}</style>
</head>
<body>
<main>
  <header>
    <h1>trickle<small>backfill status</small></h1>
    <span id="overall" class="overall" data-state="loading">Loading…</span>
    <div class="meta">
      <span id="updated">Not loaded yet</span>
      <button type="button" id="refresh" class="refresh">Refresh</button>
    </div>
  </header>
  <form id="token-form" class="token" autocomplete="off">
    <label for="token">Admin token</label>
    <input id="token" type="password" autocomplete="off" spellcheck="false">
    <button type="submit">Use</button>
    <button type="button" id="forget" hidden>Forget</button>
    <span id="token-state"></span>
  </form>
  <div id="alert" class="alert" role="alert" hidden></div>
  <div id="live" class="sr-only" aria-live="polite" aria-atomic="true"></div>
  <section id="migrations" class="list" aria-label="Migrations"></section>
  <section id="fleet" class="fleet" aria-label="Fleet" hidden></section>
  <footer>Refreshes every 1.5 s while a migration runs, every 10 s when idle, and pauses while this tab is hidden. Data: <a href="api/perf">api/perf</a> · <a href="api/healthz">api/healthz</a></footer>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
