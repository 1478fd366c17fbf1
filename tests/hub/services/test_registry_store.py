"""RegistrySource: one caller re-checks the registry; the others do not queue behind it."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from certhub.hub.demo.world import DemoWorld
from certhub.hub.services.registry_store import RegistrySource, apply_registry
from certhub.hub.store.engine import make_session_factory, session_scope

# Far longer than an unblocked current() takes; only reached if it queued behind the lock.
WAIT_SECONDS = 5.0


def test_callers_keep_the_current_registry_while_another_re_checks_it(
    engine: Engine, world: DemoWorld
) -> None:
    sessions = make_session_factory(engine)
    with session_scope(sessions, write=True) as session:
        apply_registry(session, world.registry_toml(), now=dt.datetime.now(dt.UTC))
    now = [0.0]
    source = RegistrySource(sessions, reload_interval=1.0, clock=lambda: now[0])
    loaded = source.refresh()

    in_query = threading.Event()
    release = threading.Event()

    def hold(*_args: Any) -> None:
        if threading.current_thread() is checker:
            in_query.set()
            release.wait(WAIT_SECONDS)

    event.listen(engine, "before_cursor_execute", hold)
    now[0] = 2.0  # the interval has passed: the next caller re-checks
    checker = threading.Thread(target=source.current)
    checker.start()
    try:
        assert in_query.wait(WAIT_SECONDS), "the re-check never queried the database"
        answered: list[object] = []
        other = threading.Thread(target=lambda: answered.append(source.current()))
        other.start()
        other.join(WAIT_SECONDS / 2)
        assert answered == [loaded], "a caller waited for another caller's re-check"
    finally:
        release.set()
        checker.join()
        event.remove(engine, "before_cursor_execute", hold)


def test_the_first_load_waits_for_the_registry(engine: Engine, world: DemoWorld) -> None:
    sessions = make_session_factory(engine)
    with session_scope(sessions, write=True) as session:
        apply_registry(session, world.registry_toml(), now=dt.datetime.now(dt.UTC))
    source = RegistrySource(sessions)
    assert source.current().principals, "current() served the empty registry before loading"
