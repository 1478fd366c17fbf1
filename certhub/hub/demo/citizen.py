"""The demo's applicants in control (issue 14): one approves a share, one declines and brings
paper, one presents a licence by QR code (亮证) — then sees who used their certificates.

Everything goes through the real RPCs: the window (IntakeService) and the government app
that has authenticated the applicant (CitizenService, role CITIZEN_APP).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from certhub.core.rpc.client import FailedPreconditionError, HubClient
from certhub.hub.demo.history import handling_department
from certhub.hub.demo.world import CITIZEN_APP, DemoHolder, DemoWorld, enterprise
from certhub.v1 import intake_pb2

# The demo's item whose sharing needs the applicant's approval (registry consent_required):
# one the demo's other live cases do not use.
CONSENT_ITEM_NAME = "劳务派遣经营许可（延续）"
# The item a licence is presented for at the window.
PRESENT_ITEM_NAME = "食品经营许可（新办）"
WINDOW = "gulou-service-centre"
# Enterprises n with n % 3 == 0 hold a business licence
# (certhub.hub.demo.world.sample_certificates).
APPROVER, DECLINER, PRESENTER = enterprise(3), enterprise(6), enterprise(9)


def with_consent(world: DemoWorld) -> DemoWorld:
    """The demo district with one item that needs the applicant's approval."""
    items = {
        code: dataclasses.replace(item, consent_required=item.name == CONSENT_ITEM_NAME)
        for code, item in world.items.items()
    }
    return dataclasses.replace(world, items=items)


def show_applicants_in_control(
    world: DemoWorld,
    client: Callable[[str], HubClient],
    out: Callable[[str], None],
    *,
    qr_file: Path | None = None,
) -> None:
    item = world.item_by_name(CONSENT_ITEM_NAME)
    with client(WINDOW) as window, client(CITIZEN_APP) as app:
        out("")
        out(f"consent    {item.name} needs the applicant's approval (registry)")
        for number, (holder, approve) in enumerate(((APPROVER, True), (DECLINER, False)), start=1):
            case = f"GL-2026-8{number:05d}"
            _register(window, world, item.code, case)
            request_id = _ask(window, holder, item.code, case)
            applicant = {"id_type": "USCC", "holder_id": holder.holder.id}
            [preview] = [
                r for r in app.consent_requests(**applicant).requests if r.request_id == request_id
            ]
            shown = ", ".join(c.summary.name for c in preview.certificates)
            app.decide_consent(request_id, approve=approve, **applicant)
            verdict = "approves" if approve else "declines"
            out(f"  {holder.name} previews [{shown}] for case {case} and {verdict}")
            try:
                fetched = window.fetch(
                    id_type="USCC",
                    holder_id=holder.holder.id,
                    service_item=item.code,
                    case_number=case,
                )
            except FailedPreconditionError as refused:
                out(f"  window: {refused.reason}: the applicant brings the paper originals")
                _close(window, case, [(code, "") for code, _, _ in item.materials])
                continue
            names = ", ".join(c.payload["name"] for c in fetched.certificates)
            out(f"  window receives [{names}] once (audit entry #{fetched.audit_index})")
            _close(
                window,
                case,
                [(m.code, next(iter(m.certificate_ids), "")) for m in fetched.materials],
            )
        _present(world, window, app, out, qr_file=qr_file)
        history = app.my_accesses(id_type="USCC", holder_id=PRESENTER.holder.id, page_size=5)
        out(f"history    {PRESENTER.name} sees who used their certificates:")
        for e in history.entries[:4]:
            what = e.service_item_name or e.service_item_code or "-"
            out(f"  {e.time[:19]}Z  {e.principal:<24} {e.action:<20} {e.outcome:<8} {what}")


def _present(
    world: DemoWorld,
    window: HubClient,
    app: HubClient,
    out: Callable[[str], None],
    *,
    qr_file: Path | None,
) -> None:
    import segno  # noqa: PLC0415 - only the demo and the CLI render QR codes

    item = world.item_by_name(PRESENT_ITEM_NAME)
    licence_type = world.type_by_name("营业执照").code
    case = "GL-2026-800003"
    _register(window, world, item.code, case)
    # The app knows its applicant's licence; the demo takes its id from an earlier case.
    fetched = window.fetch(
        id_type="USCC",
        holder_id=PRESENTER.holder.id,
        service_item=world.item_by_name("人力资源服务许可").code,
        case_number="GL-2026-800004",
    )
    licence = next(c for c in fetched.certificates if c.payload["type_code"] == licence_type)
    created = app.create_presentation(
        licence.certificate_id,
        id_type="USCC",
        holder_id=PRESENTER.holder.id,
        purpose=f"办理{item.name}",
        service_item=item.code,
    )
    qr = segno.make(created.token, error="m")
    where = ""
    if qr_file is not None:
        qr.save(str(qr_file), kind="png", scale=10)
        where = f", {qr_file}"
    out("")
    out(
        f"亮证       {PRESENTER.name} shows a {len(created.token)}-character token as a QR code "
        f"(version {qr.version}{where}), single-use until {created.expires_at[11:19]}Z"
    )
    shown = window.redeem_presentation(created.token, service_item=item.code, case_number=case)
    out(
        f"  window redeems it for case {case}: {shown.certificate.payload['name']} "
        f"{shown.certificate.status}, signature verified offline, purpose {shown.purpose}"
    )
    try:
        window.redeem_presentation(created.token, service_item=item.code, case_number=case)
    except FailedPreconditionError as again:
        out(f"  scanned again: {again.reason}")
    _close(window, case, [(code, "") for code, _, _ in item.materials])


def _register(window: HubClient, world: DemoWorld, item_code: str, case: str) -> None:
    window.call(
        window.intake.RegisterCase,
        intake_pb2.RegisterCaseRequest(
            case_number=case,
            service_item_code=item_code,
            channel=intake_pb2.CASE_CHANNEL_WINDOW,
            department_code=handling_department(world, world.items[item_code]),
            window="1号窗",
        ),
    )


def _ask(window: HubClient, holder: DemoHolder, item_code: str, case: str) -> str:
    try:
        window.fetch(
            id_type="USCC", holder_id=holder.holder.id, service_item=item_code, case_number=case
        )
    except FailedPreconditionError as asked:
        return asked.metadata["consent_request_id"]
    raise AssertionError("the consent item shared without a consent request")


def _close(window: HubClient, case: str, materials: list[tuple[str, str]]) -> None:
    window.call(
        window.intake.CloseCase,
        intake_pb2.CloseCaseRequest(
            case_number=case,
            materials=[
                intake_pb2.MaterialUse(
                    material_code=code,
                    source=intake_pb2.MATERIAL_SOURCE_E_CERTIFICATE,
                    certificate_id=cid,
                )
                if cid
                else intake_pb2.MaterialUse(
                    material_code=code, source=intake_pb2.MATERIAL_SOURCE_PAPER
                )
                for code, cid in materials
            ],
        ),
    )
