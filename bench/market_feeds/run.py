"""Per-connector throughput: trades decoded and published to Kafka per second, against a bare
receive → decode → produce loop on the same simulator stream, in one run; then exchange
time → live candle on market.candles.live.v1 at 5,000 trades/s.

The exchange simulator runs in a subprocess (`python -m market_feeds.simulator --burst N`):
each new subscriber gets N trades per symbol, every frame encoded before the first is sent.
For each venue, the bare loop and the connector, twice each in alternating order (bare first,
then connector first), the best of each kept, onto a topic of this run (3 partitions, deleted
after); time runs from the first frame to the last trade acknowledged.
- The bare loop does the same receive (websockets, same options), the same decode of the same
  frames (the protocol's decoder, exact decimals included) into the same output bytes (the
  record encoder) and the same producer settings and batching (`KeyedBatcher`): every
  speed-up the connector has. What it leaves out is what the ratio measures: dedup and gap
  tracking, metrics, status and watchdog, DLQ and rejected-trade handling, ack bookkeeping.
- The connector: FeedConnector with KafkaSink, as `python -m market_feeds` runs it, its
  dedup window (10,000 ids) smaller than the run so that evicting old ids is measured too.

The latency phase: Coinbase at 5,000 trades/s offered open loop by the simulator (5 ms
ticks), spread over `--latency-symbols` symbols of this run (4; 1 puts it all on one) → the
connector → market.trades.v1 → a cdc_processor subprocess (its own app id and consumer group,
from the latest offsets) → forming candles on market.candles.live.v1. Per live candle of our
symbols read in the measured window (20 s after
5 s of warm-up): its `event_time` (the exchange timestamp of the newest trade it includes) →
the moment it is read. Also printed: the first hop (exchange time → trade acknowledged on
market.trades.v1) and the rate at which cdc_processor took the trades in.

Targets: connector >= 20,000 trades/s and >= 0.6x the bare loop; live candle p99 <= 250 ms.
Last stdout line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from contracts import topics
from market_feeds.connector import ConnectPolicy, FeedConnector, open_websocket
from market_feeds.protocols import protocol_for
from market_feeds.publisher import MAX_BATCH_BYTES, KafkaSink, KeyedBatcher
from market_feeds.records import TradeRecord, json_time, symbol_records, write_trade
from pulse_cli.scripts import load_script
from servicekit.clock import SystemClock
from servicekit.kafka import make_producer
from servicekit.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
PORT = 61410  # the feeds helper's port range (61400-61499); --port picks another base
SYMBOLS = {
    "coinbase": {"BTC-USD": "BENCH-BTC"},
    "binance": {"BTCUSDT": "BENCH-BTC"},
    "kraken": {"BTC/USD": "BENCH-BTC"},
    "alpaca": {"AAPL": "BENCH-AAPL"},
}
PATHS = {
    "coinbase": "/coinbase",
    "binance": "/binance/stream",
    "kraken": "/kraken/v2",
    "alpaca": "/alpaca/v2/iex",
}
LINGER_MS = 5
DEDUP_CAPACITY = 10_000  # trade ids the connector remembers (the service: 100,000)


class CountingSink(KafkaSink):
    """KafkaSink that notes when `target` trades have been handed to the producer."""

    def __init__(self, kafka: KafkaSettings, *, topic: str, target: int) -> None:
        super().__init__(kafka, trades_topic=topic, gaps_topic=topic, dlq_topic=topic)
        self.target = target
        self.count = 0
        self.first_at: float | None = None
        self.done = asyncio.Event()

    async def trades(self, feed: str, trades: Sequence[TradeRecord]) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        await super().trades(feed, trades)
        self.count += len(trades)
        if self.count >= self.target:
            self.done.set()


async def connector_run(venue: str, url: str, kafka: KafkaSettings, topic: str, n: int) -> float:
    sink = CountingSink(kafka, topic=topic, target=n)
    await sink.start()
    connector = FeedConnector(
        protocol_for(venue, alpaca_key_id="sim-key", alpaca_secret_key="sim-secret"),
        url=url,
        symbols=SYMBOLS[venue],
        sink=sink,
        clock=SystemClock(),
        policy=ConnectPolicy(silence_timeout_s=60, max_frame_bytes=1 << 22),
        # Below n, so the run includes the steady state of a service past its first 100,000
        # trades, where every admitted trade id evicts the oldest.
        dedup_capacity=DEDUP_CAPACITY,
        rng=random.Random(1),
    )
    task = asyncio.create_task(connector.run())
    try:
        await asyncio.wait_for(sink.done.wait(), timeout=300)
        await sink.flush()  # every trade acknowledged
        elapsed = time.perf_counter() - (sink.first_at or 0.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sink.stop()
    return sink.count / elapsed


async def bare_run(venue: str, url: str, kafka: KafkaSettings, topic: str, n: int) -> float:
    """receive → decode → produce and nothing else: the same WebSocket client and options
    (`open_websocket`: aiohttp, frames as bytes), the same decoder and record writer (the
    same frames become the same bytes, exact decimals included: the wire's digits checked by
    `plain_decimal`), the same
    producer settings and batching (`KeyedBatcher`, appending without a coroutine when there
    is room). Left out: what the connector adds around them (dedup and gaps, metrics, status,
    watchdog, DLQ, ack bookkeeping, reconnects)."""
    producer = make_producer(
        kafka, client_id="bench-bare", linger_ms=LINGER_MS, max_batch_size=MAX_BATCH_BYTES
    )
    await producer.start()
    batcher = KeyedBatcher(producer, topic, linger_ms=LINGER_MS)
    batcher.start()
    protocol = protocol_for(venue, alpaca_key_id="sim-key", alpaca_secret_key="sim-secret")
    symbols = SYMBOLS[venue]
    records = symbol_records(venue=venue, symbols=symbols, asset_class=protocol.asset_class)
    append, add = batcher.append_nowait, batcher.add
    count = 0
    first_at: float | None = None
    try:
        async with (
            aiohttp.ClientSession() as http,
            await open_websocket(
                http, protocol.url(url, list(symbols)), max_frame_bytes=1 << 22
            ) as ws,
        ):
            for message in protocol.opening(list(symbols)):
                await ws.send_str(message)
            while True:
                message = await ws.receive()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue  # (the simulator sends no pings)
                trades = protocol.decode(message.data).trades
                if not trades:
                    continue
                if first_at is None:
                    first_at = time.perf_counter()
                received_at_json = json_time(datetime.now(UTC))
                for wire in trades:
                    record = write_trade(
                        records[wire.venue_symbol], wire, received_at_json=received_at_json
                    )
                    if not append(record.key, record.value):
                        await add(record.key, record.value)
                count += len(trades)
                if count >= n:
                    break
        await batcher.stop()
        await producer.flush()  # every trade acknowledged
        elapsed = time.perf_counter() - (first_at or 0.0)
    finally:
        await producer.stop()
    return count / elapsed


class LagSink(KafkaSink):
    """KafkaSink that keeps each trade's exchange time → Kafka acknowledgement, in seconds."""

    def __init__(self, kafka: KafkaSettings, *, topic: str) -> None:
        super().__init__(kafka, trades_topic=topic, gaps_topic=topic, dlq_topic=topic)
        self.lags_s: list[float] = []
        self.recording = False

    def _trades_shipped(self, future: asyncio.Future[Any], tags: list[tuple[str, float]]) -> None:
        super()._trades_shipped(future, tags)

        def on_ack(future: asyncio.Future[Any]) -> None:
            if self.recording and not future.cancelled() and future.exception() is None:
                now = time.time()
                self.lags_s.extend(now - event_s for _feed, event_s in tags)

        future.add_done_callback(on_ack)


async def candle_latency_run(
    kafka: KafkaSettings,
    side_topic: str,
    *,
    rate: int,
    warmup_s: float,
    measure_s: float,
    symbols: int = 1,
    base_port: int = PORT,
    profile_to: Path | None = None,
) -> tuple[list[float], list[float]]:
    """Coinbase at `rate` trades/s in all (spread evenly over `symbols` products, each a
    symbol of this run; open loop, 5 ms ticks) → the connector → market.trades.v1 → a
    cdc_processor subprocess (its own app id, consumer group from the latest offsets, a port
    of this range) → market.candles.live.v1. For every
    forming candle of our symbols read in the measured window: its `event_time` (the exchange
    timestamp of the newest trade it includes) → the moment it is read here.
    Returns the lags in seconds: per live candle, and per trade to its acknowledgement on
    market.trades.v1 (the first hop), in the measured window."""
    port = base_port + 3
    tag = uuid.uuid4().hex[:8].upper()
    # The simulator's rate is per subscribed product: `rate` in all over `symbols` of them.
    products = {f"B{n}-USD" if n else "BTC-USD": f"BENCH{tag}-{n}" for n in range(symbols)}
    simulator = subprocess.Popen(  # noqa: ASYNC220  # started once, before timing
        [sys.executable, "-m", "market_feeds.simulator", "--port", str(port), "--rate",
         str(rate / symbols), "--tick-s", "0.005"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    log_dir = Path(tempfile.mkdtemp(prefix="bench-feeds-cdc-"))
    worker = _cdc_fixtures().Worker(
        dict(os.environ),
        app_id=f"bench-feeds-cdc-{tag.lower()}",
        log_dir=log_dir,
        CDC_AUTO_OFFSET_RESET="latest",
    )
    worker.port = base_port + 4
    worker.env["CDC_HTTP_PORT"] = str(worker.port)
    sink = LagSink(kafka, topic=topics.MARKET_TRADES.name)
    sink.gaps_topic = sink.dlq_topic = side_topic
    lags_s: list[float] = []
    # read at, (symbol, window), trades in it so far
    counts: list[tuple[float, tuple[bytes, str], int]] = []
    profiler: subprocess.Popen[bytes] | None = None
    ran_s = waited_s = 0.0
    try:
        await asyncio.to_thread(worker.start)
        worker_pid = worker.proc.pid
        if profile_to is not None:
            profiler = _cpu().py_spy(worker_pid, to=profile_to, seconds=warmup_s + measure_s)
        await sink.start()
        connector = FeedConnector(
            protocol_for("coinbase"),
            url=f"ws://127.0.0.1:{port}{PATHS['coinbase']}",
            symbols=products,
            sink=sink,
            clock=SystemClock(),
            policy=ConnectPolicy(silence_timeout_s=60),
            rng=random.Random(1),
        )
        async with _cdc_fixtures().TopicTail(
            kafka.kafka_bootstrap_servers, topics.MARKET_CANDLES_LIVE.name
        ) as live:
            task = asyncio.create_task(connector.run())
            keys = {symbol.encode() for symbol in products.values()}
            started = time.monotonic()
            recording_from = started + warmup_s
            sched_before: tuple[float, float] | None = None
            while (now_mono := time.monotonic()) < recording_from + measure_s:
                sink.recording = now_mono >= recording_from
                if sink.recording and sched_before is None:
                    sched_before = _cpu().schedule(worker_pid)
                batch = await live.consumer.getmany(timeout_ms=50)
                read_at = time.time()
                if not sink.recording:
                    continue
                for records in batch.values():
                    for record in records:
                        if record.key in keys:
                            candle = orjson.loads(record.value)
                            newest = datetime.fromisoformat(candle["event_time"]).timestamp()
                            lags_s.append(read_at - newest)
                            window = (record.key, candle["window_start"])
                            counts.append((read_at, window, candle["trade_count"]))
            sink.recording = False
            if sched_before is not None:
                ran_s, waited_s = (
                    b - a for a, b in zip(sched_before, _cpu().schedule(worker_pid), strict=True)
                )
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await sink.stop()
        if profiler is not None:
            profiler.wait(timeout=60)
        worker.stop()
        simulator.terminate()
        simulator.wait(timeout=10)
        shutil.rmtree(log_dir, ignore_errors=True)
    # How fast cdc_processor took in trades: growth of the candles' trade counts over time,
    # between consecutive live candles of one window.
    # Per symbol, then summed over the symbols.
    intake = seconds = 0.0
    for key in {window[0] for _at, window, _n in counts}:
        mine = [c for c in counts if c[1][0] == key]
        pairs = [(b[0] - a[0], b[2] - a[2]) for a, b in itertools.pairwise(mine) if a[1] == b[1]]
        span = sum(dt for dt, _n in pairs)
        intake += sum(n for _dt, n in pairs) / span if span else 0.0
        seconds = max(seconds, span)
    print(
        f"cdc_processor took in {intake:,.0f} trades/s (live candles' trade counts over "
        f"{seconds:.1f} s); its threads {ran_s / measure_s:.2f} core on a CPU and "
        f"{waited_s / measure_s:.2f} runnable but waiting for one (/proc schedstat): "
        f"{ran_s / max(1.0, intake * measure_s) * 1e6:.0f} us CPU per trade taken in",
        file=sys.stderr,
    )
    return lags_s, sink.lags_s


def _cpu() -> Any:
    """bench/e2e/_cpu.py (CPU and scheduler figures from /proc)."""
    name = "bench_feeds_cpu"
    if name not in sys.modules:
        load_script(ROOT / "bench/e2e/_cpu.py", name)
    return sys.modules[name]


def _cdc_fixtures() -> Any:
    """The cdc_processor worker subprocess and topic tail of the integration tests."""
    name = "bench_feeds_cdc_fixtures"
    if name not in sys.modules:
        load_script(ROOT / "tests/integration/cdc_processor/conftest.py", name)
    return sys.modules[name]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trades", type=int, default=100_000, help="per venue and run")
    parser.add_argument("--venues", default=",".join(SYMBOLS))
    parser.add_argument("--rate", type=int, default=5_000, help="latency phase, trades/s")
    parser.add_argument(
        "--latency-symbols",
        type=int,
        default=4,
        help="latency phase: the rate spread over this many symbols (1: all on one symbol)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs of each loop per venue")
    parser.add_argument(
        "--port", type=int, default=PORT, help="first of 5 local ports (simulators, worker)"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the cdc_processor worker to FILE")
    args = parser.parse_args()
    n = 5_000 if args.quick else args.trades
    venues = [v.strip() for v in args.venues.split(",") if v.strip()]
    kafka = KafkaSettings()
    topic = f"bench.market_feeds.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.kafka_bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    simulator = subprocess.Popen(  # noqa: ASYNC220  # started once, before timing
        [sys.executable, "-m", "market_feeds.simulator", "--port", str(args.port), "--rate", "0",
         "--burst", str(n)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    figures = []
    try:
        await asyncio.sleep(1.5)  # the simulator's start-up (imports, bind)
        for venue in venues:
            url = f"ws://127.0.0.1:{args.port}{PATHS[venue]}"
            # Each loop `repeats` times, the order alternating (bare first, then connector
            # first), the best of each kept: on a shared machine a burst of other work hits
            # whichever runs at that moment; best-of treats both alike.
            runs: dict[str, list[tuple[float, float]]] = {"bare": [], "connector": []}
            for attempt in range(args.repeats):
                order = ("bare", "connector") if attempt % 2 == 0 else ("connector", "bare")
                for which in order:
                    cpu = time.process_time()
                    loop = bare_run if which == "bare" else connector_run
                    rate = await loop(venue, url, kafka, topic, n)
                    runs[which].append((rate, (time.process_time() - cpu) / n * 1e6))
            bare, bare_cpu_us = max(runs["bare"])
            feed, feed_cpu_us = max(runs["connector"])
            ratio = feed / bare
            load = os.getloadavg()[0]
            # CPU per trade (this process: receive, decode, produce) is steadier than wall
            # time on a shared machine: it says what the connector costs over the bare loop.
            print(
                f"{venue}: connector {feed:,.0f} trades/s ({feed_cpu_us:.1f} us CPU/trade), "
                f"bare loop {bare:,.0f} trades/s ({bare_cpu_us:.1f} us CPU/trade), "
                f"ratio {ratio:.2f}x; CPU bare/connector {bare_cpu_us / feed_cpu_us:.2f}x "
                f"(n={n}, best of {args.repeats}, load {load:.2f})",
                file=sys.stderr,
            )
            figures.append(
                {
                    "name": f"market_feeds {venue}: trades decoded and published",
                    "value": round(feed),
                    "unit": "trades/s",
                    "baseline": round(bare),
                    "ratio": round(ratio, 3),
                    "target": ">= 20,000 trades/s and >= 0.6x bare loop",
                    "pass": feed >= 20_000 and ratio >= 0.6,
                }
            )
        simulator.terminate()
        simulator.wait(timeout=10)
        measure_s = 5.0 if args.quick else 20.0
        candle_lags, trade_lags = await candle_latency_run(
            kafka,
            topic,
            rate=args.rate,
            symbols=args.latency_symbols,
            warmup_s=5.0,
            measure_s=measure_s,
            base_port=args.port,
            profile_to=args.profile,
        )
        achieved = len(trade_lags) / measure_s
        load = os.getloadavg()[0]
        if trade_lags:
            print(
                f"first hop, exchange time → trade acknowledged on market.trades.v1: p50 "
                f"{percentile(trade_lags, 0.5) * 1000:.1f} ms, p99 "
                f"{percentile(trade_lags, 0.99) * 1000:.1f} ms",
                file=sys.stderr,
            )
        if candle_lags:
            p50, p99 = percentile(candle_lags, 0.50) * 1000, percentile(candle_lags, 0.99) * 1000
            print(
                f"coinbase at {args.rate:,}/s offered over {args.latency_symbols} symbol(s) "
                f"({achieved:,.0f}/s acknowledged): exchange "
                f"time of a live candle's newest trade → candle read p50 {p50:.1f} ms, p99 "
                f"{p99:.1f} ms over {len(candle_lags)} live candles (load {load:.2f})",
                file=sys.stderr,
            )
        figures.append(
            {
                "name": f"market_feeds: exchange time → live candle read p99, {args.rate}/s"
                f" over {args.latency_symbols} symbol(s)",
                "value": round(p99, 1) if candle_lags else None,
                "unit": "ms",
                "baseline": None,
                "ratio": None,
                "target": "p99 <= 250 ms at the offered rate",
                "pass": bool(candle_lags) and p99 <= 250 and achieved >= 0.95 * args.rate,
            }
        )
    finally:
        if simulator.poll() is None:
            simulator.terminate()
            simulator.wait(timeout=10)
        await admin.delete_topics([topic])
        await admin.close()
    print(json.dumps({"figures": figures}))


if __name__ == "__main__":
    asyncio.run(main())
