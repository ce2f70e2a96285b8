"""Reviews out of the fixture site's pages: every syntax, selectors, ratings, dates, encodings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from crawler.extraction import (
    content_id,
    decode_html,
    extract_page,
    map_product,
    normalise_rating,
    parse_published,
    parse_sitemap,
    read_rating,
)
from crawler.settings import ProductMapping, SiteConfig
from crawler_fixture_site import _ktl_page, site_config
from crawler_testkit import FIXTURE_DIR

PAGES = FIXTURE_DIR / "pages" / "products"
BASE = "http://homegear.example/products/"
SITE = SiteConfig.model_validate(site_config("http://homegear.example"))


def page(name: str, charset: str | None = "utf-8") -> str:
    return decode_html((PAGES / name).read_bytes(), header_charset=charset)


@pytest.mark.parametrize(
    ("value", "best", "worst", "expected"),
    [
        ("4", None, None, 4.0),
        (5, 5, 1, 5.0),
        (1, None, None, 1.0),
        ("8", "10", "0", 4.2),
        (10, 10, 0, 5.0),
        (0, 10, 0, 1.0),
        ("3,5", None, None, 3.5),
        (75, 100, 0, 4.0),
        (7, 5, 1, 5.0),
        (-2, None, None, 1.0),
        ("4.5 stars", None, None, 4.5),
    ],
)
def test_ratings_normalise_linearly_to_one_to_five(
    value: object, best: object, worst: object, expected: float
) -> None:
    assert normalise_rating(value, best=best, worst=worst) == pytest.approx(expected)


@pytest.mark.parametrize("value", [None, "", "n/a", True])
def test_unreadable_ratings_are_none(value: object) -> None:
    assert normalise_rating(value) is None


def test_degenerate_scale_is_none() -> None:
    assert normalise_rating(3, best=1, worst=5) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-10-03T08:15:00+02:00", datetime(2026, 10, 3, 6, 15, tzinfo=UTC)),
        ("2026-10-12", datetime(2026, 10, 12, tzinfo=UTC)),
        ("2026-11-02T12:00:00Z", datetime(2026, 11, 2, 12, tzinfo=UTC)),
        ("2026-11-02T12:00:00", datetime(2026, 11, 2, 12, tzinfo=UTC)),
        ("yesterday", None),
    ],
)
def test_dates_become_timezone_aware_utc(raw: str, expected: datetime | None) -> None:
    parsed = parse_published(raw)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is not None


def test_json_ld_nested_reviews_with_ids_and_aggregate() -> None:
    extract = extract_page(page("ktl-100.html"), BASE + "ktl-100.html")
    assert [r.external_id for r in extract.reviews] == [
        "https://homegear.example/reviews/r-1001",
        "https://homegear.example/reviews/r-1002",
    ]
    first, second = extract.reviews
    assert first.rating == 4.0 and second.rating == 1.0
    assert first.author_name == "Jane D." and first.title == "Boils fast, lid feels cheap"
    assert first.published_at == datetime(2026, 10, 3, 6, 15, tzinfo=UTC)
    assert first.product_refs == {"sku": "KTL-100", "gtin13": "4006381333931"}
    assert first.via == "json-ld" and first.language == "en"
    assert extract.aggregates[0].rating == 3.8 and extract.aggregates[0].review_count == 5
    assert extract.next_pages == [BASE + "ktl-100.html?page=2"] * 2  # <link> and <a>


def test_microdata_reviews() -> None:
    extract = extract_page(page("tst-200.html"), BASE + "tst-200.html")
    assert [(r.author_name, r.rating, r.via) for r in extract.reviews] == [
        ("Priya K.", 5.0, "microdata"),
        ("Tom W.", 4.0, "microdata"),
    ]
    assert extract.reviews[0].published_at == datetime(2026, 9, 20, 19, tzinfo=UTC)
    assert extract.reviews[0].product_refs == {"sku": "TST-200", "mpn": "ACM-TST200-EU"}
    assert extract.reviews[0].external_id.startswith("h")  # no id on the page: content hash
    assert extract.aggregates[0].rating == 4.5


def test_rdfa_reviews() -> None:
    extract = extract_page(page("bln-300.html"), BASE + "bln-300.html")
    [review] = extract.reviews
    assert review.via == "rdfa" and review.rating == 2.0 and review.author_name == "Lena S."
    assert review.body.startswith("The jug cracked")
    assert review.published_at == datetime(2026, 10, 20, 15, tzinfo=UTC)
    assert review.product_refs == {"sku": "BLN-300"}


def test_graph_document_links_reviews_to_product_by_id() -> None:
    extract = extract_page(page("grl-400.html"), BASE + "grl-400.html")
    assert len(extract.reviews) == 2  # reachable twice (graph node and product.review): once
    by_body = {r.body[:9]: r for r in extract.reviews}
    assert by_body["Excellent"].external_id == "#review-7"
    assert by_body["Excellent"].rating == pytest.approx(3.8)  # 7 on 0–10
    assert by_body["Excellent"].author_name == "Sam, Alex"
    assert by_body["Perfect p"].rating == 5.0
    assert all(r.product_refs == {"gtin13": "4006381400008"} for r in extract.reviews)
    assert (
        map_product(extract.reviews[0].product_refs, BASE + "grl-400.html", SITE.product)
        == "GRL-400"
    )


def test_selectors_read_plain_html_in_latin1_declared_by_meta() -> None:
    html = page("mxr-500.html", charset=None)
    assert "pâtissier" in html
    extract = extract_page(html, BASE + "mxr-500.html", selectors=SITE.selectors)
    first, second = extract.reviews
    assert first.external_id == "fr-501" and first.title == "Très bien"
    assert first.author_name == "Hélène" and first.language == "fr"
    assert first.rating == pytest.approx(4.6)  # 9 on 0–10
    assert first.published_at == datetime(2026, 10, 15, 7, 30, tzinfo=UTC)
    assert second.body == "Le bol se desserre pendant le pétrissage. Service après-vente lent."
    assert first.via == "selectors"


def test_malformed_utf8_page_still_yields_its_review() -> None:
    html = page("cfm-600.html", charset="utf-8")
    [review] = extract_page(html, BASE + "cfm-600.html").reviews
    assert "Größe" in review.body and review.author_name == "Jürgen"
    assert review.language == "de" and review.rating == 3.0


def test_garbage_never_raises() -> None:
    for junk in [
        "",
        "<<<>>>",
        "<script type='application/ld+json'>{not json</script>",
        "\x00\x01binary",
        "<html><body>" * 1000,
    ]:
        assert extract_page(junk, BASE + "x.html").reviews == []


def test_pagination_loop_page_links_back() -> None:
    html = _ktl_page(3, with_new_review=False).decode()
    extract = extract_page(html, BASE + "ktl-100.html?page=3")
    assert extract.next_pages == [BASE + "ktl-100.html?page=2"]
    assert extract.reviews[0].external_id.endswith("r-1005")


def test_decoding_prefers_header_then_meta_then_utf8() -> None:
    latin = "é".encode("latin-1")
    assert decode_html(latin, header_charset="iso-8859-1") == "é"
    assert decode_html(b"<meta charset='latin-1'>" + latin, header_charset=None).endswith("é")
    assert decode_html("é".encode(), header_charset=None) == "é"
    assert decode_html(latin, header_charset=None) == "é"  # not UTF-8: cp1252 fallback
    assert decode_html("é".encode(), header_charset="no-such-charset") == "é"


def test_content_id_is_stable_and_content_sensitive() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    one = content_id(refs={"sku": "A"}, author="x", when=when, title=None, body="b")
    assert one == content_id(refs={"sku": "A"}, author="x", when=when, title=None, body="b")
    assert one != content_id(refs={"sku": "A"}, author="x", when=when, title=None, body="c")


def test_product_mapping_order() -> None:
    mapping = ProductMapping.model_validate(
        {
            "refs": {"gtin13:1": "OURS-1"},
            "sku_is_ours": True,
            "url_rules": [
                {"pattern": "/p/(?P<sku>[a-z]+-\\d+)"},
                {"pattern": "/kettle", "sku": "KTL-100"},
            ],
        }
    )
    assert map_product({"gtin13": "1", "sku": "THEIRS"}, "http://h/", mapping) == "OURS-1"
    assert map_product({"sku": "TST-200"}, "http://h/", mapping) == "TST-200"
    assert map_product({}, "http://h/p/abc-12", mapping) == "ABC-12"
    assert map_product({}, "http://h/kettle", mapping) == "KTL-100"
    assert map_product({}, "http://h/other", mapping) is None


def test_sitemap_and_index() -> None:
    text = (FIXTURE_DIR / "sitemap.xml.tmpl").read_text().format(origin="http://h.example")
    pages, nested = parse_sitemap(text, "http://h.example/sitemap.xml")
    assert len(pages) == 6 and pages[0] == "http://h.example/products/ktl-100.html"
    assert nested == []
    index = "<sitemapindex><sitemap><loc>http://h.example/s1.xml</loc></sitemap></sitemapindex>"
    assert parse_sitemap(index, "http://h.example/") == ([], ["http://h.example/s1.xml"])


@pytest.mark.parametrize(
    ("value", "best", "worst", "normalized"),
    [
        ("1.8", "10", "0", "1.72"),  # a float would give 1.7200000000000002
        (1.8, 10, 0, "1.72"),  # JSON-LD numbers arrive as floats: read as written
        ("2", "10", "0", "1.8"),
        ("4", None, None, "4"),
        ("7", "10", "1", "3.666667"),  # 4/9 a point does not terminate: 6 places, half-even
        ("87", "100", "0", "4.48"),
        ("3,5", None, None, "3.5"),
        (12, 10, 0, "5"),  # clamped
    ],
)
def test_ratings_are_read_exactly_with_their_source_scale(
    value: object, best: object, worst: object, normalized: str
) -> None:
    reading = read_rating(value, best=best, worst=worst)
    assert reading is not None
    assert reading.normalized == Decimal(normalized)
    assert str(reading.normalized) == normalized  # no float noise, no trailing zeros
    assert reading.source_best == Decimal(str(best if best is not None else 5))
    assert reading.source_worst == Decimal(str(worst if worst is not None else 1))
    assert reading.as_float == normalise_rating(value, best=best, worst=worst)


@pytest.mark.parametrize("value", [None, "n/a", True, "1." + "1" * 19, "9" * 21])
def test_ratings_too_long_for_the_archive_or_unreadable_are_none(value: object) -> None:
    assert read_rating(value) is None
