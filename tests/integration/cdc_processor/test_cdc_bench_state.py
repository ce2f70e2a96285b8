"""The e2e bench's pre-loaded state (bench/e2e/_state.py) on the stack's Kafka: the real
processor, started on it, recovers every claim and product into its tables and joins a review
to a pre-loaded product."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from cdc_processor.app import create_app
from cdc_processor.settings import CdcSettings
from conftest import TopicTail
from contracts import topics
from pulse_cli.scripts import load_script
from servicekit.settings import KafkaSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]
HTTP_PORT = 61150  # this session's range (61100–61199)
CLAIMS, PRODUCTS = 3_000, 100


def _review(review_id: str, product_id: int) -> bytes:
    at = "2026-12-07T06:00:00+00:00"
    row = {
        "id": review_id,
        "product_id": product_id,
        "rating": 4,
        "title": "Fine",
        "body": "Boils quickly and quietly, the lid closes well.",
        "author_name": "Ana",
        "author_email": "ana@example.com",
        "locale": "en",
        "source": "app",
        "external_id": None,
        "created_at": at,
        "updated_at": at,
    }
    source = {
        "connector": "postgresql",
        "name": "pulse",
        "ts_ms": 1,
        "snapshot": "false",
        "db": "pulse",
        "schema": "public",
        "table": "reviews",
        "lsn": 1,
    }
    return orjson.dumps({"before": None, "after": row, "op": "c", "ts_ms": 1, "source": source})


async def test_processor_recovers_the_preloaded_state_and_joins_on_it(
    migrated: dict[str, str], new_topic: Any, tmp_path: Path
) -> None:
    state = load_script(REPO / "bench" / "e2e" / "_state.py", "pulse_bench_state_it")
    services = load_script(REPO / "bench" / "e2e" / "_services.py", "pulse_bench_services_it")
    bootstrap = migrated["KAFKA_BOOTSTRAP_SERVERS"]
    run = uuid.uuid4().hex[:8]
    app_id = f"cdc-it-state-{run}"
    reviews = await new_topic(f"{app_id}.reviews", topics.PARTITIONS)
    outputs = {
        spec.name: await new_topic(f"{app_id}.out.{spec.name}", topics.PARTITIONS)
        for spec in (topics.REVIEWS_ENRICHED, topics.ALERTS, topics.DLQ, topics.MARKET_CANDLES)
    }
    try:
        written = await state.preload(
            bootstrap, app_id, claims=CLAIMS, products_n=PRODUCTS, now_s=time.time()
        )
        assert written == CLAIMS + 2 * PRODUCTS
        p = create_app(
            CdcSettings(
                app_id=app_id, http_port=HTTP_PORT, data_dir=tmp_path, pseudonym_key="it-key"
            ),
            KafkaSettings(kafka_bootstrap_servers=bootstrap),
            sources={"reviews-cdc": reviews},
            outputs=outputs,
        )
        tables = {wb.table.name: wb.table for wb in p.tables}
        await p.app.start()
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (  # noqa: ASYNC110  # polls what the tables hold
                len(tables[state.DEDUP_TABLE]) < CLAIMS
                or len(tables[state.PRODUCTS_TABLE]) < 2 * PRODUCTS
            ):
                await asyncio.sleep(0.5)
            assert len(tables[state.DEDUP_TABLE]) == CLAIMS
            assert len(tables[state.PRODUCTS_TABLE]) == 2 * PRODUCTS

            pid = state.PRODUCT_ID_BASE + 7
            review_id = str(uuid.uuid4())
            async with TopicTail(bootstrap, outputs[topics.REVIEWS_ENRICHED.name]) as tail:
                producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
                await producer.start()
                try:
                    key = orjson.dumps({"id": review_id})
                    await producer.send_and_wait(reviews, _review(review_id, pid), key=key)
                finally:
                    await producer.stop()
                (enriched,) = await tail.collect(lambda rs: len(rs) >= 1, timeout_s=60)
            record = orjson.loads(enriched.value)
            assert record["review_id"] == review_id
            assert record["product_name"] == "Bench product 7"
            assert record["product_sku"] == f"BENCH-STATE-{pid}"
            # The claim the review made joins the pre-loaded ones.
            assert len(tables[state.DEDUP_TABLE]) == CLAIMS + 1
        finally:
            await p.app.stop()
    finally:
        await services.drop_state(bootstrap, app_id)  # its changelogs and internal topics
