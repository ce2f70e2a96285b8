"""Events to Parquet bytes (zstd) with the dataset's explicit schema; bytes to events back.

Deterministic: the same rows in the same order give the same bytes. `_archived_at` is
therefore not the wall clock but the newest Kafka timestamp among the object's records (the
stream time at which the object closed), so a replay rewrites an object byte for byte.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq
from contracts.events import Event

from s3_archiver.parquet_schema import DatasetSchema

COMPRESSION = "zstd"
ROW_GROUP_ROWS = 256 * 1024
BLOCK_BYTES = 64 * 1024 * 1024  # Arrow JSON reader block: one block per typical buffer


def to_table(
    dataset: DatasetSchema,
    events: Sequence[Event],
    *,
    topic: str,
    partition: int,
    offsets: Sequence[int],
    archived_at: datetime,
) -> pa.Table:
    """One Arrow table; raises pyarrow errors if a value does not fit its column."""
    if len(events) != len(offsets):
        raise ValueError("one offset per event")
    n = len(events)
    columns: list[pa.Array] = []
    schema = dataset.schema
    for name in dataset.event_fields:
        field = schema.field(name)
        columns.append(pa.array([getattr(e, name) for e in events], type=field.type))
    columns.append(pa.array([topic] * n, type=pa.string()))
    columns.append(pa.array([partition] * n, type=pa.int32()))
    columns.append(pa.array(offsets, type=pa.int64()))
    columns.append(pa.array([archived_at] * n, type=schema.field("_archived_at").type))
    return pa.Table.from_arrays(columns, schema=schema)


def from_json_values(
    dataset: DatasetSchema,
    model: type[Event],
    values: Sequence[bytes],
    *,
    topic: str,
    partition: int,
    offsets: Sequence[int],
    archived_at: datetime,
) -> pa.Table:
    """One Arrow table from JSON values that already passed the contract model.

    Fast path: Arrow's JSON reader converts the whole batch in C++ (decimals from strings,
    ISO times to UTC) with the explicit schema. It is used only where it gives exactly the
    model path's values: no map/list columns (the reader cannot build maps) and one value
    per line. Anything else, or any reader error, takes the model path.
    """
    if dataset.json_readable and not any(b"\n" in v for v in values):
        try:
            events = pajson.read_json(
                io.BytesIO(b"\n".join(values)),
                read_options=pajson.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
                parse_options=pajson.ParseOptions(
                    explicit_schema=dataset.event_schema, unexpected_field_behavior="ignore"
                ),
            )
        except (pa.ArrowException, ValueError):
            events = None
        if events is not None and events.num_rows == len(values):
            n = len(values)
            archive = [
                pa.array([topic] * n, type=pa.string()),
                pa.array([partition] * n, type=pa.int32()),
                pa.array(offsets, type=pa.int64()),
                pa.array([archived_at] * n, type=dataset.schema.field("_archived_at").type),
            ]
            columns = [events.column(name).combine_chunks() for name in dataset.event_fields]
            return pa.Table.from_arrays([*columns, *archive], schema=dataset.schema)
    parsed = [model.model_validate_json(v) for v in values]
    return to_table(
        dataset,
        parsed,
        topic=topic,
        partition=partition,
        offsets=offsets,
        archived_at=archived_at,
    )


def to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression=COMPRESSION,
        row_group_size=ROW_GROUP_ROWS,
        write_statistics=True,
    )
    return sink.getvalue()


def read_parquet(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))
