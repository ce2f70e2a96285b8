"""RecordBlock's record view and the fallback when aiokafka's fetcher is not there (the
comparison with aiokafka's own records runs on the real broker: tests/integration)."""

from __future__ import annotations

import logging

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from s3_archiver import record_blocks
from s3_archiver.record_blocks import BlockRecord

TP = TopicPartition("t", 2)


def test_a_list_of_records_becomes_the_same_block() -> None:
    records = [
        ConsumerRecord("t", 2, 10 + i, 1_000 + i, 0, b"k%d" % i, b"v%d" % i, None, 2, 2, ())
        for i in range(3)
    ]
    block = record_blocks.as_block(TP, records)
    assert (block.topic, block.partition, len(block)) == ("t", 2, 3)
    assert block.records() == [
        BlockRecord("t", 2, r.offset, r.timestamp, r.key, r.value) for r in records
    ]
    assert record_blocks.as_block(TP, block) is block


async def test_install_leaves_a_consumer_without_a_fetcher_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")  # never started: no fetcher
    with caplog.at_level(logging.WARNING):
        assert not record_blocks.install(consumer)
    assert "fetched one by one" in caplog.text
