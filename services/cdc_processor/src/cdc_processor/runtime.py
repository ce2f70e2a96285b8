"""Faust runtime tuned for throughput, without changing its delivery semantics.

Profiles of the worker (see the README's benchmark section) put most of Faust's own cost per
record in two places this module replaces through Faust's extension points:

- **`QuietMonitor`** (the `Monitor` setting): Faust's default monitor keeps per-record stats
  for its web UI (off here: `/metrics` is servicekit's). The per-record hooks become no-ops;
  the rest of the monitor (rebalance, commit, assignment bookkeeping) is unchanged.
- **`take_batches`** (the agents' batching): Faust's `Stream.take_events` waits `within` after
  every batch, even when the next records are already buffered, so a busy worker idles a full
  window per batch and records queue behind it. Here a batch also ends as soon as the records
  stop coming (`idle`, a fetched chunk has been delivered), with the same buffer, the same
  acknowledgements after the batch, and the same bound (`max_`, `within` since its first
  record).
- **`ChunkedConsumer`** (through `PulseTransport`, set on `app.transport`): Faust's fetch loop
  races *every* record's delivery against "flow suspended" with `Service.wait_first`, which
  creates four tasks per record. Here one `wait_first` covers a whole fetched chunk: the
  records are delivered in order inside one task, the read offset advancing after each, and
  a rebalance (flow suspended) or a stop cancels that task exactly as it cancelled the
  single-record one. Gap tracking for acked topics and `broker_commit_every` keep their
  per-record behaviour.

- **`RawSchema`** (the `schema` of every source topic): Faust's schema decodes each record's
  raw key and value through its serializer registry (codec lookup, model reconstruction check,
  then the app's `conf.Event` looked up again): ~8 % of the worker's CPU at 5,000 trades/s for
  bytes it hands back unchanged. This one builds the same event from the message directly.

- **`RewindingFlowControl`** (set on `app.flow_control`; `ChunkedConsumer` holds and rewinds):
  Faust empties every stream queue each time flow resumes. At the end of a rebalance its
  recovery resumes the stream partitions and seeks them to their committed offsets while the
  fetcher is already running (its standby phase resumed flow), then resumes flow again: the
  records fetched in between are dropped from the queues with the fetch position already past
  them, so they never came back. A restarted worker stalled with thousands of records unread,
  or, when more records followed, skipped minutes of ticks for good (the kill -9 integration
  test, 1 run in 3 to 6). Each clear now notes the first dropped offset per partition; from
  the seek until flow resumes the consumer holds stream records back instead of delivering
  them (one delivered then could overtake dropped ones: a candle closed on part of its ticks);
  then it seeks each such partition back to its first dropped or held record before fetching
  on.

- **`BatchedRecovery`** (through `PulseTableManager`, the `TableManager` setting): Faust's
  recovery reads the changelog queue one record at a time with `asyncio.wait_for`, a task, a
  timer and ~3 event-loop turns per record, and checks every partition's remaining count
  after each. A joining worker recovered 4-5k records/s, its loop mostly scheduling (profile
  in docs/scaling.md); the queue stayed full, so every delivery also took Faust's slow path
  (a task and `asyncio.wait` per record). Here one wait takes whatever the queue holds (up to
  `RECOVERY_BATCH` records): each record is applied exactly as Faust applies it (offset
  check, the table's buffer, `recovery_buffer_size`), and the end of recovery is checked once
  per batch. A record of a partition neither active nor standby is skipped (Faust's loop
  applied it to the previous record's table). At-least-once only: Faust's aborted-transaction
  check is not carried over, so `install` refuses an exactly-once app.

Written against faust-streaming 0.15.x (`faust.transport.consumer.Consumer._drain_messages`)
and aiokafka 0.14.x; the service pins those ranges, tests/unit/test_private_internals.py fails
on a version outside them or on a missing private part, naming what to re-check, and
tests/unit/cdc_processor/test_cdc_runtime.py checks the recovery-end order the hold answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from faust import Schema
from faust.sensors.monitor import Monitor
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.enums import ProcessingGuarantee
from faust.utils.tracing import finish_span
from mode import Service
from mode.utils.aiter import aiter
from mode.utils.futures import notify
from mode.utils.queues import FlowControlEvent

# Records delivered between two yields to the event loop (Faust's own value).
YIELD_EVERY = 100
# Changelog records recovery takes from its queue per wait (the deliveries yield every 100).
RECOVERY_BATCH = 1000
# Faust's: how long recovery waits for a changelog record before checking whether it is done.
RECOVERY_IDLE_S = 5.0


class QuietMonitor(Monitor):
    """Faust's monitor without its per-record statistics (nothing reads them here)."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        # Kept: Faust's liveness check (AIOKafkaConsumerThread.verify_event_path) reads it, and
        # without it logged "Stream has not started processing" for every partition with lag
        # while the partition was being processed (issue 25).
        self.stream_inbound_time[tp] = time.monotonic()

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None


class RawSchema(Schema[bytes, bytes]):
    """Raw bytes in: the event carries the message's own key and value (None for a
    tombstone), as Faust's `raw` serializers give them, without the per-record registry
    round (see the module docstring). tests/unit/cdc_processor/test_cdc_runtime.py compares it
    with `Schema(key_serializer="raw", value_serializer="raw")` record by record."""

    def __init__(self) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")

    def compile(
        self,
        app: Any,
        *,
        on_key_decode_error: Any = None,
        on_value_decode_error: Any = None,
        default_propagate: bool = False,
    ) -> Any:
        # Raw bytes cannot fail to decode: the error callbacks are never needed.
        event_class = app.conf.Event

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            return event_class(app, message.key, message.value, message.headers, message)

        return decode


async def take_batches(
    stream: Any, max_: int, *, within: float, idle: float
) -> AsyncIterator[Sequence[Any]]:
    """Faust's `Stream.take_events` with one more way for a batch to end (see the module
    docstring): up to `max_` events, yielded when the buffer is full, when `idle` seconds pass
    with no new event, or `within` seconds after the batch's first event. The events are
    acknowledged after the consumer of the batch is done with it (at-least-once), and the
    stream is held while a batch is being consumed, as upstream does."""
    buffer: list[Any] = []
    buffer_full = asyncio.Event()
    buffer_started = asyncio.Event()
    buffer_consumed = asyncio.Event()
    last_added = [0.0]
    consuming: list[asyncio.Future[None] | None] = [None]

    async def add_to_buffer(value: Any) -> Any:
        try:
            if consuming[0] is not None:
                try:
                    await consuming[0]
                finally:
                    consuming[0] = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_batches found current_event is None")
            buffer.append(event)
            last_added[0] = time.monotonic()
            buffer_started.set()
            if len(buffer) >= max_:
                buffer_full.set()
                buffer_consumed.clear()
                await stream.wait(buffer_consumed)  # never more than max_ in a batch
        except asyncio.CancelledError:  # pragma: no cover
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False  # acknowledged below, once the batch is consumed
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            # Wakes every `within` even while nothing comes, as upstream's loop does: a missed
            # signal costs one window, never a stalled stream.
            await stream.wait_for_stopped(buffer_started, timeout=within)
            if not buffer:
                continue
            started = time.monotonic()
            while not buffer_full.is_set() and not stream.should_stop:
                now = time.monotonic()
                wait = min(within - (now - started), idle - (now - last_added[0]))
                if wait <= 0:
                    break
                await stream.wait_for_stopped(buffer_full, timeout=wait)
            if not buffer:
                continue
            consuming[0] = stream.loop.create_future()
            try:
                yield list(buffer)
            finally:
                events = list(buffer)
                buffer.clear()
                for event in events:
                    await stream.ack(event)
                notify(consuming[0])
                buffer_full.clear()
                buffer_started.clear()
                buffer_consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)


class RewindingFlowControl(FlowControlEvent):
    """Faust's stream flow control, noting the records each queue clear drops: `dropped` maps a
    partition to its lowest dropped offset until the consumer takes it (see the module
    docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dropped: dict[Any, int] = {}

    def clear(self) -> None:
        dropped = self.dropped
        for queue in self._queues:
            for event in queue._queue:  # type: ignore[attr-defined]  # asyncio.Queue's deque
                message = getattr(event, "message", None)
                if message is None:
                    continue
                tp, offset = message.tp, message.offset
                if offset < dropped.get(tp, offset + 1):
                    dropped[tp] = offset
        super().clear()

    def take_dropped(self) -> dict[Any, int]:
        dropped, self.dropped = self.dropped, {}
        return dropped


class ChunkedConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer delivering each fetched chunk under one `wait_first`.

    From a seek to the committed offsets until flow resumes (the end of a rebalance), stream
    records are held instead of delivered: Faust empties the stream queues when flow resumes,
    so a record delivered then could be processed ahead of earlier ones dropped by that clear.
    Held and dropped records are fetched again, in order, before anything else."""

    _holding = False  # a seek started and flow has not resumed since
    _in_callback = False  # a stream record is being handed to the conductor
    _seek_waiter: asyncio.Future[None] | None = None
    _held: dict[Any, int]  # stream partition → its first record held back

    async def perform_seek(self) -> None:
        self._holding = True
        if self._in_callback:  # let the record in hand reach its queue before the clear
            self._seek_waiter = self.loop.create_future()
            try:
                await self._seek_waiter
            finally:
                self._seek_waiter = None
        await super().perform_seek()

    def resume_flow(self) -> None:
        self._holding = False
        super().resume_flow()

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - via worker
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        flag = CONSUMER_FETCHING
        flow_control = self.app.flow_control
        if not isinstance(flow_control, RewindingFlowControl):
            raise RuntimeError("ChunkedConsumer needs runtime.install's flow control")
        self._held = {}
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if (flow_control.dropped or self._held) and not self._holding:
                    await self._rewind(flow_control.take_dropped(), self._held)
                self.diag.set_flag(flag)
                chunk: list[tuple[Any, Any]] = []
                # Offsets accepted in this chunk, so gaps are measured against the record
                # before, as the one-at-a-time loop did after each delivery.
                accepted: dict[Any, int] = {}
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        offset = message.offset
                        r_offset = accepted.get(tp)
                        if r_offset is None:
                            r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            accepted[tp] = offset
                            chunk.append((tp, message))
                    if chunk:
                        await self.wait_first(self._deliver(chunk), self.suspend_flow.wait())
                self.diag.unset_flag(flag)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(flag)

    def _new_consumer_thread(self) -> Any:
        return FetchTunedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _rewind(self, dropped: dict[Any, int], held: dict[Any, int]) -> None:
        """Fetch again, from its first dropped or held record, every stream partition whose
        position is past it. Partitions the worker no longer holds, or already sought back (a
        rebalance's seek to the committed offset), are left alone; table changelogs are the
        recovery's own."""
        targets = {tp: offset for tp, offset in dropped.items() if not self._is_changelog_tp(tp)}
        for tp, offset in held.items():
            targets[tp] = min(offset, targets.get(tp, offset))
        held.clear()
        for tp, offset in targets.items():
            try:
                position = await cast(FetchTunedConsumerThread, self._thread).rewind(tp, offset)
            except Exception as exc:  # the consumer is stopping or the partition moved on
                self.log.warning("could not rewind %s to %d: %r", tp, offset, exc)
                continue
            if position is not None:
                self._read_offset[tp] = offset
                self.log.warning(
                    "%s: fetching again from %d (%d records dropped or held at a rebalance)",
                    tp,
                    offset,
                    position - offset,
                )

    async def _deliver(self, chunk: Sequence[tuple[Any, Any]]) -> None:
        """Hand records to the conductor in order; the read offset follows each delivery.
        Stream records are held back while a seek is under way (see the class docstring), and
        so is every later record of a partition with one held."""
        callback = self.callback
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        held = self._held
        changelog_topics = self.app.tables.changelog_topics
        since_yield = 0
        for tp, message in chunk:
            since_yield += 1
            if since_yield > YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            stream = tp.topic not in changelog_topics
            if stream and (self._holding or tp in held):
                held.setdefault(tp, message.offset)
                continue
            self._in_callback = stream
            try:
                await callback(message)
            finally:
                self._in_callback = False
                if self._seek_waiter is not None:
                    notify(self._seek_waiter)
            set_read_offset(tp, message.offset)


class FetchTunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with the transport's fetch batching (Faust sets neither)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka builds its fetcher from these at start(), which comes after this.
        consumer._fetch_min_bytes = transport.fetch_min_bytes
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer

    async def rewind(self, tp: Any, offset: int) -> int | None:
        """Seek `tp` back to `offset` if it is assigned and its fetch position is past it;
        the position it had, or None when nothing was done."""
        return await self.call_thread(self._rewind, tp, offset)  # type: ignore[no-any-return]

    async def _rewind(self, tp: Any, offset: int) -> int | None:
        consumer = self._ensure_consumer()
        atp = faust_aiokafka.ensure_aiokafka_TP(tp)
        if atp not in consumer.assignment():
            return None
        position = await consumer.position(atp)
        if position is None or position <= offset:
            return None
        consumer.seek(atp, offset)  # drops what was prefetched past `offset` too
        return int(position)


class PulseTransport(faust_aiokafka.Transport):
    Consumer = ChunkedConsumer
    fetch_min_bytes = 1  # aiokafka's defaults; `install` sets the service's
    fetch_max_wait_ms = 1500


def install(app: Any, *, fetch_min_bytes: int = 1, fetch_max_wait_ms: int = 1500) -> None:
    """Use the chunked consumer for `app` (before the app starts). A fetch returns once
    `fetch_min_bytes` are there or `fetch_max_wait_ms` has passed: with a trickle of records
    (1,000 single-row transactions a second) the default (1 byte) answers nearly every
    record with its own fetch, and each fetch costs the worker far more than a record."""
    if "flow_control" in app.__dict__:
        raise RuntimeError("runtime.install must run before the app's streams are created")
    if app.conf.processing_guarantee != ProcessingGuarantee.AT_LEAST_ONCE:
        raise RuntimeError("runtime.install: BatchedRecovery is for at-least-once apps only")
    if app.conf.TableManager is not PulseTableManager:
        raise RuntimeError("runtime.install: create the app with TableManager=PulseTableManager")
    app.flow_control = RewindingFlowControl(loop=app.loop)
    transport = PulseTransport(app.conf.broker_consumer, app)
    transport.fetch_min_bytes = fetch_min_bytes
    transport.fetch_max_wait_ms = fetch_max_wait_ms
    app.transport = transport


class BatchedRecovery(Recovery):
    """Faust's recovery, taking the changelog queue a batch per wait (module docstring)."""

    @Service.task
    async def _slurp_changelogs(self) -> None:
        queue = self.tables.changelog_queue
        while not self.should_stop:
            try:
                self.signal_recovery_end.clear()
                try:
                    first = await asyncio.wait_for(queue.get(), timeout=RECOVERY_IDLE_S)
                except TimeoutError:
                    if self.should_stop:
                        return
                    self._signal_if_recovered()
                    continue
                events = [first]
                while len(events) < RECOVERY_BATCH and not queue.empty():
                    events.append(queue.get_nowait())
                for event in events:
                    await self._apply_changelog_event(event)
                self._signal_if_recovered()
                standby_ready = self._standbys_span is None and self.tables.standbys_ready
                if not standby_ready and not self.standby_remaining_total():
                    if self._standbys_span:
                        finish_span(self._standbys_span)
                        self._standbys_span = None
                    self.tables.on_standbys_ready()
            except Exception as exc:  # Faust's loop goes on after any error too
                self.log.warning("Error in recovery %r", exc)

    async def _apply_changelog_event(self, event: Any) -> None:
        """One record, as Faust's `_slurp_changelogs` applies it."""
        now = time.monotonic()
        tp = event.message.tp
        offset = event.message.offset
        if tp in self.active_tps:
            is_active, offsets = True, self.active_offsets
            table = self.tp_to_table[tp]
            bufsize = self.buffer_sizes.setdefault(tp, table.recovery_buffer_size)
            self._active_events_received_at[tp] = now
        elif tp in self.standby_tps:
            is_active, offsets = False, self.standby_offsets
            table = self.tp_to_table[tp]
            if tp not in self.buffer_sizes:
                self.buffer_sizes[tp] = table.standby_buffer_size
                self._standby_events_received_at[tp] = now
            bufsize = self.buffer_sizes[tp]
        else:
            self.log.warning("recovery unknown topic %s offset %s: skipped", tp, offset)
            return
        seen_offset = offsets.get(tp)
        if seen_offset is not None and offset <= seen_offset:
            return
        offsets[tp] = offset
        buf = self.buffers[table]
        buf.append(event)
        await table.on_changelog_event(event)
        if len(buf) >= bufsize:
            table.apply_changelog_batch(buf)
            buf.clear()
            self._last_flush_at = now
        if is_active:  # the samples of Faust's remaining-time estimate
            now_after = time.monotonic()
            last_processed_at = self._last_active_event_processed_at
            if last_processed_at is not None:
                self._processing_times.append(now_after - last_processed_at)
                if len(self._processing_times) > self.num_samples_required_for_estimate:
                    self._processing_times.popleft()
            self._last_active_event_processed_at = now_after

    def _signal_if_recovered(self) -> None:
        if self.in_recovery and not self.need_recovery():
            self.flush_buffers()  # apply what is left in the buffers
            self._set_recovery_ended()
            if self._actives_span is not None:
                self._actives_span.set_tag("Actives-Ready", True)
            self.signal_recovery_end.set()


class PulseTableManager(TableManager):
    """Faust's table manager with `BatchedRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = BatchedRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
