/**
 * Error normalisation and classification, in one place.
 *
 * Every error the engine sees goes through `classifyError`: transient errors back off and retry (the migration
 * stays `running` with the reason visible), deterministic ones fail the migration with the message, and a
 * lost lease ends the slice without touching the row (invariant 6).
 */

/** SQLite result codes (base names, as @libsql/client reports them) that go away by themselves. */
export const TRANSIENT_SQLITE_CODES: readonly string[] = [
  "SQLITE_BUSY",
  "SQLITE_LOCKED",
  "SQLITE_FULL", // disk full: hold and retry until space returns
  "SQLITE_IOERR",
  "SQLITE_PROTOCOL",
  "SQLITE_CANTOPEN",
  "SQLITE_INTERRUPT",
];

/** Client and transport codes from @libsql/client's remote path that mean "try again on a new stream". */
export const TRANSIENT_CLIENT_CODES: readonly string[] = [
  "HRANA_CLOSED_ERROR",
  "HRANA_WEBSOCKET_ERROR",
  "STREAM_EXPIRED",
  "TRANSACTION_CLOSED",
  "TRANSACTION_ACTIVE",
];

/** Node/undici network error codes. */
export const TRANSIENT_NETWORK_CODES: readonly string[] = [
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CLOSED",
];

/**
 * Cloudflare D1's errors that go away by themselves (its error list says "retry the operation") or that are its
 * back-pressure: an overloaded database, a queue of requests, a storage operation or a batch that ran out of
 * time or CPU. As transient errors they back off and shrink the next step (invariant 6). These phrases are
 * specific to D1 and match wherever they appear, with or without D1's `D1_ERROR: ` prefix.
 */
export const TRANSIENT_D1_MESSAGES: readonly RegExp[] = [
  /D1 DB is overloaded/i,
  /too many requests queued/i,
  /requests queued for too long/i,
  /exceeded its CPU time limit/i,
  /exceeded its memory limit/i,
  /storage operation exceeded timeout/i,
  /caused object to be reset/i, // "Internal error in D1 DB storage caused object to be reset." and kin
  /D1 DB reset because its code was updated/i,
  /transient issue on remote node/i,
  /Network connection lost/i,
  /Can't read from request stream/i,
];

/** Broader phrases, transient only on an error D1 reported (a `D1_…` code or message prefix). */
const TRANSIENT_D1_GENERIC = [/overloaded/i, /CPU time limit/i, /internal error/i, /timed? ?out/i];

/** The message our fence trigger raises when a step runs without a valid lease (see state-store.ts). */
export const LEASE_LOST_MESSAGE = "trickle_lease_lost";

export type ErrorKind = "transient" | "deterministic" | "lease-lost";

export interface ClassifiedError {
  readonly kind: ErrorKind;
  /** The most specific code found (`SQLITE_BUSY`, `ECONNRESET`, `SERVER_ERROR`, `Error`…). */
  readonly code: string;
  readonly message: string;
  readonly error: Error;
}

/** Turns anything thrown into an `Error` carrying an optional string `code`. */
export function coerceError(thrown: unknown): Error & { code?: string } {
  if (thrown instanceof Error) return thrown as Error & { code?: string };
  const error = new Error(typeof thrown === "string" ? thrown : `non-error thrown: ${safeString(thrown)}`);
  return error;
}

/**
 * An operation the database behind the client cannot do at all, e.g. an interactive transaction on Cloudflare
 * D1 (the dry-run needs one). Deterministic; routes answer it with a 409 naming what is missing.
 */
export class UnsupportedOperationError extends Error {
  readonly code = "UNSUPPORTED";

  constructor(message: string) {
    super(message);
    this.name = "UnsupportedOperationError";
  }
}

export class LeaseLostError extends Error {
  constructor(migration: string) {
    super(`lease on ${migration} was lost: another runner holds it, or it expired, or an operator paused it`);
    this.name = "LeaseLostError";
  }
}

export function classifyError(thrown: unknown): ClassifiedError {
  const error = coerceError(thrown);
  const message = error.message;
  if (error instanceof LeaseLostError || message.includes(LEASE_LOST_MESSAGE)) {
    return { kind: "lease-lost", code: "LEASE_LOST", message, error };
  }
  const codes = collectCodes(error);
  const code = codes[0] ?? error.name ?? "Error";
  const transient =
    codes.some(
      (c) =>
        TRANSIENT_SQLITE_CODES.some((t) => c === t || c.startsWith(`${t}_`)) ||
        TRANSIENT_CLIENT_CODES.includes(c) ||
        TRANSIENT_NETWORK_CODES.includes(c),
    ) ||
    (codes.includes("SERVER_ERROR") && isRetryableServerError(message)) ||
    isTransientD1(message, codes) ||
    isNetworkFailure(error);
  return { kind: transient ? "transient" : "deterministic", code, message, error };
}

/** Codes on the error and its `cause` chain, most specific first. */
function collectCodes(error: unknown): string[] {
  const codes: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    if (typeof current !== "object") break;
    const { code, extendedCode } = current as { code?: unknown; extendedCode?: unknown };
    if (typeof code === "string") codes.push(code);
    if (typeof extendedCode === "string") codes.push(extendedCode);
    current = (current as { cause?: unknown }).cause;
  }
  return codes;
}

function isRetryableServerError(message: string): boolean {
  const status = /HTTP (?:status )?(\d{3})/i.exec(message)?.[1];
  if (status) return Number(status) >= 500 || status === "429" || /baton/i.test(message);
  return /baton|stream/i.test(message);
}

function isTransientD1(message: string, codes: readonly string[]): boolean {
  if (TRANSIENT_D1_MESSAGES.some((pattern) => pattern.test(message))) return true;
  const fromD1 = /^D1_[A-Z_]+:/.test(message) || codes.some((c) => c.startsWith("D1_"));
  // A SQLite code in the message is SQLite's own verdict (a constraint, a syntax error): not D1's back-pressure.
  return fromD1 && !/\bSQLITE_[A-Z]/.test(message) && TRANSIENT_D1_GENERIC.some((p) => p.test(message));
}

function isNetworkFailure(error: Error): boolean {
  if (error.name === "AbortError" || error.name === "TimeoutError") return true;
  return error instanceof TypeError && /fetch failed|network|socket|terminated/i.test(error.message);
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** SQLite codes a single row can cause (a constraint, a type mismatch, a runtime error in an expression). */
const ROW_LEVEL_CODES = [
  "SQLITE_CONSTRAINT",
  "SQLITE_MISMATCH",
  "SQLITE_ERROR",
  "SQLITE_TOOBIG",
  "SQLITE_RANGE",
];

/** Messages of errors that come from the statement itself, so every row would fail the same way. */
const STATEMENT_LEVEL =
  /no such (table|column|function|collation|index|module)|syntax error|has no column named|incomplete input|unrecognized token|wrong number of arguments|misuse of|ambiguous column name|not authorized|too many SQL variables|no tables specified|cannot (start|commit)/i;

/**
 * Whether a deterministic step error may come from particular rows (a poison row), so that bisecting the step
 * can find them. Errors of the statement itself (a missing column, a syntax error) fail every row alike and are
 * not worth bisecting: the migration fails at once with the message.
 */
export function isRowLevelError(error: ClassifiedError): boolean {
  if (error.kind !== "deterministic") return false;
  if (STATEMENT_LEVEL.test(error.message)) return false;
  return ROW_LEVEL_CODES.some((c) => error.code === c || error.code.startsWith(`${c}_`));
}
