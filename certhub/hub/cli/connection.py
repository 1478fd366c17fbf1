"""Options and helpers of the commands that call a running hub (`health`, `fetch`).

They connect like any client: mTLS with a client certificate from the data dir's PKI
(``pki/clients/<principal>.crt``, made by ``certhub init``), or ``--insecure`` against a
development hub on loopback.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from certhub.core.rpc.client import ClientTLS, HubClient
from certhub.hub.cli.options import DATA_DIR_ENV
from certhub.hub.pki import PkiPaths
from certhub.hub.runtime import DEFAULT_ADDRESS, DEFAULT_DATA_DIR

__all__ = ["ADDRESS_ENV", "add_connection_options", "connect", "pick_principal"]

# The variable `certhub serve` listens on (certhub.hub.config layering): an operator who exports it
# once reaches the same hub with `health` and `fetch`.
ADDRESS_ENV = "CERTHUB_ADDRESS"


class ConnectionProblem(Exception):
    """No usable client certificate; the message says what to do."""


def add_connection_options(parser: argparse.ArgumentParser, *, principal_help: str) -> None:
    parser.add_argument(
        "--address",
        default=os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS,
        help=f"the hub's host:port (default: ${ADDRESS_ENV}, the address `certhub serve` "
        f"reads too, else {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR),
        help="whose pki/ holds the CA and client certificates (default: "
        f"${DATA_DIR_ENV}, else ./{DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--principal", metavar="NAME", default=None, help=principal_help)
    parser.add_argument(
        "--server-name",
        default=None,
        help="name to expect in the server certificate, when --address uses another one",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="development hub started with --insecure on loopback: no TLS",
    )


def pick_principal(
    pki: PkiPaths, wanted: str | None, *, prefer: str = "", any_will_do: bool = False
) -> str:
    """``wanted``, or the one client certificate of the data dir, or the first whose name
    contains ``prefer`` (or simply the first with ``any_will_do``); otherwise a
    ``ConnectionProblem`` listing the choices."""
    names = sorted(p.stem for p in pki.clients_directory.glob("*.crt"))
    if wanted is not None:
        if wanted not in names:
            raise ConnectionProblem(
                f"no client certificate for {wanted!r} in {pki.clients_directory}: "
                f"run `certhub init --client {wanted}`"
            )
        return wanted
    if len(names) == 1:
        return names[0]
    preferred = [n for n in names if prefer and prefer in n]
    if preferred:
        return preferred[0]
    if any_will_do and names:
        return names[0]
    if not names:
        raise ConnectionProblem(
            f"no client certificates in {pki.clients_directory}: run `certhub init --registry "
            "FILE` (or `--client NAME`), or name the data dir with --data-dir"
        )
    raise ConnectionProblem("name a principal with --principal: one of " + ", ".join(names))


def connect(
    args: argparse.Namespace, *, prefer: str = "", any_will_do: bool = False
) -> tuple[HubClient, str]:
    """A client for ``args``' hub and the principal it acts as."""
    if args.insecure:
        if args.principal is None and not any_will_do:
            raise ConnectionProblem("--insecure: name the principal to act as with --principal")
        principal = args.principal or "certhub-cli"
        return HubClient.insecure(args.address, principal), principal
    pki = PkiPaths(args.data_dir)
    if not pki.ca_cert.exists():
        raise ConnectionProblem(f"no CA certificate at {pki.ca_cert}: run `certhub init`")
    principal = pick_principal(pki, args.principal, prefer=prefer, any_will_do=any_will_do)
    cert, key = pki.client(principal)
    tls = ClientTLS(ca=pki.ca_cert, cert=cert, key=key)
    return HubClient.connect(args.address, tls, server_name=args.server_name), principal
