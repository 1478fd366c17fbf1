"""The DirectoryService's lookups over a registry snapshot, and the shape of a district's KPIs:
no database. A code or kind the registry does not know is refused here, by name; ``Hub``
audits the refusal.
"""

from __future__ import annotations

from dataclasses import dataclass

from certhub.hub.domain.certificate import CertificateKind
from certhub.hub.errors import InvalidArgument, NotFound
from certhub.hub.registry import CertificateType, Department, Registry, ServiceItem


def issuer_departments(registry: Registry, department_code: str) -> list[Department]:
    """Every department in code order, or the one ``department_code`` names."""
    departments = registry.departments
    if not department_code:
        return [departments[c] for c in sorted(departments)]
    department = departments.get(department_code)
    if department is None:
        raise NotFound(
            f"department {department_code} is not in the registry", reason="UNKNOWN_DEPARTMENT"
        )
    return [department]


def certificate_types(registry: Registry, kind: str) -> list[CertificateType]:
    """The registry's certificate types in code order, only those of ``kind`` when it is not
    empty (a ``CertificateKind`` name; the edge passes an unknown enum number as its digits)."""
    wanted = None
    if kind:
        if kind not in CertificateKind.__members__:
            raise InvalidArgument.field("kind", f"unknown kind {kind}", reason="UNKNOWN_KIND")
        wanted = CertificateKind(kind)
    types = registry.types
    return [types[c] for c in sorted(types) if wanted is None or types[c].kind is wanted]


def service_item(registry: Registry, code: str) -> ServiceItem:
    item = registry.service_items.get(code)
    if item is None:
        raise NotFound(
            f"service item {code!r} is not in the registry", reason="UNKNOWN_SERVICE_ITEM"
        )
    return item


@dataclass(frozen=True, slots=True)
class Stats:
    certificates_by_kind: dict[str, int]
    certificates_by_department: dict[str, int]
    types_by_kind: dict[str, int]
    service_items: int
    exempt_service_items: int
    cases_fetched: int
    cases_with_certificates: int
    paper_materials: int
    #: The registry's ``accept_legacy_uscc`` in force, and the stored certificates (current
    #: versions) whose holder's USCC was admitted only under it (flagged at push).
    accept_legacy_uscc: bool = False
    legacy_uscc_certificates: int = 0

    @property
    def certificates_total(self) -> int:
        return sum(self.certificates_by_kind.values())

    @property
    def exemption_rate(self) -> float:
        return self.exempt_service_items / self.service_items if self.service_items else 0.0

    @property
    def usage_rate(self) -> float:
        return self.cases_with_certificates / self.cases_fetched if self.cases_fetched else 0.0

    @property
    def paper_materials_per_item(self) -> float:
        return self.paper_materials / self.service_items if self.service_items else 0.0
