"""`python -m crawler [--once]`: run every site and feed continuously, or each once."""

from __future__ import annotations

import argparse
import asyncio

from servicekit.logging import configure_logging
from servicekit.settings import load_settings

from crawler.app import main
from crawler.settings import CrawlerSettings


def cli() -> None:
    parser = argparse.ArgumentParser(prog="crawler", description=__doc__)
    parser.add_argument(
        "--once",
        action="store_true",
        help="crawl every site and poll every feed once, then exit (CronJob)",
    )
    args = parser.parse_args()
    settings = load_settings(CrawlerSettings)  # exits 2 naming the bad variable
    configure_logging("crawler", level=settings.log_level, json=settings.log_json)
    asyncio.run(main(once=args.once))


if __name__ == "__main__":
    cli()
