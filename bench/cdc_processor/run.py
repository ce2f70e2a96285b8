"""cdc_processor throughput vs a bare aiokafka consume → decode → produce loop, same broker,
same input topic, same run.

  uv run python bench/cdc_processor/run.py [--reviews N] [--ticks N] [--batch N]
                                           [--runtime service|plain]

Review path: Debezium review envelopes → the `reviews-cdc` agent (decode, repartition by
product) → `reviews-by-product` (join, on to the SKU's partition; scrub, score, language,
pseudonym, dedup/burst tables) → enriched topic. Tick path: quotes → the
`quotes` agent (candle table write per tick) → candles. Trade path (`--paths trades`):
market_feeds' TradeExecuted records → the `trades` agent → candles (the bare loop decodes
them with the service's own `decode_trade`). Each faust run is the real agent code
on the real broker, with its outputs redirected to throw-away bench topics.

Both sides are timed the same way: from the first input record handled to the moment the
producer has the last output acknowledged by Kafka (the bare loop's flush after its last batch;
the agent's producer flushed after the batch that reaches N), and both produce with the same
key partitioner (servicekit's `Murmur2Partitioner`, which the agent's app uses).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cdc_processor import agents, decoding
from cdc_processor.app import create_app, redirected_outputs
from cdc_processor.settings import CdcSettings
from contracts import topics
from contracts.debezium import decode_change_event
from contracts.events import QuotePolled
from pulse_cli.stackenv import read_env_file
from servicekit import metrics
from servicekit.kafka_auth import env_security_options
from servicekit.partitioner import Murmur2Partitioner
from servicekit.settings import KafkaSettings

CPU_US: dict[str, float] = {}  # "bare|agent <topic>" → process CPU µs per record
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
BODIES = [
    "The kettle boils fast but the lid feels cheap. Contact me at {n}@example.com if needed.",
    "Terrible. It leaked on day two and support never called back on +44 20 7946 {n:04d}.",
    "Bouilloire rapide et silencieuse, je recommande. Commande n° {n} reçue en 48h.",
    "Der Wasserkocher ist laut und nach {n} Tagen kaputt. Sehr enttäuscht, Rückgabe läuft.",
    "Great value for 29.99, arrived on 2024-03-15, five stars from me and my family.",
    "Not bad, not great. The handle gets hot after a few minutes, order #{n}.",
]
LOCALES = ["en", "en", "fr", "de", None, None]


def env() -> dict[str, str]:
    path = Path(os.environ.get("PULSE_STACK_DIR", ".stack")) / "env"
    return {**read_env_file(path), **os.environ}


def review_envelopes(
    n: int, *, first: int = 0, products: Sequence[int] = range(1, 11)
) -> list[tuple[bytes, bytes]]:
    """`n` review inserts (ids from `first`), over `products` in turn."""
    out = []
    for i in range(first, first + n):
        rid = str(uuid.UUID(int=i + 1))
        at = (T0 + timedelta(seconds=i)).isoformat()
        row = {
            "id": rid,
            "product_id": products[i % len(products)],
            "rating": 1 + i % 5,
            "title": "Review",
            "body": BODIES[i % len(BODIES)].format(n=i),
            "author_name": f"Author {i % 977}",
            "author_email": f"user{i % 977}@example.com",
            "locale": LOCALES[i % len(LOCALES)],
            "source": "app",
            "external_id": None,
            "created_at": at,
            "updated_at": at,
        }
        value = {
            "before": None,
            "after": row,
            "op": "c",
            "ts_ms": 1,
            "source": {
                "connector": "postgresql",
                "name": "pulse",
                "ts_ms": 1772355600000 + i,
                "snapshot": "false",
                "db": "pulse",
                "schema": "public",
                "table": "reviews",
                "lsn": 1000 + i,
            },
        }
        out.append((orjson.dumps({"id": rid}), orjson.dumps(value)))
    return out


def trades(n: int) -> list[tuple[bytes, bytes]]:
    """TradeExecuted records as market_feeds writes them (records.encode_trade's shape)."""
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD"]
    out = []
    for i in range(n):
        symbol = symbols[i % len(symbols)]
        at = T0 + timedelta(milliseconds=2 * i)
        value = {
            "event_id": f"coinbase:{symbol}:{i}",
            "venue": "coinbase",
            "symbol": symbol,
            "venue_symbol": symbol,
            "asset_class": "crypto",
            "trade_id": str(i),
            "price": f"{60000 + (i * 7) % 500}.{i % 100:02d}",
            "size": f"0.{1 + i % 9:04d}",
            "side": "buy" if i % 2 else "sell",
            "event_time": at,
            "received_at": at + timedelta(milliseconds=3),
            "sequence": i,
        }
        out.append((symbol.encode(), orjson.dumps(value)))
    return out


def product_envelopes(products: Sequence[int] = range(1, 11)) -> list[tuple[bytes, bytes]]:
    out = []
    for pid in products:
        row = {
            "id": pid,
            "sku": f"BENCH-{pid}",
            "name": f"Kettle {pid}",
            "brand": "Acme",
            "category": "kitchen",
        }
        value = {
            "before": None,
            "after": row,
            "op": "c",
            "source": {"ts_ms": 1, "lsn": pid, "table": "products"},
        }
        out.append((orjson.dumps({"id": pid}), orjson.dumps(value)))
    return out


def quotes(n: int) -> list[tuple[bytes, bytes]]:
    symbols = ["AAPL", "MSFT", "BTC-USD", "ETH-USD", "NVDA", "SAP"]
    out = []
    for i in range(n):
        symbol = symbols[i % len(symbols)]
        at = T0 + timedelta(milliseconds=20 * i)
        price = f"{100 + (i * 7) % 50}.{i % 100:02d}"
        value = {
            "symbol": symbol,
            "asset_class": "crypto" if "-" in symbol else "equity",
            "price": price,
            "size": str(1 + i % 5),
            "event_time": at.isoformat(),
            "source": "bench",
            "polled_at": at.isoformat(),
        }
        out.append((symbol.encode(), orjson.dumps(value)))
    return out


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **env_security_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, topics.PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **env_security_options(),
        linger_ms=50,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def bare_loop(bootstrap: str, topic: str, out_topic: str, n: int, decode: Any) -> float:
    """consume → decode → produce, committing like a worker would; records/s over n, from the
    first record consumed to the acknowledgement of the last one produced."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        **env_security_options(),
        group_id=f"bench-bare-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **env_security_options(),
        linger_ms=5,
        acks="all",
        partitioner=Murmur2Partitioner(),  # the agent's (cdc_processor.app)
    )
    await consumer.start()
    await producer.start()
    seen, started, cpu_started, ended, cpu_ended = 0, None, 0.0, 0.0, 0.0
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for messages in batch.values():
                for message in messages:
                    if started is None:
                        started = time.perf_counter()
                        cpu_started = time.process_time()
                    decoded = decode(message.value)
                    await producer.send(out_topic, key=message.key, value=orjson.dumps(decoded))
                    seen += 1
            if batch:
                await producer.flush()  # every output of the batch acknowledged
                ended, cpu_ended = time.perf_counter(), time.process_time()
                await consumer.commit()
        assert started is not None
        elapsed = ended - started
        CPU_US[f"bare {topic}"] = (cpu_ended - cpu_started) / n * 1e6
    finally:
        await producer.stop()
        await consumer.stop()
    return n / elapsed


async def faust_run(
    bootstrap: str,
    route: str,
    topic: str,
    n: int,
    prefix: str,
    preload: tuple[str, str, int] | None = None,
    batch_max: int = 500,
    kafka: KafkaSettings | None = None,
    done: Callable[[], float] | None = None,
) -> float:
    """The real agent on `topic`; records/s from its first processed record to the
    acknowledgement of every output sent up to its n-th. `kafka`: how the agent connects
    (bench/kafka_security: over TLS + SCRAM); default the environment's settings on
    `bootstrap`. `done`: how many of the n are through, when the source agent is not the
    last step (reviews are enriched after their repartition hops); default the records the
    source agent has handled."""
    settings = CdcSettings(
        app_id=f"{prefix}-{route}-{uuid.uuid4().hex[:6]}",
        http_port=0,
        log_json=False,
        data_dir=Path(tempfile.mkdtemp(prefix="cdc-bench-")),
        pseudonym_key="bench-key",
        batch_max=batch_max,
    )
    sources = {route: topic}
    if preload:
        sources[preload[0]] = preload[1]
    outputs = redirected_outputs(f"{prefix}.out")
    kafka = kafka or KafkaSettings(kafka_bootstrap_servers=bootstrap)
    p = create_app(settings, kafka, sources=sources, outputs=outputs)
    counts = {"n": 0, "first": 0.0, "last": 0.0, "cpu_first": 0.0, "cpu_last": 0.0}
    original = agents.process_batch

    async def counting_batch(
        processor: Any, events: Any, handle: Any, stream: Any = None, after: Any = None
    ) -> None:
        if counts["n"] == 0:
            counts["first"] = time.perf_counter()
            counts["cpu_first"] = time.process_time()
        t = time.perf_counter()
        await original(processor, events, handle, stream, after)
        counts["busy"] = counts.get("busy", 0.0) + time.perf_counter() - t
        counts["batches"] = counts.get("batches", 0) + 1
        if done is None:
            counts["n"] += sum(1 for event in events if event.message.topic == topic)
        else:
            counts["n"] = done() - done_before
        if counts["n"] >= n and not counts.get("flushed"):
            # The bare loop's end: its last output acknowledged. The agent sends without
            # waiting (Faust flushes before it commits), so wait for it here, once; batches
            # after it are not timed.
            flush_started = time.perf_counter()
            await processor.app.producer.flush()
            counts["flush_s"] = time.perf_counter() - flush_started
            counts["flushed"] = 1
            counts["last"] = time.perf_counter()
            counts["cpu_last"] = time.process_time()

    done_before = 0.0 if done is None else done()
    agents.process_batch = counting_batch
    try:
        await p.app.start()
        deadline = time.monotonic() + 600
        while counts["n"] < n and time.monotonic() < deadline:  # noqa: ASYNC110  # polls a counter
            await asyncio.sleep(0.2)
        assert counts["n"] >= n, f"faust processed {counts['n']} of {n}"
    finally:
        agents.process_batch = original
        await p.app.stop()
    wall = counts["last"] - counts["first"]
    print(
        f"agent {route}: {counts.get('batches', 0):.0f} batches, "
        f"{counts.get('busy', 0.0) / wall:.0%} of the time in process_batch, "
        f"the final flush {counts.get('flush_s', 0.0) * 1000:.0f} ms of {wall:.2f} s"
    )
    CPU_US[f"agent {topic}"] = (counts["cpu_last"] - counts["cpu_first"]) / n * 1e6
    return n / (counts["last"] - counts["first"])


def reviews_enriched() -> float:
    """Reviews enriched so far in this process (the flow's own counter): the last step of the
    review path, after the source agent and the repartition hops."""
    return float(metrics.REVIEWS_ENRICHED.labels("upsert")._value.get())


def decode_review(value: bytes) -> Any:
    change = decode_change_event(value)
    return change.after if change else None


def decode_trade_record(value: bytes) -> Any:
    tick = decoding.decode_trade(value)
    assert tick is not None
    return {"symbol": tick.symbol, "price": str(tick.price), "size": str(tick.size)}


def decode_quote(value: bytes) -> Any:
    return QuotePolled.model_validate_json(value).model_dump(mode="json")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reviews", type=int, default=30_000)
    parser.add_argument("--ticks", type=int, default=60_000)
    parser.add_argument(
        "--batch", type=int, default=CdcSettings().batch_max, help="CDC_BATCH_MAX for the agents"
    )
    parser.add_argument("--quick", action="store_true", help="small N (smoke runs)")
    parser.add_argument("--paths", default="reviews,ticks", help="which paths to measure")
    parser.add_argument(
        "--runtime",
        choices=("service", "plain"),
        default="service",
        help="service: the service's event loop (CDC_EVENT_LOOP) and GC tuning, both sides;"
        " plain: asyncio, default GC",
    )
    args = parser.parse_args()
    paths = set(args.paths.split(","))
    if args.quick:
        args.reviews, args.ticks = min(args.reviews, 1_000), min(args.ticks, 3_000)
    bootstrap = env().get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
    prefix = f"bench.cdc.{uuid.uuid4().hex[:8]}"
    t_reviews, t_products, t_quotes = f"{prefix}.reviews", f"{prefix}.products", f"{prefix}.quotes"
    t_trades = f"{prefix}.trades"
    outputs = redirected_outputs(f"{prefix}.out").values()
    await create_topics(
        bootstrap, [t_reviews, t_products, t_quotes, t_trades, f"{prefix}.bare.out", *outputs]
    )
    await produce(bootstrap, t_products, product_envelopes())
    await produce(bootstrap, t_reviews, review_envelopes(args.reviews))
    await produce(bootstrap, t_quotes, quotes(args.ticks))
    if "trades" in paths:
        await produce(bootstrap, t_trades, trades(args.ticks))

    figures: list[dict[str, Any]] = []
    if "reviews" in paths:
        bare = await bare_loop(
            bootstrap, t_reviews, f"{prefix}.bare.out", args.reviews, decode_review
        )
        agent = await faust_run(
            bootstrap,
            "reviews-cdc",
            t_reviews,
            args.reviews,
            prefix,
            preload=("products", t_products, 10),
            batch_max=args.batch,
            done=reviews_enriched,
        )
        print(
            f"reviews: bare loop {bare:,.0f}/s, agent {agent:,.0f}/s, "
            f"ratio {agent / bare:.2f} (targets: >= 0.60 and >= 10,000/s)"
        )
        figures += [
            figure("cdc reviews enriched per worker", agent, bare, 0.6, ">= 0.6x bare loop"),
            figure(
                "cdc reviews enriched per worker (absolute)",
                agent,
                None,
                None,
                ">= 10000/s",
                passed=agent >= 10_000,
            ),
        ]
    if "ticks" in paths:
        bare = await bare_loop(bootstrap, t_quotes, f"{prefix}.bare.out", args.ticks, decode_quote)
        agent = await faust_run(
            bootstrap, "quotes", t_quotes, args.ticks, prefix, batch_max=args.batch
        )
        print(
            f"ticks:   bare loop {bare:,.0f}/s, agent {agent:,.0f}/s, "
            f"ratio {agent / bare:.2f} (target: >= 0.70)"
        )
        figures.append(
            figure("cdc ticks to candles per worker", agent, bare, 0.7, ">= 0.7x bare loop")
        )
    if "trades" in paths:
        bare = await bare_loop(
            bootstrap, t_trades, f"{prefix}.bare.out", args.ticks, decode_trade_record
        )
        agent = await faust_run(
            bootstrap, "trades", t_trades, args.ticks, prefix, batch_max=args.batch
        )
        print(
            f"trades:  bare loop {bare:,.0f}/s, agent {agent:,.0f}/s, "
            f"ratio {agent / bare:.2f} (issue 23: >= 5,000/s per worker)"
        )
        figures.append(
            figure(
                "cdc trades to candles per worker",
                agent,
                bare,
                None,
                ">= 5,000/s",
                passed=agent >= 5_000,
            )
        )
    for name, us in CPU_US.items():
        kind, topic = name.split(" ", 1)
        print(f"cpu {kind} {topic.rsplit('.', 1)[-1]}: {us:.1f} us/record")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the bench process (bare loops and agents): {peak_mb:.0f} MB")
    print(orjson.dumps({"figures": figures}).decode())


def figure(
    name: str,
    value: float,
    baseline: float | None,
    min_ratio: float | None,
    target: str,
    *,
    passed: bool | None = None,
) -> dict[str, Any]:
    ratio = None if baseline is None else round(value / baseline, 3)
    if passed is None and ratio is not None and min_ratio is not None:
        passed = ratio >= min_ratio
    return {
        "name": name,
        "value": round(value, 1),
        "unit": "records/s",
        "baseline": None if baseline is None else round(baseline, 1),
        "ratio": ratio,
        "target": target,
        "pass": passed,
    }


def runtime_option() -> str:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--runtime", choices=("service", "plain"), default="service")
    return str(pre.parse_known_args()[0].runtime)


if __name__ == "__main__":
    if runtime_option() == "service":
        # What `python -m cdc_processor` runs on, for the whole process (bare loops included).
        from cdc_processor.__main__ import use_event_loop
        from cdc_processor.settings import CdcSettings
        from servicekit.interpreter import tune_gc

        tune_gc()
        use_event_loop(CdcSettings().event_loop)
    asyncio.run(main())
