"""`certhub audit verify` checks the state the log vouches for, and that checkpoints cover
the whole log (issue 12, build item 2). Each tamper here passed verification before.

Pushes and revocations go through ``Hub`` itself (a real database, the real committer), the
tampering through SQL, the verification through the command line."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from support.audit_log import BASE_TIME, append_all, synthetic_records
from support.hubs import RunningHub, start_hub

from certhub.hub.audit.log import AuditLog
from certhub.hub.audit.verify import UNCOVERED_TAIL_GRACE, verify_log
from certhub.hub.cli.main import main
from certhub.hub.demo.world import (
    DemoDepartment,
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
    sign_revocation,
)
from certhub.hub.domain.identifier import lineage_of
from certhub.hub.services import ingest
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.store.models import (
    AuditCertificate,
    AuditEntry,
    Certificate,
    CosignedCheckpoint,
    LogCheckpoint,
    LogHead,
    Revocation,
    TreeNode,
)
from certhub.signing import Algorithm, NoteVerifier, PrivateKey, merkle
from certhub.signing.cosignature import CosignatureSigner

SIZE = 4_500
BATCH = 500


@pytest.fixture
def hub_running(tmp_path: Path, engine: Engine, world: DemoWorld) -> Iterator[RunningHub]:
    running = start_hub(tmp_path / "data", engine, world)
    yield running
    running.server.stop(grace=None)
    running.hub.close()


@pytest.fixture
def amr(world: DemoWorld) -> DemoDepartment:
    return world.department_by_name("市场监督管理局")


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


def _verify(
    running: RunningHub, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    status = main(_cli(running, "verify", "--quiet", *extra))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def _tamper(running: RunningHub, change: Callable[[Session], object]) -> None:
    with session_scope(make_session_factory(running.engine), write=True) as session:
        change(session)


def _push_and_revoke(running: RunningHub, world: DemoWorld, amr: DemoDepartment) -> tuple[str, int]:
    """Three licences pushed, the second revoked; the revoked id and its revoke entry."""
    hub = running.hub
    caller = hub.registry().principals[amr.principal]
    ids = []
    for n in range(3):
        payload = certificate_payload(
            world, world.type_by_name("营业执照").code, enterprise(40 + n), serial=900 + n
        )
        out = running.run(
            hub.push(caller, ingest.PushInput(envelope=sign_certificate(payload, [amr.key])))
        )
        assert out.outcome is ingest.PushOutcome.ACCEPTED
        ids.append(payload.certificate_id)
    revoked = running.run(
        hub.revoke(caller, ingest.RevokeInput(envelope=sign_revocation(ids[1], amr.key)))
    )
    assert revoked.newly_revoked
    return ids[1], revoked.audit_index


def test_intact_state_verifies(
    hub_running: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _push_and_revoke(hub_running, world, amr)
    status, output = _verify(hub_running, capsys)
    assert status == 0, output
    assert "4 certificate and revocation rows found" in output


def test_deleted_revocation_row_is_named(
    hub_running: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The attack: the revoked licence comes back as VALID.
    certificate_id, index = _push_and_revoke(hub_running, world, amr)
    _tamper(hub_running, lambda s: s.execute(delete(Revocation)))
    status, output = _verify(hub_running, capsys)
    assert status == 1
    assert f"first bad index {index}" in output
    assert f"revoked lineage {lineage_of(certificate_id)!r}" in output
    assert "no row in revocations" in output


def test_deleted_certificate_row_is_named(
    hub_running: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    capsys: pytest.CaptureFixture[str],
) -> None:
    certificate_id, _ = _push_and_revoke(hub_running, world, amr)
    _tamper(
        hub_running,
        lambda s: s.execute(
            delete(Certificate).where(Certificate.certificate_id != certificate_id)
        ),
    )
    status, output = _verify(hub_running, capsys)
    assert status == 1
    assert "first bad index 0" in output
    assert "has no row in certificates" in output


# --- checkpoints must cover the log -----------------------------------------------------------


@pytest.fixture
def logged(hub_running: RunningHub) -> RunningHub:
    hub = hub_running.hub
    append_all(hub.sessions, hub.audit_log, synthetic_records(SIZE), batch=BATCH)
    return hub_running


def test_no_checkpoints_fails(logged: RunningHub, capsys: pytest.CaptureFixture[str]) -> None:
    _tamper(logged, lambda s: s.execute(delete(LogCheckpoint)))
    status, output = _verify(logged, capsys)
    assert status == 1
    assert "first bad index 0" in output
    assert f"entries 0..{SIZE - 1} are covered by no checkpoint (there is none)" in output


@pytest.mark.slow
def test_deleted_newest_checkpoints_fail(
    logged: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    _tamper(logged, lambda s: s.execute(delete(LogCheckpoint).where(LogCheckpoint.size > 3_000)))
    status, output = _verify(logged, capsys)
    assert status == 1
    assert "first bad index 3000" in output
    assert "the newest checkpoint covers 3000" in output


@pytest.mark.slow
def test_young_uncovered_tail_is_not_yet_covered(logged: RunningHub) -> None:
    # The signer may run a moment after the commit: a tail younger than the grace passes,
    # reported as not covered yet; the same tail older than the grace fails.
    _tamper(logged, lambda s: s.execute(delete(LogCheckpoint).where(LogCheckpoint.size > 4_000)))
    verifier = NoteVerifier.from_vkey(logged.hub.audit_log.keys.signer.vkey)
    first_uncovered = BASE_TIME + dt.timedelta(seconds=4_000)
    with session_scope(logged.hub.sessions) as session:
        young = verify_log(session, verifier, now=first_uncovered + dt.timedelta(seconds=2))
        old = verify_log(
            session, verifier, now=first_uncovered + UNCOVERED_TAIL_GRACE + dt.timedelta(seconds=1)
        )
    assert young.ok, young.problem
    assert young.uncovered_from == 4_000
    assert old.problem is not None
    assert old.problem.index == 4_000


# --- a trusted checkpoint anchors the log -----------------------------------------------------


def _rewrite_tail(running: RunningHub, keep: int, *, append: bool = True) -> None:
    """What an operator with the database and the log key can do: cut the log back to
    ``keep`` entries (a checkpointed size) and append other entries, consistently."""
    audit_log: AuditLog = running.hub.audit_log

    def change(session: Session) -> None:
        session.execute(delete(AuditCertificate).where(AuditCertificate.idx >= keep))
        session.execute(delete(AuditEntry).where(AuditEntry.idx >= keep))
        session.execute(delete(LogCheckpoint).where(LogCheckpoint.size > keep))
        for level in range(64):
            session.execute(
                delete(TreeNode).where(TreeNode.level == level, TreeNode.idx >= keep >> level)
            )
        # Nodes straddling the cut (a partial subtree) are gone above; the frontier is not.
        frontier = [
            bytes(
                session.execute(
                    select(TreeNode.hash).where(TreeNode.level == level, TreeNode.idx == index)
                ).scalar_one()
            )
            for level, index in merkle.frontier(keep)
        ]
        session.execute(
            update(LogHead).values(
                size=keep,
                root=merkle.root_from_frontier(keep, frontier),
                frontier=b"".join(frontier),
            )
        )

    _tamper(running, change)
    if not append:
        return
    append_all(
        running.hub.sessions,
        audit_log,
        synthetic_records(SIZE - keep, start=keep, principal="someone-else"),
        batch=BATCH,
    )


@pytest.mark.slow
def test_rewritten_tail_is_caught_by_a_trusted_checkpoint(
    logged: RunningHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with session_scope(logged.hub.sessions) as session:
        note = session.execute(
            select(LogCheckpoint.note).where(LogCheckpoint.size == SIZE)
        ).scalar_one()
    trusted = tmp_path / "checkpoint.txt"
    trusted.write_text(note, encoding="utf-8")
    status, output = _verify(logged, capsys, "--trusted-checkpoint", str(trusted))
    assert status == 0, output
    assert f"extends the trusted checkpoint of size {SIZE:,}" in output

    _rewrite_tail(logged, 4_000)
    status, output = _verify(logged, capsys)
    assert status == 0, output  # consistent: without an anchor the rewrite is invisible
    status, output = _verify(logged, capsys, "--trusted-checkpoint", str(trusted))
    assert status == 1
    assert f"trusted checkpoint {SIZE} has another root" in output


@pytest.mark.slow
def test_truncated_log_is_caught_by_a_trusted_checkpoint(
    logged: RunningHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with session_scope(logged.hub.sessions) as session:
        note = session.execute(
            select(LogCheckpoint.note).where(LogCheckpoint.size == SIZE)
        ).scalar_one()
    trusted = tmp_path / "checkpoint.txt"
    trusted.write_text(note, encoding="utf-8")
    _rewrite_tail(logged, 4_000, append=False)
    status, output = _verify(logged, capsys)
    assert status == 0, output  # a consistent shorter log
    status, output = _verify(logged, capsys, "--trusted-checkpoint", str(trusted))
    assert status == 1
    assert f"the trusted checkpoint covers {SIZE} entries, the log holds 4000" in output


@pytest.mark.slow
def test_trusted_checkpoint_of_another_log_is_refused(
    logged: RunningHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trusted = tmp_path / "checkpoint.txt"
    trusted.write_text("not a note\n", encoding="utf-8")
    status, output = _verify(logged, capsys, "--trusted-checkpoint", str(trusted))
    assert status != 0
    assert "--trusted-checkpoint" in output


# --- witnesses: the anchor must carry the quorum of cosignatures -------------------------------


def _store_cosigned(running: RunningHub, size: int, signers: list[CosignatureSigner]) -> str:
    with session_scope(running.hub.sessions, write=True) as session:
        note = session.execute(
            select(LogCheckpoint.note).where(LogCheckpoint.size == size)
        ).scalar_one()
        text = note[: note.index("\n\n") + 1]
        cosigned = note + "".join(s.cosign(text, 1_764_806_400) for s in signers)
        session.add(
            CosignedCheckpoint(
                size=size, note=cosigned, cosigners=len(signers), created_at=dt.datetime.now(dt.UTC)
            )
        )
    return cosigned


@pytest.mark.slow
def test_witness_quorum_anchors_verification(
    logged: RunningHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signers = [
        CosignatureSigner(f"witness.example/w{n}", PrivateKey.generate(Algorithm.ED25519))
        for n in range(3)
    ]
    flags = [a for s in signers for a in ("--witness", s.vkey)]
    status, output = _verify(logged, capsys, *flags)
    assert status == 1
    assert "no cosigned checkpoint" in output

    _store_cosigned(logged, SIZE, signers[:2])
    status, output = _verify(logged, capsys, *flags, "--witness-quorum", "2")
    assert status == 0, output
    assert f"extends the cosigned checkpoint of size {SIZE:,}" in output
    status, output = _verify(logged, capsys, *flags)  # all three required
    assert status == 1
    assert "2 valid cosignature(s) of the given witnesses, --witness-quorum needs 3" in output

    _rewrite_tail(logged, 4_000)
    status, output = _verify(logged, capsys, *flags, "--witness-quorum", "2")
    assert status == 1
    assert f"trusted checkpoint {SIZE} has another root" in output


# --- the binding: each row names the entry that admitted it, which commits to its envelope ---


def _rows(running: RunningHub) -> dict[str, tuple[int, int | None, str]]:
    """certificate id -> (row id, audit_idx, envelope sha256)."""
    with session_scope(running.hub.sessions) as session:
        return {
            cid: (row_id, idx, sha)
            for row_id, cid, idx, sha in session.execute(
                select(
                    Certificate.id,
                    Certificate.certificate_id,
                    Certificate.audit_idx,
                    Certificate.envelope_sha256,
                )
            )
        }


def _leaf(running: RunningHub, index: int) -> dict[str, object]:
    with session_scope(running.hub.sessions) as session:
        leaf = session.execute(select(AuditEntry.leaf).where(AuditEntry.idx == index)).scalar_one()
    value = json.loads(bytes(leaf))
    assert isinstance(value, dict)
    return value


def test_rows_name_the_entries_that_admitted_them_and_leaves_commit_to_the_envelope(
    hub_running: RunningHub, world: DemoWorld, amr: DemoDepartment
) -> None:
    revoked_id, revoke_index = _push_and_revoke(hub_running, world, amr)
    rows = _rows(hub_running)
    assert len(rows) == 3
    for certificate_id, (_, index, sha256) in rows.items():
        assert index is not None
        leaf = _leaf(hub_running, index)
        assert (leaf["action"], leaf["outcome"]) == ("push", "ok")
        assert leaf["certificate_ids"] == [certificate_id]
        assert leaf["sha256"] == [sha256]
    with session_scope(hub_running.hub.sessions) as session:
        revocation = session.execute(select(Revocation)).scalar_one()
        assert revocation.audit_idx == revoke_index
        digest = hashlib.sha256(revocation.envelope).hexdigest()
    assert _leaf(hub_running, revoke_index)["sha256"] == [digest]
    assert revocation.certificate_id == revoked_id


def _another_envelope(world: DemoWorld, amr: DemoDepartment, n: int, **changes: object) -> bytes:
    payload = certificate_payload(
        world, world.type_by_name("营业执照").code, enterprise(40 + n), serial=900 + n, **changes
    )  # type: ignore[arg-type]
    return sign_certificate(payload, [amr.key])


def test_a_row_with_no_entry_is_named_by_its_id(
    hub_running: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _push_and_revoke(hub_running, world, amr)
    # A certificate signed by the department (a leaked key, or one it signed and never
    # pushed), inserted straight into the table: no entry admitted it.
    payload = certificate_payload(
        world, world.type_by_name("营业执照").code, enterprise(77), serial=977
    )
    envelope = sign_certificate(payload, [amr.key])
    checked = ingest.check_push(
        hub_running.hub.registry(),
        hub_running.hub.registry().principals[amr.principal],
        ingest.PushInput(envelope=envelope),
    )
    with session_scope(hub_running.hub.sessions, write=True) as session:
        ingest.store_pushes(session, [(checked, dt.datetime.now(dt.UTC))])
    row_id = _rows(hub_running)[payload.certificate_id][0]
    status, output = _verify(hub_running, capsys)
    assert status == 1
    assert f"certificates row {row_id} (certificate {payload.certificate_id!r} version 1)" in output
    assert "no audit entry admitted it" in output

    # Pointing it at some other entry does not help: entry 0 admitted another certificate.
    _tamper(
        hub_running,
        lambda s: s.execute(
            update(Certificate).where(Certificate.id == row_id).values(audit_idx=0)
        ),
    )
    status, output = _verify(hub_running, capsys)
    assert status == 1
    assert f"first bad index 0: certificates row {row_id}" in output
    assert "which is not an ok push of" in output


def test_a_changed_row_column_is_named_by_id_and_index(
    hub_running: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _push_and_revoke(hub_running, world, amr)
    certificate_id, (row_id, index, _) = sorted(_rows(hub_running).items())[0]
    # An expired licence made to look valid for ten more years.
    _tamper(
        hub_running,
        lambda s: s.execute(
            update(Certificate)
            .where(Certificate.id == row_id)
            .values(valid_until=dt.date(2040, 1, 1))
        ),
    )
    status, output = _verify(hub_running, capsys)
    assert status == 1
    assert f"first bad index {index}: certificates row {row_id}" in output
    assert f"certificate {certificate_id!r}" in output
    assert "column valid_until disagrees with its signed envelope" in output


def test_a_swapped_envelope_is_caught_at_its_entry(
    hub_running: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A row whose envelope (and digest) is replaced by another validly signed version of
    # the same certificate: every column agrees with the new envelope, but the push entry
    # committed to the old one.
    _push_and_revoke(hub_running, world, amr)
    rows = _rows(hub_running)
    replacement = _another_envelope(world, amr, 0, fields={"经营范围": "改写"})
    payload = certificate_payload(
        world, world.type_by_name("营业执照").code, enterprise(40), serial=900
    )
    row_id, index, _ = rows[payload.certificate_id]
    _tamper(
        hub_running,
        lambda s: s.execute(
            update(Certificate)
            .where(Certificate.id == row_id)
            .values(envelope=replacement, envelope_sha256=hashlib.sha256(replacement).hexdigest())
        ),
    )
    status, output = _verify(hub_running, capsys)
    assert status == 1
    assert f"first bad index {index}" in output
    assert f"admitted certificate {payload.certificate_id!r} with envelope SHA-256" in output


def test_a_changed_or_added_revocation_row_is_named(
    hub_running: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    capsys: pytest.CaptureFixture[str],
) -> None:
    revoked_id, revoke_index = _push_and_revoke(hub_running, world, amr)
    lineage = lineage_of(revoked_id)
    with session_scope(hub_running.hub.sessions) as session:
        original = session.execute(select(Revocation.envelope)).scalar_one()
    # Re-signed with another reason: the revoke entry committed to the first envelope.
    other = sign_revocation(revoked_id, amr.key, reason="吊销")
    _tamper(
        hub_running,
        lambda s: s.execute(
            update(Revocation).where(Revocation.lineage == lineage).values(envelope=other)
        ),
    )
    status, output = _verify(hub_running, capsys)
    assert status == 1
    assert f"first bad index {revoke_index}: revocations row {lineage!r}" in output
    assert "admitted another envelope" in output

    # A revocation of another licence, inserted with no entry (the first one restored).
    victim = next(cid for cid in _rows(hub_running) if cid != revoked_id)
    _tamper(
        hub_running,
        lambda s: s.execute(
            update(Revocation).where(Revocation.lineage == lineage).values(envelope=original)
        ),
    )
    with session_scope(hub_running.hub.sessions, write=True) as session:
        session.add(
            Revocation(
                lineage=lineage_of(victim),
                certificate_id=victim,
                reason="注销",
                revoked_at=dt.datetime.now(dt.UTC),
                envelope=sign_revocation(victim, amr.key),
                recorded_at=dt.datetime.now(dt.UTC),
            )
        )
    status, output = _verify(hub_running, capsys)
    assert status == 1
    assert f"revocations row {lineage_of(victim)!r}" in output
    assert "no audit entry admitted it" in output
