"""Attach the archive to a DuckDB connection: the catalog's views over `s3://` paths.

DuckDB reads `s3://` through its httpfs extension, which the `duckdb` wheel does not bundle
and which would be downloaded at run time (not allowed here; the PyPI `duckdb-ext-httpfs`
builds trail the current duckdb release). Instead, pyarrow's S3 filesystem (in the wheel,
path-style for S3Proxy) is registered with DuckDB through fsspec's Arrow wrapper, and the
very same `CREATE VIEW … read_parquet('s3://…', hive_partitioning = true)` statements that
the catalog publishes run unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from contracts.datasets import EVENT_ID_COLUMN, Dataset
from fsspec.implementations.arrow import ArrowFSWrapper
from pyarrow import fs as pafs

from s3_archiver import catalog
from s3_archiver.settings import S3Settings


def arrow_s3(s3: S3Settings) -> pafs.S3FileSystem:
    options: dict[str, Any] = {"region": s3.aws_region}
    if s3.aws_access_key_id and s3.aws_secret_access_key:
        options["access_key"] = s3.aws_access_key_id.get_secret_value()
        options["secret_key"] = s3.aws_secret_access_key.get_secret_value()
    if s3.s3_endpoint_url:
        url = urlsplit(s3.s3_endpoint_url)
        options["endpoint_override"] = url.netloc
        options["scheme"] = url.scheme or "https"
    return pafs.S3FileSystem(**options)


def attach(
    con: Any, s3: S3Settings, datasets: Iterable[Dataset], *, root: str = catalog.DEFAULT_ROOT
) -> list[str]:
    """Register `s3://` on `con` (a duckdb connection) and create one view per dataset.

    A dataset with no object yet has no view (DuckDB binds a view's files when creating it);
    returns the names of the views created.
    """
    con.register_filesystem(ArrowFSWrapper(arrow_s3(s3)))
    created = []
    for dataset in datasets:
        try:
            con.execute(catalog.duckdb_view_sql(dataset, bucket=s3.s3_bucket, root=root))
        except Exception as exc:  # duckdb.IOException: no files yet; duckdb is not imported
            if "No files found" in str(exc):
                continue
            if EVENT_ID_COLUMN not in str(exc):
                raise
            # Every file predates event ids: deduplicate on the rows' coordinates alone.
            sql = catalog.duckdb_view_sql(
                dataset, bucket=s3.s3_bucket, root=root, has_event_id=False
            )
            con.execute(sql)
        created.append(dataset.name)
    return created
