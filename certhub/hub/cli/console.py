"""`certhub console`: the web console and the public transparency page, in their own
process over the hub's database (see docs/operations.md, "The web console")."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from certhub.hub.casework import Casework
from certhub.hub.cli.options import add_data_options, config_from
from certhub.hub.pki import PkiPaths
from certhub.hub.runtime import build_hub, open_engine
from certhub.hub.web.console import DEFAULT_EXEMPTION_TARGET, DEFAULT_USAGE_TARGET, Targets
from certhub.hub.web.run import DEFAULT_CONSOLE_ADDRESS, serve_forever, split_address
from certhub.hub.web.server import ConsoleTLS

log = logging.getLogger("certhub.console")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "console",
        help="serve the web console (operators, auditors) and the public transparency page",
        description="HTTPS with the hub's server certificate. Console pages need a client "
        "certificate of the hub's CA naming an OPERATOR or AUDITOR principal; "
        "/transparency is public. Reads the hub's database and appends an audit entry for "
        "every console view.",
    )
    add_data_options(parser)
    parser.add_argument(
        "--console-address",
        default=DEFAULT_CONSOLE_ADDRESS,
        metavar="HOST:PORT",
        help=f"where to serve HTTPS (default {DEFAULT_CONSOLE_ADDRESS})",
    )
    parser.add_argument(
        "--target-exemption",
        type=float,
        default=DEFAULT_EXEMPTION_TARGET,
        help=f"exemption-rate target line, 0..1 (default {DEFAULT_EXEMPTION_TARGET})",
    )
    parser.add_argument(
        "--target-usage",
        type=float,
        default=DEFAULT_USAGE_TARGET,
        help=f"usage-rate target line, 0..1 (default {DEFAULT_USAGE_TARGET})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        split_address(args.console_address)
    except ValueError as error:
        print(f"certhub console: {error}", file=sys.stderr)
        return 2
    for name in ("target_exemption", "target_usage"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            print(f"certhub console: --{name.replace('_', '-')} must be 0..1", file=sys.stderr)
            return 2
    config = config_from(args)
    pki = PkiPaths(config.data_dir)
    if not pki.server_cert.is_file():
        print(
            f"certhub console: no server certificate in {config.data_dir}: run `certhub init`",
            file=sys.stderr,
        )
        return 1
    engine = open_engine(config)
    try:
        hub = build_hub(config, engine)
    except RuntimeError as error:
        print(f"certhub console: {error}", file=sys.stderr)
        engine.dispose()
        return 1
    try:
        serve_forever(
            Casework(hub),
            address=args.console_address,
            tls=ConsoleTLS.from_pki(pki),
            targets=Targets(exemption=args.target_exemption, usage=args.target_usage),
            # One log line on stderr, like `certhub serve`'s banner: stdout stays free of
            # start-up text.
            ready=lambda running: log.info(
                "certhub console on %s", running.url, extra={"console_url": running.url}
            ),
        )
    finally:
        hub.close()
        engine.dispose()
    return 0
