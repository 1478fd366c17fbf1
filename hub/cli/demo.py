"""`certhub demo`: the whole flow on the embedded defaults, then exit 0."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hub.demo.run import run_demo


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
        help="keep everything here instead of a temporary dir",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_demo(data_dir=args.data_dir)
