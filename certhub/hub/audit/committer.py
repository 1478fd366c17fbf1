"""Group commit: many requests' changes and audit entries in one transaction.

Callers hand a unit of work to the committer and wait: a thread blocks on ``result()``, a
coroutine on the event loop awaits ``wait()`` (its future is resolved by one loop wake-up
per batch, not per unit). One committer thread per hub process takes everything queued,
applies each unit under its own savepoint (a failing unit is rolled back alone and audited
as a refusal), appends all audit entries, signs one checkpoint and commits once. Every
waiter is answered only after that commit: an answered call is
durable, audited and inside a signed checkpoint. While one batch commits, the next
accumulates, so the log's throughput grows with load instead of capping it; under load the
committer also lingers a few milliseconds before each batch, so that more calls share it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

import psycopg
from sqlalchemy import exc
from sqlalchemy.orm import Session, sessionmaker

from certhub.hub.audit.entry import AuditRecord
from certhub.hub.audit.log import AuditLog
from certhub.hub.errors import HubError, Unavailable
from certhub.hub.store.engine import pipeline_scope, session_scope, supports_pipeline

log = logging.getLogger("certhub.audit")

T = TypeVar("T")

# Units per transaction. Bounded so one transaction's lock time and memory stay small; at
# a few hundred microseconds per unit this is well under 100 ms of work.
MAX_BATCH = 256
# How long the committer waits for more units before it commits a batch, when the batch
# before held several. Every group commit has a fixed cost beside its entries (a pool
# checkout, the head lock, a signed checkpoint, a wake-up of each waiting loop), and a fast
# commit under load made batches small: ~4 entries per commit at 32 callers on 2 workers.
# bench/fetch_bench.py, 0 / 3 / 5 / 8 ms alternating (docs/performance.md, "Lingering
# before a group commit"): 8 ms took batches to ~11 entries and server CPU per call down
# by 15-25% warm and cache off, with p50 and p99 no higher under that load. A few ms is
# well inside the 2 s within which issue 11 wants an answer's checkpoint.
COMMIT_LINGER_SECONDS = 0.008
# The committer lingers only after a batch of at least this many units: with fewer, no
# callers are waiting together, and a lone call would only be answered later.
LINGER_AFTER_BATCH = 4
# How long a request waits for its batch before it answers UNAVAILABLE. Longer than any
# healthy commit by orders of magnitude; shorter than typical client deadlines.
COMMIT_WAIT_SECONDS = 30.0


# Where a unit's apply finds the audit index its entry will get (``audit_indices``), so a
# row it admits can name that entry (certificates.audit_idx, revocations.audit_idx) in the
# same statement that writes it: no second statement per batch.
_AUDIT_INDICES = "certhub.audit_indices"


def audit_indices(session: Session) -> Sequence[int] | None:
    """Inside a unit's ``apply`` (one index) or a batch's ``apply_all`` (one per item, in
    order): the audit indices their entries will get; None outside the group committer."""
    value = session.info.get(_AUDIT_INDICES)
    return cast("Sequence[int] | None", value)


class AuditedError(Exception):
    """Wraps the HubError a unit raised, once its refusal is in the log."""


class Batchable(Protocol):
    """A kind of unit the committer may apply as a set: a run of consecutive units with the
    same handle gets one ``apply_all`` call (one savepoint, a few statements) instead of one
    savepoint and several round trips each. ``apply_all`` returns each item's value or its
    HubError in order; if it raises IntegrityError (a race with another hub process), the run
    is applied again unit by unit.

    ``may_race`` False declares that ``apply_all`` cannot raise IntegrityError (an upsert):
    its runs, single units included, then go without the savepoint, two round trips fewer
    on the commit thread; any error it raises fails the batch, as it would with one."""

    @property
    def may_race(self) -> bool: ...

    def apply_all(self, session: Session, items: Sequence[object]) -> Sequence[object]: ...


class Pipelined(Batchable, Protocol):
    """A Batchable that also runs in the PostgreSQL pipeline (``certhub.hub.store.engine``), where a
    batch of its units and audit-only units commits in two round trips, (BEGIN, the head
    lock, the run's reads) and (the run's writes, the append, COMMIT), instead of one per
    statement. ``queue_all`` queues the run's reads on ``conn`` and returns what the
    committer calls once they are answered, with the audit indices the items' entries will
    get (as ``audit_indices`` gives them to ``apply_all``): it reads their cursors, may queue
    writes, and returns each item's value or HubError in order, as ``apply_all`` does. Only
    kinds with ``may_race`` False: no savepoint, and an error in a queued write fails the
    batch."""

    def queue_all(
        self, conn: psycopg.Connection[Any], items: Sequence[object]
    ) -> Callable[[Sequence[int]], Sequence[object]]: ...


@dataclass(eq=False)
class _Unit(Generic[T]):
    apply: Callable[[Session], T] | None
    describe: Callable[[T | None, HubError | None], AuditRecord]
    batch: Batchable | None = None
    item: object = None
    # A unit has one of the two: ``done`` when it was submitted with no running loop (a
    # thread blocks on it), ``future`` when from a running event loop (resolved on that
    # loop). An Event is a Condition and a lock, built and set for every push otherwise.
    done: threading.Event | None = None
    future: asyncio.Future[None] | None = None
    value: T | None = None
    error: BaseException | None = None
    audit_index: int = -1


@dataclass(frozen=True, slots=True)
class Committed(Generic[T]):
    value: T
    audit_index: int


class Pending(Generic[T]):
    """A submitted unit; ``result`` blocks until its batch committed or failed, ``wait``
    awaits the same on the event loop it was submitted from."""

    def __init__(self, unit: _Unit[T]) -> None:
        self._unit = unit

    def result(self) -> Committed[T]:
        done = self._unit.done
        if done is None:
            raise RuntimeError("result() needs a unit submitted with no running event loop")
        if not done.wait(COMMIT_WAIT_SECONDS):
            raise _timed_out()
        return self._outcome()

    async def wait(self) -> Committed[T]:
        future = self._unit.future
        if future is None:
            raise RuntimeError("wait() needs a unit submitted from a running event loop")
        if future.done():
            # Resolved with the rest of its batch (one loop wake-up per batch): a stream
            # awaiting its pushes in order finds all but the first of a batch here. Waiting
            # as below would cost a timer, two futures and a loop turn each (~11 us).
            return self._outcome()
        try:
            # shield: a caller cancelled on timeout must not cancel the shared resolution.
            await asyncio.wait_for(asyncio.shield(future), COMMIT_WAIT_SECONDS)
        except TimeoutError:
            raise _timed_out() from None
        return self._outcome()

    def _outcome(self) -> Committed[T]:
        unit = self._unit
        if unit.error is not None:
            if isinstance(unit.error, HubError) and unit.audit_index >= 0:
                unit.error.audit_index = unit.audit_index
            raise unit.error
        return Committed(value=unit.value, audit_index=unit.audit_index)  # type: ignore[arg-type]


def _timed_out() -> Unavailable:
    return Unavailable("audit log commit timed out; retry", reason="AUDIT_TIMEOUT")


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _wake(batch: Sequence[_Unit[object]]) -> None:
    """Resolve the batch's futures: one thread-safe call per event loop, not per unit (each
    call writes the loop's wake-up pipe and takes its lock)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for unit in batch:
        if unit.future is not None:
            by_loop.setdefault(unit.future.get_loop(), []).append(unit.future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, futures)
        except RuntimeError:  # the loop is closed: nobody waits any more
            continue


def _audit_only(unit: _Unit[object]) -> bool:
    return unit.apply is None and unit.batch is None


def _pipelined_run(
    batch: Sequence[_Unit[object]],
) -> tuple[Pipelined | None, list[_Unit[object]]] | None:
    """(kind, its units) if every unit of ``batch`` is audit-only or of one Pipelined kind
    (the warm fetch's batches, a backfill's pushes, and reads and refusals alone), else
    None: a batch with any other unit goes through a session."""
    kind: Batchable | None = None
    run: list[_Unit[object]] = []
    for unit in batch:
        if unit.batch is None:
            if unit.apply is not None:
                return None
            continue
        if unit.batch is not kind:
            # getattr, not isinstance on the Protocol: that checks every member on each call
            if kind is not None or unit.batch.may_race or not hasattr(unit.batch, "queue_all"):
                return None
            kind = unit.batch
        run.append(unit)
    return cast("Pipelined | None", kind), run


class GroupCommitter:
    """Runs units of work in batched transactions on one background thread."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        audit_log: AuditLog,
        linger_seconds: float = COMMIT_LINGER_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._log = audit_log
        self._linger = linger_seconds
        self._pipelined = supports_pipeline(sessions)
        self._queue: queue.SimpleQueue[_Unit[object] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="audit-committer", daemon=True)
        self._stopped = False
        self._lock = threading.Lock()
        self._thread.start()

    def submit(
        self,
        apply: Callable[[Session], T] | None,
        describe: Callable[[T | None, HubError | None], AuditRecord],
        *,
        batch: Batchable | None = None,
        item: object = None,
    ) -> Pending[T]:
        """Queue ``apply`` (None for audit-only units) and its audit entry; do not wait.

        ``describe`` builds the entry from the unit's value, or from the HubError it raised. That
        HubError is re-raised by ``result()`` after its refusal entry is committed, with
        ``audit_index`` set. With ``batch``, a run of such units may be applied together
        through ``batch.apply_all`` with their ``item``s; ``apply`` stays the one-by-one path.
        """
        unit: _Unit[T] = _Unit(apply=apply, describe=describe, batch=batch, item=item)
        try:
            unit.future = asyncio.get_running_loop().create_future()
        except RuntimeError:  # no loop: the thread blocks on result()
            unit.done = threading.Event()
        with self._lock:
            if self._stopped:
                raise Unavailable("hub is shutting down", reason="SHUTTING_DOWN")
            self._queue.put(unit)  # type: ignore[arg-type]
        return Pending(unit)

    def submit_entry(self, entry: AuditRecord) -> Pending[None]:
        """Queue an audit-only unit (a read, or a refusal)."""
        return self.submit(None, lambda _value, _error: entry)

    def run(
        self,
        apply: Callable[[Session], T] | None,
        describe: Callable[[T | None, HubError | None], AuditRecord],
    ) -> Committed[T]:
        """``submit`` and wait."""
        return self.submit(apply, describe).result()

    def close(self) -> None:
        """Finish every queued unit, then stop the thread (for graceful shutdown)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        stopping = False
        last_size = 0
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            # One sleep, then one drain: waking for each unit as it arrives would cost a
            # GIL hand-off per unit, which is what batching saves.
            linger = self._linger if last_size >= LINGER_AFTER_BATCH else 0.0
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    if not linger:
                        break
                    time.sleep(linger)
                    linger = 0.0
                    continue
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            last_size = len(batch)
            self._commit(batch)

    def _commit(self, batch: list[_Unit[object]]) -> None:
        run = _pipelined_run(batch) if self._pipelined else None
        try:
            if run is not None:
                first = self._commit_pipelined(batch, *run)
            else:
                first = self._commit_session(batch)
        except HubError as exc:
            self._fail(batch, exc)
            return
        except Exception as exc:
            log.exception("audit batch of %d failed", len(batch))
            self._fail(batch, Unavailable("could not commit; retry", reason="COMMIT_FAILED"))
            del exc
            return
        for offset, unit in enumerate(batch):
            unit.audit_index = first + offset
            if unit.done is not None:
                unit.done.set()
        _wake(batch)

    def _commit_pipelined(
        self, batch: list[_Unit[object]], kind: Pipelined | None, run: list[_Unit[object]]
    ) -> int:
        """``_commit_session`` for a batch of one Pipelined kind and audit-only units, on
        PostgreSQL: the same statements in the same order, in two round trips."""
        with pipeline_scope(self._sessions) as pipeline:
            # Queued first, so still the transaction's first lock (see _commit_session): the
            # server runs a pipeline's statements in order.
            locked = self._log.queue_lock(pipeline.conn)
            finish = kind.queue_all(pipeline.conn, [u.item for u in run]) if kind else None
            pipeline.sync()
            head = self._log.locked_head(locked)
            if finish is not None:
                first = head[0]
                indices = [first + i for i, unit in enumerate(batch) if unit.batch is kind]
                for unit, outcome in zip(run, finish(indices), strict=True):
                    if isinstance(outcome, HubError):
                        unit.error = outcome
                    else:
                        unit.value = outcome
            records = [
                unit.describe(None, unit.error)
                if isinstance(unit.error, HubError)
                else unit.describe(unit.value, None)
                for unit in batch
            ]
            return self._log.queue_append(pipeline.conn, records, head)

    def _commit_session(self, batch: list[_Unit[object]]) -> int:
        with session_scope(self._sessions, write=True) as session:
            # Lock the log head before the batch writes anything. Batches of two hub
            # processes then run one after the other: upserting the same rows (a case
            # fetched through both) in different orders, they deadlocked on PostgreSQL,
            # which failed one batch and answered all its calls UNAVAILABLE. SQLite's
            # IMMEDIATE transactions are serial already.
            first = self._log.lock(session)
            records = self._apply_batch(session, batch, first)
            return self._log.append(session, records)

    def _apply_batch(
        self, session: Session, batch: list[_Unit[object]], first: int
    ) -> list[AuditRecord]:
        """Apply units in queue order; runs of the same batchable kind go as one set.

        Audit-only units write nothing but their entry, so they do not end a run: pushes
        or fetched cases interleaved with reads and refusals still go as one set. Units that
        write keep their order among themselves, and every entry keeps its place in the log.
        """
        records: list[AuditRecord | None] = [None] * len(batch)
        start = 0
        while start < len(batch):
            kind = batch[start].batch
            if kind is None:
                records[start] = self._apply(session, batch[start], first + start)
                start += 1
                continue
            members = [start]
            end = start + 1
            while end < len(batch) and (batch[end].batch is kind or _audit_only(batch[end])):
                if batch[end].batch is kind:
                    members.append(end)
                end += 1
            for i in range(start, end):
                if batch[i].batch is not kind:
                    records[i] = self._apply(session, batch[i], first + i)
            run = [batch[i] for i in members]
            indices = [first + i for i in members]
            applied = (
                [self._apply(session, run[0], indices[0])]
                if len(run) == 1 and kind.may_race
                else self._apply_run(session, kind, run, indices)
            )
            for i, record in zip(members, applied, strict=True):
                records[i] = record
            start = end
        assert all(r is not None for r in records)
        return cast("list[AuditRecord]", records)

    def _apply_run(
        self, session: Session, kind: Batchable, run: list[_Unit[object]], indices: list[int]
    ) -> list[AuditRecord]:
        items = [unit.item for unit in run]
        session.info[_AUDIT_INDICES] = indices
        try:
            if not kind.may_race:
                outcomes = kind.apply_all(session, items)
            else:
                try:
                    with session.begin_nested():
                        outcomes = kind.apply_all(session, items)
                except exc.IntegrityError:
                    return [
                        self._apply(session, unit, index)
                        for unit, index in zip(run, indices, strict=True)
                    ]
        finally:
            session.info.pop(_AUDIT_INDICES, None)
        records = []
        for unit, outcome in zip(run, outcomes, strict=True):
            if isinstance(outcome, HubError):
                unit.error = outcome
                records.append(unit.describe(None, outcome))
            else:
                unit.value = outcome
                records.append(unit.describe(outcome, None))
        return records

    @staticmethod
    def _apply(session: Session, unit: _Unit[object], index: int) -> AuditRecord:
        if unit.apply is None:
            return unit.describe(None, None)
        session.info[_AUDIT_INDICES] = (index,)
        try:
            with session.begin_nested():
                unit.value = unit.apply(session)
        except HubError as exc:
            unit.error = exc
            return unit.describe(None, exc)
        finally:
            session.info.pop(_AUDIT_INDICES, None)
        return unit.describe(unit.value, None)

    @staticmethod
    def _fail(batch: list[_Unit[object]], error: HubError) -> None:
        # Nothing of this batch was committed: no unit may report success or a log index.
        for unit in batch:
            unit.error = error
            unit.value = None
            if unit.done is not None:
                unit.done.set()
        _wake(batch)
