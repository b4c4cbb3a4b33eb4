/**
 * Lexical checks of the SQL fragments a definition contributes (design invariant 11).
 *
 * A definition's `filter`, `verify` and `set` are spliced into the engine's own statements, e.g.
 * `UPDATE t SET <set> WHERE <key range> AND (<filter>)`. Text that ends that statement early (`;`), comments out
 * its tail (`--`, `/*`), closes a parenthesis it did not open, or starts another clause (`ORDER BY`, `FROM`,
 * `RETURNING`…) would make a step touch rows outside its key range, or run a second statement on the whole
 * table. This module reads the fragment the way SQLite's tokenizer does — strings, quoted identifiers and blobs
 * are opaque, so a `--` or `;` inside `'…'` is harmless — and refuses anything that is not one expression (a
 * condition) or a list of assignments (a SET clause). It needs no database; the live schema check (unknown
 * columns, syntax errors) is `fragmentProblem` in key-check.ts.
 */

export type TokenKind =
  /** An unquoted word: a keyword, a function or a column name. */
  | "word"
  /** A quoted identifier: `"…"`, `` `…` `` or `[…]`. */
  | "identifier"
  | "string"
  | "blob"
  | "number"
  /** `?`, `?1`, `:name`, `@name`, `$name`. */
  | "parameter"
  | "operator"
  | "open"
  | "close"
  | "comma"
  | "semicolon"
  | "comment";

export interface Token {
  readonly kind: TokenKind;
  /** The token's source text, quotes included. */
  readonly text: string;
  /** Offset of the token in the fragment. */
  readonly start: number;
  /** Parenthesis depth the token sits at: 0 at the top level; `(` and its `)` both carry the outer depth. */
  readonly depth: number;
}

/**
 * Keywords that end an expression and start another clause (or statement) when they appear outside
 * parentheses. Inside parentheses they belong to a subquery, which SQLite keeps inside them.
 */
const CLAUSE_KEYWORDS = new Set([
  "SELECT",
  "FROM",
  "WHERE",
  "GROUP",
  "HAVING",
  "WINDOW",
  "ORDER",
  "LIMIT",
  "OFFSET",
  "UNION",
  "INTERSECT",
  "EXCEPT",
  "RETURNING",
  "VALUES",
  "SET",
]);

/** Multi-character operators, longest first so that `->>` is not read as `->` then `>`. */
const OPERATORS = ["->>", "->", "||", "<<", ">>", "<=", ">=", "==", "!=", "<>"];
const SINGLE_OPERATORS = "+-*/%<>=&|~.";
const WHITESPACE = " \t\n\r\f\v";

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}

/** SQLite accepts any non-ASCII character in an identifier, like a letter. */
function isWordStart(c: string | undefined): boolean {
  return c !== undefined && (/[A-Za-z_]/.test(c) || c.charCodeAt(0) >= 0x80);
}

function isWordChar(c: string | undefined): boolean {
  return c !== undefined && (isWordStart(c) || isDigit(c) || c === "$");
}

/** Thrown by `tokenize` for text SQLite's tokenizer would not accept (an unterminated string, a stray `#`…). */
export class FragmentSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FragmentSyntaxError";
  }
}

/**
 * Splits a fragment into tokens, tracking parenthesis depth. Comments and semicolons are returned as tokens (the
 * checks refuse them with a precise message); whitespace is dropped. Throws `FragmentSyntaxError` for an
 * unterminated string, identifier or comment, or a character SQLite does not accept.
 */
export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let depth = 0;
  let i = 0;
  const push = (kind: TokenKind, end: number, at = depth): void => {
    tokens.push({ kind, text: text.slice(i, end), start: i, depth: at });
    i = end;
  };
  /** End offset of a quoted run starting at `open`, where a doubled `close` stands for itself. */
  const quoted = (open: number, close: string, doubling: boolean, what: string): number => {
    let j = open + 1;
    for (;;) {
      const k = text.indexOf(close, j);
      if (k < 0) throw new FragmentSyntaxError(`unterminated ${what} starting at offset ${open}`);
      if (doubling && text[k + 1] === close) {
        j = k + 2;
        continue;
      }
      return k + 1;
    }
  };
  while (i < text.length) {
    const c = text[i] as string;
    const next = text[i + 1];
    if (WHITESPACE.includes(c)) {
      i++;
    } else if (c === "-" && next === "-") {
      const end = text.indexOf("\n", i);
      push("comment", end < 0 ? text.length : end);
    } else if (c === "/" && next === "*") {
      const end = text.indexOf("*/", i + 2);
      // SQLite itself accepts an unterminated block comment at the end of the input; it is refused either way.
      push("comment", end < 0 ? text.length : end + 2);
    } else if (c === "'") {
      push("string", quoted(i, "'", true, "string"));
    } else if ((c === "x" || c === "X") && next === "'") {
      push("blob", quoted(i + 1, "'", true, "blob literal"));
    } else if (c === '"') {
      push("identifier", quoted(i, '"', true, "quoted identifier"));
    } else if (c === "`") {
      push("identifier", quoted(i, "`", true, "quoted identifier"));
    } else if (c === "[") {
      push("identifier", quoted(i, "]", false, "[identifier]"));
    } else if (isDigit(c) || (c === "." && isDigit(next))) {
      push("number", numberEnd(text, i));
    } else if (isWordStart(c)) {
      let j = i + 1;
      while (isWordChar(text[j])) j++;
      push("word", j);
    } else if (c === "?") {
      let j = i + 1;
      while (isDigit(text[j])) j++;
      push("parameter", j);
    } else if ((c === ":" || c === "@" || c === "$") && isWordChar(next)) {
      let j = i + 1;
      while (isWordChar(text[j])) j++;
      push("parameter", j);
    } else if (c === "(") {
      push("open", i + 1);
      depth++;
    } else if (c === ")") {
      depth--;
      push("close", i + 1);
    } else if (c === ",") {
      push("comma", i + 1);
    } else if (c === ";") {
      push("semicolon", i + 1);
    } else {
      const op = OPERATORS.find((o) => text.startsWith(o, i));
      if (op) push("operator", i + op.length);
      else if (SINGLE_OPERATORS.includes(c)) push("operator", i + 1);
      else throw new FragmentSyntaxError(`unexpected character ${JSON.stringify(c)} at offset ${i}`);
    }
  }
  return tokens;
}

/** End of a numeric literal: decimal, hexadecimal, with fraction and exponent; trailing letters stay attached. */
function numberEnd(text: string, start: number): number {
  let j = start;
  if (text[j] === "0" && (text[j + 1] === "x" || text[j + 1] === "X")) {
    j += 2;
  } else {
    while (isDigit(text[j]) || text[j] === "_") j++;
    if (text[j] === ".") j++;
    while (isDigit(text[j]) || text[j] === "_") j++;
    if ((text[j] === "e" || text[j] === "E") && (isDigit(text[j + 1]) || /[+-]/.test(text[j + 1] ?? ""))) {
      j += 2;
    }
  }
  // `123abc` is one (invalid) token for SQLite; keep it one here too, and let the live check report it.
  while (isWordChar(text[j])) j++;
  return j;
}

/**
 * The lexical rules both kinds of fragment share: a non-empty string, no comment, no `;`, no bound parameter,
 * parentheses balanced and never closed below the top level, no clause keyword outside parentheses. Throws a
 * plain `Error` starting with `what` (which names the migration and the field).
 */
function checkCommon(text: unknown, what: string, kind: string): Token[] {
  if (typeof text !== "string" || text.trim() === "") throw new Error(`${what} must be a non-empty ${kind}`);
  let tokens: Token[];
  try {
    tokens = tokenize(text);
  } catch (error) {
    if (error instanceof FragmentSyntaxError) throw new Error(`${what}: ${error.message}`);
    throw error;
  }
  let depth = 0;
  for (const token of tokens) {
    switch (token.kind) {
      case "comment":
        throw new Error(
          `${what} must not contain a comment (${JSON.stringify(token.text.slice(0, 2))} at offset ${token.start}): it would comment out the rest of the step's statement, including its key range`,
        );
      case "semicolon":
        throw new Error(
          `${what} must be a single SQL expression (no ";" outside a string, found at offset ${token.start})`,
        );
      case "parameter":
        throw new Error(
          `${what}: parameter ${JSON.stringify(token.text)} at offset ${token.start} cannot be bound (a definition's SQL gets no arguments); write the value into the SQL`,
        );
      case "open":
        depth++;
        break;
      case "close":
        depth--;
        if (depth < 0) {
          throw new Error(
            `${what}: ")" at offset ${token.start} closes a parenthesis the fragment did not open; it would escape the step's key range`,
          );
        }
        break;
      case "word":
        if (token.depth === 0 && CLAUSE_KEYWORDS.has(token.text.toUpperCase())) {
          throw new Error(
            `${what}: the keyword ${token.text.toUpperCase()} at offset ${token.start} is outside parentheses, where it would start another clause of the step's statement (quote a column of that name: "${token.text}")`,
          );
        }
        break;
      default:
        break;
    }
  }
  if (depth !== 0) throw new Error(`${what}: unbalanced parentheses (${depth} "(" not closed)`);
  return tokens;
}

/**
 * Checks a `filter` or `verify` condition: exactly one SQL expression (see `checkCommon`; a comma outside
 * parentheses would make it a row value). Returns the text unchanged. Throws a plain `Error` naming `what`.
 */
export function checkCondition(text: unknown, what: string): string {
  const tokens = checkCommon(text, what, "SQL condition");
  const comma = tokens.find((t) => t.kind === "comma" && t.depth === 0);
  if (comma) {
    throw new Error(
      `${what} must be one SQL expression: the "," at offset ${comma.start} is outside parentheses`,
    );
  }
  return text as string;
}

/**
 * Checks a `set` clause: the common rules, then a list of assignments separated by top-level commas, each
 * `column = expression` or `(a, b) = (…)`. Returns the assigned column names, unquoted and lower-cased (SQLite
 * compares column names case-insensitively), in order. Throws a plain `Error` naming `what`.
 */
export function checkSetClause(text: unknown, what: string): string[] {
  const tokens = checkCommon(text, what, "SQL SET clause");
  const parts: Token[][] = [[]];
  for (const token of tokens) {
    if (token.kind === "comma" && token.depth === 0) parts.push([]);
    else parts[parts.length - 1]?.push(token);
  }
  const columns: string[] = [];
  for (const [index, part] of parts.entries()) {
    const assigned = assignedColumns(part);
    if (!assigned) {
      const shown =
        part.length === 0 ? "(empty)" : (text as string).slice(part[0]!.start, endOf(part)).trim();
      throw new Error(
        `${what}: assignment ${index + 1} (${JSON.stringify(shown.slice(0, 80))}) must have the form "column = expression" or "(a, b) = (…)"`,
      );
    }
    columns.push(...assigned);
  }
  return columns;
}

/**
 * A checked `set` clause as one condition that names the same columns and expressions — each assignment
 * `a = x` (or `(a, b) = (x, y)`) read as a comparison, joined with AND — so it can be compiled against the live
 * schema inside a SELECT that reads no row, instead of an UPDATE that would take the write lock.
 */
export function setClauseAsCondition(text: string): string {
  const commas = tokenize(text).filter((t) => t.kind === "comma" && t.depth === 0);
  const parts: string[] = [];
  let from = 0;
  for (const comma of commas) {
    parts.push(text.slice(from, comma.start));
    from = comma.start + comma.text.length;
  }
  parts.push(text.slice(from));
  return parts.map((part) => `(${part.trim()})`).join(" AND ");
}

function endOf(part: readonly Token[]): number {
  const last = part[part.length - 1];
  return last ? last.start + last.text.length : 0;
}

/** The columns one assignment writes, or undefined if it is not `col = expr` / `(a, b) = expr`. */
function assignedColumns(part: readonly Token[]): string[] | undefined {
  const isName = (t: Token | undefined): boolean => t?.kind === "word" || t?.kind === "identifier";
  const isAssign = (t: Token | undefined): boolean => t?.kind === "operator" && t.text === "=";
  const first = part[0];
  if (first && isName(first)) {
    // The expression must not be empty: `a =` alone is an error SQLite would report only later.
    return isAssign(part[1]) && part.length > 2 ? [unquote(first)] : undefined;
  }
  if (first?.kind !== "open") return undefined;
  const names: string[] = [];
  let i = 1;
  for (;;) {
    const name = part[i];
    if (!name || !isName(name)) return undefined;
    names.push(unquote(name));
    const after = part[i + 1];
    if (after?.kind === "close") break;
    if (after?.kind !== "comma") return undefined;
    i += 2;
  }
  return isAssign(part[i + 2]) && part.length > i + 3 ? names : undefined;
}

/** A column name as SQLite resolves it: quotes removed (doubled quotes undone), lower-cased. */
export function unquote(token: Token): string {
  const t = token.text;
  if (token.kind !== "identifier") return t.toLowerCase();
  const inner = t.slice(1, -1);
  const name = t[0] === "[" ? inner : inner.replaceAll(`${t[0]}${t[0]}`, t[0] as string);
  return name.toLowerCase();
}
