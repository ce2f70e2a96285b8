"""Explicit Arrow/Parquet schemas derived from the contract models, and their SQL spellings.

Decimals are DECIMAL(38,18) (`contracts.types`), times `timestamp[us, tz=UTC]`, enums strings,
`dict[str, X]` a `map<string, X>`. Every schema ends with the archive columns `_topic`,
`_partition`, `_offset`, `_archived_at`. A field the mapping does not know raises TypeError at
start-up rather than writing a column whose type a reader would have to guess.
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
from contracts.events import Event
from contracts.types import DECIMAL_PRECISION, DECIMAL_SCALE

DECIMAL_TYPE = pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE)
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

ARCHIVE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("_topic", pa.string(), nullable=False),
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_archived_at", TIMESTAMP_TYPE, nullable=False),
)


def _scalar_type(annotation: Any) -> pa.DataType:
    if typing.get_origin(annotation) is typing.Annotated:
        return _scalar_type(typing.get_args(annotation)[0])
    if annotation is bool:
        return pa.bool_()
    if annotation is int:
        return pa.int64()
    if annotation is float:
        return pa.float64()
    if annotation is Decimal:
        return DECIMAL_TYPE
    if annotation is datetime:
        return TIMESTAMP_TYPE
    if isinstance(annotation, type) and issubclass(annotation, str | enum.Enum):
        return pa.string()
    origin = typing.get_origin(annotation)
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if key_type is not str:
            raise TypeError(f"map keys must be str, got {key_type!r}")
        return pa.map_(pa.string(), _scalar_type(value_type))
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        return pa.list_(_scalar_type(item_type))
    raise TypeError(f"no Parquet mapping for {annotation!r}")


def arrow_type(annotation: Any) -> tuple[pa.DataType, bool]:
    """(Arrow type, nullable) for a pydantic field annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only Optional[X] unions are archived, got {annotation!r}")
        return _scalar_type(args[0]), True
    if origin is typing.Annotated:
        return arrow_type(typing.get_args(annotation)[0])
    return _scalar_type(annotation), False


@dataclass(frozen=True, slots=True)
class DatasetSchema:
    """The Arrow schema of one dataset and the names of the event's own fields."""

    event_fields: tuple[str, ...]
    schema: pa.Schema

    @property
    def event_schema(self) -> pa.Schema:
        """The event's own columns (without the archive columns)."""
        return pa.schema([self.schema.field(name) for name in self.event_fields])

    @property
    def json_readable(self) -> bool:
        """Whether Arrow's JSON reader can build every column (it cannot build maps)."""
        return not any(
            pa.types.is_map(f.type) or pa.types.is_list(f.type) for f in self.event_schema
        )


def schema_for(model: type[Event]) -> DatasetSchema:
    fields: list[pa.Field] = []
    for name, info in model.model_fields.items():
        dtype, optional = arrow_type(info.annotation)
        # A field with a default may be absent from older producers: keep it nullable.
        nullable = optional or not info.is_required()
        fields.append(pa.field(name, dtype, nullable=nullable))
    reserved = {f.name for f in ARCHIVE_FIELDS} & {f.name for f in fields}
    if reserved:
        raise TypeError(f"{model.__name__} uses reserved archive column names {sorted(reserved)}")
    return DatasetSchema(
        event_fields=tuple(f.name for f in fields),
        schema=pa.schema([*fields, *ARCHIVE_FIELDS]),
    )


def athena_type(dtype: pa.DataType) -> str:
    """The Hive/Athena DDL spelling of an Arrow type."""
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_int32(dtype):
        return "int"
    if pa.types.is_int64(dtype):
        return "bigint"
    if pa.types.is_float64(dtype):
        return "double"
    if pa.types.is_string(dtype):
        return "string"
    if pa.types.is_decimal(dtype):
        return f"decimal({dtype.precision},{dtype.scale})"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_map(dtype):
        return f"map<{athena_type(dtype.key_type)},{athena_type(dtype.item_type)}>"
    if pa.types.is_list(dtype):
        return f"array<{athena_type(dtype.value_type)}>"
    raise TypeError(f"no Athena type for {dtype}")


def is_compatible_evolution(old: pa.Schema, new: pa.Schema) -> tuple[bool, str]:
    """Whether `new` only adds nullable columns to `old` (the one change readers absorb)."""
    for old_field in old:
        index = new.get_field_index(old_field.name)
        if index < 0:
            return False, f"column {old_field.name!r} removed"
        if not new.field(index).type.equals(old_field.type):
            return False, f"column {old_field.name!r} changed type"
    for new_field in new:
        if old.get_field_index(new_field.name) < 0 and not new_field.nullable:
            return False, f"added column {new_field.name!r} is not nullable"
    return True, "ok"
