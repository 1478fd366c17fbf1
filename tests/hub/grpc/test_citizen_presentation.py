"""Issue 14 item 2: presenting a licence (亮证). The citizen app creates a short-lived,
single-use token signed by the hub; a window redeems it for a case and gets the certificate
with its envelope. Replayed, expired, foreign, altered and malformed tokens are refused, each
with its own reason; single use holds across hub processes. Real mTLS, SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import segno
from sqlalchemy.orm import Session
from support.hubs import RunningHub, start_hub
from support.probes import audit_row, audit_size, snapshot
from support.shared_hub import DATABASES, next_serial, serving_hub

from certhub.core.rpc.client import HubClient, HubClientError
from certhub.hub.demo.world import (
    CITIZEN_APP,
    DemoHolder,
    DemoWorld,
    certificate_payload,
    citizen,
    sign_certificate,
    sign_revocation,
)
from certhub.hub.services import presentation
from certhub.hub.store.models import Case
from certhub.signing import Algorithm, PrivateKey

WINDOW = "gulou-service-centre"
ITEM = "350102-0001"  # 食品经营许可（新办）: needs a business licence
OTHER_ITEM = "350102-0002"
NO_LICENCE_ITEM = "350102-0008"  # 居住证签注: no material a business licence satisfies


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, world: DemoWorld
) -> Iterator[RunningHub]:
    root: Path = tmp_path_factory.mktemp(f"present-{request.param}")
    with serving_hub(root, request.param, world) as running:
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


def _token(hub: RunningHub, holder: DemoHolder, certificate_id: str, **options: object) -> str:
    with hub.client(CITIZEN_APP) as app:
        created = app.create_presentation(
            certificate_id, id_type="RESIDENT_ID", holder_id=holder.holder.id, **options
        )
    return created.token


def _redeem(hub: RunningHub, token: str, *, item: str = ITEM, case: str = "") -> object:
    with hub.client(WINDOW) as window:
        return window.redeem_presentation(
            token, service_item=item, case_number=case or f"QR-{next_serial()}"
        )


def _refused(hub: RunningHub, token: str, *, item: str = ITEM) -> HubClientError:
    before, size = snapshot(hub.engine), audit_size(hub.engine)
    with pytest.raises(HubClientError) as caught:
        _redeem(hub, token, item=item)
    error = caught.value
    assert snapshot(hub.engine) == before
    assert audit_size(hub.engine) == size + 1
    assert error.audit_index is not None
    entry = audit_row(hub.engine, error.audit_index)
    assert (entry.principal, entry.action, entry.outcome) == (
        WINDOW,
        "redeem_presentation",
        error.code.name,
    )
    return error


def test_present_and_redeem_once(hub: RunningHub, world: DemoWorld) -> None:
    holder, licence = _licensed(hub, world)
    with hub.client(CITIZEN_APP) as app:
        created = app.create_presentation(
            licence, id_type="RESIDENT_ID", holder_id=holder.holder.id, purpose="办理食品经营许可"
        )
    # Compact enough for a QR code: measured, and pinned.
    assert len(created.token) == presentation.TOKEN_CHARS == 143
    qr = segno.make(created.token, error="m")
    assert qr.mode == "alphanumeric"
    assert qr.version == 6
    expires = dt.datetime.fromisoformat(created.expires_at)
    assert dt.timedelta(0) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=120)
    made = audit_row(hub.engine, created.audit_index)
    assert (made.principal, made.action, made.outcome) == (CITIZEN_APP, "create_presentation", "ok")
    assert made.leaf["holder"] == hub.hub.commitment(holder.holder.key())
    assert made.leaf["certificate_ids"] == [licence]
    assert holder.holder.id not in str(made.leaf)

    case = f"QR-{next_serial()}"
    with hub.client(WINDOW) as window:
        shown = window.redeem_presentation(created.token, service_item=ITEM, case_number=case)
    # The envelope verified offline against the department's key (HubClient._checked).
    assert shown.certificate.certificate_id == licence
    assert shown.certificate.key_id
    assert shown.certificate.status == "VALID"
    assert shown.purpose == "办理食品经营许可"
    used = audit_row(hub.engine, shown.audit_index)
    assert (used.action, used.outcome, used.leaf["case"]) == ("redeem_presentation", "ok", case)
    assert used.leaf["holder"] == made.leaf["holder"]
    assert used.leaf["certificate_ids"] == [licence]

    with Session(hub.engine) as session:
        counted = session.get(Case, case)
    assert counted is not None
    assert counted.served  # the usage KPI counts the case as served by an e-certificate
    replay = _refused(hub, created.token)
    assert replay.code is grpc.StatusCode.FAILED_PRECONDITION
    assert replay.reason == "PRESENTATION_REPLAYED"
    # The applicant sees both in their history.
    with hub.client(CITIZEN_APP) as app:
        history = app.my_accesses(id_type="RESIDENT_ID", holder_id=holder.holder.id)
    assert history.entries[1].purpose == "办理食品经营许可"  # the redemption's, from the token
    actions = [(e.action, e.outcome) for e in history.entries[:3]]
    assert actions == [
        ("redeem_presentation", "FAILED_PRECONDITION"),
        ("redeem_presentation", "ok"),
        ("create_presentation", "ok"),
    ]


@pytest.mark.slow
def test_expired_token(hub: RunningHub, world: DemoWorld) -> None:
    holder, licence = _licensed(hub, world)
    token = _token(hub, holder, licence, ttl_seconds=1)
    time.sleep(1.2)
    error = _refused(hub, token)
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "PRESENTATION_EXPIRED"
    assert "expired" in error.message


def test_foreign_altered_and_malformed_tokens_each_have_their_reason(
    hub: RunningHub, world: DemoWorld
) -> None:
    holder, licence = _licensed(hub, world)
    token = _token(hub, holder, licence)
    # Another hub's key, a well-formed token.
    foreign = presentation.mint(
        PrivateKey.generate(Algorithm.ED25519),
        token_id=presentation.new_token_id(),
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2),
    )
    error = _refused(hub, foreign)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRESENTATION_FOREIGN")
    # One character changed: in the token id, in the expiry, in the signature.
    for position in (20, 36, 120):
        flipped = "A" if token[position] != "A" else "B"
        altered = token[:position] + flipped + token[position + 1 :]
        error = _refused(hub, altered)
        assert (error.code, error.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "PRESENTATION_TAMPERED",
        ), position
    for junk in ("", "hello", token[:-1], token + "A", token.replace(token[5], "1", 1), "€" * 143):
        error = _refused(hub, junk)
        assert error.code is grpc.StatusCode.INVALID_ARGUMENT, junk
        assert error.reason == "PRESENTATION_MALFORMED"
        assert error.violations[0].field == "token"
    # None of that consumed the real token.
    _redeem(hub, token)


def test_item_binding_and_data_minimisation_do_not_consume_the_token(
    hub: RunningHub, world: DemoWorld
) -> None:
    holder, licence = _licensed(hub, world)
    bound = _token(hub, holder, licence, service_item=ITEM)
    error = _refused(hub, bound, item=OTHER_ITEM)
    assert (error.code, error.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PRESENTATION_OTHER_ITEM",
    )
    free = _token(hub, holder, licence)
    error = _refused(hub, free, item=NO_LICENCE_ITEM)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_NEEDED_FOR_ITEM")
    _redeem(hub, bound)
    _redeem(hub, free)


@pytest.mark.parametrize(
    ("change", "code", "reason", "field"),
    [
        ({"ttl_seconds": 301}, "INVALID_ARGUMENT", "PRESENTATION_TTL_TOO_LONG", "ttl_seconds"),
        ({"purpose": " 前后有空格 "}, "INVALID_ARGUMENT", "BAD_PURPOSE", "purpose"),
        ({"purpose": "x" * 201}, "INVALID_ARGUMENT", "BAD_PURPOSE", "purpose"),
        (
            {"purpose": f"代{citizen(7).holder.id}办理"},
            "INVALID_ARGUMENT",
            "ID_SHAPED_PURPOSE",
            "purpose",
        ),
        ({"service_item": "NO-SUCH-ITEM"}, "NOT_FOUND", "UNKNOWN_SERVICE_ITEM", ""),
        ({"certificate_id": ""}, "INVALID_ARGUMENT", "MISSING_CERTIFICATE_ID", "certificate_id"),
        ({"certificate_id": "no-such-id"}, "NOT_FOUND", "CERTIFICATE_NOT_FOUND", ""),
        ({"other_holder": True}, "NOT_FOUND", "CERTIFICATE_NOT_FOUND", ""),
        ({"holder_id": "350102199001011235"}, "INVALID_ARGUMENT", None, "applicant.id"),
    ],
)
def test_create_refusals(
    hub: RunningHub,
    world: DemoWorld,
    change: dict[str, object],
    code: str,
    reason: str | None,
    field: str,
) -> None:
    holder, licence = _licensed(hub, world)
    arguments: dict[str, object] = {
        "certificate_id": licence,
        "id_type": "RESIDENT_ID",
        "holder_id": holder.holder.id,
    }
    change = dict(change)  # the parameter is shared by both databases' runs
    if change.pop("other_holder", False):
        arguments["holder_id"] = _licensed(hub, world)[0].holder.id
    arguments.update(change)
    before, size = snapshot(hub.engine), audit_size(hub.engine)
    with hub.client(CITIZEN_APP) as app, pytest.raises(HubClientError) as caught:
        app.create_presentation(**arguments)  # type: ignore[arg-type]
    error = caught.value
    assert error.code.name == code, error
    if reason:
        assert error.reason == reason
    if field:
        assert error.violations[0].field == field
        assert field in error.message
    assert snapshot(hub.engine) == before
    assert audit_size(hub.engine) == size + 1
    entry = audit_row(hub.engine, error.audit_index or 0)
    assert (entry.action, entry.outcome) == ("create_presentation", code)
    assert str(arguments["holder_id"]) not in str(entry.leaf)


def test_a_revoked_licence_cannot_be_presented(hub: RunningHub, world: DemoWorld) -> None:
    holder, licence = _licensed(hub, world)
    amr = world.department_by_name("市场监督管理局")
    with hub.client(amr.principal) as department:
        department.revoke(sign_revocation(licence, amr.key))
    with hub.client(CITIZEN_APP) as app, pytest.raises(HubClientError) as caught:
        app.create_presentation(licence, id_type="RESIDENT_ID", holder_id=holder.holder.id)
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.reason == "CERTIFICATE_NOT_VALID"


def test_single_use_holds_across_hub_processes(
    hub: RunningHub, world: DemoWorld, tmp_path: Path
) -> None:
    """Two hubs on one database (the same data directory's keys) redeem the same tokens at
    the same moment: each token is answered OK exactly once."""
    second = start_hub(hub.config.data_dir, hub.engine, world)
    try:
        holder, licence = _licensed(hub, world)
        tokens = [_token(hub, holder, licence) for _ in range(8)]
        clients = [hub.client(WINDOW), second.client(WINDOW)]
        outcomes: list[str] = []
        lock = threading.Lock()

        def redeem(client: HubClient, token: str, barrier: threading.Barrier) -> None:
            barrier.wait()
            try:
                client.redeem_presentation(token, service_item=ITEM, case_number="RACE")
                result = "OK"
            except HubClientError as error:
                result = error.reason
            with lock:
                outcomes.append(result)

        for token in tokens:
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=redeem, args=(c, token, barrier)) for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        for client in clients:
            client.close()
    finally:
        second.server.stop(grace=None)
        second.hub.close()
    assert sorted(outcomes) == sorted(["OK"] * 8 + ["PRESENTATION_REPLAYED"] * 8)


def test_only_windows_redeem_and_only_apps_create(hub: RunningHub, world: DemoWorld) -> None:
    holder, licence = _licensed(hub, world)
    token = _token(hub, holder, licence)
    with hub.client(CITIZEN_APP) as app, pytest.raises(HubClientError) as caught:
        app.redeem_presentation(token, service_item=ITEM, case_number="X-1")
    assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED
    with hub.client(WINDOW) as window, pytest.raises(HubClientError) as caught:
        window.create_presentation(licence, id_type="RESIDENT_ID", holder_id=holder.holder.id)
    assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED
    _redeem(hub, token)
