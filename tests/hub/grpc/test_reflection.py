"""Server reflection is on by default (grpcurl-style tools list and describe the services over
mTLS) and off with `--no-reflection` (build_server(reflection_enabled=False))."""

from __future__ import annotations

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from support.hubs import RunningHub

from certhub.core.rpc.client import HubClient
from certhub.hub.grpc.server import ServerTLS, build_server

WINDOW = "gulou-service-centre"


def test_reflection_lists_and_describes_every_service(running_hub: RunningHub) -> None:
    with running_hub.client(WINDOW) as client:
        database = ProtoReflectionDescriptorDatabase(client.channel)
        services = set(database.get_services())
        intake = database.FindFileContainingSymbol("certhub.v1.IntakeService")
    assert {
        "certhub.v1.IngestService",
        "certhub.v1.IntakeService",
        "certhub.v1.DirectoryService",
        "certhub.v1.AuditService",
        "certhub.v1.CitizenService",
        "grpc.health.v1.Health",
    } <= services
    assert [m.name for m in intake.service[0].method] == [
        "FetchCertificates",
        "GetCertificate",
        "VerifyCertificate",
        "RegisterCase",
        "CloseCase",
        "RedeemPresentation",
    ]


def test_no_reflection_turns_it_off(running_hub: RunningHub) -> None:
    pki = running_hub.config.pki
    server = build_server(
        running_hub.hub,
        address="127.0.0.1:0",
        tls=ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert),
        reflection_enabled=False,
    )
    try:
        client = HubClient.connect(f"localhost:{server.port}", running_hub.tls_for(WINDOW))
        with client, pytest.raises(grpc.RpcError) as caught:
            ProtoReflectionDescriptorDatabase(client.channel).get_services()
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(grace=None)
