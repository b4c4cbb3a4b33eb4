/**
 * Just enough of a DOM to run the status page's and the banner's scripts in `node:vm` against canned API
 * answers, and read what they render (the real-browser checks are in test/browser.test.ts).
 */
import { Script } from "node:vm";

export class FakeElement {
  readonly tagName: string;
  readonly children: FakeElement[] = [];
  readonly dataset: Record<string, string> = {};
  readonly style: Record<string, string> = {};
  readonly attributes = new Map<string, string>();
  className = "";
  id = "";
  title = "";
  type = "";
  hidden = false;
  parent: FakeElement | null = null;
  #text = "";

  constructor(tagName: string) {
    this.tagName = tagName.toUpperCase();
  }

  get textContent(): string {
    return this.children.length > 0 ? this.children.map((c) => c.textContent).join("") : this.#text;
  }

  set textContent(value: string) {
    this.children.length = 0;
    this.#text = String(value);
  }

  get firstChild(): FakeElement | null {
    return this.children[0] ?? null;
  }

  setAttribute(name: string, value: string): void {
    this.attributes.set(name, String(value));
  }

  getAttribute(name: string): string | null {
    return this.attributes.get(name) ?? null;
  }

  addEventListener(): void {}

  append(...items: Array<FakeElement | string>): void {
    for (const item of items) this.appendChild(typeof item === "string" ? textNode(item) : item);
  }

  appendChild(child: FakeElement): FakeElement {
    child.remove();
    child.parent = this;
    this.children.push(child);
    return child;
  }

  insertBefore(child: FakeElement, before: FakeElement | null): FakeElement {
    child.remove();
    child.parent = this;
    const index = before ? this.children.indexOf(before) : -1;
    if (index === -1) this.children.push(child);
    else this.children.splice(index, 0, child);
    return child;
  }

  replaceChildren(...items: FakeElement[]): void {
    for (const c of this.children) c.parent = null;
    this.children.length = 0;
    this.#text = "";
    this.append(...items);
  }

  remove(): void {
    if (!this.parent) return;
    const siblings = this.parent.children;
    siblings.splice(siblings.indexOf(this), 1);
    this.parent = null;
  }

  querySelector(selector: string): FakeElement | null {
    const cls = selector.startsWith(".") ? selector.slice(1) : undefined;
    for (const c of this.children) {
      if (cls !== undefined && c.className.split(" ").includes(cls)) return c;
      const found = c.querySelector(selector);
      if (found) return found;
    }
    return null;
  }

  /** Every descendant, depth first. */
  *all(): Generator<FakeElement> {
    for (const c of this.children) {
      yield c;
      yield* c.all();
    }
  }
}

function textNode(text: string): FakeElement {
  const node = new FakeElement("#text");
  node.textContent = text;
  return node;
}

/** An answer with another status than 200 (`responses` values are otherwise 200 JSON bodies). */
export class FakeAnswer {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {}
}

/**
 * Runs `source` with a fake document; `fetch` answers each path with the JSON `responses` give for it, and
 * records the paths asked for. Timers do not run by themselves: `nextTimer()` runs the last one set (the next
 * refresh) and lets its requests settle.
 */
export async function runScript(
  source: string,
  responses: Record<string, unknown>,
  options: { ids?: readonly string[]; pathname?: string } = {},
): Promise<{
  document: { body: FakeElement; head: FakeElement };
  byId: Map<string, FakeElement>;
  fetched: string[];
  nextTimer: () => Promise<void>;
}> {
  const byId = new Map((options.ids ?? []).map((id) => [id, new FakeElement("div")]));
  const body = new FakeElement("body");
  const head = new FakeElement("head");
  const document = {
    body,
    head,
    hidden: false,
    readyState: "complete",
    baseURI: "http://app.test/",
    currentScript: { src: "http://app.test/warmup-banner.js", getAttribute: () => null },
    createElement: (tag: string) => new FakeElement(tag),
    createElementNS: (_namespace: string, tag: string) => new FakeElement(tag),
    getElementById: (id: string) => byId.get(id) ?? null,
    addEventListener: () => {},
  };
  const fetched: string[] = [];
  const fetch = async (url: string) => {
    // Relative URLs resolve against the page's own location, as in a browser.
    const path = new URL(url, `http://app.test${options.pathname ?? "/"}`).pathname;
    fetched.push(path);
    const answer = responses[path];
    if (answer === undefined) throw new Error(`unexpected fetch ${path}`);
    const status = answer instanceof FakeAnswer ? answer.status : 200;
    const text = JSON.stringify(answer instanceof FakeAnswer ? answer.body : answer);
    return {
      ok: status < 400,
      status,
      headers: { get: () => null },
      text: async () => text,
      json: async () => JSON.parse(text),
    };
  };
  const timers: (() => void)[] = [];
  const settle = async () => {
    // Let the fetch promises and their `then`s settle.
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  };
  const context: Record<string, unknown> = {
    document,
    fetch,
    URL,
    setTimeout: (callback: () => void) => {
      timers.push(callback);
      return timers.length;
    },
    clearTimeout: () => {},
    location: { pathname: options.pathname ?? "/" },
    console,
  };
  context.window = context;
  const { createContext } = await import("node:vm");
  new Script(source).runInContext(createContext(context));
  await settle();
  const nextTimer = async () => {
    const callback = timers.at(-1);
    if (!callback) throw new Error("no timer was set");
    callback();
    await settle();
  };
  return { document, byId, fetched, nextTimer };
}
