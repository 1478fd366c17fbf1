"""The holders' change counters (certhub.hub.services.freshness): a bump moves each named
holder's counter by one, however often the batch names it, and creates missing ones at 1;
the same on a session and in the group commit's pipeline (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from certhub.hub.services import freshness
from certhub.hub.store.engine import make_session_factory, pipeline_scope, session_scope
from certhub.hub.store.models import HolderState


def _on_session(engine: Engine, keys: Iterable[str]) -> None:
    with session_scope(make_session_factory(engine), write=True) as session:
        freshness.bump(session, keys)


def _in_pipeline(engine: Engine, keys: Iterable[str]) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the pipeline is PostgreSQL's")
    with pipeline_scope(make_session_factory(engine)) as pipeline:
        freshness.queue_bump(pipeline.conn, keys)


@pytest.mark.parametrize("bump", [_on_session, _in_pipeline])
def test_a_bump_moves_each_named_holder_once(
    engine: Engine, bump: Callable[[Engine, Iterable[str]], None]
) -> None:
    bump(engine, ["USCC:B", "USCC:A", "USCC:B"])
    bump(engine, ["USCC:B", "USCC:C", "USCC:B", "USCC:B"])
    bump(engine, [])
    with engine.connect() as conn:
        counters = dict(conn.execute(select(HolderState.holder_key, HolderState.version)).all())
    assert counters == {"USCC:A": 1, "USCC:B": 2, "USCC:C": 1}
    session = make_session_factory(engine)()
    try:
        assert freshness.current_versions(session, ["USCC:B", "USCC:Z"]) == {"USCC:B": 2}
    finally:
        session.close()
