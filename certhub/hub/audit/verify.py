"""Recomputing the whole audit log from its stored leaves (``certhub audit verify``).

Nothing stored is trusted except the log's verifier key: the leaves are streamed in index
order in chunks, every leaf hash and every perfect subtree is recomputed and compared with
``tree_nodes``, the root at every stored checkpoint size is recomputed and compared with the
checkpoint (whose signature is checked), which makes every two checkpoints consistent (both
roots come from the same leaves); one consistency proof, from the oldest checkpoint to the
newest, is assembled from the stored nodes as the hub serves it and checked; the indexed
columns are compared with the leaf they index, and the log head is compared with the
recomputed tree. Memory stays flat: one chunk
of leaves, the O(log n) frontier and the nodes completed within the chunk.

The first problem found (by leaf index) is reported: a changed leaf shows as a leaf hash
that no longer matches its stored node, a deleted one as a gap, two reordered ones as the
first of the pair, a replaced checkpoint as a bad signature or a root the leaves do not give.

The log vouches for the state, so the state is checked against it too: every entry that
admitted a certificate or a revocation must still have its row (a deleted revocation row
would serve a revoked licence as VALID). The newest checkpoint must cover the whole log: a
log whose checkpoints were deleted, or whose tail no checkpoint signs, fails, except for a
tail younger than ``UNCOVERED_TAIL_GRACE`` (the signer may sign a moment after the
commit), reported as not yet covered. A ``trusted`` checkpoint kept outside the database
(or cosigned by witnesses) anchors the check: the recomputed tree at its size must have its
root, so a consistent rewrite of everything after the newest stored checkpoint is caught.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from certhub.hub.audit import reads
from certhub.hub.audit.entry import OK, Action, format_time
from certhub.hub.domain.identifier import lineage_of
from certhub.hub.store.engine import stored_utc
from certhub.hub.store.models import (
    AuditCertificate,
    AuditEntry,
    Certificate,
    LogCheckpoint,
    LogHead,
    Revocation,
    TreeNode,
)
from certhub.signing import SigningError, merkle, parse_envelope
from certhub.signing.note import Checkpoint, NoteVerifier, open_note, parse_checkpoint

# Leaves read per query. A power of two, so that the perfect nodes completed while reading
# one chunk are a few aligned index ranges (one query to compare them all); 4,096 leaves of
# ~400 bytes is ~2 MB per chunk, which bounds the verifier's memory whatever the log's size.
CHUNK = 4096
# Checkpoints read per query (each ~200 bytes of note).
CHECKPOINT_CHUNK = 1024
# How old the first entry no checkpoint covers may be before that is tampering rather than
# the signer not having run yet. The hub signs a checkpoint within about a second of a
# commit (certhub.hub.audit.log; a group-commit batch, or the signing cadence); ten seconds leaves
# room for a busy commit thread and for the clock skew between the verifier and the hub.
UNCOVERED_TAIL_GRACE = dt.timedelta(seconds=10)
# The head row the append path keeps (certhub.hub.audit.log.HEAD_ID).
_HEAD_ID = 1
# Columns of audit_entries that index the leaf, and the leaf field each must equal.
_INDEXED = (
    ("principal", "principal"),
    ("action", "action"),
    ("outcome", "outcome"),
    ("holder_commitment", "holder"),
    ("service_item_code", "service_item"),
    ("case_number", "case"),
)


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing wrong; ``index`` is the first bad leaf index it implicates."""

    index: int
    message: str
    # Set when the problem is a stored checkpoint (its tree size).
    checkpoint_size: int | None = None
    # Set when the problem is a state row: which one, e.g. "certificates row 12".
    row: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    entries: int
    checkpoints: int
    root: bytes
    problem: Problem | None
    # Entries from this index on are covered by no checkpoint yet, but young enough to be
    # waiting for the signer (UNCOVERED_TAIL_GRACE); None when the newest checkpoint covers
    # the whole log.
    uncovered_from: int | None = None
    # The size of the trusted checkpoint the log was anchored to, if one was given.
    anchored_at: int | None = None
    # Certificate and revocation rows checked against the entries that admitted them.
    state_rows: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Found(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def verify_log(
    session: Session,
    verifier: NoteVerifier,
    *,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
    trusted: Checkpoint | None = None,
    now: dt.datetime | None = None,
) -> Report:
    """Check everything stored about the log; run it inside one read transaction.

    ``trusted`` is a checkpoint the caller already checked (signature, origin) and keeps
    outside the database; ``now`` is the verifier's clock, for the uncovered-tail grace."""
    if chunk <= 0 or chunk & (chunk - 1):
        raise ValueError(f"chunk must be a power of two, got {chunk}")
    state = _State(session, verifier, trusted)
    uncovered: int | None = None
    try:
        state.run(chunk, progress)
        state.check_rows(chunk)
        uncovered = state.check_coverage(now or dt.datetime.now(dt.UTC))
    except _Found as found:
        return state.report(found.problem, None)
    return state.report(None, uncovered)


class _State:
    def __init__(
        self, session: Session, verifier: NoteVerifier, trusted: Checkpoint | None
    ) -> None:
        self.session = session
        self.verifier = verifier
        self.trusted = trusted
        self.state_rows = 0
        self.stack: list[tuple[int, bytes]] = []
        self.size = 0
        self.checkpoints_seen = 0
        self._first: tuple[int, bytes] | None = None
        self._previous: tuple[int, bytes] | None = None
        self._checkpoints = _checkpoints(session)
        self._next_checkpoint = next(self._checkpoints, None)
        self._links = _links(session)
        self._next_link = next(self._links, None)

    def root(self) -> bytes:
        return _fold(self.stack)

    def report(self, problem: Problem | None, uncovered: int | None) -> Report:
        return Report(
            entries=self.size,
            checkpoints=self.checkpoints_seen,
            root=self.root(),
            problem=problem,
            uncovered_from=uncovered,
            anchored_at=self.trusted.size if self.trusted and problem is None else None,
            state_rows=self.state_rows,
        )

    def check_coverage(self, now: dt.datetime) -> int | None:
        """Where the uncovered tail starts, if it is young; raises if it is not."""
        covered = self._previous[0] if self._previous is not None else 0
        if covered >= self.size:
            return None
        first = self.session.execute(
            select(AuditEntry.time).where(AuditEntry.idx == covered)
        ).scalar_one()
        age = now - stored_utc(first)
        if age <= UNCOVERED_TAIL_GRACE:
            return covered
        newest = f"the newest checkpoint covers {covered}" if covered else "there is none"
        raise _Found(
            Problem(
                covered,
                f"entries {covered}..{self.size - 1} are covered by no checkpoint ({newest}); "
                f"entry {covered} was written {age.total_seconds():.0f} s ago, longer than "
                f"the {UNCOVERED_TAIL_GRACE.total_seconds():.0f} s a checkpoint may lag: "
                "checkpoints were deleted, or the entries were added without the log key",
            )
        )

    def run(self, chunk: int, progress: Callable[[int], None] | None) -> None:
        while True:
            rows = self.session.execute(
                select(
                    AuditEntry.idx,
                    AuditEntry.leaf,
                    AuditEntry.time,
                    AuditEntry.principal,
                    AuditEntry.action,
                    AuditEntry.outcome,
                    AuditEntry.holder_commitment,
                    AuditEntry.service_item_code,
                    AuditEntry.case_number,
                )
                .where(AuditEntry.idx >= self.size)
                .order_by(AuditEntry.idx)
                .limit(chunk)
            ).all()
            if not rows:
                break
            completed: dict[merkle.NodeId, bytes] = {}
            problems: list[Problem] = []
            for row in rows:
                index = row[0]
                if index != self.size:
                    problems.append(
                        Problem(self.size, f"entry {self.size} is missing (next stored: {index})")
                    )
                    break
                leaf = bytes(row[1])
                problem = _check_columns(index, leaf, row[2:], self._certificate_ids(index))
                if problem:
                    problems.append(problem)
                _push(self.stack, index, merkle.leaf_hash(leaf), completed)
                self.size += 1
                problem = self._checkpoints_at(self.size) or self._anchor_at(self.size)
                if problem:
                    problems.append(problem)
                    break
            problems.extend(self._compare_nodes(completed))
            problems.extend(self._check_state([(r[0], bytes(r[1]), r[4], r[5]) for r in rows]))
            if problems:
                raise _Found(min(problems, key=lambda p: (p.index, p.checkpoint_size is not None)))
            if progress:
                progress(self.size)
        self._finish()

    def check_rows(self, chunk: int) -> None:
        """Every certificates and revocations row against the entry that admitted it."""
        checker = _Rows(self.session, self.size)
        problem = checker.certificates(chunk) or checker.revocations(chunk)
        if problem is not None:
            raise _Found(problem)

    def _anchor_at(self, size: int) -> Problem | None:
        if self.trusted is None or self.trusted.size != size:
            return None
        if self.root() == self.trusted.root_hash:
            return None
        return Problem(
            max(size - 1, 0),
            f"the trusted checkpoint {size} has another root than entries 0..{size - 1}: "
            "the log was rewritten after that checkpoint was taken",
            checkpoint_size=size,
        )

    def _check_state(self, entries: Sequence[tuple[int, bytes, str, str]]) -> list[Problem]:
        """Entries that admitted a certificate or a revocation still have their row; an
        entry that commits to the envelope's SHA-256 has a row with that envelope."""
        pushed: dict[str, int] = {}
        digests: dict[tuple[str, str], int] = {}
        revoked: dict[str, int] = {}
        for index, leaf, action, outcome in entries:
            if outcome != OK or action not in (Action.PUSH, Action.REVOKE):
                continue
            ids, sha256 = _leaf_binding(leaf)
            for n, certificate_id in enumerate(ids):
                if action == Action.PUSH:
                    pushed.setdefault(certificate_id, index)
                    if n < len(sha256):
                        digests.setdefault((certificate_id, sha256[n]), index)
                else:
                    revoked.setdefault(lineage_of(certificate_id), index)
        problems: list[Problem] = []
        if pushed:
            rows = {
                (str(certificate_id), str(sha256))
                for certificate_id, sha256 in self.session.execute(
                    select(Certificate.certificate_id, Certificate.envelope_sha256).where(
                        Certificate.certificate_id.in_(pushed)
                    )
                )
            }
            stored = {certificate_id for certificate_id, _ in rows}
            self.state_rows += len(stored)
            problems.extend(
                Problem(
                    index,
                    f"entry {index} admitted certificate {certificate_id!r}, which has no "
                    "row in certificates: the row was deleted",
                )
                for certificate_id, index in pushed.items()
                if certificate_id not in stored
            )
            problems.extend(
                Problem(
                    index,
                    f"entry {index} admitted certificate {certificate_id!r} with envelope "
                    f"SHA-256 {sha256[:16]}…, and no certificates row of that id has that "
                    "envelope: the row was changed or deleted",
                )
                for (certificate_id, sha256), index in digests.items()
                if certificate_id in stored and (certificate_id, sha256) not in rows
            )
        if revoked:
            stored = set(
                self.session.execute(
                    select(Revocation.lineage).where(Revocation.lineage.in_(revoked))
                ).scalars()
            )
            self.state_rows += len(stored)
            problems.extend(
                Problem(
                    index,
                    f"entry {index} revoked lineage {lineage!r}, which has no row in "
                    "revocations: the row was deleted (the certificate would be served as "
                    "not revoked)",
                )
                for lineage, index in revoked.items()
                if lineage not in stored
            )
        return problems

    def _certificate_ids(self, index: int) -> list[str]:
        ids: list[str] = []
        while self._next_link is not None and self._next_link[0] <= index:
            if self._next_link[0] == index:
                ids.append(self._next_link[1])
            else:
                raise _Found(
                    Problem(
                        self._next_link[0],
                        f"audit_certificates links certificate {self._next_link[1]!r} to "
                        f"entry {self._next_link[0]}, which is not stored",
                    )
                )
            self._next_link = next(self._links, None)
        return ids

    def _checkpoints_at(self, size: int) -> Problem | None:
        while self._next_checkpoint is not None and self._next_checkpoint[0] <= size:
            cp_size, root, note = self._next_checkpoint
            self._next_checkpoint = next(self._checkpoints, None)
            self.checkpoints_seen += 1
            problem = self._check_checkpoint(cp_size, root, note)
            if problem:
                return problem
        return None

    def _check_checkpoint(self, size: int, root: bytes, note: str) -> Problem | None:
        where = max(size - 1, 0)

        def bad(message: str) -> Problem:
            return Problem(where, f"checkpoint {size}: {message}", checkpoint_size=size)

        try:
            body = parse_checkpoint(open_note(note, [self.verifier]))
        except SigningError as e:
            return bad(f"signed note does not verify with the log key: {e}")
        if body.origin != self.verifier.name:
            return bad(f"origin {body.origin!r} is not the log {self.verifier.name!r}")
        if body.size != size or body.root_hash != root:
            return bad("the stored size or root differs from what its signed note says")
        if root != self.root():
            return bad(
                f"signed root is not the root of entries 0..{size - 1}: an entry at or before "
                f"{size - 1} was changed, or the checkpoint was replaced"
            )
        # No proof between this checkpoint and the one before: both roots were just
        # recomputed from the same leaves, which is what a proof would show, and one proof
        # per checkpoint (two queries) made a pass over a log with a checkpoint per group
        # commit several times slower (docs/performance.md, "The self-check's full pass").
        if self._first is None:
            self._first = (size, root)
        self._previous = (size, root)
        return None

    def _check_served_consistency(self) -> None:
        """The oldest checkpoint to the newest through ``reads.consistency_proof``: the
        stored nodes assemble into the proof a client of the log is served."""
        if self._first is None or self._previous is None or self._first == self._previous:
            return
        (old_size, old_root), (size, root) = self._first, self._previous
        try:
            proof = reads.consistency_proof(self.session, old_size, size)
            merkle.verify_consistency(
                size1=old_size, size2=size, root1=old_root, root2=root, proof=proof.hashes
            )
        except Exception as e:  # any failure here (missing node, bad proof) is a finding
            raise _Found(
                Problem(
                    size - 1,
                    f"checkpoint {size}: no valid consistency proof from checkpoint "
                    f"{old_size}: {e}",
                    checkpoint_size=size,
                )
            ) from e

    def _compare_nodes(self, completed: dict[merkle.NodeId, bytes]) -> list[Problem]:
        if not completed:
            return []
        ranges: dict[int, tuple[int, int]] = {}
        for level, index in completed:
            low, high = ranges.get(level, (index, index))
            ranges[level] = (min(low, index), max(high, index))
        stored = {
            (level, index): bytes(h)
            for level, index, h in self.session.execute(
                select(TreeNode.level, TreeNode.idx, TreeNode.hash).where(
                    or_(
                        *(
                            and_(TreeNode.level == level, TreeNode.idx.between(low, high))
                            for level, (low, high) in ranges.items()
                        )
                    )
                )
            )
        }
        problems: list[Problem] = []
        # Lowest levels first: a bad node whose range holds an already-found bad node is
        # explained by it, and the first bad index is the lowest one that is not.
        for (level, index), h in sorted(completed.items()):
            if stored.get((level, index)) == h:
                continue
            first = index << level
            if any(first <= p.index < first + (1 << level) for p in problems):
                continue
            what = "is missing" if (level, index) not in stored else "differs"
            if level == 0:
                message = (
                    f"entry {index}: its leaf hash {what} in tree_nodes (the leaf or its "
                    "node was changed, or entries were reordered)"
                )
            else:
                message = (
                    f"stored tree node (level {level}, index {index}) covering entries "
                    f"{first}..{first + (1 << level) - 1} {what} from the recomputed one"
                )
            problems.append(Problem(first, message))
        return problems

    def _finish(self) -> None:
        if self.trusted is not None and self.trusted.size > self.size:
            raise _Found(
                Problem(
                    self.size,
                    f"the trusted checkpoint covers {self.trusted.size} entries, the log holds "
                    f"{self.size}: entries {self.size}.. were removed",
                    checkpoint_size=self.trusted.size,
                )
            )
        if self._next_checkpoint is not None:
            size = self._next_checkpoint[0]
            raise _Found(
                Problem(
                    self.size,
                    f"checkpoint {size} covers entries past the last stored one "
                    f"({self.size - 1}): entries {self.size}.. are missing",
                )
            )
        self._check_served_consistency()
        if self._next_link is not None:
            raise _Found(
                Problem(
                    self._next_link[0],
                    f"audit_certificates links to entry {self._next_link[0]}, which is not stored",
                )
            )
        head = self.session.execute(
            select(LogHead.size, LogHead.root, LogHead.frontier).where(LogHead.id == _HEAD_ID)
        ).one_or_none()
        frontier = b"".join(h for _, h in self.stack)
        if head is None or (head[0], bytes(head[1]), bytes(head[2])) != (
            self.size,
            self.root(),
            frontier,
        ):
            raise _Found(
                Problem(
                    min(self.size, head[0]) if head else 0,
                    "log_head (size, root, frontier) does not match the recomputed tree "
                    f"of {self.size} entries",
                )
            )
        expected_nodes = 2 * self.size - self.size.bit_count()
        stored_nodes = self.session.execute(select(func.count()).select_from(TreeNode)).scalar_one()
        if stored_nodes != expected_nodes:
            raise _Found(
                Problem(
                    self.size,
                    f"tree_nodes holds {stored_nodes} nodes, a tree of {self.size} entries has "
                    f"{expected_nodes}",
                )
            )


def _check_columns(
    index: int, leaf: bytes, columns: tuple[object, ...], certificate_ids: list[str]
) -> Problem | None:
    try:
        fields = json.loads(leaf)
    except ValueError:
        return Problem(index, f"entry {index}: leaf is not JSON")
    if not isinstance(fields, dict):
        return Problem(index, f"entry {index}: leaf is not a JSON object")
    time = columns[0]
    if not isinstance(time, dt.datetime) or fields.get("time") != format_time(stored_utc(time)):
        return Problem(index, f"entry {index}: column time disagrees with the leaf")
    for (column, key), value in zip(_INDEXED, columns[1:], strict=True):
        if fields.get(key) != value:
            return Problem(index, f"entry {index}: column {column} disagrees with the leaf")
    listed = fields.get("certificate_ids")
    if not isinstance(listed, list) or sorted(set(listed)) != certificate_ids:
        return Problem(
            index, f"entry {index}: audit_certificates links disagree with the leaf's ids"
        )
    return None


def _leaf_binding(leaf: bytes) -> tuple[list[str], list[str]]:
    """A leaf's certificate ids and the envelope SHA-256s it commits to (none in leaves
    written before the binding)."""
    try:
        fields = json.loads(leaf)
    except ValueError:
        return [], []  # reported by _check_columns
    if not isinstance(fields, dict):
        return [], []
    ids, sha256 = fields.get("certificate_ids"), fields.get("sha256")
    return (
        [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else [],
        [h for h in sha256 if isinstance(h, str)] if isinstance(sha256, list) else [],
    )


def _leaf_ids(leaf: bytes) -> list[str]:
    try:
        fields = json.loads(leaf)
    except ValueError:
        return []  # reported by _check_columns
    ids = fields.get("certificate_ids") if isinstance(fields, dict) else None
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def _push(
    stack: list[tuple[int, bytes]],
    position: int,
    h: bytes,
    completed: dict[merkle.NodeId, bytes],
) -> None:
    level = 0
    completed[(0, position)] = h
    while stack and stack[-1][0] == level:
        _, left = stack.pop()
        h = merkle.node_hash(left, h)
        level += 1
        completed[(level, position >> level)] = h
    stack.append((level, h))


def _fold(stack: list[tuple[int, bytes]]) -> bytes:
    if not stack:
        return merkle.EMPTY_ROOT
    result = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        result = merkle.node_hash(left, result)
    return result


def _checkpoints(session: Session) -> Iterator[tuple[int, bytes, str]]:
    last = 0
    while True:
        rows = session.execute(
            select(LogCheckpoint.size, LogCheckpoint.root, LogCheckpoint.note)
            .where(LogCheckpoint.size > last)
            .order_by(LogCheckpoint.size)
            .limit(CHECKPOINT_CHUNK)
        ).all()
        if not rows:
            return
        for size, root, note in rows:
            yield size, bytes(root), note
        last = rows[-1][0]


def _links(session: Session) -> Iterator[tuple[int, str]]:
    """audit_certificates in (index, certificate id) order, streamed."""
    result = session.execute(
        select(AuditCertificate.idx, AuditCertificate.certificate_id)
        .order_by(AuditCertificate.idx, AuditCertificate.certificate_id)
        .execution_options(yield_per=CHUNK)
    )
    for index, certificate_id in result:
        yield int(index), str(certificate_id)


# --- rows -> entries --------------------------------------------------------------------------


class _Rows:
    """The state side: each row must be what its entry admitted.

    A certificates row must still hold an envelope with the SHA-256 recorded for it, whose
    payload gives the row's columns (id, version, lineage, holder, type, issuer, dates),
    and name in ``audit_idx`` an ok push entry of its id that commits to that SHA-256; a
    row stored before the binding (``audit_idx`` NULL) needs an ok push entry naming its
    id. A revocations row likewise: its envelope's payload names its certificate and
    lineage, and its ``audit_idx`` entry is an ok revoke of that certificate committing to
    its envelope's SHA-256. A row no entry admitted was added outside the hub.
    """

    def __init__(self, session: Session, size: int) -> None:
        self.session = session
        self.size = size

    def certificates(self, chunk: int) -> Problem | None:
        last = -1
        while True:
            rows = self.session.execute(
                select(
                    Certificate.id, Certificate.certificate_id, Certificate.version,
                    Certificate.lineage, Certificate.holder_key, Certificate.type_code,
                    Certificate.issuer_code, Certificate.issued_on, Certificate.valid_from,
                    Certificate.valid_until, Certificate.envelope, Certificate.envelope_sha256,
                    Certificate.audit_idx,
                )
                .where(Certificate.id > last)
                .order_by(Certificate.id)
                .limit(chunk)
            ).all()  # fmt: skip
            if not rows:
                return None
            last = rows[-1][0]
            leaves = self._leaves(r[12] for r in rows)
            legacy = self._named_by_ok(Action.PUSH, [r[1] for r in rows if r[12] is None])
            for row in rows:
                problem = self._certificate(row, leaves, legacy)
                if problem is not None:
                    return problem

    def _certificate(
        self, row: Sequence[object], leaves: dict[int, bytes], legacy: set[str]
    ) -> Problem | None:
        row_id, cid, version, lineage, holder_key, type_code, issuer, issued_on = row[:8]
        valid_from, valid_until, envelope, sha256, audit_idx = row[8:]
        assert isinstance(envelope, bytes | memoryview)
        name = f"certificates row {row_id} (certificate {cid!r} version {version})"
        where = audit_idx if isinstance(audit_idx, int) else self.size
        if hashlib.sha256(bytes(envelope)).hexdigest() != sha256:
            return Problem(
                where, f"{name}: its envelope no longer has the SHA-256 recorded for it: the "
                "row was changed", row=name,
            )  # fmt: skip
        payload = _payload(bytes(envelope))
        expected: dict[str, object] = {}
        if payload is not None:
            holder = payload.get("holder")
            issuer_of = payload.get("issuer")
            expected = {
                "certificate_id": payload.get("certificate_id"),
                "version": payload.get("version"),
                "lineage": lineage_of(str(payload.get("certificate_id"))),
                "holder_key": f"{holder.get('id_type')}:{holder.get('id')}"
                if isinstance(holder, dict) else None,
                "type_code": payload.get("type_code"),
                "issuer_code": issuer_of.get("code") if isinstance(issuer_of, dict) else None,
                "issued_on": payload.get("issued_on"),
                "valid_from": payload.get("valid_from"),
                "valid_until": payload.get("valid_until") or None,
            }  # fmt: skip
        actual = {
            "certificate_id": cid, "version": version, "lineage": lineage,
            "holder_key": holder_key, "type_code": type_code, "issuer_code": issuer,
            "issued_on": _iso(issued_on), "valid_from": _iso(valid_from),
            "valid_until": _iso(valid_until),
        }  # fmt: skip
        changed = [k for k in actual if expected.get(k) != actual[k]]
        if changed:
            return Problem(
                where, f"{name}: column {', '.join(changed)} disagrees with its signed "
                "envelope: the row was changed", row=name,
            )  # fmt: skip
        if audit_idx is None:
            if cid in legacy:
                return None
            return Problem(
                where, f"{name}: no audit entry admitted it (audit_idx is empty and no ok "
                "push entry names it): the row was added outside the hub", row=name,
            )  # fmt: skip
        assert isinstance(audit_idx, int)
        return self._admitted(
            name,
            index=audit_idx,
            leaves=leaves,
            action=Action.PUSH,
            certificate_id=str(cid),
            sha256=str(sha256),
        )

    def revocations(self, chunk: int) -> Problem | None:
        last = ""
        while True:
            rows = self.session.execute(
                select(
                    Revocation.lineage, Revocation.certificate_id, Revocation.envelope,
                    Revocation.audit_idx,
                )
                .where(Revocation.lineage > last)
                .order_by(Revocation.lineage)
                .limit(chunk)
            ).all()  # fmt: skip
            if not rows:
                return None
            last = rows[-1][0]
            leaves = self._leaves(r[3] for r in rows)
            legacy = self._named_by_ok(Action.REVOKE, [r[1] for r in rows if r[3] is None])
            for lineage, cid, envelope, audit_idx in rows:
                name = f"revocations row {lineage!r} (certificate {cid!r})"
                where = audit_idx if audit_idx is not None else self.size
                payload = _payload(bytes(envelope))
                if (
                    payload is None
                    or payload.get("certificate_id") != cid
                    or (lineage_of(cid) != lineage)
                ):
                    return Problem(
                        where, f"{name}: its envelope does not revoke that certificate of that "
                        "lineage: the row was changed", row=name,
                    )  # fmt: skip
                if audit_idx is None:
                    if cid in legacy:
                        continue
                    return Problem(
                        where, f"{name}: no audit entry admitted it (audit_idx is empty and "
                        "no ok revoke entry names it): the row was added outside the hub",
                        row=name,
                    )  # fmt: skip
                digest = hashlib.sha256(bytes(envelope)).hexdigest()
                problem = self._admitted(
                    name,
                    index=audit_idx,
                    leaves=leaves,
                    action=Action.REVOKE,
                    certificate_id=cid,
                    sha256=digest,
                )
                if problem is not None:
                    return problem

    def _admitted(
        self,
        name: str,
        *,
        index: int,
        leaves: dict[int, bytes],
        action: Action,
        certificate_id: str,
        sha256: str,
    ) -> Problem | None:
        leaf = leaves.get(index)
        if leaf is None:
            return Problem(
                index, f"{name} names audit entry {index}, which is not stored", row=name
            )
        try:
            fields = json.loads(leaf)
        except ValueError:
            fields = {}
        ids, digests = _leaf_binding(leaf)
        if (
            not isinstance(fields, dict)
            or fields.get("action") != str(action)
            or fields.get("outcome") != OK
            or certificate_id not in ids
        ):
            return Problem(
                index, f"{name} names audit entry {index}, which is not an ok {action} of "
                f"{certificate_id!r}: the row was not admitted by it", row=name,
            )  # fmt: skip
        if digests and sha256 not in digests:
            return Problem(
                index, f"{name}: audit entry {index} admitted another envelope (SHA-256 "
                f"{digests[0][:16]}…, the row has {sha256[:16]}…): the row was changed",
                row=name,
            )  # fmt: skip
        return None

    def _leaves(self, indices: Iterator[object]) -> dict[int, bytes]:
        wanted = sorted({i for i in indices if isinstance(i, int)})
        if not wanted:
            return {}
        return {
            idx: bytes(leaf)
            for idx, leaf in self.session.execute(
                select(AuditEntry.idx, AuditEntry.leaf).where(AuditEntry.idx.in_(wanted))
            )
        }

    def _named_by_ok(self, action: Action, certificate_ids: list[str]) -> set[str]:
        """Which of ``certificate_ids`` an ok ``action`` entry names (legacy rows)."""
        if not certificate_ids:
            return set()
        return set(
            self.session.execute(
                select(AuditCertificate.certificate_id)
                .join(AuditEntry, AuditEntry.idx == AuditCertificate.idx)
                .where(
                    AuditCertificate.certificate_id.in_(set(certificate_ids)),
                    AuditEntry.action == str(action),
                    AuditEntry.outcome == OK,
                )
                .distinct()
            ).scalars()
        )


def _payload(envelope: bytes) -> dict[str, object] | None:
    """The payload JSON of a stored DSSE envelope, or None if unreadable."""
    try:
        value = json.loads(parse_envelope(envelope).payload)
    except (SigningError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, dt.date) else value
