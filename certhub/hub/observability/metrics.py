"""Prometheus metrics for the hub, in one process or across ``--workers`` processes.

One process: ``serve_metrics(port=...)`` serves the default registry. Several processes
(``certhub serve --workers N``): the parent calls ``prepare_multiprocess()`` BEFORE it forks
(prometheus_client decides at metric creation where values live, and every worker must write
its samples as files into one directory), then ``serve_metrics`` AFTER forking (one endpoint
for the whole machine that sums the workers' files). A dead worker's live gauges disappear
at the next scrape (the endpoint checks which writers still live); a supervisor may also say
so at once with ``worker_exited(pid)``. Workers only build their server. ``certhub serve``
(``certhub.hub.cli.serve``) does all of this.

Counters the hub's other parts keep themselves (cache hits, Redis outages) and gauges that
live in the database (audit log size, last checkpoint) are copied into metrics by a
``MetricsSampler`` thread every few seconds, so the hot path only increments in-memory ints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import socket
import socketserver
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
    multiprocess,
    values,
)
from sqlalchemy import select

from certhub.hub.store.engine import session_scope, stored_utc
from certhub.hub.store.models import LogCheckpoint, LogHead

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "MULTIPROC_ENV",
    "CounterSource",
    "HubMetrics",
    "MetricsEndpoint",
    "MetricsSampler",
    "MultiprocessDir",
    "hub_counter_sources",
    "metrics",
    "prepare_multiprocess",
    "serve_metrics",
    "worker_exited",
]

log = logging.getLogger("certhub.metrics")

# prometheus_client's switch for multi-process mode: the directory the workers write into.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# How often the sampler copies counters and database gauges into metrics. Prometheus scrapes
# every 15-60 s; sampling every 5 s keeps the values at most one scrape behind, at the cost
# of two tiny queries per process every 5 s.
SAMPLE_SECONDS = 5.0
# Latency buckets (seconds): from a cached fetch (~1 ms) to the client's 10 s deadline
# (certhub.core.rpc.client.DEFAULT_TIMEOUT_SECONDS), roughly x2.5 apart like Prometheus' defaults.
# The label names of the gRPC ecosystem's server metrics (go-grpc-prometheus,
# grpc-ecosystem/java-grpc-prometheus, py-grpc-prometheus), so stock dashboards and alerts
# work on the hub's series: service, method, status code.
GRPC_LABELS = ("grpc_service", "grpc_method", "grpc_code")
# The one path that answers metrics; anything else is 404 (a scraper misconfigured to "/"
# should fail loudly, not silently work on one hub and not on another).
METRICS_PATH = "/metrics"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HubMetrics:
    """The metrics one hub process updates. Create through ``metrics()`` (once per process)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._checkpoint_age: Gauge | None = None
        self.requests = Counter(
            "certhub_grpc_requests",
            "gRPC calls served, by service, method and status code",
            list(GRPC_LABELS),
            registry=registry,
        )
        self.latency = Histogram(
            "certhub_grpc_request_duration_seconds",
            "Time from the call's arrival to its status, by service and method",
            list(GRPC_LABELS[:2]),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.pushes = Counter(
            "certhub_pushes", "Certificates pushed, by outcome", ["outcome"], registry=registry
        )
        self.cache_hits = Counter(
            "certhub_cache_hits", "Holder reads answered from the cache", registry=registry
        )
        self.cache_misses = Counter(
            "certhub_cache_misses", "Holder reads that went to the database", registry=registry
        )
        self.redis_outages = Counter(
            "certhub_redis_outages",
            "Times a Redis backend went from usable to unavailable (the hub fell back to the "
            "database)",
            ["backend"],
            registry=registry,
        )
        self.refusals_suppressed = Counter(
            "certhub_refusals_suppressed",
            "Refused calls answered RESOURCE_EXHAUSTED by their principal's refusal budget "
            "without an audit entry of their own (certhub.hub.audit.budget)",
            registry=registry,
        )
        self.unusable_certificates = Counter(
            "certhub_unusable_certificates",
            "Reads from the database that found a stored certificate's envelope unusable (a "
            "damaged row: served as UNUSABLE, the holder's others as usual); alert on any",
            registry=registry,
        )
        self.audit_log_size = Gauge(
            "certhub_audit_log_size",
            "Entries in the audit log (size of the latest tree)",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.audit_selfcheck_failed = Gauge(
            "certhub_audit_selfcheck_failed",
            "1 once this process's audit self-check found the served log inconsistent with "
            "a checkpoint it verified (alert on it), else 0",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.audit_selfcheck_first_bad_index = Gauge(
            "certhub_audit_selfcheck_first_bad_index",
            "The first bad audit index the self-check found (-1 while none)",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.audit_selfcheck_first_bad_index.set(-1)
        self.audit_selfcheck_anchor_size = Gauge(
            "certhub_audit_selfcheck_anchor_size",
            "Size of the newest checkpoint the audit self-check verified and holds as its "
            "anchor (the smallest over live workers: how far every process has checked)",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.serving = Gauge(
            "certhub_serving",
            "1 while this process reports SERVING (database reachable, schema current), else 0",
            registry=registry,
            multiprocess_mode="livemin",
        )

    @property
    def checkpoint_age(self) -> Gauge:
        """Created at the first checkpoint, so that a log with none exports no age at all
        (alert on ``absent(...)``): a 0 would read as "just signed" and hide the alert."""
        with self._lock:
            if self._checkpoint_age is None:
                self._checkpoint_age = Gauge(
                    "certhub_audit_checkpoint_age_seconds",
                    "Seconds since the latest signed checkpoint was written (absent while "
                    "the log has no checkpoint)",
                    registry=self._registry,
                    multiprocess_mode="livemin",
                )
            return self._checkpoint_age


_metrics: HubMetrics | None = None
_metrics_lock = threading.Lock()


def metrics() -> HubMetrics:
    """This process's metrics, created on first use (after any fork)."""
    global _metrics  # noqa: PLW0603 - one set of metrics per process, created lazily
    with _metrics_lock:
        if _metrics is None:
            _metrics = HubMetrics()
        return _metrics


# --- processes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MultiprocessDir:
    """Where the workers write their samples; ``owned`` when this process made it."""

    path: Path
    owned: bool

    def cleanup(self) -> None:
        """At the parent's exit: remove the directory if it was a temporary one."""
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)


def prepare_multiprocess(directory: Path | None = None) -> MultiprocessDir:
    """Call in the parent before forking workers: every process then writes its samples
    into one directory, emptied here (stale files of a previous run would be summed in).

    Uses ``$PROMETHEUS_MULTIPROC_DIR`` if the operator set it, else ``directory``, else a new
    temporary directory (removed by ``cleanup``).
    """
    given = os.environ.get(MULTIPROC_ENV) or directory
    chosen = Path(given) if given else Path(tempfile.mkdtemp(prefix="certhub-metrics-"))
    chosen.mkdir(parents=True, exist_ok=True)
    for stale in chosen.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(chosen)
    # prometheus_client picks its value class when it is imported, which happened before the
    # environment variable was set; pick again so metrics created after the fork use files.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return MultiprocessDir(path=chosen, owned=not given)


def worker_exited(pid: int) -> None:
    """Call in the parent when it reaps a worker: its ``live*`` gauges stop counting."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


@dataclass
class MetricsEndpoint:
    """The running ``/metrics`` HTTP server."""

    server: WSGIServer
    thread: threading.Thread
    port: int

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve_metrics(*, port: int, host: str = "127.0.0.1") -> MetricsEndpoint:
    """Serve ``/metrics`` on ``host:port`` (port 0 = any free port; see ``.port``).

    In multi-process mode (after ``prepare_multiprocess``) the endpoint sums every worker's
    files; call it in the parent after forking, not in the workers.
    """
    registry = CollectorRegistry()
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry.register(_ForgetDeadWorkers(Path(directory)))
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        # The same series as with workers, whose files hold only the hub's own metrics:
        # not prometheus_client's process_* and python_* of one process.
        registry.register(_HubSeriesOnly())
    app = make_wsgi_app(registry)

    def only_metrics(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"not found: metrics are at {METRICS_PATH}\n".encode()]
        return app(environ, start_response)

    server_class: type[WSGIServer] = _MetricsServer
    if ":" in host:
        server_class = _MetricsServer6
    server = make_server(host, port, only_metrics, server_class, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return MetricsEndpoint(server=server, thread=thread, port=server.server_port)


class _MetricsServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _MetricsServer6(_MetricsServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Scrapes are not news; the hub's own log says what matters."""


class _HubSeriesOnly:
    """The default registry's ``certhub_*`` families."""

    def collect(self) -> list[Any]:
        return [m for m in REGISTRY.collect() if m.name.startswith("certhub_")]


class _ForgetDeadWorkers:
    """Registered before the multi-process collector: a worker that died without the parent
    calling ``worker_exited`` (a crash the supervisor reaped) stops counting in live gauges."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> list[Any]:
        for path in self._directory.glob("gauge_live*_*.db"):
            pid = path.stem.rsplit("_", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
                    int(pid), str(self._directory)
                )
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- counters kept elsewhere ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CounterSource:
    """A monotonically increasing int kept by some object, copied into a Prometheus counter."""

    counter: Any  # a prometheus_client Counter (or labelled child)
    read: Callable[[], int]


def _int_attribute(obj: object, name: str) -> Callable[[], int] | None:
    value = getattr(obj, name, None)
    if isinstance(value, int) and not isinstance(value, bool):
        return lambda: int(getattr(obj, name))
    return None


def hub_counter_sources(hub: Any, m: HubMetrics) -> list[CounterSource]:
    """The counters the hub's cache objects keep, found by name so that neither certhub/cache/ nor
    hub.caching knows Prometheus: ``hits`` and ``misses`` (or ``loads``: reads that went to
    the database) and ``outages`` on the holder cache (``certhub.hub.caching.HolderScopes``) or its
    backend, ``outages`` on the hub's rate limiter."""
    sources: list[CounterSource] = []
    cache = getattr(hub, "cache", None)
    found: dict[str, Callable[[], int]] = {}
    for layer in (cache, getattr(cache, "backend", None)):
        for attribute, name in (
            ("hits", "hits"),
            ("misses", "misses"),
            ("loads", "misses"),
            ("outages", "outages"),
        ):
            read = _int_attribute(layer, attribute) if layer is not None else None
            if read is not None:
                found.setdefault(name, read)
    if "hits" in found and "misses" in found:
        sources += [CounterSource(m.cache_hits, found["hits"])]
        sources += [CounterSource(m.cache_misses, found["misses"])]
    if "outages" in found:
        sources.append(CounterSource(m.redis_outages.labels("cache"), found["outages"]))
    limiter = getattr(hub, "rate_limiter", None)
    read = _int_attribute(limiter, "outages") if limiter is not None else None
    if read is not None:
        sources.append(CounterSource(m.redis_outages.labels("rate_limit"), read))
    return sources


class MetricsSampler:
    """A daemon thread that copies counters and database gauges into metrics every few
    seconds. ``stop`` ends it; a failed sample is logged at debug and retried next time (a
    database outage is the health checker's news, not ours)."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        counters: Sequence[CounterSource] = (),
        m: HubMetrics | None = None,
        interval: float = SAMPLE_SECONDS,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._sessions = sessions
        self._counters = list(counters)
        self._seen = [0] * len(self._counters)
        self._m = m or metrics()
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()  # sample() may also be called from outside the thread
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def sample(self) -> None:
        """One round: counters first (they cannot fail), then the database gauges."""
        with self._lock:
            self._sample()

    def _sample(self) -> None:
        for i, source in enumerate(self._counters):
            with contextlib.suppress(Exception):
                value = source.read()
                # A counter that went down belongs to a new object: count it from zero.
                delta = value - self._seen[i] if value >= self._seen[i] else value
                if delta:
                    source.counter.inc(delta)
                self._seen[i] = value
        with session_scope(self._sessions) as session:
            size = session.scalar(select(LogHead.size).limit(1))
            # The newest checkpoint is the largest tree: read through the primary key, not
            # max(created_at), which would scan every checkpoint ever written.
            latest = session.scalar(
                select(LogCheckpoint.created_at).order_by(LogCheckpoint.size.desc()).limit(1)
            )
        self._m.audit_log_size.set(size or 0)
        if latest is not None:
            age = self._clock() - stored_utc(latest)
            self._m.checkpoint_age.set(max(0.0, age.total_seconds()))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as error:  # the next round retries
                log.debug("metrics sample failed: %s", type(error).__name__)
            self._stop.wait(self._interval)
