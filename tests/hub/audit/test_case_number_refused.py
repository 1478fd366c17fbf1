"""An ID-shaped case number is refused by every call that takes one (fetch, get,
RegisterCase, CloseCase) over real mTLS: INVALID_ARGUMENT, reason ID_SHAPED_CASE_NUMBER, a
message naming the shape without the ID, an audited refusal whose leaf holds the shape's
marker and never the raw value, and no case recorded (issue 12, build item 5)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from support.hubs import RunningHub
from support.intake import WINDOW, push_licence

from certhub.core.rpc.client import HubClient, InvalidArgumentError
from certhub.hub.demo.world import DemoWorld, citizen
from certhub.hub.store.engine import session_scope
from certhub.hub.store.models import AuditEntry, Case, CaseFile
from certhub.v1 import intake_pb2

RESIDENT = citizen(5).holder.id
MOBILE = "13912345678"


def calls(running: RunningHub, world: DemoWorld) -> dict[str, Callable[[HubClient, str], object]]:
    pushed = push_licence(running, world, 21)
    department = world.type_by_name("营业执照").issuer
    return {
        "fetch": lambda c, case: c.fetch(
            id_type="USCC",
            holder_id=pushed.holder_id,
            service_item=pushed.item_code,
            case_number=case,
        ),
        "get": lambda c, case: c.get(
            pushed.certificate_id,
            id_type="USCC",
            holder_id=pushed.holder_id,
            service_item=pushed.item_code,
            case_number=case,
        ),
        "register": lambda c, case: c.call(
            c.intake.RegisterCase,
            intake_pb2.RegisterCaseRequest(
                case_number=case,
                service_item_code=pushed.item_code,
                channel=intake_pb2.CASE_CHANNEL_WINDOW,
                department_code=department,
            ),
        ),
        "close": lambda c, case: c.call(
            c.intake.CloseCase, intake_pb2.CloseCaseRequest(case_number=case)
        ),
    }


@pytest.mark.parametrize(
    ("case", "marker"),
    [
        (RESIDENT, "[resident-id]"),
        (f"GL-{MOBILE}", "[mobile]"),
        (RESIDENT.lower(), "[resident-id]"),
    ],
)
@pytest.mark.parametrize("call", ["fetch", "get", "register", "close"])
@pytest.mark.slow
def test_an_id_shaped_case_number_is_refused_and_audited_without_it(
    running_hub: RunningHub, world: DemoWorld, call: str, case: str, marker: str
) -> None:
    do = calls(running_hub, world)[call]
    with running_hub.client(WINDOW) as client, pytest.raises(InvalidArgumentError) as raised:
        do(client, case)
    error = raised.value
    assert error.reason == "ID_SHAPED_CASE_NUMBER"
    assert marker in str(error)
    assert case not in str(error)
    assert [v.field for v in error.violations] == ["case_number"]
    assert error.audit_index is not None
    raw = case.encode()
    with session_scope(running_hub.hub.sessions) as session:
        leaf = bytes(
            session.execute(
                select(AuditEntry.leaf).where(AuditEntry.idx == error.audit_index)
            ).scalar_one()
        )
        leaves = [bytes(x) for x in session.execute(select(AuditEntry.leaf)).scalars()]
        cases = session.execute(select(func.count()).select_from(Case)).scalar_one()
        files = session.execute(select(func.count()).select_from(CaseFile)).scalar_one()
    assert b"INVALID_ARGUMENT" in leaf
    assert marker.encode() in leaf
    assert not any(raw in x or RESIDENT.encode() in x for x in leaves)
    assert (cases, files) == (0, 0)


def test_an_ordinary_case_number_is_still_served(running_hub: RunningHub, world: DemoWorld) -> None:
    do = calls(running_hub, world)
    with running_hub.client(WINDOW) as client:
        do["register"](client, "GL-2026-000123")
        do["fetch"](client, "GL-2026-000123")


def test_an_id_shaped_window_is_refused(running_hub: RunningHub, world: DemoWorld) -> None:
    pushed = push_licence(running_hub, world, 22)
    department = world.type_by_name("营业执照").issuer
    with running_hub.client(WINDOW) as client, pytest.raises(InvalidArgumentError) as raised:
        client.call(
            client.intake.RegisterCase,
            intake_pb2.RegisterCaseRequest(
                case_number="GL-2026-000777",
                service_item_code=pushed.item_code,
                channel=intake_pb2.CASE_CHANNEL_WINDOW,
                department_code=department,
                window=f"窗口 {MOBILE}",
            ),
        )
    assert raised.value.reason == "ID_SHAPED_WINDOW"
    assert MOBILE not in str(raised.value)
    with session_scope(running_hub.hub.sessions) as session:
        assert session.execute(select(func.count()).select_from(CaseFile)).scalar_one() == 0
