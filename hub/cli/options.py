"""Options several commands share, and turning them into a HubConfig."""

from __future__ import annotations

import argparse
from pathlib import Path

from hub.runtime import DEFAULT_ADDRESS, DEFAULT_DATA_DIR, HubConfig


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"where the SQLite database, PKI and keys live (default: ./{DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="SQLAlchemy database URL, e.g. postgresql+psycopg://user@host/certhub "
        "(default: SQLite in the data dir)",
    )


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        help=f"host:port to serve on (default: {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="DANGEROUS, development only: no TLS and no client certificates; loopback only",
    )


def config_from(args: argparse.Namespace) -> HubConfig:
    return HubConfig(
        data_dir=args.data_dir,
        db_url=args.db,
        address=getattr(args, "address", DEFAULT_ADDRESS),
        insecure=getattr(args, "insecure", False),
    )
