"""Fetches, gets and verifications by intake systems at service windows.

The rules that need no database (``rules``: the purpose, data minimisation, a stored
envelope's verdict) apart from the SQL that reads certificates and records cases
(``store``, with the statements only PostgreSQL runs in ``store_postgresql``) and from the
holder cache's bytes (``codec``). Callers import from ``certhub.hub.services.intake``.
"""

from __future__ import annotations

from certhub.hub.services.intake.codec import decode_holder, encode_holder
from certhub.hub.services.intake.rules import (
    ENVELOPE_VERDICTS_MAX,
    MAX_CASE_NUMBER_LENGTH,
    MAX_ITEM_CODE_LENGTH,
    REASON_SEVERAL_PROBLEMS,
    STORED_FIELDS,
    FetchInput,
    FetchResult,
    GetInput,
    HolderView,
    MaterialResult,
    Purpose,
    Served,
    StoredCertificate,
    VerifyResult,
    check_certificate_id,
    check_purpose,
    checked_holder,
    envelope_problem,
    read_holder,
    select_for_item,
)
from certhub.hub.services.intake.store import (
    FETCH_BATCH,
    FetchBatch,
    FetchUnit,
    holder_key_of,
    load_attachments,
    load_certificate,
    load_holder,
    load_holder_view,
    read_holder_view,
    record_cases,
    verify_shown,
)

__all__ = [
    "ENVELOPE_VERDICTS_MAX",
    "FETCH_BATCH",
    "MAX_CASE_NUMBER_LENGTH",
    "MAX_ITEM_CODE_LENGTH",
    "REASON_SEVERAL_PROBLEMS",
    "STORED_FIELDS",
    "FetchBatch",
    "FetchInput",
    "FetchResult",
    "FetchUnit",
    "GetInput",
    "HolderView",
    "MaterialResult",
    "Purpose",
    "Served",
    "StoredCertificate",
    "VerifyResult",
    "check_certificate_id",
    "check_purpose",
    "checked_holder",
    "decode_holder",
    "encode_holder",
    "envelope_problem",
    "holder_key_of",
    "load_attachments",
    "load_certificate",
    "load_holder",
    "load_holder_view",
    "read_holder",
    "read_holder_view",
    "record_cases",
    "select_for_item",
    "verify_shown",
]
