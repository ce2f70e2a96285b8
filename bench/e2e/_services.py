"""Start/stop the pipeline services for the end-to-end benchmarks, on bench consumer groups.

The stack is shared: other benchmarks write millions of rows, and the services' real consumer
groups can be that far behind (2.5 M records measured on 2026-11-22). A backlog is not the
latency of a review posted now, and draining it takes minutes of both cores. So the bench
runs the services (`pulse up`, all five) on their own consumer groups, fast-forwarded to the
end of their input topics before they start:

- cdc_processor: `CDC_APP_ID=pulse-cdc-e2e-bench` (group and table changelogs), and
  `CDC_AUTO_OFFSET_RESET=latest` for the first run;
- s3_archiver: `ARCHIVER_GROUP_ID=s3_archiver-e2e-bench`.

The real groups (`pulse-cdc-processor`, `s3_archiver`) are never touched. Records the bench
groups skip are still there for the real groups; the archive's object names derive from
offsets, so what the bench archiver writes is what the real one would write.

    uv run python bench/e2e/_services.py up     # empty bench tables, fast-forward, `pulse up`
    uv run python bench/e2e/_services.py up --state-claims 1000000   # a realistic state (_state.py)
    uv run python bench/e2e/_services.py down   # `pulse down --services-only` (never the stack)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from contracts import datasets, topics
from servicekit.kafka_auth import env_security_options

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "cli" / "src"))
from pulse_cli.stackenv import read_env_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _state  # noqa: E402

BENCH_ENV = {
    "CDC_APP_ID": "pulse-cdc-e2e-bench",
    "CDC_AUTO_OFFSET_RESET": "latest",
    "ARCHIVER_GROUP_ID": "s3_archiver-e2e-bench",
}
# A group seen for the first time starts on these (the archiver's datasets; the processor's
# first run is covered by CDC_AUTO_OFFSET_RESET=latest).
FIRST_TOPICS = {"ARCHIVER_GROUP_ID": [d.topic for d in datasets.ALL]}


async def fast_forward(bootstrap: str, group: str, first: list[topics.TopicSpec]) -> int:
    """Commit the group's offsets at the end of each partition it reads; returns what it skips."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **env_security_options(), request_timeout_ms=10_000
    )
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    tps = list(committed) or [
        TopicPartition(spec.name, p) for spec in first for p in range(spec.partitions)
    ]
    if not tps:
        return 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **env_security_options(),
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(tps)  # manual assignment: commits go to the group without joining it
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: int(ends[tp]) for tp in tps})
    finally:
        await consumer.stop()
    return sum(
        max(0, int(ends[tp]) - int(meta.offset))
        for tp, meta in committed.items()
        if meta.offset >= 0
    )


async def drop_state(bootstrap: str, app_id: str, *, timeout_s: float = 60.0) -> list[str]:
    """Delete the bench processor's own table topics (`<app_id>-…-changelog`, its repartition
    topic) so it starts with empty tables. Its review-dedup claims otherwise pile up over bench
    runs (578,000 after one day's runs), and their recovery, read-back and garbage collection
    make later runs slower than earlier ones for reasons that are not the code under test."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **env_security_options(), request_timeout_ms=10_000
    )
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(f"{app_id}-")]
        if names:
            await admin.delete_topics(names)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while names and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
            remaining = set(names) & set(await admin.list_topics())
            if not remaining:
                break
    finally:
        await admin.close()
    return names


def bench_env() -> dict[str, str]:
    """The process environment plus the bench groups (the caller's own settings win)."""
    return {**BENCH_ENV, **os.environ}


def pulse(*args: str, timeout_s: float) -> int:
    try:
        return subprocess.run(
            [sys.executable, "-m", "pulse_cli.main", *args],
            cwd=ROOT,
            env=bench_env(),
            stdout=sys.stderr,
            timeout=timeout_s,
            check=False,
        ).returncode
    except subprocess.TimeoutExpired:
        return -1


def up(
    timeout_s: float = 900.0,
    *,
    keep_state: bool = False,
    state_claims: int = 0,
    state_products: int = 0,
) -> int:
    """Start the services on the bench groups. The bench processor's tables start empty,
    or as left by earlier runs (`keep_state`); `state_claims`/`state_products` then add a
    realistic state for it to recover (`_state.py`)."""
    env = {**read_env_file(ROOT / ".stack" / "env"), **bench_env()}
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
    if not keep_state:
        dropped = asyncio.run(drop_state(bootstrap, env["CDC_APP_ID"]))
        print(f"{env['CDC_APP_ID']}: dropped {len(dropped)} table topics", file=sys.stderr)
    if state_claims or state_products:
        written = asyncio.run(
            _state.preload(
                bootstrap,
                env["CDC_APP_ID"],
                claims=state_claims,
                products_n=state_products,
                now_s=time.time(),
            )
        )
        print(
            f"{env['CDC_APP_ID']}: pre-loaded {state_claims} dedup claims and "
            f"{state_products} products ({written} changelog records)",
            file=sys.stderr,
        )
    for var in ("CDC_APP_ID", "ARCHIVER_GROUP_ID"):
        skipped = asyncio.run(fast_forward(bootstrap, env[var], FIRST_TOPICS.get(var, [])))
        print(f"{var}={env[var]}: fast-forwarded past {skipped} records", file=sys.stderr)
    # The processor answers /healthz only once it has recovered its tables: with a pre-loaded
    # state that is minutes, so `pulse up` waits for as long as this call may take.
    wait = ("--wait-s", f"{timeout_s - 30:g}") if state_claims or state_products else ()
    return pulse("up", *wait, timeout_s=timeout_s)


def down(timeout_s: float = 180.0) -> int:
    return pulse("down", "--services-only", timeout_s=timeout_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="keep the bench processor's tables from earlier runs (default: start empty)",
    )
    parser.add_argument(
        "--state-claims",
        type=int,
        default=0,
        help=f"pre-load this many live dedup claims (realistic: {_state.DEFAULT_CLAIMS:,})",
    )
    parser.add_argument(
        "--state-products",
        type=int,
        default=None,
        help=f"pre-load this many products (default {_state.DEFAULT_PRODUCTS:,} with"
        " --state-claims, else 0)",
    )
    args = parser.parse_args()
    if args.action == "down":
        return down()
    products = args.state_products
    if products is None:
        products = _state.DEFAULT_PRODUCTS if args.state_claims else 0
    return up(keep_state=args.keep_state, state_claims=args.state_claims, state_products=products)


if __name__ == "__main__":
    raise SystemExit(main())
