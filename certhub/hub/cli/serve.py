"""`certhub serve`: run the hub until SIGTERM/SIGINT, then drain and flush the audit log.

With ``--workers N`` > 1 the process forks N workers on one port (see ``certhub.hub.workers``)
before anything gRPC or database exists in it; with 1 it serves in this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from certhub.cache.port import check_prefix
from certhub.hub import systemd
from certhub.hub.caching import announce_cache, announce_rate_limits
from certhub.hub.cli.main import CommandError
from certhub.hub.cli.options import (
    add_data_options,
    add_operations_options,
    add_server_options,
    config_from,
)
from certhub.hub.config import ConfigError, add_config_option, apply_config
from certhub.hub.grpc.server import AuditWatch, ServerTLS, build_server, is_loopback
from certhub.hub.observability.logs import configure_logging, set_worker
from certhub.hub.observability.metrics import MetricsEndpoint, prepare_multiprocess, serve_metrics
from certhub.hub.runtime import (
    HubConfig,
    build_hub,
    open_engine,
    schema_problem,
    tune_runtime_for_serving,
)
from certhub.hub.witness.submitter import WitnessEndpoint
from certhub.hub.workers import Supervisor, notify_ready, parent_alive, resolve_port
from certhub.signing import SigningError
from certhub.signing.cosignature import CosignatureVerifier

log = logging.getLogger("certhub.serve")

# Seconds in-flight calls get to finish after SIGTERM before they are cancelled. Longer
# than any healthy call; shorter than the 30 s orchestrators usually wait before SIGKILL.
SHUTDOWN_GRACE_SECONDS = 20.0

# A worker checks this often that its supervisor still lives, so killing the supervisor
# with SIGKILL does not leave orphan workers holding the port.
PARENT_CHECK_SECONDS = 1.0

# Worker slots travel to the supervisor as one byte each; far above any core count a
# single machine running the hub has.
MAX_WORKERS = 255

DEFAULT_CACHE_PREFIX = "certhub"


class _Append(argparse._AppendAction):  # argparse has no public base for it
    """``append`` that starts a new list over the default: hub.config wraps every default
    in a marker (to tell given options from defaults) that the stock ``append`` cannot
    append to. A subclass of ``_AppendAction`` so the environment's comma lists apply."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        items = list(current) if isinstance(current, list) else []
        items.append(values)
        setattr(namespace, self.dest, items)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the hub", description="Serve the certhub gRPC services over mTLS."
    )
    add_data_options(parser)
    add_server_options(parser)
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="hub processes sharing the port (default: the number of cores, here "
        f"{os.cpu_count() or 1}); more than one needs --redis to cache holders",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="Redis for the shared holder cache and rate limits, e.g. redis://127.0.0.1:6379/0",
    )
    parser.add_argument(
        "--cache-prefix",
        default=DEFAULT_CACHE_PREFIX,
        help="namespace of this deployment's keys in Redis, so several hubs can share one "
        f"(default: {DEFAULT_CACHE_PREFIX})",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="serve every fetch from the database (rate limits still apply)",
    )
    parser.add_argument(
        "--witness",
        action=_Append,
        default=[],
        metavar="VKEY=URL",
        help="a witness to submit each new checkpoint to: its key (`certhub witness vkey`) "
        "and the URL its add-checkpoint is served under; repeat for each witness "
        "(docs/trust.md)",
    )
    parser.add_argument(
        "--witness-quorum",
        type=int,
        default=0,
        metavar="K",
        help="cosignatures needed to publish a checkpoint, and that the self-check requires "
        "of the newest cosigned one (default: every --witness)",
    )
    add_operations_options(parser)
    add_config_option(parser)  # last: layers every option above (CLI > env > file)
    parser.set_defaults(func=run)


def serve_config(args: argparse.Namespace) -> HubConfig:
    if not 1 <= args.workers <= MAX_WORKERS:
        raise CommandError(f"--workers must be between 1 and {MAX_WORKERS}, got {args.workers}")
    try:
        check_prefix(args.cache_prefix)
    except ValueError as e:
        raise CommandError(f"--cache-prefix: {e}") from e
    return dataclasses.replace(
        config_from(args),
        redis_url=args.redis,
        cache_enabled=not args.no_cache,
        cache_prefix=args.cache_prefix,
        workers=args.workers,
        reflection=args.reflection,
    )


def audit_watch(args: argparse.Namespace) -> AuditWatch:
    """The witnesses and quorum of ``--witness``/``--witness-quorum``, checked."""
    witnesses = []
    for given in args.witness:
        vkey, sep, url = given.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise CommandError(
                f"--witness {given!r}: expected VKEY=URL, e.g. "
                "witness.example/w1+850a23ce+BP4I...=https://witness.example:8390"
            )
        try:
            verifier = CosignatureVerifier.from_vkey(vkey)
        except SigningError as e:
            raise CommandError(f"--witness: {e}") from e
        witnesses.append(WitnessEndpoint(verifier=verifier, url=url))
    quorum = args.witness_quorum
    if quorum and not 1 <= quorum <= len(witnesses):
        raise CommandError(
            f"--witness-quorum {quorum} needs between 1 and {len(witnesses)} (the --witness count)"
        )
    return AuditWatch(witnesses=tuple(witnesses), quorum=quorum)


def run(args: argparse.Namespace) -> int:
    try:
        apply_config(args)
    except ConfigError as e:
        raise CommandError(str(e)) from e
    configure_logging(
        log_format=args.log_format,
        level=logging.DEBUG if args.verbose else logging.INFO,
        access_log=args.access_log,
    )
    config = serve_config(args)
    watch = audit_watch(args)
    tls = _server_tls(config)
    _check_writable(config)
    if config.workers == 1:
        endpoint = _metrics_endpoint(args)
        try:
            return _serve(
                config,
                tls,
                watch,
                on_serving=_announce(config),
                on_stopping=systemd.notify_stopping,
            )
        finally:
            if endpoint is not None:
                endpoint.stop()
    return _supervise(args, config, tls, watch)


def _supervise(
    args: argparse.Namespace, config: HubConfig, tls: ServerTLS | None, watch: AuditWatch
) -> int:
    """``--workers N`` > 1: check once what every worker would fail on, fork, supervise."""
    set_worker("supervisor")  # this process's lines; each forked worker names its slot
    # Everything a worker would fail on identically is checked once here, so a bad setup
    # is one clear error rather than N workers in a restart loop.
    config = dataclasses.replace(config, address=resolve_port(config.address))
    engine = open_engine(config)
    try:
        problem = schema_problem(engine)
        if problem is not None:
            raise CommandError(problem)
    finally:
        engine.dispose()  # no pooled connection may cross the fork
    # Said once here; the forked workers inherit that it was said.
    announce_cache(enabled=config.cache_enabled, redis_url=config.redis_url, workers=config.workers)
    announce_rate_limits(redis_url=config.redis_url, workers=config.workers)
    parent = os.getpid()

    def worker(slot: int, ready_fd: int) -> int:
        set_worker(slot)
        # systemd hears from the supervisor (the unit's main process) only: a worker's
        # READY=1 would be refused under NotifyAccess=main, or premature under =all.
        os.environ.pop(systemd.NOTIFY_SOCKET_ENV, None)
        try:
            # Every worker checks the log it serves; slot 0 alone submits to the witnesses
            # (certhub.hub.grpc.server.AuditWatch says why). Their full passes are spread over the
            # interval, so N workers do not all read the whole log at once.
            stagger = slot * watch.full_every / config.workers
            return _serve(
                config,
                tls,
                dataclasses.replace(watch, submit=slot == 0, first_full_after=stagger),
                on_serving=lambda _port: notify_ready(ready_fd, slot),
                keep_going=lambda: parent_alive(parent),
            )
        except CommandError as e:
            log.error("worker %d: %s", slot, e)
            return 1

    # Before the fork: workers write their samples as files the parent's endpoint sums.
    samples = prepare_multiprocess() if args.metrics_port is not None else None
    endpoints: list[MetricsEndpoint] = []

    def ready() -> None:
        _banner(config.address, workers=config.workers)
        # After the fork: the endpoint's thread must not be copied into the workers.
        try:
            endpoints.extend(e for e in [_metrics_endpoint(args)] if e is not None)
        except CommandError as e:
            log.error("serving without metrics: %s", e)

    supervisor = Supervisor(
        count=config.workers,
        main=worker,
        grace_seconds=SHUTDOWN_GRACE_SECONDS,
        on_ready=ready,
        on_stopping=systemd.notify_stopping,
    )
    log.info("starting %d workers on %s", config.workers, config.address)
    try:
        return supervisor.run()
    finally:
        for endpoint in endpoints:
            endpoint.stop()
        if samples is not None:
            samples.cleanup()


def _metrics_endpoint(args: argparse.Namespace) -> MetricsEndpoint | None:
    if args.metrics_port is None:
        return None
    try:
        endpoint = serve_metrics(port=args.metrics_port, host=args.metrics_host)
    except OSError as e:
        raise CommandError(
            f"--metrics-port: cannot listen on {args.metrics_host}:{args.metrics_port} ({e})"
        ) from e
    url = f"http://{args.metrics_host}:{endpoint.port}/metrics"
    # A log line on stderr like the serving banner: stdout stays free of start-up text.
    log.info("certhub metrics on %s", url, extra={"metrics_url": url})
    return endpoint


def _check_writable(config: HubConfig) -> None:
    """SQLite writes its database, WAL and lock files beside each other: a read-only or
    unwritable directory is one clear line here, not a driver traceback from each worker."""
    url = make_url(config.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    directory = Path(url.database).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise CommandError(
            f"cannot write the SQLite database's directory {directory}: {e.strerror}"
        ) from e


def _server_tls(config: HubConfig) -> ServerTLS | None:
    if config.insecure:
        if not is_loopback(config.address):
            # Refused before anything starts (and before any worker forks), as one clear line.
            raise CommandError(
                f"--insecure serves only on loopback (127.0.0.1, ::1, localhost), "
                f"not on {config.address}"
            )
        return None
    pki = config.pki
    if not pki.server_cert.exists():
        raise CommandError(f"no server certificate at {pki.server_cert}: run `certhub init`")
    return ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert)


def _banner(address: str, *, workers: int) -> None:
    """Say the hub accepts calls: one log line on stderr (JSON with ``--log-format json``;
    ``certhub serving on HOST:PORT`` in its message either way), then READY=1 to systemd when
    it runs the hub as a ``Type=notify`` unit."""
    log.info(
        "certhub serving on %s (%d %s)",
        address,
        workers,
        "worker" if workers == 1 else "workers",
        extra={"address": address, "workers": workers},
    )
    systemd.notify_ready(f"serving on {address}")


def _announce(config: HubConfig) -> Any:
    def announce(port: int) -> None:
        _banner(f"{config.address.rsplit(':', 1)[0]}:{port}", workers=1)

    return announce


def _serve(
    config: HubConfig,
    tls: ServerTLS | None,
    watch: AuditWatch,
    *,
    on_serving: Any,
    on_stopping: Any = lambda: None,
    keep_going: Any = lambda: True,
) -> int:
    """Serve in this process until SIGTERM/SIGINT (or ``keep_going()`` turns False)."""
    # First, so a SIGTERM during start-up still ends in a drain rather than the default kill.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    engine = open_engine(config)
    try:
        hub = build_hub(config, engine)
    except RuntimeError as e:
        engine.dispose()
        raise CommandError(str(e)) from e
    try:
        server = build_server(
            hub,
            address=config.address,
            tls=tls,
            reflection_enabled=config.reflection,
            audit_watch=watch,
        )
    except (OSError, RuntimeError) as e:  # grpcio reports a failed bind as RuntimeError
        hub.close()
        engine.dispose()
        raise CommandError(f"cannot serve on {config.address}: {e}") from e
    tune_runtime_for_serving()
    log.info("serving on %s (%s)", config.address, "INSECURE" if tls is None else "mTLS")
    on_serving(server.port)
    while not stop.wait(PARENT_CHECK_SECONDS):
        if not keep_going():
            log.warning("supervisor is gone: stopping")
            break
    on_stopping()
    log.info("stopping: draining in-flight calls for up to %.0f s", SHUTDOWN_GRACE_SECONDS)
    server.stop(grace=SHUTDOWN_GRACE_SECONDS)
    hub.close()
    engine.dispose()
    log.info("stopped")
    return 0
