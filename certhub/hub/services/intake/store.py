"""Fetches, gets and verifications read from the database, and the cases they record: the
queries and the group commit's fetch batch.

SQL that every dialect runs, and the choice of ``store_postgresql``'s statements where
PostgreSQL's differ.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from certhub.hub.domain.certificate import CertificatePayload
from certhub.hub.observability.metrics import metrics
from certhub.hub.registry import Registry
from certhub.hub.services import freshness
from certhub.hub.services.intake import store_postgresql
from certhub.hub.services.intake.rules import (
    STORED_FIELDS,
    HeldVersion,
    HolderView,
    Purpose,
    StoredCertificate,
    VerifyResult,
    check_shown,
    envelope_problem,
    judge_shown,
)
from certhub.hub.store.aio import AsyncReader, CompiledRead
from certhub.hub.store.models import Attachment, Case, Certificate, HolderState, Revocation

log = logging.getLogger("certhub.intake")


# StoredCertificate's fields are the one list of what is read of a stored certificate: the
# queries select a column per field, in field order (``_stored`` builds the dataclass from
# the row positionally), and the cache codec writes a value per field. A field is the
# Certificate column of its name, unless named here; ``unusable`` is no column but the
# verdict computed on read (``_stored``).
_COLUMN_OF_FIELD = {"revocation_envelope": Revocation.envelope}
_COMPUTED_FIELDS = frozenset({"unusable"})
_STORED_COLUMNS = tuple(
    _COLUMN_OF_FIELD[name] if name in _COLUMN_OF_FIELD else getattr(Certificate, name)
    for name in STORED_FIELDS
    if name not in _COMPUTED_FIELDS
)


# The fetch query, built once: constructing and compiling the select on every cache miss
# cost more CPU than PostgreSQL spent answering it.
_HOLDER_QUERY = (
    select(*_STORED_COLUMNS)
    .outerjoin(Revocation, Revocation.lineage == Certificate.lineage)
    .where(Certificate.holder_key == bindparam("holder_key"), Certificate.is_current.is_(True))
    .order_by(Certificate.issued_on.desc(), Certificate.certificate_id)
)


def load_holder(conn: Connection, holder_key: str) -> list[StoredCertificate]:
    """Current versions of every certificate of one holder, with revocations (the fetch query)."""
    rows = conn.execute(_HOLDER_QUERY, {"holder_key": holder_key}).all()
    return [_stored(row) for row in rows]


# The fetch query with the holder's counter as one more column: one statement, so one
# snapshot and one round trip on a cache miss (reading the counter first, as its own
# statement, was 8% of a cache-off hub's busy CPU, more than the certificates' query).
_VIEW_QUERY = _HOLDER_QUERY.add_columns(
    select(HolderState.version)
    .where(HolderState.holder_key == bindparam("holder_key"))
    .scalar_subquery()
)


# The same statement rendered for the event loop's psycopg connections (certhub.hub.store.aio).
_VIEW_READ = CompiledRead(_VIEW_QUERY)


def load_holder_view(conn: Connection, holder_key: str) -> HolderView:
    rows = conn.execute(_VIEW_QUERY, {"holder_key": holder_key}).all()
    if not rows:  # nothing to carry the counter: read it alone (a holder with no certificates)
        return HolderView(freshness.read_version(conn, holder_key), [])
    return _view(rows)


async def read_holder_view(reader: AsyncReader, holder_key: str) -> HolderView:
    """``load_holder_view`` on the event loop (PostgreSQL): the same statement and view."""
    rows = await reader.rows(_VIEW_READ, {"holder_key": holder_key})
    if not rows:
        return HolderView(await freshness.read_version_async(reader, holder_key), [])
    return _view(rows)


def _view(rows: Sequence[Sequence[Any]]) -> HolderView:
    return HolderView(int(rows[0][-1] or 0), [_stored(row[:-1]) for row in rows])


def _stored(columns: Sequence[Any]) -> StoredCertificate:
    # The queries select _STORED_COLUMNS: every field but the computed ``unusable``, in
    # order. Checked here, on a read from the database only: the cached view carries the
    # verdict, so a warm fetch pays nothing for it.
    stored = StoredCertificate(*columns)
    problem = envelope_problem(stored)
    if problem is None:
        return stored
    log.error(
        "certificate %s version %d is unusable: %s", stored.certificate_id, stored.version, problem
    )
    metrics().unusable_certificates.inc()
    return dataclasses.replace(stored, unusable=problem)


def load_attachments(session: Session, digests: Sequence[str]) -> dict[str, bytes]:
    if not digests:
        return {}
    rows = session.execute(
        select(Attachment.sha256, Attachment.data).where(Attachment.sha256.in_(digests))
    ).all()
    return {row.sha256: row.data for row in rows}


def record_cases(session: Session, cases: Sequence[tuple[Purpose, bool, dt.datetime]]) -> None:
    """Record fetched cases with one upsert: a case is inserted on its first fetch and
    ``served`` only ever goes from False to True. One statement per group-commit batch
    instead of a savepoint and an upsert per fetch (three round trips each, on the single
    commit thread)."""
    rows = _case_rows(cases)
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(store_postgresql.RECORD_CASES, store_postgresql.record_cases_params(rows))
        return
    # Core, not the ORM: its per-row insert bookkeeping cost more than the statement.
    table = cast("Table", Case.__table__)
    stmt = sqlite.insert(table).values(list(rows.values()))
    stmt = stmt.on_conflict_do_update(
        index_elements=["case_number"],
        set_={"served": True},
        where=stmt.excluded.served & ~table.c.served,
    )
    session.execute(stmt)


def _case_rows(cases: Sequence[tuple[Purpose, bool, dt.datetime]]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for purpose, served, now in cases:
        row = rows.get(purpose.case_number)
        if row is None:
            rows[purpose.case_number] = {
                "case_number": purpose.case_number,
                "service_item_code": purpose.service_item_code,
                "first_fetch_at": now,
                "served": served,
            }
        else:  # one statement may not touch a row twice: merge repeats of a case first
            row["served"] = row["served"] or served
    return rows


@dataclass(frozen=True, slots=True)
class FetchUnit:
    """What a fetch asks of its group commit: record its case (None: already recorded by
    this process) and, for a view served from the cache, check it is still current."""

    case: tuple[Purpose, bool, dt.datetime] | None
    # (holder key, counter the cached view was read at); None for a view read just now.
    cached_view: tuple[str, int] | None


class FetchBatch:
    """The group committer's handle for a run of fetches: one query checks every cached
    view of the run (``certhub.hub.services.freshness``), one upsert records their cases. A unit's
    value is ``freshness.STALE`` when its view was superseded (its case is then left to the
    fetch's retry, which knows what was really served), else None."""

    # ON CONFLICT resolves every clash with another process's insert, and the check only
    # reads: no savepoint needed.
    may_race = False

    def apply_all(self, session: Session, items: Sequence[object]) -> list[str | None]:
        # Items are what Hub.fetch hands the committer with this batch handle.
        units = cast("list[FetchUnit]", items)
        views = dict(u.cached_view for u in units if u.cached_view is not None)
        stale = freshness.stale_holders(session, views)
        values = [
            freshness.STALE if u.cached_view is not None and u.cached_view[0] in stale else None
            for u in units
        ]
        record_cases(
            session,
            [u.case for u, value in zip(units, values, strict=True) if u.case and value is None],
        )
        return values

    def queue_all(
        self, conn: psycopg.Connection[Any], items: Sequence[object]
    ) -> Callable[[Sequence[int]], list[str | None]]:
        """``apply_all`` in the committer's pipeline on PostgreSQL: the views' check is
        queued with the head lock, the cases' upsert after its answer, with the append."""
        units = cast("list[FetchUnit]", items)
        views = dict(u.cached_view for u in units if u.cached_view is not None)
        read = store_postgresql.queue_versions(conn, views.keys()) if views else None

        def finish(_indices: Sequence[int]) -> list[str | None]:
            now = store_postgresql.versions(read) if read is not None else {}
            stale = freshness.superseded(views, now)
            values = [
                freshness.STALE if u.cached_view is not None and u.cached_view[0] in stale else None
                for u in units
            ]
            rows = _case_rows(
                [u.case for u, value in zip(units, values, strict=True) if u.case and value is None]
            )
            if rows:
                store_postgresql.queue_record_cases(conn, rows)
            return values

        return finish


FETCH_BATCH = FetchBatch()


def load_certificate(session: Session, certificate_id: str) -> tuple[StoredCertificate, str] | None:
    """The certificate and its holder key: the newest stored version of that id (a GB/T id
    names one version; an issuer-unique id is shared by all its versions)."""
    query = (
        select(*_STORED_COLUMNS, Certificate.holder_key)
        .outerjoin(Revocation, Revocation.lineage == Certificate.lineage)
        .where(Certificate.certificate_id == certificate_id)
        .order_by(Certificate.version.desc())
        .limit(1)
    )
    row = session.execute(query).one_or_none()
    if row is None:
        return None
    *columns, holder_key = row
    return _stored(columns), str(holder_key)


def holder_key_of(session: Session, certificate_id: str, version: int) -> str | None:
    return session.execute(
        select(Certificate.holder_key).where(
            Certificate.certificate_id == certificate_id, Certificate.version == version
        )
    ).scalar_one_or_none()


def verify_shown(
    session: Session, registry: Registry, envelope_bytes: bytes, *, today: dt.date
) -> VerifyResult:
    """Verify an envelope shown at a window: signature, payload, and what the hub knows of it.

    Unreadable bytes are INVALID_ARGUMENT; a readable envelope that fails a check is an
    answer (``valid`` false with reasons), because telling the window why is the point.
    """
    shown = check_shown(registry, envelope_bytes)
    if isinstance(shown, VerifyResult):
        return shown
    return judge_shown(shown, _held_version(session, shown.payload), today=today)


def _held_version(session: Session, payload: CertificatePayload) -> HeldVersion:
    row = session.execute(
        select(Certificate.envelope_sha256, Certificate.is_current, Revocation.envelope)
        .outerjoin(Revocation, Revocation.lineage == Certificate.lineage)
        .where(
            Certificate.certificate_id == payload.certificate_id,
            Certificate.version == payload.version,
        )
    ).one_or_none()
    if row is None:
        revoked = session.get(Revocation, payload.lineage) is not None
        return HeldVersion(envelope_sha256=None, is_current=True, revoked=revoked)
    return HeldVersion(envelope_sha256=row[0], is_current=row[1], revoked=row[2] is not None)
