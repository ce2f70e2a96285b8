"""Debezium on the local stack: a table created after the connector started is captured, with
create/update/delete envelopes, a tombstone after the delete, and decimals as strings."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from contracts.debezium import ChangeEvent, Op, decode_change_event, decode_change_key

pytestmark = pytest.mark.integration

EVENT_TIMEOUT_S = 60
# Commit-to-Kafka latency budget for one row change on an idle stack (poll.interval.ms=50).
LATENCY_BUDGET_S = 5.0


async def _next_record(consumer: AIOKafkaConsumer, deadline: float) -> Any:
    while time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500, max_records=1)
        for records in batch.values():
            if records:
                return records[0]
    raise AssertionError(f"no change event within {EVENT_TIMEOUT_S} s")


async def test_table_created_after_connector_start_is_captured(stack_env: dict[str, str]) -> None:
    table = f"cdc_test_{uuid.uuid4().hex[:12]}"  # matches table.include.list public\.cdc_test_.*
    topic = f"pulse.public.{table}"
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]

    # The topic exists before the first event so the consumer is assigned it from the start.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"it-{table}", auto_offset_reset="earliest"
    )
    await consumer.start()
    conn = await asyncpg.connect(stack_env["DATABASE_URL"])
    try:
        await conn.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, "
            "price numeric(12, 2) NOT NULL, seen_at timestamptz NOT NULL DEFAULT now())"
        )
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        await conn.execute(f"INSERT INTO {table} (id, name, price) VALUES (1, 'kettle', 12.50)")
        created = await _next_record(consumer, deadline)

        committed_at = time.monotonic()
        await conn.execute(f"UPDATE {table} SET price = 13.75 WHERE id = 1")
        updated = await _next_record(consumer, deadline)
        update_latency_s = time.monotonic() - committed_at

        await conn.execute(f"DELETE FROM {table} WHERE id = 1")
        deleted = await _next_record(consumer, deadline)
        tombstone = await _next_record(consumer, deadline)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()
        await consumer.stop()

    # Raw envelopes: plain JSON (schemas.enable=false), decimals as strings.
    raw_created = orjson.loads(created.value)
    assert set(raw_created) >= {"before", "after", "source", "op", "ts_ms"}
    assert raw_created["op"] == "c"
    assert raw_created["after"]["price"] == "12.50"
    assert raw_created["after"]["seen_at"].endswith("Z")  # timestamptz: ISO-8601 UTC string
    assert raw_created["source"]["table"] == table
    assert orjson.loads(updated.value)["after"]["price"] == "13.75"

    # The same records through the contracts envelope model.
    events = [decode_change_event(r.value) for r in (created, updated, deleted)]
    assert all(isinstance(e, ChangeEvent) for e in events)
    c, u, d = events
    assert c and u and d
    assert (c.op, u.op, d.op) == (Op.CREATE, Op.UPDATE, Op.DELETE)
    assert u.before is None  # REPLICA IDENTITY DEFAULT
    assert d.before is not None and d.before["id"] == 1
    assert d.after is None

    # The delete is followed by a tombstone with the same key, in the same partition.
    assert tombstone.value is None
    assert decode_change_event(tombstone.value) is None
    assert tombstone.key == deleted.key and tombstone.partition == deleted.partition
    assert decode_change_key(deleted.key) == {"id": 1}
    assert created.partition == updated.partition == deleted.partition

    print(f"UPDATE commit -> Kafka consumer: {update_latency_s * 1000:.0f} ms")
    assert update_latency_s < LATENCY_BUDGET_S, (
        f"UPDATE took {update_latency_s:.2f} s to reach Kafka"
    )


async def test_connector_and_task_are_running(stack_env: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=stack_env["KAFKA_CONNECT_URL"], timeout=10) as client:
        status = (await client.get("/connectors/pulse-postgres/status")).json()
        config = (await client.get("/connectors/pulse-postgres/config")).json()
    assert status["connector"]["state"] == "RUNNING"
    assert [t["state"] for t in status["tasks"]] == ["RUNNING"]
    # secrets stay out of Connect's REST API and config topic
    assert config["database.password"].startswith("${env:")
