"""`certhub fetch` against a real hub over mTLS: the certificates table with offline signature
checks, materials satisfied / paper / missing, refusals with their field, and a tampered
envelope caught by the offline check (exit 3)."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from support.hubs import RunningHub
from support.intake import WINDOW, push_licence

from certhub.hub.cli.fetch import VERIFICATION_FAILED_EXIT, display_width, render_table
from certhub.hub.cli.main import main
from certhub.hub.demo.world import DemoWorld


def _fetch(
    running: RunningHub, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    running.tls_for(WINDOW)  # the window's client certificate in the data dir
    status = main(
        [
            "fetch",
            "--address",
            running.address,
            "--data-dir",
            str(running.config.data_dir),
            "--principal",
            WINDOW,
            *args,
        ]
    )
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _row(out: str, first_cell: str, *, table: str = "certificate") -> list[str]:
    """The cells of the row starting with ``first_cell`` in the table whose header starts
    with ``table`` (the certificates' or the materials')."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(table))
    line = next(line for line in lines[start:] if line.startswith(first_cell))
    return [cell.strip() for cell in line.split("  ") if cell.strip()]


def test_fetch_prints_verified_certificates_and_each_material(
    running_hub: RunningHub, world: DemoWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    pushed = push_licence(running_hub, world, 51)
    construction = world.item_by_name("建筑工程施工许可").code
    status, out, _ = _fetch(
        running_hub,
        capsys,
        "--holder",
        f"USCC:{pushed.holder_id}",
        "--item",
        construction,
        "--case",
        "GL-CLI-1",
    )
    assert status == 0
    assert f"{construction} · case GL-CLI-1 · as {WINDOW} · audit entry" in out
    licence = _row(out, pushed.licence_name)
    assert licence[1] == pushed.number
    assert licence[2] == "VALID"
    assert licence[3] == "福州市鼓楼区市场监督管理局"
    assert licence[5].startswith("✓ key ")
    assert _row(out, "营业执照", table="material")[2:] == ["satisfied", pushed.certificate_id]
    assert _row(out, "建设工程规划许可证", table="material")[2] == "paper"
    assert _row(out, "施工合同", table="material")[2] == "paper"

    health_item = world.item_by_name("公共场所卫生许可（新办）").code
    status, out, _ = _fetch(
        running_hub,
        capsys,
        "--holder",
        f"uscc:{pushed.holder_id}",
        "--item",
        health_item,
        "--case",
        "GL-CLI-2",
    )
    assert status == 0
    missing = _row(out, "负责人身份证明", table="material")
    assert missing[2] == "missing"
    # The type by its registry name, the code beside it (issue 15, item 9).
    (wanted,) = (t for t in world.types.values() if t.name == "居民身份证")
    assert missing[3] == f"no certificate in force of 居民身份证 ({wanted.code})"


def test_fetch_json(
    running_hub: RunningHub, world: DemoWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    pushed = push_licence(running_hub, world, 53)
    health_item = world.item_by_name("公共场所卫生许可（新办）").code
    status, out, _ = _fetch(
        running_hub,
        capsys,
        *("--holder", f"USCC:{pushed.holder_id}", "--item", health_item),
        *("--case", "GL-CLI-5", "--json"),
    )
    assert status == 0
    answer = json.loads(out)
    assert answer["service_item"] == health_item
    assert answer["principal"] == WINDOW
    assert answer["audit_index"] >= 0
    (certificate,) = answer["certificates"]
    assert certificate["certificate_id"] == pushed.certificate_id
    assert certificate["type_name"] == pushed.licence_name
    assert certificate["status"] == "VALID"
    assert certificate["signature"]["verified"] is True
    assert certificate["signature"]["key_id"]
    by_code = {m["code"]: m for m in answer["materials"]}
    assert by_code["M01"]["status"] == "satisfied"
    assert by_code["M01"]["certificate_ids"] == [pushed.certificate_id]
    missing = next(m for m in answer["materials"] if m["status"] == "missing")
    assert missing["types"] == [
        {"code": t.code, "name": t.name}
        for t in world.types.values()
        if t.code in {c["code"] for c in missing["types"]}
    ]
    assert all(t["name"] for t in missing["types"])


def test_fetch_refusals_name_the_field(
    running_hub: RunningHub, world: DemoWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    item = world.item_by_name("建筑工程施工许可").code
    status, _, err = _fetch(
        running_hub, capsys, "--holder", "USCC:913501", "--item", item, "--case", "GL-CLI-3"
    )
    assert status == 1
    assert "INVALID_ARGUMENT" in err
    assert "holder.id:" in err
    # Every problem of the request, each on its line (the hub reports them all at once).
    status, _, err = _fetch(
        running_hub, capsys, "--holder", "USCC:913501", "--item", "", "--case", " "
    )
    assert status == 1
    for field in ("holder.id:", "service_item_code:", "case_number:"):
        assert f"  {field}" in err
    status, _, err = _fetch(
        running_hub, capsys, "--holder", "NOPE:1", "--item", item, "--case", "GL-CLI-3"
    )
    assert status == 1
    assert "unknown id type 'NOPE'" in err


def test_a_tampered_envelope_fails_the_offline_check(
    running_hub: RunningHub,
    world: DemoWorld,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pushed = push_licence(running_hub, world, 52)
    with engine.begin() as conn:
        stored = conn.execute(
            text("SELECT envelope FROM certificates WHERE certificate_id = :c"),
            {"c": pushed.certificate_id},
        ).scalar_one()
        envelope = json.loads(stored)
        payload = json.loads(base64.b64decode(envelope["payload"]))
        payload["number"] = "FORGED-0001"
        envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
        conn.execute(
            text("UPDATE certificates SET envelope = :e WHERE certificate_id = :c"),
            {"e": json.dumps(envelope).encode(), "c": pushed.certificate_id},
        )
    status, out, _ = _fetch(
        running_hub,
        capsys,
        "--holder",
        f"USCC:{pushed.holder_id}",
        "--item",
        pushed.item_code,
        "--case",
        "GL-CLI-4",
    )
    assert status == VERIFICATION_FAILED_EXIT
    assert "✗" in out
    assert "1 certificate(s) FAILED offline signature verification" in out


def test_tables_pad_chinese_text_by_display_width() -> None:
    assert display_width("营业执照") == 8
    table = render_table(["名称", "no"], [["营业执照", "1"], ["ab", "22"]])
    # The second column starts at the same terminal column on every line.
    starts = [
        display_width(line.rstrip()) - display_width(line.split()[-1])
        for line in table.splitlines()
    ]
    assert starts == [10, 10, 10, 10]
