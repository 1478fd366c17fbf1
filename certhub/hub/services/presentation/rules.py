"""Presentation tokens (亮证): an applicant shows one certificate at a window by QR code.

The token carries only a random id and its expiry, signed by the hub's attestation key
(Ed25519); what it presents (certificate, applicant commitment, optional item binding and
purpose) is a ``presentations`` row. Binary layout, then RFC 4648 base32 without padding
(upper-case letters and digits: QR alphanumeric mode, the densest a phone screen shows)::

    version (1) | key hint (4) | token id (16) | expires, unix seconds (4) | Ed25519 sig (64)

The signature covers ``TOKEN_DOMAIN`` and the first 25 bytes. 89 bytes make 143
characters: a version-6 QR code (41 x 41 modules) at error correction level M.

Each refusal has its own reason: ``PRESENTATION_MALFORMED`` (not a token), ``_FOREIGN``
(signed by another hub's key), ``_TAMPERED`` (this hub's key hint, a signature that does
not verify), ``_EXPIRED``, ``_REPLAYED`` (already redeemed), ``_UNKNOWN`` (a valid
signature over an id this hub has no row for: its database was restored from a backup).
Single use is one conditional UPDATE, atomic across hub processes and machines.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import secrets
import struct
from dataclasses import dataclass

from certhub.hub.audit.redact import id_shape
from certhub.hub.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from certhub.signing import PrivateKey

TOKEN_VERSION = 1
# Domain separation: this key signs nothing else that starts with these bytes.
TOKEN_DOMAIN = b"certhub-presentation-v1\n"
# 128 random bits: unguessable, and the row's primary key.
TOKEN_ID_BYTES = 16
# Like a C2SP signed note's key id: enough to tell this hub's key from another's.
KEY_HINT_BYTES = 4
SIGNATURE_BYTES = 64
_HEADER = struct.Struct(">B4s16sI")
TOKEN_BYTES = _HEADER.size + SIGNATURE_BYTES
# base32 of TOKEN_BYTES without padding.
TOKEN_CHARS = -(-TOKEN_BYTES * 8 // 5)
# Issue 14: at most 5 minutes. A QR code shown at a window is scanned within a minute; a
# photo of the screen is worth nothing after this.
MAX_TTL_SECONDS = 300
# When the app asks for no particular lifetime: two minutes at the counter.
DEFAULT_TTL_SECONDS = 120
# A purpose (用证事由) is one line, e.g. "办理食品经营许可延续"; like registry names, anything
# longer than 200 characters is a pasted paragraph (and the column is 256 wide).
MAX_PURPOSE_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Claims:
    """What a token says once its signature verified."""

    token_id: str  # hex
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """A presentation as stored."""

    token_id: str
    holder_commitment: str
    certificate_id: str
    service_item_code: str | None
    purpose: str | None
    created_at: dt.datetime
    expires_at: dt.datetime
    redeemed_at: dt.datetime | None


def key_hint(key: PrivateKey) -> bytes:
    return hashlib.sha256(key.public_key.spki_der).digest()[:KEY_HINT_BYTES]


def new_token_id() -> str:
    return secrets.token_bytes(TOKEN_ID_BYTES).hex()


def mint(key: PrivateKey, *, token_id: str, expires_at: dt.datetime) -> str:
    """The token text for ``token_id``, valid until ``expires_at`` (whole seconds)."""
    header = _HEADER.pack(
        TOKEN_VERSION, key_hint(key), bytes.fromhex(token_id), int(expires_at.timestamp())
    )
    signature = key.sign(TOKEN_DOMAIN + header)
    return base64.b32encode(header + signature).decode("ascii").rstrip("=")


def read_token(text: str, key: PrivateKey) -> Claims:
    """Decode and verify a token signed by ``key``; refusals name why (module docstring)."""
    malformed = InvalidArgument.field(
        "token",
        f"is not a presentation token ({TOKEN_CHARS} characters of base32 from the app's QR code)",
        reason="PRESENTATION_MALFORMED",
    )
    if len(text) != TOKEN_CHARS or not text.isascii():
        raise malformed
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        data = base64.b32decode(padded)
    except (binascii.Error, ValueError):
        raise malformed from None
    if len(data) != TOKEN_BYTES:
        raise malformed
    header, signature = data[: _HEADER.size], data[_HEADER.size :]
    version, hint, token_id, expires = _HEADER.unpack(header)
    if version != TOKEN_VERSION:
        raise malformed
    if hint != key_hint(key):
        raise PermissionDenied(
            f"token: signed by another hub's key (key hint {hint.hex()}, this hub's is "
            f"{key_hint(key).hex()})",
            reason="PRESENTATION_FOREIGN",
        )
    if not key.public_key.verify(signature, TOKEN_DOMAIN + header):
        raise PermissionDenied(
            "token: its signature does not verify: it was altered", reason="PRESENTATION_TAMPERED"
        )
    return Claims(token_id.hex(), dt.datetime.fromtimestamp(expires, dt.UTC))


def expired(expires_at: dt.datetime) -> FailedPrecondition:
    return FailedPrecondition(
        f"token: expired at {expires_at.isoformat()}; ask the applicant to show a new one",
        reason="PRESENTATION_EXPIRED",
    )


def replayed(row: Row) -> FailedPrecondition:
    when = row.redeemed_at.isoformat() if row.redeemed_at else "before"
    return FailedPrecondition(
        f"token: already redeemed ({when}); a presentation token is single-use",
        reason="PRESENTATION_REPLAYED",
    )


def unknown() -> NotFound:
    return NotFound(
        "token: this hub has no record of it (its database may have been restored)",
        reason="PRESENTATION_UNKNOWN",
    )


def check_purpose_text(purpose: str) -> str | None:
    if not purpose:
        return None
    if len(purpose) > MAX_PURPOSE_LENGTH or not purpose.isprintable() or purpose != purpose.strip():
        raise InvalidArgument.field(
            "purpose",
            f"must be at most {MAX_PURPOSE_LENGTH} printable characters without surrounding spaces",
            reason="BAD_PURPOSE",
        )
    shape = id_shape(purpose)
    if shape is not None:
        # Stored with the token and shown to the window: like a case number, never an ID.
        raise InvalidArgument.field(
            "purpose",
            f"contains what looks like a personal or enterprise ID ({shape}); say what the "
            "licence is used for, e.g. 办理食品经营许可",
            reason="ID_SHAPED_PURPOSE",
        )
    return purpose


def check_ttl(ttl_seconds: int) -> int:
    if ttl_seconds == 0:
        return DEFAULT_TTL_SECONDS
    if ttl_seconds > MAX_TTL_SECONDS:
        raise InvalidArgument.field(
            "ttl_seconds",
            f"{ttl_seconds} exceeds the limit of {MAX_TTL_SECONDS} (5 minutes)",
            reason="PRESENTATION_TTL_TOO_LONG",
        )
    return ttl_seconds
