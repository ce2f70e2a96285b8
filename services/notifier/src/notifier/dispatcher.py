"""One receiver's delivery loop: flush due groups into notifications, send them with a rate
limit and bounded concurrency, retry with backoff, give up into the DLQ.

Each receiver has its own Dispatcher and its own queues in the outbox, so a receiver that
hangs or fails only slows its own queue; the consumer never waits for a dispatcher.

Sends run on `concurrency` long-lived worker tasks fed by the step, not on a task per
notification: httpx (through anyio) sets up per-task state on a task's first request, and a
task per send cost ~80 us of CPU more per POST than reused workers (bench/notifier, 2026-12-07:
~620-660 against ~550 us per POST), a tenth of the notifier's whole budget per alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from servicekit import metrics
from servicekit.clock import Clock

from notifier.labels import alert_labels
from notifier.outbox import Notification, Outbox, QueuedAlert, Retry
from notifier.receivers import Outgoing, Receiver, SendResult
from notifier.retry_policy import Backoff, TokenBucket
from notifier.routing import ReceiverConfig
from notifier.silences import Silence, muted_by

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_IDLE_WAIT_S = 1.0
DOWN_AFTER_FAILURES = 3  # retryable failures in a row, any notifications
# Claimed ahead, as a multiple of the concurrency: a step (an outbox-thread round trip, a few
# ms on a busy machine) runs when half of that is left, so the sends never wait for one.
PREFETCH = 4
GAUGE_EVERY_S = 5.0  # the outbox gauge counts rows: not on every step
EXPIRE_EVERY_S = 5.0  # a down receiver's queue is scanned for max_age this often
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
        self._inflight_keys: set[str] = set()  # claimed, outcome not yet written
        self._active = 0  # claimed notifications whose delivery has not finished
        self._idle = asyncio.Event()  # set while _active == 0
        self._idle.set()
        # Claimed notifications for the workers, each with its request built by the step
        self._ready: asyncio.Queue[tuple[Notification, Outgoing | None]] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        # A send's deadline (2 x timeout_s), checked by `step` (at least once a second while
        # the dispatcher runs): cheaper than an asyncio.timeout per send, which schedules and
        # cancels a timer each time (~5 us of the notifier's ~130 us of own work per alert).
        self._deadlines: dict[asyncio.Task[Any], float] = {}  # worker → monotonic deadline
        self._overdue: set[asyncio.Task[Any]] = set()  # cancelled by the watchdog
        self._delivered: list[str] = []  # outcomes the next step writes
        self._retries: list[Retry] = []
        self._gauge_at = float("-inf")
        self._expired_at = float("-inf")
        # Receiver health, from consecutive retryable failures of any notification.
        self._streak = 0
        self._paused_until = float("-inf")  # monotonic: no sends before
        self._last_error = ""
        self.wake = asyncio.Event()
        # Per-send metrics: the label lookup once, not per notification.
        self._delivered_total = metrics.NOTIFICATIONS.labels(self.name, "delivered")
        self._retried_total = metrics.NOTIFICATIONS.labels(self.name, "retried")
        self._failed_total = metrics.NOTIFICATIONS.labels(self.name, "failed")
        self._silenced_total = metrics.NOTIFIER_ALERTS_DROPPED.labels(self.name, "silenced")
        self._latency = metrics.NOTIFIER_DELIVERY_LATENCY.labels(self.name)

    def poke(self) -> None:
        """New alerts were queued for this receiver. A paused receiver cannot send them: it
        flushes their groups on its own timer (at most MAX_IDLE_WAIT_S later), so a dead
        receiver costs one outbox step a second, not one per consumed batch."""
        if self._clock.monotonic() >= self._paused_until:
            self.wake.set()

    def _down(self) -> bool:
        return self._streak >= DOWN_AFTER_FAILURES

    def _window(self) -> int:
        """Notifications claimed at a time: down, one probe; up, PREFETCH x concurrency (the
        `concurrency` workers keep that many of them on the wire)."""
        return 1 if self._down() else self.config.concurrency * PREFETCH

    def _refill_at(self) -> int:
        """In flight at or below this, a step is due: half the window (at least the one
        probe's slot when down)."""
        return self._window() // 2

    def _outcomes_due(self) -> bool:
        """Outcomes are written once the window is half empty: one outbox step per half
        window of sends, which also claims as many, instead of one step per finished send."""
        return bool(self._delivered or self._retries) and self._active <= self._refill_at()

    def _start_workers(self) -> None:
        while len(self._workers) < self.config.concurrency:
            n = len(self._workers)
            self._workers.append(asyncio.create_task(self._work(), name=f"send-{self.name}-{n}"))

    async def _work(self) -> None:
        """One of `concurrency` senders: takes claimed notifications until cancelled."""
        while True:
            note, outgoing = await self._ready.get()
            try:
                await self._deliver(note, outgoing)
            except Exception as exc:  # a bug in a send must not lose the notification
                log.exception("receiver %s: delivery of %s failed", self.name, note.key)
                delay_s = self._backoff.delay_s(note.attempts + 1, rng=self._rng)
                retry_at = self._clock.now().timestamp() + delay_s
                self._retries.append(Retry(note.key, note.attempts, retry_at, repr(exc)[:500]))
            finally:
                self._active -= 1
                if self._active <= self._refill_at():
                    self.wake.set()
                if self._active == 0:
                    self._idle.set()

    async def settled(self, timeout_s: float) -> None:
        """Until every claimed notification's delivery has finished (or `timeout_s`)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)

    async def close(self) -> None:
        """Stop the workers (a send still running is cancelled; its outcome is not written,
        so the notification is sent again after a restart, under the same key)."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before the step, not after: a wake-up that arrives while the step waits
            # for the outbox thread (new alerts, a finished send) must not be lost.
            self.wake.clear()
            try:
                wait_s = await self.step()
            except Exception:  # the loop must outlive any one failure (DB busy, a bug in a send)
                log.exception("receiver %s: dispatch step failed; retrying in 1 s", self.name)
                wait_s = 1.0
            if wait_s > 0 and not self._outcomes_due():
                # asyncio.timeout, not wait_for: no task per wait (one per step under load)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self.wake.wait()
        await self.settled(5.0)
        await self.close()
        await self.step(claim=False)  # record the last outcomes

    def _cancel_overdue(self) -> None:
        """Cancel the sends past their deadline; `_send` turns that into a retryable failure."""
        if not self._deadlines:
            return
        mono = self._clock.monotonic()
        for task, deadline in list(self._deadlines.items()):
            if mono >= deadline and task not in self._overdue:
                self._overdue.add(task)
                task.cancel()

    async def step(self, *, claim: bool = True) -> float:
        """Record outcomes, flush due groups, start due sends; returns how long to sleep."""
        self._cancel_overdue()
        now_s = self._clock.now().timestamp()
        delivered, self._delivered = self._delivered, []
        retries, self._retries = self._retries, []
        mono = self._clock.monotonic()
        paused_s = self._paused_until - mono
        # Down: one probe at a time, and none while paused; up: the window (`_window`).
        free = 0 if paused_s > 0 or not claim else self._window() - self._active
        # Settled in this step: no longer in flight, so a retry already due is handed out now.
        for key in delivered:
            self._inflight_keys.discard(key)
        for retry in retries:
            self._inflight_keys.discard(retry.key)
        claimed, due = await self._db.call(
            self._outbox.step,
            self.name,
            now_s=now_s,
            delivered=delivered,
            retries=retries,
            exclude=frozenset(self._inflight_keys),
            limit=free,
        )
        if claimed:
            self._start_workers()
            self._idle.clear()
        if claimed:
            now = self._clock.now()
        for note in claimed:
            self._inflight_keys.add(note.key)
            self._active += 1
            self._ready.put_nowait((note, self._prepare(note, now)))
        if self._down() and mono - self._expired_at >= EXPIRE_EVERY_S:
            self._expired_at = mono
            await self._expire(now_s)
        if mono - self._gauge_at >= GAUGE_EVERY_S:
            self._gauge_at = mono
            metrics.NOTIFIER_OUTBOX.labels(self.name).set(
                await self._db.call(self._outbox.pending_count, self.name)
            )
        if paused_s > 0:
            return min(MAX_IDLE_WAIT_S, paused_s)
        if self._active > self._refill_at() or due is None:
            # A send finishing with half the window left sets `wake` (see `_work`).
            return MAX_IDLE_WAIT_S
        return min(MAX_IDLE_WAIT_S, max(0.0, due - self._clock.now().timestamp()))

    async def _expire(self, now_s: float) -> None:
        """While the receiver is down its queue is not tried one by one: notifications past
        max_age are given up here, each into the DLQ with the receiver's last error."""
        old = await self._db.call(
            self._outbox.older_than,
            self.name,
            before_s=now_s - self.config.max_age_s,
            exclude=frozenset(self._inflight_keys),
            limit=100,
        )
        for note in old:
            error = self._last_error or note.last_error
            try:
                await self._give_up(note, note.attempts, error)
            except Exception as exc:  # DLQ unreachable: the next step tries again
                log.warning("receiver %s: DLQ write failed (%r)", self.name, exc)
                return
            self._delivered.append(note.key)
            self._inflight_keys.add(note.key)  # until the next step deletes it
            self._failed_total.inc()

    def _note_failure(self, error: str, *, retry_after_s: float | None) -> None:
        """A retryable failure: after DOWN_AFTER_FAILURES in a row the receiver counts as down
        and is paused, with the same backoff a notification gets; Retry-After pauses it too."""
        self._streak += 1
        self._last_error = error
        pause_s = retry_after_s or 0.0
        if self._streak >= DOWN_AFTER_FAILURES:
            if self._streak == DOWN_AFTER_FAILURES:
                log.warning("receiver %s is down (%s): probing one at a time", self.name, error)
            steps = self._streak - DOWN_AFTER_FAILURES + 1
            pause_s = max(pause_s, self._backoff.delay_s(steps, rng=self._rng))
        if pause_s > 0:
            self._paused_until = max(self._paused_until, self._clock.monotonic() + pause_s)

    async def _rate_limit(self, wait_s: float) -> None:
        while wait_s > 0:
            await self._clock.sleep(wait_s)
            wait_s = self._bucket.wait_s(self._clock.monotonic())

    def _audible(self, note: Notification) -> tuple[QueuedAlert, ...]:
        """The notification's alerts no silence mutes now."""
        if not (silences := self._silences()):
            return note.alerts
        now = self._clock.now()
        return tuple(
            q for q in note.alerts if muted_by(silences, alert_labels(q.parsed()), now=now) is None
        )

    def _prepare(self, note: Notification, now: datetime) -> Outgoing | None:
        """The request for a claimed notification, built by the step for the whole claim in one
        go rather than by each worker before its send: rendering and signing in a row cost ~40
        us less per notification than interleaved with the HTTP client's work (bench/notifier,
        2026-12-07, measured in one process: the same code, colder caches). None: all muted."""
        audible = self._audible(note)
        if not audible:
            return None
        outgoing = Outgoing(
            note.key,
            self.name,
            note.group_labels,
            [q.parsed() for q in audible],
            [q.alert_json for q in audible],
        )
        if (prepare := getattr(self.receiver, "prepare", None)) is not None:
            try:
                prepare(outgoing, now=now)
            except Exception:  # the send builds it again, and fails there if it must
                log.exception("receiver %s: preparing %s failed", self.name, note.key)
        return outgoing

    async def _deliver(self, note: Notification, outgoing: Outgoing | None) -> None:
        """Silences are checked again just before the send (one may have been made since the
        step); a notification they changed is built again."""
        if outgoing is not None and self._silences():
            audible = self._audible(note)
            if len(audible) != len(outgoing.alerts):
                outgoing = self._prepare(note, self._clock.now())
        if outgoing is None:
            self._silenced_total.inc(len(note.alerts))
            self._delivered.append(note.key)
            return
        if len(outgoing.alerts) < len(note.alerts):
            self._silenced_total.inc(len(note.alerts) - len(outgoing.alerts))
        await self._send(note, outgoing)

    async def _send(self, note: Notification, outgoing: Outgoing) -> None:
        if (wait_s := self._bucket.wait_s(self._clock.monotonic())) > 0:  # no await when free
            await self._rate_limit(wait_s)
        worker = asyncio.current_task()
        assert worker is not None
        self._deadlines[worker] = self._clock.monotonic() + self.config.timeout_s * 2
        try:
            result = await self.receiver.send(outgoing, now=self._clock.now())
        except asyncio.CancelledError:
            if worker not in self._overdue:
                raise  # shutdown
            self._overdue.discard(worker)
            worker.uncancel()
            result = SendResult(ok=False, error=f"no answer within {self.config.timeout_s * 2} s")
        finally:
            del self._deadlines[worker]
        if result.ok:  # settled without another coroutine: the common case
            self._settle_delivered(note)
        else:
            await self._settle_failure(note, result)

    def _settle_delivered(self, note: Notification) -> None:
        if self._streak >= DOWN_AFTER_FAILURES:
            log.info("receiver %s is back after %d failures", self.name, self._streak)
        self._streak = 0
        self._delivered.append(note.key)
        self._delivered_total.inc()
        now_s = self._clock.now().timestamp()
        self._latency.observe(max(0.0, now_s - note.first_enqueued_at))

    async def _settle_failure(self, note: Notification, result: SendResult) -> None:
        """Queue a failed attempt's outcome for the next step's write (a crash before it
        re-sends under the same key); a give-up is written to the DLQ first, then dropped."""
        now_s = self._clock.now().timestamp()
        attempts = note.attempts + 1
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
                delay_s = self._backoff.delay_s(attempts, rng=self._rng)
                self._retries.append(Retry(note.key, note.attempts, now_s + delay_s, result.error))
                return
            self._delivered.append(note.key)
            self._failed_total.inc()
            return
        delay_s = self._backoff.delay_s(attempts, rng=self._rng)
        retry_after_s = None
        if result.retry_after_s is not None:
            retry_after_s = min(result.retry_after_s, MAX_RETRY_AFTER_S)
            delay_s = max(delay_s, retry_after_s)
        self._note_failure(result.error, retry_after_s=retry_after_s)
        log.info(
            "receiver %s: %s attempt %d failed (%s); next in %.1f s",
            self.name,
            note.key,
            attempts,
            result.error,
            delay_s,
        )
        self._retries.append(Retry(note.key, attempts, now_s + delay_s, result.error))
        self._retried_total.inc()
