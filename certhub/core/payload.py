"""The canonical JSON of the signed payloads, one encoding for the hub and the adapters.

A payload's bytes are what a department signs and what the hub stores, verifies and hands
out, so both sides must write a document the same way: UTF-8 JSON with sorted keys, no
whitespace, no ASCII escaping of Chinese text, and no NaN or Infinity (not JSON). The
payload's closed vocabularies (a holder's ID type, a certificate's kind, an attachment's
media type) are here too, so the
adapters' configuration accepts exactly the values the hub does.
"""

from __future__ import annotations

import datetime
import json
from enum import StrEnum
from typing import Final

__all__ = [
    "ATTACHMENT_MEDIA_TYPES",
    "CertificateKind",
    "IdType",
    "canonical_json",
    "revocation_payload_json",
    "utc_timestamp",
]


#: Attachments are the certificate's own file, not arbitrary documents: the formats a
#: window can display and archive. PDF and OFD (GB/T 33190, the format of Chinese
#: e-licences, carrying the SM2 seal) are the document formats; PNG and JPEG cover scanned
#: licences from departments that have not moved to OFD yet.
ATTACHMENT_MEDIA_TYPES: Final = frozenset(
    {"application/pdf", "application/ofd", "image/png", "image/jpeg"}
)


class IdType(StrEnum):
    """``holder.id_type``: what kind of ID a certificate's holder (持证主体) is named by."""

    RESIDENT_ID = "RESIDENT_ID"
    USCC = "USCC"
    PASSPORT = "PASSPORT"
    OTHER = "OTHER"


class CertificateKind(StrEnum):
    """``kind``: a licence (证照) or an approval document (批文)."""

    LICENCE = "LICENCE"
    APPROVAL = "APPROVAL"


def canonical_json(document: object) -> bytes:
    """The canonical encoding of ``document`` (``ValueError`` on NaN or Infinity)."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def utc_timestamp(at: datetime.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: seconds, and microseconds only when there are any.

    ``ValueError`` on a naive time (its zone would be a guess).
    """
    if at.utcoffset() is None:
        raise ValueError("revoked_at must be timezone-aware")
    utc = at.astimezone(datetime.UTC)
    fraction = f".{utc.microsecond:06d}" if utc.microsecond else ""
    return f"{utc:%Y-%m-%dT%H:%M:%S}{fraction}Z"


def revocation_payload_json(
    *, certificate_id: str, reason: str, revoked_at: datetime.datetime
) -> bytes:
    """A revocation payload ``{certificate_id, reason, revoked_at}`` in canonical form."""
    return canonical_json(
        {
            "certificate_id": certificate_id,
            "reason": reason,
            "revoked_at": utc_timestamp(revoked_at),
        }
    )
