"""INGEST_HTTP_UDS: ingest also listens on a unix socket, and the real nginx.conf proxies to it.

Starts its own `python -m ingest` (free TCP port, socket in a temporary directory), so it
never touches the instance on 58001 or the stack's nginx.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pulse_cli.processes import wait_healthy

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def uds_ingest(ingest_api: str, ingest_env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """(TCP url, unix socket path) of an ingest started with INGEST_HTTP_UDS."""
    with tempfile.TemporaryDirectory(prefix="pulse-ingest-uds-") as tmp:
        Path(tmp).chmod(0o755)  # nginx started as root runs its workers as nobody
        sock = Path(tmp) / "ingest.sock"
        port = free_port()
        env = {**ingest_env, "INGEST_HTTP_PORT": str(port), "INGEST_HTTP_UDS": str(sock),
               "INGEST_WORKERS": "1"}  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-m", "ingest"], env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(f"{url}/healthz", proc, timeout_s=30)
            yield url, sock
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        assert not sock.exists(), "the socket file outlived the process that bound it"


def test_serves_on_the_unix_socket_and_tcp_at_once(uds_ingest: tuple[str, Path]) -> None:
    url, sock = uds_ingest
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://ingest") as c:
        assert c.get("/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_nginx_proxies_reviews_over_the_unix_socket(
    uds_ingest: tuple[str, Path],
    api_key: str,
    private_nginx: Callable[..., contextlib.AbstractContextManager[str]],
) -> None:
    url, sock = uds_ingest
    headers = {"X-API-Key": api_key}
    with private_nginx(url, unix_socket=sock) as nginx, httpx.Client(base_url=nginx) as c:
        sku = f"UDS-{uuid.uuid4().hex[:8]}"
        made = c.post("/v1/products", json={"sku": sku, "name": "Uds"},
                      headers={**headers, "Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
        assert made.status_code == 201, made.text
        review: dict[str, Any] = {"product_sku": sku, "rating": 5, "body": "ok", "locale": "en"}
        post_headers = {**headers, "Idempotency-Key": uuid.uuid4().hex, "X-Request-ID": "uds-1"}
        posted = c.post("/v1/reviews", json=review, headers=post_headers)
        assert posted.status_code == 201, posted.text
        assert posted.headers["x-request-id"] == "uds-1"
        got = c.get(f"/v1/reviews/{posted.json()['id']}", headers=headers)
        assert got.status_code == 200 and got.json()["body"] == "ok"
        big_headers = {**headers, "Idempotency-Key": "big", "Content-Type": "application/json"}
        too_big = c.post("/v1/reviews", content=b"x" * (3 * 1024 * 1024), headers=big_headers)
        assert too_big.status_code == 413


def test_a_second_instance_does_not_take_over_a_live_socket(
    uds_ingest: tuple[str, Path], ingest_env: dict[str, str]
) -> None:
    _, sock = uds_ingest
    env = {**ingest_env, "INGEST_HTTP_PORT": str(free_port()), "INGEST_HTTP_UDS": str(sock)}
    done = subprocess.run([sys.executable, "-m", "ingest"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "INGEST_HTTP_UDS" in done.stderr
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://ingest") as c:
        assert c.get("/healthz").status_code == 200  # the first instance still owns it
