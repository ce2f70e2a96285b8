"""Silences through a private nginx running the project's nginx.conf, with the API key, using
the same client as `pulse silence`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from notifier_harness import free_port, produce, review_alert, unique, wait_until
from pulse_cli.silences import SilenceApiError, SilenceClient, parse_matchers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def private_nginx(stack_module) -> Iterator[callable]:  # type: ignore[valid-type]
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(notifier_port: int) -> str:
        prefix = Path(tempfile.mkdtemp(prefix="pulse-notifier-nginx-"))
        prefix.chmod(0o755)
        port = free_port()
        conf = stack_module.render_nginx(
            prefix,
            listen_port=port,
            ingest_port=free_port(),
            query_port=free_port(),
            notifier_port=notifier_port,
        )
        proc = subprocess.Popen(
            [stack_module.nginx_bin(), "-p", f"{prefix}/", "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs.append((proc, prefix))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{url}/nginx/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)

    yield start
    for proc, prefix in procs:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(prefix, ignore_errors=True)


async def test_silence_created_through_nginx_mutes_matching_alerts_until_expired(
    stack_env, topics, notifier, webhook, private_nginx
) -> None:
    alerts, _ = topics
    hook = await webhook()
    proc = notifier(urls=f"webhook+{hook.url}", group_wait_s="0.5")
    url = private_nginx(proc.port)
    key = stack_env["PULSE_API_KEY"]

    # The receiver runs on this loop: blocking calls go to a thread.
    unauthorized = await asyncio.to_thread(httpx.get, f"{url}/v1/silences", timeout=5)
    assert unauthorized.status_code == 401
    bad = await asyncio.to_thread(
        httpx.post,
        f"{url}/v1/silences",
        json={"matchers": [{"name": "colour", "value": "x"}], "duration_s": 60},
        headers={"X-API-Key": key},
        timeout=5,
    )
    assert bad.status_code == 422 and "unknown label" in bad.json()["detail"]

    client = SilenceClient(api_url=url, api_key=key)
    with pytest.raises(SilenceApiError, match="HTTP 401"):
        SilenceClient(api_url=url, api_key="wrong-key-wrong-key").list()
    silence = client.add(
        parse_matchers(["subject=product:7", "kind=~negative_.*"]),
        duration_s=600,
        created_by="test",
        comment="known issue",
    )
    assert silence["state"] == "active"
    assert [s["id"] for s in client.list(state="active")] == [silence["id"]]

    run = unique("r")
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    await produce(
        bootstrap,
        alerts,
        [
            review_alert(1, subject="product:7", run=run),
            review_alert(2, subject="product:8", run=run),
        ],
    )
    await wait_until(lambda: hook.received, timeout_s=20, what="the unsilenced alert")
    await asyncio.sleep(2)
    delivered = {a["subject"] for r in hook.received for a in r.json["data"]["alerts"]}
    assert delivered == {"product:8"}
    metrics = (await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{proc.port}/metrics")).text
    assert (
        'pulse_notifier_alerts_dropped_total{reason="silenced",receiver="webhook-1"} 1.0' in metrics
    )

    expired = await asyncio.to_thread(client.expire, silence["id"])
    assert expired["state"] == "expired"
    await produce(bootstrap, alerts, [review_alert(3, subject="product:7", run=run)])
    await wait_until(
        lambda: any(
            a["subject"] == "product:7" for r in hook.received for a in r.json["data"]["alerts"]
        ),
        timeout_s=20,
        what="the alert after the silence expired",
    )
    metrics = (await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{proc.port}/metrics")).text
    assert 'outcome="delivered",receiver="webhook-1"} 2.0' in metrics
