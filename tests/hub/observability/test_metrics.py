"""Metrics as Prometheus sees them: gauges sampled from the database, cache counters copied
from the cache objects, the /metrics endpoint, and one endpoint summing two worker processes."""

from __future__ import annotations

import dataclasses
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from support.hubs import RunningHub
from support.intake import WINDOW, push_licence
from support.redis_server import own_redis_server
from support.served import prepare_deployment, serve, wait_for

from certhub.core.rpc.client import HubClient
from certhub.hub.demo.world import DemoWorld
from certhub.hub.grpc.server import ServerTLS, build_server
from certhub.hub.observability.metrics import HubMetrics, MetricsSampler, serve_metrics
from certhub.hub.runtime import build_hub
from certhub.hub.store.engine import make_session_factory
from certhub.hub.store.models import AuditEntry
from certhub.v1 import common_pb2, intake_pb2


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _sampler(running: RunningHub) -> MetricsSampler:
    return next(w for w in running.server.watchers if isinstance(w, MetricsSampler))


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
        body: bytes = response.read()
    return body.decode()


def test_audit_log_size_checkpoint_age_and_cache_hits_are_sampled(
    running_hub: RunningHub, world: DemoWorld, engine: Engine
) -> None:
    sampler = _sampler(running_hub)
    pushed = push_licence(running_hub, world, 41)
    sampler.sample()
    hits, misses = _sample("certhub_cache_hits_total"), _sample("certhub_cache_misses_total")
    with running_hub.client(WINDOW) as window:
        for case in ("GL-C-1", "GL-C-2"):  # the first reads the database, the second the cache
            window.fetch(
                id_type="USCC",
                holder_id=pushed.holder_id,
                service_item=pushed.item_code,
                case_number=case,
            )
    sampler.sample()
    assert _sample("certhub_cache_misses_total") - misses == 1
    assert _sample("certhub_cache_hits_total") - hits == 1
    # The gauges on a registry of the test's own: other hubs of this test process (earlier
    # tests' leftovers) sample into the process-wide one.
    registry = CollectorRegistry()
    MetricsSampler(sessions=running_hub.hub.sessions, m=HubMetrics(registry)).sample()
    with engine.connect() as conn:
        entries = conn.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    assert registry.get_sample_value("certhub_audit_log_size") == entries > 0
    age = registry.get_sample_value("certhub_audit_checkpoint_age_seconds")
    assert age is not None
    assert 0 <= age < 60


def test_no_checkpoint_age_while_the_log_has_no_checkpoint(engine: Engine) -> None:
    """A fresh log exports no age (alert on absent()); a 0 would read as "just signed"."""
    registry = CollectorRegistry()
    MetricsSampler(sessions=make_session_factory(engine), m=HubMetrics(registry)).sample()
    assert registry.get_sample_value("certhub_audit_log_size") == 0
    assert registry.get_sample_value("certhub_audit_checkpoint_age_seconds") is None
    assert "certhub_audit_checkpoint_age_seconds" not in generate_latest(registry).decode()


def test_grpc_metrics_carry_the_ecosystem_label_names() -> None:
    registry = CollectorRegistry()
    m = HubMetrics(registry)
    m.requests.labels("certhub.v1.IntakeService", "FetchCertificates", "OK").inc()
    labels = {
        "grpc_service": "certhub.v1.IntakeService",
        "grpc_method": "FetchCertificates",
        "grpc_code": "OK",
    }
    assert registry.get_sample_value("certhub_grpc_requests_total", labels) == 1


@pytest.mark.slow
def test_only_the_metrics_path_answers_and_only_hub_series(running_hub: RunningHub) -> None:
    endpoint = serve_metrics(port=0)
    try:
        for path in ("/", "/favicon.ico", "/metricsx"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                _scrape(f"http://127.0.0.1:{endpoint.port}{path}")
            assert refused.value.code == 404
        text = _scrape(f"http://127.0.0.1:{endpoint.port}/metrics")
    finally:
        endpoint.stop()
    # The series a multi-worker endpoint has (the workers' files hold only certhub_*).
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert names
    assert all(name.startswith("certhub_") for name in names), names


@pytest.mark.slow
def test_metrics_endpoint_serves_the_hub_metrics(running_hub: RunningHub) -> None:
    endpoint = serve_metrics(port=0)
    try:
        text = _scrape(f"http://127.0.0.1:{endpoint.port}/metrics")
    finally:
        endpoint.stop()
    for name in (
        "certhub_grpc_requests_total",
        "certhub_grpc_request_duration_seconds_bucket",
        "certhub_audit_log_size",
        "certhub_serving",
    ):
        assert name in text


@pytest.mark.slow
def test_one_endpoint_sums_the_workers_of_certhub_serve(
    tmp_path: Path, world: DemoWorld, database_url: str, engine: Engine
) -> None:
    data_dir = tmp_path / "data"
    prepare_deployment(data_dir, engine, world.registry_toml())
    served = serve(data_dir, database_url, "--metrics-port", "0", workers=2)
    try:
        wait_for(
            lambda: any("certhub metrics on" in line for line in served.output),
            timeout=10,
            what="the metrics endpoint",
        )
        # A log line on stderr (JSON by default) naming the endpoint.
        url = next(
            m.group(1)
            for line in served.output
            if (m := re.search(r"certhub metrics on (http://[^\s\"]+/metrics)", line))
        )
        item = world.item_by_name("公共场所卫生许可（新办）").code
        calls = 12
        for n in range(calls):  # new connections: the kernel spreads them over the workers
            with served.client(WINDOW) as window:
                window.call(
                    window.intake.FetchCertificates,
                    intake_pb2.FetchRequest(
                        holder=common_pb2.Holder(id_type=common_pb2.USCC, id="91350100M000100Y43"),
                        service_item_code=item,
                        case_number=f"GL-W-{n}",
                    ),
                )
        text = _scrape(url)
        served_fetches = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("certhub_grpc_requests_total{")
            and 'grpc_method="FetchCertificates"' in line
            and 'grpc_code="OK"' in line
        )
        assert served_fetches == calls, text
        assert re.search(r"^certhub_serving(\{[^}]*\})? 1\.0$", text, re.MULTILINE), text
        assert served.stop() == 0
    finally:
        served.kill()


def test_a_redis_outage_is_counted_and_fetches_go_on(
    running_hub: RunningHub, world: DemoWorld, tmp_path: Path
) -> None:
    pushed = push_licence(running_hub, world, 42)
    # Another holder for the fetch after the kill: the first one's view is in the hub's near
    # cache by then, which answers without asking Redis.
    other = push_licence(running_hub, world, 43)
    with own_redis_server(tmp_path) as redis_server:
        config = dataclasses.replace(running_hub.config, redis_url=redis_server.url)
        hub = build_hub(config, running_hub.engine)
        pki = config.pki
        server = build_server(
            hub,
            address="127.0.0.1:0",
            tls=ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert),
        )
        try:
            sampler = next(w for w in server.watchers if isinstance(w, MetricsSampler))
            sampler.sample()
            before = _sample("certhub_redis_outages_total", backend="cache")
            client = HubClient.connect(f"localhost:{server.port}", running_hub.tls_for(WINDOW))
            with client:
                for case, licence in (("GL-R-1", pushed), ("GL-R-2", other), ("GL-R-3", pushed)):
                    if case == "GL-R-2":
                        redis_server.kill()
                    fetched = client.fetch(
                        id_type="USCC",
                        holder_id=licence.holder_id,
                        service_item=licence.item_code,
                        case_number=case,
                    )
                    assert [c.certificate_id for c in fetched.certificates] == [
                        licence.certificate_id
                    ]
            sampler.sample()
            assert _sample("certhub_redis_outages_total", backend="cache") - before == 1
        finally:
            server.stop(grace=None)
            hub.close()
