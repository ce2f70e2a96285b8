"""Read-only looks at Kafka: consumer lag per group, the newest change event's commit time,
and counting a run's records on a topic.

Scans assign partitions directly (no consumer group, nothing committed) and read from the
beginning, or from the first record written at or after a given time, up to the end offsets
seen when the scan starts, with a deadline. The clients come from servicekit, so the `KAFKA_*`
security settings apply here as in every service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
from aiokafka import TopicPartition
from contracts import topics
from servicekit.kafka import make_admin, make_consumer
from servicekit.settings import KafkaSettings


def _kafka(bootstrap: str) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap_servers=bootstrap)


async def group_lag(bootstrap: str, group: str, *, timeout_s: float = 5.0) -> int | None:
    """Sum over partitions of end offset minus committed offset; None if unknown."""
    kafka = _kafka(bootstrap)
    admin = make_admin(kafka, client_id="cli-lag", request_timeout_ms=3000)
    consumer = make_consumer(kafka, group_id=None, client_id="cli-lag", request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(consumer.start(), timeout_s)
        committed = await asyncio.wait_for(admin.list_consumer_group_offsets(group), timeout_s)
        if not committed:
            return None
        ends = await asyncio.wait_for(consumer.end_offsets(list(committed)), timeout_s)
        return sum(
            max(0, int(ends[tp]) - int(meta.offset))
            for tp, meta in committed.items()
            if meta.offset >= 0
        )
    except Exception:  # lag is a nicety in a status line: unknown, not a crash
        return None
    finally:
        await consumer.stop()
        await admin.close()


class ScanIncompleteError(Exception):
    """The deadline passed before every partition was read to its end; `found` is partial."""

    def __init__(self, topic: str, timeout_s: float, found: set[str]) -> None:
        super().__init__(f"{topic}: not read to its end within {timeout_s:g} s")
        self.found = found


async def scan(
    bootstrap: str,
    topic: str,
    keep: Callable[[bytes | None, bytes | None], str | None],
    *,
    since_ms: int | None = None,
    partitions: int | None = None,
    timeout_s: float = 30.0,
) -> set[str]:
    """Distinct `keep(key, value)` results (None: skip) over the topic as it is now, from the
    first record timestamped at or after `since_ms` (epoch ms) when given, so a run's check
    does not read a topic's whole history. `partitions`: for a topic outside the contract.
    Raises ScanIncompleteError at the deadline."""
    consumer = make_consumer(
        _kafka(bootstrap), group_id=None, client_id="cli-scan", max_poll_records=5000
    )
    found: set[str] = set()
    await consumer.start()
    try:
        # Partition counts are part of the contract: no metadata round trip needed.
        count = topics.BY_NAME[topic].partitions if partitions is None else partitions
        tps = [TopicPartition(topic, p) for p in range(count)]
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        starts: dict[TopicPartition, int] = {}
        if since_ms is not None and remaining:
            times = await consumer.offsets_for_times(dict.fromkeys(remaining, since_ms))
            starts = {tp: at.offset for tp, at in times.items() if at is not None}
            remaining = set(starts)  # the others have nothing written since then
        if not remaining:
            return found
        # Only the partitions to read are assigned, and each is paused once read to its end,
        # so nothing before `since_ms` or after the end seen above is fetched.
        consumer.assign(sorted(remaining, key=lambda tp: tp.partition))
        if starts:
            for tp, offset in starts.items():
                consumer.seek(tp, offset)
        else:
            await consumer.seek_to_beginning(*remaining)
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    result = keep(record.key, record.value)
                    if result is not None:
                        found.add(result)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
        if remaining:
            raise ScanIncompleteError(topic, timeout_s, found)
        return found
    finally:
        await consumer.stop()


CDC_TOPICS = (topics.PRODUCTS_CDC.name, topics.REVIEWS_CDC.name, topics.MARKET_TICKS_CDC.name)
# Records read back from each partition's end: a delete is followed by its tombstone.
_TAIL_RECORDS = 4


async def newest_change_ms(bootstrap: str, *, timeout_s: float = 5.0) -> int | None:
    """Commit time (Debezium `source.ts_ms`) of the newest change event on the CDC topics, read
    from the last few records of each partition; None if there is none or Kafka is down."""
    consumer = make_consumer(_kafka(bootstrap), group_id=None, client_id="cli-cdc-age")
    newest: int | None = None
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
        tps = [
            TopicPartition(name, p)
            for name in CDC_TOPICS
            for p in range(topics.BY_NAME[name].partitions)
        ]
        ends = {tp: int(end) for tp, end in (await consumer.end_offsets(tps)).items() if end > 0}
        if not ends:
            return None
        consumer.assign(list(ends))
        for tp, end in ends.items():
            consumer.seek(tp, max(0, end - _TAIL_RECORDS))
        remaining = set(ends)
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    ts_ms = _source_ts_ms(record.value)
                    if ts_ms is not None and (newest is None or ts_ms > newest):
                        newest = ts_ms
                    if record.offset >= ends[tp] - 1:
                        remaining.discard(tp)
        return newest
    except Exception:  # a status line's figure: unknown, not a crash
        return newest
    finally:
        await consumer.stop()


def _source_ts_ms(value: bytes | None) -> int | None:
    if not value:
        return None  # a tombstone
    try:
        ts_ms = orjson.loads(value)["source"]["ts_ms"]
    except (ValueError, TypeError, KeyError):
        return None
    return ts_ms if isinstance(ts_ms, int) else None
