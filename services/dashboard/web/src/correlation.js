// Correlation: each crypto × each equity, rolling correlation of 1-minute returns over the
// chosen window. Computed by the server (views.correlation); drawn here as a heat table.

import { el } from "./fmt.js";
import { store } from "./store.js";

let root = null;
let windowChoice = null;

export function mount(container) {
  root = container;
  draw();
}

export function unmount() { root = null; }

function colour(r) {
  if (r === null) return "transparent";
  const a = Math.min(1, Math.abs(r)).toFixed(2);
  return r >= 0 ? `rgba(63,185,80,${a})` : `rgba(248,81,73,${a})`;
}

function draw() {
  const c = store.correlation;
  if (!c || !c.crypto.length || !c.equity.length) {
    root.replaceChildren(el("p", { class: "empty", text: "Correlation needs candles of at least one crypto and one equity." }));
    return;
  }
  if (!windowChoice || !c.windows.includes(windowChoice)) windowChoice = c.windows[Math.floor(c.windows.length / 2)];
  const select = el("select", { id: "corr-window" },
    ...c.windows.map((w) => el("option", { value: w, selected: w === windowChoice, text: `${w} minutes` })));
  select.onchange = () => { windowChoice = Number(select.value); draw(); };
  const cells = c.values[String(windowChoice)] || {};
  const table = el("table", { class: "corr" },
    el("thead", {}, el("tr", {}, el("th", { text: "crypto \\ equity" }), ...c.equity.map((e) => el("th", { text: e })))),
    el("tbody", {}, ...c.crypto.map((cr) => el("tr", {}, el("th", { text: cr }),
      ...c.equity.map((eq) => {
        const cell = cells[`${cr}|${eq}`] || { r: null, n: 0 };
        const td = el("td", { title: `${cell.n} common returns`, "data-pair": `${cr}|${eq}`,
                              text: cell.r === null ? "—" : cell.r.toFixed(2) });
        td.style.background = colour(cell.r);
        return td;
      })))));
  root.replaceChildren(
    el("div", { class: "toolbar" }, el("label", { for: "corr-window", text: "Window " }), select,
      el("span", { class: "hint", text: " Pearson r of 1-minute returns over shared minutes; — below 3 pairs." })),
    table);
}

export function update(kind) {
  if (root && (kind === "correlation" || kind === "snapshot")) draw();
}
