"""Review → ReviewEnriched: scrub, pseudonymize, score, detect language, join product. Pure.

Dedup key: a review's identity across sources is its product and its normalized text; text
too short to identify a review ("Great!") falls back to the review id, so short reviews are
never merged with someone else's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from contracts.events import ReviewEnriched, ReviewOp
from contracts.identity import review_event_id
from contracts.types import RATING_BEST, RATING_WORST

from cdc_processor.decoding import ReviewInput
from cdc_processor.language import LanguageDetector
from cdc_processor.pii import Scrubber
from cdc_processor.sentiment import SentimentScorer

DEDUP_MIN_TEXT_CHARS = 24
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class ProductInfo:
    id: int
    sku: str
    name: str
    brand: str | None
    category: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sku": self.sku,
            "name": self.name,
            "brand": self.brand,
            "category": self.category,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProductInfo:
        return cls(
            id=int(data["id"]),
            sku=str(data["sku"]),
            name=str(data["name"]),
            brand=data.get("brand"),
            category=data.get("category"),
        )


def normalize_rating(rating: Decimal | None) -> int | None:
    """Whole stars for views and alerts that need them: round half up, clamp to 1–5. The
    exact rating travels beside it (`ReviewEnriched.rating_exact`)."""
    if rating is None:
        return None
    stars = int(rating.quantize(_ONE, rounding=ROUND_HALF_UP))
    return max(RATING_WORST, min(RATING_BEST, stars))


def normalized_text(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.casefold()).split())


def dedup_key(*, review_id: str, text: str, product_ref: str) -> str:
    """`text` is `normalized_text(body)`; short texts identify nothing, so the id decides."""
    if len(text) < DEDUP_MIN_TEXT_CHARS:
        material = f"id\x1f{review_id}"
    else:
        material = f"text\x1f{product_ref}\x1f{text}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def product_ref(review: ReviewInput, product: ProductInfo | None) -> str:
    """The product's SKU when known (crawls and joined app reviews agree on it)."""
    if product is not None:
        return product.sku
    if review.product_sku:
        return review.product_sku
    return f"id:{review.product_id}"


class Enricher:
    def __init__(
        self,
        *,
        scrubber: Scrubber,
        scorer: SentimentScorer,
        detector: LanguageDetector,
        pseudonym_key: bytes,
    ) -> None:
        self._scrubber = scrubber
        self._scorer = scorer
        self._detector = detector
        self._key = pseudonym_key

    def pseudonym(self, review: ReviewInput) -> str | None:
        """HMAC-SHA256 of the author's email, else of their name; never the identity itself."""
        if review.author_email and review.author_email.strip():
            identity = "email:" + review.author_email.strip().lower()
        elif review.author_name and review.author_name.strip():
            identity = "name:" + " ".join(review.author_name.casefold().split())
        else:
            return None
        return hmac.new(self._key, identity.encode(), hashlib.sha256).hexdigest()[:32]

    def enrich(
        self, review: ReviewInput, product: ProductInfo | None, *, now: datetime
    ) -> ReviewEnriched:
        ref = product_ref(review, product)
        joined: dict[str, Any]
        if product is not None:
            joined = product_fields(product)
        else:
            joined = {"product_id": review.product_id, "product_sku": review.product_sku}
        op = ReviewOp.DELETE if review.deleted else ReviewOp.UPSERT
        event_id = review_event_id(
            review.review_id,
            op=op,
            source_lsn=review.source_lsn,
            content=(
                review.event_time,
                review.product_id,
                review.product_sku,
                review.rating,
                review.title,
                review.body,
            ),
        )
        if review.deleted:
            return ReviewEnriched(
                review_id=review.review_id,
                op=ReviewOp.DELETE,
                source=review.source,
                dedup_key=dedup_key(
                    review_id=review.review_id, text=normalized_text(review.body), product_ref=ref
                ),
                event_time=review.event_time,
                source_lsn=review.source_lsn,
                enriched_at=now,
                event_id=event_id,
                **joined,
            )
        authors = tuple(n for n in (review.author_name,) if n)
        # The review's locale adds its country's phone formats to the served ones.
        title = self._scrubber.scrub(review.title, author_names=authors, locale=review.locale)
        body = self._scrubber.scrub(review.body, author_names=authors, locale=review.locale)
        counts = dict(title.counts)
        for kind, count in body.counts.items():
            counts[kind] = counts.get(kind, 0) + count
        text = f"{title.text}. {body.text}" if title.text else body.text
        sentiment = self._scorer.score(text)
        return ReviewEnriched(
            review_id=review.review_id,
            op=ReviewOp.UPSERT,
            source=review.source,
            dedup_key=dedup_key(
                review_id=review.review_id, text=normalized_text(review.body), product_ref=ref
            ),
            rating=normalize_rating(review.rating),
            rating_exact=review.rating,
            rating_source_value=review.rating_source_value,
            rating_source_worst=review.rating_source_worst,
            rating_source_best=review.rating_source_best,
            title=title.text if review.title is not None else None,
            body=body.text,
            pii_counts=counts,
            author_pseudonym=self.pseudonym(review),
            language=self._detector.detect(body.text, locale=review.locale),
            sentiment_score=sentiment.score,
            sentiment_label=sentiment.label,
            event_time=review.event_time,
            source_lsn=review.source_lsn,
            enriched_at=now,
            event_id=event_id,
            **joined,
        )


def product_fields(product: ProductInfo) -> dict[str, Any]:
    """The enriched record's fields that come from its (known) product."""
    return {
        "product_id": product.id,
        "product_sku": product.sku,
        "product_name": product.name,
        "product_brand": product.brand,
        "product_category": product.category,
        "product_known": True,
    }


def with_product(enriched: ReviewEnriched, product: ProductInfo, *, text: str) -> ReviewEnriched:
    """Re-emit form of an orphan review once its product is known (`text`: normalized body)."""
    key = dedup_key(review_id=enriched.review_id, text=text, product_ref=product.sku)
    return enriched.model_copy(update={"dedup_key": key, **product_fields(product)})
