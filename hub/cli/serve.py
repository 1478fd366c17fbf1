"""`certhub serve`: run the hub until SIGTERM/SIGINT, then drain and flush the audit log."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from hub.cli.main import CommandError
from hub.cli.options import add_data_options, add_server_options, config_from
from hub.grpc.server import ServerTLS, build_server
from hub.runtime import build_hub, open_engine

log = logging.getLogger("certhub.serve")

# Seconds in-flight calls get to finish after SIGTERM before they are cancelled. Longer
# than any healthy call; shorter than the 30 s orchestrators usually wait before SIGKILL.
SHUTDOWN_GRACE_SECONDS = 20.0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the hub", description="Serve the certhub gRPC services over mTLS."
    )
    add_data_options(parser)
    add_server_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    engine = open_engine(config)
    try:
        hub = build_hub(config, engine)
    except RuntimeError as e:
        raise CommandError(str(e)) from e
    tls = None
    if not config.insecure:
        pki = config.pki
        if not pki.server_cert.exists():
            raise CommandError(f"no server certificate at {pki.server_cert}: run `certhub init`")
        tls = ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert)
    server = build_server(hub, address=config.address, tls=tls)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("serving on %s (%s)", config.address, "INSECURE" if tls is None else "mTLS")
    print(f"certhub serving on {config.address.rsplit(':', 1)[0]}:{server.port}", flush=True)
    stop.wait()
    log.info("stopping: draining in-flight calls for up to %.0f s", SHUTDOWN_GRACE_SECONDS)
    server.stop(grace=SHUTDOWN_GRACE_SECONDS)
    hub.close()
    engine.dispose()
    log.info("stopped")
    return 0
