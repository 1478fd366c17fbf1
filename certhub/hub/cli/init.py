"""`certhub init`: the development CA, server and client certificates, and the hub's keys."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from certhub.hub.cli.main import CommandError
from certhub.hub.cli.options import add_data_options, config_from
from certhub.hub.pki import (
    DEFAULT_SERVER_NAMES,
    init_hub_secrets,
    init_pki,
    issue_client_certificate,
)
from certhub.hub.registry import RegistryError, load_registry_file


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "init",
        help="create the development CA, server certificate, hub keys and client certificates",
        description="Create (if missing) the development CA, the hub's server certificate, the "
        "audit log's signing and HMAC keys, and a client certificate for every principal "
        "of a registry file. Existing files are kept.",
    )
    add_data_options(parser)
    parser.add_argument(
        "--registry",
        type=Path,
        help="issue client certificates for every principal in this registry.toml",
    )
    parser.add_argument(
        "--server-name",
        action="append",
        default=None,
        help="another DNS name or IP the server certificate covers (repeatable); always "
        f"covered too: {', '.join(DEFAULT_SERVER_NAMES)}, so local probes keep working",
    )
    parser.add_argument(
        "--client", action="append", default=[], help="also issue for this principal"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    # The given names come first (the first is the certificate's CN) and the loopback names
    # are always added: `certhub health --address 127.0.0.1:50051` on the hub's own machine
    # (a Kubernetes exec probe, docs/operations.md) must pass hostname verification.
    names = list(dict.fromkeys([*(args.server_name or []), *DEFAULT_SERVER_NAMES]))
    paths = init_pki(config.data_dir, server_names=names)
    init_hub_secrets(config.data_dir)
    principals = list(args.client)
    if args.registry:
        try:
            _, registry = load_registry_file(args.registry)
        except RegistryError as e:
            raise CommandError(str(e)) from e
        principals += list(registry.principals)
    print(f"CA:      {paths.ca_cert}")
    print(f"server:  {paths.server_cert}")
    for name in principals:
        cert, _key = issue_client_certificate(paths, name)
        print(f"client:  {cert}")
    return 0
