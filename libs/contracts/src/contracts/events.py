"""Event schemas for every topic Pulse's services write.

Events are past-tense nouns. Decimals travel as strings, times as ISO-8601 UTC.
Adding an optional field is a compatible change; removing or retyping one needs a new topic
version (`.v2`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.rows import AssetClass
from contracts.types import ExactDecimal, ExactRating, UtcDatetime


class Event(BaseModel):
    """Base of every event: immutable, unknown fields ignored so producers can add fields.

    Every event carries a deterministic `event_id` (`contracts.identity`): the same source
    record gives the same id, so a record re-emitted after a crash is recognisably the same
    event. It is optional in the schema only because records written before it lack it.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- crawler → reviews.crawled.v1, market.quotes.v1 -------------------------------------


class ReviewCrawled(Event):
    """A review found on a third-party site. Key: `source:external_id`."""

    source: str  # the configured site name
    external_id: str  # from the page, or a stable content hash
    url: str
    product_sku: str | None = None  # our SKU, when the page maps to one
    product_ref: str | None = None  # the gtin/mpn/sku the page itself states
    rating: Annotated[float, Field(ge=1.0, le=5.0)] | None = None  # normalized to 1–5
    # The same rating exact, and what the page stated (value on its own worst…best scale).
    # Optional: records written before them lack them; `rating` stays for older consumers.
    rating_exact: ExactRating | None = None
    rating_source_value: ExactDecimal | None = None
    rating_source_worst: ExactDecimal | None = None
    rating_source_best: ExactDecimal | None = None
    title: str | None = None
    body: str
    author_name: str | None = None
    published_at: UtcDatetime | None = None
    language: str | None = None
    crawled_at: UtcDatetime
    event_id: str | None = None  # contracts.identity; absent from records written before it

    @property
    def key(self) -> str:
        return f"{self.source}:{self.external_id}"


class QuotePolled(Event):
    """A quote read from a polled feed. Key: symbol."""

    symbol: str
    asset_class: AssetClass
    price: ExactDecimal
    size: ExactDecimal
    event_time: UtcDatetime
    source: str
    polled_at: UtcDatetime
    event_id: str | None = None  # contracts.identity; absent from records written before it


# --- market_feeds → market.trades.v1, market.feed_gaps.v1 --------------------------------


class TradeSide(StrEnum):
    """The taker's side, as the venue reports it; `unknown` when it does not."""

    BUY = "buy"
    SELL = "sell"
    UNKNOWN = "unknown"


class TradeExecuted(Event):
    """One trade printed by an exchange, as its feed reported it. Key: symbol (Pulse's name).

    `event_id` is `venue:venue_symbol:trade_id`: the same trade read twice (a reconnect replay)
    carries the same id, so consumers and the archive's readers can deduplicate on it.
    """

    event_id: str
    venue: str  # the connector: coinbase, binance, kraken, alpaca…
    symbol: str  # Pulse's symbol (e.g. BTC-USD), from the connector's symbol map
    venue_symbol: str  # as on the wire (BTCUSDT, BTC/USD, BTC-USD)
    asset_class: AssetClass
    trade_id: str  # the exchange's trade id, as a string
    price: ExactDecimal  # from the string on the wire, never through a float
    size: ExactDecimal
    side: TradeSide
    event_time: UtcDatetime  # the exchange's trade time
    received_at: UtcDatetime  # when the connector read the frame
    sequence: int | None = None  # the feed's message sequence number, where it has one


class FeedGap(Event):
    """Messages a numbered feed skipped (or a reconnect may have missed). Key: `venue:symbol`.

    `first_missing`..`last_missing` are the sequence numbers that never arrived; the trades
    they carried are lost to the stream unless fetched from the exchange's REST history.
    """

    gap_id: str  # venue:venue_symbol:first_missing
    venue: str
    symbol: str
    venue_symbol: str
    first_missing: int
    last_missing: int
    missing_count: int
    reason: str  # sequence_skip | reconnect
    event_time: UtcDatetime  # the exchange time of the message after the gap
    detected_at: UtcDatetime
    event_id: str | None = None  # = gap_id; absent from records written before it


# --- cdc_processor → reviews.enriched.v1 ------------------------------------------------


class ReviewOp(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


class SentimentLabel(StrEnum):
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"


class ReviewEnriched(Event):
    """A scrubbed, scored, product-joined review. Key: review_id.

    `op=delete` records carry the id and times only: the archive keeps them so that a
    latest-state query can hide the review.
    """

    review_id: str  # the app's UUID, or `crawl:<source>:<external_id>`
    op: ReviewOp
    source: str  # "app" or "crawl:<site>"
    dedup_key: str  # equal for the same review seen twice (retry, app and crawl)
    product_id: int | None = None
    product_sku: str | None = None
    product_name: str | None = None
    product_brand: str | None = None
    product_category: str | None = None
    product_known: bool = False
    rating: Annotated[int, Field(ge=1, le=5)] | None = None  # whole stars, for views needing them
    # The exact normalized rating (1–5) and the source's own value and scale: an app review's
    # 4 is 4 on 1–5; a crawled 1.8 on 0–10 is 1.72. Absent from records written before them
    # (and rating_exact from old crawled records is their float rating, scale unknown).
    rating_exact: ExactRating | None = None
    rating_source_value: ExactDecimal | None = None
    rating_source_worst: ExactDecimal | None = None
    rating_source_best: ExactDecimal | None = None
    title: str | None = None  # scrubbed
    body: str | None = None  # scrubbed
    pii_counts: dict[str, int] = Field(default_factory=dict)
    author_pseudonym: str | None = None  # HMAC of the author's identity, never the identity
    language: str | None = None
    sentiment_score: float | None = None  # -1 … 1
    sentiment_label: SentimentLabel | None = None
    event_time: UtcDatetime  # when the review was written or changed at its source
    source_lsn: int | None = None  # PostgreSQL LSN of the change, for CDC reviews
    enriched_at: UtcDatetime
    event_id: str | None = None  # contracts.identity; absent from records written before it


# --- cdc_processor → market.candles.v1 --------------------------------------------------


class CandleClosed(Event):
    """A 1-minute OHLCV candle on event time, with indicators. Key: symbol."""

    symbol: str
    asset_class: AssetClass
    window_start: UtcDatetime
    window_end: UtcDatetime
    open: ExactDecimal
    high: ExactDecimal
    low: ExactDecimal
    close: ExactDecimal
    volume: ExactDecimal
    vwap: ExactDecimal
    trade_count: int
    sma: ExactDecimal | None = None  # simple moving average of closes over sma_period candles
    sma_period: int
    ema: ExactDecimal | None = None
    ema_period: int
    event_time: UtcDatetime  # = window_start: the archive partitions candles by it
    emitted_at: UtcDatetime
    event_id: str | None = None  # contracts.identity; absent from records written before it


# --- cdc_processor → market.candles.live.v1 --------------------------------------------


class CandleForming(Event):
    """The 1-minute candle still open, as it stands after the latest ticks. Key: symbol.

    Throttled per symbol (a few a second at most), so a consumer sees the price move without
    a record per tick; the same window is sent again and again until its `CandleClosed`
    arrives on market.candles.v1. Indicators (SMA/EMA) are only on closed candles.
    """

    symbol: str
    asset_class: AssetClass
    window_start: UtcDatetime
    window_end: UtcDatetime
    open: ExactDecimal
    high: ExactDecimal
    low: ExactDecimal
    close: ExactDecimal
    volume: ExactDecimal
    vwap: ExactDecimal
    trade_count: int
    event_time: UtcDatetime  # the latest tick's event time in this window
    emitted_at: UtcDatetime
    event_id: str | None = None  # contracts.identity; absent from records written before it


# --- cdc_processor → alerts.v1 ----------------------------------------------------------


class AlertKind(StrEnum):
    NEGATIVE_REVIEW = "negative_review"
    NEGATIVE_BURST = "negative_burst"
    PRICE_MOVE = "price_move"
    STALE_FEED = "stale_feed"
    DATA_QUALITY = "data_quality"  # a data-quality check failed (subject: dataset)
    REPORT = "report"  # a daily digest to deliver (subject: team; details: text, html_key)


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertRaised(Event):
    """An alert. Key: subject (a product SKU or id, or a symbol).

    `alert_id` is derived from kind, subject and the triggering window or record, so a replay
    raises the same id and consumers can deduplicate.
    """

    alert_id: str
    kind: AlertKind
    subject: str
    severity: AlertSeverity
    message: str
    event_time: UtcDatetime
    window_start: UtcDatetime | None = None
    window_end: UtcDatetime | None = None
    details: dict[str, str] = Field(default_factory=dict)
    raised_at: UtcDatetime
    event_id: str | None = None  # contracts.identity; absent from records written before it


# --- quality → quality.results.v1 (archived as dq_results) --------------------------------


class DataQualityResult(Event):
    """One check's outcome in one data-quality run. Key: dataset.

    `observed_value` is the check's measured number (a count, a percent, an age in hours);
    None when the check could not measure (an empty dataset's freshness).
    """

    run_id: str
    check: str  # the name from the checks file, unique per dataset
    check_type: str  # the library's check type: freshness, missing, invalid, duplicate…
    dataset: str
    partition: str | None = None  # a symbol, feed or hour the check is about; None: whole dataset
    observed_value: float | None = None
    threshold: str  # the declared threshold, as written
    passed: bool
    outcome: str  # passed, failed, not_evaluated
    detail: str | None = None
    event_time: UtcDatetime  # = run_time: the archive partitions results by it
    run_time: UtcDatetime
    event_id: str | None = None  # contracts.identity; absent from records written before it


# --- any consumer → pulse.dlq.v1 --------------------------------------------------------


class DeadLettered(Event):
    """A record a consumer could not process, with its original bytes. Key: original key."""

    reason: str  # short machine-readable cause: undecodable, schema_invalid, late, duplicate…
    detail: str  # human-readable explanation
    service: str
    source_topic: str
    source_partition: int
    source_offset: int
    original_key_b64: str | None = None
    original_value_b64: str | None = None
    failed_at: UtcDatetime
    event_id: str | None = None  # contracts.identity; absent from records written before it


EventName = Literal[
    "ReviewCrawled",
    "QuotePolled",
    "TradeExecuted",
    "FeedGap",
    "ReviewEnriched",
    "CandleClosed",
    "AlertRaised",
    "DataQualityResult",
    "DeadLettered",
]
