// Price alerts: create (crossing up / down / either way, above / below a level), list, rename,
// switch on and off, delete.
import { unwrap, type Schemas } from "@miraikakaku/client";

import type { App } from "../app.ts";
import { fmt, h, replace, when } from "../dom.ts";
import { errorBox } from "../errors.ts";
import type { Cleanup } from "../view.ts";

type Alert = Schemas["Alert"];
type Kind = "crossing_up" | "crossing_down" | "crossing" | "above" | "below";

const KINDS: Array<[Kind, string]> = [
  ["crossing_up", "crosses up through"],
  ["crossing_down", "crosses down through"],
  ["crossing", "crosses (either way)"],
  ["above", "is above"],
  ["below", "is below"],
];

export function describeCondition(c: Schemas["Condition"] | null | undefined): string {
  if (!c) return "—";
  const label = KINDS.find(([kind]) => kind === c.kind)?.[1];
  if (label && c.level !== null && c.level !== undefined) return `${label} ${fmt(c.level)}`;
  return c.kind.replaceAll("_", " ");
}

export function renderAlerts(main: HTMLElement, app: App): Cleanup {
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const listStatus = h("div", { "aria-live": "polite" });
  const list = h("div", { id: "alert-list" }, h("p", { class: "loading" }, "Loading…"));
  let poll: ReturnType<typeof setTimeout> | undefined;

  const symbol = h("input", { id: "alert-symbol", name: "symbol", value: "SPX", required: true, size: 8 });
  const name = h("input", { id: "alert-name", name: "name", maxlength: 100, placeholder: "e.g. SPX breakout" });
  const kind = h("select", { id: "alert-kind", name: "kind" }, KINDS.map(([value, label]) => h("option", { value }, label)));
  const level = h("input", { id: "alert-level", name: "level", type: "number", step: "any", required: true, inputmode: "decimal" });
  const submit = h("button", { type: "submit" }, "Create the alert");
  const form = h(
    "form",
    { id: "alert-form", "aria-labelledby": "alert-form-title" },
    h("h2", { id: "alert-form-title" }, "New alert"),
    h(
      "div",
      { class: "row" },
      h("p", { class: "field" }, h("label", { for: "alert-symbol" }, "Symbol"), symbol),
      h("p", { class: "field" }, h("label", { for: "alert-kind" }, "When the price"), kind),
      h("p", { class: "field" }, h("label", { for: "alert-level" }, "Level"), level),
      h("p", { class: "field grow" }, h("label", { for: "alert-name" }, "Name (optional)"), name),
    ),
    submit,
    status,
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = Number(level.value);
    if (!Number.isFinite(value) || level.value.trim() === "") {
      replace(status, h("p", { class: "error", role: "alert" }, "Enter the price level as a number."));
      level.focus();
      return;
    }
    submit.disabled = true;
    replace(status, "Creating…");
    try {
      const created = await unwrap(
        app.mirai.api.POST("/v1/alerts", {
          body: {
            symbol: symbol.value.trim().toUpperCase(),
            name: name.value.trim() || null,
            condition: { kind: kind.value as Kind, level: value },
          },
        }),
      );
      replace(status, `Created “${created.name}”.`);
      name.value = "";
      await load();
    } catch (error) {
      replace(status, errorBox(error));
    } finally {
      submit.disabled = false;
    }
  });

  async function load(): Promise<void> {
    clearTimeout(poll);
    try {
      const page = await unwrap(app.mirai.api.GET("/v1/alerts"));
      replace(list, table(page.alerts));
      // Pending alerts become active once the symbol's tracking is confirmed: look again.
      if (page.alerts.some((a) => a.status === "pending")) poll = setTimeout(() => void load(), 2000);
    } catch (error) {
      replace(list, errorBox(error));
    }
  }

  function table(alerts: Alert[]): HTMLElement {
    if (alerts.length === 0) return h("p", null, "No alerts yet.");
    return h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        null,
        h("caption", null, `${alerts.length} alert${alerts.length === 1 ? "" : "s"}, newest first`),
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            ["Name", "Symbol", "Condition", "Status", "Enabled", "Triggered", "Actions"].map((c) =>
              h("th", { scope: "col" }, c),
            ),
          ),
        ),
        h("tbody", null, alerts.map(row)),
      ),
    );
  }

  function row(alert: Alert): HTMLElement {
    const nameCell = h("th", { scope: "row" }, alert.name);
    const enabled = h("input", {
      type: "checkbox",
      checked: alert.enabled,
      "aria-label": `Enabled: ${alert.name}`,
    });
    enabled.addEventListener("change", async () => {
      enabled.disabled = true;
      try {
        await unwrap(
          app.mirai.api.PATCH("/v1/alerts/{alert_id}", {
            params: { path: { alert_id: alert.alert_id } },
            body: { enabled: enabled.checked },
          }),
        );
        replace(listStatus, `“${alert.name}” ${enabled.checked ? "switched on" : "switched off"}.`);
        await load();
      } catch (error) {
        enabled.checked = !enabled.checked;
        replace(listStatus, errorBox(error));
      } finally {
        enabled.disabled = false;
      }
    });

    const rename = h("button", { type: "button", "aria-label": `Rename ${alert.name}` }, "Rename");
    rename.addEventListener("click", () => {
      const input = h("input", { value: alert.name, maxlength: 100, "aria-label": `New name for ${alert.name}` });
      const save = h("button", { type: "submit" }, "Save");
      const cancel = h("button", { type: "button", onclick: () => void load() }, "Cancel");
      const edit = h("form", { class: "inline" }, input, " ", save, " ", cancel);
      edit.addEventListener("submit", async (event) => {
        event.preventDefault();
        save.disabled = true;
        try {
          await unwrap(
            app.mirai.api.PATCH("/v1/alerts/{alert_id}", {
              params: { path: { alert_id: alert.alert_id } },
              body: { name: input.value.trim() },
            }),
          );
          replace(listStatus, `Renamed to “${input.value.trim()}”.`);
          await load();
        } catch (error) {
          save.disabled = false;
          replace(listStatus, errorBox(error));
        }
      });
      edit.addEventListener("keydown", (event) => {
        if (event.key === "Escape") void load();
      });
      replace(nameCell, edit);
      input.focus();
      input.select();
    });

    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${alert.name}` }, "Delete");
    remove.addEventListener("click", async () => {
      if (!window.confirm(`Delete the alert “${alert.name}”?`)) return;
      remove.disabled = true;
      try {
        await app.mirai.api.DELETE("/v1/alerts/{alert_id}", { params: { path: { alert_id: alert.alert_id } } });
        replace(listStatus, `Deleted “${alert.name}”.`);
        await load();
      } catch (error) {
        remove.disabled = false;
        replace(listStatus, errorBox(error));
      }
    });

    const statusText = alert.status ?? "—";
    return h(
      "tr",
      { "data-alert-id": alert.alert_id },
      nameCell,
      h("td", null, alert.symbol),
      h("td", null, describeCondition(alert.condition)),
      h("td", { title: alert.status_reason || false }, h("span", { class: `status status-${statusText}` }, statusText)),
      h("td", null, enabled),
      h("td", null, alert.trigger_count > 0 ? `${alert.trigger_count}× (last ${when(alert.last_triggered_at)})` : "never"),
      h("td", { class: "actions" }, rename, " ", remove),
    );
  }

  replace(
    main,
    h("h1", null, "Alerts"),
    form,
    h("section", { "aria-labelledby": "alert-list-title" }, h("h2", { id: "alert-list-title" }, "Your alerts"), listStatus, list),
  );
  void load();
  return () => clearTimeout(poll);
}
