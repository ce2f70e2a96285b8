"""Each event once: rows sharing an `event_id` (a crash re-emitted the record at a new offset)
count once in the DuckDB views the archiver publishes and in the query service's views; rows
archived before events carried an id fall back to their (_topic, _partition, _offset)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from contracts import datasets
from contracts.events import ReviewEnriched, ReviewOp
from query.archive import ArchiveCatalog, local_location
from query.engine import QueryEngine
from s3_archiver import catalog, encoding
from s3_archiver.object_keys import object_key, partition_path
from s3_archiver.parquet_schema import schema_for

T0 = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
TOPIC = datasets.REVIEWS_ENRICHED.topic.name


def enriched(n: int, *, event_id: str | None, lsn: int) -> ReviewEnriched:
    return ReviewEnriched(
        review_id=f"r{n}",
        op=ReviewOp.UPSERT,
        source="app",
        dedup_key=f"d{n}",
        rating=4,
        body="fine",
        event_time=T0,
        source_lsn=lsn,
        enriched_at=T0,
        event_id=event_id,
    )


def write_object(root: Path, events: list[ReviewEnriched], *, partition: int, first: int) -> None:
    """One object as the archiver writes it (encoding.to_table → to_parquet, its key)."""
    table = encoding.to_table(
        schema_for(ReviewEnriched),
        events,
        topic=TOPIC,
        partition=partition,
        offsets=list(range(first, first + len(events))),
        archived_at=T0 + timedelta(seconds=first),
    )
    key = object_key(
        root="archive",
        dataset=datasets.REVIEWS_ENRICHED.name,
        path=partition_path(T0),
        topic=TOPIC,
        partition=partition,
        start_offset=first,
    )
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoding.to_parquet(table))


def archive_with_a_reemitted_duplicate(root: Path) -> None:
    # r1..r3 archived; the worker dies before committing and its successor re-emits r2 and
    # r3 (same event ids) at offsets 3 and 4.
    ids = {n: f"review:r{n}:upsert:lsn{100 + n}" for n in range(1, 6)}

    def events(*ns: int) -> list[ReviewEnriched]:
        return [enriched(n, event_id=ids[n], lsn=100 + n) for n in ns]

    write_object(root, events(1, 2, 3), partition=0, first=0)
    write_object(root, events(2, 3), partition=0, first=3)
    # An archiver restarted mid-object writes an overlapping one: r4 twice at offset 7.
    write_object(root, events(4), partition=1, first=7)
    write_object(root, events(5, 4), partition=1, first=6)


def local_view(root: Path, *, has_event_id: bool = True) -> str:
    sql = catalog.duckdb_view_sql(
        datasets.REVIEWS_ENRICHED, bucket="b", root="archive", has_event_id=has_event_id
    )
    return sql.replace("s3://b/archive/", f"{root}/archive/")


def test_duckdb_view_counts_a_reemitted_record_once(tmp_path: Path) -> None:
    archive_with_a_reemitted_duplicate(tmp_path)
    con = duckdb.connect()
    raw = con.execute(
        f"SELECT count(*) FROM read_parquet('{tmp_path}/archive/**/*.parquet')"
    ).fetchone()
    assert raw == (8,)
    coordinates = con.execute(
        "SELECT count(DISTINCT (_topic, _partition, _offset)) "
        f"FROM read_parquet('{tmp_path}/archive/**/*.parquet')"
    ).fetchone()
    assert coordinates == (7,)  # the README's old dedup key: r2 and r3 counted twice
    con.execute(local_view(tmp_path))
    rows = con.execute(
        "SELECT review_id, _offset FROM reviews_enriched ORDER BY review_id"
    ).fetchall()
    # One row per event; the re-emitted copy (the latest offset) is the one kept.
    assert rows == [("r1", 0), ("r2", 3), ("r3", 4), ("r4", 7), ("r5", 6)]


def test_rows_without_an_id_fall_back_to_their_coordinates(tmp_path: Path) -> None:
    # An archive written before event ids: the column is absent from every file.
    old = schema_for(ReviewEnriched).schema
    old = old.remove(old.get_field_index("event_id"))
    folder = tmp_path / "archive" / "reviews_enriched" / "dt=2026-12-07" / "hour=07"
    folder.mkdir(parents=True)
    rows = [
        {
            **enriched(n, event_id=None, lsn=n).model_dump(exclude={"event_id"}),
            "_topic": TOPIC,
            "_partition": 0,
            "_offset": n,
            "_archived_at": T0,
        }
        for n in (1, 2)
    ]
    for copy in ("a", "b"):  # the same offsets written twice
        pq.write_table(pa.Table.from_pylist(rows, schema=old), folder / f"{copy}.parquet")
    con = duckdb.connect()
    # The view naming event_id cannot bind: duckdb_views.attach falls back on this error.
    with pytest.raises(duckdb.BinderException, match=datasets.EVENT_ID_COLUMN):
        con.execute(local_view(tmp_path))
    con.execute(local_view(tmp_path, has_event_id=False))
    assert con.execute("SELECT count(*) FROM reviews_enriched").fetchone() == (2,)
    # Beside newer files that have ids, old rows keep their coordinate identity.
    write_object(
        tmp_path, [enriched(3, event_id="review:r3:upsert:lsn3", lsn=3)] * 2, partition=0, first=10
    )
    con.execute(local_view(tmp_path))
    assert con.execute("SELECT count(*) FROM reviews_enriched").fetchone() == (3,)


def test_query_service_counts_each_event_once(tmp_path: Path) -> None:
    archive_with_a_reemitted_duplicate(tmp_path)
    engine = QueryEngine(ArchiveCatalog(local_location(tmp_path / "archive"), ttl_s=0))
    result = engine.run(
        "SELECT count(*) AS n, count(DISTINCT review_id) AS ids FROM reviews_enriched"
    )
    assert result.rows == [(5, 5)]
    latest = engine.run("SELECT review_id FROM reviews_latest ORDER BY review_id")
    assert [r[0] for r in latest.rows] == ["r1", "r2", "r3", "r4", "r5"]


def test_athena_files_create_a_view_deduplicating_on_event_id() -> None:
    ddl = catalog.athena_ddl(datasets.REVIEWS_ENRICHED)
    assert 'CREATE OR REPLACE VIEW "reviews_enriched_once"' in ddl
    assert "PARTITION BY COALESCE(event_id, CONCAT(_topic" in ddl
    assert "`event_id` string" in ddl
    # The view's SQL runs (here on DuckDB over a table of the same name and columns).
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE reviews_enriched AS SELECT 'a' AS event_id, 't' AS _topic, "
        "0 AS _partition, 1 AS _offset UNION ALL SELECT 'a', 't', 0, 2"
    )
    body = datasets.once_sql('"reviews_enriched"', columns=["event_id", "_offset"])
    assert con.execute(body).fetchall() == [("a", 2)]
