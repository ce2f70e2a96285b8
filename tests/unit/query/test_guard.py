"""The SQL guard lets one SELECT over the archive through and refuses everything else."""

from __future__ import annotations

import pytest
from query.engine import TABLES
from query.guard import QueryRejectedError, check_sql


def reason_for(sql: str) -> str:
    with pytest.raises(QueryRejectedError) as info:
        check_sql(sql, allowed_tables=TABLES)
    return info.value.reason


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM reviews_enriched",
        "select kind, count(*) from alerts group by kind;",
        "WITH x AS (SELECT * FROM market_candles) SELECT symbol FROM x",
        "SELECT * FROM reviews_latest WHERE rating < 3",
        "SELECT a.kind FROM alerts a JOIN reviews_enriched r ON a.subject = r.product_sku",
        "SELECT * FROM range(3)",
    ],
)
def test_accepts_single_select_over_archive_tables(sql: str) -> None:
    checked = check_sql(sql, allowed_tables=TABLES)
    assert not checked.sql.endswith(";")


def test_reports_tables_read_but_not_cte_names() -> None:
    checked = check_sql("WITH x AS (SELECT * FROM alerts) SELECT * FROM x", allowed_tables=TABLES)
    assert checked.tables == frozenset({"alerts"})


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE TABLE t (a INT)", "got CREATE"),
        ("DROP TABLE alerts", "got DROP"),
        ("INSERT INTO alerts VALUES (1)", "got INSERT"),
        ("UPDATE alerts SET kind = 'x'", "got UPDATE"),
        ("DELETE FROM alerts", "got DELETE"),
        ("COPY alerts TO '/tmp/out.csv'", "got COPY"),
        ("ATTACH '/tmp/other.db' AS other", "got ATTACH"),
        ("PRAGMA database_list", "got PRAGMA"),
        ("SET enable_external_access = true", "got SET"),
        ("RESET lock_configuration", "got SET"),
        ("INSTALL httpfs", "got LOAD"),
        ("LOAD httpfs", "got LOAD"),
        ("EXPORT DATABASE '/tmp/x'", "got EXPORT"),
        ("CALL pragma_version()", "got CALL"),
        ("EXPLAIN SELECT 1", "got EXPLAIN"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT 1; DROP TABLE alerts", "exactly one statement"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv() is not allowed"),
        ("SELECT * FROM read_parquet('s3://other/*.parquet')", "read_parquet() is not allowed"),
        ("SELECT * FROM read_text('/etc/hosts')", "read_text() is not allowed"),
        ("SELECT * FROM glob('/*')", "glob() is not allowed"),
        ("SELECT * FROM duckdb_settings()", "duckdb_settings() is not allowed"),
        ("SELECT * FROM '/etc/passwd'", "unknown table '/etc/passwd'"),
        ("SELECT * FROM 'x.parquet'", "unknown table 'x.parquet'"),
        ("SELECT * FROM pg_catalog.pg_tables", "qualified table names"),
        ("SELECT * FROM main.alerts", "qualified table names"),
        ("SELECT * FROM secrets", "unknown table 'secrets'"),
        ("SELECT getenv('HOME')", "getenv() is not allowed"),
        ("SELECT current_setting('threads')", "current_setting() is not allowed"),
        (
            "SELECT (SELECT count(*) FROM read_json_auto('/tmp/x.json')) FROM alerts",
            "read_json_auto() is not allowed",
        ),
        (
            "WITH f AS (SELECT * FROM read_parquet('/tmp/a.parquet')) SELECT * FROM f",
            "read_parquet() is not allowed",
        ),
        ("", "empty query"),
        ("SELEC 1", "does not parse"),
    ],
)
def test_rejects_with_reason(sql: str, expected: str) -> None:
    assert expected in reason_for(sql)


def test_rejects_overlong_text() -> None:
    with pytest.raises(QueryRejectedError, match="longer than"):
        check_sql("SELECT " + "1 + " * 30 + "1", allowed_tables=TABLES, max_chars=50)
