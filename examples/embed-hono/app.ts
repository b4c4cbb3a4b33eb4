/**
 * Embedding trickle in an existing Hono application.
 *
 * The application has its own routes and its own table (`items`); trickle brings a backfill for that table
 * (`items_slug_v1`), its control API, status page and warm-up banner, mounted under `/admin/trickle`. The
 * application decides how ticks are driven: `trickle.start()` runs the in-process scheduler, `trickle.tick()` runs
 * one slice on demand (from a cron, a queue consumer, a test).
 *
 * In an application that installed trickle as a package (`npm install trickle-backfill`), the import below would
 * be `from "trickle-backfill"`.
 */
import type { Client } from "@libsql/client";
import { Hono } from "hono";
import {
  createService,
  defineMigration,
  loadConfig,
  loadOperatorConfig,
  type Service,
} from "../../src/index.ts";

/** The application's own backfill: a URL slug for every item, derived from its name. */
export const itemsSlugV1 = defineMigration({
  name: "items_slug_v1",
  description: "Fill items.slug from items.name (lower case, dashes)",
  table: "items",
  key: "id",
  filter: "slug IS NULL",
  set: "slug = lower(replace(trim(name), ' ', '-'))",
  tuning: { initialBatch: 50 },
});

/** The application's schema (it owns it; trickle only backfills). */
export async function createItemsSchema(client: Client): Promise<void> {
  await client.execute(
    "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, slug TEXT, created_at TEXT)",
  );
}

export interface EmbeddedApp {
  /** The application: its own routes plus trickle under `/admin/trickle`. */
  readonly app: Hono;
  /** trickle's service: `start()`/`stop()` the scheduler, `tick()` one slice, `onLifecycle(...)`. */
  readonly trickle: Service;
}

export function createEmbeddedApp(options: {
  client: Client;
  /** Bearer token of trickle's control API; undefined disables it (403). */
  adminToken?: string;
  /** Environment for trickle's tuning knobs (TRICKLE_*); default none. */
  env?: Record<string, string | undefined>;
  log?: (line: string) => void;
}): EmbeddedApp {
  // trickle's configuration from the environment (tuning, TRICKLE_TICK_MS…), with this app's migration list
  // instead of trickle's built-in ones.
  const config = {
    ...loadConfig({ ...options.env, ADMIN_TOKEN: options.adminToken }, []),
    migrations: [itemsSlugV1],
  };
  const trickle = createService({
    client: options.client,
    config,
    // Throttling, stuck detection, webhook (TRICKLE_QUIET_HOURS, TRICKLE_WEBHOOK_URL…).
    operator: loadOperatorConfig(options.env ?? {}),
    ...(options.log ? { log: options.log } : {}),
  });
  trickle.onLifecycle((event) => {
    options.log?.(`app: migration ${event.migration} ended: ${event.status}`);
  });

  // strict: false lets `/admin/trickle/` (the status page's own URL) reach the mounted app's `/` route.
  const app = new Hono({ strict: false });
  app.get("/", (c) => c.text("my application"));
  app.get("/items", async (c) => {
    const rows = await options.client.execute("SELECT id, name, slug FROM items ORDER BY id LIMIT 20");
    return c.json(rows.rows.map((r) => ({ id: Number(r.id), name: String(r.name), slug: r.slug })));
  });
  // The status page addresses the API relatively: serve it with a trailing slash.
  app.use("/admin/trickle", async (c, next) => {
    if (new URL(c.req.url).pathname === "/admin/trickle") return c.redirect("/admin/trickle/", 301);
    return next();
  });
  app.route("/admin/trickle", trickle.app);
  return { app, trickle };
}
