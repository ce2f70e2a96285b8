"""Archiver benchmark: throughput vs a bare aiokafka consume-only loop over the same backlog,
the share of the archiver's CPU spent encoding Parquet, and peak memory under backlog.

`uv run python bench/s3_archiver/run.py [--quick] [--n N]` (reads .stack/env). The default
backlog, 1,050,000 candles (seven 50,000-row objects per partition), is long enough that start-up
and the last upload are a few per cent of the run. Each side runs in its own fresh child process
over the same topic, one after the other, in the same run.
Throughput is measured from the first record consumed to the last one done (counted by the
baseline; written to S3 by the archiver), so group joins are left out of both.
The judged baseline gets every speed-up that is not archiving: it runs with the archiver's
interpreter settings (`configure_interpreter`: switch interval, collector, allocator) and reads
its fetches through the archiver's reader (`record_blocks`: batches decoded straight into
columns, the CRC-32C checked in hardware), so the ratio credits the archiver with neither; the
same loop on a stock interpreter is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pulse_cli.stackenv import read_env_file
from s3_archiver.main import FETCH_MAX_BYTES, PARTITION_FETCH_BYTES, configure_interpreter

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 3
OBJECT_ROWS = 50_000  # rows per object, sealed by count as in steady state


def object_rows(n: int) -> int:
    """Rows per object for a backlog of `n`: OBJECT_ROWS, or half a partition's share for a
    small (quick) backlog, so every partition ends on a full object."""
    return max(1, min(OBJECT_ROWS, n // PARTITIONS // 2))


def load_stack_env() -> None:
    for key, value in read_env_file(REPO / ".stack" / "env").items():
        os.environ.setdefault(key, value)


def candle_json(i: int, partition: int) -> bytes:
    import orjson

    when = datetime(2026, 11, 22, 10 + partition, 0, tzinfo=UTC).isoformat()
    return orjson.dumps(
        {
            "symbol": f"SYM{i % 50}",
            "asset_class": "crypto",
            "window_start": when,
            "window_end": when,
            "open": f"{i}.123456789",
            "high": f"{i}.5",
            "low": f"{i}.1",
            "close": f"{i}.25",
            "volume": "12.000000000000000001",
            "vwap": f"{i}.2",
            "trade_count": i,
            "sma": f"{i}.3",
            "sma_period": 20,
            "ema": f"{i}.4",
            "ema_period": 12,
            "event_time": when,
            "emitted_at": when,
        }
    )


async def prepare(topic: str, n: int) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from servicekit.kafka_auth import env_security_options

    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **env_security_options())
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **env_security_options(),
        linger_ms=20,
        max_batch_size=512 * 1024,
        acks=1,
    )
    await producer.start()
    try:
        pending = []
        for i in range(n):
            p = i % PARTITIONS
            pending.append(await producer.send(topic, candle_json(i, p), partition=p))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_by_thread() -> dict[str, float]:
    """CPU seconds so far of this process's live threads, summed by role (Linux /proc):
    `loop` (the main thread), `parse` (the archiver's parser threads), `other` (encoders,
    the asyncio executor, aiokafka's and botocore's helpers)."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out = {"loop": 0.0, "parse": 0.0, "other": 0.0}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        name = names.get(int(task.name), "")
        if name == "MainThread":
            out["loop"] += cpu
        elif name.startswith("archiver-parse"):
            out["parse"] += cpu
        else:
            out["other"] += cpu
    return out


async def child_baseline(topic: str, n: int) -> dict[str, Any]:
    from s3_archiver import record_blocks
    from servicekit.kafka import make_consumer
    from servicekit.settings import KafkaSettings

    consumer = make_consumer(
        KafkaSettings(),
        topic,
        group_id=f"bench-base-{uuid.uuid4().hex[:6]}",
        client_id="bench-baseline",
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
    )
    await consumer.start()
    # The archiver's reader (`Archiver._read_blocks`): a block per partition and poll.
    if not record_blocks.install(consumer):
        raise SystemExit("record_blocks did not install: the baseline would not be the archiver's")
    count, first = 0, None
    cpu_start = time.process_time()
    try:
        while count < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            got = sum(len(r) for r in batch.values())
            if got and first is None:
                first = time.perf_counter()
            count += got
    finally:
        await consumer.stop()
    assert first is not None
    return {
        "seconds": time.perf_counter() - first,
        "records": count,
        "peak_rss_mb": peak_rss_mb(),
        "cpu_s": time.process_time() - cpu_start,
    }


async def child_archiver(topic: str, n: int) -> dict[str, Any]:
    from contracts import datasets
    from s3_archiver import archiver as archiver_module
    from s3_archiver import encoding
    from s3_archiver.object_store import ensure_bucket, make_store, s3_client
    from s3_archiver.settings import ArchiverSettings, S3Settings
    from servicekit import metrics
    from servicekit.clock import SystemClock
    from servicekit.kafka import make_consumer, make_producer
    from servicekit.settings import KafkaSettings

    encode_cpu = [0.0]

    def timed(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()  # CPU of the thread that runs it (to_parquet: a worker)
            try:
                return fn(*args, **kwargs)
            finally:
                encode_cpu[0] += time.thread_time() - start

        return wrapper

    encoding.assemble = timed(encoding.assemble)  # type: ignore[method-assign]
    encoding.to_parquet = timed(encoding.to_parquet)  # type: ignore[method-assign]

    settings = ArchiverSettings(
        topic_datasets={topic: "market_candles"},
        root_prefix=f"bench/{topic}/archive",
        group_id=f"bench-arch-{uuid.uuid4().hex[:6]}",
        http_port=0,
        write_catalog=False,
        # Objects sealed by count as in steady state (the default 1M rows would need a
        # longer backlog than a benchmark wants to produce); n is a multiple of P x rows.
        max_records=object_rows(n),
    )
    s3, clock = S3Settings(), SystemClock()
    first: list[float] = []
    routes = archiver_module.routes_for({topic: datasets.MARKET_CANDLES})
    async with s3_client(s3, timeout_s=30) as client:
        await ensure_bucket(client, s3.s3_bucket)
        consumer = make_consumer(
            KafkaSettings(),
            group_id=settings.group_id,
            client_id="bench-archiver",
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        )
        producer = make_producer(KafkaSettings(), client_id="bench-archiver-dlq")
        getmany = consumer.getmany

        async def timed_getmany(*args: Any, **kwargs: Any) -> Any:
            # The same start as the baseline's: the first poll that returns records.
            batch = await getmany(*args, **kwargs)
            if batch and not first:
                first.append(time.perf_counter())
            return batch

        consumer.getmany = timed_getmany  # type: ignore[method-assign]
        arch = archiver_module.Archiver(
            settings=settings,
            consumer=consumer,
            producer=producer,
            store=make_store(client, s3, settings, clock),
            routes=routes,
            clock=clock,
        )
        consumer.subscribe([topic], listener=arch.listener)
        await producer.start()
        await consumer.start()
        stop = asyncio.Event()
        cpu_start, threads_start = time.process_time(), cpu_by_thread()
        written = metrics.ARCHIVE_RECORDS.labels("market_candles")
        task = asyncio.create_task(arch.run(stop))
        deadline = time.monotonic() + 600
        while written._value.get() < n and not task.done() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polling a counter the archiver bumps: no event to await
        end = time.perf_counter()
        cpu = time.process_time() - cpu_start
        threads = {k: v - threads_start[k] for k, v in cpu_by_thread().items()}
        stop.set()
        await task
        await consumer.stop()
        await producer.stop()
    return {
        "seconds": end - first[0],
        "records": int(written._value.get()),
        "cpu_s": cpu,
        "encode_cpu_s": encode_cpu[0],
        "thread_cpu_s": threads,
        "peak_rss_mb": peak_rss_mb(),
        "max_records": settings.max_records,
        "max_bytes": settings.max_bytes,
        "max_buffered_bytes": settings.max_buffered_bytes,
    }


def run_child(
    kind: str, topic: str, n: int, *, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """One side in a fresh process; `env` (bench/kafka_security: the KAFKA_* settings of the
    TLS + SCRAM listener) replaces this process's environment for it."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--topic", topic, "--n", str(n)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--child", choices=["baseline", "stock-baseline", "archiver"])
    parser.add_argument("--topic")
    args = parser.parse_args()
    load_stack_env()
    if args.child:
        if args.child != "stock-baseline":
            configure_interpreter()  # both judged sides run with the service's settings
        fn = child_archiver if args.child == "archiver" else child_baseline
        print(json.dumps(asyncio.run(fn(args.topic, args.n))))
        return
    n = args.n or (6_000 if args.quick else 1_050_000)
    n -= n % (PARTITIONS * object_rows(n))  # each partition ends on a full object
    topic = f"bench.s3arch.{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    asyncio.run(prepare(topic, n))
    print(f"produced {n} candles to {topic} in {time.perf_counter() - started:.1f}s")
    base = run_child("baseline", topic, n)
    arch = run_child("archiver", topic, n)
    stock = run_child("stock-baseline", topic, n)
    base_rate, arch_rate = n / base["seconds"], n / arch["seconds"]
    ratio = arch_rate / base_rate
    stock_rate = n / stock["seconds"]
    share = arch["encode_cpu_s"] / arch["cpu_s"] if arch["cpu_s"] else 0.0
    print(
        f"baseline consume-only : {base_rate:10.0f} records/s  "
        + f"peak RSS {base['peak_rss_mb']:.0f} MB"
    )
    print(
        f"  same loop, stock    : {stock_rate:10.0f} records/s  "
        f"(default GC and allocator; the archiver is {arch_rate / stock_rate:.2f}x of it)"
    )
    print(
        f"archiver (to S3)      : {arch_rate:10.0f} records/s  ({ratio:.2f}x)  "
        f"peak RSS {arch['peak_rss_mb']:.0f} MB under a {n}-record backlog"
    )
    print(
        f"CPU per record        : archiver {arch['cpu_s'] / n * 1e6:.1f} us, "
        f"baseline {base['cpu_s'] / n * 1e6:.1f} us, stock {stock['cpu_s'] / n * 1e6:.1f} us "
        f"(CPU-bound ratio {base['cpu_s'] / arch['cpu_s']:.2f}x)"
    )
    print(
        f"parquet encoding CPU  : {arch['encode_cpu_s']:.2f}s of {arch['cpu_s']:.2f}s "
        f"process CPU ({share:.0%})"
    )
    per_thread = ", ".join(
        f"{role} {cpu / n * 1e6:.1f} us" for role, cpu in arch["thread_cpu_s"].items()
    )
    print(f"archiver CPU by thread: {per_thread} per record")
    figures = [
        {
            "name": "s3_archiver throughput",
            "value": round(arch_rate, 1),
            "unit": "records/s",
            "baseline": round(base_rate, 1),
            "ratio": round(ratio, 3),
            "target": ">= 0.5x baseline",
            "pass": ratio >= 0.5,
        },
        {
            "name": "s3_archiver parquet encoding CPU share",
            "value": round(share * 100, 1),
            "unit": "%",
            "baseline": None,
            "ratio": None,
            "target": "< 25%",
            "pass": share < 0.25,
        },
        {
            "name": "s3_archiver peak RSS under backlog",
            "value": round(arch["peak_rss_mb"], 1),
            "unit": "MB",
            "baseline": round(base["peak_rss_mb"], 1),
            "ratio": None,
            "target": "<= 512 MB",
            "pass": arch["peak_rss_mb"] <= 512,
        },
    ]
    print(json.dumps({"figures": figures}))


if __name__ == "__main__":
    main()
