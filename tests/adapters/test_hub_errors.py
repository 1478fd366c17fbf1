"""The pusher reads the hub's error answers as the typed client does (issue 16 item 1): both
go through ``certhub.core.rpc.errors.error_from_rpc``. Before, the pusher read a revocation's
refusal with its own copy, which lacked the client's guard: a status whose details disagree with its
code (made on the way, not by the hub) raised ``ValueError`` out of the pusher, while the
client answered it typed. Each failure here is a real one, fed through both."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from support.hubs import RunningHub

from certhub.adapters.config import HubEndpoint
from certhub.adapters.outbox import ItemKind, ItemState, OutboxItem, Settlement
from certhub.adapters.pusher import Pusher
from certhub.core.rpc.channel import ClientTLS
from certhub.core.rpc.client import HubClient, HubClientError
from certhub.hub.demo.world import (
    DemoDepartment,
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
    sign_revocation,
)
from certhub.hub.domain.certificate import CertificatePayload
from certhub.hub.pki import PkiPaths, init_pki, issue_client_certificate
from certhub.v1 import ingest_pb2, ingest_pb2_grpc

# (code name, reason, message): what an operator reads in the outbox and a caller in the error.
Answer = tuple[str, str, str]


def _through_the_pusher(address: str, tls: ClientTLS, envelope: bytes, outbox: Path) -> Answer:
    endpoint = HubEndpoint(address=address, ca=tls.ca, cert=tls.cert, key=tls.key)
    pusher = Pusher(endpoint=endpoint, outbox_path=outbox, max_in_flight=1, stop=threading.Event())
    item = OutboxItem(
        id=1,
        kind=ItemKind.REVOKE,
        source_key="k",
        location="registrations [k]",
        certificate_id="",
        version=1,
        envelope=envelope,
        attachment=None,
        after_id=None,
    )
    try:
        settlement: Settlement = pusher._revoke(item)
    finally:
        pusher.close()
    assert settlement.state is ItemState.REJECTED
    return (settlement.code or "", settlement.reason or "", settlement.message or "")


def _through_the_client(address: str, tls: ClientTLS, envelope: bytes) -> Answer:
    with HubClient.connect(address, tls) as client, pytest.raises(HubClientError) as refused:
        client.revoke(envelope)
    return (refused.value.code.name, refused.value.reason, refused.value.message)


def _licence(world: DemoWorld, serial: int) -> CertificatePayload:
    return certificate_payload(
        world, world.type_by_name("营业执照").code, enterprise(serial), serial=serial
    )


# Each refusal: the hub, the world and the department that issues licences -> the envelope
# to revoke and the principal that sends it.
Refusal = Callable[[RunningHub, DemoWorld, DemoDepartment], tuple[bytes, str]]


def _unknown(hub: RunningHub, world: DemoWorld, amr: DemoDepartment) -> tuple[bytes, str]:
    return sign_revocation(_licence(world, 7).certificate_id, amr.key), amr.principal


def _foreign(hub: RunningHub, world: DemoWorld, amr: DemoDepartment) -> tuple[bytes, str]:
    payload = _licence(world, 8)
    with hub.client(amr.principal) as department:
        department.push(sign_certificate(payload, [amr.key]))
    health = world.department_by_name("卫生健康")
    return sign_revocation(payload.certificate_id, health.key), health.principal


def _unreadable(hub: RunningHub, world: DemoWorld, amr: DemoDepartment) -> tuple[bytes, str]:
    return b"not an envelope", amr.principal


@pytest.mark.parametrize("refusal", [_unknown, _foreign, _unreadable])
def test_a_refusal_of_the_hub_reads_alike_on_both_sides(
    running_hub: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    tmp_path: Path,
    refusal: Refusal,
) -> None:
    envelope, principal = refusal(running_hub, world, amr)
    tls = running_hub.tls_for(principal)
    pushed = _through_the_pusher(running_hub.address, tls, envelope, tmp_path / "outbox.db")
    client = _through_the_client(running_hub.address, tls, envelope)
    assert pushed == client
    # A refusal with the hub's details, not a bare status.
    code, reason, message = pushed
    assert code != "OK"
    assert reason
    assert message


class _Proxy(ingest_pb2_grpc.IngestServiceServicer):
    """A hop in front of the hub that refused the call itself (a message over its limit) but
    passed on the trailers of the hub's answer: its status code is not the one the details
    carry."""

    def RevokeCertificate(
        self, request: ingest_pb2.RevokeRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.RevokeResult:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason="CERTIFICATE_NOT_FOUND"))
        hubs = status_pb2.Status(code=code_pb2.NOT_FOUND, message="not found", details=[info])
        context.set_trailing_metadata((("grpc-status-details-bin", hubs.SerializeToString()),))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, PkiPaths]]:
    """The hop on loopback with mTLS, with a hub's PKI: its address and the PKI."""
    pki = init_pki(tmp_path / "pki")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(_Proxy(), server)
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca_cert.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("localhost:0", credentials)
    server.start()
    yield f"localhost:{port}", pki
    server.stop(grace=None)


def test_a_status_whose_details_disagree_with_its_code_reads_alike_on_both_sides(
    proxy: tuple[str, PkiPaths], tmp_path: Path
) -> None:
    address, pki = proxy
    cert, key = issue_client_certificate(pki, "amr-adapter")
    tls = ClientTLS(ca=pki.ca_cert, cert=cert, key=key)
    envelope = b"{}"
    pushed = _through_the_pusher(address, tls, envelope, tmp_path / "outbox.db")
    client = _through_the_client(address, tls, envelope)
    assert pushed == client
    # The code and text are the hop's; the hub's details, which disagree, are not read.
    assert pushed == ("RESOURCE_EXHAUSTED", "", "Received message larger than max")
