"""Consent requests in the database: the gate a consent-requiring fetch passes in its group
commit, the applicant's decision and their pending requests. Every transition is one
conditional UPDATE, so two processes cannot both use one approval or decide one request
twice.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets

from sqlalchemy import exc, select, update
from sqlalchemy.orm import Session

from certhub.hub.errors import FailedPrecondition, NotFound
from certhub.hub.services.consent.rules import (
    APPROVAL_TTL_SECONDS,
    MAX_LISTED,
    REQUEST_ID_CHARS,
    REQUEST_TTL_SECONDS,
    WAITING,
    ConsentStatus,
    Gate,
    GateOutcome,
    Purpose,
    Request,
)
from certhub.hub.store.engine import stored_utc
from certhub.hub.store.models import ConsentRequest


def gate(
    session: Session, purpose: Purpose, *, type_codes: frozenset[str], now: dt.datetime
) -> Gate:
    """Decide a consent-requiring fetch, recording what it changes (module docstring)."""
    row = _latest(session, purpose)
    if row is None or row.status == ConsentStatus.USED:
        return _open(session, purpose, 0 if row is None else row.round + 1, type_codes, now)
    expires = stored_utc(row.expires_at)
    if row.status in (ConsentStatus.PENDING, ConsentStatus.APPROVED) and expires <= now:
        _set(session, row.id, ConsentStatus.EXPIRED)
        return Gate(outcome=GateOutcome.EXPIRED, request_id=row.id, expires_at=expires)
    if row.status != ConsentStatus.APPROVED:
        return Gate(
            outcome=WAITING[ConsentStatus(row.status)], request_id=row.id, expires_at=expires
        )
    used = session.execute(
        update(ConsentRequest)
        .where(ConsentRequest.id == row.id, ConsentRequest.status == ConsentStatus.APPROVED)
        .values(status=ConsentStatus.USED, used_at=now)
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        # Another process's fetch used it a moment ago: this one needs a new approval.
        return _open(session, purpose, row.round + 1, type_codes, now)
    return Gate(
        outcome=GateOutcome.USE,
        request_id=row.id,
        expires_at=expires,
        type_codes=frozenset(json.loads(row.type_codes)),
    )


def _open(
    session: Session, purpose: Purpose, round_: int, types: frozenset[str], now: dt.datetime
) -> Gate:
    request_id = secrets.token_hex(REQUEST_ID_CHARS // 2)
    expires = now + dt.timedelta(seconds=REQUEST_TTL_SECONDS)
    try:
        with session.begin_nested():
            session.add(
                ConsentRequest(
                    id=request_id,
                    holder_commitment=purpose.holder_commitment,
                    principal=purpose.principal,
                    service_item_code=purpose.service_item_code,
                    case_number=purpose.case_number,
                    round=round_,
                    type_codes=json.dumps(sorted(types)),
                    status=ConsentStatus.PENDING,
                    created_at=now,
                    expires_at=expires,
                )
            )
    except exc.IntegrityError:
        # Another process opened this round a moment ago: its request is the one pending.
        row = _latest(session, purpose)
        assert row is not None
        return Gate(
            outcome=GateOutcome.PENDING, request_id=row.id, expires_at=stored_utc(row.expires_at)
        )
    return Gate(outcome=GateOutcome.REQUESTED, request_id=request_id, expires_at=expires)


def _latest(session: Session, purpose: Purpose) -> ConsentRequest | None:
    return session.execute(
        select(ConsentRequest)
        .where(
            ConsentRequest.holder_commitment == purpose.holder_commitment,
            ConsentRequest.principal == purpose.principal,
            ConsentRequest.service_item_code == purpose.service_item_code,
            ConsentRequest.case_number == purpose.case_number,
        )
        .order_by(ConsentRequest.round.desc())
        .limit(1)
    ).scalar_one_or_none()


def _set(session: Session, request_id: str, status: ConsentStatus) -> None:
    session.execute(
        update(ConsentRequest)
        .where(ConsentRequest.id == request_id)
        .values(status=status)
        .execution_options(synchronize_session=False)
    )


def decide(
    session: Session, request_id: str, *, holder_commitment: str, approve: bool, now: dt.datetime
) -> Request:
    """The applicant's decision on a pending request of theirs; the request as decided."""
    status = ConsentStatus.APPROVED if approve else ConsentStatus.DECLINED
    values: dict[str, object] = {"status": status, "decided_at": now}
    if approve:
        values["expires_at"] = now + dt.timedelta(seconds=APPROVAL_TTL_SECONDS)
    changed = session.execute(
        update(ConsentRequest)
        .where(
            ConsentRequest.id == request_id,
            ConsentRequest.holder_commitment == holder_commitment,
            ConsentRequest.status == ConsentStatus.PENDING,
            ConsentRequest.expires_at > now,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    row = session.get(ConsentRequest, request_id, populate_existing=True)
    if row is None or row.holder_commitment != holder_commitment:
        # The same answer for another applicant's request: no existence oracle.
        raise NotFound(
            f"the applicant has no consent request {request_id}", reason="CONSENT_NOT_FOUND"
        )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        if row.status in (ConsentStatus.PENDING, ConsentStatus.EXPIRED):
            raise FailedPrecondition(
                f"consent request {request_id} expired at {stored_utc(row.expires_at).isoformat()}",
                reason="CONSENT_EXPIRED",
            )
        raise FailedPrecondition(
            f"consent request {request_id} is already {row.status}",
            reason="CONSENT_ALREADY_DECIDED",
        )
    return _request(row)


def pending(session: Session, holder_commitment: str, *, now: dt.datetime) -> list[Request]:
    """The applicant's requests awaiting a decision, oldest first."""
    rows = session.execute(
        select(ConsentRequest)
        .where(
            ConsentRequest.holder_commitment == holder_commitment,
            ConsentRequest.status == ConsentStatus.PENDING,
            ConsentRequest.expires_at > now,
        )
        .order_by(ConsentRequest.created_at)
        .limit(MAX_LISTED)
    ).scalars()
    return [_request(r) for r in rows]


def _request(row: ConsentRequest) -> Request:
    return Request(
        request_id=row.id,
        principal=row.principal,
        service_item_code=row.service_item_code,
        case_number=row.case_number,
        type_codes=tuple(json.loads(row.type_codes)),
        status=ConsentStatus(row.status),
        created_at=stored_utc(row.created_at),
        expires_at=stored_utc(row.expires_at),
    )
