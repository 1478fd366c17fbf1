"""The rules of pushes and revocations from department adapters, with no database: who may
push, what a valid envelope and payload are, whether a signature verifies, and what a push
of a lineage decides given what is known of it (``decide``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from certhub.hub.domain.certificate import (
    CertificatePayload,
    RevocationPayload,
    parse_certificate_payload,
    parse_revocation_payload,
)
from certhub.hub.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)
from certhub.hub.registry import Principal, Registry, Role
from certhub.signing import (
    CERTIFICATE_PAYLOAD_TYPE,
    MAX_ENVELOPE_BYTES,
    REVOCATION_PAYLOAD_TYPE,
    Envelope,
    KeyStatus,
    MalformedEnvelope,
    Verification,
    parse_envelope,
    verify_envelope,
)

# How far a revocation's date may precede the certificate's issue date: a revocation
# timestamp in UTC can fall on the previous calendar day of an issue date in China time.
REVOCATION_DATE_SLACK = dt.timedelta(days=1)


class PushOutcome(StrEnum):
    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"


@dataclass(frozen=True, slots=True)
class PushInput:
    envelope: bytes
    attachment: bytes | None = None
    client_ref: str = ""


@dataclass(frozen=True, slots=True)
class CheckedPush:
    """A push whose envelope, payload, signature and authorisation have been checked."""

    envelope: bytes
    envelope_sha256: str
    payload: CertificatePayload
    key_id: str
    attachment: bytes | None
    # Every key that verified is retired: such a push may repeat a stored version
    # (DUPLICATE) but admits nothing new (see decide).
    retired_keys_only: bool = False


@dataclass(frozen=True, slots=True)
class Stored:
    outcome: PushOutcome
    certificate_id: str
    version: int
    holder_key: str


@dataclass(frozen=True, slots=True)
class RevokeInput:
    envelope: bytes
    client_ref: str = ""


@dataclass(frozen=True, slots=True)
class CheckedRevocation:
    envelope: bytes
    parsed: Envelope
    payload: RevocationPayload


@dataclass(frozen=True, slots=True)
class Revoked:
    certificate_id: str
    newly_revoked: bool
    holder_key: str


def require_role(caller: Principal, role: Role, what: str) -> None:
    if caller.role is not role:
        raise PermissionDenied(
            f"principal {caller.name!r} has role {caller.role}; {what} needs role {role}",
            reason="WRONG_ROLE",
        )


def read_envelope(data: bytes, *, field: str = "envelope") -> Envelope:
    if len(data) > MAX_ENVELOPE_BYTES:
        raise ResourceExhausted(
            f"{field}: {len(data)} bytes exceeds the limit of {MAX_ENVELOPE_BYTES}",
            reason="ENVELOPE_TOO_LARGE",
        )
    try:
        return parse_envelope(data)
    except MalformedEnvelope as e:
        raise InvalidArgument.field(field, str(e), reason="MALFORMED_ENVELOPE") from e


def _expect_type(envelope: Envelope, payload_type: str) -> None:
    if envelope.payload_type != payload_type:
        raise InvalidArgument.field(
            "envelope.payloadType",
            f"is {envelope.payload_type!r}, expected {payload_type!r}",
            reason="WRONG_PAYLOAD_TYPE",
        )


def verify_certificate(
    registry: Registry, envelope: Envelope, payload: CertificatePayload
) -> Verification:
    """A certificate envelope's signatures, by the keys of the issuer it names, valid on
    the day it says it was issued: at a push and when shown at a window alike."""
    return verify_envelope(
        envelope,
        expected_payload_type=CERTIFICATE_PAYLOAD_TYPE,
        keys=registry.keys,
        owner=payload.issuer_code,
        signed_on=payload.issued_on,
    )


def check_push(registry: Registry, caller: Principal, request: PushInput) -> CheckedPush:
    """Everything about a push that needs no database. Raises HubError."""
    require_role(caller, Role.DEPARTMENT, "pushing certificates")
    envelope = read_envelope(request.envelope)
    _expect_type(envelope, CERTIFICATE_PAYLOAD_TYPE)
    payload = parse_certificate_payload(
        envelope.payload, accept_legacy_uscc=registry.settings.accept_legacy_uscc
    )
    if payload.issuer_code != caller.department_code:
        raise PermissionDenied(
            f"payload.issuer.code {payload.issuer_code} is not the department of principal "
            f"{caller.name!r} ({caller.department_code})",
            reason="FOREIGN_ISSUER",
        )
    ctype = registry.types.get(payload.type_code)
    if ctype is None:
        raise InvalidArgument.field(
            "payload.type_code",
            f"unknown certificate type {payload.type_code}",
            reason="UNKNOWN_TYPE",
        )
    if payload.issuer_code not in ctype.issuer_codes:
        raise PermissionDenied(
            f"department {payload.issuer_code} does not issue certificate type {payload.type_code}",
            reason="TYPE_NOT_ISSUED",
        )
    if payload.kind != ctype.kind:
        raise InvalidArgument.field(
            "payload.kind",
            f"is {payload.kind}, type {ctype.code} is {ctype.kind}",
            reason="WRONG_KIND",
        )
    verification = verify_certificate(registry, envelope, payload)
    if not verification.ok:
        raise InvalidArgument.field(
            "envelope.signatures", "; ".join(verification.reasons), reason="BAD_SIGNATURE"
        )
    _check_attachment(payload, request.attachment)
    return CheckedPush(
        envelope=request.envelope,
        envelope_sha256=hashlib.sha256(request.envelope).hexdigest(),
        payload=payload,
        key_id=verification.verified[0].public_key.key_id,
        attachment=request.attachment or None,
        retired_keys_only=all(k.status is KeyStatus.RETIRED for k in verification.verified),
    )


def _check_attachment(payload: CertificatePayload, data: bytes | None) -> None:
    if not data:
        return
    declared = payload.attachment
    if declared is None:
        raise InvalidArgument.field(
            "attachment",
            "sent, but the payload declares no attachment",
            reason="UNDECLARED_ATTACHMENT",
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != declared.sha256:
        raise InvalidArgument.field(
            "attachment",
            f"SHA-256 is {digest}, payload.attachment.sha256 says {declared.sha256}",
            reason="ATTACHMENT_DIGEST_MISMATCH",
        )
    if len(data) != declared.size:
        raise InvalidArgument.field(
            "attachment",
            f"is {len(data)} bytes, payload.attachment.size says {declared.size}",
            reason="ATTACHMENT_SIZE_MISMATCH",
        )


def check_revoke(caller: Principal, request: RevokeInput) -> CheckedRevocation:
    """The database-free part of a revocation: envelope, type and payload."""
    require_role(caller, Role.DEPARTMENT, "revoking certificates")
    envelope = read_envelope(request.envelope)
    _expect_type(envelope, REVOCATION_PAYLOAD_TYPE)
    return CheckedRevocation(
        envelope=request.envelope,
        parsed=envelope,
        payload=parse_revocation_payload(envelope.payload),
    )


def check_revocation_of(
    registry: Registry,
    caller: Principal,
    checked: CheckedRevocation,
    *,
    issuer: str,
    issued_on: dt.date,
) -> None:
    """A revocation of a stored certificate (its ``issuer`` and the ``issued_on`` of its
    newest version) must come from that issuer, dated no earlier than the certificate, and
    be signed by a key of the issuer valid on that date."""
    r = checked.payload
    if issuer != caller.department_code:
        raise PermissionDenied(
            f"certificate {r.certificate_id} was issued by {issuer}, not by the department of "
            f"principal {caller.name!r}",
            reason="FOREIGN_CERTIFICATE",
        )
    # The key must be valid on the revocation's date: backdated before the (newest version
    # of the) certificate existed, a retired key could revoke what was issued after it
    # retired. One day of slack: revoked_at carries its own UTC offset, issued_on is a date.
    if r.revoked_at.date() < issued_on - REVOCATION_DATE_SLACK:
        raise InvalidArgument.field(
            "payload.revoked_at",
            f"{r.revoked_at.date()} is before the certificate was issued ({issued_on})",
            reason="REVOKED_BEFORE_ISSUE",
        )
    verification = verify_envelope(
        checked.parsed,
        expected_payload_type=REVOCATION_PAYLOAD_TYPE,
        keys=registry.keys,
        owner=issuer,
        signed_on=r.revoked_at.date(),
    )
    if not verification.ok:
        raise InvalidArgument.field(
            "envelope.signatures", "; ".join(verification.reasons), reason="BAD_SIGNATURE"
        )


@dataclass
class Lineage:
    """What a batch knows of one lineage: its stored versions, plus those it accepts."""

    issuer: str | None = None
    revoked: bool = False
    top: int | None = None  # the current (highest) version
    versions: dict[tuple[str, int], str] = field(default_factory=dict)  # -> envelope sha256


def decide(state: Lineage, checked: CheckedPush) -> Stored:
    p = checked.payload
    existing = state.versions.get((p.certificate_id, p.version))
    if existing is not None:
        return repeat(existing, checked)
    if state.issuer is not None and state.issuer != p.issuer_code:
        raise PermissionDenied(
            f"certificate {p.certificate_id} belongs to issuer {state.issuer}",
            reason="FOREIGN_CERTIFICATE",
        )
    if state.revoked:
        raise FailedPrecondition(
            f"certificate {p.certificate_id} is revoked; a revoked certificate takes no "
            "new versions",
            reason="CERTIFICATE_REVOKED",
        )
    if checked.retired_keys_only:
        # A retired key keeps verifying what it signed while it was in use, but it may
        # not bring anything new in: its issued_on date is the signer's claim, and a
        # leaked retired key could otherwise sign certificates backdated into its window.
        raise FailedPrecondition(
            f"certificate {p.certificate_id} version {p.version} is signed only by retired "
            f"key {checked.key_id}: a retired key admits no new certificate; sign it with "
            f"an active key of department {p.issuer_code}",
            reason="KEY_RETIRED",
        )
    return Stored(PushOutcome.ACCEPTED, p.certificate_id, p.version, p.holder.key())


def repeat(existing_sha256: str, checked: CheckedPush) -> Stored:
    p = checked.payload
    if existing_sha256 != checked.envelope_sha256:
        raise AlreadyExists(
            f"certificate {p.certificate_id} version {p.version} is already stored with "
            "different bytes; push a higher version to change it",
            reason="VERSION_CONFLICT",
        )
    return Stored(PushOutcome.DUPLICATE, p.certificate_id, p.version, p.holder.key())
