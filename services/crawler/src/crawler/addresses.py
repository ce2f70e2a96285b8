"""Which IP addresses the crawler may connect to (pure: no I/O).

A crawler that fetches URLs from third parties must never be steered to the machine it runs on
or its private network (SSRF). Hostnames are read the way `inet_aton`/getaddrinfo read them,
so `2130706433`, `0x7f000001`, `0177.0.0.1` and `127.1` all mean 127.0.0.1, and IPv6 forms that
embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) are judged by the
embedded address too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str  # "public", "allowlisted", or why it was refused (a metric label)


def parse_ipv4_like(host: str) -> ipaddress.IPv4Address | None:
    """Parse `host` as `inet_aton` does: 1–4 parts, each decimal, 0x-hex or 0-octal.

    Returns None when `host` is not a numeric IPv4 form (a name to resolve). A numeric-looking
    host that overflows (e.g. `256.1.1.1`) also returns None; resolvers reject it as a number
    and it will not resolve as a name.
    """
    text = host.strip().rstrip(".")
    if not text:
        return None
    parts = text.split(".")
    if len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                values.append(int(part[2:], 16) if len(part) > 2 else 0)
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            elif part.isdigit():
                values.append(int(part, 10))
            else:
                return None
        except ValueError:
            return None
    # The last part fills all remaining bytes: a.b.c.d, a.b.cd, a.bcd, abcd.
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = (number << 8) | v
    number = (number << (8 * (4 - len(head)))) | last
    return ipaddress.IPv4Address(number)


def parse_host_address(host: str) -> IPAddress | None:
    """A literal address in a URL host (IPv6 with or without brackets, any IPv4 form)."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    return parse_ipv4_like(text)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64_WELL_KNOWN or address in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _refusal(address: IPAddress) -> str | None:
    """Why a single address (not looking inside it) is not public, or None if it is."""
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "cgnat"
    if isinstance(address, ipaddress.IPv6Address) and address in _NAT64_LOCAL:
        return "private"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not_global"
    return None


def check_address(address: IPAddress, *, allow: Sequence[IPNetwork] = ()) -> Verdict:
    """Whether the crawler may connect to `address`.

    `allow` lists networks an operator explicitly opened (tests crawl loopback fixtures);
    cloud metadata addresses stay refused whatever it says.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # the socket would reach the IPv4 host itself
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        candidates.extend(embedded_ipv4(address))
    for candidate in candidates:
        if candidate in METADATA_ADDRESSES:
            return Verdict(False, "metadata")
    if any(address in network for network in allow if network.version == address.version):
        return Verdict(True, "allowlisted")
    if address.is_loopback or address.is_unspecified:
        return Verdict(False, "loopback" if address.is_loopback else "unspecified")
    # An embedded IPv4 address is where the packets really go: judge it first. NAT64's
    # well-known prefix is "reserved" in itself, so only its embedded address counts.
    ordered = candidates[1:] + ([] if address in _NAT64_WELL_KNOWN else candidates[:1])
    for candidate in ordered:
        reason = _refusal(candidate)
        if reason is not None:
            return Verdict(False, reason)
    return Verdict(True, "public")


def check_addresses(addresses: Iterable[IPAddress], *, allow: Sequence[IPNetwork] = ()) -> Verdict:
    """All of a name's addresses must pass: one bad answer refuses the whole name."""
    seen = False
    for address in addresses:
        seen = True
        verdict = check_address(address, allow=allow)
        if not verdict.allowed:
            return verdict
    return Verdict(True, "public") if seen else Verdict(False, "unresolved")


def parse_networks(specs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(spec.strip(), strict=False) for spec in specs if spec.strip())
