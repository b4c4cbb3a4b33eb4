/** `GET /` (the status page) and `GET /warmup-banner.js` (the script any page can include). */
import { Hono } from "hono";
import { STATUS_PAGE_HTML } from "../ui/status-page.ts";
import { WARMUP_BANNER_JS } from "../ui/warmup-banner.ts";
import { ROUTES } from "./api.ts";
import { mounter } from "./mount.ts";

export function uiRoutes(): Hono {
  const app = new Hono();
  const mount = mounter(app);
  mount(ROUTES.statusPage, (c) => {
    c.header("Cache-Control", "no-cache");
    return c.html(STATUS_PAGE_HTML);
  });
  mount(ROUTES.banner, (c) => {
    c.header("Cache-Control", "no-cache");
    // Other origins' pages may include it (secure headers would default this to same-origin).
    c.header("Cross-Origin-Resource-Policy", "cross-origin");
    return c.body(WARMUP_BANNER_JS, 200, { "Content-Type": "text/javascript; charset=utf-8" });
  });
  return app;
}
