"""The demo's input, generated from a run id and a scale: pure, deterministic, no I/O.

Everything a run sends carries the run id (SKUs, the equity symbol, Idempotency-Keys, the
crawl site name), so re-running the demo never collides with an earlier run and counts can
be taken for one run only. The same module drives `pulse demo` and the e2e test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

CRYPTOS = ("BTC-USD", "ETH-USD")

_POSITIVE = {
    "en": (
        "Great {name}, works perfectly and looks lovely on the counter.",
        "Really happy with this {name}. Solid build and fast delivery.",
        "Excellent value, the {name} does exactly what I wanted.",
        "Love it! The {name} is quiet, sturdy and easy to clean.",
    ),
    "fr": ("Très bon produit, je recommande ce {name}.", "Excellent {name}, livraison rapide."),
    "de": ("Sehr gut, der {name} funktioniert einwandfrei.", "Toller {name}, schnell geliefert."),
}
_NEGATIVE = (
    "Terrible {name}: it broke after two days and support never answered.",
    "Awful quality, the {name} leaks everywhere. Worst purchase ever, very disappointed.",
    "Horrible {name}. Stopped working on day one, complete waste of money.",
    "Dreadful, the {name} is broken and dangerous. Refund refused, furious.",
)
_BRANDS = ("Acme", "Borealis", "Cobalt", "Dune")
_CATEGORIES = ("kitchen", "garden", "audio", "office")
_NAMES = ("Kettle", "Toaster", "Blender", "Lamp", "Speaker", "Chair", "Hose", "Grinder")


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    brand: str
    category: str

    def body(self) -> dict[str, str]:
        return {"sku": self.sku, "name": self.name, "brand": self.brand, "category": self.category}


@dataclass(frozen=True, slots=True)
class ReviewInput:
    ref: str  # the scenario's own name for the review (idempotency key, edits, deletes)
    product_sku: str
    rating: int
    title: str
    body: str
    author_name: str
    author_email: str
    locale: str
    negative: bool
    pii: tuple[str, ...] = ()  # personal data placed in the text (must never reach the archive)

    def request(self) -> dict[str, object]:
        return {
            "product_sku": self.product_sku,
            "rating": self.rating,
            "title": self.title,
            "body": self.body,
            "author_name": self.author_name,
            "author_email": self.author_email,
            "locale": self.locale,
        }


@dataclass(frozen=True, slots=True)
class Edit:
    ref: str
    rating: int
    body: str


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A request the API must refuse, with the status that names the reason.

    It carries a valid Idempotency-Key, so the refusal is for the fault it holds, not for a
    missing header."""

    why: str
    method: str
    path: str
    body: object | None
    status: int = 422
    authenticated: bool = True


@dataclass(frozen=True, slots=True)
class Tick:
    symbol: str
    asset_class: str
    price: Decimal
    size: Decimal
    event_time: datetime

    def request(self) -> dict[str, str]:
        return {
            "symbol": self.symbol,
            "asset_class": self.asset_class,
            "price": format(self.price, "f"),
            "size": format(self.size, "f"),
            "event_time": self.event_time.isoformat().replace("+00:00", "Z"),
            "venue": "demo",
        }


@dataclass(frozen=True, slots=True)
class Scenario:
    run_id: str
    products: tuple[Product, ...]
    reviews: tuple[ReviewInput, ...]
    edits: tuple[Edit, ...]
    deletes: tuple[str, ...]  # review refs
    bad_requests: tuple[BadRequest, ...]
    ticks: tuple[Tick, ...]
    burst_sku: str
    equity: str
    move_minute: datetime  # the candle in which the equity jumps
    candle_minutes: tuple[datetime, ...]  # windows expected to close, per symbol
    pii_strings: tuple[str, ...] = field(default=())

    @property
    def symbols(self) -> tuple[str, ...]:
        return (self.equity, *CRYPTOS)

    @property
    def crawl_site(self) -> str:
        return f"demo-{self.run_id}"

    def expected_latest_reviews(self) -> int:
        return len(self.reviews) - len(self.deletes)

    def expected_negative(self) -> int:
        deleted = set(self.deletes)
        return sum(1 for r in self.reviews if r.negative and r.ref not in deleted)


def build(
    run_id: str,
    *,
    products: int = 8,
    reviews_per_product: int = 12,
    burst: int = 6,
    edits: int = 10,
    deletes: int = 6,
    minutes: int = 8,
    ticks_per_minute: int = 6,
    start: datetime,
) -> Scenario:
    """A scenario for `run_id` whose ticks start at `start` (a UTC minute boundary).

    Only the burst product gets negative reviews (so exactly one burst alert is expected);
    the equity jumps about 8 % in one minute and stays there (so exactly one price move).
    """
    if start.tzinfo is None or start.second or start.microsecond:
        raise ValueError("start must be a timezone-aware minute boundary")
    rng = random.Random(run_id)
    tag = run_id.upper()
    catalogue = tuple(
        Product(
            sku=f"{_NAMES[i % len(_NAMES)][:3].upper()}-{tag}-{i:02d}",
            name=_NAMES[i % len(_NAMES)],
            brand=_BRANDS[i % len(_BRANDS)],
            category=_CATEGORIES[i % len(_CATEGORIES)],
        )
        for i in range(products)
    )
    burst_product = catalogue[0]
    reviews: list[ReviewInput] = []
    pii: list[str] = []
    for p_index, product in enumerate(catalogue):
        for n in range(reviews_per_product):
            ref = f"{run_id}-r{p_index:02d}-{n:03d}"
            email = f"user.{run_id}.{p_index}.{n}@example.com"
            phone = f"+1 415 {rng.randint(200, 999)} {rng.randint(1000, 9999)}"
            locale = ("en", "en", "fr", "de")[n % 4]
            text = rng.choice(_POSITIVE[locale]).format(name=product.name.lower())
            text += _detail(run_id, p_index, n)
            contains: tuple[str, ...] = ()
            if n % 4 == 0:  # personal data in the text, the way people really write it
                text += f" Questions? Mail me at {email} or call {phone}."
                contains = (email, phone)
            pii.append(email)
            pii.extend(contains)
            reviews.append(
                ReviewInput(
                    ref=ref,
                    product_sku=product.sku,
                    rating=rng.choice((4, 5, 5)),
                    title=f"{product.name} review",
                    body=text,
                    author_name=f"Customer {p_index}-{n}",
                    author_email=email,
                    locale=locale,
                    negative=False,
                    pii=tuple(sorted(set(contains))),
                )
            )
    for n in range(burst):
        email = f"angry.{run_id}.{n}@example.com"
        phone = f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"
        body = rng.choice(_NEGATIVE).format(name=burst_product.name.lower())
        body += _detail(run_id, 99, n)
        body += f" Call me on {phone} or write to {email}."
        pii.extend((email, phone))
        reviews.append(
            ReviewInput(
                ref=f"{run_id}-burst-{n:02d}",
                product_sku=burst_product.sku,
                rating=1 if n % 2 == 0 else 2,
                title="Broken",
                body=body,
                author_name=f"Angry customer {n}",
                author_email=email,
                locale="en",
                negative=True,
                pii=(email, phone),
            )
        )
    # Edits and deletes touch only non-burst reviews, and keep them positive.
    normal = [r for r in reviews if not r.negative and r.product_sku != burst_product.sku]
    edited = tuple(
        Edit(ref=r.ref, rating=5, body=f"Update: still great after a month. {r.body}")
        for r in normal[:edits]
    )
    deleted = tuple(r.ref for r in normal[edits : edits + deletes])

    equity = f"EQ{tag[:6]}"
    ticks, candle_minutes, move_minute = _ticks(rng, equity, start, minutes, ticks_per_minute)
    bad = (
        BadRequest(
            "rating out of range", "POST", "/v1/reviews", {**reviews[1].request(), "rating": 7}
        ),
        BadRequest(
            "missing body",
            "POST",
            "/v1/reviews",
            {k: v for k, v in reviews[2].request().items() if k != "body"},
        ),
        BadRequest(
            "no API key",
            "POST",
            "/v1/reviews",
            reviews[3].request(),
            status=401,
            authenticated=False,
        ),
        BadRequest(
            "price sent as a float",
            "POST",
            "/v1/ticks/batch",
            {"ticks": [{**ticks[0].request(), "price": 101.5}]},
        ),
        BadRequest(
            "naive timestamp",
            "POST",
            "/v1/ticks/batch",
            {"ticks": [{**ticks[0].request(), "event_time": "2026-11-22T17:00:00"}]},
        ),
        BadRequest("not JSON", "POST", "/v1/products", "{not json"),
    )
    return Scenario(
        run_id=run_id,
        products=catalogue,
        reviews=tuple(reviews),
        edits=edited,
        deletes=deleted,
        bad_requests=bad,
        ticks=ticks,
        burst_sku=burst_product.sku,
        equity=equity,
        move_minute=move_minute,
        candle_minutes=candle_minutes,
        pii_strings=tuple(sorted(set(pii))),
    )


def _ticks(
    rng: random.Random, equity: str, start: datetime, minutes: int, per_minute: int
) -> tuple[tuple[Tick, ...], tuple[datetime, ...], datetime]:
    """Random walks of ±0.2 % a tick; the equity jumps ~8 % two-thirds of the way in.

    One more tick per symbol lands 45 s into the minute after the last (past a 30 s grace),
    so every minute before it closes (candles close on event time); its own stays open.
    """
    move_at = max(1, (minutes * 2) // 3)
    prices = {equity: Decimal("100"), "BTC-USD": Decimal("67000"), "ETH-USD": Decimal("3500")}
    classes = {equity: "equity", "BTC-USD": "crypto", "ETH-USD": "crypto"}
    ticks: list[Tick] = []
    step = timedelta(seconds=60 / per_minute)
    for minute in range(minutes + 1):
        count = per_minute if minute < minutes else 1
        for n in range(count):
            at = start + timedelta(minutes=minute) + step * n + timedelta(milliseconds=137)
            if minute == minutes:
                at += timedelta(seconds=45)  # past the previous window's end + grace (30 s)
            for symbol in prices:
                drift = Decimal(str(round(rng.uniform(-0.002, 0.002), 5)))
                if symbol == equity and minute == move_at and n == 0:
                    drift = Decimal("0.08")
                prices[symbol] = (prices[symbol] * (1 + drift)).quantize(Decimal("0.01"))
                size = Decimal(str(round(rng.uniform(0.01, 2.0), 4)))
                ticks.append(Tick(symbol, classes[symbol], prices[symbol], size, at))
    candle_minutes = tuple(start + timedelta(minutes=m) for m in range(minutes))
    return tuple(ticks), candle_minutes, start + timedelta(minutes=move_at)


def _detail(run_id: str, product: int, n: int) -> str:
    """A sentence that makes each text unique: the processor drops same-text duplicates."""
    when = ("last week", "in March", "for Christmas", "on sale", "yesterday", "in the spring")
    return f" Bought {when[n % len(when)]}, order {run_id[:4].upper()}-{product:02d}{n:03d}."


def minute_floor(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)
