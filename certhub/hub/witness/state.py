"""What a witness remembers: per log origin, the newest checkpoint it cosigned.

SQLite in the witness's data directory, ``synchronous=FULL`` so a commit is on disk before
the witness answers; the check of the old size and the update are one ``BEGIN IMMEDIATE``
transaction, which closes the race c2sp.org/tlog-witness describes (two concurrent requests
both checked against size N, the smaller stored last: a rollback the witness cosigned).
Requests from a known log that fail the consistency checks are kept as evidence.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    request BLOB NOT NULL
);
"""
# Evidence rows kept per origin: a misbehaving (or broken) log could otherwise fill the
# witness's disk; the first refusals are the ones that matter, later ones repeat them.
MAX_EVIDENCE_PER_ORIGIN = 1000


@dataclass(frozen=True, slots=True)
class Known:
    size: int
    root: bytes | None  # None before the first cosigned checkpoint


class Conflict(Exception):
    """The request's old size is not the witness's size (HTTP 409 with ``known``)."""

    def __init__(self, known: int, message: str) -> None:
        super().__init__(message)
        self.known = known


class Inconsistent(Exception):
    """The consistency proof does not verify (HTTP 422)."""


class WitnessState:
    """Thread-safe; every update is one durable transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def known(self, origin: str) -> Known:
        with self._lock:
            row = self._db.execute(
                "SELECT size, root FROM logs WHERE origin = ?", (origin,)
            ).fetchone()
        return Known(0, None) if row is None else Known(int(row[0]), bytes(row[1]))

    def advance(
        self,
        *,
        origin: str,
        old_size: int,
        new_size: int,
        new_root: bytes,
        check: Callable[[Known], None],
    ) -> None:
        """Atomically: the stored size must be ``old_size`` (else ``Conflict``), ``check``
        (the consistency proof against the stored root) must pass (it raises
        ``Inconsistent`` or ``Conflict``), then the new size and root are stored durably."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT size, root FROM logs WHERE origin = ?", (origin,)
                ).fetchone()
                known = Known(0, None) if row is None else Known(int(row[0]), bytes(row[1]))
                if known.size != old_size:
                    raise Conflict(
                        known.size,
                        f"old size {old_size} is not the size this witness cosigned last "
                        f"({known.size})",
                    )
                check(known)
                self._db.execute(
                    "INSERT INTO logs (origin, size, root, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, "
                    "root = excluded.root, updated_at = excluded.updated_at",
                    (origin, new_size, new_root, _now()),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def keep_evidence(self, origin: str, reason: str, request: bytes) -> None:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM evidence WHERE origin = ?", (origin,)
            ).fetchone()
            if count >= MAX_EVIDENCE_PER_ORIGIN:
                return
            self._db.execute(
                "INSERT INTO evidence (received_at, origin, reason, request) VALUES (?, ?, ?, ?)",
                (_now(), origin, reason, request),
            )

    def evidence(self, origin: str) -> list[str]:
        with self._lock:
            return [
                r[0]
                for r in self._db.execute(
                    "SELECT reason FROM evidence WHERE origin = ? ORDER BY id", (origin,)
                )
            ]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
