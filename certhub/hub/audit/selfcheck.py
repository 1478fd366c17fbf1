"""A serving hub checks the log it serves, so a tampered log stops being served as good.

``AuditSelfCheck`` keeps in memory the newest checkpoint it verified (the *anchor*: a
checkpoint this process saw signed, which a later change of the database cannot alter) and,
each ``tick()``:

1. reads the newest stored checkpoint and checks its signature; a smaller size than the
   anchor's is a rollback;
2. rehashes the entries added since the anchor, starting from the anchor's frontier (read
   from ``tree_nodes`` and checked against the anchor's root), and requires the signed root
   of the new checkpoint: the new entries, as stored now, are what was signed, and the new
   checkpoint extends the anchor. The first anchor is the newest checkpoint at start (its
   signature checked), and the full pass runs at once against it;
3. with witnesses configured, requires the newest cosigned checkpoint to carry the quorum
   of cosignatures and to be consistent with the anchor;
4. every ``full_every`` seconds, runs the whole ``certhub audit verify`` pass (every leaf,
   every node, every checkpoint, the state rows) anchored to the anchor, in a worker thread.

The first failure is latched: ``failure`` names the first bad index, ``on_failure`` is
called once (the server turns the audit service's health NOT_SERVING), the alert gauge
``certhub_audit_selfcheck_failed`` goes to 1 and the first bad index is logged. The check
runs on the event loop's executor; the database reads are a few per second when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from certhub.hub.audit import reads
from certhub.hub.audit.verify import verify_log
from certhub.hub.observability.metrics import metrics
from certhub.hub.store.engine import is_sqlite, session_scope
from certhub.hub.store.models import AuditEntry, TreeNode
from certhub.signing import SigningError, merkle
from certhub.signing.cosignature import CosignatureVerifier, verify_cosignatures
from certhub.signing.note import Checkpoint, NoteVerifier, open_note, parse_checkpoint

log = logging.getLogger("certhub.audit.selfcheck")

# Seconds between incremental checks: the hub signs about one checkpoint a second.
DEFAULT_INTERVAL_SECONDS = 1.0
# Seconds between full passes over the whole log. A full pass of a million entries takes
# about a minute of one core (docs/performance.md, `audit verify`); every ten minutes keeps
# that under a tenth of one core while bounding how long an altered old entry goes unseen.
DEFAULT_FULL_EVERY_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Failure:
    index: int
    message: str


class _Bad(Exception):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.failure = Failure(index, message)


class AuditSelfCheck:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        verifier: NoteVerifier,
        witnesses: Sequence[CosignatureVerifier] = (),
        quorum: int = 0,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        full_every: float = DEFAULT_FULL_EVERY_SECONDS,
        first_full_after: float = 0.0,
        on_failure: Callable[[Failure], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._verifier = verifier
        self._witnesses = list(witnesses)
        self._quorum = quorum
        self._interval = interval
        self._full_every = full_every
        self._on_failure = on_failure
        self._clock = clock
        self._anchor: Checkpoint | None = None
        # The first full pass runs ``first_full_after`` seconds after the first round (at
        # once by default); workers of one hub stagger theirs so they do not all read the
        # whole log at the same moment.
        self._last_full: float | None = (
            clock() - full_every + first_full_after if first_full_after > 0 else None
        )
        self.failure: Failure | None = None
        self._stopping = asyncio.Event()

    @property
    def anchor(self) -> Checkpoint | None:
        return self._anchor

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception:
                # A database outage is health's business (it reports it); try again later.
                log.exception("audit self-check round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()

    async def tick(self) -> Failure | None:
        """One round; the latched failure, if any."""
        if self.failure is not None:
            return self.failure
        failure = await asyncio.to_thread(self._incremental)
        now = self._clock()
        if failure is None and (
            self._last_full is None or now - self._last_full >= self._full_every
        ):
            self._last_full = now
            failure = await asyncio.to_thread(self._full)
        if failure is not None:
            self._fail(failure)
        return self.failure

    def _fail(self, failure: Failure) -> None:
        self.failure = failure
        log.error("audit self-check FAILED: first bad index %d: %s", failure.index, failure.message)
        metrics().audit_selfcheck_failed.set(1)
        metrics().audit_selfcheck_first_bad_index.set(failure.index)
        if self._on_failure is not None:
            self._on_failure(failure)

    # --- the checks (worker thread) ------------------------------------------------------------

    def _incremental(self) -> Failure | None:
        with _snapshot(self._sessions) as session:
            latest = reads.latest_checkpoint(session)
            if latest is None:
                if self._anchor is None:
                    # An empty log is the first anchor: every entry the hub appends from
                    # now on is rehashed against the checkpoint that first covers it,
                    # rather than that checkpoint being taken on trust.
                    self._anchor_at(Checkpoint(self._verifier.name, 0, merkle.EMPTY_ROOT))
                return None
            try:
                body = parse_checkpoint(open_note(latest.note, [self._verifier]))
            except SigningError as e:
                return Failure(max(latest.size - 1, 0), f"newest checkpoint {latest.size}: {e}")
            if (body.size, body.root_hash) != (latest.size, latest.root):
                return Failure(
                    max(latest.size - 1, 0),
                    f"checkpoint {latest.size}: stored size or root differs from its note",
                )
            anchor = self._anchor
            if anchor is not None and body.size < anchor.size:
                return Failure(
                    body.size,
                    f"the newest checkpoint is {body.size}, this hub already saw {anchor.size} "
                    "signed: the log was rolled back",
                )
            try:
                self._extend(session, anchor, body)
                self._check_cosigned(session, body)
            except _Bad as bad:
                return bad.failure
        return None

    def _extend(self, session: Session, anchor: Checkpoint | None, latest: Checkpoint) -> None:
        if anchor is None:
            # Trust on first use: the newest checkpoint, its signature checked, becomes the
            # anchor; the full pass that follows at once checks every entry against it.
            self._anchor_at(latest)
            return
        start = anchor.size
        if start == latest.size:
            if anchor.root_hash != latest.root_hash:
                raise _Bad(max(start - 1, 0), f"checkpoint {start} was re-signed with another root")
            return
        frontier = _frontier(session, start)
        if frontier is None or merkle.root_from_frontier(start, frontier) != anchor.root_hash:
            raise _Bad(
                max(start - 1, 0),
                f"tree_nodes no longer give the root of checkpoint {start} this hub verified: "
                f"the log before {start} was changed",
            )
        leaves = session.execute(
            select(AuditEntry.idx, AuditEntry.leaf)
            .where(AuditEntry.idx >= start, AuditEntry.idx < latest.size)
            .order_by(AuditEntry.idx)
        ).all()
        hashes = []
        for expected, (index, leaf) in enumerate(leaves, start=start):
            if index != expected:
                raise _Bad(expected, f"entry {expected} is missing")
            hashes.append(merkle.leaf_hash(bytes(leaf)))
        if len(hashes) != latest.size - start:
            raise _Bad(start + len(hashes), f"entry {start + len(hashes)} is missing")
        _, new_frontier = merkle.append_leaves(start, frontier, hashes)
        if merkle.root_from_frontier(latest.size, new_frontier) != latest.root_hash:
            raise _Bad(
                self._first_changed(session, start, hashes),
                f"entries {start}..{latest.size - 1} as stored do not give the root of signed "
                f"checkpoint {latest.size}",
            )
        self._anchor_at(latest)

    def _anchor_at(self, checkpoint: Checkpoint) -> None:
        self._anchor = checkpoint
        metrics().audit_selfcheck_anchor_size.set(checkpoint.size)

    @staticmethod
    def _first_changed(session: Session, start: int, hashes: list[bytes]) -> int:
        """The first entry whose rehash differs from its stored leaf node, else ``start``."""
        stored = dict(
            session.execute(
                select(TreeNode.idx, TreeNode.hash).where(
                    TreeNode.level == 0, TreeNode.idx >= start, TreeNode.idx < start + len(hashes)
                )
            ).all()
        )
        for offset, h in enumerate(hashes):
            if bytes(stored.get(start + offset, b"")) != h:
                return start + offset
        return start

    def _check_cosigned(self, session: Session, latest: Checkpoint) -> None:
        if not self._witnesses:
            return
        cosigned = reads.latest_cosigned_checkpoint(session)
        if cosigned is None:
            return
        where = max(cosigned.size - 1, 0)
        try:
            body = parse_checkpoint(open_note(cosigned.note, [self._verifier]))
            found = verify_cosignatures(cosigned.note, self._witnesses)
        except SigningError as e:
            raise _Bad(where, f"cosigned checkpoint {cosigned.size}: {e}") from e
        if len(found) < self._quorum:
            raise _Bad(
                where,
                f"cosigned checkpoint {cosigned.size} carries {len(found)} valid cosignatures, "
                f"the policy needs {self._quorum}",
            )
        if body.size > latest.size:
            raise _Bad(
                latest.size,
                f"witnesses cosigned {body.size} entries, the log now has {latest.size}: "
                "entries were removed",
            )
        try:
            if body.size == latest.size:
                if body.root_hash != latest.root_hash:
                    raise SigningError("same size, another root")
            elif body.size > 0:
                proof = reads.consistency_proof(session, body.size, latest.size)
                merkle.verify_consistency(
                    size1=body.size,
                    size2=latest.size,
                    root1=body.root_hash,
                    root2=latest.root_hash,
                    proof=proof.hashes,
                )
        except Exception as e:  # a missing node or a bad proof: both are findings
            raise _Bad(
                where,
                f"the log is not consistent with the checkpoint witnesses cosigned at "
                f"{body.size}: {e}",
            ) from e

    def _full(self) -> Failure | None:
        started = time.monotonic()
        with _snapshot(self._sessions) as session:
            anchor = self._anchor if self._anchor is not None and self._anchor.size else None
            report = verify_log(
                session, self._verifier, trusted=anchor, now=dt.datetime.now(dt.UTC)
            )
        # An operator sizing DEFAULT_FULL_EVERY_SECONDS (and a benchmark waiting for the
        # start-up pass to end) needs to know what a pass costs on this log.
        log.info(
            "audit self-check: full pass over %d entries and %d checkpoints in %.1f s",
            report.entries,
            report.checkpoints,
            time.monotonic() - started,
        )
        if report.problem is None:
            return None
        return Failure(report.problem.index, report.problem.message)


@contextlib.contextmanager
def _snapshot(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One read transaction that sees one state of the log while the hub keeps appending
    (PostgreSQL's default READ COMMITTED gives each statement its own: a pass read entries
    before a commit and their certificate links after it, and failed an honest log)."""
    with session_scope(sessions) as session:
        if not is_sqlite(session.get_bind()):  # type: ignore[arg-type]
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


def _frontier(session: Session, size: int) -> list[bytes] | None:
    ids = merkle.frontier(size)
    if not ids:
        return []
    rows = {
        (level, index): bytes(h)
        for level, index, h in session.execute(
            select(TreeNode.level, TreeNode.idx, TreeNode.hash).where(
                TreeNode.level.in_({level for level, _ in ids}),
                TreeNode.idx.in_({index for _, index in ids}),
            )
        )
    }
    hashes = [rows.get(node) for node in ids]
    if any(h is None for h in hashes):
        return None
    return [h for h in hashes if h is not None]
