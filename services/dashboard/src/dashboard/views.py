"""The dashboard's state, pure: ring buffers per symbol, feeds, reviews, alerts, correlation,
portfolio maths, and the per-client coalescing queue. No I/O; time comes in as arguments.

Every `on_*` call applies one decoded record and returns the changes it made as
(key, payload) pairs; a key names one piece of the page (`price:BTC-USD`, `alert:<id>`…), and
a later payload for the same key replaces an earlier one, which is what lets the stream
coalesce. Money is `Decimal` end to end and leaves as strings.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from contracts.events import (
    AlertKind,
    AlertRaised,
    CandleClosed,
    CandleForming,
    ReviewEnriched,
    ReviewOp,
    SentimentLabel,
)
from contracts.rows import AssetClass
from pydantic import BaseModel, Field

Change = tuple[str, Any]


class Later:
    """A payload worked out when the stream flushes, not when the record arrives: a price
    changes with every forming candle (1,000 a second in the benchmark) but is sent at most
    once per coalescing interval, so it is built once per flush."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn = fn
        self.args = args

    def __call__(self) -> Any:
        return self.fn(*self.args)


def resolve(payload: Any) -> Any:
    return payload() if isinstance(payload, Later) else payload


VIEWS = frozenset({"markets", "correlation", "portfolio", "reviews", "alerts"})
_EXACT = Context(prec=80)  # products and sums of DECIMAL(38,18) never round before display
CENT = Decimal("0.01")
FEED_KINDS = ("candles", "live", "alerts", "reviews")


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_EVEN, context=_EXACT))


def _plain(value: Decimal) -> str:
    """A decimal as plain digits without trailing zeros ("67012.5", not "6.70125E+4")."""
    text = format(value.normalize(_EXACT), "f")
    return text


def _epoch_s(ts: datetime) -> int:
    return int(ts.timestamp())


# --- the per-client queue ------------------------------------------------------------------


class CoalescingQueue:
    """What one client has yet to receive: the latest frame per key, at most `max_keys` keys.

    A newer frame for a queued key replaces the older one and moves to the end (`coalesced`
    counts them), so frames drain in the order they were made (rising event ids): a browser
    cut off mid-body has received exactly the frames up to its Last-Event-ID, which is what a
    resume replays from. A new key past `max_keys` drops everything and marks the queue
    `overflowed`: the client then needs a fresh snapshot (a resync), and the queue never holds
    more than `max_keys`.
    """

    __slots__ = ("_pending", "coalesced", "max_keys", "overflowed")

    def __init__(self, *, max_keys: int) -> None:
        self._pending: dict[str, bytes] = {}
        self.max_keys = max_keys
        self.overflowed = False
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, key: str, frame: bytes) -> None:
        if self.overflowed:
            return  # a snapshot is due; it will hold this change
        pending = self._pending
        if key in pending:
            del pending[key]  # to the end: drained in the order frames were made
            pending[key] = frame
            self.coalesced += 1
        elif len(pending) >= self.max_keys:
            pending.clear()
            self.overflowed = True
        else:
            pending[key] = frame

    def put_many(self, frames: dict[str, bytes]) -> None:
        """`put` of every item, in C: one dict update for the whole flush (the hot path)."""
        if self.overflowed:
            return
        pending = self._pending
        if pending:
            again = pending.keys() & frames.keys()  # to the end, as in `put`
            for key in again:
                del pending[key]
            self.coalesced += len(again)
        pending.update(frames)
        if len(pending) > self.max_keys:
            pending.clear()
            self.overflowed = True

    def drain(self) -> list[bytes]:
        frames = list(self._pending.values())
        self._pending.clear()
        return frames

    def reset(self) -> None:
        """After a snapshot: nothing pending, no longer overflowed."""
        self._pending.clear()
        self.overflowed = False


# --- subscriptions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscription:
    """The views a client draws and, for markets, which symbols (None: all)."""

    views: frozenset[str] = VIEWS
    symbols: frozenset[str] | None = None

    @classmethod
    def parse(cls, *, views: str | None, symbols: str | None) -> Subscription:
        """From query parameters; unknown view names raise ValueError (a 400)."""
        chosen = VIEWS
        if views:
            chosen = frozenset(v.strip() for v in views.split(",") if v.strip())
            unknown = chosen - VIEWS
            if unknown:
                raise ValueError(f"unknown views: {', '.join(sorted(unknown))}")
        wanted = None
        if symbols:
            wanted = frozenset(s.strip() for s in symbols.split(",") if s.strip())
        return cls(views=chosen, symbols=wanted)

    def wants(self, key: str) -> bool:
        kind, _, rest = key.partition(":")
        if kind in ("price", "candle"):
            if "markets" not in self.views:
                return False
            if self.symbols is None:
                return True
            return rest.partition(":")[0] in self.symbols
        if kind == "alert":
            return "alerts" in self.views or "markets" in self.views
        if kind in ("review", "product"):
            return "reviews" in self.views
        if kind == "correlation":
            return "correlation" in self.views
        if kind == "portfolio":
            return "portfolio" in self.views
        return True  # status


# --- portfolio -----------------------------------------------------------------------------


class Position(BaseModel):
    """One holding: `cost` is the average cost per unit, in the symbol's quote currency."""

    model_config = {"frozen": True, "extra": "forbid"}

    symbol: str = Field(min_length=1, max_length=64)
    quantity: Decimal
    cost: Decimal = Field(ge=0)


class Portfolio(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}

    positions: list[Position] = Field(default_factory=list, max_length=1000)


def portfolio_view(
    positions: Iterable[Position],
    prices: Mapping[str, Decimal],
    classes: Mapping[str, str],
) -> dict[str, Any]:
    """Market value, P&L and exposure by asset class, exact until rounded to cents for display.

    A position whose symbol has no price yet is listed with nulls and left out of the totals
    (`unpriced` names them), rather than counted at zero.
    """
    rows = []
    total_value = Decimal(0)
    total_cost = Decimal(0)
    by_class: dict[str, Decimal] = {}
    unpriced = []
    for p in positions:
        basis = _EXACT.multiply(p.quantity, p.cost)
        price = prices.get(p.symbol)
        row: dict[str, Any] = {
            "symbol": p.symbol,
            "quantity": _plain(p.quantity),
            "cost": _plain(p.cost),
            "cost_basis": _money(basis),
            "asset_class": classes.get(p.symbol),
            "last": None,
            "market_value": None,
            "pnl": None,
            "pnl_pct": None,
        }
        if price is None:
            unpriced.append(p.symbol)
        else:
            value = _EXACT.multiply(p.quantity, price)
            pnl = _EXACT.subtract(value, basis)
            row["last"] = _plain(price)
            row["market_value"] = _money(value)
            row["pnl"] = _money(pnl)
            if basis != 0:
                row["pnl_pct"] = _money(_EXACT.divide(pnl * 100, abs(basis)))
            total_value = _EXACT.add(total_value, value)
            total_cost = _EXACT.add(total_cost, basis)
            asset_class = classes.get(p.symbol) or "unknown"
            by_class[asset_class] = _EXACT.add(by_class.get(asset_class, Decimal(0)), value)
        rows.append(row)
    gross = sum((abs(v) for v in by_class.values()), Decimal(0))
    exposure = {
        name: {
            "value": _money(value),
            "share_pct": None if gross == 0 else _money(_EXACT.divide(abs(value) * 100, gross)),
        }
        for name, value in sorted(by_class.items())
    }
    return {
        "positions": rows,
        "total_value": _money(total_value),
        "total_cost": _money(total_cost),
        "total_pnl": _money(_EXACT.subtract(total_value, total_cost)),
        "exposure": exposure,
        "unpriced": unpriced,
    }


# --- correlation ---------------------------------------------------------------------------


def returns_by_time(closes: list[tuple[int, float]]) -> dict[int, float]:
    """Simple returns keyed by the later candle's start: close_t / close_(t-1) - 1."""
    out: dict[int, float] = {}
    for (_, before), (t, after) in itertools.pairwise(closes):
        if before > 0:
            out[t] = after / before - 1.0
    return out


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r; None with fewer than 3 pairs or when either side does not vary."""
    n = len(xs)
    if n < 3 or n != len(ys):
        return None
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    syy = math.fsum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def rolling_correlation(
    a: dict[int, float], b: dict[int, float], *, window: int
) -> tuple[float | None, int]:
    """Correlation of two return series over their last `window` common times, and how many
    pairs it used (a crypto trades at night, an equity does not: only shared minutes count)."""
    common = sorted(a.keys() & b.keys())[-window:]
    r = pearson([a[t] for t in common], [b[t] for t in common])
    return r, len(common)


# --- markets -------------------------------------------------------------------------------


@dataclass(slots=True)
class SymbolState:
    asset_class: str
    candles: list[dict[str, Any]] = field(default_factory=list)  # closed, oldest first
    forming: dict[str, Any] | None = None
    last_update_s: float | None = None  # monotonic receipt time of the latest record


def _candle_payload(c: CandleClosed | CandleForming) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "t": _epoch_s(c.window_start),
        "o": _plain(c.open),
        "h": _plain(c.high),
        "l": _plain(c.low),
        "c": _plain(c.close),
        "v": _plain(c.volume),
        "vwap": _plain(c.vwap),
        "n": c.trade_count,
    }
    if isinstance(c, CandleClosed):
        payload["sma"] = None if c.sma is None else _plain(c.sma)
        payload["ema"] = None if c.ema is None else _plain(c.ema)
    return payload


# --- the whole state -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateConfig:
    candles_per_symbol: int = 240
    alerts_max: int = 500
    negative_reviews_max: int = 100
    reviews_per_product_max: int = 200
    correlation_windows: tuple[int, ...] = (10, 30, 60)
    stale_after_s: float = 30.0
    review_index_max: int = 20_000  # ids remembered so an edit or delete corrects the counts


@dataclass(slots=True)
class ProductState:
    name: str | None
    ratings: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])  # 1★ … 5★
    trend: deque[tuple[int, float]] = field(default_factory=deque)  # (epoch s, score)
    count: int = 0
    burst_until: datetime | None = None


def _is_negative(review: ReviewEnriched, *, rating_max: int = 2) -> bool:
    if review.sentiment_label is SentimentLabel.NEGATIVE:
        return True
    return review.rating is not None and review.rating <= rating_max


class DashboardState:
    """Everything the page shows, rebuilt from the topics on start and updated by each record."""

    def __init__(self, config: StateConfig) -> None:
        self.config = config
        self.symbols: dict[str, SymbolState] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=config.alerts_max)
        self.products: dict[str, ProductState] = {}
        self.negative: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._review_index: OrderedDict[str, tuple[str, int | None, bool]] = OrderedDict()
        self.positions: tuple[Position, ...] = ()
        self.feed_seen_s: dict[str, float] = {}  # feed kind → monotonic receipt time
        self.feed_event_time: dict[str, str] = {}  # feed kind → latest record's event time
        self.malformed: dict[str, int] = {}

    # -- records -----------------------------------------------------------------------

    def _symbol(self, symbol: str, asset_class: AssetClass) -> SymbolState:
        state = self.symbols.get(symbol)
        if state is None:
            state = self.symbols[symbol] = SymbolState(asset_class=asset_class.value)
        return state

    def _seen(self, kind: str, event_time: datetime, now_s: float) -> None:
        self.feed_seen_s[kind] = now_s
        self.feed_event_time[kind] = event_time.isoformat()

    def on_candle(self, candle: CandleClosed, *, now_s: float) -> list[Change]:
        """A closed candle joins its symbol's ring (a redelivered one replaces its twin)."""
        self._seen("candles", candle.event_time, now_s)
        state = self._symbol(candle.symbol, candle.asset_class)
        state.last_update_s = now_s
        payload = _candle_payload(candle)
        held = state.candles
        times = [c["t"] for c in held]
        at = bisect.bisect_left(times, payload["t"])
        if at < len(held) and held[at]["t"] == payload["t"]:
            held[at] = payload
        else:
            held.insert(at, payload)
            if len(held) > self.config.candles_per_symbol:
                del held[: len(held) - self.config.candles_per_symbol]
        if state.forming is not None and state.forming["t"] <= payload["t"]:
            state.forming = None  # the close supersedes what was forming
        return [
            (f"candle:{candle.symbol}:{payload['t']}", {"symbol": candle.symbol, **payload}),
            (f"price:{candle.symbol}", Later(self.price, candle.symbol)),
        ]

    def on_forming(self, candle: CandleForming, *, now_s: float) -> list[Change]:
        """The open candle moves; an older one than what is held (reordered) is ignored."""
        self._seen("live", candle.event_time, now_s)
        state = self._symbol(candle.symbol, candle.asset_class)
        state.last_update_s = now_s
        payload = _candle_payload(candle)
        payload["at"] = candle.event_time.isoformat()
        if state.candles and state.candles[-1]["t"] >= payload["t"]:
            return []  # this window has closed already
        if state.forming is not None:
            if state.forming["t"] > payload["t"]:
                return []
            if state.forming["t"] == payload["t"] and state.forming["n"] > payload["n"]:
                return []
        state.forming = payload
        return [(f"price:{candle.symbol}", Later(self.price, candle.symbol))]

    def on_alert(self, alert: AlertRaised, *, now_s: float) -> list[Change]:
        self._seen("alerts", alert.event_time, now_s)
        payload = {
            "id": alert.alert_id,
            "kind": alert.kind.value,
            "severity": alert.severity.value,
            "subject": alert.subject,
            "message": alert.message,
            "t": alert.event_time.isoformat(),
            "details": alert.details,
        }
        if any(a["id"] == alert.alert_id for a in self.alerts):
            return []  # redelivered
        self.alerts.append(payload)
        changes: list[Change] = [(f"alert:{alert.alert_id}", payload)]
        if alert.kind is AlertKind.NEGATIVE_BURST:
            product = self.products.get(alert.subject)
            until = alert.window_end or alert.event_time
            if product is None:
                product = self.products[alert.subject] = ProductState(name=None)
            product.burst_until = until
            for entry in self.negative.values():
                if entry["product"] == alert.subject and not entry["burst"]:
                    entry["burst"] = True
                    changes.append((f"review:{entry['id']}", entry))
            changes.append((f"product:{alert.subject}", self.product_view(alert.subject)))
        return changes

    def on_review(self, review: ReviewEnriched, *, now_s: float) -> list[Change]:
        """Counts per product (an edit or a delete corrects them) and the negative feed."""
        self._seen("reviews", review.event_time, now_s)
        key = review.product_sku or (
            str(review.product_id) if review.product_id is not None else "unknown"
        )
        changes: list[Change] = []
        before = self._review_index.pop(review.review_id, None)
        if before is not None:
            old_key, old_rating, _ = before
            old = self.products.get(old_key)
            if old is not None:
                old.count -= 1
                if old_rating is not None:
                    old.ratings[old_rating - 1] -= 1
                if old_key != key:
                    changes.append((f"product:{old_key}", self.product_view(old_key)))
        if review.review_id in self.negative:
            del self.negative[review.review_id]
            changes.append((f"review:{review.review_id}", None))
        if review.op is ReviewOp.DELETE:
            if before is not None:
                changes.append((f"product:{key}", self.product_view(key)))
            return changes
        product = self.products.get(key)
        if product is None:
            product = self.products[key] = ProductState(name=review.product_name)
        product.name = review.product_name or product.name
        product.count += 1
        if review.rating is not None:
            product.ratings[review.rating - 1] += 1
        if review.sentiment_score is not None:
            product.trend.append((_epoch_s(review.event_time), review.sentiment_score))
            while len(product.trend) > self.config.reviews_per_product_max:
                product.trend.popleft()
        negative = _is_negative(review)
        self._review_index[review.review_id] = (key, review.rating, negative)
        while len(self._review_index) > self.config.review_index_max:
            self._review_index.popitem(last=False)
        changes.append((f"product:{key}", self.product_view(key)))
        if negative:
            burst = product.burst_until is not None and product.burst_until >= review.event_time
            entry = {
                "id": review.review_id,
                "product": key,
                "product_name": product.name,
                "rating": review.rating,
                "title": review.title,  # scrubbed by cdc_processor
                "body": review.body,
                "score": review.sentiment_score,
                "t": review.event_time.isoformat(),
                "burst": burst,
            }
            self.negative[review.review_id] = entry
            while len(self.negative) > self.config.negative_reviews_max:
                old_id, _ = self.negative.popitem(last=False)
                changes.append((f"review:{old_id}", None))
            changes.append((f"review:{review.review_id}", entry))
        return changes

    def set_positions(self, positions: Iterable[Position]) -> list[Change]:
        self.positions = tuple(positions)
        return [("portfolio", self.portfolio())]

    # -- views -------------------------------------------------------------------------

    def last_price(self, symbol: str) -> Decimal | None:
        state = self.symbols.get(symbol)
        if state is None:
            return None
        if state.forming is not None:
            return Decimal(state.forming["c"])
        if state.candles:
            return Decimal(state.candles[-1]["c"])
        return None

    def price(self, symbol: str) -> dict[str, Any]:
        """Last price, and its change since the oldest candle held (the chart's left edge)."""
        state = self.symbols[symbol]
        last = self.last_price(symbol)
        first = state.candles[0] if state.candles else state.forming
        change = change_pct = None
        if last is not None and first is not None:
            reference = Decimal(first["o"])
            delta = _EXACT.subtract(last, reference)
            change = _plain(delta)
            if reference != 0:
                change_pct = _money(_EXACT.divide(delta * 100, reference))
        return {
            "symbol": symbol,
            "asset_class": state.asset_class,
            "last": None if last is None else _plain(last),
            "change": change,
            "change_pct": change_pct,
            "since": None if first is None else first["t"],
            "forming": state.forming,
        }

    def product_view(self, key: str) -> dict[str, Any]:
        product = self.products[key]
        scores = [s for _, s in product.trend]
        return {
            "product": key,
            "name": product.name,
            "count": product.count,
            "ratings": list(product.ratings),
            "trend": [[t, round(s, 4)] for t, s in product.trend],
            "mean_score": round(math.fsum(scores) / len(scores), 4) if scores else None,
            "burst_until": None if product.burst_until is None else product.burst_until.isoformat(),
        }

    def correlation(self) -> dict[str, Any]:
        """Rolling correlation of 1-minute returns, each crypto × each equity, per window.

        Returns come from closed candles plus the forming one, so the newest value moves
        with the price between closes."""
        series: dict[str, dict[int, float]] = {}
        crypto: list[str] = []
        equity: list[str] = []
        for symbol, state in sorted(self.symbols.items()):
            closes = [(c["t"], float(c["c"])) for c in state.candles]
            if state.forming is not None and (not closes or state.forming["t"] > closes[-1][0]):
                closes.append((state.forming["t"], float(state.forming["c"])))
            series[symbol] = returns_by_time(closes)
            (crypto if state.asset_class == AssetClass.CRYPTO.value else equity).append(symbol)
        values: dict[str, dict[str, dict[str, Any]]] = {}
        for window in self.config.correlation_windows:
            cells: dict[str, dict[str, Any]] = {}
            for c in crypto:
                for e in equity:
                    r, n = rolling_correlation(series[c], series[e], window=window)
                    cells[f"{c}|{e}"] = {"r": None if r is None else round(r, 4), "n": n}
            values[str(window)] = cells
        return {
            "windows": list(self.config.correlation_windows),
            "crypto": crypto,
            "equity": equity,
            "values": values,
        }

    def portfolio(self) -> dict[str, Any]:
        prices: dict[str, Decimal] = {}
        classes: dict[str, str] = {}
        for p in self.positions:
            last = self.last_price(p.symbol)
            if last is not None:
                prices[p.symbol] = last
            state = self.symbols.get(p.symbol)
            if state is not None:
                classes[p.symbol] = state.asset_class
        return portfolio_view(self.positions, prices, classes)

    def holds(self, symbol: str) -> bool:
        return any(p.symbol == symbol for p in self.positions)

    def status(self, *, now_s: float) -> dict[str, Any]:
        """Which feeds and symbols have gone quiet for longer than `stale_after_s`."""
        limit = self.config.stale_after_s
        feeds = {
            kind: {
                "stale": kind not in self.feed_seen_s or now_s - self.feed_seen_s[kind] > limit,
                "event_time": self.feed_event_time.get(kind),
            }
            for kind in FEED_KINDS
        }
        stale_symbols = sorted(
            s
            for s, state in self.symbols.items()
            if state.last_update_s is None or now_s - state.last_update_s > limit
        )
        return {"feeds": feeds, "stale_symbols": stale_symbols, "malformed": dict(self.malformed)}

    def snapshot(self, sub: Subscription, *, now_s: float) -> dict[str, Any]:
        """Everything `sub` draws, as one document; deltas after it use the same keys."""
        doc: dict[str, Any] = {"status": self.status(now_s=now_s)}
        if "markets" in sub.views:
            doc["markets"] = {
                symbol: {
                    "price": self.price(symbol),
                    "candles": state.candles,
                }
                for symbol, state in sorted(self.symbols.items())
                if sub.symbols is None or symbol in sub.symbols
            }
        if "alerts" in sub.views or "markets" in sub.views:
            doc["alerts"] = list(self.alerts)
        if "reviews" in sub.views:
            doc["products"] = {key: self.product_view(key) for key in sorted(self.products)}
            doc["negative"] = list(self.negative.values())
        if "correlation" in sub.views:
            doc["correlation"] = self.correlation()
        if "portfolio" in sub.views:
            doc["portfolio"] = self.portfolio()
        return doc
