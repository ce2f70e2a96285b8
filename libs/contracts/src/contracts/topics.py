"""Topic names and partition counts: the one place they are spelled.

Debezium's topics are named `<topic.prefix>.<schema>.<table>` with `topic.prefix=pulse`.

Partition counts are the contract's (`DEFAULT_PARTITIONS`) unless the environment overrides
them, read here once at import so every service, the topic creators and the CLI agree:
`PULSE_TOPIC_PARTITIONS="*=6,pulse.dlq.v1=3"` — `*` sets every topic's count, a name sets
one topic's. The k8s overlays set it in the pulse-common ConfigMap (docs/scaling.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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


# A compacted topic's settings beyond `cleanup.policy=compact` (table changelogs). Kafka never
# compacts the active segment, and the broker default rolls one only at 1 GiB or 7 days: until
# then a changelog holds every write, and a worker joining or restarting (the memory store
# recovers from offset 0) reads the whole history instead of the live keys. A segment rolls
# within an hour; the cleaner takes a log once a tenth of it is overwritten keys (default a
# half). A tombstone lives `delete.retention.ms` after its segment is cleaned: a recovery that
# read a key's value must still find its tombstone when it gets there, so this is far longer
# than any recovery (seconds to minutes, docs/scaling.md), yet short enough that the deletes
# (the review dedup TTL sweep writes one per expired claim) do not pile up for the default day.
COMPACTION_SEGMENT_MS = 3_600_000
COMPACTION_MIN_DIRTY_RATIO = 0.1
COMPACTION_TOMBSTONE_RETENTION_MS = 3_600_000


def topic_configs(spec: TopicSpec) -> dict[str, str]:
    """The topic-level configs `spec` is created with (the rest: broker defaults)."""
    configs: dict[str, str] = {}
    if spec.retention_ms is not None:
        configs["retention.ms"] = str(spec.retention_ms)
    if spec.compacted:
        configs["cleanup.policy"] = "compact"
        configs["segment.ms"] = str(COMPACTION_SEGMENT_MS)
        configs["min.cleanable.dirty.ratio"] = str(COMPACTION_MIN_DIRTY_RATIO)
        configs["delete.retention.ms"] = str(COMPACTION_TOMBSTONE_RETENTION_MS)
    return configs


DEBEZIUM_PREFIX = "pulse"
DEFAULT_PARTITIONS = 3  # the contract's count where the environment does not override it
PARTITIONS_SETTING = "PULSE_TOPIC_PARTITIONS"
ALL_TOPICS = "*"


class PartitionSettingError(ValueError):
    """`PULSE_TOPIC_PARTITIONS` is malformed or names a topic the contracts do not have."""


def parse_partition_counts(text: str) -> dict[str, int]:
    """`name=count,…` (`*` for every topic) as a mapping; raises PartitionSettingError."""
    counts: dict[str, int] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, count = item.partition("=")
        name, count = name.strip(), count.strip()
        if not sep or not name or not count.isdigit() or int(count) < 1:
            raise PartitionSettingError(
                f"{PARTITIONS_SETTING}: {item.strip()!r} is not <topic>=<count ≥ 1>"
                f" (e.g. '*=6,pulse.dlq.v1=3')"
            )
        counts[name] = int(count)
    return counts


_COUNTS = parse_partition_counts(os.environ.get(PARTITIONS_SETTING, ""))
# The unit of parallelism: a consumer group never has more busy members than partitions.
# Faust's internal topics (changelogs, repartitions) take this count too.
PARTITIONS = _COUNTS.get(ALL_TOPICS, DEFAULT_PARTITIONS)


def _topic(
    name: str, producer: Producer, key: str, *, retention_ms: int | None = None
) -> TopicSpec:
    """A contract topic with its partition count: the environment's for it, else `PARTITIONS`."""
    count = _COUNTS.get(name, PARTITIONS)
    return TopicSpec(name, count, producer, key, retention_ms=retention_ms)


PRODUCTS_CDC = _topic(f"{DEBEZIUM_PREFIX}.public.products", Producer.DEBEZIUM, "id")
REVIEWS_CDC = _topic(f"{DEBEZIUM_PREFIX}.public.reviews", Producer.DEBEZIUM, "id")
MARKET_TICKS_CDC = _topic(
    # message.key.columns keys ticks by symbol, so one symbol's ticks stay in order.
    f"{DEBEZIUM_PREFIX}.public.market_ticks",
    Producer.DEBEZIUM,
    "symbol",
)
REVIEWS_CRAWLED = _topic("reviews.crawled.v1", Producer.CRAWLER, "source:external_id")
MARKET_QUOTES = _topic("market.quotes.v1", Producer.CRAWLER, "symbol")
MARKET_TRADES = _topic("market.trades.v1", Producer.MARKET_FEEDS, "symbol")
MARKET_FEED_GAPS = _topic("market.feed_gaps.v1", Producer.MARKET_FEEDS, "venue:symbol")
REVIEWS_ENRICHED = _topic("reviews.enriched.v1", Producer.CDC_PROCESSOR, "review id")
MARKET_CANDLES = _topic("market.candles.v1", Producer.CDC_PROCESSOR, "symbol")
# Forming candles: only the recent past matters (the dashboard rebuilds from the last hour).
MARKET_CANDLES_LIVE = _topic(
    "market.candles.live.v1", Producer.CDC_PROCESSOR, "symbol", retention_ms=24 * 3600 * 1000
)
ALERTS = _topic("alerts.v1", Producer.CDC_PROCESSOR, "alert subject")
# Data-quality check results, one record per check per run; archived as `dq_results`.
QUALITY_RESULTS = _topic("quality.results.v1", Producer.QUALITY, "dataset")
DLQ = _topic("pulse.dlq.v1", Producer.ANY, "original key", retention_ms=30 * 24 * 3600 * 1000)

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


def check_partition_counts(counts: Mapping[str, int]) -> None:
    """Raise PartitionSettingError for a name that is neither `*` nor a contract topic (a typo
    would otherwise silently leave that topic at the default)."""
    unknown = sorted(set(counts) - set(BY_NAME) - {ALL_TOPICS})
    if unknown:
        raise PartitionSettingError(
            f"{PARTITIONS_SETTING} names unknown topics {unknown}; known: {sorted(BY_NAME)}"
        )


check_partition_counts(_COUNTS)
