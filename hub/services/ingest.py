"""Pushes and revocations from department adapters."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast

from sqlalchemy import exc, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from hub.audit.committer import audit_indices
from hub.domain.certificate import (
    CertificatePayload,
    RevocationPayload,
    parse_certificate_payload,
    parse_revocation_payload,
)
from hub.domain.identifier import lineage_of
from hub.errors import (
    AlreadyExists,
    FailedPrecondition,
    HubError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from hub.registry import Principal, Registry, Role
from hub.services import freshness
from hub.store.models import Attachment, Certificate, Revocation
from signing import (
    CERTIFICATE_PAYLOAD_TYPE,
    MAX_ENVELOPE_BYTES,
    REVOCATION_PAYLOAD_TYPE,
    Envelope,
    KeyStatus,
    MalformedEnvelope,
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
    # (DUPLICATE) but admits nothing new (see _decide).
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
    verification = verify_envelope(
        envelope,
        expected_payload_type=CERTIFICATE_PAYLOAD_TYPE,
        keys=registry.keys,
        owner=payload.issuer_code,
        signed_on=payload.issued_on,
    )
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


def store_push(session: Session, checked: CheckedPush, *, now: dt.datetime) -> Stored:
    """Store one checked push: idempotent on (certificate_id, version); supersedes lower
    versions. Raises the push's HubError; a race with another hub process is resolved."""
    try:
        with session.begin_nested():
            (outcome,) = store_pushes(session, [(checked, now)])
    except exc.IntegrityError:
        # Another hub process stored the same (id, version) between our read and insert.
        p = checked.payload
        existing = _existing_version(session, p.certificate_id, p.version)
        if existing is None:
            raise
        return _repeat(existing, checked)
    if isinstance(outcome, HubError):
        raise outcome
    return outcome


@dataclass
class _Lineage:
    """What a batch knows of one lineage: its stored versions, plus those it accepts."""

    issuer: str | None = None
    revoked: bool = False
    top: int | None = None  # the current (highest) version
    versions: dict[tuple[str, int], str] = field(default_factory=dict)  # -> envelope sha256


def store_pushes(
    session: Session, pushes: Sequence[tuple[CheckedPush, dt.datetime]]
) -> list[Stored | HubError]:
    """Store checked pushes as one set, in order: two queries and two writes for the whole
    group commit batch instead of several round trips per push (the single commit thread's
    round trips bound the hub's push rate). Each push's outcome or HubError is returned in
    place. Raises IntegrityError if another hub process raced an insert; callers then fall
    back to ``store_push`` one by one, which resolves the race."""
    known = _load_lineages(session, {checked.payload.lineage for checked, _ in pushes})
    # The audit entry each push's row is admitted by (None outside the group committer).
    indices: Sequence[int | None] = audit_indices(session) or [None] * len(pushes)
    outcomes: list[Stored | HubError] = []
    accepted: list[tuple[CheckedPush, dt.datetime, int | None]] = []
    superseding: set[str] = set()
    for (checked, now), audit_idx in zip(pushes, indices, strict=True):
        p = checked.payload
        state = known[p.lineage]
        try:
            outcome = _decide(state, checked)
        except HubError as error:
            outcomes.append(error)
            continue
        outcomes.append(outcome)
        if outcome.outcome is PushOutcome.ACCEPTED:
            state.issuer = p.issuer_code
            state.versions[(p.certificate_id, p.version)] = checked.envelope_sha256
            if state.top is None or p.version > state.top:
                if state.top is not None:
                    superseding.add(p.lineage)
                state.top = p.version
            accepted.append((checked, now, audit_idx))
    _write_accepted(session, accepted, superseding, known)
    return outcomes


def _load_lineages(session: Session, lineages: set[str]) -> dict[str, _Lineage]:
    known: dict[str, _Lineage] = {name: _Lineage() for name in lineages}
    # Core statements on the session's connection (as hub.audit.log does): nothing here is
    # loaded as an ORM object, and the ORM's statement layer cost more CPU on the single
    # commit thread than the query. Flushed first, as the ORM's autoflush would have.
    session.flush()
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(_POSTGRESQL_LOAD, {"lineages": list(lineages)})
    else:
        rows = conn.execute(_LOAD.where(Certificate.lineage.in_(lineages)))
    # Only a stored certificate can have been revoked (store_revoke requires one), so the
    # join of certificates to revocations finds every revoked lineage of the batch.
    for lineage, certificate_id, version, sha256, issuer, is_current, revoked in rows:
        state = known[lineage]
        state.issuer = issuer
        state.versions[(certificate_id, version)] = sha256
        if is_current:
            state.top = version
        if revoked:
            state.revoked = True
    return known


_LOAD = select(
    Certificate.lineage,
    Certificate.certificate_id,
    Certificate.version,
    Certificate.envelope_sha256,
    Certificate.issuer_code,
    Certificate.is_current,
    Revocation.lineage.is_not(None),
).outerjoin(Revocation, Revocation.lineage == Certificate.lineage)

# _LOAD on PostgreSQL, with the batch's lineages as one array: the statement text never
# varies with the batch size (an expanded IN list would), so the server keeps one plan.
# Driver SQL, for psycopg's binary placeholder (%(name)b): see _POSTGRESQL_WRITE.
_POSTGRESQL_LOAD = """
SELECT c.lineage, c.certificate_id, c.version, c.envelope_sha256, c.issuer_code,
       c.is_current, r.lineage IS NOT NULL
FROM certificates AS c LEFT JOIN revocations AS r ON r.lineage = c.lineage
WHERE c.lineage = ANY(CAST(%(lineages)b AS text[]))
"""


def _write_accepted(
    session: Session,
    accepted: list[tuple[CheckedPush, dt.datetime, int | None]],
    superseding: set[str],
    known: dict[str, _Lineage],
) -> None:
    """Lower the current flag of superseded lineages, then insert every accepted version,
    current only if it is its lineage's highest, and the attachments sent with them."""
    if not accepted:
        return  # superseding is only ever non-empty with something accepted
    freshness.bump(session, (checked.payload.holder.key() for checked, _, _ in accepted))
    rows = [
        _row(checked, is_current=checked.payload.version == known[checked.payload.lineage].top,
             now=now, audit_idx=audit_idx)
        for checked, now, audit_idx in accepted
    ]  # fmt: skip
    # Content-addressed: the same file under many certificates is stored once (the first
    # sent wins, as one insert after another would decide).
    attachments: dict[str, dict[str, object]] = {}
    for checked, _, _ in accepted:
        declared = checked.payload.attachment
        if checked.attachment is not None and declared is not None:
            attachments.setdefault(
                declared.sha256,
                {"sha256": declared.sha256, "media_type": declared.media_type,
                 "data": checked.attachment},
            )  # fmt: skip
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        _write_postgresql(conn, rows, superseding, list(attachments.values()))
        return
    if superseding:
        conn.execute(
            update(_CERTIFICATES)
            .where(Certificate.lineage.in_(superseding), Certificate.is_current.is_(True))
            .values(is_current=False)
        )
    conn.execute(insert(_CERTIFICATES), rows)
    for values in attachments.values():
        _store_attachment(session, values)


_CERTIFICATES = Certificate.metadata.tables[Certificate.__tablename__]

# Everything a batch writes, in one PostgreSQL statement, rows as arrays (as
# hub.audit.log's append does): one round trip and one parameter set instead of an
# executemany of one INSERT per certificate, whose per-row cost in the driver and the ORM
# was most of the single commit thread's work for a push. The UPDATE sees only rows stored
# before this statement (data-modifying CTEs share one snapshot), as the separate UPDATE
# before the INSERT did. Duplicate attachments are removed before, so ON CONFLICT only
# meets files stored by earlier batches. A unique violation still raises IntegrityError.
# Driver SQL (exec_driver_sql) so that the arrays travel in psycopg's binary format
# (%(name)b): its text format quotes and escapes every element with regular expressions in
# Python, about ten times the CPU per row (bench/push_bench.py, docs/performance.md).
_POSTGRESQL_WRITE = """
WITH superseded AS (
    UPDATE certificates SET is_current = false
    WHERE lineage = ANY(CAST(%(superseding)b AS text[])) AND is_current
), attachments AS (
    INSERT INTO attachments (sha256, media_type, data)
    SELECT * FROM unnest(
        CAST(%(a_sha256)b AS text[]), CAST(%(a_media_type)b AS text[]),
        CAST(%(a_data)b AS bytea[]))
    ON CONFLICT DO NOTHING
)
INSERT INTO certificates (certificate_id, version, lineage, is_current, holder_key, type_code,
                          kind, issuer_code, issued_on, valid_from, valid_until, envelope,
                          envelope_sha256, key_id, attachment_sha256, legacy_uscc, stored_at,
                          audit_idx)
SELECT * FROM unnest(
    CAST(%(certificate_id)b AS text[]), CAST(%(version)b AS integer[]),
    CAST(%(lineage)b AS text[]), CAST(%(is_current)b AS boolean[]),
    CAST(%(holder_key)b AS text[]), CAST(%(type_code)b AS text[]), CAST(%(kind)b AS text[]),
    CAST(%(issuer_code)b AS text[]), CAST(%(issued_on)b AS date[]),
    CAST(%(valid_from)b AS date[]), CAST(%(valid_until)b AS date[]),
    CAST(%(envelope)b AS bytea[]), CAST(%(envelope_sha256)b AS text[]),
    CAST(%(key_id)b AS text[]), CAST(%(attachment_sha256)b AS text[]),
    CAST(%(legacy_uscc)b AS boolean[]), CAST(%(stored_at)b AS timestamptz[]),
    CAST(%(audit_idx)b AS bigint[]))
"""


def _write_postgresql(
    conn: Connection,
    rows: list[dict[str, object]],
    superseding: set[str],
    attachments: list[dict[str, object]],
) -> None:
    # _row's keys are the certificate columns, and name _POSTGRESQL_WRITE's arrays.
    params = {name: [row[name] for row in rows] for name in rows[0]}
    params["superseding"] = list(superseding)
    params["a_sha256"] = [a["sha256"] for a in attachments]
    params["a_media_type"] = [a["media_type"] for a in attachments]
    params["a_data"] = [a["data"] for a in attachments]
    conn.exec_driver_sql(_POSTGRESQL_WRITE, params)


def _decide(state: _Lineage, checked: CheckedPush) -> Stored:
    p = checked.payload
    existing = state.versions.get((p.certificate_id, p.version))
    if existing is not None:
        return _repeat(existing, checked)
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


class PushBatch:
    """The group committer's handle for applying a run of pushes as one set."""

    # Two hub processes can insert the same certificate at once: the committer keeps a
    # savepoint to fall back to one by one.
    may_race = True

    def apply_all(self, session: Session, items: Sequence[object]) -> list[Stored | HubError]:
        # Items are what Hub.submit_push hands the committer with this batch handle.
        return store_pushes(session, cast("list[tuple[CheckedPush, dt.datetime]]", items))


PUSH_BATCH = PushBatch()


def _existing_version(session: Session, certificate_id: str, version: int) -> str | None:
    return session.execute(
        select(Certificate.envelope_sha256).where(
            Certificate.certificate_id == certificate_id, Certificate.version == version
        )
    ).scalar_one_or_none()


def _repeat(existing_sha256: str, checked: CheckedPush) -> Stored:
    p = checked.payload
    if existing_sha256 != checked.envelope_sha256:
        raise AlreadyExists(
            f"certificate {p.certificate_id} version {p.version} is already stored with "
            "different bytes; push a higher version to change it",
            reason="VERSION_CONFLICT",
        )
    return Stored(PushOutcome.DUPLICATE, p.certificate_id, p.version, p.holder.key())


def _row(
    checked: CheckedPush, *, is_current: bool, now: dt.datetime, audit_idx: int | None
) -> dict[str, object]:
    p = checked.payload
    return {
        "certificate_id": p.certificate_id,
        "version": p.version,
        "lineage": p.lineage,
        "is_current": is_current,
        "holder_key": p.holder.key(),
        "type_code": p.type_code,
        "kind": str(p.kind),
        "issuer_code": p.issuer_code,
        "issued_on": p.issued_on,
        "valid_from": p.valid_from,
        "valid_until": p.valid_until,
        "envelope": checked.envelope,
        "envelope_sha256": checked.envelope_sha256,
        "key_id": checked.key_id,
        "attachment_sha256": p.attachment.sha256 if p.attachment else None,
        "legacy_uscc": p.legacy_uscc,
        "stored_at": now,
        "audit_idx": audit_idx,
    }


def _store_attachment(session: Session, values: dict[str, object]) -> None:
    # Content-addressed: the same file under many certificates is stored once.
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(Attachment).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(Attachment).values(values).on_conflict_do_nothing())
    elif session.get(Attachment, values["sha256"]) is None:
        session.add(Attachment(**values))


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


def store_revoke(
    session: Session,
    registry: Registry,
    caller: Principal,
    checked: CheckedRevocation,
    *,
    now: dt.datetime,
) -> Revoked:
    """Revoke a lineage; the revocation must be signed by the certificate's issuer."""
    r = checked.payload
    lineage = lineage_of(r.certificate_id)
    row = session.execute(
        select(Certificate.issuer_code, Certificate.holder_key, Certificate.issued_on)
        .where(Certificate.lineage == lineage)
        .order_by(Certificate.version.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"certificate {r.certificate_id} is not stored", reason="CERTIFICATE_NOT_FOUND"
        )
    issuer, holder_key, issued_on = row
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
    if session.get(Revocation, lineage) is not None:
        return Revoked(r.certificate_id, newly_revoked=False, holder_key=holder_key)
    try:
        with session.begin_nested():
            session.add(
                Revocation(
                    lineage=lineage,
                    certificate_id=r.certificate_id,
                    reason=r.reason,
                    revoked_at=r.revoked_at,
                    envelope=checked.envelope,
                    recorded_at=now,
                    audit_idx=(audit_indices(session) or (None,))[0],
                )
            )
    except exc.IntegrityError:
        # Another hub process recorded a revocation of this lineage first.
        return Revoked(r.certificate_id, newly_revoked=False, holder_key=holder_key)
    freshness.bump(session, [holder_key])
    return Revoked(r.certificate_id, newly_revoked=True, holder_key=holder_key)
