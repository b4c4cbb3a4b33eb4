/**
 * Invariant 11, lexically: a definition's `filter`, `verify` and `set` are single expressions (or a list of
 * assignments) that cannot escape the step's key range — no comment, no second statement, no parenthesis closed
 * that the fragment did not open, no clause keyword outside parentheses — while strings, quoted identifiers and
 * blobs holding those characters are fine.
 */
import { describe, expect, it } from "vitest";
import { checkCondition, checkSetClause, tokenize } from "../../src/engine/plan/fragments.ts";

const WHAT = 'migration "m_v1": filter';
const SET = 'migration "m_v1": set';

describe("tokenize", () => {
  it("reads strings, quoted identifiers, blobs and numbers as opaque tokens", () => {
    const tokens = tokenize(`a = 'x -- ; ( ''y''' AND "c--;(" = [d)] OR \`e;\` = X'0A' OR n >= 1.5e-3`);
    expect(tokens.map((t) => t.kind)).toEqual([
      "word",
      "operator",
      "string",
      "word",
      "identifier",
      "operator",
      "identifier",
      "word",
      "identifier",
      "operator",
      "blob",
      "word",
      "word",
      "operator",
      "number",
    ]);
    expect(tokens[2]?.text).toBe("'x -- ; ( ''y'''");
    expect(tokens.at(-1)?.text).toBe("1.5e-3");
  });

  it("tracks parenthesis depth", () => {
    const tokens = tokenize("a IN (SELECT b FROM (c))");
    expect(tokens.map((t) => [t.text, t.depth])).toEqual([
      ["a", 0],
      ["IN", 0],
      ["(", 0],
      ["SELECT", 1],
      ["b", 1],
      ["FROM", 1],
      ["(", 1],
      ["c", 2],
      [")", 1],
      [")", 0],
    ]);
  });

  it("finds comments and semicolons outside strings", () => {
    expect(tokenize("a -- x").map((t) => t.kind)).toEqual(["word", "comment"]);
    expect(tokenize("a /* x */ b").map((t) => t.kind)).toEqual(["word", "comment", "word"]);
    expect(tokenize("a; b").map((t) => t.kind)).toEqual(["word", "semicolon", "word"]);
    expect(tokenize("a - -1").map((t) => t.kind)).toEqual(["word", "operator", "operator", "number"]);
    expect(tokenize("a ->> '$.x'").map((t) => t.text)).toEqual(["a", "->>", "'$.x'"]);
  });

  it("refuses unterminated strings and unknown characters", () => {
    expect(() => tokenize("a = 'x")).toThrow(/unterminated string/);
    expect(() => tokenize('"a')).toThrow(/unterminated quoted identifier/);
    expect(() => tokenize("[a")).toThrow(/unterminated \[identifier\]/);
    expect(() => tokenize("X'00")).toThrow(/unterminated blob/);
    expect(() => tokenize("a # b")).toThrow(/unexpected character "#"/);
  });
});

describe("checkCondition", () => {
  it.each([
    "done = 0",
    "last_seen = 0 AND COALESCE((SELECT MAX(o.timestamp) FROM observations o WHERE o.transmission_id = transmissions.id), 0) <> 0",
    "note = 'a -- b; c (d'",
    "note = 'it''s ) fine'",
    '"weird -- col;" = 1',
    "[x)] = 1",
    "`a;b` IS NULL",
    "data = X'00FF'",
    "json_extract(doc, '$.a') IN (1, 2, 3)",
    "CASE WHEN a THEN b ELSE c END",
    "EXISTS (SELECT 1 FROM other WHERE other.id = t.id ORDER BY 1 LIMIT 1)",
    "n > -1",
    "1",
  ])("accepts %s", (text) => {
    expect(checkCondition(text, WHAT)).toBe(text);
  });

  it.each([
    ["done = 0) OR (id > 0", /filter: "\)" at offset 8 closes a parenthesis the fragment did not open/],
    ["done = 0 -- skip the rest", /filter must not contain a comment \("--" at offset 9\)/],
    ["done = 0 /* x */", /filter must not contain a comment \("\/\*"/],
    ["1; DELETE FROM t", /filter must be a single SQL expression \(no ";"/],
    ["done = 0;", /filter must be a single SQL expression \(no ";"/],
    ["(done = 0", /filter: unbalanced parentheses/],
    ["done = 0 ORDER BY id", /keyword ORDER at offset 9 is outside parentheses/],
    ["done = 0 LIMIT 1", /keyword LIMIT/],
    ["1 UNION SELECT 1", /keyword UNION/],
    ["1 GROUP BY id", /keyword GROUP/],
    ["1 RETURNING *", /keyword RETURNING/],
    ["id > :lo", /parameter ":lo" at offset 5 cannot be bound/],
    ["id > ?", /parameter "\?"/],
    ["a, b", /must be one SQL expression: the "," at offset 1/],
    ["a = 'x", /filter: unterminated string/],
    ["", /filter must be a non-empty SQL condition/],
    ["   ", /filter must be a non-empty SQL condition/],
  ])("refuses %s", (text, message) => {
    expect(() => checkCondition(text, WHAT)).toThrow(message);
    expect(() => checkCondition(text, WHAT)).toThrow(/^migration "m_v1": filter/);
  });

  it("refuses a value that is not a string", () => {
    expect(() => checkCondition(42, WHAT)).toThrow(/filter must be a non-empty SQL condition/);
  });
});

describe("checkSetClause", () => {
  it.each<[string, string[]]>([
    ["n = n + 1", ["n"]],
    ["n = n + 1, done = 1", ["n", "done"]],
    ['"N" = 1, [Done] = 2, `x``y` = 3, "a""b" = 4', ["n", "done", "x`y", 'a"b']],
    ["(a, b) = (SELECT 1, 2)", ["a", "b"]],
    ["a = coalesce(b, c), (d) = (1)", ["a", "d"]],
    ["note = 'x -- y; z (', n = 1", ["note", "n"]],
    [
      "last_seen = COALESCE((SELECT MAX(o.timestamp) FROM observations o WHERE o.transmission_id = transmissions.id), last_seen)",
      ["last_seen"],
    ],
    ["a = (SELECT b FROM other WHERE other.id = t.id ORDER BY b LIMIT 1)", ["a"]],
  ])("accepts %s, assigning %j", (text, columns) => {
    expect(checkSetClause(text, SET)).toEqual(columns);
  });

  it.each([
    ["n = n + 1, done = 1 -- once", /set must not contain a comment \("--"/],
    ["v = 1; DELETE FROM other", /set must be a single SQL expression \(no ";"/],
    ["v = 1 WHERE 1 OR", /set: the keyword WHERE at offset 6 is outside parentheses/],
    ["v = 1 FROM other", /keyword FROM/],
    ["v = 1 RETURNING v", /keyword RETURNING/],
    ["v = 1) WHERE (1", /closes a parenthesis the fragment did not open/],
    ["v = (1", /unbalanced parentheses/],
    ["v", /assignment 1 \("v"\) must have the form/],
    ["v = ", /assignment 1 \("v ="\) must have the form/],
    ["v = 1,", /assignment 2 \("\(empty\)"\) must have the form/],
    ["t.v = 1", /assignment 1 .* must have the form/],
    ["v == 1", /assignment 1 .* must have the form/],
    ["(a, b = (1, 2)", /unbalanced parentheses/],
    ["(a, 1) = (1, 2)", /assignment 1 .* must have the form/],
    ["v = :x", /parameter ":x"/],
  ])("refuses %s", (text, message) => {
    expect(() => checkSetClause(text, SET)).toThrow(message);
    expect(() => checkSetClause(text, SET)).toThrow(/^migration "m_v1": set/);
  });
});
