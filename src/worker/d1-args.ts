/**
 * libSQL statement arguments, bound the way Cloudflare D1 can take them.
 *
 * The engine writes statements for @libsql/client: named arguments (`:trickle_lo`, given as an object) or
 * positional ones (`?`, `?NNN`, given as an array), and `bigint` for every key and counter (design invariant 8).
 * D1 binds positional values only, and refuses `bigint`. So each statement's SQL is scanned once — string
 * literals, quoted identifiers and comments skipped, as SQLite's tokenizer does — to find its parameters and
 * the index SQLite gives each one, and it is rewritten:
 * - a `bigint` (or a boolean) becomes an integer literal in the SQL text, in parentheses, so D1 stores and
 *   compares it as an INTEGER — exactly, over the whole 64-bit range — as libSQL does when it sends a Hrana
 *   integer. The text is the decimal digits of a `bigint`, never caller-controlled text.
 * - every other value is bound as `?1`, `?2`, … in order: numbers (D1, like Hrana, binds a JS number as a REAL),
 *   strings, null, and bytes (`Uint8Array`, `ArrayBuffer`); a `Date` as its epoch milliseconds, as libSQL does.
 * D1 binds at most `D1_MAX_BOUND_PARAMETERS` values per statement; a statement that needs more fails here,
 * naming the limit (inlined integers do not count).
 *
 * Portable: no `node:*` imports.
 */
import type { InArgs, InValue } from "@libsql/client";

/** D1's limit on bound parameters per statement. */
export const D1_MAX_BOUND_PARAMETERS = 100;

/** A value D1's `bind()` accepts. */
export type D1Value = string | number | null | ArrayBuffer | ArrayBufferView;

/** A statement as D1 runs it: SQL with only `?N` parameters, and the values for them in order. */
export interface D1Statement {
  readonly sql: string;
  readonly values: readonly D1Value[];
}

/** One parameter of a statement: where it is in the SQL, and what SQLite calls it. */
interface Parameter {
  readonly start: number;
  readonly end: number;
  /** SQLite's index of this parameter (1-based), as `sqlite3_bind_*` would use it. */
  readonly index: number;
  /** The name without its prefix (`:a`, `@a` and `$a` → `a`); undefined for `?` and `?NNN`. */
  readonly name: string | undefined;
}

/** Parsed statements by SQL text: the engine sends the same few texts over and over. */
const parsed = new Map<string, readonly Parameter[]>();
const PARSED_MAX = 256;

/**
 * The statement `sql` with `args` as D1 binds it. Throws a `TypeError` for a value libSQL could not bind either
 * (undefined, a non-finite number), for named parameters without named arguments (or the other way round), and
 * for more than `D1_MAX_BOUND_PARAMETERS` bound values.
 */
export function d1Statement(sql: string, args: InArgs | undefined): D1Statement {
  const parameters = parametersOf(sql);
  if (parameters.length === 0) return { sql, values: [] };
  const named = args !== undefined && !Array.isArray(args) ? byName(args) : undefined;
  const positional = Array.isArray(args) ? args : [];
  const values: D1Value[] = [];
  /** The `?N` each SQLite index was given (a parameter may appear more than once). */
  const bound = new Map<number, number>();
  let out = "";
  let at = 0;
  for (const p of parameters) {
    out += sql.slice(at, p.start);
    at = p.end;
    let value: InValue | undefined;
    if (named !== undefined) {
      if (p.name === undefined) {
        throw new TypeError(`positional parameter ${sql.slice(p.start, p.end)} given named arguments`);
      }
      value = named.get(p.name);
    } else {
      value = positional[p.index - 1];
    }
    // An argument that is not given binds NULL, as an unbound SQLite parameter is.
    const literal = integerLiteral(value ?? null);
    if (literal !== undefined) {
      out += literal;
      continue;
    }
    let n = bound.get(p.index);
    if (n === undefined) {
      values.push(d1Value(value ?? null));
      n = values.length;
      bound.set(p.index, n);
    }
    out += `?${n}`;
  }
  out += sql.slice(at);
  if (values.length > D1_MAX_BOUND_PARAMETERS) {
    throw new TypeError(
      `D1 binds at most ${D1_MAX_BOUND_PARAMETERS} parameters per statement; this one has ${values.length}`,
    );
  }
  return { sql: out, values };
}

function byName(args: Readonly<Record<string, InValue>>): Map<string, InValue> {
  const map = new Map<string, InValue>();
  for (const [key, value] of Object.entries(args)) {
    const name = /^[:@$]/.test(key) ? key.slice(1) : key;
    if (!map.has(name)) map.set(name, value);
  }
  return map;
}

/** `bigint` and booleans as SQL integer literals; anything else undefined (it is bound). */
function integerLiteral(value: InValue): string | undefined {
  if (typeof value === "bigint") return value < 0n ? `(${value})` : `${value}`;
  if (typeof value === "boolean") return value ? "1" : "0";
  return undefined;
}

function d1Value(value: InValue): D1Value {
  if (value === null || typeof value === "string") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError(`cannot bind ${value}: only finite numbers`);
    return value;
  }
  if (value instanceof Date) return value.valueOf();
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return value;
  throw new TypeError(`cannot bind a value of type ${typeof value}`);
}

// ---------------------------------------------------------------------------------------------------------
// Finding the parameters

/** Characters that may continue an identifier in SQLite (`$` included: `a$b` is one name, not a parameter). */
const isIdChar = (c: string) => /[A-Za-z0-9_$]/.test(c) || c.charCodeAt(0) >= 0x80;
const isIdStart = (c: string) => /[A-Za-z_]/.test(c) || c.charCodeAt(0) >= 0x80;
const isDigit = (c: string) => c >= "0" && c <= "9";

/** The parameters of `sql` in order, each with the index SQLite assigns it (sqlite3ExprAssignVarNumber). */
function parametersOf(sql: string): readonly Parameter[] {
  const cached = parsed.get(sql);
  if (cached) return cached;
  const parameters: Parameter[] = [];
  const indexes = new Map<string, number>(); // "?3", ":a"… → index, as SQLite reuses them
  let last = 0; // the largest index given so far
  const n = sql.length;
  let i = 0;
  const skipQuoted = (close: string) => {
    // From the opening quote to the matching close; a doubled close quote is an escaped one.
    i++;
    while (i < n) {
      if (sql[i] === close) {
        if (close !== "]" && sql[i + 1] === close) i += 2;
        else return void i++;
      } else i++;
    }
  };
  while (i < n) {
    const c = sql[i]!;
    if (c === "'" || c === '"' || c === "`") skipQuoted(c);
    else if (c === "[") skipQuoted("]");
    else if (c === "-" && sql[i + 1] === "-") {
      const eol = sql.indexOf("\n", i);
      i = eol === -1 ? n : eol + 1;
    } else if (c === "/" && sql[i + 1] === "*") {
      const close = sql.indexOf("*/", i + 2);
      i = close === -1 ? n : close + 2;
    } else if (isIdStart(c) || isDigit(c)) {
      // A keyword, an identifier or a number: a `$` or `:` inside it does not start a parameter.
      while (i < n && isIdChar(sql[i]!)) i++;
    } else if (c === "?") {
      const start = i++;
      while (i < n && isDigit(sql[i]!)) i++;
      let index: number;
      if (i - start > 1) {
        index = Number(sql.slice(start + 1, i));
        last = Math.max(last, index);
      } else {
        index = ++last;
      }
      parameters.push({ start, end: i, index, name: undefined });
    } else if ((c === ":" || c === "@" || c === "$") && i + 1 < n && isIdChar(sql[i + 1]!)) {
      const start = i++;
      while (i < n && (isIdChar(sql[i]!) || (c === "$" && sql[i] === ":" && sql[i + 1] === ":"))) {
        i += sql[i] === ":" ? 2 : 1;
      }
      const token = sql.slice(start, i);
      let index = indexes.get(token);
      if (index === undefined) {
        index = ++last;
        indexes.set(token, index);
      }
      parameters.push({ start, end: i, index, name: token.slice(1) });
    } else i++;
  }
  if (parsed.size >= PARSED_MAX) parsed.delete(parsed.keys().next().value as string);
  parsed.set(sql, parameters);
  return parameters;
}
