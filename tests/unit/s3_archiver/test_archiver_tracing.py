"""Tracing in the archiver: an object's write span is the child of its first traced record and
links (capped) to the next ones; records' traceparents wait, bounded, until their object is
written; with tracing off nothing is collected."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from s3_archiver.object_store import MemoryObjectStore
from s3_archiver.record_blocks import RecordBlock, as_block
from s3_archiver.trace_links import PendingTraces
from servicekit import tracing
from test_archiver_loop import TOPIC, FakeConsumer, _archiver, run_until

TRACE = "00-{:032x}-{:016x}-01"


def tp(n: int) -> str:
    return TRACE.format(n + 1, n + 1)


def test_an_object_is_the_child_of_its_first_traced_record_and_links_the_next() -> None:
    pending = PendingTraces(max_links=2)
    pending.add("t", 0, [(3, tp(3)), (5, tp(5)), (6, tp(6)), (9, tp(9)), (20, tp(20))])
    traces = pending.for_object("t", 0, 4, 10)
    assert traces.parent == tp(5)
    assert traces.links == [tp(6), tp(9)]  # capped at max_links
    assert traces.traced_records == 3
    assert pending.for_object("t", 1, 0, 100).parent is None  # another partition


def test_pending_traces_are_bounded_and_forgotten_once_committed() -> None:
    pending = PendingTraces(max_pending=3)
    pending.add("t", 0, [(o, tp(o)) for o in range(5)])
    assert pending.dropped == 2
    pending.forget_before([(("t", 0), 2)])
    assert pending.for_object("t", 0, 0, 100).parent == tp(2)
    pending.drop_partition("t", 0)
    assert pending.for_object("t", 0, 0, 100).traced_records == 0


def test_a_block_split_and_extended_keeps_each_records_trace() -> None:
    block = RecordBlock("t", 0, [1, 2, 3, 4], [0] * 4, [None] * 4, [b""] * 4, [(2, "a"), (4, "b")])
    rest = block.split_off(2)
    assert block.traces == [(2, "a")] and rest.traces == [(4, "b")]
    block.extend(rest)
    assert block.traces == [(2, "a"), (4, "b")]


def test_aiokafkas_records_give_their_traceparent_headers_only_when_asked() -> None:
    def record(offset: int, headers: Any) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord("t", 0, offset, 0, 0, None, b"v", None, 1, 0, headers)

    records = [record(0, ()), record(1, [("traceparent", tp(1).encode())]), record(2, None)]
    assert as_block(TopicPartition("t", 0), records).traces is None
    assert as_block(TopicPartition("t", 0), records, traces=True).traces == [(1, tp(1))]


class TracedConsumer(FakeConsumer):
    """The loop's fake consumer, with a traceparent header on every record."""

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        polled = await super().getmany(timeout_ms=timeout_ms, max_records=max_records)
        return {
            tp_: [replace(r, headers=[("traceparent", tp(r.offset).encode())]) for r in records]
            for tp_, records in polled.items()
        }


async def test_each_object_write_is_one_span_ending_its_records_traces(trace_spans: Any) -> None:
    consumer = TracedConsumer([list(range(40))])
    store = MemoryObjectStore()
    archiver = _archiver(consumer, store, max_records=40)
    await run_until(archiver, lambda: bool(store.objects), polls=400)
    [span] = trace_spans.get_finished_spans()
    assert span.name == "archive write market_candles"
    assert tracing.format_traceparent(span)[3:35] == tp(0)[3:35]  # record 0's trace
    assert f"{span.parent.span_id:016x}" == tp(0)[36:52]
    assert [f"{link.context.trace_id:032x}" for link in span.links] == [
        tp(o)[3:35] for o in range(1, 33)
    ]  # the next 32 records, linked; the other 7 counted
    assert span.attributes["pulse.trace.traced_records"] == 40
    assert span.attributes["pulse.archive.object_key"] == next(iter(store.objects))
    assert (
        archiver.traces is not None and archiver.traces.for_object(TOPIC, 0, 0, 99).parent is None
    )


async def test_with_tracing_off_the_archiver_collects_no_traces() -> None:
    archiver = _archiver(TracedConsumer([]), MemoryObjectStore())
    assert archiver.traces is None
