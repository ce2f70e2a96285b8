"""Which traces an archive object ends (tracing on): the traceparents of records buffered and
not yet written, per Kafka partition, bounded. Pure: no I/O, no OpenTelemetry.

An object holds up to a million records, so its write span cannot be every record's child.
It is the child of the first traced record it holds (so a trace followed from the API ends
with the archive write) and links to the next `max_links` (OpenTelemetry's way to relate one
operation to many causes); the rest are counted, not linked. Per partition at most
`max_pending` traceparents wait for their object: a backlog of traced records costs a bounded
deque, not one entry per record.

An object covers its buffer's offset range; a partition with buffers for several event-time
hours at once has interleaved ranges, so a record near an hour boundary may be linked from
both objects that span it: over-linking, never a missing end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

MAX_LINKS = 32
MAX_PENDING = 1024


@dataclass(frozen=True, slots=True)
class ObjectTraces:
    parent: str | None  # the first traced record's traceparent
    links: list[str]  # the next ones, at most max_links
    traced_records: int  # traced records the object covers (pending ones)


class PendingTraces:
    def __init__(self, *, max_pending: int = MAX_PENDING, max_links: int = MAX_LINKS) -> None:
        self.max_pending = max_pending
        self.max_links = max_links
        self.dropped = 0  # traceparents not kept because a partition had max_pending waiting
        self._parts: dict[tuple[str, int], deque[tuple[int, str]]] = {}

    def add(self, topic: str, partition: int, traces: list[tuple[int, str]]) -> None:
        """Records' (offset, traceparent), in offset order."""
        pending = self._parts.setdefault((topic, partition), deque())
        room = max(0, self.max_pending - len(pending))
        pending.extend(traces[:room])
        self.dropped += max(0, len(traces) - room)

    def for_object(self, topic: str, partition: int, start: int, end: int) -> ObjectTraces:
        """The traces an object holding offsets `start`..`end` (inclusive) ends."""
        covered = [
            tp for offset, tp in self._parts.get((topic, partition), ()) if start <= offset <= end
        ]
        if not covered:
            return ObjectTraces(None, [], 0)
        return ObjectTraces(covered[0], covered[1 : 1 + self.max_links], len(covered))

    def forget_before(self, offsets: Iterable[tuple[tuple[str, int], int]]) -> None:
        """Committed offsets: the records below them are written and need no span."""
        for tp, committed in offsets:
            pending = self._parts.get(tp)
            while pending and pending[0][0] < committed:
                pending.popleft()

    def drop_partition(self, topic: str, partition: int) -> None:
        self._parts.pop((topic, partition), None)
