"""The whole data-quality suite (Soda Core over DuckDB) on a generated archive of 10 M rows,
against the same checks hand-written as plain DuckDB SQL on the same connection and reader.

Targets (issue 24): suite ≤ 60 s, and ≤ 1.5× the plain-SQL baseline measured in the same
run. The archive is a local folder in the archiver's layout (`<dataset>/dt=…/hour=…/*.parquet`,
contract types), read through the same `ArchiveCatalog` the checks use in production, so both
sides pay the same Parquet reading; what differs is only Soda's work around the SQL.

    uv run python bench/quality/run.py [--rows 10000000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from contracts import datasets
from quality import archive_views, checkfile, runner
from quality.settings import DEFAULT_CHECKS_DIR
from query.archive import ArchiveCatalog, local_location

SHARES = {
    "market_candles": 0.62,
    "market_trades": 0.15,
    "reviews_enriched": 0.1,
    "market_quotes": 0.07,
    "alerts": 0.05,
    "dq_results": 0.009,
    "market_feed_gaps": 0.001,
}
DAYS = 7

# Value expressions per column over `i` (row number) and `t` (event time); every other
# contract column is NULL of its type.
CANDLES = {
    "symbol": "'SYM' || (i % 40)",
    "asset_class": "CASE WHEN i % 40 < 20 THEN 'crypto' ELSE 'equity' END",
    "window_start": "t",
    "window_end": "t + INTERVAL 1 MINUTE",
    "open": "100 + (i % 13)",
    "high": "120 + (i % 7)",
    "low": "80 + (i % 5)",
    "close": "100 + (i % 11)",
    "volume": "1 + (i % 97)",
    "vwap": "100",
    "trade_count": "1 + i % 9",
    "sma_period": "20",
    "ema_period": "12",
    "event_time": "t",
    "emitted_at": "t",
    "event_id": "'candle:SYM' || (i % 40) || ':' || i",
}
REVIEWS = {
    "review_id": "'r' || i",
    "op": "'upsert'",
    "source": "CASE WHEN i % 2 = 0 THEN 'app' ELSE 'crawl:shop' END",
    "dedup_key": "'d' || i",
    "product_id": "i % 500",
    "product_sku": "'SKU-' || (i % 500)",
    "product_known": "true",
    "rating": "1 + i % 5",
    "body": "'text'",
    "sentiment_score": "((i % 201) - 100) / 100.0",
    "sentiment_label": "'neutral'",
    "event_time": "t",
    "enriched_at": "t",
    "event_id": "'review:r' || i || ':upsert:lsn' || i",
}
TRADES = {
    "event_id": "'sim:SYM' || (i % 40) || ':' || i",
    "venue": "'sim'",
    "symbol": "'SYM' || (i % 40)",
    "venue_symbol": "'SYM' || (i % 40)",
    "asset_class": "CASE WHEN i % 40 < 20 THEN 'crypto' ELSE 'equity' END",
    "trade_id": "CAST(i AS VARCHAR)",
    "price": "100 + (i % 13)",
    "size": "1 + (i % 5)",
    "side": "CASE WHEN i % 2 = 0 THEN 'buy' ELSE 'sell' END",
    "event_time": "t",
    "received_at": "t",
}
ALERTS = {
    "alert_id": "'a' || i",
    "kind": "'price_move'",
    "subject": "'SYM' || (i % 40)",
    "severity": "'warning'",
    "message": "'moved'",
    "event_time": "t",
    "raised_at": "t",
    "event_id": "'alert:a' || i",
}
QUOTES = {
    "symbol": "'SYM' || (i % 40)",
    "asset_class": "CASE WHEN i % 40 < 20 THEN 'crypto' ELSE 'equity' END",
    "price": "100 + (i % 13)",
    "size": "i % 3",
    "event_time": "t",
    "source": "'feed' || (i % 4)",
    "polled_at": "t",
    "event_id": "'quote:feed' || (i % 4) || ':SYM' || (i % 40) || ':' || i",
}
FEED_GAPS = {
    "gap_id": "'sim:SYM' || (i % 40) || ':' || (i * 10)",
    "venue": "'sim'",
    "symbol": "'SYM' || (i % 40)",
    "venue_symbol": "'SYM' || (i % 40)",
    "first_missing": "i * 10",
    "last_missing": "i * 10 + i % 5",
    "missing_count": "1 + i % 5",
    "reason": "CASE WHEN i % 2 = 0 THEN 'sequence_skip' ELSE 'reconnect' END",
    "event_time": "t",
    "detected_at": "t",
    "event_id": "'sim:SYM' || (i % 40) || ':' || (i * 10)",
}
DQ_RESULTS = {
    "run_id": "'run' || (i // 50)",
    "check": "'check' || (i % 50)",
    "check_type": "'missing'",
    "dataset": "'market_candles'",
    "observed_value": "0",
    "threshold": "'must_be=0'",
    "passed": "true",
    "outcome": "'passed'",
    "event_time": "t",
    "run_time": "t",
    "event_id": "'dq:run' || (i // 50) || ':market_candles:check' || (i % 50) || ':'",
}
VALUES = {
    "market_candles": CANDLES,
    "market_trades": TRADES,
    "reviews_enriched": REVIEWS,
    "market_quotes": QUOTES,
    "alerts": ALERTS,
    "dq_results": DQ_RESULTS,
    "market_feed_gaps": FEED_GAPS,
}
ARCHIVE = {
    "_topic": "'bench'",
    "_partition": "0",
    "_offset": "i",
    "_archived_at": "t",
}


def generate(folder: Path, rows: int, now: datetime) -> None:
    """Each dataset's rows spread evenly over the last DAYS days, hive-partitioned by hour.
    Candles: one per symbol and minute (40 symbols), so the uniqueness check holds. Every row
    carries a distinct event_id (no delivery copies), so the uniqueness and
    delivery-duplicate queries do their whole work."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, share in SHARES.items():
        n = int(rows * share)
        dataset = datasets.BY_NAME[name]
        types = archive_views.duckdb_types(dataset)
        span_s = DAYS * 86400
        if name == "market_candles":
            minute = f"{now:%Y-%m-%d %H:%M}:00+00"
            time_of = f"TIMESTAMPTZ '{minute}' - to_minutes(CAST(1 + i // 40 AS BIGINT))"
        else:
            step_us = f"CAST(1 + (i * {span_s} // {n}) * 1000000 AS BIGINT)"
            time_of = f"TIMESTAMPTZ '{now.isoformat()}' - to_microseconds({step_us})"
        exprs = []
        for column, data_type in types.items():
            if column in ("dt", "hour"):
                continue
            value = VALUES[name].get(column) or ARCHIVE.get(column) or "NULL"
            exprs.append(f'CAST({value} AS {data_type}) AS "{column}"')
        out = folder / name
        con.execute(
            f"""COPY (
                SELECT {", ".join(exprs)},
                       strftime(t, '%Y-%m-%d') AS dt, CAST(hour(t) AS INTEGER) AS hour
                FROM (SELECT i, {time_of} AS t FROM range({n}) r(i))
            ) TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt, hour))"""
        )
    con.close()


# The same checks as the checks files, hand-written: one aggregate per dataset for the
# column checks and the failed-rows expressions ("> 0" as an exact `<= 0`, as the checks
# files compare), then the SQL metrics and failed-rows queries (the checks files' own SQL:
# uniqueness by event_id or content, delivery-duplicate shares, per-partition freshness,
# hourly volume), and the schema from DESCRIBE.
def baseline(con: duckdb.DuckDBPyConnection, now: datetime) -> int:
    n = 0
    nulls = lambda c: f"COUNT(*) FILTER (WHERE {c} IS NULL)"  # noqa: E731
    not_positive = lambda c: f"COUNT(*) FILTER (WHERE {c} <= 0)"  # noqa: E731
    candle_cols = ["open", "high", "low", "close", "volume"]
    con.execute(
        "SELECT COUNT(*), MAX(event_time), "
        + ", ".join([nulls("symbol")] + [nulls(c) for c in candle_cols])
        + ", "
        + ", ".join(not_positive(c) for c in candle_cols)
        + ", COUNT(*) FILTER (WHERE high < GREATEST(open, close) OR low > LEAST(open, close))"
        " FROM market_candles"
    ).fetchall()
    con.execute(
        "SELECT COUNT(*), MAX(event_time), "
        + ", ".join(nulls(c) for c in ("review_id", "op", "source", "dedup_key"))
        + ", COUNT(*) FILTER (WHERE op NOT IN ('upsert', 'delete'))"
        ", COUNT(*) FILTER (WHERE rating < 1 OR rating > 5)"
        ", COUNT(*) FILTER (WHERE sentiment_score < -1 OR sentiment_score > 1)"
        ", COUNT(*) FILTER (WHERE op = 'upsert' AND body IS NULL)"
        " FROM reviews_enriched"
    ).fetchall()
    con.execute(
        "SELECT COUNT(*), MAX(event_time), "
        + ", ".join(nulls(c) for c in ("alert_id", "kind", "subject"))
        + ", COUNT(*) FILTER (WHERE kind NOT IN ('negative_review', 'negative_burst',"
        " 'price_move', 'stale_feed', 'data_quality', 'report'))"
        ", COUNT(*) FILTER (WHERE severity NOT IN ('info', 'warning', 'critical'))"
        " FROM alerts"
    ).fetchall()
    con.execute(
        "SELECT COUNT(*), MAX(event_time), "
        + ", ".join(nulls(c) for c in ("event_id", "venue", "symbol", "price", "size"))
        + ", "
        + ", ".join(not_positive(c) for c in ("price", "size"))
        + ", COUNT(*) FILTER (WHERE side NOT IN ('buy', 'sell', 'unknown'))"
        " FROM market_trades"
    ).fetchall()
    con.execute(
        "SELECT COUNT(*), MAX(event_time), "
        + ", ".join(nulls(c) for c in ("symbol", "source", "price", "size"))
        + ", COUNT(*) FILTER (WHERE asset_class NOT IN ('crypto', 'equity'))"
        + ", "
        + not_positive("price")
        + ", COUNT(*) FILTER (WHERE size < 0)"
        " FROM market_quotes"
    ).fetchall()
    con.execute(
        "SELECT COUNT(*), "
        + ", ".join(nulls(c) for c in ("gap_id", "venue", "symbol"))
        + ", COUNT(*) FILTER (WHERE missing_count < 1)"
        ", COUNT(*) FILTER (WHERE reason NOT IN ('sequence_skip', 'reconnect'))"
        ", COUNT(*) FILTER (WHERE last_missing < first_missing"
        " OR missing_count <> last_missing - first_missing + 1)"
        " FROM market_feed_gaps"
    ).fetchall()
    con.execute(
        "SELECT COUNT(*), "
        + ", ".join(nulls(c) for c in ("run_id", '"check"', "dataset", "outcome", "run_time"))
        + ", COUNT(*) FILTER (WHERE outcome NOT IN ('passed', 'failed', 'warn',"
        " 'not_evaluated', 'excluded', 'error'))"
        ", COUNT(*) FILTER (WHERE passed <> (outcome = 'passed'))"
        " FROM dq_results"
    ).fetchall()
    for check_file in checkfile.load_dir(DEFAULT_CHECKS_DIR):
        for check in check_file.contract.get("checks", []):
            for kind, body in check.items():
                if kind in ("metric", "failed_rows") and "query" in body:  # the same SQL
                    sql = body["query"].replace("${soda.NOW}", now.isoformat())
                    con.execute(f"SELECT COUNT(*) FROM ({sql})").fetchall()
        con.execute(f'DESCRIBE "{check_file.dataset.name}"').fetchall()
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rows = 200_000 if args.quick else args.rows
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    folder = Path(tempfile.mkdtemp(prefix="pulse-bench-quality-"))
    try:
        started = time.perf_counter()
        generate(folder, rows, now)
        print(f"generated {rows} rows in {time.perf_counter() - started:.1f} s under {folder}")
        files = checkfile.load_dir(DEFAULT_CHECKS_DIR)
        suite_s, base_s = [], []
        for attempt in range(args.repeat):
            # interleaved, best of each (the machine is shared); which side goes first
            # alternates, so neither always runs on the other's warmed caches
            sources = ArchiveCatalog(local_location(folder), ttl_s=0).datasets()
            con = archive_views.connect(sources, threads=2)
            for side in ("suite", "sql") if attempt % 2 == 0 else ("sql", "suite"):
                t = time.perf_counter()
                if side == "suite":
                    report = runner.run(files, con, sources, now=now)
                    suite_s.append(time.perf_counter() - t)
                else:
                    baseline(con, now)
                    base_s.append(time.perf_counter() - t)
            con.close()
            failed = [f"{r.dataset}.{r.check}" for r in report.failed]
            print(
                f"suite {suite_s[-1]:.2f} s ({len(report.results)} checks, failed {failed}); "
                f"plain SQL {base_s[-1]:.2f} s; load {os.getloadavg()[0]:.1f}"
            )
        suite, base = min(suite_s), min(base_s)
        load = os.getloadavg()[0]
        figures = [
            {
                "name": f"quality suite over {rows:,} rows",
                "value": round(suite, 2),
                "unit": "s",
                "baseline": None,
                "ratio": None,
                "target": "<= 60 s",
                "pass": suite <= 60,
            },
            {
                "name": "quality suite vs plain DuckDB SQL",
                "value": round(suite, 2),
                "unit": "s",
                "baseline": round(base, 2),
                "ratio": round(suite / base, 2),
                "target": "<= 1.5x baseline",
                "pass": suite <= 1.5 * base,
            },
        ]
        print(f"load average {load:.1f}")
        print(json.dumps({"figures": figures, "load_1m": load}))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
