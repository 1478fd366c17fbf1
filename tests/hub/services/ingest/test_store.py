"""Pushes applied as one set (the group commit's path) decide exactly what the same pushes
applied one by one decide, and leave the same rows."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import exc, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from support.pushes import describe, mixed_pushes, store_behind_the_lineage

from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.errors import HubError
from certhub.hub.registry import parse_registry
from certhub.hub.services import ingest
from certhub.hub.store.models import Attachment, Certificate

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


def _rows(session: Session) -> list[dict[str, object]]:
    """Every column but the surrogate id."""
    columns = [c for c in Certificate.__table__.columns if c.name != "id"]
    return [
        dict(row)
        for row in session.execute(
            select(*columns).order_by(Certificate.certificate_id, Certificate.version)
        ).mappings()
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_set_and_one_by_one_agree(engine: Engine, world: DemoWorld, seed: int) -> None:
    pushes = mixed_pushes(world, seed)
    with Session(engine) as session, session.begin():
        one_by_one = []
        for checked in pushes:
            try:
                one_by_one.append(describe(ingest.store_push(session, checked, now=NOW)))
            except HubError as error:
                one_by_one.append(describe(error))
        expected_rows = _rows(session)
        session.rollback()
    with Session(engine) as session, session.begin():
        as_set = [describe(o) for o in ingest.store_pushes(session, [(c, NOW) for c in pushes])]
        rows = _rows(session)
        session.rollback()
    assert as_set == one_by_one
    assert rows == expected_rows
    # The run exercised every branch: accepted, repeated, conflicting, superseded.
    kinds = {d[0] if d[0] != "error" else d[2] for d in as_set}
    assert {"ACCEPTED", "DUPLICATE", "VERSION_CONFLICT"} <= kinds
    assert any(not row["is_current"] for row in rows)


def _checked(
    world: DemoWorld, envelopes: list[tuple[bytes, bytes | None]]
) -> list[ingest.CheckedPush]:
    registry = parse_registry(world.registry_toml())
    caller = registry.principals[world.department_by_name("市场监督").principal]
    return [
        ingest.check_push(registry, caller, ingest.PushInput(envelope=e, attachment=a))
        for e, a in envelopes
    ]


def test_stored_rows_hold_what_the_payloads_say(engine: Engine, world: DemoWorld) -> None:
    """Every column of every stored version, and the attachments, checked against the
    payloads themselves (not against the code that writes them): versions superseded in
    the same batch and by a later one, expiring and non-expiring types, one attachment
    under two certificates and one already stored."""
    department = world.department_by_name("市场监督")
    licence = world.type_by_name("营业执照")  # no expiry
    food = world.type_by_name("食品经营许可证")  # 5 years
    shared, other = b"%PDF-1.7 shared", b"%PDF-1.7 other"

    def signed(type_code: str, serial: int, version: int, pdf: bytes | None = None) -> bytes:
        payload = certificate_payload(
            world, type_code, enterprise(serial), serial=serial, version=version, attachment=pdf
        )
        return sign_certificate(payload, [department.key])

    first = _checked(
        world,
        [(signed(licence.code, 1, 1), None), (signed(food.code, 2, 1, other), other)],
    )
    second = _checked(
        world,
        [
            (signed(licence.code, 1, 2), None),  # supersedes version 1 of the first batch
            (signed(food.code, 3, 1, shared), shared),
            (signed(food.code, 3, 2, shared), shared),  # supersedes within the batch
            (signed(licence.code, 4, 1, other), other),  # file stored by the first batch
        ],
    )
    first_at, second_at = NOW, NOW + dt.timedelta(minutes=1)
    with Session(engine) as session, session.begin():
        ingest.store_pushes(session, [(c, first_at) for c in first])
        outcomes = ingest.store_pushes(session, [(c, second_at) for c in second])
        assert [o.outcome for o in outcomes if not isinstance(o, HubError)] == [
            ingest.PushOutcome.ACCEPTED
        ] * 4
        rows = {
            (r.certificate_id, r.version): r
            for r in session.execute(select(Certificate.__table__)).mappings()
        }
        files = {a.sha256: (a.media_type, a.data) for a in session.scalars(select(Attachment))}

    current = {("1", 2), ("2", 1), ("3", 2), ("4", 1)}
    assert len(rows) == 6
    for checked, at in [(c, first_at) for c in first] + [(c, second_at) for c in second]:
        p = checked.payload
        row = rows[(p.certificate_id, p.version)]
        serial = str(int(p.certificate_id.split(".")[-3][4:]))
        assert {k: v for k, v in row.items() if k not in ("id", "stored_at", "audit_idx")} == {
            "certificate_id": p.certificate_id,
            "version": p.version,
            "lineage": p.certificate_id.rsplit(".", 2)[0],
            "is_current": (serial, p.version) in current,
            "holder_key": f"USCC:{p.holder.id}",
            "type_code": p.type_code,
            "kind": str(p.kind),
            "issuer_code": department.code,
            "issued_on": dt.date(2024, 3, 1),
            "valid_from": dt.date(2024, 3, 1),
            "valid_until": None if p.type_code == licence.code else dt.date(2029, 2, 28),
            "envelope": checked.envelope,
            "envelope_sha256": hashlib.sha256(checked.envelope).hexdigest(),
            "key_id": department.key.public_key.key_id,
            "attachment_sha256": p.attachment.sha256 if p.attachment else None,
            "legacy_uscc": False,
        }
        # SQLite keeps no zone (the hub writes UTC): compare the instant.
        assert row["stored_at"].replace(tzinfo=row["stored_at"].tzinfo or dt.UTC) == at
    assert files == {
        hashlib.sha256(pdf).hexdigest(): ("application/pdf", pdf) for pdf in (shared, other)
    }


def test_an_insert_race_raises_integrity_error(engine: Engine, world: DemoWorld) -> None:
    """A version stored after the batch read its lineages (by a writer that did not hold
    the audit log's head lock) fails the insert with IntegrityError, and so fails the
    group commit's batch as a whole (tests/hub/audit/test_committer_pushes.py) rather than
    storing a second row. (Stood in for here by a row the lineage query cannot see.)"""
    (checked,) = _checked(
        world,
        [
            (
                sign_certificate(
                    certificate_payload(
                        world, world.type_by_name("营业执照").code, enterprise(7), serial=7
                    ),
                    [world.department_by_name("市场监督").key],
                ),
                None,
            )
        ],
    )
    store_behind_the_lineage(engine, checked, lineage="stored-by-another-process", now=NOW)
    with (
        Session(engine) as session,
        session.begin(),
        pytest.raises(exc.IntegrityError),
        session.begin_nested(),
    ):
        ingest.store_pushes(session, [(checked, NOW)])
