"""A console served on loopback over TLS, on the same hub as the ``running_hub`` fixture,
with a district's history in it (a few months of cases, and live cases of this month)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import Engine
from support.casework import SyncCasework
from support.hubs import RunningHub, start_hub
from support.intake import WINDOW, Pushed, push_licence

from certhub.hub.casework import Casework
from certhub.hub.demo.history import backfill
from certhub.hub.demo.world import DemoWorld
from certhub.hub.services import intake
from certhub.hub.services.cases import CloseInput, MaterialUse, RegisterInput
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.web.console import Console
from certhub.hub.web.server import ConsoleTLS, RunningConsole, start_console

T = TypeVar("T")
# Screenshots of every page land here (ignored by git), for people to look at.
ARTIFACTS = Path(os.environ.get("CERTHUB_TEST_ARTIFACTS", "test-artifacts")) / "console"
# Months of history the console tests chart: enough for a trend, quick to write.
HISTORY_MONTHS = 4


@dataclass
class ServedConsole:
    running: RunningHub
    console: RunningConsole
    work: Casework
    pushed: Pushed
    loop: asyncio.AbstractEventLoop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the console's loop, from the test's thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.console.port}"


def _fill(running: RunningHub, world: DemoWorld) -> Pushed:
    """History written like the demo's, then one live case through the hub."""
    sessions = make_session_factory(running.engine)
    now = running.hub.clock()
    with session_scope(sessions, write=True) as session:
        backfill(session, world, months=HISTORY_MONTHS, now=now)
        # The current registry applied last again, so it is the one in force.
        apply_registry(session, world.registry_toml(), now=now + dt.timedelta(seconds=1))
    running.hub.registry_source.refresh()
    work = SyncCasework(running)
    window = running.hub.registry().principals[WINDOW]
    pushed = push_licence(running, world, 5)
    department = world.type_by_name("营业执照").issuer
    work.register_case(
        window, RegisterInput("GL-LIVE-1", pushed.item_code, "WINDOW", department, "3号窗")
    )
    running.run(
        running.hub.fetch(
            window,
            intake.FetchInput(
                "USCC", pushed.holder_id, intake.Purpose(pushed.item_code, "GL-LIVE-1")
            ),
        )
    )
    work.close_case(
        window,
        CloseInput(
            "GL-LIVE-1",
            (
                MaterialUse("M01", "E_CERTIFICATE", pushed.certificate_id),
                MaterialUse("M02", "PAPER"),
            ),
        ),
    )
    return pushed


@pytest.fixture
def served_console(tmp_path: Path, engine: Engine, world: DemoWorld) -> Iterator[ServedConsole]:
    running = start_hub(tmp_path / "data", engine, world)
    # The registry applied by start_hub predates the history; re-applying it after keeps it
    # current (apply is a no-op for the same text only when it is already the newest).
    pushed = _fill(running, world)
    work = Casework(running.hub)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="console-loop", daemon=True)
    thread.start()
    console = asyncio.run_coroutine_threadsafe(
        start_console(
            Console(work),
            host="127.0.0.1",
            port=0,
            tls=ConsoleTLS.from_pki(running.config.pki),
        ),
        loop,
    ).result(timeout=30)
    try:
        yield ServedConsole(running, console, work, pushed, loop)
    finally:
        asyncio.run_coroutine_threadsafe(console.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        running.server.stop(grace=None)
        running.hub.close()
