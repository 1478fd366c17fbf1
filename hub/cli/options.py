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


def add_operations_options(parser: argparse.ArgumentParser) -> None:
    """What an operator watches: metrics endpoint, reflection, log format."""
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on this port at /metrics (default: off; 0 = any free "
        "port); with several workers one endpoint covers them all",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the metrics endpoint listens on (default: 127.0.0.1; 0.0.0.0 to let a "
        "Prometheus on another machine scrape it)",
    )
    parser.add_argument(
        "--no-reflection",
        dest="reflection",
        action="store_false",
        help="do not serve gRPC server reflection (on by default so grpcurl can list methods)",
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "text"),
        default="json",
        help="json: one JSON object per line, for log shippers (default); text: for people",
    )
