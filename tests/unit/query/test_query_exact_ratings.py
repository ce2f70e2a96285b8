"""Exact ratings in the views over an archive that mixes files from before `rating_exact`
(whole stars only) with files that carry it as DECIMAL."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from query import insights
from query.archive import ArchiveCatalog, local_location
from query.engine import QueryEngine
from query_archive_fixture import DAY1, DEC, REVIEW_SCHEMA, review, write

NEW_SCHEMA = pa.schema(
    [
        *REVIEW_SCHEMA,
        ("rating_exact", DEC),
        ("rating_source_value", DEC),
        ("rating_source_worst", DEC),
        ("rating_source_best", DEC),
    ]
)


def mixed_archive(root: Path) -> QueryEngine:
    old = review("r-old", "upsert", "KTL-1", 4, 0.5, DAY1, 0, 0)
    write(root, "reviews_enriched", DAY1, "old.parquet", [old], REVIEW_SCHEMA)
    new = {
        **review("r-new", "upsert", "KTL-1", 2, -0.6, DAY1, 0, 1, body="cracked"),
        "rating_exact": Decimal("1.72"),
        "rating_source_value": Decimal("1.8"),
        "rating_source_worst": Decimal("0"),
        "rating_source_best": Decimal("10"),
    }
    write(root, "reviews_enriched", DAY1, "new.parquet", [new], NEW_SCHEMA)
    return QueryEngine(ArchiveCatalog(local_location(root), ttl_s=0), timeout_s=5)


def test_latest_reviews_carry_the_exact_rating_and_fall_back_to_stars_for_old_rows(
    tmp_path: Path,
) -> None:
    engine = mixed_archive(tmp_path)
    result = engine.run(
        "SELECT review_id, rating, rating_exact, rating_source_value, rating_source_worst,"
        " rating_source_best FROM reviews_latest ORDER BY review_id"
    )
    assert result.rows == [
        ("r-new", 2, Decimal("1.72"), Decimal("1.8"), Decimal("0"), Decimal("10")),
        ("r-old", 4, Decimal("4"), None, None, None),
    ]
    assert result.types[2].upper().startswith("DECIMAL")


def test_average_rating_uses_the_exact_ratings(tmp_path: Path) -> None:
    engine = mixed_archive(tmp_path)
    result = engine.run(insights.RATING_BY_PRODUCT_DAY)
    [row] = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
    assert row["day"] == date(2026, 11, 21)
    assert row["avg_rating"] == 2.86  # (4 + 1.72) / 2; whole stars would say 3.0


def test_a_catalog_older_than_the_contract_still_binds_the_new_columns(tmp_path: Path) -> None:
    engine = mixed_archive(tmp_path)
    catalog = tmp_path / "_catalog"
    catalog.mkdir()
    columns = [{"name": f.name, "arrow_type": str(f.type)} for f in REVIEW_SCHEMA]
    (catalog / "reviews_enriched.json").write_text(
        json.dumps({"columns": columns}), encoding="utf-8"
    )
    (tmp_path / "reviews_enriched" / "dt=2026-11-21" / "hour=10" / "new.parquet").unlink()
    result = engine.run("SELECT review_id, rating_exact FROM reviews_latest")
    assert result.rows == [("r-old", Decimal("4"))]
