"""The Debezium change-event envelope (JSON converter, with or without embedded schemas).

`decode_change_event` returns None for a tombstone (the null value Kafka compaction needs
after a delete). It raises `EnvelopeError` for anything that is not a valid envelope, so the
caller can dead-letter the original bytes with the reason.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from contracts.types import utc_from_epoch_ms


class Op(StrEnum):
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # snapshot
    TRUNCATE = "t"
    MESSAGE = "m"  # logical decoding message; Pulse does not emit these


class EnvelopeError(ValueError):
    """The bytes are not a Debezium envelope Pulse can use; `reason` is machine-readable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Source(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    connector: str | None = None
    name: str | None = None
    ts_ms: int
    snapshot: str | None = None  # "true", "false", "last", "first", "incremental"… a string
    db: str | None = None
    schema_: str | None = None
    table: str | None = None
    txId: int | None = None  # noqa: N815  # Debezium's field name
    lsn: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _rename_schema(cls, data: Any) -> Any:
        if isinstance(data, dict) and "schema" in data:
            data = {**data, "schema_": data["schema"]}
        return data


RowT = TypeVar("RowT", bound=BaseModel)


class ChangeEvent(BaseModel):
    """One row change. `before` is null on create and, with REPLICA IDENTITY DEFAULT, on update."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    op: Op
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    source: Source
    ts_ms: int | None = None

    @model_validator(mode="after")
    def _images_match_op(self) -> ChangeEvent:
        if self.op in (Op.CREATE, Op.READ, Op.UPDATE) and self.after is None:
            raise ValueError(f"op {self.op.value!r} needs an 'after' image")
        if self.op is Op.DELETE and self.before is None:
            raise ValueError("op 'd' needs a 'before' image")
        return self

    @property
    def is_snapshot(self) -> bool:
        return self.op is Op.READ

    @property
    def row_image(self) -> dict[str, Any] | None:
        """The row as it is now (after), or as it was before a delete."""
        return self.before if self.op is Op.DELETE else self.after

    @property
    def source_time(self) -> datetime:
        return utc_from_epoch_ms(self.source.ts_ms)

    def row(self, model: type[RowT]) -> RowT:
        """Parse the current row image into a typed row model; raises EnvelopeError."""
        image = self.row_image
        if image is None:
            raise EnvelopeError("schema_invalid", f"op {self.op.value!r} has no row image")
        try:
            return model.model_validate(image)
        except ValidationError as exc:
            raise EnvelopeError("schema_invalid", _short(exc)) from exc

    def before_row(self, model: type[RowT]) -> RowT | None:
        if self.before is None:
            return None
        try:
            return model.model_validate(self.before)
        except ValidationError as exc:
            raise EnvelopeError("schema_invalid", _short(exc)) from exc


def _short(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    return f"{loc}: {first.get('msg', 'invalid')} ({exc.error_count()} error(s))"


def _unwrap(document: Any) -> Any:
    """Strip the `{"schema": …, "payload": …}` wrapper of `schemas.enable=true`."""
    if isinstance(document, dict) and "payload" in document and "schema" in document:
        return document["payload"]
    return document


def decode_change_event(value: bytes | None) -> ChangeEvent | None:
    """Decode a Debezium value; None for a tombstone. Raises EnvelopeError."""
    if value is None or value == b"":
        return None
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("undecodable", f"not JSON: {exc}") from exc
    payload = _unwrap(document)
    if payload is None:
        return None  # a schema-wrapped tombstone
    if not isinstance(payload, dict):
        raise EnvelopeError("schema_invalid", f"envelope is {type(payload).__name__}, not object")
    try:
        return ChangeEvent.model_validate(payload)
    except ValidationError as exc:
        raise EnvelopeError("schema_invalid", _short(exc)) from exc


def decode_change_key(key: bytes | None) -> dict[str, Any] | None:
    """Decode a Debezium key (the primary key columns); None when absent. Raises EnvelopeError."""
    if key is None or key == b"":
        return None
    try:
        document = _unwrap(orjson.loads(key))
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("undecodable", f"key is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise EnvelopeError("schema_invalid", "key is not an object")
    return document
