"""Presentations stored, loaded and redeemed: single use is one conditional UPDATE, atomic
across hub processes and machines.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from certhub.hub.services.presentation.rules import Row, expired, replayed, unknown
from certhub.hub.store.engine import stored_utc
from certhub.hub.store.models import Presentation


def store(session: Session, row: Row, *, created_by: str) -> None:
    session.add(
        Presentation(
            token_id=row.token_id,
            holder_commitment=row.holder_commitment,
            certificate_id=row.certificate_id,
            service_item_code=row.service_item_code,
            purpose=row.purpose,
            created_by=created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )
    )
    session.flush()


def load(session: Session, token_id: str) -> Row | None:
    found = session.get(Presentation, token_id)
    if found is None:
        return None
    return Row(
        token_id=found.token_id,
        holder_commitment=found.holder_commitment,
        certificate_id=found.certificate_id,
        service_item_code=found.service_item_code,
        purpose=found.purpose,
        created_at=stored_utc(found.created_at),
        expires_at=stored_utc(found.expires_at),
        redeemed_at=stored_utc(found.redeemed_at) if found.redeemed_at else None,
    )


def consume(
    session: Session, token_id: str, *, now: dt.datetime, principal: str, case_number: str
) -> None:
    """Mark the token redeemed, or raise why not: one conditional UPDATE, so of two
    windows (in any processes) redeeming the same token at once exactly one succeeds."""
    result = session.execute(
        update(Presentation)
        .where(
            Presentation.token_id == token_id,
            Presentation.redeemed_at.is_(None),
            Presentation.expires_at > now,
        )
        .values(redeemed_at=now, redeemed_by=principal, redeemed_case=case_number)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return
    row = load(session, token_id)
    if row is None:
        raise unknown()
    if row.redeemed_at is not None:
        raise replayed(row)
    raise expired(row.expires_at)


def redeemed_purposes(session: Session, cases: set[str]) -> dict[tuple[str, str], str]:
    """(case, certificate id) -> the purpose given, for redemptions in ``cases``."""
    if not cases:
        return {}
    rows = session.execute(
        select(Presentation.redeemed_case, Presentation.certificate_id, Presentation.purpose).where(
            Presentation.redeemed_case.in_(cases), Presentation.purpose.is_not(None)
        )
    ).all()
    return {(str(c), str(i)): str(p) for c, i, p in rows}
