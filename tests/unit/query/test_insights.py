"""The insight queries give the expected answers on a small archive with known contents."""

from __future__ import annotations

import itertools
import statistics
from datetime import date
from decimal import Decimal

import pytest
from query import insights
from query.engine import QueryEngine
from query.guard import QueryRejectedError
from query_archive_fixture import CLOSES


def rows_as_dicts(engine: QueryEngine, sql: str) -> list[dict[str, object]]:
    result = engine.run(sql)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def test_latest_state_dedupes_offsets_applies_edits_and_hides_deletes(engine: QueryEngine) -> None:
    rows = rows_as_dicts(engine, "SELECT review_id, rating FROM reviews_latest ORDER BY review_id")
    assert rows == [
        {"review_id": "r1", "rating": 5},
        {"review_id": "r2", "rating": 3},  # the edit, not the first version
        {"review_id": "r4", "rating": 1},
    ]  # r3 was deleted


def test_rating_by_product_day(engine: QueryEngine) -> None:
    rows = rows_as_dicts(engine, insights.RATING_BY_PRODUCT_DAY)
    assert rows == [
        {
            "product_sku": "KTL-1",
            "day": date(2026, 11, 21),
            "reviews": 2,
            "avg_rating": 4.0,
            "avg_sentiment": 0.5,
        },
        {
            "product_sku": "MUG-2",
            "day": date(2026, 11, 22),
            "reviews": 1,
            "avg_rating": 1.0,
            "avg_sentiment": -0.9,
        },
    ]


def test_latest_negative_reviews_excludes_deleted_and_edited(engine: QueryEngine) -> None:
    rows = rows_as_dicts(engine, insights.LATEST_NEGATIVE_REVIEWS)
    assert [(r["product_sku"], r["body"]) for r in rows] == [("MUG-2", "awful")]


def test_alert_counts_dedupe_alert_ids(engine: QueryEngine) -> None:
    rows = rows_as_dicts(engine, insights.ALERT_COUNTS)
    assert [(r["kind"], r["alerts"]) for r in rows] == [("negative_review", 1), ("price_move", 1)]


def test_candles_keep_exact_decimals_and_compute_sma(engine: QueryEngine) -> None:
    rows = rows_as_dicts(engine, insights.CANDLES)
    acme = [r for r in rows if r["symbol"] == "ACME"]
    assert [r["close"] for r in acme] == [Decimal(c) for c in CLOSES["ACME"]]
    assert acme[2]["sma_5_sql"] == pytest.approx((100 + 101 + 99.5) / 3)


def test_returns_correlation_matches_python(engine: QueryEngine) -> None:
    def returns(symbol: str) -> list[float]:
        closes = [float(c) for c in CLOSES[symbol]]
        return [b / a - 1 for a, b in itertools.pairwise(closes)]

    rows = rows_as_dicts(engine, insights.returns_correlation(equity="ACME"))
    got = {(r["equity"], r["crypto"]): r["correlation"] for r in rows}
    for crypto in ("BTC-USD", "ETH-USD"):
        expected = statistics.correlation(returns(crypto), returns("ACME"))
        assert got[("ACME", crypto)] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("name", [i.name for i in insights.all_insights()])
def test_every_insight_passes_the_guard_and_answers_on_the_archive(
    engine: QueryEngine, name: str
) -> None:
    (insight,) = [i for i in insights.all_insights(equity="ACME") if i.name == name]
    assert engine.check(insight.sql)  # accepted (a refusal raises QueryRejectedError)
    result = engine.run(insight.sql)
    assert result.rows, f"{name} answered nothing on an archive that holds its data"


def test_insight_names_are_unique() -> None:
    names = [i.name for i in insights.all_insights()]
    assert len(names) == len(set(names))


def test_an_equity_name_cannot_break_out_of_its_literal(engine: QueryEngine) -> None:
    # The symbol is quoted, not pasted: a quote in it stays part of the name, so the query is
    # still the one SELECT the guard accepts, and it finds no such equity.
    hostile = "ACME' OR '1'='1"
    sql = insights.returns_correlation(equity=hostile)
    assert engine.check(sql)
    assert engine.run(sql).rows == []
    with pytest.raises(QueryRejectedError):
        engine.check(insights.returns_correlation(equity="ACME") + "; DELETE FROM candles")
