"""certhub.core.rpc.client's retry policy for the citizen calls (issue 14): a redemption is
single-use, so an UNAVAILABLE answer is not retried (its first attempt may have committed); reading
the
applicant's history is, like every other read. Against a real loopback gRPC server."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from certhub.core.rpc.client import RETRY_MAX_ATTEMPTS, HubClient, UnavailableError
from certhub.v1 import citizen_pb2, citizen_pb2_grpc, intake_pb2, intake_pb2_grpc


class _Unavailable(intake_pb2_grpc.IntakeServiceServicer, citizen_pb2_grpc.CitizenServiceServicer):
    """Answers UNAVAILABLE to everything, counting the calls."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _refuse(self, name: str, context: grpc.ServicerContext) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable; retry shortly")

    def RedeemPresentation(
        self, request: intake_pb2.RedeemPresentationRequest, context: grpc.ServicerContext
    ) -> intake_pb2.RedeemPresentationResponse:
        self._refuse("RedeemPresentation", context)
        raise AssertionError  # abort raised

    def ListMyAccesses(
        self, request: citizen_pb2.ListMyAccessesRequest, context: grpc.ServicerContext
    ) -> citizen_pb2.ListMyAccessesResponse:
        self._refuse("ListMyAccesses", context)
        raise AssertionError


@pytest.mark.slow
def test_a_redemption_is_never_retried_a_history_read_is() -> None:
    servicer = _Unavailable()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    intake_pb2_grpc.add_IntakeServiceServicer_to_server(servicer, server)
    citizen_pb2_grpc.add_CitizenServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with HubClient.insecure(f"127.0.0.1:{port}", "gulou-service-centre") as client:
            with pytest.raises(UnavailableError):
                client.redeem_presentation("A" * 143, service_item="350102-0001", case_number="C")
            with pytest.raises(UnavailableError):
                client.my_accesses(id_type="USCC", holder_id="913501020000000061")
    finally:
        server.stop(grace=None)
    assert servicer.calls == {"RedeemPresentation": 1, "ListMyAccesses": RETRY_MAX_ATTEMPTS}
