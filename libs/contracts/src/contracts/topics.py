"""Topic names and partition counts: the one place they are spelled.

Debezium's topics are named `<topic.prefix>.<schema>.<table>` with `topic.prefix=pulse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Producer(StrEnum):
    DEBEZIUM = "debezium"
    CRAWLER = "crawler"
    CDC_PROCESSOR = "cdc_processor"
    MARKET_FEEDS = "market_feeds"
    QUALITY = "quality"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic's name, partition count, who writes it and what its key means."""

    name: str
    partitions: int
    producer: Producer
    key: str
    retention_ms: int | None = None  # None: broker default
    compacted: bool = False


DEBEZIUM_PREFIX = "pulse"
PARTITIONS = 3  # the unit of parallelism: a consumer group never has more busy members

PRODUCTS_CDC = TopicSpec(f"{DEBEZIUM_PREFIX}.public.products", PARTITIONS, Producer.DEBEZIUM, "id")
REVIEWS_CDC = TopicSpec(f"{DEBEZIUM_PREFIX}.public.reviews", PARTITIONS, Producer.DEBEZIUM, "id")
MARKET_TICKS_CDC = TopicSpec(
    # message.key.columns keys ticks by symbol, so one symbol's ticks stay in order.
    f"{DEBEZIUM_PREFIX}.public.market_ticks",
    PARTITIONS,
    Producer.DEBEZIUM,
    "symbol",
)
REVIEWS_CRAWLED = TopicSpec(
    "reviews.crawled.v1", PARTITIONS, Producer.CRAWLER, "source:external_id"
)
MARKET_QUOTES = TopicSpec("market.quotes.v1", PARTITIONS, Producer.CRAWLER, "symbol")
MARKET_TRADES = TopicSpec("market.trades.v1", PARTITIONS, Producer.MARKET_FEEDS, "symbol")
MARKET_FEED_GAPS = TopicSpec(
    "market.feed_gaps.v1", PARTITIONS, Producer.MARKET_FEEDS, "venue:symbol"
)
REVIEWS_ENRICHED = TopicSpec("reviews.enriched.v1", PARTITIONS, Producer.CDC_PROCESSOR, "review id")
MARKET_CANDLES = TopicSpec("market.candles.v1", PARTITIONS, Producer.CDC_PROCESSOR, "symbol")
# Forming candles: only the recent past matters (the dashboard rebuilds from the last hour).
MARKET_CANDLES_LIVE = TopicSpec(
    "market.candles.live.v1",
    PARTITIONS,
    Producer.CDC_PROCESSOR,
    "symbol",
    retention_ms=24 * 3600 * 1000,
)
ALERTS = TopicSpec("alerts.v1", PARTITIONS, Producer.CDC_PROCESSOR, "alert subject")
# Data-quality check results, one record per check per run; archived as `dq_results`.
QUALITY_RESULTS = TopicSpec("quality.results.v1", PARTITIONS, Producer.QUALITY, "dataset")
DLQ = TopicSpec(
    "pulse.dlq.v1", PARTITIONS, Producer.ANY, "original key", retention_ms=30 * 24 * 3600 * 1000
)

ALL: tuple[TopicSpec, ...] = (
    PRODUCTS_CDC,
    REVIEWS_CDC,
    MARKET_TICKS_CDC,
    REVIEWS_CRAWLED,
    MARKET_QUOTES,
    MARKET_TRADES,
    MARKET_FEED_GAPS,
    REVIEWS_ENRICHED,
    MARKET_CANDLES,
    MARKET_CANDLES_LIVE,
    ALERTS,
    QUALITY_RESULTS,
    DLQ,
)

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in ALL}
