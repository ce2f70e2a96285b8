"""A review written through the API reaches `pulse.public.reviews` as c, u (with `before`,
thanks to REPLICA IDENTITY FULL) and d envelopes, then a tombstone."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from contracts import topics
from contracts.debezium import ChangeEvent, Op, decode_change_event

pytestmark = pytest.mark.integration

EVENT_TIMEOUT_S = 60


async def _records_for(consumer: AIOKafkaConsumer, review_id: str, count: int) -> list[Any]:
    found: list[Any] = []
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while len(found) < count and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            for record in records:
                if record.key and orjson.loads(record.key).get("id") == review_id:
                    found.append(record)
    assert len(found) >= count, f"only {len(found)} of {count} events for {review_id}"
    return found


async def test_review_insert_update_delete_arrive_as_c_u_d_envelopes(
    stack_env: dict[str, str], ingest_api: str, api_key: str, product: dict[str, Any]
) -> None:
    topic = topics.REVIEWS_CDC.name
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"],
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ] or [TopicPartition(topic, p) for p in range(topics.REVIEWS_CDC.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, before the writes
            await consumer.position(tp)

        async with httpx.AsyncClient(
            base_url=ingest_api, headers={"X-API-Key": api_key}, timeout=10
        ) as client:
            created = await client.post(
                "/v1/reviews",
                json={"product_sku": product["sku"], "rating": 4, "body": "good kettle"},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            assert created.status_code == 201
            rid = created.json()["id"]
            patched = await client.patch(f"/v1/reviews/{rid}", json={"rating": 1})
            assert patched.status_code == 200
            assert (await client.delete(f"/v1/reviews/{rid}")).status_code == 204

        records = await _records_for(consumer, rid, 4)
    finally:
        await consumer.stop()

    c, u, d, tombstone = records[:4]
    events = [decode_change_event(r.value) for r in (c, u, d)]
    assert all(isinstance(e, ChangeEvent) for e in events)
    ce, ue, de = events
    assert ce and ue and de
    assert (ce.op, ue.op, de.op) == (Op.CREATE, Op.UPDATE, Op.DELETE)
    assert ce.after and ce.after["rating"] == 4 and ce.after["product_id"] == product["id"]
    assert ce.after["source"] == "app" and ce.after["created_at"].endswith("Z")
    assert ue.before is not None and ue.before["rating"] == 4  # REPLICA IDENTITY FULL
    assert ue.after and ue.after["rating"] == 1
    assert de.before is not None and de.before["body"] == "good kettle" and de.after is None
    assert tombstone.value is None and tombstone.key == d.key
    assert c.partition == u.partition == d.partition == tombstone.partition
