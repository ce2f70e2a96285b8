"""The consume loop: decode → route → silence → queue in the outbox → commit.

Order per batch (what makes it at-least-once):
  1. malformed records go to the DLQ (their sends are awaited before 3),
  2. every destination of every alert is written to the outbox in one transaction,
  3. the outbox is fsync'd (on the sync thread), then the batch's offsets are committed.
A silenced alert is finished at 2 (counted per receiver). Delivery happens beside this loop,
one Dispatcher per receiver, so a dead receiver never holds up a commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from contracts.events import AlertRaised
from pydantic import ValidationError
from servicekit import metrics
from servicekit.clock import Clock
from servicekit.kafka import dead_letter

from notifier.dispatcher import Dispatcher
from notifier.labels import alert_labels
from notifier.outbox import Incoming, Notification, Outbox, SourceRef
from notifier.routing import Router
from notifier.silences import Silence, muted_by

log = logging.getLogger(__name__)

SERVICE = "notifier"
PRUNE_EVERY_S = 60.0  # expired dedup entries, idle groups, inhibitions, old silences
# At most this often an fsync + Kafka commit: at 100 alerts/s a poll returns a few records,
# and one of each per poll cost more CPU than the alerts (bench/notifier, latency mode: ~5 ms
# per alert). A crash replays at most this much more; `seen` drops the replay. Deliveries
# do not wait for commits.
COMMIT_EVERY_S = 0.25
T = TypeVar("T")


class OnLoop:
    """Outbox calls on the event loop itself. A change is a dict update and one write() to
    the journal: microseconds, never an fsync (those run on `SyncThread`).
    A thread hop per call cost more than the call (bench/notifier: ~50 us of CPU and a few ms
    of waiting per dispatcher step on a busy machine, with the GIL passed back and forth)."""

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)


class SyncThread:
    """The outbox's fsyncs (and the rename that ends a compaction), off the event loop (an
    fsync can take tens of ms on a busy disk; the sends and the consume loop go on meanwhile)."""

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fsync")

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class SilenceBook:
    """The silences, cached in memory (read on every alert), saved in the outbox database."""

    def __init__(self, outbox: Outbox, disk: SyncThread) -> None:
        self._outbox = outbox
        self._disk = disk
        self.current: list[Silence] = []

    async def load(self) -> None:
        self.current = self._outbox.silences()

    async def save(self, silence: Silence) -> None:
        """Saved and fsync'd before the API answers: a created silence survives power loss."""
        self._outbox.save_silence(silence)
        await self._disk.call(self._outbox.sync)
        await self.load()


class Notifier:
    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        outbox: Outbox,
        disk: SyncThread,
        router: Router,
        silences: SilenceBook,
        dispatchers: Mapping[str, Dispatcher],
        clock: Clock,
        dlq_topic: str,
        poll_max_records: int,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._outbox = outbox
        self._disk = disk
        self._router = router
        self._silences = silences
        self._dispatchers = dispatchers
        self._clock = clock
        self._dlq_topic = dlq_topic
        self._poll_max_records = poll_max_records
        self.last_loop_mono = clock.monotonic()
        self._to_commit: dict[TopicPartition, int] = {}
        self._commit_due = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        pruned_at = float("-inf")
        committer = asyncio.create_task(self._commit_loop(stop), name="commit")
        try:
            while not stop.is_set():
                self.last_loop_mono = self._clock.monotonic()
                if self.last_loop_mono - pruned_at >= PRUNE_EVERY_S:
                    pruned_at = self.last_loop_mono
                    self._outbox.prune(now_s=self._clock.now().timestamp())
                batches = await self._consumer.getmany(
                    timeout_ms=500, max_records=self._poll_max_records
                )
                records = [r for rs in batches.values() for r in rs]
                if not records:
                    continue
                await self.handle_batch(records)
                # The batch is in the outbox: its offsets may be committed. The commit itself
                # runs beside the loop, so the next poll does not wait for Kafka's answer.
                for tp, rs in batches.items():
                    if rs:
                        self._to_commit[tp] = rs[-1].offset + 1
                self._commit_due.set()
        finally:
            stop.set()
            self._commit_due.set()
            await committer

    async def _commit_loop(self, stop: asyncio.Event) -> None:
        """Commit the newest safe offsets whenever there are new ones (cumulative, so one
        commit covers every batch queued before it); a last commit on the way out.
        Each commit follows an fsync of the outbox that started after the commits of the
        batches it covers: what Kafka forgets is on disk, even across a power loss."""
        committed_at = float("-inf")
        while True:
            await self._commit_due.wait()
            # Later batches join this commit (and its fsync) until COMMIT_EVERY_S has passed.
            if (wait_s := committed_at + COMMIT_EVERY_S - self._clock.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait_s)
            committed_at = self._clock.monotonic()
            self._commit_due.clear()
            offsets, self._to_commit = self._to_commit, {}
            if offsets:
                await self._disk.call(self._outbox.sync)
                # A grown journal starts again from a snapshot; the next sync finishes it.
                self._outbox.compact_if_due(now_s=self._clock.now().timestamp())
                try:
                    await self._consumer.commit(offsets)
                except (CommitFailedError, KafkaError) as exc:
                    # Rebalanced away: the next owner replays those alerts, `seen` drops them.
                    log.warning("commit failed (%s); those alerts will be replayed", exc)
            if stop.is_set() and not self._to_commit:
                return

    async def handle_batch(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        now = self._clock.now()
        incoming: list[Incoming] = []
        dead: list[asyncio.Future[Any]] = []
        for topic in {r.topic for r in records}:
            metrics.EVENTS_IN.labels(SERVICE, topic).inc(sum(r.topic == topic for r in records))
        for record in records:
            try:
                # Straight from the bytes (no intermediate dict): the consume path's validation
                alert = AlertRaised.model_validate_json(record.value or b"")
            except ValidationError as exc:
                reason = "undecodable" if _not_json(exc) else "schema_invalid"
                dead.append(await self._dead_letter(record, reason=reason, detail=str(exc)))
                continue
            labels = alert_labels(alert)
            destinations = self._router.destinations(labels)
            if muted_by(self._silences.current, labels, now=now) is not None:
                for dest in destinations:
                    metrics.NOTIFIER_ALERTS_DROPPED.labels(dest.receiver, "silenced").inc()
                continue
            incoming.append(
                Incoming(
                    alert_id=alert.alert_id,
                    labels=labels,
                    alert_json=record.value or b"",
                    source=SourceRef(record.topic, record.partition, record.offset, record.key),
                    destinations=destinations,
                    alert=alert,
                )
            )
        if incoming:
            result = self._outbox.enqueue(
                incoming, rules=self._router.inhibit_rules, now_s=now.timestamp()
            )
            for receiver, n in result.duplicate.items():
                metrics.NOTIFIER_ALERTS_DROPPED.labels(receiver, "duplicate").inc(n)
            for receiver, n in result.inhibited.items():
                metrics.NOTIFIER_ALERTS_DROPPED.labels(receiver, "inhibited").inc(n)
            for receiver in result.receivers:
                self._dispatchers[receiver].poke()
        if dead:
            await asyncio.gather(*dead)

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], *, reason: str, detail: str
    ) -> asyncio.Future[Any]:
        log.warning(
            "alert %s/%d@%d to the DLQ: %s", record.topic, record.partition, record.offset, reason
        )
        metrics.DLQ_RECORDS.labels(SERVICE, reason).inc()
        key, value = dead_letter(
            record, service=SERVICE, reason=reason, detail=detail, now=self._clock.now()
        )
        future: asyncio.Future[Any] = await self._producer.send(self._dlq_topic, value, key=key)
        return future


def _not_json(exc: ValidationError) -> bool:
    """pydantic reports bytes that are not JSON (or not UTF-8) as a validation error."""
    return any(e["type"] == "json_invalid" for e in exc.errors())


class GivenUpAlert:
    """A queued alert seen as the record it came from, for `servicekit.kafka.dead_letter`."""

    def __init__(self, source: SourceRef, value: bytes) -> None:
        self.topic = source.topic
        self.partition = source.partition
        self.offset = source.offset
        self.key = source.key
        self.value = value


def make_give_up(
    producer: AIOKafkaProducer, *, dlq_topic: str, clock: Clock
) -> Callable[[Notification, int, str], Any]:
    """One DLQ record per alert of a notification given up on: the alert's bytes, and in the
    detail the receiver, the attempts and the last error."""

    async def give_up(note: Notification, attempts: int, error: str) -> None:
        sends = []
        for queued in note.alerts:
            detail = orjson.dumps(
                {
                    "receiver": note.receiver,
                    "notification": note.key,
                    "attempts": attempts,
                    "last_error": error,
                }
            ).decode()
            key, value = dead_letter(
                GivenUpAlert(queued.source, queued.alert_json),
                service=SERVICE,
                reason="undeliverable",
                detail=detail,
                now=clock.now(),
            )
            sends.append(await producer.send(dlq_topic, value, key=key))
        await asyncio.gather(*sends)
        metrics.DLQ_RECORDS.labels(SERVICE, "undeliverable").inc(len(sends))

    return give_up
