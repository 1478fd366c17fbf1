"""Thin servicers: proto -> dataclass -> Hub -> proto. No rules and no error handling here
(the interceptor maps errors; the services hold the rules)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import grpc

from certhub.v1 import (
    common_pb2,
    directory_pb2,
    directory_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    intake_pb2,
    intake_pb2_grpc,
)
from hub.app import Hub, PushOutput
from hub.domain.certificate import CertificateKind
from hub.errors import HubError, InvalidArgument, NotFound
from hub.grpc import convert
from hub.grpc.interceptor import current_principal

# Pushes of one stream in flight at once (checked and waiting for their group commit).
# Enough to fill a few group-commit batches from one adapter; bounded so a fast client
# cannot make the hub hold unbounded envelopes in memory.
STREAM_IN_FLIGHT = 128
# How often a blocked stream reader re-checks whether its call is still alive.
STREAM_POLL_SECONDS = 0.5


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def PushCertificate(  # noqa: N802 - gRPC method names are fixed by the contract
        self, request: ingest_pb2.PushRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.PushResult:
        return convert.push_out(self._hub.push(current_principal(), convert.push_in(request)))

    def PushCertificates(  # noqa: N802
        self, request_iterator: Iterator[ingest_pb2.PushRequest], context: grpc.ServicerContext
    ) -> Iterator[ingest_pb2.PushResult]:
        """Results in request order; a rejected item is a REJECTED result, not the stream's end.

        A reader thread checks and submits requests while this generator waits for their
        commits, so one stream keeps up to STREAM_IN_FLIGHT pushes in each group commit.
        """
        caller = current_principal()
        inflight: queue.Queue[tuple[str, Callable[[], PushOutput]] | None] = queue.Queue(
            STREAM_IN_FLIGHT
        )
        failure: list[BaseException] = []

        def read() -> None:
            try:
                for request in request_iterator:
                    finish = self._hub.submit_push(caller, convert.push_in(request))
                    while context.is_active():
                        try:
                            inflight.put((request.client_ref, finish), timeout=STREAM_POLL_SECONDS)
                            break
                        except queue.Full:
                            continue
                    else:
                        return
            except BaseException as exc:
                failure.append(exc)
            finally:
                # Once the call is over (cancelled, deadline passed) nobody reads the queue:
                # a full one must not hold this thread (and its pushes) forever.
                while True:
                    try:
                        inflight.put(None, timeout=STREAM_POLL_SECONDS)
                        break
                    except queue.Full:
                        if not context.is_active():
                            break

        reader = threading.Thread(target=read, name="push-stream-reader", daemon=True)
        reader.start()
        while (item := inflight.get()) is not None:
            client_ref, finish = item
            try:
                yield convert.push_out(finish())
            except HubError as error:
                yield convert.push_rejected(client_ref, error)
        reader.join()
        if failure and not isinstance(failure[0], grpc.RpcError):
            raise failure[0]

    def RevokeCertificate(  # noqa: N802
        self, request: ingest_pb2.RevokeRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.RevokeResult:
        return convert.revoke_out(self._hub.revoke(current_principal(), convert.revoke_in(request)))


class IntakeServicer(intake_pb2_grpc.IntakeServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def FetchCertificates(  # noqa: N802
        self, request: intake_pb2.FetchRequest, context: grpc.ServicerContext
    ) -> intake_pb2.FetchResponse:
        return convert.fetch_out(self._hub.fetch(current_principal(), convert.fetch_in(request)))

    def GetCertificate(  # noqa: N802
        self, request: intake_pb2.GetCertificateRequest, context: grpc.ServicerContext
    ) -> common_pb2.CertificateRecord:
        output = self._hub.get(current_principal(), convert.get_in(request))
        record = convert.record_out(output.served)
        record.audit_index = output.audit_index
        return record

    def VerifyCertificate(  # noqa: N802
        self, request: intake_pb2.VerifyRequest, context: grpc.ServicerContext
    ) -> intake_pb2.VerifyResponse:
        return convert.verify_out(self._hub.verify(current_principal(), request.envelope))


class DirectoryServicer(directory_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def ListIssuerKeys(  # noqa: N802
        self, request: directory_pb2.ListIssuerKeysRequest, context: grpc.ServicerContext
    ) -> directory_pb2.ListIssuerKeysResponse:
        departments = self._hub.registry().departments
        code = request.department_code
        if code and code not in departments:
            raise NotFound(f"department {code} is not in the registry", reason="UNKNOWN_DEPARTMENT")
        chosen = [departments[code]] if code else [departments[c] for c in sorted(departments)]
        return convert.issuer_keys_out(chosen)

    def ListCertificateTypes(  # noqa: N802
        self, request: directory_pb2.ListCertificateTypesRequest, context: grpc.ServicerContext
    ) -> directory_pb2.ListCertificateTypesResponse:
        kind = None
        if request.kind:
            names = {v: k for k, v in common_pb2.CertificateKind.items()}
            if request.kind not in names:
                raise InvalidArgument.field(
                    "kind", f"unknown kind {request.kind}", reason="UNKNOWN_KIND"
                )
            kind = CertificateKind(names[request.kind])
        types = self._hub.registry().types
        return directory_pb2.ListCertificateTypesResponse(
            types=[
                convert.type_out(types[c])
                for c in sorted(types)
                if kind is None or types[c].kind is kind
            ]
        )

    def GetServiceItem(  # noqa: N802
        self, request: directory_pb2.GetServiceItemRequest, context: grpc.ServicerContext
    ) -> directory_pb2.ServiceItem:
        item = self._hub.registry().service_items.get(request.code)
        if item is None:
            raise NotFound(
                f"service item {request.code!r} is not in the registry",
                reason="UNKNOWN_SERVICE_ITEM",
            )
        return convert.service_item_out(item)

    def GetStats(  # noqa: N802
        self, request: directory_pb2.GetStatsRequest, context: grpc.ServicerContext
    ) -> directory_pb2.Stats:
        registry = self._hub.registry()
        labels = {code: d.name for code, d in registry.departments.items()}
        return convert.stats_out(self._hub.stats(), labels)
