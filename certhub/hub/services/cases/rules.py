"""The rules of cases (办件) as windows register and close them, with no database: the
channel, department, window and case number of a registration, and the material list of a
close against the service item's materials.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from certhub.hub.audit.redact import check_case_number, check_window
from certhub.hub.domain.status import CST
from certhub.hub.errors import (
    FieldViolation,
    InvalidArgument,
)
from certhub.hub.registry import Principal, Registry, ServiceItem
from certhub.hub.services.intake.rules import MAX_CASE_NUMBER_LENGTH, Purpose, check_purpose

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


def check_materials(item: ServiceItem, uses: Sequence[MaterialUse]) -> None:
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
