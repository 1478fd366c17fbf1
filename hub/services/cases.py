"""Cases (办件) as windows handle them: registered when accepted, closed with how each
required material was satisfied.

The reform's usage rate (电子应用率) divides the cases that used an e-certificate by every
case handled, including cases that never called the hub. Only the window knows those, so it
reports each case here; fetches name the same case number, which links them to it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hub.audit.entry import OK, Action
from hub.audit.redact import check_case_number, check_window
from hub.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from hub.registry import Principal, Registry, ServiceItem
from hub.services.intake import MAX_CASE_NUMBER_LENGTH, Purpose, check_purpose
from hub.store.models import AuditCertificate, AuditEntry, Case, CaseFile, CaseMaterial

# Certificates' dates and the reform's months are Chinese civil time.
CST = dt.timezone(dt.timedelta(hours=8), "CST")
# An acceptance point's name as printed on a service centre's signs ("鼓楼区行政服务中心
# 3号窗" is 13); 128 leaves room for a street office's full address and fits the column.
MAX_WINDOW_LENGTH = 128
# A certificate id named at close must fit the audit column that could have recorded it.
MAX_CERTIFICATE_ID_LENGTH = 160
# More materials than any service item declares (the demo's largest has 4, Gulou's 12):
# a longer list is a client bug, refused before it costs a query.
MAX_MATERIALS = 64


class Channel(StrEnum):
    """How the applicant came (受理渠道)."""

    WINDOW = "WINDOW"
    ONLINE = "ONLINE"
    SELF_SERVICE = "SELF_SERVICE"
    MOBILE = "MOBILE"


class MaterialSource(StrEnum):
    """How one material of a closed case was satisfied."""

    E_CERTIFICATE = "E_CERTIFICATE"
    PAPER = "PAPER"
    NOT_PROVIDED = "NOT_PROVIDED"


@dataclass(frozen=True, slots=True)
class RegisterInput:
    case_number: str
    service_item_code: str
    channel: str
    department_code: str
    window: str = ""


@dataclass(frozen=True, slots=True)
class MaterialUse:
    material_code: str
    source: str
    certificate_id: str = ""


@dataclass(frozen=True, slots=True)
class CloseInput:
    case_number: str
    materials: tuple[MaterialUse, ...]


@dataclass(frozen=True, slots=True)
class Registration:
    """A registration that passed every check that needs no database."""

    case_number: str
    item: ServiceItem
    channel: Channel
    department_code: str
    window: str
    principal: str


@dataclass(frozen=True, slots=True)
class Registered:
    case_number: str
    service_item_code: str
    created: bool


@dataclass(frozen=True, slots=True)
class Closed:
    case_number: str
    service_item_code: str
    used_e_certificate: bool
    # False for a retry of a close already recorded with the same materials.
    closed: bool


def month_of(t: dt.datetime) -> str:
    """The reform's month ("YYYY-MM", China Standard Time) of an instant."""
    return t.astimezone(CST).strftime("%Y-%m")


def check_register(registry: Registry, caller: Principal, request: RegisterInput) -> Registration:
    """Role, item and case number as for a fetch; then channel, department and window."""
    item = check_purpose(registry, caller, Purpose(request.service_item_code, request.case_number))
    try:
        channel = Channel(request.channel)
    except ValueError:
        raise InvalidArgument.field(
            "channel",
            f"must be one of {', '.join(Channel)}, got {request.channel!r}",
            reason="BAD_CHANNEL",
        ) from None
    if request.department_code not in registry.departments:
        raise InvalidArgument.field(
            "department_code",
            f"{request.department_code!r} is not a registry department code",
            reason="UNKNOWN_DEPARTMENT",
        )
    window = request.window or caller.name
    if len(window) > MAX_WINDOW_LENGTH or not window.isprintable() or window != window.strip():
        raise InvalidArgument.field(
            "window",
            f"must be at most {MAX_WINDOW_LENGTH} printable characters without surrounding spaces",
            reason="BAD_WINDOW",
        )
    check_window(window)
    return Registration(
        case_number=request.case_number,
        item=item,
        channel=channel,
        department_code=request.department_code,
        window=window,
        principal=caller.name,
    )


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


def check_close(request: CloseInput) -> None:
    """What can be checked without the database: the case number and the material list."""
    case = request.case_number
    if not case.strip():
        raise InvalidArgument.field("case_number", "is required", reason="MISSING_CASE")
    if len(case) > MAX_CASE_NUMBER_LENGTH or not case.isprintable() or case != case.strip():
        raise InvalidArgument.field(
            "case_number",
            f"must be at most {MAX_CASE_NUMBER_LENGTH} printable characters without "
            "surrounding spaces",
            reason="BAD_CASE_NUMBER",
        )
    check_case_number(case)
    if len(request.materials) > MAX_MATERIALS:
        raise InvalidArgument.field(
            "materials",
            f"lists {len(request.materials)} materials; at most {MAX_MATERIALS}",
            reason="TOO_MANY_MATERIALS",
        )
    violations: list[FieldViolation] = []
    seen: set[str] = set()
    for i, use in enumerate(request.materials):
        where = f"materials[{i}]"
        if use.material_code in seen:
            violations.append(
                FieldViolation(f"{where}.material_code", f"{use.material_code!r} is listed twice")
            )
        seen.add(use.material_code)
        if use.source not in set(MaterialSource):
            violations.append(
                FieldViolation(
                    f"{where}.source",
                    f"must be one of {', '.join(MaterialSource)}, got {use.source!r}",
                )
            )
        elif use.certificate_id and use.source != MaterialSource.E_CERTIFICATE:
            violations.append(
                FieldViolation(f"{where}.certificate_id", "is only given with source E_CERTIFICATE")
            )
        if len(use.certificate_id) > MAX_CERTIFICATE_ID_LENGTH:
            violations.append(
                FieldViolation(
                    f"{where}.certificate_id",
                    f"is longer than {MAX_CERTIFICATE_ID_LENGTH} characters",
                )
            )
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="BAD_MATERIALS",
            violations=tuple(violations),
        )


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
    _check_materials(item, request.materials)
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


def _check_materials(item: ServiceItem, uses: Sequence[MaterialUse]) -> None:
    declared = {m.code: m for m in item.materials}
    violations: list[FieldViolation] = []
    for i, use in enumerate(uses):
        material = declared.get(use.material_code)
        if material is None:
            violations.append(
                FieldViolation(
                    f"materials[{i}].material_code",
                    f"{use.material_code!r} is not a material of service item {item.code}",
                )
            )
        elif material.paper_only and use.source == MaterialSource.E_CERTIFICATE:
            violations.append(
                FieldViolation(
                    f"materials[{i}].source",
                    f"material {material.code} ({material.name}) has no certificate type: it "
                    "cannot come as an e-certificate",
                )
            )
    missing = [code for code in declared if code not in {u.material_code for u in uses}]
    if missing:
        violations.append(
            FieldViolation(
                "materials",
                f"misses material(s) {', '.join(missing)} of service item {item.code}: list "
                "every material, NOT_PROVIDED for those that did not come",
            )
        )
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="BAD_MATERIALS",
            violations=tuple(violations),
        )


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
