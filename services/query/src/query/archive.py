"""Adapter: the archive's Parquet files as Arrow datasets, from S3 or a local folder.

DuckDB's httpfs extension is not in the PyPI wheel and may not be downloaded at run time,
so the archive is read through pyarrow's S3FileSystem (path-style, `endpoint_override`) and
the Arrow datasets are handed to DuckDB, which scans them with projection and filter
pushdown. Listings are cached for `ttl_s` so a burst of queries lists the bucket once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from contracts import datasets
from contracts.datasets import Dataset
from contracts.types import DECIMAL_PRECISION, DECIMAL_SCALE
from pydantic import BaseModel

from query.settings import ArchiveSettings

log = logging.getLogger(__name__)

# Hive partition columns `dt=2026-11-22/hour=17`, typed as the Athena DDL declares them
# (dt string, hour int): a string `dt` cannot fail on an odd event date (year 136 happens).
PARTITIONING = ds.partitioning(
    pa.schema([("dt", pa.string()), ("hour", pa.int32())]), flavor="hive"
)


@dataclass(frozen=True, slots=True)
class ArchiveLocation:
    filesystem: pafs.FileSystem
    root: str  # `<bucket>/archive` on S3, an absolute folder locally
    display: str  # `s3://bucket/archive` or the folder, for people


def s3_location(settings: ArchiveSettings, *, prefix: str = "archive") -> ArchiveLocation:
    options: dict[str, Any] = {"region": settings.aws_region}
    if settings.aws_access_key_id is not None and settings.aws_secret_access_key is not None:
        options["access_key"] = settings.aws_access_key_id.get_secret_value()
        options["secret_key"] = settings.aws_secret_access_key.get_secret_value()
    if settings.s3_endpoint_url:
        endpoint = urlparse(settings.s3_endpoint_url)
        options["endpoint_override"] = endpoint.netloc
        options["scheme"] = endpoint.scheme or "http"
        options["force_virtual_addressing"] = False  # S3Proxy and MinIO want path-style
    filesystem = pafs.S3FileSystem(**options)
    root = f"{settings.s3_bucket}/{prefix.strip('/')}"
    return ArchiveLocation(filesystem, root, f"s3://{root}")


def local_location(folder: str | Path) -> ArchiveLocation:
    root = str(Path(folder).resolve())
    return ArchiveLocation(pafs.LocalFileSystem(), root, root)


class ArchiveCatalog:
    """The archive's datasets as Arrow datasets, re-listed at most every `ttl_s` seconds."""

    def __init__(self, location: ArchiveLocation, *, ttl_s: float = 2.0) -> None:
        self.location = location
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, pa.Table | ds.Dataset]] | None = None

    def datasets(self) -> dict[str, pa.Table | ds.Dataset]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.ttl_s:
                self._cached = (now, {d.name: self._load(d) for d in datasets.ALL})
            return dict(self._cached[1])

    def files(self, name: str) -> list[str]:
        base = f"{self.location.root}/{name}"
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        infos = self.location.filesystem.get_file_info(selector)
        return sorted(
            info.path
            for info in infos
            if info.type == pafs.FileType.File
            and info.path.endswith(".parquet")
            and not any(part.startswith(("_", ".")) for part in info.path[len(base) :].split("/"))
        )

    def _load(self, dataset: Dataset) -> pa.Table | ds.Dataset:
        paths = self.files(dataset.name)
        declared = self.declared_schema(dataset)
        if not paths:
            return declared.empty_table()
        factory = ds.FileSystemDatasetFactory(
            self.location.filesystem,
            paths,
            ds.ParquetFileFormat(),
            ds.FileSystemFactoryOptions(
                partition_base_dir=f"{self.location.root}/{dataset.name}",
                partitioning=PARTITIONING,
            ),
        )
        # Files written before a column was added lack it: unify every file's schema, then
        # add any contract field no file has yet (as nulls), so queries can name it.
        schema = factory.inspect(promote_options="permissive")
        for contract_field in declared:
            if schema.get_field_index(contract_field.name) < 0:
                schema = schema.append(contract_field)
        return factory.finish(schema)

    def declared_schema(self, dataset: Dataset) -> pa.Schema:
        """The archiver's published schema (`<root>/_catalog/<dataset>.json`) plus `dt`, `hour`.

        Falls back to one derived from the contract model when the catalog is missing or
        names a type this reader does not know.
        """
        path = f"{self.location.root}/_catalog/{dataset.name}.json"
        derived = empty_table(dataset.model).schema
        try:
            with self.location.filesystem.open_input_stream(path) as stream:
                document = json.loads(stream.read())
            fields = [
                pa.field(c["name"], arrow_type_from_name(c["arrow_type"]))
                for c in document["columns"]
            ]
        except (OSError, KeyError, TypeError, ValueError) as exc:
            log.debug(
                "no usable catalog for %s (%s): deriving from the contract", dataset.name, exc
            )
            return derived
        # A catalog written by an archiver older than this reader's contract lacks the newest
        # fields: add them (null until written) so the views naming them still bind.
        named = {f.name for f in fields} | set(PARTITIONING.schema.names)
        fields += [f for f in derived if f.name not in named]
        return pa.schema([*fields, *PARTITIONING.schema])


_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "large_string": pa.large_string(),
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "double": pa.float64(),
    "float": pa.float32(),
    "date32[day]": pa.date32(),
}


def arrow_type_from_name(name: str) -> pa.DataType:
    """Arrow's own spelling of a type (`str(pa.DataType)`) back to the type, for the types
    the archive uses; raises ValueError for anything else."""
    name = name.strip()
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    if name.startswith("decimal128(") and name.endswith(")"):
        precision, scale = (int(part) for part in name[len("decimal128(") : -1].split(","))
        return pa.decimal128(precision, scale)
    if name.startswith("timestamp[") and name.endswith("]"):
        unit, _, zone = name[len("timestamp[") : -1].partition(",")
        return pa.timestamp(unit.strip(), tz=zone.strip().removeprefix("tz=") or None)
    if name.startswith("map<") and name.endswith(">"):
        key, _, item = name[len("map<") : -1].partition(",")
        return pa.map_(arrow_type_from_name(key), arrow_type_from_name(item))
    raise ValueError(f"unknown Arrow type name {name!r}")


def empty_table(model: type[BaseModel]) -> pa.Table:
    """A zero-row table shaped like the dataset, so queries work before anything landed."""
    fields = [
        pa.field(name, _arrow_type(info.annotation)) for name, info in model.model_fields.items()
    ]
    fields += [
        pa.field("_topic", pa.string()),
        pa.field("_partition", pa.int32()),
        pa.field("_offset", pa.int64()),
        pa.field("_archived_at", pa.timestamp("us", tz="UTC")),
        pa.field("dt", pa.string()),
        pa.field("hour", pa.int32()),
    ]
    return pa.schema(fields).empty_table()


def _arrow_type(annotation: Any) -> pa.DataType:
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin is dict:
        return pa.map_(pa.string(), pa.int64())
    if args and origin is not None and str(origin) != "typing.Annotated":
        return _arrow_type(args[0])  # Optional[X], Union[X, None]
    base = args[0] if str(origin) == "typing.Annotated" and args else annotation
    if isinstance(base, type):
        if issubclass(base, bool):
            return pa.bool_()
        if issubclass(base, Enum) or issubclass(base, str):
            return pa.string()
        if issubclass(base, int):
            return pa.int64()
        if issubclass(base, float):
            return pa.float64()
        if issubclass(base, Decimal):
            return pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE)
        if issubclass(base, datetime):
            return pa.timestamp("us", tz="UTC")
    if get_origin(base) is not None or get_args(base):
        return _arrow_type(base)
    return pa.string()
