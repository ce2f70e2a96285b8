"""The notifier's own CPU per alert, without HTTP, against the CPU of the POST it makes.

A diagnostic beside `run.py` (which `make bench` runs): it explains `run.py`'s throughput
ratio. In `run.py` both the notifier and the bare loop are CPU-bound on one core each, so the
ratio is about (consume + POST) / (consume + POST + the notifier's own work). This script
measures the two parts separately, in one run:

- **POST**: httpx CPU per `POST` of a notification-sized body with the signed webhook's headers
  to a WebhookSink in a child process, 4 worker tasks on one keep-alive client, as the
  notifier's WebhookReceiver sends them (the bare loop's per-alert cost is this plus a consume,
  minus signing and the larger body).
- **own work**: `Notifier.handle_batch` → the real SQLite outbox → one `Dispatcher` per
  receiver, `--alerts` alerts with their own subjects (one notification each, group_wait 0),
  in this process; the healthy receiver builds and signs the real webhook body and returns
  200 without a network call, a second receiver (with `--down`, the default, as in `run.py`)
  fails every attempt, so it is paused and probed as a dead one is. No Kafka: records are
  handed to `handle_batch` directly.

The last line is the bench JSON; `ratio` is own work / POST. The throughput target of issue 22
(>= 0.8x the bare loop) needs own work <= about 0.25x POST. `--profile` prints cProfile's top
functions of the own-work run (cProfile inflates small calls; use it for where, not how much).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from notifier import messages, signing
from notifier.dispatcher import Dispatcher
from notifier.notifier import Notifier, OnLoop, SilenceBook, SyncThread
from notifier.outbox import Outbox
from notifier.receivers import Outgoing, SendResult, WebhookReceiver
from notifier.retry_policy import Backoff
from notifier.routing import ReceiverConfig, Router, simple_router
from pulse_cli.scripts import load_script
from servicekit.clock import SystemClock

# run.py's alerts, signing secret, concurrency and ports: the same workload.
_RUN = load_script(Path(__file__).with_name("run.py"), "bench_notifier_run")
CONCURRENCY, SECRET, alert, free_port = _RUN.CONCURRENCY, _RUN.SECRET, _RUN.alert, _RUN.free_port

HEALTHY, DOWN = "hook", "down"


@dataclass(frozen=True, slots=True)
class Record:
    """The fields of an aiokafka ConsumerRecord that `handle_batch` reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class SignedNoPost(WebhookReceiver):
    """The webhook receiver's body and signature, without the POST (answered 200); `done` is
    set once `expected` notifications were sent."""

    expected = 0
    sent = 0
    done: asyncio.Event

    async def send(self, outgoing: Outgoing, *, now: datetime) -> SendResult:
        self.signed_request(outgoing, now=now)  # the real body and signature, not posted
        await asyncio.sleep(0)  # a send yields once at least
        self.sent += 1
        if self.sent >= self.expected:
            self.done.set()
        return SendResult(ok=True)


class Refused:
    """A receiver that is down: every attempt fails at once, as a refused connection does."""

    name = DOWN

    async def send(self, outgoing: Outgoing, *, now: datetime) -> SendResult:
        await asyncio.sleep(0)
        return SendResult(ok=False, retryable=True, error="ConnectError: connection refused")

    async def close(self) -> None:
        return None


async def own_work_us(n: int, *, down: bool, profile: bool) -> float:
    """Own CPU per alert (microseconds), from the first batch until the healthy receiver has
    every notification."""
    clock = SystemClock()
    state = Path(tempfile.mkdtemp(prefix="bench-notifier-own-"))
    outbox = Outbox(state / "outbox.journal")
    disk = SyncThread()
    silences = SilenceBook(outbox, disk)
    await silences.load()
    names = [HEALTHY, DOWN] if down else [HEALTHY]
    simple = simple_router(names)
    root = simple.config.route.model_copy(update={"group_wait_s": 0.0})
    router = Router(simple.config.model_copy(update={"route": root}), receiver_names=names)
    healthy = SignedNoPost(
        HEALTHY,
        "webhook+http://127.0.0.1:9/hook",
        key=signing.decode_secret(SECRET),
        timeout_s=5.0,
        dashboard_url=None,
    )
    healthy.expected, healthy.done = n, asyncio.Event()
    receivers: dict[str, Any] = {HEALTHY: healthy, DOWN: Refused()}

    async def give_up(*_args: Any) -> None:
        return None

    dispatchers = {
        name: Dispatcher(
            receiver=receivers[name],
            config=ReceiverConfig(
                name=name, url="-", rate_per_s=100_000, burst=10_000, concurrency=CONCURRENCY
            ),
            outbox=outbox,
            db=OnLoop(),
            clock=clock,
            backoff=Backoff(base_s=1.0, max_s=60.0),
            give_up=give_up,
            silences=lambda: silences.current,
        )
        for name in names
    }
    notifier = Notifier(
        consumer=None,  # type: ignore[arg-type]  # handle_batch only
        producer=None,  # type: ignore[arg-type]  # no malformed record here
        outbox=outbox,
        disk=disk,
        router=router,
        silences=silences,
        dispatchers=dispatchers,
        clock=clock,
        dlq_topic="-",
        poll_max_records=500,
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(d.run(stop)) for d in dispatchers.values()]
    run = datetime.now(UTC).strftime("%H%M%S")
    records = [Record("alerts", i % 3, i, f"k{i}".encode(), alert(i, run)) for i in range(n)]
    profiler = cProfile.Profile() if profile else None
    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    for start in range(0, n, 500):
        await notifier.handle_batch(records[start : start + 500])  # type: ignore[arg-type]
        await asyncio.sleep(0)
    await healthy.done.wait()
    if profiler is not None:
        profiler.disable()
    per_alert_us = (time.process_time() - cpu) / n * 1e6
    stop.set()
    for dispatcher in dispatchers.values():
        dispatcher.wake.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    disk.close()
    outbox.close()
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    return per_alert_us


async def post_us(url: str, n: int) -> float:
    """httpx CPU per POST (microseconds) of a notification-sized, signed body."""
    key = signing.decode_secret(SECRET)
    body = orjson.dumps(
        {"type": messages.WEBHOOK_EVENT_TYPE, "data": {"alerts": [orjson.loads(alert(0, "x"))]}}
    )
    body += b" " * max(0, 1200 - len(body))  # the size of a one-alert notification
    target = httpx.URL(url)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY)) as client:

        async def post(count: int) -> None:
            """CONCURRENCY workers, as the bare loop and the notifier send: httpx costs more
            per request on a new task than on a reused one (anyio's per-task state)."""
            todo = iter(range(count))

            async def worker() -> None:
                for i in todo:
                    headers = signing.signed_headers(
                        key, msg_id=f"msg_{i}", timestamp_s=int(time.time()), body=body
                    )
                    headers["idempotency-key"] = f"msg_{i}"
                    response = await client.post(target, content=body, headers=headers)
                    response.raise_for_status()

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

        await post(200)  # connections open, warm
        cpu = time.process_time()
        await post(n)
        return (time.process_time() - cpu) / n * 1e6


def serve_sink(port: int) -> None:
    """The receiver, in a child process (its CPU is not the client's)."""
    from notifier.sinks import WebhookSink

    async def serve() -> None:
        sink = WebhookSink(port=port)
        await sink.start()
        print("ready", flush=True)
        while True:
            await asyncio.sleep(1.0)
            sink.received.clear()  # bounded memory over a long run

    asyncio.run(serve())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--alerts", type=int, default=6000)
    parser.add_argument("--posts", type=int, default=4000)
    parser.add_argument("--no-down", dest="down", action="store_false")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    alerts, posts = (1000, 500) if args.quick else (args.alerts, args.posts)
    port = free_port()
    sink = subprocess.Popen(  # noqa: ASYNC220  # started once, before timing
        [sys.executable, __file__, "--serve-sink", str(port)], stdout=subprocess.PIPE
    )
    try:
        assert sink.stdout is not None
        await asyncio.to_thread(sink.stdout.readline)  # "ready"
        post = await post_us(f"http://127.0.0.1:{port}/hook", posts)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    own = await own_work_us(alerts, down=args.down, profile=args.profile)
    with_down = "a second receiver down" if args.down else "one receiver"
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: httpx POST {post:.0f} us CPU; the notifier's "
        f"own work {own:.0f} us CPU per alert ({with_down}, {alerts} alerts) = {own / post:.2f}x "
        f"the POST (for run.py's 0.8x target: <= ~0.25x)",
        file=sys.stderr,
    )
    figure = {
        "name": f"notifier own CPU per alert without HTTP ({with_down}) / httpx POST CPU",
        "value": round(own, 1),
        "unit": "us",
        "baseline": round(post, 1),
        "ratio": round(own / post, 3),
        "target": None,
        "pass": None,
    }
    print(json.dumps({"figures": [figure]}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-sink"]:  # the child
        serve_sink(int(sys.argv[2]))
    else:
        asyncio.run(main())
