"""Certificate identifiers the adapter builds from a record.

A GB/T 36904 identifier is ``1.2.156.3005.2.<type>.<issuer>.<serial>.<version>.<check>``;
the check character is a format rule of the identifier (ISO 7064 MOD 37,36), so the adapter
computes it itself. Whether the parts are *valid* (a real type code, a registered issuer) is
the hub's question, answered with a REJECTED result.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "GBT_PREFIX",
    "MAX_VERSION",
    "check_char_mod37_36",
    "derived_serial",
    "gbt_identifier",
    "is_serial",
    "lineage_of",
    "stream_key",
]

GBT_PREFIX = "1.2.156.3005.2."
#: The version part of a GB/T 36904 identifier has three digits.
MAX_VERSION = 999
#: GB/T 36904 leaves the serial's length to the issuer; the hub accepts up to 64 characters.
MAX_SERIAL_LENGTH = 64
#: A derived serial is the first 24 hex digits (96 bits) of SHA-256 of the source key: a
#: collision among a department's few million records is astronomically unlikely (birthday
#: bound ~2^48), and 24 characters keep the identifier short enough to print on a licence.
DERIVED_SERIAL_HEX_DIGITS = 24

#: Bits of the stream key: a non-negative SQLite INTEGER (signed 64-bit), so ``key % n``
#: in SQL picks the same stream as in Python.
STREAM_KEY_BITS = 62

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUES = {c: i for i, c in enumerate(_ALPHABET)}
_SERIAL_RE = re.compile(r"[0-9A-Z]{1,64}")
_PART_RE = re.compile(r"[0-9A-Z]+")


def check_char_mod37_36(data: str) -> str:
    """ISO 7064 MOD 37,36 check character over ``data`` (characters 0-9 A-Z)."""
    if _PART_RE.fullmatch(data) is None:
        raise ValueError(f"expected one or more characters of 0-9A-Z, got {data!r}")
    p = 36
    values = _VALUES
    for c in data:
        t = (p + values[c]) % 36 or 36
        p = (2 * t) % 37
    return _ALPHABET[(37 - p) % 36]


def is_serial(text: str) -> bool:
    return _SERIAL_RE.fullmatch(text) is not None


def derived_serial(source_key: str) -> str:
    """A serial that depends only on the record's stable source key: the same record always
    yields the same certificate id, across re-runs and machines."""
    digest = hashlib.sha256(source_key.encode("utf-8")).hexdigest()
    return digest[:DERIVED_SERIAL_HEX_DIGITS].upper()


def gbt_identifier(*, type_code: str, issuer: str, serial: str, version: int) -> str:
    """The dotted identifier with its check character; ``ValueError`` if a part cannot be
    written in the identifier's alphabet (upper-case letters and digits)."""
    if not 1 <= version <= MAX_VERSION:
        raise ValueError(f"version must be 1-{MAX_VERSION}, got {version}")
    for name, part in (("type code", type_code), ("issuer", issuer), ("serial", serial)):
        if _PART_RE.fullmatch(part) is None:
            raise ValueError(f"{name} {part!r} has characters outside 0-9A-Z")
    if len(serial) > MAX_SERIAL_LENGTH:
        raise ValueError(f"serial {serial!r} is longer than {MAX_SERIAL_LENGTH} characters")
    v = f"{version:03d}"
    check = check_char_mod37_36(f"{type_code}{issuer}{serial}{v}")
    return f"{GBT_PREFIX}{type_code}.{issuer}.{serial}.{v}.{check}"


def lineage_of(certificate_id: str) -> str:
    """What every version of a certificate shares: a GB/T identifier without its version and
    check character; an issuer-unique id is its own lineage (it is shared by all versions).

    The same rule as the hub's (``hub.domain.identifier.lineage_of``, which adapters may not
    import); the adapter needs it to keep the versions and the revocation of one lineage on
    one push stream.
    """
    if certificate_id.startswith(GBT_PREFIX):
        return certificate_id.rsplit(".", 2)[0]
    return certificate_id


def stream_key(certificate_id: str) -> int:
    """A stable hash of the certificate's lineage: ``stream_key(id) % streams`` is the push
    stream every version and the revocation of that lineage travel on, on every run."""
    digest = hashlib.sha256(lineage_of(certificate_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - STREAM_KEY_BITS)
