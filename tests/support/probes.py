"""What end-to-end tests look at: row counts, audit entries, raw envelopes and expected refusals.

Tests talk to a real hub over mTLS and then read its database directly: a refusal must leave
the stored data exactly as it was and must be in the audit log under its status name.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from certhub.core.rpc.client import HubClientError
from certhub.hub.domain.certificate import CertificatePayload, certificate_payload_json
from certhub.hub.store.models import Attachment, AuditEntry, Case, Certificate, Revocation
from certhub.signing import CERTIFICATE_PAYLOAD_TYPE, PrivateKey, sign_envelope

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counts of everything a call could store (the audit log aside)."""

    certificates: int
    revocations: int
    attachments: int
    cases: int


@dataclass(frozen=True, slots=True)
class AuditRow:
    idx: int
    principal: str
    action: str
    outcome: str
    leaf: dict[str, Any]


def snapshot(engine: Engine) -> Snapshot:
    with Session(engine) as session:

        def count(model: type[Any]) -> int:
            return int(session.execute(select(func.count()).select_from(model)).scalar_one())

        return Snapshot(
            certificates=count(Certificate),
            revocations=count(Revocation),
            attachments=count(Attachment),
            cases=count(Case),
        )


def audit_size(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(AuditEntry)).scalar_one())


def audit_rows(engine: Engine, *, since: int = 0) -> list[AuditRow]:
    """Audit entries with index >= ``since``, oldest first."""
    with Session(engine) as session:
        rows = session.execute(
            select(AuditEntry).where(AuditEntry.idx >= since).order_by(AuditEntry.idx)
        ).scalars()
        return [AuditRow(r.idx, r.principal, r.action, r.outcome, json.loads(r.leaf)) for r in rows]


def audit_row(engine: Engine, idx: int) -> AuditRow:
    rows = [r for r in audit_rows(engine, since=idx) if r.idx == idx]
    assert rows, f"no audit entry at index {idx}"
    return rows[0]


def refused(code: grpc.StatusCode, call: Callable[[], object]) -> HubClientError:
    """Run ``call`` and return the HubClientError it must raise with ``code``."""
    with pytest.raises(HubClientError) as caught:
        call()
    error = caught.value
    assert error.code == code, f"expected {code.name}, got {error.code.name}: {error.message}"
    return error


def assert_audited_refusal(
    engine: Engine, error: HubClientError, *, principal: str | None = None
) -> AuditRow:
    """The refusal carries the index of its audit entry, whose outcome is the status name."""
    assert error.audit_index is not None, f"refusal {error} carries no audit index"
    row = audit_row(engine, error.audit_index)
    assert row.outcome == error.code.name, row
    if principal is not None:
        assert row.principal == principal
    return row


def violation_fields(error: HubClientError) -> list[str]:
    return [v.field for v in error.violations]


# --- envelopes built by hand (what a hostile or broken adapter might send) --------------------


def payload_dict(payload: CertificatePayload) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(certificate_payload_json(payload))
    return value


def sign_bytes(
    payload: bytes, keys: Sequence[PrivateKey], *, payload_type: str = CERTIFICATE_PAYLOAD_TYPE
) -> bytes:
    """A correctly signed envelope over arbitrary payload bytes."""
    return sign_envelope(payload_type, payload, keys).to_json()


def sign_dict(
    document: object, keys: Sequence[PrivateKey], *, payload_type: str = CERTIFICATE_PAYLOAD_TYPE
) -> bytes:
    payload = json.dumps(document, ensure_ascii=False).encode()
    return sign_bytes(payload, keys, payload_type=payload_type)


def envelope_fields(envelope: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(envelope)
    return value


def rebuild(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def with_payload(envelope: bytes, payload: bytes) -> bytes:
    """The same signatures over different payload bytes (a tampered envelope)."""
    document = envelope_fields(envelope)
    document["payload"] = base64.b64encode(payload).decode()
    return rebuild(document)


def decoded_payload(envelope: bytes) -> bytes:
    return base64.b64decode(envelope_fields(envelope)["payload"])
