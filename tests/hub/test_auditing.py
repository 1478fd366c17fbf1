"""AuditService end to end over real mTLS: every method, paging and filters, roles and
refusals, error codes, and the intake client proving its own fetch."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest
from support.audit_log import BASE_TIME, append_all, synthetic_records
from support.hubs import RunningHub

from certhub.core.rpc.client import (
    AuditProofError,
    HubClient,
    HubClientError,
    InvalidArgumentError,
    OutOfRangeError,
    PermissionDeniedError,
)
from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.audit.reads import DEFAULT_PAGE_SIZE, MAX_ENTRIES_PER_CALL, MAX_PAGE_SIZE
from certhub.hub.demo.world import DemoWorld, certificate_payload, citizen, sign_certificate
from certhub.signing import Algorithm, NoteSigner, PrivateKey, merkle
from certhub.signing.note import NoteVerifier, open_note, parse_checkpoint
from certhub.v1 import audit_pb2, common_pb2

AUDITOR = "gulou-audit-office"
WINDOW = "gulou-service-centre"
SMALL_WINDOW = "wenquan-street-office"


def _query(client: HubClient, **fields: Any) -> audit_pb2.AuditPage:
    page: audit_pb2.AuditPage = client.call(client.audit.QueryAudit, audit_pb2.AuditQuery(**fields))
    return page


def _fill(running_hub: RunningHub, count: int, **kwargs: Any) -> None:
    hub = running_hub.hub
    append_all(hub.sessions, hub.audit_log, synthetic_records(count, **kwargs))


def _push_and_fetch(running_hub: RunningHub, world: DemoWorld, n: int) -> tuple[str, int]:
    person = citizen(n)
    card = world.type_by_name("居民身份证")
    police = world.departments[card.issuer]
    payload = certificate_payload(world, card.code, person, serial=n)
    with running_hub.client(police.principal) as department:
        department.push(sign_certificate(payload, [police.key]))
    item = world.item_by_name("食品经营许可（新办）")
    with running_hub.client(WINDOW) as window:
        fetched = window.fetch(
            id_type="RESIDENT_ID",
            holder_id=person.holder.id,
            service_item=item.code,
            case_number=f"GL-{n}",
        )
    return person.holder.id, fetched.audit_index


def test_query_by_holder_finds_push_and_fetch_and_is_itself_audited(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    holder_id, fetch_index = _push_and_fetch(running_hub, world, 5)
    _push_and_fetch(running_hub, world, 6)
    holder = common_pb2.Holder(id_type=common_pb2.RESIDENT_ID, id=holder_id)
    with running_hub.client(AUDITOR) as auditor:
        page = _query(auditor, holder=holder)
        assert [e.action for e in page.entries] == ["fetch", "push"]
        assert page.entries[0].index == fetch_index
        assert page.entries[0].principal == WINDOW
        assert page.entries[0].case_number == "GL-5"
        commitment = running_hub.hub.commitment(f"RESIDENT_ID:{holder_id}")
        assert {e.holder_commitment for e in page.entries} == {commitment}
        assert all(holder_id.encode() not in e.leaf for e in page.entries)
        # The query itself is now the newest entry about this holder.
        again = _query(auditor, holder=holder)
    assert again.entries[0].index == page.audit_index
    assert again.entries[0].action == "audit_query"
    assert again.entries[0].principal == AUDITOR
    assert again.audit_index > page.audit_index


def test_paging_newest_first_without_gaps_or_repeats(running_hub: RunningHub) -> None:
    _fill(running_hub, 230, principal="paging-window")
    seen: list[int] = []
    token = ""
    with running_hub.client(AUDITOR) as auditor:
        while True:
            page = _query(auditor, principal="paging-window", page_size=100, page_token=token)
            seen.extend(e.index for e in page.entries)
            token = page.next_page_token
            if not token:
                break
        default = _query(auditor, principal="paging-window")
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == 230
    assert len(set(seen)) == 230
    assert len(default.entries) == DEFAULT_PAGE_SIZE


def test_filters_principal_action_certificate_and_time(running_hub: RunningHub) -> None:
    _fill(running_hub, 200, principal="filter-window")
    with running_hub.client(AUDITOR) as auditor:
        by_cert = _query(auditor, certificate_id="cert-3", page_size=MAX_PAGE_SIZE)
        by_action = _query(auditor, principal="filter-window", action="push")
        since = (BASE_TIME + dt.timedelta(seconds=10)).isoformat()
        until = (BASE_TIME + dt.timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
        window = _query(auditor, principal="filter-window", since=since, until=until)
        cst = dt.timezone(dt.timedelta(hours=8))
        since_cst = (BASE_TIME + dt.timedelta(seconds=195)).astimezone(cst).isoformat()
        tail = _query(auditor, since=since_cst, principal="filter-window")
    assert {e.index % 13 for e in by_cert.entries} == {3}
    assert len(by_cert.entries) == len([n for n in range(200) if n % 13 == 3])
    assert all(e.certificate_ids == ["cert-3"] for e in by_cert.entries)
    assert by_action.entries == []
    assert [e.case_number for e in window.entries] == [f"GL-{n:08d}" for n in range(19, 9, -1)]
    assert [e.case_number for e in tail.entries] == [f"GL-{n:08d}" for n in range(199, 194, -1)]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"page_token": "not-a-token"}, "page_token"),
        ({"page_token": "YTE6eHl6"}, "page_token"),  # "a1:xyz"
        ({"page_token": "YTE6OTk5OTk5OTk5OTk5OTk5OTk5OTk="}, "page_token"),  # past BIGINT
        ({"page_size": MAX_PAGE_SIZE + 1}, "page_size"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"holder": common_pb2.Holder(id_type=common_pb2.RESIDENT_ID, id="123")}, "holder"),
    ],
)
def test_bad_queries_are_invalid_argument_and_audited(
    running_hub: RunningHub, fields: dict[str, object], field: str
) -> None:
    with running_hub.client(AUDITOR) as auditor, pytest.raises(InvalidArgumentError) as caught:
        _query(auditor, **fields)
    assert caught.value.violations[0].field.startswith(field)
    assert caught.value.audit_index is not None
    with running_hub.client(AUDITOR) as auditor:
        page = _query(auditor, principal=AUDITOR, action="audit_query", page_size=2)
    # The listing query's own entry comes after it answered; the refusal is the newest.
    assert page.entries[0].index == caught.value.audit_index
    assert page.entries[0].outcome == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.call(c.audit.QueryAudit, audit_pb2.AuditQuery()),
        lambda c: c.call(c.audit.GetEntries, audit_pb2.GetEntriesRequest(start=0, end=1)),
    ],
    ids=["QueryAudit", "GetEntries"],
)
@pytest.mark.parametrize("principal", [WINDOW, "gulou-operator"])
def test_non_auditors_are_refused_and_the_refusal_is_logged(
    running_hub: RunningHub, call: object, principal: str
) -> None:
    _fill(running_hub, 3)
    with running_hub.client(principal) as client, pytest.raises(PermissionDeniedError) as caught:
        call(client)  # type: ignore[operator]
    assert caught.value.reason == "WRONG_ROLE"
    with running_hub.client(AUDITOR) as auditor:
        page = _query(auditor, principal=principal)
    assert page.entries[0].index == caught.value.audit_index
    assert page.entries[0].outcome == "PERMISSION_DENIED"
    assert page.entries[0].action == "audit_query"


def test_unknown_principal_is_unauthenticated(running_hub: RunningHub) -> None:
    with running_hub.client("nobody-at-all") as stranger, pytest.raises(HubClientError) as caught:
        stranger.call(stranger.audit.GetCheckpoint, audit_pb2.GetCheckpointRequest())
    assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED


def test_checkpoint_is_signed_by_the_log_key(running_hub: RunningHub) -> None:
    _fill(running_hub, 10)
    with running_hub.client(AUDITOR) as auditor:
        response = auditor.call(auditor.audit.GetCheckpoint, audit_pb2.GetCheckpointRequest())
    assert response.verifier_key == running_hub.hub.audit_log.keys.signer.vkey
    body = parse_checkpoint(
        open_note(response.note, [NoteVerifier.from_vkey(response.verifier_key)])
    )
    assert (body.origin, body.size, body.root_hash) == (
        response.origin,
        response.size,
        response.root_hash,
    )
    assert body.size >= 10


def test_inclusion_and_consistency_proofs_verify(running_hub: RunningHub) -> None:
    _fill(running_hub, 37)
    with running_hub.client(AUDITOR) as auditor:
        auditor.log_verifier_key = running_hub.hub.audit_log.keys.signer.vkey
        first = auditor.checkpoint()
        _fill(running_hub, 20, start=37)
        second = auditor.checkpoint()  # checks consistency with `first` itself
        for index in (0, 1, 17, first.size - 1, second.size - 1):
            proven = auditor.verify_audit_index(index, second)
            assert proven.index == index
        old = auditor.call(
            auditor.audit.GetInclusionProof,
            audit_pb2.GetInclusionProofRequest(leaf_index=5, tree_size=first.size),
        )
        consistency = auditor.call(
            auditor.audit.GetConsistencyProof,
            audit_pb2.GetConsistencyProofRequest(first_size=first.size),
        )
    merkle.verify_inclusion(
        leaf_index=5,
        tree_size=first.size,
        leaf_hash=merkle.leaf_hash(old.leaf),
        proof=list(old.hashes),
        root=first.root_hash,
    )
    assert consistency.second_size == second.size
    merkle.verify_consistency(
        size1=first.size,
        size2=second.size,
        root1=first.root_hash,
        root2=second.root_hash,
        proof=list(consistency.hashes),
    )


@pytest.mark.parametrize(
    ("method", "request_fields", "error"),
    [
        ("GetInclusionProof", {"leaf_index": 10_000}, OutOfRangeError),
        ("GetInclusionProof", {"leaf_index": 1, "tree_size": 10_000}, OutOfRangeError),
        ("GetInclusionProof", {"leaf_index": 5, "tree_size": 5}, InvalidArgumentError),
        ("GetConsistencyProof", {"first_size": 0, "second_size": 3}, InvalidArgumentError),
        ("GetConsistencyProof", {"first_size": 4, "second_size": 3}, InvalidArgumentError),
        ("GetConsistencyProof", {"first_size": 10_000}, OutOfRangeError),
        ("GetConsistencyProof", {"first_size": 2, "second_size": 10_000}, OutOfRangeError),
        ("GetEntries", {"start": 10_000, "end": 10_001}, OutOfRangeError),
        ("GetEntries", {"start": 3, "end": 3}, InvalidArgumentError),
        ("GetInclusionProof", {"leaf_index": 2**64 - 1}, OutOfRangeError),
        ("GetConsistencyProof", {"first_size": 2**64 - 1}, OutOfRangeError),
        ("GetEntries", {"start": 2**64 - 1, "end": 2**64 - 1}, InvalidArgumentError),
    ],
)
def test_bad_sizes_are_out_of_range_or_invalid_never_internal(
    running_hub: RunningHub,
    method: str,
    request_fields: dict[str, int],
    error: type[HubClientError],
) -> None:
    _fill(running_hub, 12)
    request_types: dict[str, Any] = {
        "GetInclusionProof": audit_pb2.GetInclusionProofRequest,
        "GetConsistencyProof": audit_pb2.GetConsistencyProofRequest,
        "GetEntries": audit_pb2.GetEntriesRequest,
    }
    request_type = request_types[method]
    with running_hub.client(AUDITOR) as auditor, pytest.raises(error) as caught:
        auditor.call(getattr(auditor.audit, method), request_type(**request_fields))
    assert caught.value.audit_index is not None


def test_get_entries_pages_and_match_the_tree(running_hub: RunningHub) -> None:
    _fill(running_hub, MAX_ENTRIES_PER_CALL + 30)
    leaves: list[bytes] = []
    with running_hub.client(AUDITOR) as auditor:
        checkpoint = auditor.call(auditor.audit.GetCheckpoint, audit_pb2.GetCheckpointRequest())
        while len(leaves) < checkpoint.size:
            response = auditor.call(
                auditor.audit.GetEntries,
                audit_pb2.GetEntriesRequest(start=len(leaves), end=checkpoint.size + 50),
            )
            assert 0 < len(response.leaves) <= MAX_ENTRIES_PER_CALL
            leaves.extend(response.leaves)
    assert len(leaves) == checkpoint.size
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(x) for x in leaves])
    assert root == checkpoint.root_hash


def test_intake_client_proves_its_own_fetch_but_not_others_entries(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    person = citizen(11)
    card = world.type_by_name("居民身份证")
    police = world.departments[card.issuer]
    with running_hub.client(police.principal) as department:
        pushed = department.push(
            sign_certificate(certificate_payload(world, card.code, person, serial=1), [police.key])
        )
    item = world.item_by_name("食品经营许可（新办）")
    with running_hub.client(WINDOW) as window:
        window.log_verifier_key = running_hub.hub.audit_log.keys.signer.vkey
        fetched = window.fetch(
            id_type="RESIDENT_ID",
            holder_id=person.holder.id,
            service_item=item.code,
            case_number="GL-PROVE-1",
            prove_audit=True,
        )
        assert fetched.audit_proof is not None
        assert fetched.audit_proof.index == fetched.audit_index
        assert fetched.audit_proof.fields["case"] == "GL-PROVE-1"
        assert fetched.audit_proof.checkpoint.size > fetched.audit_index
        with pytest.raises(PermissionDeniedError) as caught:
            window.verify_audit_index(pushed.audit_index, fetched.audit_proof.checkpoint)
    assert caught.value.reason == "NOT_OWN_ENTRY"


def test_client_rejects_a_checkpoint_signed_by_another_key(running_hub: RunningHub) -> None:
    _fill(running_hub, 3)
    origin = running_hub.hub.audit_log.keys.origin
    impostor = NoteSigner(origin, PrivateKey.generate(Algorithm.ED25519))
    with running_hub.client(SMALL_WINDOW) as window, pytest.raises(AuditProofError):
        window.checkpoint(verifier_key=impostor.vkey)


def test_entries_without_a_log_are_out_of_range(running_hub: RunningHub) -> None:
    # A fresh hub's log holds nothing; the first call must not be INTERNAL.
    with running_hub.client(AUDITOR) as auditor, pytest.raises(OutOfRangeError):
        auditor.call(auditor.audit.GetEntries, audit_pb2.GetEntriesRequest(start=0, end=5))


def test_audit_entry_records_are_what_the_leaf_says(running_hub: RunningHub) -> None:
    hub = running_hub.hub
    record = AuditRecord(
        time=dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC),
        principal="leaf-check",
        action=Action.GET,
        outcome=OK,
        holder_commitment="ab" * 32,
        certificate_ids=("c1", "c2"),
        service_item_code="350102-0002",
        case_number="GL-LEAF",
    )
    append_all(hub.sessions, hub.audit_log, [record])
    with running_hub.client(AUDITOR) as auditor:
        entry = _query(auditor, principal="leaf-check").entries[0]
    assert entry.leaf == record.leaf()
    assert entry.time == "2026-03-01T08:30:00.000000Z"
    assert list(entry.certificate_ids) == ["c1", "c2"]
    assert entry.holder_commitment == "ab" * 32


def test_an_empty_log_has_a_signed_empty_checkpoint(running_hub: RunningHub) -> None:
    with running_hub.client(SMALL_WINDOW) as window:
        window.log_verifier_key = running_hub.hub.audit_log.keys.signer.vkey
        empty = window.checkpoint()
        assert (empty.size, empty.root_hash) == (0, merkle.EMPTY_ROOT)
        _fill(running_hub, 4)
        grown = window.checkpoint()
    assert grown.size == 4
