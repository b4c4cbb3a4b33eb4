/**
 * The warm-up banner script served at `/warmup-banner.js` (corescope-facts §3, #1735's behaviour adapted).
 *
 * Any page includes `<script src="/warmup-banner.js"></script>`. The script polls `api/healthz` (resolved
 * against its own URL, so a prefix-mounted app works) every 30 s — `data-interval-ms` on the script tag
 * overrides it — and shows:
 * - one progress line per running migration: `Migration <name>: <p> / <t> rows (<pct>%, ETA <n>)`, where
 *   `<n>` is the ETA band (`3m–5m`, p10–p90 of recent rates) when healthz has one, else the single estimate;
 * - one dismissible line per failed migration: `Migration <name> FAILED: <errorMessage|unknown error>`,
 *   auto-dismissed 10 min after `endedAt`; a missing or unparseable `endedAt` never auto-dismisses;
 * - a neutral "status unavailable" line when healthz reports `async_migrations_error` or cannot be read
 *   (fail closed: the banner stays up and polling continues).
 * In steady state (ready, nothing running, no error, no visible failure) it hides and stops polling.
 *
 * One global, `window.TrickleWarmupBanner`; a second copy of the script on the same page does nothing.
 * Values reach the DOM only through `textContent`.
 *
 * The source lives in a `String.raw` template: it must not contain a backtick or a dollar-brace, and its
 * `\u` escapes reach the browser as written, which keeps the served script pure ASCII whatever charset the
 * including page or the response declares.
 */

/** The banner script; self-contained, no external requests. */
export const WARMUP_BANNER_JS: string = String.raw`/* trickle warm-up banner */
(function () {
  "use strict";
  if (window.TrickleWarmupBanner) return;

  var DEFAULT_INTERVAL_MS = 30000;
  var FAILED_AUTO_DISMISS_MS = 10 * 60 * 1000;
  var script = document.currentScript;
  var intervalMs = DEFAULT_INTERVAL_MS;
  var configured = script && script.getAttribute("data-interval-ms");
  if (configured && /^[0-9]+$/.test(configured) && Number(configured) >= 100) intervalMs = Number(configured);
  var healthUrl = "/api/healthz";
  try {
    var explicit = script && script.getAttribute("data-healthz-url");
    healthUrl = new URL(explicit || "api/healthz", script && script.src ? script.src : document.baseURI).href;
  } catch (e) {
    healthUrl = "/api/healthz";
  }

  var dismissed = new Set();
  var root = null;
  var list = null;
  var timer = null;
  var inFlight = false;
  var stopped = false;
  var last = null;

  function ensureRoot() {
    if (root) return root;
    var style = document.createElement("style");
    style.textContent =
      ".trickle-wb{position:sticky;top:0;z-index:2147483000;margin:0;padding:8px 12px;" +
      "background:#fff4d6;color:#3d2e00;border-bottom:1px solid #e8c66a;" +
      "font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif}" +
      ".trickle-wb[hidden]{display:none}" +
      ".trickle-wb ul{list-style:none;margin:0 auto;padding:0;max-width:1100px}" +
      ".trickle-wb li{display:flex;align-items:flex-start;gap:8px;padding:2px 0;overflow-wrap:anywhere}" +
      ".trickle-wb li[data-kind=failed]{color:#8f1d26}" +
      ".trickle-wb li span{flex:1;min-width:0}" +
      ".trickle-wb button{flex:none;border:0;background:transparent;color:inherit;cursor:pointer;" +
      "font:inherit;font-size:18px;line-height:1;padding:0 4px;border-radius:4px}" +
      ".trickle-wb button:focus-visible{outline:2px solid currentColor}" +
      "@media (prefers-color-scheme:dark){.trickle-wb{background:#3a2f12;color:#fbe7b0;border-color:#6b5520}" +
      ".trickle-wb li[data-kind=failed]{color:#ffb3b9}}";
    root = document.createElement("div");
    root.className = "trickle-wb";
    root.id = "trickle-warmup-banner";
    root.setAttribute("role", "status");
    root.setAttribute("aria-live", "polite");
    root.hidden = true;
    list = document.createElement("ul");
    root.appendChild(list);
    document.head.appendChild(style);
    document.body.insertBefore(root, document.body.firstChild);
    return root;
  }

  function toNumber(value) {
    if (typeof value === "number") return Number.isFinite(value) ? value : null;
    if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value))) return Number(value);
    return null;
  }

  function count(value) {
    if (typeof value === "string" && /^[0-9]+$/.test(value)) return value;
    var n = toNumber(value);
    return n === null ? "?" : String(Math.round(n));
  }

  function duration(seconds) {
    var s = toNumber(seconds);
    if (s === null || s < 0) return "unknown";
    s = Math.round(s);
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + (s % 60) + "s";
    return Math.floor(m / 60) + "h " + (m % 60) + "m";
  }

  // The band in whole units: "45s", "12m", "3h 10m".
  function coarse(seconds) {
    var s = toNumber(seconds);
    if (s === null || s < 0) return null;
    s = Math.round(s);
    if (s < 60) return s + "s";
    var m = Math.round(s / 60);
    if (m < 60) return m + "m";
    return Math.floor(m / 60) + "h " + (m % 60) + "m";
  }

  function eta(item) {
    var low = coarse(item.etaLowSeconds);
    var high = coarse(item.etaHighSeconds);
    if (low !== null && high !== null) return low === high ? low : low + "\u2013" + high;
    return duration(item.etaSeconds !== undefined ? item.etaSeconds : item.etaSec);
  }

  function percent(item) {
    var given = toNumber(item.percent);
    var p = given;
    if (p === null) {
      var done = toNumber(item.rowsProcessed);
      var total = toNumber(item.rowsTotal);
      p = done !== null && total !== null && total > 0 ? (done / total) * 100 : 0;
    }
    p = Math.max(0, Math.min(100, p));
    return p >= 100 ? "100" : (Math.floor(p * 10) / 10).toFixed(1);
  }

  // Trickle writes ISO-8601; older CoreScope rows carry "YYYY-MM-DD HH:MM:SS" in UTC.
  function parseTime(text) {
    if (typeof text !== "string" || text === "") return null;
    var iso = /^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}/.test(text) ? text.replace(" ", "T") + "Z" : text;
    var ms = Date.parse(iso);
    return Number.isFinite(ms) ? ms : null;
  }

  function failedVisible(item, now) {
    if (dismissed.has(String(item.name))) return false;
    var ended = parseTime(item.endedAt);
    // No readable end time: keep showing it rather than hide a failure we cannot date (fail closed).
    return ended === null || now - ended < FAILED_AUTO_DISMISS_MS;
  }

  function linesFor(health, error) {
    var lines = [];
    var steady = true;
    if (error || !health || typeof health !== "object") {
      return { steady: false, lines: [{ kind: "unavailable", text: "Background migration status unavailable \u2014 data may be incomplete." }] };
    }
    if (health.async_migrations_error) {
      steady = false;
      lines.push({ kind: "unavailable", text: "Background migration status unavailable \u2014 data may be incomplete." });
    }
    // trickle answers ready:false together with async_migrations_error; one "unavailable" line says it all.
    if (health.ready === false && !health.async_migrations_error) {
      steady = false;
      lines.push({ kind: "loading", text: "\u23f3 Loading historical data \u2014 counts may be incomplete." });
    }
    var items = Array.isArray(health.async_migrations) ? health.async_migrations : [];
    var now = Date.now();
    var runningLines = 0;
    items.forEach(function (item) {
      if (!item || typeof item !== "object") return;
      var name = String(item.name);
      if (item.status === "running") {
        runningLines++;
        lines.push({
          kind: "running",
          name: name,
          text: "Migration " + name + ": " + count(item.rowsProcessed) + " / " + count(item.rowsTotal) +
            " rows (" + percent(item) + "%, ETA " + eta(item) + ")",
        });
      } else if (item.status === "failed" && failedVisible(item, now)) {
        steady = false;
        lines.push({
          kind: "failed",
          name: name,
          text: "Migration " + name + " FAILED: " + (item.errorMessage ? String(item.errorMessage) : "unknown error"),
        });
      }
    });
    if (health.async_migrations_running === true) {
      steady = false;
      if (runningLines === 0 && !health.async_migrations_error)
        lines.push({ kind: "running", text: "Background migrations in progress \u2014 data may be incomplete." });
    }
    return { steady: steady, lines: lines };
  }

  function render() {
    if (!document.body) return;
    var view = linesFor(last && last.health, last && last.error);
    ensureRoot();
    list.replaceChildren();
    view.lines.forEach(function (line) {
      var li = document.createElement("li");
      li.setAttribute("data-kind", line.kind);
      if (line.name) li.setAttribute("data-name", line.name);
      var span = document.createElement("span");
      span.textContent = line.text;
      li.appendChild(span);
      if (line.kind === "failed") {
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = "\u00d7";
        button.setAttribute("aria-label", "Dismiss failure of " + line.name);
        button.addEventListener("click", function () {
          dismissed.add(line.name);
          render();
        });
        li.appendChild(button);
      }
      list.appendChild(li);
    });
    root.hidden = view.lines.length === 0;
    if (view.steady) stop();
  }

  function stop() {
    stopped = true;
    clearTimeout(timer);
    timer = null;
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (!stopped && !document.hidden) timer = setTimeout(poll, intervalMs);
  }

  function poll() {
    if (inFlight || stopped) return;
    inFlight = true;
    fetch(healthUrl, { headers: { accept: "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (res) {
        return res.json().then(function (body) {
          if (!body || typeof body !== "object") throw new Error("healthz: HTTP " + res.status);
          return body;
        });
      })
      .then(
        function (health) { last = { health: health, error: null }; },
        function (error) { last = { health: null, error: error && error.message ? error.message : "unreadable" }; },
      )
      .then(function () {
        inFlight = false;
        render();
        schedule();
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (stopped) return;
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else {
      poll();
    }
  });

  window.TrickleWarmupBanner = Object.freeze({
    intervalMs: intervalMs,
    healthUrl: healthUrl,
    /** Polls now (also after a stop, e.g. when the page knows a migration was started). */
    refresh: function () { stopped = false; poll(); },
    stop: stop,
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", poll);
  else poll();
})();
`;
