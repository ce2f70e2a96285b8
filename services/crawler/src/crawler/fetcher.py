"""The only way the crawler touches the network: a guarded, polite httpx fetch.

Every connection goes through `GuardedBackend`, which resolves the host itself, refuses the
whole name if any answer is not public (see `addresses`), and connects to the address it
checked, so DNS rebinding cannot swap it afterwards; Host and TLS SNI keep the original name.
Redirects are followed here, not by httpx, and every hop is re-checked. The body is read raw
and decompressed by us with a cap on decompressed bytes, so a gzip bomb stops at the cap.

Order per attempt: 1. normalise and pre-check the URL 2. wait for the host's politeness slot
3. send under one deadline that covers headers and body 4. check content type from headers
5. stream the body under the cap.

Time per URL is bounded twice: each attempt by `request_deadline_s`, and the URL as a whole
(its attempts, backoffs and Retry-After waits; not the wait for the host's turn, which a
Crawl-delay may make longer than any budget) by `url_budget_s`. A body that was
arriving but too slowly (below `min_body_bytes_per_s` after `trickle_grace_s`, or still
incomplete at the deadline) is a trickle: retrying it would cost another full deadline for
the same result, so it is never retried. Both end as a `FetchError` whose reason is in
`SLOW_REASONS`, which the crawl records as a slow page.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import certifi
import httpcore
import httpx
from servicekit import metrics
from servicekit.clock import Clock

from crawler.addresses import (
    IPAddress,
    IPNetwork,
    check_address,
    check_addresses,
    parse_host_address,
)
from crawler.urls import UnsupportedURLError, host_of, normalise_url

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_RETRIED_REASONS = frozenset({"timeout", "connect"})
SLOW_REASONS = frozenset({"trickle", "budget"})
"""FetchError reasons that mean "this URL is slow": given up, not retried."""


class FetchError(Exception):
    """A fetch that produced no usable response; `reason` is a short metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class AddressBlockedError(FetchError):
    def __init__(self, host: str, why: str) -> None:
        super().__init__("blocked", f"{host} refused ({why})")
        self.why = why


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """getaddrinfo's answers for `host`, as the OS resolver would give them to connect()."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError("dns", f"{host}: {exc}") from exc
    found: list[IPAddress] = []
    for info in infos:
        literal = parse_host_address(str(info[4][0]))
        if literal is not None and literal not in found:
            found.append(literal)
    return found


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address, then connects to a checked address only."""

    def __init__(self, *, allow: Sequence[IPNetwork], resolver: Resolver = system_resolver) -> None:
        self._allow = tuple(allow)
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        literal = parse_host_address(host)
        addresses = [literal] if literal is not None else await self._resolver(host, port)
        verdict = check_addresses(addresses, allow=self._allow)
        if not verdict.allowed:
            metrics.BLOCKED_ADDRESSES.labels(reason=verdict.reason).inc()
            raise AddressBlockedError(host, verdict.reason)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressBlockedError(path, "unix_socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with a connection pool whose every socket comes from GuardedBackend."""

    def __init__(self, *, backend: GuardedBackend, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)  # no proxy from the environment
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    user_agent: str
    request_deadline_s: float = 30.0
    url_budget_s: float = 60.0  # one URL's attempts, backoffs and Retry-After waits, together
    min_body_bytes_per_s: float = 1024.0  # below this after trickle_grace_s: a trickle
    trickle_grace_s: float = 5.0
    connect_timeout_s: float = 10.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 300.0
    max_redirects: int = 5
    max_body_bytes: int = 5 * 1024 * 1024
    content_types: tuple[str, ...] = ("text/html",)
    global_concurrency: int = 8
    per_host_concurrency: int = 1
    allow: tuple[IPNetwork, ...] = ()


@dataclass(slots=True)
class _Budget:
    """What one URL may still spend: its attempts, backoffs and Retry-After waits count; the
    wait for the host's politeness slot does not."""

    total_s: float
    spent_s: float = 0.0

    @property
    def remaining_s(self) -> float:
        return self.total_s - self.spent_s


@dataclass(slots=True)
class _BodyProgress:
    """How much of a body has arrived, so a timeout can tell a trickle from a stall."""

    started_at: float | None = None  # clock.monotonic() when the headers were in
    raw_bytes: int = 0


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str  # the final URL after redirects (normalised)
    status: int
    content_type: str
    charset: str | None
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class HostGate:
    """Politeness: per-host concurrency, a minimum delay between requests, a global limit."""

    def __init__(self, *, clock: Clock, global_concurrency: int, per_host_concurrency: int) -> None:
        self._clock = clock
        self._global = asyncio.Semaphore(global_concurrency)
        self._per_host = per_host_concurrency
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._next_at: dict[str, float] = {}  # Retry-After deadlines
        self._last_at: dict[str, float] = {}  # when the host's last request ended

    def defer(self, host: str, seconds: float) -> None:
        """No request to `host` before `seconds` from now (Retry-After)."""
        at = self._clock.monotonic() + seconds
        self._next_at[host] = max(self._next_at.get(host, 0.0), at)

    @contextlib.asynccontextmanager
    async def slot(self, host: str, *, delay_s: float) -> AsyncIterator[None]:
        """Hold the host's turn: `delay_s` after its previous request and any Retry-After."""
        semaphore = self._hosts.setdefault(host, asyncio.Semaphore(self._per_host))
        async with semaphore:
            last = self._last_at.get(host)
            ready = max(self._next_at.get(host, 0.0), (last + delay_s) if last is not None else 0.0)
            wait = ready - self._clock.monotonic()
            if wait > 0:
                await self._clock.sleep(wait)
            async with self._global:
                try:
                    yield
                finally:
                    self._last_at[host] = self._clock.monotonic()


class _Decoder:
    """Content-Encoding decoding with a bound on output per call (max_length)."""

    def __init__(self, encoding: str) -> None:
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self._z: Any = None
        elif encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()
        else:
            raise FetchError("encoding", f"unsupported Content-Encoding {encoding!r}")

    def feed(self, chunk: bytes, limit: int) -> Iterable[bytes]:
        """Decoded bytes of `chunk`, produced at most `limit + 1` at a time."""
        if self._z is None:
            yield chunk
            return
        data = chunk
        while True:
            out = self._z.decompress(data, limit + 1)
            if out:
                yield out
            data = self._z.unconsumed_tail
            if not data:
                return


def parse_retry_after(value: str | None, *, now_epoch_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_epoch_s)


def backoff_s(attempt: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: half fixed, half random."""
    cap = min(max_s, base_s * (2**attempt))
    return float(cap / 2 + rng.uniform(0, cap / 2))


def _media_type(content_type: str) -> tuple[str, str | None]:
    media, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip().strip("\"'")
    return media.strip().lower(), charset


class Fetcher:
    """GET with SSRF guards, politeness, retries, one deadline per request and a body cap."""

    def __init__(
        self,
        *,
        policy: FetchPolicy,
        clock: Clock,
        resolver: Resolver = system_resolver,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._rng = rng or random.Random()  # jitter, not security
        self.gate = HostGate(
            clock=clock,
            global_concurrency=policy.global_concurrency,
            per_host_concurrency=policy.per_host_concurrency,
        )
        limits = httpx.Limits(
            max_connections=policy.global_concurrency * 2,
            max_keepalive_connections=policy.global_concurrency * 2,
        )
        self._client = httpx.AsyncClient(
            transport=PinnedTransport(
                backend=GuardedBackend(allow=policy.allow, resolver=resolver), limits=limits
            ),
            timeout=httpx.Timeout(policy.request_deadline_s, connect=policy.connect_timeout_s),
            headers={"User-Agent": policy.user_agent, "Accept-Encoding": "gzip, deflate"},
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(
        self, url: str, *, delay_s: float, content_types: Sequence[str] | None = None
    ) -> FetchResult:
        """Fetch `url`, retrying timeouts, connection errors, 5xx and 429/503 (Retry-After).

        Returns the last response (possibly 4xx/5xx, with an empty body). Raises FetchError
        when no response could be had or the response was refused (blocked address, content
        type, size, too many redirects), and with a reason in SLOW_REASONS when the body
        trickled (not retried) or the URL's time budget ran out.
        """
        allowed_types = tuple(
            content_types if content_types is not None else self.policy.content_types
        )
        budget = _Budget(self.policy.url_budget_s)
        attempts = self.policy.max_retries + 1
        last: FetchResult | None = None
        for attempt in range(attempts):
            final = attempt == attempts - 1
            try:
                result = await self._follow(
                    url, delay_s=delay_s, content_types=allowed_types, budget=budget
                )
            except FetchError as exc:
                if exc.reason not in _RETRIED_REASONS or final:
                    raise
                await self._sleep_within(budget, self._backoff(attempt), url, cause=exc)
                continue
            last = result
            if result.status in _RETRY_AFTER_STATUSES:
                wait = parse_retry_after(
                    result.headers.get("retry-after"), now_epoch_s=self._clock.now().timestamp()
                )
                if wait is None:
                    wait = self._backoff(attempt)
                if wait > self.policy.max_retry_after_s or final or wait >= budget.remaining_s:
                    return result
                budget.spent_s += wait  # this URL's own wait, though the gate does the waiting
                # Honoured per host: every request to it waits, not only this one.
                self.gate.defer(host_of(result.url), wait)
                continue
            if result.status >= 500 and not final:
                backoff = self._backoff(attempt)
                if backoff >= budget.remaining_s:
                    return result
                budget.spent_s += backoff
                await self._clock.sleep(backoff)
                continue
            return result
        assert last is not None
        return last

    async def _sleep_within(
        self, budget: _Budget, seconds: float, url: str, *, cause: FetchError
    ) -> None:
        """Back off before a retry, or give the URL up if the retry would start past its budget."""
        if seconds >= budget.remaining_s:
            raise FetchError(
                "budget",
                f"{url}: {self.policy.url_budget_s}s budget (CRAWLER_URL_BUDGET_S) spent; "
                f"last attempt: {cause.detail}",
            ) from cause
        budget.spent_s += seconds
        await self._clock.sleep(seconds)

    def _backoff(self, attempt: int) -> float:
        return backoff_s(
            attempt,
            base_s=self.policy.backoff_base_s,
            max_s=self.policy.backoff_max_s,
            rng=self._rng,
        )

    async def _follow(
        self, url: str, *, delay_s: float, content_types: tuple[str, ...], budget: _Budget
    ) -> FetchResult:
        try:
            current = normalise_url(url)
        except UnsupportedURLError as exc:
            raise FetchError("unsupported", str(exc)) from exc
        for _hop in range(self.policy.max_redirects + 1):
            self._precheck(current)
            host = host_of(current)
            async with self.gate.slot(host, delay_s=delay_s):
                started = self._clock.monotonic()  # the budget counts from the host's turn
                try:
                    result, location = await self._one_hop(current, content_types, budget)
                finally:
                    budget.spent_s += self._clock.monotonic() - started
            if location is None:
                return result
            try:
                current = normalise_url(location, base=current)
            except UnsupportedURLError as exc:
                raise FetchError("unsupported", f"redirect to {location!r}: {exc}") from exc
        raise FetchError("redirects", f"more than {self.policy.max_redirects} redirects from {url}")

    def _precheck(self, url: str) -> None:
        """Refuse literal non-public addresses before any DNS or socket work."""
        literal = parse_host_address(host_of(url))
        if literal is None:
            return
        verdict = check_address(literal, allow=self.policy.allow)
        if not verdict.allowed:
            metrics.BLOCKED_ADDRESSES.labels(reason=verdict.reason).inc()
            raise AddressBlockedError(str(literal), verdict.reason)

    async def _one_hop(
        self, url: str, content_types: tuple[str, ...], budget: _Budget
    ) -> tuple[FetchResult, str | None]:
        deadline_s = min(self.policy.request_deadline_s, budget.remaining_s)
        if deadline_s <= 0:
            raise FetchError(
                "budget", f"{url}: {self.policy.url_budget_s}s budget (CRAWLER_URL_BUDGET_S) spent"
            )
        progress = _BodyProgress()
        try:
            async with asyncio.timeout(deadline_s):
                request = self._client.build_request("GET", url)
                response = await self._client.send(request, stream=True)
                try:
                    return await self._read(url, response, content_types, progress)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise self._timeout_error(url, progress, deadline_s) from exc
        except httpx.TransportError as exc:
            raise FetchError("connect", f"{url}: {type(exc).__name__}: {exc}") from exc

    def _timeout_error(self, url: str, progress: _BodyProgress, deadline_s: float) -> FetchError:
        """trickle: body bytes had arrived; budget: the budget cut the deadline; else timeout."""
        if progress.raw_bytes > 0:
            return FetchError(
                "trickle",
                f"{url}: body still arriving after {deadline_s:.1f}s "
                f"({progress.raw_bytes} bytes); not retried",
            )
        if deadline_s < self.policy.request_deadline_s:
            return FetchError(
                "budget",
                f"{url}: {self.policy.url_budget_s}s budget (CRAWLER_URL_BUDGET_S) spent "
                f"waiting for a response",
            )
        return FetchError("timeout", f"{url}: no complete response within {deadline_s:.1f}s")

    def _check_rate(self, url: str, progress: _BodyProgress) -> None:
        """Give up on a body arriving below the minimum rate once the grace period is over."""
        assert progress.started_at is not None
        elapsed_s = self._clock.monotonic() - progress.started_at
        if elapsed_s < self.policy.trickle_grace_s:
            return
        rate = progress.raw_bytes / elapsed_s
        if rate < self.policy.min_body_bytes_per_s:
            raise FetchError(
                "trickle",
                f"{url}: body at {rate:.0f} B/s after {elapsed_s:.1f}s, below "
                f"{self.policy.min_body_bytes_per_s:.0f} B/s (CRAWLER_MIN_BODY_BYTES_PER_S); "
                f"not retried",
            )

    async def _read(
        self,
        url: str,
        response: httpx.Response,
        content_types: tuple[str, ...],
        progress: _BodyProgress,
    ) -> tuple[FetchResult, str | None]:
        headers = {k.lower(): v for k, v in response.headers.items()}
        media, charset = _media_type(headers.get("content-type", ""))
        empty = FetchResult(
            url=url,
            status=response.status_code,
            content_type=media,
            charset=charset,
            body=b"",
            headers=headers,
        )
        if response.status_code in _REDIRECTS and "location" in headers:
            return empty, headers["location"]
        if not 200 <= response.status_code < 300:
            return empty, None
        if content_types and media not in content_types:
            raise FetchError("content_type", f"{url}: {media or 'no content type'} not allowed")
        cap = self.policy.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and "content-encoding" not in headers and int(declared) > cap:
            raise FetchError("too_large", f"{url}: Content-Length {declared} > {cap}")
        decoder = _Decoder(headers.get("content-encoding", ""))
        parts: list[bytes] = []
        total = 0
        progress.started_at = self._clock.monotonic()
        async for raw in response.aiter_raw():
            progress.raw_bytes += len(raw)
            self._check_rate(url, progress)
            for piece in decoder.feed(raw, cap - total):
                total += len(piece)
                if total > cap:
                    raise FetchError("too_large", f"{url}: body over {cap} bytes decompressed")
                parts.append(piece)
        return FetchResult(
            url=url,
            status=response.status_code,
            content_type=media,
            charset=charset,
            body=b"".join(parts),
            headers=headers,
        ), None
