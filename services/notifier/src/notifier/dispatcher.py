"""One receiver's delivery loop: flush due groups into notifications, send them with a rate
limit and bounded concurrency, retry with backoff, give up into the DLQ.

Each receiver has its own Dispatcher and its own rows in the outbox, so a receiver that hangs
or fails only slows its own queue; the consumer never waits for a dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from contracts.events import AlertRaised
from servicekit import metrics
from servicekit.clock import Clock

from notifier.labels import alert_labels
from notifier.outbox import Notification, Outbox
from notifier.receivers import Outgoing, Receiver, SendResult
from notifier.retry_policy import Backoff, TokenBucket
from notifier.routing import ReceiverConfig
from notifier.silences import Silence, muted_by

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_IDLE_WAIT_S = 1.0
MAX_RETRY_AFTER_S = 3600.0  # a receiver asking for longer is still retried within the hour


class Database(Protocol):
    """Runs an outbox call on the outbox's own thread."""

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...


GiveUp = Callable[[Notification, int, str], Awaitable[None]]


class Dispatcher:
    def __init__(
        self,
        *,
        receiver: Receiver,
        config: ReceiverConfig,
        outbox: Outbox,
        db: Database,
        clock: Clock,
        backoff: Backoff,
        give_up: GiveUp,
        silences: Callable[[], list[Silence]],
        rng: random.Random | None = None,
    ) -> None:
        self.receiver = receiver
        self.name = receiver.name
        self.config = config
        self._outbox = outbox
        self._db = db
        self._clock = clock
        self._backoff = backoff
        self._give_up = give_up
        self._silences = silences
        self._rng = rng or random.Random()  # jitter, not secrecy
        self._bucket = TokenBucket(
            rate_per_s=config.rate_per_s, burst=config.burst, now_mono=clock.monotonic()
        )
        self._inflight: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                wait_s = await self.step()
            except Exception:  # the loop must outlive any one failure (DB busy, a bug in a send)
                log.exception("receiver %s: dispatch step failed; retrying in 1 s", self.name)
                wait_s = 1.0
            self.wake.clear()
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=wait_s)
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=5.0)

    async def step(self) -> float:
        """Flush due groups, start due sends; returns how long to sleep at most."""
        now_s = self._clock.now().timestamp()
        await self._db.call(self._outbox.flush_due_groups, self.name, now_s=now_s)
        free = self.config.concurrency - len(self._inflight)
        if free > 0:
            for note in await self._db.call(self._outbox.claim, self.name, now_s=now_s, limit=free):
                task = asyncio.create_task(self._deliver(note), name=f"deliver-{note.key}")
                self._inflight.add(task)
                task.add_done_callback(self._done)
        if len(self._inflight) >= self.config.concurrency:
            return MAX_IDLE_WAIT_S  # a finishing send sets `wake`
        due = await self._db.call(self._outbox.next_due_s, self.name)
        metrics.NOTIFIER_OUTBOX.labels(self.name).set(
            await self._db.call(self._outbox.pending_count, self.name)
        )
        if due is None:
            return MAX_IDLE_WAIT_S
        return min(MAX_IDLE_WAIT_S, max(0.0, due - self._clock.now().timestamp()))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.wake.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("receiver %s: delivery task failed: %r", self.name, exc)

    async def _rate_limit(self) -> None:
        while (wait := self._bucket.wait_s(self._clock.monotonic())) > 0:
            await self._clock.sleep(wait)

    async def _deliver(self, note: Notification) -> None:
        alerts = [AlertRaised.model_validate_json(a.alert_json) for a in note.alerts]
        now = self._clock.now()
        silences = self._silences()
        audible = [a for a in alerts if muted_by(silences, alert_labels(a), now=now) is None]
        if len(audible) < len(alerts):
            metrics.NOTIFIER_ALERTS_DROPPED.labels(self.name, "silenced").inc(
                len(alerts) - len(audible)
            )
        if not audible:
            await self._db.call(self._outbox.delivered, note.key)
            return
        await self._rate_limit()
        outgoing = Outgoing(
            key=note.key, receiver=self.name, group_labels=note.group_labels, alerts=audible
        )
        try:
            result = await asyncio.wait_for(
                self.receiver.send(outgoing, now=self._clock.now()),
                timeout=self.config.timeout_s * 2,
            )
        except TimeoutError:
            result = SendResult(ok=False, error=f"no answer within {self.config.timeout_s * 2} s")
        await self._settle(note, result)

    async def _settle(self, note: Notification, result: SendResult) -> None:
        """1. record the outcome in the outbox, 2. then count it. A crash before 1 re-sends."""
        now_s = self._clock.now().timestamp()
        attempts = note.attempts + 1
        if result.ok:
            await self._db.call(self._outbox.delivered, note.key)
            metrics.NOTIFICATIONS.labels(self.name, "delivered").inc()
            metrics.NOTIFIER_DELIVERY_LATENCY.labels(self.name).observe(
                max(0.0, now_s - note.first_enqueued_at)
            )
            return
        age_s = now_s - note.first_enqueued_at
        if (
            not result.retryable
            or attempts >= self.config.max_attempts
            or (age_s >= self.config.max_age_s)
        ):
            log.warning(
                "receiver %s: giving up on %s after %d attempts: %s",
                self.name,
                note.key,
                attempts,
                result.error,
            )
            try:
                await self._give_up(note, attempts, result.error)
            except Exception as exc:  # DLQ unreachable: keep the row, try the whole thing later
                log.warning("receiver %s: DLQ write failed (%r); kept for later", self.name, exc)
                await self._db.call(
                    self._outbox.retry_later,
                    note.key,
                    attempts=note.attempts,
                    next_attempt_s=now_s + self._backoff.delay_s(attempts, rng=self._rng),
                    error=result.error,
                )
                return
            await self._db.call(self._outbox.delivered, note.key)
            metrics.NOTIFICATIONS.labels(self.name, "failed").inc()
            return
        delay_s = self._backoff.delay_s(attempts, rng=self._rng)
        if result.retry_after_s is not None:
            delay_s = max(delay_s, min(result.retry_after_s, MAX_RETRY_AFTER_S))
        log.info(
            "receiver %s: %s attempt %d failed (%s); next in %.1f s",
            self.name,
            note.key,
            attempts,
            result.error,
            delay_s,
        )
        await self._db.call(
            self._outbox.retry_later,
            note.key,
            attempts=attempts,
            next_attempt_s=now_s + delay_s,
            error=result.error,
        )
        metrics.NOTIFICATIONS.labels(self.name, "retried").inc()
