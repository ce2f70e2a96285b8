"""Is a digit run a phone number? Decided with libphonenumber's metadata (`phonenumbers`).

The scrubber's pattern finds the candidates (digits with the separators people write in phone
numbers, an area code in parentheses, a leading + or 00) and drops the obvious non-phones
(too few digits, dates, numbers after an order/invoice cue); only what is left reaches this
module, which decides per country:

- ``+CC …`` / ``00CC …``: the country code says which country; the rest must have the shape of
  that country's numbers (libphonenumber's general pattern: the plus is evidence enough).
- a national number: it must be a valid number (libphonenumber's per-type patterns) of one of
  the review's locale's countries or of the served countries (``CDC_PHONE_REGIONS``), written
  with the trunk prefix where that country writes it (0 in GB/FR/DE/NL/BE/AT/CH/IE…, none in
  ES/IT/PT/PL, optional in NANP and BR). When a phone word precedes it ("tel", "llámame",
  "zadzwoń"…) the general pattern is enough (fictional numbers such as 555-123-4567 are not
  valid ones, and a reader still sees a phone number).

The metadata's patterns (general and per type) are compiled once per country: the same
decision as `phonenumbers.parse` + `is_valid_number_for_region` (test_cdc_phones checks that
they agree), at ~2 µs a candidate instead of ~70–100 µs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberFormat

# The countries whose national formats are tried for every review (CDC_PHONE_REGIONS default).
DEFAULT_PHONE_REGIONS = (
    "US",
    "GB",
    "FR",
    "DE",
    "ES",
    "IT",
    "NL",
    "PT",
    "BR",
    "PL",
    "BE",
    "AT",
    "CH",
    "IE",
    "CA",
)
# A locale with a language but no region ("sv", "cs") adds that language's main country.
_LANGUAGE_REGION = {
    "en": "US",
    "fr": "FR",
    "de": "DE",
    "es": "ES",
    "it": "IT",
    "nl": "NL",
    "pt": "PT",
    "pl": "PL",
    "sv": "SE",
    "da": "DK",
    "nb": "NO",
    "no": "NO",
    "fi": "FI",
    "cs": "CZ",
    "sk": "SK",
    "hu": "HU",
    "ro": "RO",
    "el": "GR",
    "tr": "TR",
    "ja": "JP",
}
_NATIONAL_DIGITS_MIN, _NATIONAL_DIGITS_MAX = 7, 13
_INTERNATIONAL_DIGITS_MIN, _INTERNATIONAL_DIGITS_MAX = 8, 17  # with the country code (and 00)
_TRUNK_IN_PARENS = re.compile(r"\(0\)")  # "+49 (0)30 …": the 0 is not dialled from abroad


@dataclass(frozen=True, slots=True)
class _Desc:
    lengths: frozenset[int]  # empty: any length the general description allows
    pattern: re.Pattern[str]

    def matches(self, national: str) -> bool:
        if self.lengths and len(national) not in self.lengths:
            return False
        return self.pattern.fullmatch(national) is not None


_TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


def _desc(desc: object) -> _Desc | None:
    pattern = getattr(desc, "national_number_pattern", None)
    if desc is None or pattern is None:
        return None
    lengths = frozenset(getattr(desc, "possible_length", ()) or ())
    return _Desc(lengths=frozenset(n for n in lengths if n > 0), pattern=re.compile(pattern))


@dataclass(frozen=True, slots=True)
class _Region:
    code: str
    country_code: int
    national_prefix: str  # "" when the country has none
    prefix_written: bool  # its national numbers are written with the prefix ("0…")
    general: _Desc  # libphonenumber's pattern for any number of the country
    types: tuple[_Desc, ...]  # … and for each type (fixed line, mobile, toll-free…)

    def valid(self, national: str) -> bool:
        """`phonenumbers.is_valid_number_for_region` for a national significant number, with
        the patterns compiled once (it costs ~18 µs a call through the library's regex
        cache; this ~2 µs). test_cdc_phones checks both agree."""
        return self.general.matches(national) and any(t.matches(national) for t in self.types)


def unknown_regions(codes: tuple[str, ...]) -> list[str]:
    """The codes libphonenumber has no metadata for (for the settings' start-up check)."""
    return [code for code in codes if PhoneMetadata.metadata_for_region(code) is None]


def _region(code: str) -> _Region:
    metadata = PhoneMetadata.metadata_for_region(code)
    if metadata is None:
        raise ValueError(f"unknown phone region {code!r}")
    prefix = metadata.national_prefix or ""
    example = phonenumbers.example_number(code)
    written = False
    if prefix and example is not None:
        national = phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL)
        written = "".join(ch for ch in national if ch.isdigit()).startswith(prefix)
    general = _desc(metadata.general_desc) or _Desc(frozenset(), re.compile(r"(?!)"))
    types = (_desc(getattr(metadata, name, None)) for name in _TYPE_DESCS)
    return _Region(
        code=code,
        country_code=int(metadata.country_code or 0),
        national_prefix=prefix,
        prefix_written=written,
        general=general,
        types=tuple(t for t in types if t is not None),
    )


class PhoneRules:
    """Phone validation for the served regions plus each review's locale."""

    def __init__(self, *, served_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS) -> None:
        unknown = unknown_regions(served_regions)
        if unknown:
            raise ValueError(
                f"unknown phone regions {unknown} (ISO 3166 codes libphonenumber knows)"
            )
        self._served = tuple(_region(code) for code in dict.fromkeys(served_regions))
        self._by_locale: dict[str | None, tuple[_Region, ...]] = {None: self._served}
        self._by_country_code: dict[int, _Region | None] = {}

    @property
    def served(self) -> tuple[str, ...]:
        return tuple(region.code for region in self._served)

    def regions_for(self, locale: str | None) -> tuple[_Region, ...]:
        """The locale's country first (from "es-MX", or a language's main country), then the
        served ones. Cached per locale string."""
        regions = self._by_locale.get(locale)
        if regions is None:
            regions = self._served
            code = _locale_region(locale)
            if code is not None:  # first: most numbers in a review are its country's
                first = next((r for r in self._served if r.code == code), None) or _region(code)
                regions = (first, *(r for r in self._served if r.code != code))
            if len(self._by_locale) < 1024:  # locales come from reviews: keep the cache bounded
                self._by_locale[locale] = regions
        return regions

    def is_phone(self, candidate: str, *, locale: str | None = None, cued: bool = False) -> bool:
        """Whether `candidate` (a digit run as written) is a phone number; `cued`: a phone word
        precedes it."""
        written = _TRUNK_IN_PARENS.sub("", candidate) if "(0)" in candidate else candidate
        digits = "".join(ch for ch in written if ch.isdigit())
        stripped = written.lstrip()
        if stripped.startswith("(+"):  # "(+34) 612 …"
            stripped = stripped[1:]
        if stripped.startswith("+"):
            return self._international(digits)
        if stripped.startswith("00") and not stripped.startswith("000"):
            return self._international(digits[2:])
        if not _NATIONAL_DIGITS_MIN <= len(digits) <= _NATIONAL_DIGITS_MAX:
            return False
        return any(self._national(digits, region, cued=cued) for region in self.regions_for(locale))

    def _international(self, digits: str) -> bool:
        if not _INTERNATIONAL_DIGITS_MIN <= len(digits) <= _INTERNATIONAL_DIGITS_MAX - 2:
            return False
        for length in (1, 2, 3):
            country_code = int(digits[:length])
            if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                break
        else:
            return False
        region = self._country(country_code)
        if region is None:
            return False
        national = digits[length:]
        if region.national_prefix and national.startswith(region.national_prefix):
            # "+33 06 …": written with the trunk prefix too; accept either reading.
            without = national[len(region.national_prefix) :]
            if without and region.general.matches(without):
                return True
        return bool(national) and region.general.matches(national)

    def _country(self, country_code: int) -> _Region | None:
        if country_code not in self._by_country_code:
            main = phonenumbers.region_code_for_country_code(country_code)
            region = None
            if main != phonenumbers.UNKNOWN_REGION:
                region = _region(main)
            self._by_country_code[country_code] = region
        return self._by_country_code[country_code]

    @staticmethod
    def _national(digits: str, region: _Region, *, cued: bool) -> bool:
        prefix = region.national_prefix
        if prefix and digits.startswith(prefix):
            national = digits[len(prefix) :]
        elif region.prefix_written:
            return False  # "20240315" is no German number: Germans write 0…
        else:
            national = digits
        if not national or not region.general.matches(national):
            return False
        return cued or region.valid(national)


def _locale_region(locale: str | None) -> str | None:
    """ "es-MX"/"pt_BR" → "MX"/"BR"; "sv" → "SE"; None when the locale names no country."""
    if not locale:
        return None
    parts = locale.replace("_", "-").split("-")
    for part in parts[1:]:
        if len(part) == 2 and part.isalpha():
            code = part.upper()
            return code if PhoneMetadata.metadata_for_region(code) is not None else None
    return _LANGUAGE_REGION.get(parts[0].strip().lower())
