"""`certhub adapter ...`: keygen, run (continuous or --once), status, retry-rejected."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from adapters.config import DEFAULT_STREAMS, MAX_STREAMS, AdapterConfig, load_config
from adapters.errors import AdapterError
from adapters.metrics import serve_outbox_metrics
from adapters.outbox import Outbox, StatusReport
from adapters.progress import Progress
from adapters.runner import Adapter, describe
from signing import Algorithm, PrivateKey

__all__ = ["register"]

log = logging.getLogger("certhub.adapter")

#: keygen's default start of the key's validity. The hub checks a certificate's signature
#: against the key valid on its *issue date*, so a key that backfills history must be
#: valid from before the oldest certificate it signs; 2000-01-01 predates electronic
#: licences in China.
DEFAULT_NOT_BEFORE = dt.date(2000, 1, 1)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "adapter",
        help="department adapter: sign records from a database or export files and push them",
        description="Turn a department's records into signed certificates in the hub. "
        "See docs/adapters.md for the config file.",
    )
    commands = parser.add_subparsers(dest="adapter_command", required=True, metavar="ACTION")

    keygen = commands.add_parser(
        "keygen", help="create the department's signing key; print its registry block"
    )
    keygen.add_argument("--out", type=Path, required=True, help="PEM file to write (mode 0600)")
    keygen.add_argument(
        "--algorithm",
        choices=[a.value for a in Algorithm],
        default=Algorithm.ED25519.value,
        help="signature algorithm (default: ed25519)",
    )
    keygen.add_argument(
        "--not-before",
        type=dt.date.fromisoformat,
        default=DEFAULT_NOT_BEFORE,
        help="first day the key is valid, as printed for the registry; must precede the "
        f"oldest issue date it signs (default: {DEFAULT_NOT_BEFORE})",
    )
    keygen.add_argument(
        "--password-env",
        metavar="VAR",
        help="encrypt the PEM with the password in this environment variable",
    )
    keygen.set_defaults(func=_keygen)

    run = commands.add_parser("run", help="read, sign and push; keep polling unless --once")
    run.add_argument("--config", type=Path, required=True, help="the adapter's TOML config")
    run.add_argument(
        "--once", action="store_true", help="one pass over the source, drain the outbox, exit"
    )
    run.add_argument(
        "--no-progress", action="store_true", help="no progress bar or progress log lines"
    )
    run.add_argument(
        "--streams",
        type=int,
        default=None,
        metavar="N",
        help=f"concurrent push streams, each on its own connection (1-{MAX_STREAMS}); "
        "overrides [outbox].streams (default there: "
        f"{DEFAULT_STREAMS}, the hub's usual worker count)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics (outbox depth, rejections, last success) on "
        "127.0.0.1:PORT/metrics while running",
    )
    run.set_defaults(func=_run)

    status = commands.add_parser(
        "status", help="outbox depth, last success, rejected items and reported rows"
    )
    status.add_argument("--config", type=Path, required=True)
    status.set_defaults(func=_status)

    retry = commands.add_parser(
        "retry-rejected", help="queue rejected items again (after fixing the registry)"
    )
    retry.add_argument("--config", type=Path, required=True)
    retry.set_defaults(func=_retry)


def _guard(action: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            status: int = action(args)
        except AdapterError as exc:
            print(f"certhub adapter {args.adapter_command}: {exc}", file=sys.stderr)
            return 1
        return status

    return run


@_guard
def _keygen(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists():
        raise AdapterError(f"{out} exists; refusing to overwrite a signing key")
    password = None
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise AdapterError(f"--password-env: {args.password_env} is not set")
        password = value.encode("utf-8")
    key = PrivateKey.generate(Algorithm(args.algorithm))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.to_pem(password))
    public = key.public_key
    print(f"# {args.algorithm} key {public.key_id}, private key in {out}")
    print("# Paste under your department's [[departments]] entry in registry.toml,")
    print("# then run `certhub registry apply`.")
    print("[[departments.keys]]")
    print(f'public_key = """\n{public.to_pem().decode()}"""')
    print(f"not_before = {args.not_before.isoformat()}")
    print('status = "active"')
    return 0


@_guard
def _run(args: argparse.Namespace) -> int:
    config = _with_streams(load_config(args.config), args.streams)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("%s: stopping after the current batch", signal.Signals(signum).name)
        stop.set()
        # A second signal ends the process the usual way.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    # Restored on return: `main()` may run inside a longer-lived process (tests, the demo).
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    progress = None if args.no_progress else Progress()
    adapter = Adapter(config, stop=stop, progress=progress)
    metrics = (
        None
        if args.metrics_port is None
        else serve_outbox_metrics(config.outbox.path, port=args.metrics_port)
    )
    try:
        if args.once:
            report = adapter.run_once()
            print(describe(report))
        else:
            log.info(
                "adapter for %s: polling %s every %gs, pushing to %s",
                config.department.name,
                config.source.kind,
                config.outbox.poll_seconds,
                config.hub.address,
            )
            adapter.run_forever()
    finally:
        adapter.close()
        if metrics is not None:
            metrics.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stop.is_set():
        log.info("stopped; pending items stay in %s for the next run", config.outbox.path)
    return 0


def _with_streams(config: AdapterConfig, streams: int | None) -> AdapterConfig:
    if streams is None:
        return config
    if not 1 <= streams <= MAX_STREAMS:
        raise AdapterError(f"--streams: must be from 1 to {MAX_STREAMS}, got {streams}")
    return dataclasses.replace(config, outbox=dataclasses.replace(config.outbox, streams=streams))


def render_status(report: StatusReport) -> str:
    lines = [
        f"outbox depth     {report.depth} ({report.pending_pushes} pushes, "
        f"{report.pending_revocations} revocations pending)",
        f"acknowledged     {report.acked}",
        f"rejected         {report.rejected}",
        f"rows reported    {report.problems}",
        f"last success     {report.last_success or 'never'}",
    ]
    if report.last_error:
        lines.append(f"last error       {report.last_error}")
    for name, value in sorted(report.checkpoints.items()):
        lines.append(f"checkpoint       {name} = {value}")
    if report.rejected_items:
        lines += ["", "rejected by the hub (fix, then `certhub adapter retry-rejected`):"]
        for r in report.rejected_items:
            lines.append(
                f"  #{r.id} {r.kind} {r.location}: {r.code} {r.reason}: {r.message} "
                f"[{r.certificate_id}]"
            )
    if report.recent_problems:
        lines += ["", "rows the adapter could not map (latest first; fix them at the source):"]
        for at, location, message in report.recent_problems:
            lines.append(f"  {at} {location}: {message}")
    return "\n".join(lines)


@_guard
def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with Outbox(config.outbox.path) as outbox:
        print(render_status(outbox.status()))
    return 0


@_guard
def _retry(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with Outbox(config.outbox.path) as outbox:
        count = outbox.retry_rejected()
    print(f"{count} rejected item(s) queued again; `certhub adapter run` pushes them")
    return 0
