"""Fixtures of the dashboard's integration tests (the harness is in dashboard_harness.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from dashboard_harness import Producer, create_topics, delete_topics


@pytest.fixture(scope="module")
def dashboard_topics(stack_env: dict[str, str]) -> Iterator[dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    names = {
        kind: f"test.dashboard.{run}.{kind}" for kind in ("candles", "live", "alerts", "reviews")
    }
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    asyncio.run(create_topics(bootstrap, list(names.values())))
    yield names
    asyncio.run(delete_topics(bootstrap, list(names.values())))


@pytest.fixture(scope="module")
def producer(stack_env: dict[str, str], dashboard_topics: dict[str, str]) -> Producer:
    return Producer(stack_env["KAFKA_BOOTSTRAP_SERVERS"], dashboard_topics)
