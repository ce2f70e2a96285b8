"""Our exceptions and the HTTP answer each one gets: one table, used by the FastAPI
exception handlers and by the raw-ASGI fast path alike. Every answer is JSON with `detail`."""

from __future__ import annotations

from typing import Any

import orjson
from servicekit import metrics
from starlette.requests import ClientDisconnect

from ingest.auth import ForbiddenError, UnauthenticatedError
from ingest.idempotency import (
    IdempotencyInFlightError,
    IdempotencyKeyInvalidError,
    IdempotencyKeyMissingError,
    IdempotencyMismatchError,
)
from ingest.repository import DatabaseUnavailableError, ProductNotFoundError


class UnsupportedMediaTypeError(Exception):
    pass


class InvalidBodyError(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid body")
        self.errors = errors


class NotFoundError(Exception):
    pass


ERROR_STATUS: dict[type[Exception], int] = {
    UnauthenticatedError: 401,
    ForbiddenError: 403,
    UnsupportedMediaTypeError: 415,
    InvalidBodyError: 422,
    IdempotencyKeyMissingError: 400,
    IdempotencyKeyInvalidError: 400,
    IdempotencyMismatchError: 422,
    IdempotencyInFlightError: 409,
    ProductNotFoundError: 404,
    NotFoundError: 404,
    DatabaseUnavailableError: 503,
    # The client went away mid-body: nobody reads this answer, but it is not a server error.
    ClientDisconnect: 400,
}


def problem(exc: Exception, *, retry_after_s: int) -> tuple[int, bytes, dict[str, str]] | None:
    """The HTTP answer for one of our exceptions (None for anything else)."""
    status = ERROR_STATUS.get(type(exc))
    if status is None:
        return None
    headers: dict[str, str] = {}
    payload: dict[str, Any] = {"detail": str(exc)}
    if isinstance(exc, InvalidBodyError):
        payload["detail"] = exc.errors
    elif isinstance(exc, ProductNotFoundError):
        payload["skus"] = exc.skus
    elif isinstance(exc, UnauthenticatedError):
        headers["WWW-Authenticate"] = "ApiKey"
    elif isinstance(exc, DatabaseUnavailableError):
        metrics.DB_UNAVAILABLE.inc()
        payload["detail"] = "database unavailable, retry later"
    if status in (409, 503):
        headers["Retry-After"] = str(retry_after_s)
    return status, orjson.dumps(payload, default=str), headers
