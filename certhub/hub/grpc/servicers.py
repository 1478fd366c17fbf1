"""The servicers of IngestService, IntakeService and DirectoryService: proto -> dataclass
(``convert``) -> one use case (``Hub``, or ``Casework`` / ``CitizenDesk`` over it) -> proto.
The rules and their refusals live in the use cases and ``certhub.hub.services``; errors are mapped
to status codes by the interceptor. The one decision made here is the push stream's flow:
up to ``STREAM_IN_FLIGHT`` pushes in flight, and a refused item answered as a REJECTED
result in its place rather than ending the stream. Servicers are coroutines on the
process's serving loop; the use cases move synchronous sessions to the loop's thread pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from certhub.hub.app import Hub, PushOutput
from certhub.hub.audit.entry import format_time
from certhub.hub.casework import Casework
from certhub.hub.citizen import CitizenDesk, RedeemInput
from certhub.hub.errors import HubError
from certhub.hub.grpc import convert
from certhub.hub.grpc.interceptor import Context, current_principal
from certhub.hub.services import intake
from certhub.v1 import (
    common_pb2,
    directory_pb2,
    directory_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    intake_pb2,
    intake_pb2_grpc,
)

# Pushes of one stream in flight at once (checked and waiting for their group commit).
# Enough to fill a few group-commit batches from one adapter; bounded so a fast client
# cannot make the hub hold unbounded envelopes in memory.
STREAM_IN_FLIGHT = 128

_Finish = tuple[str, Callable[[], Awaitable[PushOutput]]]


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def PushCertificate(  # noqa: N802 - names fixed by the contract
        self, request: ingest_pb2.PushRequest, context: Context
    ) -> ingest_pb2.PushResult:
        return convert.push_out(await self._hub.push(current_principal(), convert.push_in(request)))

    async def PushCertificates(  # noqa: N802
        self, request_iterator: AsyncIterator[ingest_pb2.PushRequest], context: Context
    ) -> AsyncIterator[ingest_pb2.PushResult]:
        """Results in request order; a rejected item is a REJECTED result, not the stream's end.

        A reader task checks and submits requests while this generator waits for their
        commits, so one stream keeps up to STREAM_IN_FLIGHT pushes in each group commit. An
        idle stream is two suspended coroutines: it holds no thread.
        """
        caller = current_principal()
        # The semaphore bounds what is in flight; the queue itself is unbounded so that the
        # end-of-stream marker never waits (a reader blocked there outlived its call).
        slots = asyncio.Semaphore(STREAM_IN_FLIGHT)
        inflight: asyncio.Queue[_Finish | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await slots.acquire()
                    finish = self._hub.submit_push(caller, convert.push_in(request))
                    inflight.put_nowait((request.client_ref, finish))
            finally:
                inflight.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await inflight.get()) is not None:
                client_ref, finish = item
                try:
                    yield convert.push_out(await finish())
                except HubError as error:
                    yield convert.push_rejected(client_ref, error)
                finally:
                    slots.release()
            await reader  # its error (a malformed request) ends the stream with its status
        finally:
            reader.cancel()

    async def RevokeCertificate(  # noqa: N802
        self, request: ingest_pb2.RevokeRequest, context: Context
    ) -> ingest_pb2.RevokeResult:
        revoked = await self._hub.revoke(current_principal(), convert.revoke_in(request))
        return convert.revoke_out(revoked)


class IntakeServicer(intake_pb2_grpc.IntakeServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._cases = Casework(hub)
        self._desk = CitizenDesk(hub)

    async def FetchCertificates(  # noqa: N802
        self, request: intake_pb2.FetchRequest, context: Context
    ) -> intake_pb2.FetchResponse:
        fetched = await self._hub.fetch(current_principal(), convert.fetch_in(request))
        return convert.fetch_out(fetched)

    async def GetCertificate(  # noqa: N802
        self, request: intake_pb2.GetCertificateRequest, context: Context
    ) -> common_pb2.CertificateRecord:
        output = await self._hub.get(current_principal(), convert.get_in(request))
        record = convert.record_out(output.served)
        record.audit_index = output.audit_index
        return record

    async def VerifyCertificate(  # noqa: N802
        self, request: intake_pb2.VerifyRequest, context: Context
    ) -> intake_pb2.VerifyResponse:
        return convert.verify_out(await self._hub.verify(current_principal(), request.envelope))

    async def RegisterCase(  # noqa: N802
        self, request: intake_pb2.RegisterCaseRequest, context: Context
    ) -> intake_pb2.RegisterCaseResponse:
        out = await self._cases.register_case(
            current_principal(), convert.register_case_in(request)
        )
        return intake_pb2.RegisterCaseResponse(
            created=out.registered.created, audit_index=out.audit_index
        )

    async def CloseCase(  # noqa: N802
        self, request: intake_pb2.CloseCaseRequest, context: Context
    ) -> intake_pb2.CloseCaseResponse:
        out = await self._cases.close_case(current_principal(), convert.close_case_in(request))
        return intake_pb2.CloseCaseResponse(
            used_e_certificate=out.closed.used_e_certificate,
            closed=out.closed.closed,
            audit_index=out.audit_index,
        )

    async def RedeemPresentation(  # noqa: N802
        self, request: intake_pb2.RedeemPresentationRequest, context: Context
    ) -> intake_pb2.RedeemPresentationResponse:
        out = await self._desk.redeem_presentation(
            current_principal(),
            RedeemInput(
                token=request.token,
                purpose=intake.Purpose(request.service_item_code, request.case_number),
                include_attachments=request.include_attachments,
            ),
        )
        return intake_pb2.RedeemPresentationResponse(
            certificate=convert.record_out(out.served),
            purpose=out.purpose,
            presented_at=format_time(out.presented_at),
            audit_index=out.audit_index,
        )


class DirectoryServicer(directory_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def ListIssuerKeys(  # noqa: N802
        self, request: directory_pb2.ListIssuerKeysRequest, context: Context
    ) -> directory_pb2.ListIssuerKeysResponse:
        departments = await self._hub.issuer_departments(
            current_principal(), request.department_code
        )
        return convert.issuer_keys_out(departments)

    async def ListCertificateTypes(  # noqa: N802
        self, request: directory_pb2.ListCertificateTypesRequest, context: Context
    ) -> directory_pb2.ListCertificateTypesResponse:
        types = await self._hub.certificate_types(current_principal(), convert.kind_in(request))
        return directory_pb2.ListCertificateTypesResponse(
            types=[convert.type_out(t) for t in types]
        )

    async def GetServiceItem(  # noqa: N802
        self, request: directory_pb2.GetServiceItemRequest, context: Context
    ) -> directory_pb2.ServiceItem:
        return convert.service_item_out(
            await self._hub.service_item(current_principal(), request.code)
        )

    async def GetStats(  # noqa: N802
        self, request: directory_pb2.GetStatsRequest, context: Context
    ) -> directory_pb2.Stats:
        period = await self._hub.period_stats(current_principal(), convert.stats_in(request))
        labels = {code: d.name for code, d in self._hub.registry().departments.items()}
        return convert.period_stats_out(period, labels)
