"""Silences: time-bounded label matchers; a silenced alert is dropped (and counted). Pure."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from contracts.types import UtcDatetime
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from notifier.labels import LABEL_NAMES

MAX_SILENCE = timedelta(days=30)


class Matcher(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    value: str
    regex: bool = False

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in LABEL_NAMES:
            raise ValueError(f"unknown label {value!r}; known: {sorted(LABEL_NAMES)}")
        return value

    @model_validator(mode="after")
    def _compiles(self) -> Matcher:
        if self.regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self.name}: bad regular expression: {exc}") from exc
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name)
        if value is None:
            return False
        return bool(re.fullmatch(self.value, value)) if self.regex else value == self.value


class SilenceRequest(BaseModel):
    """What `POST /v1/silences` takes: matchers and an end (or a duration)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matchers: Annotated[list[Matcher], Field(min_length=1)]
    starts_at: UtcDatetime | None = None
    ends_at: UtcDatetime | None = None
    duration_s: Annotated[float, Field(gt=0)] | None = None
    created_by: Annotated[str, Field(min_length=1, max_length=200)] = "api"
    comment: Annotated[str, Field(max_length=2000)] = ""

    @model_validator(mode="after")
    def _one_end(self) -> SilenceRequest:
        if (self.ends_at is None) == (self.duration_s is None):
            raise ValueError("give exactly one of ends_at and duration_s")
        return self


class SilenceState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


class Silence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    matchers: list[Matcher]
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    created_by: str
    comment: str

    def state(self, now: datetime) -> SilenceState:
        if now >= self.ends_at:
            return SilenceState.EXPIRED
        if now < self.starts_at:
            return SilenceState.PENDING
        return SilenceState.ACTIVE

    def mutes(self, labels: Mapping[str, str], *, now: datetime) -> bool:
        return self.state(now) is SilenceState.ACTIVE and all(
            m.matches(labels) for m in self.matchers
        )


def new_silence(request: SilenceRequest, *, now: datetime) -> Silence:
    """A silence from a request; ValueError when it ends before it starts or lasts too long."""
    starts = request.starts_at or now
    ends = request.ends_at or starts + timedelta(seconds=request.duration_s or 0)
    if ends <= starts:
        raise ValueError("ends_at must be after starts_at")
    if ends - starts > MAX_SILENCE:
        raise ValueError(f"a silence lasts at most {MAX_SILENCE.days} days")
    return Silence(
        id=str(uuid.uuid4()),
        matchers=list(request.matchers),
        starts_at=starts,
        ends_at=ends,
        created_by=request.created_by,
        comment=request.comment,
    )


def muted_by(
    silences: Iterable[Silence], labels: Mapping[str, str], *, now: datetime
) -> str | None:
    """The id of an active silence that mutes these labels, if any."""
    for silence in silences:
        if silence.mutes(labels, now=now):
            return silence.id
    return None
