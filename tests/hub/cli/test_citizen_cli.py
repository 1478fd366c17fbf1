"""`certhub citizen present | redeem | accesses` against a real hub over mTLS: the token and
its QR code (PNG and SVG files that decode as images of the right size), a window's
redemption, the applicant's history, and refusals naming their reason."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support.hubs import RunningHub

from certhub.hub.cli.citizen import QR_PNG_SCALE
from certhub.hub.cli.main import main
from certhub.hub.demo.world import (
    CITIZEN_APP,
    DemoWorld,
    certificate_payload,
    citizen,
    sign_certificate,
)

WINDOW = "gulou-service-centre"
ITEM = "350102-0001"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(
    running: RunningHub, capsys: pytest.CaptureFixture[str], principal: str, *args: str
) -> tuple[int, str, str]:
    running.tls_for(principal)
    status = main(
        [
            "citizen",
            args[0],
            "--address",
            running.address,
            "--data-dir",
            str(running.config.data_dir),
            "--principal",
            principal,
            *args[1:],
        ]
    )
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow
def test_present_render_redeem_and_history(
    running_hub: RunningHub, world: DemoWorld, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    holder = citizen(61)
    amr = world.department_by_name("市场监督管理局")
    payload = certificate_payload(world, world.type_by_name("营业执照").code, holder, serial=61)
    with running_hub.client(amr.principal) as department:
        department.push(sign_certificate(payload, [amr.key]))
    applicant = f"RESIDENT_ID:{holder.holder.id}"
    png, svg = tmp_path / "token.png", tmp_path / "token.svg"
    status, out, _ = _run(
        running_hub, capsys, CITIZEN_APP, "present", "--applicant", applicant,
        "--certificate", payload.certificate_id, "--purpose", "办理食品经营许可",
        "--png", str(png), "--svg", str(svg),
    )  # fmt: skip
    assert status == 0
    token, summary, *qr_lines = out.splitlines()
    assert len(token) == 143
    assert "QR version 6 (41 modules)" in summary
    assert len(qr_lines) >= 20  # the terminal rendering, two modules per line
    assert png.read_bytes().startswith(PNG_MAGIC)
    width, height = struct.unpack(">II", png.read_bytes()[16:24])
    assert width == height == (41 + 8) * QR_PNG_SCALE
    root = ET.fromstring(svg.read_bytes())
    assert root.tag.endswith("svg")
    assert root.get("width") == str((41 + 8) * QR_PNG_SCALE)

    status, out, _ = _run(
        running_hub, capsys, WINDOW, "redeem", token, "--item", ITEM, "--case", "CLI-QR-1"
    )
    assert status == 0
    assert "营业执照" in out
    assert "VALID" in out
    assert "✓ key" in out
    assert "purpose: 办理食品经营许可" in out

    status, _, err = _run(
        running_hub, capsys, WINDOW, "redeem", token, "--item", ITEM, "--case", "CLI-QR-2"
    )
    assert status == 1
    assert "reason: PRESENTATION_REPLAYED" in err

    status, out, _ = _run(running_hub, capsys, CITIZEN_APP, "accesses", "--applicant", applicant)
    assert status == 0
    assert "redeem_presentation" in out
    assert "create_presentation" in out
    assert WINDOW in out


def test_consents_decide_and_export(
    running_hub: RunningHub, world: DemoWorld, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    holder = citizen(62)
    amr = world.department_by_name("市场监督管理局")
    payload = certificate_payload(world, world.type_by_name("营业执照").code, holder, serial=62)
    with running_hub.client(amr.principal) as department:
        department.push(sign_certificate(payload, [amr.key]))
    applicant = f"RESIDENT_ID:{holder.holder.id}"
    status, out, _ = _run(running_hub, capsys, CITIZEN_APP, "consents", "--applicant", applicant)
    assert status == 0
    assert "no consent requests awaiting a decision" in out
    status, _, err = _run(
        running_hub, capsys, CITIZEN_APP, "decide", "0" * 32, "--applicant", applicant,
        "--approve",
    )  # fmt: skip
    assert status == 1
    assert "reason: CONSENT_NOT_FOUND" in err
    credential = tmp_path / "licence.vc.jwt"
    status, out, _ = _run(
        running_hub, capsys, CITIZEN_APP, "export", "--applicant", applicant,
        "--certificate", payload.certificate_id, "--output", str(credential),
    )  # fmt: skip
    assert status == 0
    assert "urn:uuid:" in out
    assert "/status/1#" in out
    assert credential.read_text(encoding="ascii").count(".") == 2
