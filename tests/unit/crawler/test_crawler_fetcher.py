"""The fetcher through the real httpx client against the loopback fixture site."""

from __future__ import annotations

import ipaddress
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from crawler.addresses import IPAddress
from crawler.app import build_policy
from crawler.fetcher import AddressBlockedError, Fetcher, FetchError, Resolver, system_resolver
from crawler_fixture_site import FixtureSite
from crawler_testkit import make_settings
from servicekit import metrics
from servicekit.clock import SystemClock


async def make_fetcher(
    tmp_path: Path, resolver: Resolver = system_resolver, **overrides: Any
) -> Fetcher:
    return Fetcher(
        policy=build_policy(make_settings(tmp_path, **overrides)),
        clock=SystemClock(),
        resolver=resolver,
    )


def blocked_total() -> float:
    return sum(
        s.value
        for m in metrics.BLOCKED_ADDRESSES.collect()
        for s in m.samples
        if s.name.endswith("_total")
    )


@pytest.fixture
async def fetcher(tmp_path: Path) -> AsyncIterator[Fetcher]:
    f = await make_fetcher(tmp_path)
    yield f
    await f.aclose()


async def test_fetches_a_page_with_our_user_agent(site: FixtureSite, fetcher: Fetcher) -> None:
    result = await fetcher.fetch(f"{site.origin}/products/ktl-100.html#reviews", delay_s=0)
    assert result.ok and result.content_type == "text/html" and b"KTL-100" in result.body
    [(path, _, headers)] = site.state.requests
    assert path == "/products/ktl-100.html"  # fragment never sent
    assert headers["User-Agent"].startswith("PulseCrawler/")


@pytest.mark.parametrize("form", ["dotted", "hex", "decimal", "mapped"])
async def test_redirect_to_a_private_address_is_refused_in_every_form(
    site: FixtureSite, fetcher: Fetcher, form: str
) -> None:
    before = blocked_total()
    with pytest.raises(AddressBlockedError):
        await fetcher.fetch(f"{site.origin}/redirect-private/{form}", delay_s=0)
    assert blocked_total() == before + 1
    assert site.paths() == [f"/redirect-private/{form}"]  # the target was never contacted


async def test_redirect_to_another_scheme_is_refused(site: FixtureSite, fetcher: Fetcher) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(f"{site.origin}/redirect-private/ftp", delay_s=0)
    assert caught.value.reason == "unsupported"


async def test_loopback_is_refused_without_the_allowlist(site: FixtureSite, tmp_path: Path) -> None:
    closed = await make_fetcher(tmp_path, allow_private_networks=())
    try:
        with pytest.raises(AddressBlockedError):
            await closed.fetch(f"{site.origin}/index.html", delay_s=0)
        with pytest.raises(AddressBlockedError):
            await closed.fetch(site.origin.replace("127.0.0.1", "0x7f000001") + "/", delay_s=0)
    finally:
        await closed.aclose()
    assert site.paths() == []


async def test_redirects_are_followed_and_capped_at_five(
    site: FixtureSite, fetcher: Fetcher
) -> None:
    ok = await fetcher.fetch(f"{site.origin}/redirect-ok", delay_s=0)
    assert ok.url.endswith("/products/bln-300.html") and ok.ok
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(f"{site.origin}/hop/0", delay_s=0)
    assert caught.value.reason == "redirects"
    assert [p for p in site.paths() if p.startswith("/hop/")] == [f"/hop/{i}" for i in range(6)]


@pytest.mark.parametrize("path", ["/big.html", "/big-chunked.html", "/bomb.html"])
async def test_bodies_over_the_cap_stop_at_the_cap(
    site: FixtureSite, fetcher: Fetcher, path: str
) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(site.origin + path, delay_s=0)
    assert caught.value.reason == "too_large"


async def test_content_type_outside_the_allowlist_is_refused(
    site: FixtureSite, fetcher: Fetcher
) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(f"{site.origin}/download.bin", delay_s=0)
    assert caught.value.reason == "content_type"


async def test_a_drip_ends_at_the_whole_request_deadline(site: FixtureSite, tmp_path: Path) -> None:
    drip = await make_fetcher(tmp_path, request_deadline_s=1.5, min_body_bytes_per_s=0)
    started = time.monotonic()
    try:
        with pytest.raises(FetchError) as caught:
            await drip.fetch(f"{site.origin}/drip.html", delay_s=0)
    finally:
        await drip.aclose()
    assert caught.value.reason == "trickle"  # the body was arriving: never retried
    assert time.monotonic() - started < 3.0  # a read timeout alone would wait 100 s
    assert site.paths().count("/drip.html") == 1


async def test_429_retry_after_is_honoured(site: FixtureSite, fetcher: Fetcher) -> None:
    started = time.monotonic()
    result = await fetcher.fetch(f"{site.origin}/throttled.html", delay_s=0)
    assert result.ok
    times = [t for p, t, _ in site.state.requests if p == "/throttled.html"]
    assert len(times) == 2 and times[1] - times[0] >= 0.95
    assert time.monotonic() - started >= 0.95


async def test_5xx_is_retried_with_backoff(site: FixtureSite, fetcher: Fetcher) -> None:
    result = await fetcher.fetch(f"{site.origin}/flaky.html", delay_s=0)
    assert result.ok
    assert site.state.retry_counts["/flaky.html"] == 3


async def test_5xx_gives_up_after_max_retries(site: FixtureSite, tmp_path: Path) -> None:
    once = await make_fetcher(tmp_path, max_retries=1)
    try:
        result = await once.fetch(f"{site.origin}/flaky.html", delay_s=0)
    finally:
        await once.aclose()
    assert result.status == 502 and site.state.retry_counts["/flaky.html"] == 2


async def test_minimum_delay_between_requests_to_one_host(
    site: FixtureSite, fetcher: Fetcher
) -> None:
    import asyncio

    await asyncio.gather(
        *(fetcher.fetch(f"{site.origin}/about.html?n={i}", delay_s=0.3) for i in range(3))
    )
    times = sorted(t for _, t, _ in site.state.requests)
    assert all(b - a >= 0.28 for a, b in itertools.pairwise(times))


async def test_connection_is_pinned_to_the_checked_address_keeping_host(
    site: FixtureSite, tmp_path: Path
) -> None:
    answers: dict[str, list[IPAddress]] = {
        "shop.homegear.test": [ipaddress.ip_address("127.0.0.1")],
        "rebind.homegear.test": [ipaddress.ip_address("127.0.0.2")],
        "mixed.homegear.test": [
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("169.254.169.254"),
        ],
    }
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        return answers[host]

    pinned = await make_fetcher(tmp_path, resolver=resolver)
    port = site.origin.rsplit(":", 1)[1]
    try:
        result = await pinned.fetch(f"http://shop.homegear.test:{port}/about.html", delay_s=0)
        assert result.ok
        with pytest.raises(AddressBlockedError):
            await pinned.fetch(f"http://rebind.homegear.test:{port}/", delay_s=0)
        with pytest.raises(AddressBlockedError) as caught:
            await pinned.fetch(f"http://mixed.homegear.test:{port}/", delay_s=0)
        assert caught.value.why == "metadata"
    finally:
        await pinned.aclose()
    [(_, _, headers)] = site.state.requests
    assert headers["Host"] == f"shop.homegear.test:{port}"
    assert calls == ["shop.homegear.test", "rebind.homegear.test", "mixed.homegear.test"]
