"""Per-feed continuity: trade-id dedup across reconnects (bounded memory) and gap detection on
consecutive trade numbers. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Gap:
    venue_symbol: str
    first_missing: int
    last_missing: int
    reason: str  # sequence_skip | reconnect

    @property
    def missing_count(self) -> int:
        return self.last_missing - self.first_missing + 1


class Continuity:
    """What one feed has already published.

    `admit` says whether a trade is new; a duplicate (the exchange replaying trades after a
    reconnect, or sending one twice) is refused. Ids are remembered in arrival order and the
    oldest forgotten past `capacity`; for numbered feeds a number at or below the highest seen
    and not remembered is also refused, so a replay older than the window cannot slip through.
    """

    def __init__(self, *, capacity: int) -> None:
        self.capacity = capacity
        # An OrderedDict, not a dict: evicting a dict's oldest key (`next(iter(d))`) walks
        # past every slot deleted before it until the dict is next rebuilt, so once full each
        # admitted trade cost a scan of up to `capacity` slots (20 % of the connector's CPU
        # past its first 100,000 trades); `popitem(last=False)` unlinks the oldest in O(1).
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._highest: dict[str, int] = {}
        self._reconnected: set[str] = set()

    def reconnected(self) -> None:
        """A new connection: the next gap on each symbol happened while we were away."""
        self._reconnected = set(self._highest)

    def admit(
        self, venue_symbol: str, trade_id: str, number: int | None
    ) -> tuple[bool, Gap | None]:
        """(is_new, gap before it). Call once per trade, in arrival order."""
        key = (venue_symbol, trade_id)
        if key in self._seen:
            return False, None
        gap = None
        if number is not None:
            highest = self._highest.get(venue_symbol)
            if highest is not None and number <= highest:
                # Not remembered but below the high mark: older than the window, or a number
                # inside an already reported gap; both were accounted for before.
                return False, None
            if highest is not None and number > highest + 1:
                reason = "reconnect" if venue_symbol in self._reconnected else "sequence_skip"
                gap = Gap(venue_symbol, highest + 1, number - 1, reason)
            self._highest[venue_symbol] = number
            if self._reconnected:
                self._reconnected.discard(venue_symbol)
        seen = self._seen
        seen[key] = None
        if len(seen) > self.capacity:
            seen.popitem(last=False)  # the oldest
        return True, gap

    def forget(self, trades: list[tuple[str, str, int | None]]) -> None:
        """Undo `admit` for the latest trades (venue symbol, id, number), which could not be
        published: a replay of them is then new again, and without one the next trade after
        them reports them as a gap."""
        for venue_symbol, trade_id, number in trades:
            self._seen.pop((venue_symbol, trade_id), None)
            if number is not None and self._highest.get(venue_symbol, number) >= number:
                self._highest[venue_symbol] = number - 1

    def __len__(self) -> int:
        return len(self._seen)
