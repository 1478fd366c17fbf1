"""Issue 2, "Bad input gets a clear answer and changes nothing": one test per bullet, over real
gRPC with real mTLS on SQLite and PostgreSQL. Each refusal is checked for its status code, a
message (and field violation or reason) naming the problem, an unchanged database, and its
audit entry."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.hubs import RunningHub
from support.probes import (
    assert_audited_refusal,
    audit_size,
    decoded_payload,
    envelope_fields,
    payload_dict,
    rebuild,
    refused,
    sign_bytes,
    sign_dict,
    snapshot,
    violation_fields,
    with_payload,
)

from certhub.core.rpc.client import ClientTLS, HubClient, HubClientError
from certhub.hub.demo.world import (
    DemoDepartment,
    DemoWorld,
    certificate_payload,
    citizen,
    enterprise,
    sign_certificate,
)
from certhub.hub.domain.certificate import CertificatePayload
from certhub.hub.domain.identifier import make_identifier
from certhub.hub.pki import init_pki, issue_client_certificate
from certhub.signing import REVOCATION_PAYLOAD_TYPE, Algorithm, PrivateKey
from certhub.v1 import directory_pb2, ingest_pb2

WINDOW = "gulou-service-centre"
# Handles only the first three service items of the demo world.
STREET_OFFICE = "wenquan-street-office"


@pytest.fixture
def amr(world: DemoWorld) -> DemoDepartment:
    return world.department_by_name("市场监督管理局")


@pytest.fixture
def licence(world: DemoWorld) -> CertificatePayload:
    """A valid business licence payload issued by the market regulator."""
    return certificate_payload(world, world.type_by_name("营业执照").code, enterprise(11), serial=1)


def push_refused(
    running_hub: RunningHub,
    department: DemoDepartment,
    envelope: bytes,
    code: grpc.StatusCode,
    *,
    attachment: bytes = b"",
) -> HubClientError:
    """Push and expect ``code``; nothing stored, the refusal audited under its status name."""
    before = snapshot(running_hub.engine)
    with running_hub.client(department.principal) as client:
        error = refused(code, lambda: client.push(envelope, attachment=attachment))
    assert snapshot(running_hub.engine) == before
    row = assert_audited_refusal(running_hub.engine, error, principal=department.principal)
    assert row.action == "push"
    return error


def test_malformed_envelope_json(running_hub: RunningHub, amr: DemoDepartment) -> None:
    error = push_refused(
        running_hub, amr, b'{"payloadType": "x", "payload": ', grpc.StatusCode.INVALID_ARGUMENT
    )
    assert error.reason == "MALFORMED_ENVELOPE"
    assert violation_fields(error) == ["envelope"]
    assert "JSON" in error.message or "json" in error.message


def test_bad_base64(
    running_hub: RunningHub, amr: DemoDepartment, licence: CertificatePayload
) -> None:
    document = envelope_fields(sign_certificate(licence, [amr.key]))
    document["payload"] = "not base64 at all!*"
    error = push_refused(running_hub, amr, rebuild(document), grpc.StatusCode.INVALID_ARGUMENT)
    assert error.reason == "MALFORMED_ENVELOPE"
    assert "base64" in error.message


def test_payload_not_the_certificate_media_type(
    running_hub: RunningHub, amr: DemoDepartment, licence: CertificatePayload
) -> None:
    payload = decoded_payload(sign_certificate(licence, [amr.key]))
    envelope = sign_bytes(payload, [amr.key], payload_type="application/json")
    error = push_refused(running_hub, amr, envelope, grpc.StatusCode.INVALID_ARGUMENT)
    assert error.reason == "WRONG_PAYLOAD_TYPE"
    assert violation_fields(error) == ["envelope.payloadType"]
    assert "application/json" in error.message


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("holder"), "payload.holder"),
        (lambda d: d.pop("number"), "payload.number"),
        (lambda d: d.__setitem__("version", "1"), "payload.version"),
        (lambda d: d.__setitem__("issued_on", 20240301), "payload.issued_on"),
        (lambda d: d.__setitem__("fields", ["not", "a", "map"]), "payload.fields"),
        (lambda d: d["holder"].__setitem__("name", None), "payload.holder.name"),
    ],
    ids=["missing-holder", "missing-number", "string-version", "int-date", "list-fields", "null"],
)
def test_missing_or_wrong_typed_payload_fields(
    running_hub: RunningHub,
    amr: DemoDepartment,
    licence: CertificatePayload,
    mutate: object,
    field: str,
) -> None:
    document = payload_dict(licence)
    mutate(document)  # type: ignore[operator]
    error = push_refused(
        running_hub, amr, sign_dict(document, [amr.key]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert field in violation_fields(error)
    assert field in error.message


def _last_char_changed(value: str, alphabet: str) -> str:
    return value[:-1] + next(c for c in alphabet if c != value[-1])


def test_invalid_resident_id_check_char(running_hub: RunningHub, world: DemoWorld) -> None:
    card = world.type_by_name("居民身份证")
    police = world.departments[card.issuer]
    document = payload_dict(certificate_payload(world, card.code, citizen(5), serial=1))
    document["holder"]["id"] = _last_char_changed(document["holder"]["id"], "0123456789X")
    error = push_refused(
        running_hub, police, sign_dict(document, [police.key]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "payload.holder.id" in violation_fields(error)
    assert "check" in error.message


def test_invalid_uscc_check_char(
    running_hub: RunningHub, amr: DemoDepartment, licence: CertificatePayload
) -> None:
    document = payload_dict(licence)
    document["holder"]["id"] = _last_char_changed(document["holder"]["id"], "0123456789ABCDEFGH")
    error = push_refused(
        running_hub, amr, sign_dict(document, [amr.key]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "payload.holder.id" in violation_fields(error)
    assert "check" in error.message


def test_invalid_identifier_check_char(
    running_hub: RunningHub, amr: DemoDepartment, licence: CertificatePayload
) -> None:
    document = payload_dict(licence)
    cid = document["certificate_id"]
    document["certificate_id"] = _last_char_changed(cid, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    error = push_refused(
        running_hub, amr, sign_dict(document, [amr.key]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "payload.certificate_id" in violation_fields(error)
    assert "check" in error.message


def test_signature_by_an_unknown_key(
    running_hub: RunningHub, amr: DemoDepartment, licence: CertificatePayload
) -> None:
    stranger = PrivateKey.generate(Algorithm.ECDSA_P256_SHA256)
    error = push_refused(
        running_hub, amr, sign_certificate(licence, [stranger]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert error.reason == "BAD_SIGNATURE"
    assert violation_fields(error) == ["envelope.signatures"]
    assert stranger.public_key.key_id in error.message
    assert "not a known key" in error.message


def test_signature_by_another_departments_key(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, licence: CertificatePayload
) -> None:
    health = world.department_by_name("卫生健康")
    error = push_refused(
        running_hub, amr, sign_certificate(licence, [health.key]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert error.reason == "BAD_SIGNATURE"
    assert f"belongs to department {health.code}" in error.message


def test_signature_by_a_key_outside_its_validity(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment
) -> None:
    # The demo keys are valid from 2020-01-01: a licence issued in 2019 cannot be theirs.
    early = certificate_payload(
        world,
        world.type_by_name("营业执照").code,
        enterprise(12),
        serial=1,
        issued_on=dt.date(2019, 6, 1),
    )
    error = push_refused(
        running_hub, amr, sign_certificate(early, [amr.key]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert error.reason == "BAD_SIGNATURE"
    assert "2019-06-01" in error.message


def test_tampered_payload(
    running_hub: RunningHub, amr: DemoDepartment, licence: CertificatePayload
) -> None:
    envelope = sign_certificate(licence, [amr.key])
    document = json.loads(decoded_payload(envelope))
    document["holder"]["name"] = "冒名顶替有限公司"
    tampered = with_payload(envelope, json.dumps(document, ensure_ascii=False).encode())
    error = push_refused(running_hub, amr, tampered, grpc.StatusCode.INVALID_ARGUMENT)
    assert error.reason == "BAD_SIGNATURE"
    assert "does not verify" in error.message


def test_department_pushing_a_type_it_does_not_issue(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, licence: CertificatePayload
) -> None:
    hospital = world.type_by_name("医疗机构执业许可证")  # issued by the health commission
    foreign = dataclasses.replace(
        licence,
        type_code=hospital.code,
        name=hospital.name,
        kind=hospital.kind,
        certificate_id=str(
            make_identifier(
                type_code=hospital.code, issuer=amr.code, serial="202400000001", version=1
            )
        ),
    )
    error = push_refused(
        running_hub, amr, sign_certificate(foreign, [amr.key]), grpc.StatusCode.PERMISSION_DENIED
    )
    assert error.reason == "TYPE_NOT_ISSUED"
    assert hospital.code in error.message
    assert amr.code in error.message


def test_attachment_whose_digest_does_not_match(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment
) -> None:
    pdf = b"%PDF-1.7 licence face"
    payload = certificate_payload(
        world, world.type_by_name("营业执照").code, enterprise(13), serial=1, attachment=pdf
    )
    other = b"%PDF-1.7 licence fake"
    error = push_refused(
        running_hub,
        amr,
        sign_certificate(payload, [amr.key]),
        grpc.StatusCode.INVALID_ARGUMENT,
        attachment=other,
    )
    assert error.reason == "ATTACHMENT_DIGEST_MISMATCH"
    assert violation_fields(error) == ["attachment"]


def test_same_id_and_version_with_different_bytes_vs_same_bytes(
    running_hub: RunningHub, amr: DemoDepartment, licence: CertificatePayload
) -> None:
    original = sign_certificate(licence, [amr.key])
    changed = sign_certificate(
        dataclasses.replace(licence, fields={"住所": "福州市鼓楼区杨桥路2号"}), [amr.key]
    )
    with running_hub.client(amr.principal) as client:
        assert client.push(original).outcome == ingest_pb2.ACCEPTED
        repeat = client.push(original)
    assert repeat.outcome == ingest_pb2.DUPLICATE
    assert repeat.certificate_id == licence.certificate_id
    error = push_refused(running_hub, amr, changed, grpc.StatusCode.ALREADY_EXISTS)
    assert error.reason == "VERSION_CONFLICT"
    assert licence.certificate_id in error.message
    assert snapshot(running_hub.engine).certificates == 1


def test_intake_asking_for_a_service_item_it_does_not_handle(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    not_handled = list(world.items)[5]
    before = snapshot(running_hub.engine)
    with running_hub.client(STREET_OFFICE) as window:
        error = refused(
            grpc.StatusCode.PERMISSION_DENIED,
            lambda: window.fetch(
                id_type="USCC",
                holder_id=enterprise(1).holder.id,
                service_item=not_handled,
                case_number="GL-2026-1",
            ),
        )
    assert error.reason == "FOREIGN_SERVICE_ITEM"
    assert not_handled in error.message
    assert snapshot(running_hub.engine) == before  # not even the case is counted
    row = assert_audited_refusal(running_hub.engine, error, principal=STREET_OFFICE)
    assert row.action == "fetch"


@pytest.mark.parametrize("case_number", ["", "   "])
def test_empty_case_number(running_hub: RunningHub, world: DemoWorld, case_number: str) -> None:
    before = snapshot(running_hub.engine)
    with running_hub.client(WINDOW) as window:
        error = refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: window.fetch(
                id_type="USCC",
                holder_id=enterprise(1).holder.id,
                service_item=next(iter(world.items)),
                case_number=case_number,
            ),
        )
    assert violation_fields(error) == ["case_number"]
    assert error.reason == "MISSING_CASE"
    assert snapshot(running_hub.engine) == before
    assert_audited_refusal(running_hub.engine, error, principal=WINDOW)


# --- who may connect at all -------------------------------------------------------------


def _handshake_refused(running_hub: RunningHub, credentials: grpc.ChannelCredentials) -> None:
    """The call fails before any servicer runs: no data, no audit entry, nothing stored."""
    before, entries = snapshot(running_hub.engine), audit_size(running_hub.engine)
    client = HubClient(grpc.secure_channel(running_hub.address, credentials), timeout=5)
    with client:
        with pytest.raises(HubClientError) as caught:
            client.fetch(
                id_type="USCC",
                holder_id=enterprise(1).holder.id,
                service_item="350102-0001",
                case_number="GL-1",
            )
        assert caught.value.code in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.UNAUTHENTICATED,
        ), caught.value
        with pytest.raises(HubClientError):
            client.stats()
    assert snapshot(running_hub.engine) == before
    assert audit_size(running_hub.engine) == entries


def test_client_without_a_certificate(running_hub: RunningHub) -> None:
    ca = running_hub.config.pki.ca_cert.read_bytes()
    _handshake_refused(running_hub, grpc.ssl_channel_credentials(root_certificates=ca))


def test_client_certificate_from_another_ca(running_hub: RunningHub, tmp_path: Path) -> None:
    rogue = init_pki(tmp_path / "rogue")
    cert, key = issue_client_certificate(rogue, WINDOW)  # a registered name, the wrong CA
    tls = ClientTLS(ca=running_hub.config.pki.ca_cert, cert=cert, key=key)
    _handshake_refused(running_hub, tls.credentials())


def test_client_certificate_naming_no_registered_principal(running_hub: RunningHub) -> None:
    before = snapshot(running_hub.engine)
    with running_hub.client("nobody-we-know") as stranger:
        error = refused(grpc.StatusCode.UNAUTHENTICATED, stranger.stats)
    assert error.reason == "UNKNOWN_PRINCIPAL"
    assert "nobody-we-know" in error.message
    assert snapshot(running_hub.engine) == before
    row = assert_audited_refusal(running_hub.engine, error, principal="nobody-we-know")
    assert row.action == "refused"
    assert row.leaf["method"] == "/certhub.v1.DirectoryService/GetStats"


def test_revocation_envelope_is_not_read_as_garbage_base64(
    running_hub: RunningHub, amr: DemoDepartment
) -> None:
    # A revocation must be valid base64 too: the check is the same single parser.
    document = {
        "payloadType": REVOCATION_PAYLOAD_TYPE,
        "payload": base64.b64encode(b"{}").decode() + "%%",
        "signatures": [{"keyid": "00", "sig": "AA=="}],
    }
    before = snapshot(running_hub.engine)
    with running_hub.client(amr.principal) as client:
        error = refused(grpc.StatusCode.INVALID_ARGUMENT, lambda: client.revoke(rebuild(document)))
    assert error.reason == "MALFORMED_ENVELOPE"
    assert snapshot(running_hub.engine) == before
    assert_audited_refusal(running_hub.engine, error, principal=amr.principal)


# --- hostile text that is echoed or audited -------------------------------------------------


def test_hostile_text_in_refused_requests_is_answered_and_audited(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    """Refusals record what was asked; over-long or NUL-bearing text must neither fail the
    audit commit (PostgreSQL bounds and rejects it) nor blow the status trailers."""
    holder = enterprise(1).holder.id
    item = next(iter(world.items))
    before = snapshot(running_hub.engine)
    with running_hub.client(WINDOW) as window:
        for case in ("案" * 200, "GL-\x00-1"):
            error = refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                lambda c=case: window.fetch(  # type: ignore[misc]
                    id_type="USCC", holder_id=holder, service_item=item, case_number=c
                ),
            )
            assert violation_fields(error) == ["case_number"]
            row = assert_audited_refusal(running_hub.engine, error, principal=WINDOW)
            assert "\x00" not in (row.leaf["case"] or "")
            assert len(row.leaf["case"]) <= 128
        error = refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: window.fetch(
                id_type="USCC", holder_id=holder, service_item="x" * 100, case_number="GL-1"
            ),
        )
        assert "longer than 64" in error.message
        for cid in ("9" * 1000, "1.2.156\x00", ""):
            bad_id = refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                lambda c=cid: window.get(  # type: ignore[misc]
                    c, id_type="USCC", holder_id=holder, service_item=item, case_number="GL-1"
                ),
            )
            assert violation_fields(bad_id) == ["certificate_id"]
            assert_audited_refusal(running_hub.engine, bad_id, principal=WINDOW)
        # Echoed in the message: four-byte characters cost 12 bytes each in grpc-message.
        for huge in ("中" * 100_000, "\U0001f600" * 1500, "%" * 5000):
            unknown = refused(
                grpc.StatusCode.NOT_FOUND,
                lambda h=huge: window.call(  # type: ignore[misc]
                    window.directory.GetServiceItem, directory_pb2.GetServiceItemRequest(code=h)
                ),
            )
            assert len(unknown.message.encode()) <= 1024
            assert unknown.reason == "UNKNOWN_SERVICE_ITEM"
    assert snapshot(running_hub.engine) == before


def test_undecodable_request_is_invalid_argument(running_hub: RunningHub) -> None:
    """Invalid UTF-8 in a string field cannot be built with the protobuf library: send the
    wire bytes. gRPC's own answer would be INTERNAL."""
    with running_hub.client(WINDOW) as window:
        fetch = window.channel.unary_unary(
            "/certhub.v1.IntakeService/FetchCertificates",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as caught:
            fetch(bytes([0x1A, 0x02, 0xFF, 0xFE]), timeout=10)  # case_number = b"\xff\xfe"
    error: Any = caught.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in error.details()
