// The page: hash routes (#/markets/<symbol>, #/correlation, #/portfolio, #/reviews,
// #/alerts), one stream for all views, and the connection and feed badges.

import * as alerts from "./alerts.js";
import * as correlation from "./correlation.js";
import * as markets from "./markets.js";
import * as portfolio from "./portfolio.js";
import * as reviews from "./reviews.js";
import { connect } from "./stream.js";
import { applyDelta, applySnapshot, store } from "./store.js";

const VIEWS = { markets, correlation, portfolio, reviews, alerts };
const main = document.getElementById("view");
let current = null;
let pending = new Map();  // "kind\0subject" → [kind, subject], drawn once per frame

function route() {
  const [name, ...args] = (location.hash.replace(/^#\/?/, "") || "markets").split("/");
  const view = VIEWS[name] || markets;
  if (current) current.unmount();
  current = view;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", VIEWS[a.dataset.view] === view);
  view.mount(main, args);
}

function drawPending() {
  const batch = pending;
  pending = new Map();
  for (const [kind, subject] of batch.values()) {
    if (kind === "status") drawFeeds();
    if (current) current.update(kind, subject);
  }
}

function schedule(kind, subject) {
  if (!pending.size) requestAnimationFrame(drawPending);
  pending.set(`${kind}\0${subject}`, [kind, subject]);
}

function drawFeeds() {
  const feeds = store.status.feeds || {};
  const stale = [];
  if (Object.keys(store.markets).length && feeds.live?.stale && feeds.candles?.stale) stale.push("market data");
  const badge = document.getElementById("feeds");
  badge.textContent = stale.length ? `stale: ${stale.join(", ")}` : "";
  badge.className = stale.length ? "badge stale" : "badge";
}

function setConnection(state) {
  const badge = document.getElementById("conn");
  badge.textContent = state;
  badge.className = `badge ${state}`;
  document.body.dataset.connection = state;
}

window.addEventListener("hashchange", route);
route();
connect("stream", {
  onState: setConnection,
  onSnapshot(doc) {
    applySnapshot(doc);
    pending.clear();
    drawFeeds();
    if (current) current.update("snapshot", "");
  },
  onDelta(key, value) {
    const [kind, subject] = applyDelta(key, value);
    schedule(kind, subject);
  },
});
