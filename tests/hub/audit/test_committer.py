"""The group committer: runs of one batchable kind go as one set, even with reads between
them, and every entry keeps its place in the log."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from support import statements

from certhub.hub.audit.committer import LINGER_AFTER_BATCH, GroupCommitter, Pending
from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.errors import NotFound, Unavailable
from certhub.hub.services import freshness, intake
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.store.models import CODE_WIDTH, AuditEntry, Case, LogCheckpoint

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
ITEM = "350102-0003"
# Far longer than a healthy commit; only reached if the committer is stuck.
WAIT_SECONDS = 10.0
# A linger far longer than a commit, so a unit that waited for it is told from one that
# did not without timing anything close.
LONG_LINGER_SECONDS = 2.0


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


def _held(committer: GroupCommitter) -> tuple[Pending[None], threading.Event]:
    """A unit that holds the committer until the returned event is set, once it holds. It
    must be holding before the rest is submitted: the committer drains its queue when it
    takes a batch, and units submitted during that drain land in the held unit's batch."""
    holding = threading.Event()
    release = threading.Event()

    def hold(_session: Session) -> None:
        holding.set()
        release.wait(WAIT_SECONDS)

    first = committer.submit(hold, lambda _v, _e: _entry("HOLD", Action.FETCH))
    assert holding.wait(WAIT_SECONDS)
    return first, release


def test_cases_between_reads_are_one_upsert_and_entries_keep_their_order(
    engine: Engine, committer: GroupCommitter
) -> None:
    # The first unit holds the committer, so everything after it queues into one batch.
    first, release = _held(committer)
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
    with statements.recorded(engine) as seen:
        release.set()
        first.result()
        indices = [p.result().audit_index for p in pending]
    upserts = [s for s in seen if s.lstrip().upper().startswith("INSERT INTO CASES")]
    savepoints = [s for s in seen if s.lstrip().upper().startswith("SAVEPOINT")]
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
    with statements.recorded(engine) as seen:
        _case_unit(committer, "K-1", served=True).result()
        _case_unit(committer, "K-1", served=False).result()
        _case_unit(committer, "K-2", served=False).result()
        _case_unit(committer, "K-2", served=True).result()
    assert not [s for s in seen if s.lstrip().upper().startswith("SAVEPOINT")], (
        "a lone case took one"
    )
    with engine.connect() as conn:
        cases = dict(conn.execute(select(Case.case_number, Case.served)).all())
    assert cases == {"K-1": True, "K-2": True}


def _view_unit(
    committer: GroupCommitter, holder_key: str, seen: int, case: str
) -> Pending[str | None]:
    unit = intake.FetchUnit(
        case=(intake.Purpose(ITEM, case), True, NOW), cached_view=(holder_key, seen)
    )
    return committer.submit(
        lambda s: intake.FETCH_BATCH.apply_all(s, [unit])[0],
        lambda _v, _e: _entry(case, Action.FETCH),
        batch=intake.FETCH_BATCH,
        item=unit,
    )


def test_a_superseded_cached_view_is_stale_and_its_case_waits(
    engine: Engine, committer: GroupCommitter
) -> None:
    """The warm fetch's batch (on PostgreSQL the pipelined one): a view read before its
    holder moved is reported stale, its case is left to the retry; a current one is not."""
    with session_scope(make_session_factory(engine), write=True) as session:
        freshness.bump(session, ["moved", "kept"])  # both at 1
        freshness.bump(session, ["moved"])  # moved to 2
    stale = _view_unit(committer, "moved", 1, "C-STALE")
    fresh = _view_unit(committer, "kept", 1, "C-FRESH")
    assert stale.result().value == freshness.STALE
    assert fresh.result().value is None
    with engine.connect() as conn:
        cases = set(conn.execute(select(Case.case_number)).scalars())
    assert cases == {"C-FRESH"}


def test_the_head_lock_is_the_batch_first_statement(
    engine: Engine, committer: GroupCommitter
) -> None:
    """On PostgreSQL the warm fetch's batch runs pipelined: still the head lock before
    anything else, then one check of the views, the cases, the append and COMMIT."""
    with statements.recorded(engine) as seen:
        _view_unit(committer, "someone", 0, "C-1").result()
    sent = [" ".join(s.split()).upper() for s in seen]
    sent = [s for s in sent if s not in ("BEGIN", "BEGIN IMMEDIATE")]
    assert sent[0].startswith("SELECT SIZE, FRONTIER FROM LOG_HEAD"), sent
    assert sum("FROM HOLDER_STATES" in s for s in sent) == 1, sent
    assert sum(s.startswith("INSERT INTO CASES") for s in sent) == 1, sent


@pytest.mark.parametrize("path", ["pipelined", "session"])
def test_a_batch_that_fails_in_the_database_commits_nothing(
    engine: Engine, committer: GroupCommitter, path: str
) -> None:
    """A statement failing in a batch (a case number longer than its column, which only
    PostgreSQL enforces) fails every unit of it with COMMIT_FAILED and writes nothing,
    whichever path the batch took; the next batch commits on a connection left clean."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite does not enforce the column's width")
    # The first unit holds the committer, so the doomed ones queue into one batch.
    first, release = _held(committer)
    too_long = "C" * (CODE_WIDTH * 2 + 1)
    doomed = [_case_unit(committer, too_long, served=True)]
    if path == "session":  # a unit that applies something of its own: no pipeline
        doomed.append(committer.submit(lambda _s: None, lambda _v, _e: _entry("X", Action.GET)))
    release.set()
    held = first.result()
    for pending in doomed:
        with pytest.raises(Unavailable) as raised:
            pending.result()
        assert raised.value.reason == "COMMIT_FAILED"
    after = _case_unit(committer, "C-AFTER", served=True).result()
    assert after.audit_index == held.audit_index + 1
    with engine.connect() as conn:
        logged = conn.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
        cases = set(conn.execute(select(Case.case_number)).scalars())
    assert logged == after.audit_index + 1
    assert cases == {"C-AFTER"}


def _checkpoint_sizes(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(select(LogCheckpoint.size)).scalars())


def test_after_a_batch_of_several_the_committer_waits_for_more(
    engine: Engine, make_committer: Callable[..., GroupCommitter]
) -> None:
    committer = make_committer(linger_seconds=LONG_LINGER_SECONDS)
    first, release = _held(committer)
    several = [
        committer.submit_entry(_entry(f"Q-{n}", Action.GET)) for n in range(LINGER_AFTER_BATCH)
    ]
    release.set()
    first.result()
    for pending in several:
        pending.result()
    a = committer.submit_entry(_entry("A", Action.GET))
    time.sleep(LONG_LINGER_SECONDS / 10)
    b = committer.submit_entry(_entry("B", Action.GET))
    index_a, index_b = a.result().audit_index, b.result().audit_index
    assert index_b == index_a + 1
    # Each batch signs one checkpoint of the log's new size: none between A and B.
    assert index_a + 1 not in _checkpoint_sizes(engine), "B came later and was not waited for"


def test_a_lone_call_is_not_held_back_for_a_batch(
    engine: Engine, make_committer: Callable[..., GroupCommitter]
) -> None:
    committer = make_committer(linger_seconds=LONG_LINGER_SECONDS)
    for n in range(3):
        started = time.monotonic()
        index = committer.submit_entry(_entry(f"L-{n}", Action.GET)).result().audit_index
        assert time.monotonic() - started < LONG_LINGER_SECONDS / 2
        assert index + 1 in _checkpoint_sizes(engine)


def test_units_awaited_after_their_batch_committed_answer_as_the_first(
    committer: GroupCommitter,
) -> None:
    """A stream awaits its pushes in order: by the time it awaits the second unit of a batch,
    the whole batch is resolved. Those answers (value, index, a unit's refusal with its
    entry's index) are the same as the first's, awaited while the batch was committing."""

    def refuse(_session: Session) -> None:
        raise NotFound("no such thing", reason="TEST_REFUSAL")

    async def scenario() -> list[tuple[object, int]]:
        first, release = _held(committer)
        pending: list[Pending[object]] = []
        for n in range(4):
            if n == 2:
                pending.append(committer.submit(refuse, lambda _v, _e: _entry("N", Action.GET)))  # type: ignore[arg-type]
            else:
                pending.append(
                    committer.submit(
                        lambda _s, n=n: f"value-{n}", lambda _v, _e: _entry("V", Action.GET)
                    )
                )
        release.set()
        await first.wait()
        answers: list[tuple[object, int]] = []
        for unit in pending:
            try:
                committed = await unit.wait()
            except NotFound as error:
                answers.append(
                    (error.reason, -1 if error.audit_index is None else error.audit_index)
                )
            else:
                answers.append((committed.value, committed.audit_index))
        with pytest.raises(RuntimeError):  # a loop's unit is awaited, never blocked on
            pending[0].result()
        return answers

    answers = asyncio.run(scenario())
    start = answers[0][1]
    assert answers == [
        ("value-0", start),
        ("value-1", start + 1),
        ("TEST_REFUSAL", start + 2),
        ("value-3", start + 3),
    ]
