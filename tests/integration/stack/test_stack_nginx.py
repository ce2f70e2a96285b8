"""deploy/nginx/nginx.conf behaviour, on a private nginx (same file, test ports) in front of
stdlib upstreams, so the shared stack's nginx is untouched."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import httpx
import pytest
from private_nginx import running_nginx, with_rate_limit

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Echo(BaseHTTPRequestHandler):
    """Answers with what it received: which upstream, path, headers, body length."""

    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn does

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = json.dumps(
            {
                "upstream": self.server.name,  # type: ignore[attr-defined]  # set below
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "http_version": self.request_version,
                "body_bytes": len(body),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Request-ID", "upstream-must-not-override")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer  # noqa: N815  # http.server's handler names

    def log_message(self, format: str, *args: object) -> None:  # stdlib signature
        pass


# upstream servers by port, so a test can stop one behind nginx's back
_SERVERS: dict[int, ThreadingHTTPServer] = {}


@dataclass(frozen=True)
class Proxy:
    url: str
    ingest_port: int


def _start_upstream(name: str) -> tuple[ThreadingHTTPServer, int]:
    port = _free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Echo)
    server.name = name  # type: ignore[attr-defined]  # read by _Echo
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _SERVERS[port] = server
    return server, port


def _run_nginx(stack_module: ModuleType, *, rate_limit: str | None = None) -> Iterator[Proxy]:
    ingest, ingest_port = _start_upstream("ingest")
    query, query_port = _start_upstream("query")
    conf_text = (stack_module.DEPLOY_NGINX / "nginx.conf").read_text()
    if rate_limit is not None:
        rate, burst = rate_limit.split(",")
        conf_text = with_rate_limit(conf_text, rate=rate, burst=burst)
    try:
        with running_nginx(
            stack_module,
            listen_port=_free_port(),
            name="stack-it",
            ingest_port=ingest_port,
            query_port=query_port,
            conf_text=conf_text,
        ) as nginx:
            yield Proxy(url=nginx.url, ingest_port=ingest_port)
    finally:
        for server in (ingest, query):
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def proxy(stack_module: ModuleType) -> Iterator[Proxy]:
    yield from _run_nginx(stack_module)


def test_shared_nginx_is_up(stack_env: dict[str, str]) -> None:
    resp = httpx.get(stack_env["PULSE_API_URL"] + "/nginx/healthz", timeout=5)
    assert resp.status_code == 200
    assert resp.headers["x-request-id"]


def test_api_paths_reach_ingest_with_keepalive_and_request_id(proxy: Proxy) -> None:
    with httpx.Client(base_url=proxy.url, timeout=5) as client:
        for path in ("/v1/reviews", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
            resp = client.get(path, headers={"X-API-Key": "k1"})
            assert resp.status_code == 200, path
            seen = resp.json()
            assert seen["upstream"] == "ingest" and seen["path"] == path
            # HTTP/1.1 without `Connection: close`: the upstream connection is kept alive
            assert seen["http_version"] == "HTTP/1.1"
            assert "connection" not in seen["headers"]
            # the id nginx minted went upstream and came back (the upstream's own is hidden)
            assert resp.headers["x-request-id"] == seen["headers"]["x-request-id"]
            assert len(resp.headers["x-request-id"]) == 32


def test_caller_request_id_is_kept(proxy: Proxy) -> None:
    rid = f"it-{uuid.uuid4()}"
    resp = httpx.post(
        proxy.url + "/v1/reviews", json={"a": 1}, headers={"X-Request-ID": rid}, timeout=5
    )
    assert resp.headers["x-request-id"] == rid
    assert resp.json()["headers"]["x-request-id"] == rid


def test_query_path_goes_to_query_service(proxy: Proxy) -> None:
    resp = httpx.get(proxy.url + "/v1/query?sql=select%201", timeout=5)
    assert resp.json()["upstream"] == "query"


def test_unknown_path_is_json_404(proxy: Proxy) -> None:
    resp = httpx.get(proxy.url + "/nope", timeout=5)
    assert resp.status_code == 404
    assert resp.json() == {"detail": "Not Found"}


def test_body_over_2_mib_is_rejected_with_413(proxy: Proxy) -> None:
    ok = httpx.post(proxy.url + "/v1/reviews/batch", content=b"x" * 1_000_000, timeout=10)
    assert ok.status_code == 200 and ok.json()["body_bytes"] == 1_000_000
    resp = httpx.post(proxy.url + "/v1/reviews/batch", content=b"x" * (3 * 1024 * 1024), timeout=10)
    assert resp.status_code == 413
    assert resp.json()["detail"].startswith("request body larger")
    assert resp.headers["x-request-id"]


def test_upstream_down_is_json_502(stack_module: ModuleType) -> None:
    gen = _run_nginx(stack_module)
    proxy = next(gen)
    try:
        server = _SERVERS[proxy.ingest_port]
        server.shutdown()
        server.server_close()  # now nothing listens on the ingest port
        resp = httpx.get(proxy.url + "/v1/reviews", timeout=10)
    finally:
        gen.close()
    assert resp.status_code == 502
    assert resp.json()["detail"] == "upstream unavailable"
    assert resp.headers["retry-after"] == "1"
    assert resp.headers["x-request-id"]


def test_single_key_flood_gets_429_with_retry_after(stack_module: ModuleType) -> None:
    gen = _run_nginx(stack_module, rate_limit="2r/s,3")
    proxy = next(gen)
    try:
        with httpx.Client(base_url=proxy.url, timeout=5) as client:
            flooder = [
                client.get("/v1/reviews", headers={"X-API-Key": "flooder"}) for _ in range(20)
            ]
            other = client.get("/v1/reviews", headers={"X-API-Key": "polite"})
    finally:
        gen.close()
    codes = [r.status_code for r in flooder]
    assert codes[:4] == [200] * 4  # 1 + burst of 3, no delay (nodelay)
    limited = [r for r in flooder if r.status_code == 429]
    assert len(limited) >= 10
    assert all(r.headers["retry-after"] == "1" and r.headers["x-request-id"] for r in limited)
    assert limited[0].json()["detail"] == "rate limit exceeded"
    assert other.status_code == 200  # the limit is per key
