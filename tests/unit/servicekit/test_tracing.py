"""servicekit.tracing: the W3C traceparent carried in Kafka headers, the settings, the off path
(nothing of OpenTelemetry imported) and the on path (spans continue the carried trace)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from servicekit import tracing
from servicekit.settings import SettingsError, load_settings
from servicekit.tracing import TracingSettings

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    "value",
    [PARENT, PARENT.encode(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"],
)
def test_a_well_formed_traceparent_is_kept_as_text(value: str | bytes) -> None:
    assert tracing.valid_traceparent(value) == (
        value.decode() if isinstance(value, bytes) else value
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # unknown version
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # null trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # null parent id
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # upper case
        PARENT + "-extra",
        b"\xff" * 55,
    ],
)
def test_a_malformed_traceparent_is_none(value: str | bytes | None) -> None:
    assert tracing.valid_traceparent(value) is None


def test_headers_carry_the_traceparent_there_and_back() -> None:
    headers = tracing.traceparent_headers(PARENT)
    assert headers == [("traceparent", PARENT.encode())]
    assert tracing.header_traceparent([("other", b"x"), *headers]) == PARENT
    assert tracing.header_traceparent(dict(headers)) == PARENT  # Faust may hold a mapping
    assert tracing.traceparent_headers(None) is None


@pytest.mark.parametrize(
    "headers", [None, [], [("other", b"x")], [("traceparent", b"garbage")], {"a": b"b"}]
)
def test_records_without_a_valid_traceparent_header_have_none(headers: Any) -> None:
    assert tracing.header_traceparent(headers) is None


def test_tracing_is_off_unless_an_exporter_is_named() -> None:
    assert not TracingSettings().enabled
    assert TracingSettings(traces_exporter="otlp").enabled
    # OTEL_SDK_DISABLED wins over an exporter, as the specification says
    assert not TracingSettings(traces_exporter="otlp", sdk_disabled=True).enabled


def test_the_file_exporter_needs_its_file() -> None:
    with pytest.raises(ValidationError, match="PULSE_TRACES_FILE is required"):
        TracingSettings(traces_exporter="pulse_file")


def test_an_unknown_exporter_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(SettingsError):
        load_settings(TracingSettings)
    assert "OTEL_TRACES_EXPORTER" in capsys.readouterr().err


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PULSE_TRACES"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_off_by_default_imports_nothing_of_opentelemetry() -> None:
    result = _run(
        """
        import sys
        from servicekit import tracing
        assert tracing.configure("test") is False and tracing.ENABLED is False
        assert tracing.current_traceparent() is None
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_off_services_hold_no_sdk_and_ingest_serves_without_the_span_middleware() -> None:
    # FastAPI imports the OpenTelemetry API itself (fastapi.telemetry); the SDK never loads.
    result = _run(
        """
        import sys
        import cdc_processor.agents, s3_archiver.main
        from servicekit import tracing
        from ingest.app import create_app, edge
        from ingest.fastpath import ReviewFastPath
        from ingest.settings import IngestSettings
        tracing.configure("test")
        settings = IngestSettings()
        assert type(edge(create_app(settings), settings)) is ReviewFastPath
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_on_spans_continue_the_carried_trace_into_the_file(tmp_path: Path) -> None:
    spans_file = tmp_path / "spans.jsonl"
    result = _run(
        f"""
        from servicekit import tracing
        assert tracing.configure("svc")
        with tracing.consumer_span(
            "reviews-cdc process", topic="t", partition=1, offset=7, parent={PARENT!r}
        ) as span:
            inner = tracing.current_traceparent()
            assert inner == tracing.format_traceparent(span)
        print(inner)
        """,
        OTEL_TRACES_EXPORTER="pulse_file",
        PULSE_TRACES_FILE=str(spans_file),
        OTEL_SERVICE_NAME="pulse-test",
    )
    assert result.returncode == 0, result.stderr
    inner = result.stdout.strip()
    assert tracing.trace_id_of(inner) == TRACE_ID  # the span's own traceparent, same trace
    (span,) = [json.loads(line) for line in spans_file.read_text().splitlines()]
    assert span["service"] == "pulse-test"  # OTEL_SERVICE_NAME over the service's own name
    assert span["trace_id"] == TRACE_ID
    assert span["parent_span_id"] == PARENT[36:52]
    assert span["kind"] == "CONSUMER"
    assert span["attributes"]["messaging.kafka.offset"] == 7


async def test_the_http_middleware_makes_the_request_span_current(trace_spans: Any) -> None:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(tracing.current_traceparent())
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        pass

    middleware = tracing.TracingMiddleware(app, route=lambda path: "/v1/reviews/{review_id}")
    scope = {
        "type": "http",
        "method": "PATCH",
        "path": "/v1/reviews/123",
        "headers": [(b"traceparent", PARENT.encode())],
    }
    await middleware(scope, None, send)
    (span,) = trace_spans.get_finished_spans()
    assert span.name == "PATCH /v1/reviews/{review_id}"
    assert f"{span.context.trace_id:032x}" == TRACE_ID  # the caller's trace, continued
    assert seen == [tracing.format_traceparent(span)]
    assert span.attributes["http.response.status_code"] == 201
