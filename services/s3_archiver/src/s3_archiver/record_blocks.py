"""Fetched records as columns: one `RecordBlock` per partition and poll instead of one
aiokafka `ConsumerRecord` per record.

The archiver needs four things of a record (offset, timestamp, key, value) and handles a
poll's records as whole columns: the values go to Arrow in one read, the offsets and times to
the window buffers as lists. aiokafka builds each record through a generator, a deserializer
check, a headers tuple and a ten-field dataclass: ~1.9 µs a record on the consume loop (the
bench's bare loop), of which the archiver used almost nothing. `install` makes one consumer's
`getmany` return a `RecordBlock` per partition, decoded batch by batch from aiokafka's own
Cython record batches straight into lists: ~0.5 µs a record, CRC check included (20,000
candles, isolated; bench/s3_archiver for the whole archiver). The CRC-32C of each batch is
computed with google-crc32c's hardware instructions (~23 GB/s) on the fetch response's bytes
instead of aiokafka's table-driven loop (0.25 µs a record): for that, `install` has
aiokafka's fetcher keep each response's bytes beside its `MemoryRecords`
(`_MemoryRecordsWithBytes`, a subclass; aiokafka's own reading of it is unchanged).

Everything aiokafka's fetcher does per batch is kept (`PartitionRecords._unpack_records`,
aiokafka 0.14): the CRC check, read_committed filtering of aborted transactions, skipping
control batches and records below the fetch position, and the position update after each
take. Only per-record work moves. It reads private parts of aiokafka's fetcher, so `install`
checks that they look as expected and otherwise leaves the consumer alone (`getmany` then
returns lists, which `as_block` turns into blocks): slower, never wrong. A test compares
blocks with aiokafka's own records over a real broker, aborted transactions included.
"""

from __future__ import annotations

import collections
import logging
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import google_crc32c
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.errors import CorruptRecordException
from servicekit.tracing import header_traceparent

log = logging.getLogger(__name__)


class BlockRecord(NamedTuple):
    """One record of a block, for the paths that go record by record (the DLQ's source)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class RecordBlock:
    """One partition's records of one poll, in offset order, as columns."""

    topic: str
    partition: int
    offsets: list[int]
    timestamps: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    # (offset, traceparent) of the records that carried a valid `traceparent` header; None
    # unless tracing is on (servicekit.tracing), so the plain path allocates nothing for it.
    traces: list[tuple[int, str]] | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def extend(self, other: RecordBlock) -> None:
        self.offsets += other.offsets
        self.timestamps += other.timestamps
        self.keys += other.keys
        self.values += other.values
        if other.traces:
            self.traces = (self.traces or []) + other.traces

    def split_off(self, at: int) -> RecordBlock:
        """Cut this block to its first `at` records; the rest, as a new block."""
        rest = RecordBlock(
            self.topic,
            self.partition,
            self.offsets[at:],
            self.timestamps[at:],
            self.keys[at:],
            self.values[at:],
        )
        for column in (self.offsets, self.timestamps, self.keys, self.values):
            del column[at:]
        if self.traces:
            first_left = rest.offsets[0] if rest.offsets else 1 << 62
            rest.traces = [t for t in self.traces if t[0] >= first_left]
            self.traces = [t for t in self.traces if t[0] < first_left]
        return rest

    def records(self) -> list[BlockRecord]:
        topic, partition = self.topic, self.partition
        return [
            BlockRecord(topic, partition, o, t, k, v)
            for o, t, k, v in zip(
                self.offsets, self.timestamps, self.keys, self.values, strict=True
            )
        ]

    @classmethod
    def of(
        cls,
        tp: TopicPartition,
        records: Sequence[ConsumerRecord[bytes, bytes]],
        *,
        traces: bool = False,
    ) -> RecordBlock:
        return cls(
            tp.topic,
            tp.partition,
            [r.offset for r in records],
            [r.timestamp for r in records],
            [r.key for r in records],
            [r.value for r in records],
            _traces_of((r.offset, r.headers) for r in records) if traces else None,
        )


def _traces_of(records: Iterable[tuple[int, Any]]) -> list[tuple[int, str]]:
    out = []
    for offset, headers in records:
        if headers:
            traceparent = header_traceparent(headers)
            if traceparent is not None:
                out.append((offset, traceparent))
    return out


def as_block(
    tp: TopicPartition,
    records: RecordBlock | Sequence[ConsumerRecord[bytes, bytes]],
    *,
    traces: bool = False,
) -> RecordBlock:
    """`getmany`'s value for `tp` as a block, whether `install` took or not; `traces`: with
    the records' traceparents (tracing on)."""
    if isinstance(records, RecordBlock):
        return records
    return RecordBlock.of(tp, records, traces=traces)


def install(consumer: AIOKafkaConsumer, *, traces: bool = False) -> bool:
    """Make a started consumer's `getmany` return a `RecordBlock` per partition, with the
    records' traceparents when `traces` (tracing on). False (and a warning) when aiokafka's
    fetcher is not what this was written against."""
    fetcher: Any = getattr(consumer, "_fetcher", None)
    results = getattr(fetcher, "_records", None)
    if isinstance(results, _BlockResults):
        return True  # installed before
    if (
        not isinstance(results, collections.OrderedDict)
        or getattr(fetcher, "_key_deserializer", None) is not None
        or getattr(fetcher, "_value_deserializer", None) is not None
        or not all(
            hasattr(aiokafka_fetcher.FetchResult, name)
            for name in ("check_assignment", "has_more", "_update_position")
        )
        or not all(
            hasattr(aiokafka_fetcher.PartitionRecords, name)
            for name in ("_consume_aborted_up_to", "_contains_abort_marker")
        )
        or not all(hasattr(aiokafka_fetcher, name) for name in ("READ_COMMITTED", "MemoryRecords"))
    ):
        log.warning("aiokafka's fetcher is not as expected: records are fetched one by one")
        return False
    fetcher._records = _BlockResults(results, traces=traces)
    _keep_response_bytes()
    log.info("fetched records are read as blocks, a list per column")
    return True


def _keep_response_bytes() -> None:
    """Have aiokafka's fetcher keep each fetch response's bytes (for the CRC), unless the
    CRC library has no compiled implementation here (then aiokafka's check is faster)."""
    current = aiokafka_fetcher.MemoryRecords
    if google_crc32c.implementation != "c" or issubclass(current, _MemoryRecordsWithBytes):
        return
    aiokafka_fetcher.MemoryRecords = type(  # a subclass of whichever class aiokafka uses
        "MemoryRecords", (_MemoryRecordsWithBytes, current), {}
    )


class _MemoryRecordsWithBytes:
    """Mixed into aiokafka's MemoryRecords: the same records, and the bytes they came from."""

    def __init__(self, bytes_data: bytes) -> None:
        super().__init__(bytes_data)  # type: ignore[call-arg]  # the MemoryRecords after it
        self.data = bytes_data


class _BlockResults(collections.OrderedDict):  # type: ignore[type-arg]
    """The fetcher's table of fetched results; each result it stores takes blocks."""

    def __init__(self, existing: collections.OrderedDict[Any, Any], *, traces: bool) -> None:
        super().__init__()
        self.traces = traces
        for tp, result in existing.items():
            self[tp] = result

    def __setitem__(self, tp: Any, result: Any) -> None:
        # The fetcher tells results from errors by exact type: the result stays a
        # FetchResult and only its `getall` is replaced. No reference cycle may hold a
        # fetch response (up to 16 MiB) until the cyclic collector runs: the new `getall`
        # reaches its result through a weak reference.
        if type(result) is aiokafka_fetcher.FetchResult:
            result.getall = _Getall(weakref.ref(result), self.traces)
        super().__setitem__(tp, result)


class _Getall:
    __slots__ = ("result", "traces")

    def __init__(self, result: weakref.ref[Any], traces: bool) -> None:
        self.result = result
        self.traces = traces

    def __call__(self, max_records: int | None = None) -> RecordBlock | list[Any]:
        return _take(self.result(), max_records, self.traces)


def _take(result: Any, max_records: int | None, traces: bool = False) -> RecordBlock | list[Any]:
    """`FetchResult.getall`, returning a block."""
    tp: TopicPartition = result._topic_partition
    if not result.check_assignment(tp) or not result.has_more():
        return []
    cursor: _Cursor | None = result.__dict__.get("_pulse_cursor")
    if cursor is None:
        cursor = result._pulse_cursor = _Cursor(tp, result._partition_records, traces=traces)
    try:
        block = cursor.take(max_records)
    except CorruptRecordException:
        # As aiokafka does: the position has not moved, so the partition is fetched again
        # from the first record not returned (a transient corruption heals, a lasting one
        # raises again); the batches after the corrupt one are never returned from here.
        result._partition_records = None
        raise
    result._update_position()
    if cursor.done:
        result._partition_records = None
    return block if len(block) else []


class _Cursor:
    """Walks one fetch response's record batches (aiokafka's `PartitionRecords`), keeping
    the part of a batch that a `max_records` limit left for the next take."""

    def __init__(self, tp: TopicPartition, source: Any, *, traces: bool = False) -> None:
        self.tp = tp
        self.source = source
        self._traces = traces
        # aiokafka's own record generator, never started here, and its PartitionRecords
        # hold each other: drop it so the response is freed as soon as it is consumed.
        source._records_iterator = None
        self.done = False
        self._batches = source._records  # MemoryRecords
        self._read_committed = source._isolation_level == aiokafka_fetcher.READ_COMMITTED
        self._left: RecordBlock | None = None  # decoded, not yet taken
        # The response's bytes, when kept, and where the next batch starts in them.
        self._data: bytes | None = getattr(self._batches, "data", None)
        self._at = 0
        self._left_next_offset = 0  # the fetch position once `_left` is taken

    def take(self, max_records: int | None) -> RecordBlock:
        limit = max_records if max_records is not None else 1 << 62
        out = RecordBlock(
            self.tp.topic, self.tp.partition, [], [], [], [], [] if self._traces else None
        )
        if self._left is not None:
            self._move_left(out, limit)
        while len(out) < limit and self._left is None:
            batch = self._next_data_batch()
            if batch is None:
                self.done = True
                break
            if self._traces:
                self._decode_traced(batch, out)
            else:
                self._decode(batch, out)
            if len(out) > limit:
                self._keep_left(out, limit, batch.next_offset)
            else:
                self.source.next_fetch_offset = batch.next_offset
        return out

    def _next_data_batch(self) -> Any:
        """The next batch that holds records to return (aiokafka's rules), or None."""
        source, batches = self.source, self._batches
        while batches.has_next():
            batch = batches.next_batch()
            if source._check_crcs and not self._crc_ok(batch):
                raise CorruptRecordException(f"Invalid CRC - {self.tp}")
            if self._read_committed and batch.producer_id is not None:
                source._consume_aborted_up_to(batch.base_offset)
                if batch.is_control_batch and source._contains_abort_marker(batch):
                    source._aborted_producers.discard(batch.producer_id)
                if batch.is_transactional and batch.producer_id in source._aborted_producers:
                    source.next_fetch_offset = batch.next_offset
                    continue
            if batch.is_control_batch:
                source.next_fetch_offset = batch.next_offset
                continue
            return batch
        return None

    def _crc_ok(self, batch: Any) -> bool:
        """The batch's CRC-32C, over its bytes from `attributes` to its end (KIP-98), with
        hardware instructions; aiokafka's own check where the bytes are not kept or the
        batch is not of format v2. Batches are walked in step with `MemoryRecords`: every
        batch and legacy message set starts with its offset (8 bytes) and its length after
        those 12 bytes."""
        data, at = self._data, self._at
        if data is None:
            return bool(batch.validate_crc())
        end = at + 12 + int.from_bytes(data[at + 8 : at + 12], "big")
        self._at = end
        if batch.magic != 2 or int.from_bytes(data[at : at + 8], "big") != batch.base_offset:
            self._data = None  # not a v2 batch where expected: aiokafka checks from here on
            return bool(batch.validate_crc())
        return bool(google_crc32c.value(data[at + 21 : end]) == batch.crc)

    def _decode(self, batch: Any, out: RecordBlock) -> None:
        offsets, timestamps, keys, values = out.offsets, out.timestamps, out.keys, out.values
        add_offset, add_time = offsets.append, timestamps.append
        add_key, add_value = keys.append, values.append
        position = self.source.next_fetch_offset
        for record in batch:
            offset = record.offset
            if offset < position:
                continue  # before the fetch position (a compressed set, a seek): aiokafka skips
            add_offset(offset)
            add_time(record.timestamp)
            add_key(record.key)
            add_value(record.value)

    def _decode_traced(self, batch: Any, out: RecordBlock) -> None:
        """`_decode`, also noting each record's traceparent header (tracing on only)."""
        assert out.traces is not None
        add_trace = out.traces.append
        position = self.source.next_fetch_offset
        for record in batch:
            offset = record.offset
            if offset < position:
                continue
            out.offsets.append(offset)
            out.timestamps.append(record.timestamp)
            out.keys.append(record.key)
            out.values.append(record.value)
            headers = record.headers
            if headers:
                traceparent = header_traceparent(headers)
                if traceparent is not None:
                    add_trace((offset, traceparent))

    def _keep_left(self, out: RecordBlock, limit: int, next_offset: int) -> None:
        """Cut `out` to `limit` records; the rest of the batch waits for the next take."""
        self._left = out.split_off(limit)
        self._left_next_offset = next_offset
        self.source.next_fetch_offset = out.offsets[-1] + 1

    def _move_left(self, out: RecordBlock, limit: int) -> None:
        left = self._left
        assert left is not None
        self._left = None
        out.extend(left)
        if len(out) > limit:
            self._keep_left(out, limit, self._left_next_offset)
        else:
            self.source.next_fetch_offset = self._left_next_offset
