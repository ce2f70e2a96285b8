"""One exchange feed: connect, subscribe, read frames, publish trades; on any failure back off
(full jitter, injected clock and random source) and connect again, resubscribing.

The read loop is decode → continuity → publish. A watchdog closes a connection that has been
silent (no trade, no heartbeat) for `silence_timeout_s`. Bad frames never end the connection:
a malformed frame or a non-positive price is dead-lettered with its bytes; an unknown message
type, an unmapped symbol or a duplicate trade is counted and logged. An exchange `error`
message ends the connection (it usually means the subscription is gone) and the loop redials.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import WSMsgType
from aiokafka.errors import KafkaError
from contracts.events import FeedGap
from servicekit import metrics
from servicekit.clock import Clock
from servicekit.kafka import dead_letter

from market_feeds.continuity import Continuity
from market_feeds.protocols import Frame, VenueProtocol, WireTrade
from market_feeds.publisher import SERVICE, Sink
from market_feeds.records import TradeRecord, json_time, symbol_records, write_trade

log = logging.getLogger(__name__)

_TEXT, _BINARY = WSMsgType.TEXT, WSMsgType.BINARY
_WebSocket = aiohttp.ClientWebSocketResponse[Literal[False]]  # text frames as bytes
# The opening handshake is bounded by ConnectPolicy.open_timeout_s; nothing after it is.
_HANDSHAKE_TIMEOUT = aiohttp.ClientTimeout(total=None)
_CLOSE_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)


async def open_websocket(
    http: aiohttp.ClientSession, url: str, *, max_frame_bytes: int
) -> _WebSocket:
    """A feed's WebSocket (the connector's and the benchmark's bare loop's: one receive).

    aiohttp's client, whose frame reader is compiled (~1 µs a frame where `websockets` spent
    ~5, as much as decoding the trade in it): text frames as bytes (`decode_text=False`:
    orjson reads and checks UTF-8 itself, and a frame that is not UTF-8 is dead-lettered like
    any malformed one); no compression (no exchange here needs it); pings are ours (the
    watchdog) and answered by the read loop (`autoping=False`), so PING_TIMEOUT_S is honoured
    as set (aiohttp's own heartbeat waits half the interval for the pong)."""
    return await http.ws_connect(
        url,
        autoping=False,
        compress=0,
        max_msg_size=max_frame_bytes,
        decode_text=False,
        timeout=_CLOSE_TIMEOUT,
    )


class FeedError(Exception):
    """The connection is no longer usable (exchange error, silence)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FrameSource:
    """A WebSocket frame as servicekit's `dead_letter` reads a source record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class ConnectPolicy:
    silence_timeout_s: float = 30.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    open_timeout_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_frame_bytes: int = 1 << 20

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform over [0, min(max, base·2^attempt)] (attempt counts from 0)."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(attempt, 30)))
        return rng.uniform(0.0, ceiling)


@dataclass(slots=True)
class FeedStatus:
    """What /healthz reports for one feed."""

    feed: str
    state: str = "starting"  # starting | connecting | connected | backing_off
    connected_at: float | None = None  # monotonic
    last_frame_at: float | None = None  # monotonic
    last_error: str = ""
    failures_in_a_row: int = 0
    connections: int = 0


class FeedConnector:
    def __init__(
        self,
        protocol: VenueProtocol,
        *,
        url: str,
        symbols: Mapping[str, str],  # venue symbol → Pulse symbol
        sink: Sink,
        clock: Clock,
        policy: ConnectPolicy,
        dedup_capacity: int = 100_000,
        rng: random.Random | None = None,
    ) -> None:
        self.protocol = protocol
        self.feed = protocol.venue
        self.symbols = dict(symbols)
        # venue symbol → Pulse symbol, Kafka key and the record's JSON parts, built once
        self._records = symbol_records(
            venue=self.feed, symbols=self.symbols, asset_class=protocol.asset_class
        )
        self.url = protocol.url(url, list(self.symbols))
        self.sink = sink
        self.clock = clock
        self.policy = policy
        self.rng = rng or random.Random()  # jitter, not cryptography
        self.continuity = Continuity(capacity=dedup_capacity)
        self.status = FeedStatus(self.feed)
        self._frame_no = 0  # DLQ records' "offset": frames read since start
        self._frames_counted = 0  # of those, added to the frames metric so far
        self._skipped: dict[str, Any] = {}
        self._messages = metrics.FEED_MESSAGES.labels(self.feed)
        self._warned: set[str] = set()  # skip reasons already logged on this connection
        self._session_trades = 0  # trades read on the current connection
        self._pong_due_at: float | None = None  # a keepalive ping is unanswered until then

    async def run(self) -> None:
        """Forever: a session, then a jittered backoff; never raises but CancelledError."""
        attempt = 0
        while True:
            self.status.state = "connecting"
            try:
                await self._session()
                reason, detail = "closed", "the server closed the connection"
            except FeedError as exc:
                reason, detail = exc.reason, str(exc)
            except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                # aiohttp wraps a refused or unresolvable address: name the cause itself
                # (ConnectionRefusedError: [Errno 111] …), not only the wrapper.
                cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
                reason, detail = "connection", f"{type(cause).__name__}: {cause}"
            except KafkaError as exc:  # the producer gave up on a record: redial, resend later
                reason, detail = "publish", f"Kafka: {type(exc).__name__}: {exc}"
            metrics.FEED_CONNECTED.labels(self.feed).set(0)
            metrics.FEED_RECONNECTS.labels(self.feed, reason).inc()
            # A session that delivered trades, or stayed up past the silence timeout, resets
            # the backoff; anything else grows it (a refused key answered at once with an
            # error frame must not redial in a tight loop).
            attempt = 0 if self._session_was_useful() else attempt + 1
            self.status.failures_in_a_row = 0 if attempt == 0 else attempt
            self.status.last_error = detail
            self.status.state = "backing_off"
            delay = self.policy.backoff_s(attempt, self.rng)
            if attempt >= 1:
                log.error(
                    "feed %s cannot connect to %s (%d failures in a row): %s; retrying in %.1f s",
                    self.feed, self.url, attempt, detail, delay,
                )  # fmt: skip
            else:
                log.warning(
                    "feed %s disconnected: %s; reconnecting in %.1f s", self.feed, detail, delay
                )
            await self.clock.sleep(delay)

    def _session_was_useful(self) -> bool:
        if self.status.state != "connected" or self.status.connected_at is None:
            return False
        lasted_s = self.clock.monotonic() - self.status.connected_at
        return self._session_trades > 0 or lasted_s >= self.policy.silence_timeout_s

    async def _session(self) -> None:
        # trust_env: HTTPS_PROXY/NO_PROXY from the environment, as `websockets` honoured them.
        async with aiohttp.ClientSession(timeout=_HANDSHAKE_TIMEOUT, trust_env=True) as http:
            async with asyncio.timeout(self.policy.open_timeout_s):
                ws = await open_websocket(
                    http, self.url, max_frame_bytes=self.policy.max_frame_bytes
                )
            async with ws:
                await self._read(ws)

    async def _read(self, ws: _WebSocket) -> None:
        for message in self.protocol.opening(list(self.symbols)):
            await ws.send_str(message)
        self.status.connections += 1
        self._warned.clear()
        self._session_trades = 0
        if self.status.connections > 1:
            self.continuity.reconnected()
        log.info(
            "feed %s connected to %s, subscribed to %s", self.feed, self.url, list(self.symbols)
        )
        self.status.last_frame_at = self.clock.monotonic()
        self._pong_due_at = None
        watchdog = asyncio.create_task(self._watch(ws))
        receive = ws.receive
        try:
            while True:
                received = await receive()
                kind = received.type
                if kind is _TEXT or kind is _BINARY:
                    await self.on_frame(received.data)
                elif kind is WSMsgType.PING:  # Binance's, every 20 s
                    await ws.pong(received.data)
                elif kind is WSMsgType.PONG:
                    self._pong_due_at = None
                elif kind is WSMsgType.CLOSE:
                    break  # the server said goodbye (aiohttp answers the close frame)
                elif kind is WSMsgType.CLOSING:  # the watchdog is closing it: say why
                    reason, detail = await watchdog
                    raise FeedError(reason, detail)
                else:  # CLOSED / ERROR: the connection is gone without a close frame
                    if watchdog.done():
                        break
                    raise ConnectionError(
                        f"connection lost without a close frame ({ws.exception() or kind.name})"
                    )
        finally:
            watchdog.cancel()
            self._count_frames()
        if watchdog.done() and not watchdog.cancelled() and watchdog.exception() is None:
            reason, detail = watchdog.result()
            raise FeedError(reason, detail)

    def _count_frames(self) -> None:
        """The frames metric, brought up to date: once a second and at the end of a
        connection rather than per frame (a counter's inc costs ~0.7 µs, a trade ~20 µs)."""
        self._messages.inc(self._frame_no - self._frames_counted)
        self._frames_counted = self._frame_no

    async def _watch(self, ws: _WebSocket) -> tuple[str, str]:
        """Close the connection once no frame came for silence_timeout_s (heartbeats stopped)
        or a keepalive ping went unanswered for ping_timeout_s; ping every ping_interval_s;
        count the frames read, once a second. Returns why it closed the connection."""
        policy = self.policy
        timeout = policy.silence_timeout_s
        next_ping_at = self.clock.monotonic() + policy.ping_interval_s
        while True:
            self._count_frames()
            now = self.clock.monotonic()
            last = self.status.last_frame_at or now
            remaining = timeout - (now - last)
            if remaining <= 0:
                log.warning(
                    "feed %s silent for %.1f s: dropping the connection", self.feed, timeout
                )
                await ws.close(code=1001, message=b"silent")
                return "silent", f"no frame for {timeout} s"
            if self._pong_due_at is not None and now >= self._pong_due_at:
                log.warning(
                    "feed %s: no pong within %.1f s: dropping the connection",
                    self.feed, policy.ping_timeout_s,
                )  # fmt: skip
                await ws.close(code=1011, message=b"keepalive ping timeout")
                return "connection", f"keepalive ping timeout ({policy.ping_timeout_s} s)"
            if now >= next_ping_at:
                next_ping_at = now + policy.ping_interval_s
                if self._pong_due_at is None:
                    self._pong_due_at = now + policy.ping_timeout_s
                await ws.ping()
            wake_in_s = min(remaining + 0.01, timeout / 4, 1.0, next_ping_at - now)
            if self._pong_due_at is not None:
                wake_in_s = min(wake_in_s, self._pong_due_at - now + 0.01)
            await asyncio.sleep(max(wake_in_s, 0.001))

    async def on_frame(self, raw: str | bytes) -> None:
        """decode → continuity → publish, for one frame."""
        now_mono = self.clock.monotonic()
        self.status.last_frame_at = now_mono
        self._frame_no += 1
        frame = self.protocol.decode(raw)
        if self.status.state != "connected":
            self.status.state = "connected"
            self.status.connected_at = now_mono
            metrics.FEED_CONNECTED.labels(self.feed).set(1)
        if frame.trades:
            self._session_trades += len(frame.trades)
            await self._publish(frame.trades)
        if frame.rejected:
            await self._dead_letter(raw, frame)
        if frame.skipped is not None and frame.skipped != "control":
            self._skip(frame.skipped, f"frame {raw[:200]!r}")
        if frame.error is not None:
            log.error("feed %s: the exchange sent an error: %s", self.feed, frame.error)
            raise FeedError("exchange_error", frame.error)

    async def _publish(self, trades: Sequence[WireTrade]) -> None:
        received_at_json = json_time(self.clock.now())  # once per frame
        out: list[TradeRecord] = []
        admitted: list[WireTrade] = []
        admit = self.continuity.admit
        records_of = self._records.get
        for wire in trades:
            parts = records_of(wire.venue_symbol)
            if parts is None:
                self._skip("unknown_symbol", f"symbol {wire.venue_symbol!r} is not mapped")
                continue
            new, gap = admit(wire.venue_symbol, wire.trade_id, wire.number)
            if gap is not None:
                await self._gap(gap.first_missing, gap.last_missing, gap.reason, wire, parts.symbol)
            if not new:
                self._skip("duplicate", f"trade {wire.venue_symbol}:{wire.trade_id} seen before")
                continue
            admitted.append(wire)
            out.append(write_trade(parts, wire, received_at_json=received_at_json))
        if out:
            try:
                await self.sink.trades(self.feed, out)
            except KafkaError:
                # not published: not seen either
                self.continuity.forget([(w.venue_symbol, w.trade_id, w.number) for w in admitted])
                raise

    async def _gap(self, first: int, last: int, reason: str, wire: WireTrade, symbol: str) -> None:
        count = last - first + 1
        log.warning(
            "feed %s: %s missed trades %d..%d (%d) before %s (%s)",
            self.feed, wire.venue_symbol, first, last, count, wire.trade_id, reason,
        )  # fmt: skip
        metrics.FEED_GAPS.labels(self.feed, reason).inc()
        metrics.FEED_GAP_MISSING.labels(self.feed).inc(count)
        gap_id = f"{self.feed}:{wire.venue_symbol}:{first}"
        await self.sink.gap(
            FeedGap(
                gap_id=gap_id,
                event_id=gap_id,
                venue=self.feed,
                symbol=symbol,
                venue_symbol=wire.venue_symbol,
                first_missing=first,
                last_missing=last,
                missing_count=count,
                reason=reason,
                event_time=wire.event_time,
                detected_at=self.clock.now(),
            )
        )

    async def _dead_letter(self, raw: str | bytes, frame: Frame) -> None:
        # The frame stands where a Kafka record would: `ws:<venue>`, partition 0, its number.
        source = FrameSource(
            topic=f"ws:{self.feed}",
            partition=0,
            offset=self._frame_no,
            key=None,
            value=raw.encode() if isinstance(raw, str) else raw,
        )
        for reason, detail in frame.rejected:
            log.warning(
                "feed %s: dead-lettering frame %d: %s (%s)",
                self.feed,
                self._frame_no,
                reason,
                detail,
            )
            metrics.DLQ_RECORDS.labels(SERVICE, reason).inc()
            _key, value = dead_letter(
                source, service=SERVICE, reason=reason, detail=detail, now=self.clock.now()
            )
            await self.sink.dead_letter(self.feed, value)

    def _skip(self, reason: str, detail: str) -> None:
        counter = self._skipped.get(reason)
        if counter is None:
            counter = self._skipped[reason] = metrics.FEED_SKIPPED.labels(self.feed, reason)
        counter.inc()
        # The first of each reason per connection at WARNING, the rest at DEBUG: a replay of
        # thousands of trades after a reconnect is one line, not thousands (the metric counts).
        level = logging.DEBUG if reason in self._warned else logging.WARNING
        self._warned.add(reason)
        log.log(level, "feed %s: skipped (%s): %s", self.feed, reason, detail)
