"""KeyedBatcher on the real Kafka: records handed over a batch at a time (full batches and the
linger) reach the partition Kafka's default partitioner picks for their key, each key's records
in the order they were added, none lost or doubled, through the idempotent producer."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from market_feeds.publisher import KeyedBatcher
from servicekit.kafka import make_consumer, make_producer
from servicekit.settings import KafkaSettings

pytestmark = pytest.mark.integration


async def test_batches_keep_key_order_and_the_producers_partition(
    stack_env: dict[str, str], new_topic
) -> None:
    topic = await new_topic(f"it.feeds.batcher.{uuid.uuid4().hex[:8]}", 3)
    kafka = KafkaSettings(kafka_bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"])
    # Small batches: 2,000 records of ~60 bytes fill many, so the full-batch path runs often.
    producer = make_producer(kafka, client_id="it-batcher", linger_ms=5, max_batch_size=2048)
    await producer.start()
    shipped: list[list[object]] = []
    batcher = KeyedBatcher(
        producer, topic, linger_ms=5, on_shipped=lambda future, tags: shipped.append(tags)
    )
    batcher.start()
    keys = [f"SYM-{i}".encode() for i in range(7)]
    try:
        # The producer's own choice for each key, as a reference.
        reference = {
            key: (await (await producer.send(topic, b"reference", key))).partition for key in keys
        }

        async def feed(first: int) -> None:
            # Two feeds share one batcher (as the service's connectors share the sink): a
            # batch one of them opens while the other waits to hand a full one over is kept.
            for n in range(first, 2000, 2):
                key = keys[n % len(keys)]
                await batcher.add(key, f'{{"n":{n},"pad":"{"x" * 40}"}}'.encode(), n)

        await asyncio.gather(feed(0), feed(1))
        # The last, partly filled batches go by the linger alone (no flush, no stop).
        await asyncio.sleep(0.5)
        assert sum(len(tags) for tags in shipped) == 2000
        await producer.flush()
    finally:
        await batcher.stop()
        await producer.stop()
    assert len(shipped) > 3 * 3  # full batches, not one per partition
    assert sorted(n for tags in shipped for n in tags) == list(range(2000))

    consumer = make_consumer(kafka, topic, group_id=f"it-batcher-{uuid.uuid4().hex[:8]}",
                             client_id="it-batcher")  # fmt: skip
    await consumer.start()
    got: dict[bytes, list[int]] = defaultdict(list)
    try:
        seen = 0
        while seen < 2000 + len(keys):
            batch = await consumer.getmany(timeout_ms=2000)
            assert batch, f"only {seen} records arrived"
            for tp, records in batch.items():
                for record in records:
                    seen += 1
                    assert record.key is not None
                    assert tp.partition == reference[record.key]
                    if record.value != b"reference":
                        got[record.key].append(int(record.value.split(b",")[0][5:]))
    finally:
        await consumer.stop()
    for i, key in enumerate(keys):
        assert sorted(got[key]) == list(range(i, 2000, len(keys)))  # once each
        for parity in (0, 1):  # each feed's records of a key in the order it added them
            mine = [n for n in got[key] if n % 2 == parity]
            assert mine == sorted(mine)
