// Reviews: per product the sentiment trend and the rating distribution; the live feed of
// negative reviews (the scrubbed text cdc_processor published), bursts highlighted.

import uPlot from "../vendor/uPlot.esm.js";
import { el, time } from "./fmt.js";
import { store } from "./store.js";

let root = null;
const plots = new Map();

export function mount(container) {
  root = container;
  root.replaceChildren(el("div", { class: "reviews" },
    el("section", {}, el("h3", { text: "Products" }), el("div", { id: "products" })),
    el("section", {}, el("h3", { text: "Negative reviews, live" }), el("ol", { id: "negative", class: "feed" }))));
  drawProducts();
  drawFeed();
}

export function unmount() {
  for (const p of plots.values()) p.destroy();
  plots.clear();
  root = null;
}

function card(key) {
  const p = store.products[key];
  const total = p.ratings.reduce((a, b) => a + b, 0) || 1;
  const dist = el("div", { class: "ratings" }, ...p.ratings.map((n, i) => el("div", { class: "rating" },
    el("span", { text: `${i + 1}★` }), el("span", { class: "bar" }, el("span", { style: `width:${(100 * n) / total}%` })),
    el("span", { class: "num", text: String(n) }))).reverse());
  const burst = p.burst_until && Date.parse(p.burst_until) > Date.now() - 3600_000;
  return el("div", { class: `product${burst ? " burst" : ""}`, "data-product": key },
    el("h4", { text: `${p.name || key}` }, el("small", { text: ` ${key} · ${p.count} reviews · mean sentiment ${p.mean_score ?? "—"}` })),
    burst ? el("span", { class: "badge burst", text: "negative burst" }) : null,
    el("div", { class: "trend" }), dist);
}

function drawProducts() {
  const host = root.querySelector("#products");
  for (const p of plots.values()) p.destroy();
  plots.clear();
  const keys = Object.keys(store.products).sort();
  host.replaceChildren(...keys.map(card));
  for (const key of keys) drawTrend(key);
}

function drawTrend(key) {
  const node = root.querySelector(`.product[data-product="${CSS.escape(key)}"] .trend`);
  const points = store.products[key].trend;
  const data = [points.map((p) => p[0]), points.map((p) => p[1])];
  const old = plots.get(key);
  if (old) old.destroy();
  plots.set(key, new uPlot({
    width: 360, height: 110, legend: { show: false }, cursor: { show: false },
    scales: { y: { range: [-1, 1] } }, axes: [{ stroke: "#8b949e", size: 20 }, { stroke: "#8b949e", size: 30 }],
    series: [{}, { stroke: "#d29922", width: 1.5, points: { show: points.length < 30 } }],
  }, data, node));
}

function drawFeed() {
  const host = root.querySelector("#negative");
  host.replaceChildren(...store.negative.slice().sort((a, b) => (a.t < b.t ? 1 : a.t > b.t ? -1 : 0)).map((r) => el("li", { class: r.burst ? "burst" : "", "data-review": r.id },
    el("div", { class: "meta", text: `${time(r.t)} · ${r.product_name || r.product} · ${r.rating ?? "?"}★ · sentiment ${r.score ?? "—"}${r.burst ? " · BURST" : ""}` }),
    el("strong", { text: r.title || "" }), el("p", { text: r.body || "" }))));
}

export function update(kind, subject) {
  if (!root) return;
  if (kind === "snapshot") { drawProducts(); drawFeed(); }
  else if (kind === "product") {
    const node = root.querySelector(`.product[data-product="${CSS.escape(subject)}"]`);
    if (node) { plots.get(subject)?.destroy(); plots.delete(subject); node.replaceWith(card(subject)); drawTrend(subject); }
    else drawProducts();
  } else if (kind === "review") drawFeed();
}
