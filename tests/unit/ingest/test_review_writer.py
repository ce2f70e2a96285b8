"""The coalescing review writer against a fake database: batching, one key per statement,
fallback to single inserts, and 503 when the database is gone or too slow."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from ingest.idempotency import StoredResponse
from ingest.repository import DatabaseUnavailableError, PendingReview
from ingest.review_writer import ReviewWriter
from ingest.schemas import ReviewIn

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def pending(key: str, *, sku: str = "KTL-100") -> PendingReview:
    review = ReviewIn(product_sku=sku, rating=3, body="fine")
    return PendingReview(
        api_key_id=1, key=key, fingerprint=key.encode(), now=NOW, review_id=uuid.uuid4(),
        review=review, response=b'{"key":"%s"}' % key.encode(),
    )  # fmt: skip


class FakeDatabase:
    """Answers like _INSERT_REVIEWS: every new key inserted unless its sku is unknown."""

    def __init__(self, *, fail_batches: bool = False, down: bool = False, delay_s: float = 0):
        self.batches: list[list[str]] = []
        self.singles: list[str] = []
        self.fail_batches = fail_batches
        self.down = down
        self.delay_s = delay_s

    async def insert_review_rows(
        self, items: Sequence[PendingReview], *, traced: bool = False
    ) -> list[dict[str, Any]]:
        await asyncio.sleep(self.delay_s)
        if self.down:
            raise DatabaseUnavailableError("down")
        if self.fail_batches:
            raise RuntimeError("one bad row")
        keys = [i.key for i in items]
        assert len(set(keys)) == len(keys), "a key appeared twice in one statement"
        self.batches.append(keys)
        return [
            {"inserted": i.review.product_sku != "NOPE", "product_found": True,
             "fingerprint": None, "status_code": None, "response": None}
            if i.review.product_sku != "NOPE"
            else {"inserted": False, "product_found": False, "fingerprint": None,
                  "status_code": None, "response": None}
            for i in items
        ]  # fmt: skip

    async def insert_review(self, **kwargs: Any) -> StoredResponse:
        self.singles.append(kwargs["key"])
        return StoredResponse(201, kwargs["response"])


async def _writer(db: FakeDatabase, **kw: Any) -> ReviewWriter:
    fake: Any = db  # a structural fake of Database
    writer = ReviewWriter(fake, deadline_s=kw.pop("deadline_s", 2.0), **kw)
    writer.start()
    return writer


async def test_concurrent_submits_share_flushes() -> None:
    db = FakeDatabase(delay_s=0.01)
    writer = await _writer(db, flushers=1)
    try:
        results = await asyncio.gather(*(writer.submit(pending(f"k{i}")) for i in range(50)))
    finally:
        await writer.stop()
    assert all(r.status_code == 201 for r in results)
    assert sum(len(b) for b in db.batches) == 50
    assert len(db.batches) < 50  # coalesced


async def test_linger_gathers_requests_that_arrive_just_after_the_first() -> None:
    async def staggered(writer: ReviewWriter) -> None:
        async def later(i: int) -> StoredResponse:
            await asyncio.sleep(i * 0.002)  # 0, 2, 4, 6, 8 ms after the first
            return await writer.submit(pending(f"s{i}"))

        await asyncio.gather(*(later(i) for i in range(5)))

    eager, lingering = FakeDatabase(), FakeDatabase()
    # The linger is long against the 8 ms spread so a loaded machine's late timers still
    # fall inside it; the eager writer's first batch is sent before the second request exists.
    for db, linger_s in ((eager, 0.0), (lingering, 0.25)):
        writer = await _writer(db, flushers=4, linger_s=linger_s)
        try:
            await staggered(writer)
        finally:
            await writer.stop()
    assert eager.batches[0] == ["s0"] and len(eager.batches) > 1  # nothing waits for company
    assert lingering.batches == [["s0", "s1", "s2", "s3", "s4"]]


async def test_one_key_never_appears_twice_in_a_statement() -> None:
    db = FakeDatabase(delay_s=0.005)
    writer = await _writer(db, flushers=2)
    try:
        await asyncio.gather(*(writer.submit(pending(f"k{i % 3}")) for i in range(12)))
    finally:
        await writer.stop()
    assert all(len(set(b)) == len(b) for b in db.batches)


async def test_unknown_product_fails_only_its_own_request() -> None:
    db = FakeDatabase()
    writer = await _writer(db)
    try:
        good, bad = await asyncio.gather(
            writer.submit(pending("a")), writer.submit(pending("b", sku="NOPE")),
            return_exceptions=True,
        )  # fmt: skip
    finally:
        await writer.stop()
    assert isinstance(good, StoredResponse)
    assert type(bad).__name__ == "ProductNotFoundError"


async def test_failed_batch_is_retried_item_by_item() -> None:
    db = FakeDatabase(fail_batches=True)
    writer = await _writer(db)
    try:
        results = await asyncio.gather(*(writer.submit(pending(f"k{i}")) for i in range(5)))
    finally:
        await writer.stop()
    assert [r.status_code for r in results] == [201] * 5
    assert sorted(db.singles) == [f"k{i}" for i in range(5)]


async def test_database_down_or_too_slow_is_unavailable() -> None:
    writer = await _writer(FakeDatabase(down=True))
    try:
        with pytest.raises(DatabaseUnavailableError):
            await writer.submit(pending("a"))
    finally:
        await writer.stop()
    writer = await _writer(FakeDatabase(delay_s=1.0), deadline_s=0.05)
    try:
        with pytest.raises(DatabaseUnavailableError):
            await writer.submit(pending("a"))
    finally:
        await writer.stop()
