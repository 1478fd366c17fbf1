"""Presentation tokens (亮证): an applicant shows one certificate at a window by QR code.

The token's format, signature and refusals need no database (``rules``); the row each token
stands for is stored, loaded and redeemed by ``store``. Callers import from
``certhub.hub.services.presentation``.
"""

from __future__ import annotations

from certhub.hub.services.presentation.rules import (
    DEFAULT_TTL_SECONDS,
    KEY_HINT_BYTES,
    MAX_PURPOSE_LENGTH,
    MAX_TTL_SECONDS,
    SIGNATURE_BYTES,
    TOKEN_BYTES,
    TOKEN_CHARS,
    TOKEN_DOMAIN,
    TOKEN_ID_BYTES,
    TOKEN_VERSION,
    Claims,
    Row,
    check_purpose_text,
    check_ttl,
    expired,
    key_hint,
    mint,
    new_token_id,
    read_token,
    replayed,
    unknown,
)
from certhub.hub.services.presentation.store import consume, load, redeemed_purposes, store

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "KEY_HINT_BYTES",
    "MAX_PURPOSE_LENGTH",
    "MAX_TTL_SECONDS",
    "SIGNATURE_BYTES",
    "TOKEN_BYTES",
    "TOKEN_CHARS",
    "TOKEN_DOMAIN",
    "TOKEN_ID_BYTES",
    "TOKEN_VERSION",
    "Claims",
    "Row",
    "check_purpose_text",
    "check_ttl",
    "consume",
    "expired",
    "key_hint",
    "load",
    "mint",
    "new_token_id",
    "read_token",
    "redeemed_purposes",
    "replayed",
    "store",
    "unknown",
]
