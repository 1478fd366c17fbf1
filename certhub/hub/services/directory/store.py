"""A district's KPIs counted from the data: current certificate versions, the registry and
fetched cases.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from certhub.hub.registry import Registry
from certhub.hub.services.directory.rules import Stats
from certhub.hub.store.models import Case, Certificate


def compute_stats(session: Session, registry: Registry) -> Stats:
    """KPIs from the data: current certificate versions, the registry and fetched cases."""
    by_kind: dict[str, int] = dict(
        session.execute(
            select(Certificate.kind, func.count())
            .where(Certificate.is_current.is_(True))
            .group_by(Certificate.kind)
        ).all()
    )
    by_department: dict[str, int] = dict(
        session.execute(
            select(Certificate.issuer_code, func.count())
            .where(Certificate.is_current.is_(True))
            .group_by(Certificate.issuer_code)
        ).all()
    )
    legacy = session.execute(
        select(func.count()).where(
            Certificate.is_current.is_(True), Certificate.legacy_uscc.is_(True)
        )
    ).scalar_one()
    cases, served = session.execute(
        select(func.count(), func.coalesce(func.sum(case((Case.served.is_(True), 1), else_=0)), 0))
    ).one()
    items = registry.service_items.values()
    return Stats(
        certificates_by_kind={str(k): int(v) for k, v in by_kind.items()},
        certificates_by_department={str(k): int(v) for k, v in by_department.items()},
        types_by_kind=dict(Counter(str(t.kind) for t in registry.types.values())),
        service_items=len(registry.service_items),
        exempt_service_items=sum(1 for i in items if i.exempt),
        cases_fetched=int(cases),
        cases_with_certificates=int(served),
        paper_materials=sum(1 for i in items for m in i.materials if m.paper_only),
        accept_legacy_uscc=registry.settings.accept_legacy_uscc,
        legacy_uscc_certificates=int(legacy),
    )
