"""`certhub health`: ask a hub's standard gRPC health service, for scripts and probes.

Exit status: 0 SERVING, 1 NOT_SERVING (database unreachable, schema behind, shutting down)
or a service the hub does not know, 2 the hub could not be reached at all.
"""

from __future__ import annotations

import argparse
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certhub.hub.cli.connection import ConnectionProblem, add_connection_options, connect
from certhub.hub.cli.main import CommandError

# A health check answers from memory; a hub that takes longer is as good as down.
HEALTH_TIMEOUT_SECONDS = 5.0
NOT_SERVING_EXIT = 1
UNREACHABLE_EXIT = 2


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "health",
        help="check a running hub's health (exit 0 when SERVING)",
        description="Ask the hub's grpc.health.v1.Health service. Exit 0 SERVING, 1 "
        "NOT_SERVING or unknown service, 2 unreachable. Health needs no registered "
        "principal, only a client certificate of the hub's CA.",
    )
    add_connection_options(
        parser,
        principal_help="client certificate to connect with (default: one whose name contains "
        "'operator', else the first in the data dir)",
    )
    parser.add_argument(
        "--service",
        metavar="NAME",
        default="",
        help="one service, e.g. certhub.v1.IntakeService (default: the whole server)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=HEALTH_TIMEOUT_SECONDS,
        help=f"seconds to wait for the answer (default: {HEALTH_TIMEOUT_SECONDS:g})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        # Health needs only a certificate of the hub's CA, not a registered principal.
        client, _principal = connect(args, prefer="operator", any_will_do=True)
    except ConnectionProblem as e:
        raise CommandError(str(e)) from e
    target = args.service or "(server)"
    with client:
        stub = health_pb2_grpc.HealthStub(client.channel)
        try:
            answer = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            if code is grpc.StatusCode.NOT_FOUND:
                print(f"{target}: SERVICE_UNKNOWN")
                return NOT_SERVING_EXIT
            print(f"{target}: UNREACHABLE ({code.name}: {error.details()})")
            return UNREACHABLE_EXIT
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{target}: {status}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else NOT_SERVING_EXIT
