"""The exchange simulator: one WebSocket server speaking the four protocols on four paths,
streaming a generated session, with fault controls for tests and demos.

Paths: `/coinbase`, `/binance/stream?streams=…`, `/kraken/v2`, `/alpaca/v2/iex`. Like a real
exchange the market moves whether or not anyone listens: trades emitted while a client is
away are never sent to it (it sees a gap after reconnecting).

Faults (methods, or `GET /control/<fault>?venue=…&n=…` over HTTP on the same port):
`drop` closes every connection of a venue; `mute` keeps them open but sends nothing more
(stopped heartbeats, a hung connection); `error` sends the venue's error message; `skip`
leaves the next n trade ids of each symbol out; `replay` makes the next connection receive
the last n trades of each symbol again after subscribing; `raw` sends a frame as given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from market_feeds.simulator import session
from market_feeds.simulator.session import SimTrade, SymbolTape

log = logging.getLogger(__name__)

VENUE_PATHS = {
    "/coinbase": "coinbase",
    "/binance/stream": "binance",
    "/kraken/v2": "kraken",
    "/alpaca/v2/iex": "alpaca",
}
HISTORY = 10_000  # trades kept per symbol for `replay`
BURST_CHUNK_BYTES = 64 * 1024  # whole frames per socket write in a burst
BURST_BUFFERED_BYTES = 1 << 20  # a burst waits while this much is not yet on the socket


@dataclass(eq=False)
class Subscriber:
    venue: str
    ws: ServerConnection
    symbols: set[str] = field(default_factory=set)
    muted: bool = False


@dataclass
class VenueState:
    tapes: dict[str, SymbolTape] = field(default_factory=dict)
    history: dict[str, deque[SimTrade]] = field(default_factory=dict)
    subscribers: set[Subscriber] = field(default_factory=set)
    skip_next: int = 0
    replay_next: int = 0
    connections: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


class ExchangeSimulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_interval_s: float = 1.0,
        alpaca_key: tuple[str, str] = ("sim-key", "sim-secret"),
        seed: int = 7,
        first_trade_id: int = 1000,
        burst: int = 0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.host = host
        self.port = port
        self.heartbeat_interval_s = heartbeat_interval_s
        self.alpaca_key = alpaca_key
        self.seed = seed
        self.first_trade_id = first_trade_id
        self.burst = burst  # trades per symbol sent at once to each new subscriber (benchmarks)
        self.clock = clock
        self.venues: dict[str, VenueState] = {v: VenueState() for v in VENUE_PATHS.values()}
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._http,
            compression=None,
            max_queue=None,
        )
        self.port = self._server.sockets[0].getsockname()[1] if self.port == 0 else self.port
        self._spawn(self._heartbeats())
        log.info("exchange simulator on ws://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, venue: str) -> str:
        path = next(p for p, v in VENUE_PATHS.items() if v == venue)
        return f"ws://{self.host}:{self.port}{path}"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the market ----------------------------------------------------------------------

    def tape(self, venue: str, symbol: str) -> SymbolTape:
        state = self.venues[venue]
        if symbol not in state.tapes:
            state.tapes[symbol] = SymbolTape(
                symbol, seed=self.seed, first_trade_id=self.first_trade_id
            )
            state.history[symbol] = deque(maxlen=HISTORY)
        return state.tapes[symbol]

    async def emit(
        self, venue: str, per_symbol: int = 1, *, symbols: Sequence[str] = ()
    ) -> list[SimTrade]:
        """Make `per_symbol` trades on each symbol (given, or every one subscribed so far) and
        send them to the venue's subscribers; returns the trades actually sent."""
        state = self.venues[venue]
        names = list(symbols) or sorted(state.tapes)
        at = self.clock()
        sent: list[SimTrade] = []
        for name in names:
            tape = self.tape(venue, name)
            for _ in range(state.skip_next):
                tape.next(at)  # made, never sent: a hole in the ids
            made = [tape.next(at) for _ in range(per_symbol)]
            state.history[name].extend(made)
            sent.extend(made)
        state.skip_next = 0
        await self._broadcast(venue, sent)
        return sent

    async def _broadcast(self, venue: str, trades: Sequence[SimTrade]) -> None:
        for sub in list(self.venues[venue].subscribers):
            mine = [t for t in trades if t.symbol in sub.symbols]
            if mine and not sub.muted:
                await self._send_trades(sub, mine)

    async def _send_trades(self, sub: Subscriber, trades: Sequence[SimTrade]) -> None:
        frames = encode_trades(sub.venue, trades)
        with contextlib.suppress(ConnectionClosed):
            for frame in frames:
                await sub.ws.send(frame)

    async def run_market(self, *, trades_per_s: float, tick_s: float = 0.1) -> None:
        """Emit on every venue at `trades_per_s` per symbol, forever, in ticks of `tick_s`.
        Open loop: the count due follows the wall clock, so a slow tick is caught up on
        the next one instead of lowering the rate."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        emitted = 0
        while True:
            due = int((loop.time() - started) * trades_per_s) - emitted
            if due > 0:
                for venue in self.venues:
                    await self.emit(venue, due)
                emitted += due
            await asyncio.sleep(tick_s)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            for venue in ("coinbase", "kraken"):
                for sub in list(self.venues[venue].subscribers):
                    if sub.muted:
                        continue
                    with contextlib.suppress(ConnectionClosed):
                        for frame in self._heartbeat_frames(sub):
                            await sub.ws.send(frame)

    def _heartbeat_frames(self, sub: Subscriber) -> list[str]:
        if sub.venue == "kraken":
            return [session.kraken_heartbeat()]
        frames = []
        for symbol in sorted(sub.symbols):
            tape = self.tape("coinbase", symbol)
            frames.append(
                session.coinbase_heartbeat(
                    symbol, last_trade_id=tape.next_id - 1, sequence=tape.sequence, at=self.clock()
                )
            )
        return frames

    # --- faults --------------------------------------------------------------------------

    async def drop(self, venue: str) -> int:
        subs = list(self.venues[venue].subscribers)
        for sub in subs:
            sub.ws.transport.abort()  # no close frame: like a network cut
        return len(subs)

    def mute(self, venue: str) -> int:
        subs = list(self.venues[venue].subscribers)
        for sub in subs:
            sub.muted = True
        return len(subs)

    async def error(self, venue: str, message: str = "simulated failure") -> int:
        if venue == "coinbase":
            frame = session.coinbase_error(message)
        elif venue == "binance":
            frame = session.binance_error(message)
        elif venue == "kraken":
            frame = session.kraken_error(message)
        else:
            frame = session.alpaca_control("error", code=500, msg=message)
        return await self.raw(venue, frame)

    async def raw(self, venue: str, frame: str) -> int:
        subs = [s for s in self.venues[venue].subscribers if not s.muted]
        for sub in subs:
            with contextlib.suppress(ConnectionClosed):
                await sub.ws.send(frame)
        return len(subs)

    def skip(self, venue: str, n: int) -> None:
        self.venues[venue].skip_next = n

    def replay(self, venue: str, n: int) -> None:
        self.venues[venue].replay_next = n

    def subscribers(self, venue: str) -> int:
        return sum(1 for s in self.venues[venue].subscribers if s.symbols and not s.muted)

    async def _http(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == "/healthz":
            return ws.respond(HTTPStatus.OK, "ok\n")
        if not url.path.startswith("/control/"):
            if url.path not in VENUE_PATHS:
                return ws.respond(HTTPStatus.NOT_FOUND, f"no venue at {url.path}\n")
            return None  # a WebSocket handshake
        fault = url.path.removeprefix("/control/")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        venue = query.get("venue", "")
        if venue not in self.venues:
            return ws.respond(HTTPStatus.BAD_REQUEST, f"venue must be one of {list(self.venues)}\n")
        n = int(query.get("n", "1"))
        if fault == "drop":
            result: object = await self.drop(venue)
        elif fault == "mute":
            result = self.mute(venue)
        elif fault == "error":
            result = await self.error(venue)
        elif fault == "skip":
            self.skip(venue, n)
            result = n
        elif fault == "replay":
            self.replay(venue, n)
            result = n
        elif fault == "emit":
            result = len(await self.emit(venue, n))
        else:
            return ws.respond(HTTPStatus.BAD_REQUEST, f"unknown fault {fault!r}\n")
        return ws.respond(HTTPStatus.OK, orjson.dumps({"fault": fault, "result": result}).decode())

    # --- connections ---------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        url = urlsplit(ws.request.path)
        venue = VENUE_PATHS[url.path]
        state = self.venues[venue]
        sub = Subscriber(venue, ws)
        state.connections += 1
        try:
            if venue == "binance":
                # Combined streams: the subscription is in the URL.
                await self._subscribed(sub, session.binance_streams(url.query))
            elif venue == "kraken":
                await ws.send(session.kraken_status())
            elif venue == "alpaca":
                await ws.send(session.alpaca_control("success", msg="connected"))
            async for message in ws:
                await self._on_client_message(sub, message)
        except ConnectionClosed:
            pass
        finally:
            state.subscribers.discard(sub)

    async def _on_client_message(self, sub: Subscriber, message: str | bytes) -> None:
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            return
        if sub.venue == "coinbase" and request.get("type") == "subscribe":
            symbols = list(request.get("product_ids", []))
            await sub.ws.send(session.coinbase_subscriptions(symbols))
            await self._subscribed(sub, symbols)
        elif sub.venue == "kraken" and request.get("method") == "subscribe":
            symbols = list(request.get("params", {}).get("symbol", []))
            for symbol in symbols:
                await sub.ws.send(session.kraken_subscribed(symbol, at=self.clock()))
            await self._subscribed(sub, symbols)
        elif sub.venue == "kraken" and request.get("method") == "ping":
            await sub.ws.send(orjson.dumps({"method": "pong", "time_in": "", "time_out": ""}))
        elif sub.venue == "alpaca" and request.get("action") == "auth":
            if (request.get("key"), request.get("secret")) == self.alpaca_key:
                await sub.ws.send(session.alpaca_control("success", msg="authenticated"))
            else:
                await sub.ws.send(session.alpaca_control("error", code=402, msg="auth failed"))
                await sub.ws.close()
        elif sub.venue == "alpaca" and request.get("action") == "subscribe":
            symbols = list(request.get("trades", []))
            await sub.ws.send(
                session.alpaca_control("subscription", trades=symbols, quotes=[], bars=[])
            )
            await self._subscribed(sub, symbols)

    async def _subscribed(self, sub: Subscriber, symbols: Sequence[str]) -> None:
        state = self.venues[sub.venue]
        for symbol in symbols:
            self.tape(sub.venue, symbol)
        sub.symbols.update(symbols)
        state.subscribers.add(sub)
        if state.replay_next:
            n, state.replay_next = state.replay_next, 0
            again = [t for s in symbols for t in list(state.history[s])[-n:]]
            await self._send_trades(sub, again)
        if self.burst:
            self._spawn(self._burst(sub, symbols))

    async def _burst(self, sub: Subscriber, symbols: Sequence[str]) -> None:
        """Benchmarks: `burst` trades per symbol to this subscriber as fast as it reads them.

        Every frame is encoded, and framed as WebSocket text frames (unmasked, as a server
        sends them), before the first is sent; they go to the socket ~64 KiB of whole frames
        per write. So the simulator's own work does not pace the stream being measured: a
        `ws.send` per frame cost the simulator about as much CPU as the client spends
        decoding and publishing it, and on a shared 2-core machine the two compete.
        `ws.transport` is the asyncio transport websockets' connection writes to (not in its
        documented API: the range is pinned in pyproject.toml and
        tests/unit/market_feeds/test_feeds_against_simulator.py reads a whole burst)."""
        at = self.clock()
        trades = [self.tape(sub.venue, s).next(at) for _ in range(self.burst) for s in symbols]
        chunks = burst_chunks(encode_trades(sub.venue, trades))
        transport = sub.ws.transport
        for chunk in chunks:
            if transport.is_closing():  # the client left (a benchmark reads only what it needs)
                return
            transport.write(chunk)
            while transport.get_write_buffer_size() > BURST_BUFFERED_BYTES:
                await asyncio.sleep(0.001)
                if transport.is_closing():
                    return


def burst_chunks(frames: Sequence[str]) -> list[bytes]:
    """`frames` as WebSocket text frames, joined into chunks of about BURST_CHUNK_BYTES."""
    chunks: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    for text in frames:
        framed = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
        pending.append(framed)
        size += len(framed)
        if size >= BURST_CHUNK_BYTES:
            chunks.append(b"".join(pending))
            pending, size = [], 0
    if pending:
        chunks.append(b"".join(pending))
    return chunks


def encode_trades(venue: str, trades: Sequence[SimTrade]) -> list[str]:
    """Frames for trades: one per trade (Coinbase, Binance) or one batch per frame (Kraken,
    Alpaca send arrays)."""
    if venue == "coinbase":
        return [session.coinbase_match(t) for t in trades]
    if venue == "binance":
        return [session.binance_trade(t) for t in trades]
    if venue == "kraken":
        return [session.kraken_trades(trades[i : i + 50]) for i in range(0, len(trades), 50)]
    return [session.alpaca_trades(trades[i : i + 50]) for i in range(0, len(trades), 50)]
