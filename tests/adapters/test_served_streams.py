"""The adapter's streams against `certhub serve --workers 2` on PostgreSQL, as deployed: the
connections are spread over the worker processes by the kernel, and a worker SIGKILLed in
the middle of a backfill loses nothing (its streams reconnect, to whichever worker the
kernel picks)."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATABASE_ENV
from sqlalchemy import text
from support.adapters import (
    create_registrations,
    outbox_counts,
    registration,
    sql_source,
    write_config,
)
from support.databases import fresh_postgres_database
from support.served import ServedHub, established_by_worker, prepare_deployment, serve, wait_for

from certhub.adapters import Adapter, PassReport, load_config
from certhub.core.rpc.client import ClientTLS
from certhub.hub.demo.world import DemoDepartment, DemoWorld
from certhub.hub.pki import issue_client_certificate
from certhub.hub.store.engine import make_engine

ROWS = 3000
STREAMS = 4


# Two served workers share a PostgreSQL database (the served fixture reads its URL).
pytestmark = pytest.mark.postgres


@pytest.fixture
def served(tmp_path: Path, world: DemoWorld) -> Iterator[tuple[ServedHub, str]]:
    base = os.environ.get(DATABASE_ENV)
    if not base:
        pytest.skip(f"{DATABASE_ENV} is not set: two hub workers share a PostgreSQL database")
    with fresh_postgres_database(base, prefix="certhub_streams") as url:
        engine = make_engine(url)
        prepare_deployment(tmp_path / "data", engine, world.registry_toml())
        engine.dispose()
        hub = serve(tmp_path / "data", url, workers=2)
        try:
            yield hub, url
        finally:
            hub.kill()


@pytest.mark.slow
def test_a_worker_killed_mid_backfill_loses_nothing(
    served: tuple[ServedHub, str], world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    hub, hub_url = served
    source_url = f"sqlite:///{tmp_path / 'department.db'}"
    create_registrations(source_url, (registration(n) for n in range(ROWS))).dispose()
    cert, key = issue_client_certificate(hub.pki, amr.principal)
    files = write_config(
        tmp_path / "adapter",
        world=world,
        department=amr,
        address=hub.address,
        tls=ClientTLS(ca=hub.pki.ca_cert, cert=cert, key=key),
        source=sql_source(source_url),
    )
    config = load_config(files.config)
    config = dataclasses.replace(config, outbox=dataclasses.replace(config.outbox, streams=STREAMS))
    adapter = Adapter(config)
    reports: list[PassReport] = []
    runner = threading.Thread(target=lambda: reports.append(adapter.run_once()))
    runner.start()
    try:
        wait_for(
            lambda: sum(established_by_worker(hub).values()) >= STREAMS,
            timeout=60,
            what="every stream connected",
        )
        spread = established_by_worker(hub)
        assert sum(spread.values()) == STREAMS  # one connection per stream, none shared
        wait_for(
            lambda: outbox_counts(files.outbox).get("acked", 0) > ROWS // 4,
            timeout=60,
            what="a quarter acknowledged",
        )
        victim = max(spread, key=lambda pid: spread[pid])
        os.kill(victim, signal.SIGKILL)
        acked_at_kill = outbox_counts(files.outbox).get("acked", 0)
        runner.join(timeout=180)
    finally:
        adapter.stop.set()
        runner.join(timeout=10)
        adapter.close()
    assert not runner.is_alive()
    assert acked_at_kill < ROWS, "the worker was killed too late to test anything"
    (report,) = reports
    assert (report.status.acked, report.status.rejected, report.status.depth) == (ROWS, 0, 0)
    assert report.status.last_error is not None  # the killed worker's streams retried
    engine = make_engine(hub_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT count(*), count(DISTINCT certificate_id) FROM certificates")
            ).one()
    finally:
        engine.dispose()
    assert tuple(stored) == (ROWS, ROWS)
