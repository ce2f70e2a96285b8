"""Typed, frozen settings of the dashboard (`DASHBOARD_` prefix), validated at start-up."""

from __future__ import annotations

from pathlib import Path

from contracts import topics
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict
from servicekit.settings import ServiceSettings


def _default_web_dir() -> Path:
    """services/dashboard/web of a source checkout; images set DASHBOARD_WEB_DIR."""
    return Path(__file__).resolve().parents[2] / "web"


class DashboardSettings(ServiceSettings):
    """Everything the dashboard needs besides `KAFKA_BOOTSTRAP_SERVERS` (read unprefixed)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="DASHBOARD_")

    http_port: int = Field(default=58003, ge=0, le=65535)
    # Viewer credentials: comma-separated keys, each at least 16 characters. A browser trades
    # one for an HttpOnly session cookie at /dashboard/login (EventSource cannot send headers);
    # scripts send it as X-API-Key. `pulse up` generates one in .stack/secrets/.
    viewer_keys: SecretStr
    # Signs session cookies; unset: derived from the viewer keys, so sessions survive a
    # restart and end when the keys change.
    session_secret: SecretStr | None = None
    session_ttl_s: int = Field(default=12 * 3600, gt=0)
    # Keys allowed to replace the portfolio (POST /dashboard/api/portfolio); unset: disabled,
    # the portfolio comes from `portfolio_file` only. Viewers stay read-only.
    portfolio_keys: SecretStr | None = None
    portfolio_file: Path | None = None  # YAML or JSON: [{symbol, quantity, cost}, …]

    # On start the state is rebuilt from this much of each topic's recent past.
    lookback_s: float = Field(default=3600.0, ge=0)
    # Changes are sent to browsers at most once per interval per key (a price moves at most
    # 1/interval times a second per symbol, whatever the tick rate).
    coalesce_interval_s: float = Field(default=0.25, gt=0, le=10)
    heartbeat_s: float = Field(default=15.0, gt=0, le=300)  # below nginx's proxy_read_timeout
    # Distinct keys a client's queue may hold; past it the queue is dropped and the client
    # gets a fresh snapshot instead (resync).
    client_queue_max_keys: int = Field(default=512, ge=8)
    # A client whose socket accepts nothing for this long is disconnected (counted dropped).
    client_stall_timeout_s: float = Field(default=30.0, gt=0)
    # Write a flush's frames straight to the sockets that keep up (stream.DirectWriter); off:
    # every frame through ASGI `send` from each client's writer task (slower, no internals).
    direct_writes: bool = True
    # The kernel send buffer of each stream socket (SO_SNDBUF; 0: the kernel's autotuning, up
    # to megabytes per stuck browser). Small, so a browser that stops reading backs up into
    # its bounded queue and the stall check within seconds (with direct writes).
    client_send_buffer_bytes: int = Field(default=65_536, ge=0, le=16 * 1024 * 1024)
    # The newest delta frames kept for browsers that reconnect with Last-Event-ID: one that
    # missed only frames still held gets them (latest per key), any other a fresh snapshot.
    # 0: every reconnect gets a snapshot. Memory: this many frames (a price frame is ~0.5 KB).
    replay_frames: int = Field(default=8192, ge=0, le=1_000_000)
    max_clients: int = Field(default=2000, ge=1)
    retry_after_s: int = Field(default=5, ge=1)

    candles_per_symbol: int = Field(default=240, ge=2, le=10_000)
    alerts_max: int = Field(default=500, ge=1)
    negative_reviews_max: int = Field(default=100, ge=1)
    reviews_per_product_max: int = Field(default=200, ge=1)
    correlation_windows: str = Field(default="10,30,60", pattern=r"^\d+(,\d+)*$")
    # A symbol (or a feed) with nothing new for this long is shown as stale.
    stale_after_s: float = Field(default=30.0, gt=0)

    web_dir: Path = Field(default_factory=_default_web_dir)

    # Topics (tests use unique ones); default: the contracts.
    candles_topic: str = topics.MARKET_CANDLES.name
    live_candles_topic: str = topics.MARKET_CANDLES_LIVE.name
    alerts_topic: str = topics.ALERTS.name
    reviews_topic: str = topics.REVIEWS_ENRICHED.name

    @field_validator("viewer_keys")
    @classmethod
    def _keys_long_enough(cls, value: SecretStr) -> SecretStr:
        keys = [k.strip() for k in value.get_secret_value().split(",") if k.strip()]
        if not keys:
            raise ValueError("at least one viewer key is required")
        if any(len(k) < 16 for k in keys):
            raise ValueError("every viewer key needs at least 16 characters")
        return value

    @field_validator("portfolio_file")
    @classmethod
    def _portfolio_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @property
    def viewer_key_list(self) -> tuple[str, ...]:
        return _split(self.viewer_keys)

    @property
    def portfolio_key_list(self) -> tuple[str, ...]:
        return _split(self.portfolio_keys)

    @property
    def correlation_window_list(self) -> tuple[int, ...]:
        return tuple(sorted({int(w) for w in self.correlation_windows.split(",") if int(w) >= 2}))


def _split(value: SecretStr | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(k.strip() for k in value.get_secret_value().split(",") if k.strip())
