/**
 * The benchmark's database: a CoreScope-shaped file built once per size and seed into the cache directory,
 * then copied for each scenario so that every scenario starts from the same bytes.
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { join } from "node:path";
import { type Client, createClient } from "@libsql/client";
import { seedCoreScope } from "../src/seed/corescope.ts";

export interface DatasetSpec {
  readonly transmissions: number;
  readonly observations: number;
  /** The oldest fraction of transmissions that still have `last_seen = 0` (as `npm run trickle -- seed`). */
  readonly legacyFraction: number;
  readonly seed: number;
}

export interface Dataset extends DatasetSpec {
  readonly path: string;
  readonly bytes: number;
  /** Whether this run built it (false: taken from the cache). */
  readonly built: boolean;
  readonly buildMs: number;
}

/** Bumped when the generator or the build steps change, so an old cached file is not reused. */
const FORMAT = 1;

export function datasetPath(cacheDir: string, spec: DatasetSpec): string {
  return join(
    cacheDir,
    `corescope-v${FORMAT}-t${spec.transmissions}-o${spec.observations}-l${spec.legacyFraction}-s${spec.seed}.db`,
  );
}

/** Removes a database file with its WAL, shared-memory and journal files. */
export function removeDatabase(path: string): void {
  for (const suffix of ["", "-wal", "-shm", "-journal"]) rmSync(`${path}${suffix}`, { force: true });
}

/**
 * Returns the cached database for `spec`, building it first if needed. The file is complete and WAL-free:
 * it is built under a temporary name, checkpointed (TRUNCATE) and closed, and only then renamed into place.
 */
export async function ensureDataset(
  cacheDir: string,
  spec: DatasetSpec,
  onProgress?: (done: number, total: number) => void,
): Promise<Dataset> {
  mkdirSync(cacheDir, { recursive: true });
  const path = datasetPath(cacheDir, spec);
  if (existsSync(path) && !existsSync(`${path}-wal`)) {
    return { ...spec, path, bytes: statSync(path).size, built: false, buildMs: 0 };
  }
  const building = `${path}.building`;
  removeDatabase(building);
  const began = performance.now();
  const client = createClient({ url: `file:${building}`, intMode: "bigint", timeout: 5000 });
  try {
    await client.execute("PRAGMA journal_mode=WAL");
    await seedCoreScope(client, { ...spec, ...(onProgress ? { onProgress } : {}) });
    await checkpoint(client);
  } catch (error) {
    client.close();
    removeDatabase(building);
    throw error;
  }
  client.close();
  if (existsSync(`${building}-wal`) && statSync(`${building}-wal`).size > 0) {
    throw new Error(`the WAL of ${building} was not empty after the checkpoint`);
  }
  removeDatabase(path);
  rmSync(`${building}-wal`, { force: true });
  rmSync(`${building}-shm`, { force: true });
  renameSync(building, path);
  return { ...spec, path, bytes: statSync(path).size, built: true, buildMs: performance.now() - began };
}

async function checkpoint(client: Client): Promise<void> {
  const result = await client.execute("PRAGMA wal_checkpoint(TRUNCATE)");
  const busy = Number(result.rows[0]?.[0] ?? 0);
  if (busy !== 0) throw new Error("the WAL checkpoint could not complete (busy)");
}

/**
 * A fresh copy of the dataset at `target` (any earlier file there and its WAL are removed first), flushed to
 * disk before it is used, so the kernel writing back hundreds of MB of a copy does not slow the phase.
 */
export function copyDataset(dataset: Dataset, target: string): void {
  removeDatabase(target);
  copyFileSync(dataset.path, target);
  const fd = openSync(target, "r+");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
