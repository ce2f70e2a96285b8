"""URL normalisation for dedup (pure): equal pages get equal strings, so traps and loops end.

Normalising strips the fragment, lowercases scheme and host (IDNA-encoded), drops default
ports, drops tracking parameters (utm_*, gclid…) and sorts the query, and resolves `.`/`..`
path segments. Only http and https survive.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

from crawler.addresses import parse_host_address

ALLOWED_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SAFE_PATH = "/:@!$&'()*+,;=-._~%"


class UnsupportedURLError(ValueError):
    """The URL is not http(s), has no host, or cannot be parsed."""


_TRACKING = frozenset({"gclid", "fbclid", "msclkid", "mc_eid", "_ga"})


def _is_tracking(name: str) -> bool:
    """Parameters that mark where a visitor came from, never which page it is."""
    lowered = name.lower()
    return lowered.startswith("utm_") or lowered in _TRACKING


def _normalise_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    if not host:
        raise UnsupportedURLError("URL has no host")
    literal = parse_host_address(host)
    if literal is not None:
        # Numeric forms collapse to the canonical address (0x7f000001 → 127.0.0.1).
        return f"[{literal}]" if literal.version == 6 else str(literal)
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise UnsupportedURLError(f"invalid host {host!r}") from exc


def _normalise_path(path: str) -> str:
    if not path:
        return "/"
    trailing = path.endswith("/")
    resolved = posixpath.normpath(path)
    if resolved.startswith("//"):
        resolved = "/" + resolved.lstrip("/")
    if trailing and resolved != "/":
        resolved += "/"
    # Re-quote consistently: %7E and ~ are the same page.
    return quote(unquote(resolved), safe=_SAFE_PATH)


def normalise_url(url: str, *, base: str | None = None) -> str:
    """The canonical form of `url` (joined to `base` if relative). Raises UnsupportedURLError."""
    joined = urljoin(base, url.strip()) if base else url.strip()
    try:
        parts = urlsplit(joined)
        port = parts.port
    except ValueError as exc:
        raise UnsupportedURLError(f"cannot parse {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsupportedURLError(f"scheme {scheme!r} is not http(s)")
    if parts.username is not None or parts.password is not None:
        raise UnsupportedURLError("URLs with credentials are refused")
    host = _normalise_host(parts.hostname or "")
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode(sorted((k, v) for k, v in pairs if not _is_tracking(k)))
    return urlunsplit((scheme, netloc, _normalise_path(parts.path), query, ""))


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a normalised URL: the unit of robots.txt and politeness."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def matches_any(url: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    """True when no patterns are configured, or one of them matches (re.search)."""
    return not patterns or any(p.search(url) for p in patterns)
