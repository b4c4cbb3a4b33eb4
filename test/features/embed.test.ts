/**
 * Embedding: examples/embed-hono runs — in-process through `app.request` (its own routes, trickle mounted under
 * /admin/trickle with the control API, health, status page and its own migration driven to done) and as a real
 * server process. The public entry (src/index.ts) exports the documented API.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { createEmbeddedApp, createItemsSchema, type EmbeddedApp } from "../../examples/embed-hono/app.ts";
import * as trickle from "../../src/index.ts";
import { type TempDb, tempDb } from "../helpers/db.ts";

const TOKEN = "embed-admin-token-0123456789";
let db: TempDb | undefined;
let embedded: EmbeddedApp | undefined;
let child: ChildProcess | undefined;
afterEach(async () => {
  await embedded?.trickle.stop();
  embedded = undefined;
  if (child && child.exitCode === null) {
    child.kill("SIGTERM");
    await new Promise((resolve) => child?.once("exit", resolve));
  }
  child = undefined;
  db?.cleanup();
  db = undefined;
});

describe("the public entry", () => {
  it("exports the documented, portable API", () => {
    for (const name of [
      "defineMigration",
      "Runner",
      "Scheduler",
      "StateStore",
      "MigrationControls",
      "createService",
      "createApp",
      "healthRoutes",
      "perfRoutes",
      "migrationRoutes",
      "tickRoutes",
      "uiRoutes",
      "metricsRoutes",
      "openApiRoutes",
      "SnapshotCache",
      "onLifecycle",
      "WebhookNotifier",
      "dryRunMigration",
      "loadConfig",
      "loadOperatorConfig",
    ]) {
      expect(typeof (trickle as Record<string, unknown>)[name], name).toBe("function");
    }
  });
});

describe("examples/embed-hono in-process", () => {
  it("serves the app's routes and trickle under /admin/trickle, and backfills the app's own table", async () => {
    db = tempDb();
    const client = db.open();
    await createItemsSchema(client);
    await client.batch(
      Array.from({ length: 500 }, (_, i) => ({
        sql: "INSERT INTO items (name) VALUES (?)",
        args: [`Item ${i + 1}`],
      })),
      "write",
    );
    const lines: string[] = [];
    embedded = createEmbeddedApp({ client, adminToken: TOKEN, log: (l) => lines.push(l) });
    const { app, trickle: service } = embedded;
    await service.runner.init();

    expect(await (await app.request("/")).text()).toBe("my application");
    const redirect = await app.request("/admin/trickle");
    expect(redirect.status).toBe(301);
    expect(redirect.headers.get("location")).toBe("/admin/trickle/");
    const page = await app.request("/admin/trickle/");
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("<title>trickle");
    expect((await app.request("/admin/trickle/warmup-banner.js")).status).toBe(200);

    const health = (await (await app.request("/admin/trickle/api/healthz")).json()) as {
      async_migrations: { name: string; status: string }[];
    };
    expect(health.async_migrations.map((m) => [m.name, m.status])).toEqual([["items_slug_v1", "pending"]]);
    expect((await app.request("/admin/trickle/api/migrations")).status).toBe(401);
    const auth = { authorization: `Bearer ${TOKEN}` };
    const dry = await app.request("/admin/trickle/api/migrations/items_slug_v1/dry-run", {
      method: "POST",
      headers: auth,
    });
    expect(dry.status).toBe(200);
    const report = (await dry.json()) as { rolledBack: boolean; samples: unknown[] };
    expect(report.rolledBack).toBe(true);
    expect(report.samples[0]).toMatchObject({
      key: "1",
      before: { slug: null },
      after: { slug: "item-1" },
      changed: ["slug"],
    });

    // The application drives the ticks.
    for (let i = 0; i < 20 && (await service.runner.store.get("items_slug_v1"))?.status !== "done"; i++)
      await service.tick(1000);
    const list = (await (await app.request("/admin/trickle/api/migrations", { headers: auth })).json()) as {
      migrations: { name: string; status: string; rowsProcessed: number }[];
    };
    expect(list.migrations).toMatchObject([{ name: "items_slug_v1", status: "done", rowsProcessed: 500 }]);
    const items = (await (await app.request("/items")).json()) as { slug: string }[];
    expect(items[0]?.slug).toBe("item-1");
    expect(lines).toContain("app: migration items_slug_v1 ended: done"); // the lifecycle hook
  });
});

describe("examples/embed-hono as a server", () => {
  it("starts, serves the app and trickle, and backfills with its own scheduler", async () => {
    db = tempDb();
    const base = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("TRICKLE_") && !k.startsWith("DATABASE_")),
    );
    child = spawn("node_modules/.bin/tsx", ["examples/embed-hono/server.ts"], {
      env: { ...base, DATABASE_URL: db.url, PORT: "0", ADMIN_TOKEN: TOKEN },
    });
    const url = await new Promise<string>((resolve, reject) => {
      let out = "";
      child?.stdout?.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const m = /listening on (http:\/\/localhost:\d+\/)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child?.once("exit", (code) => reject(new Error(`server exited with ${code}: ${out}`)));
    });
    expect(await (await fetch(url)).text()).toBe("my application");
    let status = "";
    for (let i = 0; i < 300 && status !== "done"; i++) {
      const health = (await (await fetch(`${url}admin/trickle/api/healthz`)).json()) as {
        async_migrations: { status: string }[];
      };
      status = health.async_migrations[0]?.status ?? "";
      if (status !== "done") await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe("done");
    const items = (await (await fetch(`${url}items`)).json()) as { slug: string }[];
    expect(items[4]?.slug).toBe("item-number-5");
  });
});
