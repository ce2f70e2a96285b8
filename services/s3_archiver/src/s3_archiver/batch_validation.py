"""Vectorised validation of a batch of JSON events with Arrow, equivalent to the contract model;
the validated, typed columns are what the archiver buffers and writes (one parse per record).

Validating each record with pydantic costs ~24 µs for a candle (eight Python validators for
its decimals and times): far more than consuming it. For models whose every check Arrow can
express, a whole batch is parsed in C++ with a "wire" schema (decimals and times as strings,
as the contracts send them) and then cast strictly: a decimal cast fails on more than 20
integer or 18 fractional digits, a timestamp cast fails on a missing zone, a number where a
string is expected fails the parse. So a batch passes only if pydantic would accept every
record; if anything fails, the caller validates that batch record by record with the model
and dead-letters exactly the bad ones. Arrow being stricter than pydantic (e.g. `" 1.5"`) only
sends a batch down the slow path, never lets a bad record through.
"""

from __future__ import annotations

import enum
import functools
import io
import typing
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
from contracts.events import Event
from pyarrow import acero

from s3_archiver.parquet_schema import DatasetSchema

_US_PER_HOUR = 3_600_000_000
_SIGNS = pa.array(["+", "-"])
_OK, _HOUR = "_ok", "_hour"  # extra outputs of the projection
# One thread, one block: on a busy 2-core node Arrow's reader threads cost more CPU than
# they save (measured: 3.5 vs 4.3 us of CPU per candle).
READ_OPTIONS = pajson.ReadOptions(use_threads=False, block_size=64 * 1024 * 1024)


def _base(annotation: Any) -> tuple[Any, bool]:
    """(the field's base type, whether every Annotated layer is a contracts.types validator)."""
    ok = True
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            base, *meta = typing.get_args(annotation)
            ok = ok and all(_is_contract_validator(m) for m in meta)
            annotation = base
        elif origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return None, False
            annotation = args[0]
        else:
            return annotation, ok


def _is_contract_validator(meta: Any) -> bool:
    func = getattr(meta, "func", None)
    return func is not None and getattr(func, "__module__", "") == "contracts.types"


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    """A validated batch: its event columns, and each record's event hour since the epoch."""

    table: pa.Table
    hours: pa.Array | pa.ChunkedArray
    hour_range: tuple[int, int]  # (first, last) hour: equal when the batch is one hour

    @property
    def one_hour(self) -> int | None:
        return self.hour_range[0] if self.hour_range[0] == self.hour_range[1] else None


class BatchValidator:
    """Arrow-side twin of one contract model; build with `for_model`, None when not possible."""

    def __init__(
        self,
        *,
        wire: pa.Schema,
        casts: dict[str, pa.DataType],
        enums: dict[str, pa.Array],
        event_time_field: str,
        event_schema: pa.Schema,
    ) -> None:
        self.wire = wire
        self.event_schema = event_schema
        self.casts = casts
        self.enums = enums
        self.event_time_field = event_time_field
        self._options = pajson.ParseOptions(
            explicit_schema=wire, unexpected_field_behavior="ignore"
        )
        self._projection = acero.ProjectNodeOptions(*self._expressions())
        self._full_checks = acero.ProjectNodeOptions([self._checks(zone=_zone_has_minutes)], [_OK])

    def _checks(self, *, zone: Callable[[pc.Expression], pc.Expression]) -> pc.Expression:
        """Every record's zones (`zone` of each time) and enum values are allowed. A check is
        null where its column is null (an optional field left out): Kleene AND keeps a false
        anywhere false, and `all` skips nulls."""
        checks = [
            zone(pc.field(name))
            for name, target in self.casts.items()
            if pa.types.is_timestamp(target)
        ]
        checks += [
            pc.is_in(pc.field(name), value_set=allowed, skip_nulls=True)
            for name, allowed in self.enums.items()
        ]
        return functools.reduce(pc.and_kleene, checks, pc.scalar(True))

    def _expressions(self) -> tuple[list[pc.Expression], list[str]]:
        """What `_project` computes: the event columns, `_ok` with the cheap zone check
        (`_zulu`: every time ends in `Z`, as Pulse's own services write them; anything else
        is checked again in full by `_full_checks`), and `_hour`."""
        exprs = [
            pc.field(name).cast(self.casts[name]) if name in self.casts else pc.field(name)
            for name in self.event_schema.names
        ]
        ok = self._checks(zone=_zulu)
        event_us = pc.field(self.event_time_field).cast(self.casts[self.event_time_field])
        event_us = event_us.cast(pa.int64())
        # Floor division (integer division rounds towards zero, wrong before 1970).
        below = pc.if_else(pc.less(event_us, 0), _US_PER_HOUR - 1, 0)
        hour = pc.divide(pc.subtract_checked(event_us, below), pc.scalar(_US_PER_HOUR))
        exprs += [ok, hour]
        return exprs, [*self.event_schema.names, _OK, _HOUR]

    @classmethod
    def for_model(
        cls, model: type[Event], dataset: DatasetSchema, event_time_field: str
    ) -> BatchValidator | None:
        decorators = model.__pydantic_decorators__
        if decorators.model_validators or decorators.field_validators or not dataset.json_readable:
            return None
        wire: list[pa.Field] = []
        casts: dict[str, pa.DataType] = {}
        enums: dict[str, pa.Array] = {}
        for name, info in model.model_fields.items():
            base, ok = _base(info.annotation)
            ok = ok and all(_is_contract_validator(m) for m in info.metadata)
            if not ok or info.alias or base is None:
                return None  # a constraint (ge/le, pattern…) Arrow would not check
            target = dataset.schema.field(name)
            if info.is_required() and target.nullable:
                return None  # required-but-nullable: Arrow cannot tell missing from null
            if base is Decimal or base is datetime:
                wire.append(pa.field(name, pa.string(), nullable=target.nullable))
                casts[name] = target.type
            elif base in (str, int, float, bool):
                wire.append(target)
            elif isinstance(base, type) and issubclass(base, enum.Enum):
                wire.append(target)
                enums[name] = pa.array([str(e.value) for e in base], type=pa.string())
            else:
                return None
        if event_time_field not in casts:
            return None
        return cls(
            wire=pa.schema(wire),
            casts=casts,
            enums=enums,
            event_time_field=event_time_field,
            event_schema=dataset.event_schema,
        )

    def parse(self, values: Sequence[bytes | None]) -> ParsedBatch | None:
        """The batch as the dataset's event columns (typed as archived), or None if any record
        might be invalid (then validate the batch record by record)."""
        return self.parse_many([values])[0]

    def parse_many(self, batches: Sequence[Sequence[bytes | None]]) -> list[ParsedBatch | None]:
        """`parse` for each batch (one poll's partitions of one topic), read together.

        One JSON read and one Acero projection (strict casts and every check) for the whole
        poll, each releasing the GIL once. Separate compute calls per partition (~50 each)
        re-took the GIL from the loop thread, which decodes the next poll meanwhile, and each
        waited up to the interpreter's switch interval (bench: parse wall time 1.2-2x its CPU).
        Only if the whole read fails is each batch read alone, to find the ones that must go
        record by record.
        """
        sizes = [len(b) for b in batches]
        out = self._read([v for b in batches for v in b]) if all(sizes) else None
        if out is None:
            return [None] if len(batches) == 1 else [self.parse(b) for b in batches]
        return self._split(out, sizes)

    def _read(self, values: Sequence[bytes | None]) -> pa.Table | None:
        """The projected table (`_project`) if every record passed every check, else None."""
        n = len(values)
        if not n or not all(values):
            return None
        joined = b"\n".join(values)  # type: ignore[arg-type]  # all() ruled out None
        if joined.count(b"\n") != n - 1:
            return None  # a value spans lines: the reader would not see one record per value
        try:
            wire = pajson.read_json(
                io.BytesIO(joined), read_options=READ_OPTIONS, parse_options=self._options
            )
            if wire.num_rows != n:
                return None
            out = self._project(wire)
        except (pa.ArrowException, ValueError):
            return None
        if out.column(_HOUR).null_count:
            return None
        if pc.all(out.column(_OK)).as_py() is False and not self._passes_full_checks(wire):
            return None
        return out

    def _passes_full_checks(self, wire: pa.Table) -> bool:
        """The zone check in full (`±HH:MM` as well as `Z`) and the enums, for a batch whose
        times do not all end in `Z` (4 string kernels per time instead of 1)."""
        return pc.all(self._run(wire, self._full_checks).column(_OK)).as_py() is not False

    def _split(self, out: pa.Table, sizes: Sequence[int]) -> list[ParsedBatch | None]:
        """Cut a projected poll into its batches; their hours come from one run-length pass."""
        events = pa.Table.from_arrays(
            out.columns[: len(self.event_schema)], schema=self.event_schema
        )
        hours = out.column(_HOUR)
        run_ends: list[int] = []  # exclusive end row of each run of equal hours
        run_hours: list[int] = []
        for chunk in hours.chunks:
            runs = pc.run_end_encode(chunk)
            base = run_ends[-1] if run_ends else 0
            run_ends += [base + e for e in runs.run_ends.to_pylist()]
            run_hours += runs.values.to_pylist()
        total, start = len(events), 0
        parsed: list[ParsedBatch | None] = []
        for n in sizes:
            stop = start + n
            spanned = run_hours[bisect_right(run_ends, start) : bisect_left(run_ends, stop) + 1]
            table = events.slice(start, n)
            if 2 * n <= total:
                # A slice pins the whole poll's buffers: once its siblings are written, a
                # small one held in an open buffer (for the whole window) would keep the
                # poll's memory alive unaccounted. So the minor batches get their own copy.
                table = _copy(table)
            parsed.append(
                ParsedBatch(
                    table=table,
                    hours=hours.slice(start, n),
                    hour_range=(min(spanned), max(spanned)),
                )
            )
            start = stop
        return parsed

    def _project(self, wire: pa.Table) -> pa.Table:
        """The event columns (cast strictly), then `_ok` (every check passed or was null) and
        `_hour` (of the event time, since the epoch): one Acero projection, on this thread."""
        return self._run(wire, self._projection)

    @staticmethod
    def _run(wire: pa.Table, projection: acero.ProjectNodeOptions) -> pa.Table:
        plan = acero.Declaration.from_sequence(
            [
                acero.Declaration("table_source", acero.TableSourceNodeOptions(wire)),
                acero.Declaration("project", projection),
            ]
        )
        return plan.to_table(use_threads=False)

    def event_hours(self, values: Sequence[bytes]) -> list[int] | None:
        """Hours since the epoch (UTC) of each record's event time, or None if any record
        might be invalid."""
        parsed = self.parse(values)
        return None if parsed is None else [int(h) for h in parsed.hours.to_pylist()]


def _copy(table: pa.Table) -> pa.Table:
    """`table` in buffers of its own (combining two chunks, one of them empty, copies)."""
    return pa.concat_tables([table, table.slice(0, 0)]).combine_chunks()


def _zulu(time: pc.Expression) -> pc.Expression:
    return pc.ends_with(time, "Z")


def _zone_has_minutes(time: pc.Expression) -> pc.Expression:
    """Every time ends in `Z` or `±HH:MM`. Arrow's cast also takes `+02`, which pydantic
    rejects; such a batch goes record by record so the model decides (and dead-letters)."""
    zulu = pc.ends_with(time, "Z")
    colon = pc.equal(pc.utf8_slice_codeunits(time, -3, -2), ":")
    sign = pc.is_in(pc.utf8_slice_codeunits(time, -6, -5), value_set=_SIGNS)
    return pc.or_kleene(zulu, pc.and_kleene(colon, sign))
