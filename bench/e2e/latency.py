"""End-to-end latency: API `POST /v1/reviews` → record on `reviews.enriched.v1`.

Open loop at a constant rate (default 1,000 reviews/s for 20 s): each request is launched
at its scheduled time and latency is measured from that time (no coordinated omission).
Baseline: the bare API round trip (POST → 201) measured in the same run.
Targets: p50 ≤ 150 ms, p99 ≤ 500 ms. Prints the bench/README.md JSON line last.
Needs the stack and the services (`uv run pulse up`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli" / "src"))
from contracts import topics
from pulse_cli.stackenv import repo_root, stack_env


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run(rate: float, duration_s: float, drain_s: float) -> dict[str, object]:
    env = stack_env(repo_root())
    api = env.get("PULSE_API_URL", "http://127.0.0.1:58000")
    key = env["PULSE_API_KEY"]
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
    run_id = uuid.uuid4().hex[:8]
    sku = f"BENCH-{run_id.upper()}"

    sent_at: dict[str, float] = {}  # review id → scheduled send time (monotonic)
    acked_at: dict[str, float] = {}  # review id → when its 201 arrived
    api_latency: list[float] = []
    arrived: dict[str, float] = {}
    errors: dict[str, int] = {}

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    tps = [
        TopicPartition(topics.REVIEWS_ENRICHED.name, p)
        for p in range(topics.REVIEWS_ENRICHED.partitions)
    ]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)

    async def consume(stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    rid = (record.key or b"").decode(errors="replace")
                    if rid in sent_at and rid not in arrived:
                        arrived[rid] = now

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(
        base_url=api, headers={"X-API-Key": key}, timeout=10.0, limits=limits
    ) as client:
        await client.post(
            "/v1/products",
            headers={"Idempotency-Key": f"{run_id}-p"},
            json={"sku": sku, "name": "Bench kettle", "brand": "Bench", "category": "bench"},
        )
        stop = asyncio.Event()
        consumer_task = asyncio.create_task(consume(stop))
        gate = asyncio.Semaphore(512)

        async def post(n: int, scheduled: float) -> None:
            async with gate:
                try:
                    response = await client.post(
                        "/v1/reviews",
                        headers={"Idempotency-Key": f"{run_id}-{n}"},
                        json={
                            "product_sku": sku,
                            "rating": 4,
                            "title": "bench",
                            "body": f"Works well, review {n} of run {run_id}.",
                            "author_name": "Bench",
                            "locale": "en",
                        },
                    )
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    return
                if response.status_code != 201:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                    return
                api_latency.append(time.monotonic() - scheduled)
                rid = str(response.json()["id"])
                sent_at[rid] = scheduled
                acked_at[rid] = time.monotonic()

        total = int(rate * duration_s)
        t0 = time.monotonic()
        tasks = []
        for n in range(total):
            scheduled = t0 + n / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(n, scheduled)))
        await asyncio.gather(*tasks)
        achieved = len(tasks) / max(1e-9, time.monotonic() - t0)
        deadline = time.monotonic() + drain_s
        # Polls a dict the consumer task fills.
        while len(arrived) < len(sent_at) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        stop.set()
        await consumer_task
    await consumer.stop()

    e2e = [(arrived[r] - sent_at[r]) * 1000 for r in arrived]
    # After the API's 201: the CDC + stream-processing part alone (may be ~0 or negative
    # when the enriched record lands before the HTTP response is read; clamped at 0).
    pipeline = [max(0.0, arrived[r] - acked_at[r]) * 1000 for r in arrived]
    base = [v * 1000 for v in api_latency]
    p50, p99 = percentile(e2e, 50), percentile(e2e, 99)
    b50, b99 = percentile(base, 50), percentile(base, 99)
    lost = len(sent_at) - len(arrived)

    def figure(
        name: str, value: float | None, baseline: float | None, target: str, ok: bool
    ) -> dict[str, object]:
        if value is None or baseline is None:
            return {
                "name": name,
                "value": value,
                "unit": "ms",
                "baseline": baseline,
                "ratio": None,
                "target": target,
                "pass": False,
            }
        return {
            "name": name,
            "value": round(value, 1),
            "unit": "ms",
            "baseline": round(baseline, 1),
            "ratio": round(value / baseline, 2) if baseline else None,
            "target": target,
            "pass": ok,
        }

    print(
        f"rate asked {rate}/s achieved {achieved:.0f}/s; accepted {len(sent_at)}, "
        f"arrived {len(arrived)}, missing {lost}, errors {errors}",
        file=sys.stderr,
    )
    return {
        "figures": [
            figure(
                "API POST -> reviews.enriched.v1 p50",
                p50,
                b50,
                "p50 <= 150 ms",
                p50 is not None and p50 <= 150,
            ),
            figure(
                "API POST -> reviews.enriched.v1 p99",
                p99,
                b99,
                "p99 <= 500 ms",
                p99 is not None and p99 <= 500,
            ),
            {
                "name": "API 201 -> reviews.enriched.v1 p99 (pipeline only)",
                "value": None if not pipeline else round(percentile(pipeline, 99) or 0, 1),
                "unit": "ms",
                "baseline": None,
                "ratio": None,
                "target": None,
                "pass": None,
            },
            {
                "name": "reviews/s offered (achieved)",
                "value": round(achieved, 1),
                "unit": "req/s",
                "baseline": rate,
                "ratio": round(achieved / rate, 3),
                "target": f">= {rate * 0.95:g}/s",
                "pass": achieved >= rate * 0.95,
            },
            {
                "name": "reviews not enriched within drain",
                "value": lost,
                "unit": "records",
                "baseline": None,
                "ratio": None,
                "target": "0",
                "pass": lost == 0 and not errors and bool(sent_at),
            },
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--drain-s", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="100/s for 3 s")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.duration_s, args.drain_s = 100.0, 3.0, 15.0
    print(json.dumps(asyncio.run(run(args.rate, args.duration_s, args.drain_s))))


if __name__ == "__main__":
    main()
