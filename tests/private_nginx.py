"""A private nginx for the integration tests: the project's nginx.conf rendered the way
deploy/local/stack.py renders it, on the test's own port, started and stopped by the test
(the stack's shared nginx is never restarted)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx


def with_rate_limit(conf_text: str, *, rate: str, burst: int | str) -> str:
    """nginx.conf with its per-key limit (production: 5000r/s, burst 2000) scaled down to
    `rate`/`burst`, so that one test client can exceed it."""
    assert "rate=5000r/s" in conf_text and "burst=2000" in conf_text
    return conf_text.replace("rate=5000r/s", f"rate={rate}").replace("burst=2000", f"burst={burst}")


@dataclass(frozen=True, slots=True)
class PrivateNginx:
    url: str
    prefix: Path  # nginx's -p: conf/, logs, temp dirs
    listen_port: int


@contextlib.contextmanager
def running_nginx(
    stack: ModuleType,
    *,
    listen_port: int,
    name: str,
    configure: Callable[[Path], None] | None = None,
    **render: Any,
) -> Iterator[PrivateNginx]:
    """nginx on `listen_port` until the block ends, once /nginx/healthz answers 200 (10 s at
    most). `render`: `stack.render_nginx`'s upstream ports and `conf_text`; `configure(conf)`
    may write beside the rendered nginx.conf before nginx starts. Stopped with SIGQUIT (its
    graceful stop), SIGKILL to its group after 10 s; its prefix is deleted."""
    prefix = Path(tempfile.mkdtemp(prefix=f"pulse-{name}-nginx-"))
    prefix.chmod(0o755)  # as root, nginx workers run as nobody
    conf = stack.render_nginx(prefix, listen_port=listen_port, **render)
    if configure is not None:
        configure(conf)
    log = (prefix / "nginx.log").open("wb")
    proc = subprocess.Popen(
        [stack.nginx_bin(), "-p", f"{prefix}/", "-c", str(conf), "-g", "daemon off;"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{listen_port}"
    try:
        deadline = time.monotonic() + 10
        while not _healthy(url):
            assert proc.poll() is None, (prefix / "nginx.log").read_text()
            assert time.monotonic() < deadline, "private nginx did not start"
            time.sleep(0.05)
        yield PrivateNginx(url=url, prefix=prefix, listen_port=listen_port)
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(prefix, ignore_errors=True)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/nginx/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
