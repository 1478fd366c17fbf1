"""The vocabulary and rules of consent with no database: a request's statuses and lifetimes,
what a fetch's gate can answer, the window's refusal and the shape of a request id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from certhub.hub.errors import FailedPrecondition, InvalidArgument

# An applicant at the counter decides in a minute or two; a request nobody answers in ten
# minutes is stale (the applicant left, the app is off): the window then uses paper.
REQUEST_TTL_SECONDS = 600
# After approval the window's system fetches again at once (or at its next poll); ten
# minutes bounds how long an unused approval can be used at all.
APPROVAL_TTL_SECONDS = 600
# Request ids are 128 random bits in hex.
REQUEST_ID_CHARS = 32
# Pending requests of one applicant in one listing: one per window and case at the counter.
MAX_LISTED = 50


class ConsentStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"
    USED = "USED"
    EXPIRED = "EXPIRED"


class GateOutcome(StrEnum):
    """What the fetch's gate decided; the value is also the fetch's audit outcome."""

    REQUESTED = "consent-requested"
    PENDING = "consent-pending"
    DECLINED = "consent-declined"
    EXPIRED = "consent-expired"
    USE = "consent-used"


@dataclass(frozen=True, slots=True, kw_only=True)
class Purpose:
    """Whose certificates, for which window, item and case."""

    holder_commitment: str
    principal: str
    service_item_code: str
    case_number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Gate:
    outcome: GateOutcome
    request_id: str
    expires_at: dt.datetime
    # The approved types (only for USE).
    type_codes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A consent request as the applicant's app previews it."""

    request_id: str
    principal: str
    service_item_code: str
    case_number: str
    type_codes: tuple[str, ...]
    status: ConsentStatus
    created_at: dt.datetime
    expires_at: dt.datetime


# A request's status -> what a fetch answers while it is not an unexpired approval.
WAITING = {
    ConsentStatus.PENDING: GateOutcome.PENDING,
    ConsentStatus.DECLINED: GateOutcome.DECLINED,
    ConsentStatus.EXPIRED: GateOutcome.EXPIRED,
}


def refusal(gate: Gate, *, service_item_code: str) -> FailedPrecondition:
    """What the window is told when its fetch may not share (yet)."""
    until = gate.expires_at.isoformat()
    facts = {"consent_request_id": gate.request_id, "expires_at": until}
    if gate.outcome is GateOutcome.DECLINED:
        return FailedPrecondition(
            f"the applicant declined consent request {gate.request_id}: nothing is shared for "
            "this case; ask for the paper originals",
            reason="CONSENT_DECLINED",
            metadata=facts,
        )
    if gate.outcome is GateOutcome.EXPIRED:
        return FailedPrecondition(
            f"consent request {gate.request_id} expired at {until} without an approval in "
            "time: ask for the paper originals",
            reason="CONSENT_EXPIRED",
            metadata=facts,
        )
    return FailedPrecondition(
        f"service item {service_item_code} needs the applicant's consent: request "
        f"{gate.request_id} awaits their decision in their app until {until}; fetch again "
        "once they approve",
        reason="CONSENT_PENDING",
        metadata=facts,
    )


def check_request_id(request_id: str) -> str:
    if len(request_id) != REQUEST_ID_CHARS or not all(c in "0123456789abcdef" for c in request_id):
        raise InvalidArgument.field(
            "request_id",
            f"is not a consent request id ({REQUEST_ID_CHARS} lowercase hex digits)",
            reason="BAD_CONSENT_REQUEST_ID",
        )
    return request_id
