"""The demo's topic scans on the stack's Kafka: a scan from a time reads only what was written
since, and a scan cut off by its deadline says so instead of passing for a short count."""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from contracts import topics
from pulse_cli import kafka_scan

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

HOUR_MS = 3_600_000


async def test_scan_since_reads_from_the_first_record_at_or_after_that_time(
    stack_env: dict[str, str], new_topic: Any
) -> None:
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    run = f"scan-it-{uuid.uuid4().hex[:8]}"
    topic = await new_topic(run, 1)
    scan = functools.partial(kafka_scan.scan, bootstrap, topic, partitions=1)
    now_ms = int(time.time() * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"old", key=run.encode(), timestamp_ms=now_ms - HOUR_MS)
        await producer.send_and_wait(topic, b"new", key=run.encode(), timestamp_ms=now_ms)
    finally:
        await producer.stop()

    def ours(key: bytes | None, value: bytes | None) -> str | None:
        return (value or b"").decode() if key == run.encode() else None

    assert await scan(ours) == {"old", "new"}
    assert await scan(ours, since_ms=now_ms - HOUR_MS // 2) == {"new"}
    # Nothing written at or after that time: nothing read, and no wait for the deadline.
    started = time.monotonic()
    assert await scan(ours, since_ms=now_ms + HOUR_MS, timeout_s=20) == set()
    assert time.monotonic() - started < 10


async def test_scan_since_leaves_partitions_with_nothing_since_unread(
    stack_env: dict[str, str], new_topic: Any
) -> None:
    """A partition whose records are all older than `since_ms` is not read from its start:
    its old records are not counted while another partition's new ones are read."""
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    run = f"scan-it-{uuid.uuid4().hex[:8]}"
    topic = await new_topic(run, 2)
    now_ms = int(time.time() * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition in (0, 1):
            await producer.send_and_wait(
                topic, f"old{partition}".encode(), partition=partition,
                timestamp_ms=now_ms - HOUR_MS,
            )  # fmt: skip
        await producer.send_and_wait(topic, b"new0", partition=0, timestamp_ms=now_ms)
    finally:
        await producer.stop()

    def value(_: bytes | None, v: bytes | None) -> str | None:
        return (v or b"").decode()

    scan = functools.partial(kafka_scan.scan, bootstrap, topic, value, partitions=2)
    assert await scan() == {"old0", "old1", "new0"}
    assert await scan(since_ms=now_ms - HOUR_MS // 2) == {"new0"}


async def test_a_scan_cut_off_by_its_deadline_raises_with_what_it_found(
    stack_env: dict[str, str],
) -> None:
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    topic = topics.REVIEWS_CRAWLED.name
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"x", key=b"scan-it-deadline")
    finally:
        await producer.stop()
    with pytest.raises(kafka_scan.ScanIncompleteError, match=topic) as caught:
        await kafka_scan.scan(bootstrap, topic, lambda k, v: None, timeout_s=0)
    assert caught.value.found == set()
