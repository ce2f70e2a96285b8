// Alerts: the live feed, newest first, filterable by kind and severity.

import { el, time } from "./fmt.js";
import { store } from "./store.js";

let root = null;
const filter = { kind: "", severity: "" };
const KINDS = ["negative_review", "negative_burst", "price_move", "stale_feed"];
const SEVERITIES = ["info", "warning", "critical"];

export function mount(container) {
  root = container;
  const select = (id, values, field) => {
    const s = el("select", { id }, el("option", { value: "", text: "all" }),
      ...values.map((v) => el("option", { value: v, selected: filter[field] === v, text: v.replace("_", " ") })));
    s.onchange = () => { filter[field] = s.value; draw(); };
    return s;
  };
  root.replaceChildren(
    el("div", { class: "toolbar" },
      el("label", { text: "Kind " }), select("alert-kind", KINDS, "kind"),
      el("label", { text: " Severity " }), select("alert-severity", SEVERITIES, "severity"),
      el("span", { id: "alert-count", class: "hint" })),
    el("ol", { id: "alerts", class: "feed" }));
  draw();
}

export function unmount() { root = null; }

function draw() {
  const shown = store.alerts.filter((a) => (!filter.kind || a.kind === filter.kind) &&
    (!filter.severity || a.severity === filter.severity)).slice().sort((a, b) => (a.t < b.t ? 1 : a.t > b.t ? -1 : 0));
  root.querySelector("#alert-count").textContent = ` ${shown.length} of ${store.alerts.length}`;
  root.querySelector("#alerts").replaceChildren(...shown.map((a) => el("li", { class: `sev-${a.severity}`, "data-alert": a.id },
    el("div", { class: "meta", text: `${time(a.t)} · ${a.kind.replace("_", " ")} · ${a.severity} · ${a.subject}` }),
    el("span", { text: a.message }))));
}

export function update(kind) {
  if (root && (kind === "alert" || kind === "snapshot")) draw();
}
