"""S3Proxy of the local stack: bucket, put/list/get/delete through aiobotocore.

Persistence across down/up and `restart s3proxy` is tested on a private mini stack
(test_stack_lifecycle.py) so the shared S3Proxy is never restarted under other tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

pytestmark = pytest.mark.integration

OpenS3 = Callable[[dict[str, str]], AbstractAsyncContextManager[Any]]


@pytest.fixture
async def s3(stack_env: dict[str, str], open_s3: OpenS3) -> AsyncIterator[Any]:
    async with open_s3(stack_env) as client:
        yield client


async def test_bucket_exists(s3: Any, stack_env: dict[str, str]) -> None:
    buckets = await s3.list_buckets()
    assert stack_env["S3_BUCKET"] in [b["Name"] for b in buckets["Buckets"]]


async def test_put_list_get_delete(s3: Any, stack_env: dict[str, str]) -> None:
    bucket, prefix = stack_env["S3_BUCKET"], f"it-stack/{uuid.uuid4().hex}/"
    body = os.urandom(300_000)
    await s3.put_object(Bucket=bucket, Key=prefix + "a.bin", Body=body)
    await s3.put_object(Bucket=bucket, Key=prefix + "dt=2026-11-22/b.json", Body=b'{"x": 1}')

    listed = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        prefix + "a.bin",
        prefix + "dt=2026-11-22/b.json",
    ]
    assert {o["Key"]: o["Size"] for o in listed["Contents"]}[prefix + "a.bin"] == len(body)

    got = await s3.get_object(Bucket=bucket, Key=prefix + "a.bin")
    async with got["Body"] as stream:
        assert await stream.read() == body

    for key in (prefix + "a.bin", prefix + "dt=2026-11-22/b.json"):
        await s3.delete_object(Bucket=bucket, Key=key)
    listed = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    assert listed.get("KeyCount", 0) == 0
