// The page's copy of the server's state: replaced by each snapshot, patched by each delta.
// The server owns the state; nothing here computes a figure, it only keeps what was sent.

export const store = {
  status: { feeds: {}, stale_symbols: [], malformed: {} },
  markets: {},      // symbol → { price, candles: [...] }
  alerts: [],       // oldest first
  products: {},
  negative: [],     // oldest first
  correlation: null,
  portfolio: null,
};

const MAX_ALERTS = 500;
const MAX_CANDLES = 240;

export function applySnapshot(doc) {
  store.status = doc.status || store.status;
  store.markets = doc.markets || {};
  store.alerts = doc.alerts || [];
  store.products = doc.products || {};
  store.negative = doc.negative || [];
  store.correlation = doc.correlation || null;
  store.portfolio = doc.portfolio || null;
}

function market(symbol) {
  if (!store.markets[symbol]) store.markets[symbol] = { price: null, candles: [] };
  return store.markets[symbol];
}

// Returns what changed, as [kind, subject] for the views to redraw only that.
export function applyDelta(key, value) {
  const cut = key.indexOf(":");
  const kind = cut < 0 ? key : key.slice(0, cut);
  const rest = cut < 0 ? "" : key.slice(cut + 1);
  switch (kind) {
    case "price":
      market(rest).price = value;
      return [kind, rest];
    case "candle": {
      const m = market(value.symbol);
      const i = m.candles.findIndex((c) => c.t >= value.t);
      if (i < 0) m.candles.push(value);
      else if (m.candles[i].t === value.t) m.candles[i] = value;
      else m.candles.splice(i, 0, value);
      if (m.candles.length > MAX_CANDLES) m.candles.splice(0, m.candles.length - MAX_CANDLES);
      return [kind, value.symbol];
    }
    case "alert":
      store.alerts.push(value);
      if (store.alerts.length > MAX_ALERTS) store.alerts.shift();
      return [kind, value.subject];
    case "review": {
      const i = store.negative.findIndex((r) => r.id === rest);
      if (value === null) { if (i >= 0) store.negative.splice(i, 1); }
      else if (i >= 0) store.negative[i] = value;
      else store.negative.push(value);
      return [kind, rest];
    }
    case "product":
      store.products[rest] = value;
      return [kind, rest];
    case "correlation":
      store.correlation = value;
      return [kind, ""];
    case "portfolio":
      store.portfolio = value;
      return [kind, ""];
    case "status":
      store.status = value;
      return [kind, ""];
    default:
      return [kind, rest];
  }
}
