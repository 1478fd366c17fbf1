"""The serving hub's audit self-check (issue 12, build item 3): a log changed under a
running hub is noticed, with the first bad index, the alert gauge and the failure hook."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from support.audit_log import append_all, synthetic_records
from support.hubs import RunningHub, start_hub

from certhub.hub.audit.selfcheck import AuditSelfCheck, Failure
from certhub.hub.demo.world import DemoWorld
from certhub.hub.grpc.server import AuditWatch
from certhub.hub.observability.metrics import metrics
from certhub.hub.store.engine import session_scope
from certhub.hub.store.models import AuditEntry, CosignedCheckpoint, LogCheckpoint
from certhub.signing import Algorithm, NoteVerifier, PrivateKey
from certhub.signing.cosignature import CosignatureSigner, CosignatureVerifier


def grow(running: RunningHub, count: int, start: int, batch: int = 50) -> None:
    hub = running.hub
    append_all(hub.sessions, hub.audit_log, synthetic_records(count, start=start), batch=batch)


def checker(running: RunningHub, **options: object) -> tuple[AuditSelfCheck, list[Failure]]:
    failures: list[Failure] = []
    check = AuditSelfCheck(
        sessions=running.hub.sessions,
        verifier=NoteVerifier.from_vkey(running.hub.audit_log.keys.signer.vkey),
        on_failure=failures.append,
        **options,  # type: ignore[arg-type]
    )
    return check, failures


def change_leaf(running: RunningHub, index: int) -> None:
    with session_scope(running.hub.sessions, write=True) as session:
        leaf = bytes(
            session.execute(select(AuditEntry.leaf).where(AuditEntry.idx == index)).scalar_one()
        )
        session.execute(
            update(AuditEntry)
            .where(AuditEntry.idx == index)
            .values(leaf=leaf.replace(b"gulou-service-centre", b"gulou-service-centrX"))
        )


def test_a_growing_honest_log_passes(
    running_hub: RunningHub, caplog: pytest.LogCaptureFixture
) -> None:
    grow(running_hub, 120, 0)
    check, failures = checker(running_hub, full_every=0.0)
    with caplog.at_level(logging.INFO, logger="certhub.audit.selfcheck"):
        assert asyncio.run(check.tick()) is None
    # What a pass costs on this log, for the operator who sizes the interval.
    assert "full pass over 120 entries and 3 checkpoints in" in caplog.text
    grow(running_hub, 80, 120)
    assert asyncio.run(check.tick()) is None
    assert check.anchor is not None
    assert check.anchor.size == 200
    assert failures == []


def test_a_changed_new_entry_is_caught_at_once(running_hub: RunningHub) -> None:
    grow(running_hub, 100, 0)
    check, failures = checker(running_hub)  # full pass only every ten minutes
    assert asyncio.run(check.tick()) is None
    grow(running_hub, 100, 100)
    change_leaf(running_hub, 137)
    failure = asyncio.run(check.tick())
    assert failure is not None
    assert failure.index == 137
    assert failures == [failure]
    assert metrics().audit_selfcheck_failed._value.get() == 1
    assert metrics().audit_selfcheck_first_bad_index._value.get() == 137
    # Latched: later rounds report the same failure and call the hook no more.
    assert asyncio.run(check.tick()) == failure
    assert len(failures) == 1


def test_a_changed_old_entry_is_caught_by_the_full_pass(running_hub: RunningHub) -> None:
    grow(running_hub, 300, 0)
    check, failures = checker(running_hub, full_every=0.0)
    assert asyncio.run(check.tick()) is None
    change_leaf(running_hub, 42)
    failure = asyncio.run(check.tick())
    assert failure is not None
    assert failure.index == 42
    assert len(failures) == 1


def test_a_rollback_is_caught(running_hub: RunningHub) -> None:
    grow(running_hub, 100, 0)
    check, _ = checker(running_hub)
    assert asyncio.run(check.tick()) is None
    with session_scope(running_hub.hub.sessions, write=True) as session:
        session.execute(delete(LogCheckpoint).where(LogCheckpoint.size > 60))
    failure = asyncio.run(check.tick())
    assert failure is not None
    assert "rolled back" in failure.message


def test_a_cosigned_checkpoint_short_of_the_quorum_is_caught(running_hub: RunningHub) -> None:
    grow(running_hub, 50, 0)
    witnesses = [
        CosignatureSigner(f"witness.example/w{n}", PrivateKey.generate(Algorithm.ED25519))
        for n in range(2)
    ]
    with session_scope(running_hub.hub.sessions, write=True) as session:
        note = session.execute(
            select(LogCheckpoint.note).where(LogCheckpoint.size == 50)
        ).scalar_one()
        text = note[: note.index("\n\n") + 1]
        session.execute(
            insert(CosignedCheckpoint).values(
                size=50,
                note=note + witnesses[0].cosign(text, 1_764_806_400),
                cosigners=1,
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    verifiers = [CosignatureVerifier.from_vkey(w.vkey) for w in witnesses]
    ok, _ = checker(running_hub, witnesses=verifiers, quorum=1)
    assert asyncio.run(ok.tick()) is None
    strict, _ = checker(running_hub, witnesses=verifiers, quorum=2)
    failure = asyncio.run(strict.tick())
    assert failure is not None
    assert "the policy needs 2" in failure.message


@pytest.mark.parametrize("interval", [0.01])
def test_run_stops(running_hub: RunningHub, interval: float) -> None:
    grow(running_hub, 10, 0)
    check, _ = checker(running_hub, interval=interval)

    async def scenario() -> None:
        task = asyncio.create_task(check.run())
        deadline = asyncio.get_running_loop().time() + 10
        while check.anchor is None:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        check.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


def test_a_staggered_first_full_pass_waits_its_turn(running_hub: RunningHub) -> None:
    # certhub serve --workers N spreads the workers' full passes over the interval: worker
    # s runs its first one s x interval / N after it starts.
    grow(running_hub, 100, 0)
    change_leaf(running_hub, 10)  # an old entry: only a full pass finds it
    now = [1000.0]
    check, failures = checker(
        running_hub, full_every=600.0, first_full_after=300.0, clock=lambda: now[0]
    )
    assert asyncio.run(check.tick()) is None  # the incremental round takes the anchor
    now[0] += 299.0
    assert asyncio.run(check.tick()) is None
    now[0] += 1.0
    failure = asyncio.run(check.tick())
    assert failure is not None
    assert failure.index == 10
    assert failures == [failure]


def test_the_anchor_size_gauge_says_how_far_the_check_verified(
    tmp_path: Path, engine: Engine, world: DemoWorld
) -> None:
    """certhub_audit_selfcheck_anchor_size follows the anchor (a hub without its own
    self-check, so no other check sets the gauge meanwhile)."""
    running = start_hub(tmp_path / "data", engine, world, audit_watch=AuditWatch(selfcheck=False))
    try:
        gauge = metrics().audit_selfcheck_anchor_size
        grow(running, 120, 0)
        check, failures = checker(running)
        assert asyncio.run(check.tick()) is None
        assert gauge._value.get() == 120
        grow(running, 80, 120)
        assert asyncio.run(check.tick()) is None
        assert gauge._value.get() == 200
        assert failures == []
    finally:
        running.server.stop(grace=None)
        running.hub.close()
