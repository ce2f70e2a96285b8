"""The checks files' uniqueness and delivery-duplicate queries, run on DuckDB over rows of the
contract's schema: an identical re-emitted row (same event_id, same content) is a delivery
duplicate that fails no uniqueness check and counts in `delivery_duplicate_share`; two rows of
one key with different event_ids (or, where the event_id is the key, different content) are a
conflict the check returns."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from contracts import datasets
from quality import archive_views, checkfile
from quality.settings import DEFAULT_CHECKS_DIR

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
UNIQUENESS = {
    "market_candles": "one_candle_per_symbol_minute",
    "reviews_enriched": "one_row_per_review_version",
    "market_trades": "one_row_per_trade_id",
    "market_feed_gaps": "one_row_per_gap_id",
    "dq_results": "one_result_per_check_and_run",
}
CANDLE = {"symbol": "BTC-USD", "window_start": T0, "close": Decimal(1), "event_id": "candle:a"}
REVIEW = {"review_id": "r1", "event_time": T0, "op": "upsert", "rating": 4, "event_id": "rv:a"}
TRADE = {
    "event_id": "sim:BTC-USD:1001",
    "price": Decimal("100.5"),
    "size": Decimal(2),
    "event_time": T0,
    "side": "buy",
}
GAP = {
    "gap_id": "sim:BTC-USD:10",
    "event_id": "sim:BTC-USD:10",
    "first_missing": 10,
    "last_missing": 12,
    "missing_count": 3,
}
RESULT = {
    "run_id": "run1",
    "dataset": "alerts",
    "check": "freshness",
    "observed_value": 0.5,
    "outcome": "passed",
    "event_id": "dq:run1:alerts:freshness:",
}
# a second row of the same key that is another event
CONFLICTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "market_candles": (CANDLE, {"close": Decimal(2), "event_id": "candle:b"}),
    "reviews_enriched": (REVIEW, {"rating": 1, "event_id": "rv:b"}),
    # the simulator restarting its trade ids: the same id, another trade
    "market_trades": (TRADE, {"price": Decimal("99"), "event_time": T0.replace(hour=11)}),
    "market_feed_gaps": (GAP, {"last_missing": 14, "missing_count": 5}),
    "dq_results": (RESULT, {"observed_value": 3.0, "outcome": "failed"}),
}


def queries(dataset: str) -> dict[str, str]:
    """Each named metric / failed-rows query of the dataset's checks file."""
    (check_file,) = [f for f in checkfile.load_dir(DEFAULT_CHECKS_DIR) if f.dataset.name == dataset]
    out = {}
    for check in check_file.contract["checks"]:
        for body in check.values():
            if isinstance(body, dict) and "query" in body:
                out[body["name"]] = body["query"]
    return out


def run(dataset: str, rows: list[dict[str, Any]], name: str) -> list[tuple[Any, ...]]:
    schema = archive_views.contract_schema(datasets.BY_NAME[dataset])
    table = pa.Table.from_pylist(rows, schema=schema)
    con = duckdb.connect()
    try:
        con.register("_rows", table)
        con.execute(f'CREATE VIEW "{dataset}" AS SELECT * FROM _rows')
        return con.execute(queries(dataset)[name]).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("dataset", sorted(UNIQUENESS))
def test_identical_copy_passes_and_counts_as_a_delivery_duplicate(dataset: str) -> None:
    row, _ = CONFLICTS[dataset]
    rows = [{**row, "_offset": 1}, {**row, "_offset": 2}, {**row, "_offset": 3}]
    assert run(dataset, rows, UNIQUENESS[dataset]) == []
    # three rows, one event: two copies
    assert run(dataset, rows, "delivery_duplicate_share") == [(pytest.approx(2 / 3),)]


@pytest.mark.parametrize("dataset", sorted(UNIQUENESS))
def test_conflicting_version_of_a_key_fails(dataset: str) -> None:
    row, changes = CONFLICTS[dataset]
    rows = [row, {**row, "_offset": 2}, {**row, **changes, "_offset": 3}]
    assert len(run(dataset, rows, UNIQUENESS[dataset])) == 1
    # the conflicting row is not a delivery copy; the identical one is
    assert run(dataset, rows, "delivery_duplicate_share") == [(pytest.approx(1 / 3),)]


def test_rows_without_event_id_are_not_compared() -> None:
    # archived before events carried an event_id: readers tell them apart by offset only
    legacy = {**CANDLE, "event_id": None}
    rows = [legacy, {**legacy, "close": Decimal(2)}]
    assert run("market_candles", rows, UNIQUENESS["market_candles"]) == []
    assert run("market_candles", rows, "delivery_duplicate_share") == [(0,)]


@pytest.mark.parametrize("dataset", [d.name for d in datasets.ALL])
def test_every_dataset_reports_its_delivery_duplicate_share(dataset: str) -> None:
    assert run(dataset, [], "delivery_duplicate_share") == [(0,)]
