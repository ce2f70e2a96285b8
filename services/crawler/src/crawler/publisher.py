"""Where crawled events go: Kafka (idempotent producer), or memory for tests of the core.

`publish_all` returns only when every record is acknowledged (acks=all): the crawler moves a
watermark after that, never before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel
from servicekit import metrics
from servicekit.kafka import encode_event, encode_key, make_producer
from servicekit.settings import KafkaSettings


class Publisher(Protocol):
    async def publish_all(self, topic: str, records: Sequence[tuple[str, BaseModel]]) -> None: ...


class KafkaPublisher:
    def __init__(self, kafka: KafkaSettings, *, client_id: str = "crawler") -> None:
        self._producer: AIOKafkaProducer = make_producer(kafka, client_id=client_id)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish_all(self, topic: str, records: Sequence[tuple[str, BaseModel]]) -> None:
        futures = [
            await self._producer.send(topic, value=encode_event(event), key=encode_key(key))
            for key, event in records
        ]
        await asyncio.gather(*futures)
        if records:
            metrics.EVENTS_OUT.labels(service="crawler", topic=topic).inc(len(records))


class MemoryPublisher:
    """Keeps what was published, per topic, in order."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[str, BaseModel]]] = {}

    async def publish_all(self, topic: str, records: Sequence[tuple[str, BaseModel]]) -> None:
        self.records.setdefault(topic, []).extend(records)
