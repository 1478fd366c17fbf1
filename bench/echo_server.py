"""The baselines for bench/fetch_bench.py: an empty gRPC server on the same stack as the hub.

Same grpcio, same mTLS (the hub's own server certificate and client CA from a data dir),
same server options as ``certhub.hub.grpc.server.build_server``, same number of processes sharing
one port through SO_REUSEPORT, forked before any gRPC object exists. Its one unary method
answers every request with a fixed reply of ``--response-bytes`` bytes (the size of a real
FetchCertificates answer), doing no work at all: what it serves per second is the
practical limit of this stack on this machine. Two kinds: ``--kind sync`` (grpc.server on
a thread pool of 64, the hub's design until the grpc.aio rewrite) and ``--kind aio``
(grpc.aio, one event loop per process, as the hub serves now); the bench's baseline is the
faster of the two.

    PYTHONPATH=. python bench/echo_server.py --data-dir D --address 127.0.0.1:PORT --workers 2 \
        --response-bytes 3000 --kind aio
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc

from certhub.core.rpc.channel import MAX_MESSAGE_BYTES
from certhub.hub.grpc.server import KEEPALIVE_OPTIONS, MAX_CONCURRENT_RPCS
from certhub.hub.pki import PkiPaths

ECHO_METHOD = "/bench.Echo/Echo"
# The synchronous hub's thread pool before the grpc.aio rewrite (certhub.hub.grpc.server then).
SYNC_THREADS = 64
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 1),
    *KEEPALIVE_OPTIONS,
]


def _credentials(data_dir: Path) -> grpc.ServerCredentials:
    pki = PkiPaths(data_dir)
    return grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca_cert.read_bytes(),
        require_client_auth=True,
    )


def _serve_sync(address: str, data_dir: Path, reply: bytes) -> None:
    def echo(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        return reply

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=SYNC_THREADS),
        handlers=[handler],
        options=OPTIONS,
        maximum_concurrent_rpcs=SYNC_THREADS * 4,
    )
    server.add_secure_port(address, _credentials(data_dir))
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"echo serving on {address} (pid {os.getpid()})", flush=True)
    stop.wait()
    server.stop(grace=1).wait()


async def _serve_aio(address: str, data_dir: Path, reply: bytes) -> None:
    async def echo(_request: bytes, _context: object) -> bytes:
        return reply

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server(
        handlers=[handler], options=OPTIONS, maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS
    )
    server.add_secure_port(address, _credentials(data_dir))
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"echo serving on {address} (pid {os.getpid()})", flush=True)
    await stop.wait()
    await server.stop(grace=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--address", required=True, help="host:port (not 0: workers share it)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--response-bytes", type=int, default=3000)
    parser.add_argument("--kind", choices=["sync", "aio"], default="aio")
    args = parser.parse_args()
    reply = b"\x00" * args.response_bytes
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            if args.kind == "aio":
                asyncio.run(_serve_aio(args.address, args.data_dir, reply))
            else:
                _serve_sync(args.address, args.data_dir, reply)
            os._exit(0)
        children.append(pid)

    def forward(*_: object) -> None:
        for pid in children:
            os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for pid in children:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
