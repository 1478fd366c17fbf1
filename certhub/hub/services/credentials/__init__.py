"""Portable credentials: a certificate as a W3C Verifiable Credential 2.0, secured with
VC-JOSE-COSE (``vc+jwt``, EdDSA), and the Bitstring Status Lists that say whether each is
still good.

The hub issues the credential as the attester of the department-signed original: the
credential's ``evidence`` names the DSSE envelope's SHA-256 and the department key that
signed it, so a verifier can fetch the original (or be shown it) and check both
signatures. Each exported certificate version gets one entry at a random index of a
status list (herd privacy: W3C Bitstring Status List, "Privacy Considerations"); the bit is
set while the certificate is revoked or its department key is marked compromised, and the
list is computed from the database whenever it is served, so a revocation shows at once.

The documents, URLs and signatures need no database (``rules``); the status entries and
which bits are set are ``store``'s. Callers import from ``certhub.hub.services.credentials``.
"""

from __future__ import annotations

from certhub.hub.domain.status import CST
from certhub.hub.services.credentials.rules import (
    CREDENTIAL_MEDIA_TYPE,
    CREDENTIAL_TYP,
    STATUS_LIST_SIZE,
    STATUS_LIST_VALIDITY,
    VC_CONTEXT,
    Purpose,
    StatusEntry,
    credential,
    encode_list,
    issuer_url,
    jwks,
    key_url,
    no_such_list,
    sign_jwt,
    status_list_credential,
    status_list_url,
)
from certhub.hub.services.credentials.store import (
    MAX_INDEX_DRAWS,
    STATUS_LIST_FILL,
    allocate,
    list_exists,
    set_indices,
)

__all__ = [
    "CREDENTIAL_MEDIA_TYPE",
    "CREDENTIAL_TYP",
    "CST",
    "MAX_INDEX_DRAWS",
    "STATUS_LIST_FILL",
    "STATUS_LIST_SIZE",
    "STATUS_LIST_VALIDITY",
    "VC_CONTEXT",
    "Purpose",
    "StatusEntry",
    "allocate",
    "credential",
    "encode_list",
    "issuer_url",
    "jwks",
    "key_url",
    "list_exists",
    "no_such_list",
    "set_indices",
    "sign_jwt",
    "status_list_credential",
    "status_list_url",
]
