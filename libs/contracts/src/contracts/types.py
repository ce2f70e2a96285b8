"""Field types shared by every schema: exact decimals that travel as strings (money, ratings),
UTC times."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer

# Parquet and Athena store money as DECIMAL(precision, scale); values are quantized to it.
DECIMAL_PRECISION = 38
DECIMAL_SCALE = 18


def _parse_decimal(value: Any) -> Decimal:
    """Accept str/int/Decimal only: a float has already lost exactness."""
    if isinstance(value, (bool, float)):
        raise ValueError("decimals must be sent as strings, not floats")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise ValueError(f"not a decimal number: {value!r}") from exc
    else:
        raise ValueError(f"not a decimal number: {value!r}")
    if not result.is_finite():
        raise ValueError("decimal must be finite (no NaN or Infinity)")
    return result


def _fits_precision(value: Decimal) -> Decimal:
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    integer_digits = len(digits) + exponent
    if integer_digits > DECIMAL_PRECISION - DECIMAL_SCALE:
        raise ValueError(
            f"decimal has {integer_digits} integer digits; at most "
            f"{DECIMAL_PRECISION - DECIMAL_SCALE} fit DECIMAL({DECIMAL_PRECISION},{DECIMAL_SCALE})"
        )
    if -exponent > DECIMAL_SCALE:
        raise ValueError(f"decimal has more than {DECIMAL_SCALE} fractional digits")
    return value


ExactDecimal = Annotated[
    Decimal,
    BeforeValidator(_parse_decimal),
    AfterValidator(_fits_precision),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="always"),
]
"""A decimal that is parsed from and serialized to a string, never a float."""


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone (e.g. 2026-11-22T17:00:00Z)")
    return value.astimezone(UTC)


RATING_WORST = 1
RATING_BEST = 5
"""Pulse's rating scale: the app's whole stars, and what every other scale is mapped onto."""

ExactRating = Annotated[ExactDecimal, Field(ge=RATING_WORST, le=RATING_BEST)]
"""A rating normalized onto the 1–5 scale, exact: a decimal string such as "1.72"."""

RATING_FRACTION_DIGITS = 6
"""Fractional digits a normalized rating is rounded to (half-even) when the linear map from
its source scale does not terminate (4/9 per point on a 1–10 scale); 0–10, 0–100, 1–5 and
0–5 scales map exactly."""


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]
"""A timezone-aware datetime, normalized to UTC. Naive timestamps are rejected."""


def utc_from_epoch_ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def utc_from_epoch_us(epoch_us: int) -> datetime:
    seconds, micros = divmod(epoch_us, 1_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)
