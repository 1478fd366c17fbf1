"""`certhub adapter ...`: keygen, run (continuous or --once), status, retry-rejected, dismiss.

Exit status: 0 done; 1 an error (config, source, key, the hub refused the connection:
the message says which); 2 a usage error (argparse); 3 (`run --once`) the pass finished but
items wait for the operator: the hub rejected some (in the outbox now), or rows of this pass
could not be mapped. docs/adapters.md lists them.
"""

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

from certhub.adapters.config import DEFAULT_STREAMS, MAX_STREAMS, AdapterConfig, load_config
from certhub.adapters.errors import AdapterError
from certhub.adapters.logs import LOG_FORMAT_ENV, LOG_FORMATS, log_format, logging_to
from certhub.adapters.metrics import serve_outbox_metrics
from certhub.adapters.outbox import Outbox, StatusReport
from certhub.adapters.producer import load_signing_key
from certhub.adapters.progress import Progress
from certhub.adapters.resign import resign_rejected
from certhub.adapters.runner import Adapter, describe
from certhub.adapters.sources import open_source
from certhub.signing import Algorithm, PrivateKey

__all__ = ["register"]

log = logging.getLogger("certhub.adapter")

#: `run --once` finished, but rejected items or unmappable rows wait for the operator.
EXIT_ATTENTION = 3

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
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help=f"log lines as text or one JSON object per line (default: ${LOG_FORMAT_ENV}, "
        "else text)",
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
        "retry-rejected",
        help="queue rejected items again (after fixing the registry; --resign after fixing "
        "the mapping or the key)",
    )
    retry.add_argument("--config", type=Path, required=True)
    retry.add_argument(
        "--resign",
        action="store_true",
        help="read the rejected records from the source again and sign them afresh with "
        "today's mapping and key, instead of resending the stored envelopes",
    )
    retry.set_defaults(func=_retry)

    dismiss = commands.add_parser(
        "dismiss",
        help="stop waiting for rejected items (they leave status; kept as history)",
    )
    dismiss.add_argument("--config", type=Path, required=True)
    dismiss.add_argument(
        "ids", nargs="*", type=int, metavar="ID", help="item numbers as `status` shows them (#ID)"
    )
    dismiss.add_argument("--all", action="store_true", help="every rejected item")
    dismiss.add_argument(
        "--problems", action="store_true", help="also forget every reported source row"
    )
    dismiss.set_defaults(func=_dismiss)


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
    try:
        fmt = log_format(args.log_format)
    except ValueError as exc:
        raise AdapterError(str(exc)) from exc
    with logging_to(fmt):
        return _run_logged(args)


def _run_logged(args: argparse.Namespace) -> int:
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
    status = 0
    try:
        if args.once:
            report = adapter.run_once()
            print(describe(report))
            if report.status.rejected or report.counts.problems:
                status = EXIT_ATTENTION
                print(
                    f"needs attention: see `certhub adapter status --config {args.config}`",
                    file=sys.stderr,
                )
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
    return status


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
        f"dismissed        {report.dismissed}",
        f"rows reported    {report.problems}",
        f"last success     {report.last_success or 'never'}",
    ]
    if report.last_error:
        lines.append(f"last error       {report.last_error}")
    for name, value in sorted(report.checkpoints.items()):
        lines.append(f"checkpoint       {name} = {value}")
    if report.rejected_items:
        lines += [
            "",
            "rejected by the hub (fixed the registry: `certhub adapter retry-rejected`; fixed "
            "the mapping or the key: `retry-rejected --resign`; or `certhub adapter dismiss "
            "ID`):",
        ]
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
    if not args.resign:
        with Outbox(config.outbox.path) as outbox:
            count = outbox.retry_rejected()
        print(f"{count} rejected item(s) queued again; `certhub adapter run` pushes them")
        return 0
    keys = load_signing_key(config)
    source = open_source(config.source)
    try:
        with Outbox(config.outbox.path) as outbox:
            report = resign_rejected(config, source=source, keys=keys, outbox=outbox)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    print(
        f"{report.requeued} rejected item(s) signed again from the source and queued; "
        "`certhub adapter run` pushes them"
    )
    for item, why in report.left:
        print(f"  #{item.id} {item.kind} {item.location}: left rejected: {why}")
    return EXIT_ATTENTION if report.left else 0


@_guard
def _dismiss(args: argparse.Namespace) -> int:
    if args.ids and args.all:
        raise AdapterError("dismiss: give item numbers or --all, not both")
    if not (args.ids or args.all or args.problems):
        raise AdapterError("dismiss: give item numbers (#ID in `status`), --all or --problems")
    config = load_config(args.config)
    with Outbox(config.outbox.path) as outbox:
        count = outbox.dismiss(None if args.all else args.ids) if args.ids or args.all else 0
        problems = outbox.dismiss_problems() if args.problems else 0
    print(
        f"{count} rejected item(s) dismissed"
        + (f", {problems} reported row(s) forgotten" if args.problems else "")
    )
    if args.ids and count < len(args.ids):
        print(
            f"{len(args.ids) - count} of the given numbers were not rejected items", file=sys.stderr
        )
        return 1
    return 0
