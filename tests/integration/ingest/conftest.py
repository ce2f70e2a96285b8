"""Fixtures for ingest's integration tests: the real stack, and YOUR app on 127.0.0.1:58001.

`ingest_api` runs `python -m ingest migrate`, then starts `python -m ingest` on 58001 unless
something healthy already answers there (and stops it afterwards only if it started it).
Tests talk to nginx at PULSE_API_URL, which proxies to 58001.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from private_nginx import running_nginx, with_rate_limit

REPO = Path(__file__).resolve().parents[3]
APP_URL = "http://127.0.0.1:58001"


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def ingest_env(stack_env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **stack_env, "INGEST_LOG_LEVEL": "WARNING"}


@pytest.fixture(scope="session")
def ingest_api(ingest_env: dict[str, str]) -> Iterator[str]:
    """nginx's URL, with ingest answering behind it.

    INGEST_TEST_API_URL=http://127.0.0.1:PORT points the suite at another instance instead
    (e.g. a build under development while a supervisor holds 58001 with an older one).
    """
    subprocess.run(
        [sys.executable, "-m", "ingest", "migrate"],
        env=ingest_env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    override = os.environ.get("INGEST_TEST_API_URL")
    if override:
        if not _healthy(override):
            pytest.fail(f"INGEST_TEST_API_URL={override} does not answer /healthz", pytrace=False)
        yield override.rstrip("/")
        return
    process: subprocess.Popen[bytes] | None = None
    if not _healthy(APP_URL):
        log = (REPO / ".stack" / "logs").joinpath("ingest-tests.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "ingest"], env=ingest_env, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 30
        while not _healthy(APP_URL):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ingest did not start on {APP_URL}; see {log}", pytrace=False)
            time.sleep(0.2)
    base = ingest_env["PULSE_API_URL"].rstrip("/")
    deadline = time.monotonic() + 15  # nginx may hold dead keepalive connections for a moment
    while not _healthy(base) and time.monotonic() < deadline:
        time.sleep(0.2)
    yield base
    if process is not None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def api_key(stack_env: dict[str, str]) -> str:
    return stack_env["PULSE_API_KEY"]


@pytest.fixture
def client(ingest_api: str, api_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ingest_api, headers={"X-API-Key": api_key}, timeout=10) as c:
        yield c


@pytest.fixture(scope="session")
def create_key(ingest_api: str, ingest_env: dict[str, str]) -> Callable[..., str]:
    """Creates (or rotates) a named key with the given scopes; returns the plaintext key."""

    def create(*scopes: str, name: str | None = None) -> str:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "ingest",
                "create-key",
                name or f"test-{uuid.uuid4().hex[:8]}",
                *scopes,
            ],
            env=ingest_env,
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip().splitlines()[-1]

    return create


@pytest.fixture(scope="session")
def sql(stack_env: dict[str, str]) -> Callable[..., list[Any]]:
    """Runs one query on the real PostgreSQL and returns its rows."""

    async def run(query: str, *args: Any) -> list[Any]:
        conn = await asyncpg.connect(stack_env["DATABASE_URL"], timeout=10)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    def call(query: str, *args: Any) -> list[Any]:
        return asyncio.run(run(query, *args))

    return call


@pytest.fixture
def product(client: httpx.Client) -> dict[str, Any]:
    sku = f"T-{uuid.uuid4().hex[:12]}"
    r = client.post(
        "/v1/products",
        json={"sku": sku, "name": "Test kettle", "brand": "Acme", "category": "kitchen"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _private_nginx(
    stack: ModuleType,
    upstream_url: str,
    *,
    rate: str | None = None,
    burst: int | None = None,
    unix_socket: Path | None = None,
) -> Iterator[str]:
    """The real deploy/nginx/nginx.conf on a free port in front of `upstream_url`, with the
    per-key limit scaled down to `rate`/`burst` if given (so one test client can exceed it),
    proxying to ingest's `unix_socket` (env/local/upstream-ingest-uds.conf) if given."""
    conf_text = (stack.DEPLOY_NGINX / "nginx.conf").read_text()
    if rate is not None and burst is not None:
        conf_text = with_rate_limit(conf_text, rate=rate, burst=burst)

    def to_unix_socket(conf: Path) -> None:
        if unix_socket is not None:
            stack.render(
                stack.DEPLOY_NGINX / "env" / "local" / "upstream-ingest-uds.conf",
                conf.parent / "upstream-ingest.conf",
                {"INGEST_SOCKET": str(unix_socket)},
            )

    with running_nginx(
        stack,
        listen_port=free_port(),
        name="ingest",
        configure=to_unix_socket,
        ingest_port=urlsplit(upstream_url).port,
        query_port=free_port(),
        conf_text=conf_text,
    ) as nginx:
        yield nginx.url


@pytest.fixture(scope="session")
def app_url(ingest_api: str) -> str:
    """The ingest instance itself (no nginx): 58001, or INGEST_TEST_API_URL's instance."""
    return os.environ.get("INGEST_TEST_API_URL", APP_URL).rstrip("/")


@pytest.fixture(scope="session")
def private_nginx(
    stack_module: ModuleType,
) -> Callable[..., contextlib.AbstractContextManager[str]]:
    """`with private_nginx(upstream_url, rate="20r/s", burst=10) as url:`, or
    `private_nginx(upstream_url, unix_socket=path)` — see _private_nginx."""
    return functools.partial(_private_nginx, stack_module)
