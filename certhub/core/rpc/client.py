"""A small typed client for intake systems and departments.

Every certificate it returns has been verified offline against the departments' keys from
``ListIssuerKeys``: a compromised hub cannot forge a licence without a department's key. gRPC errors
become ``HubClientError`` subclasses carrying the server's rich details, mapped in one place
(``certhub.core.rpc.errors``); the channel is set up as ``certhub.core.rpc.channel`` sets up every
channel to the hub. The names of both are exported here too, so a window's system imports everything
it uses from this module.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import grpc

from certhub.core.rpc.channel import (
    INSECURE_PRINCIPAL_HEADER,
    MAX_MESSAGE_BYTES,
    ClientTLS,
    insecure_channel,
    secure_channel,
)
from certhub.core.rpc.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    HubClientError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    RateLimitedError,
    UnauthenticatedError,
    UnavailableError,
    Violation,
    raise_typed,
)
from certhub.signing import (
    CERTIFICATE_PAYLOAD_TYPE,
    KeyStatus,
    NoteVerifier,
    PublicKey,
    SigningError,
    TrustedKey,
    merkle,
    open_note,
    parse_checkpoint,
    parse_envelope,
    verify_envelope,
)
from certhub.signing.cosignature import CosignatureVerifier, verify_cosignatures
from certhub.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    citizen_pb2,
    citizen_pb2_grpc,
    common_pb2,
    directory_pb2,
    directory_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    intake_pb2,
    intake_pb2_grpc,
)

__all__ = [
    "COSIGNED_POLL_SECONDS",
    "COSIGNED_WAIT_SECONDS",
    "DEFAULT_TIMEOUT_SECONDS",
    "INSECURE_PRINCIPAL_HEADER",
    "MAX_MESSAGE_BYTES",
    "RETRY_INITIAL_BACKOFF",
    "RETRY_MAX_ATTEMPTS",
    "RETRY_MAX_BACKOFF",
    "SERVICE_CONFIG",
    "AlreadyExistsError",
    "AuditProofError",
    "CertificateVerificationError",
    "CheckedCheckpoint",
    "ClientTLS",
    "FailedPreconditionError",
    "Fetched",
    "HubClient",
    "HubClientError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "Presented",
    "ProvenEntry",
    "RateLimitedError",
    "UnauthenticatedError",
    "UnavailableError",
    "VerifiedCertificate",
    "Violation",
]

T = TypeVar("T")

# Default per-call deadline: a window clerk waits seconds, not minutes.
DEFAULT_TIMEOUT_SECONDS = 10.0
# How long fetch(prove_audit=True) waits for a checkpoint the required witnesses cosigned
# to cover its entry. The hub submits each new checkpoint about once a second and a witness
# answers within WITNESS_TIMEOUT_SECONDS (5 s, certhub.hub.witness.submitter): a round and a slow
# witness fit in the window's 10 s deadline.
COSIGNED_WAIT_SECONDS = DEFAULT_TIMEOUT_SECONDS
# Pause between two looks for a newer cosigned checkpoint: the submitter's cadence.
COSIGNED_POLL_SECONDS = 0.25
# Retries of UNAVAILABLE (the hub lost its database, is restarting, or a balancer has no
# ready hub), done by gRPC itself for the calls that are safe to repeat: every intake,
# directory and audit read, and the unary push and revoke (idempotent: the same envelope is
# a DUPLICATE, a second revocation not newly_revoked). Three attempts with 0.2 s, then up to
# 0.4 s of jittered backoff outlast a hub restart's NOT_SERVING gap behind a balancer
# without stretching a window's wait past its 10 s deadline, which bounds them all. The
# PushCertificates stream is not retried: the adapter resends from its outbox.
RETRY_MAX_ATTEMPTS = 3
RETRY_INITIAL_BACKOFF = "0.2s"
RETRY_MAX_BACKOFF = "2s"
_RETRY_POLICY = {
    "maxAttempts": RETRY_MAX_ATTEMPTS,
    "initialBackoff": RETRY_INITIAL_BACKOFF,
    "maxBackoff": RETRY_MAX_BACKOFF,
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": "certhub.v1.IntakeService"},
                    {"service": "certhub.v1.DirectoryService"},
                    {"service": "certhub.v1.AuditService"},
                    {"service": "certhub.v1.CitizenService", "method": "ListMyAccesses"},
                    {"service": "certhub.v1.CitizenService", "method": "ListConsentRequests"},
                    {"service": "certhub.v1.IngestService", "method": "PushCertificate"},
                    {"service": "certhub.v1.IngestService", "method": "RevokeCertificate"},
                ],
                "retryPolicy": _RETRY_POLICY,
            },
            # Single-use: a redemption whose answer was lost may have committed, and its
            # retry would be refused as PRESENTATION_REPLAYED. A method's own entry
            # overrides its service's, so this one is not retried.
            {"name": [{"service": "certhub.v1.IntakeService", "method": "RedeemPresentation"}]},
        ]
    }
)
_RETRY_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.enable_retries", 1),
    ("grpc.service_config", SERVICE_CONFIG),
]
_KEY_STATUS = {
    directory_pb2.KEY_ACTIVE: KeyStatus.ACTIVE,
    directory_pb2.KEY_RETIRED: KeyStatus.RETIRED,
    directory_pb2.KEY_COMPROMISED: KeyStatus.COMPROMISED,
}


# --- errors (the hub's error answers are certhub.core.rpc.errors'; these are the client's own
# checks)


class CertificateVerificationError(Exception):
    """A certificate the hub returned does not verify against the departments' keys."""


class AuditProofError(Exception):
    """The hub's audit log answer does not verify: a checkpoint signature, an inclusion or a
    consistency proof, or a proven leaf that does not describe the call it should."""


def _id_type(id_type: str) -> common_pb2.IdType.ValueType:
    """The proto enum value of ``id_type``; an unknown name is refused as the hub would."""
    try:
        return common_pb2.IdType.Value(id_type)
    except ValueError:
        known = ", ".join(n for n, v in common_pb2.IdType.items() if v != 0)
        message = f"id_type {id_type!r} is not one of {known}"
        raise InvalidArgumentError(
            message,
            code=grpc.StatusCode.INVALID_ARGUMENT,
            reason="INVALID_HOLDER_ID_TYPE",
            violations=(Violation("holder.id_type", message),),
        ) from None


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedCertificate:
    """A certificate the client checked offline; ``payload`` is its decoded JSON.

    A certificate the hub serves as VALID always verified (``key_id`` names the key). One
    the hub serves as not valid (e.g. REVOKED because its key was later marked compromised)
    may fail the check: it is kept, with ``key_id`` empty and ``verification_error`` saying
    why, so the window sees it without being able to rely on it.
    """

    record: common_pb2.CertificateRecord
    payload: dict[str, Any]
    key_id: str
    verification_error: str = ""

    @property
    def certificate_id(self) -> str:
        return str(self.payload["certificate_id"])

    @property
    def status(self) -> str:
        return common_pb2.CertificateStatus.Name(self.record.status)


@dataclass(frozen=True, slots=True)
class CheckedCheckpoint:
    """A checkpoint whose signature verified with the log's verifier key."""

    origin: str
    size: int
    root_hash: bytes
    note: str


@dataclass(frozen=True, slots=True)
class ProvenEntry:
    """An audit leaf proven included in ``checkpoint``; ``fields`` is its decoded JSON."""

    index: int
    leaf: bytes
    fields: dict[str, Any]
    checkpoint: CheckedCheckpoint


@dataclass(frozen=True, slots=True)
class Fetched:
    certificates: tuple[VerifiedCertificate, ...]
    materials: tuple[intake_pb2.MaterialStatus, ...]
    audit_index: int
    # Set by ``fetch(prove_audit=True)``: the fetch's own audit entry, proven in the log.
    audit_proof: ProvenEntry | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Presented:
    """A redeemed presentation token: the certificate (verified offline), the purpose the
    applicant gave, when they created the token, and the redemption's audit index."""

    certificate: VerifiedCertificate
    purpose: str
    presented_at: str
    audit_index: int


@dataclass
class HubClient:
    """Connect with ``HubClient.connect`` (mTLS) or ``HubClient.insecure`` (loopback dev)."""

    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    _keys: dict[str, TrustedKey] = field(default_factory=dict)
    # The audit log's C2SP verifier key, obtained out of band (``certhub audit vkey``).
    log_verifier_key: str | None = None
    # Witnesses whose cosignatures this client requires (their keys, `certhub witness
    # vkey`), and how many of them (0 = all). With any, ``checkpoint`` asks for the newest
    # checkpoint they cosigned and checks the cosignatures: a log shown to this client is
    # the one the witnesses saw (docs/trust.md).
    witness_keys: tuple[str, ...] = ()
    witness_quorum: int = 0
    # The newest checkpoint this client checked; later ones must be consistent with it.
    _checkpoint: CheckedCheckpoint | None = None

    @classmethod
    def connect(cls, address: str, tls: ClientTLS, *, server_name: str | None = None) -> HubClient:
        return cls(secure_channel(address, tls, server_name=server_name, options=_RETRY_OPTIONS))

    @classmethod
    def insecure(cls, address: str, principal: str) -> HubClient:
        """Development only, against a hub started with --insecure on loopback."""
        return cls(
            insecure_channel(address, options=_RETRY_OPTIONS),
            metadata=((INSECURE_PRINCIPAL_HEADER, principal),),
        )

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    @property
    def ingest(self) -> ingest_pb2_grpc.IngestServiceStub:
        return ingest_pb2_grpc.IngestServiceStub(self.channel)

    @property
    def intake(self) -> intake_pb2_grpc.IntakeServiceStub:
        return intake_pb2_grpc.IntakeServiceStub(self.channel)

    @property
    def directory(self) -> directory_pb2_grpc.DirectoryServiceStub:
        return directory_pb2_grpc.DirectoryServiceStub(self.channel)

    @property
    def audit(self) -> audit_pb2_grpc.AuditServiceStub:
        return audit_pb2_grpc.AuditServiceStub(self.channel)

    @property
    def citizen(self) -> citizen_pb2_grpc.CitizenServiceStub:
        return citizen_pb2_grpc.CitizenServiceStub(self.channel)

    def call(self, method: Any, request: Any) -> Any:
        """Invoke a unary stub method with this client's deadline and metadata, typed errors."""
        try:
            return method(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as error:
            raise_typed(error)

    # --- department side ----------------------------------------------------------------------

    def push(
        self, envelope: bytes, *, attachment: bytes = b"", client_ref: str = ""
    ) -> ingest_pb2.PushResult:
        request = ingest_pb2.PushRequest(
            envelope=envelope, attachment=attachment, client_ref=client_ref
        )
        result: ingest_pb2.PushResult = self.call(self.ingest.PushCertificate, request)
        return result

    def push_stream(
        self, requests: Iterable[ingest_pb2.PushRequest], *, timeout: float | None = None
    ) -> Iterator[ingest_pb2.PushResult]:
        try:
            yield from self.ingest.PushCertificates(
                iter(requests), timeout=timeout, metadata=self.metadata
            )
        except grpc.RpcError as error:
            raise_typed(error)

    def revoke(self, envelope: bytes, *, client_ref: str = "") -> ingest_pb2.RevokeResult:
        result: ingest_pb2.RevokeResult = self.call(
            self.ingest.RevokeCertificate,
            ingest_pb2.RevokeRequest(envelope=envelope, client_ref=client_ref),
        )
        return result

    # --- intake side --------------------------------------------------------------------------

    def issuer_keys(self, *, refresh: bool = False) -> dict[str, TrustedKey]:
        """Departments' keys by key id, fetched once (``refresh`` after a key change)."""
        if refresh or not self._keys:
            response = self.call(
                self.directory.ListIssuerKeys, directory_pb2.ListIssuerKeysRequest()
            )
            self._keys = {
                k.key_id: TrustedKey(
                    public_key=PublicKey.from_pem(k.public_key_pem.encode()),
                    owner=k.department_code,
                    not_before=dt.date.fromisoformat(k.not_before),
                    not_after=dt.date.fromisoformat(k.not_after) if k.not_after else None,
                    status=_KEY_STATUS[k.status],
                )
                for k in response.keys
            }
        return self._keys

    def verify_offline(self, envelope: bytes) -> tuple[dict[str, Any], str]:
        """Check a certificate envelope against the departments' keys; return (payload, key id)."""
        try:
            parsed = parse_envelope(envelope)
            payload = json.loads(parsed.payload)
            owner = payload["issuer"]["code"]
            issued_on = dt.date.fromisoformat(payload["issued_on"])
        except (SigningError, ValueError, KeyError, TypeError) as e:
            raise CertificateVerificationError(f"unreadable certificate envelope: {e}") from e
        for refresh in (False, True):
            verification = verify_envelope(
                parsed,
                expected_payload_type=CERTIFICATE_PAYLOAD_TYPE,
                keys=self.issuer_keys(refresh=refresh),
                owner=owner,
                signed_on=issued_on,
            )
            if verification.ok:
                return payload, verification.verified[0].public_key.key_id
        raise CertificateVerificationError(
            f"certificate {payload.get('certificate_id')}: " + "; ".join(verification.reasons)
        )

    def fetch(
        self,
        *,
        id_type: str,
        holder_id: str,
        service_item: str,
        case_number: str,
        include_attachments: bool = False,
        prove_audit: bool = False,
    ) -> Fetched:
        """``prove_audit`` also proves the fetch's audit entry is in a checkpoint signed by
        ``log_verifier_key`` and describes this fetch (see ``verify_audit_index``)."""
        request = intake_pb2.FetchRequest(
            holder=common_pb2.Holder(id_type=_id_type(id_type), id=holder_id),
            service_item_code=service_item,
            case_number=case_number,
            include_attachments=include_attachments,
        )
        response: intake_pb2.FetchResponse = self.call(self.intake.FetchCertificates, request)
        verified = [self._checked(record) for record in response.certificates]
        proof = None
        if prove_audit:
            proof = self.verify_audit_index(
                response.audit_index, self._checkpoint_covering(response.audit_index)
            )
            expected = {"action": "fetch", "service_item": service_item, "case": case_number}
            actual = {k: proof.fields.get(k) for k in expected}
            if actual != expected:
                raise AuditProofError(
                    f"audit entry {response.audit_index} records {actual}, not this fetch"
                )
        return Fetched(tuple(verified), tuple(response.materials), response.audit_index, proof)

    def get(
        self,
        certificate_id: str,
        *,
        id_type: str,
        holder_id: str,
        service_item: str,
        case_number: str,
        include_attachments: bool = False,
    ) -> VerifiedCertificate:
        request = intake_pb2.GetCertificateRequest(
            certificate_id=certificate_id,
            holder=common_pb2.Holder(id_type=_id_type(id_type), id=holder_id),
            service_item_code=service_item,
            case_number=case_number,
            include_attachments=include_attachments,
        )
        record: common_pb2.CertificateRecord = self.call(self.intake.GetCertificate, request)
        return self._checked(record)

    def _checked(self, record: common_pb2.CertificateRecord) -> VerifiedCertificate:
        """Verify a served record offline; a VALID record that does not verify raises."""
        try:
            payload, key_id = self.verify_offline(record.envelope)
        except CertificateVerificationError as error:
            if record.status == common_pb2.VALID:
                raise
            summary = record.summary
            payload = {
                "certificate_id": summary.certificate_id,
                "type_code": summary.type_code,
                "name": summary.name,
                "issuer": {"code": summary.issuer_code, "name": summary.issuer_name},
            }
            return VerifiedCertificate(
                record=record, payload=payload, key_id="", verification_error=str(error)
            )
        return VerifiedCertificate(record=record, payload=payload, key_id=key_id)

    def redeem_presentation(
        self,
        token: str,
        *,
        service_item: str,
        case_number: str,
        include_attachments: bool = False,
    ) -> Presented:
        """Redeem an applicant's presentation token (亮证 QR) for a case; single-use. Not
        retried on UNAVAILABLE: a redemption that committed cannot be repeated."""
        request = intake_pb2.RedeemPresentationRequest(
            token=token,
            service_item_code=service_item,
            case_number=case_number,
            include_attachments=include_attachments,
        )
        response: intake_pb2.RedeemPresentationResponse = self.call(
            self.intake.RedeemPresentation, request
        )
        return Presented(
            certificate=self._checked(response.certificate),
            purpose=response.purpose,
            presented_at=response.presented_at,
            audit_index=response.audit_index,
        )

    def verify(self, envelope: bytes) -> intake_pb2.VerifyResponse:
        response: intake_pb2.VerifyResponse = self.call(
            self.intake.VerifyCertificate, intake_pb2.VerifyRequest(envelope=envelope)
        )
        return response

    # --- audit log ----------------------------------------------------------------------------

    def checkpoint(self, *, verifier_key: str | None = None) -> CheckedCheckpoint:
        """The hub's latest checkpoint, its signature checked with ``verifier_key`` (default
        ``log_verifier_key``) and, when this client checked an earlier one, proven consistent
        with it (the log only grew)."""
        vkey = verifier_key or self.log_verifier_key
        if not vkey:
            raise ValueError("the audit log's verifier key is needed (log_verifier_key)")
        response: audit_pb2.Checkpoint = self.call(
            self.audit.GetCheckpoint,
            audit_pb2.GetCheckpointRequest(cosigned=bool(self.witness_keys)),
        )
        try:
            verifier = NoteVerifier.from_vkey(vkey)
            body = parse_checkpoint(open_note(response.note, [verifier]))
        except SigningError as e:
            raise AuditProofError(f"checkpoint does not verify: {e}") from e
        if self.witness_keys:
            self._check_cosigned(response.note, body.size)
        if body.origin != verifier.name:
            raise AuditProofError(
                f"checkpoint origin {body.origin!r} is not the log {verifier.name!r}"
            )
        checked = CheckedCheckpoint(
            origin=body.origin, size=body.size, root_hash=body.root_hash, note=response.note
        )
        previous = self._checkpoint
        if previous is not None and previous.origin == checked.origin:
            self._check_consistent(previous, checked)
        if previous is None or checked.size >= previous.size:
            self._checkpoint = checked
        return checked

    def _check_cosigned(self, note: str, size: int) -> None:
        need = self.witness_quorum or len(self.witness_keys)
        try:
            found = verify_cosignatures(
                note, [CosignatureVerifier.from_vkey(k) for k in self.witness_keys]
            )
        except SigningError as e:
            raise AuditProofError(f"checkpoint {size}: bad cosignature: {e}") from e
        if len(found) < need:
            raise AuditProofError(
                f"checkpoint {size} carries {len(found)} valid cosignatures of the required "
                f"witnesses; this client needs {need}"
            )

    def _checkpoint_covering(self, index: int) -> CheckedCheckpoint:
        """The checkpoint to prove entry ``index`` in: the newest signed one, or with
        witnesses the newest they cosigned, waited for until it covers the entry."""
        deadline = time.monotonic() + COSIGNED_WAIT_SECONDS
        while True:
            try:
                checked = self.checkpoint()
            except NotFoundError as e:
                if e.reason != "NO_COSIGNED_CHECKPOINT" or time.monotonic() > deadline:
                    raise
            else:
                if checked.size > index or not self.witness_keys:
                    return checked
                if time.monotonic() > deadline:
                    raise AuditProofError(
                        f"no checkpoint cosigned by the required witnesses covers audit entry "
                        f"{index} after {COSIGNED_WAIT_SECONDS:g} s (newest cosigned: "
                        f"{checked.size})"
                    )
            time.sleep(COSIGNED_POLL_SECONDS)

    def _check_consistent(self, old: CheckedCheckpoint, new: CheckedCheckpoint) -> None:
        if new.size < old.size:
            raise AuditProofError(f"log shrank from {old.size} to {new.size} entries")
        if old.size == 0:
            return
        proof: audit_pb2.ConsistencyProof = self.call(
            self.audit.GetConsistencyProof,
            audit_pb2.GetConsistencyProofRequest(first_size=old.size, second_size=new.size),
        )
        try:
            merkle.verify_consistency(
                size1=old.size,
                size2=new.size,
                root1=old.root_hash,
                root2=new.root_hash,
                proof=list(proof.hashes),
            )
        except SigningError as e:
            raise AuditProofError(
                f"checkpoint {new.size} is not consistent with checkpoint {old.size}: {e}"
            ) from e

    def verify_audit_index(self, index: int, checkpoint: CheckedCheckpoint) -> ProvenEntry:
        """Prove the audit entry at ``index`` is in ``checkpoint``; return the proven leaf.

        Non-auditor principals may prove only entries they caused (their own calls)."""
        response: audit_pb2.InclusionProof = self.call(
            self.audit.GetInclusionProof,
            audit_pb2.GetInclusionProofRequest(leaf_index=index, tree_size=checkpoint.size),
        )
        if response.leaf_index != index or response.tree_size != checkpoint.size:
            raise AuditProofError(
                f"asked to prove {index} in {checkpoint.size}, got a proof of "
                f"{response.leaf_index} in {response.tree_size}"
            )
        try:
            merkle.verify_inclusion(
                leaf_index=index,
                tree_size=checkpoint.size,
                leaf_hash=merkle.leaf_hash(response.leaf),
                proof=list(response.hashes),
                root=checkpoint.root_hash,
            )
            fields = json.loads(response.leaf)
        except (SigningError, ValueError) as e:
            raise AuditProofError(f"audit entry {index}: {e}") from e
        if not isinstance(fields, dict):
            raise AuditProofError(f"audit entry {index} is not a JSON object")
        return ProvenEntry(index=index, leaf=response.leaf, fields=fields, checkpoint=checkpoint)

    def stats(self) -> directory_pb2.Stats:
        response: directory_pb2.Stats = self.call(
            self.directory.GetStats, directory_pb2.GetStatsRequest()
        )
        return response

    # --- citizen app side (role CITIZEN_APP, acting for the applicant it authenticated) ----

    def my_accesses(
        self, *, id_type: str, holder_id: str, page_size: int = 0, page_token: str = ""
    ) -> citizen_pb2.ListMyAccessesResponse:
        """One page of the audit entries about the applicant, newest first."""
        request = citizen_pb2.ListMyAccessesRequest(
            applicant=_applicant(id_type, holder_id), page_size=page_size, page_token=page_token
        )
        response: citizen_pb2.ListMyAccessesResponse = self.call(
            self.citizen.ListMyAccesses, request
        )
        return response

    def create_presentation(
        self,
        certificate_id: str,
        *,
        id_type: str,
        holder_id: str,
        purpose: str = "",
        service_item: str = "",
        ttl_seconds: int = 0,
    ) -> citizen_pb2.CreatePresentationResponse:
        """A single-use presentation token (at most 5 minutes) for one of the applicant's
        certificates; render ``.token`` as a QR code (``certhub.hub.cli.citizen.qr_code``)."""
        request = citizen_pb2.CreatePresentationRequest(
            applicant=_applicant(id_type, holder_id),
            certificate_id=certificate_id,
            purpose=purpose,
            service_item_code=service_item,
            ttl_seconds=ttl_seconds,
        )
        response: citizen_pb2.CreatePresentationResponse = self.call(
            self.citizen.CreatePresentation, request
        )
        return response

    def consent_requests(
        self, *, id_type: str, holder_id: str
    ) -> citizen_pb2.ListConsentRequestsResponse:
        """The applicant's pending consent requests, each with its preview."""
        request = citizen_pb2.ListConsentRequestsRequest(applicant=_applicant(id_type, holder_id))
        response: citizen_pb2.ListConsentRequestsResponse = self.call(
            self.citizen.ListConsentRequests, request
        )
        return response

    def decide_consent(
        self, request_id: str, *, id_type: str, holder_id: str, approve: bool
    ) -> citizen_pb2.DecideConsentResponse:
        """Approve (``approve=True``) or decline one of the applicant's pending requests."""
        request = citizen_pb2.DecideConsentRequest(
            applicant=_applicant(id_type, holder_id), request_id=request_id, approve=approve
        )
        response: citizen_pb2.DecideConsentResponse = self.call(self.citizen.DecideConsent, request)
        return response

    def export_credential(
        self, certificate_id: str, *, id_type: str, holder_id: str
    ) -> citizen_pb2.ExportCredentialResponse:
        """One of the applicant's certificates as a W3C VC 2.0 (``.credential``, vc+jwt)."""
        request = citizen_pb2.ExportCredentialRequest(
            applicant=_applicant(id_type, holder_id), certificate_id=certificate_id
        )
        response: citizen_pb2.ExportCredentialResponse = self.call(
            self.citizen.ExportCredential, request
        )
        return response


def _applicant(id_type: str, holder_id: str) -> common_pb2.Holder:
    return common_pb2.Holder(id_type=_id_type(id_type), id=holder_id)
