"""The engine runs guarded SQL with a row cap, a time limit and no file access."""

from __future__ import annotations

import pytest
from query.engine import QueryEngine, QueryFailedError, QueryTimeoutError
from query.guard import QueryRejectedError


def test_row_limit_truncates(engine: QueryEngine) -> None:
    result = engine.run("SELECT * FROM range(100)", max_rows=10)
    assert len(result.rows) == 10
    assert result.truncated


def test_time_limit_interrupts(engine: QueryEngine) -> None:
    engine.timeout_s = 0.3
    with pytest.raises(QueryTimeoutError):
        engine.run("SELECT count(*) FROM range(1000000000000) a, range(10) b")


def test_unknown_column_is_a_failed_query(engine: QueryEngine) -> None:
    with pytest.raises(QueryFailedError, match="nope"):
        engine.run("SELECT nope FROM alerts")


def test_file_access_is_refused(engine: QueryEngine, archive_dir: object) -> None:
    with pytest.raises(QueryRejectedError):
        engine.run(f"SELECT * FROM read_parquet('{archive_dir}/**/*.parquet')")


def test_empty_archive_still_has_tables(tmp_path: object) -> None:
    from pathlib import Path

    from query.archive import ArchiveCatalog, local_location

    empty = QueryEngine(ArchiveCatalog(local_location(Path(str(tmp_path))), ttl_s=0))
    for table in ("reviews_enriched", "market_candles", "alerts", "reviews_latest"):
        assert empty.run(f"SELECT count(*) FROM {table}").rows == [(0,)]


def test_archivers_catalog_types_are_understood() -> None:
    import pyarrow as pa
    from query.archive import arrow_type_from_name

    for dtype in (
        pa.string(),
        pa.int64(),
        pa.int32(),
        pa.bool_(),
        pa.float64(),
        pa.decimal128(38, 18),
        pa.timestamp("us", tz="UTC"),
        pa.map_(pa.string(), pa.int64()),
    ):
        assert arrow_type_from_name(str(dtype)) == dtype


def test_odd_partition_dates_do_not_break_reading(archive_dir: object) -> None:
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq
    from query.archive import ArchiveCatalog, local_location

    folder = Path(str(archive_dir)) / "alerts" / "dt=136-03-27" / "hour=00"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"alert_id": ["x"], "kind": ["stale_feed"]}), folder / "a.parquet")
    engine = QueryEngine(ArchiveCatalog(local_location(Path(str(archive_dir))), ttl_s=0))
    assert engine.run("SELECT dt FROM alerts WHERE alert_id = 'x'").rows == [("136-03-27",)]


def test_unreadable_archive_is_unavailable_not_a_crash(tmp_path: object) -> None:
    from pathlib import Path

    from query.archive import ArchiveCatalog, local_location
    from query.engine import ArchiveUnavailableError

    folder = Path(str(tmp_path)) / "alerts" / "dt=2026-01-01" / "hour=00"
    folder.mkdir(parents=True)
    (folder / "broken.parquet").write_bytes(b"not parquet at all")
    engine = QueryEngine(ArchiveCatalog(local_location(Path(str(tmp_path))), ttl_s=0))
    with pytest.raises(ArchiveUnavailableError):
        engine.run("SELECT count(*) FROM alerts")
