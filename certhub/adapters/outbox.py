"""The adapter's durable state: an SQLite file beside the config (WAL, fsync on commit).

It holds three things that must move together:

* ``outbox``: every signed envelope, stored *before* it is pushed, with its state
  ``pending`` -> ``acked`` | ``rejected``. A SIGKILL at any moment leaves each envelope
  either not yet written (its source record is read again) or pending (pushed again; the
  hub answers DUPLICATE for what it already has).
* ``records``: per source key the last change marker, version and certificate id, so a
  changed record becomes the next version and an unchanged one is skipped.
* ``checkpoints``: source progress (SQL watermark, processed file hashes), written in the
  same transaction as the envelopes of the records before it.

Acknowledged rows drop their envelope bytes (the hub keeps them); the row stays as the
record of which source key became which certificate and audit entry.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from certhub.adapters.identifier import stream_key

__all__ = [
    "ItemKind",
    "ItemState",
    "NewItem",
    "Outbox",
    "OutboxItem",
    "RecordState",
    "Rejected",
    "Settlement",
    "StatusReport",
    "WriteBatch",
]

#: How long a writer waits for the other thread's transaction (producer vs result
#: recorder) before SQLite gives up: transactions are one batch (milliseconds), so 60 s
#: only ever expires if the disk hangs.
BUSY_TIMEOUT_MS = 60_000
#: Keys per ``IN (...)`` lookup: well below SQLite's 32766 host-parameter limit.
_LOOKUP_CHUNK = 900
#: Problems and rejections listed by ``status`` (the counts are always complete).
STATUS_LIST_LIMIT = 50

_RECORDS_BY_KEY = (
    "SELECT source_key, marker, version, certificate_id, revoked, last_push_id "
    "FROM records WHERE source_key IN ({marks})"
)
# The pending items just written are not 'rejected', so only older ones match.
_SUPERSEDE = {
    "push": "UPDATE outbox SET state = 'dismissed', outcome = 'SUPERSEDED' "
    "WHERE state = 'rejected' AND kind = 'push' AND source_key IN ({marks})",
    "revoke": "UPDATE outbox SET state = 'dismissed', outcome = 'SUPERSEDED' "
    "WHERE state = 'rejected' AND kind = 'revoke' AND source_key IN ({marks})",
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    source_key TEXT NOT NULL,
    location TEXT NOT NULL,
    certificate_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    envelope BLOB,
    attachment BLOB,
    after_id INTEGER,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    code TEXT,
    reason TEXT,
    message TEXT,
    audit_index INTEGER,
    created_at TEXT NOT NULL,
    settled_at TEXT,
    stream_key INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, kind, id);
-- Rejected items by record: a new version of the record supersedes them. Partial, so the
-- pending and acknowledged rows of a backfill cost it nothing.
CREATE INDEX IF NOT EXISTS outbox_rejected ON outbox (source_key) WHERE state = 'rejected';
CREATE TABLE IF NOT EXISTS records (
    source_key TEXT PRIMARY KEY,
    marker TEXT NOT NULL,
    version INTEGER NOT NULL,
    certificate_id TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    last_push_id INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS problems (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    location TEXT NOT NULL,
    source_key TEXT NOT NULL,
    message TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS problems_key ON problems (source_key);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""


class ItemKind(StrEnum):
    PUSH = "push"
    REVOKE = "revoke"


class ItemState(StrEnum):
    PENDING = "pending"
    ACKED = "acked"
    REJECTED = "rejected"
    #: A rejection nobody waits for any more: the operator dismissed it, or a newer version
    #: (or revocation) of the same record superseded it. Kept as history, never sent.
    DISMISSED = "dismissed"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordState:
    marker: str
    version: int
    certificate_id: str
    revoked: bool
    last_push_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewItem:
    """An envelope to store; a revocation is ordered after the latest push of its key."""

    kind: ItemKind
    source_key: str
    location: str
    certificate_id: str
    version: int
    envelope: bytes
    attachment: bytes | None = None


@dataclass(slots=True, kw_only=True)
class WriteBatch:
    """What one transaction stores: items in source order, record states, problems and the
    checkpoints reached (only after everything before them)."""

    items: list[NewItem] = field(default_factory=list)
    records: dict[str, RecordState] = field(default_factory=dict)
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    checkpoints: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items) + len(self.problems)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    id: int
    kind: ItemKind
    source_key: str
    location: str
    certificate_id: str
    version: int
    envelope: bytes
    attachment: bytes | None
    after_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """The hub's answer for one item. ``state`` PENDING means "try again later"."""

    id: int
    state: ItemState
    outcome: str = ""
    code: str = ""
    reason: str = ""
    message: str = ""
    audit_index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    id: int
    kind: str
    location: str
    certificate_id: str
    version: int
    code: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    pending_pushes: int
    pending_revocations: int
    acked: int
    rejected: int
    dismissed: int
    problems: int
    last_success: str | None
    last_error: str | None
    checkpoints: dict[str, str]
    rejected_items: tuple[Rejected, ...]
    recent_problems: tuple[tuple[str, str, str], ...]

    @property
    def depth(self) -> int:
        return self.pending_pushes + self.pending_revocations


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Outbox:
    """One connection to the state file. Use one instance per thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Autocommit mode: every transaction below is an explicit BEGIN IMMEDIATE ... COMMIT.
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed envelope survives power loss too, not only a killed process.
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SCHEMA)
        self._upgrade()

    def _upgrade(self) -> None:
        """Bring a file written by an earlier adapter version up to this schema."""
        db = self._db
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        if "stream_key" in columns:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
            if "stream_key" not in columns:  # another connection may have won the race
                db.execute("ALTER TABLE outbox ADD COLUMN stream_key INTEGER")
                rows = db.execute("SELECT id, certificate_id FROM outbox WHERE state != 'acked'")
                db.executemany(
                    "UPDATE outbox SET stream_key = ? WHERE id = ?",
                    [(stream_key(cid), item_id) for item_id, cid in rows.fetchall()],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- source state -------------------------------------------------------------------

    def checkpoint(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM checkpoints WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def record_states(self, keys: Iterable[str]) -> dict[str, RecordState]:
        unique = list(dict.fromkeys(keys))
        found: dict[str, RecordState] = {}
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            # Only "?" placeholders are interpolated; the keys travel as parameters.
            query = _RECORDS_BY_KEY.format(marks=",".join("?" * len(chunk)))
            rows = self._db.execute(query, chunk)
            for key, marker, version, cid, revoked, last_push in rows:
                found[key] = RecordState(
                    marker=marker,
                    version=version,
                    certificate_id=cid,
                    revoked=bool(revoked),
                    last_push_id=last_push,
                )
        return found

    def write(self, batch: WriteBatch) -> None:
        """Store a batch in one transaction (all or nothing)."""
        now = _now()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            last_push: dict[str, int] = {}
            for item in batch.items:
                after = None
                if item.kind is ItemKind.REVOKE:
                    after = last_push.get(item.source_key)
                    if after is None and item.source_key in batch.records:
                        after = batch.records[item.source_key].last_push_id
                cursor = db.execute(
                    "INSERT INTO outbox (kind, source_key, location, certificate_id, version, "
                    "envelope, attachment, after_id, created_at, stream_key) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        str(item.kind),
                        item.source_key,
                        item.location,
                        item.certificate_id,
                        item.version,
                        item.envelope,
                        item.attachment,
                        after,
                        now,
                        stream_key(item.certificate_id),
                    ),
                )
                if item.kind is ItemKind.PUSH:
                    assert cursor.lastrowid is not None
                    last_push[item.source_key] = cursor.lastrowid
            db.executemany(
                "INSERT INTO records (source_key, marker, version, certificate_id, revoked, "
                "last_push_id) VALUES (?,?,?,?,?,?) ON CONFLICT (source_key) DO UPDATE SET "
                "marker = excluded.marker, version = excluded.version, "
                "certificate_id = excluded.certificate_id, revoked = excluded.revoked, "
                "last_push_id = excluded.last_push_id",
                [
                    (
                        key,
                        s.marker,
                        s.version,
                        s.certificate_id,
                        int(s.revoked),
                        last_push.get(key, s.last_push_id),
                    )
                    for key, s in batch.records.items()
                ],
            )
            # A record that maps now, or is reported again, has its earlier reports resolved
            # or replaced; source problems without a key (an unreadable line) stay.
            settled_keys = set(batch.records) | {key for _, key, _ in batch.problems if key}
            _execute_chunked(db, "DELETE FROM problems WHERE source_key IN ({marks})", settled_keys)
            db.executemany(
                "INSERT INTO problems (location, source_key, message, at) VALUES (?,?,?,?)",
                [(loc, key, msg, now) for loc, key, msg in batch.problems],
            )
            # A new version (or revocation) of a record supersedes its rejected ones.
            for kind in ItemKind:
                keys = {item.source_key for item in batch.items if item.kind is kind}
                _execute_chunked(db, _SUPERSEDE[kind], keys)
            db.executemany(
                "INSERT INTO checkpoints (name, value, at) VALUES (?,?,?) ON CONFLICT (name) "
                "DO UPDATE SET value = excluded.value, at = excluded.at",
                [(name, value, now) for name, value in batch.checkpoints.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # --- pushing ------------------------------------------------------------------------

    def pending_pushes(
        self, *, after_id: int, limit: int, stream: tuple[int, int] | None = None
    ) -> list[OutboxItem]:
        """Pending pushes in outbox order; with ``stream=(i, n)`` only those of push stream
        ``i`` of ``n`` (their lineage's ``stream_key % n == i``)."""
        if stream is None or stream[1] == 1:
            rows = self._db.execute(
                "SELECT id, kind, source_key, location, certificate_id, version, envelope, "
                "attachment, after_id FROM outbox WHERE state = 'pending' AND kind = 'push' "
                "AND id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        else:
            index, count = stream
            rows = self._db.execute(
                "SELECT id, kind, source_key, location, certificate_id, version, envelope, "
                "attachment, after_id FROM outbox WHERE state = 'pending' AND kind = 'push' "
                "AND id > ? AND stream_key % ? = ? ORDER BY id LIMIT ?",
                (after_id, count, index, limit),
            ).fetchall()
        return [_item(row) for row in rows]

    def ready_revocations(self, *, limit: int) -> list[OutboxItem]:
        """Pending revocations whose certificate push is no longer pending."""
        rows = self._db.execute(
            "SELECT o.id, o.kind, o.source_key, o.location, o.certificate_id, o.version, "
            "o.envelope, o.attachment, o.after_id FROM outbox o "
            "LEFT JOIN outbox p ON p.id = o.after_id "
            "WHERE o.state = 'pending' AND o.kind = 'revoke' "
            "AND (p.id IS NULL OR p.state != 'pending') ORDER BY o.id LIMIT ?",
            (limit,),
        ).fetchall()
        return [_item(row) for row in rows]

    def item_state(self, item_id: int) -> ItemState | None:
        row = self._db.execute("SELECT state FROM outbox WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else ItemState(row[0])

    def has_pending(self) -> bool:
        row = self._db.execute("SELECT 1 FROM outbox WHERE state = 'pending' LIMIT 1").fetchone()
        return row is not None

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record the hub's answers in one transaction."""
        if not settlements:
            return
        now = _now()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            acked = [s for s in settlements if s.state is ItemState.ACKED]
            db.executemany(
                "UPDATE outbox SET state = 'acked', outcome = ?, audit_index = ?, "
                "attempts = attempts + 1, envelope = NULL, attachment = NULL, settled_at = ?, "
                "code = NULL, reason = NULL, message = NULL WHERE id = ?",
                [(s.outcome, s.audit_index, now, s.id) for s in acked],
            )
            db.executemany(
                "UPDATE outbox SET state = ?, outcome = ?, code = ?, reason = ?, message = ?, "
                "attempts = attempts + 1, settled_at = ? WHERE id = ?",
                [
                    (str(s.state), s.outcome, s.code, s.reason, s.message, now, s.id)
                    for s in settlements
                    if s.state is not ItemState.ACKED
                ],
            )
            if acked:
                self._set_meta("last_success", now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def note_error(self, message: str) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._set_meta("last_error", f"{_now()} {message}")
        self._db.execute("COMMIT")

    def _set_meta(self, name: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def dismiss(self, ids: Sequence[int] | None = None) -> int:
        """Stop waiting for rejected items (all, or those of ``ids``): they leave ``status``
        and the rejected count, and stay in the file as history."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if ids is None:
                cursor = db.execute(
                    "UPDATE outbox SET state = 'dismissed', outcome = 'DISMISSED' "
                    "WHERE state = 'rejected'"
                )
                count = cursor.rowcount
            else:
                count = 0
                for item_id in ids:
                    cursor = db.execute(
                        "UPDATE outbox SET state = 'dismissed', outcome = 'DISMISSED' "
                        "WHERE state = 'rejected' AND id = ?",
                        (item_id,),
                    )
                    count += cursor.rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return count

    def dismiss_problems(self) -> int:
        """Forget every reported row (they are reported again if read again unfixed)."""
        self._db.execute("BEGIN IMMEDIATE")
        cursor = self._db.execute("DELETE FROM problems")
        self._db.execute("COMMIT")
        return cursor.rowcount

    def rejected(self) -> list[OutboxItem]:
        """Every rejected item, oldest first, with its envelope."""
        rows = self._db.execute(
            "SELECT id, kind, source_key, location, certificate_id, version, envelope, "
            "attachment, after_id FROM outbox WHERE state = 'rejected' ORDER BY id"
        ).fetchall()
        return [_item(row) for row in rows]

    def requeue(
        self,
        item_id: int,
        *,
        certificate_id: str,
        envelope: bytes,
        attachment: bytes | None,
        record: tuple[str, RecordState] | None = None,
    ) -> None:
        """Queue a rejected item again with a new envelope (signed afresh from the source),
        and update its record's state with it, in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, certificate_id = ?, "
                "envelope = ?, attachment = ?, stream_key = ?, outcome = NULL, code = NULL, "
                "reason = NULL, message = NULL WHERE id = ? AND state = 'rejected'",
                (
                    certificate_id,
                    envelope,
                    attachment,
                    stream_key(certificate_id),
                    item_id,
                ),
            )
            if record is not None:
                key, state = record
                db.execute(
                    "UPDATE records SET marker = ?, version = ?, certificate_id = ?, "
                    "revoked = ? WHERE source_key = ?",
                    (state.marker, state.version, state.certificate_id, int(state.revoked), key),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def retry_rejected(self) -> int:
        """Put every rejected item back in the queue (after the registry or data was fixed)."""
        self._db.execute("BEGIN IMMEDIATE")
        cursor = self._db.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0 WHERE state = 'rejected'"
        )
        self._db.execute("COMMIT")
        return cursor.rowcount

    # --- reporting ----------------------------------------------------------------------

    def status(self) -> StatusReport:
        db = self._db
        counts = dict.fromkeys(
            ("pending/push", "pending/revoke", "acked", "rejected", "dismissed"), 0
        )
        for state, kind, n in db.execute(
            "SELECT state, kind, count(*) FROM outbox GROUP BY state, kind"
        ):
            name = f"{state}/{kind}" if state == "pending" else state
            counts[name] = counts.get(name, 0) + n
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        rejected = tuple(
            Rejected(
                id=r[0],
                kind=r[1],
                location=r[2],
                certificate_id=r[3],
                version=r[4],
                code=r[5] or "",
                reason=r[6] or "",
                message=r[7] or "",
            )
            for r in db.execute(
                "SELECT id, kind, location, certificate_id, version, code, reason, message "
                "FROM outbox WHERE state = 'rejected' ORDER BY id LIMIT ?",
                (STATUS_LIST_LIMIT,),
            )
        )
        problems = tuple(
            (str(r[0]), str(r[1]), str(r[2]))
            for r in db.execute(
                "SELECT at, location, message FROM problems ORDER BY id DESC LIMIT ?",
                (STATUS_LIST_LIMIT,),
            )
        )
        (problem_count,) = db.execute("SELECT count(*) FROM problems").fetchone()
        return StatusReport(
            pending_pushes=counts["pending/push"],
            pending_revocations=counts["pending/revoke"],
            acked=counts["acked"],
            rejected=counts["rejected"],
            dismissed=counts["dismissed"],
            problems=problem_count,
            last_success=meta.get("last_success"),
            last_error=meta.get("last_error"),
            checkpoints=dict(db.execute("SELECT name, value FROM checkpoints").fetchall()),
            rejected_items=rejected,
            recent_problems=problems,
        )


def _execute_chunked(db: sqlite3.Connection, sql: str, keys: Iterable[str]) -> None:
    """Run ``sql`` with its ``{marks}`` bound to ``keys``, a chunk at a time."""
    unique = list(keys)
    for start in range(0, len(unique), _LOOKUP_CHUNK):
        chunk = unique[start : start + _LOOKUP_CHUNK]
        # Only "?" placeholders are interpolated; the keys travel as parameters.
        db.execute(sql.format(marks=",".join("?" * len(chunk))), chunk)


def _item(row: tuple[object, ...]) -> OutboxItem:
    item_id, kind, key, location, cid, version, envelope, attachment, after = row
    assert isinstance(item_id, int)
    assert isinstance(version, int)
    assert isinstance(envelope, bytes)
    assert attachment is None or isinstance(attachment, bytes)
    assert after is None or isinstance(after, int)
    return OutboxItem(
        id=item_id,
        kind=ItemKind(str(kind)),
        source_key=str(key),
        location=str(location),
        certificate_id=str(cid),
        version=version,
        envelope=envelope,
        attachment=attachment,
        after_id=after,
    )
