"""A write-back view of a Faust table for one batch of events.

The flows read and write plain mappings. In the worker each table sits behind a `WriteBack`:
reads go through to the table (or to this batch's pending value), writes are held, and
`flush()` writes every changed key once — one changelog record per key per batch instead of one
per event. For a partitioned table the changelog partition comes from the *current event*, so
each pending write remembers the event that last touched its key and flush re-enters it.

`changelog_records()` does the same writes without Faust's per-write machinery (a
FutureMessage, its buffer and callbacks: about 35 µs a write): it sets the table's store and
returns the changelog records, keyed and serialized as the table would, for the agent to send
with its outputs. Faust flushes the producer before it commits, so they are as safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

_DELETED = object()


@dataclass(frozen=True, slots=True)
class ChangelogRecord:
    topic: str
    key: bytes
    value: bytes | None  # None: a tombstone (the key was deleted)
    partition: int | None  # None: the producer's partitioner picks (tables with use_partitioner)


class WriteBack(MutableMapping[str, Any]):
    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self.current_event: Any = None  # set by the agent before each event is handled
        self._pending: dict[str, tuple[Any, Any]] = {}  # key → (value | _DELETED, event)

    def __getitem__(self, key: str) -> Any:
        pending = self._pending.get(key)
        if pending is not None:
            if pending[0] is _DELETED:
                raise KeyError(key)
            return pending[0]
        return self.table[key]

    def get(self, key: str, default: Any = None) -> Any:
        # Not Mapping.get: a miss (every new dedup key) would raise and catch a KeyError.
        pending = self._pending.get(key)
        if pending is not None:
            return default if pending[0] is _DELETED else pending[0]
        table = self.table
        return table[key] if key in table else default  # noqa: SIM401  # see above

    def __setitem__(self, key: str, value: Any) -> None:
        self._pending[key] = (value, self.current_event)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._pending[key] = (_DELETED, self.current_event)

    def __contains__(self, key: object) -> bool:
        pending = self._pending.get(key) if isinstance(key, str) else None
        if pending is not None:
            return pending[0] is not _DELETED
        return key in self.table

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for key in self._pending:
            seen.add(key)
            if self._pending[key][0] is not _DELETED:
                yield key
        for key in self.table:
            if key not in seen:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self, set_event: Callable[[Any], None] | None = None) -> None:
        """Write every pending key to the table once, under the event that last changed it."""
        pending, self._pending = self._pending, {}
        for key, (value, event) in pending.items():
            if set_event is not None and event is not None:
                set_event(event)
            if value is _DELETED:
                if key in self.table:
                    del self.table[key]
            else:
                self.table[key] = value

    def changelog_records(self) -> list[ChangelogRecord]:
        """Apply every pending key to the Faust table's store; its changelog records to send."""
        pending, self._pending = self._pending, {}
        table: Any = self.table  # a Faust table here (plain mappings use `flush`)
        store = table.data
        topic = table.changelog_topic.get_topic_name()
        dumps_key, dumps_value = table.app.serializers.dumps_key, table.app.serializers.dumps_value
        key_type, key_serializer = table.key_type, table.key_serializer
        value_type, value_serializer = table.value_type, table.value_serializer
        # The memory store's key → changelog partition map (it fills it from recovery and
        # drops the keys of partitions this worker no longer holds when a recovery ends). A
        # key keeps the partition it lives in: a sweep deleting an old claim under a later
        # event of another partition must write the tombstone where the claim is.
        homes: dict[Any, int] = getattr(store, "_key_partition", {})
        partitioned = not table.use_partitioner
        records = []
        for key, (value, event) in pending.items():
            partition: int | None = None
            if partitioned:
                partition = homes.get(key)
                if partition is None:
                    partition = event.message.partition
            if value is _DELETED:
                if key not in store:
                    continue
                del store[key]
                homes.pop(key, None)
                raw_value = None
            else:
                store[key] = value
                if partition is not None:
                    homes[key] = partition
                raw_value = dumps_value(value_type, value, serializer=value_serializer)
            records.append(
                ChangelogRecord(
                    topic,
                    dumps_key(key_type, key, serializer=key_serializer),
                    raw_value,
                    partition,
                )
            )
        return records
