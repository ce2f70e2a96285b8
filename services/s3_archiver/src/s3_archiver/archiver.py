"""The consumer loop: poll → parse → buffer → seal → write → commit, with back-pressure and
shutdown. Parsing runs on a worker thread beside the next poll; writing runs in up to
`writer_concurrency` background writers beside the loop.

Order, per sealed buffer (written down because it is the whole point):
  1. write the object (its name comes from the buffer's first offset);
  2. then commit, per Kafka partition, the smallest first offset of any buffer still unwritten
     (or the position when none is).
A crash between 1 and 2 makes the restart rewrite the same object name with the same bytes:
a duplicate write, never a loss. While the store is unavailable nothing is written, nothing
is committed and fetching is paused, so memory stays bounded; it drains when the store returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from contracts.datasets import Dataset
from contracts.events import Event
from pydantic import ValidationError
from servicekit import metrics, tracing
from servicekit.clock import Clock
from servicekit.kafka import dead_letter

from s3_archiver import encoding, record_blocks
from s3_archiver.batch_validation import BatchValidator, ParsedBatch
from s3_archiver.object_keys import hour_path, object_key, partition_path
from s3_archiver.object_store import ObjectStore, StoreUnavailableError
from s3_archiver.parquet_schema import DatasetSchema, schema_for
from s3_archiver.record_blocks import BlockRecord, RecordBlock
from s3_archiver.settings import ArchiverSettings
from s3_archiver.trace_links import PendingTraces
from s3_archiver.window_buffer import Buffer, WindowBuffers

log = logging.getLogger(__name__)

SERVICE = "s3_archiver"
# Accounted bytes per record beyond its JSON value (the rule that seals by size, and the
# memory bound). The Arrow rows a buffer holds are smaller than value + 160 for every
# dataset (bench/s3_archiver measures the real footprint).
RECORD_OVERHEAD_BYTES = 160
CRASH_EXIT_CODE = 86
# Polls fetched and not yet buffered: one per parser thread, one more queued.
PARSERS = 2
PARSE_AHEAD = PARSERS + 1


@dataclass(frozen=True, slots=True)
class Route:
    """What the archiver does with one topic."""

    dataset: Dataset
    schema: DatasetSchema
    batch: BatchValidator | None  # None: this model is validated record by record


@dataclass(frozen=True, slots=True)
class _Parsing:
    """A fetched poll and its Arrow parse, running or done; `generation` is the revocation
    count when it was fetched."""

    batch: dict[TopicPartition, RecordBlock]
    task: asyncio.Future[dict[TopicPartition, ParsedBatch | None]]
    generation: int


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str


def routes_for(topic_datasets: dict[str, Dataset]) -> dict[str, Route]:
    routes = {}
    for topic, dataset in topic_datasets.items():
        schema = schema_for(dataset.model)
        batch = BatchValidator.for_model(dataset.model, schema, dataset.event_time_field)
        routes[topic] = Route(dataset, schema, batch)
    return routes


def _encode(schema: DatasetSchema, buffer: Buffer[pa.Table], archived_at: datetime) -> bytes:
    """One object's Parquet bytes (runs in a worker thread: Arrow releases the GIL)."""
    table = encoding.assemble(
        schema,
        buffer.chunks,
        topic=buffer.topic,
        partition=buffer.partition,
        archived_at=archived_at,
    )
    return encoding.to_parquet(table)


def decode(route: Route, value: bytes | None) -> Event | Rejected:
    """The typed event, or why it cannot be archived (for the DLQ)."""
    if not value:
        return Rejected("empty", "record has no value")
    try:
        return route.dataset.model.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        reason = "undecodable" if first.get("type") == "json_invalid" else "schema_invalid"
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return Rejected(reason, f"{loc}: {first.get('msg', 'invalid')}")


class _DropOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka lacks stubs
    def __init__(self, archiver: Archiver) -> None:
        self.archiver = archiver

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # The new owner replays from the committed offset and, names being deterministic,
        # rewrites the same objects: dropping is safe and keeps the rebalance fast.
        self.archiver._generation += 1  # a poll being parsed now must not be buffered
        for tp in revoked:
            self.archiver.buffers.drop_partition(tp.topic, tp.partition)
            if self.archiver.traces is not None:
                self.archiver.traces.drop_partition(tp.topic, tp.partition)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class Archiver:
    def __init__(
        self,
        *,
        settings: ArchiverSettings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        store: ObjectStore,
        routes: dict[str, Route],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.store = store
        self.routes = routes
        self.clock = clock
        # Buffers hold validated rows as Arrow tables (one chunk per batch and hour): columnar,
        # smaller than the JSON, and invisible to the cyclic GC.
        self.buffers: WindowBuffers[pa.Table] = WindowBuffers(settings.policy, clock)
        self._writers: set[asyncio.Task[None]] = set()
        self._claimed: set[int] = set()  # id() of the buffers a writer is writing
        self._generation = 0  # bumped by every revocation
        # Two parser threads: under a loaded node a process with more runnable threads gets
        # more CPU, and Arrow holds the GIL only briefly per poll (bench, load 3-6: 0.51-0.56x
        # with two vs 0.28-0.48x with one). Polls are still buffered in fetch order.
        self._parser = ThreadPoolExecutor(max_workers=PARSERS, thread_name_prefix="archiver-parse")
        self.listener = _DropOnRevoke(self)
        self.store_retry_at: float | None = None  # monotonic; set while the store is down
        self._store_failures = 0
        self._uploads = 0
        self._paused = False
        self._rng = random.Random()  # jitter, not security
        self.last_loop_mono = clock.monotonic()
        # Tracing on: records' traceparents wait here for the object that holds them, whose
        # write span ends their traces (trace_links). None when off: nothing is collected.
        self.traces: PendingTraces | None = PendingTraces() if tracing.ENABLED else None

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then write what is buffered within the grace period.

        A pipeline: the loop thread fetches (each poll decoded into a block of columns per
        partition, `record_blocks`) and buffers; parser threads parse each poll in Arrow as
        soon as it is fetched; background writers encode and upload. Up to `PARSE_AHEAD`
        polls are parsed or queued at once, so the loop keeps fetching while polls are
        parsed, and a parser starts on the next poll while the loop buffers the last one.
        Polls are buffered strictly in the order they were fetched.
        """
        self._read_blocks()
        fetch = self._poll()
        parsing: deque[_Parsing] = deque()
        try:
            while not stop.is_set():
                waits: set[asyncio.Future[Any]] = {parsing[0].task} if parsing else set()
                if len(parsing) < PARSE_AHEAD:
                    waits.add(fetch)
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if fetch.done() and len(parsing) < PARSE_AHEAD:
                    batch = fetch.result()
                    fetch = self._poll()
                    if batch:
                        parsing.append(self._start_parse(batch))
                while parsing and parsing[0].task.done():
                    await self._accept_parsed(parsing.popleft())
                self._tend()
                await self.commit()
                self._apply_backpressure()
                self._observe()
            while parsing:  # fetched before the stop: buffer them, the shutdown writes them
                await self._accept_parsed(parsing.popleft())
        finally:
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetch
            for left in parsing:  # only after an error: these records replay from the commit
                left.task.cancel()
            self._parser.shutdown(wait=False, cancel_futures=True)
        await self.shutdown()

    def _read_blocks(self) -> None:
        """Have the (started) consumer return record blocks, unless the settings say not to;
        either way `_fetch` hands the loop one block per partition."""
        if self.settings.record_blocks and isinstance(self.consumer, AIOKafkaConsumer):
            record_blocks.install(self.consumer, traces=self.traces is not None)

    def _tend(self) -> None:
        self.buffers.seal_idle()
        self._relieve_pressure()
        self.start_writing()

    def _poll(self) -> asyncio.Task[dict[TopicPartition, RecordBlock]]:
        return asyncio.create_task(self._fetch(), name="archiver-poll")

    async def _fetch(self) -> dict[TopicPartition, RecordBlock]:
        polled = await self.consumer.getmany(
            timeout_ms=self.settings.poll_timeout_ms,
            max_records=self.settings.poll_max_records,
        )
        traces = self.traces is not None
        return {
            tp: record_blocks.as_block(tp, records, traces=traces) for tp, records in polled.items()
        }

    def _start_parse(self, batch: dict[TopicPartition, RecordBlock]) -> _Parsing:
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(self._parser, self._parse_poll, batch)
        return _Parsing(batch=batch, task=task, generation=self._generation)

    async def _accept_parsed(self, parsing: _Parsing) -> None:
        parsed = await parsing.task  # done, except when draining at a stop
        if parsing.generation != self._generation:
            # A rebalance dropped the buffers meanwhile: these records replay from the commit.
            log.info("rebalance during a poll: %d partitions' records dropped", len(parsed))
            return
        for tp, block in parsing.batch.items():
            await self.accept_batch(block, parsed.get(tp))
            metrics.EVENTS_IN.labels(SERVICE, tp.topic).inc(len(block))

    def _parse_poll(
        self, batch: dict[TopicPartition, RecordBlock]
    ) -> dict[TopicPartition, ParsedBatch | None]:
        """Validate and convert each partition's records in Arrow (worker thread, no GIL)."""
        out: dict[TopicPartition, ParsedBatch | None] = {}
        by_topic: dict[str, list[TopicPartition]] = {}
        for tp in batch:
            by_topic.setdefault(tp.topic, []).append(tp)
        for topic, tps in by_topic.items():
            validator = self.routes[topic].batch
            if validator is None:
                out.update(dict.fromkeys(tps))
            else:
                values = [batch[tp].values for tp in tps]
                out.update(zip(tps, validator.parse_many(values), strict=True))
        return out

    async def accept_batch(self, block: RecordBlock, parsed: ParsedBatch | None) -> None:
        """Records of one partition, in offset order, with their Arrow rows when the whole
        batch passed Arrow validation (else record by record), buffered as one chunk per
        event-time hour."""
        if block.traces and self.traces is not None:
            self.traces.add(block.topic, block.partition, block.traces)
        if parsed is None:
            await self._accept_one_by_one(self.routes[block.topic], block.records())
            return
        one_hour = parsed.one_hour
        self.buffers.add_batch(
            topic=block.topic,
            partition=block.partition,
            offsets=block.offsets,
            timestamps_ms=block.timestamps,
            paths=(
                hour_path(one_hour)
                if one_hour is not None
                else [hour_path(h) for h in parsed.hours.to_pylist()]
            ),
            rows=encoding.with_offsets(parsed.table, block.offsets),
            sizes=[len(v or b"") + RECORD_OVERHEAD_BYTES for v in block.values],
        )

    async def _accept_one_by_one(self, route: Route, records: list[BlockRecord]) -> None:
        """The model path: pydantic per record; rejected records go to the DLQ first."""
        kept: list[tuple[BlockRecord, Event]] = []
        for record in records:
            result = decode(route, record.value)
            if isinstance(result, Rejected):
                await self._dead_letter(record, result)
            else:
                kept.append((record, result))
        try:
            table = encoding.event_table(route.schema, [e for _, e in kept])
        except (pa.ArrowException, ValueError):
            # Some value passed the model but does not fit its column: find it, DLQ it.
            table, kept = await self._drop_unfit(route, kept)
        last = records[-1]
        if not kept:
            self.buffers.skip(topic=last.topic, partition=last.partition, offset=last.offset)
            return
        field = route.dataset.event_time_field
        self.buffers.add_batch(
            topic=last.topic,
            partition=last.partition,
            offsets=(offsets := [r.offset for r, _ in kept]),
            timestamps_ms=[r.timestamp for r, _ in kept],
            paths=[partition_path(getattr(e, field)) for _, e in kept],
            rows=encoding.with_offsets(table, offsets),
            sizes=[len(r.value or b"") + RECORD_OVERHEAD_BYTES for r, _ in kept],
            position=last.offset + 1,
        )

    async def _drop_unfit(
        self, route: Route, kept: list[tuple[BlockRecord, Event]]
    ) -> tuple[pa.Table, list[tuple[BlockRecord, Event]]]:
        fit = []
        for record, event in kept:
            try:
                encoding.event_table(route.schema, [event])
            except (pa.ArrowException, ValueError) as exc:
                await self._dead_letter(record, Rejected("schema_invalid", f"archive: {exc}"))
            else:
                fit.append((record, event))
        return encoding.event_table(route.schema, [e for _, e in fit]), fit

    # --- 1. write (one object at a time, beside the consume loop) ---------------------------

    def start_writing(self) -> None:
        """Keep up to `writer_concurrency` writers going while sealed buffers wait and the
        store is not in back-off.

        Objects encode and upload while the loop keeps consuming, and the bytes of every
        buffer stay accounted (and bound fetching) until its object is in the store.
        """
        for writer in [w for w in self._writers if w.done()]:
            self._writers.discard(writer)
            writer.result()  # a bug in writing stops the archiver (it replays on restart)
        if self.store_retry_at is not None and self.clock.monotonic() < self.store_retry_at:
            return  # the store is down: keep everything, commit nothing
        waiting = sum(1 for b in self.buffers.ready() if id(b) not in self._claimed)
        while waiting > 0 and len(self._writers) < self.settings.writer_concurrency:
            self._writers.add(asyncio.create_task(self.write_ready(), name="archiver-writer"))
            waiting -= 1

    async def write_ready(self) -> None:
        """Write sealed buffers not claimed by another writer until none is left or the
        store fails."""
        while True:
            buffer = next((b for b in self.buffers.ready() if id(b) not in self._claimed), None)
            if buffer is None:
                return
            self._claimed.add(id(buffer))
            try:
                written = await self._write(buffer)
            finally:
                self._claimed.discard(id(buffer))
            if not written:
                return

    async def _write(self, buffer: Buffer[pa.Table]) -> bool:
        route = self.routes[buffer.topic]
        started_ns = time.time_ns()
        archived_at = datetime.fromtimestamp(buffer.last_timestamp_ms / 1000, tz=UTC)
        data = await asyncio.to_thread(_encode, route.schema, buffer, archived_at)
        key = object_key(
            root=self.settings.root_prefix,
            dataset=route.dataset.name,
            path=buffer.path,
            topic=buffer.topic,
            partition=buffer.partition,
            start_offset=buffer.start_offset,
        )
        try:
            etag = await self.store.put(key, data)
        except StoreUnavailableError as exc:
            self._store_failures += 1
            delay = self._rng.uniform(
                0, min(self.settings.s3_backoff_max_s, 0.5 * 2**self._store_failures)
            )
            self.store_retry_at = self.clock.monotonic() + delay
            log.warning("store unavailable, next try in %.1fs: %s", delay, exc)
            return False
        self.store_retry_at = None
        self._store_failures = 0
        self.buffers.mark_written(buffer)
        # Hand the freed object's Arrow memory back to the OS now: mimalloc otherwise keeps
        # it, and under a backlog the next buffers peak on top (bench peaks: 408-437 MB with
        # this, 421-473 MB without).
        pa.default_memory_pool().release_unused()
        metrics.ARCHIVE_RECORDS.labels(route.dataset.name).inc(buffer.count)
        metrics.ARCHIVE_BYTES.labels(route.dataset.name).inc(len(data))
        metrics.ARCHIVE_OBJECTS.labels(route.dataset.name).inc()
        if self.traces is not None:
            self._trace_write(buffer, key=key, dataset=route.dataset.name, started_ns=started_ns)
        log.info(
            "wrote %s (%d rows, %d bytes, offsets %d-%d, sealed by %s, etag %s)",
            key,
            buffer.count,
            len(data),
            buffer.start_offset,
            buffer.end_offset,
            buffer.seal_reason,
            etag,
        )
        self._uploads += 1
        self._maybe_crash("after_upload")
        return True

    def _trace_write(
        self, buffer: Buffer[pa.Table], *, key: str, dataset: str, started_ns: int
    ) -> None:
        """One span for the object just written (encode + upload): the child of its first
        traced record, linked to the next ones (capped; trace_links says why)."""
        assert self.traces is not None
        traces = self.traces.for_object(
            buffer.topic, buffer.partition, buffer.start_offset, buffer.end_offset
        )
        span = tracing.tracer().start_span(
            f"archive write {dataset}",
            context=tracing.context_of(traces.parent),
            links=tracing.links_to(traces.links),
            start_time=started_ns,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": buffer.topic,
                "messaging.destination.partition.id": str(buffer.partition),
                "pulse.archive.object_key": key,
                "pulse.archive.records": buffer.count,
                "pulse.archive.start_offset": buffer.start_offset,
                "pulse.archive.end_offset": buffer.end_offset,
                "pulse.trace.traced_records": traces.traced_records,
                "pulse.trace.links": len(traces.links),
            },
        )
        span.end()

    # --- 2. then commit ------------------------------------------------------------------

    async def commit(self) -> None:
        offsets = self.buffers.committable()
        if not offsets:
            return
        try:
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions: their new owner replays from the last commit.
            log.warning("commit of %s failed: %s", offsets, exc)
            return
        self.buffers.mark_committed(offsets)
        if self.traces is not None:
            self.traces.forget_before(offsets.items())
        self._maybe_crash("after_commit")

    # --- back-pressure, shutdown -----------------------------------------------------------

    def _relieve_pressure(self) -> None:
        """Above the memory bound, seal the largest open buffer so it can be written (once
        the sealed ones are: writing those frees memory without making more small files)."""
        if (
            self.buffers.buffered_bytes >= self.settings.max_buffered_bytes
            and not self.buffers.ready()
        ):
            self.buffers.seal_largest()

    def _apply_backpressure(self) -> None:
        store_down = self.store_retry_at is not None
        full = self.buffers.buffered_bytes >= self.settings.max_buffered_bytes
        assigned = list(self.consumer.assignment())
        if (store_down or full) and assigned:
            if not self._paused:
                log.warning("pausing fetch (store down=%s, buffers full=%s)", store_down, full)
            self.consumer.pause(*assigned)
            self._paused = True
        elif self._paused:
            log.info("resuming fetch")
            self.consumer.resume(*assigned)
            self._paused = False

    async def shutdown(self) -> None:
        """Seal and write everything within the grace period, then commit what was written."""
        self.buffers.seal_all()
        deadline = self.clock.monotonic() + self.settings.shutdown_grace_s
        while (left := deadline - self.clock.monotonic()) > 0:
            self.store_retry_at = None  # in shutdown, retry as fast as the store's own backoff
            self.start_writing()
            if not self._writers:
                break  # nothing left to write
            await asyncio.wait(self._writers, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            await self.commit()
        for writer in self._writers:
            writer.cancel()
        await asyncio.gather(*self._writers, return_exceptions=True)
        self._writers.clear()
        await self.commit()
        left_over = len(self.buffers.ready())
        if left_over:
            log.warning(
                "shutdown grace over with %d buffers unwritten: they will replay", left_over
            )
        else:
            log.info("shutdown: every buffer written and committed")

    def _observe(self) -> None:
        self.last_loop_mono = self.clock.monotonic()
        metrics.ARCHIVE_OPEN_BUFFERS.set(self.buffers.open_buffers)
        metrics.ARCHIVE_BUFFERED_BYTES.set(self.buffers.buffered_bytes)
        metrics.ARCHIVE_OLDEST_UNFLUSHED_AGE.set(self.buffers.oldest_unwritten_age_s())
        for (topic, partition), lag in self.buffers.commit_lag().items():
            metrics.COMMIT_LAG.labels(topic, str(partition)).set(lag)

    async def _dead_letter(self, record: BlockRecord, why: Rejected) -> None:
        key, value = dead_letter(
            record, service=SERVICE, reason=why.reason, detail=why.detail, now=self.clock.now()
        )
        # Awaited: the record's offset may be committed only once the DLQ holds it.
        await self.producer.send_and_wait(self.settings.dlq_topic, value=value, key=key)
        metrics.DLQ_RECORDS.labels(SERVICE, why.reason).inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s %s",
            record.topic,
            record.partition,
            record.offset,
            why.reason,
            why.detail,
        )

    def _maybe_crash(self, point: str) -> None:
        """TEST ONLY (ARCHIVER_TEST_CRASH_POINT): die like kill -9 at a chosen step."""
        if (
            self.settings.test_crash_point == point
            and self._uploads >= self.settings.test_crash_at_flush
        ):
            log.warning("ARCHIVER_TEST_CRASH_POINT=%s reached: exiting without cleanup", point)
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)

    def health(self) -> dict[str, Any]:
        return {
            "store_down": self.store_retry_at is not None,
            "paused": self._paused,
            "open_buffers": self.buffers.open_buffers,
            "buffered_bytes": self.buffers.buffered_bytes,
        }
