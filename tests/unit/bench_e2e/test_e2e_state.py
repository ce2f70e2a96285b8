"""bench/e2e/_state.py: the pre-loaded processor state is what the processor itself would
recover — its own changelog topics, its tables' serialization, claims its dedup logic holds as
live, products its join finds.

The records are decoded with the real app's table serializers and fed to the real
`ReviewFlow`; no Kafka (the e2e bench's run on the stack is the lead's: it needs `pulse up`).
"""

from __future__ import annotations

import re
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from cdc_processor import decoding
from cdc_processor.app import Processor, create_app
from cdc_processor.settings import CdcSettings
from contracts import topics
from pulse_cli.scripts import load_script
from servicekit.clock import FakeClock
from servicekit.partitioner import Murmur2Partitioner
from servicekit.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def state() -> ModuleType:
    return load_script(REPO / "bench" / "e2e" / "_state.py", "pulse_bench_state")


@pytest.fixture(scope="module")
def fixtures() -> ModuleType:
    sys.path.insert(0, str(REPO / "tests" / "unit" / "cdc_processor"))
    return load_script(
        REPO / "tests" / "unit" / "cdc_processor" / "cdc_fixtures.py", "cdc_fixtures"
    )


@pytest.fixture(scope="module")
def processor() -> Processor:
    settings = CdcSettings(app_id=f"pulse-cdc-e2e-bench-{uuid.uuid4().hex[:6]}", http_port=0)
    return create_app(settings, KafkaSettings(kafka_bootstrap_servers="127.0.0.1:1"))


def table(p: Processor, name: str) -> Any:
    (found,) = [wb.table for wb in p.tables if wb.table.name == name]
    return found


def recovered(p: Processor, name: str, records: Any) -> dict[str, Any]:
    """The records as the table's recovery would store them (its own key/value decoding)."""
    t = table(p, name)
    loads_key, loads_value = t.app.serializers.loads_key, t.app.serializers.loads_value
    return {
        loads_key(t.key_type, k, serializer=t.key_serializer): loads_value(
            t.value_type, v, serializer=t.value_serializer
        )
        for k, v in records
    }


def test_writes_to_the_processors_own_changelog_topics(
    state: ModuleType, processor: Processor
) -> None:
    app_id = processor.settings.app_id
    for name in (state.DEDUP_TABLE, state.PRODUCTS_TABLE):
        assert state.changelog_topic(app_id, name) == (
            table(processor, name).changelog_topic.get_topic_name()
        )


def test_claims_are_live_dated_claims_the_dedup_keeps(
    state: ModuleType, processor: Processor, fixtures: ModuleType
) -> None:
    clock = FakeClock(fixtures.T0)
    now_s = clock.now().timestamp()
    dedup = recovered(processor, state.DEDUP_TABLE, state.dedup_claims(2_000, now_s=now_s))
    assert len(dedup) == 2_000  # distinct keys: none overwrites another in a compacted topic
    assert all(re.fullmatch(r"[0-9a-f]{32}", key) for key in dedup)  # dedup_key's shape
    times = [claim["at"] for claim in dedup.values()]
    assert times == sorted(times)  # oldest first, as the processor appends claims
    assert now_s - state.CLAIMS_SPAN_S <= times[0] < times[-1] < now_s

    flow = fixtures.review_flow(clock)
    flow.dedup.update(dedup)
    # Within the TTL the sweep keeps every claim: the state stays the size it was loaded at.
    assert flow.sweep_dedup(limit=10_000) == 0
    assert len(flow.dedup) == 2_000
    # A TTL later (30 days by default) every one has expired: they are dated claims, read as
    # the processor reads them, not undated ids it would re-date.
    clock.advance(timedelta(days=30) + timedelta(seconds=state.CLAIMS_SPAN_S))
    assert flow.sweep_dedup(limit=10_000) == 2_000
    assert flow.dedup == {}


def test_products_join_reviews_of_their_id(
    state: ModuleType, processor: Processor, fixtures: ModuleType
) -> None:
    products = recovered(processor, state.PRODUCTS_TABLE, state.products(300))
    assert len(products) == 600  # under `id:` and `sku:`, as on_product writes them
    flow = fixtures.review_flow()
    flow.products.update(products)
    pid = state.PRODUCT_ID_BASE + 123
    review = decoding.decode_review_cdc(
        fixtures.envelope("c", after=fixtures.review_row(str(uuid.uuid4()), product_id=pid))
    )
    assert review is not None
    (enriched,) = [o for o in flow.on_review(review) if o.topic == topics.REVIEWS_ENRICHED.name]
    record = orjson.loads(enriched.value)
    assert record["product_name"] == "Bench product 123"
    assert record["product_sku"] == f"BENCH-STATE-{pid}"


def test_products_go_to_the_partition_their_key_is_routed_to(
    state: ModuleType, processor: Processor
) -> None:
    # The processor looks a product up in the partition of `id:<id>` / `sku:<sku>`: a product
    # recovered into another partition would be in memory only on the wrong worker.
    partitioner = Murmur2Partitioner()
    partitions = list(range(topics.PARTITIONS))
    for key in recovered(processor, state.PRODUCTS_TABLE, state.products(50)):
        assert state.home_partition(key) == partitioner(key.encode(), partitions, partitions)
