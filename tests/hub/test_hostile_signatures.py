"""Issue 6 item 4: signature attacks over real mTLS, on SQLite and PostgreSQL. Every attack is
refused with a message naming why, nothing is stored, and the refusal is audited; the positive
controls next to them show the refusals are not the hub refusing everything."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from support.hubs import RunningHub
from support.probes import (
    assert_audited_refusal,
    decoded_payload,
    envelope_fields,
    rebuild,
    refused,
    sign_bytes,
    snapshot,
)

from certhub.core.rpc.client import HubClient
from certhub.hub.demo.world import (
    DemoDepartment,
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
    sign_revocation,
)
from certhub.hub.domain.certificate import CertificatePayload
from certhub.signing import (
    CERTIFICATE_PAYLOAD_TYPE,
    MAX_SIGNATURES,
    REVOCATION_PAYLOAD_TYPE,
    Algorithm,
    PrivateKey,
)
from certhub.v1 import common_pb2, ingest_pb2, intake_pb2

# The market regulator's extra keys: one retired at the end of 2022 (it keeps verifying what
# it signed before), one compromised, one second active key (a rotation overlap).
RETIRED_UNTIL = dt.date(2022, 12, 31)
RETIRED = PrivateKey.generate(Algorithm.ED25519)
COMPROMISED = PrivateKey.generate(Algorithm.ECDSA_P256_SHA256)
SECOND_ACTIVE = PrivateKey.generate(Algorithm.ECDSA_P256_SHA256)
STRANGER = PrivateKey.generate(Algorithm.ED25519)


@dataclass(frozen=True)
class Keys:
    world: DemoWorld
    amr: DemoDepartment
    health: DemoDepartment


@pytest.fixture
def keys(running_hub: RunningHub, world: DemoWorld) -> Keys:
    """The demo registry plus the extra keys, applied to this test's hub only."""
    amr = world.department_by_name("市场监督管理局")
    mine = DemoWorld(
        departments=world.departments,
        types=world.types,
        items=world.items,
        principals=world.principals,
        extra_keys={
            amr.code: [
                (RETIRED, dt.date(2020, 1, 1), RETIRED_UNTIL, "retired"),
                (COMPROMISED, dt.date(2020, 1, 1), None, "compromised"),
                (SECOND_ACTIVE, dt.date(2020, 1, 1), None, "active"),
            ]
        },
    )
    running_hub.apply_registry(mine.registry_toml())
    return Keys(world=mine, amr=amr, health=world.department_by_name("卫生健康"))


def licence(
    k: Keys, *, serial: int, issued_on: dt.date = dt.date(2024, 3, 1)
) -> CertificatePayload:
    return certificate_payload(
        k.world,
        k.world.type_by_name("营业执照").code,
        enterprise(serial),
        serial=serial,
        issued_on=issued_on,
    )


def duplicated(envelope: bytes) -> bytes:
    document = envelope_fields(envelope)
    document["signatures"] = document["signatures"] * 2
    return rebuild(document)


def relabelled(envelope: bytes, payload_type: str) -> bytes:
    """The same payload and signatures under another payloadType (DSSE type confusion)."""
    document = envelope_fields(envelope)
    document["payloadType"] = payload_type
    return rebuild(document)


def spoofed_keyid(envelope: bytes, keyid: str) -> bytes:
    document = envelope_fields(envelope)
    for signature in document["signatures"]:
        signature["keyid"] = keyid
    return rebuild(document)


def with_extra_signature(envelope: bytes, by: PrivateKey) -> bytes:
    document = envelope_fields(envelope)
    extra = envelope_fields(
        sign_bytes(decoded_payload(envelope), [by], payload_type=document["payloadType"])
    )
    document["signatures"].append(extra["signatures"][0])
    return rebuild(document)


@dataclass(frozen=True)
class Attack:
    name: str
    build: Callable[[Keys], bytes]
    code: grpc.StatusCode
    says: str  # a fragment the message must contain

    def __str__(self) -> str:
        return self.name


PUSH_ATTACKS = [
    Attack(
        "unknown-key",
        lambda k: sign_certificate(licence(k, serial=1), [STRANGER]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not a known key",
    ),
    Attack(
        "another-departments-key",
        lambda k: sign_certificate(licence(k, serial=2), [k.health.key]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "belongs to department",
    ),
    Attack(
        "retired-key-new-certificate",
        lambda k: sign_certificate(licence(k, serial=3), [RETIRED]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "2024-03-01",
    ),
    Attack(
        "compromised-key",
        lambda k: sign_certificate(
            licence(k, serial=4, issued_on=dt.date(2021, 5, 1)), [COMPROMISED]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "compromised",
    ),
    Attack(
        "keyid-of-the-right-key-signature-of-another",
        lambda k: spoofed_keyid(
            sign_certificate(licence(k, serial=5), [STRANGER]), k.amr.key.public_key.key_id
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "does not verify",
    ),
    Attack(
        "revocation-typed-envelope-pushed-as-certificate",
        lambda k: sign_revocation(licence(k, serial=6).certificate_id, k.amr.key),
        grpc.StatusCode.INVALID_ARGUMENT,
        "payloadType",
    ),
    Attack(
        "certificate-signed-as-revocation-relabelled",
        # Signed over PAE(revocation type, certificate JSON), then relabelled: PAE binds the
        # type, so the signature must not carry over.
        lambda k: relabelled(
            sign_bytes(
                decoded_payload(sign_certificate(licence(k, serial=7), [k.amr.key])),
                [k.amr.key],
                payload_type=REVOCATION_PAYLOAD_TYPE,
            ),
            CERTIFICATE_PAYLOAD_TYPE,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "does not verify",
    ),
    Attack(
        "duplicated-signature",
        lambda k: duplicated(sign_certificate(licence(k, serial=8), [k.amr.key])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "more than once",
    ),
    Attack(
        "extra-signature-by-unknown-key",
        lambda k: with_extra_signature(
            sign_certificate(licence(k, serial=9), [k.amr.key]), STRANGER
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not a known key",
    ),
    Attack(
        "extra-signature-by-another-department",
        lambda k: with_extra_signature(
            sign_certificate(licence(k, serial=10), [k.amr.key]), k.health.key
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "belongs to department",
    ),
    Attack(
        "extra-signature-by-compromised-key",
        lambda k: with_extra_signature(
            sign_certificate(licence(k, serial=11), [k.amr.key]), COMPROMISED
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "compromised",
    ),
    Attack(
        "more-signatures-than-the-limit",
        # sign_envelope itself refuses to make such an envelope: add the last one by hand.
        lambda k: with_extra_signature(
            sign_certificate(
                licence(k, serial=12),
                [k.amr.key, SECOND_ACTIVE]
                + [PrivateKey.generate(Algorithm.ED25519) for _ in range(MAX_SIGNATURES - 2)],
            ),
            STRANGER,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "limit",
    ),
    Attack(
        "no-signature",
        lambda k: rebuild(
            {
                **envelope_fields(sign_certificate(licence(k, serial=13), [k.amr.key])),
                "signatures": [],
            }
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "signature",
    ),
]


def _push(client: HubClient, envelope: bytes) -> object:
    return client.push(envelope)


@pytest.mark.parametrize("attack", PUSH_ATTACKS, ids=str)
def test_push_attack_is_refused(running_hub: RunningHub, keys: Keys, attack: Attack) -> None:
    envelope = attack.build(keys)
    before = snapshot(running_hub.engine)
    with running_hub.client(keys.amr.principal) as client:
        error = refused(attack.code, lambda: _push(client, envelope))
    assert attack.says in error.message, error.message
    assert snapshot(running_hub.engine) == before
    assert_audited_refusal(running_hub.engine, error, principal=keys.amr.principal)


def test_positive_controls(running_hub: RunningHub, keys: Keys) -> None:
    """What the attacks' neighbours look like when legitimate: these are accepted."""
    cosigned = licence(keys, serial=21)
    with running_hub.client(keys.amr.principal) as client:
        # Two active keys of the issuer (rotation overlap) may both sign.
        both = sign_certificate(cosigned, [keys.amr.key, SECOND_ACTIVE])
        assert client.push(both).outcome == ingest_pb2.ACCEPTED
    assert snapshot(running_hub.engine).certificates == 1


def test_retired_key_keeps_what_it_signed_but_admits_nothing_new(
    running_hub: RunningHub, keys: Keys
) -> None:
    # Issue 12: a retired key could sign new certificates backdated into its window.
    old = licence(keys, serial=20, issued_on=dt.date(2021, 6, 1))
    envelope = sign_certificate(old, [RETIRED])
    # The same keys with RETIRED still active (the compromised one stays compromised: the
    # registry refuses to trust it again without --trust-again).
    while_active = dataclasses.replace(keys.world, extra_keys={
        keys.amr.code: [
            (key, since, None, "active") if key is RETIRED else (key, since, until, status)
            for key, since, until, status in keys.world.extra_keys[keys.amr.code]
        ]
    })  # fmt: skip
    running_hub.apply_registry(while_active.registry_toml())
    with running_hub.client(keys.amr.principal) as client:
        assert client.push(envelope).outcome == ingest_pb2.ACCEPTED
    running_hub.apply_registry(keys.world.registry_toml())  # now retired
    backdated = sign_certificate(licence(keys, serial=22, issued_on=dt.date(2022, 6, 1)), [RETIRED])
    with running_hub.client(keys.amr.principal) as client:
        # What it signed while in use still verifies, and a retry is still a duplicate.
        assert client.push(envelope).outcome == ingest_pb2.DUPLICATE
        before = snapshot(running_hub.engine)
        error = refused(grpc.StatusCode.FAILED_PRECONDITION, lambda: client.push(backdated))
    assert "admits no new certificate" in error.message
    assert snapshot(running_hub.engine) == before
    assert_audited_refusal(running_hub.engine, error, principal=keys.amr.principal)


# --- revocations --------------------------------------------------------------------------


@dataclass(frozen=True)
class RevokeAttack:
    name: str
    signer: Callable[[Keys], PrivateKey]
    relabel: bool
    code: grpc.StatusCode
    says: str
    revoked_at: dt.datetime | None = None

    def __str__(self) -> str:
        return self.name


REVOKE_ATTACKS = [
    RevokeAttack(
        "signed-by-another-department",
        lambda k: k.health.key,
        False,
        grpc.StatusCode.INVALID_ARGUMENT,
        "belongs to department",
    ),
    RevokeAttack(
        "signed-by-unknown-key",
        lambda k: STRANGER,
        False,
        grpc.StatusCode.INVALID_ARGUMENT,
        "not a known key",
    ),
    RevokeAttack(
        "signed-by-compromised-key",
        lambda k: COMPROMISED,
        False,
        grpc.StatusCode.INVALID_ARGUMENT,
        "compromised",
    ),
    RevokeAttack(
        "signed-by-retired-key-after-retirement",
        lambda k: RETIRED,
        False,
        grpc.StatusCode.INVALID_ARGUMENT,
        "expired after 2022-12-31",
    ),
    RevokeAttack(
        # Dated inside the retired key's validity, before the certificate (2024) existed.
        "retired-key-backdated-revocation",
        lambda k: RETIRED,
        False,
        grpc.StatusCode.INVALID_ARGUMENT,
        "before the certificate was issued",
        revoked_at=dt.datetime(2021, 6, 1, tzinfo=dt.UTC),
    ),
    RevokeAttack(
        "revocation-signed-as-certificate-relabelled",
        lambda k: k.amr.key,
        True,
        grpc.StatusCode.INVALID_ARGUMENT,
        "does not verify",
    ),
]


@pytest.mark.parametrize("attack", REVOKE_ATTACKS, ids=str)
def test_revocation_attack_is_refused(
    running_hub: RunningHub, keys: Keys, attack: RevokeAttack
) -> None:
    target = licence(keys, serial=30)
    with running_hub.client(keys.amr.principal) as client:
        client.push(sign_certificate(target, [keys.amr.key]))
        revocation = sign_revocation(
            target.certificate_id, attack.signer(keys), revoked_at=attack.revoked_at
        )
        if attack.relabel:
            payload = decoded_payload(revocation)
            revocation = relabelled(
                sign_bytes(payload, [attack.signer(keys)], payload_type=CERTIFICATE_PAYLOAD_TYPE),
                REVOCATION_PAYLOAD_TYPE,
            )
        before = snapshot(running_hub.engine)
        error = refused(attack.code, lambda: client.revoke(revocation))
    assert attack.says in error.message, error.message
    assert snapshot(running_hub.engine) == before
    assert_audited_refusal(running_hub.engine, error, principal=keys.amr.principal)
    with running_hub.client("gulou-service-centre") as window:
        verdict = window.verify(sign_certificate(target, [keys.amr.key]))
    assert verdict.valid, verdict.reasons


def test_certificate_envelope_sent_as_a_revocation(running_hub: RunningHub, keys: Keys) -> None:
    target = licence(keys, serial=31)
    envelope = sign_certificate(target, [keys.amr.key])
    with running_hub.client(keys.amr.principal) as client:
        client.push(envelope)
        before = snapshot(running_hub.engine)
        error = refused(grpc.StatusCode.INVALID_ARGUMENT, lambda: client.revoke(envelope))
    assert error.reason == "WRONG_PAYLOAD_TYPE"
    assert CERTIFICATE_PAYLOAD_TYPE in error.message
    assert snapshot(running_hub.engine) == before
    assert_audited_refusal(running_hub.engine, error, principal=keys.amr.principal)


def test_signature_bytes_are_not_malleable_into_acceptance(
    running_hub: RunningHub, keys: Keys
) -> None:
    """Flipping any one bit of a valid signature gets the push refused."""
    envelope = sign_certificate(licence(keys, serial=32), [keys.amr.key])
    document = envelope_fields(envelope)
    signature = bytearray(base64.b64decode(document["signatures"][0]["sig"]))
    before = snapshot(running_hub.engine)
    with running_hub.client(keys.amr.principal) as client:
        for position in (0, len(signature) // 2, len(signature) - 1):
            flipped = bytearray(signature)
            flipped[position] ^= 0x01
            document["signatures"][0]["sig"] = base64.b64encode(bytes(flipped)).decode()
            tampered = rebuild(document)
            refused(grpc.StatusCode.INVALID_ARGUMENT, lambda e=tampered: client.push(e))  # type: ignore[misc]
    assert snapshot(running_hub.engine) == before


def test_a_key_marked_compromised_later_stops_satisfying_materials(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    amr = world.department_by_name("市场监督管理局")
    company = enterprise(40)
    payload = certificate_payload(world, world.type_by_name("营业执照").code, company, serial=40)
    with running_hub.client(amr.principal) as client:
        client.push(sign_certificate(payload, [amr.key]))
    rotated = DemoWorld(
        departments={
            **world.departments,
            amr.code: dataclasses.replace(amr, key=PrivateKey.generate(Algorithm.ED25519)),
        },
        types=world.types,
        items=world.items,
        principals=world.principals,
        extra_keys={amr.code: [(amr.key, dt.date(2020, 1, 1), None, "compromised")]},
    )
    running_hub.apply_registry(rotated.registry_toml())
    with running_hub.client("gulou-service-centre") as window:
        answer = window.call(
            window.intake.FetchCertificates,
            intake_pb2.FetchRequest(
                holder=common_pb2.Holder(id_type=common_pb2.USCC, id=company.holder.id),
                service_item_code=world.item_by_name("食品经营许可（新办）").code,
                case_number="GL-COMPROMISED",
            ),
        )
    # Policy: a certificate whose signing key is later marked compromised is REVOKED (its
    # signature proves nothing any more) and satisfies no material until re-signed.
    assert not answer.materials[0].satisfied
    assert [c.status for c in answer.certificates] == [common_pb2.REVOKED]
    with running_hub.client("gulou-service-centre") as window:
        fetched = window.fetch(
            id_type="USCC",
            holder_id=company.holder.id,
            service_item=world.item_by_name("食品经营许可（新办）").code,
            case_number="GL-COMPROMISED-2",
        )
    (kept,) = fetched.certificates
    assert kept.status == "REVOKED"
    assert kept.key_id == ""
    assert "compromised" in kept.verification_error
