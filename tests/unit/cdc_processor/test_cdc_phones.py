"""The PII scrubber by class: phones in each served country's own formats (and the review
locale's country), cue words of every served language, cues that must be whole words (a longer
word that ends or starts like a cue is no cue), other languages' emails and account numbers."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import phonenumbers
import pytest
from cdc_processor import phones
from cdc_processor.decoding import ReviewInput
from cdc_processor.phones import DEFAULT_PHONE_REGIONS, PhoneRules
from cdc_processor.pii import NOT_PII_CUES, Scrubber, detect
from cdc_processor.settings import CdcSettings
from pydantic import ValidationError

# (country, the review's locale, a number as people there write it). Spanish, Italian,
# Portuguese and Polish numbers have no trunk prefix; NANP and Brazil write theirs rarely.
NATIONAL_FORMATS = [
    ("US", "en-US", "(415) 555-0132"),
    ("US", "en-US", "415-555-0132"),
    ("US", "en-US", "415.555.0132"),
    ("GB", "en-GB", "020 7946 0958"),
    ("GB", "en-GB", "07400 123456"),
    ("FR", "fr", "06 12 34 56 78"),
    ("FR", "fr", "01.45.67.89.10"),
    ("DE", "de", "030 12345678"),
    ("DE", "de", "0171 2345678"),
    ("DE", "de", "089/1234567"),
    ("ES", "es", "612 34 56 78"),
    ("ES", "es", "612 345 678"),
    ("ES", "es", "91 123 45 67"),
    ("ES", "es", "612345678"),
    ("IT", "it", "333 123 4567"),
    ("IT", "it", "06 1234 5678"),
    ("IT", "it", "02-12345678"),
    ("NL", "nl", "06-12345678"),
    ("NL", "nl", "020 123 4567"),
    ("NL", "nl", "06 12 34 56 78"),
    ("PT", "pt", "912 345 678"),
    ("PT", "pt", "21 234 5678"),
    ("BR", "pt-BR", "(11) 91234-5678"),
    ("BR", "pt-BR", "(21) 2345-6789"),
    ("PL", "pl", "512 345 678"),
    ("PL", "pl", "512-345-678"),
    ("PL", "pl", "22 123 45 67"),
    ("BE", "nl-BE", "0470 12 34 56"),
    ("BE", "fr-BE", "02 234 56 78"),
    ("AT", "de-AT", "0664 1234567"),
    ("AT", "de-AT", "01 5123456"),
    ("CH", "de-CH", "079 123 45 67"),
    ("CH", "fr-CH", "022 345 67 89"),
    ("IE", "en-IE", "087 123 4567"),
    ("IE", "en-IE", "01 234 5678"),
    ("CA", "fr-CA", "(514) 555-0199"),
    ("CA", "en-CA", "416 555 0199"),
]
INTERNATIONAL_FORMATS = [
    "+1 415 555 0132",
    "+44 20 7946 0958",
    "+44 (0)20 7946 0958",
    "+33 6 12 34 56 78",
    "+49 30 12345678",
    "+49 (0)171 2345678",
    "+34 612 34 56 78",
    "0034 612 345 678",
    "+39 333 123 4567",
    "+31 6 12345678",
    "+351 912 345 678",
    "+55 11 91234-5678",
    "+48 512 345 678",
    "+32 470 12 34 56",
    "+43 664 1234567",
    "+41 79 123 45 67",
    "+353 87 123 4567",
    "+46 70 123 45 67",
]


def _phones(text: str, locale: str | None = None) -> list[str]:
    return [text[s:e] for kind, s, e in detect(text, locale=locale) if kind.value == "phone"]


def test_every_served_country_has_national_formats_here() -> None:
    assert {country for country, _l, _n in NATIONAL_FORMATS} == set(DEFAULT_PHONE_REGIONS)


@pytest.mark.parametrize(("country", "locale", "number"), NATIONAL_FORMATS)
def test_national_number_of_each_served_country_is_a_phone(
    country: str, locale: str, number: str
) -> None:
    # No phone word before it: the number alone must be recognised, with the review's locale
    # and without one (served countries are always tried).
    text = f"Sehr nett, {number} war die Nummer des Technikers."
    assert _phones(text, locale) == [number]
    assert _phones(text) == [number]
    # and only by its own country when only that one is served
    own = PhoneRules(served_regions=(country,))
    assert own.is_phone(number)


@pytest.mark.parametrize("number", INTERNATIONAL_FORMATS)
def test_international_number_is_a_phone(number: str) -> None:
    assert _phones(f"Reach them on {number}, really helpful.") == [number]


def test_spanish_mobile_in_groups_is_scrubbed() -> None:
    """The reported defect: a Spanish nine-digit mobile written in groups survived."""
    result = Scrubber().scrub("Me llamaron al 612 34 56 78 dos veces.", locale="es")
    assert result.text == "Me llamaron al [PHONE] dos veces."


def test_locale_adds_its_country() -> None:
    """A country outside the served list is recognised when the review's locale names it."""
    swedish = "Sven svarade på 070-123 45 67 direkt."
    us_only = Scrubber(phone_regions=("US",))
    assert us_only.scrub(swedish).counts == {}
    assert us_only.scrub(swedish, locale="sv").counts == {"phone": 1}
    assert us_only.scrub(swedish, locale="sv-SE").counts == {"phone": 1}


def test_enricher_passes_the_review_locale_to_the_scrubber() -> None:
    from cdc_processor.enrichment import Enricher
    from cdc_processor.language import LanguageDetector
    from cdc_processor.sentiment import SentimentScorer

    # Served only US: the Swedish number is found only through the review's locale.
    enricher = Enricher(
        scrubber=Scrubber(phone_regions=("US",)),
        scorer=SentimentScorer(),
        detector=LanguageDetector(expected=("en", "sv")),
        pseudonym_key=b"k",
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    review = ReviewInput(
        review_id="r-1",
        source="app",
        deleted=False,
        product_id=1,
        product_sku=None,
        rating=Decimal(4),
        title="Ring 070-123 45 67",
        body="Sven svarade på 070-123 45 67 direkt.",
        author_name=None,
        author_email=None,
        locale="sv",
        event_time=now,
    )
    enriched = enricher.enrich(review, None, now=now)
    assert enriched.body == "Sven svarade på [PHONE] direkt."
    assert enriched.title == "Ring [PHONE]"
    assert enriched.pii_counts == {"phone": 2}
    unknown = enricher.enrich(replace(review, locale=None), None, now=now)
    assert unknown.body == review.body


# Not phones, in each language: dates, prices, versions, counts and codes with no cue.
NOT_PHONES = [
    "Arrived 2024-03-15, ordered 15.03.2024, paid 03/15/2024.",
    "Kostet 1.299,00 € statt 1 499,00 €, Lieferung 12.12.2024.",
    "Costó 1.299.000 pesos, llegó el 15/03/2024.",
    "Firmware 10.0.19041.1234 fixed it, build 22631.",
    "ISBN 978-3-16-148410-0 on the back.",
    "EAN 4006381333931, SKU 5901234123457.",
    "Zapłaciłem 1 299,99 zł 12.03.2024 o 10:45:30.",
    "Pagato 1.299,00 € il 15/03/2024, arrivato in 2 giorni.",
    "Betaald € 1.299,00 op 15-03-2024, 3 sterren.",
    "Paguei R$ 1.299,00 em 15/03/2024, 5 estrelas.",
    "Score 10/10, 100 %, 4.5/5 and 3x 2.50.",
]


@pytest.mark.parametrize("text", NOT_PHONES)
def test_dates_prices_versions_are_not_phones(text: str) -> None:
    assert detect(text) == []


# A cue word of each language before a number that is a valid phone of its country: the
# number is an order/invoice/tracking/customer number, not a phone.
CUED_NOT_PHONES = [
    ("en", "Order 612345678 arrived late."),
    ("en", "Customer number 0612345678 on the letter."),
    ("fr", "Commande 0612345678 reçue."),
    ("fr", "Numéro client 0612345678, suivi 0612345678."),
    ("de", "Bestellnummer 030 12345678 kam nie an."),
    ("de", "Sendungsverfolgungsnummer: 0171 2345678."),
    ("de", "Kundennummer 0171 2345678."),
    ("es", "Pedido 612 34 56 78 sin llegar."),
    ("es", "Número de seguimiento: 612345678."),
    ("es", "Localizador 912345678 de la reserva."),
    ("it", "Ordine 333 123 4567 mai arrivato."),
    ("it", "Tessera fedeltà 3331234567."),
    ("nl", "Bestelnummer 0612345678 kwijt."),
    ("nl", "Klantnummer: 020 123 4567."),
    ("pt", "Encomenda 912 345 678 atrasada."),
    ("pt", "Protocolo 11912345678 aberto."),
    ("pl", "Zamówienie 512 345 678 nie dotarło."),
    ("pl", "Numer przesyłki 512345678."),
    ("pl", "W sprawie faktury 512 345 678."),
    ("any", "Ref. 0612345678 / n° 0612345678 / Nr. 0612345678 / #0612345678"),
]


@pytest.mark.parametrize(("_lang", "text"), CUED_NOT_PHONES)
def test_cue_words_of_each_language_keep_numbers(_lang: str, text: str) -> None:
    assert _phones(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "My order number is 0612345678.",
        "Order number: 612345678",
        "Mi número de pedido es 612 34 56 78.",
        "Die Bestellnummer lautet 0171 2345678.",
        "Numer zamówienia: 512 345 678.",
        "Il numero d'ordine è 333 123 4567.",
        "Order nr. 030 12345678",
    ],
)
def test_cue_with_number_word_or_verb_between(text: str) -> None:
    assert _phones(text) == []


def test_phone_number_is_not_an_order_number() -> None:
    assert _phones("My phone number is 0612345678.") == ["0612345678"]


def test_international_prefix_in_parentheses() -> None:
    assert _phones("Llámame al (+34) 612 34 56 78.") == ["(+34) 612 34 56 78"]


def test_polish_account_number_without_country_code_is_an_iban() -> None:
    for number in ("61 1090 1014 0000 0712 1981 2874", "61109010140000071219812874"):
        text = f"Zwrot na konto {number}, dziękuję."
        assert [(k.value, text[s:e]) for k, s, e in detect(text)] == [("iban", number)]
    # a bad check digit: no account, and no phone read out of its last groups either
    assert detect("Konto 61 1090 1014 0000 0712 1981 2875.") == []


def test_phone_next_to_another_number_is_found_alone() -> None:
    assert _phones("Seit 2019 612 34 56 78 erreichbar.") == ["612 34 56 78"]
    assert _phones("Ruf 612 34 56 78 2 mal an.") == ["612 34 56 78"]
    assert _phones("Rechnung 2024-000123 vom Techniker, Tel 0171 2345678.") == ["0171 2345678"]


def test_year_joined_to_a_number_is_no_phone() -> None:
    # 2024-000123 reads as a valid US number (202-400-0123) when the year is not recognised.
    assert _phones("Beleg vom 2024-000123 und 2024/000123 und 2024.000123") == []


def test_phone_word_before_number_abbreviation_is_a_phone() -> None:
    assert _phones("Tel.-Nr. 030 12345678 bitte") == ["030 12345678"]
    assert _phones("phone no. 020 7946 0958") == ["020 7946 0958"]
    assert _phones("Nr. 030 12345678 bitte") == []


def test_customer_service_numbers_are_phones() -> None:
    """ "customer"/"cliente"/"Kunden…" alone are no cue: service lines are phone numbers."""
    for text, number in [
        ("Atención al cliente 912 345 678 muy amable.", "912 345 678"),
        ("Servizio clienti 02 1234 5678 gentile.", "02 1234 5678"),
        ("Kundenservice 030 12345678 half sofort.", "030 12345678"),
        ("Service client 01 45 67 89 10 injoignable.", "01 45 67 89 10"),
        ("Klantenservice 020 123 4567 was top.", "020 123 4567"),
    ]:
        assert _phones(text) == [number], text


CARD = "4242 4242 4242 4242"


def _cue_words() -> list[str]:
    return sorted({word for words in NOT_PII_CUES.values() for word in words})


def _is_cue_itself(word: str) -> bool:
    """Whether `word` is a cue in its own right (a stem cue's compound, "id" in "customer
    id"): the longer-word tests below skip those."""
    for cue in _cue_words():
        stem = cue.rstrip("*+")
        last = word.split()[-1]
        if cue.endswith(("*", "+")) and last.startswith(stem) and last != stem:
            return True
        if not cue.endswith(("*", "+")) and last == cue and " " in word:
            return True
    return False


@pytest.mark.parametrize("cue", _cue_words())
def test_every_cue_keeps_a_card_number_after_it(cue: str) -> None:
    word = cue.rstrip("*+")
    word += "x" if cue.endswith("+") else ""
    assert Scrubber().scrub(f"{word} {CARD}").counts == {}, cue


def _longer_words(make: Callable[[str], str]) -> list[str]:
    """`make(cue)` for every cue ("": none), less the words that are cues in their own right."""
    words = (make(cue) for cue in _cue_words())
    return [word for word in words if word and not _is_cue_itself(word)]


@pytest.mark.parametrize(
    "word",
    [
        word
        for prefix in ("b", "pre", "é", "ż")
        for word in _longer_words(
            lambda cue, p=prefix: p + cue.rstrip("*+") + ("x" if cue.endswith("+") else "")
        )
    ],
)
def test_cue_at_end_of_longer_word_is_no_cue(word: str) -> None:
    """The reported defect: "border 4242…" kept the card because "order" matched inside it."""
    assert Scrubber().scrub(f"Paid with {word} {CARD}").counts == {"card": 1}, word


@pytest.mark.parametrize(
    "word", _longer_words(lambda cue: "" if cue.endswith(("*", "+")) else cue + "ly")
)
def test_cue_at_start_of_longer_word_is_no_cue(word: str) -> None:
    assert Scrubber().scrub(f"Paid with {word} {CARD}").counts == {"card": 1}, word


def test_reported_card_after_cue_like_word() -> None:
    assert Scrubber().scrub(f"Charged at the border {CARD}.").text == (
        "Charged at the border [CARD]."
    )
    assert Scrubber().scrub(f"Refunded {CARD} after a week.").counts == {"card": 1}


def test_compiled_validation_agrees_with_phonenumbers() -> None:
    """`_Region.valid` must decide as `phonenumbers.is_valid_number_for_region` does (it
    compiles the library's metadata itself); a library upgrade that changes how metadata is
    read fails here."""
    rng = random.Random(26)
    checked = agreed_valid = 0
    for code in DEFAULT_PHONE_REGIONS:
        region = phones._region(code)
        samples = []
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(code, kind)
            if example is not None:
                samples.append(phonenumbers.national_significant_number(example))
        for nsn in list(samples):
            for _ in range(30):  # nearby numbers: a digit changed, one added or dropped
                i = rng.randrange(len(nsn))
                samples.append(nsn[:i] + str(rng.randrange(10)) + nsn[i + 1 :])
                samples.append(nsn[:i] + nsn[i + 1 :])
                samples.append(nsn[:i] + str(rng.randrange(10)) + nsn[i:])
        for nsn in samples:
            if not nsn or (nsn.startswith("0") and code != "IT"):
                continue
            number = phonenumbers.PhoneNumber(
                country_code=region.country_code, national_number=int(nsn)
            )
            zeros = len(nsn) - len(nsn.lstrip("0"))
            if zeros:
                number.italian_leading_zero = True
                number.number_of_leading_zeros = zeros
            expected = phonenumbers.is_valid_number_for_region(number, code)
            assert region.valid(nsn) == expected, (code, nsn)
            checked += 1
            agreed_valid += expected
    assert checked > 3000 and agreed_valid > 300  # both answers were exercised


def test_phone_regions_setting_is_validated_at_start() -> None:
    assert CdcSettings().phone_region_codes == DEFAULT_PHONE_REGIONS
    assert CdcSettings(phone_regions="ES,PT").phone_region_codes == ("ES", "PT")
    with pytest.raises(ValidationError, match="CDC_PHONE_REGIONS"):
        CdcSettings(phone_regions="ES,XX")
    with pytest.raises(ValidationError):
        CdcSettings(phone_regions="es")
    with pytest.raises(ValueError, match="unknown phone regions"):
        PhoneRules(served_regions=("ZZ",))


def test_email_with_non_ascii_local_part_or_domain() -> None:
    for email in ("müller@bäckerei-müller.de", "użytkownik@poczta.pl", "josé.pérez@correo.es"):
        text = f"Escríbeme a {email}, gracias."
        assert [(k.value, text[s:e]) for k, s, e in detect(text)] == [("email", email)]


def test_iban_in_lower_case_or_before_a_short_word() -> None:
    for text, iban in [
        ("Refund to gb82 west 1234 5698 7654 32 please.", "gb82 west 1234 5698 7654 32"),
        ("Devolución a ES91 2100 0418 4502 0005 1332 por favor.", "ES91 2100 0418 4502 0005 1332"),
        ("Auf de44500105175407324931; danke.", "de44500105175407324931"),
    ]:
        assert [(k.value, text[s:e]) for k, s, e in detect(text)] == [("iban", iban)], text


@pytest.mark.parametrize(
    "text",
    [
        "Cadeaukaart 3641 6431 5040 2799 ongeldig.",  # gift card: never split into a phone
        "CEP 01310-100 não era aceito.",  # postal code
        "Pakke fra GLS, sporingsnummer 12345678901, kom.",  # Danish tracking
        "Spårningsnummer 0701234567 fungerar inte.",  # Swedish tracking
        "Objednávka č. 2026120047 dorazila.",  # Czech "č." = number
    ],
)
def test_gift_cards_postal_codes_and_nordic_czech_cues(text: str) -> None:
    assert detect(text) == []
