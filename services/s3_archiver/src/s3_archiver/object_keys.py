"""Deterministic object names: the event-time partition path and the offset-derived key.

A key is a pure function of (root, dataset, event-time hour, topic, Kafka partition, start
offset), so rewriting a buffer after a crash lands on the same name instead of a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

OFFSET_DIGITS = 19  # enough for any non-negative int64 offset


@dataclass(frozen=True, slots=True, order=True)
class PartitionPath:
    """An event-time hour: the Hive partition `dt=YYYY-MM-DD/hour=HH`."""

    dt: str
    hour: int

    @property
    def path(self) -> str:
        return f"dt={self.dt}/hour={self.hour:02d}"


def partition_path(event_time: datetime) -> PartitionPath:
    """The hour an event belongs to, in UTC. Raises ValueError on a naive datetime."""
    if event_time.tzinfo is None or event_time.utcoffset() is None:
        raise ValueError("event time must be timezone-aware")
    return hour_path(int(event_time.timestamp() // 3600))


@lru_cache(maxsize=4096)
def hour_path(epoch_hour: int) -> PartitionPath:
    """The partition path of an hour counted from the epoch (UTC)."""
    # Cached per hour: formatting dates is a visible share of the per-record cost.
    utc = datetime.fromtimestamp(epoch_hour * 3600, tz=UTC)
    return PartitionPath(dt=f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}", hour=utc.hour)


def dataset_prefix(root: str, dataset: str) -> str:
    """`<root>/<dataset>/`, the folder Athena and DuckDB point at (root defaults to `archive`)."""
    return f"{root.strip('/')}/{dataset}/"


def object_key(
    *, root: str, dataset: str, path: PartitionPath, topic: str, partition: int, start_offset: int
) -> str:
    """`<root>/<dataset>/dt=…/hour=…/<topic>+<partition>+<startOffset:019d>.parquet`."""
    if start_offset < 0 or partition < 0:
        raise ValueError("offsets and partitions are non-negative")
    return (
        f"{dataset_prefix(root, dataset)}{path.path}/"
        f"{topic}+{partition}+{start_offset:0{OFFSET_DIGITS}d}.parquet"
    )
