"""Liveness: a partition is stalled when its lag has grown while its position has not
advanced for at least `stall_after_s`. Pure; the worker feeds it position/high-watermark samples.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Track:
    position: int
    lag_at_advance: int  # lag when the position last advanced
    lag: int
    since: float  # monotonic time the position last advanced


class StallDetector:
    def __init__(self, *, stall_after_s: float) -> None:
        self._stall_after_s = stall_after_s
        self._tracks: dict[tuple[str, int], _Track] = {}

    def sample(
        self, topic: str, partition: int, *, position: int, highwater: int, now: float
    ) -> bool:
        """Record one sample; True when this partition is stalled."""
        lag = max(0, highwater - position)
        track = self._tracks.get((topic, partition))
        if track is None or position > track.position or lag == 0:
            self._tracks[(topic, partition)] = _Track(position, lag, lag, now)
            return False
        track.lag = lag
        return self._is_stalled(track, now)

    def _is_stalled(self, track: _Track, now: float) -> bool:
        return track.lag > track.lag_at_advance and now - track.since >= self._stall_after_s

    def stalled(self, *, now: float) -> list[tuple[str, int]]:
        return [key for key, track in self._tracks.items() if self._is_stalled(track, now)]

    def forget(self, topic: str, partition: int) -> None:
        """After a rebalance takes the partition away."""
        self._tracks.pop((topic, partition), None)
