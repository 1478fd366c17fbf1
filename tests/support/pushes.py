"""Checked pushes for tests of the ingest store and of the group committer's push path."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.errors import HubError
from certhub.hub.registry import parse_registry
from certhub.hub.services import ingest
from certhub.hub.store.models import Certificate

# Pushes per mix, over few lineages, so versions, repeats and conflicts collide.
MIXED_PUSHES = 40
MIXED_SERIALS = 6


def mixed_pushes(world: DemoWorld, seed: int) -> list[ingest.CheckedPush]:
    """Business licences of a few holders in several versions, some conflicting (same id
    and version, other bytes), five sent twice, shuffled by ``seed``."""
    registry = parse_registry(world.registry_toml())
    licence = world.type_by_name("营业执照")
    department = world.departments[licence.issuer]
    caller = registry.principals[department.principal]
    rng = random.Random(seed)
    envelopes = []
    for n in range(MIXED_PUSHES):
        serial = rng.randrange(MIXED_SERIALS)
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


def describe(outcome: ingest.Stored | HubError) -> tuple[str, ...]:
    """A push's outcome as comparable text."""
    if isinstance(outcome, HubError):
        return ("error", outcome.status_name, outcome.reason)
    return (str(outcome.outcome), outcome.certificate_id, str(outcome.version))


def store_behind_the_lineage(
    engine: Engine, checked: ingest.CheckedPush, *, lineage: str, now: dt.datetime
) -> None:
    """Store ``checked``'s row under another lineage, where the lineage query does not find
    it: a writer that raced the batch, as far as the batch can tell."""
    p = checked.payload
    with Session(engine) as session, session.begin():
        session.execute(
            insert(Certificate).values(
                certificate_id=p.certificate_id,
                version=p.version,
                lineage=lineage,
                is_current=True,
                holder_key=p.holder.key(),
                type_code=p.type_code,
                kind=str(p.kind),
                issuer_code=p.issuer_code,
                issued_on=p.issued_on,
                valid_from=p.valid_from,
                valid_until=None,
                envelope=checked.envelope,
                envelope_sha256=checked.envelope_sha256,
                key_id=checked.key_id,
                legacy_uscc=False,
                stored_at=now,
            )
        )
