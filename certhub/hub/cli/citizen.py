"""`certhub citizen`: what a citizen app does for its applicant, and a window's redemption.

For trying the applicant's side by hand (and the demo): ``accesses`` lists who used the
applicant's certificates, ``present`` creates a presentation token (亮证) and renders its
QR code (terminal, PNG, SVG), ``redeem`` scans one as a window would. Every call is the
real RPC, audited as the principal it acts as.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import segno

from certhub.core.rpc.client import HubClient, HubClientError
from certhub.hub.cli.connection import ConnectionProblem, add_connection_options, connect
from certhub.hub.cli.fetch import _describe, parse_holder, render_table
from certhub.hub.cli.main import CommandError

# QR error correction: level M (15% of the code may be damaged, a scratched phone screen or
# glare) keeps a 143-character token at version 6, 41 x 41 modules.
QR_ERROR_CORRECTION = "m"
# PNG module size in pixels: 41 modules and the 4-module quiet zone make a 490-pixel image,
# sharp on a phone screen and on paper.
QR_PNG_SCALE = 10


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "citizen",
        help="the applicant's side: access history, presentation tokens (亮证) and redeeming",
        description="Act as a citizen app (role CITIZEN_APP) for an applicant it has "
        "authenticated, or redeem a presentation token as a window (role INTAKE).",
    )
    commands = parser.add_subparsers(dest="citizen_command", required=True, metavar="ACTION")

    accesses = commands.add_parser(
        "accesses", help="who used the applicant's certificates (their audit entries)"
    )
    _applicant_option(accesses)
    accesses.add_argument("--limit", type=int, default=20, help="entries to show (default 20)")
    _connection(accesses, "the citizen app")
    accesses.set_defaults(func=run_accesses)

    present = commands.add_parser(
        "present", help="a single-use presentation token for one certificate, as a QR code"
    )
    _applicant_option(present)
    present.add_argument("--certificate", required=True, metavar="ID", help="certificate id")
    present.add_argument("--purpose", default="", help="用证事由, shown to the window")
    present.add_argument(
        "--item", default="", metavar="CODE", help="only a window handling this item may redeem"
    )
    present.add_argument(
        "--ttl", type=int, default=0, metavar="SECONDS", help="lifetime, at most 300 (default 120)"
    )
    present.add_argument("--png", type=Path, help="also write the QR code as a PNG file")
    present.add_argument("--svg", type=Path, help="also write the QR code as an SVG file")
    present.add_argument(
        "--no-terminal-qr", action="store_true", help="print the token only, not its QR code"
    )
    _connection(present, "the citizen app")
    present.set_defaults(func=run_present)

    consents = commands.add_parser(
        "consents", help="the applicant's pending consent requests, with what each would share"
    )
    _applicant_option(consents)
    _connection(consents, "the citizen app")
    consents.set_defaults(func=run_consents)

    decide = commands.add_parser("decide", help="approve or decline a pending consent request")
    decide.add_argument("request_id", help="the request's id (from `certhub citizen consents`)")
    _applicant_option(decide)
    verdict = decide.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--approve", action="store_true", help="share, once")
    verdict.add_argument("--decline", action="store_true", help="share nothing: paper instead")
    _connection(decide, "the citizen app")
    decide.set_defaults(func=run_decide)

    export = commands.add_parser(
        "export", help="a certificate as a W3C Verifiable Credential (vc+jwt)"
    )
    _applicant_option(export)
    export.add_argument("--certificate", required=True, metavar="ID", help="certificate id")
    export.add_argument("--output", type=Path, help="write the credential here (default: print it)")
    _connection(export, "the citizen app")
    export.set_defaults(func=run_export)

    redeem = commands.add_parser(
        "redeem", help="as a window: redeem a token an applicant shows, for a case"
    )
    redeem.add_argument("token", help="the token text scanned from the applicant's QR code")
    redeem.add_argument("--item", required=True, metavar="CODE", help="service item code")
    redeem.add_argument("--case", required=True, metavar="NUMBER", help="case number (办件号)")
    _connection(redeem, "the intake system")
    redeem.set_defaults(func=run_redeem)


def _applicant_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--applicant",
        required=True,
        metavar="TYPE:ID",
        help="the applicant the app has authenticated, e.g. RESIDENT_ID:350102199003070012",
    )


def _connection(parser: argparse.ArgumentParser, who: str) -> None:
    add_connection_options(
        parser,
        principal_help=f"{who} to act as (its client certificate in the data dir; default: "
        "the only one there)",
    )


def _client(args: argparse.Namespace, prefer: str) -> tuple[HubClient, str]:
    try:
        return connect(args, prefer=prefer)
    except ConnectionProblem as e:
        raise CommandError(str(e)) from e


def qr_code(token: str) -> segno.QRCode:
    """The token's QR code: alphanumeric mode, error correction M."""
    import segno  # noqa: PLC0415 - only this command renders QR codes; every other starts lean

    return segno.make(token, error=QR_ERROR_CORRECTION, micro=False)


def run_accesses(args: argparse.Namespace) -> int:
    id_type, holder_id = parse_holder(args.applicant)
    client, principal = _client(args, "citizen")
    with client:
        try:
            page = client.my_accesses(id_type=id_type, holder_id=holder_id, page_size=args.limit)
        except HubClientError as e:
            raise CommandError(_describe(e)) from e
    print(f"as {principal} · audit entry {page.audit_index}\n")
    rows = [
        [e.time, e.principal, e.action, e.outcome, e.service_item_name or e.service_item_code,
         e.case_number]
        for e in page.entries
    ]  # fmt: skip
    header = ["time (UTC)", "who", "what", "outcome", "service item", "case"]
    print(render_table(header, rows) if rows else "no entries about this applicant")
    return 0


def run_present(args: argparse.Namespace) -> int:
    id_type, holder_id = parse_holder(args.applicant)
    client, principal = _client(args, "citizen")
    with client:
        try:
            created = client.create_presentation(
                args.certificate,
                id_type=id_type,
                holder_id=holder_id,
                purpose=args.purpose,
                service_item=args.item,
                ttl_seconds=args.ttl,
            )
        except HubClientError as e:
            raise CommandError(_describe(e)) from e
    qr = qr_code(created.token)
    if args.png:
        qr.save(str(args.png), kind="png", scale=QR_PNG_SCALE)
    if args.svg:
        qr.save(str(args.svg), kind="svg", scale=QR_PNG_SCALE)
    print(created.token)
    print(
        f"single-use, expires {created.expires_at} · QR version {qr.version} "
        f"({qr.symbol_size(border=0)[0]} modules) · as {principal} · audit entry "
        f"{created.audit_index}"
    )
    if not args.no_terminal_qr:
        qr.terminal(compact=True)
    return 0


def run_redeem(args: argparse.Namespace) -> int:
    client, principal = _client(args, "centre")
    with client:
        try:
            shown = client.redeem_presentation(
                args.token.strip(), service_item=args.item, case_number=args.case
            )
        except HubClientError as e:
            raise CommandError(_describe(e)) from e
    c = shown.certificate
    s = c.record.summary
    print(f"{args.item} · case {args.case} · as {principal} · audit entry {shown.audit_index}\n")
    signature = f"✓ key {c.key_id[:12]}" if c.key_id else f"✗ {c.verification_error}"
    rows = [[s.name, s.number, c.status, s.issuer_name or s.issuer_code, signature]]
    print(render_table(["certificate", "number", "status", "issuer", "signature"], rows))
    print(f"\nid {c.certificate_id} · presented {shown.presented_at}")
    if shown.purpose:
        print(f"purpose: {shown.purpose}")
    return 0


def run_consents(args: argparse.Namespace) -> int:
    id_type, holder_id = parse_holder(args.applicant)
    client, principal = _client(args, "citizen")
    with client:
        try:
            listed = client.consent_requests(id_type=id_type, holder_id=holder_id)
        except HubClientError as e:
            raise CommandError(_describe(e)) from e
    print(f"as {principal} · audit entry {listed.audit_index}\n")
    if not listed.requests:
        print("no consent requests awaiting a decision")
        return 0
    for r in listed.requests:
        print(
            f"{r.request_id}  {r.principal} · {r.service_item_name or r.service_item_code} · "
            f"case {r.case_number} · decide before {r.expires_at}"
        )
        rows = [[c.summary.name, c.summary.number, c.summary.issuer_name] for c in r.certificates]
        print(render_table(["would share", "number", "issuer"], rows))
        print()
    return 0


def run_decide(args: argparse.Namespace) -> int:
    id_type, holder_id = parse_holder(args.applicant)
    client, principal = _client(args, "citizen")
    with client:
        try:
            decided = client.decide_consent(
                args.request_id, id_type=id_type, holder_id=holder_id, approve=args.approve
            )
        except HubClientError as e:
            raise CommandError(_describe(e)) from e
    until = f" until {decided.expires_at}" if decided.status == "APPROVED" else ""
    print(
        f"{args.request_id}: {decided.status}{until} · as {principal} · audit entry "
        f"{decided.audit_index}"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    id_type, holder_id = parse_holder(args.applicant)
    client, principal = _client(args, "citizen")
    with client:
        try:
            exported = client.export_credential(
                args.certificate, id_type=id_type, holder_id=holder_id
            )
        except HubClientError as e:
            raise CommandError(_describe(e)) from e
    if args.output:
        args.output.write_text(exported.credential + "\n", encoding="ascii")
        print(f"{exported.credential_id} written to {args.output}")
    else:
        print(exported.credential)
    print(
        f"status {exported.status_list_credential}#{exported.status_list_index} · as "
        f"{principal} · audit entry {exported.audit_index}"
    )
    return 0
