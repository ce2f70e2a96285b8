"""URL normalisation: the same page gets the same string, so dedup ends traps and loops."""

from __future__ import annotations

import pytest
from crawler.urls import UnsupportedURLError, matches_any, normalise_url, origin_of


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Shop.EXAMPLE.com:80/a/b?z=1&a=2#frag", "http://shop.example.com/a/b?a=2&z=1"),
        ("https://shop.example.com:443", "https://shop.example.com/"),
        ("https://shop.example.com:8443/x", "https://shop.example.com:8443/x"),
        ("http://shop.example.com/a/./b/../c", "http://shop.example.com/a/c"),
        ("http://shop.example.com/%7Euser/", "http://shop.example.com/~user/"),
        ("http://shop.example.com./p", "http://shop.example.com/p"),
        ("http://0x7f000001/", "http://127.0.0.1/"),
        ("http://2130706433:8080/", "http://127.0.0.1:8080/"),
        ("http://[::FFFF:7f00:1]/", "http://[::ffff:7f00:1]/"),
        ("http://bücher.example/", "http://xn--bcher-kva.example/"),
        ("http://shop.example.com/p?b=&a=1", "http://shop.example.com/p?a=1&b="),
        (
            "http://shop.example.com/p?utm_source=x&page=2&gclid=1",
            "http://shop.example.com/p?page=2",
        ),
    ],
)
def test_normalises_equivalent_urls_to_one_form(raw: str, expected: str) -> None:
    assert normalise_url(raw) == expected


def test_relative_urls_join_their_base() -> None:
    assert normalise_url("../b?x=1#top", base="http://h.example/a/c") == "http://h.example/b?x=1"


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://h.example/f",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://user:pw@h.example/",
        "http:///nohost",
        "gopher://h/",
    ],
)
def test_refuses_non_http_and_credentialed_urls(raw: str) -> None:
    with pytest.raises(UnsupportedURLError):
        normalise_url(raw)


def test_origin_and_patterns() -> None:
    url = normalise_url("http://h.example:8080/products/x.html")
    assert origin_of(url) == "http://h.example:8080"
    import re

    assert matches_any(url, [re.compile("/products/")])
    assert not matches_any(url, [re.compile("/private/")])
    assert matches_any(url, [])
