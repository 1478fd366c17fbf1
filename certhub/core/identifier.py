"""GB/T 36904 certificate identifiers: their form, lineage and serials, one rule for the hub
and the adapters.

An identifier is ``1.2.156.3005.2.<type>.<issuer>.<serial>.<version>.<check>``; the check
character is ISO 7064 MOD 37,36 over type, issuer, serial and the 3-digit version
(``certhub.core.codes``). These functions build and take apart the *form*: whether the parts are
valid (a USCC-shaped type code and issuer, a registered department) is the hub's question
(``certhub.hub.domain.identifier``, which answers with field violations).
"""

from __future__ import annotations

import re

from certhub.core.codes import check_char_mod37_36

__all__ = [
    "GBT_PREFIX",
    "MAX_SERIAL_LENGTH",
    "MAX_VERSION",
    "VERSION_DIGITS",
    "format_gbt_identifier",
    "gbt_identifier",
    "gbt_lineage",
    "is_serial",
    "lineage_of",
]

#: GB/T 36904 root arc for electronic licence identifiers (China OID 1.2.156, 3005.2).
GBT_PREFIX = "1.2.156.3005.2."
#: GB/T 36904 leaves the serial's length to the issuer; 64 keeps the whole identifier
#: (prefix 15 + type 21 + issuer 18 + version 3 + check 1 + dots) within the hub's
#: MAX_CERTIFICATE_ID_LENGTH, so every id fits one indexed column.
MAX_SERIAL_LENGTH = 64
#: The version part of a GB/T 36904 identifier has three digits; the hub holds every
#: certificate (GB/T or issuer-unique) to the same bound so the rules do not diverge.
MAX_VERSION = 999
#: The version part is written with exactly this many digits (001-999).
VERSION_DIGITS = 3

# The alphabet of every part of a GB/T identifier (that of ISO 7064 MOD 37,36).
_PART_RE = re.compile(r"[0-9A-Z]+")


def is_serial(text: str) -> bool:
    """1-``MAX_SERIAL_LENGTH`` characters of 0-9A-Z: a serial a GB/T identifier can carry."""
    return 0 < len(text) <= MAX_SERIAL_LENGTH and _PART_RE.fullmatch(text) is not None


def gbt_lineage(*, type_code: str, issuer: str, serial: str) -> str:
    """What every version of a certificate shares: the identifier without version and check."""
    return f"{GBT_PREFIX}{type_code}.{issuer}.{serial}"


def format_gbt_identifier(*, type_code: str, issuer: str, serial: str, version: int) -> str:
    """The dotted identifier with its check character, for parts the caller has checked
    (``ValueError`` only if a part has characters outside 0-9A-Z)."""
    v = f"{version:0{VERSION_DIGITS}d}"
    check = check_char_mod37_36(f"{type_code}{issuer}{serial}{v}")
    return f"{gbt_lineage(type_code=type_code, issuer=issuer, serial=serial)}.{v}.{check}"


def gbt_identifier(*, type_code: str, issuer: str, serial: str, version: int) -> str:
    """The dotted identifier with its check character; ``ValueError`` if a part cannot be
    written in the identifier's alphabet (upper-case letters and digits) or bounds."""
    if not 1 <= version <= MAX_VERSION:
        raise ValueError(f"version must be 1-{MAX_VERSION}, got {version}")
    for name, part in (("type code", type_code), ("issuer", issuer), ("serial", serial)):
        if _PART_RE.fullmatch(part) is None:
            raise ValueError(f"{name} {part!r} has characters outside 0-9A-Z")
    if len(serial) > MAX_SERIAL_LENGTH:
        raise ValueError(f"serial {serial!r} is longer than {MAX_SERIAL_LENGTH} characters")
    return format_gbt_identifier(type_code=type_code, issuer=issuer, serial=serial, version=version)


def lineage_of(certificate_id: str) -> str:
    """What every version of a certificate shares: a GB/T identifier without its version and
    check character; an issuer-unique id is its own lineage (it is shared by all versions).

    The id is not checked: the hub's ``certhub.hub.domain.identifier.lineage_of`` parses a GB/T
    identifier first and refuses a malformed one; for a well-formed one both agree.
    """
    if certificate_id.startswith(GBT_PREFIX):
        return certificate_id.rsplit(".", 2)[0]
    return certificate_id
