"""`pulse silence add|list|expire`: the notifier's silences API, through nginx with the API key."""

from __future__ import annotations

from typing import Any

import httpx

SILENCES_PATH = "/v1/silences"


class SilenceApiError(RuntimeError):
    """The API refused or could not be reached; the message is what to tell the user."""


def parse_matchers(terms: list[str]) -> list[dict[str, Any]]:
    """`name=value` (equality) or `name=~regex` terms → the API's matchers."""
    matchers = []
    for term in terms:
        name, sep, value = term.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"matcher {term!r}: write name=value or name=~regex")
        regex = value.startswith("~")
        matchers.append({"name": name, "value": value[1:] if regex else value, "regex": regex})
    return matchers


class SilenceClient:
    def __init__(self, *, api_url: str, api_key: str, client: httpx.Client | None = None):
        self._base = api_url.rstrip("/") + SILENCES_PATH
        self._headers = {"X-API-Key": api_key}
        self._client = client or httpx.Client(timeout=10.0)

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, url, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise SilenceApiError(f"{url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise SilenceApiError(f"HTTP {response.status_code}: {detail}")
        return response.json()

    def add(
        self, matchers: list[dict[str, Any]], *, duration_s: float, created_by: str, comment: str
    ) -> dict[str, Any]:
        body = {
            "matchers": matchers,
            "duration_s": duration_s,
            "created_by": created_by,
            "comment": comment,
        }
        result: dict[str, Any] = self._call("POST", self._base, json=body)
        return result

    def list(self, *, state: str | None = None) -> list[dict[str, Any]]:
        params = {"state": state} if state else None
        result: list[dict[str, Any]] = self._call("GET", self._base, params=params)["silences"]
        return result

    def expire(self, silence_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"{self._base}/{silence_id}")
        return result


def parse_duration_s(text: str) -> float:
    """`90s`, `30m`, `2h`, `1d` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    try:
        if value and value[-1] in units:
            return float(value[:-1]) * units[value[-1]]
        return float(value)
    except ValueError as exc:
        raise ValueError(f"duration {text!r}: write e.g. 90s, 30m, 2h or 1d") from exc
