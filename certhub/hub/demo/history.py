"""Months of a district's past cases for the demo, so the console's charts have a trend.

A district that adopts the hub brings its platform's earlier records: the cases its windows
registered and closed, and the registries it applied as departments joined. The demo writes
such a history straight into the database (a data migration, not calls: these rows have no
audit entries), then handles the current month's cases live through the hub.

The figures are shaped like the Gulou reform's: about 240 cases a month (12 months ~ 2,880
cases, the reform counted 2,864), the share closed with an e-certificate rising from 70% to
90%, ~80% over the year (the reform reported 80.97%), and items turning exempt as
registries add types.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from dataclasses import dataclass

from sqlalchemy.orm import Session

from certhub.hub.demo.world import DemoItem, DemoWorld
from certhub.hub.services.cases import CST, Channel, MaterialSource, month_of
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store.models import Case, CaseFile, CaseMaterial

# Cases a month: Gulou's 2,864 platform cases over a year are ~240 a month.
CASES_PER_MONTH = 240
# The share of cases closed with an e-certificate in the first and the last month of the
# history: the reform's usage climbed over its first year to the 80.97% it reported.
USAGE_FIRST, USAGE_LAST = 0.70, 0.90
# Cases still open at the end of the month they were registered in (the rest are closed).
OPEN_SHARE = 0.03
# Cases that did not use an e-certificate but still fetched (the applicant's certificate
# was not in the hub yet): what makes the fetch-based rate differ from the reform's.
FETCHED_UNUSED_SHARE = 0.5
# Acceptance points of the demo district (受理窗口), with the channel each one takes.
WINDOWS: tuple[tuple[str, Channel], ...] = (
    ("鼓楼区行政服务中心 1号窗", Channel.WINDOW),
    ("鼓楼区行政服务中心 2号窗", Channel.WINDOW),
    ("鼓楼区行政服务中心 3号窗", Channel.WINDOW),
    ("温泉街道便民服务中心", Channel.WINDOW),
    ("自助终端 东街口", Channel.SELF_SERVICE),
    ("闽政通 掌上办", Channel.MOBILE),
    ("网上办事大厅", Channel.ONLINE),
)
# The principal the history's cases are recorded under: the district centre's intake system.
HISTORY_PRINCIPAL = "gulou-service-centre"


@dataclass(frozen=True, slots=True)
class History:
    months: int
    cases: int
    with_e_certificate: int
    registries: int


def handling_department(world: DemoWorld, item: DemoItem) -> str:
    """The department that handles an item's cases: the issuer of its first material's
    certificate type (the licensing department), else the first department."""
    for _, _, types in item.materials:
        if types:
            return world.types[types[0]].issuer
    return next(iter(world.departments))


def month_starts(now: dt.datetime, months: int) -> list[dt.datetime]:
    """The first instant (CST) of each of the ``months`` months before ``now``'s month."""
    first = now.astimezone(CST).date().replace(day=1)
    starts = []
    for _ in range(months):
        first = (first - dt.timedelta(days=1)).replace(day=1)
        starts.append(dt.datetime.combine(first, dt.time(), CST))
    return starts[::-1]


def earlier_worlds(world: DemoWorld, steps: int) -> list[DemoWorld]:
    """``steps`` earlier registries, oldest first: in each, some exempt items still had a
    material with no certificate type (the types that satisfy it joined later)."""
    exempt = [code for code, i in world.items.items() if all(m[2] for m in i.materials)]
    worlds = []
    for step in range(steps, 0, -1):
        degraded = set(exempt[:step])
        items = {
            code: dataclasses.replace(
                item, materials=(*item.materials[:-1], (*item.materials[-1][:2], ()))
            )
            if code in degraded
            else item
            for code, item in world.items.items()
        }
        worlds.append(dataclasses.replace(world, items=items))
    return worlds


def backfill(
    session: Session, world: DemoWorld, *, months: int, now: dt.datetime, seed: int = 2026
) -> History:
    """Write ``months`` months of registries and cases before ``now``'s month."""
    rng = random.Random(seed)  # noqa: S311 - demo data, reproducible by design
    starts = month_starts(now, months)
    if not starts:
        return History(0, 0, 0, 0)
    versions = earlier_worlds(world, min(3, months))
    # Registries applied at the start of the history and then every few months.
    for n, older in enumerate(versions):
        applied = starts[n * len(starts) // len(versions)] + dt.timedelta(days=2)
        apply_registry(session, older.registry_toml(), now=applied.astimezone(dt.UTC))
    items = list(world.items.values())
    total = used_total = 0
    for m, start in enumerate(starts):
        share = USAGE_FIRST + (USAGE_LAST - USAGE_FIRST) * m / max(1, len(starts) - 1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        seconds = int((end - start).total_seconds())
        for n in range(CASES_PER_MONTH):
            item = items[rng.randrange(len(items))]
            window, channel = WINDOWS[rng.randrange(len(WINDOWS))]
            registered = start + dt.timedelta(seconds=rng.randrange(seconds))
            number = f"GL-{month_of(registered).replace('-', '')}-{n + 1:05d}"
            closed = rng.random() >= OPEN_SHARE
            used = closed and rng.random() < share
            session.add(
                CaseFile(
                    case_number=number,
                    service_item_code=item.code,
                    department_code=handling_department(world, item),
                    window=window,
                    channel=str(channel),
                    principal=HISTORY_PRINCIPAL,
                    registered_at=registered.astimezone(dt.UTC),
                    registered_month=month_of(registered),
                    closed_at=(registered + dt.timedelta(days=3)).astimezone(dt.UTC)
                    if closed
                    else None,
                    used_e_certificate=used if closed else None,
                )
            )
            # Windows fetch for most cases; a fetch serves something when the case used it.
            if used or rng.random() < FETCHED_UNUSED_SHARE:
                session.add(
                    Case(
                        case_number=number,
                        service_item_code=item.code,
                        first_fetch_at=registered.astimezone(dt.UTC),
                        served=used,
                    )
                )
            if closed:
                session.add_all(
                    CaseMaterial(
                        case_number=number,
                        material_code=code,
                        source=str(
                            MaterialSource.E_CERTIFICATE if used and types else MaterialSource.PAPER
                        ),
                    )
                    for code, _, types in item.materials
                )
            total += 1
            used_total += used
        session.flush()
    return History(len(starts), total, used_total, len(versions))
