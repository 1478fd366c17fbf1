"""Issue 14 item 3: "who used my certificates". A citizen app (role CITIZEN_APP) lists the
audit entries about the applicant it authenticated, and only those, over real mTLS on
SQLite and PostgreSQL; the call is itself audited under the commitment, never the raw ID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.hubs import RunningHub
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
)
from certhub.v1 import citizen_pb2, common_pb2

WINDOW = "gulou-service-centre"
OTHER_WINDOW = "wenquan-street-office"


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, world: DemoWorld
) -> Iterator[RunningHub]:
    root: Path = tmp_path_factory.mktemp(f"accesses-{request.param}")
    with serving_hub(root, request.param, world) as running:
        yield running


def _holder_with_licence(hub: RunningHub, world: DemoWorld) -> tuple[DemoHolder, str]:
    """A fresh applicant with one pushed 居民身份证-free licence (a business licence)."""
    holder = citizen(next_serial() % 900)
    amr = world.department_by_name("市场监督管理局")
    payload = certificate_payload(
        world, world.type_by_name("营业执照").code, holder, serial=next_serial()
    )
    with hub.client(amr.principal) as client:
        client.push(sign_certificate(payload, [amr.key]))
    return holder, payload.certificate_id


def _fetch(client: HubClient, holder: DemoHolder, item: str, case: str) -> int:
    return client.fetch(
        id_type="RESIDENT_ID", holder_id=holder.holder.id, service_item=item, case_number=case
    ).audit_index


def test_lists_only_the_applicants_entries_newest_first(hub: RunningHub, world: DemoWorld) -> None:
    me, my_licence = _holder_with_licence(hub, world)
    someone_else, _ = _holder_with_licence(hub, world)
    items = list(world.items)
    case = f"CASE-{next_serial()}"
    with hub.client(WINDOW) as window, hub.client(OTHER_WINDOW) as other:
        mine = [
            _fetch(window, me, items[0], case),
            _fetch(window, someone_else, items[0], f"CASE-{next_serial()}"),
            _fetch(other, me, items[1], f"{case}-B"),
        ]
    with hub.client(CITIZEN_APP) as app:
        page = app.my_accesses(id_type="RESIDENT_ID", holder_id=me.holder.id)
    indices = [e.index for e in page.entries]
    assert indices == sorted(indices, reverse=True), "newest first"
    # Both fetches about me (not the one about someone else) and the push of my licence.
    assert mine[2] == indices[0]
    assert mine[0] == indices[1]
    assert mine[1] not in indices
    newest, older = page.entries[0], page.entries[1]
    assert (newest.principal, newest.action, newest.outcome) == (OTHER_WINDOW, "fetch", "ok")
    assert newest.service_item_code == items[1]
    assert newest.service_item_name == world.items[items[1]].name
    assert newest.case_number == f"{case}-B"
    assert older.principal == WINDOW
    assert older.case_number == case
    assert my_licence in older.certificate_ids
    assert page.entries[-1].action == "push"
    assert not page.next_page_token
    # The leaf is the exact bytes hashed into the tree and never carries the raw ID.
    assert all(me.holder.id.encode() not in e.leaf for e in page.entries)
    # The call itself is audited: the app, the applicant's commitment, no raw ID.
    own = audit_row(hub.engine, page.audit_index)
    assert (own.principal, own.action, own.outcome) == (CITIZEN_APP, "list_accesses", "ok")
    assert own.leaf["holder"] == hub.hub.commitment(me.holder.key())
    assert me.holder.id not in str(own.leaf)
    # ... and appears in the next listing, not in its own.
    with hub.client(CITIZEN_APP) as app:
        again = app.my_accesses(id_type="RESIDENT_ID", holder_id=me.holder.id)
    assert page.audit_index not in indices
    assert again.entries[0].index == page.audit_index


def test_pages_follow_each_other_without_overlap(hub: RunningHub, world: DemoWorld) -> None:
    me, _ = _holder_with_licence(hub, world)
    item = next(iter(world.items))
    with hub.client(WINDOW) as window:
        fetched = [_fetch(window, me, item, f"PAGE-{next_serial()}") for _ in range(3)]
    seen: list[int] = []
    token = ""
    with hub.client(CITIZEN_APP) as app:
        while True:
            page = app.my_accesses(
                id_type="RESIDENT_ID", holder_id=me.holder.id, page_size=2, page_token=token
            )
            assert len(page.entries) <= 2
            seen += [e.index for e in page.entries]
            token = page.next_page_token
            if not token:
                break
    assert seen == sorted(seen, reverse=True)
    assert set(fetched) <= set(seen)
    assert len(seen) == len(set(seen))


BAD_REQUESTS = [
    pytest.param(
        citizen_pb2.ListMyAccessesRequest(),
        "INVALID_HOLDER_ID_TYPE",
        "applicant.id_type",
        id="no-applicant",
    ),
    pytest.param(
        citizen_pb2.ListMyAccessesRequest(
            applicant=common_pb2.Holder(id_type=common_pb2.RESIDENT_ID, id="350102199001011235")
        ),
        None,
        "applicant",
        id="bad-check-character",
    ),
    pytest.param(
        citizen_pb2.ListMyAccessesRequest(
            applicant=common_pb2.Holder(id_type=common_pb2.RESIDENT_ID, id=citizen(1).holder.id),
            page_size=501,
        ),
        "PAGE_TOO_LARGE",
        "page_size",
        id="page-too-large",
    ),
    pytest.param(
        citizen_pb2.ListMyAccessesRequest(
            applicant=common_pb2.Holder(id_type=common_pb2.RESIDENT_ID, id=citizen(1).holder.id),
            page_token="not-a-token",
        ),
        "INVALID_PAGE_TOKEN",
        "page_token",
        id="foreign-page-token",
    ),
]


@pytest.mark.parametrize(("request_", "reason", "field"), BAD_REQUESTS)
def test_bad_input_is_refused_audited_and_changes_nothing(
    hub: RunningHub, request_: citizen_pb2.ListMyAccessesRequest, reason: str | None, field: str
) -> None:
    before, size = snapshot(hub.engine), audit_size(hub.engine)
    with hub.client(CITIZEN_APP) as app, pytest.raises(HubClientError) as caught:
        app.call(app.citizen.ListMyAccesses, request_)
    error = caught.value
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    if reason:
        assert error.reason == reason
    assert error.violations
    assert error.violations[0].field.startswith(field), error.violations
    assert field in error.message
    assert snapshot(hub.engine) == before
    assert audit_size(hub.engine) == size + 1
    assert error.audit_index is not None
    entry = audit_row(hub.engine, error.audit_index)
    assert (entry.action, entry.outcome) == ("list_accesses", "INVALID_ARGUMENT")
    assert request_.applicant.id == "" or request_.applicant.id not in str(entry.leaf)


def test_a_window_may_not_read_an_applicants_history(hub: RunningHub) -> None:
    with hub.client(WINDOW) as window, pytest.raises(HubClientError) as caught:
        window.my_accesses(id_type="RESIDENT_ID", holder_id=citizen(2).holder.id)
    assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.reason == "WRONG_ROLE"
    assert caught.value.audit_index is not None
    entry = audit_row(hub.engine, caught.value.audit_index)
    assert (entry.principal, entry.outcome) == (WINDOW, "PERMISSION_DENIED")
