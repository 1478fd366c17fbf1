"""Health over the real grpc.health.v1 service: NOT_SERVING for every certhub service while the
schema is behind, the database refuses connections or a probe hangs; SERVING again after; and
`certhub health` as a script sees it (exit 0 / 1 / 2)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import Table, create_engine, text
from sqlalchemy.engine import Engine, make_url
from support.hubs import RunningHub

from certhub.hub.cli.main import main
from certhub.hub.grpc.server import AUDIT_SERVICE_NAME, SERVICE_NAMES, build_server
from certhub.hub.health import HealthChecker, probe_database
from certhub.hub.store import migrate
from certhub.hub.store.engine import make_session_factory

REPO = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ALL_SERVICES = ("", *SERVICE_NAMES, AUDIT_SERVICE_NAME)


def _checker(running: RunningHub) -> HealthChecker:
    return next(w for w in running.server.watchers if isinstance(w, HealthChecker))


def _statuses(running: RunningHub) -> set[int]:
    with running.client("gulou-operator") as client:
        stub = health_pb2_grpc.HealthStub(client.channel)
        return {
            stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            for name in ALL_SERVICES
        }


def _certhub_health(running: RunningHub, *args: str) -> subprocess.CompletedProcess[str]:
    running.tls_for("gulou-operator")  # issues the client certificate into the data dir
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "certhub.hub.cli.main",
            "health",
            "--address",
            running.address,
            "--data-dir",
            str(running.config.data_dir),
            *args,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def admin(engine: Engine) -> Iterator[Engine]:
    """A connection to the PostgreSQL server outside the test's database."""
    if engine.dialect.name != "postgresql":
        pytest.skip(
            "needs PostgreSQL: closing a database to connections, blocking readers with a lock"
        )
    url = make_url(engine.url.render_as_string(hide_password=False)).set(database="postgres")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    yield admin
    admin.dispose()


@pytest.mark.slow
def test_schema_behind_is_not_serving_for_every_service_then_serving_again(
    running_hub: RunningHub, engine: Engine
) -> None:
    checker = _checker(running_hub)
    assert _statuses(running_hub) == {SERVING}
    with engine.begin() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("DELETE FROM alembic_version"))
    verdict = checker.check()
    assert not verdict.serving
    assert "certhub db upgrade" in verdict.problem
    assert _statuses(running_hub) == {NOT_SERVING}
    done = _certhub_health(running_hub, "--service", "certhub.v1.IntakeService")
    assert done.returncode == 1, done.stderr
    assert done.stdout.strip() == "certhub.v1.IntakeService: NOT_SERVING"

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision})
    assert checker.check().serving
    assert _statuses(running_hub) == {SERVING}
    done = _certhub_health(running_hub)
    assert (done.returncode, done.stdout.strip()) == (0, "(server): SERVING"), done.stderr


@pytest.mark.slow
def test_database_refusing_connections_is_not_serving_until_it_accepts_them(
    running_hub: RunningHub, engine: Engine, admin: Engine
) -> None:
    checker = _checker(running_hub)
    name = engine.url.database
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
            {"d": name},
        )
    try:
        verdict = checker.check()
        assert not verdict.serving
        assert "database unreachable" in verdict.problem
        assert _statuses(running_hub) == {NOT_SERVING}
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    assert checker.check().serving
    assert _statuses(running_hub) == {SERVING}


def test_a_hanging_probe_is_not_serving_after_the_timeout(
    running_hub: RunningHub, engine: Engine, admin: Engine
) -> None:
    del admin  # PostgreSQL only: SQLite readers are never blocked by a writer in WAL mode
    checker = HealthChecker(
        sessions=running_hub.hub.sessions,
        servicer=running_hub.server.health,
        services=ALL_SERVICES,
        timeout=0.5,
    )
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with engine.begin() as conn:
            conn.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        verdict = checker.check()
        assert not verdict.serving
        assert "took over 0.5 s" in verdict.problem
        # The hung probe is not piled on: the next check says so without starting another.
        assert checker.check().problem == "database probe still hanging"
        assert _statuses(running_hub) == {NOT_SERVING}
    finally:
        release.set()
        holder.join()
    _wait_serving(checker)
    assert _statuses(running_hub) == {SERVING}


def _wait_serving(checker: HealthChecker) -> None:
    for _ in range(50):
        if checker.check().serving:
            return
        threading.Event().wait(0.1)
    pytest.fail("the checker never saw the database again")


@pytest.mark.slow
def test_certhub_health_exit_codes_for_unknown_services_and_unreachable_hubs(
    running_hub: RunningHub,
) -> None:
    unknown = _certhub_health(running_hub, "--service", "certhub.v1.NoSuchService")
    assert (unknown.returncode, unknown.stdout.strip()) == (
        1,
        "certhub.v1.NoSuchService: SERVICE_UNKNOWN",
    )
    nobody = _certhub_health(running_hub, "--address", "127.0.0.1:1", "--timeout", "2")
    assert nobody.returncode == 2
    assert "UNREACHABLE" in nobody.stdout


# Probes a process makes in under a minute (one every HEALTH_CHECK_SECONDS).
LEAK_PROBES = 25


def _alembic_version_tables() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Table) and o.name == "alembic_version")


@pytest.mark.slow
def test_probes_keep_nothing_alive_per_probe(engine: Engine) -> None:
    """Issue 6 load test: each probe's alembic_version Table stayed pinned in the engine's
    compiled-statement cache (~16 KiB each, up to 750 of them), so every worker grew."""
    sessions = make_session_factory(engine)
    head = migrate.head_revision()
    assert probe_database(sessions, head).serving
    before = _alembic_version_tables()
    for _ in range(LEAK_PROBES):
        assert probe_database(sessions, head).serving
    assert _alembic_version_tables() <= before


def test_a_schema_newer_than_the_code_keeps_serving_during_a_rolling_upgrade(
    running_hub: RunningHub, engine: Engine
) -> None:
    checker = _checker(running_hub)
    with engine.begin() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed0099'"))
    try:
        verdict = checker.check()
        assert verdict.serving
        assert "newer than this code" in verdict.problem
        assert _statuses(running_hub) == {SERVING}
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def test_certhub_health_against_an_insecure_development_hub(
    running_hub: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    server = build_server(running_hub.hub, address="127.0.0.1:0", tls=None)
    try:
        status = main(["health", "--insecure", "--address", f"127.0.0.1:{server.port}"])
    finally:
        server.stop(grace=None)
    assert (status, capsys.readouterr().out.strip()) == (0, "(server): SERVING")
