"""Verifying a certificate shown at a window: the checks that need no database, and the
answer given what the hub holds of the shown version."""

from __future__ import annotations

import datetime as dt

import pytest

from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.domain.status import CertificateStatus
from certhub.hub.errors import InvalidArgument
from certhub.hub.registry import parse_registry
from certhub.hub.services.intake.rules import (
    HeldVersion,
    ShownEnvelope,
    VerifyResult,
    check_shown,
    judge_shown,
)
from certhub.signing import sign_envelope
from certhub.signing.keys import Algorithm, PrivateKey

TODAY = dt.date(2026, 12, 1)
# A key no department of the registry holds.
STRANGER = PrivateKey.generate(Algorithm.ED25519)


@pytest.fixture
def shown(world: DemoWorld) -> ShownEnvelope:
    registry = parse_registry(world.registry_toml())
    licence = world.type_by_name("营业执照")
    department = world.departments[licence.issuer]
    payload = certificate_payload(world, licence.code, enterprise(3), serial=3)
    checked = check_shown(registry, sign_certificate(payload, [department.key]))
    assert isinstance(checked, ShownEnvelope)
    assert checked.reasons == ()
    assert checked.key_id == department.key.public_key.key_id
    return checked


def test_the_stored_current_version_is_valid(shown: ShownEnvelope) -> None:
    held = HeldVersion(envelope_sha256=shown.envelope_sha256, is_current=True, revoked=False)
    result = judge_shown(shown, held, today=TODAY)
    assert (result.valid, result.stored, result.status) == (True, True, CertificateStatus.VALID)


@pytest.mark.parametrize(
    ("held", "reasons", "status"),
    [
        (
            HeldVersion(envelope_sha256=None, is_current=True, revoked=False),
            ["the hub holds no such certificate version"],
            CertificateStatus.VALID,
        ),
        (
            HeldVersion(envelope_sha256="0" * 64, is_current=True, revoked=False),
            ["the hub holds different bytes for this certificate version"],
            CertificateStatus.VALID,
        ),
        (
            HeldVersion(envelope_sha256=None, is_current=True, revoked=True),
            ["the hub holds no such certificate version", "status is REVOKED"],
            CertificateStatus.REVOKED,
        ),
    ],
)
def test_what_the_hub_holds_decides(
    shown: ShownEnvelope, held: HeldVersion, reasons: list[str], status: CertificateStatus
) -> None:
    result = judge_shown(shown, held, today=TODAY)
    assert not result.valid
    assert list(result.reasons) == reasons
    assert result.status is status


def test_a_superseded_version_is_not_valid(shown: ShownEnvelope) -> None:
    held = HeldVersion(envelope_sha256=shown.envelope_sha256, is_current=False, revoked=False)
    result = judge_shown(shown, held, today=TODAY)
    assert result.stored
    assert result.status is CertificateStatus.SUPERSEDED
    assert result.reasons == ("status is SUPERSEDED",)


def test_a_signer_the_registry_does_not_trust_is_a_reason(world: DemoWorld) -> None:
    registry = parse_registry(world.registry_toml())
    licence = world.type_by_name("营业执照")
    payload = certificate_payload(world, licence.code, enterprise(3), serial=3)
    checked = check_shown(registry, sign_certificate(payload, [STRANGER]))
    assert isinstance(checked, ShownEnvelope)
    assert checked.key_id == ""
    assert checked.reasons


def test_what_is_no_certificate_is_answered_at_once(world: DemoWorld) -> None:
    registry = parse_registry(world.registry_toml())
    with pytest.raises(InvalidArgument):
        check_shown(registry, b"not an envelope")
    other = sign_envelope("application/vnd.example+json", b"{}", [STRANGER])
    result = check_shown(registry, other.to_json())
    assert isinstance(result, VerifyResult)
    assert (result.valid, result.status, result.stored) == (False, None, False)
