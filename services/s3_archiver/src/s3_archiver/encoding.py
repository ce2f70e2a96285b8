"""Events to Parquet bytes (zstd) with the dataset's explicit schema; bytes to events back.

Buffers hold each batch's rows as an Arrow table of the event columns plus `_offset` (built
once, when the batch is validated); writing an object concatenates its chunks and adds the
constant archive columns. Deterministic: the same rows in the same order give the same
bytes whatever the chunking. `_archived_at` is therefore not the wall clock but the newest
Kafka timestamp among the object's records (the stream time at which the object closed), so
a replay rewrites an object byte for byte.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
from contracts.events import Event

from s3_archiver.parquet_schema import DatasetSchema

COMPRESSION = "zstd"
ROW_GROUP_ROWS = 256 * 1024
OFFSET_FIELD = pa.field("_offset", pa.int64(), nullable=False)


def event_table(dataset: DatasetSchema, events: Sequence[Event]) -> pa.Table:
    """The events' own columns (the model path); raises pyarrow errors if a value does not
    fit its column."""
    schema = dataset.event_schema
    columns = [
        pa.array([getattr(e, name) for e in events], type=schema.field(name).type)
        for name in dataset.event_fields
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def with_offsets(events: pa.Table, offsets: Sequence[int]) -> pa.Table:
    """A buffer chunk: the event columns plus each record's Kafka offset."""
    if len(offsets) != events.num_rows:
        raise ValueError("one offset per event")
    return events.append_column(OFFSET_FIELD, pa.array(offsets, type=pa.int64()))


def assemble(
    dataset: DatasetSchema,
    chunks: Sequence[pa.Table],
    *,
    topic: str,
    partition: int,
    archived_at: datetime,
) -> pa.Table:
    """One object's table from its buffer's chunks (each from `with_offsets`)."""
    rows = pa.concat_tables(chunks).combine_chunks()  # one chunk: bytes independent of batching
    n = rows.num_rows
    schema = dataset.schema
    columns = [rows.column(name) for name in dataset.event_fields]
    columns.append(pa.repeat(pa.scalar(topic, pa.string()), n))
    columns.append(pa.repeat(pa.scalar(partition, pa.int32()), n))
    columns.append(rows.column("_offset"))
    columns.append(pa.repeat(pa.scalar(archived_at, schema.field("_archived_at").type), n))
    return pa.Table.from_arrays(columns, schema=schema)


def to_table(
    dataset: DatasetSchema,
    events: Sequence[Event],
    *,
    topic: str,
    partition: int,
    offsets: Sequence[int],
    archived_at: datetime,
) -> pa.Table:
    """One object's table straight from events (the model path in one call)."""
    return assemble(
        dataset,
        [with_offsets(event_table(dataset, events), offsets)],
        topic=topic,
        partition=partition,
        archived_at=archived_at,
    )


def to_parquet(table: pa.Table) -> bytes:
    """zstd; dictionary encoding only for string columns (symbols, enums, ids, `_topic`).
    Prices, times and counts are mostly distinct: there the writer would build a dictionary,
    overflow it and fall back to plain, at twice the CPU for larger files (bench/s3_archiver:
    1.3 vs 0.7 us per candle, 3.2 vs 2.6 MB per 50k candles)."""
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression=COMPRESSION,
        row_group_size=ROW_GROUP_ROWS,
        write_statistics=True,
        use_dictionary=[f.name for f in table.schema if pa.types.is_string(f.type)],
    )
    return sink.getvalue()


def read_parquet(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))
