"""PostgreSQL slow rather than down: a review whose product row another session holds locked
gets a 503 with Retry-After within a second (the statement timeout cancels it), writes
nothing, and the client's retry with the same Idempotency-Key writes it exactly once."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

pytestmark = pytest.mark.integration

MAX_503_LATENCY_S = 1.2  # "within a second", plus nginx and a loaded 2-core machine


async def test_a_lock_wait_is_a_quick_503_and_the_retry_writes_once(
    ingest_api: str, api_key: str, stack_env: dict[str, str], product: dict[str, Any]
) -> None:
    key = uuid.uuid4().hex
    body = {"product_sku": product["sku"], "rating": 2, "body": f"slow database {key}"}
    headers = {"X-API-Key": api_key, "Idempotency-Key": key}
    count = "SELECT count(*) FROM reviews WHERE product_id = $1"
    holder = await asyncpg.connect(stack_env["DATABASE_URL"], timeout=10)
    try:
        async with httpx.AsyncClient(base_url=ingest_api, timeout=10) as client:
            lock = holder.transaction()
            await lock.start()
            # A review's foreign key check takes FOR KEY SHARE on its product row, which
            # waits for this FOR UPDATE: the insert blocks until the statement timeout.
            await holder.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product["id"])
            started = time.monotonic()
            slow = await client.post("/v1/reviews", json=body, headers=headers)
            elapsed = time.monotonic() - started
            still_locked = await holder.fetchval(count, product["id"])
            await lock.rollback()

            assert slow.status_code == 503, slow.text
            assert slow.headers.get("retry-after") == "1"
            assert slow.json() == {"detail": "database unavailable, retry later"}
            assert elapsed <= MAX_503_LATENCY_S, f"503 after {elapsed:.2f} s"
            assert still_locked == 0

            retry = await client.post("/v1/reviews", json=body, headers=headers)
            assert retry.status_code == 201, retry.text
            replay = await client.post("/v1/reviews", json=body, headers=headers)
            assert replay.status_code == 201
            assert replay.json()["id"] == retry.json()["id"]
        assert await holder.fetchval(count, product["id"]) == 1
    finally:
        await holder.close()
