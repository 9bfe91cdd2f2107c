// The notification feed: the stored list, with new ones added live from the SSE stream.
import { unwrap, type Notification } from "@miraikakaku/client";

import { changed, refreshUnread, type App } from "../app.ts";
import { h, replace, when } from "../dom.ts";
import { errorBox } from "../errors.ts";
import type { Cleanup } from "../view.ts";

/** A short-lived message in the page's status region (announced politely). */
export function toast(text: string): void {
  const region = document.getElementById("toasts");
  if (!region) return;
  const item = h("p", { class: "toast" }, text);
  region.append(item);
  setTimeout(() => item.remove(), 12_000);
}

function item(app: App, n: Notification, markOne: (n: Notification) => void): HTMLElement {
  return h(
    "li",
    { class: n.read ? "read" : "unread", "data-notification-id": n.notification_id },
    h(
      "article",
      { "aria-label": n.title },
      h("h3", null, n.read ? null : h("span", { class: "dot", "aria-label": "unread" }, "● "), n.title),
      h("p", { class: "body" }, n.body),
      h(
        "p",
        { class: "meta" },
        h("time", { datetime: n.created_at ?? "" }, when(n.created_at)),
        n.category ? ` · ${n.category.replaceAll("_", " ")}` : "",
        " ",
        n.read ? null : h("button", { type: "button", class: "link", onclick: () => markOne(n) }, "Mark read"),
      ),
    ),
  );
  void app;
}

export function renderNotifications(main: HTMLElement, app: App): Cleanup {
  const status = h("div", { "aria-live": "polite" });
  // Not a live region itself: new notifications are announced once, by the page's status region.
  const list = h("ol", { id: "notification-list", class: "feed" });
  let items: Notification[] = [];

  const draw = () => {
    if (items.length === 0) replace(list, h("li", { class: "empty" }, "No notifications yet. They appear here as they arrive."));
    else replace(list, items.map((n) => item(app, n, markOne)));
  };

  async function mark(body: { all?: boolean; notification_ids?: string[] }): Promise<void> {
    try {
      await unwrap(app.mirai.api.POST("/v1/notifications/read", { body: { ...body, read: true } }));
      items = items.map((n) => (body.all || body.notification_ids?.includes(n.notification_id) ? { ...n, read: true } : n));
      draw();
      await refreshUnread(app);
    } catch (error) {
      replace(status, errorBox(error));
    }
  }
  const markOne = (n: Notification) => void mark({ notification_ids: [n.notification_id] });

  const onLive = (n: Notification) => {
    if (items.some((x) => x.notification_id === n.notification_id)) return;
    items.unshift(n);
    draw();
  };
  app.onNotification.add(onLive);

  replace(
    main,
    h(
      "div",
      { class: "title-row" },
      h("h1", null, "Notifications"),
      h("button", { type: "button", id: "mark-all-read", onclick: () => void mark({ all: true }) }, "Mark all read"),
    ),
    h("p", { class: "muted" }, "New notifications appear here live, without reloading."),
    status,
    list,
  );
  list.replaceChildren(h("li", { class: "loading" }, "Loading…"));

  unwrap(app.mirai.api.GET("/v1/notifications", { params: { query: { page_size: 50 } } })).then(
    (page) => {
      const seen = new Set(page.notifications.map((n) => n.notification_id));
      // Live ones that arrived while the page loaded come first.
      items = [...items.filter((n) => !seen.has(n.notification_id)), ...page.notifications];
      draw();
      changed(app);
    },
    (error) => replace(list, h("li", null, errorBox(error))),
  );

  return () => app.onNotification.delete(onLive);
}
