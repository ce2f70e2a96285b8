import asyncio
import base64
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from contracts.events import DeadLettered
from servicekit.clock import FakeClock
from servicekit.health import HealthServer
from servicekit.kafka import dead_letter, decode_event
from servicekit.settings import ServiceSettings, SettingsError, load_settings


def test_fake_clock_advances_only_when_told() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    start = clock.now()
    clock.advance(timedelta(seconds=90))
    assert clock.now() - start == timedelta(seconds=90)
    assert clock.monotonic() == 90
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_bad_setting_exits_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PULSE_HTTP_PORT", "99999")
    with pytest.raises(SettingsError):
        load_settings(ServiceSettings)
    assert "PULSE_HTTP_PORT" in capsys.readouterr().err


def test_dead_letter_keeps_original_bytes_and_key() -> None:
    source = ConsumerRecord(
        topic="x", partition=2, offset=9, timestamp=0, timestamp_type=0, key=b"k",
        value=b"\xff\x00", checksum=None, serialized_key_size=1, serialized_value_size=2,
        headers=(),
    )  # fmt: skip
    now = datetime(2026, 1, 1, tzinfo=UTC)
    key, value = dead_letter(source, service="t", reason="undecodable", detail="bad", now=now)
    record = decode_event(DeadLettered, value)
    assert key == b"k"
    assert base64.b64decode(record.original_value_b64 or "") == b"\xff\x00"
    assert (record.source_topic, record.source_partition, record.source_offset) == ("x", 2, 9)


async def test_health_server_reports_failing_check_as_503() -> None:
    server = HealthServer(host="127.0.0.1", port=0)
    healthy = True

    async def check() -> tuple[bool, str]:
        return healthy, "fine" if healthy else "stalled"

    server.liveness["loop"] = check
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.bound_port}"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{base}/healthz")).status_code == 200
            healthy = False
            response = await client.get(f"{base}/healthz")
            assert response.status_code == 503
            assert orjson.loads(response.content)["checks"]["loop"]["detail"] == "stalled"
            metrics = await client.get(f"{base}/metrics")
            assert b"pulse_events_in_total" in metrics.content
    finally:
        await server.stop()
    await asyncio.sleep(0)


def test_http_services_keep_idle_connections_longer_than_nginx_does() -> None:
    # nginx must be the side that closes an idle upstream connection (see
    # ServiceSettings.http_keepalive_s): every upstream block of both nginx configurations.
    import re
    from pathlib import Path

    from dashboard.settings import DashboardSettings
    from ingest.settings import IngestSettings
    from notifier.settings import NotifierSettings
    from query.settings import QuerySettings

    root = Path(__file__).resolve().parents[3]
    upstream_timeouts = []
    for conf in ("deploy/nginx/nginx.conf", "deploy/k8s/base/nginx/conf/nginx.conf"):
        text = (root / conf).read_text()
        for block in re.findall(r"upstream \w+ \{(.*?)\}", text, re.DOTALL):
            upstream_timeouts += [int(s) for s in re.findall(r"keepalive_timeout (\d+)s;", block)]
    assert len(upstream_timeouts) == 8  # ingest, query, notifier, dashboard in each file
    notifier = NotifierSettings(urls=["json://127.0.0.1:9/x"])
    dashboard = DashboardSettings(viewer_keys="a-viewer-key-of-16+")  # type: ignore[arg-type]
    for settings in (IngestSettings(), QuerySettings(), notifier, dashboard):
        assert settings.http_keepalive_s > max(upstream_timeouts)
