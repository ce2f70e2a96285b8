"""Per-connector throughput: trades decoded and published to Kafka per second, against a bare
receive → decode → produce loop on the same simulator stream, in one run.

The exchange simulator runs in a subprocess (`python -m market_feeds.simulator --burst N`):
each new subscriber gets N trades per symbol, every frame encoded before the first is sent.
For each venue, first the bare loop (websockets → orjson.loads → aiokafka send of the decoded
trade re-encoded with orjson, keyed by symbol), then the connector (FeedConnector: protocol
decoder, exact decimals, dedup and gap tracking, TradeExecuted, KafkaSink), both with the same
producer settings, onto a topic of this run (3 partitions, deleted after). Time runs from the
first frame to the last trade acknowledged by Kafka.

Targets: connector >= 20,000 trades/s and >= 0.6x the bare loop. Last stdout line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from contracts.events import TradeExecuted
from market_feeds.connector import ConnectPolicy, FeedConnector
from market_feeds.protocols import protocol_for
from market_feeds.publisher import KafkaSink
from servicekit.clock import SystemClock
from servicekit.kafka import make_producer
from servicekit.settings import KafkaSettings
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[2]
PORT = 61410  # feeds' port range
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


class CountingSink(KafkaSink):
    """KafkaSink that notes when `target` trades have been handed to the producer."""

    def __init__(self, kafka: KafkaSettings, *, topic: str, target: int) -> None:
        super().__init__(kafka, trades_topic=topic, gaps_topic=topic, dlq_topic=topic)
        self.target = target
        self.count = 0
        self.first_at: float | None = None
        self.done = asyncio.Event()

    async def trades(self, feed: str, trades: Sequence[TradeExecuted]) -> None:
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


def _trades_of(venue: str, message: Any) -> list[dict[str, Any]]:
    """The bare decode: the frame's trade objects, no validation, no exactness checks."""
    if venue == "coinbase":
        return [message] if message.get("type") == "match" else []
    if venue == "binance":
        data = message.get("data", {})
        return [data] if data.get("e") == "trade" else []
    if venue == "kraken":
        return message.get("data", []) if message.get("channel") == "trade" else []
    return [m for m in message if m.get("T") == "t"] if isinstance(message, list) else []


_SYMBOL_FIELD = {"coinbase": "product_id", "binance": "s", "kraken": "symbol", "alpaca": "S"}


async def bare_run(venue: str, url: str, kafka: KafkaSettings, topic: str, n: int) -> float:
    """receive → orjson.loads → produce, with the same producer settings and subscription.
    (orjson turns Kraken's and Alpaca's JSON-number prices into floats: the bare loop gets
    that speed-up, the connector pays for exact decimals.)"""
    producer = make_producer(
        kafka, client_id="bench-bare", linger_ms=LINGER_MS, max_batch_size=256 * 1024
    )
    await producer.start()
    protocol = protocol_for(venue, alpaca_key_id="sim-key", alpaca_secret_key="sim-secret")
    symbols = list(SYMBOLS[venue])
    count = 0
    first_at: float | None = None
    pending: list[Any] = []
    field = _SYMBOL_FIELD[venue]
    try:
        async with connect(protocol.url(url, symbols), compression=None, max_size=1 << 22) as ws:
            for message in protocol.opening(symbols):
                await ws.send(message)
            async for raw in ws:
                trades = _trades_of(venue, orjson.loads(raw))
                if trades and first_at is None:
                    first_at = time.perf_counter()
                for trade in trades:
                    pending.append(
                        await producer.send(topic, orjson.dumps(trade), trade[field].encode())
                    )
                count += len(trades)
                if count >= n:
                    break
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - (first_at or 0.0)
    finally:
        await producer.stop()
    return count / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trades", type=int, default=100_000, help="per venue and run")
    parser.add_argument("--venues", default=",".join(SYMBOLS))
    args = parser.parse_args()
    n = 5_000 if args.quick else args.trades
    venues = [v.strip() for v in args.venues.split(",") if v.strip()]
    kafka = KafkaSettings()
    topic = f"bench.market_feeds.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.kafka_bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    simulator = subprocess.Popen(  # noqa: ASYNC220  # started once, before timing
        [sys.executable, "-m", "market_feeds.simulator", "--port", str(PORT), "--rate", "0",
         "--burst", str(n)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    figures = []
    try:
        await asyncio.sleep(1.5)  # the simulator's start-up (imports, bind)
        for venue in venues:
            url = f"ws://127.0.0.1:{PORT}{PATHS[venue]}"
            cpu = time.process_time()
            bare = await bare_run(venue, url, kafka, topic, n)
            bare_cpu_us = (time.process_time() - cpu) / n * 1e6
            cpu = time.process_time()
            feed = await connector_run(venue, url, kafka, topic, n)
            feed_cpu_us = (time.process_time() - cpu) / n * 1e6
            ratio = feed / bare
            load = os.getloadavg()[0]
            # CPU per trade (this process: receive, decode, produce) is steadier than wall
            # time on a shared machine: it says what the connector costs over the bare loop.
            print(
                f"{venue}: connector {feed:,.0f} trades/s ({feed_cpu_us:.1f} us CPU/trade), "
                f"bare loop {bare:,.0f} trades/s ({bare_cpu_us:.1f} us CPU/trade), "
                f"ratio {ratio:.2f}x (n={n}, load {load:.2f})",
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
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
        await admin.delete_topics([topic])
        await admin.close()
    print(json.dumps({"figures": figures}))


if __name__ == "__main__":
    asyncio.run(main())
