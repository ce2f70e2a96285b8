"""The consumer loop: decode → buffer → seal → write → commit, with back-pressure and shutdown.

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
import logging
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from contracts.datasets import Dataset
from contracts.events import Event
from pydantic import ValidationError
from servicekit import metrics
from servicekit.clock import Clock
from servicekit.kafka import dead_letter

from s3_archiver import encoding
from s3_archiver.batch_validation import BatchValidator
from s3_archiver.object_keys import hour_path, object_key, partition_path
from s3_archiver.object_store import ObjectStore, StoreUnavailableError
from s3_archiver.parquet_schema import DatasetSchema, schema_for
from s3_archiver.settings import ArchiverSettings
from s3_archiver.window_buffer import Buffer, WindowBuffers

log = logging.getLogger(__name__)

SERVICE = "s3_archiver"
# Accounted bytes per record beyond its value: the bytes object's header, list slots and the
# offset/timestamp ints kept beside it (bench/s3_archiver measures the real footprint).
RECORD_OVERHEAD_BYTES = 160
CRASH_EXIT_CODE = 86


@dataclass(frozen=True, slots=True)
class Route:
    """What the archiver does with one topic."""

    dataset: Dataset
    schema: DatasetSchema
    batch: BatchValidator | None  # None: this model is validated record by record


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
        for tp in revoked:
            self.archiver.buffers.drop_partition(tp.topic, tp.partition)

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
        # Buffers hold the validated records' raw JSON: ~8x smaller than parsed events, and
        # bytes objects are invisible to the cyclic GC.
        self.buffers: WindowBuffers[bytes] = WindowBuffers(settings.policy, clock)
        self.listener = _DropOnRevoke(self)
        self.store_retry_at: float | None = None  # monotonic; set while the store is down
        self._store_failures = 0
        self._uploads = 0
        self._paused = False
        self._rng = random.Random()  # jitter, not security
        self.last_loop_mono = clock.monotonic()

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then write what is buffered within the grace period."""
        while not stop.is_set():
            batch = await self.consumer.getmany(
                timeout_ms=self.settings.poll_timeout_ms,
                max_records=self.settings.poll_max_records,
            )
            for tp, records in batch.items():
                await self.accept_batch(records)
                metrics.EVENTS_IN.labels(SERVICE, tp.topic).inc(len(records))
            self.buffers.seal_idle()
            self._relieve_pressure()
            await self.write_ready()
            await self.commit()
            self._apply_backpressure()
            self._observe()
        await self.shutdown()

    async def accept_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Records of one partition: validated as a batch when the model allows, else one by one."""
        route = self.routes[records[0].topic]
        hours = None
        if route.batch is not None:
            hours = route.batch.event_hours([r.value or b"" for r in records])
        # A batch validated by Arrow is buffered in one call; otherwise record by record.
        if hours is None:
            for record in records:
                await self.accept(record)
            return
        values = [r.value or b"" for r in records]
        self.buffers.add_batch(
            topic=records[0].topic,
            partition=records[0].partition,
            offsets=[r.offset for r in records],
            timestamps_ms=[r.timestamp for r in records],
            paths=[hour_path(h) for h in hours],
            rows=values,
            sizes=[len(v) + RECORD_OVERHEAD_BYTES for v in values],
        )

    async def accept(self, record: ConsumerRecord[bytes, bytes]) -> None:
        route = self.routes[record.topic]
        result = decode(route, record.value)
        if isinstance(result, Rejected):
            await self._dead_letter(record, result)
            self.buffers.skip(topic=record.topic, partition=record.partition, offset=record.offset)
            return
        event_time: datetime = getattr(result, route.dataset.event_time_field)
        self.buffers.add(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            path=partition_path(event_time),
            row=record.value or b"",
            size_bytes=len(record.value or b"") + RECORD_OVERHEAD_BYTES,
        )

    # --- 1. write ------------------------------------------------------------------------

    async def write_ready(self) -> None:
        for buffer in self.buffers.ready():
            if self.store_retry_at is not None and self.clock.monotonic() < self.store_retry_at:
                return  # the store is down: keep everything, commit nothing
            if not await self._write(buffer):
                return

    async def _write(self, buffer: Buffer[bytes]) -> bool:
        route = self.routes[buffer.topic]
        table = encoding.from_json_values(
            route.schema,
            route.dataset.model,
            buffer.rows,
            topic=buffer.topic,
            partition=buffer.partition,
            offsets=buffer.offsets,
            archived_at=datetime.fromtimestamp(buffer.last_timestamp_ms / 1000, tz=UTC),
        )
        data = await asyncio.to_thread(encoding.to_parquet, table)
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
        metrics.ARCHIVE_RECORDS.labels(route.dataset.name).inc(len(buffer.rows))
        metrics.ARCHIVE_BYTES.labels(route.dataset.name).inc(len(data))
        metrics.ARCHIVE_OBJECTS.labels(route.dataset.name).inc()
        log.info(
            "wrote %s (%d rows, %d bytes, offsets %d-%d, sealed by %s, etag %s)",
            key,
            len(buffer.rows),
            len(data),
            buffer.start_offset,
            buffer.end_offset,
            buffer.seal_reason,
            etag,
        )
        self._uploads += 1
        self._maybe_crash("after_upload")
        return True

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
        self._maybe_crash("after_commit")

    # --- back-pressure, shutdown -----------------------------------------------------------

    def _relieve_pressure(self) -> None:
        """Above the memory bound, seal the largest open buffer so it can be written."""
        if self.buffers.buffered_bytes >= self.settings.max_buffered_bytes:
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
        while self.buffers.ready() and self.clock.monotonic() < deadline:
            self.store_retry_at = None  # in shutdown, retry as fast as the store's own backoff
            await self.write_ready()
            await self.commit()
        await self.commit()
        left = len(self.buffers.ready())
        if left:
            log.warning("shutdown grace over with %d buffers unwritten: they will replay", left)
        else:
            log.info("shutdown: every buffer written and committed")

    def _observe(self) -> None:
        self.last_loop_mono = self.clock.monotonic()
        metrics.ARCHIVE_OPEN_BUFFERS.set(self.buffers.open_buffers)
        metrics.ARCHIVE_BUFFERED_BYTES.set(self.buffers.buffered_bytes)
        metrics.ARCHIVE_OLDEST_UNFLUSHED_AGE.set(self.buffers.oldest_unwritten_age_s())
        for (topic, partition), lag in self.buffers.commit_lag().items():
            metrics.COMMIT_LAG.labels(topic, str(partition)).set(lag)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], why: Rejected) -> None:
        key, value = dead_letter(
            service=SERVICE,
            reason=why.reason,
            detail=why.detail,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            now=self.clock.now(),
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
