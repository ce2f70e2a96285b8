"""Notifier benchmark: alert → local webhook latency at a constant rate, and throughput against
a bare loop (consume → POST to the same receiver) measured in the same run; in both, a second
receiver is down (connection refused) the whole time.

- latency: `--rate` alerts/s (default 100) for `--seconds` (20), open loop: alert n is due at
  start + n/rate and its latency counts from that due time to its arrival at the webhook.
  Every alert has its own subject, so each is its own group and notification; the figure is
  p99 minus group_wait (target <= 1 s beyond group_wait).
- throughput: a backlog of `--backlog` alerts (3,000) on a fresh topic, drained by the
  notifier (group_wait 0) and by the bare loop (aiokafka consumer + httpx, the notifier's
  per-receiver concurrency of 4 POSTs in flight on 4 worker tasks, keep-alive), each in its
  own process, to the same receiver, one after the other; `--rounds` (5) such pairs, the
  order alternating, and the figure is the median pair's ratio; target >= 0.8x the bare loop.
- side by side: both drain the same backlog at the same time, each to its own receiver.
The receiver runs in this process; the notifier and the bare loop are subprocesses.
The per-receiver rate limit is raised to 2,000/s here (default 10/s): the limit is a policy,
not the thing measured. Last stdout line: {"figures": [...]}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from notifier.sinks import Received, WebhookSink
from pulse_cli import processes

ROOT = Path(__file__).resolve().parents[2]
PORTS = range(61350, 61400)  # this helper's port range, upper half
SECRET = "whsec_" + base64.b64encode(b"pulse-notifier-benchmark-32bytes").decode()
CONCURRENCY = 4  # the notifier's default per receiver; the bare loop gets the same


def free_port() -> int:
    return processes.free_port(PORTS, shuffle=True)


def alert(n: int, run: str) -> bytes:
    now = datetime.now(UTC).isoformat()
    return orjson.dumps(
        {
            "alert_id": f"{run}-{n}",
            "kind": "negative_review",
            "subject": f"product:{run}-{n}",
            "severity": "warning",
            "message": "bench",
            "event_time": now,
            "raised_at": now,
            "details": {"rating": "2", "product_sku": f"BEN-{n}", "product_name": "Bench"},
        }
    )


async def create_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=3, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(names))
    finally:
        await admin.close()


def start_notifier(
    topic: str, dlq: str, urls: str, *, group_wait_s: float, state: Path, group: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        {
            "NOTIFIER_URLS": urls,
            "NOTIFIER_WEBHOOK_SECRET": SECRET,
            "NOTIFIER_ALERTS_TOPIC": topic,
            "NOTIFIER_DLQ_TOPIC": dlq,
            "NOTIFIER_GROUP_ID": group or f"{topic}-bench",
            "NOTIFIER_AUTO_OFFSET_RESET": "earliest",
            "NOTIFIER_HTTP_PORT": str(port),
            "NOTIFIER_STATE_DIR": str(state),
            "NOTIFIER_GROUP_WAIT_S": str(group_wait_s),
            "NOTIFIER_RATE_PER_S": "2000",
            "NOTIFIER_BURST": "200",
            "NOTIFIER_BACKOFF_BASE_S": "1",
            "NOTIFIER_LOG_LEVEL": "WARNING",
        }
    )
    log = (state / "notifier.log").open("ab")
    state.mkdir(parents=True, exist_ok=True)
    profile = os.environ.get("BENCH_NOTIFIER_PROFILE")  # a path: run under cProfile
    command = [sys.executable, "-m", "notifier"]
    if profile:
        command = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "notifier"]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError((state / "notifier.log").read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("notifier did not become healthy")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def alerts_in(received: Received) -> int:
    """Alerts one request carried: a notification's list, or the bare loop's one record."""
    if received.body.startswith(b'{"type"'):
        return len(orjson.loads(received.body)["data"]["alerts"])
    return 1


async def wait_for(
    sink: WebhookSink, count: int, timeout_s: float, *, pid: int | None = None
) -> float | None:
    """Until `count` alerts arrived. Each body is parsed once: re-parsing every body on each
    poll kept the receiver's own process busy (quadratic in the arrivals) and slowed the
    answers the notifier waits for, which the bare loop (not polled) did not suffer.
    With `pid`: that process's CPU ms per alert over the drain (first to last arrival),
    so neither side's start-up, imports or group join is counted."""
    deadline = time.monotonic() + timeout_s
    parsed = alerts = 0
    first: tuple[float, int] | None = None
    while True:
        arrived = sink.received[parsed:]
        parsed += len(arrived)
        alerts += sum(alerts_in(r) for r in arrived)
        if pid is not None and first is None and alerts:
            first = (cpu_s(pid), alerts)
        if alerts >= count:
            if pid is None or first is None or alerts == first[1]:
                return None
            return (cpu_s(pid) - first[0]) / (alerts - first[1]) * 1000
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {alerts} of {count} alerts arrived")
        await asyncio.sleep(0.01)


async def start_beside_dead(
    topic: str, dlq: str, sink: WebhookSink, *, group_wait_s: float, group: str | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """The notifier, its own process and state directory, delivering to `sink` and to a
    second receiver that is down (nothing listens on its port)."""
    dead = f"http://127.0.0.1:{free_port()}/down"
    state = Path(tempfile.mkdtemp(prefix="bench-notifier-"))
    proc, _ = await asyncio.to_thread(
        start_notifier,
        topic,
        dlq,
        f"webhook+{sink.url},webhook+{dead}",
        group_wait_s=group_wait_s,
        state=state,
        group=group,
    )
    return proc, state


async def start_bare(topic: str, sink: WebhookSink, backlog: int) -> asyncio.subprocess.Process:
    """The bare loop, its own process, draining the topic from its start into `sink`; it
    stays until its stdin is closed, so its CPU time can be read."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--bare-loop",
        topic,
        sink.url,
        str(backlog),
        stdin=asyncio.subprocess.PIPE,
    )


async def latency(bootstrap: str, *, rate: float, seconds: float, group_wait_s: float) -> dict:
    run = uuid.uuid4().hex[:8]
    topic, dlq = f"bench.notifier.lat.{run}", f"bench.notifier.dlq.{run}"
    await create_topics(bootstrap, topic, dlq)
    sink = WebhookSink(port=free_port(), secret=SECRET)
    await sink.start()
    proc, state = await start_beside_dead(topic, dlq, sink, group_wait_s=group_wait_s)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        await asyncio.sleep(3)  # the consumer joins its group
        cpu_before = cpu_s(proc.pid)
        total = int(rate * seconds)
        due: dict[str, float] = {}
        start = time.time() + 0.2
        for n in range(total):
            at = start + n / rate
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            due[f"{run}-{n}"] = at
            await producer.send(topic, alert(n, run), key=f"product:{run}-{n}".encode())
        await producer.flush()
        await wait_for(sink, total, timeout_s=120)
        cpu_used = cpu_s(proc.pid) - cpu_before
        lat = [r.at_s - due[a["alert_id"]] for r in sink.received for a in r.json["data"]["alerts"]]
        signed = all(r.signature_ok for r in sink.received)
    finally:
        await producer.stop()
        await asyncio.to_thread(stop, proc)
        await sink.stop()
        await delete_topics(bootstrap, topic, dlq)
        shutil.rmtree(state, ignore_errors=True)
    return {
        "p50_s": percentile(lat, 0.5),
        "p99_s": percentile(lat, 0.99),
        "max_s": max(lat),
        "count": len(lat),
        "signed": signed,
        "cpu_ms_per_alert": cpu_used / len(lat) * 1000,
    }


async def fill(bootstrap: str, topic: str, count: int, run: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for n in range(count):
            await producer.send(topic, alert(n, run), key=f"product:{run}-{n}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def bare_loop(bootstrap: str, topic: str, url: str, count: int) -> None:
    """consume → POST each record to the receiver, CONCURRENCY in flight (run as a child)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or {0, 1, 2})]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
    done = 0
    target = httpx.URL(url)  # parsed once, as the notifier's WebhookReceiver does
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY)) as client:

        async def worker() -> None:
            nonlocal done
            while True:
                body = await queue.get()
                response = await client.post(
                    target, content=body, headers={"content-type": "application/json"}
                )
                response.raise_for_status()
                done += 1
                queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
        seen = 0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    await queue.put(record.value)
                    seen += 1
        await queue.join()
        for task in workers:
            task.cancel()
    await consumer.stop()
    # Stay until the parent has read this process's CPU time (it closes our stdin).
    await asyncio.to_thread(sys.stdin.read)


async def drain_bare(topic: str, sink: WebhookSink, backlog: int) -> tuple[float, float | None]:
    """The bare loop, its own process, drains the topic from its start into `sink`: its steady
    rate and CPU ms per alert over the drain."""
    sink.received.clear()
    child = await start_bare(topic, sink, backlog)
    cpu_ms = await wait_for(sink, backlog, timeout_s=300, pid=child.pid)
    assert child.stdin is not None
    child.stdin.close()
    await child.wait()
    return steady_rate(sink), cpu_ms


async def drain_notifier(
    topic: str, dlq: str, sink: WebhookSink, backlog: int, *, group: str
) -> tuple[float, float | None]:
    """The notifier, its own process with a new consumer group and state, drains the topic
    into `sink` while a second receiver is down: its steady rate and CPU ms per alert."""
    sink.received.clear()
    proc, state = await start_beside_dead(topic, dlq, sink, group_wait_s=0.0, group=group)
    try:
        cpu_ms = await wait_for(sink, backlog, timeout_s=300, pid=proc.pid)
    finally:
        await asyncio.to_thread(stop, proc)
        shutil.rmtree(state, ignore_errors=True)
    return steady_rate(sink), cpu_ms


async def throughput(bootstrap: str, *, backlog: int, rounds: int) -> dict:
    """`rounds` pairs of drains of the same backlog, bare loop and notifier one after the
    other, the order alternating from pair to pair; each pair's ratio compares two drains
    seconds apart, and the figure is the median pair. (The load of a shared machine moves
    within seconds: one pair alone measured 0.56x and 0.70x minutes apart, same code.)"""
    run = uuid.uuid4().hex[:8]
    topic, dlq = f"bench.notifier.tp.{run}", f"bench.notifier.dlq.{run}"
    await create_topics(bootstrap, topic, dlq)
    await fill(bootstrap, topic, backlog, run)
    sink = WebhookSink(port=free_port(), secret=SECRET)
    await sink.start()
    pairs: list[dict[str, Any]] = []
    try:
        for n in range(rounds):
            group = f"{topic}-bench-{n}"
            if n % 2 == 0:
                bare = await drain_bare(topic, sink, backlog)
                notifier = await drain_notifier(topic, dlq, sink, backlog, group=group)
            else:
                notifier = await drain_notifier(topic, dlq, sink, backlog, group=group)
                bare = await drain_bare(topic, sink, backlog)
            pairs.append({"bare": bare, "notifier": notifier, "ratio": notifier[0] / bare[0]})
    finally:
        await sink.stop()
        await delete_topics(bootstrap, topic, dlq)
    middle = sorted(pairs, key=lambda p: p["ratio"])[len(pairs) // 2]
    return {
        "bare_per_s": middle["bare"][0],
        "notifier_per_s": middle["notifier"][0],
        "bare_drain_cpu_ms": middle["bare"][1],
        "notifier_drain_cpu_ms": middle["notifier"][1],
        "pairs": pairs,
    }


async def side_by_side(bootstrap: str, *, backlog: int) -> dict:
    """The notifier and the bare loop draining the same backlog AT THE SAME TIME, each to its
    own instance of the receiver; rates counted over the window in which both are draining
    (from the later first arrival to the earlier last one). On a shared machine the load
    moves within seconds; run one after the other, the two figures met different machines
    (the same code measured 0.34x and 1.79x three minutes apart). Side by side they meet the
    same one, and each gets the same share of it."""
    run = uuid.uuid4().hex[:8]
    topic, dlq = f"bench.notifier.sbs.{run}", f"bench.notifier.dlq.{run}"
    await create_topics(bootstrap, topic, dlq)
    await fill(bootstrap, topic, backlog, run)
    sinks = [WebhookSink(port=free_port(), secret=SECRET) for _ in range(2)]
    for sink in sinks:
        await sink.start()
    bare_sink, notifier_sink = sinks
    state: Path | None = None
    try:
        proc, state = await start_beside_dead(topic, dlq, notifier_sink, group_wait_s=0.0)
        # The bare loop has no group to join: it starts once the notifier delivers.
        await wait_for(notifier_sink, 1, timeout_s=60)
        child = await start_bare(topic, bare_sink, backlog)
        notifier_cpu_ms, bare_cpu_ms = await asyncio.gather(
            wait_for(notifier_sink, backlog, timeout_s=300, pid=proc.pid),
            wait_for(bare_sink, backlog, timeout_s=300, pid=child.pid),
        )
        assert child.stdin is not None
        child.stdin.close()
        await child.wait()
        await asyncio.to_thread(stop, proc)
    finally:
        for sink in sinks:
            await sink.stop()
        await delete_topics(bootstrap, topic, dlq)
        if state is not None:
            shutil.rmtree(state, ignore_errors=True)
    times = {
        name: sorted(r.at_s for r in sink.received for _ in range(alerts_in(r)))
        for name, sink in (("bare", bare_sink), ("notifier", notifier_sink))
    }
    start = max(t[0] for t in times.values())
    end = min(t[-1] for t in times.values())
    rates = {name: sum(start <= at <= end for at in t) / (end - start) for name, t in times.items()}
    return {
        "bare_per_s": rates["bare"],
        "notifier_per_s": rates["notifier"],
        "window_s": end - start,
        "bare_cpu_ms": bare_cpu_ms,
        "notifier_cpu_ms": notifier_cpu_ms,
    }


def steady_rate(sink: WebhookSink) -> float:
    """Alerts per second from the first arrival to the last: the drain itself, without the
    process start and the consumer group join (which the bare loop does not have)."""
    times = sorted(r.at_s for r in sink.received for _ in range(alerts_in(r)))
    return (len(times) - 1) / (times[-1] - times[0])


def throughput_figure(name: str, measured: dict[str, Any]) -> dict[str, Any]:
    ratio = measured["notifier_per_s"] / measured["bare_per_s"]
    return {
        "name": name,
        "value": round(measured["notifier_per_s"], 1),
        "unit": "alerts/s",
        "baseline": round(measured["bare_per_s"], 1),
        "ratio": round(ratio, 3),
        "target": ">= 0.8x bare loop",
        "pass": ratio >= 0.8,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--group-wait-s", type=float, default=0.5)
    parser.add_argument("--backlog", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5, help="throughput: pairs of drains")
    parser.add_argument("--bare-loop", nargs=3, metavar=("TOPIC", "URL", "COUNT"))
    parser.add_argument("--only", choices=("latency", "throughput", "side-by-side"))
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
    if args.bare_loop:
        topic, url, count = args.bare_loop
        asyncio.run(bare_loop(bootstrap, topic, url, int(count)))
        return
    if args.quick:
        args.seconds, args.backlog, args.rounds = 5.0, 500, 1
    load = os.getloadavg()
    figures = []
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    if args.only in (None, "latency"):
        lat = asyncio.run(
            latency(bootstrap, rate=args.rate, seconds=args.seconds, group_wait_s=args.group_wait_s)
        )
        beyond = lat["p99_s"] - args.group_wait_s
        print(
            f"{stamp}, load {load[0]:.2f}: latency at {args.rate:.0f}/s for {args.seconds:.0f} s"
            f" (group_wait {args.group_wait_s} s, a second receiver down): "
            f"p50 {lat['p50_s'] * 1000:.0f} ms, p99 {lat['p99_s'] * 1000:.0f} ms, "
            f"max {lat['max_s'] * 1000:.0f} ms over {lat['count']} alerts, all signed: "
            f"{lat['signed']}; notifier CPU {lat['cpu_ms_per_alert']:.2f} ms per alert",
            file=sys.stderr,
        )
        figures.append(
            {
                "name": f"notifier alert -> webhook p99 beyond group_wait at {args.rate:.0f}/s",
                "value": round(beyond * 1000, 1),
                "unit": "ms",
                "baseline": None,
                "ratio": None,
                "target": "<= 1000 ms beyond group_wait",
                "pass": beyond <= 1.0,
            }
        )
    if args.only in (None, "throughput"):
        tp = asyncio.run(throughput(bootstrap, backlog=args.backlog, rounds=args.rounds))
        for n, pair in enumerate(tp["pairs"], start=1):
            (bare_rate, bare_cpu), (rate, cpu) = pair["bare"], pair["notifier"]
            print(
                f"  pair {n}: notifier {rate:.0f}/s ({cpu or 0:.2f} ms CPU per alert), bare loop "
                f"{bare_rate:.0f}/s ({bare_cpu or 0:.2f} ms): {pair['ratio']:.2f}x",
                file=sys.stderr,
            )
        ratio = tp["notifier_per_s"] / tp["bare_per_s"]
        print(
            f"{stamp}, load {os.getloadavg()[0]:.2f}: throughput over {args.backlog} alerts, "
            f"a second receiver down, median of {args.rounds} pairs: notifier "
            f"{tp['notifier_per_s']:.0f}/s, bare loop {tp['bare_per_s']:.0f}/s: {ratio:.2f}x",
            file=sys.stderr,
        )
        figures.append(throughput_figure("notifier throughput, one receiver down", tp))
    if args.only in (None, "side-by-side"):
        sbs = asyncio.run(side_by_side(bootstrap, backlog=args.backlog))
        ratio = sbs["notifier_per_s"] / sbs["bare_per_s"]
        print(
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}: throughput "
            f"side by side over {args.backlog} alerts each, a second receiver down: notifier "
            f"{sbs['notifier_per_s']:.0f}/s, bare loop {sbs['bare_per_s']:.0f}/s over the "
            f"{sbs['window_s']:.1f} s both drained: {ratio:.2f}x; CPU per alert notifier "
            f"{sbs['notifier_cpu_ms']:.2f} ms, bare loop {sbs['bare_cpu_ms']:.2f} ms",
            file=sys.stderr,
        )
        figures.append(
            throughput_figure(
                "notifier throughput side by side with the bare loop, one receiver down", sbs
            )
        )
    print(json.dumps({"figures": figures}))


if __name__ == "__main__":
    main()
