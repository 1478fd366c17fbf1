"""`certhub registry apply|example`: the registry file, validated whole before anything changes;
the documented example, shipped inside the package so an installed wheel has it too."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import getpass
import importlib.resources
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from certhub.hub.audit.log import AuditLog, AuditLogKeys
from certhub.hub.cli.main import CommandError
from certhub.hub.cli.options import add_data_options, config_from
from certhub.hub.errors import FailedPrecondition
from certhub.hub.pki import HubSecrets, PkiError
from certhub.hub.registry import RegistryError, load_registry_file
from certhub.hub.runtime import HubConfig, open_engine, schema_problem
from certhub.hub.services.registry_store import (
    RegistryAuditor,
    RegistrySource,
    apply_registry,
    stranded_certificates,
)
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.signing.note import NoteSigner


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
    apply.add_argument(
        "--check",
        action="store_true",
        help="validate, and where the deployment's database exists say what applying would do "
        "(its version, warnings, refusals); change nothing",
    )
    apply.add_argument(
        "--trust-again",
        action="append",
        default=[],
        metavar="KEY_ID",
        help="confirm that a key the registry in force marks compromised is listed as active "
        "or retired again, or dropped (what it signed turns VALID again); repeat per key. "
        "Recorded in the audit log with the data dir's audit-log keys",
    )
    add_data_options(apply)
    apply.set_defaults(func=run_apply)
    example = sub.add_parser(
        "example",
        help="print the documented example registry (a start for your own registry.toml)",
        description="The complete, commented example of the registry format (the demo district "
        "of docs/registry.example.toml), from the installed package: print it, or write it "
        "to a new file with --output.",
    )
    example.add_argument(
        "--output",
        "-o",
        type=Path,
        metavar="FILE",
        default=None,
        help="write it to FILE (refused if FILE exists) instead of printing it",
    )
    example.set_defaults(func=run_example)


def _auditor(
    args: argparse.Namespace, config: HubConfig, sessions: sessionmaker[Session]
) -> RegistryAuditor:
    """The audit log as the hubs of this deployment write it: their keys (the data dir's,
    never new ones) and the origin of the registry in force."""
    secrets = HubSecrets.for_data_dir(config.data_dir)
    try:
        signer_key, hmac_key = secrets.load_log_key(), secrets.load_audit_hmac_key()
    except PkiError as e:
        raise CommandError(
            f"--trust-again is recorded in the audit log, which needs the hub's keys: {e} "
            "(name the hub's data dir with --data-dir)"
        ) from e
    origin = RegistrySource(sessions).refresh().settings.log_origin or config.log_origin
    keys = AuditLogKeys(origin=origin, signer=NoteSigner(origin, signer_key), hmac_key=hmac_key)
    return RegistryAuditor(log=AuditLog(keys), principal=f"certhub-cli:{getpass.getuser()}")


# Inside the hub package (a link to docs/registry.example.toml in the repository, a file in
# the wheel), so `pip install certhub` brings it.
EXAMPLE_RESOURCE = "registry.example.toml"


def example_registry() -> str:
    """The text of the documented example registry shipped with the package."""
    return (importlib.resources.files("certhub.hub") / EXAMPLE_RESOURCE).read_text(encoding="utf-8")


def run_example(args: argparse.Namespace) -> int:
    text = example_registry()
    if args.output is None:
        print(text, end="")
        return 0
    try:
        with args.output.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError as e:
        raise CommandError(
            f"{args.output} exists: not overwritten (choose another --output)"
        ) from e
    except OSError as e:
        raise CommandError(f"cannot write {args.output}: {e.strerror}") from e
    print(
        f"wrote the example registry to {args.output}; check it: certhub registry apply "
        f"--check {args.output}"
    )
    return 0


def run_apply(args: argparse.Namespace) -> int:
    try:
        text, registry = load_registry_file(args.file)
    except RegistryError as e:
        raise CommandError(f"{args.file} is invalid; nothing changed\n{e}") from e
    summary = (
        f"{len(registry.departments)} departments, {len(registry.keys)} keys, "
        f"{len(registry.types)} certificate types, {len(registry.service_items)} service items, "
        f"{len(registry.principals)} principals"
        + (", accept_legacy_uscc on" if registry.settings.accept_legacy_uscc else "")
    )
    config = config_from(args)
    if args.check and not _has_database(config):
        print(f"{args.file}: valid ({summary}; no database to compare it with)")
        return 0
    engine = open_engine(config)
    try:
        problem = schema_problem(engine)
        if problem is not None:
            raise CommandError(problem)
        sessions = make_session_factory(engine)
        auditor = _auditor(args, config, sessions) if args.trust_again else None
        # --check applies it in a transaction that is rolled back: the same refusals and
        # warnings as the real thing, and nothing changes.
        scope = _rolled_back if args.check else functools.partial(session_scope, write=True)
        try:
            with scope(sessions) as session:
                stranded = stranded_certificates(session, registry)
                version, _, changed = apply_registry(
                    session,
                    text,
                    now=dt.datetime.now(dt.UTC),
                    trust_again=frozenset(args.trust_again),
                    auditor=auditor,
                )
        except FailedPrecondition as e:
            verb = "would not be applied" if args.check else "not applied; nothing changed"
            raise CommandError(f"{args.file} {verb}: {e.message}") from e
    finally:
        engine.dispose()
    # Said, not refused: the operator may mean it (a type retired on purpose).
    for warning in stranded if changed else []:
        print(f"certhub registry: warning: {warning}", file=sys.stderr)
    if args.check:
        state = "would be applied as version" if changed else "would change nothing; still version"
        print(f"{args.file}: valid; {state} {version} ({summary})")
        return 0
    state = "applied as version" if changed else "unchanged; still version"
    print(f"{args.file}: {state} {version} ({summary})")
    return 0


def _has_database(config: HubConfig) -> bool:
    """Whether there is a deployment's database to check a registry against: any server
    database named, or the data dir's SQLite file (--check never creates one)."""
    url = make_url(config.database_url)
    if url.get_backend_name() != "sqlite":
        return True
    return url.database is not None and Path(url.database).is_file()


class _DryRun(Exception):
    """Raised at the end of a --check transaction, so that session_scope rolls it back."""


@contextlib.contextmanager
def _rolled_back(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with contextlib.suppress(_DryRun), session_scope(sessions, write=True) as session:
        yield session
        raise _DryRun
