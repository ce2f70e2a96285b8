"""Server-sent events: one snapshot on connect, then deltas, coalesced per key per client.

The hub gathers the state's changes and, once per coalescing interval, encodes each changed
key's frame once and hands the same bytes to every client that wants it. Each client has a
bounded `CoalescingQueue` and its own writer: a slow socket only makes its own queue coalesce,
and an overflow replaces the queue with a fresh snapshot (resync), so a stuck browser never
slows the others nor holds more than `max_keys` frames.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from servicekit import metrics
from servicekit.clock import Clock

from dashboard.views import Change, CoalescingQueue, DashboardState, Subscription

log = logging.getLogger(__name__)

HEARTBEAT = b": heartbeat\n\n"
Send = Callable[[dict[str, Any]], Any]
Receive = Callable[[], Any]


def frame(event: str, seq: int, document: Any) -> bytes:
    return b"event: %s\nid: %d\ndata: %s\n\n" % (event.encode(), seq, orjson.dumps(document))


class Client:
    __slots__ = ("closed", "heartbeat_due", "needs_snapshot", "queue", "sub", "wake")

    def __init__(self, sub: Subscription, *, max_keys: int) -> None:
        self.sub = sub
        self.queue = CoalescingQueue(max_keys=max_keys)
        self.wake = asyncio.Event()
        self.needs_snapshot = True
        self.heartbeat_due = False
        self.closed = False


class Hub:
    """Fans the state's changes out to the connected clients; see the module docstring."""

    def __init__(
        self,
        state: DashboardState,
        *,
        clock: Clock,
        interval_s: float,
        heartbeat_s: float,
        max_clients: int,
        max_keys: int,
        stall_timeout_s: float,
    ) -> None:
        self.state = state
        self.clock = clock
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self.max_clients = max_clients
        self.max_keys = max_keys
        self.stall_timeout_s = stall_timeout_s
        self.clients: set[Client] = set()
        self.pending: dict[str, Any] = {}
        self.seq = 0
        self._last_status: Any = None
        self._snapshots: dict[Subscription, tuple[int, bytes]] = {}
        self.frames_sent = 0  # also in metrics; the benchmark reads it directly

    # -- input ---------------------------------------------------------------------------

    def publish(self, changes: list[Change]) -> None:
        """Changes wait here until the next flush; a later one for a key replaces the older."""
        for key, payload in changes:
            self.pending[key] = payload
            if key.startswith("price:") and self.state.holds(key[6:]):
                self.pending["portfolio"] = None  # recomputed at flush
            if key.startswith(("price:", "candle:")):
                self.pending["correlation"] = None

    # -- output ----------------------------------------------------------------------------

    def flush(self) -> int:
        """Encode each pending key once and queue it for every client that wants it."""
        now_s = self.clock.monotonic()
        status = self.state.status(now_s=now_s)
        if status != self._last_status:
            self._last_status = status
            self.pending["status"] = status
        if not self.pending:
            return 0
        pending, self.pending = self.pending, {}
        if "portfolio" in pending:
            pending["portfolio"] = self.state.portfolio()
        if "correlation" in pending:
            pending["correlation"] = self.state.correlation()
        frames = []
        for key, payload in pending.items():
            self.seq += 1
            frames.append((key, frame("delta", self.seq, {"k": key, "v": payload})))
        coalesced = 0
        for client in self.clients:
            queue = client.queue
            before = queue.coalesced
            for key, data in frames:
                if client.sub.wants(key):
                    queue.put(key, data)
            coalesced += queue.coalesced - before
            if len(queue) or queue.overflowed:
                client.wake.set()
        if coalesced:
            metrics.DASHBOARD_COALESCED.inc(coalesced)
        return len(frames)

    def snapshot(self, sub: Subscription) -> bytes:
        """The snapshot frame for `sub`, encoded once per flush sequence and reused."""
        cached = self._snapshots.get(sub)
        if cached is not None and cached[0] == self.seq:
            return cached[1]
        if len(self._snapshots) > 64:
            self._snapshots.clear()
        data = frame("snapshot", self.seq, self.state.snapshot(sub, now_s=self.clock.monotonic()))
        self._snapshots[sub] = (self.seq, data)
        return data

    async def run(self) -> None:
        """The flush loop, with a heartbeat to every client each `heartbeat_s`."""
        next_heartbeat = self.clock.monotonic() + self.heartbeat_s
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.flush()
            except Exception:  # a bug in one flush must not stop the stream for good
                log.exception("flush failed; changes of this interval dropped")
            if self.clock.monotonic() >= next_heartbeat:
                next_heartbeat = self.clock.monotonic() + self.heartbeat_s
                for client in self.clients:
                    client.heartbeat_due = True
                    client.wake.set()

    # -- one client --------------------------------------------------------------------------

    async def serve(self, sub: Subscription, send: Send, receive: Receive) -> None:
        """Write one client's stream until it goes away or stalls. Headers are sent already."""
        client = Client(sub, max_keys=self.max_keys)
        client.wake.set()  # the snapshot goes out at once
        self.clients.add(client)
        metrics.DASHBOARD_CLIENTS.set(len(self.clients))
        watcher = asyncio.ensure_future(_watch_disconnect(client, receive))
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                if client.closed:
                    return
                if client.needs_snapshot or client.queue.overflowed:
                    if not client.needs_snapshot:
                        metrics.DASHBOARD_RESYNCS.inc()
                    client.needs_snapshot = False
                    client.queue.reset()
                    body = self.snapshot(sub)
                    kind, count = "snapshot", 1
                else:
                    frames = client.queue.drain()
                    if client.heartbeat_due:
                        frames.append(HEARTBEAT)
                    body, kind, count = b"".join(frames), "delta", len(frames)
                client.heartbeat_due = False
                if not body:
                    continue
                try:
                    await asyncio.wait_for(
                        send({"type": "http.response.body", "body": body, "more_body": True}),
                        self.stall_timeout_s,
                    )
                except TimeoutError:
                    metrics.DASHBOARD_DROPPED_CLIENTS.inc()
                    log.info("dropping a client stuck for %.0f s", self.stall_timeout_s)
                    return
                except OSError:  # uvicorn's ClientDisconnected
                    return
                self.frames_sent += count
                metrics.DASHBOARD_FRAMES_SENT.labels(kind).inc(count)
        finally:
            watcher.cancel()
            self.clients.discard(client)
            metrics.DASHBOARD_CLIENTS.set(len(self.clients))


async def _watch_disconnect(client: Client, receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            client.closed = True
            client.wake.set()
            return
