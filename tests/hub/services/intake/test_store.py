"""The fetch and get queries read every field of StoredCertificate, the one list of what is
read of a stored certificate, from the stored row."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.registry import parse_registry
from certhub.hub.services import ingest, intake
from certhub.hub.store.aio import AsyncReader
from certhub.hub.store.models import Certificate

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


def _licence(world: DemoWorld, *, serial: int) -> ingest.CheckedPush:
    """A business licence of enterprise ``serial``, signed and checked, ready to store."""
    registry = parse_registry(world.registry_toml())
    licence = world.type_by_name("营业执照")
    department = world.departments[licence.issuer]
    payload = certificate_payload(world, licence.code, enterprise(serial), serial=serial)
    return ingest.check_push(
        registry,
        registry.principals[department.principal],
        ingest.PushInput(envelope=sign_certificate(payload, [department.key])),
    )


def test_the_queries_read_every_field(engine: Engine, world: DemoWorld) -> None:
    checked = _licence(world, serial=1)
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


def test_the_event_loop_reads_the_same_view(engine: Engine, world: DemoWorld) -> None:
    """``read_holder_view`` (PostgreSQL's async driver) and ``load_holder_view`` (the
    synchronous engine) give the same view, counter included, and for a holder with no
    certificates the counter alone."""
    reader = AsyncReader.for_engine(engine)
    if reader is None:  # pysqlite has no async driver: SQLite views stay in the thread pool
        assert engine.dialect.name == "sqlite"
        return
    checked = _licence(world, serial=2)
    with Session(engine) as session, session.begin():
        ingest.store_push(session, checked, now=NOW)
    holder_key = checked.payload.holder.key()
    with engine.connect() as conn:
        expected = intake.load_holder_view(conn, holder_key)
        nobody = intake.load_holder_view(conn, "USCC:nobody")

    async def read() -> tuple[intake.HolderView, intake.HolderView]:
        try:
            return (
                await intake.read_holder_view(reader, holder_key),
                await intake.read_holder_view(reader, "USCC:nobody"),
            )
        finally:
            await reader.close_async()

    view, empty = asyncio.run(read())
    assert view == expected
    assert view.version >= 1  # the push moved the counter
    assert len(view.certificates) == 1
    assert empty == nobody == intake.HolderView(0, [])
