// Markets: the symbol list (crypto and equities side by side, a sparkline each) and the chosen
// symbol's candlestick chart with volume, SMA/EMA/VWAP and alert markers.

import {
  CandlestickSeries, HistogramSeries, LineSeries, createChart, createSeriesMarkers,
} from "../vendor/lightweight-charts.mjs";
import uPlot from "../vendor/uPlot.esm.js";
import { el, price, signed, time, trend } from "./fmt.js";
import { store } from "./store.js";

let root = null;
let chosen = null;
// The symbol the route asks for. It may be missing from a snapshot sent while a restarted
// dashboard is still rebuilding its state: the chart then shows another symbol until the
// wanted one arrives, and switches back to it.
let wanted = null;
let chart = null;
const sparks = new Map();  // symbol → uPlot

function bars(symbol) {
  const m = store.markets[symbol];
  if (!m) return [];
  const out = m.candles.slice();
  const forming = m.price && m.price.forming;
  if (forming && (!out.length || forming.t > out[out.length - 1].t)) out.push(forming);
  return out;
}

function symbols(assetClass) {
  return Object.keys(store.markets)
    .filter((s) => (store.markets[s].price || {}).asset_class === assetClass)
    .sort();
}

export function mount(container, args) {
  wanted = args[0] ? decodeURIComponent(args[0]) : null;
  render(container);
}

function render(container) {
  root = container;
  chosen = wanted;
  if (!chosen || !store.markets[chosen]) chosen = symbols("crypto")[0] || symbols("equity")[0] || chosen;
  sparks.clear();
  root.replaceChildren(
    el("div", { class: "markets" },
      el("section", { class: "symbols" },
        el("div", { class: "column" }, el("h3", { text: "Crypto" }), el("div", { id: "list-crypto" })),
        el("div", { class: "column" }, el("h3", { text: "Equities" }), el("div", { id: "list-equity" }))),
      el("section", { class: "chart-panel" },
        el("div", { class: "chart-head" },
          el("h2", { id: "chart-symbol", text: chosen || "no symbol yet" }),
          el("span", { id: "chart-last", class: "last" }),
          el("span", { id: "chart-change", class: "change" }),
          el("span", { id: "chart-stale", class: "badge stale", hidden: true, text: "stale" })),
        el("div", { id: "chart", class: "chart" }),
        el("div", { id: "chart-legend", class: "legend" }),
        el("div", { class: "key" },
          el("span", { class: "k-sma", text: "SMA" }), el("span", { class: "k-ema", text: "EMA" }),
          el("span", { class: "k-vwap", text: "VWAP" })))));
  buildList();
  buildChart();
}

export function unmount() {
  if (chart) chart.chart.remove();
  chart = null;
  for (const plot of sparks.values()) plot.destroy();
  sparks.clear();
  root = null;
}

function row(symbol) {
  return el("a", { class: "sym-row", href: `#/markets/${encodeURIComponent(symbol)}`, "data-symbol": symbol },
    el("span", { class: "name", text: symbol }),
    el("span", { class: "spark" }),
    el("span", { class: "last" }),
    el("span", { class: "change" }),
    el("span", { class: "badge stale", hidden: true, text: "stale" }));
}

function buildList() {
  for (const cls of ["crypto", "equity"]) {
    const list = root.querySelector(`#list-${cls}`);
    list.replaceChildren(...symbols(cls).map(row));
  }
  for (const symbol of Object.keys(store.markets)) updateRow(symbol);
}

function sparkData(symbol) {
  const b = bars(symbol);
  return [b.map((c) => c.t), b.map((c) => Number(c.c))];
}

function updateRow(symbol) {
  const node = root && root.querySelector(`.sym-row[data-symbol="${CSS.escape(symbol)}"]`);
  if (!node) { if (root && store.markets[symbol]?.price) buildList(); return; }
  const p = store.markets[symbol].price || {};
  node.classList.toggle("chosen", symbol === chosen);
  const last = node.querySelector(".last");
  last.textContent = price(p.last);
  last.title = p.last || "";
  const change = node.querySelector(".change");
  change.textContent = signed(p.change_pct, "%");
  change.className = `change ${trend(p.change)}`;
  node.querySelector(".stale").hidden = !store.status.stale_symbols.includes(symbol);
  const data = sparkData(symbol);
  let plot = sparks.get(symbol);
  if (!plot) {
    plot = new uPlot({
      width: 80, height: 28, cursor: { show: false }, legend: { show: false },
      axes: [{ show: false }, { show: false }], scales: { x: { time: false } },
      series: [{}, { stroke: "#2f81f7", width: 1.25, points: { show: false } }],
    }, data, node.querySelector(".spark"));
    sparks.set(symbol, plot);
  } else {
    plot.setData(data);
  }
}

function buildChart() {
  const host = root.querySelector("#chart");
  const c = createChart(host, {
    autoSize: true,
    layout: { background: { color: "#0f1419" }, textColor: "#c9d1d9" },
    grid: { vertLines: { color: "#1f2630" }, horzLines: { color: "#1f2630" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
  const candles = c.addSeries(CandlestickSeries, {
    upColor: "#3fb950", downColor: "#f85149", wickUpColor: "#3fb950", wickDownColor: "#f85149",
    borderVisible: false,
  });
  const volume = c.addSeries(HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "volume" });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  const line = (color) => c.addSeries(LineSeries, {
    color, lineWidth: 1, priceLineVisible: false, lastValueVisible: false,
  });
  chart = { chart: c, candles, volume, sma: line("#d29922"), ema: line("#a371f7"), vwap: line("#39c5cf"),
            markers: createSeriesMarkers(candles, []) };
  drawChart();
}

function drawChart() {
  if (!chart || !chosen) return;
  const b = bars(chosen);
  chart.candles.setData(b.map((c) => ({ time: c.t, open: Number(c.o), high: Number(c.h), low: Number(c.l), close: Number(c.c) })));
  chart.volume.setData(b.map((c) => ({
    time: c.t, value: Number(c.v), color: Number(c.c) >= Number(c.o) ? "#3fb95066" : "#f8514966",
  })));
  const overlay = (field) => b.filter((c) => c[field] !== null && c[field] !== undefined)
    .map((c) => ({ time: c.t, value: Number(c[field]) }));
  chart.sma.setData(overlay("sma"));
  chart.ema.setData(overlay("ema"));
  chart.vwap.setData(overlay("vwap"));
  drawMarkers(b);
  if (!chart.fitted && b.length) { chart.chart.timeScale().fitContent(); chart.fitted = true; }
  const p = (store.markets[chosen] || {}).price || {};
  const last = root.querySelector("#chart-last");
  last.textContent = price(p.last);
  last.title = p.last || "";
  const change = root.querySelector("#chart-change");
  change.textContent = `${signed(p.change)} (${signed(p.change_pct, "%")})`;
  change.className = `change ${trend(p.change)}`;
  root.querySelector("#chart-stale").hidden = !store.status.stale_symbols.includes(chosen);
  const newest = b[b.length - 1];
  root.querySelector("#chart-legend").textContent = newest
    ? `${b.length} candles · ${time(newest.t)} O ${price(newest.o)} H ${price(newest.h)} ` +
      `L ${price(newest.l)} C ${price(newest.c)} V ${Number(newest.v).toLocaleString("en-US")}` +
      ` · ${newest.sma === undefined ? "forming" : "closed"}`
    : "no candles yet";
}

function drawMarkers(b) {
  if (!b.length) { chart.markers.setMarkers([]); return; }
  const first = b[0].t;
  const times = new Set(b.map((c) => c.t));
  const markers = store.alerts
    .filter((a) => a.subject === chosen)
    .map((a) => ({ a, t: Math.floor(Date.parse(a.t) / 60000) * 60 }))
    .filter(({ t }) => t >= first && times.has(t))
    .map(({ a, t }) => ({
      time: t, position: "aboveBar", shape: "arrowDown", text: a.kind.replace("_", " "),
      color: a.severity === "critical" ? "#f85149" : a.severity === "warning" ? "#d29922" : "#8b949e",
    }))
    .sort((x, y) => x.time - y.time);
  chart.markers.setMarkers(markers);
}

export function update(kind, subject) {
  if (!root) return;
  const backToWanted = wanted && chosen !== wanted && store.markets[wanted];
  if (kind === "snapshot") {
    if (backToWanted || !chosen || !store.markets[chosen]) { render(root); return; }
    buildList(); drawChart(); return;
  }
  if (kind === "price" || kind === "candle") {
    if (!chosen || backToWanted) { render(root); return; }
    updateRow(subject);
    if (subject === chosen) drawChart();
  } else if (kind === "alert" && subject === chosen) {
    drawChart();
  } else if (kind === "status") {
    for (const symbol of Object.keys(store.markets)) updateRow(symbol);
    if (chosen) root.querySelector("#chart-stale").hidden = !store.status.stale_symbols.includes(chosen);
  }
}
