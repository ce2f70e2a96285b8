"""Archive datasets: which topic feeds each, its schema, and the event-time field that
partitions it. The names are the SQL table names locally (DuckDB) and on Athena.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts import topics
from contracts.events import (
    AlertRaised,
    CandleClosed,
    DataQualityResult,
    Event,
    FeedGap,
    QuotePolled,
    ReviewEnriched,
    TradeExecuted,
)


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    topic: topics.TopicSpec
    model: type[Event]
    event_time_field: str

    @property
    def prefix(self) -> str:
        """Object-key prefix below the bucket: `archive/<dataset>/`."""
        return f"archive/{self.name}/"


REVIEWS_ENRICHED = Dataset(
    "reviews_enriched", topics.REVIEWS_ENRICHED, ReviewEnriched, "event_time"
)
MARKET_CANDLES = Dataset("market_candles", topics.MARKET_CANDLES, CandleClosed, "event_time")
ALERTS = Dataset("alerts", topics.ALERTS, AlertRaised, "event_time")
# The raw market data: exchange trades, polled quotes and the gaps a feed reported.
MARKET_TRADES = Dataset("market_trades", topics.MARKET_TRADES, TradeExecuted, "event_time")
MARKET_QUOTES = Dataset("market_quotes", topics.MARKET_QUOTES, QuotePolled, "event_time")
MARKET_FEED_GAPS = Dataset("market_feed_gaps", topics.MARKET_FEED_GAPS, FeedGap, "event_time")
DQ_RESULTS = Dataset("dq_results", topics.QUALITY_RESULTS, DataQualityResult, "event_time")

ALL: tuple[Dataset, ...] = (
    REVIEWS_ENRICHED,
    MARKET_CANDLES,
    ALERTS,
    MARKET_TRADES,
    MARKET_QUOTES,
    MARKET_FEED_GAPS,
    DQ_RESULTS,
)
BY_TOPIC: dict[str, Dataset] = {d.topic.name: d for d in ALL}
BY_NAME: dict[str, Dataset] = {d.name: d for d in ALL}

# Columns the archiver adds to every row, after the event's own fields.
ARCHIVE_COLUMNS: tuple[str, ...] = ("_topic", "_partition", "_offset", "_archived_at")
PARTITION_KEYS: tuple[str, ...] = ("dt", "hour")
