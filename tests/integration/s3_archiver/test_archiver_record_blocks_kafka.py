"""`record_blocks` against aiokafka's own records on the stack's broker: the same records, in
the same order, with the same positions, through aborted and committed transactions, a
`max_records` limit that cuts batches, and a seek into the middle of a batch."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from s3_archiver import record_blocks
from s3_archiver.record_blocks import RecordBlock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Row = tuple[int, int, bytes | None, bytes | None]


async def _produce(bootstrap: str, topic: str) -> int:
    """Plain batches, a committed, an aborted and another committed transaction, then plain
    again (with a record without key and one without value). Returns how many are visible."""
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    txn = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"it-{topic}")
    await plain.start()
    await txn.start()
    try:
        sent = [await plain.send(topic, value=b"p%d" % i, key=b"k%d" % i) for i in range(40)]
        for fut in sent:
            await fut
        for i, commit in enumerate((True, False, True)):
            await txn.begin_transaction()
            for j in range(9):
                await txn.send(topic, value=b"t%d-%d" % (i, j), key=b"tk%d" % j)
            await (txn.commit_transaction() if commit else txn.abort_transaction())
        sent = [await plain.send(topic, value=b"q%d" % i, key=None) for i in range(25)]
        sent.append(await plain.send(topic, value=None, key=b"tombstone"))
        for fut in sent:
            await fut
    finally:
        await txn.stop()
        await plain.stop()
    return 40 + 9 + 9 + 25 + 1


async def _read(
    bootstrap: str, topic: str, *, blocks: bool, max_records: int, seek_to: int | None = None
) -> tuple[list[Row], list[int], int]:
    """Every visible record as (offset, timestamp, key, value), the size of each poll, and
    the final position, reading with aiokafka's records or with blocks."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=512,  # several fetches, each ending mid-stream
    )
    await consumer.start()
    rows: list[Row] = []
    polls: list[int] = []
    try:
        consumer.assign([tp])
        if seek_to is not None:
            consumer.seek(tp, seek_to)
        if blocks:
            assert record_blocks.install(consumer)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            polled: dict[Any, Any] = await consumer.getmany(
                timeout_ms=1000, max_records=max_records
            )
            for got in polled.values():
                if blocks:
                    assert isinstance(got, RecordBlock)
                    rows += [(r.offset, r.timestamp, r.key, r.value) for r in got.records()]
                else:
                    rows += [(r.offset, r.timestamp, r.key, r.value) for r in got]
                polls.append(len(got))
        return rows, polls, await consumer.position(tp)
    finally:
        await consumer.stop()


@pytest.fixture
async def topic(stack_env: dict[str, str]) -> str:
    name = f"it.blocks.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"])
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def test_blocks_hold_what_aiokafka_returns(stack_env: dict[str, str], topic: str) -> None:
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    visible = await _produce(bootstrap, topic)
    for max_records in (7, 1000):
        expected, _, end = await _read(bootstrap, topic, blocks=False, max_records=max_records)
        rows, polls, position = await _read(bootstrap, topic, blocks=True, max_records=max_records)
        assert len(expected) == visible  # the aborted transaction is left out
        assert not any(v and v.startswith(b"t1-") for _, _, _, v in expected)
        assert rows == expected
        assert position == end
        assert max(polls) <= max_records
    assert min(polls) < 1000 and len(polls) > 1  # small fetches: several polls


async def test_a_seek_into_a_batch_starts_the_block_there(
    stack_env: dict[str, str], topic: str
) -> None:
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    await _produce(bootstrap, topic)
    expected, _, _ = await _read(bootstrap, topic, blocks=False, max_records=50, seek_to=13)
    rows, _, _ = await _read(bootstrap, topic, blocks=True, max_records=50, seek_to=13)
    assert rows[0][0] == 13
    assert rows == expected
