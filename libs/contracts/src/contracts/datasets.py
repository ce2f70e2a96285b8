"""Archive datasets: which topic feeds each, its schema, and the event-time field that
partitions it. The names are the SQL table names locally (DuckDB) and on Athena.
"""

from __future__ import annotations

from collections.abc import Sequence
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

# Each event once. A crash re-emits records it had already sent (same `event_id`, new offset),
# and the archiver may write a record twice (same offset): rows sharing an identity are one
# event. The identity is the `event_id`; rows archived before events carried one fall back
# to their coordinates. Plain SQL both DuckDB and Athena (Trino) run.
EVENT_ID_COLUMN = "event_id"
_COORDINATES_SQL = "CONCAT(_topic, ':', CAST(_partition AS VARCHAR), ':', CAST(_offset AS VARCHAR))"
ROW_IDENTITY_SQL = f"COALESCE({EVENT_ID_COLUMN}, {_COORDINATES_SQL})"
_RANK_COLUMN = "_copy_rank"


def once_sql(
    source: str, *, columns: Sequence[str] | None = None, has_event_id: bool = True
) -> str:
    """`SELECT` over `source` (a table name or a parenthesised relation) keeping one row per
    event: the latest by offset among rows sharing an identity.

    `columns`: the output columns (needed on Athena, which has no `* EXCLUDE`); None for
    DuckDB's `* EXCLUDE`. `has_event_id=False` for a relation without the column (a DuckDB
    glob over files all written before it), which then deduplicates on coordinates only.
    """
    identity = ROW_IDENTITY_SQL if has_event_id else _COORDINATES_SQL
    selected = ", ".join(f'"{c}"' for c in columns) if columns else f"* EXCLUDE ({_RANK_COLUMN})"
    # S608: the names come from contracts and the catalog, never from a request.
    return (
        f"SELECT {selected} FROM (SELECT *, ROW_NUMBER() OVER ("  # noqa: S608
        f"PARTITION BY {identity} ORDER BY _offset DESC, _partition DESC) AS {_RANK_COLUMN} "
        f"FROM {source}) AS copies WHERE {_RANK_COLUMN} = 1"
    )
