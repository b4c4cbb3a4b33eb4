/**
 * Checks on the served UI assets that need no browser: they are self-contained (no request leaves the
 * origin), never parse data as HTML, and their inline scripts are valid JavaScript.
 */
import { Script } from "node:vm";
import { describe, expect, it } from "vitest";
import { STATUS_PAGE_HTML } from "../../src/ui/status-page.ts";
import { WARMUP_BANNER_JS } from "../../src/ui/warmup-banner.ts";

/** The bodies of the page's inline `<script>` elements. */
function inlineScripts(html: string): string[] {
  return [...html.matchAll(/<script(\s[^>]*)?>([\s\S]*?)<\/script>/gi)].map((m) => m[2] ?? "");
}

const HTML_SINKS =
  /\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|srcdoc)\b/;

describe("status page", () => {
  it("is a complete HTML document readable on a phone", () => {
    expect(STATUS_PAGE_HTML.trimStart().toLowerCase().startsWith("<!doctype html>")).toBe(true);
    expect(STATUS_PAGE_HTML).toMatch(/<html lang="en">/);
    expect(STATUS_PAGE_HTML).toMatch(/<meta charset="utf-8">/);
    expect(STATUS_PAGE_HTML).toMatch(/<meta name="viewport" content="width=device-width, initial-scale=1">/);
    expect(STATUS_PAGE_HTML).toMatch(/<\/html>\s*$/);
  });

  it("loads nothing from another origin and needs no build step", () => {
    // The SVG namespace is a name, not a request: the only URL the page may contain.
    const urls = STATUS_PAGE_HTML.match(/https?:\/\/[^\s"'<>]*/gi) ?? [];
    expect(urls.filter((url) => url !== "http://www.w3.org/2000/svg")).toEqual([]);
    // Protocol-relative URLs in attributes or CSS would also leave the origin.
    expect(STATUS_PAGE_HTML).not.toMatch(/(src|href|action)\s*=\s*["']?\s*\/\//i);
    expect(STATUS_PAGE_HTML).not.toMatch(/url\(/i);
    expect(STATUS_PAGE_HTML).not.toMatch(/@import/i);
    expect(STATUS_PAGE_HTML).not.toMatch(/<script[^>]*\ssrc=/i);
    expect(STATUS_PAGE_HTML).not.toMatch(/<link\b/i);
    // The API is addressed relatively so the app also works under a path prefix.
    expect(STATUS_PAGE_HTML).toContain('readJson("api/perf")');
    expect(STATUS_PAGE_HTML).toContain('readJson("api/healthz")');
  });

  it("has exactly one inline script, which parses and never uses an HTML sink", () => {
    const scripts = inlineScripts(STATUS_PAGE_HTML);
    expect(scripts).toHaveLength(1);
    const source = scripts[0] ?? "";
    expect(source.length).toBeGreaterThan(1000);
    expect(() => new Script(source, { filename: "status-page.js" })).not.toThrow();
    expect(source).not.toMatch(HTML_SINKS);
    expect(source).not.toMatch(/\beval\s*\(|new Function\b/);
    expect(source).toContain("textContent");
  });

  it("declares the accessibility hooks the browser test relies on", () => {
    expect(STATUS_PAGE_HTML).toContain('aria-live="polite"');
    expect(STATUS_PAGE_HTML).toContain('setAttribute("role", "progressbar")');
    expect(STATUS_PAGE_HTML).toContain('"aria-valuenow"');
  });
});

describe("warm-up banner", () => {
  it("parses as a classic script and is pure ASCII", () => {
    expect(() => new Script(WARMUP_BANNER_JS, { filename: "warmup-banner.js" })).not.toThrow();
    const nonAscii = [...WARMUP_BANNER_JS].filter((ch) => (ch.codePointAt(0) ?? 0) > 0x7e);
    expect(nonAscii).toEqual([]);
  });

  it("makes no request to another origin and never parses data as HTML", () => {
    expect(WARMUP_BANNER_JS).not.toMatch(/https?:\/\//i);
    // CSS url() only (the script calls `new URL(...)` to resolve its own relative API path).
    expect(WARMUP_BANNER_JS).not.toMatch(/\burl\(/);
    expect(WARMUP_BANNER_JS).not.toMatch(HTML_SINKS);
    expect(WARMUP_BANNER_JS).not.toMatch(/\beval\s*\(|new Function\b/);
  });

  it("keeps to one namespace and guards against being included twice", () => {
    // Everything else is inside the IIFE; the only assignment to window is the namespace.
    const windowWrites = [...WARMUP_BANNER_JS.matchAll(/window\.([A-Za-z_$][\w$]*)\s*=(?!=)/g)].map(
      (m) => m[1],
    );
    expect(windowWrites).toEqual(["TrickleWarmupBanner"]);
    expect(WARMUP_BANNER_JS).toMatch(/if \(window\.TrickleWarmupBanner\) return;/);
    expect(WARMUP_BANNER_JS.trim()).toMatch(/\}\)\(\);$/);
  });

  it("uses the documented texts, interval and auto-dismiss delay", () => {
    expect(WARMUP_BANNER_JS).toContain("var DEFAULT_INTERVAL_MS = 30000;");
    expect(WARMUP_BANNER_JS).toContain("var FAILED_AUTO_DISMISS_MS = 10 * 60 * 1000;");
    expect(WARMUP_BANNER_JS).toContain('"data-interval-ms"');
    expect(WARMUP_BANNER_JS).toContain('" FAILED: "');
    expect(WARMUP_BANNER_JS).toContain('"unknown error"');
    expect(WARMUP_BANNER_JS).toContain('"aria-live", "polite"');
  });
});
