"""Cases registered and closed in the database: a registration's insert (a retry is no
error), a close's materials, and whether a fetch of the case served what it names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from certhub.hub.audit.entry import OK, Action
from certhub.hub.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
)
from certhub.hub.registry import Principal, Registry
from certhub.hub.services.cases.rules import (
    Closed,
    CloseInput,
    MaterialSource,
    MaterialUse,
    Registered,
    Registration,
    check_close,
    check_materials,
    month_of,
)
from certhub.hub.store.models import AuditCertificate, AuditEntry, Case, CaseFile, CaseMaterial


def register_case(session: Session, registration: Registration, *, now: dt.datetime) -> Registered:
    """Insert the case; the same registration again is a retry (created False), a different
    one under the same number is ALREADY_EXISTS."""
    values = {
        "case_number": registration.case_number,
        "service_item_code": registration.item.code,
        "department_code": registration.department_code,
        "window": registration.window,
        "channel": str(registration.channel),
        "principal": registration.principal,
        "registered_at": now,
        "registered_month": month_of(now),
    }
    table = cast("Table", CaseFile.__table__)
    insert = (
        postgresql.insert(table)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(table)
    )
    # DO NOTHING rather than a check-then-insert: two hub processes registering the same
    # case at once must not fail a whole group commit on the primary key.
    created = session.execute(
        insert.values(values)
        .on_conflict_do_nothing(index_elements=["case_number"])
        .returning(table.c.case_number)
    ).first()
    if created is not None:
        return Registered(registration.case_number, registration.item.code, created=True)
    row = session.get(CaseFile, registration.case_number)
    assert row is not None
    same = (
        row.service_item_code,
        row.department_code,
        row.window,
        row.channel,
        row.principal,
    ) == (
        values["service_item_code"],
        values["department_code"],
        values["window"],
        values["channel"],
        values["principal"],
    )
    if not same:
        raise AlreadyExists(
            f"case {registration.case_number} is already registered with other details "
            f"(service item {row.service_item_code}, window {row.window!r})",
            reason="CASE_EXISTS",
        )
    return Registered(registration.case_number, registration.item.code, created=False)


def close_case(
    session: Session,
    registry: Registry,
    caller: Principal,
    request: CloseInput,
    *,
    now: dt.datetime,
) -> Closed:
    """Record how each material came. Every material of the item exactly once; an
    e-certificate only where types can satisfy the material and a fetch of this case served
    one (the fetch's audit entry names the case, which is the link)."""
    check_close(request)
    row = session.get(CaseFile, request.case_number)
    if row is None or row.principal != caller.name:
        # The same answer for "no such case" and "another window's case": no oracle.
        raise NotFound(
            f"case {request.case_number} was not registered by {caller.name!r}",
            reason="CASE_NOT_FOUND",
        )
    item = registry.service_items.get(row.service_item_code)
    if item is None:
        raise FailedPrecondition(
            f"service item {row.service_item_code} of case {row.case_number} is no longer in "
            "the registry",
            reason="UNKNOWN_SERVICE_ITEM",
        )
    uses = {use.material_code: use for use in request.materials}
    check_materials(item, request.materials)
    e_uses = [u for u in request.materials if u.source == MaterialSource.E_CERTIFICATE]
    if e_uses:
        _check_fetched(session, row.case_number, e_uses)
    used = bool(e_uses)
    if row.closed_at is not None:
        stored = {
            m.material_code: (m.source, m.certificate_id or "")
            for m in session.scalars(
                select(CaseMaterial).where(CaseMaterial.case_number == row.case_number)
            )
        }
        if stored == {c: (u.source, u.certificate_id) for c, u in uses.items()}:
            return Closed(row.case_number, item.code, bool(row.used_e_certificate), closed=False)
        raise FailedPrecondition(
            f"case {row.case_number} is already closed with other materials",
            reason="CASE_CLOSED",
        )
    session.add_all(
        CaseMaterial(
            case_number=row.case_number,
            material_code=use.material_code,
            source=use.source,
            certificate_id=use.certificate_id or None,
        )
        for use in request.materials
    )
    row.closed_at = now
    row.used_e_certificate = used
    session.flush()
    return Closed(row.case_number, item.code, used, closed=True)


def _check_fetched(session: Session, case_number: str, uses: Sequence[MaterialUse]) -> None:
    served = session.scalar(select(Case.served).where(Case.case_number == case_number))
    if not served:
        raise FailedPrecondition(
            f"no fetch for case {case_number} served an e-certificate; material "
            f"{uses[0].material_code} cannot be closed as E_CERTIFICATE",
            reason="CASE_NOT_SERVED",
        )
    named = {u.certificate_id for u in uses if u.certificate_id}
    if not named:
        return
    found = set(
        session.scalars(
            select(AuditCertificate.certificate_id)
            .join(AuditEntry, AuditEntry.idx == AuditCertificate.idx)
            .where(
                AuditCertificate.certificate_id.in_(named),
                AuditEntry.case_number == case_number,
                AuditEntry.action.in_([str(Action.FETCH), str(Action.GET)]),
                AuditEntry.outcome == OK,
            )
        )
    )
    for use in uses:
        if use.certificate_id and use.certificate_id not in found:
            raise FailedPrecondition(
                f"certificate {use.certificate_id} was not served for case {case_number}",
                reason="CERTIFICATE_NOT_SERVED",
            )
