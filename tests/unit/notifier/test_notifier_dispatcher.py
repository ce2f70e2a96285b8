"""Delivery: retries with backoff on a fake clock, Retry-After, give-up to the DLQ, rate limit,
concurrency, and a dead receiver that does not slow another one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import random
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from contracts.events import AlertRaised
from notifier.dispatcher import Dispatcher
from notifier.labels import alert_labels
from notifier.outbox import Incoming, Notification, Outbox, SourceRef
from notifier.receivers import Outgoing, SendResult
from notifier.retry_policy import Backoff
from notifier.routing import ReceiverConfig, RouteConfig, Router, RoutingConfig
from notifier.silences import Matcher, SilenceRequest, new_silence
from notifier_factories import T0, move_alert, review_alert
from servicekit.clock import FakeClock
from servicekit.kafka import encode_event

T = TypeVar("T")


class SameThread:
    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)


class ScriptedReceiver:
    """Answers from a script (then OK); records what it was sent and when."""

    def __init__(self, name: str, clock: FakeClock, script: list[SendResult] | None = None):
        self.name = name
        self.clock = clock
        self.script = list(script or [])
        self.sent: list[tuple[float, Outgoing]] = []
        self.hang: asyncio.Event | None = None

    async def send(self, outgoing: Outgoing, *, now: datetime) -> SendResult:
        self.sent.append((self.clock.monotonic(), outgoing))
        if self.hang is not None:
            await self.hang.wait()
        return self.script.pop(0) if self.script else SendResult(ok=True)

    async def close(self) -> None:
        return None


class Harness:
    def __init__(self, tmp_path: Path, **receiver: Any) -> None:
        self.clock = FakeClock(T0)
        self.outbox = Outbox(tmp_path / "o.journal")
        self.given_up: list[tuple[Notification, int, str]] = []
        self.silences: list[Any] = []
        self.router = Router(
            RoutingConfig(
                route=RouteConfig(receivers=["r"], group_wait_s=0.0, group_by=["alert_id"])
            ),
            receiver_names=[],
        )
        self.receiver = ScriptedReceiver("r", self.clock, receiver.pop("script", None))
        self.dispatcher = Dispatcher(
            receiver=self.receiver,
            config=ReceiverConfig(name="r", url="x://", **receiver),
            outbox=self.outbox,
            db=SameThread(),
            clock=self.clock,
            backoff=Backoff(base_s=1.0, max_s=60.0),
            give_up=self._give_up,
            silences=lambda: self.silences,
            rng=random.Random(1),
        )

    async def _give_up(self, note: Notification, attempts: int, error: str) -> None:
        self.given_up.append((note, attempts, error))

    def add(self, *alerts: AlertRaised) -> None:
        batch = [
            Incoming(
                a.alert_id,
                alert_labels(a),
                encode_event(a),
                SourceRef("alerts.v1", 0, i, None),
                self.router.destinations(alert_labels(a)),
            )
            for i, a in enumerate(alerts)
        ]
        self.outbox.enqueue(batch, rules=(), now_s=self.clock.now().timestamp())

    async def run_for(self, seconds: float) -> None:
        """Step the dispatcher, jumping the fake clock to each next due time."""
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end:
            wait = await self.dispatcher.step()
            for _ in range(5):
                await asyncio.sleep(0)
            if self.dispatcher._active:
                await self.dispatcher.settled(0.5)
                continue
            self.clock.advance(max(0.01, min(wait, end - self.clock.monotonic())))


async def test_retries_with_growing_backoff_until_delivered(tmp_path: Path) -> None:
    h = Harness(tmp_path, script=[SendResult(ok=False, error="HTTP 500")] * 3)
    h.add(review_alert())
    await h.run_for(30)
    times = [t for t, _ in h.receiver.sent]
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.5 <= gaps[0] <= 1.1 and 1.0 <= gaps[1] <= 2.1 and 2.0 <= gaps[2] <= 4.1
    assert len({o.key for _, o in h.receiver.sent}) == 1  # every attempt: the same key
    assert h.outbox.pending_count("r") == 0


async def test_retry_after_is_honoured_over_a_shorter_backoff(tmp_path: Path) -> None:
    h = Harness(tmp_path, script=[SendResult(ok=False, retry_after_s=20.0, error="HTTP 429")])
    h.add(review_alert())
    await h.run_for(60)
    (t1, _), (t2, _) = h.receiver.sent
    assert 20.0 <= t2 - t1 <= 21.0


async def test_gives_up_after_max_attempts_into_the_dlq(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_attempts=3, script=[SendResult(ok=False, error="boom")] * 5)
    h.add(review_alert())
    await h.run_for(120)
    assert len(h.receiver.sent) == 3
    [(note, attempts, error)] = h.given_up
    assert (attempts, error) == (3, "boom")
    assert note.alerts[0].source == SourceRef("alerts.v1", 0, 0, None)
    assert h.outbox.pending_count("r") == 0


async def test_a_permanent_4xx_is_given_up_at_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, script=[SendResult(ok=False, retryable=False, error="HTTP 404")])
    h.add(review_alert())
    await h.run_for(10)
    assert len(h.receiver.sent) == 1 and h.given_up[0][1] == 1


async def test_rate_limit_spaces_sends(tmp_path: Path) -> None:
    h = Harness(tmp_path, rate_per_s=2.0, burst=1, concurrency=1)
    h.add(*(review_alert(i) for i in range(5)))
    await h.run_for(10)
    times = [t for t, _ in h.receiver.sent]
    assert len(times) == 5
    assert all(b - a >= 0.49 for a, b in itertools.pairwise(times))


async def test_concurrency_bounds_sends_in_flight(tmp_path: Path) -> None:
    h = Harness(tmp_path, concurrency=2)
    h.receiver.hang = asyncio.Event()
    h.add(*(review_alert(i) for i in range(5)))
    await h.dispatcher.step()
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(h.receiver.sent) == 2
    await h.dispatcher.step()  # no free slot: nothing more claimed
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(h.receiver.sent) == 2
    h.receiver.hang.set()
    await h.run_for(5)
    assert len(h.receiver.sent) == 5


async def test_a_silence_created_after_queueing_still_mutes_the_send(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.add(move_alert())
    h.silences.append(
        new_silence(
            SilenceRequest(matchers=[Matcher(name="kind", value="price_move")], duration_s=60),
            now=h.clock.now(),
        )
    )
    await h.run_for(5)
    assert h.receiver.sent == [] and h.outbox.pending_count("r") == 0


async def test_a_hung_receiver_does_not_delay_another_receivers_deliveries(tmp_path: Path) -> None:
    # Two dispatchers, one outbox thread, real time: the hung one never answers.
    outbox = Outbox(tmp_path / "o.journal")
    executor = concurrent.futures.ThreadPoolExecutor(1)

    class OneThread:
        async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
            return await asyncio.get_running_loop().run_in_executor(
                executor, lambda: fn(*args, **kwargs)
            )

    from servicekit.clock import SystemClock

    clock = SystemClock()
    router = Router(
        RoutingConfig(
            route=RouteConfig(receivers=["dead", "ok"], group_wait_s=0.0, group_by=["alert_id"])
        ),
        receiver_names=[],
    )
    dead = ScriptedReceiver("dead", FakeClock())
    dead.hang = asyncio.Event()
    ok = ScriptedReceiver("ok", FakeClock())
    stop = asyncio.Event()
    dispatchers = [
        Dispatcher(
            receiver=rcv,
            config=ReceiverConfig(name=rcv.name, url="x://", concurrency=2, timeout_s=30),
            outbox=outbox,
            db=OneThread(),
            clock=clock,
            backoff=Backoff(),
            give_up=lambda *a: asyncio.sleep(0),
            silences=list,
        )
        for rcv in (dead, ok)
    ]
    tasks = [asyncio.create_task(d.run(stop)) for d in dispatchers]
    alerts = [review_alert(i) for i in range(20)]
    outbox.enqueue(
        [
            Incoming(
                a.alert_id,
                alert_labels(a),
                encode_event(a),
                SourceRef("t", 0, i, None),
                router.destinations(alert_labels(a)),
            )
            for i, a in enumerate(alerts)
        ],
        rules=(),
        now_s=clock.now().timestamp(),
    )
    for d in dispatchers:
        d.wake.set()
    loop = asyncio.get_running_loop()
    started = loop.time()
    while len(ok.sent) < 20 and loop.time() - started < 5:  # noqa: ASYNC110  # polls a count
        await asyncio.sleep(0.01)
    took = loop.time() - started
    assert len(ok.sent) == 20 and took < 2.0
    assert len(dead.sent) == 2  # its concurrency, all hanging
    stop.set()
    dead.hang.set()
    await asyncio.gather(*tasks)
    executor.shutdown()


async def test_a_down_receiver_is_probed_one_at_a_time_not_hammered(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_attempts=100, script=[SendResult(ok=False, error="refused")] * 10_000)
    h.add(*(review_alert(i) for i in range(50)))
    await h.run_for(60)
    # Without the pause: 50 notifications x ~6 backoff rounds in 60 s. With it: a few probes.
    assert 3 <= len(h.receiver.sent) <= 20, len(h.receiver.sent)


async def test_a_down_receivers_queue_is_given_up_at_max_age(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        max_age_s=120,
        max_attempts=100,
        script=[SendResult(ok=False, error="refused")] * 10_000,
    )
    h.add(*(review_alert(i) for i in range(30)))
    await h.run_for(200)
    assert len(h.given_up) == 30
    assert {error for _, _, error in h.given_up} == {"refused"}
    assert h.outbox.pending_count("r") == 0


async def test_a_send_past_twice_the_timeout_is_cut_off_and_retried(tmp_path: Path) -> None:
    h = Harness(tmp_path, timeout_s=5, concurrency=1)
    h.receiver.hang = asyncio.Event()  # accepts the request, never answers
    h.add(review_alert())
    await h.dispatcher.step()
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(h.receiver.sent) == 1 and h.dispatcher._active == 1
    h.clock.advance(9.9)
    await h.dispatcher.step()  # not yet: the deadline is 2 x timeout_s
    for _ in range(5):
        await asyncio.sleep(0)
    assert h.dispatcher._active == 1
    h.clock.advance(0.2)
    await h.dispatcher.step()  # the watchdog cancels the send
    for _ in range(5):
        await asyncio.sleep(0)
    assert h.dispatcher._active == 0
    [retry] = h.dispatcher._retries
    assert retry.error == "no answer within 10.0 s" and retry.attempts == 1
    # the worker survived its cancelled send: the retry goes out on it
    h.receiver.hang = None
    await h.run_for(5)
    assert len(h.receiver.sent) == 2 and h.outbox.pending_count("r") == 0
