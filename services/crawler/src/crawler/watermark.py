"""Which reviews are new since the last crawl of a site+product, and where that is remembered.

A product's mark is the newest `published_at` published so far plus the ids seen recently.
A review is new when its id was not seen and it is not older than the watermark (undated
reviews rely on the ids alone). The state is one JSON file per site under `CRAWLER_STATE_DIR`,
replaced atomically (write a temp file, fsync, rename), so it survives restarts and crashes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from crawler.extraction import ExtractedReview


@dataclass(frozen=True, slots=True)
class ProductMark:
    watermark: datetime | None = None
    seen_ids: tuple[str, ...] = ()  # oldest first, bounded


def select_new(reviews: Iterable[ExtractedReview], mark: ProductMark) -> list[ExtractedReview]:
    seen = set(mark.seen_ids)
    fresh: list[ExtractedReview] = []
    for review in reviews:
        if review.external_id in seen:
            continue
        if (
            mark.watermark is not None
            and review.published_at is not None
            and review.published_at < mark.watermark
        ):
            continue
        seen.add(review.external_id)
        fresh.append(review)
    return fresh


def advance(mark: ProductMark, published: Iterable[ExtractedReview], *, keep: int) -> ProductMark:
    """The mark after `published` reached Kafka."""
    ids = list(mark.seen_ids)
    watermark = mark.watermark
    for review in published:
        ids.append(review.external_id)
        if review.published_at is not None and (
            watermark is None or review.published_at > watermark
        ):
            watermark = review.published_at
    return ProductMark(watermark=watermark, seen_ids=tuple(dict.fromkeys(ids))[-keep:])


class StateStore:
    """One JSON document per site: {"products": {key: {"watermark": iso|null, "seen_ids": []}}}."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def _path(self, site: str) -> Path:
        return self._directory / f"{site}.json"

    def load(self, site: str) -> dict[str, ProductMark]:
        path = self._path(site)
        if not path.exists():
            return {}
        document = json.loads(path.read_text(encoding="utf-8"))
        marks: dict[str, ProductMark] = {}
        for key, raw in document.get("products", {}).items():
            watermark = raw.get("watermark")
            marks[key] = ProductMark(
                watermark=datetime.fromisoformat(watermark) if watermark else None,
                seen_ids=tuple(raw.get("seen_ids", ())),
            )
        return marks

    def save(self, site: str, marks: Mapping[str, ProductMark]) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        document = {
            "version": 1,
            "products": {
                key: {
                    "watermark": mark.watermark.isoformat() if mark.watermark else None,
                    "seen_ids": list(mark.seen_ids),
                }
                for key, mark in sorted(marks.items())
            },
        }
        fd, tmp_name = tempfile.mkstemp(prefix=f".{site}.", suffix=".tmp", dir=self._directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp_name).replace(self._path(site))
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self._directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
