"""`certhub witness`: run a transparency-log witness (c2sp.org/tlog-witness) for certhub logs.

Another organisation (the provincial data bureau, a court) runs this next to, not inside,
the hub's deployment: it keeps its own key and its own record of each log's newest
cosigned checkpoint, in its own data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from certhub.hub.cli.main import CommandError
from certhub.hub.witness.server import Witness, app
from certhub.hub.witness.state import WitnessState
from certhub.signing import Algorithm, PrivateKey, SigningError
from certhub.signing.cosignature import CosignatureSigner
from certhub.signing.note import NoteVerifier

KEY_FILE = "witness-key.pem"
STATE_FILE = "witness.db"
DEFAULT_LISTEN = "127.0.0.1:8390"

log = logging.getLogger("certhub.witness")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "witness", help="run a witness that cosigns checkpoints of certhub audit logs"
    )
    commands = parser.add_subparsers(dest="witness_command", required=True, metavar="ACTION")

    serve = commands.add_parser("serve", help="serve add-checkpoint over HTTP")
    _add_common(serve)
    serve.add_argument(
        "--log",
        dest="logs",
        action="append",
        required=True,
        metavar="VKEY",
        help="a log's verifier key (`certhub audit vkey`); repeat for each log witnessed",
    )
    serve.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT to listen on")
    serve.set_defaults(func=run_serve)

    vkey = commands.add_parser("vkey", help="print this witness's verifier key for the hub")
    _add_common(vkey)
    vkey.set_defaults(func=run_vkey)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="the witness's key and state live here"
    )
    parser.add_argument(
        "--name", required=True, help="the witness's name, e.g. witness.fj-data-bureau.gov.cn/w1"
    )


def _signer(data_dir: Path, name: str) -> CosignatureSigner:
    """The witness key, created (mode 0600) on first use."""
    path = data_dir / KEY_FILE
    try:
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            pem = PrivateKey.generate(Algorithm.ED25519).to_pem()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
        return CosignatureSigner(name, PrivateKey.from_pem(path.read_bytes()))
    except (OSError, SigningError) as e:
        raise CommandError(f"witness key {path}: {e}") from e


def run_vkey(args: argparse.Namespace) -> int:
    print(_signer(args.data_dir, args.name).vkey)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    signer = _signer(args.data_dir, args.name)
    logs: dict[str, list[NoteVerifier]] = {}
    for vkey in args.logs:
        try:
            verifier = NoteVerifier.from_vkey(vkey)
        except SigningError as e:
            raise CommandError(f"--log {vkey!r}: {e}") from e
        logs.setdefault(verifier.name, []).append(verifier)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise CommandError(f"--listen {args.listen!r} is not HOST:PORT")
    state = WitnessState(args.data_dir / STATE_FILE)
    witness = Witness(signer=signer, logs=logs, state=state)
    url = f"http://{args.listen}/add-checkpoint"

    def announce() -> None:
        # One log line on stderr once the port is bound, like `certhub serve`'s banner:
        # stdout stays free of start-up text (`certhub witness vkey` prints the key).
        log.info(
            "certhub witness %s: add-checkpoint on %s for %s",
            signer.vkey,
            url,
            ", ".join(sorted(logs)),
            extra={"witness_vkey": signer.vkey, "url": url, "logs": sorted(logs)},
        )

    try:
        asyncio.run(_serve(witness, host, int(port), announce=announce))
    finally:
        state.close()
    return 0


async def _serve(witness: Witness, host: str, port: int, *, announce: Callable[[], None]) -> None:
    runner = web.AppRunner(app(witness))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        announce()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
