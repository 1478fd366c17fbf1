"""PostgreSQL crashes and comes back while windows fetch and a department pushes.

The test runs a PostgreSQL cluster of its own (initdb + pg_ctl on a spare port, see
support.processes.PostgresCluster) so it can stop it with ``pg_ctl -m immediate`` (a crash:
no checkpoint, the restart replays the WAL) without touching the machine's shared server.

Claims: during the outage every call fails fast with UNAVAILABLE (no call waits out its
deadline, none is INTERNAL); once PostgreSQL is back the hub serves again by itself within
seconds, without a restart; every push acknowledged before the crash is still stored; the
audit log verifies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from support.load import OK, Load
from support.processes import PostgresCluster, assert_audit_log_sound, own_postgres
from support.served import ServedHub, prepare_deployment, serve, wait_for

from certhub.hub.demo.world import DemoWorld
from certhub.hub.store.engine import make_engine
from certhub.hub.store.models import Certificate

# Each call's deadline. A call during the outage must fail well before it: the hub's
# PostgreSQL connect timeout is 3 s (certhub.hub.store.engine.PG_CONNECT_TIMEOUT_S), and a refused
# connection fails at once.
CALL_DEADLINE = 8.0
# An answer slower than this during the outage counts as hanging: the connect timeout plus
# margin for the shared 2-core machine.
FAIL_FAST_SECONDS = 4.5
# The hub must serve again this soon after PostgreSQL accepts connections (its pool
# pre-pings and reconnects; nothing waits for a timer longer than this).
RECOVERY_SECONDS = 5.0


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    with own_postgres() as pg:
        yield pg


@pytest.fixture
def served(tmp_path: Path, cluster: PostgresCluster, world: DemoWorld) -> Iterator[ServedHub]:
    engine = make_engine(cluster.url())
    prepare_deployment(tmp_path / "data", engine, world.registry_toml())
    engine.dispose()
    hub = serve(tmp_path / "data", cluster.url(), workers=1)
    try:
        yield hub
    finally:
        hub.kill()


def test_postgres_crash_fails_calls_fast_then_heals_and_keeps_acknowledged_pushes(
    served: ServedHub, cluster: PostgresCluster, world: DemoWorld, tmp_path: Path
) -> None:
    load = Load(world=world, connect=served.client, fetchers=4, deadline=CALL_DEADLINE)
    load.seed()
    with load:
        load.phase("before the crash")
        crashed_at = time.monotonic()
        acknowledged_before = list(load.acknowledged)
        cluster.stop("immediate")
        # The outage lasts until every thread has been answered (refused) a few times.
        load.phase("during the outage")
        cluster.start()
        back_at = time.monotonic()
        wait_for(
            lambda: (
                load.first_ok_after(back_at) is not None
                and load.first_ok_after(back_at, kind="push") is not None
            ),
            timeout=RECOVERY_SECONDS + CALL_DEADLINE,
            what="a fetch and a push to succeed after PostgreSQL came back",
        )
        load.phase("after recovery")
    calls = load.snapshot()

    assert acknowledged_before, "no push was acknowledged before the crash"
    failed = [c for c in calls if c.code != OK]
    assert failed, "no call failed: the outage was not observed"
    assert {c.code for c in failed} == {"UNAVAILABLE"}, failed
    slow = [c for c in failed if c.seconds > FAIL_FAST_SECONDS]
    assert slow == [], f"calls hung during the outage: {slow[:5]}"
    # Failures belong to the outage (and the reconnects right after it), nothing later.
    late = [c for c in failed if c.started > back_at + RECOVERY_SECONDS]
    assert late == [], late[:5]
    # Recovery by itself, quickly; and the hub is healthy afterwards for both kinds of call.
    first = load.first_ok_after(back_at)
    assert first is not None
    assert first.ended - back_at < RECOVERY_SECONDS
    assert load.first_ok_after(back_at, kind="push") is not None
    assert any(c.code == OK and c.started < crashed_at for c in calls)

    engine = make_engine(cluster.url())
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(select(Certificate.certificate_id)).scalars())
        assert set(acknowledged_before) <= stored
        assert set(load.acknowledged) <= stored
        assert_audit_log_sound(engine, data_dir=tmp_path / "data", db_url=cluster.url())
    finally:
        engine.dispose()
