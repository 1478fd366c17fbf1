"""`certhub stats`: the district's KPI report from the data, as a table and as JSON."""

from __future__ import annotations

import json

import pytest
from support.hubs import RunningHub
from support.intake import WINDOW, push_licence

from hub.cli.main import main
from hub.demo.world import DemoWorld


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
