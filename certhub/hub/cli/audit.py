"""`certhub audit`: query the log, verify it end to end, prove one entry, print the log key.

These read the database directly (``--data-dir`` / ``--db``), like the other operator
commands, with the data directory's audit secrets: the HMAC key to look holders up by
commitment, the log key to check checkpoints (``--vkey`` checks with a public verifier key
instead, for an auditor who holds only a copy of the database).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from certhub.hub.audit import reads
from certhub.hub.audit.entry import OK, Action, AuditRecord, holder_commitment
from certhub.hub.audit.log import AuditLog, AuditLogKeys
from certhub.hub.audit.verify import UNCOVERED_TAIL_GRACE, verify_log
from certhub.hub.cli.main import CommandError
from certhub.hub.cli.options import add_data_options, config_from
from certhub.hub.domain.holder import check_holder
from certhub.hub.errors import HubError
from certhub.hub.pki import HubSecrets, PkiError
from certhub.hub.runtime import DEFAULT_LOG_ORIGIN, HubConfig, open_engine
from certhub.hub.services.registry_store import RegistrySource
from certhub.hub.store.engine import is_sqlite, make_session_factory, session_scope
from certhub.signing import MalformedNote, NoteSigner, NoteVerifier, SigningError, merkle
from certhub.signing.cosignature import CosignatureVerifier, verify_cosignatures
from certhub.signing.note import Checkpoint, open_note, parse_checkpoint

# Principal recorded for queries made from the command line: the OS account, marked so it
# cannot be mistaken for a registry principal.
CLI_PRINCIPAL_PREFIX = "cli:"
_QUERY_METHOD = "certhub audit query"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit", help="query, verify and prove the tamper-evident audit log"
    )
    commands = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    query = commands.add_parser("query", help="who accessed whose certificates, newest first")
    add_data_options(query)
    query.add_argument("--holder-type", choices=["RESIDENT_ID", "USCC", "PASSPORT", "OTHER"])
    query.add_argument("--holder-id", help="the holder's ID (turned into its commitment)")
    query.add_argument("--principal", help="only calls by this principal")
    query.add_argument("--action", help="only this action, e.g. fetch, push, revoke")
    query.add_argument("--certificate", metavar="ID", help="only entries naming this id")
    query.add_argument("--since", help="RFC 3339 time, inclusive, e.g. 2026-11-01T00:00:00+08:00")
    query.add_argument("--until", help="RFC 3339 time, exclusive")
    query.add_argument(
        "--limit", type=int, default=reads.DEFAULT_PAGE_SIZE, help="entries per page"
    )
    query.add_argument("--page-token", default="", help="continue after a previous page")
    query.add_argument("--json", action="store_true", help="one JSON object per line")
    query.set_defaults(func=run_query)

    verify = commands.add_parser(
        "verify", help="recompute the tree from every stored leaf and check every checkpoint"
    )
    add_data_options(verify)
    _add_vkey_option(verify)
    verify.add_argument("--quiet", action="store_true", help="no progress on stderr")
    verify.add_argument(
        "--trusted-checkpoint",
        metavar="FILE",
        type=Path,
        help="a signed checkpoint kept outside the database (e.g. a witness-cosigned one "
        "saved earlier): the log must extend it, so a rewrite after it is caught",
    )
    verify.add_argument(
        "--witness",
        dest="witnesses",
        action="append",
        default=[],
        metavar="VKEY",
        help="a witness's verifier key (`certhub witness vkey`); repeat for each trusted one. "
        "The anchor (--trusted-checkpoint, else the newest cosigned checkpoint stored) must "
        "then carry --witness-quorum of their cosignatures",
    )
    verify.add_argument(
        "--witness-quorum",
        type=int,
        default=None,
        metavar="K",
        help="cosignatures required of the --witness keys (default: all of them)",
    )
    verify.set_defaults(func=run_verify)

    prove = commands.add_parser(
        "prove", help="print an entry's inclusion proof, checked against the latest checkpoint"
    )
    add_data_options(prove)
    _add_vkey_option(prove)
    prove.add_argument("index", type=int, help="the entry's audit index")
    prove.set_defaults(func=run_prove)

    checkpoint = commands.add_parser(
        "checkpoint",
        help="print the newest signed checkpoint (keep it elsewhere for --trusted-checkpoint)",
    )
    add_data_options(checkpoint)
    checkpoint.set_defaults(func=run_checkpoint)

    vkey = commands.add_parser("vkey", help="print the log's verifier key for clients")
    add_data_options(vkey)
    vkey.set_defaults(func=run_vkey)


def _add_vkey_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vkey",
        help="check checkpoints with this C2SP verifier key instead of the data dir's log key",
    )


# --- wiring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Log:
    sessions: sessionmaker[Session]
    config: HubConfig
    origin: str
    accept_legacy_uscc: bool


@contextmanager
def _open(args: argparse.Namespace) -> Iterator[_Log]:
    config = config_from(args)
    if config.db_url is None and not (config.data_dir / "certhub.db").exists():
        raise CommandError(f"no database in {config.data_dir} (run `certhub init` first)")
    engine = open_engine(config)
    try:
        sessions = make_session_factory(engine)
        try:
            registry = RegistrySource(sessions).refresh()
        except HubError as e:
            raise CommandError(str(e)) from e
        settings = registry.settings
        yield _Log(
            sessions,
            config,
            settings.log_origin or DEFAULT_LOG_ORIGIN,
            settings.accept_legacy_uscc,
        )
    finally:
        engine.dispose()


def _secrets(config: HubConfig) -> HubSecrets:
    return HubSecrets.for_data_dir(config.data_dir)


def _signer(log: _Log) -> NoteSigner:
    try:
        return NoteSigner(log.origin, _secrets(log.config).load_log_key())
    except PkiError as e:
        raise CommandError(str(e)) from e


def _verifier(log: _Log, vkey: str | None) -> NoteVerifier:
    if vkey:
        try:
            return NoteVerifier.from_vkey(vkey)
        except MalformedNote as e:
            raise CommandError(f"--vkey: {e}") from e
    return NoteVerifier.from_vkey(_signer(log).vkey)


@contextmanager
def _snapshot(log: _Log) -> Iterator[Session]:
    """One read transaction that sees one state of the log while hubs keep appending."""
    with session_scope(log.sessions) as session:
        if not is_sqlite(session.get_bind()):  # type: ignore[arg-type]
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


# --- query ----------------------------------------------------------------------------------


def run_query(args: argparse.Namespace) -> int:
    if bool(args.holder_type) != bool(args.holder_id):
        raise CommandError("--holder-type and --holder-id go together")
    with _open(args) as log:
        commitment = None
        if args.holder_id:
            try:
                holder = check_holder(
                    args.holder_type,
                    args.holder_id,
                    accept_legacy_uscc=log.accept_legacy_uscc,
                    field="holder",
                ).holder
                key = _secrets(log.config).load_audit_hmac_key()
            except (HubError, PkiError) as e:
                raise CommandError(str(e)) from e
            commitment = holder_commitment(key, holder.key())
        try:
            where = reads.QueryFilter(
                holder_commitment=commitment,
                principal=args.principal or None,
                action=args.action or None,
                certificate_id=args.certificate or None,
                since=reads.parse_time(args.since or "", field="--since"),
                until=reads.parse_time(args.until or "", field="--until"),
            )
            size = reads.page_size_of(args.limit)
            before = reads.decode_page_token(args.page_token)
            with session_scope(log.sessions) as session:
                page = reads.query(session, where, page_size=size, before=before)
        except HubError as e:
            raise CommandError(e.message) from e
        index = _record_query(log, commitment, args.certificate or None)
    if args.json:
        for entry in page.entries:
            print(json.dumps({"index": entry.index, **entry.fields}, ensure_ascii=False))
    else:
        print(render(page.entries))
        if page.next_page_token:
            print(f"more: --page-token {page.next_page_token}")
    print(f"(this query is audit entry {index})", file=sys.stderr)
    return 0


def _record_query(log: _Log, commitment: str | None, certificate_id: str | None) -> int:
    """Queries from the command line are on the record like those over AuditService."""
    try:
        hmac_key = _secrets(log.config).load_audit_hmac_key()
    except PkiError as e:
        raise CommandError(str(e)) from e
    audit_log = AuditLog(AuditLogKeys(origin=log.origin, signer=_signer(log), hmac_key=hmac_key))
    record = AuditRecord(
        time=dt.datetime.now(dt.UTC),
        principal=CLI_PRINCIPAL_PREFIX + getpass.getuser(),
        action=Action.AUDIT_QUERY,
        outcome=OK,
        holder_commitment=commitment,
        certificate_ids=(certificate_id,) if certificate_id else (),
        method=_QUERY_METHOD,
    )
    with session_scope(log.sessions, write=True) as session:
        return audit_log.append(session, [record])


_COLUMNS = (
    ("index", None),
    ("time", "time"),
    ("principal", "principal"),
    ("action", "action"),
    ("service item", "service_item"),
    ("case", "case"),
    ("outcome", "outcome"),
)


def render(entries: tuple[reads.EntryView, ...]) -> str:
    """A plain table: one row per entry, newest first."""
    rows = [[name for name, _ in _COLUMNS]]
    for entry in entries:
        row = [str(entry.index)]
        for _, key in _COLUMNS[1:]:
            value = entry.fields.get(key or "")
            row.append("-" if value is None else str(value))
        rows.append(row)
    widths = [max(_width(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(r, widths, strict=True))
        for r in rows
    ]
    if not entries:
        lines.append("(no entries)")
    return "\n".join(line.rstrip() for line in lines)


def _width(text: str) -> int:
    # CJK characters take two terminal columns.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


# --- verify ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WitnessPolicy:
    witnesses: list[CosignatureVerifier]
    quorum: int


def _witness_policy(args: argparse.Namespace) -> _WitnessPolicy | None:
    if not args.witnesses:
        if args.witness_quorum is not None:
            raise CommandError("--witness-quorum needs --witness keys")
        return None
    try:
        witnesses = [CosignatureVerifier.from_vkey(v) for v in args.witnesses]
    except SigningError as e:
        raise CommandError(f"--witness: {e}") from e
    quorum = len(witnesses) if args.witness_quorum is None else args.witness_quorum
    if not 1 <= quorum <= len(witnesses):
        raise CommandError(f"--witness-quorum {quorum} must be 1..{len(witnesses)}")
    return _WitnessPolicy(witnesses, quorum)


def _trusted_checkpoint(
    note: str, what: str, verifier: NoteVerifier, policy: _WitnessPolicy | None
) -> Checkpoint:
    try:
        body = parse_checkpoint(open_note(note, [verifier]))
        cosigned = verify_cosignatures(note, policy.witnesses) if policy else []
    except SigningError as e:
        raise CommandError(f"{what}: {e}") from e
    if body.origin != verifier.name:
        raise CommandError(f"{what}: origin {body.origin!r} is not the log {verifier.name!r}")
    if policy is not None and len(cosigned) < policy.quorum:
        raise CommandError(
            f"{what}: {len(cosigned)} valid cosignature(s) of the given witnesses, "
            f"--witness-quorum needs {policy.quorum}"
        )
    return body


def _anchor(
    args: argparse.Namespace, log: _Log, verifier: NoteVerifier
) -> tuple[Checkpoint | None, str]:
    """The checkpoint verification is anchored to, and how to name it."""
    policy = _witness_policy(args)
    path: Path | None = args.trusted_checkpoint
    if path is not None:
        try:
            note = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CommandError(f"--trusted-checkpoint {path}: cannot read it ({e})") from e
        what = f"--trusted-checkpoint {path}"
        return _trusted_checkpoint(note, what, verifier, policy), "the trusted checkpoint"
    if policy is None:
        return None, ""
    with _snapshot(log) as session:
        stored = reads.latest_cosigned_checkpoint(session)
    if stored is None:
        raise CommandError(
            "--witness: the database holds no cosigned checkpoint (is witnessing configured?)"
        )
    what = f"cosigned checkpoint {stored.size}"
    return _trusted_checkpoint(stored.note, what, verifier, policy), "the cosigned checkpoint"


def run_verify(args: argparse.Namespace) -> int:
    with _open(args) as log:
        verifier = _verifier(log, args.vkey)
        trusted, anchor_name = _anchor(args, log, verifier)

        def progress(done: int) -> None:
            if not args.quiet and done % (1 << 18) == 0:
                print(f"  ... {done:,} entries checked", file=sys.stderr)

        with _snapshot(log) as session:
            report = verify_log(session, verifier, progress=progress, trusted=trusted)
    if report.problem is not None:
        problem = report.problem
        where = (
            f"first bad index {problem.index}"
            if problem.checkpoint_size is None
            else f"checkpoint {problem.checkpoint_size} "
            f"(first bad index at or before {problem.index})"
        )
        if problem.row is not None:
            # A state row: named by its id, and by the entry it claims (none past the log).
            where = (
                f"first bad index {problem.index}: {problem.row}"
                if problem.index < report.entries
                else f"{problem.row}: no audit entry"
            )
        print(f"audit log verification FAILED: {where}", file=sys.stderr)
        print(f"  {problem.message}", file=sys.stderr)
        return 1
    print(
        f"audit log OK: {report.entries:,} entries, {report.checkpoints:,} checkpoints "
        f"verified; root {report.root.hex()} ({verifier.name})"
    )
    print(f"  state: {report.state_rows:,} certificate and revocation rows found for their entries")
    if report.uncovered_from is not None:
        print(
            f"  entries {report.uncovered_from:,}.. are not yet covered by a checkpoint "
            f"(younger than {UNCOVERED_TAIL_GRACE.total_seconds():.0f} s: the signer lags)"
        )
    if report.anchored_at is not None:
        print(f"  extends {anchor_name} of size {report.anchored_at:,}")
    return 0


# --- prove ----------------------------------------------------------------------------------


def run_prove(args: argparse.Namespace) -> int:
    with _open(args) as log:
        verifier = _verifier(log, args.vkey)
        with _snapshot(log) as session:
            latest = reads.latest_checkpoint(session)
            if latest is None:
                raise CommandError("the audit log has no checkpoint yet")
            try:
                proof = reads.inclusion_proof(session, args.index, latest.size)
            except HubError as e:
                raise CommandError(e.message) from e
    print(f"entry {proof.leaf_index} of tree size {proof.tree_size}")
    print(f"leaf       {proof.leaf.decode('utf-8', 'replace')}")
    print(f"leaf hash  {merkle.leaf_hash(proof.leaf).hex()}")
    for n, h in enumerate(proof.hashes):
        print(f"proof[{n:2d}]  {h.hex()}")
    print(f"root       {latest.root.hex()}")
    try:
        body = parse_checkpoint(open_note(latest.note, [verifier]))
        if (body.size, body.root_hash) != (latest.size, latest.root):
            raise MalformedNote("the stored size or root differs from the signed note")
        merkle.verify_inclusion(
            leaf_index=proof.leaf_index,
            tree_size=body.size,
            leaf_hash=merkle.leaf_hash(proof.leaf),
            proof=proof.hashes,
            root=body.root_hash,
        )
    except SigningError as e:
        print(f"proof FAILED: {e}", file=sys.stderr)
        return 1
    print(f"OK: entry {proof.leaf_index} is in checkpoint {body.size} signed by {verifier.name}")
    return 0


# --- checkpoint -----------------------------------------------------------------------------


def run_checkpoint(args: argparse.Namespace) -> int:
    with _open(args) as log, _snapshot(log) as session:
        latest = reads.latest_checkpoint(session)
        if latest is None:
            raise CommandError("the audit log has no checkpoint yet")
        note = latest.note
    sys.stdout.write(note)
    return 0


# --- vkey -----------------------------------------------------------------------------------


def run_vkey(args: argparse.Namespace) -> int:
    with _open(args) as log:
        print(_signer(log).vkey)
    return 0
