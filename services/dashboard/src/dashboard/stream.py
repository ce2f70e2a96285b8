"""Server-sent events: one snapshot on connect, then deltas, coalesced per key per client.

The hub gathers the state's changes and, once per coalescing interval, encodes each changed
key's frame once and hands the same bytes to every client that wants it. Each client has a
bounded `CoalescingQueue` and its own writer: a slow socket only makes its own queue coalesce,
and an overflow replaces the queue with a fresh snapshot (resync), so a stuck browser never
slows the others nor holds more than `max_keys` frames.

Resume: every frame's SSE id is `<instance>-<seq>` (a token of this server process, and the
flush sequence). The hub keeps the newest `replay_frames` delta frames; a browser that
reconnects with Last-Event-ID (EventSource sends it by itself) from this instance, and missed
only frames still held, gets those it wants (the latest per key, in order) instead of a
snapshot; any other reconnect gets a fresh snapshot, as a new client does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
from servicekit import metrics
from servicekit.clock import Clock

from dashboard.views import Change, CoalescingQueue, DashboardState, Subscription, resolve

log = logging.getLogger(__name__)

HEARTBEAT = b": heartbeat\n\n"
KINDS = ("snapshot", "delta")
Send = Callable[[dict[str, Any]], Any]
Receive = Callable[[], Any]


def frame(event: str, event_id: bytes, document: Any) -> bytes:
    return b"event: %s\nid: %s\ndata: %s\n\n" % (event.encode(), event_id, orjson.dumps(document))


class DirectWriter:
    """Writes a flush's frames straight to the socket of a client that is keeping up, from
    the hub's flush loop, instead of waking that client's writer task to call ASGI `send`
    (per client per flush that wake + send cost several times the write itself: the
    benchmark's p99). Reaches into uvicorn's httptools cycle: `send.__self__` is the
    RequestResponseCycle, with `transport`, `flow.write_paused`, `disconnected` and
    `chunked_encoding`. Checked for uvicorn <0.55 (pinned in pyproject.toml;
    tests/unit/dashboard/test_dashboard_uvicorn_internals.py fails on a change). When any of
    it is missing, `of` returns None and the client is served through `send` only."""

    __slots__ = ("cycle", "flow", "transport")

    def __init__(self, cycle: Any) -> None:
        self.cycle = cycle
        self.transport = cycle.transport
        self.flow = cycle.flow

    @classmethod
    def of(cls, send: Send) -> DirectWriter | None:
        """After the response has started (chunked): a writer, or None if not uvicorn's."""
        cycle = getattr(send, "__self__", None)
        if (
            getattr(cycle, "chunked_encoding", None) is not True
            or not hasattr(getattr(cycle, "transport", None), "write")
            or not hasattr(getattr(cycle, "flow", None), "write_paused")
            or not hasattr(cycle, "disconnected")
        ):
            return None
        return cls(cycle)

    def limit_send_buffer(self, size_bytes: int) -> None:
        """Cap the kernel's send buffer of this client's socket. Left to autotuning, Linux
        grows it to tcp_wmem's maximum (4 MB here): a browser that stopped reading would hold
        megabytes of kernel memory and never back up to the bounded queue and stall check
        (measured: +26 KB/s for minutes). With a cap, the socket backs up within seconds."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None and size_bytes > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size_bytes)

    def write(self, body: bytes) -> bool:
        """Write one chunk unless the socket is backed up or gone; False: use the queue."""
        if self.flow.write_paused or self.cycle.disconnected or self.transport.is_closing():
            return False
        self.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        return True


class Client:
    __slots__ = (
        "busy",
        "closed",
        "direct",
        "heartbeat_due",
        "needs_snapshot",
        "queue",
        "sending_since",
        "stalled",
        "sub",
        "task",
        "wake",
    )

    def __init__(self, sub: Subscription, *, max_keys: int) -> None:
        self.sub = sub
        self.queue = CoalescingQueue(max_keys=max_keys)
        self.wake = asyncio.Event()
        self.needs_snapshot = True
        self.heartbeat_due = False
        self.closed = False
        self.stalled = False
        self.sending_since: float | None = None  # monotonic start of a send still blocked
        self.task: asyncio.Task[Any] | None = None
        self.direct: DirectWriter | None = None  # set once the snapshot is out
        self.busy = False  # its writer is between a wake and the end of its send


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
        direct_writes: bool = True,
        send_buffer_bytes: int = 0,
        replay_frames: int = 8192,
    ) -> None:
        self.state = state
        self.clock = clock
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self.max_clients = max_clients
        self.max_keys = max_keys
        self.stall_timeout_s = stall_timeout_s
        self.direct_writes = direct_writes
        self.send_buffer_bytes = send_buffer_bytes
        self.clients: set[Client] = set()
        self.pending: dict[str, Any] = {}
        self.seq = 0
        # Ids from another process (a restart) never match: their sequence is not this one's.
        self.instance = secrets.token_hex(4)
        self._id_prefix = self.instance.encode() + b"-"
        # (seq, key, frame) of the newest delta frames, oldest first (see the module docstring).
        self._replay: deque[tuple[int, str, bytes]] = deque(maxlen=replay_frames)
        self._last_status: Any = None
        self._snapshots: dict[Subscription, tuple[int, bytes]] = {}
        self.frames_sent = 0  # also in metrics; the benchmark reads it directly
        # labels() costs microseconds: the children, looked up once
        self._sent = {kind: metrics.DASHBOARD_FRAMES_SENT.labels(kind) for kind in KINDS}

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
        # Computed only when someone draws them (correlation is ~300 series folds a flush);
        # a client subscribing later gets them in its snapshot.
        views = {view for sub in {c.sub for c in self.clients} for view in sub.views}
        if "portfolio" in pending:
            if "portfolio" in views:
                pending["portfolio"] = self.state.portfolio()
            else:
                del pending["portfolio"]
        if "correlation" in pending:
            if "correlation" in views:
                pending["correlation"] = self.state.correlation()
            else:
                del pending["correlation"]
        if not pending:
            return 0
        frames = []
        replay = self._replay
        prefix = self._id_prefix
        for key, payload in pending.items():
            self.seq += 1
            data = frame("delta", b"%b%d" % (prefix, self.seq), {"k": key, "v": resolve(payload)})
            frames.append((key, data))
            replay.append((self.seq, key, data))
        # The frames each distinct subscription wants, worked out once per flush (browsers
        # share a handful of subscriptions), then handed to each queue as one dict update.
        wanted: dict[Subscription, dict[str, bytes]] = {}
        joined: dict[Subscription, bytes] = {}
        coalesced = longest = direct_frames = 0
        for client in self.clients:
            batch = wanted.get(client.sub)
            if batch is None:
                sub = client.sub
                batch = wanted[sub] = {key: data for key, data in frames if sub.wants(key)}
                joined[sub] = b"".join(batch.values())
            if not batch:
                continue
            queue = client.queue
            # Straight to the socket when nothing is queued before these frames (order kept)
            # and the socket takes them; otherwise the queue and the client's writer.
            direct = client.direct
            if (
                direct is not None
                and not client.busy
                and not client.needs_snapshot
                and not queue.overflowed
                and not len(queue)
                and direct.write(joined[client.sub])
            ):
                direct_frames += len(batch)
                continue
            before = queue.coalesced
            queue.put_many(batch)
            coalesced += queue.coalesced - before
            longest = max(longest, len(queue))
            client.wake.set()
        if coalesced:
            metrics.DASHBOARD_COALESCED.inc(coalesced)
        if direct_frames:
            self.frames_sent += direct_frames
            self._sent["delta"].inc(direct_frames)
        metrics.DASHBOARD_QUEUE_MAX_KEYS.set(longest)
        return len(frames)

    def snapshot(self, sub: Subscription) -> bytes:
        """The snapshot frame for `sub`, encoded once per flush sequence and reused."""
        cached = self._snapshots.get(sub)
        if cached is not None and cached[0] == self.seq:
            return cached[1]
        if len(self._snapshots) > 64:
            self._snapshots.clear()
        data = frame(
            "snapshot", self.event_id(), self.state.snapshot(sub, now_s=self.clock.monotonic())
        )
        self._snapshots[sub] = (self.seq, data)
        return data

    def event_id(self) -> bytes:
        """The SSE id of the state as of the last flush."""
        return b"%b%d" % (self._id_prefix, self.seq)

    def missed(self, sub: Subscription, last_event_id: str) -> dict[str, bytes] | None:
        """The frames `sub` wants that came after `last_event_id`, the latest per key, in the
        order they were made; None when they cannot all be given (an id of another instance
        or a malformed one, or frames already gone from the replay buffer): then a snapshot.

        Portfolio and correlation frames are made only while someone draws them, so the
        buffer may lack them: when anything was missed, they are computed afresh for the views
        that show them."""
        instance, _, seq_text = last_event_id.strip().rpartition("-")
        if instance != self.instance or not seq_text.isdigit():
            return None
        last = int(seq_text)
        replay = self._replay
        oldest = replay[0][0] if replay else self.seq + 1
        if last > self.seq or last < oldest - 1:
            return None
        newest_first: dict[str, bytes] = {}
        anything = False
        for seq, key, data in reversed(replay):
            if seq <= last:
                break
            anything = True
            if key not in newest_first and sub.wants(key):
                newest_first[key] = data
        frames = dict(reversed(newest_first.items()))
        if anything:
            event_id = self.event_id()
            for key, compute in (
                ("portfolio", self.state.portfolio),
                ("correlation", self.state.correlation),
            ):
                if key in sub.views:
                    frames.pop(key, None)
                    frames[key] = frame("delta", event_id, {"k": key, "v": compute()})
        return frames

    async def run(self) -> None:
        """The flush loop, with a heartbeat to every client each `heartbeat_s` and, once a
        second, the stall check."""
        next_heartbeat = self.clock.monotonic() + self.heartbeat_s
        next_stall_check = self.clock.monotonic() + 1.0
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.flush()
            except Exception:  # a bug in one flush must not stop the stream for good
                log.exception("flush failed; changes of this interval dropped")
            now = self.clock.monotonic()
            if now >= next_heartbeat:
                next_heartbeat = now + self.heartbeat_s
                for client in self.clients:
                    client.heartbeat_due = True
                    client.wake.set()
            if now >= next_stall_check:
                next_stall_check = now + 1.0
                self.drop_stalled(now=now)

    def drop_stalled(self, *, now: float) -> int:
        """Cancel the writer of every client whose send has been blocked past the timeout
        (its socket accepts nothing). One sweep a second instead of a timer per send."""
        dropped = 0
        for client in self.clients:
            since = client.sending_since
            if since is not None and now - since > self.stall_timeout_s and not client.stalled:
                client.stalled = True
                if client.task is not None:
                    client.task.cancel()
                dropped += 1
        return dropped

    def close_all(self) -> None:
        """End every stream (shutdown): each writer returns at its next wake, at once."""
        for client in self.clients:
            client.closed = True
            client.wake.set()

    # -- one client --------------------------------------------------------------------------

    async def serve(
        self, sub: Subscription, send: Send, receive: Receive, *, last_event_id: str | None = None
    ) -> None:
        """Write one client's stream until it goes away or stalls. Headers are sent already.
        `last_event_id`: the browser's Last-Event-ID header on a reconnect (see `missed`)."""
        client = Client(sub, max_keys=self.max_keys)
        if last_event_id is not None:
            # No await from here to `clients.add`: no flush runs in between, so the client
            # gets every later frame from the flushes, after these.
            missed = self.missed(sub, last_event_id)
            metrics.DASHBOARD_RESUMES.labels("snapshot" if missed is None else "replayed").inc()
            if missed is not None:
                client.needs_snapshot = False
                client.queue.put_many(missed)  # more than max_keys: a resync, as ever
        client.task = asyncio.current_task()
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
                client.sending_since = self.clock.monotonic()
                client.busy = True
                try:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                except asyncio.CancelledError:
                    if not client.stalled:
                        raise  # a shutdown, not our stall check
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()
                    metrics.DASHBOARD_DROPPED_CLIENTS.inc()
                    log.info("dropping a client stuck for %.0f s", self.stall_timeout_s)
                    return
                except OSError:  # uvicorn's ClientDisconnected
                    return
                client.sending_since = None
                client.busy = False
                if client.direct is None and self.direct_writes:
                    client.direct = DirectWriter.of(send)
                    if client.direct is not None:
                        client.direct.limit_send_buffer(self.send_buffer_bytes)
                self.frames_sent += count
                self._sent[kind].inc(count)
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
