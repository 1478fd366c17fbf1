"""Appending to the audit log inside a database transaction.

Appends lock the single ``log_head`` row, so one gap-free sequence is kept however many hub
processes share the database; the Merkle tree is extended with the perfect-subtree hashes
``certhub.signing.merkle`` plans (O(log n) rows per append), and each append publishes one signed
checkpoint for the new size.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from certhub.hub.audit.entry import AuditRecord
from certhub.hub.store.aio import CompiledRead
from certhub.hub.store.models import AuditCertificate, AuditEntry, LogCheckpoint, LogHead, TreeNode
from certhub.signing import merkle
from certhub.signing.note import Checkpoint, NoteSigner

HASH_SIZE = 32
HEAD_ID = 1
# Session.info key of the (size, frontier) that ``AuditLog.lock`` read under the lock.
_LOCKED_HEAD = "certhub.audit.locked_head"


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: str


@dataclass(frozen=True, slots=True)
class AuditLogKeys:
    """What the log signs with: every hub process of one deployment shares these."""

    origin: str
    signer: NoteSigner
    hmac_key: bytes


@dataclass(frozen=True, slots=True)
class _Rows:
    """What one append writes, table by table."""

    entries: list[dict[str, Any]]
    links: list[dict[str, Any]]
    tree: list[dict[str, Any]]
    head: dict[str, Any]
    checkpoint: dict[str, Any]


class AuditLog:
    """Append entries and sign checkpoints; takes the caller's session (one transaction)."""

    def __init__(self, keys: AuditLogKeys) -> None:
        self.keys = keys

    def append(self, session: Session, records: Sequence[AuditRecord]) -> int:
        """Append ``records`` in order; return the index of the first. Caller commits."""
        # Core statements on the session's connection: the ORM's bulk-insert layer cost more
        # than the SQL itself here (3 s of 5 s per 50,000 entries, measured), and nothing
        # appended is ever loaded as an ORM object.
        conn = session.connection()
        locked = session.info.pop(_LOCKED_HEAD, None)
        size, packed_frontier = locked if locked is not None else self._lock_head(session)
        rows = self._rows(records, size, packed_frontier)
        if conn.dialect.name == "postgresql":
            conn.execute(_POSTGRESQL_APPEND, _postgresql_params(rows))
        else:
            conn.execute(insert(AuditEntry), rows.entries)
            if rows.links:
                conn.execute(insert(AuditCertificate), rows.links)
            conn.execute(insert(TreeNode), rows.tree)
            conn.execute(update(LogHead).where(LogHead.id == HEAD_ID).values(**rows.head))
            conn.execute(insert(LogCheckpoint).values(**rows.checkpoint))
        return size

    def queue_lock(self, conn: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
        """``lock`` in the pipeline (``certhub.hub.store.engine.pipeline_scope``): queue it; the
        cursor returned holds the head once the pipeline synced, for ``queue_append``."""
        cursor = conn.cursor()
        cursor.execute(_LOCK_HEAD_SQL, {"head_id": HEAD_ID})
        return cursor

    @staticmethod
    def locked_head(locked: psycopg.Cursor[Any]) -> tuple[int, bytes]:
        """(size, packed frontier) of the head that ``queue_lock`` read, once the pipeline
        synced: the size is the index the transaction's first entry will get."""
        row = locked.fetchone()
        assert row is not None  # the migration creates the row
        return int(row[0]), bytes(row[1])

    def queue_append(
        self,
        conn: psycopg.Connection[Any],
        records: Sequence[AuditRecord],
        head: tuple[int, bytes],
    ) -> int:
        """``append`` in the pipeline: queue the append of ``records`` under ``head``
        (``locked_head``); return the index of the first. Caller commits."""
        size, frontier = head
        conn.execute(
            _POSTGRESQL_APPEND_SQL, _postgresql_params(self._rows(records, size, frontier))
        )
        return size

    def _rows(self, records: Sequence[AuditRecord], size: int, packed_frontier: bytes) -> _Rows:
        frontier = _split(packed_frontier)
        leaves = [r.leaf() for r in records]
        nodes, new_frontier = merkle.append_leaves(
            size, frontier, [merkle.leaf_hash(x) for x in leaves]
        )
        new_size = size + len(records)
        root = merkle.root_from_frontier(new_size, new_frontier)
        entries = [
            {
                "idx": size + i,
                "leaf": leaf,
                # UTC, as the leaf says: SQLite keeps no zone, so the column must not vary.
                "time": r.time.astimezone(dt.UTC),
                "principal": r.principal,
                "action": str(r.action),
                "outcome": r.outcome,
                "holder_commitment": r.holder_commitment,
                "service_item_code": r.service_item_code,
                "case_number": r.case_number,
            }
            for i, (r, leaf) in enumerate(zip(records, leaves, strict=True))
        ]
        links = [
            {"certificate_id": cid, "idx": size + i}
            for i, r in enumerate(records)
            for cid in dict.fromkeys(r.certificate_ids)
        ]
        tree = [{"level": lvl, "idx": idx, "hash": h} for (lvl, idx), h in nodes]
        head = {"size": new_size, "root": root, "frontier": b"".join(new_frontier)}
        signed = self.sign(Checkpoint(origin=self.keys.origin, size=new_size, root_hash=root))
        checkpoint = {
            "size": new_size,
            "root": root,
            "note": signed.note,
            "created_at": dt.datetime.now(dt.UTC),
        }
        return _Rows(entries=entries, links=links, tree=tree, head=head, checkpoint=checkpoint)

    def lock(self, session: Session) -> int:
        """Lock the log head now, before the transaction writes anything else; the
        ``append`` of the same transaction reuses what this read (one round trip, not two).
        Returns the log's size: the index the transaction's first entry will get."""
        head = session.info[_LOCKED_HEAD] = self._lock_head(session)
        return head[0]

    def sign(self, checkpoint: Checkpoint) -> SignedCheckpoint:
        return SignedCheckpoint(
            checkpoint=checkpoint, note=self.keys.signer.sign(checkpoint.to_text())
        )

    @staticmethod
    def _lock_head(session: Session) -> tuple[int, bytes]:
        """(size, packed frontier) of the head row, locked for this transaction."""
        # FOR UPDATE serialises appenders on PostgreSQL; SQLite has no such clause and relies
        # on the write lock its IMMEDIATE transactions already hold. The migration creates
        # the row.
        conn = session.connection()
        statement = _READ_HEAD if conn.dialect.name == "sqlite" else _LOCK_HEAD
        size, frontier = conn.execute(statement, {"head_id": HEAD_ID}).one()
        return int(size), bytes(frontier)


# Fixed texts on the session's connection: building and compiling the equivalent ORM
# select on every group commit cost more CPU than the query itself.
_LOCK_HEAD = text("SELECT size, frontier FROM log_head WHERE id = :head_id FOR UPDATE")
_READ_HEAD = text("SELECT size, frontier FROM log_head WHERE id = :head_id")


def latest_checkpoint(session: Session) -> LogCheckpoint | None:
    return session.execute(
        select(LogCheckpoint).order_by(LogCheckpoint.size.desc()).limit(1)
    ).scalar_one_or_none()


# Everything an append writes, in one PostgreSQL statement: one round trip instead of five.
# The group commit runs appends on one thread per process; each round trip releases the
# GIL and waits to take it back behind the request threads, which made the append the
# bound on fetches (bench/fetch_bench.py, docs/performance.md). Data-modifying CTEs always
# run to completion. Rows travel as one JSON document per table (binary values in hex):
# psycopg adapts Python lists to PostgreSQL arrays element by element in Python, which was
# most of the append's CPU, while json.dumps is C and the statement text never varies.
_POSTGRESQL_APPEND = text(
    """
WITH entries AS (
    INSERT INTO audit_entries (idx, leaf, time, principal, action, outcome,
                               holder_commitment, service_item_code, case_number)
    SELECT e.idx, decode(e.leaf, 'hex'), e.time, e.principal, e.action, e.outcome,
           e.holder, e.item, e."case"
    FROM json_to_recordset(CAST(:entries AS json)) AS e(
        idx bigint, leaf text, time timestamptz, principal text, action text, outcome text,
        holder text, item text, "case" text)
), links AS (
    INSERT INTO audit_certificates (certificate_id, idx)
    SELECT l.certificate_id, l.idx
    FROM json_to_recordset(CAST(:links AS json)) AS l(certificate_id text, idx bigint)
), nodes AS (
    INSERT INTO tree_nodes (level, idx, hash)
    SELECT n.level, n.idx, decode(n.hash, 'hex')
    FROM json_to_recordset(CAST(:nodes AS json)) AS n(level integer, idx bigint, hash text)
), head AS (
    UPDATE log_head SET size = :size, root = :root, frontier = :frontier WHERE id = :head_id
)
INSERT INTO checkpoints (size, root, note, created_at)
VALUES (:size, :root, :note, :created_at)
"""
)


def _postgresql_params(rows: _Rows) -> dict[str, Any]:
    return {
        "entries": json.dumps(
            [
                {
                    "idx": e["idx"],
                    "leaf": e["leaf"].hex(),
                    "time": e["time"].isoformat(),
                    "principal": e["principal"],
                    "action": e["action"],
                    "outcome": e["outcome"],
                    "holder": e["holder_commitment"],
                    "item": e["service_item_code"],
                    "case": e["case_number"],
                }
                for e in rows.entries
            ]
        ),
        "links": json.dumps(rows.links),
        "nodes": json.dumps(
            [{"level": n["level"], "idx": n["idx"], "hash": n["hash"].hex()} for n in rows.tree]
        ),
        "head_id": HEAD_ID,
        "size": rows.head["size"],
        "root": rows.head["root"],
        "frontier": rows.head["frontier"],
        "note": rows.checkpoint["note"],
        "created_at": rows.checkpoint["created_at"],
    }


# The same statements rendered once for psycopg (%(name)s parameters), for the group
# commit's pipelined path, which runs them on the raw connection.
_LOCK_HEAD_SQL = CompiledRead(_LOCK_HEAD).sql
_POSTGRESQL_APPEND_SQL = CompiledRead(_POSTGRESQL_APPEND).sql


def _split(packed: bytes) -> list[bytes]:
    return [packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)]
