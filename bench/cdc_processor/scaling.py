"""cdc_processor scale-out on the real broker, each worker a process of its own (`_worker.py`,
the real app and agents on bench topics, ports 62001-62009).

  uv run python bench/cdc_processor/scaling.py join [--claims 200000 --claims 1000000]
  uv run python bench/cdc_processor/scaling.py workers [--reviews 20000 --ticks 40000]

join: pre-load the review tables' changelogs with N dedup claims and a catalogue
(bench/e2e/_state.py, in the partitions the processor keeps them in), start worker A and, once
it serves, worker B in the same group, under a trickle of reviews of the catalogue's products.
Each worker's join time is from its process start to its first enriched review (its
/metrics): A recovers every partition, B only those the rebalance gives it. Two state sizes
side by side show how the join grows with the state, the first-worker time being the
baseline (the whole state, as every worker loaded it with the global tables).

workers: the same backlog of reviews (with their products) and quotes, drained by 1, 2 and 3
workers in turn, each count with a fresh app id and fresh topics that the backlog is written
to once its group has settled (every worker ready, no rebalance: a worker joining mid-drain
would make the others replay). Time from the first record written to the last review enriched
and quote handled; the workers' CPU (from /proc) beside it shows whether the machine or the
design stops the scaling: the 1-worker run is the baseline of the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from cdc_processor.app import redirected_outputs
from contracts import topics
from pulse_cli.processes import stop_process
from pulse_cli.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
run = load_script(REPO / "bench" / "cdc_processor" / "run.py", "pulse_bench_cdc_run")
_state = load_script(REPO / "bench" / "e2e" / "_state.py", "pulse_bench_state")
_services = load_script(REPO / "bench" / "e2e" / "_services.py", "pulse_bench_services")

FIRST_PORT = 62001  # this bench's ports: 62001-62009 (the `state` range, 62000-62099)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Worker:
    """`_worker.py` as a subprocess; its counters read from its /metrics."""

    def __init__(self, env: dict[str, str], *, app_id: str, port: int, routes: dict[str, Any]):
        self.port = port
        self.log = Path(tempfile.gettempdir()) / f"{app_id}-{port}.log"
        data = Path(tempfile.mkdtemp(prefix="cdc-scaling-"))
        self.env = {
            **env,
            "CDC_APP_ID": app_id,
            "CDC_HTTP_PORT": str(port),
            "CDC_LOG_JSON": "false",
            "CDC_PSEUDONYM_KEY": "bench-key",
            "CDC_DATA_DIR": str(data),
        }
        self.routes = routes
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "cdc_processor" / "_worker.py"),
             json.dumps(self.routes)],
            cwd=REPO, env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    async def counter(self, client: httpx.AsyncClient, name: str, **labels: str) -> float:
        """The sum of counter `name` over the series matching `labels`; 0 before it serves."""
        try:
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        except httpx.HTTPError:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{"):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def cpu_s(self) -> float:
        if self.proc is None:
            return 0.0
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def enriched(worker: Worker, client: httpx.AsyncClient) -> Any:
    return worker.counter(client, "pulse_reviews_enriched_total", op="upsert")


async def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    admin = run.AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(names))
    finally:
        await admin.close()


async def join(env: dict[str, str], *, claims: int, products_n: int, rate: float) -> dict[str, Any]:
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    tag = uuid.uuid4().hex[:6]
    app_id = f"bench-join-{tag}"
    reviews = f"bench.join.{tag}.reviews"
    outputs = redirected_outputs(f"bench.join.{tag}.out")
    await run.create_topics(bootstrap, [reviews, *outputs.values()])
    t = time.monotonic()
    written = await _state.preload(
        bootstrap, app_id, claims=claims, products_n=products_n, now_s=time.time()
    )
    preload_s = time.monotonic() - t
    routes = {"sources": {"reviews-cdc": reviews}, "outputs": outputs}
    a = Worker(env, app_id=app_id, port=FIRST_PORT, routes=routes)
    b = Worker(env, app_id=app_id, port=FIRST_PORT + 1, routes=routes)
    catalogue = [_state.PRODUCT_ID_BASE + i for i in range(products_n)]
    stop = asyncio.Event()

    async def trickle() -> None:
        # `rate` reviews a second of random catalogue products: every partition gets some.
        n = 0
        while not stop.is_set():
            chosen = [random.choice(catalogue) for _ in range(10)]
            batch = run.review_envelopes(10, first=n, products=chosen)
            await run.produce(bootstrap, reviews, batch)
            n += 10
            await asyncio.sleep(10 / rate)

    async def first_output(worker: Worker, client: httpx.AsyncClient) -> float:
        deadline = worker.started + 900
        while time.monotonic() < deadline:
            if await enriched(worker, client) > 0:
                return time.monotonic() - worker.started
            if worker.proc is not None and worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {worker.log}")
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no output within 900 s; see {worker.log}")

    feeding = asyncio.create_task(trickle())
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            a.start()
            a_s = await first_output(a, client)
            await asyncio.sleep(3)  # A settled and serving
            b.start()
            b_s = await first_output(b, client)
    finally:
        stop.set()
        await feeding
        b.stop()
        a.stop()
        await _services.drop_state(bootstrap, app_id)
        await delete_topics(bootstrap, [reviews, *outputs.values()])
    return {
        "claims": claims,
        "products": products_n,
        "records": written,
        "preload_s": preload_s,
        "first_worker_s": a_s,
        "joining_worker_s": b_s,
        "load": load(),
    }


async def workers(
    env: dict[str, str], *, reviews_n: int, ticks_n: int, products_n: int, counts: Sequence[int]
) -> list[dict[str, Any]]:
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    catalogue = range(1, products_n + 1)
    backlog = {
        "products": run.product_envelopes(catalogue),
        "reviews-cdc": run.review_envelopes(reviews_n, products=catalogue),
        "quotes": run.quotes(ticks_n),
    }
    results = []
    for count in counts:
        # The same records on fresh topics for each count, written once the group has settled:
        # a worker joining mid-drain would rebalance the others and replay their batches.
        tag = uuid.uuid4().hex[:6]
        app_id = f"bench-scale-{tag}-{count}"
        sources = {route: f"bench.scale.{tag}.{route}" for route in backlog}
        outputs = redirected_outputs(f"bench.scale.{tag}.out")
        await run.create_topics(bootstrap, [*sources.values(), *outputs.values()])
        routes = {"sources": sources, "outputs": outputs}
        group = [
            Worker(env, app_id=app_id, port=FIRST_PORT + 2 + i, routes=routes) for i in range(count)
        ]
        try:
            results.append(await drain(group, backlog, sources, reviews_n, ticks_n, bootstrap))
        finally:
            for worker in group:
                worker.stop()
            await _services.drop_state(bootstrap, app_id)
            await delete_topics(bootstrap, [*sources.values(), *outputs.values()])
        print(json.dumps(results[-1]), file=sys.stderr)
    return results


async def settled(group: list[Worker], client: httpx.AsyncClient) -> None:
    """Every worker ready (its /readyz, served once Faust has recovered: partitions
    assigned, not rebalancing) three polls a second apart in a row."""
    calm = 0
    deadline = time.monotonic() + 300
    while calm < 3 and time.monotonic() < deadline:
        ready = 0
        for worker in group:
            try:
                response = await client.get(f"http://127.0.0.1:{worker.port}/readyz")
                ready += response.status_code == 200
            except httpx.HTTPError:
                pass
        calm = calm + 1 if ready == len(group) else 0
        await asyncio.sleep(1.0)


async def drain(
    group: list[Worker],
    backlog: dict[str, list[tuple[bytes, bytes]]],
    sources: dict[str, str],
    reviews_n: int,
    ticks_n: int,
    bootstrap: str,
) -> dict[str, Any]:
    for worker in group:
        worker.start()
    async with httpx.AsyncClient(timeout=2.0) as client:
        await settled(group, client)
        cpu_before = [w.cpu_s() for w in group]
        writing = time.monotonic()
        for route, records in backlog.items():  # products first: the reviews join them
            await run.produce(bootstrap, sources[route], records)
        written_s = time.monotonic() - writing
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done_reviews = sum([await enriched(w, client) for w in group])
            done_ticks = sum(
                [
                    await w.counter(client, "pulse_events_in_total", topic=sources["quotes"])
                    for w in group
                ]
            )
            if done_reviews >= reviews_n and done_ticks >= ticks_n:
                break
            await asyncio.sleep(0.2)
        else:
            raise TimeoutError(f"not drained: {done_reviews} reviews, {done_ticks} ticks")
    end = time.monotonic()
    cpu = [w.cpu_s() - c for w, c in zip(group, cpu_before, strict=True)]
    wall = end - writing
    return {
        "workers": len(group),
        "drain_s": wall,
        "write_s": written_s,
        "records_per_s": (reviews_n + ticks_n) / wall,
        "reviews_per_s": reviews_n / wall,
        "worker_cpu_s": [round(c, 1) for c in cpu],
        "cores_used": sum(cpu) / wall,
        "load": load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    j = sub.add_parser("join")
    j.add_argument("--claims", type=int, action="append")
    j.add_argument("--products", type=int, default=50_000)
    j.add_argument("--rate", type=float, default=100.0, help="trickle, reviews/s")
    w = sub.add_parser("workers")
    w.add_argument("--reviews", type=int, default=20_000)
    w.add_argument("--ticks", type=int, default=40_000)
    w.add_argument("--products", type=int, default=1_000)
    w.add_argument("--counts", default="1,2,3")
    args = parser.parse_args()
    env = run.env()
    env.setdefault("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{started}, load {load()}, {os.cpu_count()} cores, {topics.PARTITIONS} partitions")
    if args.command == "join":
        for claims in args.claims or [200_000, 1_000_000]:
            r = asyncio.run(join(env, claims=claims, products_n=args.products, rate=args.rate))
            print(
                f"join: {r['claims']:,} claims + {r['products']:,} products "
                f"({r['records']:,} changelog records, pre-load {r['preload_s']:.0f} s): "
                f"first worker (all partitions) {r['first_worker_s']:.1f} s, joining worker "
                f"{r['joining_worker_s']:.1f} s, ratio "
                f"{r['joining_worker_s'] / r['first_worker_s']:.2f} (load {r['load']})"
            )
        return
    counts = [int(c) for c in args.counts.split(",")]
    results = asyncio.run(
        workers(
            env,
            reviews_n=args.reviews,
            ticks_n=args.ticks,
            products_n=args.products,
            counts=counts,
        )
    )
    base = next((r for r in results if r["workers"] == 1), results[0])["records_per_s"]
    for r in results:
        print(
            f"workers {r['workers']}: {args.reviews:,} reviews + {args.ticks:,} quotes drained "
            f"in {r['drain_s']:.1f} s, {r['records_per_s']:,.0f} records/s "
            f"({r['reviews_per_s']:,.0f} reviews/s), ratio {r['records_per_s'] / base:.2f} vs 1 "
            f"worker; CPU {r['worker_cpu_s']} s = {r['cores_used']:.2f} cores; the backlog "
            f"written in the first {r['write_s']:.1f} s (load {r['load']})"
        )


if __name__ == "__main__":
    main()
