"""Process set-up for serving: the collector tuning `certhub serve` applies once built."""

from __future__ import annotations

import datetime as dt
import gc
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from support.redis_server import own_redis_server

from certhub.hub.demo.world import DemoWorld
from certhub.hub.runtime import (
    GC_YOUNG_THRESHOLD,
    SWITCH_INTERVAL_SECONDS,
    HubConfig,
    build_hub,
    probe_redis,
    tune_runtime_for_serving,
)
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store.engine import make_session_factory, session_scope


@pytest.fixture
def restored_gc() -> Iterator[tuple[int, int, int]]:
    """The collector's settings before the test, put back after it (they are per process)."""
    before = gc.get_threshold()
    yield before
    gc.unfreeze()
    gc.set_threshold(*before)


def test_serving_freezes_what_start_up_built_and_collects_young_objects_less_often(
    restored_gc: tuple[int, int, int],
) -> None:
    built_at_start_up = [object()]  # stands for the modules, mappers and registry
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    switch_interval = sys.getswitchinterval()
    try:
        tune_runtime_for_serving()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_SECONDS)
    finally:
        sys.setswitchinterval(switch_interval)
    # Everything alive now is out of the collector's sight, so full collections skip it.
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(built_at_start_up)
    assert all(o is not built_at_start_up for o in gc.get_objects())
    # Only the young generation's threshold moves; the older two keep their ratios.
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, restored_gc[1], restored_gc[2])
    assert restored_gc[0] < GC_YOUNG_THRESHOLD


def test_an_unreachable_redis_is_logged_at_start(
    tmp_path: Path, engine: Engine, world: DemoWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """Not only at the first call that finds out (issue 15, item 7)."""
    with own_redis_server(tmp_path) as server:
        url = server.url
        assert probe_redis(url) is None
    # The server is gone: its port refuses connections.
    assert probe_redis(url) is not None
    with session_scope(make_session_factory(engine), write=True) as session:
        apply_registry(session, world.registry_toml(), now=dt.datetime.now(dt.UTC))
    config = HubConfig(data_dir=tmp_path / "data", redis_url=url)
    with caplog.at_level(logging.WARNING, logger="certhub.runtime"):
        hub = build_hub(config, engine)
    hub.close()
    [line] = [r.getMessage() for r in caplog.records if r.name == "certhub.runtime"]
    assert "is unreachable at start" in line
    assert "serving from the database" in line
