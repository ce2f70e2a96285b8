"""S3Proxy of the local stack: put/list/get/delete through aiobotocore, and objects survive a
restart of S3Proxy (filesystem backend under .stack/s3)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

pytestmark = pytest.mark.integration

RunStack = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
async def s3(stack_env: dict[str, str]) -> AsyncIterator[Any]:
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=stack_env["S3_ENDPOINT_URL"],
        region_name=stack_env["AWS_REGION"],
        aws_access_key_id=stack_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack_env["AWS_SECRET_ACCESS_KEY"],
        config=AioConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    ) as client:
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


async def test_objects_survive_s3proxy_restart(
    s3: Any, stack_env: dict[str, str], run_stack: RunStack
) -> None:
    bucket, key = stack_env["S3_BUCKET"], f"it-stack/{uuid.uuid4().hex}/persisted.txt"
    await s3.put_object(Bucket=bucket, Key=key, Body=b"still here")

    # restarts S3Proxy only: the rest of the shared stack keeps running
    result = run_stack("restart", "s3proxy", env={"PULSE_STACK_DIR": stack_env["PULSE_STACK_DIR"]})
    assert result.returncode == 0, result.stdout + result.stderr

    got = await s3.get_object(Bucket=bucket, Key=key)
    async with got["Body"] as stream:
        assert await stream.read() == b"still here"
    await s3.delete_object(Bucket=bucket, Key=key)
