"""Each connector against the shipped exchange simulator (real WebSockets on loopback):
trades come out exact, and dropped connections, stopped heartbeats, exchange errors, skipped
numbers and replays after a reconnect are each handled with nothing lost and nothing doubled.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from market_feeds.app import feeds_check
from market_feeds.connector import ConnectPolicy, FeedConnector
from market_feeds.protocols import protocol_for
from market_feeds.publisher import MemorySink
from market_feeds.simulator import ExchangeSimulator
from market_feeds.simulator.session import SimTrade
from servicekit import metrics
from servicekit.clock import SystemClock

SYMBOLS = {
    "coinbase": {"BTC-USD": "BTC-USD", "ETH-USD": "ETH-USD"},
    "binance": {"BTCUSDT": "BTC-USD", "ETHUSDT": "ETH-USD"},
    "kraken": {"BTC/USD": "BTC-USD", "XBT/USD": "BTC-USD"},
    "alpaca": {"AAPL": "AAPL", "MSFT": "MSFT"},
}
VENUES = list(SYMBOLS)
NUMBERED = {"coinbase", "binance", "kraken"}  # consecutive trade ids: gaps are detectable
POLICY = ConnectPolicy(
    silence_timeout_s=0.6, backoff_base_s=0.02, backoff_max_s=0.1, open_timeout_s=2
)


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    simulator = ExchangeSimulator(heartbeat_interval_s=0.1)
    await simulator.start()
    yield simulator
    await simulator.stop()


class Running:
    def __init__(self, sim: ExchangeSimulator, venue: str, policy: ConnectPolicy) -> None:
        self.sim = sim
        self.venue = venue
        self.sink = MemorySink()
        self.connector = FeedConnector(
            protocol_for(venue, alpaca_key_id="sim-key", alpaca_secret_key="sim-secret"),
            url=sim.url(venue),
            symbols=SYMBOLS[venue],
            sink=self.sink,
            clock=SystemClock(),
            policy=policy,
        )
        self.task = asyncio.create_task(self.connector.run())

    async def until(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():  # noqa: ASYNC110  # polls state other tasks change
                await asyncio.sleep(0.01)

    async def subscribed(self, *, connections: int = 1) -> None:
        state = self.sim.venues[self.venue]
        await self.until(
            lambda: state.connections >= connections and self.sim.subscribers(self.venue) == 1
        )

    async def emit(self, n: int) -> list[SimTrade]:
        sent = await self.sim.emit(self.venue, n)
        await self.until(lambda: self._has(sent))
        return sent

    def _has(self, sent: list[SimTrade]) -> bool:
        ids = {(t.venue_symbol, t.trade_id) for t in self.sink.published}
        return all((s.symbol, wire_id(self.venue, s)) in ids for s in sent)

    def assert_no_duplicates(self) -> None:
        ids = [t.event_id for t in self.sink.published]
        assert len(ids) == len(set(ids))

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def feed(sim: ExchangeSimulator) -> AsyncIterator[Callable[..., Any]]:
    started: list[Running] = []

    async def start(venue: str, policy: ConnectPolicy = POLICY) -> Running:
        running = Running(sim, venue, policy)
        started.append(running)
        await running.subscribed()
        return running

    yield start
    for running in started:
        await running.stop()


def wire_id(venue: str, trade: SimTrade) -> str:
    """The trade id the connector keeps: Alpaca's is `<exchange>-<i>` (the simulator: V)."""
    return f"V-{trade.trade_id}" if venue == "alpaca" else str(trade.trade_id)


def skipped(venue: str, reason: str) -> float:
    return metrics.FEED_SKIPPED.labels(venue, reason)._value.get()


@pytest.mark.parametrize("venue", VENUES)
async def test_trades_come_out_exact_with_mapped_symbols(venue: str, feed: Any) -> None:
    running = await feed(venue)
    sent = await running.emit(25)
    by_id = {(t.venue_symbol, t.trade_id): t for t in running.sink.published}
    assert len(by_id) == len(sent) == 25 * len(SYMBOLS[venue])
    for s in sent:
        trade = by_id[(s.symbol, wire_id(venue, s))]
        assert trade.symbol == SYMBOLS[venue][s.symbol]
        # the same digits as on the wire, trailing zeros included
        assert str(trade.price) == format(s.price, "f") and str(trade.size) == format(s.size, "f")
        expected_time = s.time.replace(microsecond=s.time.microsecond // 1000 * 1000)
        assert trade.event_time == (expected_time if venue == "binance" else s.time)
        assert trade.event_id == f"{venue}:{s.symbol}:{wire_id(venue, s)}"
        assert trade.event_time.tzinfo is not None and trade.received_at >= trade.event_time
    # the published records satisfy the contract as a consumer reads them
    from contracts.events import TradeExecuted
    from servicekit.kafka import encode_event

    for trade in running.sink.published[:5]:
        assert TradeExecuted.model_validate_json(encode_event(trade)) == trade


@pytest.mark.parametrize("venue", VENUES)
async def test_dropped_connection_reconnects_resubscribes_and_loses_nothing_after(
    venue: str, feed: Any, sim: ExchangeSimulator
) -> None:
    running = await feed(venue)
    before = await running.emit(5)
    assert await sim.drop(venue) == 1
    await running.subscribed(connections=2)
    after = await running.emit(5)
    assert len(running.sink.published) == len(before) + len(after)
    running.assert_no_duplicates()
    assert running.connector.status.connections == 2


@pytest.mark.parametrize("venue", VENUES)
async def test_stopped_heartbeats_drop_the_silent_connection_and_report_the_gap(
    venue: str, feed: Any, sim: ExchangeSimulator
) -> None:
    running = await feed(venue)
    await running.emit(3)
    silent_before = metrics.FEED_RECONNECTS.labels(venue, "silent")._value.get()
    sim.mute(venue)  # the connection stays open; nothing more comes on it
    missed = await sim.emit(venue, 4)  # made while the feed hears nothing
    await running.subscribed(connections=2)  # the watchdog closed it, the loop redialled
    assert metrics.FEED_RECONNECTS.labels(venue, "silent")._value.get() >= silent_before + 1
    after = await running.emit(3)
    assert len(running.sink.published) == 3 * len(SYMBOLS[venue]) + len(after)
    running.assert_no_duplicates()
    assert not {(m.symbol, wire_id(venue, m)) for m in missed} & {
        (t.venue_symbol, t.trade_id) for t in running.sink.published
    }
    if venue in NUMBERED:
        gaps = {(g.venue_symbol, g.first_missing, g.last_missing) for g in running.sink.gaps}
        ids = {s: [m.trade_id for m in missed if m.symbol == s] for s in SYMBOLS[venue]}
        expected = {(s, min(n), max(n)) for s, n in ids.items()}
        assert gaps == expected
        assert {g.reason for g in running.sink.gaps} == {"reconnect"}
    else:
        assert running.sink.gaps == []  # Alpaca's ids are not consecutive


@pytest.mark.parametrize("venue", VENUES)
async def test_exchange_error_ends_the_connection_and_the_feed_resubscribes(
    venue: str, feed: Any, sim: ExchangeSimulator
) -> None:
    running = await feed(venue)
    before = await running.emit(2)
    reconnects = metrics.FEED_RECONNECTS.labels(venue, "exchange_error")._value.get()
    await sim.error(venue)
    await running.subscribed(connections=2)
    after = await running.emit(2)
    assert len(running.sink.published) == len(before) + len(after)
    assert metrics.FEED_RECONNECTS.labels(venue, "exchange_error")._value.get() == reconnects + 1


@pytest.mark.parametrize("venue", sorted(NUMBERED))
async def test_skipped_trade_numbers_make_a_feed_gap_record(
    venue: str, feed: Any, sim: ExchangeSimulator
) -> None:
    running = await feed(venue)
    first = await running.emit(2)
    sim.skip(venue, 3)
    after = await running.emit(2)
    assert len(running.sink.published) == len(first) + len(after)
    assert len(running.sink.gaps) == len(SYMBOLS[venue])
    for gap in running.sink.gaps:
        last_before = max(t.trade_id for t in first if t.symbol == gap.venue_symbol)
        assert (gap.first_missing, gap.last_missing) == (last_before + 1, last_before + 3)
        assert gap.missing_count == 3 and gap.reason == "sequence_skip"
        assert gap.symbol == SYMBOLS[venue][gap.venue_symbol]
        assert gap.gap_id == f"{venue}:{gap.venue_symbol}:{last_before + 1}"


@pytest.mark.parametrize("venue", VENUES)
async def test_trades_replayed_after_a_reconnect_are_not_published_twice(
    venue: str, feed: Any, sim: ExchangeSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="market_feeds.connector")
    running = await feed(venue)
    before = await running.emit(6)
    duplicates = skipped(venue, "duplicate")
    sim.replay(venue, 6)  # the next connection gets the last 6 trades per symbol again
    await sim.drop(venue)
    await running.subscribed(connections=2)
    after = await running.emit(4)
    await running.until(lambda: skipped(venue, "duplicate") == duplicates + len(before))
    assert len(running.sink.published) == len(before) + len(after)
    running.assert_no_duplicates()
    assert running.sink.gaps == []
    # one log line for the replay, however many trades it repeated (the metric counts them)
    lines = [r for r in caplog.records if "skipped (duplicate)" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING


BAD_FRAMES = {
    "coinbase": '{"type":"match","trade_id":%d,"product_id":"BTC-USD","price":"0","size":"1",'
    '"time":"2026-12-07T06:30:01Z","side":"buy"}',
    "binance": '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":%d,'
    '"p":"-1.5","q":"1","T":1796625001000,"m":false}}',
    "kraken": '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy",'
    '"price":0,"qty":1,"ord_type":"limit","trade_id":%d,"timestamp":"2026-12-07T06:30:01Z"}]}',
    "alpaca": '[{"T":"t","i":%d,"S":"AAPL","x":"V","p":-3,"s":1,"t":"2026-12-07T06:30:01Z"}]',
}


@pytest.mark.parametrize("venue", VENUES)
async def test_bad_frames_go_to_the_dlq_or_are_counted_and_the_connection_goes_on(
    venue: str, feed: Any, sim: ExchangeSimulator
) -> None:
    running = await feed(venue)
    unknown = skipped(venue, "unknown_type")
    await sim.raw(venue, "{not json")
    await sim.raw(venue, BAD_FRAMES[venue] % 5)
    await sim.raw(
        venue, '{"type":"ticker","channel":"book"}' if venue != "alpaca" else '[{"T":"q"}]'
    )
    after = await running.emit(3)
    assert len(running.sink.published) == len(after)
    reasons = [d.reason for d in running.sink.dead]
    assert reasons == ["malformed", "non_positive_price"]
    assert base64.b64decode(running.sink.dead[0].original_value_b64 or "") == b"{not json"
    assert running.sink.dead[1].source_topic == f"ws:{venue}"
    assert skipped(venue, "unknown_type") == unknown + 1
    assert running.connector.status.connections == 1  # never reconnected


async def test_alpaca_with_a_wrong_key_is_reported_and_other_feeds_go_on(
    sim: ExchangeSimulator, feed: Any
) -> None:
    coinbase = await feed("coinbase")
    sink = MemorySink()
    bad = FeedConnector(
        protocol_for("alpaca", alpaca_key_id="wrong", alpaca_secret_key="nope"),
        url=sim.url("alpaca"),
        symbols=SYMBOLS["alpaca"],
        sink=sink,
        clock=SystemClock(),
        policy=POLICY,
    )
    unreachable = FeedConnector(
        protocol_for("kraken"),
        url="ws://127.0.0.1:1/kraken/v2",
        symbols=SYMBOLS["kraken"],
        sink=sink,
        clock=SystemClock(),
        policy=POLICY,
    )
    tasks = [asyncio.create_task(c.run()) for c in (bad, unreachable)]
    try:
        await coinbase.until(lambda: unreachable.status.failures_in_a_row >= 2)
        await coinbase.until(lambda: "402" in bad.status.last_error)
        # refused at once each time: the backoff grows instead of redialling in a tight loop
        await coinbase.until(lambda: bad.status.failures_in_a_row >= 3)
        await coinbase.emit(3)  # the healthy feed is unaffected
        clock = SystemClock()
        check = feeds_check(
            [coinbase.connector.status, unreachable.status],
            clock=clock,
            unhealthy_after_s=0.0,
            started_at=clock.monotonic() - 1,
        )
        ok, detail = await check()
        assert not ok
        assert "kraken: " in detail and "never received a frame" in detail
        assert "Errno 111" in detail or "refused" in detail.lower()
        healthy = feeds_check(
            [coinbase.connector.status], clock=clock, unhealthy_after_s=5, started_at=0
        )
        assert (await healthy())[0]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_publish_failure_redials_and_the_trades_sent_again_are_published_once(
    sim: ExchangeSimulator,
) -> None:
    from aiokafka.errors import KafkaTimeoutError

    class FlakySink(MemorySink):
        failures = 1

        async def trades(self, feed: str, trades: Any) -> None:
            if self.failures:
                self.failures -= 1
                raise KafkaTimeoutError("metadata not available")
            await super().trades(feed, trades)

    running = Running(sim, "coinbase", POLICY)
    running.sink = sink = FlakySink()
    running.connector.sink = sink
    try:
        await running.subscribed()
        sim.replay("coinbase", 1)  # the exchange re-sends the last trade after the redial
        first = await sim.emit("coinbase", 1, symbols=["BTC-USD"])  # refused by "Kafka"
        await running.subscribed(connections=2)
        await running.until(lambda: len(sink.published) == 1)
        after = await running.emit(2)
        assert [t.trade_id for t in sink.published[:1]] == [str(first[0].trade_id)]
        assert len(sink.published) == 1 + len(after)
        running.assert_no_duplicates()
        assert metrics.FEED_RECONNECTS.labels("coinbase", "publish")._value.get() >= 1
    finally:
        await running.stop()


@pytest.mark.parametrize("venue", ["coinbase", "kraken"])
async def test_a_benchmark_burst_arrives_whole_and_in_order(venue: str) -> None:
    """`--burst` writes pre-framed WebSocket frames straight to websockets' transport (not its
    documented API): a client reads every trade of the burst, exact and in order."""
    burst = 3_000  # per symbol; several 64 KiB chunks
    simulator = ExchangeSimulator(burst=burst, heartbeat_interval_s=0.1)
    await simulator.start()
    running = Running(simulator, venue, POLICY)
    try:
        expected = burst * len(SYMBOLS[venue])
        await running.until(lambda: len(running.sink.published) >= expected, timeout_s=30)
        assert len(running.sink.published) == expected and not running.sink.gaps
        for venue_symbol in SYMBOLS[venue]:
            numbers = [
                int(t.trade_id) for t in running.sink.published if t.venue_symbol == venue_symbol
            ]
            assert numbers == list(range(numbers[0], numbers[0] + burst))
        running.assert_no_duplicates()
    finally:
        await running.stop()
        await simulator.stop()


async def test_keepalive_pings_are_answered_so_a_quiet_connection_stays_up(
    feed: Any, sim: ExchangeSimulator
) -> None:
    """Our pings (the watchdog's) and the server's pongs: with a pong due 0.3 s after each
    ping, sent every 0.05 s, a connection without trades (Alpaca has no heartbeat channel)
    stays up as long as the pongs are read."""
    policy = ConnectPolicy(
        silence_timeout_s=5, ping_interval_s=0.05, ping_timeout_s=0.3, open_timeout_s=2
    )
    running = await feed("alpaca", policy)
    before = metrics.FEED_RECONNECTS.labels("alpaca", "connection")._value.get()
    await asyncio.sleep(1.5)
    assert sim.venues["alpaca"].connections == 1
    assert metrics.FEED_RECONNECTS.labels("alpaca", "connection")._value.get() == before
    await running.emit(2)  # and it still delivers
