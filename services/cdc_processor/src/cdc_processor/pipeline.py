"""The processor's logic between decode and emit: joins, dedup, orphans, candles, alerts.

State lives in mappings the caller provides (Faust tables in the worker, dicts in tests); a
state value is always re-assigned after it changes so a table writes its changelog. Each call
returns the records to emit; nothing here does I/O.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from contracts import topics
from contracts.events import AlertRaised, ReviewEnriched, ReviewOp
from servicekit import metrics
from servicekit.clock import Clock
from servicekit.kafka import encode_event

from cdc_processor import alerts, candles
from cdc_processor.decoding import CRAWL_ID_PREFIX, Position, ProductChange, ReviewInput, Tick
from cdc_processor.enrichment import Enricher, ProductInfo, normalized_text, with_product

log = logging.getLogger(__name__)

# A held-back forming candle goes out at most interval / this late (`live_check_interval_s`).
LIVE_CHECKS_PER_INTERVAL = 5


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None  # Kafka record headers (`traceparent`)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record to dead-letter with its original bytes."""

    reason: str
    detail: str


@functools.lru_cache(maxsize=1024)
def _counter(metric: Any, label: str) -> Any:
    """A labelled metric's child, looked up once (`labels()` costs microseconds per call)."""
    return metric.labels(label)


def _enriched(record: ReviewEnriched) -> Output:
    return Output(topics.REVIEWS_ENRICHED.name, record.review_id.encode(), encode_event(record))


def _alert(alert: AlertRaised) -> Output:
    _counter(metrics.ALERTS_RAISED, alert.kind.value).inc()
    return Output(topics.ALERTS.name, alert.subject.encode(), encode_event(alert))


class ReviewFlow:
    """Products → table; reviews → enriched record, alerts, orphan bookkeeping.

    Reviews whose product is not yet known are emitted at once with `product_known=False`
    and kept (bounded per product) in `orphans`; when the product arrives they are re-emitted
    joined, under the same key, so the latest record per review id is the joined one.
    """

    def __init__(
        self,
        *,
        enricher: Enricher,
        alert_config: alerts.ReviewAlertConfig,
        orphan_max: int,
        products: MutableMapping[str, Any],
        orphans: MutableMapping[str, Any],
        dedup: MutableMapping[str, Any],
        bursts: MutableMapping[str, Any],
        clock: Clock,
        dedup_ttl: timedelta = timedelta(days=30),
    ) -> None:
        self.enricher = enricher
        self.alert_config = alert_config
        self.orphan_max = orphan_max
        self.products = products
        self.orphans = orphans
        self.dedup = dedup
        self.bursts = bursts
        self.clock = clock
        self.dedup_ttl_s = dedup_ttl.total_seconds()
        # Dedup keys oldest claim first (claims are appended as they are made), built from the
        # table on the first sweep after a start; the sweep pops expired keys off the front.
        self._claim_order: deque[tuple[str, Any]] | None = None
        self._claim_order_from = 0.0  # when the order was built from the table

    def on_product(self, change: ProductChange, *, only: str | None = None) -> list[Output]:
        """Record a product under its two keys (`product_route_keys`) and re-emit the orphans
        held under them; `only` limits it to one key (the worker handles each key in the
        partition it is routed to, where the reviews looking it up are)."""
        keys: tuple[str, ...] = product_route_keys(change)
        if only is not None:
            keys = tuple(key for key in keys if key == only)
        row = change.product
        if change.deleted:
            # Reviews keep the name they were joined with; new ones for this id become orphans.
            for key in keys:
                if key in self.products:
                    del self.products[key]
            return []
        info = ProductInfo(row.id, row.sku, row.name, row.brand, row.category)
        for key in keys:
            self.products[key] = info.to_json()
        outputs: list[Output] = []
        now = self.clock.now()
        for key in keys:
            index = self.orphans.get(key)
            if not index:
                continue
            del self.orphans[key]
            for review_id in index:
                held = self.orphans.get(f"{key}|{review_id}")
                if held is None:
                    continue
                del self.orphans[f"{key}|{review_id}"]
                record = ReviewEnriched.model_validate(held["enriched"])
                joined = with_product(record, info, text=held["text"])
                outputs.append(_enriched(joined.model_copy(update={"enriched_at": now})))
                _counter(metrics.REVIEWS_ENRICHED, "rejoin").inc()
        return outputs

    def product_under(self, key: str) -> ProductInfo | None:
        """The product stored under `key` (`id:…` or `sku:…`), if known here."""
        data = self.products.get(key)
        return None if data is None else ProductInfo.from_json(data)

    def product_for(self, review: ReviewInput) -> ProductInfo | None:
        """The review's product as this flow's `products` knows it (by id, else by SKU)."""
        data = None
        if review.product_id is not None:
            data = self.products.get(f"id:{review.product_id}")
        if data is None and review.product_sku:
            data = self.products.get(f"sku:{review.product_sku}")
        return None if data is None else ProductInfo.from_json(data)

    def on_review(self, review: ReviewInput, *, product: ProductInfo | None = None) -> list[Output]:
        """Enrich, dedup, hold as an orphan, alert. `product`: the review's product when the
        caller found it already (a review routed on from its product id's partition);
        otherwise it is looked up here."""
        if product is None:
            product = self.product_for(review)
        record = self.enricher.enrich(review, product, now=self.clock.now())
        _counter(metrics.REVIEWS_ENRICHED, record.op.value).inc()
        if record.op is ReviewOp.DELETE:
            return [_enriched(record)]
        now_s = self.clock.now().timestamp()
        claimed = self._live_claim(self.dedup.get(record.dedup_key), now_s)
        if claimed is not None and claimed != record.review_id and _crawled(claimed, record):
            log.debug("review %s duplicates %s; not enriched again", record.review_id, claimed)
            return []
        if claimed is None:
            self.dedup[record.dedup_key] = {"id": record.review_id, "at": now_s}
            if self._claim_order is not None:
                self._claim_order.append((record.dedup_key, now_s))
        for kind, count in record.pii_counts.items():
            _counter(metrics.PII_REDACTIONS, kind).inc(count)
        if product is None:
            self._hold(review, record)
        outputs = [_enriched(record)]
        negative = alerts.negative_review_alert(record, self.alert_config, now=self.clock.now())
        if negative is not None:
            outputs.append(_alert(negative))
            subject = alerts.review_subject(record)
            state = self.bursts.get(subject) or alerts.new_burst_state()
            burst = alerts.observe_negative(state, record, self.alert_config, now=self.clock.now())
            self.bursts[subject] = state
            if burst is not None:
                outputs.append(_alert(burst))
        return outputs

    def _live_claim(self, claim: Any, now_s: float) -> str | None:
        """The review id holding a dedup claim, or None when there is none or it expired.
        Claims written before expiry existed are bare ids: live until the sweep dates them."""
        if claim is None:
            return None
        at = _claim_time(claim)
        if at is None:
            return str(claim)
        return None if now_s - at >= self.dedup_ttl_s else str(claim["id"])

    def forget_claim_order(self) -> None:
        """The table's keys changed wholesale (a rebalance moved partitions): rebuild the
        sweep's order from the table on the next sweep, so recovered claims expire too."""
        self._claim_order = None

    def sweep_dedup(self, *, limit: int) -> int:
        """Delete up to `limit` expired dedup claims, oldest first; the number deleted.

        Runs inside a batch (the agent calls it before writing tables back), so deletions go
        to the changelog like any write and compaction drops them: the table and its
        recovery time stay bounded by the claims of the last `dedup_ttl`."""
        order = self._claim_order
        if order is None:
            # Keys only: each claim's time is read when it reaches the front. Reading every
            # claim here (a table lookup each) stalled the first batch after a start for ~2 s
            # with 500,000 claims, and for as long again per million.
            order = self._claim_order = deque((key, _UNREAD) for key in list(self.dedup))
            self._claim_order_from = self.clock.now().timestamp()
        now_s = self.clock.now().timestamp()
        removed = 0
        while order and removed < limit:
            key, at = order[0]
            claim = self.dedup.get(key)
            claimed_at = None if claim is None else _claim_time(claim)
            if claim is None or (
                claimed_at != at
                if at is not _UNREAD
                else claimed_at is not None and claimed_at > self._claim_order_from
            ):
                order.popleft()  # deleted since, or claimed again (a later entry tracks it)
                continue
            at = claimed_at
            if at is None:  # an undated claim: dated now, expires one TTL from now
                self.dedup[key] = {"id": claim, "at": now_s}
                order.popleft()
                order.append((key, now_s))
                continue
            if now_s - at < self.dedup_ttl_s:
                break  # every claim behind this one is younger
            order.popleft()
            del self.dedup[key]
            removed += 1
        metrics.DEDUP_EXPIRED.inc(removed)
        metrics.DEDUP_CLAIMS.set(len(order))
        return removed

    def _hold(self, review: ReviewInput, record: ReviewEnriched) -> None:
        """Keep an orphan for re-emission: one entry per review (`<product key>|<review id>`)
        plus a bounded id index per product, so a write never copies other reviews."""
        key = f"id:{review.product_id}" if review.product_id is not None else None
        if key is None and review.product_sku:
            key = f"sku:{review.product_sku}"
        if key is None:
            return  # a crawled review naming no product of ours: nothing to join, ever
        index: list[str] = list(self.orphans.get(key) or [])
        if review.review_id not in index:
            if len(index) >= self.orphan_max:
                log.debug("orphan reviews for %s over %d; not held", key, self.orphan_max)
                return
            index.append(review.review_id)
            self.orphans[key] = index
        self.orphans[f"{key}|{review.review_id}"] = {
            "enriched": record.model_dump(mode="json"),
            "text": normalized_text(review.body),
        }


def review_route_key(review: ReviewInput) -> str:
    """The key a review is repartitioned by, the one its product is looked up and its
    orphan held under: `id:<product id>` (app reviews), else `sku:<SKU>` (crawled ones)."""
    if review.product_id is not None:
        return f"id:{review.product_id}"
    return f"sku:{review.product_sku or ''}"


def product_route_keys(change: ProductChange) -> tuple[str, str]:
    """A product's two keys: it is routed to (and stored in) the partition of each."""
    return f"id:{change.product.id}", f"sku:{change.product.sku}"


class TickFlow:
    """Ticks → per-symbol candle state → closed candles, forming candles (throttled),
    price-move and stale-feed alerts."""

    def __init__(
        self,
        *,
        candle_config: candles.CandleConfig,
        market_config: alerts.MarketAlertConfig,
        states: MutableMapping[str, Any],
        stale: alerts.StaleFeedWatch,
        clock: Clock,
        live_interval_s: float = 0.25,
    ) -> None:
        self.candle_config = candle_config
        self.market_config = market_config
        self.states = states
        self.stale = stale
        self.clock = clock
        # Forming candles: at most one per symbol per interval. A symbol the throttle holds
        # back waits in `_live_pending` until `due_live_candles` builds its candle from the
        # state as it is then (the newest), so the last tick of a burst is never lost and a
        # held-back tick costs no build or encode (at 5,000 trades/s those were ~15 % of the
        # worker's CPU). In memory only: a restart sends afresh.
        self.live_interval_s = live_interval_s
        self._live_sent_at: dict[str, float] = {}
        self._live_pending: set[str] = set()

    def on_tick(self, tick: Tick, *, position: Position) -> tuple[list[Output], Rejected | None]:
        state = self.states.get(tick.symbol) or candles.new_state()
        now = self.clock.now()
        result = candles.apply_tick(
            state, tick, position=position, config=self.candle_config, now=now
        )
        if result.verdict is candles.Verdict.REDELIVERED:
            return [], None
        outputs: list[Output] = []
        for candle in result.closed:
            _counter(metrics.CANDLES_EMITTED, candle.symbol).inc()
            outputs.append(
                Output(topics.MARKET_CANDLES.name, candle.symbol.encode(), encode_event(candle))
            )
            move = alerts.observe_candle(state, candle, self.market_config, now=now)
            if move is not None:
                outputs.append(_alert(move))
        self.states[tick.symbol] = state  # also records the consumed position
        if result.verdict is not candles.Verdict.ACCEPTED:
            return outputs, Rejected(result.verdict.value, result.detail)
        monotonic = self.clock.monotonic()
        self.stale.seen(tick.symbol, event_time=tick.event_time, monotonic=monotonic)
        live = self._live(state, tick.symbol, now=now, monotonic=monotonic)
        if live is not None:
            outputs.append(live)
        return outputs, None

    def _live(
        self, state: dict[str, Any], symbol: str, *, now: Any, monotonic: float
    ) -> Output | None:
        sent_at = self._live_sent_at.get(symbol)
        if sent_at is not None and monotonic - sent_at < self.live_interval_s:
            self._live_pending.add(symbol)
            return None
        self._live_pending.discard(symbol)
        return self._live_output(state, symbol, now=now, monotonic=monotonic)

    def _live_output(
        self, state: dict[str, Any] | None, symbol: str, *, now: Any, monotonic: float
    ) -> Output | None:
        candle = candles.forming(state, symbol, now=now) if state else None
        if candle is None:
            return None
        self._live_sent_at[symbol] = monotonic
        return Output(topics.MARKET_CANDLES_LIVE.name, symbol.encode(), encode_event(candle))

    @property
    def live_check_interval_s(self) -> float:
        """How often the timer sends the held-back forming candles (`due_live_candles`). A
        fraction of the throttle interval: checked only once per interval, a candle held at
        the start of one could wait until the check after its end, twice the interval
        (bench/dashboard/e2e.py: the cdc_processor hop's p99 carried that ~0.5 s)."""
        return self.live_interval_s / LIVE_CHECKS_PER_INTERVAL

    def due_live_candles(self) -> list[Output]:
        """Forming candles of the symbols the throttle held back whose interval has passed,
        built from their current state."""
        monotonic = self.clock.monotonic()
        now = self.clock.now()
        due = [
            symbol
            for symbol in self._live_pending
            if monotonic - self._live_sent_at.get(symbol, 0.0) >= self.live_interval_s
        ]
        outputs: list[Output] = []
        for symbol in due:
            self._live_pending.discard(symbol)
            out = self._live_output(self.states.get(symbol), symbol, now=now, monotonic=monotonic)
            if out is not None:
                outputs.append(out)
        return outputs

    def stale_alerts(self) -> list[Output]:
        return [
            _alert(alert)
            for alert in self.stale.due(monotonic=self.clock.monotonic(), now=self.clock.now())
        ]


_UNREAD = object()  # a claim-order entry whose claim time is read when it is swept


def _claim_time(claim: Any) -> float | None:
    """When a dedup claim was made (epoch seconds); None for an undated (bare id) claim."""
    return None if isinstance(claim, str) else float(claim["at"])


def _crawled(claimed_id: str, record: ReviewEnriched) -> bool:
    """Text dedup only merges when a crawl is involved (the app's own review seen on a partner
    site, or one review on two sites). Two app reviews are two rows in PostgreSQL, two
    customers' words, and both must reach the archive; the API's Idempotency-Key already
    stops a retried POST from writing a second row."""
    return claimed_id.startswith(CRAWL_ID_PREFIX) or record.review_id.startswith(CRAWL_ID_PREFIX)
