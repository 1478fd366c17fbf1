"""Issue 14 item 1: consent and preview. For a service item whose registry entry says
``consent_required``, a window's fetch opens a consent request; the applicant's app previews
exactly what would be shared and approves or declines; after an approval the window
receives the certificates once; a decline or an expiry is its own refusal (the window uses
paper). Every step is audited without raw IDs. Items without consent never touch the
consent table. Real mTLS, SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from support.hubs import RunningHub, start_hub
from support.probes import audit_row, audit_rows, audit_size
from support.shared_hub import DATABASES, next_serial, serving_hub
from support.statements import recorded

from certhub.core.rpc.client import HubClient, HubClientError
from certhub.hub.demo.world import (
    CITIZEN_APP,
    DemoHolder,
    DemoWorld,
    certificate_payload,
    citizen,
    sign_certificate,
)
from certhub.hub.store.models import ConsentRequest

WINDOW = "gulou-service-centre"
CONSENT_ITEM = "350102-0002"  # 食品经营许可（变更）: needs the business licence
PLAIN_ITEM = "350102-0001"


def consenting(world: DemoWorld) -> DemoWorld:
    items = {
        code: dataclasses.replace(item, consent_required=code == CONSENT_ITEM)
        for code, item in world.items.items()
    }
    return dataclasses.replace(world, items=items)


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, world: DemoWorld
) -> Iterator[RunningHub]:
    root: Path = tmp_path_factory.mktemp(f"consent-{request.param}")
    with serving_hub(root, request.param, world) as running:
        running.apply_registry(consenting(world).registry_toml())
        assert running.hub.registry().service_items[CONSENT_ITEM].consent_required
        yield running


def _licensed(hub: RunningHub, world: DemoWorld) -> tuple[DemoHolder, str]:
    holder = citizen(next_serial() % 900)
    amr = world.department_by_name("市场监督管理局")
    payload = certificate_payload(
        world, world.type_by_name("营业执照").code, holder, serial=next_serial()
    )
    with hub.client(amr.principal) as client:
        client.push(sign_certificate(payload, [amr.key]))
    return holder, payload.certificate_id


def _fetch(client: HubClient, holder: DemoHolder, case: str, item: str = CONSENT_ITEM) -> Any:
    return client.fetch(
        id_type="RESIDENT_ID", holder_id=holder.holder.id, service_item=item, case_number=case
    )


def _refused_fetch(hub: RunningHub, holder: DemoHolder, case: str) -> HubClientError:
    with hub.client(WINDOW) as window, pytest.raises(HubClientError) as caught:
        _fetch(window, holder, case)
    error = caught.value
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    assert error.audit_index is not None
    return error


def _request_id(error: HubClientError) -> str:
    """The request the refusal names: in ErrorInfo.metadata, and in the message for people."""
    request_id = error.metadata["consent_request_id"]
    assert request_id in error.message
    assert error.metadata["expires_at"] in error.message
    return request_id


def _app_call(holder: DemoHolder) -> dict[str, str]:
    return {"id_type": "RESIDENT_ID", "holder_id": holder.holder.id}


def test_approve_then_the_window_receives_the_certificates_once(
    hub: RunningHub, world: DemoWorld
) -> None:
    holder, licence = _licensed(hub, world)
    commitment = hub.hub.commitment(holder.holder.key())
    case = f"CONSENT-{next_serial()}"
    asked = _refused_fetch(hub, holder, case)
    assert asked.reason == "CONSENT_PENDING"
    assert CONSENT_ITEM in asked.message
    request_id = _request_id(asked)
    entry = audit_row(hub.engine, asked.audit_index or 0)
    assert (entry.action, entry.outcome) == ("fetch", "consent-requested")
    assert entry.leaf["holder"] == commitment
    assert entry.leaf["certificate_ids"] == []  # nothing shared yet
    again = _refused_fetch(hub, holder, case)
    assert (again.reason, _request_id(again)) == ("CONSENT_PENDING", request_id)
    assert audit_row(hub.engine, again.audit_index or 0).outcome == "consent-pending"

    with hub.client(CITIZEN_APP) as app:
        listed = app.consent_requests(**_app_call(holder))
        [preview] = listed.requests
        assert preview.request_id == request_id
        assert (preview.principal, preview.service_item_code, preview.case_number) == (
            WINDOW,
            CONSENT_ITEM,
            case,
        )
        assert preview.service_item_name == world.items[CONSENT_ITEM].name
        assert list(preview.type_codes) == [world.type_by_name("营业执照").code]
        assert [c.summary.certificate_id for c in preview.certificates] == [licence]
        assert preview.certificates[0].envelope  # the applicant sees exactly what would go
        decided = app.decide_consent(request_id, approve=True, **_app_call(holder))
    assert decided.status == "APPROVED"
    listing = audit_row(hub.engine, listed.audit_index)
    assert (listing.principal, listing.action, listing.outcome) == (
        CITIZEN_APP,
        "list_consent_requests",
        "ok",
    )
    decision = audit_row(hub.engine, decided.audit_index)
    assert (decision.action, decision.outcome) == ("decide_consent", "approved")
    assert (decision.leaf["case"], decision.leaf["service_item"]) == (case, CONSENT_ITEM)
    assert decision.leaf["holder"] == commitment

    with hub.client(WINDOW) as window:
        fetched = _fetch(window, holder, case)
    assert [c.certificate_id for c in fetched.certificates] == [licence]
    used, served = audit_rows(hub.engine, since=fetched.audit_index - 1)[:2]
    assert (used.action, used.outcome) == ("fetch", "consent-used")
    assert (served.idx, served.outcome, served.leaf["certificate_ids"]) == (
        fetched.audit_index,
        "ok",
        [licence],
    )
    # Once: the next fetch for the case needs a new approval.
    later = _refused_fetch(hub, holder, case)
    assert later.reason == "CONSENT_PENDING"
    assert _request_id(later) != request_id
    # No step put the raw ID into the log.
    for row in audit_rows(hub.engine, since=asked.audit_index or 0):
        assert holder.holder.id not in str(row.leaf)


def test_decline_means_paper_and_stays_declined(hub: RunningHub, world: DemoWorld) -> None:
    holder, _ = _licensed(hub, world)
    case = f"CONSENT-{next_serial()}"
    request_id = _request_id(_refused_fetch(hub, holder, case))
    with hub.client(CITIZEN_APP) as app:
        decided = app.decide_consent(request_id, approve=False, **_app_call(holder))
        assert decided.status == "DECLINED"
        assert audit_row(hub.engine, decided.audit_index).outcome == "declined"
        assert not app.consent_requests(**_app_call(holder)).requests
        with pytest.raises(HubClientError) as twice:
            app.decide_consent(request_id, approve=True, **_app_call(holder))
    assert (twice.value.code, twice.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONSENT_ALREADY_DECIDED",
    )
    for _ in range(2):
        declined = _refused_fetch(hub, holder, case)
        assert declined.reason == "CONSENT_DECLINED"
        assert "paper" in declined.message
        assert audit_row(hub.engine, declined.audit_index or 0).outcome == "consent-declined"


def _age(hub: RunningHub, request_id: str) -> None:
    """Let the request's time run out (what ten minutes of waiting would do)."""
    with Session(hub.engine) as session, session.begin():
        session.execute(
            update(ConsentRequest)
            .where(ConsentRequest.id == request_id)
            .values(expires_at=ConsentRequest.created_at)
        )


def test_expiry_means_paper(hub: RunningHub, world: DemoWorld) -> None:
    holder, _ = _licensed(hub, world)
    case = f"CONSENT-{next_serial()}"
    request_id = _request_id(_refused_fetch(hub, holder, case))
    _age(hub, request_id)
    with hub.client(CITIZEN_APP) as app:
        assert not app.consent_requests(**_app_call(holder)).requests
        with pytest.raises(HubClientError) as late:
            app.decide_consent(request_id, approve=True, **_app_call(holder))
    assert late.value.reason == "CONSENT_EXPIRED"
    expired = _refused_fetch(hub, holder, case)
    assert expired.reason == "CONSENT_EXPIRED"
    assert audit_row(hub.engine, expired.audit_index or 0).outcome == "consent-expired"
    # An approval not used in time expires too.
    case2 = f"CONSENT-{next_serial()}"
    second = _request_id(_refused_fetch(hub, holder, case2))
    with hub.client(CITIZEN_APP) as app:
        app.decide_consent(second, approve=True, **_app_call(holder))
    _age(hub, second)
    assert _refused_fetch(hub, holder, case2).reason == "CONSENT_EXPIRED"


def test_an_applicant_decides_only_their_own_requests(hub: RunningHub, world: DemoWorld) -> None:
    holder, _ = _licensed(hub, world)
    other, _ = _licensed(hub, world)
    request_id = _request_id(_refused_fetch(hub, holder, f"CONSENT-{next_serial()}"))
    size = audit_size(hub.engine)
    with hub.client(CITIZEN_APP) as app:
        assert not app.consent_requests(**_app_call(other)).requests
        with pytest.raises(HubClientError) as foreign:
            app.decide_consent(request_id, approve=True, **_app_call(other))
        assert (foreign.value.code, foreign.value.reason) == (
            grpc.StatusCode.NOT_FOUND,
            "CONSENT_NOT_FOUND",
        )
        for bad in ("", "x" * 32, request_id.upper(), request_id + "0"):
            with pytest.raises(HubClientError) as malformed:
                app.decide_consent(bad, approve=True, **_app_call(holder))
            assert malformed.value.code is grpc.StatusCode.INVALID_ARGUMENT
            assert malformed.value.violations[0].field == "request_id"
        [still] = app.consent_requests(**_app_call(holder)).requests
    assert still.request_id == request_id
    # list (other), refused decide, 4 malformed, list (holder): each audited once.
    assert audit_size(hub.engine) == size + 7
    with hub.client(WINDOW) as window, pytest.raises(HubClientError) as wrong_role:
        window.decide_consent(request_id, approve=True, **_app_call(holder))
    assert wrong_role.value.code is grpc.StatusCode.PERMISSION_DENIED


def test_nothing_to_share_needs_no_consent(hub: RunningHub) -> None:
    nobody = citizen(next_serial() % 900)
    with hub.client(WINDOW) as window:
        fetched = _fetch(window, nobody, f"CONSENT-{next_serial()}")
    assert not fetched.certificates
    assert audit_row(hub.engine, fetched.audit_index).outcome == "ok"


def test_items_without_consent_never_touch_the_consent_table(
    hub: RunningHub, world: DemoWorld
) -> None:
    holder, licence = _licensed(hub, world)
    # On PostgreSQL the fetch's group commit runs on the raw connection: recorded there too.
    with recorded(hub.engine) as statements, hub.client(WINDOW) as window:
        fetched = _fetch(window, holder, f"PLAIN-{next_serial()}", item=PLAIN_ITEM)
    assert [c.certificate_id for c in fetched.certificates] == [licence]
    assert statements, "the listener saw the fetch's statements"
    assert not [s for s in statements if "consent_requests" in s]


def test_one_approval_is_used_once_across_hub_processes(hub: RunningHub, world: DemoWorld) -> None:
    second = start_hub(hub.config.data_dir, hub.engine, consenting(world))
    try:
        holder, licence = _licensed(hub, world)
        case = f"CONSENT-{next_serial()}"
        request_id = _request_id(_refused_fetch(hub, holder, case))
        with hub.client(CITIZEN_APP) as app:
            app.decide_consent(request_id, approve=True, **_app_call(holder))
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def fetch(running: RunningHub) -> None:
            with running.client(WINDOW) as window:
                barrier.wait()
                try:
                    got = _fetch(window, holder, case)
                    outcomes.append("shared" if got.certificates else "empty")
                except HubClientError as error:
                    outcomes.append(error.reason)

        threads = [threading.Thread(target=fetch, args=(r,)) for r in (hub, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        second.server.stop(grace=None)
        second.hub.close()
    assert sorted(outcomes) == ["CONSENT_PENDING", "shared"]
    with Session(hub.engine) as session:
        used = session.execute(
            select(func.count())
            .select_from(ConsentRequest)
            .where(ConsentRequest.case_number == case, ConsentRequest.status == "USED")
        ).scalar_one()
    assert used == 1
    del licence


def test_a_stale_cached_view_cannot_share_without_consent(
    hub: RunningHub, world: DemoWorld
) -> None:
    """The holder's empty view is cached by this hub; another hub process stores a licence
    (its cache is the one invalidated). A fetch for the consent item must still ask: it
    reads the database, so the stale view's retry cannot serve the licence unapproved."""
    holder = citizen(next_serial() % 900)
    with hub.client(WINDOW) as window:
        assert not _fetch(window, holder, f"PLAIN-{next_serial()}", item=PLAIN_ITEM).certificates
    second = start_hub(hub.config.data_dir, hub.engine, consenting(world))
    try:
        amr = world.department_by_name("市场监督管理局")
        payload = certificate_payload(
            world, world.type_by_name("营业执照").code, holder, serial=next_serial()
        )
        with second.client(amr.principal) as department:
            department.push(sign_certificate(payload, [amr.key]))
    finally:
        second.server.stop(grace=None)
        second.hub.close()
    asked = _refused_fetch(hub, holder, f"CONSENT-{next_serial()}")
    assert asked.reason == "CONSENT_PENDING"
