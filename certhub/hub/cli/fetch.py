"""`certhub fetch`: fetch an applicant's certificates as an intake system, as a table.

For operators and for trying the hub by hand. It calls ``FetchCertificates`` exactly as a
window's system does (the call is audited as that principal), verifies every returned
envelope offline against the departments' keys from ``ListIssuerKeys``, and prints the
certificates and the item's materials: satisfied, paper (no certificate type can satisfy
it) or missing (a type could, the applicant has none in force), with certificate types by
name where the registry has one. ``--json`` prints the same as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import unicodedata
from collections.abc import Sequence
from typing import Any

from certhub.core.rpc.client import CertificateVerificationError, HubClient, HubClientError
from certhub.hub.cli.connection import ConnectionProblem, add_connection_options, connect
from certhub.hub.cli.main import CommandError
from certhub.v1 import common_pb2, directory_pb2, intake_pb2

# Exit status when the hub answered but a certificate failed offline verification.
VERIFICATION_FAILED_EXIT = 3
_ID_TYPES = tuple(name for name, number in common_pb2.IdType.items() if number != 0)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fetch",
        help="fetch an applicant's certificates for a service item and case, as a table",
        description="Fetch as an intake system (audited like any fetch), verify every "
        "signature offline, and print the certificates and the item's materials. Exit 0, "
        f"or {VERIFICATION_FAILED_EXIT} if a certificate does not verify.",
    )
    parser.add_argument(
        "--holder",
        required=True,
        metavar="TYPE:ID",
        help=f"the applicant, TYPE one of {', '.join(_ID_TYPES)}; e.g. USCC:91350102MA2Y0001X6",
    )
    parser.add_argument("--item", required=True, metavar="CODE", help="service item code")
    parser.add_argument("--case", required=True, metavar="NUMBER", help="case number (办件号)")
    parser.add_argument(
        "--attachments", action="store_true", help="also download attachments (sizes shown)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (certificates with their signature check, materials with "
        "their types' names) instead of tables",
    )
    add_connection_options(
        parser,
        principal_help="the intake system to act as (its client certificate in the data dir; "
        "default: the only one there)",
    )
    parser.set_defaults(func=run)


def parse_holder(text: str) -> tuple[str, str]:
    id_type, sep, holder_id = text.partition(":")
    id_type = id_type.strip().upper()
    if not sep or not holder_id.strip():
        raise CommandError(f"--holder {text!r}: expected TYPE:ID, e.g. RESIDENT_ID:3501...")
    if id_type not in _ID_TYPES:
        raise CommandError(f"--holder: unknown id type {id_type!r}; one of {', '.join(_ID_TYPES)}")
    return id_type, holder_id.strip()


def run(args: argparse.Namespace) -> int:
    id_type, holder_id = parse_holder(args.holder)
    try:
        client, principal = connect(args)
    except ConnectionProblem as e:
        raise CommandError(str(e)) from e
    request = intake_pb2.FetchRequest(
        holder=common_pb2.Holder(id_type=common_pb2.IdType.Value(id_type), id=holder_id),
        service_item_code=args.item,
        case_number=args.case,
        include_attachments=args.attachments,
    )
    with client:
        try:
            response: intake_pb2.FetchResponse = client.call(
                client.intake.FetchCertificates, request
            )
            checks = [_signature(client, record) for record in response.certificates]
        except HubClientError as e:
            raise CommandError(_describe(e)) from e
        names = _type_names(client, response.materials)
    failures = sum(1 for check in checks if not check["verified"])
    if args.json:
        print(
            json.dumps(
                _as_json(args, principal, response, checks, names), ensure_ascii=False, indent=2
            )
        )
        return VERIFICATION_FAILED_EXIT if failures else 0
    print(f"{args.item} · case {args.case} · as {principal} · audit entry {response.audit_index}\n")
    header = ["certificate", "number", "status", "issuer", "valid until", "signature"]
    rows = _certificate_rows(response.certificates, checks)
    print(render_table(header, rows) if rows else "no certificates for this item")
    print()
    print(
        render_table(
            ["material", "code", "status", "by"], _material_rows(response.materials, names)
        )
    )
    if failures:
        print(f"\n{failures} certificate(s) FAILED offline signature verification")
        return VERIFICATION_FAILED_EXIT
    return 0


def _signature(client: HubClient, record: common_pb2.CertificateRecord) -> dict[str, Any]:
    """The offline check of one served envelope against the departments' keys."""
    try:
        _payload, key_id = client.verify_offline(record.envelope)
    except CertificateVerificationError as e:
        return {"verified": False, "key_id": None, "problem": str(e)}
    return {"verified": True, "key_id": key_id, "problem": None}


def _type_names(
    client: HubClient, materials: Sequence[intake_pb2.MaterialStatus]
) -> dict[str, str]:
    """Certificate type names by code from the registry (ListCertificateTypes), for the
    materials' types; codes stay codes if the hub does not say."""
    if not any(m.type_codes for m in materials):
        return {}
    try:
        listed: directory_pb2.ListCertificateTypesResponse = client.call(
            client.directory.ListCertificateTypes, directory_pb2.ListCertificateTypesRequest()
        )
    except HubClientError:
        return {}
    return {t.code: t.name for t in listed.types if t.name}


def _as_json(
    args: argparse.Namespace,
    principal: str,
    response: intake_pb2.FetchResponse,
    checks: Sequence[dict[str, Any]],
    names: dict[str, str],
) -> dict[str, Any]:
    certificates = []
    for record, check in zip(response.certificates, checks, strict=True):
        s = record.summary
        certificates.append(
            {
                "certificate_id": s.certificate_id,
                "type_code": s.type_code,
                "type_name": names.get(s.type_code, s.name),
                "name": s.name,
                "number": s.number,
                "version": s.version,
                "status": common_pb2.CertificateStatus.Name(record.status),
                "issuer_code": s.issuer_code,
                "issuer_name": s.issuer_name,
                "issued_on": s.issued_on,
                "valid_from": s.valid_from,
                "valid_until": s.valid_until or None,
                "attachment_bytes": len(record.attachment) if record.attachment else None,
                "signature": check,
            }
        )
    return {
        "service_item": args.item,
        "case_number": args.case,
        "principal": principal,
        "audit_index": response.audit_index,
        "certificates": certificates,
        "materials": [
            {
                "code": m.code,
                "name": m.name,
                "status": _material_status(m),
                "certificate_ids": list(m.certificate_ids),
                "types": [{"code": c, "name": names.get(c)} for c in m.type_codes],
            }
            for m in response.materials
        ],
    }


def _certificate_rows(
    records: Sequence[common_pb2.CertificateRecord], checks: Sequence[dict[str, Any]]
) -> list[list[str]]:
    rows = []
    for record, check in zip(records, checks, strict=True):
        s = record.summary
        signature = (
            f"✓ key {check['key_id'][:12]}" if check["verified"] else f"✗ {check['problem']}"
        )
        name = s.name + (f" ({len(record.attachment):,} B file)" if record.attachment else "")
        rows.append(
            [
                name,
                s.number,
                common_pb2.CertificateStatus.Name(record.status),
                s.issuer_name or s.issuer_code,
                s.valid_until or "no expiry",
                signature,
            ]
        )
    return rows


def _material_status(m: intake_pb2.MaterialStatus) -> str:
    return "satisfied" if m.satisfied else "paper" if m.paper_only else "missing"


def _material_rows(
    materials: Sequence[intake_pb2.MaterialStatus], names: dict[str, str]
) -> list[list[str]]:
    rows = []
    for m in materials:
        status = _material_status(m)
        if status == "satisfied":
            by = ", ".join(m.certificate_ids)
        elif status == "paper":
            by = "bring the paper original"
        else:
            by = "no certificate in force of " + ", ".join(
                f"{names[c]} ({c})" if c in names else c for c in m.type_codes
            )
        rows.append([m.name, m.code, status, by])
    return rows


def _describe(error: HubClientError) -> str:
    lines = [str(error)]
    lines += [f"  {v.field}: {v.description}" for v in error.violations]
    if error.reason:
        lines.append(f"  reason: {error.reason}")
    return "\n".join(lines)


def display_width(text: str) -> int:
    """Terminal columns: CJK (wide and fullwidth) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded by display width, a rule under the header."""
    table = [list(header), *map(list, rows)]
    widths = [max(display_width(row[i]) for row in table) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [c + " " * (w - display_width(c)) for c, w in zip(cells, widths, strict=True)]
        return "  ".join(padded).rstrip()

    rule = "  ".join("─" * w for w in widths)
    return "\n".join([line(table[0]), rule, *(line(r) for r in table[1:])])
