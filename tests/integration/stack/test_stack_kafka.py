"""Kafka broker of the local stack: produce, consume in a group, commit, resume after restart."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

pytestmark = pytest.mark.integration


async def _consume(
    consumer: AIOKafkaConsumer, count: int, timeout_ms: int = 15_000
) -> list[tuple[int, bytes]]:
    received: list[tuple[int, bytes]] = []
    while len(received) < count:
        batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=count - len(received))
        if not batch:
            break
        for records in batch.values():
            received.extend((r.offset, r.value) for r in records)
    return received


async def test_consumer_group_resumes_from_committed_offset(
    stack_env: dict[str, str], new_topic: Any
) -> None:
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    run = uuid.uuid4().hex[:12]
    group = f"it-stack-kafka-{run}"
    # one partition: offsets give a total order to assert on
    topic = await new_topic(f"it.stack.kafka.{run}", 1)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"message-{i}".encode(), key=b"k")
    finally:
        await producer.stop()

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    first = consumer()
    await first.start()
    try:
        head = await _consume(first, 4)
        assert [v for _, v in head] == [f"message-{i}".encode() for i in range(4)]
        await first.commit()
        # read one more without committing: it must be delivered again after the restart
        extra = await _consume(first, 1)
        assert extra == [(4, b"message-4")]
    finally:
        await first.stop()

    second = consumer()
    await second.start()
    try:
        committed = await second.committed(TopicPartition(topic, 0))
        assert committed == 4
        rest = await _consume(second, 6)
    finally:
        await second.stop()
    assert [offset for offset, _ in rest] == list(range(4, 10))
    assert [v for _, v in rest] == [f"message-{i}".encode() for i in range(4, 10)]
