"""Reviews out of a product page (pure): schema.org structured data first, site selectors second.

JSON-LD, microdata and RDFa are read with `extruct`, each syntax from the whole page first;
if that fails, one block at a time (each JSON-LD `<script>`, each outermost microdata item), so
one broken block is reported (`PageExtract.broken`) and the valid blocks beside it are kept.
RDFa is one graph per page and fails alone. RDFa's expanded IRIs and `@graph` documents are
folded into the same short-key node shape so one walk finds `Review` and `AggregateRating`
nodes whether they are nested under a `Product`, linked by `@id`, or stand alone with
`itemReviewed`. Ratings are normalised to 1–5 in decimal; dates become timezone-aware UTC.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urljoin

import extruct
from contracts.types import DECIMAL_PRECISION, DECIMAL_SCALE, RATING_FRACTION_DIGITS
from extruct.utils import parse_html, parse_xmldom_html
from lxml import etree
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from selectolax.lexbor import LexborNode as Node

from crawler.settings import ProductMapping, Selectors

log = logging.getLogger(__name__)

_SCHEMA_PREFIXES = ("https://schema.org/", "http://schema.org/")
_PRODUCT_TYPES = frozenset({"Product", "ProductModel", "IndividualProduct", "ProductGroup"})
_REF_KINDS = ("sku", "gtin", "gtin8", "gtin12", "gtin13", "gtin14", "mpn", "productID")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")
# Blocks as extruct itself finds them: its JSON-LD XPath, and microdata items not nested in one.
_JSON_LD_BLOCKS = etree.XPath('//script[@type="application/ld+json"]')
_MICRODATA_BLOCKS = etree.XPath("//*[@itemscope][not(ancestor::*[@itemscope])]")
_MAX_ERROR_CHARS = 200


@dataclass(frozen=True, slots=True)
class RatingReading:
    """A rating as the page states it (value on its worst…best scale) and exactly on 1–5."""

    normalized: Decimal  # 1–5, exact to RATING_FRACTION_DIGITS places
    source_value: Decimal
    source_worst: Decimal
    source_best: Decimal

    @property
    def as_float(self) -> float:
        """The 1–5 rating as the float `ReviewCrawled.rating` has always carried (3 places)."""
        return round(float(self.normalized), 3)


@dataclass(frozen=True, slots=True)
class ExtractedReview:
    external_id: str
    body: str
    rating: float | None
    rating_reading: RatingReading | None
    title: str | None
    author_name: str | None
    published_at: datetime | None
    language: str | None
    product_refs: dict[str, str]  # what the page states: {"sku": "KTL-100", "gtin13": …}
    via: str  # json-ld | microdata | rdfa | selectors


@dataclass(frozen=True, slots=True)
class AggregateRatingSeen:
    rating: float | None
    review_count: int | None
    product_refs: dict[str, str]


@dataclass(frozen=True, slots=True)
class BrokenBlock:
    """A structured-data block that could not be read; the page's other blocks still count."""

    syntax: str  # json-ld | microdata | rdfa | html (the page itself did not parse)
    index: int  # 1-based position among the page's blocks of that syntax
    error: str  # the parser's message, shortened


@dataclass(frozen=True, slots=True)
class PageExtract:
    reviews: list[ExtractedReview] = field(default_factory=list)
    aggregates: list[AggregateRatingSeen] = field(default_factory=list)
    product_refs: dict[str, str] = field(default_factory=dict)  # the page's main product
    next_pages: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    language: str | None = None
    broken: list[BrokenBlock] = field(default_factory=list)


# --- decoding ------------------------------------------------------------------------------


def decode_html(body: bytes, *, header_charset: str | None) -> str:
    """Bytes to text: the header's charset, else a `<meta charset>`, else UTF-8, else cp1252."""
    candidates: list[str] = []
    if header_charset:
        candidates.append(header_charset)
    meta = _META_CHARSET.search(body[:4096])
    if meta:
        candidates.append(meta.group(1).decode("ascii", "replace"))
    candidates.append("utf-8")
    for encoding in candidates:
        try:
            return body.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("cp1252", errors="replace")


# --- value normalisation ----------------------------------------------------------------


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = _text(value)
    if text is None:
        return None
    match = _NUMBER.search(text)
    return float(match.group(0).replace(",", ".")) if match else None


def _to_decimal(value: Any) -> Decimal | None:
    """A stated number exactly as written ("1.8", 1.8, "3,5 stars"); None if unreadable or
    too long for the archive's DECIMAL."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # JSON-LD numbers arrive as floats: their shortest form
    else:
        text = _text(value)
        match = _NUMBER.search(text) if text else None
        if match is None:
            return None
        try:
            number = Decimal(match.group(0).replace(",", "."))
        except InvalidOperation:
            return None
    if not number.is_finite():
        return None
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if -exponent > DECIMAL_SCALE or number.adjusted() >= DECIMAL_PRECISION - DECIMAL_SCALE:
        return None
    return number


_RATING_QUANTUM = Decimal(1).scaleb(-RATING_FRACTION_DIGITS)
_ONE = Decimal(1)
_FIVE = Decimal(5)


def read_rating(value: Any, *, best: Any = None, worst: Any = None) -> RatingReading | None:
    """The rating on the 1–5 scale, linear from [worst, best] (schema.org defaults 1 and 5),
    computed in decimal: 1.8 on 0–10 is exactly 1.72, never a float's 1.7200000000000002.

    Out-of-range values are clamped; a scale with best <= worst gives None.
    """
    number = _to_decimal(value)
    if number is None:
        return None
    high = _to_decimal(best)
    low = _to_decimal(worst)
    high = _FIVE if high is None else high
    low = _ONE if low is None else low
    if high <= low:
        return None
    scaled = _ONE + 4 * (number - low) / (high - low)
    clamped = min(_FIVE, max(_ONE, scaled))
    normalized = clamped.quantize(_RATING_QUANTUM, rounding=ROUND_HALF_EVEN).normalize()
    return RatingReading(normalized, source_value=number, source_worst=low, source_best=high)


def normalise_rating(value: Any, *, best: Any = None, worst: Any = None) -> float | None:
    """`read_rating` as a float rounded to 3 places (aggregates, `ReviewCrawled.rating`)."""
    reading = read_rating(value, best=best, worst=worst)
    return None if reading is None else reading.as_float


def parse_published(value: Any) -> datetime | None:
    """An ISO date or datetime as UTC; a date alone is midnight UTC, naive times are UTC."""
    text = _text(value)
    if not text:
        return None
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(text[:10]), time(0), tzinfo=UTC)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        for item in value:
            text = _text(item)
            if text:
                return text
        return None
    if isinstance(value, dict):
        for key in ("@value", "name", "text"):
            if key in value:
                return _text(value[key])
        return None
    text = " ".join(str(value).split())
    return text or None


def content_id(
    *, refs: dict[str, str], author: str | None, when: datetime | None, title: str | None, body: str
) -> str:
    """A stable id for a review the page gives none: the same content hashes the same."""
    parts = [
        ",".join(f"{k}={v}" for k, v in sorted(refs.items())),
        author or "",
        when.isoformat() if when else "",
        title or "",
        body,
    ]
    return "h" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


# --- structured data ----------------------------------------------------------------------


def _short(name: str) -> str:
    for prefix in _SCHEMA_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _types(node: dict[str, Any]) -> set[str]:
    raw = node.get("@type")
    values = raw if isinstance(raw, list) else [raw]
    return {_short(v) for v in values if isinstance(v, str)}


def _rdfa_to_nodes(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RDFa's expanded JSON-LD (full IRIs, every value a list) in the short-key shape."""
    nodes: list[dict[str, Any]] = []
    for item in items:
        node: dict[str, Any] = {}
        for key, values in item.items():
            if key == "@id":
                node["@id"] = values
                continue
            if key == "@type":
                node["@type"] = [_short(v) for v in values]
                continue
            if not key.startswith(_SCHEMA_PREFIXES):
                continue
            converted = [
                v["@value"] if "@value" in v else {"@id": v["@id"]}
                for v in values
                if isinstance(v, dict) and ("@value" in v or "@id" in v)
            ]
            node[_short(key)] = converted[0] if len(converted) == 1 else converted
        nodes.append(node)
    return nodes


class _Walker:
    """Finds Review/AggregateRating nodes and the Product each belongs to."""

    def __init__(self, roots: list[Any]) -> None:
        self.roots = roots
        self.by_id: dict[str, dict[str, Any]] = {}
        for node in self._all_dicts(roots):
            node_id = node.get("@id")
            if isinstance(node_id, str) and len(node) > 1:
                self.by_id.setdefault(node_id, node)
        self.reviews: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        self.aggregates: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        self.products: list[dict[str, Any]] = []
        self._visited: set[int] = set()

    @staticmethod
    def _all_dicts(value: Any) -> Iterator[dict[str, Any]]:
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                yield item
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"@id"}:
            return self.by_id.get(value["@id"], value)
        return value

    def _owner(self, node: dict[str, Any], product: dict[str, Any] | None) -> dict[str, Any] | None:
        reviewed = self.resolve(node.get("itemReviewed"))
        if isinstance(reviewed, dict) and _types(reviewed) & _PRODUCT_TYPES:
            return reviewed
        return product

    def run(self) -> _Walker:
        for root in self.roots:
            self._walk(root, None)
        return self

    def _walk(self, value: Any, product: dict[str, Any] | None) -> None:
        value = self.resolve(value)
        if isinstance(value, list):
            for item in value:
                self._walk(item, product)
            return
        if not isinstance(value, dict) or id(value) in self._visited:
            return
        self._visited.add(id(value))
        types = _types(value)
        if types & _PRODUCT_TYPES:
            product = value
            self.products.append(value)
        if "Review" in types or "UserReview" in types or "CriticReview" in types:
            self.reviews.append((value, self._owner(value, product)))
        elif "AggregateRating" in types:
            self.aggregates.append((value, self._owner(value, product)))
        for key, child in value.items():
            if key != "@id":
                self._walk(child, product)


def product_refs(product: dict[str, Any] | None) -> dict[str, str]:
    refs: dict[str, str] = {}
    if product is None:
        return refs
    for kind in _REF_KINDS:
        text = _text(product.get(kind))
        if text:
            refs[kind] = text
    return refs


def _author(value: Any) -> str | None:
    if isinstance(value, list):
        names = [name for name in (_author(v) for v in value) if name]
        return ", ".join(names) or None
    return _text(value)


def _review_from_node(
    node: dict[str, Any], refs: dict[str, str], *, via: str, language: str | None, resolve: Any
) -> ExtractedReview | None:
    body = (
        _text(node.get("reviewBody")) or _text(node.get("description")) or _text(node.get("text"))
    )
    if not body:
        return None
    rating_node = resolve(node.get("reviewRating"))
    if isinstance(rating_node, dict):
        reading = read_rating(
            rating_node.get("ratingValue"),
            best=rating_node.get("bestRating"),
            worst=rating_node.get("worstRating"),
        )
    else:
        reading = read_rating(rating_node)
    author = _author(resolve(node.get("author")))
    published = parse_published(node.get("datePublished") or node.get("dateCreated"))
    title = _text(node.get("name")) or _text(node.get("headline"))
    own_id = node.get("@id")
    external_id = (
        own_id if isinstance(own_id, str) and own_id and not own_id.startswith("_:") else None
    ) or _text(node.get("identifier"))
    if not external_id:
        external_id = content_id(refs=refs, author=author, when=published, title=title, body=body)
    return ExtractedReview(
        external_id=external_id,
        body=body,
        rating=None if reading is None else reading.as_float,
        rating_reading=reading,
        title=title,
        author_name=author,
        published_at=published,
        language=_text(node.get("inLanguage")) or language,
        product_refs=refs,
        via=via,
    )


def _syntaxes_present(html: str) -> list[str]:
    """Only the syntaxes the page can contain: RDFa parsing alone costs ~5 ms a page."""
    lowered = html.lower()
    found = []
    if "application/ld+json" in lowered:
        found.append("json-ld")
    if "itemscope" in lowered:
        found.append("microdata")
    if "typeof=" in lowered or "property=" in lowered:
        found.append("rdfa")
    return found


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]


def _extract(node: Any, syntax: str, url: str) -> list[Any]:
    data = extruct.extract(node, base_url=url, syntaxes=[syntax], uniform=True, errors="strict")
    items: list[Any] = data.get(syntax) or []
    return items


def _blocks(
    tree: Any, syntax: str, find: Callable[[Any], list[Any]], url: str, broken: list[BrokenBlock]
) -> list[Any]:
    """The syntax's items from every readable block; each unreadable block recorded, skipped.

    The whole page is read in one call first (the common case, and as cheap as before); only
    if that fails is each block read alone, to keep every valid one and name the broken.
    """
    try:
        return _extract(tree, syntax, url)
    except Exception:  # extruct raises whatever its parsers raise on broken markup
        log.debug("%s on %s: a block is broken, reading each alone", syntax, url)
    items: list[Any] = []
    for index, node in enumerate(find(tree), start=1):
        try:
            items.extend(_extract(node, syntax, url))
        except Exception as exc:  # as above, for this block alone
            broken.append(BrokenBlock(syntax, index, _error_text(exc)))
    return items


def _structured(html: str, url: str) -> tuple[dict[str, list[Any]], list[BrokenBlock]]:
    """The page's structured data by syntax, and the blocks that could not be read."""
    syntaxes = _syntaxes_present(html)
    broken: list[BrokenBlock] = []
    if not syntaxes:
        return {}, broken
    # One parse for every syntax; RDFa needs extruct's xmldom tree, which the others read too.
    parser = parse_xmldom_html if "rdfa" in syntaxes else parse_html
    try:
        tree = parser(html, encoding="UTF-8")
    except Exception as exc:  # lxml's errors on a document it cannot build a tree from
        return {}, [BrokenBlock("html", 1, _error_text(exc))]
    data: dict[str, list[Any]] = {}
    if "json-ld" in syntaxes:
        data["json-ld"] = _blocks(tree, "json-ld", _JSON_LD_BLOCKS, url, broken)
    if "microdata" in syntaxes:
        data["microdata"] = _blocks(tree, "microdata", _MICRODATA_BLOCKS, url, broken)
    if "rdfa" in syntaxes:
        # RDFa is one graph over the whole document: it cannot be split, so it fails alone.
        try:
            data["rdfa"] = _extract(tree, "rdfa", url)
        except Exception as exc:  # pyRdfa/rdflib raise whatever they raise on broken markup
            broken.append(BrokenBlock("rdfa", 1, _error_text(exc)))
    return data, broken


# --- selectors ----------------------------------------------------------------------------


def _node_text(node: Node | None) -> str | None:
    if node is None:
        return None
    return " ".join(node.text(separator=" ").split()) or None


def _select_reviews(
    tree: HTMLParser, selectors: Selectors, refs: dict[str, str], language: str | None
) -> list[ExtractedReview]:
    found: list[ExtractedReview] = []
    for item in tree.css(selectors.review):
        body = _node_text(item.css_first(selectors.body))
        if not body:
            continue
        reading = None
        if selectors.rating:
            rating_node = item.css_first(selectors.rating)
            if rating_node is not None:
                raw = (
                    rating_node.attributes.get(selectors.rating_attr)
                    if selectors.rating_attr
                    else _node_text(rating_node)
                )
                reading = read_rating(raw, best=selectors.best_rating, worst=selectors.worst_rating)
        author = _node_text(item.css_first(selectors.author)) if selectors.author else None
        published = None
        if selectors.date:
            date_node = item.css_first(selectors.date)
            if date_node is not None:
                raw_date = (
                    date_node.attributes.get(selectors.date_attr) if selectors.date_attr else None
                ) or _node_text(date_node)
                published = parse_published(raw_date)
        title = _node_text(item.css_first(selectors.title)) if selectors.title else None
        own_id = item.attributes.get(selectors.review_id_attr) if selectors.review_id_attr else None
        found.append(
            ExtractedReview(
                external_id=own_id
                or content_id(refs=refs, author=author, when=published, title=title, body=body),
                body=body,
                rating=None if reading is None else reading.as_float,
                rating_reading=reading,
                title=title,
                author_name=author,
                published_at=published,
                language=language,
                product_refs=refs,
                via="selectors",
            )
        )
    return found


# --- the page -----------------------------------------------------------------------------


def extract_page(
    html: str,
    url: str,
    *,
    selectors: Selectors | None = None,
    next_page_selector: str = "a[rel~=next], link[rel~=next]",
    default_language: str | None = None,
) -> PageExtract:
    """Everything the crawler wants from one page. Never raises on malformed HTML."""
    tree = HTMLParser(html)
    html_node = tree.css_first("html")
    page_language = (html_node.attributes.get("lang") if html_node else None) or default_language

    reviews: list[ExtractedReview] = []
    aggregates: list[AggregateRatingSeen] = []
    main_refs: dict[str, str] = {}
    seen_ids: set[str] = set()
    data, broken = _structured(html, url)
    for syntax in ("json-ld", "microdata", "rdfa"):
        items = data.get(syntax) or []
        roots = _rdfa_to_nodes(items) if syntax == "rdfa" else items
        walker = _Walker(roots).run()
        for product in walker.products:
            if not main_refs:
                main_refs = product_refs(product)
        for node, owner in walker.reviews:
            review = _review_from_node(
                node,
                product_refs(owner),
                via=syntax,
                language=page_language,
                resolve=walker.resolve,
            )
            if review is not None and review.external_id not in seen_ids:
                seen_ids.add(review.external_id)
                reviews.append(review)
        for node, owner in walker.aggregates:
            aggregates.append(
                AggregateRatingSeen(
                    rating=normalise_rating(
                        node.get("ratingValue"),
                        best=node.get("bestRating"),
                        worst=node.get("worstRating"),
                    ),
                    review_count=int(n) if (n := _to_float(node.get("reviewCount"))) else None,
                    product_refs=product_refs(owner),
                )
            )

    if not reviews and selectors is not None:
        reviews = _select_reviews(tree, selectors, main_refs, page_language)

    next_pages = _hrefs(tree, next_page_selector, url)
    links = _hrefs(tree, "a[href]", url)
    return PageExtract(
        reviews=reviews,
        aggregates=aggregates,
        product_refs=main_refs,
        next_pages=next_pages,
        links=links,
        language=page_language,
        broken=broken,
    )


def _hrefs(tree: HTMLParser, selector: str, base: str) -> list[str]:
    found: list[str] = []
    for node in tree.css(selector):
        href = node.attributes.get("href")
        if href and not href.startswith(("javascript:", "mailto:", "#")):
            try:
                found.append(urljoin(base, href.strip()))
            except ValueError:  # e.g. "http://[broken": one bad link must not lose the page
                continue
    return found


def map_product(refs: dict[str, str], url: str, mapping: ProductMapping) -> str | None:
    """Our SKU for a page's product: explicit refs, then a stated sku, then URL rules."""
    for kind, value in refs.items():
        mapped = mapping.refs.get(f"{kind}:{value}")
        if mapped:
            return mapped
    if mapping.sku_is_ours and refs.get("sku"):
        return refs["sku"]
    for rule in mapping.url_rules:
        match = re.search(rule.pattern, url)
        if match:
            if rule.sku:
                return rule.sku
            if "sku" in match.groupdict() and match.group("sku"):
                sku = match.group("sku")
                return sku.upper() if rule.uppercase else sku
    return None


def parse_sitemap(body: str, base: str) -> tuple[list[str], list[str]]:
    """(page URLs, nested sitemap URLs) from a sitemap or sitemap index."""
    tree = HTMLParser(body)
    pages: list[str] = []
    nested: list[str] = []
    for loc in tree.css("loc"):
        text = _node_text(loc)
        if not text:
            continue
        parent = loc.parent
        target = nested if parent is not None and parent.tag == "sitemap" else pages
        target.append(urljoin(base, text))
    return pages, nested
