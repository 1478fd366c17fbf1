"""Options several commands share, and turning them into a HubConfig."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from certhub.hub.runtime import DEFAULT_ADDRESS, DEFAULT_DATA_DIR, HubConfig

# Every command that opens the data dir or the database also reads these, so an operator
# who exports CERTHUB_DB once reaches the same database with `db`, `registry`, `stats`,
# `audit` and `serve` (which layers all its options the same way, see certhub.hub.config).
DATA_DIR_ENV = "CERTHUB_DATA_DIR"
DB_ENV = "CERTHUB_DB"


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR),
        help=f"where the SQLite database, PKI and keys live (default: ${DATA_DIR_ENV}, "
        f"else ./{DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        default=os.environ.get(DB_ENV) or None,
        help="SQLAlchemy database URL, e.g. postgresql+psycopg://user@host/certhub "
        f"(default: ${DB_ENV}, else SQLite in the data dir)",
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
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no log line per call (the audit log still records every push, fetch and "
        "refusal); for very high call rates",
    )
