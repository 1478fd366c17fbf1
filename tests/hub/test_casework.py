"""Cases registered and closed through the hub's committer, and the period KPIs over them,
on a real hub (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from support.casework import SyncCasework
from support.hubs import RunningHub
from support.intake import WINDOW, push_licence

from certhub.hub.audit.entry import Action
from certhub.hub.demo.world import DemoWorld
from certhub.hub.errors import (
    AlreadyExists,
    FailedPrecondition,
    HubError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from certhub.hub.registry import Principal
from certhub.hub.services import intake, stats
from certhub.hub.services.cases import CloseInput, MaterialUse, RegisterInput
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.store.models import AuditEntry, CaseFile, CaseMaterial, RegistryVersion

HEALTH_ITEM = "公共场所卫生许可（新办）"  # 营业执照 + 负责人身份证明, both by e-certificate
PAPER_ITEM = "建筑工程施工许可"  # 营业执照 + two paper-only materials


def _principal(running: RunningHub, name: str) -> Principal:
    return running.hub.registry().principals[name]


def _entry(running: RunningHub, index: int) -> AuditEntry:
    with Session(running.engine) as session:
        row = session.get(AuditEntry, index)
        assert row is not None
        session.expunge(row)
        return row


def _count(running: RunningHub, model: type[CaseFile] | type[CaseMaterial]) -> int:
    with Session(running.engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _register(
    work: SyncCasework, running: RunningHub, case: str, item_name: str, *, window: str = ""
) -> int:
    world = running.world
    item = world.item_by_name(item_name)
    department = next(iter(world.departments))
    out = work.register_case(
        _principal(running, WINDOW),
        RegisterInput(case, item.code, "WINDOW", department, window),
    )
    return out.audit_index


def _uses(world: DemoWorld, item_name: str, source: str) -> tuple[MaterialUse, ...]:
    item = world.item_by_name(item_name)
    return tuple(
        MaterialUse(code, "PAPER" if not types else source) for code, _, types in item.materials
    )


def test_register_is_audited_idempotent_and_refuses_a_conflicting_retry(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    work = SyncCasework(running_hub)
    index = _register(work, running_hub, "GL-C-1", HEALTH_ITEM)
    entry = _entry(running_hub, index)
    assert (entry.action, entry.outcome, entry.case_number, entry.principal) == (
        str(Action.REGISTER_CASE),
        "ok",
        "GL-C-1",
        WINDOW,
    )
    item = world.item_by_name(HEALTH_ITEM)
    department = next(iter(world.departments))
    again = work.register_case(
        _principal(running_hub, WINDOW), RegisterInput("GL-C-1", item.code, "WINDOW", department)
    )
    assert again.registered.created is False
    with pytest.raises(AlreadyExists, match="already registered") as raised:
        work.register_case(
            _principal(running_hub, WINDOW),
            RegisterInput("GL-C-1", item.code, "ONLINE", department),
        )
    assert raised.value.audit_index is not None
    assert _entry(running_hub, raised.value.audit_index).outcome == "ALREADY_EXISTS"
    assert _count(running_hub, CaseFile) == 1


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        ({"channel": "FAX"}, InvalidArgument, "channel"),
        ({"department_code": "nope"}, InvalidArgument, "department_code"),
        ({"window": " padded "}, InvalidArgument, "window"),
        ({"case_number": ""}, InvalidArgument, "case_number"),
        ({"service_item_code": "350102-0099"}, PermissionDenied, None),
    ],
)
def test_bad_registrations_name_the_problem_and_store_nothing(
    running_hub: RunningHub,
    world: DemoWorld,
    change: dict[str, str],
    error: type[HubError],
    field: str | None,
) -> None:
    item = world.item_by_name(HEALTH_ITEM)
    fields = {
        "case_number": "GL-C-2",
        "service_item_code": item.code,
        "channel": "WINDOW",
        "department_code": next(iter(world.departments)),
        "window": "",
    } | change
    work = SyncCasework(running_hub)
    with pytest.raises(error) as raised:
        work.register_case(_principal(running_hub, WINDOW), RegisterInput(**fields))
    if field is not None:
        assert isinstance(raised.value, InvalidArgument)
        assert [v.field for v in raised.value.violations] == [field]
    assert raised.value.audit_index is not None
    assert _entry(running_hub, raised.value.audit_index).outcome == raised.value.status_name
    assert _count(running_hub, CaseFile) == 0


def test_a_department_cannot_register_a_case(running_hub: RunningHub, world: DemoWorld) -> None:
    department = next(iter(world.departments.values()))
    item = world.item_by_name(HEALTH_ITEM)
    with pytest.raises(PermissionDenied, match="role"):
        SyncCasework(running_hub).register_case(
            _principal(running_hub, department.principal),
            RegisterInput("GL-C-3", item.code, "WINDOW", department.code),
        )


def test_close_links_e_certificates_to_the_case_fetches(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    work = SyncCasework(running_hub)
    window = _principal(running_hub, WINDOW)
    pushed = push_licence(running_hub, world, 7)
    _register(work, running_hub, "GL-C-4", HEALTH_ITEM)
    all_e = CloseInput("GL-C-4", _uses(world, HEALTH_ITEM, "E_CERTIFICATE"))
    # No fetch yet: nothing links an e-certificate to this case.
    with pytest.raises(FailedPrecondition, match="no fetch for case GL-C-4"):
        work.close_case(window, all_e)
    running_hub.run(
        running_hub.hub.fetch(
            window,
            intake.FetchInput("USCC", pushed.holder_id, intake.Purpose(pushed.item_code, "GL-C-4")),
        )
    )
    wrong = CloseInput(
        "GL-C-4",
        (MaterialUse("M01", "E_CERTIFICATE", "not-served-here"), MaterialUse("M02", "PAPER")),
    )
    with pytest.raises(FailedPrecondition, match="not-served-here was not served"):
        work.close_case(window, wrong)
    right = CloseInput(
        "GL-C-4",
        (MaterialUse("M01", "E_CERTIFICATE", pushed.certificate_id), MaterialUse("M02", "PAPER")),
    )
    closed = work.close_case(window, right)
    assert closed.closed.used_e_certificate is True
    entry = _entry(running_hub, closed.audit_index)
    assert (entry.action, entry.case_number, entry.service_item_code) == (
        str(Action.CLOSE_CASE),
        "GL-C-4",
        pushed.item_code,
    )
    # A retry is answered the same; a different closure is refused.
    assert work.close_case(window, right).closed.closed is False
    with pytest.raises(FailedPrecondition, match="already closed"):
        work.close_case(window, CloseInput("GL-C-4", _uses(world, HEALTH_ITEM, "PAPER")))
    with Session(running_hub.engine) as session:
        stored = {m.material_code: m.source for m in session.scalars(select(CaseMaterial))}
    assert stored == {"M01": "E_CERTIFICATE", "M02": "PAPER"}


def test_close_refuses_incomplete_or_impossible_materials(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    work = SyncCasework(running_hub)
    window = _principal(running_hub, WINDOW)
    _register(work, running_hub, "GL-C-5", PAPER_ITEM)
    with pytest.raises(InvalidArgument, match="misses material") as raised:
        work.close_case(window, CloseInput("GL-C-5", (MaterialUse("M01", "PAPER"),)))
    assert [v.field for v in raised.value.violations] == ["materials"]
    impossible = (
        MaterialUse("M01", "PAPER"),
        MaterialUse("M02", "E_CERTIFICATE"),
        MaterialUse("M03", "PAPER"),
    )
    with pytest.raises(InvalidArgument, match="cannot come as an e-certificate"):
        work.close_case(window, CloseInput("GL-C-5", impossible))
    twice = (MaterialUse("M01", "PAPER"), MaterialUse("M01", "PAPER"))
    with pytest.raises(InvalidArgument, match="listed twice"):
        work.close_case(window, CloseInput("GL-C-5", twice))
    with pytest.raises(NotFound, match="not registered by"):
        work.close_case(
            _principal(running_hub, "wenquan-street-office"),
            CloseInput("GL-C-5", _uses(world, PAPER_ITEM, "PAPER")),
        )
    assert _count(running_hub, CaseMaterial) == 0
    closed = work.close_case(window, CloseInput("GL-C-5", _uses(world, PAPER_ITEM, "PAPER")))
    assert closed.closed.used_e_certificate is False


def test_period_stats_count_every_case_handled(running_hub: RunningHub, world: DemoWorld) -> None:
    """Four cases in two months: one used an e-certificate, one closed on paper, two open.
    The usage rate is 1 of 4 registered, whatever the fetch-based figure says."""
    hub = running_hub.hub
    work = SyncCasework(running_hub)
    window = _principal(running_hub, WINDOW)
    pushed = push_licence(running_hub, world, 8)
    march = dt.datetime(2026, 3, 10, 2, tzinfo=dt.UTC)
    april = dt.datetime(2026, 4, 2, 2, tzinfo=dt.UTC)
    real_clock = hub.clock
    try:
        hub.clock = lambda: march
        _register(work, running_hub, "GL-S-1", HEALTH_ITEM, window="3号窗")
        _register(work, running_hub, "GL-S-2", PAPER_ITEM, window="3号窗")
        hub.clock = lambda: april
        _register(work, running_hub, "GL-S-3", HEALTH_ITEM, window="5号窗")
        _register(work, running_hub, "GL-S-4", PAPER_ITEM, window="5号窗")
        running_hub.run(
            hub.fetch(
                window,
                intake.FetchInput(
                    "USCC", pushed.holder_id, intake.Purpose(pushed.item_code, "GL-S-1")
                ),
            )
        )
        work.close_case(
            window,
            CloseInput(
                "GL-S-1", (MaterialUse("M01", "E_CERTIFICATE"), MaterialUse("M02", "PAPER"))
            ),
        )
        work.close_case(window, CloseInput("GL-S-2", _uses(world, PAPER_ITEM, "PAPER")))
    finally:
        hub.clock = real_clock
    query = stats.parse_query("2026-03-01", "2026-04-30", ["MONTH", "WINDOW", "SERVICE_ITEM"])
    result = work.period_stats(query)
    assert (result.cases_registered, result.cases_closed, result.cases_with_e_certificate) == (
        4,
        2,
        1,
    )
    assert result.case_usage_rate == pytest.approx(0.25)
    assert result.base.cases_fetched == 1  # only the fetch-based figure reaches the hub
    months = result.breakdown(stats.Breakdown.MONTH)
    assert [(g.key, g.registered, g.with_e_certificate) for g in months] == [
        ("2026-03", 2, 1),
        ("2026-04", 2, 0),
    ]
    items = world.items.values()
    exempt = sum(1 for i in items if all(m[2] for m in i.materials))
    # The registry was applied when the test started (after April 2026): no rate before it.
    assert all(g.exemption_rate is None for g in months) or all(
        g.exemption_rate == pytest.approx(exempt / len(world.items)) for g in months
    )
    windows = {g.key: g.registered for g in result.breakdown(stats.Breakdown.WINDOW)}
    assert windows == {"3号窗": 2, "5号窗": 2}
    by_item = {g.key: g for g in result.breakdown(stats.Breakdown.SERVICE_ITEM)}
    assert by_item[pushed.item_code].label == HEALTH_ITEM
    assert by_item[pushed.item_code].usage_rate == pytest.approx(0.5)
    [paper_item] = [i for i in result.non_exempt if i.name == PAPER_ITEM]
    assert paper_item.cases_registered == 2
    assert [(m.name, m.cases_on_paper) for m in paper_item.paper_materials] == [
        ("建设工程规划许可证", 1),
        ("施工合同", 1),
    ]
    only_april = work.period_stats(stats.parse_query("2026-04-01", "", []))
    assert (only_april.cases_registered, only_april.cases_with_e_certificate) == (2, 0)


def test_monthly_exemption_follows_the_registry_history(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    """The demo registry in force from January, one where every paper material accepts the
    business licence applied in May: the monthly rate changes at May's point."""
    text = world.registry_toml()
    licence = world.type_by_name("营业执照").code
    improved = text.replace("types = []", f'types = ["{licence}"]')
    assert improved != text, "the demo registry's layout changed: adjust this test"
    sessions = make_session_factory(running_hub.engine)
    with session_scope(sessions, write=True) as session:
        session.execute(
            update(RegistryVersion).values(applied_at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC))
        )
        apply_registry(session, improved, now=dt.datetime(2026, 5, 3, tzinfo=dt.UTC))
    running_hub.hub.registry_source.refresh()
    result = SyncCasework(running_hub).period_stats(
        stats.parse_query("2026-03-01", "2026-06-30", ["MONTH"])
    )
    rates = [g.exemption_rate for g in result.breakdown(stats.Breakdown.MONTH)]
    n = len(world.items)
    before = sum(1 for i in world.items.values() if all(m[2] for m in i.materials))
    assert before < n
    assert rates == pytest.approx([before / n, before / n, 1.0, 1.0])
    assert result.non_exempt == ()


@pytest.mark.parametrize(
    ("since", "until", "by", "field"),
    [
        ("2026-13-01", "", [], "since"),
        ("", "yesterday", [], "until"),
        ("2026-05-01", "2026-04-01", [], "until"),
        ("", "", ["YEAR"], "by[0]"),
        ("", "", ["MONTH", "MONTH"], "by[1]"),
    ],
)
def test_bad_stats_queries_name_the_field(
    since: str, until: str, by: list[str], field: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        stats.parse_query(since, until, by)
    assert [v.field for v in raised.value.violations] == [field]


def test_the_period_and_the_months_are_china_standard_time(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    """20:00 UTC on 31 March is 04:00 on 1 April in Fuzhou: an April case, in both the
    period filter and the monthly breakdown."""
    hub = running_hub.hub
    work = SyncCasework(running_hub)
    real_clock = hub.clock
    try:
        hub.clock = lambda: dt.datetime(2026, 3, 31, 20, tzinfo=dt.UTC)
        _register(work, running_hub, "GL-T-1", HEALTH_ITEM)
    finally:
        hub.clock = real_clock
    march = work.period_stats(stats.parse_query("2026-03-01", "2026-03-31", ["MONTH"]))
    april = work.period_stats(stats.parse_query("2026-04-01", "2026-04-30", ["MONTH"]))
    assert (march.cases_registered, april.cases_registered) == (0, 1)
    assert [(g.key, g.registered) for g in april.breakdown(stats.Breakdown.MONTH)] == [
        ("2026-04", 1)
    ]
