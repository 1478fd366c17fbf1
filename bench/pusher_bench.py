"""The adapter's pusher alone: CPU of the pushing process per certificate (not a test).

N items are written to an outbox first (random 1.5 KB envelopes under real certificate ids,
so they hash over the streams as a backfill's do), then ``Pusher.drain`` pushes them over S
streams with mTLS to a stand-in hub in another process: a grpc.aio ``PushCertificates``
that answers ACCEPTED without looking at the envelope, at once or paced to
``--hub-rate`` results per second per stream (the real hub's pace in a backfill is about
500/s per stream on the 2-core machine). What it prints is the pusher's own cost: no
signing, no producer, no hub work in this process.

    PYTHONPATH=.:tests .venv/bin/python bench/pusher_bench.py --rows 20000 --streams 2 \\
        [--hub-rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from certhub.adapters.config import HubEndpoint
from certhub.adapters.outbox import ItemKind, NewItem, Outbox, WriteBatch
from certhub.adapters.pusher import Pusher
from certhub.core.rpc.channel import MAX_MESSAGE_BYTES
from certhub.hub.demo.world import build_world, certificate_payload, enterprise
from certhub.hub.pki import PkiPaths, init_pki, issue_client_certificate
from certhub.v1 import ingest_pb2, ingest_pb2_grpc

# About the size of a signed certificate envelope (payload JSON, DSSE, signature).
ENVELOPE_BYTES = 1500
# Items per outbox transaction while filling it, as the producer's batches.
WRITE_BATCH = 1000
# A paced stand-in checks its pace every this many results: fine enough to stay even,
# coarse enough that its own sleeps cost nothing.
PACE_EVERY = 50


class _StandIn(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, rate: float) -> None:
        self._rate = rate

    async def PushCertificates(  # type: ignore[override]  # noqa: N802 -- the contract's name
        self, request_iterator: AsyncIterator[ingest_pb2.PushRequest], context: object
    ) -> AsyncIterator[ingest_pb2.PushResult]:
        answered, started = 0, time.monotonic()
        async for request in request_iterator:
            answered += 1
            if self._rate and answered % PACE_EVERY == 0:
                ahead = started + answered / self._rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            yield ingest_pb2.PushResult(
                client_ref=request.client_ref, outcome=ingest_pb2.ACCEPTED, audit_index=answered
            )


async def _serve(pki: PkiPaths, port_file: Path, rate: float) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(_StandIn(rate), server)
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca_cert.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    await asyncio.to_thread(port_file.write_text, str(port))
    await server.wait_for_termination()


def _fill(outbox: Path, rows: int) -> None:
    world = build_world()
    licence = next(iter(world.types.values())).code
    envelope = os.urandom(ENVELOPE_BYTES)
    with Outbox(outbox) as box:
        for start in range(0, rows, WRITE_BATCH):
            items = [
                NewItem(
                    kind=ItemKind.PUSH,
                    source_key=str(n),
                    location=f"bench [{n}]",
                    certificate_id=certificate_payload(
                        world, licence, enterprise(n), serial=n
                    ).certificate_id,
                    version=1,
                    envelope=envelope,
                )
                for n in range(start, min(rows, start + WRITE_BATCH))
            ]
            box.write(WriteBatch(items=items))


def run(args: argparse.Namespace, tmp: Path) -> int:
    pki = init_pki(tmp / "pki")
    cert, key = issue_client_certificate(pki, "bench-adapter")
    port_file = tmp / "port"
    hub = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(tmp / "pki"), str(port_file),
         str(args.hub_rate)],
    )  # fmt: skip
    try:
        outbox = tmp / "bench.outbox.db"
        _fill(outbox, args.rows)
        while not port_file.exists():
            if hub.poll() is not None:
                raise SystemExit("the stand-in hub did not start")
            time.sleep(0.05)
        endpoint = HubEndpoint(
            address=f"localhost:{port_file.read_text()}", ca=pki.ca_cert, cert=cert, key=key
        )
        settled = [0]

        def count(acked: int, rejected: int) -> None:
            settled[0] += acked + rejected

        done = threading.Event()
        done.set()
        cpu, wall = time.process_time(), time.perf_counter()
        pusher = Pusher(
            endpoint=endpoint,
            outbox_path=outbox,
            max_in_flight=args.in_flight,
            stop=threading.Event(),
            streams=args.streams,
            on_settled=count,
        )
        try:
            pusher.drain(done)
        finally:
            pusher.close()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        hub.terminate()
        hub.wait(30)
    if settled[0] != args.rows:
        raise SystemExit(f"{settled[0]} of {args.rows} settled")
    pace = f"{args.hub_rate:,.0f}/s per stream" if args.hub_rate else "at once"
    print(
        f"{args.rows:,} pushes over {args.streams} streams, stand-in hub answering {pace}: "
        f"{args.rows / wall:,.0f}/s, pusher CPU {cpu:.2f} s = {cpu / args.rows * 1e6:,.0f} us "
        f"per push (load average {os.getloadavg()[0]:.1f})"
    )
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--serve"]:
        pki_root, port_file, rate = sys.argv[2:5]
        asyncio.run(_serve(PkiPaths(Path(pki_root)), Path(port_file), float(rate)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=256, help="max_in_flight per stream")
    parser.add_argument(
        "--hub-rate",
        type=float,
        default=0.0,
        help="results per second per stream from the stand-in hub (default: at once)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certhub-pusher-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
