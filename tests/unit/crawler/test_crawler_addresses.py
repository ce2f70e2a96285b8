"""Which addresses the crawler refuses, in every spelling a resolver accepts."""

from __future__ import annotations

import ipaddress

import pytest
from crawler.addresses import check_address, check_addresses, parse_host_address, parse_networks

LOOPBACK_FORMS = [
    "127.0.0.1",
    "2130706433",
    "0x7f000001",
    "0x7F.0.0.1",
    "0177.0.0.1",
    "0177.0000.0000.0001",
    "127.1",
    "127.0.1",
    "017700000001",
    "127.000.000.001",
]


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_numeric_forms_of_loopback_parse_to_127_0_0_1(host: str) -> None:
    assert parse_host_address(host) == ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize(
    "host", ["example.com", "256.1.1.1", "1.2.3.4.5", "12a.0.0.1", "0x1g", "09.0.0.1", "", "."]
)
def test_names_and_overflowing_numbers_are_not_addresses(host: str) -> None:
    assert parse_host_address(host) is None


@pytest.mark.parametrize("host", ["0x", "0x.0x.0x.0x", "0X"])
def test_an_empty_hex_part_reads_as_zero_and_is_refused(host: str) -> None:
    # glibc's inet_aton rejects "0x", but the WHATWG URL parser reads an empty hex number as
    # 0, so some client would go to 0.0.0.0: the crawler takes the stricter reading.
    address = parse_host_address(host)
    assert address == ipaddress.ip_address("0.0.0.0")
    assert check_address(address).reason == "unspecified"


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link_local"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("198.18.0.1", "private"),
        ("192.0.2.1", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link_local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:7f00:1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::a00:1", "private"),
        ("64:ff9b::a9fe:a9fe", "metadata"),
        ("64:ff9b:1::1", "private"),
        ("2002:7f00:1::1", "loopback"),
        ("2002:c0a8:101::1", "private"),
        ("::127.0.0.1", "loopback"),
        ("2001:db8::1", "private"),
        ("fd00:ec2::254", "metadata"),
        ("2130706433", "loopback"),
        ("0x7f000001", "loopback"),
        ("0177.0.0.1", "loopback"),
        ("127.1", "loopback"),
        ("0xa9fea9fe", "metadata"),
    ],
)
def test_non_public_addresses_are_refused_with_a_reason(host: str, reason: str) -> None:
    address = parse_host_address(host)
    assert address is not None
    verdict = check_address(address)
    assert not verdict.allowed
    assert verdict.reason == reason


@pytest.mark.parametrize(
    "host",
    [
        "8.8.8.8",
        "93.184.215.14",
        "2606:4700::1111",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "::ffff:8.8.8.8",
    ],
)
def test_public_addresses_pass(host: str) -> None:
    address = parse_host_address(host)
    assert address is not None
    assert check_address(address).allowed


def test_allowlist_opens_only_the_listed_networks() -> None:
    allow = parse_networks(["127.0.0.1/32"])
    assert check_address(ipaddress.ip_address("127.0.0.1"), allow=allow).reason == "allowlisted"
    assert not check_address(ipaddress.ip_address("127.0.0.2"), allow=allow).allowed
    assert not check_address(ipaddress.ip_address("10.0.0.1"), allow=allow).allowed


def test_allowlist_never_opens_cloud_metadata() -> None:
    allow = parse_networks(["169.254.0.0/16", "::/0"])
    assert check_address(ipaddress.ip_address("169.254.169.254"), allow=allow).reason == "metadata"
    mapped = ipaddress.ip_address("::ffff:169.254.169.254")
    assert not check_address(mapped, allow=allow).allowed


def test_one_private_answer_refuses_the_whole_name() -> None:
    answers = [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.1")]
    assert not check_addresses(answers).allowed
    assert check_addresses([]).reason == "unresolved"
