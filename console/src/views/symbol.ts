// A symbol: live quote, daily bars with the forecast, the model's live scoreboard, indicators.
// Each section loads on its own, so one service being down costs only its section.
import { unwrap, type Schemas } from "@miraikakaku/client";
import {
  CandlestickSeries,
  createChart,
  LineSeries,
  LineStyle,
  type IChartApi,
  type Time,
} from "lightweight-charts";

import type { App } from "../app.ts";
import { day, fmt, h, pct, replace, when, type Child } from "../dom.ts";
import { errorBox } from "../errors.ts";
import { navigate } from "../nav.ts";
import type { Cleanup } from "../view.ts";

type Bar = Schemas["Bar"];
type Forecast = Schemas["Forecast"];
type Indicators = Schemas["Indicators"];

const BARS = 500;
const INDICATORS = "sma(timeperiod=20),sma(timeperiod=50),rsi(timeperiod=14),atr(timeperiod=14),macd";

function section(id: string, title: string): { el: HTMLElement; body: HTMLElement } {
  const body = h("div", { class: "section-body", "aria-busy": "true" }, h("p", { class: "loading" }, "Loading…"));
  const el = h("section", { id, "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), body);
  return { el, body };
}

function done(body: HTMLElement, ...content: Child[]): void {
  body.setAttribute("aria-busy", "false");
  replace(body, ...content);
}

export function renderSymbol(main: HTMLElement, app: App, [raw = "SPX"]: string[]): Cleanup {
  const symbol = raw.toUpperCase();
  const closers: Array<() => void> = [];

  const pick = h("input", { id: "symbol-input", name: "symbol", value: symbol, size: 8, autocapitalize: "characters" });
  const pickForm = h(
    "form",
    { class: "inline", role: "search" },
    h("label", { for: "symbol-input" }, "Symbol "),
    pick,
    " ",
    h("button", { type: "submit" }, "Open"),
  );
  pickForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = pick.value.trim().toUpperCase();
    if (next) navigate(`/symbols/${encodeURIComponent(next)}`);
  });

  const name = h("span", { class: "symbol-name" });
  const quote = h("p", { class: "quote", id: "quote", "aria-live": "off" }, "…");
  const chart = section("chart", "Daily bars and forecast");
  const forecast = section("forecast", "Forecast (next session)");
  const scoreboard = section("scoreboard", "Model scoreboard (live accuracy)");
  const indicators = section("indicators", "Indicators (latest daily values)");

  replace(
    main,
    h("div", { class: "title-row" }, h("h1", null, symbol, " ", name), pickForm),
    quote,
    chart.el,
    h("div", { class: "columns" }, forecast.el, indicators.el),
    scoreboard.el,
  );

  // Name
  app.mirai.api
    .GET("/v1/symbols/{symbol}", { params: { path: { symbol } } })
    .then(({ data }) => replace(name, data?.name ? `— ${data.name}` : ""))
    .catch(() => undefined);

  // Live quote over SSE (the quote WebSocket cannot carry the token from a browser).
  const stream = app.mirai.streams.quotes([symbol], {
    onQuote: (q) => {
      const sign = q.change >= 0 ? "+" : "";
      replace(
        quote,
        h("strong", null, fmt(q.last_price)),
        ` ${sign}${fmt(q.change)} (${sign}${fmt(q.change_percent)} %)`,
        h("span", { class: "muted" }, ` · ${when(q.last_time ?? q.updated_at)}`),
      );
    },
    onError: (error, willReconnect) => {
      if (!willReconnect) replace(quote, errorBox(error));
    },
  });
  closers.push(() => stream.close());

  // Bars, then the chart with the forecast and moving averages on it.
  let chartApi: IChartApi | null = null;
  closers.push(() => chartApi?.remove());
  const barsLoaded = unwrap(
    app.mirai.api.GET("/v1/stocks/{symbol}/bars", {
      params: { path: { symbol }, query: { timeframe: "1Day", newest_first: true, limit: BARS } },
    }),
  ).then((page) => page.bars.filter((b) => b.start).reverse());
  const forecastLoaded = unwrap(app.mirai.api.GET("/v1/predictions/{symbol}", { params: { path: { symbol } } }));

  const chartReady = barsLoaded.then(
    (bars) => {
      if (bars.length === 0) {
        done(chart.body, h("p", null, "No bars stored for this symbol."));
        return null;
      }
      // The canvas says nothing to a screen reader: a sentence says what it shows.
      const holder = h("div", { class: "chart", "aria-describedby": "chart-summary" });
      const summary = `Daily candles of ${symbol}: ${bars.length} sessions from ${day(bars[0]!.start)} to ${day(
        bars.at(-1)!.start,
      )}, last close ${fmt(bars.at(-1)!.close)}.`;
      done(chart.body, holder, h("p", { class: "legend", id: "chart-summary" }, summary, " ", legend()));
      chartApi = createChart(holder, {
        autoSize: true,
        layout: { attributionLogo: true, background: { color: "#ffffff" }, textColor: "#1f2933" },
        grid: { vertLines: { color: "#eef1f4" }, horzLines: { color: "#eef1f4" } },
        timeScale: { rightOffset: 6 },
      });
      const candles = chartApi.addSeries(CandlestickSeries, {
        upColor: "#18794e",
        downColor: "#c62828",
        wickUpColor: "#18794e",
        wickDownColor: "#c62828",
        borderVisible: false,
      });
      candles.setData(
        bars.map((b: Bar) => ({ time: day(b.start) as Time, open: b.open, high: b.high, low: b.low, close: b.close })),
      );
      chartApi.timeScale().setVisibleLogicalRange({ from: Math.max(0, bars.length - 180), to: bars.length + 6 });
      return { chart: chartApi, bars };
    },
    (error) => {
      done(chart.body, errorBox(error));
      return null;
    },
  );

  // Forecast panel, and its interval on the chart.
  forecastLoaded.then(
    (f) => {
      done(forecast.body, forecastTable(f));
      void chartReady.then((ready) => ready && drawForecast(ready.chart, ready.bars, f));
    },
    (error) => done(forecast.body, errorBox(error)),
  );

  // Indicators over the charted range (warm-up from earlier bars).
  void barsLoaded
    .then((bars) =>
      unwrap(
        app.mirai.api.GET("/v1/analytics/{symbol}/indicators", {
          params: {
            path: { symbol },
            query: { indicators: INDICATORS, timeframe: "1Day", start: bars[0]?.start ?? undefined, warm_up: true },
          },
        }),
      ),
    )
    .then(
      (ind) => {
        done(indicators.body, indicatorTable(ind));
        void chartReady.then((ready) => ready && drawAverages(ready.chart, ind));
      },
      (error) => done(indicators.body, errorBox(error)),
    );

  // The live scoreboard of every serving version for this symbol.
  unwrap(app.mirai.api.GET("/v1/models:scoreboards", { params: { query: { symbol } } })).then(
    (list) => done(scoreboard.body, scoreTable(list.scoreboards)),
    (error) => done(scoreboard.body, errorBox(error)),
  );

  return () => closers.forEach((close) => close());
}

function legend(): Child[] {
  return [
    h("span", { class: "key key-candle" }), " daily candles ",
    h("span", { class: "key key-point" }), " forecast (median) ",
    h("span", { class: "key key-band" }), " forecast interval ",
    h("span", { class: "key key-sma20" }), " SMA 20 ",
    h("span", { class: "key key-sma50" }), " SMA 50",
  ];
}

function forecastTable(f: Forecast): HTMLElement {
  const level = Math.round(f.interval_level * 100);
  const up = f.p_up;
  return h(
    "dl",
    { class: "facts", id: "forecast-facts" },
    h("dt", null, "Last close"), h("dd", null, fmt(f.last_close), h("span", { class: "muted" }, ` (${day(f.as_of)})`)),
    h("dt", null, "Forecast close"), h("dd", { id: "forecast-point" }, h("strong", null, fmt(f.point)),
      h("span", { class: "muted" }, f.target_start ? ` for ${day(f.target_start)}` : "")),
    h("dt", null, `${level} % interval`), h("dd", { id: "forecast-interval" }, `${fmt(f.lower)} – ${fmt(f.upper)}`),
    h("dt", null, "P(up)"),
    h("dd", { id: "forecast-pup" },
      h("meter", { min: 0, max: 1, low: 0.45, high: 0.55, optimum: 0.5, value: up, "aria-label": "Probability of a higher close" }),
      ` ${pct(up)}`),
    h("dt", null, "Model"), h("dd", null, f.model ? `${f.model.name} ${f.model.version}` : "—", f.role ? ` (${f.role})` : ""),
  );
}

function drawForecast(chart: IChartApi, bars: Bar[], f: Forecast): void {
  const last = bars.at(-1)!;
  const from = day(last.start);
  const to = day(f.target_start ?? null);
  if (!f.target_start || to <= from) return;
  const line = (color: string, value: number, style: LineStyle) => {
    const series = chart.addSeries(LineSeries, {
      color,
      lineWidth: 2,
      lineStyle: style,
      priceLineVisible: false,
      lastValueVisible: true,
      crosshairMarkerVisible: false,
    });
    series.setData([
      { time: from as Time, value: last.close },
      { time: to as Time, value },
    ]);
  };
  line("#7c3aed", f.upper, LineStyle.Dashed);
  line("#7c3aed", f.lower, LineStyle.Dashed);
  line("#1d4ed8", f.point, LineStyle.Solid);
}

function drawAverages(chart: IChartApi, ind: Indicators): void {
  const colors: Record<string, string> = { sma_20: "#d97706", sma_50: "#0f766e" };
  for (const line of ind.series) {
    if (line.indicator !== "sma") continue;
    const color = colors[line.name] ?? "#64748b";
    const series = chart.addSeries(LineSeries, {
      color,
      lineWidth: 1,
      priceLineVisible: false,
      lastValueVisible: false,
      crosshairMarkerVisible: false,
    });
    const points = [];
    for (let i = 0; i < ind.timestamps.length; i++) {
      const value = line.values[i];
      if (value !== null && value !== undefined) points.push({ time: day(ind.timestamps[i]) as Time, value });
    }
    series.setData(points);
  }
}

function indicatorTable(ind: Indicators): HTMLElement {
  const at = ind.timestamps.at(-1);
  const rows = ind.series.map((line) => {
    const value = [...line.values].reverse().find((v) => v !== null && v !== undefined);
    const digits = line.indicator === "rsi" ? 1 : 2;
    return h("tr", null, h("th", { scope: "row" }, line.name), h("td", { class: "num" }, fmt(value, digits)));
  });
  return h(
    "table",
    { id: "indicator-table" },
    h("caption", null, `As of ${day(at)}`),
    h("thead", null, h("tr", null, h("th", { scope: "col" }, "Indicator"), h("th", { scope: "col" }, "Value"))),
    h("tbody", null, rows),
  );
}

function scoreTable(boards: Schemas["Scoreboard"][]): HTMLElement {
  if (boards.length === 0) return h("p", null, "No model serves this symbol yet.");
  const rows = boards.map((b) => {
    const m = b.metrics;
    return h(
      "tr",
      null,
      h("th", { scope: "row" }, b.model ? `${b.model.name} ${b.model.version}` : "—"),
      h("td", null, b.role ?? "—"),
      h("td", { class: "num" }, m ? String(m.count) : "0"),
      h("td", { class: "num" }, m ? `${pct(m.hit_rate)} (always up ${pct(m.always_up_hit_rate)})` : "—"),
      h("td", { class: "num" }, m?.mase !== undefined && m?.mase !== null ? fmt(m.mase, 3) : "—"),
      h("td", { class: "num" }, m ? `${pct(m.coverage)} of ${pct(m.nominal_coverage, 0)}` : "—"),
      h("td", { class: "num" }, m ? `${fmt(m.pinball_loss, 5)} vs ${fmt(m.baseline_pinball_loss, 5)}` : "—"),
      h("td", { class: "num" }, String(b.pending)),
      h("td", null, when(b.updated_at)),
    );
  });
  const col = (label: string, title?: string) => h("th", { scope: "col", title: title ?? false }, label);
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      { id: "scoreboard-table" },
      h("caption", null, "Matured predictions; MASE below 1 beats the random walk."),
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          col("Model"),
          col("Role"),
          col("Matured"),
          col("Hit rate"),
          col("MASE", "MAE against the random walk's MAE"),
          col("Interval coverage"),
          col("Pinball loss", "against the 20-day volatility baseline"),
          col("Pending"),
          col("Updated"),
        ),
      ),
      h("tbody", null, rows),
    ),
  );
}
