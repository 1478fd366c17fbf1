"""Who the caller is comes from its client certificate and nothing else: a caller cannot name
itself into another principal's role over mTLS; the loopback-only insecure mode trusts a header
and refuses callers that send none."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy.engine import Engine
from support.hubs import RunningHub
from support.probes import assert_audited_refusal, refused, snapshot

from certhub.core.rpc.client import INSECURE_PRINCIPAL_HEADER, HubClient
from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.grpc.server import InsecureRefused, build_server
from certhub.hub.runtime import build_hub

AUDITOR = "gulou-audit-office"


def test_principal_header_is_ignored_over_mtls(running_hub: RunningHub, world: DemoWorld) -> None:
    amr = world.department_by_name("市场监督管理局")
    payload = certificate_payload(
        world, world.type_by_name("营业执照").code, enterprise(1), serial=1
    )
    before = snapshot(running_hub.engine)
    with running_hub.client(AUDITOR) as auditor:
        spoofing = HubClient(
            auditor.channel, metadata=((INSECURE_PRINCIPAL_HEADER, amr.principal),)
        )
        error = refused(
            grpc.StatusCode.PERMISSION_DENIED,
            lambda: spoofing.push(sign_certificate(payload, [amr.key])),
        )
    assert error.reason == "WRONG_ROLE"
    assert snapshot(running_hub.engine) == before
    assert_audited_refusal(running_hub.engine, error, principal=AUDITOR)


@pytest.fixture
def insecure_hub(running_hub: RunningHub, engine: Engine) -> Iterator[str]:
    """A second server over the same data, in the development mode (no TLS, loopback)."""
    hub = build_hub(running_hub.config, engine)
    server = build_server(hub, address="127.0.0.1:0", tls=None)
    yield f"127.0.0.1:{server.port}"
    server.stop(grace=None)
    hub.close()


def test_insecure_mode_needs_a_registered_principal_header(
    insecure_hub: str, running_hub: RunningHub, world: DemoWorld
) -> None:
    with HubClient(grpc.insecure_channel(insecure_hub)) as anonymous:
        error = refused(grpc.StatusCode.UNAUTHENTICATED, anonymous.stats)
    assert error.reason == "UNKNOWN_PRINCIPAL"
    assert_audited_refusal(running_hub.engine, error, principal="")
    with HubClient.insecure(insecure_hub, "made-up-name") as stranger:
        refused(grpc.StatusCode.UNAUTHENTICATED, stranger.stats)
    with HubClient.insecure(insecure_hub, AUDITOR) as auditor:
        assert auditor.stats().service_items == len(world.items)


def test_insecure_mode_refuses_non_loopback_addresses(running_hub: RunningHub) -> None:
    for address in ("0.0.0.0:0", "[::]:0", "192.0.2.1:0", "example.org:0"):
        with pytest.raises(InsecureRefused):
            build_server(running_hub.hub, address=address, tls=None)
