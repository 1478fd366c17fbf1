"""The statements a push batch runs on PostgreSQL only: fixed texts with the batch as arrays,
so the server keeps one plan and the driver sends binary parameters.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import psycopg
from sqlalchemy.engine import Connection

# store._LOAD on PostgreSQL, with the batch's lineages as one array: the statement text never
# varies with the batch size (an expanded IN list would), so the server keeps one plan.
# Driver SQL, for psycopg's binary placeholder (%(name)b): see WRITE_BATCH.
LOAD_LINEAGES = """
SELECT c.lineage, c.certificate_id, c.version, c.envelope_sha256, c.issuer_code,
       c.is_current, r.lineage IS NOT NULL
FROM certificates AS c LEFT JOIN revocations AS r ON r.lineage = c.lineage
WHERE c.lineage = ANY(CAST(%(lineages)b AS text[]))
"""


# Everything a batch writes, in one PostgreSQL statement, rows as arrays (as
# certhub.hub.audit.log's append does): one round trip and one parameter set instead of an
# executemany of one INSERT per certificate, whose per-row cost in the driver and the ORM
# was most of the single commit thread's work for a push. The UPDATE sees only rows stored
# before this statement (data-modifying CTEs share one snapshot), as the separate UPDATE
# before the INSERT did. Duplicate attachments are removed before, so ON CONFLICT only
# meets files stored by earlier batches. A unique violation still raises IntegrityError.
# Driver SQL (exec_driver_sql) so that the arrays travel in psycopg's binary format
# (%(name)b): its text format quotes and escapes every element with regular expressions in
# Python, about ten times the CPU per row (bench/push_bench.py, docs/performance.md).
WRITE_BATCH = """
WITH superseded AS (
    UPDATE certificates SET is_current = false
    WHERE lineage = ANY(CAST(%(superseding)b AS text[])) AND is_current
), attachments AS (
    INSERT INTO attachments (sha256, media_type, data)
    SELECT * FROM unnest(
        CAST(%(a_sha256)b AS text[]), CAST(%(a_media_type)b AS text[]),
        CAST(%(a_data)b AS bytea[]))
    ON CONFLICT DO NOTHING
)
INSERT INTO certificates (certificate_id, version, lineage, is_current, holder_key, type_code,
                          kind, issuer_code, issued_on, valid_from, valid_until, envelope,
                          envelope_sha256, key_id, attachment_sha256, legacy_uscc, stored_at,
                          audit_idx)
SELECT * FROM unnest(
    CAST(%(certificate_id)b AS text[]), CAST(%(version)b AS integer[]),
    CAST(%(lineage)b AS text[]), CAST(%(is_current)b AS boolean[]),
    CAST(%(holder_key)b AS text[]), CAST(%(type_code)b AS text[]), CAST(%(kind)b AS text[]),
    CAST(%(issuer_code)b AS text[]), CAST(%(issued_on)b AS date[]),
    CAST(%(valid_from)b AS date[]), CAST(%(valid_until)b AS date[]),
    CAST(%(envelope)b AS bytea[]), CAST(%(envelope_sha256)b AS text[]),
    CAST(%(key_id)b AS text[]), CAST(%(attachment_sha256)b AS text[]),
    CAST(%(legacy_uscc)b AS boolean[]), CAST(%(stored_at)b AS timestamptz[]),
    CAST(%(audit_idx)b AS bigint[]))
"""


def write_batch(
    conn: Connection,
    rows: list[dict[str, object]],
    superseding: set[str],
    attachments: list[dict[str, object]],
) -> None:
    conn.exec_driver_sql(WRITE_BATCH, _write_params(rows, superseding, attachments))


def queue_lineages(conn: psycopg.Connection[Any], lineages: Collection[str]) -> psycopg.Cursor[Any]:
    """Queue ``LOAD_LINEAGES`` in the group commit's pipeline; the cursor holds its rows once
    the pipeline synced."""
    cursor = conn.cursor()
    cursor.execute(LOAD_LINEAGES, {"lineages": list(lineages)})
    return cursor


def queue_write_batch(
    conn: psycopg.Connection[Any],
    rows: list[dict[str, object]],
    superseding: set[str],
    attachments: list[dict[str, object]],
) -> None:
    """``write_batch`` in the group commit's pipeline."""
    conn.execute(WRITE_BATCH, _write_params(rows, superseding, attachments))


def _write_params(
    rows: list[dict[str, object]], superseding: set[str], attachments: list[dict[str, object]]
) -> dict[str, list[object]]:
    # store._row's keys are the certificate columns, and name WRITE_BATCH's arrays.
    params: dict[str, list[object]] = {name: [row[name] for row in rows] for name in rows[0]}
    params["superseding"] = list(superseding)
    params["a_sha256"] = [a["sha256"] for a in attachments]
    params["a_media_type"] = [a["media_type"] for a in attachments]
    params["a_data"] = [a["data"] for a in attachments]
    return params
