"""ingest with tracing: the tick COPY and the review statements name `trace_parent` only when
a request carries one, so the untraced path runs exactly the statements it ran before."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ingest import repository
from ingest.app import create_app, edge, route_of
from ingest.settings import IngestSettings
from ingest.tick_batch import COPY_COLUMNS, TRACED_COPY_COLUMNS, copy_text
from servicekit import tracing

NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ROWS = [("BTC-USD", "crypto", "1.5", "2", "2026-12-07T09:00:00Z", None)]


def test_traced_ticks_copy_one_more_column_with_the_traceparent() -> None:
    plain = copy_text(ROWS, ingested_at=NOW).decode()
    traced = copy_text(ROWS, ingested_at=NOW, trace_parent=PARENT).decode()
    assert len(plain.rstrip("\n").split("\t")) == len(COPY_COLUMNS)
    assert traced.rstrip("\n").split("\t") == [*plain.rstrip("\n").split("\t"), PARENT]
    assert TRACED_COPY_COLUMNS[-1] == "trace_parent"


def test_only_the_traced_review_statements_write_the_column() -> None:
    assert "trace_parent" not in repository._INSERT_REVIEW
    assert "trace_parent" not in repository._INSERT_REVIEWS
    assert "$16" in repository._INSERT_REVIEW_TRACED
    assert "$17::text[]" in repository._INSERT_REVIEWS_TRACED


def test_span_names_use_routes_not_ids() -> None:
    assert route_of("/v1/reviews/1f0e3c1e-0000-4000-8000-000000000001") == (
        "/v1/reviews/{review_id}"
    )
    assert route_of("/v1/reviews/batch") == "/v1/reviews/batch"
    assert route_of("/v1/reviews") == "/v1/reviews"


def test_with_tracing_on_every_request_is_served_inside_a_span(trace_spans: Any) -> None:
    settings = IngestSettings()
    assert isinstance(edge(create_app(settings), settings), tracing.TracingMiddleware)
