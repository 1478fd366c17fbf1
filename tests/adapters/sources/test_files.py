"""The `files` source end to end: exports in a folder, pushed into a real hub."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from sqlalchemy import text
from support.adapters import (
    REGISTRATION_MAPPING,
    csv_lines,
    files_source,
    registration,
    write_config,
)
from support.hubs import RunningHub

from certhub.adapters import Adapter, PassReport, load_config
from certhub.hub.demo.world import DemoDepartment, DemoWorld, enterprise
from certhub.signing import parse_envelope


def _run(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, root: Path, *, encoding: str
) -> PassReport:
    files = write_config(
        root / "adapter",
        world=world,
        department=amr,
        address=running_hub.address,
        tls=running_hub.tls_for(amr.principal),
        source=files_source(root / "exports", encoding=encoding),
    )
    return Adapter(load_config(files.config)).run_once()


def _hub_payloads(running_hub: RunningHub) -> list[dict[str, object]]:
    with running_hub.engine.connect() as conn:
        envelopes = conn.execute(text("SELECT envelope FROM certificates")).scalars()
        return [json.loads(parse_envelope(bytes(e)).payload) for e in envelopes]


def _write(path: Path, lines: list[str], *, encoding: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))


def test_utf8_with_and_without_bom_csv_and_jsonl_bad_rows_reported_with_file_and_line(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    with_bom = list(csv_lines([registration(0), registration(1)]))
    with_bom.insert(2, "GL99999999,营业执照,too,few")  # line 3: wrong number of fields
    _write(exports / "2026-11-01.csv", with_bom, encoding="utf-8-sig")
    _write(exports / "2026-11-02.csv", list(csv_lines([registration(2)])), encoding="utf-8")
    jsonl = [
        json.dumps(
            {**registration(3), "issue_date": "2021-01-04", "expiry_date": ""}, ensure_ascii=False
        ),
        '{"reg_no": "GL00000004", "licence_type": ',  # line 2: cut off mid-object
        json.dumps(
            {**registration(5), "issue_date": "2021/01/06", "expiry_date": None}, ensure_ascii=False
        ),
    ]
    _write(exports / "2026-11-03.jsonl", jsonl, encoding="utf-8")

    report = _run(running_hub, world, amr, tmp_path, encoding="utf-8")

    assert report.status.acked == 5
    problems = {location: message for _, location, message in report.status.recent_problems}
    assert set(problems) == {"2026-11-01.csv:3", "2026-11-03.jsonl:2"}
    assert "4 fields, the header has 10" in problems["2026-11-01.csv:3"]
    assert "not valid JSON" in problems["2026-11-03.jsonl:2"]
    payloads = _hub_payloads(running_hub)
    assert sorted(str(p["number"]) for p in payloads) == [
        "GL00000000",
        "GL00000001",
        "GL00000002",
        "GL00000003",
        "GL00000005",
    ]
    holders = {str(p["number"]): p["holder"] for p in payloads}
    # The BOM did not leak into the first column name, and Chinese text arrived intact.
    assert holders["GL00000000"] == {
        "id_type": "USCC",
        "id": enterprise(0).holder.id,
        "name": enterprise(0).name,
    }


def test_gbk_declared_is_decoded_and_gbk_undeclared_is_reported_per_line(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    gbk_root, wrong_root = tmp_path / "gbk", tmp_path / "wrong"
    lines = list(csv_lines([registration(10), registration(11)]))
    _write(gbk_root / "exports" / "export.csv", lines, encoding="gbk")
    _write(wrong_root / "exports" / "export.csv", lines, encoding="gbk")

    report = _run(running_hub, world, amr, gbk_root, encoding="gbk")
    assert (report.status.acked, report.status.problems) == (2, 0)
    names = {p["holder"]["name"] for p in _hub_payloads(running_hub)}  # type: ignore[index]
    assert names == {enterprise(10).name, enterprise(11).name}

    wrong = _run(running_hub, world, amr, wrong_root, encoding="utf-8")
    assert wrong.status.acked == 0
    problems = sorted((loc, msg) for _, loc, msg in wrong.status.recent_problems)
    assert problems == [
        ("export.csv:2", "bytes that are not valid UTF-8 in this row"),
        ("export.csv:3", "bytes that are not valid UTF-8 in this row"),
    ]


def test_each_file_is_processed_once_by_content_and_a_changed_row_becomes_a_new_version(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    rows = [registration(n) for n in range(3)]
    _write(exports / "day1.csv", list(csv_lines(rows)), encoding="utf-8")
    first = _run(running_hub, world, amr, tmp_path, encoding="utf-8")
    assert first.counts.pushes == 3

    shutil.copy(exports / "day1.csv", exports / "day1-copy.csv")  # same bytes, new name
    again = _run(running_hub, world, amr, tmp_path, encoding="utf-8")
    assert (again.counts.read, again.counts.pushes) == (0, 0)

    rows[1] = {**rows[1], "address": "福州市鼓楼区东街33号"}
    _write(exports / "day2.csv", list(csv_lines(rows)), encoding="utf-8")
    changed = _run(running_hub, world, amr, tmp_path, encoding="utf-8")
    assert (changed.counts.read, changed.counts.unchanged, changed.counts.pushes) == (3, 2, 1)
    versions = sorted((str(p["number"]), int(p["version"])) for p in _hub_payloads(running_hub))  # type: ignore[call-overload]
    assert versions == [("GL00000000", 1), ("GL00000001", 1), ("GL00000001", 2), ("GL00000002", 1)]


def test_attachment_is_bound_by_digest_and_issuer_unique_ids_keep_one_id(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    pdf = b"%PDF-1.7\n% licence scan\n" + bytes(range(256)) * 8
    (scans / "GL00000000.pdf").write_bytes(pdf)
    row = {
        **registration(0),
        "issue_date": "2021-01-01",
        "expiry_date": "",
        "pdf": "GL00000000.pdf",
    }
    _write(
        tmp_path / "exports" / "a.jsonl", [json.dumps(row, ensure_ascii=False)], encoding="utf-8"
    )
    mapping = (
        REGISTRATION_MAPPING.replace(
            "[mapping]\n", '[mapping]\ncertificate_id_template = "GL-AMR-{key}"\n', 1
        )
        + f'\n[mapping.attachment]\ncolumn = "pdf"\nbase = "{scans}"\n'
    )
    files = write_config(
        tmp_path / "adapter",
        world=world,
        department=amr,
        address=running_hub.address,
        tls=running_hub.tls_for(amr.principal),
        source=files_source(tmp_path / "exports"),
        mapping=mapping,
    )
    assert Adapter(load_config(files.config)).run_once().status.acked == 1
    changed = {**row, "address": "福州市鼓楼区湖东路1号"}
    _write(
        tmp_path / "exports" / "b.jsonl",
        [json.dumps(changed, ensure_ascii=False)],
        encoding="utf-8",
    )
    assert Adapter(load_config(files.config)).run_once().status.acked == 2

    digest = hashlib.sha256(pdf).hexdigest()
    with running_hub.engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT certificate_id, version, attachment_sha256 FROM certificates "
                "ORDER BY version"
            )
        ).all()
        data = conn.execute(
            text("SELECT data FROM attachments WHERE sha256 = :d"), {"d": digest}
        ).scalar_one()
    assert [tuple(r) for r in stored] == [
        ("GL-AMR-GL00000000", 1, digest),
        ("GL-AMR-GL00000000", 2, digest),
    ]
    assert bytes(data) == pdf
