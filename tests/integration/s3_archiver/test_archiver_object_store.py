"""One contract suite for the object store port, run against the in-memory fake and the real
S3 adapter on the stack's S3Proxy, so the fake cannot drift from S3."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from archiver_harness import Scenario, free_port
from s3_archiver.object_store import (
    MemoryObjectStore,
    ObjectStore,
    RetryPolicy,
    S3ObjectStore,
    StoreUnavailableError,
    s3_client,
)
from s3_archiver.settings import S3Settings
from servicekit.clock import SystemClock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

MIB = 1024 * 1024


@pytest.fixture(params=["memory", "s3"])
async def store(
    request: pytest.FixtureRequest, stack_env: dict[str, str]
) -> AsyncIterator[ObjectStore]:
    if request.param == "memory":
        yield MemoryObjectStore()
        return
    sc = Scenario(stack_env, "store")
    async with s3_client(sc.s3, timeout_s=10) as client:
        yield S3ObjectStore(
            client,
            bucket=sc.s3.s3_bucket,
            retry=RetryPolicy(attempts=2, base_s=0.05),
            clock=SystemClock(),
            multipart_threshold=5 * MIB,
            part_size=5 * MIB,
        )


async def test_rewriting_the_same_bytes_keeps_the_etag(store: ObjectStore) -> None:
    prefix = f"it-s3arch/store-{uuid.uuid4().hex[:8]}/"
    small, large = os.urandom(1000), os.urandom(11 * MIB)  # large: 3 multipart parts
    first = {k: await store.put(prefix + k, v) for k, v in (("a", small), ("b", large))}
    again = {k: await store.put(prefix + k, v) for k, v in (("a", small), ("b", large))}
    assert first == again
    assert await store.get(prefix + "b") == large
    assert await store.list_keys(prefix) == {prefix + "a": first["a"], prefix + "b": first["b"]}
    await store.ping()


async def test_listing_past_a_thousand_archive_keys_sees_each_once(store: ObjectStore) -> None:
    """Archive keys hold `=` and `+`; S3Proxy's continuation tokens for them cannot be read
    back, so a listing must page another way (it used to repeat its first page)."""
    prefix = f"it-s3arch/list-{uuid.uuid4().hex[:8]}/archive/market_trades/dt=2026-12-07/"
    keys = [
        f"{prefix}hour={n % 24:02d}/market.trades.v1+{n % 3}+{n:019d}.parquet" for n in range(1005)
    ]
    for key in keys:
        await store.put(key, b"x")
    listed = await store.list_keys(prefix)
    assert sorted(listed) == sorted(keys)


async def test_unreachable_s3_raises_store_unavailable(stack_env: dict[str, str]) -> None:
    sc = Scenario(stack_env, "dead")
    dead = S3Settings(
        **{**sc.s3.model_dump(), "s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}
    )
    async with s3_client(dead, timeout_s=2) as client:
        s3 = S3ObjectStore(
            client,
            bucket=dead.s3_bucket,
            retry=RetryPolicy(attempts=2, base_s=0.01),
            clock=SystemClock(),
            multipart_threshold=5 * MIB,
            part_size=5 * MIB,
        )
        with pytest.raises(StoreUnavailableError):
            await s3.put("x", b"y")
