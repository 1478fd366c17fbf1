"""A real hub on loopback with mTLS, for end-to-end tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from certhub.core.rpc.client import ClientTLS, HubClient
from certhub.hub.app import Hub
from certhub.hub.demo.world import DemoWorld
from certhub.hub.grpc.server import (
    DEFAULT_AUDIT_WATCH,
    AuditWatch,
    RunningServer,
    ServerTLS,
    build_server,
)
from certhub.hub.pki import init_pki, issue_client_certificate
from certhub.hub.runtime import HubConfig, build_hub
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store.engine import make_session_factory, session_scope
from support.loop import CALL_SECONDS

_ISSUING = threading.Lock()
T = TypeVar("T")


@dataclass
class RunningHub:
    """A hub serving on loopback with mTLS, and what tests need to talk to it."""

    hub: Hub
    server: RunningServer
    config: HubConfig
    world: DemoWorld
    engine: Engine

    @property
    def address(self) -> str:
        return f"localhost:{self.server.port}"

    def tls_for(self, principal: str) -> ClientTLS:
        # Issuing rewrites the principal's files: two threads doing it at once could pair one
        # thread's certificate with the other's key (TLS then fails to start).
        with _ISSUING:
            cert, key = issue_client_certificate(self.config.pki, principal)
        return ClientTLS(ca=self.config.pki.ca_cert, cert=cert, key=key)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run one of the hub's use cases on the server's loop (where its Redis clients
        live), from a test's thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.server.loop).result(CALL_SECONDS)

    def client(self, principal: str) -> HubClient:
        return HubClient.connect(self.address, self.tls_for(principal))

    def apply_registry(self, registry_text: str) -> None:
        with session_scope(make_session_factory(self.engine), write=True) as session:
            apply_registry(session, registry_text, now=dt.datetime.now(dt.UTC))
        self.hub.registry_source.refresh()


def start_hub(
    data_dir: Path,
    engine: Engine,
    world: DemoWorld,
    *,
    audit_watch: AuditWatch = DEFAULT_AUDIT_WATCH,
) -> RunningHub:
    config = HubConfig(
        data_dir=data_dir,
        db_url=engine.url.render_as_string(hide_password=False),
        address="127.0.0.1:0",
    )
    pki = init_pki(data_dir)
    with session_scope(make_session_factory(engine), write=True) as session:
        apply_registry(session, world.registry_toml(), now=dt.datetime.now(dt.UTC))
    hub = build_hub(config, engine)
    server = build_server(
        hub,
        address="127.0.0.1:0",
        tls=ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert),
        audit_watch=audit_watch,
    )
    return RunningHub(hub=hub, server=server, config=config, world=world, engine=engine)
