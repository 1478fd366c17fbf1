"""Consent and preview: sharing for an item that needs the applicant's explicit approval.

A window's fetch for such an item passes through ``gate`` (in the fetch's group commit):
the first fetch for a (holder, window, item, case) opens a PENDING request naming the
certificate types that would be shared; the applicant's app previews and decides
(``decide``); the next fetch after an approval uses it (USED, once) and receives the
certificates of the approved types. A decline or an expiry is final for that request: the
window falls back to paper. A fetch after a used request opens a new one (a new round):
every share needs its own approval.

Rows carry the holder commitment, never the ID. Every transition is one conditional
UPDATE, so two processes cannot both use one approval or decide one request twice.

The statuses, lifetimes, refusals and request-id shape need no database (``rules``); the
gate, decisions and listings are ``store``'s. Callers import from ``certhub.hub.services.consent``.
"""

from __future__ import annotations

from certhub.hub.services.consent.rules import (
    APPROVAL_TTL_SECONDS,
    MAX_LISTED,
    REQUEST_ID_CHARS,
    REQUEST_TTL_SECONDS,
    ConsentStatus,
    Gate,
    GateOutcome,
    Purpose,
    Request,
    check_request_id,
    refusal,
)
from certhub.hub.services.consent.store import decide, gate, pending

__all__ = [
    "APPROVAL_TTL_SECONDS",
    "MAX_LISTED",
    "REQUEST_ID_CHARS",
    "REQUEST_TTL_SECONDS",
    "ConsentStatus",
    "Gate",
    "GateOutcome",
    "Purpose",
    "Request",
    "check_request_id",
    "decide",
    "gate",
    "pending",
    "refusal",
]
