"""Kafka over TLS + SCRAM-SHA-512 against plaintext, side by side on the same broker in one run:
the tick path (cdc_processor's real `quotes` agent, bench/cdc_processor) and the archiver
(bench/s3_archiver's archiver child, to S3), each measured over the plaintext listener and
over the SASL_SSL one, in A-B-B-A order after an uncounted warm-up run, so drift in the
machine's load falls on both sides; each side's figure is the median of its two runs.

  uv run python bench/kafka_security/run.py [--quick] [--ticks N] [--candles N]

Reads the stack's env (PULSE_STACK_DIR, else .stack): KAFKA_BOOTSTRAP_SERVERS and the
PULSE_KAFKA_TLS_* / PULSE_KAFKA_SCRAM_* the stack writes for its TLS listener. The input is
produced once (plaintext) and read by every run (each with its own consumer group), so both
sides read the same records from the same broker. Target: secured >= 0.8x plaintext.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
from pulse_cli.scripts import load_script
from pulse_cli.stackenv import read_env_file
from servicekit.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[2]
# A first run warms the broker's and the machine's caches and is not counted; then A-B-B-A.
ORDER = ("warm-up", "plain", "secure", "secure", "plain")
TARGET_RATIO = 0.8


def stack_env() -> dict[str, str]:
    path = Path(os.environ.get("PULSE_STACK_DIR") or REPO / ".stack") / "env"
    return {**read_env_file(path), **os.environ}


def secured_variables(env: dict[str, str]) -> dict[str, str]:
    missing = [
        name
        for name in ("PULSE_KAFKA_TLS_BOOTSTRAP_SERVERS", "PULSE_KAFKA_SCRAM_PASSWORD")
        if name not in env
    ]
    if missing:
        sys.exit(
            f"{', '.join(missing)} not in the stack's env: the broker has no TLS listener yet "
            "(python3 deploy/local/stack.py restart kafka)"
        )
    return {
        "KAFKA_BOOTSTRAP_SERVERS": env["PULSE_KAFKA_TLS_BOOTSTRAP_SERVERS"],
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": env["PULSE_KAFKA_SCRAM_USERNAME"],
        "KAFKA_SASL_PASSWORD": env["PULSE_KAFKA_SCRAM_PASSWORD"],
        "KAFKA_SSL_CAFILE": env["PULSE_KAFKA_TLS_CAFILE"],
    }


async def tick_path(env: dict[str, str], secured: dict[str, str], n: int) -> dict[str, float]:
    """Median records/s of the quotes agent per side."""
    cdc = load_script(REPO / "bench" / "cdc_processor" / "run.py", "pulse_bench_cdc")
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = f"bench.kafkasec.{uuid.uuid4().hex[:8]}"
    quotes = f"{prefix}.quotes"
    contract = cdc.topics
    outputs = [
        f"{prefix}.out.{spec.name}"
        for spec in (
            contract.REVIEWS_ENRICHED,
            contract.ALERTS,
            contract.DLQ,
            contract.MARKET_CANDLES,
        )
    ]
    await cdc.create_topics(bootstrap, [quotes, *outputs])
    await cdc.produce(bootstrap, quotes, cdc.quotes(n))
    plain = KafkaSettings(kafka_bootstrap_servers=bootstrap)
    kafka = {
        "warm-up": plain,
        "plain": plain,
        "secure": KafkaSettings(**{k.lower(): v for k, v in secured.items()}),  # type: ignore[arg-type]
    }
    rates: dict[str, list[float]] = {"plain": [], "secure": []}
    for side in ORDER:
        rate = await cdc.faust_run(bootstrap, "quotes", quotes, n, prefix, kafka=kafka[side])
        print(f"ticks   {side:7}: {rate:10,.0f} records/s")
        rates.setdefault(side, []).append(rate)
    return {side: statistics.median(rates[side]) for side in ("plain", "secure")}


def archiver(env: dict[str, str], secured: dict[str, str], n: int) -> dict[str, float]:
    """Median records/s of the archiver (Kafka → Parquet → S3) per side, each run a child."""
    arch = load_script(REPO / "bench" / "s3_archiver" / "run.py", "pulse_bench_archiver")
    n -= n % (arch.PARTITIONS * arch.object_rows(n))
    topic = f"bench.kafkasec.{uuid.uuid4().hex[:8]}.candles"
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    asyncio.run(arch.prepare(topic, n))
    plain = dict(os.environ)
    child_env = {"warm-up": plain, "plain": plain, "secure": {**os.environ, **secured}}
    rates: dict[str, list[float]] = {"plain": [], "secure": []}
    for side in ORDER:
        result = arch.run_child("archiver", topic, n, env=child_env[side])
        rate = result["records"] / result["seconds"]
        print(f"archive {side:7}: {rate:10,.0f} records/s ({result['records']} records)")
        rates.setdefault(side, []).append(rate)
    return {side: statistics.median(rates[side]) for side in ("plain", "secure")}


def figure(name: str, rates: dict[str, float]) -> dict[str, Any]:
    ratio = rates["secure"] / rates["plain"]
    return {
        "name": name,
        "value": round(rates["secure"], 1),
        "unit": "records/s",
        "baseline": round(rates["plain"], 1),
        "ratio": round(ratio, 3),
        "target": f">= {TARGET_RATIO}x plaintext",
        "pass": ratio >= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N (smoke runs)")
    parser.add_argument("--ticks", type=int, default=30_000)
    parser.add_argument("--candles", type=int, default=300_000)
    args = parser.parse_args()
    if args.quick:
        args.ticks, args.candles = min(args.ticks, 3_000), min(args.candles, 6_000)
    env = stack_env()
    secured = secured_variables(env)
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    ticks = asyncio.run(tick_path(env, secured, args.ticks))
    archived = archiver(env, secured, args.candles)
    figures = [
        figure("tick path (quotes agent) over TLS + SCRAM", ticks),
        figure("archiver (Kafka to S3) over TLS + SCRAM", archived),
    ]
    for f in figures:
        print(
            f"{f['name']}: {f['value']:,.0f}/s vs plaintext {f['baseline']:,.0f}/s, "
            f"ratio {f['ratio']:.2f} (target >= {TARGET_RATIO})"
        )
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(orjson.dumps({"figures": figures}).decode())


if __name__ == "__main__":
    main()
