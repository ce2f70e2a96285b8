"""The archive as DuckDB views for Soda Core: the query service's reader, plain views in `main`.

The query service's `ArchiveCatalog` lists the Parquet files (S3 through pyarrow, or a local
folder) and hands Arrow datasets to DuckDB; here they become views in the `main` schema of one
connection, which Soda Core's DuckDB data source runs every check on.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from contracts import datasets
from contracts.datasets import Dataset
from query.archive import PARTITIONING
from s3_archiver.parquet_schema import schema_for


def connect(
    sources: Mapping[str, pa.Table | ds.Dataset], *, threads: int = 2
) -> duckdb.DuckDBPyConnection:
    """A connection whose views `reviews_enriched`, `market_candles`, … read `sources`
    (`ArchiveCatalog.datasets()`)."""
    con = duckdb.connect(":memory:", config={"threads": threads})
    con.execute("SET TimeZone = 'UTC'")
    for name, source in sources.items():
        con.register(f"_arrow_{name}", source)
        # names come from contracts.datasets
        con.execute(f'CREATE VIEW main."{name}" AS SELECT * FROM "_arrow_{name}"')  # noqa: S608
    return con


def contract_schema(dataset: Dataset) -> pa.Schema:
    """The table a dataset should have: the archiver's schema of the contract model, then the
    Hive partition columns as the reader types them."""
    return pa.schema([*schema_for(dataset.model).schema, *PARTITIONING.schema])


@cache
def duckdb_types(dataset: Dataset) -> dict[str, str]:
    """Column → DuckDB type name (as `DESCRIBE` spells it) of the dataset's contract schema."""
    con = duckdb.connect(":memory:")
    try:
        con.register("_contract", contract_schema(dataset).empty_table())
        rows = con.execute("DESCRIBE SELECT * FROM _contract").fetchall()
    finally:
        con.close()
    return {str(r[0]): str(r[1]) for r in rows}


__all__ = ["connect", "contract_schema", "datasets", "duckdb_types"]
