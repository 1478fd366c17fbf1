"""Status list entries in the database: a version's entry drawn at a random free index,
and which indices of a list are set.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import exc, func, select
from sqlalchemy.orm import Session

from certhub.hub.errors import Unavailable
from certhub.hub.services.credentials.rules import STATUS_LIST_SIZE, Purpose, StatusEntry
from certhub.hub.store.models import Certificate, CredentialStatus, Revocation

# Indices are drawn at random; past half full a new list starts, so a draw needs at most two
# tries on average and a list never becomes a dense map of who exported when.
STATUS_LIST_FILL = STATUS_LIST_SIZE // 2
# Random draws before giving up (each taken slot is one; at half fill, 2^-64 to fail).
MAX_INDEX_DRAWS = 64


def allocate(
    session: Session, *, certificate_id: str, version: int, lineage: str, now: dt.datetime
) -> StatusEntry:
    """The status entry of a certificate version: the one it has, or a new random one."""
    existing = _entry(session, certificate_id, version)
    if existing is not None:
        return existing
    latest = session.execute(select(func.max(CredentialStatus.list_number))).scalar_one()
    list_number = latest or 1
    used = session.execute(
        select(func.count())
        .select_from(CredentialStatus)
        .where(CredentialStatus.list_number == list_number)
    ).scalar_one()
    if used >= STATUS_LIST_FILL:
        list_number += 1
    for _ in range(MAX_INDEX_DRAWS):
        index = secrets.randbelow(STATUS_LIST_SIZE)
        try:
            with session.begin_nested():
                session.add(
                    CredentialStatus(
                        certificate_id=certificate_id,
                        version=version,
                        lineage=lineage,
                        list_number=list_number,
                        list_index=index,
                        created_at=now,
                    )
                )
        except exc.IntegrityError:
            # The slot is taken, or another process exported this version a moment ago.
            raced = _entry(session, certificate_id, version)
            if raced is not None:
                return raced
            continue
        return StatusEntry(list_number, index)
    raise Unavailable(
        f"no free status list index after {MAX_INDEX_DRAWS} draws; retry",
        reason="STATUS_LIST_FULL",
    )


def _entry(session: Session, certificate_id: str, version: int) -> StatusEntry | None:
    row = session.execute(
        select(CredentialStatus.list_number, CredentialStatus.list_index).where(
            CredentialStatus.certificate_id == certificate_id, CredentialStatus.version == version
        )
    ).one_or_none()
    return None if row is None else StatusEntry(int(row[0]), int(row[1]))


def set_indices(
    session: Session, list_number: int, purpose: Purpose, *, distrusted: frozenset[str]
) -> list[int]:
    """Indices of ``list_number`` whose bit is set for ``purpose``: revocation, the
    certificate's lineage has a revocation; suspension, not revoked but signed by a
    department key now marked compromised."""
    rows = session.execute(
        select(CredentialStatus.list_index, Revocation.lineage, Certificate.key_id)
        .join(
            Certificate,
            (Certificate.certificate_id == CredentialStatus.certificate_id)
            & (Certificate.version == CredentialStatus.version),
        )
        .outerjoin(Revocation, Revocation.lineage == CredentialStatus.lineage)
        .where(CredentialStatus.list_number == list_number)
    ).all()
    if purpose is Purpose.REVOCATION:
        return [int(i) for i, revoked, _ in rows if revoked is not None]
    return [int(i) for i, revoked, key_id in rows if revoked is None and key_id in distrusted]


def list_exists(session: Session, list_number: int) -> bool:
    latest = session.execute(select(func.max(CredentialStatus.list_number))).scalar_one()
    return 1 <= list_number <= (latest or 1)
