"""market_feeds: streaming trade connectors for real exchanges, and a local simulator."""
