/**
 * The status page and the warm-up banner in a real browser (Debian's chromium driven by playwright-core; no
 * browser download) against real servers: `src/node.ts` child processes serving CoreScope databases that the
 * CLI seeded, backfilling while the page watches.
 *
 * - The status page shows the migration's progress bar rising while the backfill runs and ends at done/100%,
 *   matching the database; screenshots are taken on a desktop and a phone-sized viewport.
 * - The banner (included twice, one namespace) shows a progress line while the backfill runs, then hides and
 *   stops polling in steady state.
 * - A failed migration shows a dismissible FAILED line (data rendered as text, never as HTML), is
 *   auto-dismissed 10 min after `endedAt`, and stays when `endedAt` cannot be read.
 * - When healthz cannot be fetched the banner stays up with a neutral line and keeps polling.
 * - No page requests anything from another origin.
 *
 * Screenshots go to the test's temp directory (kept when a test fails or KEEP_BROWSER_ARTIFACTS=1; the path is
 * printed). The running page's content is copied to docs/status-page.png for the README when that file is
 * missing or when UPDATE_SCREENSHOTS=1, so ordinary test runs leave the work tree unchanged.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WARMUP_BANNER_JS } from "../src/ui/warmup-banner.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TSX = join(ROOT, "node_modules", ".bin", "tsx");
const MIGRATION = "tx_last_seen_backfill_v1";
const BANNER_INTERVAL_MS = 300;
const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };
// Small steps with long pauses between them stretch the backfill of the seeded database over several
// seconds, long enough for the page to show it moving. However fast the machine, a step may grow only 32× after
// the first one (100 keys) and 2× after each later one, so the 36,000 rows to backfill take at least five steps
// (100, 3,200, 6,400, 12,800, the rest), and the page sees each value for at least the pause after its step.
// (With 7,200 rows a fast machine needed three steps, and the page saw one value between 0 and 100.)
const SLOW_BACKFILL_ENV = {
  TRICKLE_STEP_TARGET_MS: "10",
  TRICKLE_YIELD_MS: "500",
  TRICKLE_SLICE_BUDGET_MS: "1000",
  TRICKLE_TICK_MS: "100",
  TRICKLE_SNAPSHOT_TTL_MS: "200",
};

let work = "";
let context: BrowserContext | undefined;
const externalRequests: string[] = [];
const pageErrors: string[] = [];
const servers: Server[] = [];
let seededDb = "";
let failed = false;

// ---------------------------------------------------------------------------------------------------------
// child processes

interface Server {
  readonly url: string;
  readonly databaseUrl: string;
  output(): string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** The environment of a child: this one's, minus anything that could change the service's behaviour. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) {
    if (
      key.startsWith("TRICKLE_") ||
      ["ADMIN_TOKEN", "CRON_SECRET", "DATABASE_AUTH_TOKEN", "PORT"].includes(key)
    )
      delete env[key];
  }
  return { ...env, ...extra };
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
}

async function seed(databaseUrl: string): Promise<void> {
  const child = spawn(
    TSX,
    ["src/cli/main.ts", "seed", "--transmissions", "40000", "--observations", "80000"],
    { cwd: ROOT, env: childEnv({ DATABASE_URL: databaseUrl }), stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const code = await exitOf(child);
  if (code !== 0) throw new Error(`seed exited with ${code}:\n${output}`);
}

async function startServer(databaseUrl: string, extraEnv: Record<string, string> = {}): Promise<Server> {
  const port = await freePort();
  // Its own process group, so stopping it also stops the node process tsx starts.
  const child = spawn(TSX, ["src/node.ts"], {
    cwd: ROOT,
    env: childEnv({ PORT: String(port), DATABASE_URL: databaseUrl, ...extraEnv }),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  const collect = (d: Buffer) => {
    output = (output + d.toString()).slice(-20_000);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exited = exitOf(child);
  const url = `http://127.0.0.1:${port}`;
  const server: Server = {
    url,
    databaseUrl,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      process.kill(-child.pid, "SIGTERM");
      const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 10_000));
      if ((await Promise.race([exited, timeout])) === "timeout") {
        process.kill(-child.pid, "SIGKILL");
        await exited;
      }
    },
  };
  servers.push(server);

  const deadline = Date.now() + 30_000;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`src/node.ts exited with ${child.exitCode}:\n${output}`);
    try {
      const res = await fetch(`${url}/api/healthz`);
      if (res.ok) return server;
      last = `HTTP ${res.status}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await sleep(100);
  }
  await server.stop();
  throw new Error(`src/node.ts did not answer /api/healthz within 30 s (${last}):\n${output}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

interface HealthItem {
  readonly name: string;
  readonly status: string;
  readonly endedAt: string | null;
}

async function healthItem(server: Server): Promise<HealthItem | undefined> {
  const res = await fetch(`${server.url}/api/healthz`);
  const body = (await res.json()) as { async_migrations?: HealthItem[] };
  return body.async_migrations?.find((m) => m.name === MIGRATION);
}

/** Waits until the server reports what `accept` wants (its snapshot cache may still hold an older state). */
async function waitForHealth(
  server: Server,
  accept: (item: HealthItem | undefined) => boolean,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  let item: HealthItem | undefined;
  while (Date.now() < deadline) {
    item = await healthItem(server);
    if (accept(item)) return;
    await sleep(100);
  }
  throw new Error(`server never reported the expected state; last: ${JSON.stringify(item)}`);
}

/** Writes `_async_migrations` directly, as an operator or an older version could. */
async function updateStateRow(databaseUrl: string, assignments: string): Promise<void> {
  const client = createClient({ url: databaseUrl, intMode: "bigint" });
  try {
    const result = await client.execute({
      sql: `UPDATE _async_migrations SET ${assignments} WHERE name = ?`,
      args: [MIGRATION],
    });
    expect(result.rowsAffected).toBe(1);
  } finally {
    client.close();
  }
}

async function stateRow(databaseUrl: string): Promise<{ status: string; processed: string; total: string }> {
  const client = createClient({ url: databaseUrl, intMode: "bigint" });
  try {
    const result = await client.execute({
      sql: "SELECT status, CAST(rows_processed AS TEXT) AS p, CAST(rows_total AS TEXT) AS t FROM _async_migrations WHERE name = ?",
      args: [MIGRATION],
    });
    const row = result.rows[0];
    if (!row) throw new Error(`no _async_migrations row for ${MIGRATION}`);
    return { status: String(row.status), processed: String(row.p), total: String(row.t) };
  } finally {
    client.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// browser

async function newPage(viewport: { width: number; height: number }): Promise<Page> {
  if (!context) throw new Error("browser not started");
  const page = await context.newPage();
  await page.setViewportSize(viewport);
  page.on("pageerror", (error) => {
    pageErrors.push(`${page.url()}: ${error.message}`);
  });
  return page;
}

/** A page of some application on the server's origin that includes the banner (twice, as a careless page might). */
function bannerHostHtml(title: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${title}</title>
<script src="/warmup-banner.js" data-interval-ms="${BANNER_INTERVAL_MS}"></script></head>
<body><h1>${title}</h1><p>Some application content.</p>
<script src="/warmup-banner.js" data-interval-ms="${BANNER_INTERVAL_MS}"></script></body></html>`;
}

/** Serves `bannerHostHtml` at `path` on `origin` from the test; everything else goes to the real server. */
async function openBannerHost(page: Page, origin: string, path = "/banner-host.html"): Promise<void> {
  await page.route(`${origin}${path}`, (route) =>
    route.fulfill({ contentType: "text/html; charset=utf-8", body: bannerHostHtml("Banner host") }),
  );
  await page.goto(`${origin}${path}`);
}

function screenshotPath(name: string): string {
  return join(work, "screenshots", `${name}.png`);
}

// ---------------------------------------------------------------------------------------------------------

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}. Install Debian's chromium (apt-get install --no-install-recommends chromium; ` +
        ".ci/run does this) or set CHROMIUM_PATH. The browser test is never skipped.",
    );
  }
  if (!existsSync(join(ROOT, "src", "node.ts")))
    throw new Error("src/node.ts (the Node entry) does not exist yet");
  work = mkdtempSync(join(tmpdir(), "trickle-browser-"));
  mkdirSync(join(work, "screenshots"));
  seededDb = join(work, "seeded.db");
  await seed(`file:${seededDb}`);

  context = await chromium.launchPersistentContext(join(work, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: DESKTOP,
  });
  // Everything the pages need comes from the server's own origin; record and refuse anything else.
  await context.route(
    (url) => url.hostname !== "127.0.0.1",
    (route) => {
      externalRequests.push(route.request().url());
      return route.abort();
    },
  );
}, 60_000);

afterAll(async () => {
  await context?.close();
  for (const server of servers) await server.stop();
  if (work && !failed && process.env.KEEP_BROWSER_ARTIFACTS !== "1")
    rmSync(work, { recursive: true, force: true });
  else if (work) console.log(`browser test files kept in ${work}`);
});

describe("in headless Chromium", () => {
  let live: Server;

  beforeAll(async () => {
    // A copy of the seeded database, so the later tests start from a database that has not been backfilled.
    copyFileSync(seededDb, join(work, "live.db"));
    live = await startServer(`file:${join(work, "live.db")}`, SLOW_BACKFILL_ENV);
  }, 60_000);

  it("the status page and the banner follow a real backfill to the end", async () => {
    try {
      const desktop = await newPage(DESKTOP);
      const phone = await newPage(PHONE);
      const banner = await newPage(DESKTOP);
      const bannerPolls: number[] = [];
      banner.on("request", (request) => {
        if (new URL(request.url()).pathname === "/api/healthz") bannerPolls.push(Date.now());
      });
      // A pending migration is not running (it may wait for tables forever), so the banner would rightly
      // stay hidden; open the pages once the run has started.
      await waitForHealth(live, (m) => m?.status === "running");
      await Promise.all([
        desktop.goto(`${live.url}/`),
        phone.goto(`${live.url}/`),
        openBannerHost(banner, live.url),
      ]);

      const card = desktop.locator(`article[data-name="${MIGRATION}"]`);
      const bar = card.getByRole("progressbar");
      await expect.poll(() => bar.count(), { timeout: 10_000 }).toBe(1);

      // The banner: one instance, one global, a progress line in the documented format.
      const root = banner.locator("#trickle-warmup-banner");
      const runningLine = root.locator('li[data-kind="running"]');
      // The banner re-renders on every poll, so read the line's text in the same breath as finding it.
      const lineText = async () =>
        (await runningLine.count())
          ? ((await runningLine
              .first()
              .textContent({ timeout: 1_000 })
              .catch(() => null)) ?? "")
          : "";
      let firstBannerLine = "";
      await expect
        .poll(
          async () => {
            firstBannerLine = await lineText();
            return firstBannerLine !== "";
          },
          { timeout: 10_000 },
        )
        .toBe(true);
      expect(await root.count()).toBe(1);
      expect(await root.getAttribute("aria-live")).toBe("polite");
      expect(await banner.evaluate(() => window.TrickleWarmupBanner?.intervalMs)).toBe(BANNER_INTERVAL_MS);
      expect(firstBannerLine).toMatch(
        new RegExp(
          // A single estimate, or the p10–p90 band once enough slices were seen (`ETA 3m–5m`).
          `^Migration ${MIGRATION}: \\d+ / \\d+ rows \\(\\d+(\\.\\d)?%, ETA (\\d+[hms]( \\d+[ms])?(\u2013\\d+[hms]( \\d+[ms])?)?|unknown)\\)$`,
        ),
      );
      await banner.screenshot({ path: screenshotPath("banner-running"), animations: "disabled" });

      // Sample the page's progress bar until the migration is done.
      const values: number[] = [];
      const bannerLines = new Set<string>([firstBannerLine]);
      let midRunShot = false;
      // Sized by progress, not by the clock: the page may take as long as the machine needs, as long as the bar
      // keeps moving (a stall of 30 s fails the test).
      let deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const status = await card.getAttribute("data-status");
        const value = Number(await bar.getAttribute("aria-valuenow"));
        if (values.length === 0 || values[values.length - 1] !== value) {
          values.push(value);
          deadline = Date.now() + 30_000;
        }
        const line = await lineText();
        if (line) bannerLines.add(line);
        // The screenshots take seconds on a loaded machine, and the backfill goes on meanwhile: they wait until
        // the bar has been seen moving (two values between 0 and 100), or the run could end while they are taken.
        const moving = values.filter((v) => v > 0 && v < 100).length >= 2;
        if (!midRunShot && moving && status === "running" && value >= 10 && value <= 90) {
          midRunShot = true;
          await desktop.screenshot({
            path: screenshotPath("status-desktop-running"),
            fullPage: true,
            animations: "disabled",
          });
          await phone.screenshot({
            path: screenshotPath("status-phone-running"),
            fullPage: true,
            animations: "disabled",
          });
          // The page's content without the empty viewport below it, for the README.
          await desktop
            .locator("main")
            .screenshot({ path: screenshotPath("status-readme"), animations: "disabled" });
        }
        if (status === "done") break;
        await sleep(150);
      }
      expect(await card.getAttribute("data-status"), `progress seen: ${values.join(", ")}`).toBe("done");

      // The bar rose over time and never went backwards.
      expect(
        values.filter((v) => v > 0 && v < 100).length,
        `progress seen: ${values.join(", ")}`,
      ).toBeGreaterThanOrEqual(2);
      for (let i = 1; i < values.length; i++) expect(values[i]).toBeGreaterThanOrEqual(values[i - 1] ?? 0);
      expect(midRunShot).toBe(true);

      // Done: 100%, the numbers the database holds, steady state.
      expect(await bar.getAttribute("aria-valuenow")).toBe("100.0");
      expect(await card.locator(".pct").textContent()).toBe("100%");
      expect(await card.locator(".badge").textContent()).toBe("done");
      const row = await stateRow(live.databaseUrl);
      expect(row.status).toBe("done");
      const grouped = (digits: string) => digits.replace(/\B(?=(\d{3})+$)/g, ",");
      expect(await card.locator(".rows").textContent()).toBe(
        `${grouped(row.processed)} / ${grouped(row.total)} rows`,
      );
      await expect
        .poll(() => desktop.locator("#overall").textContent(), { timeout: 10_000 })
        .toBe("Steady state");
      await expect
        .poll(() => phone.locator(`article[data-name="${MIGRATION}"] .pct`).textContent())
        .toBe("100%");
      await desktop.screenshot({
        path: screenshotPath("status-desktop-done"),
        fullPage: true,
        animations: "disabled",
      });
      await phone.screenshot({
        path: screenshotPath("status-phone-done"),
        fullPage: true,
        animations: "disabled",
      });

      // The banner moved with the backfill, then hid and stopped polling.
      expect(bannerLines.size).toBeGreaterThanOrEqual(2);
      await expect.poll(() => root.isHidden(), { timeout: 10_000 }).toBe(true);
      expect(await root.locator("li").count()).toBe(0);
      const pollsAtRest = bannerPolls.length;
      await sleep(BANNER_INTERVAL_MS * 6);
      expect(bannerPolls.length).toBe(pollsAtRest);

      // Only one global: compare with a page of the same origin without the banner.
      await banner.route(`${live.url}/plain.html`, (route) =>
        route.fulfill({ contentType: "text/html", body: "<!doctype html><title>plain</title><p>plain</p>" }),
      );
      await banner.goto(`${live.url}/banner-host.html`);
      await expect.poll(() => banner.evaluate(() => typeof window.TrickleWarmupBanner)).toBe("object");
      const withBanner = await banner.evaluate(() => Object.getOwnPropertyNames(window));
      await banner.goto(`${live.url}/plain.html`);
      const without = new Set(await banner.evaluate(() => Object.getOwnPropertyNames(window)));
      expect(withBanner.filter((n) => !without.has(n))).toEqual(["TrickleWarmupBanner"]);

      if (!existsSync(join(ROOT, "docs", "status-page.png")) || process.env.UPDATE_SCREENSHOTS === "1") {
        mkdirSync(join(ROOT, "docs"), { recursive: true });
        copyFileSync(screenshotPath("status-readme"), join(ROOT, "docs", "status-page.png"));
      }
      console.log(`browser test screenshots: ${join(work, "screenshots")}`);
      expect(pageErrors).toEqual([]);
    } catch (error) {
      failed = true;
      throw new Error(`${(error as Error).message}\n--- server output ---\n${live.output()}`, {
        cause: error,
      });
    }
  }, 240_000);

  it("a failed migration shows a dismissible FAILED line, auto-dismissed 10 min after endedAt", async () => {
    try {
      // The backfilled database, its migration marked failed with markup in the message.
      await live.stop();
      await updateStateRow(
        live.databaseUrl,
        "status = 'failed', error = 'boom <b>bold</b>', ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
      );
      const server = await startServer(live.databaseUrl);
      await waitForHealth(server, (m) => m?.status === "failed");

      const page = await newPage(DESKTOP);
      await openBannerHost(page, server.url);
      const root = page.locator("#trickle-warmup-banner");
      const failedLine = root.locator('li[data-kind="failed"]');
      await expect.poll(() => failedLine.count(), { timeout: 10_000 }).toBe(1);
      expect(await root.isVisible()).toBe(true);
      expect(await failedLine.locator("span").textContent()).toBe(
        `Migration ${MIGRATION} FAILED: boom <b>bold</b>`,
      );
      expect(await root.locator("b").count()).toBe(0);
      await page.screenshot({ path: screenshotPath("banner-failed"), animations: "disabled" });

      // The × dismisses it for the life of the page; nothing else is left, so the banner hides.
      await failedLine.getByRole("button", { name: `Dismiss failure of ${MIGRATION}` }).click();
      await expect.poll(() => root.isHidden()).toBe(true);
      expect(await failedLine.count()).toBe(0);
      await page.reload();
      await expect.poll(() => failedLine.count(), { timeout: 10_000 }).toBe(1);

      // The status page shows the failure, as text.
      const status = await newPage(PHONE);
      await status.goto(`${server.url}/`);
      const card = status.locator(`article[data-name="${MIGRATION}"]`);
      await expect.poll(() => card.getAttribute("data-status"), { timeout: 10_000 }).toBe("failed");
      // The message as text (markup not parsed), and what to do next.
      expect(await card.locator(".note").textContent()).toBe(
        `Last error: boom <b>bold</b> — fix the cause, then Retry. Rows skipped as poison rows: trickle failures ${MIGRATION}.`,
      );
      expect(await card.locator('button[data-action="retry"]').isVisible()).toBe(true);
      expect(await card.locator("b", { hasText: "bold" }).count()).toBe(0);
      expect(await status.locator("#overall").textContent()).toBe("Failed");
      await status.screenshot({
        path: screenshotPath("status-phone-failed"),
        fullPage: true,
        animations: "disabled",
      });

      // Ended 11 minutes ago: auto-dismissed, so nothing shows and polling stops.
      await updateStateRow(
        live.databaseUrl,
        "ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-11 minutes')",
      );
      await waitForHealth(
        server,
        (m) => m?.status === "failed" && Date.now() - Date.parse(m.endedAt ?? "") > 600_000,
      );
      await page.reload();
      await expect.poll(() => root.count(), { timeout: 10_000 }).toBe(1);
      expect(await root.isHidden()).toBe(true);
      expect(await root.locator("li").count()).toBe(0);

      // An end time that cannot be read never auto-dismisses (fail closed); neither does a missing one.
      for (const [sql, endedAt] of [
        ["'not a time'", "not a time"],
        ["NULL", null],
      ] as const) {
        await updateStateRow(live.databaseUrl, `ended_at = ${sql}`);
        await waitForHealth(server, (m) => m?.status === "failed" && m.endedAt === endedAt);
        await page.reload();
        await expect.poll(() => failedLine.count(), { timeout: 10_000 }).toBe(1);
        expect(await root.isVisible()).toBe(true);
      }
      expect(pageErrors).toEqual([]);
      await server.stop();
    } catch (error) {
      failed = true;
      throw error;
    }
  }, 60_000);

  it("keeps the banner up with a neutral line while healthz cannot be fetched", async () => {
    try {
      // Nothing listens on this origin; the test serves the page and the script, healthz fails for real.
      const origin = `http://127.0.0.1:${await freePort()}`;
      const page = await newPage(PHONE);
      const failedPolls: string[] = [];
      page.on("requestfailed", (request) => {
        if (new URL(request.url()).pathname === "/api/healthz") failedPolls.push(request.url());
      });
      await page.route(`${origin}/warmup-banner.js`, (route) =>
        route.fulfill({ contentType: "text/javascript; charset=utf-8", body: WARMUP_BANNER_JS }),
      );
      await openBannerHost(page, origin);
      const root = page.locator("#trickle-warmup-banner");
      const line = root.locator('li[data-kind="unavailable"]');
      await expect.poll(() => line.count(), { timeout: 10_000 }).toBe(1);
      expect(await line.textContent()).toMatch(/status unavailable/);
      expect(await root.isVisible()).toBe(true);
      // Still polling: it fails closed instead of giving up.
      await expect.poll(() => failedPolls.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
      expect(await root.isVisible()).toBe(true);
      await page.screenshot({ path: screenshotPath("banner-unavailable-phone"), animations: "disabled" });
      expect(externalRequests).toEqual([]);
      expect(pageErrors).toEqual([]);
    } catch (error) {
      failed = true;
      throw error;
    }
  }, 30_000);
});

describe("the status page's controls", () => {
  const TOKEN = "status-page-admin-token-0123456789";

  it("pause, resume and tune from the page with the admin token kept in session storage only", async () => {
    copyFileSync(seededDb, join(work, "controls.db"));
    // A fleet of two: this database and one that is listed but missing.
    const fleetFile = join(work, "fleet.txt");
    writeFileSync(fleetFile, `file:${join(work, "controls.db")}\nfile:${join(work, "missing-tenant.db")}\n`);
    const server = await startServer(`file:${join(work, "controls.db")}`, {
      ...SLOW_BACKFILL_ENV,
      ADMIN_TOKEN: TOKEN,
      TRICKLE_FLEET_DATABASES: fleetFile,
      // A probe the application might run, with a limit it stays under: the page draws its latency.
      TRICKLE_PROBE_SQL: "SELECT COUNT(*) FROM transmissions WHERE last_seen > 0",
      TRICKLE_PROBE_MAX_MS: "60000",
      TRICKLE_PROBE_EVERY_MS: "0",
    });
    try {
      await waitForHealth(server, (m) => m?.status === "running");
      const page = await newPage(DESKTOP);
      const controlRequests: string[] = [];
      page.on("request", (request) => {
        if (new URL(request.url()).pathname.startsWith("/api/migrations"))
          controlRequests.push(request.url());
      });
      await page.goto(`${server.url}/`);
      const card = page.locator(`article[data-name="${MIGRATION}"]`);
      const answer = card.locator(".answer");
      await expect.poll(() => card.getAttribute("data-status"), { timeout: 15_000 }).toBe("running");
      // The fleet section: the counts, and the tenant that is not there, with its reason.
      const fleet = page.locator("#fleet");
      await expect.poll(() => fleet.isVisible(), { timeout: 15_000 }).toBe(true);
      expect(await fleet.locator(".summary").textContent()).toMatch(/^2 tenants: 0 done, .*1 unreachable/);
      expect(await fleet.locator('li[data-status="unreachable"]').textContent()).toContain(
        "missing-tenant.db",
      );

      // A running migration offers Pause and Cancel, not Resume or Retry.
      expect(await card.locator('button[data-action="pause"]').isVisible()).toBe(true);
      expect(await card.locator('button[data-action="resume"]').isVisible()).toBe(false);
      expect(await card.locator('button[data-action="retry"]').isVisible()).toBe(false);

      // Without the token nothing is sent; the page says what is missing.
      await card.locator('button[data-action="pause"]').click();
      expect(await answer.textContent()).toMatch(/Enter the admin token/);
      expect(controlRequests).toEqual([]);

      // A wrong token: the API's answer, shown on the card.
      await page.fill("#token", "not-the-token");
      await page.click('#token-form button[type="submit"]');
      await card.locator('button[data-action="pause"]').click();
      await expect.poll(() => answer.textContent(), { timeout: 10_000 }).toMatch(/check the admin token/);
      expect(await answer.getAttribute("data-ok")).toBe("false");
      expect((await stateRow(server.databaseUrl)).status).toBe("running");

      await page.click("#forget");
      await page.fill("#token", TOKEN);
      await page.click('#token-form button[type="submit"]');
      expect(await page.locator("#token").inputValue()).toBe("");
      expect(await page.evaluate(() => sessionStorage.getItem("trickle.adminToken"))).toBe(TOKEN);
      expect(await page.evaluate(() => localStorage.length)).toBe(0);
      expect(await page.evaluate(() => document.cookie)).toBe("");

      await card.locator('button[data-action="pause"]').click();
      await expect.poll(() => answer.textContent(), { timeout: 10_000 }).toBe("Pause: running \u2192 paused");
      await expect.poll(() => card.getAttribute("data-status"), { timeout: 10_000 }).toBe("paused");
      expect((await stateRow(server.databaseUrl)).status).toBe("paused");
      // Paused, the run's elapsed time still shows (it used to read 0 s), with a time zone on every time.
      const elapsed = card.locator('[data-field="elapsed"] dd');
      expect(await elapsed.textContent()).not.toMatch(/^0 s$|^—$/);
      expect(await card.locator('[data-field="started"] dd').textContent()).toMatch(/[A-Z]{2,}|GMT|UTC/);
      expect(await card.locator('button[data-action="resume"]').isVisible()).toBe(true);
      expect(await card.locator('button[data-action="pause"]').isVisible()).toBe(false);
      await page.screenshot({
        path: screenshotPath("status-controls-paused"),
        fullPage: true,
        animations: "disabled",
      });

      await card.locator('input[name="stepTargetMs"]').fill("20");
      await card.locator('button[data-action="tune"]').click();
      await expect
        .poll(() => answer.textContent(), { timeout: 10_000 })
        .toMatch(/^Tuned .*"stepTargetMs":20/);

      await card.locator('button[data-action="resume"]').click();
      await expect.poll(() => card.getAttribute("data-status"), { timeout: 10_000 }).not.toBe("paused");

      // The charts: the last steps' durations against the target, and rows per second within each step.
      const durations = card.locator(".chart polyline").first();
      await expect
        .poll(
          async () => ((await durations.getAttribute("points")) ?? "").split(" ").filter(Boolean).length,
          {
            timeout: 30_000,
          },
        )
        .toBeGreaterThanOrEqual(2);
      expect(await card.locator(".chart .caption").first().textContent()).toMatch(
        /^\d+ steps: p50 [\d.,]+ ms, max [\d.,]+ ms \(target 10 ms\)$/,
      );
      expect(await card.locator(".chart line").first().getAttribute("y1")).toMatch(/^\d+(\.\d)?$/);
      // The probe's latency against its limit.
      const probeChart = card.locator(".chart").nth(2);
      await expect.poll(() => probeChart.isVisible(), { timeout: 30_000 }).toBe(true);
      expect(await probeChart.locator(".caption").textContent()).toMatch(
        /^\d+ probes: last [\d.,]+ ms, max [\d.,]+ ms \(limit 60,000 ms\)$/,
      );

      // The token went into Authorization headers only: never a URL, never the server's output.
      expect(controlRequests.filter((url) => url.includes(TOKEN))).toEqual([]);
      expect(controlRequests.length).toBeGreaterThanOrEqual(4);
      expect(server.output()).not.toContain(TOKEN);
      expect(pageErrors).toEqual([]);
    } catch (error) {
      failed = true;
      throw new Error(`${(error as Error).message}\n--- server output ---\n${server.output()}`, {
        cause: error,
      });
    } finally {
      await server.stop();
    }
  }, 120_000);
});

declare global {
  interface Window {
    TrickleWarmupBanner?: { readonly intervalMs: number };
  }
}
