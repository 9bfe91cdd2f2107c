import type { App } from "../app.ts";
import { rememberApiBase } from "../config.ts";
import { h, replace } from "../dom.ts";

export function renderSettings(main: HTMLElement, app: App): void {
  const input = h("input", { id: "api-base", name: "api", type: "url", value: app.apiBase, required: true });
  const form = h(
    "form",
    { "aria-labelledby": "settings-title" },
    h("p", { class: "field" }, h("label", { for: "api-base" }, "API address (the gateway's base URL)"), input),
    h("button", { type: "submit" }, "Use this address"),
    " ",
    h(
      "button",
      {
        type: "button",
        onclick: () => {
          rememberApiBase(null);
          location.reload();
        },
      },
      "Reset to default",
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    rememberApiBase(input.value);
    location.reload();
  });
  replace(
    main,
    h("h1", { id: "settings-title" }, "Settings"),
    h("p", null, "The console talks to ", h("code", null, app.apiBase), "."),
    form,
    h(
      "p",
      { class: "hint" },
      "You can also open the console with ",
      h("code", null, "?api=http://host:port"),
      " in its address; the choice is remembered in this browser.",
    ),
  );
}
