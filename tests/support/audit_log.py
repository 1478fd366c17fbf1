"""Building audit logs quickly for tests and benchmarks: direct appends in big batches."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy.orm import Session, sessionmaker

from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.audit.log import AuditLog
from certhub.hub.store.engine import session_scope

# Entries per direct append transaction: large enough that building thousands of entries
# takes a handful of transactions, small enough to keep each insert statement modest.
APPEND_BATCH = 2000
# Synthetic entries are spaced one second apart from this instant, so time filters can
# select exact index ranges.
BASE_TIME = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def synthetic_records(
    count: int,
    *,
    start: int = 0,
    principal: str = "gulou-service-centre",
    holder: str | None = None,
) -> Iterator[AuditRecord]:
    """``count`` fetch entries whose fields depend on their position, for filters to find."""
    for n in range(start, start + count):
        yield AuditRecord(
            time=BASE_TIME + dt.timedelta(seconds=n),
            principal=principal,
            action=Action.FETCH,
            outcome=OK,
            holder_commitment=holder if holder is not None else f"{n % 97:064x}",
            certificate_ids=(f"cert-{n % 13}",),
            service_item_code="350102-0001",
            case_number=f"GL-{n:08d}",
        )


def append_all(
    sessions: sessionmaker[Session],
    audit_log: AuditLog,
    records: Iterable[AuditRecord],
    *,
    batch: int = APPEND_BATCH,
) -> list[int]:
    """Append in transactions of ``batch`` entries; return each batch's first index."""
    firsts: list[int] = []
    chunk: list[AuditRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == batch:
            firsts.append(_append(sessions, audit_log, chunk))
            chunk = []
    if chunk:
        firsts.append(_append(sessions, audit_log, chunk))
    return firsts


def _append(
    sessions: sessionmaker[Session], audit_log: AuditLog, chunk: Sequence[AuditRecord]
) -> int:
    with session_scope(sessions, write=True) as session:
        return audit_log.append(session, chunk)
