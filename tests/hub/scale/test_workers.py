"""`certhub serve --workers 2` as a real subprocess on PostgreSQL (and Redis): revocations
seen by every worker, one rate-limit budget for all of them, restarts and clean drains."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from support.served import (
    Deployment,
    ServedHub,
    prepare_deployment,
    serve,
    wait_for,
    with_rate_limit,
)

from certhub.core.rpc.client import HubClient, RateLimitedError
from certhub.hub.demo.world import (
    DemoHolder,
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
    sign_revocation,
)
from certhub.hub.store.models import AuditEntry
from certhub.v1 import common_pb2, intake_pb2

# Rounds of push -> fetch everywhere -> revoke -> fetch everywhere. Each round is a fresh
# holder, so every round exercises a warm cache entry being invalidated.
REVOKE_ROUNDS = 25
# Channels per test, at least: more are opened until both workers hold one.
CHANNELS = 8
ITEM = "公共场所卫生许可（新办）"
WINDOW = "gulou-service-centre"


# Every worker process shares one database: PostgreSQL only.
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _request(world: DemoWorld, holder: DemoHolder, case: str) -> intake_pb2.FetchRequest:
    return intake_pb2.FetchRequest(
        holder=common_pb2.Holder(id_type=common_pb2.USCC, id=holder.holder.id),
        service_item_code=world.item_by_name(ITEM).code,
        case_number=case,
    )


def _statuses(client: HubClient, request: intake_pb2.FetchRequest) -> list[str]:
    response: intake_pb2.FetchResponse = client.call(client.intake.FetchCertificates, request)
    return [common_pb2.CertificateStatus.Name(c.status) for c in response.certificates]


def _hammer(
    client: HubClient,
    request: intake_pb2.FetchRequest,
    stop: threading.Event,
    seen: list[tuple[float, list[str]]],
) -> None:
    """Fetch until told to stop, recording when each fetch started and what it showed."""
    while not stop.is_set():
        started = time.monotonic()
        seen.append((started, _statuses(client, request)))


@pytest.fixture
def windows(request: pytest.FixtureRequest) -> Iterator[list[HubClient]]:
    served: ServedHub = request.getfixturevalue("served")
    clients = served.clients_on_every_worker(WINDOW, at_least=CHANNELS)
    yield clients
    for c in clients:
        c.close()


@pytest.fixture
def served(
    deployment: Deployment, world: DemoWorld, redis_url: str, cache_prefix: str
) -> Iterator[ServedHub]:
    url = redis_url
    prepare_deployment(deployment.data_dir, deployment.engine, world.registry_toml())
    hub = serve(
        deployment.data_dir, deployment.db_url, "--redis", url, "--cache-prefix", cache_prefix
    )
    yield hub
    hub.kill()


def test_no_fetch_after_a_revocation_shows_valid_on_any_worker(
    served: ServedHub, windows: list[HubClient], world: DemoWorld
) -> None:
    licence = world.type_by_name("营业执照")
    amr = world.departments[licence.issuer]
    seen_after_revoke: list[tuple[float, list[str]]] = []
    with served.client(amr.principal) as department:
        for round_ in range(REVOKE_ROUNDS):
            company = enterprise(1000 + round_)
            payload = certificate_payload(world, licence.code, company, serial=round_ + 1)
            department.push(sign_certificate(payload, [amr.key]))
            request = _request(world, company, f"GL-{round_}")
            for client in windows:  # warm: every worker has read (and cached) it as VALID
                assert _statuses(client, request) == ["VALID"]

            # Fetches racing the revocation from other threads, each stamped with its start.
            stop = threading.Event()
            racing: list[tuple[float, list[str]]] = []

            threads = [
                threading.Thread(target=_hammer, args=(c, request, stop, racing))
                for c in windows[:2]
            ]
            for t in threads:
                t.start()
            department.revoke(sign_revocation(payload.certificate_id, amr.key))
            revoked_at = time.monotonic()
            seen_after_revoke += [(revoked_at, _statuses(c, request)) for c in windows]
            stop.set()
            for t in threads:
                t.join()
            seen_after_revoke += [(s, st) for s, st in racing if s > revoked_at]

    assert len(seen_after_revoke) >= REVOKE_ROUNDS * len(windows)
    stale = [st for _, st in seen_after_revoke if st != ["REVOKED"]]
    assert stale == []


def test_rate_limit_is_one_budget_across_workers(
    deployment: Deployment, world: DemoWorld, redis_url: str, cache_prefix: str
) -> None:
    url = redis_url
    burst = 6
    # A refill this slow adds no token during the test: every success comes from the burst.
    registry = with_rate_limit(world.registry_toml(), WINDOW, per_second=0.001, burst=burst)
    prepare_deployment(deployment.data_dir, deployment.engine, registry)
    served = serve(
        deployment.data_dir, deployment.db_url, "--redis", url, "--cache-prefix", cache_prefix
    )
    clients: list[HubClient] = []
    try:
        clients = served.clients_on_every_worker(WINDOW, at_least=CHANNELS)
        request = _request(world, enterprise(1), "GL-RL")
        allowed, refused = 0, []
        for _ in range(3):
            for client in clients:
                try:
                    _statuses(client, request)
                    allowed += 1
                except RateLimitedError as error:
                    refused.append(error)
    finally:
        for c in clients:
            c.close()
        served.kill()

    # Each worker with its own bucket would have let 2 * burst through.
    assert allowed == burst
    assert len(refused) == 3 * len(clients) - burst
    assert all(e.retry_after is not None and e.retry_after > 1 for e in refused)
    assert {e.reason for e in refused} == {"RATE_LIMITED"}
    with deployment.engine.connect() as conn:
        entries = conn.execute(select(AuditEntry.leaf)).scalars().all()
    refusals = [e for e in entries if b'"RESOURCE_EXHAUSTED"' in e and b"FetchCertificates" in e]
    assert len(refusals) == len(refused)


def test_killed_worker_is_restarted_and_sigterm_drains_to_exit_0(
    deployment: Deployment, world: DemoWorld
) -> None:
    prepare_deployment(deployment.data_dir, deployment.engine, world.registry_toml())
    served = serve(deployment.data_dir, deployment.db_url)  # no Redis: cache off, logged
    try:
        first = served.worker_pids()
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: len(served.worker_pids()) == 2 and victim not in served.worker_pids(),
            timeout=20,
            what="the killed worker to be replaced",
        )

        # Calls in flight while SIGTERM arrives: every one answered must be durable.
        request = _request(world, enterprise(3), "GL-DRAIN")
        answered: list[int] = []
        failures: list[Exception] = []
        stop = threading.Event()

        def hammer() -> None:
            with served.client(WINDOW) as client:
                while not stop.is_set():
                    try:
                        response = client.call(client.intake.FetchCertificates, request)
                        answered.append(response.audit_index)
                    except Exception as error:  # the server going away ends the loop
                        failures.append(error)
                        return

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(answered) >= 20, timeout=20, what="fetches to flow")
        status = served.stop(timeout=60)
        stop.set()
        for t in threads:
            t.join()
    finally:
        served.kill()

    log = "".join(served.output)
    assert status == 0, log
    assert "restarting in" in log
    # Two processes and no Redis: why holders are not cached is said once, not per worker
    # (nor again by the restarted one).
    assert log.count("holder cache: off") == 1
    assert "cannot see other processes' invalidations" in log
    assert log.count("stopped") >= 2  # both workers drained and closed their hubs
    with deployment.engine.connect() as conn:
        size = conn.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    assert answered
    assert max(answered) < size
