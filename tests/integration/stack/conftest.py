"""Fixtures for the stack's own tests: the stack.py module and a way to run its CLI."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

REPO = Path(__file__).resolve().parents[3]
STACK_PY = REPO / "deploy" / "local" / "stack.py"

RunStack = Callable[..., subprocess.CompletedProcess[str]]
OpenS3 = Callable[[dict[str, str]], AbstractAsyncContextManager[Any]]


@pytest.fixture(scope="session")
def run_stack() -> RunStack:
    """Run `python3 deploy/local/stack.py ARGS` with extra environment; never raises on exit."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout_s: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["python3", str(STACK_PY), *args],
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=REPO,
        )

    return run


@pytest.fixture(scope="session")
def open_s3() -> OpenS3:
    """`async with open_s3(env) as s3:` an aiobotocore S3 client for a stack's env lines."""

    def open_client(env: dict[str, str]) -> AbstractAsyncContextManager[Any]:
        return get_session().create_client(  # type: ignore[no-any-return]  # untyped aiobotocore
            "s3",
            endpoint_url=env["S3_ENDPOINT_URL"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=AioConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    return open_client
