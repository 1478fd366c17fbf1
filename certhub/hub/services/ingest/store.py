"""Pushes and revocations stored: the queries and writes of one group-commit batch.

SQL that every dialect runs, and the choice of ``store_postgresql``'s statements where
PostgreSQL's differ.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from sqlalchemy import exc, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from certhub.hub.audit.committer import audit_indices
from certhub.hub.domain.identifier import lineage_of
from certhub.hub.errors import (
    HubError,
    NotFound,
)
from certhub.hub.registry import Principal, Registry
from certhub.hub.services import freshness
from certhub.hub.services.ingest import store_postgresql
from certhub.hub.services.ingest.rules import (
    CheckedPush,
    CheckedRevocation,
    Lineage,
    PushOutcome,
    Revoked,
    Stored,
    check_revocation_of,
    decide,
    repeat,
)
from certhub.hub.store.models import Attachment, Certificate, Revocation


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
        return repeat(existing, checked)
    if isinstance(outcome, HubError):
        raise outcome
    return outcome


def store_pushes(
    session: Session, pushes: Sequence[tuple[CheckedPush, dt.datetime]]
) -> list[Stored | HubError]:
    """Store checked pushes as one set, in order: two queries and two writes for the whole
    group commit batch instead of several round trips per push (the single commit thread's
    round trips bound the hub's push rate). Each push's outcome or HubError is returned in
    place. Raises IntegrityError if a row it inserts exists after all (a writer that did not
    hold the audit log's head lock: see ``PushBatch.may_race``); ``store_push`` resolves that
    one by one."""
    known = _load_lineages(session, {checked.payload.lineage for checked, _ in pushes})
    # The audit entry each push's row is admitted by (None outside the group committer).
    indices: Sequence[int | None] = audit_indices(session) or [None] * len(pushes)
    outcomes, writes = _decide_all(pushes, indices, known)
    if writes is not None:
        _write_accepted(session, writes)
    return outcomes


@dataclass(frozen=True, slots=True)
class _Writes:
    """What a batch of pushes writes: the accepted versions' rows, the lineages whose current
    version they supersede, the attachments sent with them and the holders they change."""

    rows: list[dict[str, object]]
    superseding: set[str]
    attachments: list[dict[str, object]]
    holder_keys: list[str]


def _decide_all(
    pushes: Sequence[tuple[CheckedPush, dt.datetime]],
    indices: Sequence[int | None],
    known: dict[str, Lineage],
) -> tuple[list[Stored | HubError], _Writes | None]:
    """Each push's outcome against the stored lineages ``known`` and the pushes before it in
    the batch, in order, and what the accepted ones write (None if nothing was accepted)."""
    outcomes: list[Stored | HubError] = []
    accepted: list[tuple[CheckedPush, dt.datetime, int | None]] = []
    superseding: set[str] = set()
    for (checked, now), audit_idx in zip(pushes, indices, strict=True):
        p = checked.payload
        state = known[p.lineage]
        try:
            outcome = decide(state, checked)
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
    if not accepted:
        return outcomes, None  # superseding is only ever non-empty with something accepted
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
    writes = _Writes(
        rows=rows,
        superseding=superseding,
        attachments=list(attachments.values()),
        holder_keys=[str(row["holder_key"]) for row in rows],
    )
    return outcomes, writes


def _load_lineages(session: Session, lineages: set[str]) -> dict[str, Lineage]:
    # Core statements on the session's connection (as certhub.hub.audit.log does): nothing here is
    # loaded as an ORM object, and the ORM's statement layer cost more CPU on the single
    # commit thread than the query. Flushed first, as the ORM's autoflush would have.
    session.flush()
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(store_postgresql.LOAD_LINEAGES, {"lineages": list(lineages)})
    else:
        rows = conn.execute(_LOAD.where(Certificate.lineage.in_(lineages)))
    return _known(lineages, rows)


def _known(lineages: set[str], rows: Iterable[Sequence[Any]]) -> dict[str, Lineage]:
    """The stored state of ``lineages`` from ``_LOAD``'s rows."""
    known: dict[str, Lineage] = {name: Lineage() for name in lineages}
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


def _write_accepted(session: Session, writes: _Writes) -> None:
    """Move the holders' counters, lower the current flag of superseded lineages, then
    insert every accepted version, current only if it is its lineage's highest, and the
    attachments sent with them."""
    freshness.bump(session, writes.holder_keys)
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        store_postgresql.write_batch(conn, writes.rows, writes.superseding, writes.attachments)
        return
    if writes.superseding:
        conn.execute(
            update(_CERTIFICATES)
            .where(Certificate.lineage.in_(writes.superseding), Certificate.is_current.is_(True))
            .values(is_current=False)
        )
    conn.execute(insert(_CERTIFICATES), writes.rows)
    for values in writes.attachments:
        _store_attachment(session, values)


_CERTIFICATES = Certificate.metadata.tables[Certificate.__tablename__]


class PushBatch:
    """The group committer's handle for applying a run of pushes as one set."""

    # Every writer of certificates is a group commit, which locks the audit log's head
    # before it reads a lineage (certhub.hub.audit.committer): batches of two hub processes
    # run one after the other, and on PostgreSQL each statement of READ COMMITTED reads
    # what committed before it started, so the lineage query sees the other process's rows
    # and no insert of this run can collide (SQLite's writers are serial). No savepoint,
    # then, and on PostgreSQL the run goes in the committer's pipeline. Should a row collide
    # anyway, the batch fails as a whole (UNAVAILABLE, nothing committed) and the retry
    # reads the row: DUPLICATE or ALREADY_EXISTS.
    may_race = False

    def apply_all(self, session: Session, items: Sequence[object]) -> list[Stored | HubError]:
        # Items are what Hub.submit_push hands the committer with this batch handle.
        return store_pushes(session, cast("list[tuple[CheckedPush, dt.datetime]]", items))

    def queue_all(
        self, conn: psycopg.Connection[Any], items: Sequence[object]
    ) -> Callable[[Sequence[int]], list[Stored | HubError]]:
        """``apply_all`` in the committer's pipeline on PostgreSQL: the lineages' query is
        queued with the head lock; the writes after its answer, with the append."""
        pushes = cast("list[tuple[CheckedPush, dt.datetime]]", items)
        lineages = {checked.payload.lineage for checked, _ in pushes}
        read = store_postgresql.queue_lineages(conn, lineages)

        def finish(indices: Sequence[int]) -> list[Stored | HubError]:
            outcomes, writes = _decide_all(pushes, indices, _known(lineages, read.fetchall()))
            if writes is not None:
                freshness.queue_bump(conn, writes.holder_keys)
                store_postgresql.queue_write_batch(
                    conn, writes.rows, writes.superseding, writes.attachments
                )
            return outcomes

        return finish


PUSH_BATCH = PushBatch()


def _existing_version(session: Session, certificate_id: str, version: int) -> str | None:
    return session.execute(
        select(Certificate.envelope_sha256).where(
            Certificate.certificate_id == certificate_id, Certificate.version == version
        )
    ).scalar_one_or_none()


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
    check_revocation_of(registry, caller, checked, issuer=issuer, issued_on=issued_on)
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
