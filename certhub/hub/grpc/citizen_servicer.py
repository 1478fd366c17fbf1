"""CitizenService, thin: proto -> dataclass -> CitizenDesk -> proto. Roles, limits and
refusals live in ``certhub.hub.citizen``; errors are mapped by the interceptor."""

from __future__ import annotations

from collections.abc import Mapping

from certhub.hub.app import Hub
from certhub.hub.audit import reads
from certhub.hub.audit.entry import format_time
from certhub.hub.citizen import (
    AccessesInput,
    Applicant,
    CitizenDesk,
    CreatePresentationInput,
    DecideInput,
    ExportInput,
    Preview,
)
from certhub.hub.grpc import convert
from certhub.hub.grpc.interceptor import Context, current_principal
from certhub.hub.registry import ServiceItem
from certhub.v1 import citizen_pb2, citizen_pb2_grpc, common_pb2


def applicant_in(holder: common_pb2.Holder) -> Applicant:
    """Unchecked: the desk validates it (INVALID_ARGUMENT naming ``applicant``), audited."""
    names = {v: k for k, v in common_pb2.IdType.items() if v}
    return Applicant(names.get(holder.id_type, str(holder.id_type)), holder.id)


class CitizenServicer(citizen_pb2_grpc.CitizenServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._desk = CitizenDesk(hub)

    async def ListMyAccesses(  # noqa: N802 - names fixed by the contract
        self, request: citizen_pb2.ListMyAccessesRequest, context: Context
    ) -> citizen_pb2.ListMyAccessesResponse:
        output = await self._desk.list_my_accesses(
            current_principal(),
            AccessesInput(
                applicant=applicant_in(request.applicant),
                page_size=request.page_size,
                page_token=request.page_token,
            ),
        )
        items = self._hub.registry().service_items
        return citizen_pb2.ListMyAccessesResponse(
            entries=[
                access_out(e, items, output.purposes.get(e.index, "")) for e in output.page.entries
            ],
            next_page_token=output.page.next_page_token,
            audit_index=output.audit_index,
        )

    async def CreatePresentation(  # noqa: N802
        self, request: citizen_pb2.CreatePresentationRequest, context: Context
    ) -> citizen_pb2.CreatePresentationResponse:
        output = await self._desk.create_presentation(
            current_principal(),
            CreatePresentationInput(
                applicant=applicant_in(request.applicant),
                certificate_id=request.certificate_id,
                purpose=request.purpose,
                service_item_code=request.service_item_code,
                ttl_seconds=request.ttl_seconds,
            ),
        )
        return citizen_pb2.CreatePresentationResponse(
            token=output.token,
            token_id=output.token_id,
            expires_at=format_time(output.expires_at),
            audit_index=output.audit_index,
        )

    async def ListConsentRequests(  # noqa: N802
        self, request: citizen_pb2.ListConsentRequestsRequest, context: Context
    ) -> citizen_pb2.ListConsentRequestsResponse:
        output = await self._desk.list_consent_requests(
            current_principal(), applicant_in(request.applicant)
        )
        items = self._hub.registry().service_items
        return citizen_pb2.ListConsentRequestsResponse(
            requests=[preview_out(p, items) for p in output.previews],
            audit_index=output.audit_index,
        )

    async def DecideConsent(  # noqa: N802
        self, request: citizen_pb2.DecideConsentRequest, context: Context
    ) -> citizen_pb2.DecideConsentResponse:
        output = await self._desk.decide_consent(
            current_principal(),
            DecideInput(
                applicant=applicant_in(request.applicant),
                request_id=request.request_id,
                approve=request.approve,
            ),
        )
        return citizen_pb2.DecideConsentResponse(
            status=str(output.request.status),
            expires_at=format_time(output.request.expires_at),
            audit_index=output.audit_index,
        )

    async def ExportCredential(  # noqa: N802
        self, request: citizen_pb2.ExportCredentialRequest, context: Context
    ) -> citizen_pb2.ExportCredentialResponse:
        output = await self._desk.export_credential(
            current_principal(),
            ExportInput(
                applicant=applicant_in(request.applicant), certificate_id=request.certificate_id
            ),
        )
        return citizen_pb2.ExportCredentialResponse(
            credential=output.credential,
            credential_id=str(output.claims["id"]),
            status_list_credential=output.status_list_url,
            status_list_index=output.status.index,
            audit_index=output.audit_index,
        )


def preview_out(preview: Preview, items: Mapping[str, ServiceItem]) -> citizen_pb2.ConsentRequest:
    r = preview.request
    item = items.get(r.service_item_code)
    return citizen_pb2.ConsentRequest(
        request_id=r.request_id,
        principal=r.principal,
        service_item_code=r.service_item_code,
        service_item_name=item.name if item else "",
        case_number=r.case_number,
        type_codes=r.type_codes,
        certificates=[convert.record_out(c) for c in preview.certificates],
        created_at=format_time(r.created_at),
        expires_at=format_time(r.expires_at),
    )


def access_out(
    entry: reads.EntryView, items: Mapping[str, ServiceItem], purpose: str = ""
) -> citizen_pb2.AccessEntry:
    f = entry.fields

    def text(key: str) -> str:
        value = f.get(key)
        return value if isinstance(value, str) else ""

    ids = f.get("certificate_ids")
    code = text("service_item")
    item = items.get(code) if code else None
    return citizen_pb2.AccessEntry(
        index=entry.index,
        time=text("time"),
        principal=text("principal"),
        action=text("action"),
        outcome=text("outcome"),
        service_item_code=code,
        service_item_name=item.name if item is not None else "",
        case_number=text("case"),
        certificate_ids=[i for i in ids if isinstance(i, str)] if isinstance(ids, list) else [],
        leaf=entry.leaf,
        purpose=purpose,
    )
