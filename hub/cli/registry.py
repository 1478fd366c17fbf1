"""`certhub registry apply|show`: the registry file, validated whole before anything changes."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from hub.cli.main import CommandError
from hub.cli.options import add_data_options, config_from
from hub.registry import RegistryError, load_registry_file
from hub.runtime import open_engine
from hub.services.registry_store import apply_registry
from hub.store import migrate
from hub.store.engine import make_session_factory, session_scope


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("registry", help="the registry file")
    sub = parser.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    apply = sub.add_parser(
        "apply",
        help="validate a registry.toml and make it the hub's registry",
        description="Validates the whole file first; an invalid file changes nothing and every "
        "problem is printed with its line. Running hubs pick the new registry up within a second.",
    )
    apply.add_argument("file", type=Path)
    apply.add_argument("--check", action="store_true", help="only validate; change nothing")
    add_data_options(apply)
    apply.set_defaults(func=run_apply)


def run_apply(args: argparse.Namespace) -> int:
    try:
        text, registry = load_registry_file(args.file)
    except RegistryError as e:
        raise CommandError(f"{args.file} is invalid; nothing changed\n{e}") from e
    summary = (
        f"{len(registry.departments)} departments, {len(registry.keys)} keys, "
        f"{len(registry.types)} certificate types, {len(registry.service_items)} service items, "
        f"{len(registry.principals)} principals"
    )
    if args.check:
        print(f"{args.file}: valid ({summary})")
        return 0
    engine = open_engine(config_from(args))
    if migrate.pending(engine):
        raise CommandError("database schema is behind: run `certhub db upgrade` first")
    with session_scope(make_session_factory(engine), write=True) as session:
        version, _, changed = apply_registry(session, text, now=dt.datetime.now(dt.UTC))
    engine.dispose()
    state = "applied as version" if changed else "unchanged; still version"
    print(f"{args.file}: {state} {version} ({summary})")
    return 0
