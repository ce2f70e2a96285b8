"""Typed, frozen settings of market_feeds (`MARKET_FEEDS_` prefix), validated at start-up.

Each connector's endpoint is one setting, `MARKET_FEEDS_<VENUE>_URL`, defaulting to the real
exchange; `MARKET_FEEDS_ENABLED` lists the connectors to run. Symbol maps (venue symbol →
Pulse symbol) are JSON objects, e.g. `MARKET_FEEDS_BINANCE_SYMBOLS='{"BTCUSDT": "BTC-USD"}'`.
"""

from __future__ import annotations

from typing import Annotated, Any

from contracts import topics
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from servicekit.settings import ServiceSettings

VENUES: tuple[str, ...] = ("coinbase", "binance", "kraken", "alpaca")

# The real endpoints (each exchange's published WebSocket address).
COINBASE_URL = "wss://ws-feed.exchange.coinbase.com"
BINANCE_URL = "wss://stream.binance.com:9443/stream"  # combined streams: ?streams=a@trade/b@trade
KRAKEN_URL = "wss://ws.kraken.com/v2"
ALPACA_URL = "wss://stream.data.alpaca.markets/v2/iex"


class MarketFeedsSettings(ServiceSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="MARKET_FEEDS_")

    http_port: int = Field(default=58014, ge=0, le=65535)
    # Comma-separated connector names (coinbase, binance, kraken, alpaca). Alpaca needs a key.
    enabled: Annotated[tuple[str, ...], NoDecode] = ("coinbase", "binance", "kraken")

    coinbase_url: str = COINBASE_URL
    binance_url: str = BINANCE_URL
    kraken_url: str = KRAKEN_URL
    alpaca_url: str = ALPACA_URL
    # Alpaca's market-data credentials (from a Kubernetes Secret in a deployment).
    alpaca_key_id: SecretStr | None = None
    alpaca_secret_key: SecretStr | None = None

    coinbase_symbols: dict[str, str] = {"BTC-USD": "BTC-USD", "ETH-USD": "ETH-USD"}
    binance_symbols: dict[str, str] = {"BTCUSDT": "BTC-USD", "ETHUSDT": "ETH-USD"}
    # Kraken v2 names bitcoin BTC/USD (v1 said XBT/USD; both may be mapped).
    kraken_symbols: dict[str, str] = {"BTC/USD": "BTC-USD", "ETH/USD": "ETH-USD"}
    alpaca_symbols: dict[str, str] = {"AAPL": "AAPL", "MSFT": "MSFT"}

    # No frame at all (trade, heartbeat) for this long: the connection is dropped and redialled.
    # Coinbase and Kraken send heartbeats every second; Binance and Alpaca rely on WebSocket
    # pings, answered by the connector's read loop, and a quiet symbol may stay silent longer.
    silence_timeout_s: float = Field(default=30.0, gt=0)
    # WebSocket keepalive pings from our side; the pong must come within ping_timeout_s.
    ping_interval_s: float = Field(default=20.0, gt=0)
    ping_timeout_s: float = Field(default=20.0, gt=0)
    open_timeout_s: float = Field(default=10.0, gt=0)
    # Reconnect backoff: full jitter over base·2^attempt, capped.
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    # /healthz fails when an enabled feed has had no frame for this long (or never connected).
    unhealthy_after_s: float = Field(default=90.0, gt=0)
    # Trade ids remembered per feed for dedup across reconnects (oldest forgotten first).
    dedup_capacity: int = Field(default=100_000, ge=1000)
    max_frame_bytes: int = Field(default=1 << 20, ge=1024)

    # Topic names: the contracts' unless a test or benchmark maps its own.
    trades_topic: str = topics.MARKET_TRADES.name
    gaps_topic: str = topics.MARKET_FEED_GAPS.name
    dlq_topic: str = topics.DLQ.name
    producer_linger_ms: int = Field(default=5, ge=0, le=1000)
    # For topics this service creates when missing (normally the topics Job made them first).
    topic_replication_factor: int = Field(default=1, ge=1)

    @field_validator("enabled", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("enabled")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(VENUES))
        if unknown:
            raise ValueError(f"unknown connectors {unknown}; known: {list(VENUES)}")
        if not value:
            raise ValueError("enable at least one connector")
        return value

    @model_validator(mode="after")
    def _alpaca_has_a_key(self) -> MarketFeedsSettings:
        if "alpaca" in self.enabled and not (self.alpaca_key_id and self.alpaca_secret_key):
            raise ValueError(
                "alpaca is enabled but MARKET_FEEDS_ALPACA_KEY_ID / MARKET_FEEDS_ALPACA_SECRET_KEY"
                " are not set"
            )
        for venue in self.enabled:
            if not self.symbols(venue):
                raise ValueError(f"MARKET_FEEDS_{venue.upper()}_SYMBOLS is empty")
        return self

    def url(self, venue: str) -> str:
        url: str = getattr(self, f"{venue}_url")
        return url

    def symbols(self, venue: str) -> dict[str, str]:
        symbols: dict[str, str] = getattr(self, f"{venue}_symbols")
        return symbols
