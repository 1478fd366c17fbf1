"""The group committer: runs of one batchable kind go as one set, even with reads between
them, and every entry keeps its place in the log."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from certhub.hub.audit.committer import GroupCommitter, Pending
from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.services import intake
from certhub.hub.store.models import AuditEntry, Case

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
ITEM = "350102-0003"
# Far longer than a healthy commit; only reached if the committer is stuck.
WAIT_SECONDS = 10.0


def _entry(case: str, action: Action) -> AuditRecord:
    return AuditRecord(
        time=NOW,
        principal="gulou-service-centre",
        action=action,
        outcome=OK,
        service_item_code=ITEM,
        case_number=case,
    )


def _case_unit(committer: GroupCommitter, case: str, *, served: bool) -> Pending[str | None]:
    unit = intake.FetchUnit(case=(intake.Purpose(ITEM, case), served, NOW), cached_view=None)
    return committer.submit(
        lambda s: intake.FETCH_BATCH.apply_all(s, [unit])[0],
        lambda _v, _e: _entry(case, Action.FETCH),
        batch=intake.FETCH_BATCH,
        item=unit,
    )


def test_cases_between_reads_are_one_upsert_and_entries_keep_their_order(
    engine: Engine, committer: GroupCommitter
) -> None:
    holding = threading.Event()
    release = threading.Event()

    def hold(_session: Session) -> None:
        holding.set()
        release.wait(WAIT_SECONDS)

    # The first unit holds the committer, so everything after it queues into one batch. It
    # must be holding before the rest is submitted: the committer drains its queue when it
    # takes a batch, and units submitted during that drain landed in the first batch (a
    # second upsert, 1 run in ~20 on a loaded machine).
    first = committer.submit(hold, lambda _v, _e: _entry("HOLD", Action.FETCH))
    assert holding.wait(WAIT_SECONDS)
    expected: list[tuple[str, str]] = []
    pending = []
    for n in range(30):
        case = f"C-{n % 7}"  # repeats: one statement may not touch a row twice
        if n % 3 == 0:
            pending.append(committer.submit_entry(_entry(f"R-{n}", Action.GET)))
            expected.append((f"R-{n}", "get"))
        else:
            pending.append(_case_unit(committer, case, served=n % 5 == 0))
            expected.append((case, "fetch"))
    upserts: list[str] = []
    savepoints: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        text = statement.lstrip().upper()
        if text.startswith("INSERT INTO CASES"):
            upserts.append(statement)
        if text.startswith("SAVEPOINT"):
            savepoints.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        release.set()
        first.result()
        indices = [p.result().audit_index for p in pending]
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert len(upserts) == 1, f"{len(upserts)} case upserts for one batch"
    assert savepoints == [], "a run of upserts that cannot race took a savepoint"
    assert indices == sorted(indices)
    assert len(set(indices)) == len(indices)
    with engine.connect() as conn:
        logged = conn.execute(
            select(AuditEntry.idx, AuditEntry.case_number, AuditEntry.action).where(
                AuditEntry.idx.in_(indices)
            )
        ).all()
        cases = dict(conn.execute(select(Case.case_number, Case.served)).all())
    assert [(c, a) for _i, c, a in sorted(logged)] == expected
    served = {f"C-{n % 7}" for n in range(30) if n % 3 and n % 5 == 0}
    assert cases == {f"C-{k}": f"C-{k}" in served for k in range(7)}


def test_a_case_once_served_stays_served(engine: Engine, committer: GroupCommitter) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.lstrip().upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        _case_unit(committer, "K-1", served=True).result()
        _case_unit(committer, "K-1", served=False).result()
        _case_unit(committer, "K-2", served=False).result()
        _case_unit(committer, "K-2", served=True).result()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert not [s for s in statements if s.startswith("SAVEPOINT")], "a lone case took one"
    with engine.connect() as conn:
        cases = dict(conn.execute(select(Case.case_number, Case.served)).all())
    assert cases == {"K-1": True, "K-2": True}
