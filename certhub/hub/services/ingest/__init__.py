"""Pushes and revocations from department adapters.

The rules that need no database (``rules``: authorisation, envelope, payload, signature,
what a push decides) apart from the SQL that stores them (``store``, with the statements
only PostgreSQL runs in ``store_postgresql``). Callers import from ``certhub.hub.services.ingest``.
"""

from __future__ import annotations

from certhub.hub.services.ingest.rules import (
    REVOCATION_DATE_SLACK,
    CheckedPush,
    CheckedRevocation,
    PushInput,
    PushOutcome,
    Revoked,
    RevokeInput,
    Stored,
    check_push,
    check_revoke,
    read_envelope,
    require_role,
)
from certhub.hub.services.ingest.store import (
    PUSH_BATCH,
    PushBatch,
    store_push,
    store_pushes,
    store_revoke,
)

__all__ = [
    "PUSH_BATCH",
    "REVOCATION_DATE_SLACK",
    "CheckedPush",
    "CheckedRevocation",
    "PushBatch",
    "PushInput",
    "PushOutcome",
    "RevokeInput",
    "Revoked",
    "Stored",
    "check_push",
    "check_revoke",
    "read_envelope",
    "require_role",
    "store_push",
    "store_pushes",
    "store_revoke",
]
