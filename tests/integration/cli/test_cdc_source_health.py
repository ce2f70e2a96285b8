"""CDC health from the source side on the real stack: with Debezium's connector paused while
reviews are written, the replication slot's lag grows past the threshold, ingest's /metrics
reports it and `pulse status` turns red; resumed, the lag drains and the newest change event
is seconds old.

Pausing the stack's connector holds every CDC consumer for the test's ~20 s: run it on a
private stack (PULSE_STACK_DIR) while others share one. ingest runs on port 62101.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pulse_cli import cdc_source
from pulse_cli.processes import wait_healthy
from servicekit.cdc_health import CdcHealthSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]
INGEST_PORT = 62101
CONNECTOR = "pulse-postgres"
# Far above the slot's trail on an idle stack (Connect flushes offsets every second), far below
# what the reviews written below add to the WAL.
THRESHOLD_BYTES = 256 * 1024
REVIEWS = 400


@pytest.fixture
def ingest(stack_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    env = {
        **os.environ,
        **stack_env,
        "INGEST_HTTP_PORT": str(INGEST_PORT),
        "INGEST_LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "-m", "ingest", "migrate"], env=env, check=True, timeout=120,
        capture_output=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{INGEST_PORT}"
    with (tmp_path / "ingest.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_healthy(f"{url}/healthz", process, timeout_s=30, log=tmp_path / "ingest.log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def _connector_state(connect: str) -> set[str]:
    status = httpx.get(f"{connect}/connectors/{CONNECTOR}/status", timeout=5).json()
    return {status["connector"]["state"], *(task["state"] for task in status["tasks"])}


def _wait_connector(connect: str, state: str, *, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while _connector_state(connect) != {state}:
        assert time.monotonic() < deadline, f"connector not {state}: {_connector_state(connect)}"
        time.sleep(0.5)


def _slot_lag_metric(ingest: str) -> float:
    body = httpx.get(f"{ingest}/metrics", timeout=5).text
    match = re.search(r'^pulse_cdc_slot_lag_bytes\{slot="pulse_slot"\} (\S+)$', body, re.M)
    assert match, "ingest's /metrics has no pulse_cdc_slot_lag_bytes"
    active = re.search(r'^pulse_cdc_slot_active\{slot="pulse_slot"\} (\S+)$', body, re.M)
    assert active and float(active.group(1)) == 1.0
    return float(match.group(1))


def _pulse_status(stack_env: dict[str, str]) -> str:
    env = {**os.environ, **stack_env, "PULSE_CDC_SLOT_LAG_MAX_BYTES": str(THRESHOLD_BYTES)}
    done = subprocess.run(
        [sys.executable, "-m", "pulse_cli.main", "status"], cwd=REPO, env={**env, "COLUMNS": "400"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_paused_connector_turns_cdc_red_and_resumed_it_drains(
    stack_env: dict[str, str], ingest: str
) -> None:
    connect = stack_env["KAFKA_CONNECT_URL"].rstrip("/")
    settings = CdcHealthSettings(slot_lag_max_bytes=THRESHOLD_BYTES)

    def check() -> cdc_source.CdcSourceReport:
        return asyncio.run(cdc_source.check(stack_env, settings))

    # The migrations just written touch no captured table: Debezium confirms past them with
    # its next heartbeat (every 10 s).
    deadline = time.monotonic() + 30
    while not (before := check()).healthy:
        assert time.monotonic() < deadline, before.problems
        time.sleep(1)
    assert before.slot is not None and before.slot.active

    headers = {"X-API-Key": stack_env["PULSE_API_KEY"]}
    run = uuid.uuid4().hex[:10]
    sku = f"CDCH-{run}"
    body = "Solid build, quiet motor, and the battery lasts all week. " * 20
    assert httpx.put(f"{connect}/connectors/{CONNECTOR}/pause", timeout=10).status_code == 202
    try:
        _wait_connector(connect, "PAUSED")
        with httpx.Client(base_url=ingest, headers=headers, timeout=10) as client:
            created = client.post(
                "/v1/products", json={"sku": sku, "name": "CDC health probe"},
                headers={"Idempotency-Key": f"{run}-product"},
            )  # fmt: skip
            assert created.status_code == 201, created.text
            for n in range(0, REVIEWS, 100):
                reviews = [
                    {"product_sku": sku, "rating": 4, "body": f"{body} ({run} #{i})"}
                    for i in range(n, n + 100)
                ]
                answer = client.post(
                    "/v1/reviews/batch", json={"reviews": reviews},
                    headers={"Idempotency-Key": f"{run}-batch-{n}"},
                )  # fmt: skip
                assert answer.status_code == 201, answer.text

        paused = check()
        assert paused.slot is not None and paused.slot.lag_bytes is not None
        assert paused.slot.lag_bytes > THRESHOLD_BYTES
        assert any("PULSE_CDC_SLOT_LAG_MAX_BYTES" in p for p in paused.problems)
        assert _slot_lag_metric(ingest) > THRESHOLD_BYTES
        status = _pulse_status(stack_env)
        assert "CDC (source side)" in status
        assert "PULSE_CDC_SLOT_LAG_MAX_BYTES=262,144" in status
    finally:
        httpx.put(f"{connect}/connectors/{CONNECTOR}/resume", timeout=10)

    _wait_connector(connect, "RUNNING")
    deadline = time.monotonic() + 60
    while True:
        after = check()
        if after.healthy and after.last_change_age_s is not None and after.last_change_age_s < 60:
            break
        assert time.monotonic() < deadline, f"CDC still unhealthy after resume: {after}"
        time.sleep(1)
    assert _slot_lag_metric(ingest) <= THRESHOLD_BYTES
    assert "PULSE_CDC_SLOT_LAG_MAX_BYTES" not in _pulse_status(stack_env)
