"""Read-only looks at Kafka: consumer lag per group, and counting a run's records on a topic.

Scans assign partitions directly (no consumer group, nothing committed) and read from the
beginning up to the end offsets seen when the scan starts, with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from contracts import topics


async def group_lag(bootstrap: str, group: str, *, timeout_s: float = 5.0) -> int | None:
    """Sum over partitions of end offset minus committed offset; None if unknown."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=3000)
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


async def scan(
    bootstrap: str,
    topic: str,
    keep: Callable[[bytes | None, bytes | None], str | None],
    *,
    timeout_s: float = 30.0,
) -> set[str]:
    """Distinct `keep(key, value)` results (None: skip) over the topic as it is now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=5000,
    )
    found: set[str] = set()
    await consumer.start()
    try:
        # Partition counts are part of the contract: no metadata round trip needed.
        tps = [TopicPartition(topic, p) for p in range(topics.BY_NAME[topic].partitions)]
        if not tps:
            return found
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    result = keep(record.key, record.value)
                    if result is not None:
                        found.add(result)
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return found
    finally:
        await consumer.stop()
