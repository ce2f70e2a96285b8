"""The demo's flow at a small scale on the real stack, with every service running.

Asserts per-stage counts for this run, no personal data anywhere in the archive, deletes
honoured by the latest-state query, exactly one burst and one price-move alert, and the
insight queries' values against what the scenario sent.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pulse_cli import demo
from pulse_cli.stackenv import repo_root
from query import insights
from query.insights import sql_literal
from rich.console import Console

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def report(pipeline_env: dict[str, str]) -> demo.DemoReport:
    root = repo_root(Path(__file__).parent)
    console = Console(file=StringIO(), width=200)
    result = demo.run_demo(
        root, pipeline_env, console=console, scale=0.4, timeout_s=240, show_insights=False
    )
    print(console.file.getvalue())  # type: ignore[attr-defined]  # StringIO, shown on failure
    return result


@pytest.fixture(scope="module")
def engine(pipeline_env: dict[str, str]) -> demo.QueryEngine:
    return demo.make_engine(pipeline_env)


def test_every_stage_count_matches(report: demo.DemoReport) -> None:
    failed = [(s.name, s.expected, s.actual) for s in report.stages if not s.ok]
    assert not failed, failed
    assert not report.api.failures, report.api.failures
    assert report.crawled_ids, "the crawler published nothing from the sample site"


def test_bad_requests_are_refused_with_the_status_naming_their_fault(
    report: demo.DemoReport,
) -> None:
    expected = {bad.why: bad.status for bad in report.scenario.bad_requests}
    assert report.api.bad_refused == expected


def test_no_personal_data_anywhere_in_the_archive(
    report: demo.DemoReport, engine: demo.QueryEngine
) -> None:
    catalog = engine.catalog
    files = [
        path
        for name in ("reviews_enriched", "market_candles", "alerts")
        for path in catalog.files(name)
    ]
    assert files
    needles = report.scenario.pii_strings
    leaks: list[tuple[str, str]] = []
    for path in files:
        with catalog.location.filesystem.open_input_file(path) as handle:
            table = pq.read_table(handle)
        text = "\n".join(
            str(value)
            for column in table.columns
            if pa.types.is_string(column.type) or pa.types.is_map(column.type)
            for value in column.to_pylist()
            if value is not None
        )
        leaks.extend((path, needle) for needle in needles if needle in text)
    assert not leaks, leaks[:10]


def test_deleted_reviews_are_absent_from_latest_state(
    report: demo.DemoReport, engine: demo.QueryEngine
) -> None:
    deleted = report.deleted_ids()
    assert deleted
    ids = ", ".join(sql_literal(i) for i in deleted)
    assert engine.run(f"SELECT review_id FROM reviews_latest WHERE review_id IN ({ids})").rows == []
    # …while the raw archive still holds their history, ending in a delete record.
    rows = engine.run(
        f"SELECT count(DISTINCT review_id) FROM reviews_enriched "
        f"WHERE op = 'delete' AND review_id IN ({ids})"
    ).rows
    assert rows == [(len(deleted),)]


def test_edits_show_in_latest_state(report: demo.DemoReport, engine: demo.QueryEngine) -> None:
    edited = [report.api.review_ids[e.ref] for e in report.scenario.edits]
    ids = ", ".join(sql_literal(i) for i in edited)
    rows = engine.run(f"SELECT rating, body FROM reviews_latest WHERE review_id IN ({ids})").rows
    assert len(rows) == len(edited)
    assert all(rating == 5 and body.startswith("Update:") for rating, body in rows)


def test_rating_by_product_day_matches_input(
    report: demo.DemoReport, engine: demo.QueryEngine
) -> None:
    sc = report.scenario
    final: dict[str, int] = {r.ref: r.rating for r in sc.reviews}
    final.update({e.ref: e.rating for e in sc.edits})
    for ref in sc.deletes:
        del final[ref]
    by_sku: dict[str, list[int]] = defaultdict(list)
    sku_of = {r.ref: r.product_sku for r in sc.reviews}
    for ref, rating in final.items():
        by_sku[sku_of[ref]].append(rating)

    result = engine.run(insights.RATING_BY_PRODUCT_DAY)
    got: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in result.rows:
        record = dict(zip(result.columns, row, strict=True))
        if record["product_sku"] in by_sku:
            got[str(record["product_sku"])].append((int(record["reviews"]), record["avg_rating"]))
    for sku, ratings in by_sku.items():
        days = got[sku]
        count = sum(n for n, _ in days)
        mean = sum(n * avg for n, avg in days) / count
        assert count == len(ratings), sku
        assert mean == pytest.approx(statistics.mean(ratings), abs=1e-3), sku


def test_latest_negative_reviews_are_the_burst_and_scrubbed(
    report: demo.DemoReport, engine: demo.QueryEngine
) -> None:
    sc = report.scenario
    result = engine.run(insights.LATEST_NEGATIVE_REVIEWS.replace("LIMIT 10", "LIMIT 1000"))
    rows = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
    ours = [r for r in rows if r["product_sku"] in {p.sku for p in sc.products}]
    assert {r["product_sku"] for r in ours} == {sc.burst_sku}
    assert len(ours) == sum(1 for r in sc.reviews if r.negative)
    assert not any("@example.com" in str(r["body"]) for r in ours)


def test_alert_counts_by_kind_include_the_run(
    report: demo.DemoReport, engine: demo.QueryEngine
) -> None:
    counts = {row[0]: row[1] for row in engine.run(insights.ALERT_COUNTS).rows}
    assert counts.get("negative_burst", 0) >= 1
    assert counts.get("price_move", 0) >= 1
    subjects = demo.burst_subjects_sql(report.scenario.burst_sku)
    rows = engine.run(
        f"SELECT kind, count(DISTINCT alert_id) FROM alerts WHERE subject IN {subjects} "
        f"GROUP BY kind ORDER BY kind"
    ).rows
    negatives = sum(1 for r in report.scenario.reviews if r.negative)
    assert rows == [("negative_burst", 1), ("negative_review", negatives)]


def _expected_candles(report: demo.DemoReport) -> dict[str, list[dict[str, Decimal]]]:
    sc = report.scenario
    out: dict[str, list[dict[str, Decimal]]] = {}
    for symbol in sc.symbols:
        rows = []
        for minute in sc.candle_minutes:
            ticks = [
                t
                for t in sc.ticks
                if t.symbol == symbol
                and minute <= t.event_time < minute + demo.timedelta(minutes=1)
            ]
            volume = sum((t.size for t in ticks), Decimal(0))
            rows.append(
                {
                    "open": ticks[0].price,
                    "close": ticks[-1].price,
                    "high": max(t.price for t in ticks),
                    "low": min(t.price for t in ticks),
                    "volume": volume,
                    "vwap": sum((t.price * t.size for t in ticks), Decimal(0)) / volume,
                }
            )
        out[symbol] = rows
    return out


def test_candles_match_the_ticks_sent(report: demo.DemoReport, engine: demo.QueryEngine) -> None:
    sc = report.scenario
    expected = _expected_candles(report)[sc.equity]
    result = engine.run(insights.CANDLES)
    rows = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
    got = [r for r in rows if r["symbol"] == sc.equity]
    assert [r["window_start"] for r in got] == list(sc.candle_minutes)
    for want, have in zip(expected, got, strict=True):
        for key in ("open", "high", "low", "close", "volume"):
            assert have[key] == want[key], key
        assert float(have["vwap"]) == pytest.approx(float(want["vwap"]), rel=1e-9)
    closes = [float(w["close"]) for w in expected]
    assert got[-1]["sma_5_sql"] == pytest.approx(statistics.mean(closes[-5:]))


def test_returns_correlation_matches_the_input(
    report: demo.DemoReport, engine: demo.QueryEngine
) -> None:
    sc = report.scenario
    candles = _expected_candles(report)

    def returns(symbol: str) -> list[float]:
        closes = [float(c["close"]) for c in candles[symbol]]
        return [b / a - 1 for a, b in itertools.pairwise(closes)]

    result = engine.run(insights.returns_correlation(equity=sc.equity))
    got = {row[1]: row[3] for row in result.rows}
    for crypto in ("BTC-USD", "ETH-USD"):
        want = statistics.correlation(returns(crypto), returns(sc.equity))
        assert got[crypto] == pytest.approx(want, abs=2e-4), crypto
