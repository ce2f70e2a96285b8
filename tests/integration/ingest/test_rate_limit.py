"""A flood from one API key gets 429 + Retry-After from nginx; another key is unaffected.

The shared nginx allows 5,000 req/s + a 2,000 burst per key, more than one ingest instance
serves on this 2-core machine, so a client cannot trip it there. This test runs the same
nginx.conf on a private port with the limit scaled down (20 r/s, burst 10), in front of the
real ingest app, which checks the mechanism: zone keyed by X-API-Key, 429, Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

pytestmark = pytest.mark.integration


async def test_flood_from_one_key_is_429_while_another_key_is_served(
    app_url: str,
    api_key: str,
    create_key: Callable[..., str],
    private_nginx: Callable[..., contextlib.AbstractContextManager[str]],
) -> None:
    other_key = create_key("reviews:read")
    with private_nginx(app_url, rate="20r/s", burst=10) as url:
        async with httpx.AsyncClient(base_url=url, timeout=15) as client:
            flood = await asyncio.gather(
                *(
                    client.get("/v1/reviews/not-a-uuid", headers={"X-API-Key": api_key})
                    for _ in range(150)
                )
            )
            other = [
                (await client.get("/v1/reviews/not-a-uuid", headers={"X-API-Key": other_key}))
                for _ in range(5)
            ]
    statuses = Counter(r.status_code for r in flood)
    assert statuses[429] > 0, statuses
    assert all(r.headers.get("retry-after") for r in flood if r.status_code == 429)
    assert not [s for s in statuses if s >= 500], statuses
    assert [r.status_code for r in other] == [422] * 5, "the other key was rate limited"
