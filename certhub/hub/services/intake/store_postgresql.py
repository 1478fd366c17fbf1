"""The statements the fetch batch runs on PostgreSQL only: a fixed text with the batch as a
JSON document, so the statement is compiled once.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

import psycopg
from sqlalchemy import String, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from certhub.hub.store.aio import CompiledRead
from certhub.hub.store.models import HolderState

# The same upsert as one fixed text with the rows as a JSON document: the multi-row
# statement's text varies with the batch, and compiling it each time cost more than the
# query on the single commit thread.
RECORD_CASES = text(
    """
INSERT INTO cases (case_number, service_item_code, first_fetch_at, served)
SELECT c.case_number, c.service_item_code, c.first_fetch_at, c.served
FROM json_to_recordset(CAST(:rows AS json)) AS c(
    case_number text, service_item_code text, first_fetch_at timestamptz, served boolean)
ON CONFLICT (case_number) DO UPDATE SET served = true
WHERE excluded.served AND NOT cases.served
"""
)


# The two statements on psycopg's raw connection, for the group commit's pipelined path
# (certhub.hub.audit.committer.Pipelined): rendered once, as the fetch's reads are.
_RECORD_CASES_SQL = CompiledRead(RECORD_CASES).sql
# The counters of a batch's cached views (certhub.hub.services.freshness.current_versions),
# the key list as one array parameter, so the text is the same for every batch.
_VERSIONS_SQL = CompiledRead(
    select(HolderState.holder_key, HolderState.version).where(
        HolderState.holder_key == any_(bindparam("keys", type_=ARRAY(String)))
    )
).sql


def queue_versions(
    conn: psycopg.Connection[Any], holder_keys: Collection[str]
) -> psycopg.Cursor[Any]:
    """Queue the read of ``holder_keys``' counters; ``versions`` takes its result."""
    cursor = conn.cursor()
    cursor.execute(_VERSIONS_SQL, {"keys": list(holder_keys)})
    return cursor


def versions(cursor: psycopg.Cursor[Any]) -> dict[str, int]:
    return {str(key): int(version) for key, version in cursor.fetchall()}


def queue_record_cases(
    conn: psycopg.Connection[Any], rows: Mapping[str, Mapping[str, Any]]
) -> None:
    """Queue ``RECORD_CASES`` for ``rows`` (case number -> row, as ``record_cases`` merges
    them)."""
    conn.execute(_RECORD_CASES_SQL, record_cases_params(rows))


def record_cases_params(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    document = [dict(r, first_fetch_at=r["first_fetch_at"].isoformat()) for r in rows.values()]
    return {"rows": json.dumps(document)}
