"""A stored certificate is read, cached and decoded field by field from one list: the fields
of StoredCertificate. A field added there and not to a query or the codec fails here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hub.caching import HOLDER_SCHEMA_VERSION
from hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from hub.registry import parse_registry
from hub.services import ingest, intake
from hub.store.models import Certificate

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)

# A value of each annotated type that is neither a default nor falsy, so that a field the
# codec dropped or swapped cannot compare equal by accident.
_SAMPLES: dict[type, list[object]] = {
    str: ["a", "b", "c", "d", "e", "f"],
    int: [7],
    bool: [True],
    bytes: [b"\x00envelope", b"revocation\xff"],
    dt.date: [dt.date(2024, 1, 2), dt.date(2031, 3, 4)],
}


def _every_field_set() -> intake.StoredCertificate:
    values = {}
    used: dict[type, int] = {}
    for name, hint in typing.get_type_hints(intake.StoredCertificate).items():
        kind = next(k for k in (typing.get_args(hint) or (hint,)) if k is not type(None))
        index = used.get(kind, 0)
        used[kind] = index + 1
        values[name] = _SAMPLES[kind][index]
    return intake.StoredCertificate(**values)


def test_the_cache_codec_carries_every_field() -> None:
    stored = _every_field_set()
    view = intake.HolderView(3, [stored, dataclasses.replace(stored, valid_until=None)])
    assert intake.decode_holder(intake.encode_holder(view)) == view


def test_the_cached_bytes_are_those_of_the_schema_version() -> None:
    # Changing what the bytes mean needs HOLDER_SCHEMA_VERSION bumped (hub.caching), and
    # this expectation with it.
    stored = intake.StoredCertificate(
        certificate_id="C1",
        version=2,
        type_code="T",
        is_current=False,
        valid_from=dt.date(2024, 1, 2),
        valid_until=None,
        envelope=b"env",
        attachment_sha256=None,
        revocation_envelope=b"rev",
        key_id="k",
        envelope_sha256="e",
        unusable="bad",
    )
    assert HOLDER_SCHEMA_VERSION == 4
    assert intake.encode_holder(intake.HolderView(7, [stored])) == (
        b'[7,[["C1",2,"T",false,"2024-01-02",null,"ZW52",null,"cmV2","k","e","bad"]]]'
    )


def test_the_queries_read_every_field(engine: Engine, world: DemoWorld) -> None:
    registry = parse_registry(world.registry_toml())
    licence = world.type_by_name("营业执照")
    department = world.departments[licence.issuer]
    payload = certificate_payload(world, licence.code, enterprise(1), serial=1, version=1)
    checked = ingest.check_push(
        registry,
        registry.principals[department.principal],
        ingest.PushInput(envelope=sign_certificate(payload, [department.key])),
    )
    with Session(engine) as session, session.begin():
        ingest.store_push(session, checked, now=NOW)
        columns = session.execute(select(Certificate.__table__)).mappings().one()
        view = intake.load_holder_view(session.connection(), columns["holder_key"])
        found = intake.load_certificate(session, columns["certificate_id"])
        session.rollback()
    [stored] = view.certificates
    assert found == (stored, columns["holder_key"])
    assert stored.unusable is None
    assert stored.revocation_envelope is None  # no revocation pushed: its row is absent
    read = dataclasses.asdict(stored)
    for name in intake.STORED_FIELDS:
        if name not in {"unusable", "revocation_envelope"}:
            assert read[name] == columns[name], name
    assert intake.decode_holder(intake.encode_holder(view)) == view
