/**
 * A local Cloudflare D1 database for tests that run in Node: Miniflare, the simulator `wrangler dev` runs, hosts
 * D1's real implementation in workerd, and `getD1Database` hands the binding itself to this process (every call
 * goes to workerd and back). Miniflare is the copy wrangler depends on, resolved through wrangler, so it is
 * always the version `wrangler dev` uses. In memory: nothing is persisted.
 */
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import type { D1Database } from "../../../src/worker/d1-client.ts";

export interface LocalD1 {
  readonly db: D1Database;
  dispose(): Promise<void>;
}

type MiniflareModule = typeof import("miniflare");

async function miniflare(): Promise<MiniflareModule> {
  const fromWrangler = createRequire(createRequire(import.meta.url).resolve("wrangler/package.json"));
  return (await import(pathToFileURL(fromWrangler.resolve("miniflare")).href)) as MiniflareModule;
}

/** Starts workerd with one D1 binding and returns it. Call `dispose()` in `afterAll`. */
export async function localD1(): Promise<LocalD1> {
  const { Miniflare } = await miniflare();
  const mf = new Miniflare({
    modules: true,
    script: "export default { fetch() { return new Response(null, { status: 204 }) } }",
    d1Databases: { DB: "trickle-test" },
    compatibilityDate: "2026-04-26",
  });
  const db = (await mf.getD1Database("DB")) as unknown as D1Database;
  return { db, dispose: () => mf.dispose() };
}
