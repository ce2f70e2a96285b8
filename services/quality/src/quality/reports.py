"""Daily digests: the customer team's and the market desk's day, as HTML and as chat text.

The figures are read-only SQL through the query service's engine (the same guard, views and
reader as `/v1/query`); the digests are archived under `s3://<bucket>/<reports>/<team>/dt=…/`
(HTML, chat text, and the figures as JSON) and published as an `alerts.v1` record of kind
`report` (subject: the team; message: the chat text; details: the archived keys), which the
alert delivery service sends like any alert.
"""

# ruff: noqa: S608  # SQL built from constants and the run's own timestamps only

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from contracts.events import AlertKind, AlertRaised, AlertSeverity
from contracts.identity import alert_event_id
from query import insights
from query.archive import ArchiveLocation
from query.engine import QueryEngine

WINDOW = timedelta(hours=24)
TOP_N = 5


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True, slots=True)
class Digest:
    team: str
    title: str
    day: str  # the UTC date the window ends on
    window_end: str  # ISO-8601: the 24-hour window is [window_end - 24 h, window_end)
    sections: list[Section] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "day": self.day,
            "window_end": self.window_end,
            "sections": {
                s.title: [dict(zip(s.columns, row, strict=True)) for row in s.rows]
                for s in self.sections
            },
        }

    def text(self) -> str:
        """The chat message: a title line and one line per row of each section."""
        lines = [f"*{self.title}*"]
        for section in self.sections:
            lines.append(f"_{section.title}_")
            if not section.rows:
                lines.append("  (none)")
            for row in section.rows:
                lines.append(
                    "  "
                    + " · ".join(
                        f"{c}={_fmt(v)}" for c, v in zip(section.columns, row, strict=True)
                    )
                )
        return "\n".join(lines)

    def html(self) -> str:
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for section in self.sections:
            parts.append(f"<h2>{html.escape(section.title)}</h2>")
            if not section.rows:
                parts.append("<p>(none)</p>")
                continue
            head = "".join(f"<th>{html.escape(c)}</th>" for c in section.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                for row in section.rows
            )
            parts.append(f"<table border='1'><tr>{head}</tr>{body}</table>")
        parts.append("</body></html>")
        return "".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _window(now: datetime) -> str:
    start = (now - WINDOW).isoformat()
    return f"event_time >= TIMESTAMPTZ '{start}' AND event_time < TIMESTAMPTZ '{now.isoformat()}'"


def customer_digest(engine: QueryEngine, *, now: datetime) -> Digest:
    window = _window(now)
    sections = [
        _section(
            engine,
            "Products with the most negative reviews (24 h)",
            f"""WITH {insights.LATEST_REVIEWS_CTES}
            SELECT product_sku, product_name, COUNT(*) AS negative_reviews,
                   ROUND(AVG(sentiment_score), 4) AS avg_sentiment
            FROM latest_reviews
            WHERE sentiment_label = 'negative' AND {window}
            GROUP BY product_sku, product_name
            ORDER BY negative_reviews DESC, product_sku
            LIMIT {TOP_N}""",
        ),
        _section(
            engine,
            "Sentiment trend (per day, 7 days)",
            f"""WITH {insights.LATEST_REVIEWS_CTES}
            SELECT CAST(CAST(event_time AS DATE) AS VARCHAR) AS day, COUNT(*) AS reviews,
                   ROUND(AVG(sentiment_score), 4) AS avg_sentiment
            FROM latest_reviews
            WHERE event_time >= TIMESTAMPTZ '{(now - timedelta(days=7)).isoformat()}'
              AND event_time < TIMESTAMPTZ '{now.isoformat()}'
            GROUP BY 1 ORDER BY 1""",
        ),
        _section(
            engine,
            "Notable bursts (negative-review bursts, 24 h)",
            f"""SELECT subject, COUNT(DISTINCT alert_id) AS bursts, MAX(message) AS last_message
            FROM alerts WHERE kind = 'negative_burst' AND {window}
            GROUP BY subject ORDER BY bursts DESC, subject LIMIT {TOP_N}""",
        ),
    ]
    return Digest(
        "customer", f"Customer digest {now:%Y-%m-%d}", f"{now:%Y-%m-%d}", now.isoformat(), sections
    )


def market_digest(engine: QueryEngine, *, now: datetime) -> Digest:
    window = _window(now)
    sections = [
        _section(
            engine,
            "Range and volume per symbol (24 h)",
            f"""WITH {insights.CANDLE_CTES}
            SELECT symbol, CAST(MIN(low) AS DOUBLE) AS low, CAST(MAX(high) AS DOUBLE) AS high,
                   CAST(SUM(volume) AS DOUBLE) AS volume, COUNT(*) AS candles
            FROM candles WHERE {window}
            GROUP BY symbol ORDER BY symbol""",
        ),
        _section(
            engine,
            "Largest 1-minute moves (24 h)",
            f"""WITH {insights.CANDLE_CTES}
            SELECT symbol, CAST(window_start AS VARCHAR) AS minute,
                   ROUND(CAST(close AS DOUBLE) / CAST(open AS DOUBLE) - 1, 6) AS move
            FROM candles WHERE {window} AND open > 0
            ORDER BY ABS(CAST(close AS DOUBLE) / CAST(open AS DOUBLE) - 1) DESC, symbol, minute
            LIMIT {TOP_N}""",
        ),
        _section(
            engine,
            "Crypto–equity correlation of 1-minute returns",
            f"SELECT * FROM ({insights.returns_correlation()}) AS c",
        ),
    ]
    return Digest(
        "market", f"Market desk digest {now:%Y-%m-%d}", f"{now:%Y-%m-%d}", now.isoformat(), sections
    )


def _section(engine: QueryEngine, title: str, sql: str) -> Section:
    result = engine.run(sql, max_rows=1000)
    return Section(title, result.columns, [_jsonable(row) for row in result.rows])


def _jsonable(row: tuple[Any, ...]) -> list[Any]:
    return [v if v is None or isinstance(v, int | float | str | bool) else str(v) for v in row]


def archive(location: ArchiveLocation, digest: Digest) -> dict[str, str]:
    """Write the digest's HTML, text and figures; returns {kind: full path}."""
    folder = f"{location.root}/{digest.team}/dt={digest.day}"
    location.filesystem.create_dir(folder, recursive=True)
    written = {}
    for kind, body in (
        ("html", digest.html()),
        ("txt", digest.text()),
        ("json", json.dumps(digest.figures(), indent=1, sort_keys=True)),
    ):
        path = f"{folder}/{digest.team}.{kind}"
        with location.filesystem.open_output_stream(path) as out:
            out.write(body.encode())
        written[kind] = path
    return written


def report_alert(digest: Digest, keys: dict[str, str], *, now: datetime) -> AlertRaised:
    alert_id = hashlib.sha256(f"{AlertKind.REPORT}|{digest.team}|{digest.day}".encode()).hexdigest()
    return AlertRaised(
        alert_id=alert_id[:32],
        kind=AlertKind.REPORT,
        subject=digest.team,
        severity=AlertSeverity.INFO,
        message=digest.text()[:4000],  # a chat message; the whole digest is the HTML
        event_time=now,
        details={"title": digest.title, **{f"{k}_path": v for k, v in keys.items()}},
        raised_at=now,
        event_id=alert_event_id(alert_id[:32]),
    )
