"""Crawler integration fixtures: unique topics on the real Kafka, the fixture site on loopback."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "crawler_site"
sys.path.insert(0, str(FIXTURE_DIR))

from crawler_fixture_site import FixtureSite  # noqa: E402
from hostile_site import free_port_in_range  # noqa: E402


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    with FixtureSite(port=free_port_in_range()) as running:
        yield running


@pytest.fixture
async def crawl_topics(stack_env: dict[str, str]) -> AsyncIterator[dict[str, str]]:
    """Fresh reviews/quotes topics for one test (deleted afterwards)."""
    suffix = uuid.uuid4().hex[:10]
    names = {"reviews": f"test.crawler.reviews.{suffix}", "quotes": f"test.crawler.quotes.{suffix}"}
    admin = AIOKafkaAdminClient(bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"])
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=3, replication_factor=1) for n in names.values()]
        )
        yield names
        await admin.delete_topics(list(names.values()))
    finally:
        await admin.close()
