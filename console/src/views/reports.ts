// Symbol reports: request one, follow it until it is ready, show its PNG.
import { unwrap, type Schemas } from "@miraikakaku/client";

import type { App } from "../app.ts";
import { h, replace, when } from "../dom.ts";
import { errorBox } from "../errors.ts";
import type { Cleanup } from "../view.ts";

type Job = Schemas["ReportJob"];

export function renderReports(main: HTMLElement, app: App): Cleanup {
  const urls: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const symbol = h("input", { id: "report-symbol", name: "symbol", value: "SPX", required: true, size: 8 });
  const years = h(
    "select",
    { id: "report-years", name: "years" },
    [1, 3, 5, 10].map((y) => h("option", { value: y, selected: y === 3 }, `${y} year${y > 1 ? "s" : ""}`)),
  );
  const submit = h("button", { type: "submit" }, "Request the report");
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const result = h("div", { id: "report-result", "aria-live": "polite" });
  const history = h("div", { id: "report-history" });

  const form = h(
    "form",
    { id: "report-form", "aria-labelledby": "report-form-title" },
    h("h2", { id: "report-form-title" }, "New symbol report"),
    h(
      "div",
      { class: "row" },
      h("p", { class: "field" }, h("label", { for: "report-symbol" }, "Symbol"), symbol),
      h("p", { class: "field" }, h("label", { for: "report-years" }, "Period (up to the newest bar)"), years),
    ),
    submit,
    status,
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    replace(status, "Requesting…");
    replace(result);
    try {
      const ticker = symbol.value.trim().toUpperCase();
      // The period ends with the symbol's newest stored bar (sample data may end years ago).
      const newest = await unwrap(
        app.mirai.api.GET("/v1/stocks/{symbol}/bars", {
          params: { path: { symbol: ticker }, query: { timeframe: "1Day", newest_first: true, limit: 1 } },
        }),
      );
      const last = newest.bars[0]?.start;
      const end = last ? new Date(Date.parse(last) + 86_400_000) : new Date();
      const start = new Date(end);
      start.setUTCFullYear(end.getUTCFullYear() - Number(years.value));
      replace(status, `Requesting the report for ${start.toISOString().slice(0, 10)} – ${end.toISOString().slice(0, 10)}…`);
      const job = await unwrap(
        app.mirai.api.POST("/v1/reports", {
          body: {
            symbol: ticker,
            formats: ["png", "json"],
            start: start.toISOString(),
            end: end.toISOString(),
          },
        }),
      );
      follow(job);
    } catch (error) {
      replace(status, errorBox(error));
      submit.disabled = false;
    }
  });

  function follow(job: Job): void {
    replace(status, `Report ${job.status}…`);
    if (job.status === "succeeded") {
      submit.disabled = false;
      replace(status, `Report ready (${when(job.finished_at)}).`);
      void show(job);
      void loadHistory();
      return;
    }
    if (job.status === "failed") {
      submit.disabled = false;
      replace(status, h("div", { class: "error", role: "alert" }, `The report failed: ${job.error ?? "no reason given"}.`));
      void loadHistory();
      return;
    }
    timer = setTimeout(async () => {
      if (stopped) return;
      try {
        follow(
          await unwrap(app.mirai.api.GET("/v1/reports/{report_id}", { params: { path: { report_id: job.report_id } } })),
        );
      } catch (error) {
        submit.disabled = false;
        replace(status, errorBox(error));
      }
    }, 1000);
  }

  async function show(job: Job): Promise<void> {
    replace(result, h("p", { class: "loading" }, "Downloading the image…"));
    try {
      const { data } = await app.mirai.api.GET("/v1/reports/{report_id}/files/{format}", {
        params: { path: { report_id: job.report_id, format: "png" } },
        parseAs: "blob",
      });
      const url = URL.createObjectURL(data as Blob);
      urls.push(url);
      replace(
        result,
        h(
          "figure",
          null,
          h("img", { id: "report-image", src: url, alt: `Report chart: ${job.title}` }),
          h("figcaption", null, job.title, " · ", h("a", { href: url, download: `${job.report_id}.png` }, "Download PNG")),
        ),
      );
    } catch (error) {
      replace(result, errorBox(error));
    }
  }

  async function loadHistory(): Promise<void> {
    try {
      const page = await unwrap(app.mirai.api.GET("/v1/reports"));
      const jobs = (page.reports ?? []).slice(0, 10);
      if (jobs.length === 0) {
        replace(history, h("p", null, "No reports yet."));
        return;
      }
      replace(
        history,
        h(
          "table",
          null,
          h("caption", null, "Recent reports"),
          h("thead", null, h("tr", null, ["Title", "Status", "Requested", ""].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            null,
            jobs.map((job) =>
              h(
                "tr",
                null,
                h("th", { scope: "row" }, job.title),
                h("td", null, job.status),
                h("td", null, when(job.created_at)),
                h(
                  "td",
                  null,
                  job.status === "succeeded" && job.formats.includes("png")
                    ? h("button", { type: "button", onclick: () => void show(job) }, "Show")
                    : null,
                ),
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      replace(history, errorBox(error));
    }
  }

  replace(
    main,
    h("h1", null, "Reports"),
    form,
    result,
    h("section", { "aria-labelledby": "report-history-title" }, h("h2", { id: "report-history-title" }, "History"), history),
  );
  void loadHistory();
  return () => {
    stopped = true;
    clearTimeout(timer);
    urls.forEach((u) => URL.revokeObjectURL(u));
  };
}
