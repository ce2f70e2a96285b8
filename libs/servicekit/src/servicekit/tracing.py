"""OpenTelemetry tracing for every Pulse service: set up from the standard `OTEL_*` variables,
and the W3C `traceparent` carried in Kafka record headers and in the `trace_parent` column.

Off unless `OTEL_TRACES_EXPORTER` names an exporter (the specification's default is `otlp`;
Pulse's is `none`, so an unconfigured deployment exports nothing), and off whenever
`OTEL_SDK_DISABLED=true`. When off, `configure` imports nothing of OpenTelemetry and leaves
`ENABLED` False: call sites check that module-level flag (or pick their plain code path once
at start-up), so the hot paths hold no SDK object and pay one boolean test at most.

When on: a `TracerProvider` with the service's resource (`OTEL_SERVICE_NAME`, else the
service's own name), a `BatchSpanProcessor` (its `OTEL_BSP_*` variables apply) and the
exporter: `otlp` (OTLP over HTTP/protobuf; `OTEL_EXPORTER_OTLP_ENDPOINT` and the other
`OTEL_EXPORTER_OTLP_*` variables are read by the exporter itself), `console`, or `pulse_file`
(one JSON object a line appended to `PULSE_TRACES_FILE`: tests and local debugging).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.settings import load_settings

if TYPE_CHECKING:  # typing only: the SDK is imported when tracing is turned on, never before
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"  # the W3C Trace Context header, as a Kafka record header key
TRACEPARENT_BYTES = TRACEPARENT.encode()
# version 00: 2-hex version, 32-hex trace id, 16-hex parent id, 2-hex flags (W3C Trace Context)
_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_NULL_TRACE = "0" * 32
_NULL_SPAN = "0" * 16

# True once `configure` has set up a tracer provider in this process; read on hot paths.
ENABLED = False
_tracer: Tracer | None = None

Exporter = Literal["none", "otlp", "console", "pulse_file"]


class TracingSettings(BaseSettings):
    """The standard OpenTelemetry variables Pulse acts on (the SDK and exporter read the rest
    of `OTEL_*` themselves), plus `PULSE_TRACES_FILE` for the `pulse_file` exporter."""

    # populate_by_name: tests pass traces_file=..., the environment its alias
    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", env_prefix="OTEL_", populate_by_name=True
    )

    sdk_disabled: bool = False
    traces_exporter: Exporter = "none"
    service_name: str | None = Field(default=None, min_length=1)
    # Declared so a malformed endpoint stops start-up naming it; the exporter reads it itself.
    exporter_otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://")
    traces_file: Path | None = Field(default=None, validation_alias="PULSE_TRACES_FILE")

    @model_validator(mode="after")
    def _file_for_file_exporter(self) -> TracingSettings:
        if self.enabled and self.traces_exporter == "pulse_file" and self.traces_file is None:
            raise ValueError("PULSE_TRACES_FILE is required when OTEL_TRACES_EXPORTER=pulse_file")
        return self

    @property
    def enabled(self) -> bool:
        return self.traces_exporter != "none" and not self.sdk_disabled


def configure(service: str, settings: TracingSettings | None = None) -> bool:
    """Turn tracing on for this process if the settings say so; returns `ENABLED`.

    Call once at start-up, before building the parts that check `ENABLED` (each uvicorn
    worker calls it for itself). A bad setting stops the process with a message naming it.
    """
    global ENABLED, _tracer
    settings = settings or load_settings(TracingSettings)
    if not settings.enabled:
        return ENABLED
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:  # a service installed without the `tracing` extra
        raise SystemExit(
            f"OTEL_TRACES_EXPORTER={settings.traces_exporter}: {service} was installed "
            f"without servicekit[tracing] ({exc.name} is missing)"
        ) from exc

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name or service})
    )
    provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
    # Not made the global provider: libraries that instrument themselves once one is set
    # (FastAPI's native telemetry) would add a second SERVER span per request beside
    # TracingMiddleware's. Pulse's spans come from this tracer; contexts are global anyway.
    _tracer = provider.get_tracer("pulse." + service)
    ENABLED = True
    log.info("tracing on: %s exporter", settings.traces_exporter)
    return True


def _exporter(settings: TracingSettings) -> Any:
    if settings.traces_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if settings.traces_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from servicekit.tracing_file import JsonLinesSpanExporter

    assert settings.traces_file is not None  # the validator saw to it
    return JsonLinesSpanExporter(settings.traces_file)


def tracer() -> Tracer:
    """The process's tracer; only valid once `configure` returned True."""
    if _tracer is None:
        raise RuntimeError("tracing is off: check servicekit.tracing.ENABLED first")
    return _tracer


# --- W3C traceparent ------------------------------------------------------------------------
# Parsing and formatting are plain string work (no SDK), so they are also usable, and
# testable, while tracing is off.


def valid_traceparent(value: str | bytes | None) -> str | None:
    """The traceparent as text if it is a well-formed version-00 value with non-zero ids,
    else None (a malformed header starts a new trace rather than failing the record)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not _TRACEPARENT.fullmatch(value):
        return None
    if value[3:35] == _NULL_TRACE or value[36:52] == _NULL_SPAN:
        return None
    return value


def trace_id_of(traceparent: str) -> str:
    """The 32-hex trace id of a valid traceparent."""
    return traceparent[3:35]


def header_traceparent(
    headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None,
) -> str | None:
    """Extract: the valid traceparent among Kafka record headers (aiokafka's `(key, value)`
    pairs, or the mapping Faust may hold them in), or None."""
    if not headers:
        return None
    if isinstance(headers, Mapping):
        return valid_traceparent(headers.get(TRACEPARENT))
    for key, value in headers:
        if key == TRACEPARENT:
            return valid_traceparent(value)
    return None


def traceparent_headers(traceparent: str | None) -> list[tuple[str, bytes]] | None:
    """Inject: the Kafka headers that carry `traceparent` (None when there is none)."""
    if traceparent is None:
        return None
    return [(TRACEPARENT, traceparent.encode("ascii"))]


def format_traceparent(span: Span) -> str:
    """The W3C traceparent naming `span` as the parent of what follows it."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_traceparent() -> str | None:
    """The traceparent of the span current in this context, or None (off, or no span)."""
    if not ENABLED:
        return None
    from opentelemetry import trace

    span = trace.get_current_span()
    return format_traceparent(span) if span.get_span_context().is_valid else None


def context_of(traceparent: str | None) -> Context | None:
    """The OpenTelemetry context whose remote parent is `traceparent` (None: a new trace)."""
    if traceparent is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent})


def links_to(traceparents: Sequence[str]) -> list[Any]:
    """Span links to the spans the traceparents name (for a span serving many records)."""
    from opentelemetry import trace

    links = []
    for traceparent in traceparents:
        context = trace.get_current_span(context_of(traceparent)).get_span_context()
        if context.is_valid:
            links.append(trace.Link(context))
    return links


@contextmanager
def consumer_span(
    name: str, *, topic: str, partition: int, offset: int, parent: str | None
) -> Iterator[Span]:
    """A CONSUMER span for processing one Kafka record, current inside the block; the child
    of `parent` (the traceparent the record carried) or, without one, a new trace."""
    from opentelemetry.trace import SpanKind

    with tracer().start_as_current_span(
        name,
        context=context_of(parent),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
        },
    ) as span:
        yield span


# --- HTTP -----------------------------------------------------------------------------------


class TracingMiddleware:
    """ASGI middleware (installed only when tracing is on): one SERVER span per HTTP request,
    the child of the caller's `traceparent` header if it sent a valid one, current while the
    app handles the request (so `current_traceparent()` names it)."""

    def __init__(self, app: Any, *, route: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        self.app = app
        self._route = route or (lambda path: path)  # path → low-cardinality route for the name
        self._kind = SpanKind.SERVER
        self._use_span = trace.use_span
        self._tracer = tracer()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parent = None
        for key, value in scope.get("headers", ()):
            if key == TRACEPARENT_BYTES:
                parent = context_of(valid_traceparent(value))
                break
        method, path = scope["method"], scope["path"]
        route = self._route(path)
        span = self._tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=self._kind,
            attributes={"http.request.method": method, "http.route": route, "url.path": path},
        )

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                span.set_attribute("http.response.status_code", message["status"])
            await send(message)

        with self._use_span(span, end_on_exit=True):
            await self.app(scope, receive, send_status)
