import "./style.css";

import { changed, createApp, startSession, stopSession, type App } from "./app.ts";
import { resolveApiBase } from "./config.ts";
import { h, replace } from "./dom.ts";
import { errorBox } from "./errors.ts";
import { navigate } from "./nav.ts";
import { renderAlerts } from "./views/alerts.ts";
import { renderSignIn, renderSignUp } from "./views/auth.ts";
import { renderNotifications, toast } from "./views/notifications.ts";
import { renderReports } from "./views/reports.ts";
import { renderSettings } from "./views/settings.ts";
import { renderSymbol } from "./views/symbol.ts";
import type { Cleanup, View } from "./view.ts";


const routes: Array<{ pattern: RegExp; view: View; title: string; signedIn: boolean }> = [
  { pattern: /^\/signin$/, view: renderSignIn, title: "Sign in", signedIn: false },
  { pattern: /^\/signup$/, view: renderSignUp, title: "Create an account", signedIn: false },
  { pattern: /^\/settings$/, view: renderSettings, title: "Settings", signedIn: false },
  { pattern: /^\/symbols\/([^/]+)$/, view: renderSymbol, title: "Symbol", signedIn: true },
  { pattern: /^\/alerts$/, view: renderAlerts, title: "Alerts", signedIn: true },
  { pattern: /^\/notifications$/, view: renderNotifications, title: "Notifications", signedIn: true },
  { pattern: /^\/reports$/, view: renderReports, title: "Reports", signedIn: true },
];

const header = document.getElementById("top")!;
const main = document.getElementById("main")!;
let cleanup: Cleanup;
let app: App;

function renderHeader(): void {
  const link = (path: string, label: string, extra: Node | null = null) => {
    const current = location.hash === `#${path}` || location.hash.startsWith(`#${path}/`);
    return h("li", null, h("a", { href: `#${path}`, "aria-current": current ? "page" : false }, label, extra));
  };
  const user = app.user;
  const badge = h(
    "span",
    { class: "badge", id: "unread-count", "aria-label": `${app.unread} unread` },
    String(app.unread),
  );
  replace(
    header,
    h("a", { class: "brand", href: "#/symbols/SPX" }, "MiraiKakaku"),
    h(
      "nav",
      { "aria-label": "Main" },
      h(
        "ul",
        null,
        user
          ? [
              link("/symbols/SPX", "Market"),
              link("/alerts", "Alerts"),
              link("/notifications", "Notifications ", badge),
              link("/reports", "Reports"),
            ]
          : [link("/signin", "Sign in"), link("/signup", "Create an account")],
        link("/settings", "Settings"),
      ),
    ),
    user
      ? h(
          "div",
          { class: "who" },
          h("span", { class: `feed-state feed-${app.feedState}`, title: "Live notification feed" }, `feed: ${app.feedState}`),
          h("span", { class: "user-email" }, user.email),
          h("button", { type: "button", id: "sign-out", onclick: signOut }, "Sign out"),
        )
      : null,
  );
}

async function signOut(): Promise<void> {
  try {
    await app.mirai.logout();
  } catch {
    // The tokens are cleared anyway.
  }
  stopSession(app);
  navigate("/signin");
}

async function route(): Promise<void> {
  const path = location.hash.replace(/^#/, "") || "/symbols/SPX";
  const match = routes.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  if (typeof cleanup === "function") cleanup();
  cleanup = undefined;
  renderHeader();
  if (!match) {
    navigate(app.user ? "/symbols/SPX" : "/signin");
    return;
  }
  if (match.r.signedIn && !app.user) {
    navigate("/signin");
    return;
  }
  document.title = `${match.r.title} · MiraiKakaku`;
  main.replaceChildren();
  try {
    cleanup = await match.r.view(main, app, match.m!.slice(1).map(decodeURIComponent));
  } catch (error) {
    main.replaceChildren(errorBox(error));
  }
  // Move the focus to the new content (for keyboard and screen-reader users), unless the view
  // has put it somewhere in it already (e.g. the first field of a form).
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

async function boot(): Promise<void> {
  const apiBase = await resolveApiBase();
  app = createApp(apiBase, () => {
    stopSession(app);
    toast("Your session has ended — please sign in again.");
    navigate("/signin");
  });
  app.onChange.add(renderHeader);
  app.onNotification.add((n) => toast(`${n.title}: ${n.body}`));
  try {
    await startSession(app);
  } catch (error) {
    // A stored session the gateway no longer accepts, or the API unreachable: sign in again.
    main.replaceChildren(errorBox(error));
  }
  window.addEventListener("hashchange", () => void route());
  await route();
  changed(app);
  document.body.dataset.ready = "true";
}

void boot();
