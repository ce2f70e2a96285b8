"""Runs one checked SELECT on a fresh, locked-down DuckDB connection over the archive.

Order per query: 1. a new in-memory DuckDB 2. register the archive's Arrow datasets and
define the views 3. disable external access and lock the configuration 4. run the statement
wrapped in `LIMIT max_rows + 1`, with a timer that interrupts the connection at the deadline.
A fresh connection per query keeps requests from seeing each other's state.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from contracts import datasets

from query import insights
from query.archive import ArchiveCatalog
from query.guard import QueryRejectedError, check_sql

log = logging.getLogger(__name__)

# Views beyond the raw datasets: the latest state of every review, deletes honoured.
DERIVED_VIEWS: dict[str, str] = {"reviews_latest": insights.LATEST_REVIEWS}
TABLES: frozenset[str] = frozenset({d.name for d in datasets.ALL} | set(DERIVED_VIEWS))


class QueryTimeoutError(RuntimeError):
    """The query ran past its time limit and was interrupted."""


class QueryFailedError(RuntimeError):
    """DuckDB refused or failed the query (bad column, type error, …); the message says why."""


class ArchiveUnavailableError(RuntimeError):
    """The archive could not be listed or its files' schemas read (S3 down, a corrupt file)."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool  # more rows existed than max_rows
    elapsed_ms: float
    tables: list[str] = field(default_factory=list)


class QueryEngine:
    def __init__(
        self,
        catalog: ArchiveCatalog,
        *,
        max_rows: int = 10_000,
        timeout_s: float = 10.0,
        max_sql_chars: int = 20_000,
        threads: int = 2,
    ) -> None:
        self.catalog = catalog
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        self.max_sql_chars = max_sql_chars
        self.threads = threads

    def check(self, sql: str) -> str:
        """The statement if the guard accepts it; raises QueryRejectedError otherwise."""
        return check_sql(sql, allowed_tables=TABLES, max_chars=self.max_sql_chars).sql

    def run(self, sql: str, *, max_rows: int | None = None) -> QueryResult:
        """Check and run `sql`. Raises QueryRejectedError, QueryTimeoutError or QueryFailedError."""
        statement = check_sql(sql, allowed_tables=TABLES, max_chars=self.max_sql_chars)
        limit = min(max_rows or self.max_rows, self.max_rows)
        started = time.monotonic()
        try:
            sources = self.catalog.datasets()
        except (OSError, pa.ArrowException) as exc:
            raise ArchiveUnavailableError(f"archive unreadable: {exc}") from exc
        con = self._connect(sources)
        timer = threading.Timer(self.timeout_s, con.interrupt)
        try:
            timer.start()
            # The guard accepted exactly one SELECT; wrapping it caps the rows it can return.
            wrapped = f"SELECT * FROM (\n{statement.sql}\n) AS q LIMIT {limit + 1}"  # noqa: S608
            cursor = con.execute(wrapped)
            description = cursor.description or []
            rows = cursor.fetchall()
        except duckdb.InterruptException as exc:
            raise QueryTimeoutError(f"query ran longer than {self.timeout_s:g} s") from exc
        except duckdb.Error as exc:
            raise QueryFailedError(str(exc).strip().splitlines()[0]) from exc
        finally:
            timer.cancel()
            con.close()
        return QueryResult(
            columns=[str(d[0]) for d in description],
            types=[str(d[1]) for d in description],
            rows=rows[:limit],
            truncated=len(rows) > limit,
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),
            tables=sorted(statement.tables),
        )

    def _connect(self, sources: dict[str, pa.Table | ds.Dataset]) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(
            ":memory:",
            config={"threads": self.threads, "python_enable_replacements": False},
        )
        for name, source in sources.items():
            con.register(f"_arrow_{name}", source)
            # names come from contracts.datasets, not from the caller
            # One row per event (the archive is at-least-once; a crash re-emits records at
            # new offsets with the same event_id): the latest copy by offset.
            once = datasets.once_sql(f'"_arrow_{name}"')
            con.execute(f'CREATE TEMP VIEW "{name}" AS {once}')
        for name, sql in DERIVED_VIEWS.items():
            con.execute(f'CREATE TEMP VIEW "{name}" AS {sql}')
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con


__all__ = [
    "TABLES",
    "ArchiveUnavailableError",
    "QueryEngine",
    "QueryFailedError",
    "QueryRejectedError",
    "QueryResult",
    "QueryTimeoutError",
]
