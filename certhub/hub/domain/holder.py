"""Certificate holders (持证主体): ID types, validation, normalisation and generators."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from certhub.core.codes import (
    RESIDENT_ID_LENGTH,
    USCC_ALPHABET,
    USCC_LENGTH,
    has_surrounding_whitespace,
    is_ascii_digits,
    is_uscc_text,
    resident_id_check_char,
    uscc_check_char,
)
from certhub.core.payload import IdType
from certhub.hub.domain.status import CST
from certhub.hub.errors import InvalidArgument

__all__ = [
    "MAX_DOCUMENT_ID_LENGTH",
    "CheckedHolder",
    "Holder",
    "IdType",
    "check_holder",
    "check_uscc",
    "is_pilot_uscc_form",
    "resident_id",
    "resident_id_check_char",
    "uscc",
    "uscc_check_char",
]

#: ICAO 9303 passport numbers are at most 9 characters and other travel or residence
#: documents (Mainland Travel Permits, foreign national IDs) stay well under 32; 64 leaves
#: room for unusual documents while keeping holder index keys and audit leaves small.
MAX_DOCUMENT_ID_LENGTH = 64

#: GB 11643-1999 assigns IDs to living residents; nobody alive was born before 1900, so an
#: earlier date is a typo or a forgery.
_EARLIEST_BIRTH_DATE = datetime.date(1900, 1, 1)
#: Positions 7-14 (1-based) of a resident ID hold the birth date YYYYMMDD.
_BIRTH_DATE_SLICE = slice(6, 14)
#: Administrative division codes (GB/T 2260) are six digits.
_REGION_CODE_LENGTH = 6
#: The order code (顺序码) after the birth date is three digits.
_MAX_SEQUENCE = 999

# How much of a bad value a message quotes: enough to recognise it.
_MAX_QUOTED = 64

#: The one form ``accept_legacy_uscc`` lets through with a wrong check character: the early
#: Fujian pilot codes (DESIGN.md: "some early Fujian pilot codes are legal but fail the check",
#: e.g. 91350100M0001TGQXM), assigned before GB 32100-2015 by the market regulator
#: (registration authority 9), in a Fujian division (35xxxx), with an organisation part of
#: the pilot's own series: M and a digit (the national series that followed is MA...). Any
#: other wrong check character is a typo or a forgery (91440300192189148B, Shenzhen, is
#: refused), whatever the setting says.
_PILOT_USCC_FORM = re.compile(r"9[0-9A-HJ-NPQRTUWXY]35\d{4}M\d[0-9A-HJ-NPQRTUWXY]{8}")
PILOT_USCC_FORM_TEXT = "9?35xxxxM#... (the early Fujian pilot codes, e.g. 91350100M0001TGQXM)"

# IdType by value: what IdType(value) looks up, without the Enum call's machinery (every
# push and fetch names a holder).
_ID_TYPES: dict[str, IdType] = {t.value: t for t in IdType}
# What str.isspace calls whitespace (re's \s is the same set in a str pattern), found in C.
_WHITESPACE = re.compile(r"\s")

_REASON_ID = "INVALID_HOLDER_ID"
_REASON_ID_TYPE = "INVALID_HOLDER_ID_TYPE"


@dataclass(frozen=True)
class Holder:
    """A validated, normalised holder identity."""

    id_type: IdType
    id: str

    def key(self) -> str:
        """``id_type:id``, the string the audit log's holder commitment is computed over."""
        return f"{self.id_type}:{self.id}"


@dataclass(frozen=True)
class CheckedHolder:
    """A holder and whether its USCC was let through only as a legacy code."""

    holder: Holder
    legacy_uscc: bool


def check_holder(
    id_type: str, raw_id: str, *, accept_legacy_uscc: bool, field: str = "holder"
) -> CheckedHolder:
    """Validate and normalise a holder ID, or raise ``InvalidArgument`` naming the field.

    IDs are never trimmed: surrounding whitespace is rejected, so what the client sent is
    what gets committed to the audit log. The only normalisations are upper-casing (a
    resident ID's ``x`` and a USCC's letters), which cannot make two different IDs equal.
    """
    kind = _ID_TYPES.get(id_type)
    if kind is None:
        allowed = ", ".join(IdType)
        raise InvalidArgument.field(
            f"{field}.id_type",
            f"must be one of {allowed}, got {id_type[:_MAX_QUOTED]!r}",
            reason=_REASON_ID_TYPE,
        )
    id_field = f"{field}.id"
    if kind is IdType.RESIDENT_ID:
        return CheckedHolder(Holder(kind, _check_resident_id(raw_id, id_field)), legacy_uscc=False)
    if kind is IdType.USCC:
        code, legacy = check_uscc(raw_id, accept_legacy_uscc=accept_legacy_uscc, field=id_field)
        return CheckedHolder(Holder(kind, code), legacy_uscc=legacy)
    return CheckedHolder(Holder(kind, _check_document_id(raw_id, id_field)), legacy_uscc=False)


def check_uscc(raw: str, *, accept_legacy_uscc: bool, field: str) -> tuple[str, bool]:
    """A normalised USCC and whether it is a legacy code with a bad check character."""
    _reject_whitespace(raw, field)
    code = raw.upper() if raw.isascii() else raw
    if len(code) != USCC_LENGTH:
        raise _bad_id(field, f"a USCC has {USCC_LENGTH} characters, got {len(code)}")
    if not is_uscc_text(code):
        bad = next(c for c in code if c not in USCC_ALPHABET)
        raise _bad_id(
            field,
            f"character {bad!r} is not allowed in a USCC (allowed: 0-9 and A-Z without I O S V Z)",
        )
    expected = uscc_check_char(code[:-1])
    if code[-1] == expected:
        return code, False
    if accept_legacy_uscc and is_pilot_uscc_form(code):
        return code, True
    wrong = f"check character is {code[-1]}, expected {expected}"
    if accept_legacy_uscc:
        wrong += f"; accept_legacy_uscc admits only the pre-standard form {PILOT_USCC_FORM_TEXT}"
    raise _bad_id(field, wrong)


def is_pilot_uscc_form(code: str) -> bool:
    """Whether an 18-character USCC has the early Fujian pilot form ``accept_legacy_uscc``
    admits with a wrong check character (the check character itself is not looked at)."""
    return _PILOT_USCC_FORM.fullmatch(code) is not None


def _check_resident_id(raw: str, field: str) -> str:
    _reject_whitespace(raw, field)
    if len(raw) != RESIDENT_ID_LENGTH:
        raise _bad_id(field, f"a resident ID has {RESIDENT_ID_LENGTH} characters, got {len(raw)}")
    body, check = raw[:-1], raw[-1].upper()
    if not is_ascii_digits(body):
        raise _bad_id(field, "the first 17 characters of a resident ID must be digits 0-9")
    if not (is_ascii_digits(check) or check == "X"):
        raise _bad_id(field, f"check character {raw[-1]!r} must be a digit or X")
    birth = body[_BIRTH_DATE_SLICE]
    try:
        born = datetime.date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))
    except ValueError:
        raise _bad_id(field, f"characters 7-14 ({birth}) are not a real date") from None
    if born < _EARLIEST_BIRTH_DATE:
        raise _bad_id(field, f"birth date {born.isoformat()} is before 1900")
    if born > datetime.datetime.now(CST).date():
        raise _bad_id(field, f"birth date {born.isoformat()} is in the future")
    expected = resident_id_check_char(body)
    if check != expected:
        raise _bad_id(field, f"check character is {check}, expected {expected}")
    return body + check


def _check_document_id(raw: str, field: str) -> str:
    if not raw:
        raise _bad_id(field, "must not be empty")
    if len(raw) > MAX_DOCUMENT_ID_LENGTH:
        raise _bad_id(field, f"at most {MAX_DOCUMENT_ID_LENGTH} characters, got {len(raw)}")
    if not raw.isprintable():
        raise _bad_id(field, "contains control or other non-printable characters")
    if has_surrounding_whitespace(raw):
        raise _bad_id(field, "must not start or end with whitespace")
    return raw


def _reject_whitespace(raw: str, field: str) -> None:
    if _WHITESPACE.search(raw):
        raise _bad_id(field, "contains whitespace; send the code without spaces or line breaks")


def _bad_id(field: str, description: str) -> InvalidArgument:
    return InvalidArgument.field(field, description, reason=_REASON_ID)


def resident_id(region: str, born: datetime.date, sequence: int) -> str:
    """A valid resident ID for a 6-digit region code, birth date and order code 0-999.

    For demos and tests; raises ``ValueError`` on arguments that cannot make an ID.
    """
    if len(region) != _REGION_CODE_LENGTH or not is_ascii_digits(region):
        raise ValueError(f"region must be 6 digits, got {region!r}")
    if not 0 <= sequence <= _MAX_SEQUENCE:
        raise ValueError(f"sequence must be 0-{_MAX_SEQUENCE}, got {sequence}")
    if not _EARLIEST_BIRTH_DATE <= born <= datetime.date(9999, 12, 31):
        raise ValueError(f"born must be in 1900-9999, got {born}")
    body = f"{region}{born:%Y%m%d}{sequence:03d}"
    return body + resident_id_check_char(body)


def uscc(prefix17: str) -> str:
    """A valid USCC: ``prefix17`` plus its check character (``ValueError`` if not USCC text)."""
    return prefix17 + uscc_check_char(prefix17)
