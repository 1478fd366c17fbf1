"""A certificate's life over real mTLS: versions, revocation, streaming pushes, data
minimisation and verification at the window (issue 2), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from support.hubs import RunningHub
from support.probes import (
    assert_audited_refusal,
    audit_row,
    decoded_payload,
    refused,
    snapshot,
    with_payload,
)

from certhub.core.rpc.client import Fetched, HubClient, HubClientError, VerifiedCertificate
from certhub.hub.demo.world import (
    DemoDepartment,
    DemoHolder,
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
    sign_revocation,
)
from certhub.hub.domain.certificate import MAX_ATTACHMENT_BYTES, CertificatePayload
from certhub.hub.grpc.servicers import STREAM_IN_FLIGHT
from certhub.signing import Algorithm, PrivateKey
from certhub.v1 import common_pb2, ingest_pb2

WINDOW = "gulou-service-centre"
CHANGE_ITEM = "食品经营许可（变更）"  # needs a business licence and the old food licence


@pytest.fixture
def amr(world: DemoWorld) -> DemoDepartment:
    return world.department_by_name("市场监督管理局")


@pytest.fixture
def company() -> DemoHolder:
    return enterprise(21)


def licence(
    world: DemoWorld, holder: DemoHolder, *, version: int = 1, serial: int = 7
) -> CertificatePayload:
    return certificate_payload(
        world, world.type_by_name("营业执照").code, holder, serial=serial, version=version
    )


def fetch(window: HubClient, world: DemoWorld, holder: DemoHolder, case: str = "GL-9") -> Fetched:
    return window.fetch(
        id_type=str(holder.holder.id_type),
        holder_id=holder.holder.id,
        service_item=world.item_by_name(CHANGE_ITEM).code,
        case_number=case,
    )


def get(
    window: HubClient, world: DemoWorld, holder: DemoHolder, certificate_id: str
) -> VerifiedCertificate:
    return window.get(
        certificate_id,
        id_type=str(holder.holder.id_type),
        holder_id=holder.holder.id,
        service_item=world.item_by_name(CHANGE_ITEM).code,
        case_number="GL-9",
    )


# --- versions ---------------------------------------------------------------------------


def test_v2_supersedes_v1(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    v1, v2 = licence(world, company), licence(world, company, version=2)
    with running_hub.client(amr.principal) as department:
        for p in (v1, v2):
            assert department.push(sign_certificate(p, [amr.key])).outcome == ingest_pb2.ACCEPTED
    with running_hub.client(WINDOW) as window:
        fetched = fetch(window, world, company)
        assert [c.certificate_id for c in fetched.certificates] == [v2.certificate_id]
        assert get(window, world, company, v1.certificate_id).status == "SUPERSEDED"
        assert get(window, world, company, v2.certificate_id).status == "VALID"


def test_v1_pushed_after_v2_is_stored_superseded(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    v1, v2 = licence(world, company), licence(world, company, version=2)
    with running_hub.client(amr.principal) as department:
        for p in (v2, v1):
            assert department.push(sign_certificate(p, [amr.key])).outcome == ingest_pb2.ACCEPTED
    assert snapshot(running_hub.engine).certificates == 2
    with running_hub.client(WINDOW) as window:
        fetched = fetch(window, world, company)
        assert [c.certificate_id for c in fetched.certificates] == [v2.certificate_id]
        assert get(window, world, company, v1.certificate_id).status == "SUPERSEDED"


# --- revocation -------------------------------------------------------------------------


def test_revocation_shows_everywhere_and_is_idempotent(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    v1 = licence(world, company)
    envelope = sign_certificate(v1, [amr.key])
    with running_hub.client(amr.principal) as department:
        department.push(envelope)
        first = department.revoke(sign_revocation(v1.certificate_id, amr.key), client_ref="c1")
        again = department.revoke(sign_revocation(v1.certificate_id, amr.key, reason="吊销"))
    assert first.newly_revoked
    assert first.client_ref == "c1"
    assert not again.newly_revoked
    assert snapshot(running_hub.engine).revocations == 1
    assert audit_row(running_hub.engine, first.audit_index).action == "revoke"
    with running_hub.client(WINDOW) as window:
        fetched = fetch(window, world, company)
        [record] = fetched.certificates
        assert record.status == "REVOKED"
        assert record.record.revocation_envelope
        # A revoked licence satisfies no material.
        assert not any(m.certificate_ids for m in fetched.materials)
        assert get(window, world, company, v1.certificate_id).status == "REVOKED"
        verdict = window.verify(envelope)
    assert not verdict.valid
    assert common_pb2.CertificateStatus.Name(verdict.status) == "REVOKED"
    assert "status is REVOKED" in verdict.reasons


def test_revocation_by_another_department_is_refused(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    v1 = licence(world, company)
    health = world.department_by_name("卫生健康")
    with running_hub.client(amr.principal) as department:
        department.push(sign_certificate(v1, [amr.key]))
    before = snapshot(running_hub.engine)
    with running_hub.client(health.principal) as other:
        error = refused(
            grpc.StatusCode.PERMISSION_DENIED,
            lambda: other.revoke(sign_revocation(v1.certificate_id, health.key)),
        )
    assert error.reason == "FOREIGN_CERTIFICATE"
    assert v1.certificate_id in error.message
    assert snapshot(running_hub.engine) == before
    assert_audited_refusal(running_hub.engine, error, principal=health.principal)


def test_revocation_of_an_unknown_certificate(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    unknown = licence(world, company).certificate_id
    with running_hub.client(amr.principal) as department:
        error = refused(
            grpc.StatusCode.NOT_FOUND, lambda: department.revoke(sign_revocation(unknown, amr.key))
        )
    assert error.reason == "CERTIFICATE_NOT_FOUND"
    assert unknown in error.message
    assert snapshot(running_hub.engine).revocations == 0
    assert_audited_refusal(running_hub.engine, error, principal=amr.principal)


def test_pushes_to_a_revoked_lineage_are_refused(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    v1, v2 = licence(world, company), licence(world, company, version=2)
    with running_hub.client(amr.principal) as department:
        department.push(sign_certificate(v1, [amr.key]))
        department.revoke(sign_revocation(v1.certificate_id, amr.key))
        before = snapshot(running_hub.engine)
        error = refused(
            grpc.StatusCode.FAILED_PRECONDITION,
            lambda: department.push(sign_certificate(v2, [amr.key])),
        )
    assert error.reason == "CERTIFICATE_REVOKED"
    assert snapshot(running_hub.engine) == before
    assert_audited_refusal(running_hub.engine, error, principal=amr.principal)


# --- streaming --------------------------------------------------------------------------


def test_stream_answers_every_item_in_order_and_survives_rejections(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment
) -> None:
    health = world.department_by_name("卫生健康")
    good = [licence(world, enterprise(30 + n), serial=30 + n) for n in range(4)]
    items = [
        (sign_certificate(good[0], [amr.key]), "ok-0"),
        (b"{not json", "bad-json"),
        (sign_certificate(good[1], [amr.key]), "ok-1"),
        (sign_certificate(good[2], [health.key]), "foreign-key"),
        (sign_certificate(good[0], [amr.key]), "dup-0"),
        (sign_certificate(good[3], [amr.key]), "ok-3"),
    ]
    requests = [ingest_pb2.PushRequest(envelope=e, client_ref=ref) for e, ref in items]
    with running_hub.client(amr.principal) as department:
        results = list(department.push_stream(requests, timeout=30))
    assert [r.client_ref for r in results] == [ref for _, ref in items]
    outcomes = [ingest_pb2.PushOutcome.Name(r.outcome) for r in results]
    assert outcomes == ["ACCEPTED", "REJECTED", "ACCEPTED", "REJECTED", "DUPLICATE", "ACCEPTED"]
    for r in (results[1], results[3]):
        assert r.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert r.message
        assert r.reason in {"MALFORMED_ENVELOPE", "BAD_SIGNATURE"}
        assert audit_row(running_hub.engine, r.audit_index).outcome == "INVALID_ARGUMENT"
    assert results[3].reason == "BAD_SIGNATURE"
    assert results[1].reason == "MALFORMED_ENVELOPE"
    assert results[0].certificate_id == good[0].certificate_id
    assert len({r.audit_index for r in results}) == len(results)
    assert snapshot(running_hub.engine).certificates == 3


# --- data minimisation ------------------------------------------------------------------


def test_fetch_and_get_serve_only_what_the_item_needs(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    names = ("营业执照", "食品经营许可证", "药品经营许可证", "企业名称自主申报告知书")
    payloads = [
        certificate_payload(world, world.type_by_name(n).code, company, serial=k)
        for k, n in enumerate(names, start=1)
    ]
    other = certificate_payload(
        world, world.type_by_name("营业执照").code, enterprise(99), serial=9
    )
    with running_hub.client(amr.principal) as department:
        for p in (*payloads, other):
            department.push(sign_certificate(p, [amr.key]))
    with running_hub.client(WINDOW) as window:
        fetched = fetch(window, world, company)
        served = sorted(c.payload["name"] for c in fetched.certificates)
        assert served == sorted(names[:2])
        assert all(m.satisfied for m in fetched.materials)
        drug = payloads[2].certificate_id
        error = refused(
            grpc.StatusCode.PERMISSION_DENIED, lambda: get(window, world, company, drug)
        )
        assert error.reason == "NOT_NEEDED_FOR_ITEM"
        assert_audited_refusal(running_hub.engine, error, principal=WINDOW)
        # Another holder's licence: the same answer as an id that does not exist.
        error = refused(
            grpc.StatusCode.NOT_FOUND,
            lambda: get(window, world, company, other.certificate_id),
        )
        missing = refused(
            grpc.StatusCode.NOT_FOUND,
            lambda: get(window, world, company, other.certificate_id[:-1] + "Q"),
        )
    assert error.reason == missing.reason == "CERTIFICATE_NOT_FOUND"
    assert_audited_refusal(running_hub.engine, error, principal=WINDOW)
    assert other.holder.id not in error.message


# --- verification at the window ----------------------------------------------------------


def test_verify_certificate(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    stored = licence(world, company)
    envelope = sign_certificate(stored, [amr.key])
    unstored = sign_certificate(licence(world, enterprise(22), serial=22), [amr.key])
    document = json.loads(decoded_payload(envelope))
    document["holder"]["name"] = "另一家公司"
    tampered = with_payload(envelope, json.dumps(document, ensure_ascii=False).encode())
    stranger = PrivateKey.generate(Algorithm.ED25519)
    unknown_key = sign_certificate(stored, [stranger])
    with running_hub.client(amr.principal) as department:
        department.push(envelope)
    before = snapshot(running_hub.engine)
    with running_hub.client(WINDOW) as window:
        ok = window.verify(envelope)
        assert ok.valid
        assert ok.stored
        assert list(ok.reasons) == []
        assert ok.key_id == amr.key.public_key.key_id
        assert ok.issuer_code == amr.code
        assert ok.summary.certificate_id == stored.certificate_id
        assert audit_row(running_hub.engine, ok.audit_index).outcome == "ok"

        bad = window.verify(tampered)
        assert not bad.valid
        assert any("does not verify" in r for r in bad.reasons)
        assert any("different bytes" in r for r in bad.reasons)

        foreign = window.verify(unknown_key)
        assert not foreign.valid
        assert any(
            stranger.public_key.key_id in r and "not a known key" in r for r in foreign.reasons
        )

        missing = window.verify(unstored)
        assert not missing.valid
        assert not missing.stored
        assert any("holds no such certificate" in r for r in missing.reasons)
        assert audit_row(running_hub.engine, missing.audit_index).outcome == "invalid"

        error = refused(grpc.StatusCode.INVALID_ARGUMENT, lambda: window.verify(b"\x00garbage"))
        assert error.reason == "MALFORMED_ENVELOPE"
        assert_audited_refusal(running_hub.engine, error, principal=WINDOW)
    with running_hub.client(amr.principal) as department:
        department.revoke(sign_revocation(stored.certificate_id, amr.key))
    with running_hub.client(WINDOW) as window:
        revoked = window.verify(envelope)
    assert not revoked.valid
    assert "status is REVOKED" in revoked.reasons
    after = snapshot(running_hub.engine)
    assert (after.certificates, after.cases) == (before.certificates, before.cases)


def test_revocation_after_a_fetch_is_not_hidden_by_the_holder_cache(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    """A fetch that starts after a revocation returned never shows the certificate as valid,
    even when an earlier fetch put the holder in the cache (DESIGN.md, "Cache")."""
    v1 = licence(world, company)
    with running_hub.client(amr.principal) as department:
        department.push(sign_certificate(v1, [amr.key]))
    with running_hub.client(WINDOW) as window:
        assert [c.status for c in fetch(window, world, company, "C-1").certificates] == ["VALID"]
    with running_hub.client(amr.principal) as department:
        assert department.revoke(sign_revocation(v1.certificate_id, amr.key)).newly_revoked
    with running_hub.client(WINDOW) as window:
        assert [c.status for c in fetch(window, world, company, "C-2").certificates] == ["REVOKED"]


def test_attachments_are_served_only_when_asked(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 8
    payload = certificate_payload(
        world, world.type_by_name("营业执照").code, company, serial=8, attachment=pdf
    )
    with running_hub.client(amr.principal) as department:
        pushed = department.push(sign_certificate(payload, [amr.key]), attachment=pdf)
        again = department.push(sign_certificate(payload, [amr.key]), attachment=pdf)
    assert (pushed.outcome, again.outcome) == (ingest_pb2.ACCEPTED, ingest_pb2.DUPLICATE)
    assert audit_row(running_hub.engine, again.audit_index).outcome == "ok"
    assert snapshot(running_hub.engine).attachments == 1
    item = world.item_by_name(CHANGE_ITEM).code
    with running_hub.client(WINDOW) as window:
        plain = fetch(window, world, company)
        full = window.fetch(
            id_type="USCC",
            holder_id=company.holder.id,
            service_item=item,
            case_number="GL-9",
            include_attachments=True,
        )
        one = window.get(
            payload.certificate_id,
            id_type="USCC",
            holder_id=company.holder.id,
            service_item=item,
            case_number="GL-9",
            include_attachments=True,
        )
    assert plain.certificates[0].record.attachment == b""
    assert full.certificates[0].record.attachment == pdf
    assert one.record.attachment == pdf
    assert full.certificates[0].record.summary.attachment_size == len(pdf)


def test_verify_an_older_version_says_superseded(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    v1, v2 = licence(world, company), licence(world, company, version=2)
    old = sign_certificate(v1, [amr.key])
    with running_hub.client(amr.principal) as department:
        department.push(old)
        department.push(sign_certificate(v2, [amr.key]))
    with running_hub.client(WINDOW) as window:
        verdict = window.verify(old)
    assert not verdict.valid
    assert verdict.stored
    assert common_pb2.CertificateStatus.Name(verdict.status) == "SUPERSEDED"
    assert "status is SUPERSEDED" in verdict.reasons


def test_concurrent_pushes_of_one_version_store_it_once(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    same = sign_certificate(licence(world, company), [amr.key])
    other = sign_certificate(
        dataclasses.replace(licence(world, company), number="JY-OTHER-BYTES"), [amr.key]
    )
    envelopes = [same] * 6 + [other] * 6

    # One channel shared by all threads (gRPC channels are thread-safe): concurrent calls.
    with running_hub.client(amr.principal) as department:

        def push(envelope: bytes) -> str:
            try:
                return ingest_pb2.PushOutcome.Name(department.push(envelope).outcome)
            except HubClientError as error:
                return error.code.name

        with ThreadPoolExecutor(max_workers=len(envelopes)) as pool:
            outcomes = Counter(pool.map(push, envelopes))
    assert outcomes["ACCEPTED"] == 1
    # Whichever bytes won, the other six conflict and the rest of the winner's are duplicates.
    assert outcomes["ALREADY_EXISTS"] == 6
    assert outcomes["DUPLICATE"] == 5
    assert snapshot(running_hub.engine).certificates == 1


@pytest.mark.slow
def test_a_long_stream_is_answered_in_order(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment
) -> None:
    """More requests than the stream keeps in flight (back-pressure), every third one bad."""
    count = 3 * STREAM_IN_FLIGHT
    requests = [
        ingest_pb2.PushRequest(
            envelope=b"not an envelope"
            if n % 3 == 0
            else sign_certificate(licence(world, enterprise(n), serial=n), [amr.key]),
            client_ref=f"ref-{n}",
        )
        for n in range(count)
    ]
    with running_hub.client(amr.principal) as department:
        results = list(department.push_stream(requests, timeout=120))
    assert [r.client_ref for r in results] == [f"ref-{n}" for n in range(count)]
    assert [r.outcome == ingest_pb2.REJECTED for r in results] == [n % 3 == 0 for n in range(count)]
    assert snapshot(running_hub.engine).certificates == count - count // 3


@pytest.mark.slow
def test_an_attachment_near_the_limit_reaches_the_window(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, company: DemoHolder
) -> None:
    """The typed client accepts what the hub may send (gRPC's default stops at 4 MiB)."""
    pdf = b"%PDF-1.7\n" + b"\x01" * (MAX_ATTACHMENT_BYTES - 16)
    payload = certificate_payload(
        world, world.type_by_name("营业执照").code, company, serial=9, attachment=pdf
    )
    with running_hub.client(amr.principal) as department:
        department.push(sign_certificate(payload, [amr.key]), attachment=pdf)
    with running_hub.client(WINDOW) as window:
        window.timeout = 60
        fetched = window.fetch(
            id_type="USCC",
            holder_id=company.holder.id,
            service_item=world.item_by_name(CHANGE_ITEM).code,
            case_number="GL-BIG",
            include_attachments=True,
        )
    assert fetched.certificates[0].record.attachment == pdf
