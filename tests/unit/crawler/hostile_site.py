"""A hostile review site on loopback, in a background thread, on a port of the crawler's range.

What it does that a well-behaved site does not: drips a body a few bytes at a time, stalls
without answering, answers robots.txt slowly (so concurrent askers overlap), and serves a
page whose structured data is partly broken. Every request is counted server-side by path.
"""

from __future__ import annotations

import errno
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PORTS = range(61000, 61100)  # the crawler helper's range (BRIEF.md)

ROBOTS_DELAY_S = 0.3
DRIP_BYTES = 2000
DRIP_INTERVAL_S = 0.05  # 20 bytes a second: arriving, but far below any sane rate

_REVIEW = {
    "@context": "https://schema.org",
    "@type": "Review",
    "itemReviewed": {"@type": "Product", "sku": "KTL-100", "name": "Kettle"},
    "reviewRating": {
        "@type": "Rating",
        "ratingValue": "1.8",
        "bestRating": "10",
        "worstRating": "0",
    },
    "author": {"@type": "Person", "name": "Ana"},
    "datePublished": "2026-11-30",
}
_FIRST = json.dumps({**_REVIEW, "@id": "r-a", "reviewBody": "First, valid."})
_CUT_OFF = '{"@context": "https://schema.org", "@type": "Review", "reviewBody": "cut off",'
_THIRD = json.dumps({**_REVIEW, "@id": "r-b", "reviewBody": "Third, valid."})

BROKEN_STRUCTURED_PAGE = f"""<!doctype html>
<html lang="en"><head><title>Kettle reviews</title>
<script type="application/ld+json">{_FIRST}</script>
<script type="application/ld+json">{_CUT_OFF}</script>
<script type="application/ld+json">{_THIRD}</script>
</head><body>
<div itemscope itemtype="https://schema.org/Review" itemid="m-bad">
  <span itemprop="reviewBody">Microdata with a broken link</span>
  <a itemprop="url" href="http://[broken">source</a>
</div>
<div itemscope itemtype="https://schema.org/Review" itemid="m-good">
  <span itemprop="reviewBody">Microdata, valid.</span>
  <div itemprop="itemReviewed" itemscope itemtype="https://schema.org/Product">
    <meta itemprop="sku" content="KTL-100">
  </div>
</div>
</body></html>
"""

QUOTES = {"symbol": "ACME", "price": "12.50", "size": "1", "time": "2026-11-30T10:00:00Z"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, body: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.hits[path] += 1
        if path == "/robots.txt":
            time.sleep(ROBOTS_DELAY_S)
            return self._send(b"User-agent: *\nAllow: /\n", "text/plain")
        if path == "/broken-structured.html":
            return self._send(BROKEN_STRUCTURED_PAGE.encode(), "text/html; charset=utf-8")
        if path == "/quotes.json":
            return self._send(json.dumps(QUOTES).encode(), "application/json")
        if path == "/drip.html":  # headers at once, then the body a byte at a time
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(DRIP_BYTES))
            self.end_headers()
            try:
                for _ in range(DRIP_BYTES):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(DRIP_INTERVAL_S)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
            return None
        if path == "/stall.html":  # the request is read, nothing is ever answered
            time.sleep(30)
            self.close_connection = True
            return None
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hits: Counter[str]
    lock: threading.Lock


def bind_in_range(handler: Any = _Handler) -> _Server:
    """A server on the first free port of PORTS (several test runs may share the machine)."""
    for port in PORTS:
        try:
            return _Server(("127.0.0.1", port), handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def free_port_in_range() -> int:
    """A port of PORTS that nothing listens on now (bound, then released)."""
    server = bind_in_range()
    port = int(server.server_address[1])
    server.server_close()
    return port


class HostileSite:
    def __init__(self) -> None:
        self._server = bind_in_range()
        self._server.hits = Counter()
        self._server.lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def hits(self, path: str) -> int:
        with self._server.lock:
            return self._server.hits[path]

    def __enter__(self) -> HostileSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
