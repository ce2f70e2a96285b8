"""The dashboard on the real Kafka: rebuilds recent state from time offsets, streams what is
produced, skips malformed records, and works through the project's nginx.conf."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import httpx
import pytest
from dashboard_harness import (
    VIEWER_KEY,
    DashboardProcess,
    Producer,
    start_private_nginx,
    started_reader,
)
from dashboard_records import alert, candle, forming, review

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
START = NOW - timedelta(minutes=10)
HEADERS = {"X-API-Key": VIEWER_KEY}


@pytest.fixture(scope="module")
def dashboard(
    stack_env: dict[str, str], dashboard_topics: dict[str, str], producer: Producer
) -> Iterator[DashboardProcess]:
    # Two hours old by Kafka timestamp: before the lookback, must not be replayed.
    old_ms = int((time.time() - 7200) * 1000)
    producer.send(
        [("candles", b"OLD-USD", candle("OLD-USD", 0, "1", start=START))], timestamp_ms=old_ms
    )
    producer.send(
        [("candles", b"BTC-USD", candle("BTC-USD", m, str(100 + m), start=START)) for m in range(3)]
        + [("alerts", b"BTC-USD", alert("BTC-USD", at=START + timedelta(minutes=2)))]
        + [("reviews", b"r-before", review("KTL-100", 1, review_id="r-before", at=START))]
    )
    d = DashboardProcess(
        stack_env,
        dashboard_topics,
        DASHBOARD_LOOKBACK_S="600",
        DASHBOARD_COALESCE_INTERVAL_S="0.25",
    )
    d.start()
    yield d
    d.stop()


def test_start_rebuilds_recent_state_from_time_offsets(dashboard: DashboardProcess) -> None:
    snap = dashboard.get("/dashboard/api/snapshot").json()
    assert [c["c"] for c in snap["markets"]["BTC-USD"]["candles"]] == ["100", "101", "102"]
    assert "OLD-USD" not in snap["markets"]  # older than DASHBOARD_LOOKBACK_S
    assert [a["subject"] for a in snap["alerts"]] == ["BTC-USD"]
    assert [r["id"] for r in snap["negative"]] == ["r-before"]
    assert (
        dashboard.get(
            "/dashboard/api/snapshot", headers={"X-API-Key": "wrong-key-xxxxxxxx"}
        ).status_code
        == 401
    )


async def test_produced_records_come_out_on_the_stream_coalesced(
    dashboard: DashboardProcess, producer: Producer
) -> None:
    def done(events: list[tuple[str, Any]]) -> bool:
        return any(
            e == "delta" and d["k"] == "price:BTC-USD" and d["v"]["last"] == "120"
            for e, d in events
        )

    reader = await started_reader(f"{dashboard.url}/dashboard/stream", headers=HEADERS, until=done)
    sent_at = time.monotonic()
    # 20 forming updates of one window in a burst: far more than 4 a second
    await producer.send_async(
        [
            ("live", b"BTC-USD", forming("BTC-USD", 3, str(101 + n), trades=n + 1, start=START))
            for n in range(20)
        ]
    )
    events = await reader
    elapsed = time.monotonic() - sent_at
    prices = [d["v"]["last"] for e, d in events if e == "delta" and d["k"] == "price:BTC-USD"]
    assert prices and prices[-1] == "120", events[-5:]
    assert len(prices) <= 4, prices  # coalesced: the burst arrived within an interval or two
    assert elapsed < 3.0
    assert events[0][0] == "snapshot"


async def test_malformed_records_are_counted_and_skipped(
    dashboard: DashboardProcess, producer: Producer
) -> None:
    def done(events: list[tuple[str, Any]]) -> bool:
        return any(e == "delta" and d["k"] == "alert:after-bad" for e, d in events)

    reader = await started_reader(f"{dashboard.url}/dashboard/stream", headers=HEADERS, until=done)
    good = alert("ETH-USD").model_copy(update={"alert_id": "after-bad"})
    await producer.send_async(
        [
            ("candles", b"x", b"not json"),
            ("live", b"x", b'{"symbol": "BTC-USD"}'),
            ("alerts", b"x", b"[1, 2]"),
            ("reviews", None, b"\\xff\\xfe"),
            ("alerts", b"ETH-USD", good),
        ]
    )
    events = await reader
    assert done(events), events[-3:]
    text = dashboard.get("/metrics").text
    for kind, topic in producer.topics.items():
        line = f'pulse_dashboard_malformed_records_total{{topic="{topic}"}} 1.0'
        assert line in text, (kind, [x for x in text.splitlines() if "malformed" in x])


async def test_stream_through_nginx_is_unbuffered(
    dashboard: DashboardProcess, producer: Producer, stack_module: ModuleType
) -> None:
    url, stop = start_private_nginx(stack_module, dashboard_port=dashboard.port)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            refused = await client.get(f"{url}/dashboard/stream")
            page = await client.get(f"{url}/dashboard/")
        assert refused.status_code == 401
        assert page.status_code == 401 and "Viewer key" in page.text

        def done(events: list[tuple[str, Any]]) -> bool:
            return any(e == "delta" and d["k"] == "price:ETH-USD" for e, d in events)

        reader = await started_reader(
            f"{url}/dashboard/stream?views=markets", headers=HEADERS, until=done
        )
        sent_at = time.monotonic()
        await producer.send_async(
            [("live", b"ETH-USD", forming("ETH-USD", 9, "3000.5", start=START))]
        )
        events = await reader
        assert done(events), events
        assert time.monotonic() - sent_at < 2.0  # not held in a proxy buffer
    finally:
        stop()


def test_demo_stage_finds_the_demo_symbols_in_the_snapshot(
    dashboard: DashboardProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from pulse_cli import demo
    from rich.console import Console

    monkeypatch.setenv("DASHBOARD_VIEWER_KEYS", VIEWER_KEY)
    console = Console(record=True, width=200)
    # no nginx on this address: the stage falls back to the direct URL, here the test's process
    monkeypatch.setattr(demo, "DASHBOARD_DIRECT_URL", dashboard.url)
    stage = demo.dashboard_stage(
        tmp_path, "http://127.0.0.1:9", ("BTC-USD", "ETH-USD"), console=console, wait_s=5
    )
    assert (stage.expected, stage.actual) == (2, 2) and stage.ok, stage
    assert dashboard.url in stage.note
    missing = demo.dashboard_stage(
        tmp_path, "http://127.0.0.1:9", ("BTC-USD", "NOPE"), console=console, wait_s=0
    )
    assert (missing.expected, missing.actual) == (2, 1) and not missing.ok
    assert "http://127.0.0.1:9/dashboard/" in console.export_text()


def test_stack_up_reloads_a_running_nginx_that_lacks_the_dashboard(
    dashboard: DashboardProcess, stack_module: ModuleType
) -> None:
    """`stack.py up` on a running nginx renders its config again and reloads it, so the
    shared nginx started before /dashboard/ existed serves it without a restart."""
    current = (stack_module.DEPLOY_NGINX / "nginx.conf").read_text()
    old = current.replace("location /dashboard/ {", "location /dashboard-not-yet/ {")
    old = old.replace("location = /dashboard/stream {", "location = /dashboard-not-yet/s {")
    assert old != current
    url, stop = start_private_nginx(stack_module, dashboard_port=dashboard.port, conf_text=old)
    try:
        assert httpx.get(f"{url}/dashboard/", timeout=5).status_code == 404
        ports = {
            "listen_port": stop.listen_port,
            "ingest_port": 58001,
            "query_port": 58002,
            "dashboard_port": dashboard.port,
        }
        assert stack_module.reload_nginx_if_changed(stop.prefix, **ports) is True
        # The old worker finishes gracefully and may still take a connection or two just
        # after the reload: wait for the new config to answer several times in a row.
        deadline = time.monotonic() + 10
        in_a_row = 0
        while in_a_row < 3:
            page = httpx.get(f"{url}/dashboard/", timeout=5)
            answered = page.status_code == 401 and "Viewer key" in page.text  # the dashboard
            in_a_row = in_a_row + 1 if answered else 0
            assert time.monotonic() < deadline, "nginx did not take the new config"
            time.sleep(0.05)
        assert stack_module.reload_nginx_if_changed(stop.prefix, **ports) is False
    finally:
        stop()
