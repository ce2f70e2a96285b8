"""Coalescing per client, fan-out, overflow → resync, a stuck client does not hold others."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from dashboard.stream import Hub
from dashboard.views import CoalescingQueue, DashboardState, StateConfig, Subscription
from dashboard_records import candle, forming
from servicekit.clock import FakeClock


def test_queue_keeps_the_latest_frame_per_key_in_the_order_frames_were_made() -> None:
    q = CoalescingQueue(max_keys=4)
    q.put("price:A", b"1")
    q.put("price:B", b"2")
    q.put("price:A", b"3")
    # B (made second) before A's newer frame (made third): rising ids, so a body cut short
    # has delivered exactly the frames up to the browser's Last-Event-ID
    assert q.coalesced == 1 and q.drain() == [b"2", b"3"] and len(q) == 0
    q.put_many({"price:A": b"4", "price:B": b"5"})
    q.put_many({"price:C": b"6", "price:A": b"7"})
    assert q.coalesced == 2 and q.drain() == [b"5", b"6", b"7"]


def test_queue_overflow_drops_everything_and_asks_for_a_snapshot() -> None:
    q = CoalescingQueue(max_keys=2)
    q.put("a", b"1")
    q.put("b", b"2")
    q.put("c", b"3")
    assert q.overflowed and len(q) == 0
    q.put("d", b"4")  # ignored until the snapshot went out
    assert len(q) == 0
    q.reset()
    assert not q.overflowed


def hub(**options: Any) -> Hub:
    defaults: dict[str, Any] = {
        "interval_s": 0.01,
        "heartbeat_s": 60.0,
        "max_clients": 10,
        "max_keys": 8,
        "stall_timeout_s": 0.3,
    }
    defaults.update(options)
    return Hub(DashboardState(StateConfig()), clock=FakeClock(), **defaults)


class Browser:
    """An ASGI peer: records what `send` got; `stuck` makes send block like a full socket."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.bodies: list[bytes] = []
        self.stuck = stuck
        self.gone = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        if self.stuck:
            await asyncio.sleep(3600)
        self.bodies.append(message["body"])

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def events(self) -> list[tuple[str, Any]]:
        return [(event, data) for event, _id, data in self.events_with_ids()]

    def events_with_ids(self) -> list[tuple[str, str, Any]]:
        out = []
        for body in self.bodies:
            for block in body.split(b"\n\n"):
                lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
                if b"event" in lines:
                    data = orjson.loads(lines[b"data"])
                    out.append((lines[b"event"].decode(), lines[b"id"].decode(), data))
        return out


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_snapshot_first_then_coalesced_deltas() -> None:
    h = hub()
    h.publish(h.state.on_candle(candle("BTC-USD", 0, "100"), now_s=0))
    b = Browser()
    task = asyncio.create_task(h.serve(Subscription(), b.send, b.receive))
    await settle()
    for close in ("101", "102", "103"):  # three updates inside one interval
        h.publish(h.state.on_forming(forming("BTC-USD", 1, close, trades=int(close)), now_s=0))
    h.flush()
    await settle()
    events = b.events()
    assert events[0][0] == "snapshot" and "BTC-USD" in events[0][1]["markets"]
    prices = [v["v"]["last"] for e, v in events[1:] if e == "delta" and v["k"] == "price:BTC-USD"]
    assert prices == ["103"]  # one frame for the symbol, the latest
    b.gone.set()
    await asyncio.wait_for(task, 1)
    assert not h.clients


async def test_symbol_filter_keeps_other_symbols_away() -> None:
    h = hub()
    b = Browser()
    task = asyncio.create_task(
        h.serve(Subscription.parse(views="markets", symbols="AAPL"), b.send, b.receive)
    )
    await settle()
    h.publish(h.state.on_forming(forming("BTC-USD", 0, "1"), now_s=0))
    h.publish(h.state.on_forming(forming("AAPL", 0, "2"), now_s=0))
    h.flush()
    await settle()
    keys = [v["k"] for e, v in b.events() if e == "delta"]
    assert "price:AAPL" in keys and "price:BTC-USD" not in keys
    task.cancel()


async def test_overflow_sends_a_fresh_snapshot_instead_of_the_backlog() -> None:
    h = hub(max_keys=3)
    slow = Browser()
    task = asyncio.create_task(h.serve(Subscription(), slow.send, slow.receive))
    await settle()
    slow.stuck = True
    h.publish(h.state.on_forming(forming("S0", 0, "1"), now_s=0))
    h.flush()
    await settle()  # the writer is now blocked in send
    for n in range(1, 10):
        h.publish(h.state.on_forming(forming(f"S{n}", 0, str(n)), now_s=0))
        h.flush()
    [client] = h.clients
    assert client.queue.overflowed and len(client.queue) == 0  # bounded, whatever the backlog
    slow.stuck = False
    task.cancel()


async def test_stuck_client_is_dropped_and_others_keep_receiving() -> None:
    h = hub(stall_timeout_s=0.2)
    fast, stuck = Browser(), Browser(stuck=True)
    t1 = asyncio.create_task(h.serve(Subscription(), fast.send, fast.receive))
    t2 = asyncio.create_task(h.serve(Subscription(), stuck.send, stuck.receive))
    await settle()
    for n in range(5):
        h.publish(h.state.on_forming(forming("BTC-USD", 0, str(100 + n), trades=n + 1), now_s=0))
        h.flush()
        await asyncio.sleep(0.01)
    assert len([e for e, _ in fast.events() if e == "delta"]) >= 5
    assert h.drop_stalled(now=h.clock.monotonic()) == 0  # blocked, but not for long yet
    h.clock.advance(0.5)  # type: ignore[attr-defined]  # a FakeClock
    assert h.drop_stalled(now=h.clock.monotonic()) == 1
    await asyncio.wait_for(t2, 1)  # its writer ended, the request task itself not cancelled
    assert not t2.cancelled() and len(h.clients) == 1
    t1.cancel()


async def test_heartbeat_keeps_an_idle_stream_alive() -> None:
    h = hub(interval_s=0.01, heartbeat_s=0.0)
    b = Browser()
    task = asyncio.create_task(h.serve(Subscription(), b.send, b.receive))
    runner = asyncio.create_task(h.run())
    # the first wake also carries the status frame; a later one is the bare heartbeat (up to
    # 2 s: a loaded machine runs the 10 ms loop late)
    for _ in range(200):
        await asyncio.sleep(0.01)
        if any(body.startswith(b": heartbeat") for body in b.bodies):
            break
    assert any(body.startswith(b": heartbeat") for body in b.bodies)
    runner.cancel()
    task.cancel()


async def test_portfolio_and_correlation_are_recomputed_once_per_flush() -> None:
    h = hub()
    from decimal import Decimal

    from dashboard.views import Position

    h.state.set_positions([Position(symbol="AAPL", quantity=Decimal(2), cost=Decimal(1))])
    b = Browser()
    task = asyncio.create_task(h.serve(Subscription(), b.send, b.receive))
    await settle()
    for close in ("5", "6"):
        h.publish(h.state.on_forming(forming("AAPL", 0, close, trades=int(close)), now_s=0))
    h.flush()
    await settle()
    portfolios = [v["v"] for e, v in b.events() if e == "delta" and v["k"] == "portfolio"]
    assert [p["total_value"] for p in portfolios] == ["12.00"]
    assert any(v["k"] == "correlation" for e, v in b.events() if e == "delta")
    task.cancel()


class FakeCycle:
    """Shaped like uvicorn's httptools RequestResponseCycle, as DirectWriter reads it."""

    def __init__(self) -> None:
        self.chunked_encoding = True
        self.disconnected = False
        self.flow = type("Flow", (), {"write_paused": False})()
        self.written: list[bytes] = []
        self.sent: list[bytes] = []
        self.transport = self

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return None  # no real socket to size

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message["body"])

    async def receive(self) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}


async def test_a_client_keeping_up_gets_frames_written_from_the_flush_itself() -> None:
    h = hub()
    cycle = FakeCycle()
    task = asyncio.create_task(h.serve(Subscription(), cycle.send, cycle.receive))
    await settle()
    assert len(cycle.sent) == 1 and b"event: snapshot" in cycle.sent[0]
    h.publish(h.state.on_forming(forming("BTC-USD", 0, "101"), now_s=0))
    h.flush()  # no await: written by the flush, not by the client's writer task
    [chunk] = cycle.written
    size, _, rest = chunk.partition(b"\r\n")
    assert int(size, 16) == len(rest) - 2 and rest.endswith(b"\r\n")  # one HTTP chunk
    assert b'"k":"price:BTC-USD"' in rest and len(cycle.sent) == 1
    cycle.flow.write_paused = True  # the socket backs up: back to the queue and the writer
    h.publish(h.state.on_forming(forming("BTC-USD", 0, "102", trades=4), now_s=0))
    h.flush()
    await settle()
    assert len(cycle.written) == 1 and b'"last":"102"' in cycle.sent[-1]
    task.cancel()


async def test_direct_writes_can_be_turned_off() -> None:
    h = hub(direct_writes=False)
    cycle = FakeCycle()
    task = asyncio.create_task(h.serve(Subscription(), cycle.send, cycle.receive))
    await settle()
    h.publish(h.state.on_forming(forming("BTC-USD", 0, "101"), now_s=0))
    h.flush()
    await settle()
    assert cycle.written == [] and b'"last":"101"' in cycle.sent[-1]
    task.cancel()


def quiet_hub(**options: Any) -> Hub:
    """A hub whose first status frame is out already (the clock does not move after)."""
    h = hub(**options)
    h.flush()
    return h


async def _connect(h: Hub, sub: Subscription, *, last_event_id: str | None = None) -> Any:
    b = Browser()
    task = asyncio.create_task(h.serve(sub, b.send, b.receive, last_event_id=last_event_id))
    await settle()
    return b, task


async def _leave(b: Browser, task: Any) -> None:
    b.gone.set()
    await asyncio.wait_for(task, 1)


async def test_reconnect_with_last_event_id_gets_only_the_missed_frames() -> None:
    h = quiet_hub()
    sub = Subscription.parse(views="markets", symbols="BTC-USD,ETH-USD")
    first, task = await _connect(h, sub)
    h.publish(h.state.on_forming(forming("BTC-USD", 1, "101"), now_s=0))
    h.flush()
    await settle()
    seen = first.events_with_ids()
    assert [e for e, _i, _d in seen][:2] == ["snapshot", "delta"]
    last_id = seen[-1][1]
    await _leave(first, task)
    # while away: BTC twice (only the latest is owed), ETH once, a symbol it does not watch
    for symbol, close in (("BTC-USD", "102"), ("ETH-USD", "7"), ("AAPL", "5"), ("BTC-USD", "103")):
        h.publish(h.state.on_forming(forming(symbol, 1, close), now_s=0))
        h.flush()
    again, task = await _connect(h, sub, last_event_id=last_id)
    events = again.events()
    assert events and all(e == "delta" for e, _ in events)  # no snapshot: a resume
    assert [(d["k"], d["v"]["last"]) for _e, d in events if d["k"] != "status"] == [
        ("price:ETH-USD", "7"),
        ("price:BTC-USD", "103"),
    ]
    h.publish(h.state.on_forming(forming("ETH-USD", 1, "8"), now_s=0))
    h.flush()
    await settle()
    assert again.events()[-1][1]["v"]["last"] == "8"  # and the live deltas after them
    await _leave(again, task)


async def test_reconnect_that_missed_nothing_gets_nothing_again() -> None:
    h = quiet_hub()
    h.publish(h.state.on_forming(forming("BTC-USD", 1, "101"), now_s=0))
    h.flush()
    b, task = await _connect(h, Subscription(), last_event_id=h.event_id().decode())
    assert b.bodies == []
    await _leave(b, task)


@pytest.mark.parametrize("case", ["evicted", "other instance", "ahead", "malformed"])
async def test_reconnect_that_cannot_be_replayed_gets_a_fresh_snapshot(case: str) -> None:
    h = quiet_hub(replay_frames=2)
    sub = Subscription()
    h.publish(h.state.on_forming(forming("BTC-USD", 1, "101"), now_s=0))
    h.flush()
    last_id = h.event_id().decode()
    for n in range(3):  # three frames more: the replay buffer holds two
        h.publish(h.state.on_forming(forming(f"S{n}", 1, "1"), now_s=0))
        h.flush()
    last_id = {
        "evicted": last_id,
        "other instance": "0badcafe-" + last_id.rpartition("-")[2],
        "ahead": f"{h.instance}-{h.seq + 5}",
        "malformed": "yesterday",
    }[case]
    b, task = await _connect(h, sub, last_event_id=last_id)
    events = b.events()
    assert events[0][0] == "snapshot" and len(events) == 1
    assert {"BTC-USD", "S0", "S1", "S2"} <= set(events[0][1]["markets"])
    await _leave(b, task)


async def test_resume_recomputes_portfolio_and_correlation_nobody_drew_meanwhile() -> None:
    h = quiet_hub()
    sub = Subscription.parse(views="portfolio", symbols=None)
    last_id = h.event_id().decode()
    h.publish(h.state.on_forming(forming("BTC-USD", 1, "101"), now_s=0))
    h.flush()  # no client: no portfolio frame was made
    b, task = await _connect(h, sub, last_event_id=last_id)
    assert [(e, d["k"]) for e, d in b.events() if d["k"] != "status"] == [("delta", "portfolio")]
    await _leave(b, task)


async def test_resume_past_the_queue_bound_becomes_a_resync() -> None:
    h = quiet_hub(max_keys=8)
    last_id = h.event_id().decode()
    for n in range(12):
        h.publish(h.state.on_forming(forming(f"S{n}", 1, "1"), now_s=0))
        h.flush()
    b, task = await _connect(h, Subscription(views=frozenset({"markets"})), last_event_id=last_id)
    assert [e for e, _d in b.events()] == ["snapshot"]  # bounded as ever
    await _leave(b, task)
