"""`certhub audit verify` on an intact log and on logs an operator tampered with: it fails
and names the first bad index. Also `audit prove`, `audit query` and `audit vkey`."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from support.audit_log import append_all, synthetic_records
from support.hubs import RunningHub, start_hub

from certhub.hub.audit import reads
from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.audit.log import AuditLog
from certhub.hub.cli.main import main
from certhub.hub.demo.world import DemoWorld, citizen
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.store.models import AuditCertificate, AuditEntry, LogCheckpoint, LogHead, TreeNode
from certhub.signing import Algorithm, NoteSigner, PrivateKey, merkle
from certhub.signing.note import Checkpoint

# Entries in the log under test and the batch they are appended in: several checkpoints,
# several verifier chunks (the CLI reads 4,096 leaves per query), a ragged right edge.
SIZE = 4_500
BATCH = 500


@pytest.fixture
def logged(tmp_path: Path, engine: Engine, world: DemoWorld) -> Iterator[RunningHub]:
    running = start_hub(tmp_path / "data", engine, world)
    hub = running.hub
    append_all(hub.sessions, hub.audit_log, synthetic_records(SIZE), batch=BATCH)
    yield running
    running.server.stop(grace=None)
    hub.close()


def _cli(running: RunningHub, *args: str) -> list[str]:
    return [
        "audit",
        args[0],
        "--data-dir",
        str(running.config.data_dir),
        "--db",
        running.config.database_url,
        *args[1:],
    ]


def _verify(running: RunningHub, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(_cli(running, "verify", "--quiet"))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def _tamper(running: RunningHub, change: Callable[[Session], object]) -> None:
    with session_scope(make_session_factory(running.engine), write=True) as session:
        change(session)


def _leaf(session: Session, index: int) -> bytes:
    return bytes(
        session.execute(select(AuditEntry.leaf).where(AuditEntry.idx == index)).scalar_one()
    )


def test_intact_log_verifies(logged: RunningHub, capsys: pytest.CaptureFixture[str]) -> None:
    status, output = _verify(logged, capsys)
    assert status == 0, output
    assert f"{SIZE:,} entries" in output
    assert f"{-(-SIZE // BATCH)} checkpoints" in output


def test_changed_leaf_is_named(logged: RunningHub, capsys: pytest.CaptureFixture[str]) -> None:
    def change(session: Session) -> None:
        leaf = _leaf(session, 4_200).replace(b"gulou-service-centre", b"gulou-service-centrX")
        session.execute(update(AuditEntry).where(AuditEntry.idx == 4_200).values(leaf=leaf))

    _tamper(logged, change)
    status, output = _verify(logged, capsys)
    assert status == 1
    assert "first bad index 4200" in output


@pytest.mark.slow
def test_changed_leaf_with_every_node_above_it_is_caught_by_the_checkpoint(
    logged: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # A careful operator rewrites the leaf and every stored perfect node above it: only the
    # signed checkpoints still tell, and the first one covering the entry fails.
    def change(session: Session) -> None:
        leaf = _leaf(session, 100).replace(b"GL-00000100", b"GL-99999999")
        session.execute(
            update(AuditEntry)
            .where(AuditEntry.idx == 100)
            .values(leaf=leaf, case_number="GL-99999999")
        )
        h, level, index = merkle.leaf_hash(leaf), 0, 100
        while True:
            session.execute(
                update(TreeNode)
                .where(TreeNode.level == level, TreeNode.idx == index)
                .values(hash=h)
            )
            sibling = session.execute(
                select(TreeNode.hash).where(TreeNode.level == level, TreeNode.idx == index ^ 1)
            ).scalar_one_or_none()
            if sibling is None:
                break
            h = merkle.node_hash(h, sibling) if index % 2 == 0 else merkle.node_hash(sibling, h)
            level, index = level + 1, index >> 1

    _tamper(logged, change)
    status, output = _verify(logged, capsys)
    assert status == 1
    assert f"checkpoint {BATCH} (first bad index at or before {BATCH - 1})" in output
    assert "signed root is not the root" in output


def test_changed_column_is_named(logged: RunningHub, capsys: pytest.CaptureFixture[str]) -> None:
    # Queries use the indexed columns: hiding a principal there must not go unnoticed.
    _tamper(
        logged,
        lambda s: s.execute(
            update(AuditEntry).where(AuditEntry.idx == 4_321).values(principal="someone-else")
        ),
    )
    status, output = _verify(logged, capsys)
    assert status == 1
    assert "first bad index 4321" in output
    assert "principal" in output


def test_removed_certificate_link_is_named(
    logged: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    _tamper(
        logged, lambda s: s.execute(delete(AuditCertificate).where(AuditCertificate.idx == 777))
    )
    status, output = _verify(logged, capsys)
    assert status == 1
    assert "first bad index 777" in output


def test_deleted_leaf_is_named(logged: RunningHub, capsys: pytest.CaptureFixture[str]) -> None:
    def change(session: Session) -> None:
        session.execute(delete(AuditCertificate).where(AuditCertificate.idx == 4_401))
        session.execute(delete(AuditEntry).where(AuditEntry.idx == 4_401))

    _tamper(logged, change)
    status, output = _verify(logged, capsys)
    assert status == 1
    assert "first bad index 4401" in output
    assert "missing" in output


def test_deleted_tail_is_named(logged: RunningHub, capsys: pytest.CaptureFixture[str]) -> None:
    def change(session: Session) -> None:
        session.execute(delete(AuditCertificate).where(AuditCertificate.idx >= SIZE - 5))
        session.execute(delete(AuditEntry).where(AuditEntry.idx >= SIZE - 5))

    _tamper(logged, change)
    status, output = _verify(logged, capsys)
    assert status == 1
    assert f"first bad index {SIZE - 5}" in output


def test_reordered_leaves_name_the_first(
    logged: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # Swap two whole rows (leaf and columns) and their certificate links.
    def change(session: Session) -> None:
        rows = {
            r.idx: r
            for r in session.execute(select(AuditEntry).where(AuditEntry.idx.in_([2_000, 4_400])))
            .scalars()
            .all()
        }
        values = {
            i: {
                c: getattr(rows[i], c)
                for c in (
                    "leaf",
                    "time",
                    "principal",
                    "action",
                    "outcome",
                    "holder_commitment",
                    "service_item_code",
                    "case_number",
                )
            }
            for i in rows
        }
        links = {
            i: [
                c
                for (c,) in session.execute(
                    select(AuditCertificate.certificate_id).where(AuditCertificate.idx == i)
                )
            ]
            for i in rows
        }
        session.expunge_all()
        session.execute(delete(AuditCertificate).where(AuditCertificate.idx.in_([2_000, 4_400])))
        for a, b in ((2_000, 4_400), (4_400, 2_000)):
            session.execute(update(AuditEntry).where(AuditEntry.idx == a).values(**values[b]))
            for c in links[b]:
                session.add(AuditCertificate(certificate_id=c, idx=a))

    _tamper(logged, change)
    status, output = _verify(logged, capsys)
    assert status == 1
    assert "first bad index 2000" in output


def test_checkpoint_signed_by_another_key_is_named(
    logged: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = [BATCH * 3, BATCH * 4]
    origin = logged.hub.audit_log.keys.origin
    forger = NoteSigner(origin, PrivateKey.generate(Algorithm.ED25519))

    def change(session: Session) -> None:
        root = session.execute(
            select(LogCheckpoint.root).where(LogCheckpoint.size == sizes[0])
        ).scalar_one()
        note = forger.sign(Checkpoint(origin=origin, size=sizes[0], root_hash=root).to_text())
        session.execute(
            update(LogCheckpoint).where(LogCheckpoint.size == sizes[0]).values(note=note)
        )

    _tamper(logged, change)
    status, output = _verify(logged, capsys)
    assert status == 1
    assert f"checkpoint {sizes[0]} (first bad index at or before {sizes[0] - 1})" in output
    assert "does not verify with the log key" in output


def test_checkpoint_replaced_with_a_forked_root_is_named(
    logged: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # Even signed with the real key (a stolen key, or a hub that forked its log), a
    # checkpoint whose root the stored leaves do not give is reported.
    size = BATCH * 5
    audit_log: AuditLog = logged.hub.audit_log

    def change(session: Session) -> None:
        root = bytes(32)
        note = audit_log.sign(Checkpoint(origin=audit_log.keys.origin, size=size, root_hash=root))
        session.execute(
            update(LogCheckpoint)
            .where(LogCheckpoint.size == size)
            .values(note=note.note, root=root)
        )

    _tamper(logged, change)
    status, output = _verify(logged, capsys)
    assert status == 1
    assert f"checkpoint {size}" in output
    assert "root" in output


def test_a_consistency_proof_the_log_would_serve_wrongly_is_named(
    logged: RunningHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every checkpoint's root is recomputed from the leaves, which already makes them
    # consistent; the pass also assembles one proof (oldest to newest) the way clients are
    # served one, so a fault in that path (here: a hash left out) is a finding too.
    served = reads.consistency_proof

    def short(session: Session, first_size: int, second_size: int) -> reads.ConsistencyProof:
        proof = served(session, first_size, second_size)
        return dataclasses.replace(proof, hashes=proof.hashes[:-1])

    monkeypatch.setattr(reads, "consistency_proof", short)
    status, output = _verify(logged, capsys)
    assert status == 1
    assert f"checkpoint {SIZE}: no valid consistency proof from checkpoint {BATCH}" in output


@pytest.mark.slow
def test_log_head_rewind_is_caught(logged: RunningHub, capsys: pytest.CaptureFixture[str]) -> None:
    _tamper(logged, lambda s: s.execute(update(LogHead).values(size=SIZE - 1)))
    status, output = _verify(logged, capsys)
    assert status == 1
    assert "log_head" in output


def test_verify_with_a_public_vkey_and_a_wrong_one(
    logged: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli(logged, "vkey")) == 0
    vkey = capsys.readouterr().out.strip()
    assert vkey == logged.hub.audit_log.keys.signer.vkey
    assert main(_cli(logged, "verify", "--quiet", "--vkey", vkey)) == 0
    capsys.readouterr()
    other = NoteSigner(logged.hub.audit_log.keys.origin, PrivateKey.generate(Algorithm.ED25519))
    assert main(_cli(logged, "verify", "--quiet", "--vkey", other.vkey)) == 1
    assert "no signature by a known key" in capsys.readouterr().err


def test_prove_prints_a_checked_proof(
    logged: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli(logged, "prove", "1234")) == 0
    out = capsys.readouterr().out
    assert f"entry 1234 of tree size {SIZE}" in out
    assert "GL-00001234" in out
    assert f"OK: entry 1234 is in checkpoint {SIZE}" in out
    assert main(_cli(logged, "prove", str(SIZE))) == 1
    assert "past the latest checkpoint" in capsys.readouterr().err


def test_query_prints_a_table_and_is_recorded(
    logged: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = logged.hub
    person = citizen(42).holder
    holder_key = person.key()
    record = AuditRecord(
        time=dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
        principal="gulou-service-centre",
        action=Action.FETCH,
        outcome=OK,
        holder_commitment=hub.commitment(holder_key),
        service_item_code="350102-0007",
        case_number="GL-TABLE-1",
    )
    append_all(hub.sessions, hub.audit_log, [record])
    args = _cli(
        logged,
        "query",
        "--holder-type",
        "RESIDENT_ID",
        "--holder-id",
        person.id,
    )
    assert main(args) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split() == [
        "index",
        "time",
        "principal",
        "action",
        "service",
        "item",
        "case",
        "outcome",
    ]
    assert lines[1].split()[2:] == [
        "gulou-service-centre",
        "fetch",
        "350102-0007",
        "GL-TABLE-1",
        "ok",
    ]
    assert len(lines) == 2
    # The CLI query is itself an entry about that holder, and the log still verifies.
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[3] == "audit_query"
    assert main(_cli(logged, "verify", "--quiet")) == 0


def test_query_paging_and_bad_flags(logged: RunningHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_cli(logged, "query", "--principal", "gulou-service-centre", "--limit", "3")) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:4]] == [str(SIZE - 1), str(SIZE - 2), str(SIZE - 3)]
    token = out[4].split()[-1]
    assert main(_cli(logged, "query", "--limit", "2", "--page-token", token, "--json")) == 0
    assert [line.split(",")[0] for line in capsys.readouterr().out.splitlines()] == [
        f'{{"index": {SIZE - 4}',
        f'{{"index": {SIZE - 5}',
    ]
    assert main(_cli(logged, "query", "--page-token", "garbage")) == 1
    assert "page_token" in capsys.readouterr().err
    assert main(_cli(logged, "query", "--holder-id", "x")) == 1


@pytest.mark.slow
def test_entries_stamped_in_local_time_verify_and_filter(
    logged: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # A clock in China Standard Time: the column must hold the same instant as the leaf.
    cst = dt.timezone(dt.timedelta(hours=8))
    record = AuditRecord(
        time=dt.datetime(2026, 6, 1, 9, 0, tzinfo=cst),
        principal="local-clock",
        action=Action.GET,
        outcome=OK,
    )
    append_all(logged.hub.sessions, logged.hub.audit_log, [record])
    assert main(_cli(logged, "verify", "--quiet")) == 0
    capsys.readouterr()
    window = ["--since", "2026-06-01T01:00:00Z", "--until", "2026-06-01T01:00:01Z", "--json"]
    assert main(_cli(logged, "query", *window)) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert '"principal": "local-clock"' in line
