"""PostgreSQL's CPU per coalesced single-review INSERT, by how many reviews one statement holds.

Runs ingest's own write path (`Database.insert_review_rows`, the statement the review writer
sends: sku lookup, idempotency key and review in one CTE, then a commit) one statement at a
time, sequentially, for each batch size, and reads the CPU every PostgreSQL process used
meanwhile from /proc: the client backend and also the walsender that decodes the WAL for
Debezium. The figure per review is what the writer's flushers and linger trade against
(services/ingest/README.md, *Decisions*). Two rounds per size, in alternating order.

Needs the stack's PostgreSQL (`make stack-up`). It writes real reviews for a bench product,
as the other ingest benches do. Not a test: run it by hand, e.g.
`flock /tmp/pulse-bench.lock uv run python bench/ingest/statement_cost.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from ingest.repository import Database, DatabaseConfig, PendingReview
from ingest.schemas import ReviewIn
from pulse_cli.scripts import load_script
from pulse_cli.stackenv import read_env_file

REPO = Path(__file__).resolve().parents[2]


_CPU = load_script(REPO / "bench" / "e2e" / "_cpu.py", "pulse_bench_cpu")  # CPU per part


def postgres_cpu_s() -> float:
    """CPU seconds used so far by the PostgreSQL processes (backends, walsender, the rest)."""
    return sum(cpu for group, cpu in _CPU.snapshot().values() if group == "postgres")


def pending(api_key_id: int, sku: str, now: datetime) -> PendingReview:
    review = ReviewIn.model_validate(
        {"product_sku": sku, "rating": 4, "title": "Bench", "locale": "en",
         "body": "Works as expected, pours well."}
    )  # fmt: skip
    return PendingReview(
        api_key_id=api_key_id,
        key=f"stmt-cost-{uuid.uuid4().hex}",
        fingerprint=os.urandom(32),
        now=now,
        review_id=uuid.uuid4(),
        review=review,
        response=b'{"id":"-","note":"a stored response of a typical size, about 300 bytes"}' * 4,
    )


async def measure(db: Database, api_key_id: int, sku: str, size: int, reviews: int) -> float:
    """PostgreSQL CPU µs per review over ~`reviews` reviews in statements of `size`."""
    statements = max(1, reviews // size)
    before = postgres_cpu_s()
    for _ in range(statements):
        now = datetime.now(UTC)
        rows = await db.insert_review_rows([pending(api_key_id, sku, now) for _ in range(size)])
        assert all(row["inserted"] for row in rows), "a review was not inserted"
    return (postgres_cpu_s() - before) * 1e6 / (statements * size)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,3,7,15,30", help="reviews per statement")
    parser.add_argument("--reviews", type=int, default=3500, help="per size and round")
    args = parser.parse_args()
    env = {**read_env_file(REPO / ".stack" / "env"), **os.environ}
    config = DatabaseConfig(
        dsn=env["DATABASE_URL"], min_size=1, max_size=1, acquire_timeout_s=5,
        statement_timeout_s=5, connect_timeout_s=5,
    )  # fmt: skip
    db = Database(config)
    await db.start()
    try:
        sku = f"BENCH-STMT-{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(env["DATABASE_URL"])
        try:
            await conn.execute(
                "INSERT INTO products (sku, name, created_at, updated_at)"
                " VALUES ($1, 'bench', now(), now())",
                sku,
            )  # fmt: skip
        finally:
            await conn.close()
        api_key_id = min((await db.load_api_keys()).values(), key=lambda k: k.id).id
        sizes = [int(s) for s in args.sizes.split(",")]
        results: dict[int, list[float]] = {size: [] for size in sizes}
        for round_ in range(2):
            for size in sizes if round_ == 0 else reversed(sizes):
                results[size].append(await measure(db, api_key_id, sku, size, args.reviews))
        print(f"# PostgreSQL CPU (all its processes) per review, {args.reviews} reviews per "
              f"size and round, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")  # fmt: skip
        for size, per_review in results.items():
            figures = " / ".join(f"{us:.0f}" for us in per_review)
            print(f"{size:3d} reviews per statement: {figures} µs per review")
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main())
