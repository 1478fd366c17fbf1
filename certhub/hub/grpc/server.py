"""Building the gRPC server: services, health, reflection, mTLS or loopback-only insecure."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import Coroutine
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as aio_health
from grpc_reflection.v1alpha import reflection

from certhub.core.rpc.channel import INSECURE_PRINCIPAL_HEADER, MAX_MESSAGE_BYTES
from certhub.hub.app import Hub
from certhub.hub.audit.selfcheck import (
    DEFAULT_FULL_EVERY_SECONDS,
    DEFAULT_INTERVAL_SECONDS,
    AuditSelfCheck,
    Failure,
)
from certhub.hub.auditing import AuditApi
from certhub.hub.grpc.audit_servicer import AuditServicer
from certhub.hub.grpc.citizen_servicer import CitizenServicer
from certhub.hub.grpc.interceptor import EdgeInterceptor
from certhub.hub.grpc.servicers import DirectoryServicer, IngestServicer, IntakeServicer
from certhub.hub.health import HEALTH_CHECK_SECONDS, HealthChecker
from certhub.hub.observability.calls import CallObserver
from certhub.hub.observability.metrics import MetricsSampler, hub_counter_sources, metrics
from certhub.hub.services.registry_store import RELOAD_INTERVAL_SECONDS
from certhub.hub.witness.submitter import WitnessEndpoint, WitnessSubmitter
from certhub.signing import NoteVerifier
from certhub.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    citizen_pb2,
    citizen_pb2_grpc,
    directory_pb2,
    directory_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    intake_pb2,
    intake_pb2_grpc,
)

log = logging.getLogger("certhub.server")

# Calls served at once by one process. Calls are coroutines (a few KB each, no thread), so
# this bounds memory, not concurrency of work: it must hold every department's open push
# streams (a province has hundreds of departments, a few streams each) plus the windows'
# calls in flight; past it gRPC answers RESOURCE_EXHAUSTED instead of queueing.
MAX_CONCURRENT_RPCS = 10_000
# Threads that wait on synchronous sessions for the loop (cache-miss reads, audit queries,
# stats): as many as the PostgreSQL pool gives one process, so none waits for a connection
# while holding a thread.
IO_THREADS = 8
# How long another thread waits for the loop to run a small coroutine (health status).
LOOP_CALL_SECONDS = 10.0
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
    citizen_pb2.DESCRIPTOR.services_by_name["CitizenService"].full_name,
)
AUDIT_SERVICE_NAME = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditWatch:
    """How a serving process watches its own audit log (docs/trust.md, "Self-check while
    serving" and "Witnesses").

    Every serving process runs the self-check: health is answered per process, and a load
    balancer's probe reaches whichever worker accepted its connection, so each worker must
    know for itself. Only the process with ``submit`` (worker slot 0 of ``certhub serve
    --workers N``) submits checkpoints to the witnesses: one submitter per machine is
    enough, and several would send each checkpoint N times (harmless, the 409 rule sorts
    it out, but N times the witnesses' work).
    """

    selfcheck: bool = True
    witnesses: tuple[WitnessEndpoint, ...] = ()
    # Cosignatures needed to publish (and that the self-check requires); 0 = every witness.
    quorum: int = 0
    submit: bool = True
    interval: float = DEFAULT_INTERVAL_SECONDS
    full_every: float = DEFAULT_FULL_EVERY_SECONDS
    # Seconds before this process's first full pass (0: at once); see certhub serve.
    first_full_after: float = 0.0

    @property
    def required(self) -> int:
        return self.quorum or len(self.witnesses)


DEFAULT_AUDIT_WATCH = AuditWatch()


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


class _LoopHealth:
    """The async health servicer, driven from other threads (the health checker's)."""

    def __init__(
        self, servicer: aio_health.HealthServicer, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._servicer = servicer
        self._loop = loop

    def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        self._call(self._servicer.set(service, status))

    def enter_graceful_shutdown(self) -> None:
        self._call(self._servicer.enter_graceful_shutdown())

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(LOOP_CALL_SECONDS)


@dataclass
class RunningServer:
    """A grpc.aio server serving on its own event loop thread: the process's serving loop.

    Everything a call does runs on that loop; ``stop`` may be called from any other thread.
    """

    server: grpc.aio.Server
    port: int
    health: _LoopHealth
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    hub: Hub
    # Background threads (health checker, metrics sampler) that stop with the server.
    watchers: tuple[HealthChecker | MetricsSampler, ...] = ()
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    selfcheck: AuditSelfCheck | None = None
    submitter: WitnessSubmitter | None = None

    def stop(self, grace: float | None = None) -> None:
        if not self.thread.is_alive():
            return
        # NOT_SERVING first, so load balancers move away while in-flight calls drain.
        self.health.enter_graceful_shutdown()
        for watcher in self.watchers:
            watcher.stop()
        asyncio.run_coroutine_threadsafe(self._stop(grace), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()

    async def _stop(self, grace: float | None) -> None:
        for component in (self.selfcheck, self.submitter):
            if component is not None:
                component.stop()
        for task in self.tasks:
            task.cancel()
        await self.server.stop(grace)
        await self.hub.close_async()


def build_server(
    hub: Hub,
    *,
    address: str,
    tls: ServerTLS | None,
    reflection_enabled: bool = True,
    extra_options: list[tuple[str, int]] | None = None,
    health_interval: float = HEALTH_CHECK_SECONDS,
    audit_watch: AuditWatch = DEFAULT_AUDIT_WATCH,
) -> RunningServer:
    """A started server on ``address``, serving from a new event loop thread. ``tls=None``
    is the development mode: loopback only."""
    if tls is None:
        if not is_loopback(address):
            raise InsecureRefused(f"--insecure serves only on loopback, not on {address}")
        log.warning(
            "INSECURE MODE: no TLS, no client certificates; callers name themselves in the "
            "%s header. Development only.",
            INSECURE_PRINCIPAL_HEADER,
        )
    loop = asyncio.new_event_loop()
    # Synchronous sessions (cache misses, audit queries, stats) wait in these threads.
    loop.set_default_executor(
        futures.ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="certhub-io")
    )
    thread = threading.Thread(target=loop.run_forever, name="grpc-loop", daemon=True)
    thread.start()
    try:
        server, port, servicer = asyncio.run_coroutine_threadsafe(
            _start(
                hub,
                address=address,
                tls=tls,
                reflection_enabled=reflection_enabled,
                extra_options=extra_options or [],
            ),
            loop,
        ).result()
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        raise
    board = _LoopHealth(servicer, loop)
    names = ["", *SERVICE_NAMES, AUDIT_SERVICE_NAME]
    checker = HealthChecker(
        sessions=hub.sessions, servicer=board, services=names, interval=health_interval
    )
    sampler = MetricsSampler(sessions=hub.sessions, counters=hub_counter_sources(hub, metrics()))
    checker.start()
    sampler.start()
    running = RunningServer(
        server=server,
        port=port,
        health=board,
        loop=loop,
        thread=thread,
        hub=hub,
        watchers=(checker, sampler),
    )
    running.tasks.append(
        asyncio.run_coroutine_threadsafe(_spawn(_refresh_registry(hub)), loop).result()
    )
    _watch_audit_log(running, checker, audit_watch)
    return running


def _watch_audit_log(running: RunningServer, checker: HealthChecker, watch: AuditWatch) -> None:
    """Start the self-check and, where configured, the witness submitter on the loop."""
    hub, loop = running.hub, running.loop
    witnesses = [w.verifier for w in watch.witnesses]
    if watch.selfcheck:

        def on_failure(failure: Failure) -> None:
            # Called on the loop; holding publishes through the loop, so from a thread.
            problem = f"audit self-check: first bad index {failure.index}: {failure.message}"
            loop.run_in_executor(None, checker.hold, AUDIT_SERVICE_NAME, problem)

        running.selfcheck = AuditSelfCheck(
            sessions=hub.sessions,
            verifier=NoteVerifier.from_vkey(hub.audit_log.keys.signer.vkey),
            witnesses=witnesses,
            quorum=watch.required if witnesses else 0,
            interval=watch.interval,
            full_every=watch.full_every,
            first_full_after=watch.first_full_after,
            on_failure=on_failure,
        )
        running.tasks.append(
            asyncio.run_coroutine_threadsafe(_spawn(running.selfcheck.run()), loop).result()
        )
    if watch.witnesses and watch.submit:
        running.submitter = WitnessSubmitter(
            sessions=hub.sessions, witnesses=watch.witnesses, quorum=watch.required
        )
        running.tasks.append(
            asyncio.run_coroutine_threadsafe(_spawn(running.submitter.run()), loop).result()
        )


async def _spawn(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(coroutine)


async def _refresh_registry(hub: Hub) -> None:
    """Re-read the registry in the thread pool, so a call never waits on that query on
    the loop (``RegistrySource.current`` only re-checks inline when this falls behind)."""
    while True:
        await asyncio.sleep(RELOAD_INTERVAL_SECONDS / 2)
        try:
            await asyncio.to_thread(hub.registry_source.refresh)
        except Exception:  # the database is down: the health checker says so
            log.debug("registry refresh failed", exc_info=True)


async def _start(
    hub: Hub,
    *,
    address: str,
    tls: ServerTLS | None,
    reflection_enabled: bool,
    extra_options: list[tuple[str, int]],
) -> tuple[grpc.aio.Server, int, aio_health.HealthServicer]:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 1),
        *KEEPALIVE_OPTIONS,
        *extra_options,
    ]
    server = grpc.aio.server(
        interceptors=[
            EdgeInterceptor(hub, insecure=tls is None, observer=CallObserver()),
        ],
        options=options,
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(hub), server)
    intake_pb2_grpc.add_IntakeServiceServicer_to_server(IntakeServicer(hub), server)
    directory_pb2_grpc.add_DirectoryServiceServicer_to_server(DirectoryServicer(hub), server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(AuditApi(hub)), server)
    citizen_pb2_grpc.add_CitizenServiceServicer_to_server(CitizenServicer(hub), server)
    names = [*SERVICE_NAMES, AUDIT_SERVICE_NAME]
    health_servicer = aio_health.HealthServicer()
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
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer
