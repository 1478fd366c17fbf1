"""Pushes through the group committer, as the ingest stream submits them: a batch of pushes
(on PostgreSQL in the committer's pipeline, or through a session) decides what the same
pushes stored one by one decide, binds each stored row to the entry that admitted it, and
keeps its entries in submission order with reads between them."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from support import statements
from support.pushes import describe, mixed_pushes, store_behind_the_lineage

from certhub.hub.audit.committer import GroupCommitter, Pending
from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.errors import HubError, Unavailable
from certhub.hub.registry import parse_registry
from certhub.hub.services import ingest
from certhub.hub.store.models import AuditCertificate, AuditEntry, Certificate, HolderState

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
# Far longer than a healthy commit; only reached if the committer is stuck.
WAIT_SECONDS = 10.0


def _entry(name: str) -> AuditRecord:
    return AuditRecord(time=NOW, principal=name, action=Action.GET, outcome=OK)


def _push_unit(committer: GroupCommitter, checked: ingest.CheckedPush) -> Pending[ingest.Stored]:
    """A push as Hub.submit_push hands it to the committer."""
    p = checked.payload

    def describe(_stored: ingest.Stored | None, error: HubError | None) -> AuditRecord:
        return AuditRecord(
            time=NOW,
            principal="push",
            action=Action.PUSH,
            outcome=error.status_name if error else OK,
            certificate_ids=(p.certificate_id,),
        )

    return committer.submit(
        lambda s: ingest.store_push(s, checked, now=NOW),
        describe,
        batch=ingest.PUSH_BATCH,
        item=(checked, NOW),
    )


def _held(committer: GroupCommitter) -> tuple[Pending[None], threading.Event]:
    """A unit that holds the committer until the returned event is set, so that everything
    submitted meanwhile lands in the next batch."""
    holding, release = threading.Event(), threading.Event()

    def hold(_session: Session) -> None:
        holding.set()
        release.wait(WAIT_SECONDS)

    first = committer.submit(hold, lambda _v, _e: _entry("HOLD"))
    assert holding.wait(WAIT_SECONDS)
    return first, release


def _one_by_one(engine: Engine, pushes: list[ingest.CheckedPush]) -> list[tuple[str, ...]]:
    """What the pushes decide stored one by one (in a transaction rolled back)."""
    described = []
    with Session(engine) as session, session.begin():
        for checked in pushes:
            try:
                described.append(describe(ingest.store_push(session, checked, now=NOW)))
            except HubError as error:
                described.append(describe(error))
        session.rollback()
    return described


@pytest.mark.parametrize("path", ["pipelined", "session"])
@pytest.mark.parametrize("seed", [1, 2])
def test_a_batch_of_pushes_decides_as_one_by_one_and_binds_its_entries(
    engine: Engine, committer: GroupCommitter, world: DemoWorld, path: str, seed: int
) -> None:
    pushes = mixed_pushes(world, seed)
    expected = _one_by_one(engine, pushes)
    first, release = _held(committer)
    submitted: list[tuple[str, Pending[object]]] = []
    for n, checked in enumerate(pushes):
        if n % 4 == 0:  # reads between the pushes: they do not end the run
            submitted.append(("read", committer.submit_entry(_entry(f"R-{n}"))))  # type: ignore[arg-type]
        submitted.append(("push", _push_unit(committer, checked)))  # type: ignore[arg-type]
    if path == "session":  # a unit that applies something of its own: no pipeline
        submitted.append(("other", committer.submit(lambda _s: None, lambda _v, _e: _entry("X"))))
    with statements.recorded(engine) as seen:
        release.set()
        after_hold = first.result().audit_index + 1
        outcomes: list[tuple[str, ...]] = []
        indices: list[int] = []
        for kind, pending in submitted:
            try:
                committed = pending.result()
            except HubError as error:
                indices.append(error.audit_index if error.audit_index is not None else -1)
                if kind == "push":
                    outcomes.append(describe(error))
                continue
            indices.append(committed.audit_index)
            if kind == "push":
                outcomes.append(describe(committed.value))  # type: ignore[arg-type]

    assert outcomes == expected
    kinds = {d[0] if d[0] != "error" else d[2] for d in outcomes}
    assert {"ACCEPTED", "DUPLICATE", "VERSION_CONFLICT"} <= kinds
    # One batch, in submission order, with no gap.
    assert indices == list(range(after_hold, after_hold + len(submitted)))
    sent = [" ".join(s.split()).upper() for s in seen]
    assert not [s for s in sent if s.startswith("SAVEPOINT")], "a push run took a savepoint"
    assert sum(s.startswith("INSERT INTO CERTIFICATES") for s in sent) <= 1
    if engine.dialect.name == "postgresql":
        committed_in_pipeline = "COMMIT" in sent  # the session path commits through the driver
        assert committed_in_pipeline == (path == "pipelined"), sent
        assert sum(s.startswith("INSERT INTO HOLDER_STATES") for s in sent) == 1, sent

    accepted_at = {
        (d[1], int(d[2])): index
        for d, index in zip(
            outcomes, [i for (k, _), i in zip(submitted, indices, strict=True) if k == "push"],
            strict=True,
        )
        if d[0] == "ACCEPTED"
    }  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(
            select(Certificate.certificate_id, Certificate.version, Certificate.audit_idx)
        ).all()
        links = set(conn.execute(select(AuditCertificate.certificate_id, AuditCertificate.idx)))
        actions = dict(conn.execute(select(AuditEntry.idx, AuditEntry.action)).all())
        counters = dict(conn.execute(select(HolderState.holder_key, HolderState.version)).all())
    # Each stored version names the entry that admitted it: a push entry for that certificate.
    assert {(cid, version): idx for cid, version, idx in rows} == accepted_at
    for (cid, _version), idx in accepted_at.items():
        assert actions[idx] == "push"
        assert (cid, idx) in links
    # One batch moved each changed holder's counter once.
    holders = {p.payload.holder.key() for p in pushes}
    assert counters == dict.fromkeys(holders, 1)


@pytest.mark.parametrize("path", ["pipelined", "session"])
def test_a_push_whose_row_exists_after_all_fails_its_batch_and_commits_nothing(
    engine: Engine, committer: GroupCommitter, world: DemoWorld, path: str
) -> None:
    """The committer takes no savepoint for pushes (every writer holds the log head's lock
    first). Should an insert collide anyway, stood in for here by a row the lineage query
    cannot see, the whole batch answers COMMIT_FAILED and nothing of it is stored or
    logged; the next batch commits."""
    pushes = mixed_pushes(world, 3)[:5]
    store_behind_the_lineage(engine, pushes[0], lineage="stored-by-another-writer", now=NOW)
    first, release = _held(committer)
    doomed: list[Pending[object]] = [_push_unit(committer, c) for c in pushes]  # type: ignore[misc]
    doomed.append(committer.submit_entry(_entry("READ")))  # type: ignore[arg-type]
    if path == "session":
        doomed.append(committer.submit(lambda _s: None, lambda _v, _e: _entry("X")))
    release.set()
    held = first.result()
    for pending in doomed:
        with pytest.raises(Unavailable) as raised:
            pending.result()
        assert raised.value.reason == "COMMIT_FAILED"
    after = committer.submit_entry(_entry("AFTER")).result()
    assert after.audit_index == held.audit_index + 1
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(Certificate)).scalar_one()
        logged = conn.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
        counters = conn.execute(select(func.count()).select_from(HolderState)).scalar_one()
    assert (stored, logged, counters) == (1, after.audit_index + 1, 0)


# Rounds of the race below: each round, both committers take the same fresh certificates.
RACE_ROUNDS = 12
RACE_PUSHES = 24


def test_two_committers_pushing_the_same_certificates_store_each_once(
    engine: Engine, make_committer: Callable[..., GroupCommitter], world: DemoWorld
) -> None:
    """Why pushes need no savepoint: two group committers (two hub processes' worth of
    transactions on their own connections) pushing the same certificates at once never
    collide on an insert. Each batch locks the log head before it reads the lineages, so
    the second reads what the first committed: one ACCEPTED per certificate, DUPLICATE for
    the other, and no batch fails."""
    registry = parse_registry(world.registry_toml())
    licence = world.type_by_name("营业执照")
    department = world.departments[licence.issuer]
    caller = registry.principals[department.principal]
    committers = [make_committer(), make_committer()]
    outcomes: dict[str, list[str]] = {}
    failures: list[BaseException] = []
    for round_ in range(RACE_ROUNDS):
        pushes = [
            ingest.check_push(
                registry,
                caller,
                ingest.PushInput(
                    envelope=sign_certificate(
                        certificate_payload(world, licence.code, enterprise(serial), serial=serial),
                        [department.key],
                    )
                ),
            )
            for serial in range(round_ * RACE_PUSHES, (round_ + 1) * RACE_PUSHES)
        ]
        start = threading.Barrier(len(committers))

        def push_all(
            committer: GroupCommitter, pushes: list[ingest.CheckedPush], start: threading.Barrier
        ) -> None:
            start.wait()
            pending = [(c.payload.certificate_id, _push_unit(committer, c)) for c in pushes]
            for cid, unit in pending:
                try:
                    outcomes.setdefault(cid, []).append(str(unit.result().value.outcome))
                except BaseException as error:  # reported below
                    failures.append(error)

        threads = [
            threading.Thread(target=push_all, args=(committer, order, start))
            for committer, order in zip(committers, [pushes, pushes[::-1]], strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures
    assert len(outcomes) == RACE_ROUNDS * RACE_PUSHES
    assert all(sorted(o) == ["ACCEPTED", "DUPLICATE"] for o in outcomes.values()), outcomes
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(Certificate)).scalar_one()
    assert stored == RACE_ROUNDS * RACE_PUSHES
