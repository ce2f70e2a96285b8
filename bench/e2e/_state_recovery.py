"""How long the processor takes to recover a pre-loaded state (`_state.py`), and the memory
it takes: the sizing behind `_state.DEFAULT_CLAIMS`.

    uv run python bench/e2e/_state_recovery.py --claims 1000000 --products 50000

Pre-loads the state for a throw-away app id, starts the real processor app in this process
(its review input and outputs on throw-away topics, health on port 61151), waits until its
tables hold the whole state, prints the times and the resident memory gained, then deletes
every topic it made. Not run by `make bench` (leading underscore).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cdc_processor.app import create_app
from cdc_processor.settings import CdcSettings
from contracts import topics
from servicekit.settings import KafkaSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _services
import _state

HTTP_PORT = 61151


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


async def measure(bootstrap: str, *, claims: int, products: int, timeout_s: float) -> None:
    app_id = f"bench-state-recovery-{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    written = await _state.preload(
        bootstrap, app_id, claims=claims, products_n=products, now_s=time.time()
    )
    loaded = time.perf_counter() - started
    print(f"pre-loaded {written} records in {loaded:.1f} s ({written / loaded:,.0f}/s)")
    source = f"{app_id}.reviews"
    outputs = {
        spec.name: f"{app_id}.out.{spec.name}"
        for spec in (topics.REVIEWS_ENRICHED, topics.ALERTS, topics.DLQ, topics.MARKET_CANDLES)
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    own = [source, *outputs.values()]
    await admin.create_topics([NewTopic(t, topics.PARTITIONS, 1) for t in own])
    try:
        p = create_app(
            CdcSettings(
                app_id=app_id,
                http_port=HTTP_PORT,
                data_dir=Path(tempfile.mkdtemp(prefix="state-recovery-")),
                pseudonym_key="bench-key",
            ),
            KafkaSettings(kafka_bootstrap_servers=bootstrap),
            sources={"reviews-cdc": source},
            outputs=outputs,
        )
        tables = {wb.table.name: wb.table for wb in p.tables}
        dedup, catalogue = tables[_state.DEDUP_TABLE], tables[_state.PRODUCTS_TABLE]
        before = rss_mb()
        started = time.perf_counter()
        await p.app.start()
        try:
            while (len(dedup) < claims or len(catalogue) < 2 * products) and (  # noqa: ASYNC110  # polls what the tables hold
                time.perf_counter() - started < timeout_s
            ):
                await asyncio.sleep(0.5)
            took = time.perf_counter() - started
            print(
                f"recovered {len(dedup)} claims and {len(catalogue)} product keys in {took:.1f} s "
                f"({(len(dedup) + len(catalogue)) / took:,.0f} records/s, start-up included); "
                f"memory +{rss_mb() - before:.0f} MB"
            )
        finally:
            await p.app.stop()
    finally:
        await admin.delete_topics(own)
        await admin.close()
        await _services.drop_state(bootstrap, app_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=_state.DEFAULT_CLAIMS)
    parser.add_argument("--products", type=int, default=_state.DEFAULT_PRODUCTS)
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
    asyncio.run(
        measure(bootstrap, claims=args.claims, products=args.products, timeout_s=args.timeout_s)
    )


if __name__ == "__main__":
    main()
