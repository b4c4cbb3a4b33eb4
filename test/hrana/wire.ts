/**
 * Reading the Hrana pipelines the test server recorded: statements with `sql_id` resolved against the same
 * request's `store_sql`s, so a test can tell which HTTP request was a step, which one read the state table, and
 * what travelled as an integer or a float.
 */
import type { RecordedPipeline } from "./server.ts";

export interface WireValue {
  readonly type: string;
  readonly value?: unknown;
}

export interface WireStatement {
  readonly sql: string;
  readonly values: readonly WireValue[];
  readonly named: Readonly<Record<string, WireValue>>;
}

export interface WireRequest {
  readonly index: number;
  readonly baton: unknown;
  /** Request types in order (`store_sql`, `batch`, `execute`, `close`…). */
  readonly types: readonly string[];
  /** Statements of `execute` requests and `batch` steps, in order. */
  readonly statements: readonly WireStatement[];
}

type Json = Record<string, unknown>;

export function decodePipeline(recorded: RecordedPipeline): WireRequest {
  const body = recorded.body as Json;
  const requests = (body.requests ?? []) as Json[];
  const stored = new Map<number, string>();
  const statements: WireStatement[] = [];
  const statementOf = (stmt: Json): WireStatement => {
    const sql = typeof stmt.sql === "string" ? stmt.sql : stored.get(stmt.sql_id as number);
    if (sql === undefined)
      throw new Error(`request ${recorded.index} uses sql_id ${stmt.sql_id} it did not store`);
    const named = Object.fromEntries(
      ((stmt.named_args ?? []) as Json[]).map((a) => [a.name as string, a.value as WireValue]),
    );
    return { sql, values: (stmt.args ?? []) as WireValue[], named };
  };
  for (const request of requests) {
    if (request.type === "store_sql") stored.set(request.sql_id as number, request.sql as string);
    if (request.type === "execute") statements.push(statementOf(request.stmt as Json));
    if (request.type === "batch")
      for (const step of (request.batch as { steps: Json[] }).steps)
        statements.push(statementOf(step.stmt as Json));
  }
  return {
    index: recorded.index,
    baton: body.baton,
    types: requests.map((r) => r.type as string),
    statements,
  };
}

export const FENCE = /INSERT INTO _async_migrations_fence/;

/** A step of a migration on `table`: the lease fence and the data UPDATE in one request. */
export function isStep(request: WireRequest, table: string): boolean {
  return (
    request.statements.some((s) => FENCE.test(s.sql)) &&
    request.statements.some((s) => new RegExp(`^\\s*UPDATE "${table}"`).test(s.sql))
  );
}

/** The lease owner a step's fence names. */
export function stepOwner(request: WireRequest): string {
  const fence = request.statements.find((s) => FENCE.test(s.sql));
  const owner = fence?.values[1]?.value;
  if (typeof owner !== "string") throw new Error(`request ${request.index} has no fence owner`);
  return owner;
}

/** The full read of the state table that snapshots are built from. */
export function isStateListRead(request: WireRequest): boolean {
  return request.statements.some((s) => /FROM _async_migrations ORDER BY name\s*$/.test(s.sql));
}

export function allValues(statement: WireStatement): WireValue[] {
  return [...statement.values, ...Object.values(statement.named)];
}

/** Any statement that writes `table`. */
export function writesTable(statement: WireStatement, table: string): boolean {
  return new RegExp(`^\\s*(UPDATE|INSERT\\s+INTO|DELETE\\s+FROM|REPLACE\\s+INTO)\\s+"?${table}\\b`, "i").test(
    statement.sql,
  );
}
