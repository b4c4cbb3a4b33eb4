/**
 * A synthetic CoreScope database (corescope-facts §1): the real `transmissions` / `observations` schema with
 * every index, filled with data of the shape the production threads describe — heavy-tailed sightings per
 * packet spread over days and weeks after `first_seen`, a legacy fraction of transmissions left at
 * `last_seen = 0`, orphans (no observations) and transmissions whose observations all carry timestamp 0.
 *
 * Portable: it only uses the `Client` interface, so it can seed a local file or a remote libSQL server.
 * Deterministic: everything comes from a seeded PRNG, so the same options give the same database.
 */
import type { Client, InStatement, InValue } from "@libsql/client";

/** The seed's original one-shot statement (CoreScope's upgrade path); trickle's result must equal it on a quiet database. */
export const ONE_SHOT_SQL =
  "UPDATE transmissions SET last_seen = COALESCE((SELECT MAX(timestamp) FROM observations WHERE transmission_id = transmissions.id), last_seen) WHERE last_seen = 0";

export interface SeedOptions {
  readonly transmissions: number;
  readonly observations: number;
  /** The oldest fraction of transmissions (by id) that keep `last_seen = 0`, as before CoreScope's #1690. */
  readonly legacyFraction: number;
  readonly seed: number;
  /** Called after each committed chunk with rows written so far (transmissions + observations) and the total. */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface SeedResult {
  readonly transmissions: number;
  readonly observations: number;
}

const TRANSMISSION_TABLE = `CREATE TABLE IF NOT EXISTS transmissions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  raw_hex TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  first_seen TEXT NOT NULL,
  route_type INTEGER,
  payload_type INTEGER,
  payload_version INTEGER,
  decoded_json TEXT,
  from_pubkey TEXT,
  last_seen INTEGER NOT NULL DEFAULT 0,
  created_at TEXT DEFAULT (datetime('now')),
  channel_hash TEXT DEFAULT NULL,
  scope_name TEXT DEFAULT NULL
)`;

const OBSERVATION_TABLE = `CREATE TABLE IF NOT EXISTS observations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  transmission_id INTEGER NOT NULL REFERENCES transmissions(id),
  observer_idx INTEGER,
  direction TEXT,
  snr REAL,
  rssi REAL,
  score INTEGER,
  path_json TEXT,
  timestamp INTEGER NOT NULL,
  raw_hex TEXT,
  resolved_path TEXT
)`;

/**
 * Indexes whose keys grow with insertion order (ids, transmission_id first): maintaining them during a bulk
 * load only appends, so they are created with the tables.
 */
const APPEND_ONLY_INDEXES = [
  "CREATE INDEX IF NOT EXISTS idx_tx_last_seen_zero ON transmissions(id) WHERE last_seen = 0",
  "CREATE INDEX IF NOT EXISTS idx_observations_transmission_id ON observations(transmission_id)",
  "CREATE UNIQUE INDEX IF NOT EXISTS idx_observations_dedup ON observations(transmission_id, observer_idx, COALESCE(path_json, ''))",
  "CREATE INDEX IF NOT EXISTS idx_observations_tx_ts ON observations(transmission_id, timestamp)",
];

/** Indexes with random-order keys: a bulk load builds them once at the end (one sort instead of random inserts). */
const SORTED_INDEXES = [
  "CREATE INDEX IF NOT EXISTS idx_transmissions_hash ON transmissions(hash)",
  "CREATE INDEX IF NOT EXISTS idx_transmissions_first_seen ON transmissions(first_seen)",
  "CREATE INDEX IF NOT EXISTS idx_transmissions_payload_type ON transmissions(payload_type)",
  "CREATE INDEX IF NOT EXISTS idx_transmissions_from_pubkey ON transmissions(from_pubkey)",
  "CREATE INDEX IF NOT EXISTS idx_tx_channel_hash ON transmissions(channel_hash) WHERE payload_type = 5",
  "CREATE INDEX IF NOT EXISTS idx_tx_scope_name ON transmissions(scope_name) WHERE scope_name IS NOT NULL",
  "CREATE INDEX IF NOT EXISTS idx_observations_observer_idx ON observations(observer_idx)",
  "CREATE INDEX IF NOT EXISTS idx_observations_timestamp ON observations(timestamp)",
  "CREATE INDEX IF NOT EXISTS idx_observations_observer_idx_timestamp ON observations(observer_idx, timestamp)",
];

/** Creates CoreScope's `transmissions` and `observations` tables with all their indexes (idempotent). */
export async function createCoreScopeSchema(client: Client): Promise<void> {
  await client.batch(
    [TRANSMISSION_TABLE, OBSERVATION_TABLE, ...APPEND_ONLY_INDEXES, ...SORTED_INDEXES],
    "write",
  );
}

// ---------------------------------------------------------------------------------------------------------
// Shape of the data

/** "Now" of the synthetic database; every timestamp is at or before it. */
const NOW_SECONDS = Date.UTC(2026, 5, 14, 12, 0, 0) / 1000;
/** `first_seen` values spread over the eight weeks before NOW. */
const FIRST_SEEN_SPAN_SECONDS = 56 * 86_400;
/** Distinct observers (CoreScope: "~1k rows in prod"); prime, so any stride visits each one once. */
const OBSERVERS = 997;
const ORPHAN_FRACTION = 0.01;
const ZERO_TIMESTAMP_FRACTION = 0.005;
/** Rows per write batch (one transaction of two INSERTs). */
const ROWS_PER_BATCH = 16_000;

const TX_COLUMNS = [
  "id",
  "raw_hex",
  "hash",
  "first_seen",
  "route_type",
  "payload_type",
  "payload_version",
  "decoded_json",
  "from_pubkey",
  "last_seen",
  "created_at",
  "channel_hash",
  "scope_name",
];
const OBS_COLUMNS = [
  "transmission_id",
  "observer_idx",
  "direction",
  "snr",
  "rssi",
  "score",
  "path_json",
  "timestamp",
  "raw_hex",
  "resolved_path",
];

/** Payload types with rough shares of traffic: adverts and channel messages dominate. */
const PAYLOAD_TYPES: ReadonlyArray<readonly [type: number, name: string, share: number]> = [
  [4, "ADVERT", 0.3],
  [5, "GRP_TXT", 0.25],
  [2, "TXT_MSG", 0.15],
  [1, "RESPONSE", 0.1],
  [8, "PATH", 0.1],
  [0, "REQ", 0.05],
  [3, "ACK", 0.03],
  [9, "TRACE", 0.02],
];
const SCOPES = ["#bay-area", "#seattle", "#berlin", "#sydney", "#test"];
const NODE_COUNT = 3_000;

// ---------------------------------------------------------------------------------------------------------
// Deterministic randomness

/** sfc32: a small, fast 32-bit PRNG; seeded through splitmix32 so nearby seeds give unrelated streams. */
class Random {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number, stream: number) {
    // Both halves of the (safe-integer) seed count, so seeds that differ only above 2^32 differ here too.
    const high = Math.floor(seed / 2 ** 32) >>> 0;
    let s = ((seed >>> 0) ^ mix32(high ^ Math.imul(stream + 1, 0x9e3779b9))) >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = next();
    this.#b = next();
    this.#c = next();
    this.#d = next();
    for (let i = 0; i < 12; i++) this.uint32();
  }

  uint32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.uint32() / 4_294_967_296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  normal(): number {
    const u = 1 - this.float(); // (0, 1]: log stays finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.float());
  }
}

/** A bijection on 32-bit integers, so distinct ids give distinct hash prefixes. */
function mix32(x: number): number {
  let z = x >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x7feb352d);
  z = Math.imul(z ^ (z >>> 15), 0x846ca68b);
  return (z ^ (z >>> 16)) >>> 0;
}

const HEX_BYTES = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Random hex text that row values are sliced from, instead of being built character by character. */
class HexPool {
  static readonly SIZE = 1 << 20;
  readonly text: string;

  constructor(random: Random) {
    const parts = new Array<string>(HexPool.SIZE / 2);
    for (let i = 0; i < parts.length; i++) parts[i] = HEX_BYTES[random.uint32() & 0xff]!;
    this.text = parts.join("");
  }

  slice(random: Random, length: number): string {
    const start = random.int(HexPool.SIZE - length);
    return this.text.slice(start, start + length);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The seed

/** Throws an `Error` naming the option for values `seedCoreScope` cannot honour. */
export function checkSeedOptions(options: SeedOptions): void {
  const { transmissions, observations, legacyFraction, seed } = options;
  if (!Number.isSafeInteger(transmissions) || transmissions < 0)
    throw new Error(`transmissions must be an integer ≥ 0, got ${transmissions}`);
  if (transmissions >= 2 ** 31) throw new Error(`transmissions must be below 2^31, got ${transmissions}`);
  if (!Number.isSafeInteger(observations) || observations < 0)
    throw new Error(`observations must be an integer ≥ 0, got ${observations}`);
  if (!(legacyFraction >= 0 && legacyFraction <= 1))
    throw new Error(`legacyFraction must be between 0 and 1, got ${legacyFraction}`);
  if (!Number.isSafeInteger(seed)) throw new Error(`seed must be an integer, got ${seed}`);
  if (observations > 0 && transmissions === 0)
    throw new Error("observations need transmissions to belong to (transmissions is 0)");
  if (observations > transmissions * OBSERVERS) {
    throw new Error(
      `observations (${observations}) exceed ${OBSERVERS} per transmission (there are ${OBSERVERS} distinct observers)`,
    );
  }
}

const KIND_NORMAL = 0;
const KIND_ORPHAN = 1;
const KIND_ZERO_TIMESTAMPS = 2;

/**
 * Which transmissions are orphans or all-zero, and how many observations each one has. Orphans and all-zero
 * rows are placed by stratified sampling, so both the legacy and the recent part of the table get their share.
 */
function planCounts(options: SeedOptions, random: Random): { kinds: Uint8Array; counts: Uint16Array } {
  const n = options.transmissions;
  const kinds = new Uint8Array(n);
  const counts = new Uint16Array(n);
  if (n === 0) return { kinds, counts };
  const place = (count: number, kind: number) => {
    for (let k = 0; k < count; k++) {
      let i = Math.floor(((k + random.float()) * n) / count);
      while (kinds[i] !== KIND_NORMAL) i = (i + 1) % n; // only when both strata land on the same row
      kinds[i] = kind;
    }
  };
  // At least one of each kind whenever the table is big enough to hold them next to ordinary rows.
  // Never so many that the rest cannot hold every observation at one per observer.
  const orphanRoom = n - Math.ceil(options.observations / OBSERVERS);
  const orphans = Math.min(orphanRoom, n >= 3 ? Math.max(1, Math.round(n * ORPHAN_FRACTION)) : 0);
  place(orphans, KIND_ORPHAN);
  const zeros = n >= 3 && options.observations > n ? Math.max(1, Math.round(n * ZERO_TIMESTAMP_FRACTION)) : 0;
  place(zeros, KIND_ZERO_TIMESTAMPS);

  let observed: number[] = [];
  for (let i = 0; i < n; i++) if (kinds[i] !== KIND_ORPHAN) observed.push(i);
  const total = options.observations;
  if (total < observed.length) {
    // Fewer observations than candidate rows: an even subset gets one each, the rest become orphans.
    const keep = new Set<number>();
    for (let k = 0; k < total; k++) keep.add(observed[Math.floor((k * observed.length) / total)]!);
    for (const i of observed) if (!keep.has(i)) kinds[i] = KIND_ORPHAN;
    observed = [...keep];
  }
  if (observed.length === 0) return { kinds, counts };

  // Heavy-tailed weights: lognormal for ordinary packets, a Pareto tail for the few seen everywhere
  // (popular adverts). Scaled to the requested total, clipped to [1, OBSERVERS], then topped up exactly.
  const weights = new Float64Array(observed.length);
  let sum = 0;
  for (let k = 0; k < observed.length; k++) {
    const w =
      random.float() < 0.03 ? 3 * (1 - random.float()) ** (-1 / 1.5) : Math.exp(0.45 * random.normal());
    weights[k] = w;
    sum += w;
  }
  let assigned = 0;
  for (let k = 0; k < observed.length; k++) {
    const c = Math.min(OBSERVERS, Math.max(1, Math.round((weights[k]! * total) / sum)));
    counts[observed[k]!] = c;
    assigned += c;
  }
  // Clipping and rounding leave a small difference; sweep from a random start, one observation at a time.
  let k = random.int(observed.length);
  while (assigned !== total) {
    const i = observed[k]!;
    if (assigned < total && counts[i]! < OBSERVERS) {
      counts[i]!++;
      assigned++;
    } else if (assigned > total && counts[i]! > 1) {
      counts[i]!--;
      assigned--;
    }
    k = (k + 1) % observed.length;
  }
  return { kinds, counts };
}

function rfc3339(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function sqliteDatetime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ");
}

function pickPayloadType(random: Random): readonly [number, string] {
  let u = random.float();
  for (const [type, name, share] of PAYLOAD_TYPES) {
    if (u < share) return [type, name];
    u -= share;
  }
  return [11, "CONTROL"];
}

/** A JSON text of 200–400 characters shaped like CoreScope's decoded packets. */
function decodedJson(
  random: Random,
  pool: HexPool,
  payloadName: string,
  fields: { pubkey: string | null; node: number; channel: string | null; seconds: number },
): string {
  const target = 200 + random.int(201);
  const head: Record<string, unknown> = { type: payloadName };
  if (payloadName === "ADVERT") {
    head.pubKey = fields.pubkey;
    head.name = `node-${fields.node.toString().padStart(4, "0")}`;
    head.lat = Math.round((37 + random.float() * 2) * 1e5) / 1e5;
    head.lon = Math.round((-123 + random.float() * 2) * 1e5) / 1e5;
    head.advertTimestamp = fields.seconds;
    head.flags = { repeater: random.float() < 0.4, room: random.float() < 0.1 };
  } else if (payloadName === "GRP_TXT") {
    head.channelHash = fields.channel;
    head.mac = pool.slice(random, 4);
  } else {
    head.destHash = pool.slice(random, 2);
    head.srcHash = pool.slice(random, 2);
    head.mac = pool.slice(random, 4);
  }
  const prefix = JSON.stringify(head).slice(0, -1); // without the closing brace
  const fill = Math.max(2, target - prefix.length - ',"data":""}'.length);
  return `${prefix},"data":"${pool.slice(random, fill)}"}`;
}

function hopList(random: Random, pool: HexPool, hops: number, width: number): string {
  if (hops === 0) return "[]";
  const items = new Array<string>(hops);
  for (let h = 0; h < hops; h++) items[h] = `"${pool.slice(random, width)}"`;
  return `[${items.join(",")}]`;
}

/**
 * One INSERT for a whole chunk of rows: the rows travel as a single JSON array bound to one parameter and are
 * unpacked by `json_each`, in array order. A multi-row `VALUES` list needs a prepared statement per few hundred
 * rows, each holding ~1.3 KB of native memory per row until it is finalized (see `fill`).
 */
function insertStatement(table: string, columns: readonly string[], rows: InValue[][]): InStatement {
  const picks = columns.map((_, i) => `json_extract(value, '$[${i}]')`).join(", ");
  return {
    sql: `INSERT INTO ${table} (${columns.join(", ")}) SELECT ${picks} FROM json_each(?) ORDER BY key`,
    args: [JSON.stringify(rows)],
  };
}

/**
 * A bulk load is repeatable (the database was empty), so durability of each commit does not matter while it
 * runs: skip fsyncs and give index builds a bigger page cache. Best effort — a remote server may refuse the
 * pragmas, which only makes the seed slower — and undone afterwards, because these settings belong to the
 * connection and the caller may go on using it.
 */
async function bulkLoadPragmas(client: Client): Promise<() => Promise<void>> {
  const saved: string[] = [];
  for (const [name, value] of [
    ["synchronous", "OFF"],
    ["cache_size", "-65536"],
    // libSQL is built with SQLITE_TEMP_STORE=2: without this, building the indexes of a large database sorts
    // every key in memory; FILE spills the sort to temporary files.
    ["temp_store", "1"],
  ] as const) {
    try {
      const before = (await client.execute(`PRAGMA ${name}`)).rows[0]?.[0];
      if (before === undefined || before === null) continue;
      await client.execute(`PRAGMA ${name} = ${value}`);
      saved.push(`PRAGMA ${name} = ${Number(before)}`);
    } catch {
      // not allowed here; carry on with the defaults
    }
  }
  return async () => {
    for (const statement of saved) {
      try {
        await client.execute(statement);
      } catch {
        // the connection may be gone; the settings went with it
      }
    }
  };
}

async function tableExists(client: Client, name: string): Promise<boolean> {
  const result = await client.execute({
    sql: "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    args: [name],
  });
  return result.rows.length > 0;
}

async function hasRows(client: Client, table: string): Promise<boolean> {
  return (await client.execute(`SELECT 1 FROM ${table} LIMIT 1`)).rows.length > 0;
}

/**
 * Creates the CoreScope schema if needed and fills it. Refuses a database whose `transmissions` or
 * `observations` already hold rows. When it creates the tables itself, the indexes whose keys arrive in random
 * order are built after the data is loaded (one sort instead of a random B-tree insert per row); the resulting
 * schema is the same. Each chunk of ~16k rows commits in one `batch(…, "write")` of two INSERTs.
 */
export async function seedCoreScope(client: Client, options: SeedOptions): Promise<SeedResult> {
  checkSeedOptions(options);
  const existed = (await tableExists(client, "transmissions")) || (await tableExists(client, "observations"));
  if (existed) {
    for (const table of ["transmissions", "observations"]) {
      if ((await tableExists(client, table)) && (await hasRows(client, table))) {
        throw new Error(`refusing to seed: table ${table} already has rows (seed only an empty database)`);
      }
    }
    await createCoreScopeSchema(client);
  } else {
    await client.batch([TRANSMISSION_TABLE, OBSERVATION_TABLE, ...APPEND_ONLY_INDEXES], "write");
  }

  const restore = await bulkLoadPragmas(client);
  try {
    return await fill(client, options, !existed);
  } finally {
    await restore();
  }
}

async function fill(client: Client, options: SeedOptions, buildIndexes: boolean): Promise<SeedResult> {
  const { transmissions: n, observations: m, legacyFraction, seed, onProgress } = options;
  const { kinds, counts } = planCounts(options, new Random(seed, 1));
  const random = new Random(seed, 2);
  const pool = new HexPool(new Random(seed, 3));
  const legacyCount = Math.floor(n * legacyFraction);
  const hashSalt = new Random(seed, 4).uint32();
  const total = n + m;
  let done = 0;

  let txRows: InValue[][] = [];
  let obsRows: InValue[][] = [];
  const flush = async () => {
    if (txRows.length + obsRows.length === 0) return;
    // Transmissions first: observations reference them.
    const statements = [insertStatement("transmissions", TX_COLUMNS, txRows)];
    if (obsRows.length > 0) statements.push(insertStatement("observations", OBS_COLUMNS, obsRows));
    await client.batch(statements, "write");
    done += txRows.length + obsRows.length;
    txRows = [];
    obsRows = [];
    onProgress?.(done, total);
    // The libsql binding frees a statement's native memory (and the values bound to it) in a finalizer that
    // runs on a later turn of the event loop. A local client answers without one, so a loop that only awaits it
    // keeps every statement it ran: a 21M-row seed outgrew 24 GB. One turn per chunk lets them go.
    await new Promise((resolve) => setTimeout(resolve, 0));
  };

  for (let index = 0; index < n; index++) {
    const id = index + 1;
    const kind = kinds[index]!;
    const count = counts[index]!;
    // Ids are ingest order, so first_seen grows with id (with some jitter: packets arrive out of order).
    const firstSeen = Math.min(
      NOW_SECONDS,
      NOW_SECONDS -
        FIRST_SEEN_SPAN_SECONDS +
        Math.floor((index / Math.max(1, n)) * FIRST_SEEN_SPAN_SECONDS) +
        random.int(900),
    );
    const [payloadType, payloadName] = pickPayloadType(random);
    const routeU = random.float();
    const routeType = routeU < 0.7 ? 1 : routeU < 0.9 ? 2 : routeU < 0.95 ? 0 : 3;
    const node = random.int(NODE_COUNT);
    const pubkey = payloadType === 4 ? pool.text.slice(node * 64, node * 64 + 64) : null;
    const channel = payloadType === 5 ? pool.slice(random, 2) : null;
    const packetBytes = 50 + Math.floor(200 * random.float() ** 2);
    const rawHex = pool.slice(random, packetBytes * 2);
    const hash =
      mix32(id ^ hashSalt)
        .toString(16)
        .padStart(8, "0") + pool.slice(random, 8);
    const decoded = decodedJson(random, pool, payloadName, { pubkey, node, channel, seconds: firstSeen });
    const scope = random.float() < 0.05 ? SCOPES[random.int(SCOPES.length)]! : null;

    // Observations: a distinct observer each (the dedup index), over days to weeks after first_seen.
    const firstObserver = random.int(OBSERVERS);
    const stride = 1 + random.int(OBSERVERS - 1);
    const lifetime = random.float() < 0.3 ? 86_400 * (3 + random.int(25)) : 3_600 * (1 + random.int(48));
    let maxTimestamp = 0;
    for (let j = 0; j < count; j++) {
      let timestamp = 0;
      if (kind !== KIND_ZERO_TIMESTAMPS) {
        // The first sighting is at first_seen; later ones mostly early in the packet's life, some much later.
        const delay = j === 0 ? random.int(30) : Math.floor(lifetime * random.float() ** 2);
        timestamp = Math.min(NOW_SECONDS, firstSeen + delay);
      }
      if (timestamp > maxTimestamp) maxTimestamp = timestamp;
      const hops = routeType === 2 ? random.int(3) : random.int(9);
      const resolved = random.float() < 0.7 ? hopList(random, pool, hops, 8) : null;
      obsRows.push([
        id,
        random.float() < 0.003 ? null : (firstObserver + j * stride) % OBSERVERS,
        random.float() < 0.97 ? "rx" : "tx",
        Math.round((-18 + 30 * random.float()) * 4) / 4,
        -125 + random.int(86),
        random.int(101),
        hopList(random, pool, hops, 2),
        timestamp,
        pool.slice(random, packetBytes * 2),
        resolved,
      ]);
    }
    txRows.push([
      id,
      rawHex,
      hash,
      rfc3339(firstSeen),
      routeType,
      payloadType,
      1,
      decoded,
      pubkey,
      // Legacy rows predate the inline maintenance; newer ones carry MAX(timestamp) as CoreScope keeps it.
      index < legacyCount ? 0 : maxTimestamp,
      sqliteDatetime(firstSeen),
      channel,
      scope,
    ]);
    if (txRows.length + obsRows.length >= ROWS_PER_BATCH) await flush();
  }
  await flush();
  if (buildIndexes) await client.batch(SORTED_INDEXES, "write");
  return { transmissions: n, observations: m };
}
