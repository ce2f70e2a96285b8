"""RecordBlock's record view, the fallback when aiokafka's fetcher is not there, and the batch
decoding with both CRC checks (the comparison with aiokafka's own records runs on the real
broker: tests/integration)."""

from __future__ import annotations

import collections
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from contracts import datasets
from s3_archiver import record_blocks
from s3_archiver.archiver import Archiver, routes_for
from s3_archiver.object_store import MemoryObjectStore
from s3_archiver.record_blocks import BlockRecord, RecordBlock
from s3_archiver.settings import ArchiverSettings
from servicekit.clock import FakeClock

TP = TopicPartition("t", 2)


def test_fetched_responses_are_read_with_aiokafkas_own_class_outside_these_tests() -> None:
    # tests/conftest.py puts back whatever was there after every test; this fails if a test
    # left the class swapped all the same, and shows that the swap below is real.
    assert aiokafka_fetcher.MemoryRecords is MemoryRecords
    record_blocks._keep_response_bytes()
    assert issubclass(aiokafka_fetcher.MemoryRecords, record_blocks._MemoryRecordsWithBytes)


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


def _batches(values: list[bytes], per_batch: int) -> bytes:
    """Kafka v2 record batches (no compression) holding `values`, offsets from 0."""
    data = bytearray()
    for start in range(0, len(values), per_batch):
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 20,
        )
        for i, value in enumerate(values[start : start + per_batch]):
            builder.append(i, timestamp=1_000 + start + i, key=None, value=value, headers=[])
        batch = bytearray(builder.build())
        batch[0:8] = start.to_bytes(8, "big")  # base offset (outside the CRC)
        data += batch
    return bytes(data)


def _cursor(data: bytes, *, keep_bytes: bool) -> Any:
    if keep_bytes:
        record_blocks._keep_response_bytes()
    records = aiokafka_fetcher.MemoryRecords(data) if keep_bytes else MemoryRecords(data)
    source = aiokafka_fetcher.PartitionRecords(
        TP, records, [], 0, None, None, True, aiokafka_fetcher.READ_COMMITTED
    )
    return record_blocks._Cursor(TP, source)


@pytest.mark.parametrize("keep_bytes", [True, False], ids=["hardware crc", "aiokafka crc"])
def test_batches_decode_to_columns_and_a_corrupt_batch_is_refused(keep_bytes: bool) -> None:
    values = [b'{"n":%d}' % i for i in range(10)]
    data = _batches(values, per_batch=4)
    cursor = _cursor(data, keep_bytes=keep_bytes)
    assert (cursor._data is not None) == keep_bytes
    first = cursor.take(6)  # cuts the second batch: the rest comes with the next take
    rest = cursor.take(None)
    assert first.values + rest.values == values
    assert first.offsets + rest.offsets == list(range(10))
    assert rest.timestamps[0] == 1_006 and cursor.done

    corrupt = bytearray(data)
    corrupt[data.rindex(b'{"n":9}') + 5] ^= 0x01  # a value byte in the last batch
    cursor = _cursor(bytes(corrupt), keep_bytes=keep_bytes)
    assert cursor.take(4).values == values[:4]  # the first batch is intact
    with pytest.raises(CorruptRecordException, match="Invalid CRC"):
        cursor.take(None)


class _Result:
    """What `_take` uses of aiokafka's FetchResult, with the position it would set."""

    def __init__(self, source: Any) -> None:
        self._topic_partition = TP
        self._partition_records = source
        self.position = 0

    def check_assignment(self, tp: TopicPartition) -> bool:
        return True

    def has_more(self) -> bool:
        return self._partition_records is not None

    def _update_position(self) -> None:
        self.position = self._partition_records.next_fetch_offset


def test_after_a_corrupt_batch_nothing_more_is_taken_and_the_position_stays() -> None:
    values = [b'{"n":%d}' % i for i in range(12)]
    data = bytearray(_batches(values, per_batch=4))
    data[data.rindex(b'{"n":5}') + 5] ^= 0x01  # the second batch
    result = _Result(_cursor(bytes(data), keep_bytes=True).source)
    assert record_blocks._take(result, 4).values == values[:4]
    assert result.position == 4
    with pytest.raises(CorruptRecordException):
        record_blocks._take(result, None)
    assert result.position == 4  # fetched again from here: the third batch is not skipped to
    assert record_blocks._take(result, None) == []


class _PartitionState:
    """aiokafka's per-partition subscription state, as FetchResult reads and moves it."""

    paused = False
    position = 0

    def consumed_to(self, offset: int) -> None:
        self.position = offset


class _Assignment:
    active = True

    def __init__(self) -> None:
        self.state = _PartitionState()

    def state_value(self, tp: TopicPartition) -> _PartitionState:
        return self.state


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_archiver_reads_fetches_as_blocks_unless_the_setting_is_off(
    enabled: bool,
) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    # What start() gives a consumer, without a broker: aiokafka's table of fetched results.
    consumer._fetcher = SimpleNamespace(
        _records=collections.OrderedDict(), _key_deserializer=None, _value_deserializer=None
    )
    archiver = Archiver(
        settings=ArchiverSettings(topic_datasets={"t": "market_candles"}, record_blocks=enabled),
        consumer=consumer,
        producer=None,  # type: ignore[arg-type]  # not used here
        store=MemoryObjectStore(),
        routes=routes_for({"t": datasets.MARKET_CANDLES}),
        clock=FakeClock(),
    )
    archiver._read_blocks()

    # A fetch response lands as aiokafka's fetcher stores it, and the consumer takes it.
    values = [b'{"n":%d}' % i for i in range(10)]
    records = aiokafka_fetcher.MemoryRecords(_batches(values, per_batch=4))
    source = aiokafka_fetcher.PartitionRecords(
        TP, records, [], 0, None, None, True, aiokafka_fetcher.READ_COMMITTED
    )
    assignment = _Assignment()
    consumer._fetcher._records[TP] = aiokafka_fetcher.FetchResult(
        TP, assignment=assignment, partition_records=source, backoff=0
    )
    taken = consumer._fetcher._records[TP].getall()
    if enabled:
        assert isinstance(taken, RecordBlock)
        assert (taken.values, taken.offsets) == (values, list(range(10)))
    else:  # aiokafka's own records, one object each
        assert [type(r) for r in taken] == [ConsumerRecord] * 10
        assert [r.value for r in taken] == values
    assert assignment.state.position == 10  # the consumer's position moved past them either way
