"""`certhub serve` (one process) on SIGTERM: a push stream in flight when the signal arrives
still completes, its audit entries are durable, and the process exits 0 after draining."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from support.served import prepare_deployment, serve, wait_for

from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.store.models import AuditEntry
from certhub.v1 import ingest_pb2


@pytest.mark.slow
def test_sigterm_drains_an_in_flight_stream_flushes_the_audit_log_and_exits_0(
    tmp_path: Path, world: DemoWorld, database_url: str, engine: Engine
) -> None:
    data_dir = tmp_path / "data"
    prepare_deployment(data_dir, engine, world.registry_toml())
    served = serve(data_dir, database_url, "--log-format", "text", workers=1)
    licence = world.type_by_name("营业执照")
    department = world.departments[licence.issuer]
    envelopes = [
        sign_certificate(
            certificate_payload(world, licence.code, enterprise(60 + n), serial=n),
            [department.key],
        )
        for n in range(2)
    ]
    signalled = threading.Event()

    def requests() -> Iterator[ingest_pb2.PushRequest]:
        yield ingest_pb2.PushRequest(envelope=envelopes[0], client_ref="before")
        assert signalled.wait(30)
        yield ingest_pb2.PushRequest(envelope=envelopes[1], client_ref="after")

    try:
        with served.client(department.principal) as client:
            results = client.push_stream(requests(), timeout=60)
            first = next(results)
            served.process.send_signal(signal.SIGTERM)
            wait_for(
                lambda: any("stopping: draining" in line for line in served.output),
                timeout=10,
                what="the hub to start draining",
            )
            signalled.set()
            rest = list(results)
        status = served.process.wait(30)
    finally:
        served.kill()

    assert status == 0, "".join(served.output)
    outcomes = [(r.client_ref, r.outcome) for r in [first, *rest]]
    assert outcomes == [("before", ingest_pb2.ACCEPTED), ("after", ingest_pb2.ACCEPTED)]
    with engine.connect() as conn:
        size = conn.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    assert rest[-1].audit_index < size  # answered after SIGTERM and still durable
    assert any("stopped" in line for line in served.output)
