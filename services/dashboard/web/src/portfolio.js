// Portfolio: positions with live market value and P&L, exposure by asset class. Every figure
// is the server's exact decimal rounded to cents there; nothing is summed in the browser.

import { el, money, price, signed, trend } from "./fmt.js";
import { store } from "./store.js";

let root = null;

export function mount(container) { root = container; draw(); }
export function unmount() { root = null; }

function draw() {
  const p = store.portfolio;
  if (!p || !p.positions.length) {
    root.replaceChildren(el("p", { class: "empty",
      text: "No positions: set DASHBOARD_PORTFOLIO_FILE or POST /dashboard/api/portfolio." }));
    return;
  }
  const rows = p.positions.map((r) => el("tr", { "data-symbol": r.symbol },
    el("td", { text: r.symbol }), el("td", { text: r.asset_class || "—" }),
    el("td", { class: "num", text: r.quantity }), el("td", { class: "num", text: price(r.cost) }),
    el("td", { class: "num", text: price(r.last), title: r.last || "" }),
    el("td", { class: "num mv", text: money(r.market_value) }),
    el("td", { class: `num pnl ${trend(r.pnl)}`, text: money(r.pnl) }),
    el("td", { class: `num ${trend(r.pnl_pct)}`, text: signed(r.pnl_pct, "%") })));
  const exposure = Object.entries(p.exposure).map(([name, e]) => el("div", { class: "exposure-row" },
    el("span", { class: "name", text: name }),
    el("span", { class: "bar" }, el("span", { style: `width:${Number(e.share_pct || 0)}%` })),
    el("span", { class: "num", text: `${money(e.value)} (${e.share_pct ?? "—"}%)` })));
  root.replaceChildren(
    el("div", { class: "totals" },
      el("div", {}, el("small", { text: "Market value" }), el("strong", { id: "pf-value", text: money(p.total_value) })),
      el("div", {}, el("small", { text: "Cost" }), el("strong", { text: money(p.total_cost) })),
      el("div", {}, el("small", { text: "P&L" }), el("strong", { id: "pf-pnl", class: trend(p.total_pnl), text: money(p.total_pnl) }))),
    el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ...["Symbol", "Class", "Quantity", "Cost", "Last", "Market value", "P&L", "P&L %"]
        .map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows)),
    el("h3", { text: "Exposure by asset class" }), el("div", { class: "exposure" }, ...exposure),
    ...(p.unpriced.length ? [el("p", { class: "hint", text: `No price yet: ${p.unpriced.join(", ")}` })] : []));
}

export function update(kind) {
  if (root && (kind === "portfolio" || kind === "snapshot")) draw();
}
