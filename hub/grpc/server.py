"""Building the gRPC server: services, health, reflection, mTLS or loopback-only insecure."""

from __future__ import annotations

import ipaddress
import logging
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from certhub.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    directory_pb2,
    directory_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    intake_pb2,
    intake_pb2_grpc,
)
from hub.app import Hub
from hub.audit.api import AuditApi
from hub.grpc.audit_servicer import AuditServicer
from hub.grpc.interceptor import EdgeInterceptor
from hub.grpc.servicers import DirectoryServicer, IngestServicer, IntakeServicer
from hub.health import HEALTH_CHECK_SECONDS, HealthChecker
from hub.observability.interceptor import ObservabilityInterceptor
from hub.observability.metrics import MetricsSampler, hub_counter_sources, metrics

log = logging.getLogger("certhub.server")

# Threads serving calls. Calls spend most of their time waiting on the database or the
# group commit, so more threads than cores keep the cores busy; each thread costs ~8 MB.
DEFAULT_MAX_WORKERS = 64
# Largest message accepted: one envelope (1 MiB) plus one attachment (20 MiB) plus framing.
MAX_MESSAGE_BYTES = 22 * 1024 * 1024
# Keepalive: detect dead clients (a window PC unplugged) within a minute.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_connection_idle_ms", 15 * 60_000),
]

SERVICE_NAMES = (
    ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
    intake_pb2.DESCRIPTOR.services_by_name["IntakeService"].full_name,
    directory_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name,
)
AUDIT_SERVICE_NAME = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """PEM files of the server's certificate and key, and of the CA that signs clients."""

    cert: Path
    key: Path
    client_ca: Path

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes(),
            require_client_auth=True,
        )


class InsecureRefused(ValueError):
    """--insecure was asked for on an address that is not loopback."""


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    # Background threads (health checker, metrics sampler) that stop with the server.
    watchers: tuple[HealthChecker | MetricsSampler, ...] = ()

    def stop(self, grace: float | None = None) -> None:
        # NOT_SERVING first, so load balancers move away while in-flight calls drain.
        self.health.enter_graceful_shutdown()
        for watcher in self.watchers:
            watcher.stop()
        self.server.stop(grace).wait()


def build_server(
    hub: Hub,
    *,
    address: str,
    tls: ServerTLS | None,
    max_workers: int = DEFAULT_MAX_WORKERS,
    reflection_enabled: bool = True,
    extra_options: list[tuple[str, int]] | None = None,
    health_interval: float = HEALTH_CHECK_SECONDS,
) -> RunningServer:
    """A started server on ``address``. ``tls=None`` is the development mode: loopback only."""
    if tls is None:
        if not is_loopback(address):
            raise InsecureRefused(f"--insecure serves only on loopback, not on {address}")
        log.warning(
            "INSECURE MODE: no TLS, no client certificates; callers name themselves in the "
            "%s header. Development only.",
            "x-certhub-principal",
        )
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 1),
        *KEEPALIVE_OPTIONS,
        *(extra_options or []),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        # Outermost first: observability sees the status the edge interceptor answered.
        interceptors=[
            ObservabilityInterceptor(insecure=tls is None),
            EdgeInterceptor(hub, insecure=tls is None),
        ],
        options=options,
        maximum_concurrent_rpcs=max_workers * 4,
    )
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(hub), server)
    intake_pb2_grpc.add_IntakeServiceServicer_to_server(IntakeServicer(hub), server)
    directory_pb2_grpc.add_DirectoryServiceServicer_to_server(DirectoryServicer(hub), server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(AuditApi(hub)), server)
    names = [*SERVICE_NAMES, AUDIT_SERVICE_NAME]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if reflection_enabled:
        reflection.enable_server_reflection(
            [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
    port = (
        server.add_insecure_port(address)
        if tls is None
        else server.add_secure_port(address, tls.credentials())
    )
    if port == 0:
        raise OSError(f"could not bind {address}")
    server.start()
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    checker = HealthChecker(
        sessions=hub.sessions,
        servicer=health_servicer,
        services=["", *names],
        interval=health_interval,
    )
    sampler = MetricsSampler(sessions=hub.sessions, counters=hub_counter_sources(hub, metrics()))
    checker.start()
    sampler.start()
    return RunningServer(
        server=server, port=port, health=health_servicer, watchers=(checker, sampler)
    )
