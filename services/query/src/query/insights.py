"""The analysts' questions, one SQL statement each, in the dialect DuckDB and Athena share.

Every query names only the archive's tables (`reviews_enriched`, `market_candles`, `alerts`,
the same names as the Athena tables) and uses only ANSI constructs both engines accept:
CTEs, ROW_NUMBER/LAG/AVG window functions, CAST(... AS DATE|DOUBLE), CORR, COUNT(DISTINCT).
Dialect switches, where Athena differs: none are needed; on Athena, bind the time window
with `dt` partition predicates for cost (DuckDB reads the whole local archive).

Latest state of a review: dedupe on the event's identity (`event_id`, else the row's
`_topic`, `_partition`, `_offset`: the archive is at-least-once and a crash re-emits records
at new offsets; the query service's views are already deduplicated, Athena's tables are not),
then keep the last record per `review_id` in (`_partition`, `_offset`) order
(the key is the review id, so all of a review's records share one partition), then drop
reviews whose latest op is `delete`.

Ratings: `rating_exact` is the exact rating on 1–5 (DECIMAL, e.g. 1.72 for a crawled 1.8 on
0–10), with the source's own value and scale beside it; `rating` is whole stars. Rows archived
before `rating_exact` existed have it NULL in the table; the views fall back to their whole
stars (`COALESCE(rating_exact, CAST(rating AS DECIMAL(38,18)))`: the precision such a row lost
cannot be recovered) and `rating_source_*` stay NULL for them.
"""

# ruff: noqa: S608  # SQL built only from constants here; the one parameter goes through sql_literal

from __future__ import annotations

from dataclasses import dataclass

from contracts.datasets import ROW_IDENTITY_SQL

# The CTEs every review insight starts from. `latest_reviews` is the latest state.
LATEST_REVIEWS_CTES = f"""deduped_reviews AS (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY {ROW_IDENTITY_SQL} ORDER BY _offset DESC, _partition DESC
    ) AS copy_no
    FROM reviews_enriched
),
ranked_reviews AS (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY review_id ORDER BY _partition DESC, _offset DESC
    ) AS version_rank
    FROM deduped_reviews
    WHERE copy_no = 1
),
latest_reviews AS (
    SELECT * FROM ranked_reviews WHERE version_rank = 1 AND op <> 'delete'
)"""

# The exact rating where a row has one, its whole stars where it was archived before.
RATING_EXACT_OR_STARS = "COALESCE(rating_exact, CAST(rating AS DECIMAL(38,18)))"

LATEST_REVIEWS = f"""WITH {LATEST_REVIEWS_CTES}
SELECT review_id, source, product_sku, product_name, rating,
       {RATING_EXACT_OR_STARS} AS rating_exact,
       rating_source_value, rating_source_worst, rating_source_best,
       title, body, language, sentiment_score, sentiment_label, event_time
FROM latest_reviews"""

RATING_BY_PRODUCT_DAY = f"""WITH {LATEST_REVIEWS_CTES}
SELECT product_sku,
       CAST(event_time AS DATE) AS day,
       COUNT(*) AS reviews,
       ROUND(AVG(CAST({RATING_EXACT_OR_STARS} AS DOUBLE)), 3) AS avg_rating,
       ROUND(AVG(sentiment_score), 3) AS avg_sentiment
FROM latest_reviews
WHERE product_sku IS NOT NULL
GROUP BY product_sku, CAST(event_time AS DATE)
ORDER BY day, product_sku"""

LATEST_NEGATIVE_REVIEWS = f"""WITH {LATEST_REVIEWS_CTES}
SELECT event_time, product_sku, {RATING_EXACT_OR_STARS} AS rating,
       ROUND(sentiment_score, 3) AS sentiment, title, body
FROM latest_reviews
WHERE sentiment_label = 'negative'
ORDER BY event_time DESC, review_id
LIMIT 10"""

ALERT_COUNTS = """SELECT kind, COUNT(DISTINCT alert_id) AS alerts,
       MIN(event_time) AS first_at, MAX(event_time) AS last_at
FROM alerts
GROUP BY kind
ORDER BY kind"""

# A candle may be archived more than once (replays, a later revision of the same window):
# keep the last one per (symbol, window_start).
CANDLE_CTES = """deduped_candles AS (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY symbol, window_start ORDER BY _partition DESC, _offset DESC
    ) AS candle_rank
    FROM market_candles
),
candles AS (SELECT * FROM deduped_candles WHERE candle_rank = 1)"""

CANDLES = f"""WITH {CANDLE_CTES}
SELECT symbol, window_start, open, high, low, close, volume, trade_count AS trades,
       vwap, sma, sma_period,
       AVG(CAST(close AS DOUBLE)) OVER (
           PARTITION BY symbol ORDER BY window_start ROWS BETWEEN 4 PRECEDING AND CURRENT ROW
       ) AS sma_5_sql
FROM candles
ORDER BY symbol, window_start"""


def returns_correlation(*, equity: str | None = None) -> str:
    """CORR of BTC-USD's and ETH-USD's 1-minute returns with an equity's, minute by minute.

    `equity` None: every equity in the archive. The symbol is quoted as a SQL literal.
    """
    equity_filter = "" if equity is None else f"\n  AND e.symbol = {sql_literal(equity)}"
    return f"""WITH {CANDLE_CTES},
returns AS (
    SELECT symbol, asset_class, window_start,
           CAST(close AS DOUBLE) / CAST(LAG(close) OVER (
               PARTITION BY symbol ORDER BY window_start) AS DOUBLE) - 1 AS ret
    FROM candles
)
SELECT e.symbol AS equity, c.symbol AS crypto,
       COUNT(*) AS minutes,
       ROUND(CORR(c.ret, e.ret), 4) AS correlation
FROM returns e
JOIN returns c ON c.window_start = e.window_start
WHERE e.asset_class = 'equity' AND c.symbol IN ('BTC-USD', 'ETH-USD')
  AND e.ret IS NOT NULL AND c.ret IS NOT NULL{equity_filter}
GROUP BY e.symbol, c.symbol
ORDER BY e.symbol, c.symbol"""


def sql_literal(value: str) -> str:
    """A SQL string literal: single quotes doubled (the same rule in DuckDB and Trino)."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Insight:
    name: str
    title: str
    sql: str


def all_insights(*, equity: str | None = None) -> tuple[Insight, ...]:
    return (
        Insight(
            "rating_by_product_day",
            "Average rating and sentiment per product per day",
            RATING_BY_PRODUCT_DAY,
        ),
        Insight(
            "latest_negative_reviews", "Latest negative reviews (scrubbed)", LATEST_NEGATIVE_REVIEWS
        ),
        Insight("alert_counts", "Alerts by kind", ALERT_COUNTS),
        Insight("candles", "1-minute candles with SMA and VWAP", CANDLES),
        Insight(
            "returns_correlation",
            "Correlation of BTC/ETH returns with equities",
            returns_correlation(equity=equity),
        ),
    )
