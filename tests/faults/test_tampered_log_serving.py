"""A serving hub notices a log tampered with in its database (issue 12, build item 3): the
self-check the server starts turns health NOT_SERVING for certhub.v1.AuditService within
seconds, while the other services keep serving."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from support.audit_log import append_all, synthetic_records
from support.hubs import RunningHub, start_hub
from support.served import prepare_deployment, serve, wait_for

from certhub.core.rpc.client import UnauthenticatedError
from certhub.hub.demo.world import DemoWorld
from certhub.hub.grpc.server import AUDIT_SERVICE_NAME, AuditWatch
from certhub.hub.health import HealthChecker
from certhub.hub.store.engine import make_engine, make_session_factory, session_scope, sqlite_url
from certhub.hub.store.models import AuditEntry, LogCheckpoint

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
INTAKE = "certhub.v1.IntakeService"
# Self-check rounds run every second; the health checker publishes every 2 s. A busy
# shared test machine gets a few times that.
NOTICE_SECONDS = 15.0


def status(running: RunningHub, service: str) -> int:
    with running.client("gulou-operator") as client:
        stub = health_pb2_grpc.HealthStub(client.channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def health_checker(running: RunningHub) -> HealthChecker:
    return next(w for w in running.server.watchers if isinstance(w, HealthChecker))


def anchor_size(metrics_url: str) -> float:
    """certhub_audit_selfcheck_anchor_size from a served hub's metrics (-1 while absent)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^certhub_audit_selfcheck_anchor_size(?:\{[^}]*\})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else -1.0


def grow(running: RunningHub, count: int, start: int) -> None:
    hub = running.hub
    append_all(hub.sessions, hub.audit_log, synthetic_records(count, start=start), batch=50)


def anchored(running: RunningHub, size: int) -> bool:
    check = running.server.selfcheck
    return check is not None and check.anchor is not None and check.anchor.size >= size


@pytest.fixture
def watched_hub(tmp_path: Path, engine: Engine, world: DemoWorld) -> Iterator[RunningHub]:
    # A full pass every 2 s instead of every ten minutes, to see a changed old entry.
    running = start_hub(tmp_path / "data", engine, world, audit_watch=AuditWatch(full_every=2.0))
    yield running
    running.server.stop(grace=None)
    running.hub.close()


def test_a_rolled_back_log_turns_the_audit_service_not_serving(running_hub: RunningHub) -> None:
    grow(running_hub, 200, 0)
    wait_for(
        lambda: anchored(running_hub, 200),
        timeout=NOTICE_SECONDS,
        what="self-check verified the 200 entries",
    )
    assert status(running_hub, AUDIT_SERVICE_NAME) == SERVING
    # Cut the log back: the checkpoints past entry 100 are deleted (a rewrite of the tail
    # starts so).
    with session_scope(running_hub.hub.sessions, write=True) as session:
        session.execute(delete(LogCheckpoint).where(LogCheckpoint.size > 100))
    wait_for(
        lambda: status(running_hub, AUDIT_SERVICE_NAME) == NOT_SERVING,
        timeout=NOTICE_SECONDS,
        what="audit service NOT_SERVING",
    )
    check = running_hub.server.selfcheck
    assert check is not None
    assert check.failure is not None
    assert "rolled back" in check.failure.message
    # Only the audit service: fetches and pushes do not depend on the log's past.
    assert status(running_hub, INTAKE) == SERVING
    # Held: the database probe passing again does not bring it back.
    assert health_checker(running_hub).check().serving
    assert status(running_hub, AUDIT_SERVICE_NAME) == NOT_SERVING


def test_a_changed_old_entry_turns_the_audit_service_not_serving(
    watched_hub: RunningHub,
) -> None:
    grow(watched_hub, 150, 0)
    wait_for(
        lambda: anchored(watched_hub, 150),
        timeout=NOTICE_SECONDS,
        what="self-check verified the 150 entries",
    )
    assert status(watched_hub, AUDIT_SERVICE_NAME) == SERVING
    with session_scope(watched_hub.hub.sessions, write=True) as session:
        leaf = bytes(
            session.execute(select(AuditEntry.leaf).where(AuditEntry.idx == 42)).scalar_one()
        )
        session.execute(
            update(AuditEntry)
            .where(AuditEntry.idx == 42)
            .values(leaf=leaf.replace(b"gulou-service-centre", b"gulou-service-centrX"))
        )
    wait_for(
        lambda: status(watched_hub, AUDIT_SERVICE_NAME) == NOT_SERVING,
        timeout=NOTICE_SECONDS,
        what="audit service NOT_SERVING",
    )
    check = watched_hub.server.selfcheck
    assert check is not None
    assert check.failure is not None
    assert check.failure.index == 42
    assert status(watched_hub, INTAKE) == SERVING


def test_an_honest_growing_log_keeps_serving(running_hub: RunningHub) -> None:
    grow(running_hub, 60, 0)
    wait_for(
        lambda: anchored(running_hub, 60),
        timeout=NOTICE_SECONDS,
        what="self-check verified the entries",
    )
    grow(running_hub, 60, 60)
    wait_for(
        lambda: anchored(running_hub, 120),
        timeout=NOTICE_SECONDS,
        what="self-check verified the new entries",
    )
    assert running_hub.server.selfcheck is not None
    assert running_hub.server.selfcheck.failure is None
    assert status(running_hub, AUDIT_SERVICE_NAME) == SERVING


def test_every_worker_of_a_served_hub_goes_not_serving(tmp_path: Path, world: DemoWorld) -> None:
    """`certhub serve --workers 2`: each worker runs its own self-check, so whichever worker
    a health probe reaches answers NOT_SERVING for the audit service once the log is cut."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db_url = sqlite_url(data_dir)
    engine = make_engine(db_url)
    prepare_deployment(data_dir, engine, world.registry_toml())
    served = serve(data_dir, db_url, "--metrics-port", "0", workers=2)
    try:
        wait_for(
            lambda: any("certhub metrics on" in line for line in served.output),
            timeout=NOTICE_SECONDS,
            what="the metrics endpoint",
        )
        metrics_url = next(
            m.group(1)
            for line in served.output
            if (m := re.search(r"certhub metrics on (http://[^\s\"]+/metrics)", line))
        )
        # Entries and checkpoints through the served hub itself: refused calls.
        with served.client("nobody-registered") as client:
            for _ in range(6):
                with pytest.raises(UnauthenticatedError):
                    client.stats()
        sessions = make_session_factory(engine)
        with session_scope(sessions) as session:
            sizes = sorted(session.execute(select(LogCheckpoint.size)).scalars())
        assert sizes[-1] >= 6
        # Both workers' self-checks anchor the newest checkpoint (a round a second): the
        # smallest anchor over the workers reaches it.
        wait_for(
            lambda: anchor_size(metrics_url) >= sizes[-1],
            timeout=NOTICE_SECONDS,
            what=f"every worker's self-check to verify checkpoint {sizes[-1]}",
        )
        with session_scope(sessions, write=True) as session:
            session.execute(delete(LogCheckpoint).where(LogCheckpoint.size > sizes[0]))

        def probes() -> set[int]:
            seen = set()
            for _ in range(8):  # fresh connections: SO_REUSEPORT spreads them over workers
                with served.client("gulou-operator") as client:
                    stub = health_pb2_grpc.HealthStub(client.channel)
                    seen.add(
                        stub.Check(
                            health_pb2.HealthCheckRequest(service=AUDIT_SERVICE_NAME), timeout=5
                        ).status
                    )
            return seen

        wait_for(
            lambda: probes() == {NOT_SERVING},
            timeout=NOTICE_SECONDS,
            what="every worker NOT_SERVING",
        )
        assert any("audit self-check FAILED" in line for line in served.output)
    finally:
        served.kill()
        engine.dispose()
