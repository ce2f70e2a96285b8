"""PII scrubber: typed placeholders for emails, phones, cards, IBANs, IPs, credentialed URLs
and names. Pure and regex-based (one combined pass, then validators); no I/O, no models.

Person names: no library installable without a model download finds names well in en/fr/de
text (spaCy/Presidio/flair fetch weights; gazetteers misfire on German capitalized nouns), so
the scrubber removes the *author's own* name wherever it appears and names introduced by a cue
("my name is", "je m'appelle", "ich heiße", signatures like "Regards, X"). Other names pass.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from cdc_processor.phones import DEFAULT_PHONE_REGIONS, PhoneRules


class PiiKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CARD = "card"
    IBAN = "iban"
    IP = "ip"
    URL_CREDENTIALS = "url_credentials"
    NAME = "name"


PLACEHOLDER = {kind: f"[{kind.value.upper()}]" for kind in PiiKind}

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_PATTERN = re.compile(
    r"""
    (?P<url_credentials>\b[a-z][a-z0-9+.\-]*://[^\s/:@]+:[^\s/@]+@[^\s<>"']+)
  | (?P<email>(?<![\w.+-])[\w.+-]+@(?:[^\W_]|-)+(?:\.(?:[^\W_]|-)+)*\.[^\W\d_]{2,})
  | (?P<iban>\b(?:[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?
        |[a-z]{2}\d{2}(?:[ ]?[a-z0-9]{4}){2,7}(?:[ ]?[a-z0-9]{1,3})?)\b)
  | (?P<card>(?<![\w.,])\d{4}(?:[ -]?\d{2,4}){2,4}(?:[ -]?\d{1,3})?(?![\d.,]\d))
  | (?P<ipv4>(?<![\d.])"""
    + _OCTET
    + r"(?:\."
    + _OCTET
    + r""")(?:\."""
    + _OCTET
    + r""")(?:\."""
    + _OCTET
    + r"""(?![\d]|\.\d)))
  | (?P<ipv6>(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,7}:?
        (?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?(?![\w:]))
  | (?P<phone>(?<![\w+.,/\-])(?=[\d\ .\-/()+\u00a0\u202f]{7})  # 7+ phone characters ahead
        (?:\+[\ \u00a0]?|00[\ \u00a0]?|\(\+\d{1,3}\)[\ \u00a0]?)?  # +CC / 00CC / (+CC)
        (?:\(\d{1,5}\)[\ \u00a0]?)?\d+  # (area code)
        # then digit groups, each after one separator (or an area code in parentheses): no
        # two digit runs without a separator, so the pattern cannot backtrack exponentially
        (?:(?:[\ \u00a0\u202f]?[.\-/][\ \u00a0\u202f]?|[\ \u00a0\u202f])
           (?:\(\d{1,5}\)[\ \u00a0]?)?\d+
         |[\ \u00a0]?\(\d{1,5}\)[\ \u00a0]?\d+)*
        (?!\w|[.,]\d))
  | (?P<name_cue>(?:\b(?=[MmIJjRrCcTtGgVLHFD])  # the first letters of the cues below
        (?:[Mm]y\ name\ is|I\ am|I'm|[Jj]e\ m'appelle|[Jj]e\ suis|[Mm]oi\ c'est|
        [Ii]ch\ heiße|[Ii]ch\ heisse|[Ii]ch\ bin|[Mm]ein\ Name\ ist|
        [Rr]egards,|[Cc]heers,|[Tt]hanks,|
        [Cc]ordialement,|[Mm]erci,|[Gg]rüße,|[Gg]ruß,|Viele\ Grüße,|LG,|MfG,|
        Mr\.?|Mrs\.?|Ms\.?|Dr\.?|Herrn?|Frau|Monsieur|Madame|Mme|M\.)\s+)
        (?P<name>[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ]+(?:[\ \-][A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ]+){0,2}(?:\ [A-Z]\.)?))
    """,
    re.VERBOSE,
)
_ALTERNATIVES: dict[str, str] = {}
for _part in _PATTERN.pattern.split("\n  | "):
    _name = re.match(r"\s*\(\?P<(\w+)>", _part)
    assert _name is not None
    _ALTERNATIVES[_name.group(1)] = _part.strip()

_PHONE_ONLY = re.compile(_ALTERNATIVES["phone"], re.VERBOSE)

# Every alternative but name_cue, in the pattern's order: the ones `_possible` may leave out.
_GATED = tuple(name for name in _ALTERNATIVES if name != "name_cue")
_DIGIT = re.compile(r"\d")
_TWO_DIGITS = re.compile(r"\d\d")  # in every phone, card and IBAN
_IBAN_START = re.compile(r"[A-Za-z]{2}\d\d")  # IBANs are written in lower case too
_FOUR_DIGITS = re.compile(r"\d{4}")  # a card starts with four
_DOTTED_DIGITS = re.compile(r"\d\.\d")  # in every IPv4 address


def _possible(text: str) -> tuple[str, ...]:
    """The alternatives that can match somewhere in `text`, in the pattern's order: each is
    left out only when `text` lacks something it cannot match without ("://" and "@" for a
    credentialed URL, "@" for an email, ":" for IPv6, digits as the comments say)."""
    at, colon = "@" in text, ":" in text
    if _DIGIT.search(text) is None:
        pair = iban = card = ipv4 = False
    else:
        pair = _TWO_DIGITS.search(text) is not None
        iban = pair and _IBAN_START.search(text) is not None
        card = pair and _FOUR_DIGITS.search(text) is not None
        ipv4 = _DOTTED_DIGITS.search(text) is not None
    return _names(at and colon and "://" in text, at, iban, card, ipv4, colon, pair)


@functools.lru_cache(maxsize=128)
def _names(*present: bool) -> tuple[str, ...]:
    # name_cue is always tried: its cues ("I am", "Je suis", "Dr") are in most texts anyway.
    return (*(name for name, ok in zip(_GATED, present, strict=True) if ok), "name_cue")


@functools.lru_cache(maxsize=256)
def _pattern_for(names: tuple[str, ...]) -> re.Pattern[str]:
    """The combined pattern without the alternatives that cannot match. Leaving out an
    alternative that matches nowhere in a text changes no match, so the spans are those of
    the full pattern, found without trying eight alternatives at every character."""
    return re.compile("|".join(_ALTERNATIVES[name] for name in names), re.VERBOSE)


# Words before a number that make it an order, invoice, SKU, tracking, customer-account or
# loyalty number, not a phone/card/IP, in the languages of the served countries. Each is a whole
# word, Unicode-aware: "border" or "preferred" are no cue. A word ending in "*" also takes the
# endings the language gives it (German and Dutch compounds: "Bestellnummer"); "+" one to three
# (Polish cases: "faktury", "fakturze"). "customer"/"client"/"Kunden…" alone are no cue:
# "atención al cliente 900 123 456", "Kundenservice 0800 …" are phone numbers; "customer
# number", "Kundennummer" are cues.
def _cues(words: str) -> tuple[str, ...]:
    """Whitespace-separated cue words; "_" joins the words of a multi-word cue."""
    return tuple(word.replace("_", " ") for word in words.split())


NOT_PII_CUES: dict[str, tuple[str, ...]] = {
    "en": _cues(
        """order orders invoice receipt ref reference sku version firmware ver v build tracking
        parcel package shipment ticket case serial model item article part lot batch loyalty
        member membership account booking reservation confirmation transaction voucher coupon
        code ean upc gtin isbn imei asin id customer_number customer_no customer_id gift_card
        giftcard postcode zip zipcode"""
    ),
    "fr": _cues(
        """commande facture réf référence suivi colis envoi dossier série modèle fidélité
        adhérent réservation reçu bon numéro_client numéro_de_client carte_cadeau postal"""
    ),
    "de": _cues(
        """bestell* auftrag* rechnung* referenz* sendung* paket* serien* modell* artikel*
        vorgang* buchung* beleg* gutschein* mitglied* kundennummer kundennr kundenkarte
        kundenkonto geschenkkarte* gutschein* plz postleitzahl"""
    ),
    "es": _cues(
        """pedido factura referencia seguimiento envío paquete albarán incidencia caso serie
        modelo versión socio fidelidad puntos reserva localizador código artículo lote
        expediente núm número_de_cliente tarjeta_regalo postal"""
    ),
    "it": _cues(
        """ordine fattura riferimento rif spedizione pacco pratica seriale matricola modello
        versione tessera fedeltà punti prenotazione codice articolo lotto carta_regalo cap"""
    ),
    "nl": _cues(
        """bestelling bestelnummer ordernummer factuur* referentie zending pakket* zaak*
        serienummer versie klantnummer klantnr klantenkaart klantenpas spaarkaart bonuskaart
        reservering boeking* cadeaukaart* cadeaubon* postcode"""
    ),
    "pt": _cues(
        """encomenda fatura referência rastreio rastreamento pacote protocolo chamado processo
        versão fidelidade pontos artigo nota_fiscal cep vale cartão_presente"""
    ),
    "pl": _cues(
        """zamówienie zamówienia zamówieniu faktur+ referencj+ przesyłk+ paczk+ śledzenia
        zgłoszeni+ reklamacj+ seryjn+ wersj+ lojalnościow+ rezerwacj+ kod kodu artykuł* parti+
        numer_klienta karta_podarunkowa kod_pocztowy"""
    ),
    "sv": _cues(
        """order ordernummer ordernr beställning* faktura* spårningsnummer spårning* paket*
        försändelse* kundnummer presentkort* postnummer artikelnummer"""
    ),
    "da": _cues(
        """ordre ordrenummer ordrenr bestilling* faktura* sporingsnummer sporing* pakke*
        forsendelse* kundenummer gavekort* postnummer varenummer"""
    ),
    "cs": _cues(
        """objednávka objednávky objednávku objednávce faktura faktury fakturu zásilka zásilky
        zásilku sledovací zákaznické psč"""
    ),
}
# "no."/"nr"/"n°" stand for "number": a cue unless a phone word comes right before
# ("Tel.-Nr. 030 …", "phone no. …").
_NUMBER_ABBREVIATIONS = ("no.", "nr", "nr.", "n°", "n °", "nº", "n.º", "n. º", "č.", "čís.")


def _reversed_alternation(words: list[str]) -> str:
    """Regex alternatives matching each cue word written backwards ("*"/"+": its endings)."""
    ending = {"*": r"\w{0,20}", "+": r"\w{1,3}"}
    parts = []
    for word in sorted(set(words), key=len, reverse=True):
        suffix = ending.get(word[-1], "")
        stem = word[:-1] if suffix else word
        parts.append(suffix + re.escape(stem[::-1]))
    return "|".join(parts)


# Matched against the text before a number, reversed: one anchored match instead of a search
# through the last 40 characters for ~200 words.
# Between a cue and its number: a word for "number" ("order number", "numero d'ordine" has
# it before) and a verb ("… is", "… lautet", "… es").
_NUMBER_WORDS = _cues("number num no. nr nr. nummer numéro número numero numer n° nº id číslo č.")
_VERBS = _cues("is was ist lautet war est était es era è é foi jest wynosi")
_NOT_PII_CONTEXT_REVERSED = re.compile(
    r"[\s:#.=]*(?:(?:"
    + _reversed_alternation(list(_VERBS))
    + r")(?!\w)[\s:]*)?(?:(?:"
    + _reversed_alternation(list(_NUMBER_WORDS))
    + r")(?!\w)[\s:#.]*)?(?:\#|(?:"
    + _reversed_alternation([word for words in NOT_PII_CUES.values() for word in words])
    + r")(?!\w)|(?P<abbreviation>"
    + _reversed_alternation(list(_NUMBER_ABBREVIATIONS))
    + r")(?!\w))",
    re.IGNORECASE,
)
# Words that say the number after them is a phone number (checked for phones only).
_PHONE_CUE = re.compile(
    r"""(?<!\w)(?:
    tel|tél|tlf|telephone|téléphone|telefon\w{0,3}|teléfono|telefono|telefoon\w{0,4}|telefone|
    telemóvel|phone|mobile|mobil|móvil|movil|cell|cellulare|celular|portable|handy|gsm|mobiel|
    komórk\w{1,3}|fax|whatsapp|sms|hotline|call|called|calling|ring|rang|dial|
    appel\w{0,4}|rappel\w{0,4}|joindre|joignable|anruf\w{0,4}|ruft|rufen|erreichbar|
    r[uü]ckruf\w{0,3}|llam\w{1,6}|chiam\w{1,6}|bellen|bel|gebeld|ligar|ligue|liga|ligou|
    zadzwo\w{1,3}|dzwoni\w{1,3}|contact\w{0,2}|contatt\w{0,2}|contacto|kontakt\w{0,2}
    )(?!\w)""",
    re.IGNORECASE | re.VERBOSE,
)
# After a cue, these capitalized words are not names ("I am Very happy" is still not a name).
_NOT_NAMES = frozenset(
    [
        "Very",
        "Really",
        "So",
        "Not",
        "Happy",
        "Sad",
        "Disappointed",
        "Satisfied",
        "Pleased",
        "Sure",
        "Glad",
        "Sorry",
        "Quite",
        "Also",
        "Still",
        "Just",
        "Totally",
        "Completely",
        "Déçu",
        "Déçue",
        "Ravi",
        "Ravie",
        "Content",
        "Contente",
        "Très",
        "Vraiment",
        "Pas",
        "Sehr",
        "Nicht",
        "Total",
        "Enttäuscht",
        "Zufrieden",
        "Froh",
        "Leider",
        "Ganz",
        "The",
        "This",
        "That",
        "It",
        "Le",
        "La",
        "Les",
        "Un",
        "Une",
        "Der",
        "Die",
        "Das",
        "Ein",
        "Eine",
        "Customer",
        "Client",
        "Kunde",
        "Kundin",
        "Buyer",
        "Mother",
        "Father",
        "Mom",
        "Dad",
    ]
)
_CUE_CASUAL = frozenset({"I am", "I'm", "Je suis", "je suis", "Ich bin", "ich bin"})


@dataclass(frozen=True, slots=True)
class Scrubbed:
    text: str
    counts: dict[str, int]


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def polish_account_valid(candidate: str) -> bool:
    """A Polish account number (NRB) as Poles write it, without "PL": 26 digits ("61 1090 1014
    0000 0712 1981 2874"), the IBAN's check digits first."""
    digits = _digits(candidate)
    return len(digits) == 26 and iban_valid("PL" + digits)


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


_CONTEXT_CHARS = 40  # how far before a number its cue is looked for


def _has_not_pii_context(text: str, start: int) -> bool:
    window = text[max(0, start - _CONTEXT_CHARS) : start]
    cue = _NOT_PII_CONTEXT_REVERSED.match(window[::-1])
    if cue is None:
        return False
    if cue.group("abbreviation") is None:
        return True
    # "Tel.-Nr. 030 …", "phone no. …": the abbreviation is the phone's number.
    before = start - cue.end()
    return _PHONE_CUE.search(text, max(0, before - 12), before) is None


def _classify(
    match: re.Match[str], text: str, phones: PhoneRules, locale: str | None
) -> tuple[PiiKind, int, int] | None:
    """The kind and span to replace for one candidate, or None when it is not PII."""
    group = match.lastgroup
    start, end = match.span()
    value = match.group()
    if group == "url_credentials":
        return PiiKind.URL_CREDENTIALS, start, end
    if group == "email":
        return PiiKind.EMAIL, start, end
    if group == "iban":
        if iban_valid(value):
            return PiiKind.IBAN, start, end
        # "ES67 2100 … 4601 por favor": a short word after it read as the last group.
        head, _, tail = value.rpartition(" ")
        if head and len(tail) < 4 and iban_valid(head):
            return PiiKind.IBAN, start, start + len(head)
        return None
    if group == "card":
        digits = _digits(value)
        if (
            13 <= len(digits) <= 19
            and digits[0] in "23456"
            and luhn_valid(digits)
            and not _has_not_pii_context(text, start)
        ):
            return PiiKind.CARD, start, end
        # Not a card: the same digits may be a phone number, as its own pattern reads them.
        phone = _PHONE_ONLY.match(text, start)
        if phone is None:
            return None
        return _phone(phone.group(), text, start, phone.end(), phones, locale)
    if group == "ipv4":
        return None if _has_not_pii_context(text, start) else (PiiKind.IP, start, end)
    if group == "ipv6":
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return None
        return PiiKind.IP, start, end
    if group == "phone":
        if polish_account_valid(value):
            return PiiKind.IBAN, start, end
        return _phone(value, text, start, end, phones, locale)
    if group == "name_cue":
        name = match.group("name")
        first = name.split()[0].split("-")[0]
        cue = value[: match.start("name") - start].strip()
        if first in _NOT_NAMES or (cue in _CUE_CASUAL and " " not in name):
            return None
        return PiiKind.NAME, match.start("name"), match.end("name")
    return None


# What never is a phone number, however valid its digits: dates (2024-03-15, 15.03.2024,
# 03/15/2024), a year joined to a number by a dash, slash or dot (2024-000123, 2024/88:
# invoice and case numbers; "2024-000123" would otherwise read as a valid US number), and a
# last group of one digit (no country writes one: "612 34 56 78 2 mal" is a number and a count).
_NOT_PHONE = re.compile(
    r"\d{4}([./\-])\d{1,2}\1\d{1,2}|\d{1,2}([./\-])\d{1,2}\2\d{2}(?:\d{2})?"
    r"|(?:19|20)\d\d[./\-].*|.*[\s.\-/]\d"
)
_PHONE_DIGITS_MIN, _PHONE_DIGITS_MAX = 7, 17
_SPLIT_DIGITS_MAX = 13  # "2019 612 34 56 78"


def _phone(
    value: str, text: str, start: int, end: int, phones: PhoneRules, locale: str | None
) -> tuple[PiiKind, int, int] | None:
    """A phone candidate: cheap checks (digit count, dates) first, then libphonenumber's
    metadata, and the words before it only for what looks like a phone number. A candidate
    that is no phone as a whole may hold one beside another number ("seit 2019 612 34 56 78"):
    its readings without its first or last space-separated group are tried next."""
    if len(value.translate(_PHONE_SEPARATORS)) < _PHONE_DIGITS_MIN:
        return None
    cued: bool | None = None  # a phone word before it; looked for only when needed
    for offset, reading in _phone_readings(value):
        digits = len(reading.translate(_PHONE_SEPARATORS))
        if not _PHONE_DIGITS_MIN <= digits <= _PHONE_DIGITS_MAX or _NOT_PHONE.fullmatch(reading):
            continue
        if not phones.is_phone(reading, locale=locale):
            if cued is None:
                window_start = max(0, start - _CONTEXT_CHARS)
                cued = _PHONE_CUE.search(text, window_start, start) is not None
            if not cued or not phones.is_phone(reading, locale=locale, cued=True):
                continue
        if _has_not_pii_context(text, start + offset):
            return None
        return PiiKind.PHONE, start + offset, start + offset + len(reading)
    return None


def _phone_readings(value: str) -> Iterator[tuple[int, str]]:
    """`value` itself, then (offset, part) without its first space-separated group, then
    without its last: one neighbouring number, not a long number cut anywhere."""
    yield 0, value
    if " " not in value or value.startswith(("+", "(+")):
        return
    if len(value.translate(_PHONE_SEPARATORS)) > _SPLIT_DIGITS_MAX:
        return  # a card-length run in groups is one number (a gift card), not a phone and more
    first, last = value.index(" "), value.rindex(" ")
    yield first + 1, value[first + 1 :]
    yield 0, value[:last]


_PHONE_SEPARATORS = str.maketrans(dict.fromkeys(" .-/()+\u00a0\u202f"))
_DEFAULT_PHONES = PhoneRules()


def detect(
    text: str, *, locale: str | None = None, phones: PhoneRules = _DEFAULT_PHONES
) -> list[tuple[PiiKind, int, int]]:
    """Every PII span in `text` (kind, start, end), left to right, not overlapping. `locale`:
    the review's ("es", "pt-BR"); its country's phone numbers are recognised besides the
    served countries' (`phones`)."""
    found: list[tuple[PiiKind, int, int]] = []
    for match in _pattern_for(_possible(text)).finditer(text):
        span = _classify(match, text, phones, locale)
        if span is not None:
            found.append(span)
    return found


class Scrubber:
    """Replaces PII spans with typed placeholders and counts them per kind. `phone_regions`:
    the countries whose national phone formats are recognised in every review (besides the
    review's locale's country); CDC_PHONE_REGIONS in the service."""

    def __init__(self, *, phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS) -> None:
        self._phones = (
            _DEFAULT_PHONES
            if phone_regions == DEFAULT_PHONE_REGIONS
            else PhoneRules(served_regions=phone_regions)
        )

    def scrub(
        self,
        text: str | None,
        *,
        author_names: tuple[str, ...] = (),
        locale: str | None = None,
    ) -> Scrubbed:
        if not text:
            return Scrubbed(text or "", {})
        counts: dict[str, int] = {}
        pieces: list[str] = []
        cursor = 0
        for kind, start, end in detect(text, locale=locale, phones=self._phones):
            pieces.append(text[cursor:start])
            pieces.append(PLACEHOLDER[kind])
            cursor = end
            counts[kind.value] = counts.get(kind.value, 0) + 1
        if not counts and not author_names:
            return Scrubbed(text, {})
        pieces.append(text[cursor:])
        scrubbed = "".join(pieces)
        if author_names:
            scrubbed = self._scrub_author(scrubbed, author_names, counts)
        return Scrubbed(scrubbed, counts)

    @staticmethod
    def _scrub_author(text: str, author_names: tuple[str, ...], counts: dict[str, int]) -> str:
        """Replace the author's own name (full, or any part of 3+ letters) as whole words."""
        if not _may_contain_author(text, author_names):
            return text  # most texts never name their author: no pattern to compile
        pattern = _author_pattern(author_names)
        if pattern is None:
            return text
        result, replaced = pattern.subn(PLACEHOLDER[PiiKind.NAME], text)
        if not replaced:
            return text
        counts[PiiKind.NAME.value] = counts.get(PiiKind.NAME.value, 0) + replaced
        # "[NAME] [NAME]" (first + last matched separately) reads as one name.
        return _NAME_RUN.sub(PLACEHOLDER[PiiKind.NAME], result)


_NAME_RUN = re.compile(r"\[NAME\](?:[ \-]\[NAME\])+")


# Non-ASCII characters that re's IGNORECASE matches against ASCII letters (ſ~s, K~k, ı/İ~i).
_ASCII_FOLD_EXCEPTIONS = frozenset("\u017f\u212a\u0131\u0130")


def _may_contain_author(text: str, author_names: tuple[str, ...]) -> bool:
    """A cheap necessary condition for `_author_pattern(author_names)` to match `text`: when
    every name part is ASCII, a match needs that part as a case-insensitive substring. Unsure
    (non-ASCII names, the few characters re folds onto ASCII) → True, and the regex decides."""
    folded = _folded_parts(author_names)
    if folded is None:
        return True
    if not folded:
        return False
    if not _ASCII_FOLD_EXCEPTIONS.isdisjoint(text):
        return True
    lowered = text.lower()
    return any(part in lowered for part in folded)


@functools.lru_cache(maxsize=8192)
def _folded_parts(author_names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The author's name parts lower-cased, or None when one is not ASCII (no shortcut)."""
    parts = _author_parts(author_names)
    if not all(part.isascii() for part in parts):
        return None
    return tuple(part.lower() for part in parts)


@functools.lru_cache(maxsize=8192)
def _author_parts(author_names: tuple[str, ...]) -> frozenset[str]:
    parts: set[str] = set()
    for name in author_names:
        name = name.strip()
        if not name:
            continue
        parts.add(name)
        parts.update(p for p in re.split(r"[\s\-]+", name) if len(p) >= 3)
    return frozenset(parts)


@functools.lru_cache(maxsize=8192)
def _author_pattern(author_names: tuple[str, ...]) -> re.Pattern[str] | None:
    """Compiled once per author (re's own cache holds only 512 patterns)."""
    parts = _author_parts(author_names)
    if not parts:
        return None
    alternation = "|".join(re.escape(p) for p in sorted(parts, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)
