"""The adapter's own identifier rules: derived serials and push streams.

A GB/T 36904 identifier's form, check character and lineage are ``certhub.core.identifier``'s,
shared with the hub; whether its parts are *valid* (a real type code, a registered issuer)
is the hub's question, answered with a REJECTED result.
"""

from __future__ import annotations

import hashlib

from certhub.core.identifier import lineage_of

__all__ = ["derived_serial", "stream_key"]

#: A derived serial is the first 24 hex digits (96 bits) of SHA-256 of the source key: a
#: collision among a department's few million records is astronomically unlikely (birthday
#: bound ~2^48), and 24 characters keep the identifier short enough to print on a licence.
DERIVED_SERIAL_HEX_DIGITS = 24

#: Bits of the stream key: a non-negative SQLite INTEGER (signed 64-bit), so ``key % n``
#: in SQL picks the same stream as in Python.
STREAM_KEY_BITS = 62


def derived_serial(source_key: str) -> str:
    """A serial that depends only on the record's stable source key: the same record always
    yields the same certificate id, across re-runs and machines."""
    digest = hashlib.sha256(source_key.encode("utf-8")).hexdigest()
    return digest[:DERIVED_SERIAL_HEX_DIGITS].upper()


def stream_key(certificate_id: str) -> int:
    """A stable hash of the certificate's lineage (``certhub.core.identifier.lineage_of``, the hub's
    rule): ``stream_key(id) % streams`` is the push stream every version and the revocation
    of that lineage travel on, on every run."""
    digest = hashlib.sha256(lineage_of(certificate_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - STREAM_KEY_BITS)
