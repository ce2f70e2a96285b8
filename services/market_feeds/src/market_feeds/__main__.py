"""`python -m market_feeds`: run the enabled exchange connectors until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio

from servicekit.logging import configure_logging
from servicekit.settings import KafkaSettings, load_settings

from market_feeds.app import main
from market_feeds.settings import MarketFeedsSettings


def cli() -> None:
    # No options: settings come from MARKET_FEEDS_* (and KAFKA_*) variables; --help says so.
    argparse.ArgumentParser(
        prog="python -m market_feeds",
        description=__doc__,
        epilog="Settings: MARKET_FEEDS_* and KAFKA_* environment variables "
        "(services/market_feeds/README.md).",
    ).parse_args()
    settings = load_settings(MarketFeedsSettings)  # exits 2 naming the bad variable
    load_settings(KafkaSettings)
    configure_logging("market_feeds", level=settings.log_level, json=settings.log_json)
    asyncio.run(main())


if __name__ == "__main__":
    cli()
