"""Keys, DSSE envelopes, signed notes and Merkle proofs: pure functions over bytes, no I/O."""

from certhub.signing.dsse import (
    CERTIFICATE_PAYLOAD_TYPE,
    MAX_ENVELOPE_BYTES,
    MAX_SIGNATURES,
    REVOCATION_PAYLOAD_TYPE,
    Envelope,
    Signature,
    Verification,
    VerifiedSignature,
    pae,
    parse_envelope,
    sign_envelope,
    verify_envelope,
)
from certhub.signing.errors import (
    MalformedEnvelope,
    MalformedKey,
    MalformedNote,
    ProofError,
    SigningError,
)
from certhub.signing.keys import Algorithm, KeyStatus, PrivateKey, PublicKey, TrustedKey, key_id
from certhub.signing.note import Checkpoint, NoteSigner, NoteVerifier, open_note, parse_checkpoint

__all__ = [
    "CERTIFICATE_PAYLOAD_TYPE",
    "MAX_ENVELOPE_BYTES",
    "MAX_SIGNATURES",
    "REVOCATION_PAYLOAD_TYPE",
    "Algorithm",
    "Checkpoint",
    "Envelope",
    "KeyStatus",
    "MalformedEnvelope",
    "MalformedKey",
    "MalformedNote",
    "NoteSigner",
    "NoteVerifier",
    "PrivateKey",
    "ProofError",
    "PublicKey",
    "Signature",
    "SigningError",
    "TrustedKey",
    "Verification",
    "VerifiedSignature",
    "key_id",
    "open_note",
    "pae",
    "parse_checkpoint",
    "parse_envelope",
    "sign_envelope",
    "verify_envelope",
]
