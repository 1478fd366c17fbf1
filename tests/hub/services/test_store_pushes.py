"""Pushes applied as one set (the group commit's path) decide exactly what the same pushes
applied one by one decide, and leave the same rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from hub.errors import HubError
from hub.registry import parse_registry
from hub.services import ingest
from hub.store.models import Certificate

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


def _pushes(world: DemoWorld, seed: int) -> list[ingest.CheckedPush]:
    registry = parse_registry(world.registry_toml())
    licence = world.type_by_name("营业执照")
    department = world.departments[licence.issuer]
    caller = registry.principals[department.principal]
    rng = random.Random(seed)
    envelopes = []
    for n in range(40):
        serial = rng.randrange(6)  # few lineages, so versions and repeats collide
        version = rng.randrange(1, 4)
        payload = certificate_payload(
            world, licence.code, enterprise(serial), serial=serial, version=version
        )
        if rng.random() < 0.15:  # same id and version, other bytes: a conflict
            payload = dataclasses.replace(payload, number=f"X{n}")
        envelopes.append(sign_certificate(payload, [department.key]))
    envelopes += envelopes[:5]  # exact repeats
    rng.shuffle(envelopes)
    return [ingest.check_push(registry, caller, ingest.PushInput(envelope=e)) for e in envelopes]


def _rows(session: Session) -> list[tuple[object, ...]]:
    return [
        tuple(row)
        for row in session.execute(
            select(
                Certificate.certificate_id,
                Certificate.version,
                Certificate.is_current,
                Certificate.envelope_sha256,
            ).order_by(Certificate.certificate_id, Certificate.version)
        )
    ]


def _describe(outcome: ingest.Stored | HubError) -> tuple[str, ...]:
    if isinstance(outcome, HubError):
        return ("error", outcome.status_name, outcome.reason)
    return (str(outcome.outcome), outcome.certificate_id, str(outcome.version))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_set_and_one_by_one_agree(engine: Engine, world: DemoWorld, seed: int) -> None:
    pushes = _pushes(world, seed)
    with Session(engine) as session, session.begin():
        one_by_one = []
        for checked in pushes:
            try:
                one_by_one.append(_describe(ingest.store_push(session, checked, now=NOW)))
            except HubError as error:
                one_by_one.append(_describe(error))
        expected_rows = _rows(session)
        session.rollback()
    with Session(engine) as session, session.begin():
        as_set = [_describe(o) for o in ingest.store_pushes(session, [(c, NOW) for c in pushes])]
        rows = _rows(session)
        session.rollback()
    assert as_set == one_by_one
    assert rows == expected_rows
    # The run exercised every branch: accepted, repeated, conflicting, superseded.
    kinds = {d[0] if d[0] != "error" else d[2] for d in as_set}
    assert {"ACCEPTED", "DUPLICATE", "VERSION_CONFLICT"} <= kinds
    assert any(not current for _, _, current, _ in rows)
