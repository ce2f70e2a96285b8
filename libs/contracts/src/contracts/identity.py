"""Deterministic event ids: the same input always yields the same id, a changed one a new id.

Every event Pulse emits carries an `event_id` built here (or, for `TradeExecuted`, from the
exchange's own trade id). A record re-emitted after a crash — the same source record read
again — gets the id it had the first time, so the archive's readers keep it once however many
offsets it landed at. An id is the source's identity plus its version: a review's id and the
PostgreSQL LSN of the change (a content digest where there is no LSN), a candle's symbol and
window plus a digest of its values, an alert's own `alert_id`, a dead letter's source record.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

# Between digested parts: a character no text field carries, so ("a", "bc") ≠ ("ab", "c").
_SEPARATOR = "\x1f"
DIGEST_HEX_CHARS = 20  # 80 bits: no collision among a source's versions in any real history


def digest(*parts: object) -> str:
    """A short, stable hex digest of `parts` (None, numbers, text, datetimes)."""
    text = _SEPARATOR.join("\x00" if p is None else _canonical(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=DIGEST_HEX_CHARS // 2).hexdigest()


def _canonical(part: object) -> str:
    if isinstance(part, datetime):
        return part.isoformat()
    return str(part)


def review_event_id(
    review_id: str, *, op: str, source_lsn: int | None, content: tuple[object, ...]
) -> str:
    """An enriched review: its id, op and version — the change's LSN for CDC reviews, else a
    digest of the content (a crawled review read again unchanged keeps its id)."""
    version = f"lsn{source_lsn}" if source_lsn is not None else digest(*content)
    return f"review:{review_id}:{op}:{version}"


def crawled_review_event_id(source: str, external_id: str, *, content: tuple[object, ...]) -> str:
    """A crawled review: the site and its id, and a digest of what the page said."""
    return f"crawl:{source}:{external_id}:{digest(*content)}"


def quote_event_id(source: str, symbol: str, event_time: datetime) -> str:
    """A polled quote: the feed, symbol and the quote's own time (a re-poll repeats it)."""
    return f"quote:{source}:{symbol}:{event_time.isoformat()}"


def candle_event_id(symbol: str, window_start: datetime, *, values: tuple[object, ...]) -> str:
    """A closed candle: symbol, window and a digest of its values (a revised candle differs)."""
    return f"candle:{symbol}:{window_start.isoformat()}:{digest(*values)}"


def forming_candle_event_id(
    symbol: str, window_start: datetime, *, values: tuple[object, ...]
) -> str:
    """A forming candle as it stands: the window's state after the same ticks is one event."""
    return f"forming:{symbol}:{window_start.isoformat()}:{digest(*values)}"


def quality_result_event_id(run_id: str, dataset: str, check: str, partition: str | None) -> str:
    """A data-quality result: the run, and the check (and partition) it is the outcome of."""
    return f"dq:{run_id}:{dataset}:{check}:{partition or ''}"


def alert_event_id(alert_id: str) -> str:
    """An alert: its `alert_id` already names kind, subject and the triggering window/record."""
    return f"alert:{alert_id}"


def dead_letter_event_id(service: str, topic: str, partition: int, offset: int) -> str:
    """A dead letter: the service that gave up and the source record's coordinates."""
    return f"dlq:{service}:{topic}:{partition}:{offset}"
