"""`certhub db upgrade|status`: schema migrations."""

from __future__ import annotations

import argparse
from typing import Any

from certhub.hub.cli.options import add_data_options, config_from
from certhub.hub.runtime import open_engine
from certhub.hub.store import migrate


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("db", help="database schema migrations")
    sub = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = sub.add_parser("upgrade", help="migrate the database to this version's schema")
    add_data_options(upgrade)
    upgrade.set_defaults(func=run_upgrade)
    status = sub.add_parser("status", help="print the schema revision and whether it is current")
    add_data_options(status)
    status.set_defaults(func=run_status)


def run_upgrade(args: argparse.Namespace) -> int:
    engine = open_engine(config_from(args))
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    print(f"schema: {before or 'empty'} -> {migrate.current_revision(engine)}")
    engine.dispose()
    return 0


def run_status(args: argparse.Namespace) -> int:
    engine = open_engine(config_from(args))
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    print(f"schema: {current or 'empty'} (code expects {head})")
    engine.dispose()
    return 0 if current == head else 1
