"""AuditService, thin: proto -> AuditApi -> proto. Roles, limits and refusals live in
``certhub.hub.auditing`` and ``certhub.hub.audit.reads``; errors are mapped by the interceptor."""

from __future__ import annotations

import asyncio

from certhub.hub.audit import reads
from certhub.hub.auditing import AuditApi, QueryInput
from certhub.hub.grpc import convert
from certhub.hub.grpc.interceptor import Context, current_principal
from certhub.v1 import audit_pb2, audit_pb2_grpc, common_pb2


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, api: AuditApi) -> None:
        self._api = api

    async def QueryAudit(  # noqa: N802 - names fixed by the contract
        self, request: audit_pb2.AuditQuery, context: Context
    ) -> audit_pb2.AuditPage:
        id_type, holder_id = "", ""
        if request.HasField("holder") and (
            request.holder.id_type != common_pb2.ID_TYPE_UNSPECIFIED or request.holder.id
        ):
            id_type, holder_id = convert.holder_in(request.holder)
        output = await asyncio.to_thread(
            self._api.query,
            current_principal(),
            QueryInput(
                id_type=id_type,
                holder_id=holder_id,
                principal=request.principal,
                action=request.action,
                certificate_id=request.certificate_id,
                since=request.since,
                until=request.until,
                page_size=request.page_size,
                page_token=request.page_token,
            ),
        )
        return audit_pb2.AuditPage(
            entries=[entry_out(e) for e in output.page.entries],
            next_page_token=output.page.next_page_token,
            audit_index=output.audit_index,
        )

    async def GetCheckpoint(  # noqa: N802
        self, request: audit_pb2.GetCheckpointRequest, context: Context
    ) -> audit_pb2.Checkpoint:
        output = await asyncio.to_thread(
            self._api.checkpoint, current_principal(), cosigned=request.cosigned
        )
        return audit_pb2.Checkpoint(
            note=output.checkpoint.note,
            size=output.checkpoint.size,
            root_hash=output.checkpoint.root,
            origin=output.origin,
            verifier_key=output.verifier_key,
        )

    async def GetInclusionProof(  # noqa: N802
        self, request: audit_pb2.GetInclusionProofRequest, context: Context
    ) -> audit_pb2.InclusionProof:
        proof = await asyncio.to_thread(
            self._api.inclusion_proof, current_principal(), request.leaf_index, request.tree_size
        )
        return audit_pb2.InclusionProof(
            leaf_index=proof.leaf_index,
            tree_size=proof.tree_size,
            hashes=proof.hashes,
            leaf=proof.leaf,
        )

    async def GetConsistencyProof(  # noqa: N802
        self, request: audit_pb2.GetConsistencyProofRequest, context: Context
    ) -> audit_pb2.ConsistencyProof:
        proof = await asyncio.to_thread(
            self._api.consistency_proof,
            current_principal(),
            request.first_size,
            request.second_size,
        )
        return audit_pb2.ConsistencyProof(
            first_size=proof.first_size, second_size=proof.second_size, hashes=proof.hashes
        )

    async def GetEntries(  # noqa: N802
        self, request: audit_pb2.GetEntriesRequest, context: Context
    ) -> audit_pb2.GetEntriesResponse:
        _start, leaves = await asyncio.to_thread(
            self._api.entries, current_principal(), request.start, request.end
        )
        return audit_pb2.GetEntriesResponse(leaves=leaves)


def entry_out(entry: reads.EntryView) -> audit_pb2.AuditEntry:
    f = entry.fields

    def text(key: str) -> str:
        value = f.get(key)
        return value if isinstance(value, str) else ""

    ids = f.get("certificate_ids")
    return audit_pb2.AuditEntry(
        index=entry.index,
        time=text("time"),
        principal=text("principal"),
        action=text("action"),
        outcome=text("outcome"),
        holder_commitment=text("holder"),
        certificate_ids=[i for i in ids if isinstance(i, str)] if isinstance(ids, list) else [],
        service_item_code=text("service_item"),
        case_number=text("case"),
        leaf=entry.leaf,
    )
