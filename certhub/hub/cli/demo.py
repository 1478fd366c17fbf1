"""`certhub demo`: the whole flow on the embedded defaults, then exit 0."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from certhub.hub.cli.main import CommandError
from certhub.hub.demo.run import DEMO_MONTHS, DemoDirError, run_demo
from certhub.hub.services.stats import MAX_MONTHS
from certhub.hub.web.run import DEFAULT_CONSOLE_ADDRESS


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run a whole district end to end in a temporary data dir",
        description="Initialise the PKI, apply a realistic registry, start the hub, push signed "
        "certificates for 60 citizens and 60 enterprises, fetch for real cases with offline "
        "signature checks, revoke one, and print the KPIs.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep everything here instead of a temporary dir (an empty or new folder, or "
        "one a previous demo made: that demo is replaced)",
    )
    parser.add_argument(
        "--months",
        type=int,
        default=DEMO_MONTHS,
        help=f"months of past cases to write before the live ones (default {DEMO_MONTHS}; "
        "0 = none)",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="afterwards, leave the hub running and serve the web console beside it; print "
        "the URLs and wait for Ctrl-C",
    )
    parser.add_argument(
        "--console-address",
        default=DEFAULT_CONSOLE_ADDRESS,
        metavar="HOST:PORT",
        help=f"with --serve: where the console listens (default {DEFAULT_CONSOLE_ADDRESS})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.months <= MAX_MONTHS:
        print(f"certhub demo: --months must be 0..{MAX_MONTHS}", file=sys.stderr)
        return 2
    try:
        return run_demo(
            data_dir=args.data_dir,
            months=args.months,
            serve=args.serve,
            console_address=args.console_address,
        )
    except DemoDirError as e:
        raise CommandError(str(e)) from e
