"""Protocol decoders, continuity, backoff and settings: the pure parts of market_feeds."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from contracts.events import TradeSide
from market_feeds.connector import ConnectPolicy
from market_feeds.continuity import Continuity
from market_feeds.protocols import Alpaca, Binance, Coinbase, Kraken
from market_feeds.settings import MarketFeedsSettings
from market_feeds.simulator import session
from market_feeds.simulator.session import SimTrade

AT = datetime(2026, 12, 7, 6, 30, 1, 123456, tzinfo=UTC)


def sim_trade(symbol: str, trade_id: int = 7, price: str = "67012.10", size: str = "0.00012300"):
    return SimTrade(symbol, trade_id, Decimal(price), Decimal(size), "buy", AT, 99)


def test_coinbase_match_decodes_exact_strings_and_taker_side() -> None:
    [trade] = Coinbase().decode(session.coinbase_match(sim_trade("BTC-USD"))).trades
    assert str(trade.price) == "67012.10" and str(trade.size) == "0.00012300"
    assert trade.side is TradeSide.BUY  # maker sold
    assert trade.event_time == AT and trade.trade_id == "7" and trade.sequence == 99


def test_binance_trade_decodes_epoch_ms_and_maker_flag() -> None:
    frame = Binance().decode(session.binance_trade(sim_trade("BTCUSDT", price="0.1")))
    [trade] = frame.trades
    assert trade.price == Decimal("0.1") and trade.venue_symbol == "BTCUSDT"
    assert trade.event_time == AT.replace(microsecond=123000)
    assert trade.side is TradeSide.BUY


def test_kraken_json_numbers_stay_exact_decimals() -> None:
    raw = session.kraken_trades([sim_trade("BTC/USD", price="0.1", size="0.30000000")])
    assert '"price":0.1,' in raw  # a JSON number on the wire
    [trade] = Kraken().decode(raw).trades
    assert (
        str(trade.price) == "0.1" and str(trade.size) == "0.30000000"
    )  # not 0.1000000000000000055


def test_alpaca_rfc3339_nanoseconds_and_numbers() -> None:
    [trade] = (
        Alpaca(key_id="k", secret_key="s")
        .decode(session.alpaca_trades([sim_trade("AAPL", price="190.015")]))
        .trades
    )
    assert str(trade.price) == "190.015" and trade.event_time == AT and trade.number is None
    assert trade.trade_id == "V-7"  # ids are unique per reporting exchange (x) on SIP


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"type":"match","trade_id":1,"product_id":"BTC-USD","price":"0","size":"1",'
         '"time":"2026-12-07T06:30:01Z"}', "non_positive_price"),
        ('{"type":"match","trade_id":1,"product_id":"BTC-USD","price":"-5","size":"1",'
         '"time":"2026-12-07T06:30:01Z"}', "non_positive_price"),
        ('{"type":"match","trade_id":1,"product_id":"BTC-USD","price":"abc","size":"1",'
         '"time":"2026-12-07T06:30:01Z"}', "malformed"),
        ('{"type":"match","trade_id":1,"product_id":"BTC-USD","price":1.5,"size":"1",'
         '"time":"2026-12-07T06:30:01Z"}', "malformed"),  # a float: exactness already lost
        ('{"type":"match","trade_id":1,"product_id":"BTC-USD","price":"1","size":"1",'
         '"time":"2026-12-07 06:30:01"}', "malformed"),  # no timezone
        ("not json {", "malformed"),
    ],
)  # fmt: skip
def test_bad_coinbase_frames_are_rejected_with_a_reason(raw: str, reason: str) -> None:
    frame = Coinbase().decode(raw)
    assert not frame.trades and [r for r, _ in frame.rejected] == [reason]


def test_unknown_types_are_skipped_and_errors_reported() -> None:
    assert Coinbase().decode('{"type":"ticker"}').skipped == "unknown_type"
    assert Coinbase().decode(session.coinbase_error("bad")).error is not None
    assert Binance().decode(session.binance_error("bad")).error is not None
    assert Kraken().decode(session.kraken_error("bad")).error is not None
    assert Kraken().decode(session.kraken_heartbeat()).skipped == "control"
    assert Alpaca(key_id="", secret_key="").decode('[{"T":"q"}]').skipped == "unknown_type"


def test_one_bad_trade_in_a_kraken_batch_keeps_the_others() -> None:
    raw = session.kraken_trades([sim_trade("BTC/USD", 1), sim_trade("BTC/USD", 2, price="0")])
    frame = Kraken().decode(raw)
    assert [t.trade_id for t in frame.trades] == ["1"]
    assert [r for r, _ in frame.rejected] == ["non_positive_price"]


def test_continuity_dedups_reports_gaps_and_stays_bounded() -> None:
    c = Continuity(capacity=1000)
    assert c.admit("X", "1", 1) == (True, None)
    assert c.admit("X", "1", 1) == (False, None)
    new, gap = c.admit("X", "5", 5)
    assert new and gap is not None and (gap.first_missing, gap.last_missing) == (2, 4)
    assert gap.reason == "sequence_skip" and gap.missing_count == 3
    c.reconnected()
    new, gap = c.admit("X", "9", 9)
    assert new and gap is not None and gap.reason == "reconnect"
    for n in range(10, 3000):
        c.admit("X", str(n), n)
    assert len(c) == 1000
    assert c.admit("X", "12", 12) == (False, None)  # forgotten, but below the high mark
    assert c.admit("Y", "a", None) == (True, None)  # unnumbered feeds: ids only
    # Unnumbered ids: the oldest is forgotten first, the newest are still refused.
    u = Continuity(capacity=3)
    for trade_id in ("a", "b", "c", "d"):
        assert u.admit("Z", trade_id, None) == (True, None)
    assert len(u) == 3
    assert u.admit("Z", "b", None) == (False, None) and u.admit("Z", "d", None) == (False, None)
    assert u.admit("Z", "a", None) == (True, None)  # evicted by "d"


def test_plain_decimal_passes_the_wire_digits_or_writes_them_out() -> None:
    from market_feeds.protocols import BadTradeError, plain_decimal

    for text in ("67012.10", "0.00012300", "1", "0.1", "99999999999999999999.000000000000000001"):
        assert plain_decimal(text, name="price") is text  # checked, not rebuilt
    assert plain_decimal("1e-8", name="size") == "0.00000001"
    assert plain_decimal("01.50", name="size") == "1.50"
    assert plain_decimal("1.", name="size") == "1"
    assert plain_decimal("١٢", name="size") == "12"  # non-ASCII digits: never passed through
    for text, reason in (
        ("0.000", "non_positive_price"),
        ("-1", "non_positive_price"),
        ("1.0000000000000000001", "malformed"),  # 19 places: beyond DECIMAL(38,18)
        ("123456789012345678901", "malformed"),  # 21 integer digits
        ("NaN", "non_positive_price"),
    ):
        with pytest.raises(BadTradeError) as caught:
            plain_decimal(text, name="price")
        assert caught.value.reason == reason, text


def test_backoff_is_full_jitter_under_a_growing_cap() -> None:
    policy = ConnectPolicy(backoff_base_s=0.5, backoff_max_s=30.0)
    rng = random.Random(1)
    draws = [policy.backoff_s(attempt, rng) for attempt in range(12) for _ in range(50)]
    assert all(0 <= d <= 30.0 for d in draws)
    assert max(policy.backoff_s(0, rng) for _ in range(200)) <= 0.5
    assert len({round(d, 6) for d in draws}) > 500  # jittered, not a fixed ladder


def test_settings_parse_the_enabled_list_and_name_bad_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MARKET_FEEDS_ENABLED", "coinbase, kraken")
    monkeypatch.setenv("MARKET_FEEDS_KRAKEN_URL", "ws://127.0.0.1:1/kraken/v2")
    settings = MarketFeedsSettings()
    assert settings.enabled == ("coinbase", "kraken")
    assert settings.url("kraken") == "ws://127.0.0.1:1/kraken/v2"
    assert settings.url("coinbase") == "wss://ws-feed.exchange.coinbase.com"
    monkeypatch.setenv("MARKET_FEEDS_ENABLED", "coinbase,nasdaq")
    with pytest.raises(ValueError, match="unknown connectors"):
        MarketFeedsSettings()
    monkeypatch.setenv("MARKET_FEEDS_ENABLED", "alpaca")
    with pytest.raises(ValueError, match="MARKET_FEEDS_ALPACA_KEY_ID"):
        MarketFeedsSettings()
    monkeypatch.setenv("MARKET_FEEDS_ALPACA_KEY_ID", "k")
    monkeypatch.setenv("MARKET_FEEDS_ALPACA_SECRET_KEY", "s")
    settings = MarketFeedsSettings()
    assert "s" not in repr(settings.alpaca_secret_key)


def test_json_number_digits_are_quoted_before_parsing_even_in_exponent_form() -> None:
    raw = (
        '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell",'
        '"price": 67012.123456789012345678,"qty":1e-8,"ord_type":"limit","trade_id":9,'
        '"timestamp":"2026-12-07T06:30:01.5Z"}]}'
    )
    [trade] = Kraken().decode(raw).trades
    assert trade.price == Decimal("67012.123456789012345678")  # more digits than a float holds
    assert trade.size == Decimal("1e-8") and format(trade.size, "f") == "0.00000001"
    assert trade.side is TradeSide.SELL


def test_fast_record_encoding_matches_the_contract_model() -> None:
    from contracts.events import TradeExecuted
    from contracts.rows import AssetClass
    from market_feeds.records import encode_trade
    from servicekit.kafka import encode_event

    [wire] = Coinbase().decode(session.coinbase_match(sim_trade("BTC-USD"))).trades
    record = encode_trade(
        wire, venue="coinbase", symbol="BTC-USD", asset_class=AssetClass.CRYPTO, received_at=AT
    )
    model = TradeExecuted.model_validate_json(record.value)
    assert set(orjson.loads(record.value)) == set(TradeExecuted.model_fields)
    assert model.event_id == "coinbase:BTC-USD:7" and str(model.price) == "67012.10"
    assert model.event_time == AT and model.sequence == 99
    # what the model itself would write parses back to the same event
    assert TradeExecuted.model_validate_json(encode_event(model)) == model
    assert record.key == b"BTC-USD" and record.event_time_s == AT.timestamp()


def test_forgotten_trades_are_new_again_or_reported_as_a_gap() -> None:
    c = Continuity(capacity=1000)
    for n in (1, 2, 3):
        c.admit("X", str(n), n)
    c.forget([("X", "2", 2), ("X", "3", 3)])  # their publish failed
    assert c.admit("X", "2", 2) == (True, None)  # replayed: published this time
    c.forget([("X", "2", 2)])
    new, gap = c.admit("X", "4", 4)  # no replay: 2..3 are a gap
    assert new and gap is not None and (gap.first_missing, gap.last_missing) == (2, 3)


def test_a_bad_setting_stops_the_service_naming_the_variable() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_FEEDS_")}
    env["MARKET_FEEDS_ENABLED"] = "coinbase,nyse"
    result = subprocess.run(
        [sys.executable, "-m", "market_feeds"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "MARKET_FEEDS_ENABLED" in result.stderr and "nyse" in result.stderr


def test_quoted_numbers_keep_every_digit_whatever_the_spacing() -> None:
    from market_feeds.protocols import QuotedNumbers

    raw = (
        '{"data":[{"price" : 0.1,"qty":1e-8,"n":0.5},'
        '{"qty":\n-2.50,"price":67012.123456789012345678,"note":"price: 3"}]}'
    )
    first, second = QuotedNumbers(("price", "qty")).loads(raw)["data"]
    assert first == {"price": "0.1", "qty": "1e-8", "n": 0.5}  # other fields stay numbers
    assert second["qty"] == "-2.50" and second["price"] == "67012.123456789012345678"
    assert second["note"] == "price: 3"


async def test_frames_are_counted_in_bulk_and_none_is_lost() -> None:
    """The frames metric is brought up to date once a second and at a connection's end, not
    per frame: every frame read is still counted once."""
    from market_feeds.connector import FeedConnector
    from market_feeds.publisher import MemorySink
    from servicekit.clock import SystemClock
    from servicekit.metrics import REGISTRY

    connector = FeedConnector(
        Coinbase(),
        url="ws://unused",
        symbols={"BTC-USD": "BTC-USD"},
        sink=MemorySink(),
        clock=SystemClock(),
        policy=ConnectPolicy(),
    )

    def frames() -> float:
        return REGISTRY.get_sample_value("pulse_feed_messages_total", {"feed": "coinbase"}) or 0

    before = frames()
    for trade_id in range(5):
        await connector.on_frame(session.coinbase_match(sim_trade("BTC-USD", trade_id)))
    await connector.on_frame('{"type":"heartbeat","product_id":"BTC-USD"}')
    connector._count_frames()  # what the watchdog does each second
    connector._count_frames()
    assert frames() - before == 6
