"""Certificate identifiers: GB/T 36904 identifiers and issuer-unique ids.

The identifier's form (prefix, 3-digit version, check character, lineage, serial alphabet)
is ``certhub.core.identifier``'s, shared with the adapters; here is the hub's validation, which
answers a bad id with field violations.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import NamedTuple

from certhub.core.codes import (
    MOD37_36_ALPHABET,
    USCC_LENGTH,
    check_char_mod37_36,
    is_ascii_digits,
    is_uscc_shaped,
    mod37_36_product,
)
from certhub.core.identifier import (
    GBT_PREFIX,
    MAX_SERIAL_LENGTH,
    MAX_VERSION,
    VERSION_DIGITS,
    format_gbt_identifier,
    gbt_lineage,
    is_serial,
)
from certhub.hub.errors import FieldViolation, InvalidArgument

__all__ = [
    "GBT_PREFIX",
    "MAX_CERTIFICATE_ID_LENGTH",
    "MAX_SERIAL_LENGTH",
    "MAX_VERSION",
    "TYPE_CODE_LENGTH",
    "CertificateIdentifier",
    "check_certificate_id",
    "check_char_mod37_36",
    "check_type_code",
    "lineage_of",
    "make_identifier",
    "parse_identifier",
]

#: GB/T 36904 type codes are the defining department's USCC followed by a 3-digit number.
TYPE_CODE_LENGTH = USCC_LENGTH + 3
#: Bound on any certificate id (GB/T ids need at most 126); it is an index key and part of
#: every audit leaf that names the certificate.
MAX_CERTIFICATE_ID_LENGTH = 128

# The five dot-separated parts after the prefix: type, issuer, serial, version, check.
_GBT_PART_COUNT = 5
# Issuer-unique ids travel in URLs, QR codes and log lines: keep them to a safe ASCII set.
_ISSUER_UNIQUE_RE = re.compile(r"[A-Za-z0-9._:/-]+")
_REASON = "INVALID_CERTIFICATE_ID"
#: (type code, issuer) pairs whose checks are kept (see ``_type_and_issuer``): a district's
#: registry has tens of types, each issued by one or two departments; ids that name others
#: only take turns in the cache (each part is bounded by MAX_CERTIFICATE_ID_LENGTH).
_KNOWN_TYPE_AND_ISSUERS = 1024


@dataclass(frozen=True)
class CertificateIdentifier:
    """A GB/T 36904 identifier; ``str()`` gives the dotted form with its check character."""

    type_code: str
    issuer: str
    serial: str
    version: int

    def __str__(self) -> str:
        return format_gbt_identifier(
            type_code=self.type_code, issuer=self.issuer, serial=self.serial, version=self.version
        )

    @property
    def lineage(self) -> str:
        """The identifier without version and check: shared by every version of a certificate."""
        return gbt_lineage(type_code=self.type_code, issuer=self.issuer, serial=self.serial)


def parse_identifier(text: str, *, field: str = "certificate_id") -> CertificateIdentifier:
    """Parse a GB/T 36904 identifier, or raise ``InvalidArgument`` naming what is wrong."""
    parsed, problems = _parse(text)
    if parsed is None:
        raise _invalid(field, problems)
    return parsed


def make_identifier(
    *, type_code: str, issuer: str, serial: str, version: int
) -> CertificateIdentifier:
    """A checked identifier from its parts (``InvalidArgument`` on ``certificate_id``)."""
    candidate = CertificateIdentifier(
        type_code=type_code, issuer=issuer, serial=serial, version=version
    )
    problems = _part_problems(type_code, issuer, serial)
    if not 1 <= version <= MAX_VERSION:
        problems.append(f"version must be 1-{MAX_VERSION}, got {version}")
    if problems:
        raise _invalid("certificate_id", problems)
    return candidate


def lineage_of(certificate_id: str) -> str:
    """A GB/T identifier's lineage; any other id is its own lineage (issuer-unique ids keep
    one id across versions). Raises ``InvalidArgument`` on a malformed GB/T identifier."""
    if certificate_id.startswith(GBT_PREFIX):
        return parse_identifier(certificate_id).lineage
    return certificate_id


def check_type_code(type_code: str, *, field: str = "type_code") -> None:
    """A GB/T 36904 type code: a USCC-shaped department code and three digits.

    The department part is checked for shape only: a defining department may hold a
    legacy code, and the registry decides which type codes exist.
    """
    problems = _type_code_problems(type_code)
    if problems:
        raise InvalidArgument.field(field, problems[0], reason="INVALID_TYPE_CODE")


def check_certificate_id(
    certificate_id: str, *, type_code: str, issuer: str, version: int, field: str = "certificate_id"
) -> None:
    """Check an id against the payload that carries it.

    A GB/T identifier must parse and agree with the payload's type code, issuer and
    version; any other id is issuer-unique and only its character set and length are ours
    to check.
    """
    violations = certificate_id_violations(
        certificate_id, type_code=type_code, issuer=issuer, version=version, field=field
    )
    if violations:
        raise _from_violations(violations)


def certificate_id_violations(
    certificate_id: str,
    *,
    type_code: str | None,
    issuer: str | None,
    version: int | None,
    field: str,
) -> list[FieldViolation]:
    """What is wrong with ``certificate_id``; ``None`` skips the comparison with that part.

    For callers that collect every problem of a payload before answering.
    """
    if not certificate_id.startswith(GBT_PREFIX):
        problem = _issuer_unique_problem(certificate_id)
        return [FieldViolation(field, problem)] if problem else []
    parsed, problems = _parse(certificate_id)
    if parsed is None:
        return [FieldViolation(field, p) for p in problems]
    mismatches: list[FieldViolation] = []
    if type_code is not None and parsed.type_code != type_code:
        mismatches.append(
            FieldViolation(
                field, f"type code {parsed.type_code} differs from type_code {type_code}"
            )
        )
    if issuer is not None and parsed.issuer != issuer:
        mismatches.append(
            FieldViolation(field, f"issuer {parsed.issuer} differs from issuer.code {issuer}")
        )
    if version is not None and parsed.version != version:
        mismatches.append(
            FieldViolation(field, f"version {parsed.version:03d} differs from version {version}")
        )
    return mismatches


def _parse(text: str) -> tuple[CertificateIdentifier | None, list[str]]:
    if not text.startswith(GBT_PREFIX):
        return None, [f"a GB/T 36904 identifier starts with {GBT_PREFIX}"]
    if len(text) > MAX_CERTIFICATE_ID_LENGTH:
        return None, [f"at most {MAX_CERTIFICATE_ID_LENGTH} characters, got {len(text)}"]
    parts = text[len(GBT_PREFIX) :].split(".")
    if len(parts) != _GBT_PART_COUNT:
        return None, [
            f"after {GBT_PREFIX} expected {_GBT_PART_COUNT} dot-separated parts "
            f"(type.issuer.serial.version.check), got {len(parts)}"
        ]
    type_code, issuer, serial, version_text, check = parts
    shared = _type_and_issuer(type_code, issuer)
    problems = [*shared.problems, *_serial_problems(serial)]
    if len(version_text) != VERSION_DIGITS or not is_ascii_digits(version_text):
        problems.append(f"version must be {VERSION_DIGITS} digits, got {version_text!r}")
    elif int(version_text) < 1:
        problems.append("version must be 001 or higher")
    if len(check) != 1 or check not in MOD37_36_ALPHABET:
        problems.append(f"check must be one character of 0-9A-Z, got {check!r}")
    if problems:
        return None, problems
    assert shared.product is not None  # type code and issuer have no problem
    expected = check_char_mod37_36(f"{serial}{version_text}", start=shared.product)
    if check != expected:
        return None, [f"check character is {check}, expected {expected}"]
    parsed = CertificateIdentifier(
        type_code=type_code, issuer=issuer, serial=serial, version=int(version_text)
    )
    return parsed, []


class _TypeAndIssuer(NamedTuple):
    problems: tuple[str, ...]
    # The check character's running product after type code and issuer; None if either
    # has a problem.
    product: int | None


@functools.lru_cache(maxsize=_KNOWN_TYPE_AND_ISSUERS)
def _type_and_issuer(type_code: str, issuer: str) -> _TypeAndIssuer:
    # Cached: every certificate of a type from one department shares both parts, so their
    # checks and two thirds of the check character's steps are made once per pair.
    problems = _type_code_problems(type_code)
    if not is_uscc_shaped(issuer):
        problems.append(
            f"issuer must be {USCC_LENGTH} characters of the USCC alphabet "
            f"(0-9, A-Z without I O S V Z), got {issuer!r}"
        )
    if problems:
        return _TypeAndIssuer(tuple(problems), None)
    return _TypeAndIssuer((), mod37_36_product(f"{type_code}{issuer}"))


def _part_problems(type_code: str, issuer: str, serial: str) -> list[str]:
    return [*_type_and_issuer(type_code, issuer).problems, *_serial_problems(serial)]


def _serial_problems(serial: str) -> list[str]:
    if is_serial(serial):
        return []
    return [f"serial must be 1-{MAX_SERIAL_LENGTH} characters of 0-9A-Z, got {serial!r}"]


def _type_code_problems(type_code: str) -> list[str]:
    if len(type_code) != TYPE_CODE_LENGTH:
        return [f"type code must be {TYPE_CODE_LENGTH} characters, got {len(type_code)}"]
    department, number = type_code[:USCC_LENGTH], type_code[USCC_LENGTH:]
    if not is_uscc_shaped(department) or not is_ascii_digits(number):
        return [
            "type code must be a department USCC (0-9, A-Z without I O S V Z) "
            f"followed by 3 digits, got {type_code!r}"
        ]
    return []


def _issuer_unique_problem(certificate_id: str) -> str | None:
    if not 1 <= len(certificate_id) <= MAX_CERTIFICATE_ID_LENGTH:
        return f"must be 1-{MAX_CERTIFICATE_ID_LENGTH} characters, got {len(certificate_id)}"
    if not _ISSUER_UNIQUE_RE.fullmatch(certificate_id):
        return (
            "an issuer-unique id may contain only A-Z a-z 0-9 and . _ : / -; "
            f"a GB/T 36904 identifier starts with {GBT_PREFIX}"
        )
    return None


def _invalid(field: str, problems: list[str]) -> InvalidArgument:
    return _from_violations([FieldViolation(field, p) for p in problems])


def _from_violations(violations: list[FieldViolation]) -> InvalidArgument:
    message = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return InvalidArgument(message, reason=_REASON, violations=tuple(violations))
