/**
 * The CoreScope drop-in (design.md): every migration item the read routes serve carries both field spellings —
 * the seed PR #1725's (`rate`, `etaSeconds`, `elapsedSeconds`) and its re-cut #1735's (`ratePerSec`, `etaSec`,
 * `elapsedSec`) — and `GET /api/perf/async-migrations` serves the bare list #1735's clients read.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type Harness, startHarness, TX } from "../fixtures/server-harness.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

const SPELLINGS = [
  ["rate", "ratePerSec"],
  ["etaSeconds", "etaSec"],
  ["elapsedSeconds", "elapsedSec"],
] as const;

describe("CoreScope's field names", () => {
  it("are on every item of /api/healthz, /api/perf, /api/perf/async-migrations and /api/migrations, with equal values", async () => {
    h = await startHarness({ env: { TRICKLE_SNAPSHOT_TTL_MS: "0" } });
    await h.service.tick();
    const health = (await (await h.request("GET", "/api/healthz", { token: null })).json()) as {
      async_migrations: Record<string, unknown>[];
    };
    const perf = (await (await h.request("GET", "/api/perf", { token: null })).json()) as {
      asyncMigrations: Record<string, unknown>[];
    };
    const bare = await h.request("GET", "/api/perf/async-migrations", { token: null });
    expect(bare.status).toBe(200);
    const list = (await bare.json()) as Record<string, unknown>[];
    expect(Array.isArray(list)).toBe(true);
    const admin = (await (await h.request("GET", "/api/migrations")).json()) as {
      migrations: Record<string, unknown>[];
    };
    for (const items of [health.async_migrations, perf.asyncMigrations, list, admin.migrations]) {
      expect(items.map((m) => m.name)).toEqual([TX]);
      for (const item of items)
        for (const [seed, recut] of SPELLINGS) {
          expect(item).toHaveProperty(seed);
          expect(item[recut]).toEqual(item[seed]);
        }
    }
  });
});

/** `_async_migrations` as CoreScope's ingestor creates it: five columns, `datetime('now')` times. */
const CORESCOPE_STATE_TABLE = `CREATE TABLE _async_migrations (name TEXT PRIMARY KEY, status TEXT NOT NULL,
  started_at TEXT NOT NULL DEFAULT (datetime('now')), ended_at TEXT, error TEXT)`;
/** trickle's backfill as CoreScope's boot code leaves it before it ran: `pending_async`. */
const PENDING_ASYNC_TX = `INSERT INTO _async_migrations (name, status) VALUES ('${TX}', 'pending_async')`;

describe("rows CoreScope's Go code wrote", () => {
  it("are adopted where trickle runs them and shown read-only where it does not, failures included", async () => {
    h = await startHarness({
      env: { TRICKLE_SNAPSHOT_TTL_MS: "0" },
      transmissions: 300,
      // The table as CoreScope's ingestor creates and writes it: five columns, `datetime('now')` times.
      prepare: async (client) => {
        await client.batch(
          [
            CORESCOPE_STATE_TABLE,
            PENDING_ASYNC_TX,
            `INSERT INTO _async_migrations (name, status, ended_at, error)
               VALUES ('from_pubkey_backfill_v1', 'failed', datetime('now'), 'boom: disk I/O error')`,
            `INSERT INTO _async_migrations (name, status, ended_at)
               VALUES ('obs_observer_ts_idx_v1', 'done', datetime('now'))`,
          ],
          "write",
        );
      },
    });
    const health = (await (await h.request("GET", "/api/healthz", { token: null })).json()) as {
      async_migrations: Record<string, unknown>[];
      async_migrations_running: boolean;
    };
    const perf = (await (await h.request("GET", "/api/perf", { token: null })).json()) as {
      asyncMigrations: Record<string, unknown>[];
    };
    for (const items of [health.async_migrations, perf.asyncMigrations]) {
      expect(items.map((m) => m.name)).toEqual([TX, "from_pubkey_backfill_v1", "obs_observer_ts_idx_v1"]);
      // Adopted at start-up: CoreScope's pending_async is trickle's pending run.
      expect(items[0]).toMatchObject({ owned: true, status: "pending" });
      // Not trickle's: shown as CoreScope left them, the failure with its message.
      expect(items[1]).toMatchObject({
        owned: false,
        status: "failed",
        errorMessage: "boom: disk I/O error",
      });
      expect(items[2]).toMatchObject({ owned: false, status: "done", errorMessage: null });
      // CoreScope's UTC times without a zone are read as UTC: a sane, non-negative elapsed time.
      expect(Number(items[1]?.elapsedSeconds)).toBeGreaterThanOrEqual(0);
      expect(Number(items[1]?.elapsedSeconds)).toBeLessThan(3600);
    }
    // Only trickle's own run keeps the banner up; once it is done, a foreign failure does not pin it.
    expect(health.async_migrations_running).toBe(true);
    while ((await h.service.tick()).moreWork) {}
    const after = (await (await h.request("GET", "/api/healthz", { token: null })).json()) as {
      async_migrations_running: boolean;
      async_migrations: Record<string, unknown>[];
    };
    expect(after.async_migrations[0]).toMatchObject({ status: "done" });
    expect(after.async_migrations_running).toBe(false);
    // The control API manages trickle's own migrations only.
    expect((await h.request("POST", "/api/migrations/from_pubkey_backfill_v1/retry")).status).toBe(404);
  });
});

/**
 * CoreScope #1735's Go reader, as corescope-facts §3 describes it: it reads `_async_migrations` itself and maps
 * `pending_async` to running, `done` and `failed` to themselves, anything else to unknown. Its boot code re-runs
 * the one-shot statement for any row that is not `done`.
 */
function coreScopeReaderStatus(stored: string): "running" | "done" | "failed" | "unknown" {
  if (stored === "pending_async") return "running";
  return stored === "done" || stored === "failed" ? stored : "unknown";
}

describe("CoreScope's own reader on the table trickle keeps", () => {
  it("never sees pending_async from trickle (its boot would re-run the one-shot) and sees done at the end", async () => {
    h = await startHarness({
      env: { TRICKLE_SNAPSHOT_TTL_MS: "0" },
      transmissions: 2000,
      prepare: async (client) => {
        await client.batch([CORESCOPE_STATE_TABLE, PENDING_ASYNC_TX], "write");
      },
    });
    expect((await h.service.controls.tune(TX, { initialBatch: 100, maxBatch: 100 })).status).toBe("ok");
    const stored: string[] = [];
    const read = async () => {
      const r = await h!.client.execute({
        sql: "SELECT status FROM _async_migrations WHERE name = ?",
        args: [TX],
      });
      stored.push(String(r.rows[0]?.status));
    };
    await read();
    while ((await h.service.tick(100)).moreWork) await read();
    await read();

    // What trickle wrote while it worked: its own words, never CoreScope's pending_async.
    expect(stored).not.toContain("pending_async");
    expect(new Set(stored)).toEqual(new Set(["pending", "running", "done"]));
    // So CoreScope's reader shows the run as unknown while trickle works (its banner must come from trickle,
    // docs/corescope.md), and done at the end, which its boot code skips.
    expect(new Set(stored.slice(0, -1).map(coreScopeReaderStatus))).toEqual(new Set(["unknown"]));
    expect(coreScopeReaderStatus(stored.at(-1)!)).toBe("done");
  });
});

/** What CoreScope #1735's warm-up banner reads of `/api/healthz`, and nothing more (corescope-facts §3). */
interface Pr1735Health {
  ready?: boolean;
  async_migrations_running?: boolean;
  async_migrations?: {
    name: string;
    status: string;
    rowsProcessed: number;
    rowsTotal: number;
    etaSec?: number | null;
    errorMessage?: string | null;
    endedAt?: string | null;
  }[];
}

/**
 * A minimal client written from #1735's field list: one line per running migration with its ETA from `etaSec`,
 * one per failed migration that ended less than 10 minutes ago, and hidden in steady state (`ready`, nothing
 * running, no visible failure).
 */
function pr1735Banner(health: Pr1735Health, nowMs: number): { visible: boolean; lines: string[] } {
  const lines: string[] = [];
  let visibleFailure = false;
  for (const m of health.async_migrations ?? []) {
    if (m.status === "running") {
      const eta = typeof m.etaSec === "number" && m.etaSec > 0 ? ` (ETA ${Math.ceil(m.etaSec)}s)` : "";
      lines.push(`Migration ${m.name}: ${m.rowsProcessed} / ${m.rowsTotal} rows${eta}`);
    } else if (m.status === "failed") {
      const ended = m.endedAt ? Date.parse(m.endedAt) : Number.NaN;
      // A missing or unparseable end never auto-dismisses (fails closed).
      if (Number.isNaN(ended) || nowMs - ended < 10 * 60_000) {
        visibleFailure = true;
        lines.push(`Migration ${m.name} FAILED: ${m.errorMessage || "unknown error"}`);
      }
    }
  }
  const steady = health.ready === true && health.async_migrations_running !== true && !visibleFailure;
  return { visible: !steady, lines };
}

describe("CoreScope #1735's banner against a live backfill", () => {
  it("shows rows and an ETA while trickle works, a foreign failure, and hides once nothing runs or failed", async () => {
    h = await startHarness({ env: { TRICKLE_SNAPSHOT_TTL_MS: "0" }, transmissions: 3000 });
    expect((await h.service.controls.tune(TX, { initialBatch: 100, maxBatch: 100 })).status).toBe("ok");
    const poll = async () =>
      pr1735Banner(
        (await (await h!.request("GET", "/api/healthz", { token: null })).json()) as Pr1735Health,
        Date.now(),
      );
    const seen: { visible: boolean; lines: string[] }[] = [];
    while ((await h.service.tick(100)).moreWork) seen.push(await poll());

    const line = new RegExp(`^Migration ${TX}: (\\d+) / 3000 rows \\(ETA (\\d+)s\\)$`);
    const during = seen.filter((s) => s.lines.some((l) => line.test(l)));
    // Shown with an ETA on (nearly) every poll of the run, counts only growing, ETA a positive number.
    expect(during.length).toBeGreaterThanOrEqual(Math.floor(seen.length / 2));
    expect(during.every((s) => s.visible)).toBe(true);
    const counts = during.map((s) => Number(line.exec(s.lines[0] ?? "")?.[1]));
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(counts.at(-1)).toBeGreaterThan(counts[0] ?? 0);
    expect(during.map((s) => Number(line.exec(s.lines[0] ?? "")?.[2])).every((eta) => eta > 0)).toBe(true);

    // Done: the banner hides.
    expect(await poll()).toEqual({ visible: false, lines: [] });

    // A failure CoreScope itself recorded (trickle does not own the row) reaches the banner, as #1735 shows it.
    await h.client.execute(
      `INSERT INTO _async_migrations (name, status, started_at, ended_at, error)
       VALUES ('from_pubkey_backfill_v1', 'failed', datetime('now'), datetime('now'), 'boom: disk I/O error')`,
    );
    expect(await poll()).toEqual({
      visible: true,
      lines: ["Migration from_pubkey_backfill_v1 FAILED: boom: disk I/O error"],
    });
  });
});
