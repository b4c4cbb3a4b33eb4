/**
 * TEST-ONLY libSQL server: Hrana over HTTP, backed by a local SQLite file. Never use it in production.
 *
 * No real libSQL server (sqld) can be installed on our machines, so the remote path (`@libsql/client/web`,
 * Cloudflare Workers, `libsql://` URLs) is tested against this one. It is faithful to sqld where our code can
 * tell the difference:
 * - `POST /v2/pipeline` (and `/v3/pipeline`, same JSON) with `{ baton, requests }`; requests `execute`, `batch`
 *   (conditions `ok`, `error`, `not`, `and`, `or`, `is_autocommit`), `sequence`, `store_sql`/`close_sql`,
 *   `describe` (minimal: no parameter names, `is_readonly` guessed from the leading keyword), `get_autocommit`,
 *   `close`. Every request of a pipeline runs even after another one failed.
 * - A stream is one SQLite connection (WAL, short busy timeout), so `BEGIN … COMMIT` state lives on the stream
 *   and two streams can `SQLITE_BUSY` each other, as with sqld. A pipeline that leaves its stream open gets a
 *   new unpredictable baton (`<streamId>.<random>`) after every request; a stream idle for `streamIdleMs` is
 *   rolled back and closed. Its old batons then answer 400 `STREAM_EXPIRED` (for 5 minutes, like sqld); unknown
 *   or already used batons answer 400 `Received an invalid baton`.
 * - Values: `integer` travels as a decimal string and is bound as `bigint` (exact to ±2^63), `float` as a JSON
 *   number, `blob` as base64. Statement errors are `{ message, code: "SQLITE_<BASE>" }` (the base code of the
 *   native error, e.g. `SQLITE_CONSTRAINT` for `SQLITE_CONSTRAINT_PRIMARYKEY`) with the native message.
 * - Bearer auth when `authToken` is set (401 otherwise).
 * Not implemented: protobuf encodings, `/v3/cursor`, WebSockets; a statement cannot mix positional and named
 * arguments (the `libsql` binding cannot bind both), and extra SQL after the first statement of `execute` is
 * ignored (sqld rejects it).
 *
 * For tests it also counts requests (`stats`), can keep every pipeline body (`record: true`) and injects
 * faults (`faults`: delay, HTTP errors, dropped connections, before or after the request ran).
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import Database from "libsql";

type Connection = InstanceType<typeof Database>;

export interface HranaServerOptions {
  /** SQLite file to serve; created if missing and switched to WAL. */
  readonly dbPath: string;
  /** TCP port on 127.0.0.1; default 0 (a random free port). */
  readonly port?: number;
  /** When set, every request must carry `Authorization: Bearer <authToken>`. */
  readonly authToken?: string;
  /** A stream without requests for this long is rolled back and closed (sqld: 10 s). */
  readonly streamIdleMs?: number;
  /** SQLite busy timeout of each stream's connection; small, so lock conflicts surface as SQLITE_BUSY. */
  readonly busyTimeoutMs?: number;
  /** Keep every pipeline request body (parsed JSON) in `recorded`. */
  readonly record?: boolean;
}

export interface HranaServerStats {
  /** Every HTTP request the server received, whatever its path or outcome. */
  requests: number;
  /** `POST …/pipeline` requests: one per client round trip that carries SQL. */
  pipelineRequests: number;
  /** Requests per `"<METHOD> <path>"`. */
  byPath: Record<string, number>;
  /** Responses per HTTP status (dropped connections count as `"dropped"`). */
  byStatus: Record<string, number>;
  streamsOpened: number;
  streamsExpired: number;
}

/** One pipeline request as received (kept when `record` is on). */
export interface RecordedPipeline {
  /** Position among all pipeline requests, from 0 (equals `stats.pipelineRequests` before it arrived). */
  readonly index: number;
  readonly path: string;
  /** The request body exactly as the client sent it (parsed JSON). */
  readonly body: unknown;
}

export interface HranaServer {
  /** `http://127.0.0.1:<port>`; give it to `createClient({ url })` from `@libsql/client/web`. */
  readonly url: string;
  readonly port: number;
  readonly stats: HranaServerStats;
  readonly faults: HranaFaults;
  /** Pipeline bodies in arrival order; empty unless `record` is on. */
  readonly recorded: RecordedPipeline[];
  /** Streams currently open (a stream left open by a client holds a connection until it expires). */
  openStreams(): number;
  /** Stops listening, drops keep-alive connections, rolls back and closes every stream. */
  close(): Promise<void>;
}

export type FaultBody = "text" | "json" | "json-message";

/**
 * Faults for the next pipeline requests, consulted once per request. Mutable on purpose: a test changes it
 * between calls. A fault applies only to requests `match` accepts (default: all).
 */
export class HranaFaults {
  /** Every matching pipeline request waits this long before it is looked at. */
  delayMs = 0;
  /** Answer the next `remaining` matching requests with HTTP `status` (see `failNext`). */
  fail: { remaining: number; status: number; body: FaultBody; after: boolean } | undefined;
  /** Destroy the socket of the next `remaining` matching requests instead of answering. */
  drop: { remaining: number; after: boolean } | undefined;
  /** Which pipeline bodies the faults apply to. */
  match: ((body: unknown) => boolean) | undefined;

  /**
   * The next `count` matching requests get HTTP `status`. `body`: `"text"` (text/plain, what a proxy sends),
   * `"json"` (`{"error": …}`, sqld's shape for non-Hrana errors) or `"json-message"` (`{"message": …}` without a
   * code). `after: true` runs the request first (its transaction commits) and then answers with the error.
   */
  failNext(count: number, status = 503, options: { body?: FaultBody; after?: boolean } = {}): void {
    this.fail = { remaining: count, status, body: options.body ?? "text", after: options.after ?? false };
  }

  /** The next `count` matching requests lose their connection; `after: true` runs the request first. */
  dropNext(count: number, options: { after?: boolean } = {}): void {
    this.drop = { remaining: count, after: options.after ?? false };
  }

  clear(): void {
    this.delayMs = 0;
    this.fail = undefined;
    this.drop = undefined;
    this.match = undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Protocol shapes (parsed from JSON before anything runs, like sqld's deserialiser)

type Value = null | bigint | number | string | Buffer;
interface NamedArg {
  readonly name: string;
  readonly value: Value;
}
interface Stmt {
  readonly sql: string | undefined;
  readonly sqlId: number | undefined;
  readonly args: readonly Value[];
  readonly namedArgs: readonly NamedArg[];
  readonly wantRows: boolean;
}
type BatchCond =
  | { readonly type: "ok" | "error"; readonly step: number }
  | { readonly type: "not"; readonly cond: BatchCond }
  | { readonly type: "and" | "or"; readonly conds: readonly BatchCond[] }
  | { readonly type: "is_autocommit" };
interface BatchStep {
  readonly condition: BatchCond | undefined;
  readonly stmt: Stmt;
}
type StreamRequest =
  | { readonly type: "close" | "get_autocommit" }
  | { readonly type: "execute"; readonly stmt: Stmt }
  | { readonly type: "batch"; readonly steps: readonly BatchStep[] }
  | {
      readonly type: "sequence" | "describe";
      readonly sql: string | undefined;
      readonly sqlId: number | undefined;
    }
  | { readonly type: "store_sql"; readonly sqlId: number; readonly sql: string }
  | { readonly type: "close_sql"; readonly sqlId: number };
interface PipelineBody {
  readonly baton: string | null;
  readonly requests: readonly StreamRequest[];
}

type JsonValue =
  | { type: "null" }
  | { type: "integer"; value: string }
  | { type: "float"; value: number }
  | { type: "text"; value: string }
  | { type: "blob"; base64: string };
interface ErrorJson {
  message: string;
  code: string;
}
interface StmtResultJson {
  cols: { name: string | null; decltype: string | null }[];
  rows: JsonValue[][];
  affected_row_count: number;
  last_insert_rowid: string | null;
}

/** The request body does not follow the protocol: the whole pipeline is refused with HTTP 400. */
class ProtocolError extends Error {}

/** One request (or batch step) failed; the pipeline goes on. */
class RequestError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.code = code;
  }
  toJson(): ErrorJson {
    return { message: this.message, code: this.code };
  }
}

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function fail(path: string, problem: string): never {
  throw new ProtocolError(`${path}: ${problem}`);
}

function optionalString(value: unknown, path: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") fail(path, "expected a string");
  return value;
}

function optionalSqlId(value: unknown, path: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value)) fail(path, "expected an integer sql_id");
  return value;
}

function parseValue(raw: unknown, path: string): Value {
  if (!isObject(raw)) fail(path, "expected a Value object");
  switch (raw.type) {
    case "null":
      return null;
    case "integer": {
      if (typeof raw.value !== "string" || !/^-?\d{1,19}$/.test(raw.value))
        fail(path, "an integer value must be a decimal string");
      const n = BigInt(raw.value);
      if (n < I64_MIN || n > I64_MAX) fail(path, `integer ${raw.value} is outside the 64-bit range`);
      return n;
    }
    case "float":
      if (typeof raw.value !== "number") fail(path, "a float value must be a JSON number");
      return raw.value;
    case "text":
      if (typeof raw.value !== "string") fail(path, "a text value must be a string");
      return raw.value;
    case "blob":
      if (typeof raw.base64 !== "string") fail(path, "a blob value needs a base64 string");
      return Buffer.from(raw.base64, "base64");
    default:
      return fail(path, `unknown value type ${JSON.stringify(raw.type)}`);
  }
}

function parseStmt(raw: unknown, path: string): Stmt {
  if (!isObject(raw)) fail(path, "expected a Stmt object");
  const sql = optionalString(raw.sql, `${path}.sql`);
  const sqlId = optionalSqlId(raw.sql_id, `${path}.sql_id`);
  if ((sql === undefined) === (sqlId === undefined)) fail(path, "exactly one of sql and sql_id is required");
  const args = raw.args ?? [];
  if (!Array.isArray(args)) fail(`${path}.args`, "expected an array");
  const named = raw.named_args ?? [];
  if (!Array.isArray(named)) fail(`${path}.named_args`, "expected an array");
  const wantRows = raw.want_rows ?? true;
  if (typeof wantRows !== "boolean") fail(`${path}.want_rows`, "expected a boolean");
  return {
    sql,
    sqlId,
    args: args.map((a, i) => parseValue(a, `${path}.args[${i}]`)),
    namedArgs: named.map((a, i) => {
      const at = `${path}.named_args[${i}]`;
      if (!isObject(a) || typeof a.name !== "string" || a.name === "") fail(at, "expected { name, value }");
      return { name: a.name, value: parseValue(a.value, `${at}.value`) };
    }),
    wantRows,
  };
}

function parseCond(raw: unknown, path: string): BatchCond {
  if (!isObject(raw)) fail(path, "expected a BatchCond object");
  switch (raw.type) {
    case "ok":
    case "error":
      if (typeof raw.step !== "number" || !Number.isSafeInteger(raw.step) || raw.step < 0)
        fail(`${path}.step`, "expected a step index");
      return { type: raw.type, step: raw.step };
    case "not":
      return { type: "not", cond: parseCond(raw.cond, `${path}.cond`) };
    case "and":
    case "or": {
      if (!Array.isArray(raw.conds)) fail(`${path}.conds`, "expected an array");
      const conds = raw.conds.map((c, i) => parseCond(c, `${path}.conds[${i}]`));
      return { type: raw.type, conds };
    }
    case "is_autocommit":
      return { type: "is_autocommit" };
    default:
      return fail(path, `unknown condition type ${JSON.stringify(raw.type)}`);
  }
}

function parseRequest(raw: unknown, path: string): StreamRequest {
  if (!isObject(raw)) fail(path, "expected a StreamRequest object");
  switch (raw.type) {
    case "close":
    case "get_autocommit":
      return { type: raw.type };
    case "execute":
      return { type: "execute", stmt: parseStmt(raw.stmt, `${path}.stmt`) };
    case "batch": {
      if (!isObject(raw.batch) || !Array.isArray(raw.batch.steps))
        fail(`${path}.batch`, "expected { steps: [] }");
      const steps = raw.batch.steps.map((s, i): BatchStep => {
        const at = `${path}.batch.steps[${i}]`;
        if (!isObject(s)) fail(at, "expected a BatchStep object");
        const condition =
          s.condition === undefined || s.condition === null
            ? undefined
            : parseCond(s.condition, `${at}.condition`);
        return { condition, stmt: parseStmt(s.stmt, `${at}.stmt`) };
      });
      return { type: "batch", steps };
    }
    case "sequence":
    case "describe": {
      const sql = optionalString(raw.sql, `${path}.sql`);
      const sqlId = optionalSqlId(raw.sql_id, `${path}.sql_id`);
      if ((sql === undefined) === (sqlId === undefined))
        fail(path, "exactly one of sql and sql_id is required");
      return { type: raw.type, sql, sqlId };
    }
    case "store_sql": {
      const sqlId = optionalSqlId(raw.sql_id, `${path}.sql_id`);
      if (sqlId === undefined || typeof raw.sql !== "string") fail(path, "expected { sql_id, sql }");
      return { type: "store_sql", sqlId, sql: raw.sql };
    }
    case "close_sql": {
      const sqlId = optionalSqlId(raw.sql_id, `${path}.sql_id`);
      if (sqlId === undefined) fail(path, "expected { sql_id }");
      return { type: "close_sql", sqlId };
    }
    default:
      return fail(path, `unknown request type ${JSON.stringify(raw.type)}`);
  }
}

function parsePipeline(raw: unknown): PipelineBody {
  if (!isObject(raw)) fail("body", "expected a JSON object");
  const baton = raw.baton ?? null;
  if (baton !== null && typeof baton !== "string") fail("baton", "expected a string or null");
  if (!Array.isArray(raw.requests)) fail("requests", "expected an array");
  return { baton, requests: raw.requests.map((r, i) => parseRequest(r, `requests[${i}]`)) };
}

// ---------------------------------------------------------------------------------------------------------------
// Execution on one stream's connection

function encodeValue(value: unknown): JsonValue {
  if (value === null || value === undefined) return { type: "null" };
  if (typeof value === "bigint") return { type: "integer", value: value.toString() };
  if (typeof value === "number") return { type: "float", value };
  if (typeof value === "string") return { type: "text", value };
  if (value instanceof Uint8Array) return { type: "blob", base64: Buffer.from(value).toString("base64") };
  throw new Error(`unexpected value from SQLite: ${typeof value}`);
}

/** `{ message, code }` for anything the native binding threw: the base SQLite code, the native message. */
function sqliteError(thrown: unknown): RequestError {
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  const code = isObject(thrown) && typeof thrown.code === "string" ? thrown.code : "";
  const base = /^SQLITE_[A-Z]+/.exec(code)?.[0] ?? "SQLITE_ERROR";
  return new RequestError(message, base);
}

/** The leading keyword decides what `describe` reports as read-only; good enough for a test server. */
const READONLY_SQL = /^\s*(SELECT|VALUES|EXPLAIN|WITH\s+(?!.*\b(INSERT|UPDATE|DELETE|REPLACE)\b))/is;

class Stream {
  readonly id: string;
  readonly db: Connection;
  readonly sqls = new Map<number, string>();
  baton: string | undefined;
  busy = false;
  closed = false;
  timer: NodeJS.Timeout | undefined;
  readonly #counters: ReturnType<Connection["prepare"]>;

  constructor(id: string, dbPath: string, busyTimeoutMs: number) {
    this.id = id;
    this.db = new Database(dbPath);
    this.db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    this.#counters = this.db
      .prepare("SELECT changes(), total_changes(), last_insert_rowid()")
      .raw(true)
      .safeIntegers(true);
  }

  #readCounters(): { changes: bigint; total: bigint; lastRowid: bigint } {
    const row = this.#counters.all([])[0] as [bigint, bigint, bigint];
    return { changes: row[0], total: row[1], lastRowid: row[2] };
  }

  #sqlOf(source: { sql: string | undefined; sqlId: number | undefined }): string {
    if (source.sql !== undefined) return source.sql;
    const sql = this.sqls.get(source.sqlId ?? -1);
    if (sql === undefined) throw new RequestError(`SQL text ${source.sqlId} not found`, "SQL_NOT_FOUND");
    return sql;
  }

  execute(stmt: Stmt): StmtResultJson {
    const sql = this.#sqlOf(stmt);
    if (stmt.args.length > 0 && stmt.namedArgs.length > 0)
      throw new RequestError(
        "this test server cannot bind positional and named arguments in one statement",
        "ARGS_INVALID",
      );
    // The binding matches object keys against `:name`, `@name` and `$name`, so names lose their prefix.
    const params: Value[] | Record<string, Value> =
      stmt.namedArgs.length > 0
        ? Object.fromEntries(
            stmt.namedArgs.map((a) => [/^[:@$]/.test(a.name) ? a.name.slice(1) : a.name, a.value]),
          )
        : [...stmt.args];
    try {
      const prepared = this.db.prepare(sql);
      const before = this.#readCounters().total;
      let cols: StmtResultJson["cols"] = [];
      let rows: unknown[][] = [];
      if (prepared.reader) {
        prepared.raw(true).safeIntegers(true);
        rows = prepared.all(params) as unknown[][];
        cols = prepared.columns().map((c) => ({ name: c.name, decltype: c.type }));
      } else {
        prepared.run(params);
      }
      const after = this.#readCounters();
      // changes() keeps the value of the last INSERT/UPDATE/DELETE, so it only counts if this one changed rows.
      const affected = after.total === before ? 0 : Number(after.changes);
      return {
        cols,
        rows: stmt.wantRows ? rows.map((row) => row.map(encodeValue)) : [],
        affected_row_count: affected,
        last_insert_rowid: after.lastRowid.toString(),
      };
    } catch (thrown) {
      if (thrown instanceof RequestError) throw thrown;
      throw sqliteError(thrown);
    }
  }

  batch(steps: readonly BatchStep[]): {
    step_results: (StmtResultJson | null)[];
    step_errors: (ErrorJson | null)[];
  } {
    const results: (StmtResultJson | null)[] = [];
    const errors: (ErrorJson | null)[] = [];
    steps.forEach((step, index) => {
      const enabled = step.condition === undefined || this.#holds(step.condition, index, results, errors);
      let result: StmtResultJson | null = null;
      let error: ErrorJson | null = null;
      if (enabled) {
        try {
          result = this.execute(step.stmt);
        } catch (thrown) {
          error = (thrown instanceof RequestError ? thrown : sqliteError(thrown)).toJson();
        }
      }
      results.push(result);
      errors.push(error);
    });
    return { step_results: results, step_errors: errors };
  }

  #holds(
    cond: BatchCond,
    index: number,
    results: readonly (StmtResultJson | null)[],
    errors: readonly (ErrorJson | null)[],
  ): boolean {
    switch (cond.type) {
      case "ok":
      case "error":
        if (cond.step >= index)
          throw new RequestError("Invalid reference to step in a batch condition", "HRANA_PROTO_ERROR");
        return cond.type === "ok" ? results[cond.step] !== null : errors[cond.step] !== null;
      case "not":
        return !this.#holds(cond.cond, index, results, errors);
      case "and":
        return cond.conds.every((c) => this.#holds(c, index, results, errors));
      case "or":
        return cond.conds.some((c) => this.#holds(c, index, results, errors));
      case "is_autocommit":
        return !this.db.inTransaction;
    }
  }

  sequence(source: { sql: string | undefined; sqlId: number | undefined }): void {
    const sql = this.#sqlOf(source);
    try {
      this.db.exec(sql);
    } catch (thrown) {
      throw sqliteError(thrown);
    }
  }

  describe(source: { sql: string | undefined; sqlId: number | undefined }): unknown {
    const sql = this.#sqlOf(source);
    try {
      const prepared = this.db.prepare(sql);
      const cols = prepared.reader ? prepared.columns().map((c) => ({ name: c.name, decltype: c.type })) : [];
      return {
        params: [],
        cols,
        is_explain: /^\s*EXPLAIN\b/i.test(sql),
        is_readonly: READONLY_SQL.test(sql),
      };
    } catch (thrown) {
      throw sqliteError(thrown);
    }
  }

  /** Rolls back whatever is open and closes the connection (what dropping a sqld stream does). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    try {
      if (this.db.inTransaction) this.db.exec("ROLLBACK");
    } catch {
      // closing the connection rolls back anyway
    }
    this.db.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

const EXPIRED_MEMORY_MS = 300_000;

export async function startHranaServer(options: HranaServerOptions): Promise<HranaServer> {
  const { dbPath } = options;
  if (typeof dbPath !== "string" || dbPath === "")
    throw new Error("startHranaServer: dbPath must be a file path");
  const streamIdleMs = options.streamIdleMs ?? 10_000;
  const busyTimeoutMs = options.busyTimeoutMs ?? 50;
  if (!(streamIdleMs > 0)) throw new Error(`startHranaServer: streamIdleMs must be > 0, got ${streamIdleMs}`);
  if (!(busyTimeoutMs >= 0))
    throw new Error(`startHranaServer: busyTimeoutMs must be ≥ 0, got ${busyTimeoutMs}`);
  const expectedAuth =
    options.authToken === undefined ? undefined : Buffer.from(`Bearer ${options.authToken}`);

  // WAL persists in the file. This connection stays open so the WAL is not checkpointed away every time the
  // last stream closes (sqld keeps its connections too).
  const keeper = new Database(dbPath);
  keeper.exec("PRAGMA journal_mode = WAL");

  const stats: HranaServerStats = {
    requests: 0,
    pipelineRequests: 0,
    byPath: {},
    byStatus: {},
    streamsOpened: 0,
    streamsExpired: 0,
  };
  const faults = new HranaFaults();
  const recorded: RecordedPipeline[] = [];
  const streams = new Map<string, Stream>();
  const expired = new Map<string, number>();
  let closing: Promise<void> | undefined;

  function count(map: Record<string, number>, key: string): void {
    map[key] = (map[key] ?? 0) + 1;
  }

  function send(res: ServerResponse, status: number, body: unknown, type = "application/json"): void {
    count(stats.byStatus, String(status));
    const text = type === "application/json" ? JSON.stringify(body) : String(body);
    res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(text) });
    res.end(text);
  }

  function drop(res: ServerResponse): void {
    count(stats.byStatus, "dropped");
    res.socket?.destroy();
  }

  function expire(stream: Stream): void {
    if (streams.get(stream.id) !== stream) return;
    streams.delete(stream.id);
    stream.close();
    stats.streamsExpired++;
    const now = Date.now();
    for (const [id, at] of expired) if (now - at > EXPIRED_MEMORY_MS) expired.delete(id);
    expired.set(stream.id, now);
  }

  function authorized(req: IncomingMessage): boolean {
    if (expectedAuth === undefined) return true;
    const given = Buffer.from(req.headers.authorization ?? "");
    return given.length === expectedAuth.length && timingSafeEqual(given, expectedAuth);
  }

  /**
   * Finds the stream a baton names and takes it for this request (its old baton is used up). Refusals look like
   * sqld's as the client sees them: expired → JSON with code `STREAM_EXPIRED`; anything else → text/plain, which
   * the client reports as `SERVER_ERROR: Server returned HTTP status 400: Received an invalid baton`.
   */
  function takeStream(baton: string | null): Stream | { body: unknown; type: string } {
    if (baton === null) {
      const stream = new Stream(randomBytes(8).toString("hex"), dbPath, busyTimeoutMs);
      streams.set(stream.id, stream);
      stats.streamsOpened++;
      stream.busy = true;
      return stream;
    }
    const id = baton.split(".")[0] ?? "";
    const stream = streams.get(id);
    if (stream && !stream.busy && stream.baton === baton) {
      clearTimeout(stream.timer);
      stream.baton = undefined;
      stream.busy = true;
      return stream;
    }
    if (!stream && expired.has(id))
      return {
        body: { message: "The stream has expired due to inactivity", code: "STREAM_EXPIRED" },
        type: "application/json",
      };
    return { body: "Received an invalid baton", type: "text/plain" };
  }

  function runRequest(stream: Stream, request: StreamRequest): unknown {
    if (stream.closed) throw new RequestError("The stream was closed by an earlier request", "STREAM_CLOSED");
    switch (request.type) {
      case "close":
        streams.delete(stream.id);
        stream.close();
        return { type: "close" };
      case "execute":
        return { type: "execute", result: stream.execute(request.stmt) };
      case "batch":
        return { type: "batch", result: stream.batch(request.steps) };
      case "sequence":
        stream.sequence(request);
        return { type: "sequence" };
      case "describe":
        return { type: "describe", result: stream.describe(request) };
      case "store_sql":
        if (stream.sqls.has(request.sqlId))
          throw new RequestError(`SQL text ${request.sqlId} already exists`, "SQL_EXISTS");
        stream.sqls.set(request.sqlId, request.sql);
        return { type: "store_sql" };
      case "close_sql":
        stream.sqls.delete(request.sqlId);
        return { type: "close_sql" };
      case "get_autocommit":
        return { type: "get_autocommit", is_autocommit: !stream.db.inTransaction };
    }
  }

  async function handlePipeline(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    let raw: unknown;
    try {
      raw = JSON.parse(await readBody(req));
    } catch {
      send(res, 400, { message: "The request body is not valid JSON", code: "HRANA_PROTO_ERROR" });
      return;
    }
    const index = stats.pipelineRequests++;
    if (options.record) recorded.push({ index, path, body: raw });
    let body: PipelineBody;
    try {
      body = parsePipeline(raw);
    } catch (thrown) {
      if (!(thrown instanceof ProtocolError)) throw thrown;
      send(res, 400, { message: thrown.message, code: "HRANA_PROTO_ERROR" });
      return;
    }

    const matched = faults.match === undefined || faults.match(raw);
    if (matched && faults.delayMs > 0) await new Promise((r) => setTimeout(r, faults.delayMs));
    if (closing) return drop(res); // closed while this request was delayed: open no new stream
    const failure = matched ? takeFault(faults, "fail") : undefined;
    const dropped = matched ? takeFault(faults, "drop") : undefined;
    if (dropped && !dropped.after) return drop(res);
    if (failure && !failure.after) return sendFault(res, failure);

    const taken = takeStream(body.baton);
    if (!(taken instanceof Stream)) {
      send(res, 400, taken.body, taken.type);
      return;
    }
    const stream = taken;
    const results = body.requests.map((request) => {
      try {
        return { type: "ok", response: runRequest(stream, request) };
      } catch (thrown) {
        const error = thrown instanceof RequestError ? thrown : sqliteError(thrown);
        return { type: "error", error: error.toJson() };
      }
    });
    stream.busy = false;
    let baton: string | null = null;
    if (!stream.closed) {
      baton = `${stream.id}.${randomBytes(12).toString("base64url")}`;
      stream.baton = baton;
      stream.timer = setTimeout(() => expire(stream), streamIdleMs);
      stream.timer.unref();
    }

    if (dropped) return drop(res);
    if (failure) return sendFault(res, failure);
    send(res, 200, { baton, base_url: null, results });
  }

  function sendFault(res: ServerResponse, failure: { status: number; body: FaultBody }): void {
    const message = `injected fault: HTTP ${failure.status}`;
    if (failure.body === "text") send(res, failure.status, message, "text/plain");
    else if (failure.body === "json") send(res, failure.status, { error: message });
    else send(res, failure.status, { message });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    stats.requests++;
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    count(stats.byPath, `${req.method} ${path}`);
    if (!authorized(req)) {
      send(res, 401, { error: "Unauthorized: missing or wrong bearer token" });
      return;
    }
    if (req.method === "POST" && (path === "/v2/pipeline" || path === "/v3/pipeline")) {
      await handlePipeline(req, res, path);
      return;
    }
    // Version probes: v2 and v3 with JSON; no protobuf, so a v3 client probing `v3-protobuf` falls back to v2.
    if (req.method === "GET" && (path === "/" || path === "/v2" || path === "/v3")) {
      send(res, 200, "Hrana test server (test-only)", "text/plain");
      return;
    }
    send(res, 404, "Not found", "text/plain");
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((thrown: unknown) => {
      if (res.headersSent) return void res.destroy();
      send(
        res,
        500,
        `internal error: ${thrown instanceof Error ? thrown.message : String(thrown)}`,
        "text/plain",
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stats,
    faults,
    recorded,
    openStreams: () => streams.size,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const stream of streams.values()) stream.close();
        streams.clear();
        keeper.close();
      });
      return closing;
    },
  };
}

function takeFault<K extends "fail" | "drop">(faults: HranaFaults, kind: K): HranaFaults[K] {
  const fault = faults[kind];
  if (!fault || fault.remaining <= 0) return undefined;
  fault.remaining--;
  return fault;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
