"""Coalesces concurrent single-review POSTs into one INSERT statement and one commit.

Under load the database, not Python, limits single inserts: every commit waits for its WAL
flush. Requests that arrive while a flush is in progress wait in a queue and go together in
the next one, so a burst of N requests costs one round trip and one fsync instead of N. At
low load a flush holds a single item. With `linger_s` (INGEST_REVIEW_LINGER_MS) a flusher
that wakes up waits that long before taking the queue, so a statement carries more reviews.

Order of events per item: 1. the statement commits (review + idempotency record together)
2. then its future resolves and the request answers 201. A crash in between loses only the
answer; the client's retry with the same Idempotency-Key replays the stored response.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from ingest.idempotency import StoredResponse
from ingest.repository import (
    Database,
    DatabaseUnavailableError,
    PendingReview,
    review_outcome,
)

log = logging.getLogger(__name__)

_Entry = tuple[PendingReview, "asyncio.Future[StoredResponse]"]


class ReviewWriter:
    def __init__(
        self,
        db: Database,
        *,
        deadline_s: float,
        max_batch: int = 256,
        flushers: int = 4,
        linger_s: float = 0.0,
        traced: bool = False,
    ) -> None:
        self._db = db
        self._traced = traced  # tracing on: statements write each review's traceparent
        self._linger_s = linger_s
        self._deadline_s = deadline_s
        self._max_batch = max_batch
        self._flushers = flushers
        self._queue: deque[_Entry] = deque()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self._flushers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def submit(self, item: PendingReview) -> StoredResponse:
        """Resolves once the review is committed (or answers why not); 503 past the deadline."""
        if not self._tasks:
            raise DatabaseUnavailableError("review writer not running")
        future: asyncio.Future[StoredResponse] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._wakeup.set()
        try:
            async with asyncio.timeout(self._deadline_s):  # cancels the future on expiry
                return await future
        except TimeoutError as exc:
            raise DatabaseUnavailableError("timed out waiting for the database") from exc

    def _take(self) -> list[_Entry]:
        """Up to max_batch queued items with distinct idempotency keys (repeats wait a turn:
        the same key twice in one statement would insert two reviews)."""
        batch: list[_Entry] = []
        seen: set[tuple[int, str]] = set()
        deferred: list[_Entry] = []
        while self._queue and len(batch) < self._max_batch:
            item, future = self._queue.popleft()
            if future.done():  # its request timed out or went away
                continue
            key = (item.api_key_id, item.key)
            if key in seen:
                deferred.append((item, future))
                continue
            seen.add(key)
            batch.append((item, future))
        self._queue.extendleft(reversed(deferred))
        if not self._queue:
            self._wakeup.clear()
        return batch

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if self._linger_s and len(self._queue) < self._max_batch:
                # Let the statement gather company: PostgreSQL spends about as much CPU on one
                # coalesced INSERT of 1 review as of 8, so fewer, fuller flushes leave the
                # (shared, 2-core) machine room, which is what the p99 needs.
                await asyncio.sleep(self._linger_s)
            batch = self._take()
            if batch:
                await self._flush(batch)

    async def _flush(self, batch: list[_Entry]) -> None:
        try:
            rows = await self._db.insert_review_rows(
                [item for item, _ in batch], traced=self._traced
            )
        except DatabaseUnavailableError as exc:
            for _, future in batch:
                _settle(future, exc=exc)
            return
        except Exception:
            # One bad item must not fail its neighbours: retry them one by one.
            log.warning(
                "batched review insert failed; retrying %d singly", len(batch), exc_info=True
            )
            for item, future in batch:
                await self._single(item, future)
            return
        for (item, future), row in zip(batch, rows, strict=True):
            try:
                result = review_outcome(
                    row, response=item.response, fingerprint=item.fingerprint, review=item.review
                )
            except Exception as exc:
                _settle(future, exc=exc)
            else:
                _settle(future, result=result)

    async def _single(self, item: PendingReview, future: asyncio.Future[StoredResponse]) -> None:
        try:
            result = await self._db.insert_review(
                api_key_id=item.api_key_id,
                key=item.key,
                fingerprint=item.fingerprint,
                now=item.now,
                review_id=item.review_id,
                review=item.review,
                response=item.response,
                trace_parent=item.trace_parent,
            )
        except Exception as exc:
            _settle(future, exc=exc)
        else:
            _settle(future, result=result)


def _settle(
    future: asyncio.Future[StoredResponse],
    *,
    result: StoredResponse | None = None,
    exc: BaseException | None = None,
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    elif result is not None:
        future.set_result(result)
