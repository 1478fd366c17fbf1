"""The demo's applicants in control (issue 14, demo): one approves a share and the window
receives it once, one declines and brings paper, one presents a licence by QR code that a
second scan refuses; then the applicant's history lists those uses. Against a real hub."""

from __future__ import annotations

from pathlib import Path

from support.hubs import RunningHub

from certhub.core.rpc.client import HubClient
from certhub.hub.demo.citizen import (
    APPROVER,
    DECLINER,
    PRESENTER,
    show_applicants_in_control,
    with_consent,
)
from certhub.hub.demo.world import DemoWorld, sample_certificates, sign_certificate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_approve_decline_and_present(
    running_hub: RunningHub, world: DemoWorld, tmp_path: Path
) -> None:
    demo = with_consent(world)
    running_hub.apply_registry(demo.registry_toml())
    wanted = {APPROVER.holder, DECLINER.holder, PRESENTER.holder}
    for department, payload in sample_certificates(demo, holders=10):
        if payload.holder in wanted:
            with running_hub.client(department.principal) as adapter:
                adapter.push(sign_certificate(payload, [department.key]))
    lines: list[str] = []

    def client(principal: str) -> HubClient:
        return running_hub.client(principal)

    qr = tmp_path / "qr.png"
    show_applicants_in_control(demo, client, lines.append, qr_file=qr)
    text = "\n".join(lines)
    assert f"{APPROVER.name} previews [营业执照]" in text
    assert "window receives [营业执照] once" in text
    assert f"{DECLINER.name} previews [营业执照]" in text
    assert "CONSENT_DECLINED: the applicant brings the paper originals" in text
    assert "143-character token as a QR code (version 6" in text
    assert "营业执照 VALID, signature verified offline" in text
    assert "scanned again: PRESENTATION_REPLAYED" in text
    assert "redeem_presentation" in text
    assert qr.read_bytes().startswith(PNG_MAGIC)
