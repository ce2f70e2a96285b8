"""The consumer thread's rewind against the stack's Kafka: what a rebalance dropped is fetched
again, and nothing is sought forward."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from cdc_processor.app import create_app
from cdc_processor.settings import CdcSettings
from servicekit.settings import KafkaSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_rewind_fetches_dropped_records_again_and_never_seeks_forward(
    migrated: dict[str, str], new_topic: Any
) -> None:
    bootstrap = migrated["KAFKA_BOOTSTRAP_SERVERS"]
    topic = await new_topic(f"cdc-it-rewind-{uuid.uuid4().hex[:8]}", 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(10):
            await producer.send_and_wait(topic, str(n).encode())
    finally:
        await producer.stop()

    app = create_app(
        CdcSettings(app_id=f"cdc-it-rewind-{uuid.uuid4().hex[:8]}", http_port=0),
        KafkaSettings(kafka_bootstrap_servers=bootstrap),
    ).app
    app.loop = asyncio.get_running_loop()
    thread = app.consumer._new_consumer_thread()
    kafka = thread._consumer = thread._create_worker_consumer(app.transport)
    await kafka.start()
    try:
        tp = TopicPartition(topic, 0)
        kafka.assign([tp])
        await kafka.seek_to_beginning(tp)
        fetched: list[int] = []
        while len(fetched) < 10:
            batch = await kafka.getmany(tp, timeout_ms=1000)
            fetched += [m.offset for m in batch.get(tp, [])]
        assert fetched == list(range(10)) and await kafka.position(tp) == 10

        # offsets 6.. were dropped from a stream queue after they were fetched
        assert await thread._rewind(tp, 6) == 10
        again = await kafka.getmany(tp, timeout_ms=5000)
        assert [m.offset for m in again[tp]] == [6, 7, 8, 9]

        kafka.seek(tp, 3)  # a rebalance already went back to the committed offset
        assert await thread._rewind(tp, 6) is None
        assert await kafka.position(tp) == 3
        assert await thread._rewind(TopicPartition(topic, 1), 0) is None  # not assigned
    finally:
        await kafka.stop()
