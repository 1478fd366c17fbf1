"""The outbox file: WAL, all-or-nothing batches, revocations ordered after their push."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from certhub.adapters.identifier import stream_key
from certhub.adapters.outbox import (
    ItemKind,
    ItemState,
    NewItem,
    Outbox,
    RecordState,
    Settlement,
    WriteBatch,
)


def _item(kind: ItemKind, key: str = "k1") -> NewItem:
    return NewItem(
        kind=kind,
        source_key=key,
        location=f"t [{key}]",
        certificate_id=f"ID-{key}",
        version=1,
        envelope=b"{}",
    )


def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db"):
        pass
    with contextlib.closing(sqlite3.connect(tmp_path / "o.db")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_revocation_waits_for_its_push_and_acked_rows_drop_their_bytes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        batch = WriteBatch(items=[_item(ItemKind.PUSH), _item(ItemKind.REVOKE)])
        batch.records["k1"] = RecordState(
            marker="m", version=1, certificate_id="ID-k1", revoked=True, last_push_id=None
        )
        outbox.write(batch)
        (push,) = outbox.pending_pushes(after_id=0, limit=10)
        assert outbox.ready_revocations(limit=10) == []
        outbox.settle([Settlement(id=push.id, state=ItemState.ACKED, outcome="ACCEPTED")])
        (revoke,) = outbox.ready_revocations(limit=10)
        assert revoke.after_id == push.id
        assert outbox.record_states(["k1"])["k1"].last_push_id == push.id
        status = outbox.status()
        assert (status.acked, status.pending_revocations, status.depth) == (1, 1, 1)
        assert status.last_success is not None
    with contextlib.closing(sqlite3.connect(tmp_path / "o.db")) as db:
        assert db.execute("SELECT envelope FROM outbox WHERE id = ?", (push.id,)).fetchone() == (
            None,
        )


def test_a_failed_batch_stores_nothing(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        batch = WriteBatch(items=[_item(ItemKind.PUSH)], checkpoints={"sql.watermark": "5"})
        batch.problems.append(("t [k2]", "k2", None))  # type: ignore[arg-type]  # NOT NULL
        with pytest.raises(sqlite3.IntegrityError):
            outbox.write(batch)
        assert outbox.pending_pushes(after_id=0, limit=10) == []
        assert outbox.checkpoint("sql.watermark") is None


def test_a_file_from_before_streams_gets_its_pending_items_routed(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as outbox:
        outbox.write(WriteBatch(items=[_item(ItemKind.PUSH, f"k{n}") for n in range(8)]))
    # What an adapter of the previous release left behind: no stream_key column.
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("ALTER TABLE outbox DROP COLUMN stream_key")
        db.commit()
    with Outbox(path) as outbox:
        lanes = [
            {i.certificate_id for i in outbox.pending_pushes(after_id=0, limit=99, stream=(s, 3))}
            for s in range(3)
        ]
    assert sorted(c for lane in lanes for c in lane) == sorted(f"ID-k{n}" for n in range(8))
    for s, lane in enumerate(lanes):
        assert all(stream_key(c) % 3 == s for c in lane)
