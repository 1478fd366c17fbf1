"""`certhub stats`: the district's KPI report from the data, as a table and as JSON."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from support.casework import SyncCasework
from support.hubs import RunningHub
from support.intake import WINDOW, push_licence

from certhub.hub.cli.main import main
from certhub.hub.demo.world import DemoWorld
from certhub.hub.services import stats
from certhub.hub.services.cases import CloseInput, MaterialUse, RegisterInput


def _stats(running: RunningHub, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    url = running.engine.url.render_as_string(hide_password=False)
    status = main(["stats", "--data-dir", str(running.config.data_dir), "--db", url, *args])
    assert status == 0
    return capsys.readouterr().out


def test_stats_report_matches_the_registry_and_the_cases(
    running_hub: RunningHub, world: DemoWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    pushed = push_licence(running_hub, world, 71)
    with running_hub.client(WINDOW) as window:
        for case, item in (
            ("GL-S-1", pushed.item_code),
            ("GL-S-2", world.item_by_name("生育登记服务").code),  # nothing for an enterprise
        ):
            window.fetch(
                id_type="USCC", holder_id=pushed.holder_id, service_item=item, case_number=case
            )
    report = json.loads(_stats(running_hub, capsys, "--json"))

    items = list(world.items.values())
    exempt = [i for i in items if all(types for _, _, types in i.materials)]
    paper = sum(1 for i in items for _, _, types in i.materials if not types)
    licence_issuer = world.type_by_name("营业执照").issuer
    kinds: dict[str, int] = {}
    for t in world.types.values():
        kinds[t.kind.value] = kinds.get(t.kind.value, 0) + 1
    assert report["certificates_total"] == 1
    assert report["certificates_by_kind"] == {"LICENCE": 1}
    assert report["certificates_by_department"] == {licence_issuer: 1}
    # Codes come with their registry names (issue 15, item 9).
    assert report["department_names"] == {
        code: d.name for code, d in sorted(world.departments.items())
    }
    assert report["department_names"][licence_issuer] == "福州市鼓楼区市场监督管理局"
    assert report["types_by_kind"] == kinds
    assert report["service_items"] == len(items)
    assert report["exempt_service_items"] == len(exempt)
    assert report["exemption_rate"] == round(len(exempt) / len(items), 4)
    assert report["paper_materials_per_item"] == round(paper / len(items), 3)
    assert (report["cases_fetched"], report["cases_with_certificates"]) == (2, 1)
    assert report["usage_rate"] == 0.5

    table = _stats(running_hub, capsys)
    assert "免证事项 exempt items" in table
    assert f"{len(exempt)} of {len(items)}" in table
    assert "cases served by e-certificates" in table
    assert "1 of 2" in table
    assert "用证率 usage rate" in table
    assert "50.00%" in table
    assert world.departments[licence_issuer].name in table
    assert "paper materials left per item (average)" in table


def test_stats_for_a_period_with_breakdowns_equals_the_service(
    running_hub: RunningHub, world: DemoWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = running_hub.hub
    work = SyncCasework(running_hub)
    window = hub.registry().principals[WINDOW]
    department = next(iter(world.departments))
    paper_item = world.item_by_name("建筑工程施工许可")
    real_clock = hub.clock
    try:
        for n, day in enumerate((dt.date(2026, 2, 3), dt.date(2026, 3, 4), dt.date(2026, 3, 5))):
            at = dt.datetime.combine(day, dt.time(10), dt.UTC)
            hub.clock = lambda at=at: at  # type: ignore[misc]
            work.register_case(
                window,
                RegisterInput(f"GL-P-{n}", paper_item.code, "WINDOW", department, f"{n % 2}号窗"),
            )
    finally:
        hub.clock = real_clock
    uses = tuple(MaterialUse(code, "PAPER") for code, _, _ in paper_item.materials)
    work.close_case(window, CloseInput("GL-P-1", uses))
    args = ("--since", "2026-03-01", "--until", "2026-03-31", "--by", "month", "--by", "WINDOW")
    report = json.loads(_stats(running_hub, capsys, "--json", *args))
    expected = work.period_stats(stats.parse_query("2026-03-01", "2026-03-31", ["MONTH", "WINDOW"]))
    assert (report["since"], report["until"]) == ("2026-03-01", "2026-03-31")
    assert report["cases_registered"] == expected.cases_registered == 2
    assert report["cases_closed"] == expected.cases_closed == 1
    assert report["case_usage_rate"] == 0.0
    assert [(g["key"], g["cases_registered"]) for g in report["breakdowns"]["month"]] == [
        ("2026-03", 2)
    ]
    assert {g["key"]: g["cases_registered"] for g in report["breakdowns"]["window"]} == {
        "0号窗": 1,
        "1号窗": 1,
    }
    [item] = [i for i in report["non_exempt_items"] if i["code"] == paper_item.code]
    assert item["cases_registered"] == 2
    assert [m["cases_on_paper"] for m in item["paper_materials"]] == [1, 1]

    table = _stats(running_hub, capsys, *args)
    assert "办件 cases handled 2026-03-01 .. 2026-03-31" in table
    assert "按窗口 by window" in table
    assert "仍需纸质材料的事项 items still needing paper" in table
    assert f"{paper_item.code} {paper_item.name} (2 cases)" in table


def test_a_bad_period_is_refused_naming_the_option(
    running_hub: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    url = running_hub.engine.url.render_as_string(hide_password=False)
    status = main(
        [
            "stats",
            "--data-dir",
            str(running_hub.config.data_dir),
            "--db",
            url,
            "--since",
            "2026-02-30",
        ]
    )
    assert status == 2
    assert "since: '2026-02-30' is not an ISO date" in capsys.readouterr().err
