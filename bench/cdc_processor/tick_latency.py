"""The processor's hop of the dashboard's end-to-end path (issue 21), on its own: ticks written to
PostgreSQL's `market_ticks` → Debezium (`pulse.public.market_ticks`) → a cdc_processor worker
(repartition by symbol, candle state) → forming candles on `market.candles.live.v1`.

bench/dashboard/e2e.py measures the whole path and needs `pulse up`'s services; this one needs
only the stack: it writes the rows itself, as ingest does for `POST /v1/ticks/batch` (one COPY
per batch of `--batch-size` ticks, every batch in its own transaction, open loop at `--rate`),
and starts its own worker (a fresh app id and consumer group from the latest offsets, health on
`--port`). A tick's event time is its due time; the same "visible" rule as e2e.py
(`visible_latencies`) gives due → Debezium's topic and due → live candle topic per tick.

Also printed: the worker's share of a CPU and the time its threads were runnable but waiting
for one (/proc schedstat): a worker that falls behind while runnable is short of CPU, one that
falls behind while sleeping waits on something else. `--profile FILE`: py-spy of the worker.
Last stdout line: JSON (bench/README.md's figures).

    uv run python bench/cdc_processor/tick_latency.py [--rate 1000] [--duration-s 20]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from pulse_cli.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ("symbol", "asset_class", "price", "size", "event_time", "venue")


def _script(path: str, name: str) -> Any:
    if name not in sys.modules:
        load_script(ROOT / path, name)
    return sys.modules[name]


async def offer(
    pool: asyncpg.Pool, *, symbols: list[str], rate: float, seconds: float, size: int
) -> list[tuple[str, int, float]]:
    """Open loop: a batch leaves when its last tick is due; returns (symbol, event µs, due s)
    of every tick written."""
    e2e = _script("bench/dashboard/e2e.py", "bench_dashboard_e2e")
    sent: list[tuple[str, int, float]] = []
    batches = int(rate * seconds) // size
    t0 = time.time() + 0.05

    def due(n: int) -> float:
        return round(t0 + n / rate, 6)

    async def write(k: int) -> None:
        rows = []
        lines = []
        for n in range(k * size, (k + 1) * size):
            symbol = symbols[n % len(symbols)]
            at = datetime.fromtimestamp(due(n), UTC)
            asset = "crypto" if symbol.endswith("-USD") else "equity"
            price = f"{100 + (n % 1000) / 100:.2f}"
            lines.append(f"{symbol}\t{asset}\t{price}\t1\t{at.isoformat()}\tbench\n")
            rows.append((symbol, e2e.epoch_us(at), due(n)))
        async with pool.acquire() as conn:
            await conn.copy_to_table(
                "market_ticks",
                source=io.BytesIO("".join(lines).encode()),
                columns=list(COLUMNS),
                format="text",
            )
        sent.extend(rows)

    tasks = []
    k = 0
    while k < batches:
        while k < batches and due((k + 1) * size - 1) <= time.time():
            tasks.append(asyncio.create_task(write(k)))
            k += 1
        if k < batches:
            await asyncio.sleep(max(0.0, due((k + 1) * size - 1) - time.time()))
    await asyncio.gather(*tasks)
    return sent


async def run(args: argparse.Namespace) -> dict[str, Any]:
    e2e = _script("bench/dashboard/e2e.py", "bench_dashboard_e2e")
    cpu = _script("bench/e2e/_cpu.py", "bench_cdc_cpu")
    fixtures = _script("tests/integration/cdc_processor/conftest.py", "bench_cdc_fixtures")
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    run_id = uuid.uuid4().hex[:8].upper()
    symbols = e2e.run_symbols(run_id, args.symbols)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-cdc-ticks-"))
    worker = fixtures.Worker(
        dict(os.environ),
        app_id=f"bench-cdc-ticks-{run_id.lower()}",
        log_dir=log_dir,
        CDC_AUTO_OFFSET_RESET="latest",
    )
    worker.port = args.port
    worker.env["CDC_HTTP_PORT"] = str(args.port)
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=4, max_size=16)
    stages: dict[str, dict[str, list[tuple[float, int]]]] = {}
    profiler = None
    try:
        await asyncio.to_thread(worker.start)
        pid = worker.proc.pid
        tapping = asyncio.create_task(e2e.watch_topics(bootstrap, run_id, stages))
        await asyncio.sleep(3)  # the tap's partitions assigned and at their ends
        if args.profile:
            profiler = cpu.py_spy(pid, to=args.profile, seconds=args.warmup_s + args.duration_s)
        load_before = os.getloadavg()[0]
        sched_before = cpu.schedule(pid)
        started = time.time()
        sent = await offer(
            pool,
            symbols=symbols,
            rate=args.rate,
            seconds=args.warmup_s + args.duration_s,
            size=args.batch_size,
        )
        offered_s = time.time() - started
        ran_s, waited_s = (b - a for a, b in zip(sched_before, cpu.schedule(pid), strict=True))
        counted = [
            e2e.Sent(symbol, event_us, due_s)
            for symbol, event_us, due_s in sent
            if due_s >= started + args.warmup_s
        ]
        await e2e.drain(
            counted[-len(symbols) :], lambda: stages.get("live", {}), timeout_s=args.drain_s
        )
        tapping.cancel()
        await asyncio.gather(tapping, return_exceptions=True)
        load_after = os.getloadavg()[0]
    finally:
        if profiler is not None:
            profiler.wait(timeout=60)
        await pool.close()
        worker.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
    split = {}
    for stage in ("cdc", "live"):
        seen = [v for v in e2e.visible_latencies(counted, stages.get(stage, {})) if v is not None]
        split[stage] = (len(seen), e2e._ms(seen, 50), e2e._ms(seen, 99))
    achieved = len(sent) / offered_s
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {achieved:,.0f} ticks/s written "
        f"({len(symbols)} symbols), load {load_before:.1f} → {load_after:.1f}: "
        f"due → {split['cdc'][0]}/{len(counted)} on Debezium's topic p50 {split['cdc'][1]} ms, "
        f"p99 {split['cdc'][2]} ms; due → {split['live'][0]}/{len(counted)} in a live candle "
        f"p50 {split['live'][1]} ms, p99 {split['live'][2]} ms; worker {ran_s / offered_s:.2f} "
        f"core on a CPU, {waited_s / offered_s:.2f} runnable but waiting for one",
        file=sys.stderr,
    )
    live_p99 = split["live"][2]
    return {
        "figures": [
            e2e.figure(
                f"[{args.rate:g} ticks/s, {len(symbols)} symbols] tick due -> live candle p99",
                live_p99,
                "ms",
            ),
            e2e.figure(
                f"[{args.rate:g} ticks/s] worker runnable but waiting for a CPU",
                round(waited_s / offered_s, 2),
                "cores",
            ),
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="ticks/s")
    parser.add_argument("--duration-s", type=float, default=20.0, help="counted seconds")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--drain-s", type=float, default=15.0)
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=10, help="ticks per transaction")
    parser.add_argument("--port", type=int, default=61520, help="the worker's health port")
    parser.add_argument("--profile", type=Path, help="py-spy the worker to FILE (speedscope)")
    parser.add_argument("--quick", action="store_true", help="100 ticks/s for 3 s")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.duration_s, args.warmup_s = 100.0, 3.0, 1.0
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
