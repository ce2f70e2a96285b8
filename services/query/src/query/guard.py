"""The SQL guard: only one read-only SELECT over the archive's tables gets through.

Pure: it parses with DuckDB's own parser (`extract_statements` for the statement type,
`json_serialize_sql` for the tree) and walks the tree; no regexes, no database state.
Every rejection carries a reason the HTTP layer returns with a 400. DuckDB's
`enable_external_access=false` and locked configuration stand behind it as a second wall.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

# Table functions that only compute (no files, no catalogs, no settings).
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
# Scalar functions that reveal the environment or settings.
DENIED_FUNCTIONS = frozenset(
    {"getenv", "current_setting", "read_text", "read_blob", "pg_read_file", "load_extension"}
)


class QueryRejectedError(ValueError):
    """The SQL is not a single read-only SELECT over allowed tables; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CheckedQuery:
    sql: str  # the one statement, trailing semicolon removed
    tables: frozenset[str]  # archive tables it reads


def check_sql(sql: str, *, allowed_tables: frozenset[str], max_chars: int = 20_000) -> CheckedQuery:
    """Return the statement if it is one SELECT (or WITH … SELECT) over `allowed_tables`.

    Raises QueryRejectedError for an empty or over-long text, a parse error, more than one
    statement, any statement type but SELECT, table functions that read files or catalogs
    (read_parquet, read_csv, glob, duckdb_settings …), replacement scans of file names,
    schema-qualified names and functions that reveal settings or the environment.
    """
    text = sql.strip()
    if not text:
        raise QueryRejectedError("empty query")
    if len(text) > max_chars:
        raise QueryRejectedError(f"query is longer than {max_chars} characters")
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise QueryRejectedError(f"does not parse: {_first_line(exc)}") from exc
    if len(statements) != 1:
        raise QueryRejectedError(f"exactly one statement is allowed, got {len(statements)}")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        raise QueryRejectedError(f"only SELECT statements are allowed, got {statement.type.name}")
    body = statement.query.strip().rstrip(";").strip()
    tree = _parse_tree(body)
    ctes = set(_cte_names(tree))
    tables: set[str] = set()
    for node in _walk(tree):
        kind = node.get("type")
        if kind == "BASE_TABLE":
            table = _check_table(node, allowed=allowed_tables, ctes=ctes)
            if table is not None:
                tables.add(table)
        elif kind == "TABLE_FUNCTION":
            name = str((node.get("function") or {}).get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise QueryRejectedError(
                    f"table function {name}() is not allowed: only the archive's tables "
                    f"({', '.join(sorted(allowed_tables))}) can be read"
                )
        elif node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in DENIED_FUNCTIONS or name.startswith(("duckdb_", "pragma_")):
                raise QueryRejectedError(f"function {name}() is not allowed")
    return CheckedQuery(sql=body, tables=frozenset(tables))


def _parse_tree(body: str) -> dict[str, Any]:
    # A private in-memory connection only to reach the parser; it reads no data.
    with duckdb.connect(":memory:") as con:
        row = con.execute("SELECT json_serialize_sql(?)", [body]).fetchone()
    document: dict[str, Any] = json.loads(row[0]) if row else {"error": True}
    if document.get("error"):
        message = str(document.get("error_message", "not a plain SELECT"))
        raise QueryRejectedError(f"does not parse as a plain SELECT: {message}")
    statements = document.get("statements") or []
    if len(statements) != 1:
        raise QueryRejectedError("exactly one statement is allowed")
    return dict(statements[0])


def _check_table(node: dict[str, Any], *, allowed: frozenset[str], ctes: set[str]) -> str | None:
    """The archive table a FROM names, None for a CTE; rejects anything else."""
    name = str(node.get("table_name", ""))
    if node.get("schema_name") or node.get("catalog_name"):
        raise QueryRejectedError(f"qualified table names are not allowed: {name!r}")
    if name in ctes:
        return None
    if name.lower() not in allowed:
        raise QueryRejectedError(
            f"unknown table {name!r}: the archive's tables are {', '.join(sorted(allowed))}"
        )
    return name.lower()


def _cte_names(tree: Any) -> Iterator[str]:
    for node in _walk(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map") or []:
                yield str(entry.get("key", ""))


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
