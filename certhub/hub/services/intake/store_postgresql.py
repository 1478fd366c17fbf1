"""The statements the fetch batch runs on PostgreSQL only: a fixed text with the batch as a
JSON document, so the statement is compiled once.
"""

from __future__ import annotations

from sqlalchemy import text

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
