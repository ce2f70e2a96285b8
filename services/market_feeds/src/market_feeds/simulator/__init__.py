"""A local exchange simulator speaking the Coinbase, Binance, Kraken v2 and Alpaca protocols."""

from market_feeds.simulator.server import ExchangeSimulator

__all__ = ["ExchangeSimulator"]
