"""Proto messages <-> the domain dataclasses the services take and return."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

import grpc

from certhub.hub.app import FetchOutput, PushOutput, RevokeOutput, VerifyOutput
from certhub.hub.domain.certificate import CertificatePayload
from certhub.hub.domain.status import CertificateStatus
from certhub.hub.errors import HubError, InvalidArgument
from certhub.hub.registry import CertificateType, Department, ServiceItem
from certhub.hub.services import cases, directory, ingest, intake, stats
from certhub.signing import KeyStatus, parse_envelope
from certhub.v1 import common_pb2, directory_pb2, ingest_pb2, intake_pb2

_ID_TYPES = {v: k for k, v in common_pb2.IdType.items() if v}
_KEY_STATUS = {
    KeyStatus.ACTIVE: directory_pb2.KEY_ACTIVE,
    KeyStatus.RETIRED: directory_pb2.KEY_RETIRED,
    KeyStatus.COMPROMISED: directory_pb2.KEY_COMPROMISED,
}


# --- requests -------------------------------------------------------------------------------


def holder_in(holder: common_pb2.Holder, field: str = "holder") -> tuple[str, str]:
    id_type = _ID_TYPES.get(holder.id_type)
    if id_type is None:
        raise InvalidArgument.field(
            f"{field}.id_type",
            f"must be one of {', '.join(sorted(_ID_TYPES.values()))}",
            reason="INVALID_HOLDER_ID_TYPE",
        )
    return id_type, holder.id


def push_in(request: ingest_pb2.PushRequest) -> ingest.PushInput:
    return ingest.PushInput(
        envelope=request.envelope,
        attachment=request.attachment or None,
        client_ref=request.client_ref,
    )


def revoke_in(request: ingest_pb2.RevokeRequest) -> ingest.RevokeInput:
    return ingest.RevokeInput(envelope=request.envelope, client_ref=request.client_ref)


def fetch_in(request: intake_pb2.FetchRequest) -> intake.FetchInput:
    id_type, holder_id = holder_in(request.holder)
    return intake.FetchInput(
        id_type=id_type,
        holder_id=holder_id,
        purpose=intake.Purpose(request.service_item_code, request.case_number),
        include_attachments=request.include_attachments,
    )


def get_in(request: intake_pb2.GetCertificateRequest) -> intake.GetInput:
    id_type, holder_id = holder_in(request.holder)
    return intake.GetInput(
        certificate_id=request.certificate_id,
        id_type=id_type,
        holder_id=holder_id,
        purpose=intake.Purpose(request.service_item_code, request.case_number),
        include_attachments=request.include_attachments,
    )


# --- responses ------------------------------------------------------------------------------


def push_out(result: PushOutput) -> ingest_pb2.PushResult:
    return ingest_pb2.PushResult(
        client_ref=result.client_ref,
        certificate_id=result.certificate_id,
        version=result.version,
        outcome=ingest_pb2.PushOutcome.Value(str(result.outcome)),
        audit_index=result.audit_index,
    )


def push_rejected(client_ref: str, error: HubError) -> ingest_pb2.PushResult:
    return ingest_pb2.PushResult(
        client_ref=client_ref,
        outcome=ingest_pb2.REJECTED,
        code=grpc.StatusCode[error.status_name].value[0],
        message=error.message,
        reason=error.reason,
        audit_index=error.audit_index or 0,
    )


def revoke_out(result: RevokeOutput) -> ingest_pb2.RevokeResult:
    return ingest_pb2.RevokeResult(
        client_ref=result.client_ref,
        certificate_id=result.certificate_id,
        newly_revoked=result.newly_revoked,
        audit_index=result.audit_index,
    )


def status_out(status: CertificateStatus | None) -> common_pb2.CertificateStatus.ValueType:
    return (
        common_pb2.CertificateStatus.Value(str(status))
        if status
        else common_pb2.CERTIFICATE_STATUS_UNSPECIFIED
    )


# Summaries kept per process, by envelope digest. Parsing a stored envelope (DSSE JSON,
# base64, payload JSON, then the proto) was about a fifth of a warm fetch's CPU, and the
# same certificates are fetched again and again (a window's case, a holder's other
# materials). Keyed by the SHA-256 of the envelope, so a hit is the same bytes whatever
# database or test produced them. An entry measured 1.9 KiB of resident memory (5,000
# demo licence summaries), so 5,000 entries cost ~9 MiB per process: the distinct
# certificates a worker serves in HOLDER_CACHE_TTL_SECONDS at 40 a second; past that a
# summary is parsed again, which costs CPU, never correctness.
SUMMARY_MEMO_SIZE = 5_000


class _SummaryMemo:
    """A small thread-safe LRU of parsed summaries. ``shared`` hands out the cached message
    itself: only for message constructors and CopyFrom, which copy it."""

    def __init__(self, *, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, common_pb2.CertificateSummary] = OrderedDict()

    def shared(self, envelope: bytes, digest: str | None = None) -> common_pb2.CertificateSummary:
        """``digest``: the envelope's SHA-256 (hex) when the caller knows it (a stored
        certificate checked against it when read), saving the hash on every answer."""
        if digest is None:
            digest = hashlib.sha256(envelope).hexdigest()
        with self._lock:
            summary = self._entries.get(digest)
            if summary is not None:
                self._entries.move_to_end(digest)
        if summary is None:
            summary = _parse_summary(envelope)
            with self._lock:
                self._entries[digest] = summary
                if len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        return summary


_summaries = _SummaryMemo(size=SUMMARY_MEMO_SIZE)


def summary_from_envelope(envelope: bytes) -> common_pb2.CertificateSummary:
    """The summary of a stored envelope (a fresh message the caller may change)."""
    summary = common_pb2.CertificateSummary()
    summary.CopyFrom(_summaries.shared(envelope))
    return summary


def _parse_summary(envelope: bytes) -> common_pb2.CertificateSummary:
    """Stored payloads were validated on push, so this reads them without re-validating."""
    payload = json.loads(parse_envelope(envelope).payload)
    holder = payload["holder"]
    issuer = payload["issuer"]
    attachment = payload.get("attachment") or {}
    return common_pb2.CertificateSummary(
        certificate_id=payload["certificate_id"],
        type_code=payload["type_code"],
        name=payload["name"],
        kind=common_pb2.CertificateKind.Value(payload["kind"]),
        number=payload["number"],
        holder=common_pb2.Holder(
            id_type=common_pb2.IdType.Value(holder["id_type"]), id=holder["id"]
        ),
        holder_name=holder["name"],
        issuer_code=issuer["code"],
        issuer_name=issuer["name"],
        issued_on=payload["issued_on"],
        valid_from=payload["valid_from"],
        valid_until=payload.get("valid_until") or "",
        version=payload["version"],
        fields=payload.get("fields") or {},
        attachment_media_type=attachment.get("media_type", ""),
        attachment_sha256=attachment.get("sha256", ""),
        attachment_size=attachment.get("size", 0),
    )


def summary_from_payload(p: CertificatePayload) -> common_pb2.CertificateSummary:
    return common_pb2.CertificateSummary(
        certificate_id=p.certificate_id,
        type_code=p.type_code,
        name=p.name,
        kind=common_pb2.CertificateKind.Value(str(p.kind)),
        number=p.number,
        holder=common_pb2.Holder(
            id_type=common_pb2.IdType.Value(str(p.holder.id_type)), id=p.holder.id
        ),
        holder_name=p.holder_name,
        issuer_code=p.issuer_code,
        issuer_name=p.issuer_name,
        issued_on=p.issued_on.isoformat(),
        valid_from=p.valid_from.isoformat(),
        valid_until=p.valid_until.isoformat() if p.valid_until else "",
        version=p.version,
        fields=dict(p.fields),
        attachment_media_type=p.attachment.media_type if p.attachment else "",
        attachment_sha256=p.attachment.sha256 if p.attachment else "",
        attachment_size=p.attachment.size if p.attachment else 0,
    )


def record_out(served: intake.Served) -> common_pb2.CertificateRecord:
    stored = served.stored
    if stored.unusable is not None:
        # The envelope cannot be parsed into a summary: what the hub's own columns say.
        return common_pb2.CertificateRecord(
            envelope=stored.envelope,
            summary=common_pb2.CertificateSummary(
                certificate_id=stored.certificate_id,
                type_code=stored.type_code,
                version=stored.version,
            ),
            status=status_out(served.status),
            revocation_envelope=stored.revocation_envelope or b"",
            problem=stored.unusable,
        )
    return common_pb2.CertificateRecord(
        envelope=stored.envelope,
        # The constructor copies it.
        summary=_summaries.shared(stored.envelope, stored.envelope_sha256),
        status=status_out(served.status),
        attachment=served.attachment or b"",
        revocation_envelope=stored.revocation_envelope or b"",
    )


def fetch_out(output: FetchOutput) -> intake_pb2.FetchResponse:
    result = output.result
    return intake_pb2.FetchResponse(
        certificates=[record_out(s) for s in result.certificates],
        materials=[
            intake_pb2.MaterialStatus(
                code=m.code,
                name=m.name,
                satisfied=m.satisfied,
                certificate_ids=m.certificate_ids,
                paper_only=m.paper_only,
                type_codes=m.type_codes,
            )
            for m in result.materials
        ],
        audit_index=output.audit_index,
    )


def verify_out(output: VerifyOutput) -> intake_pb2.VerifyResponse:
    r = output.result
    return intake_pb2.VerifyResponse(
        valid=r.valid,
        status=status_out(r.status),
        reasons=r.reasons,
        issuer_code=r.payload.issuer_code if r.payload else "",
        issuer_name=r.issuer_name,
        key_id=r.key_id,
        summary=summary_from_payload(r.payload) if r.payload else None,
        stored=r.stored,
        audit_index=output.audit_index,
    )


def issuer_keys_out(departments: list[Department]) -> directory_pb2.ListIssuerKeysResponse:
    return directory_pb2.ListIssuerKeysResponse(
        keys=[
            directory_pb2.IssuerKey(
                key_id=k.public_key.key_id,
                department_code=d.code,
                department_name=d.name,
                algorithm=str(k.public_key.algorithm),
                public_key_pem=k.public_key.to_pem().decode(),
                not_before=k.not_before.isoformat(),
                not_after=k.not_after.isoformat() if k.not_after else "",
                status=_KEY_STATUS[k.status],
            )
            for d in departments
            for k in sorted(d.keys, key=lambda k: k.public_key.key_id)
        ]
    )


def type_out(t: CertificateType) -> directory_pb2.CertificateType:
    return directory_pb2.CertificateType(
        code=t.code,
        name=t.name,
        kind=common_pb2.CertificateKind.Value(str(t.kind)),
        issuer_codes=t.issuer_codes,
    )


def service_item_out(item: ServiceItem) -> directory_pb2.ServiceItem:
    return directory_pb2.ServiceItem(
        code=item.code,
        name=item.name,
        materials=[
            directory_pb2.Material(code=m.code, name=m.name, type_codes=m.type_codes)
            for m in item.materials
        ],
        exempt=item.exempt,
    )


def stats_out(stats: directory.Stats, labels: dict[str, str]) -> directory_pb2.Stats:
    def counts(values: dict[str, int]) -> list[directory_pb2.Count]:
        return [
            directory_pb2.Count(key=k, label=labels.get(k, k), count=v)
            for k, v in sorted(values.items())
        ]

    return directory_pb2.Stats(
        certificates_by_kind=counts(stats.certificates_by_kind),
        certificates_by_department=counts(stats.certificates_by_department),
        types_by_kind=counts(stats.types_by_kind),
        service_items=stats.service_items,
        exempt_service_items=stats.exempt_service_items,
        exemption_rate=stats.exemption_rate,
        cases_fetched=stats.cases_fetched,
        cases_with_certificates=stats.cases_with_certificates,
        usage_rate=stats.usage_rate,
        paper_materials_per_item=stats.paper_materials_per_item,
        certificates_total=stats.certificates_total,
        accept_legacy_uscc=stats.accept_legacy_uscc,
        legacy_uscc_certificates=stats.legacy_uscc_certificates,
    )


# --- cases and period statistics (certhub.hub.casework)
# ----------------------------------------------


def _enum_name(value: int, names: dict[int, str], prefix: str) -> str:
    """The domain's name for a proto enum value ("CASE_CHANNEL_WINDOW" -> "WINDOW"); an
    unknown number passes through as its digits, for the domain check to name."""
    name = names.get(value)
    return name.removeprefix(prefix) if name is not None else str(value)


_CHANNELS = {int(v): k for k, v in intake_pb2.CaseChannel.items()}
_SOURCES = {int(v): k for k, v in intake_pb2.MaterialSource.items()}
_BREAKDOWNS = {int(v): k for k, v in directory_pb2.StatsBreakdown.items()}
_KINDS = {int(v): k for k, v in common_pb2.CertificateKind.items()}


def register_case_in(request: intake_pb2.RegisterCaseRequest) -> cases.RegisterInput:
    return cases.RegisterInput(
        case_number=request.case_number,
        service_item_code=request.service_item_code,
        channel=_enum_name(request.channel, _CHANNELS, "CASE_CHANNEL_"),
        department_code=request.department_code,
        window=request.window,
    )


def close_case_in(request: intake_pb2.CloseCaseRequest) -> cases.CloseInput:
    return cases.CloseInput(
        case_number=request.case_number,
        materials=tuple(
            cases.MaterialUse(
                material_code=m.material_code,
                source=_enum_name(m.source, _SOURCES, "MATERIAL_SOURCE_"),
                certificate_id=m.certificate_id,
            )
            for m in request.materials
        ),
    )


def stats_in(request: directory_pb2.GetStatsRequest) -> stats.StatsInput:
    return stats.StatsInput(
        since=request.since,
        until=request.until,
        by=tuple(_enum_name(b, _BREAKDOWNS, "STATS_BY_") for b in request.by),
    )


def kind_in(request: directory_pb2.ListCertificateTypesRequest) -> str:
    """The kind's domain name ("LICENCE"), "" when unset, an unknown number as its digits."""
    if request.kind == common_pb2.CERTIFICATE_KIND_UNSPECIFIED:
        return ""
    return _enum_name(request.kind, _KINDS, "")


def period_stats_out(period: stats.PeriodStats, labels: dict[str, str]) -> directory_pb2.Stats:
    out = stats_out(period.base, labels)
    out.since = period.since.isoformat() if period.since else ""
    out.until = period.until.isoformat()
    out.cases_registered = period.cases_registered
    out.cases_closed = period.cases_closed
    out.cases_with_e_certificate = period.cases_with_e_certificate
    out.case_usage_rate = period.case_usage_rate
    for by, groups in period.breakdowns:
        out.breakdowns.add(
            by=directory_pb2.StatsBreakdown.Value(f"STATS_BY_{by}"),
            groups=[
                directory_pb2.CaseGroup(
                    key=g.key,
                    label=g.label,
                    cases_registered=g.registered,
                    cases_closed=g.closed,
                    cases_with_e_certificate=g.with_e_certificate,
                    usage_rate=g.usage_rate,
                    exemption_rate=-1.0 if g.exemption_rate is None else g.exemption_rate,
                )
                for g in groups
            ],
        )
    for item in period.non_exempt:
        out.non_exempt_items.add(
            code=item.code,
            name=item.name,
            cases_registered=item.cases_registered,
            paper_materials=[
                directory_pb2.PaperMaterial(
                    code=m.code, name=m.name, cases_on_paper=m.cases_on_paper
                )
                for m in item.paper_materials
            ],
        )
    return out
