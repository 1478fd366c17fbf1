"""Never a stale VALID: a fetch served from the cache is checked against the database.

The holder cache lives in Redis (or in one process) and is invalidated after each push or
revocation commits; an invalidation can be lost (Redis down, restarted, frozen, or cut off
from the one worker that committed). Correctness must not rest on it. So every change to a
holder's certificates moves that holder's counter in ``holder_states`` in the same
transaction, a holder view read from the database carries the counter read just BEFORE
its certificates (a change committed in between only makes the view look older than it
is), and a fetch answered from a cached view puts ``(holder, counter)`` into its audit unit.
The group commit checks all of a batch's views with one query, in the transaction that
sequences their audit entries: a view whose holder moved since is reported stale, its entry
says so, and the fetch reads the database and is audited and answered again.

Why that is enough: a revocation is acknowledged only after its transaction committed. A
fetch that starts after the acknowledgement sequences its entry in a later transaction,
which sees the moved counter. The cost is one primary-key query per group-commit batch
that holds cached fetches, never one per fetch.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final

import psycopg
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from certhub.hub.store.aio import AsyncReader, CompiledRead
from certhub.hub.store.models import HolderState

__all__ = [
    "STALE",
    "bump",
    "current_versions",
    "queue_bump",
    "read_version",
    "read_version_async",
    "stale_holders",
    "superseded",
]

# What a checked fetch unit's value is when its cached view was superseded.
STALE: Final = "stale"

_READ = select(HolderState.version).where(HolderState.holder_key == bindparam("holder_key"))


_READ_ASYNC = CompiledRead(_READ)


def read_version(conn: Connection, holder_key: str) -> int:
    """The holder's counter now (0 if it never changed). Read it BEFORE the certificates."""
    return int(conn.execute(_READ, {"holder_key": holder_key}).scalar_one_or_none() or 0)


async def read_version_async(reader: AsyncReader, holder_key: str) -> int:
    """``read_version`` on the event loop (PostgreSQL)."""
    rows = await reader.rows(_READ_ASYNC, {"holder_key": holder_key})
    return int(rows[0][0] or 0) if rows else 0


def _bump_keys(holder_keys: Iterable[str]) -> list[str]:
    """The keys a bump moves, each once (one statement may not touch a row twice), in one
    order for every writer (no lock cycles)."""
    return sorted(set(holder_keys))


# ``bump`` on PostgreSQL: one fixed text with the keys as one binary array parameter. The
# executemany of one upsert per key that it replaces was about a quarter of the group
# commit thread's samples in a push batch (psycopg builds and dumps each row's parameters in
# Python; bench/push_bench.py, docs/performance.md "Pushes in the pipeline"). Driver SQL,
# for psycopg's binary placeholder (%(name)b), as certhub.hub.services.ingest.store_postgresql.
# ORDER BY ordinality keeps the keys' order, so rows are locked in ``_bump_keys``'s order.
BUMP_POSTGRESQL = """
INSERT INTO holder_states (holder_key, version)
SELECT k.key, 1 FROM unnest(CAST(%(keys)b AS text[])) WITH ORDINALITY AS k(key, n)
ORDER BY k.n
ON CONFLICT (holder_key) DO UPDATE SET version = holder_states.version + 1
"""


def queue_bump(conn: psycopg.Connection[Any], holder_keys: Iterable[str]) -> None:
    """``bump`` on psycopg's raw connection, for the group commit's pipeline."""
    keys = _bump_keys(holder_keys)
    if keys:
        conn.execute(BUMP_POSTGRESQL, {"keys": keys})


def bump(session: Session, holder_keys: Iterable[str]) -> None:
    """Move the counters of ``holder_keys``; call in the transaction that changes them."""
    keys = _bump_keys(holder_keys)
    if not keys:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(BUMP_POSTGRESQL, {"keys": keys})
        return
    insert = sqlite.insert(HolderState)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[HolderState.holder_key],
            set_={"version": HolderState.version + 1},
        ),
        [{"holder_key": key, "version": 1} for key in keys],
    )


def current_versions(session: Session, holder_keys: Collection[str]) -> dict[str, int]:
    if not holder_keys:
        return {}
    rows = session.connection().execute(
        select(HolderState.holder_key, HolderState.version).where(
            HolderState.holder_key.in_(holder_keys)
        )
    )
    return {key: int(version) for key, version in rows}


def stale_holders(session: Session, views: Mapping[str, int]) -> set[str]:
    """Of ``views`` (holder key -> the counter a cached view was read at), those whose
    holder has changed since."""
    return superseded(views, current_versions(session, views.keys()))


def superseded(views: Mapping[str, int], now: Mapping[str, int]) -> set[str]:
    """Of ``views`` (holder key -> the counter a cached view was read at), those whose
    counter ``now`` (as ``current_versions`` reads it) has moved past."""
    return {key for key, seen in views.items() if now.get(key, 0) > seen}
