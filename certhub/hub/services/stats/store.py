"""A period's figures counted in the database: cases registered, closed and served in the
period, by breakdown, with the exemption rate of the registry in force each month.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Sequence

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from certhub.hub.registry import Registry, parse_registry
from certhub.hub.services.cases import CST, MaterialSource, month_of
from certhub.hub.services.directory import compute_stats
from certhub.hub.services.stats.rules import (
    MAX_MONTHS,
    Breakdown,
    CaseGroup,
    NonExemptItem,
    PaperMaterial,
    PeriodStats,
    StatsQuery,
)
from certhub.hub.store.engine import stored_utc
from certhub.hub.store.models import Case, CaseFile, CaseMaterial, RegistryVersion


def _start_of(day: dt.date) -> dt.datetime:
    # In UTC: SQLite keeps the wall time of what it was given, and the hub writes UTC.
    return dt.datetime.combine(day, dt.time(), CST).astimezone(dt.UTC)


def compute(
    session: Session, registry: Registry, query: StatsQuery, *, now: dt.datetime
) -> PeriodStats:
    today = now.astimezone(CST).date()
    until = query.until or today
    in_period: list[ColumnElement[bool]] = [
        CaseFile.registered_at < _start_of(until + dt.timedelta(days=1))
    ]
    fetched_in_period: list[ColumnElement[bool]] = [
        Case.first_fetch_at < _start_of(until + dt.timedelta(days=1))
    ]
    if query.since is not None:
        in_period.append(CaseFile.registered_at >= _start_of(query.since))
        fetched_in_period.append(Case.first_fetch_at >= _start_of(query.since))

    base = compute_stats(session, registry)
    fetched, served = session.execute(
        select(
            func.count(), func.coalesce(func.sum(case((Case.served.is_(True), 1), else_=0)), 0)
        ).where(*fetched_in_period)
    ).one()
    base = dataclasses.replace(
        base, cases_fetched=int(fetched), cases_with_certificates=int(served)
    )

    totals = _groups(session, None, in_period)
    registered, closed, used = totals.get("", (0, 0, 0))
    breakdowns = []
    for by in query.by:
        if by is Breakdown.MONTH:
            groups = _months(session, in_period, query.since, until, now=now)
        else:
            column, labels = {
                Breakdown.DEPARTMENT: (
                    CaseFile.department_code,
                    {c: d.name for c, d in registry.departments.items()},
                ),
                Breakdown.SERVICE_ITEM: (
                    CaseFile.service_item_code,
                    {c: i.name for c, i in registry.service_items.items()},
                ),
                Breakdown.WINDOW: (CaseFile.window, {}),
            }[by]
            groups = tuple(
                CaseGroup(key, labels.get(key, key), *counts)
                for key, counts in sorted(_groups(session, column, in_period).items())
            )
        breakdowns.append((by, groups))
    return PeriodStats(
        base=base,
        since=query.since,
        until=until,
        cases_registered=registered,
        cases_closed=closed,
        cases_with_e_certificate=used,
        breakdowns=tuple(breakdowns),
        non_exempt=_non_exempt(session, registry, in_period),
    )


def _groups(
    session: Session,
    column: InstrumentedAttribute[str] | None,
    where: Sequence[ColumnElement[bool]],
) -> dict[str, tuple[int, int, int]]:
    counts = (
        func.count(),
        func.coalesce(func.sum(case((CaseFile.closed_at.is_not(None), 1), else_=0)), 0),
        func.coalesce(func.sum(case((CaseFile.used_e_certificate.is_(True), 1), else_=0)), 0),
    )
    if column is None:
        row = session.execute(select(*counts).where(*where)).one()
        return {"": (int(row[0]), int(row[1]), int(row[2]))}
    rows = session.execute(select(column, *counts).where(*where).group_by(column)).all()
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def _months(
    session: Session,
    where: Sequence[ColumnElement[bool]],
    since: dt.date | None,
    until: dt.date,
    *,
    now: dt.datetime,
) -> tuple[CaseGroup, ...]:
    counts = _groups(session, CaseFile.registered_month, where)
    if since is None:
        first = min(counts, default=month_of(_start_of(until)))
        start = dt.date.fromisoformat(first + "-01")
    else:
        start = since.replace(day=1)
    months: list[str] = []
    cursor = start
    while cursor <= until:
        months.append(cursor.strftime("%Y-%m"))
        cursor = (cursor + dt.timedelta(days=32)).replace(day=1)
    months = months[-MAX_MONTHS:]
    history = _registry_history(session)
    groups = []
    for month in months:
        year, number = int(month[:4]), int(month[5:])
        end = _start_of(dt.date(year + number // 12, number % 12 + 1, 1))
        in_force = [text for applied, text in history if applied <= min(end, now)]
        rate: float | None = None
        if in_force:
            items = _parsed(in_force[-1]).service_items.values()
            rate = sum(1 for i in items if i.exempt) / len(items) if items else 0.0
        groups.append(CaseGroup(month, month, *counts.get(month, (0, 0, 0)), rate))
    return tuple(groups)


def _registry_history(session: Session) -> list[tuple[dt.datetime, str]]:
    rows = session.execute(
        select(RegistryVersion.applied_at, RegistryVersion.text).order_by(
            RegistryVersion.applied_at, RegistryVersion.id
        )
    ).all()
    return [(stored_utc(applied), text) for applied, text in rows]


@functools.lru_cache(maxsize=16)
def _parsed(text: str) -> Registry:
    # A district applies a registry a few times a month; parsing each once per process is
    # enough, and 16 covers more than a year of monthly points at once.
    return parse_registry(text)


def _non_exempt(
    session: Session, registry: Registry, where: Sequence[ColumnElement[bool]]
) -> tuple[NonExemptItem, ...]:
    items = [i for i in registry.service_items.values() if not i.exempt]
    if not items:
        return ()
    codes = [i.code for i in items]
    registered = dict(
        session.execute(
            select(CaseFile.service_item_code, func.count())
            .where(*where, CaseFile.service_item_code.in_(codes))
            .group_by(CaseFile.service_item_code)
        ).all()
    )
    on_paper = {
        (str(item), str(material)): int(n)
        for item, material, n in session.execute(
            select(CaseFile.service_item_code, CaseMaterial.material_code, func.count())
            .join(CaseMaterial, CaseMaterial.case_number == CaseFile.case_number)
            .where(
                *where,
                CaseFile.service_item_code.in_(codes),
                CaseMaterial.source == str(MaterialSource.PAPER),
            )
            .group_by(CaseFile.service_item_code, CaseMaterial.material_code)
        ).all()
    }
    return tuple(
        NonExemptItem(
            code=item.code,
            name=item.name,
            paper_materials=tuple(
                PaperMaterial(m.code, m.name, on_paper.get((item.code, m.code), 0))
                for m in item.materials
                if m.paper_only
            ),
            cases_registered=int(registered.get(item.code, 0)),
        )
        for item in sorted(items, key=lambda i: i.code)
    )
