"""core.rpc.client refuses an unknown id_type as the hub would (issue 15, item 9), and retries
UNAVAILABLE for the reads."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from certhub.core.rpc.client import (
    RETRY_MAX_ATTEMPTS,
    HubClient,
    InvalidArgumentError,
    UnavailableError,
)
from certhub.v1 import directory_pb2, directory_pb2_grpc


def test_an_unknown_id_type_is_an_invalid_argument_naming_the_choices() -> None:
    # A channel to nowhere: the refusal comes before any call.
    with (
        HubClient(grpc.insecure_channel("127.0.0.1:1")) as client,
        pytest.raises(InvalidArgumentError) as refused,
    ):
        client.fetch(id_type="PASSPRT", holder_id="E1", service_item="x", case_number="c")
    assert refused.value.reason == "INVALID_HOLDER_ID_TYPE"
    [violation] = refused.value.violations
    assert violation.field == "holder.id_type"
    assert "'PASSPRT' is not one of" in violation.description
    assert "USCC" in violation.description


class _FlakyDirectory(directory_pb2_grpc.DirectoryServiceServicer):
    """Answers UNAVAILABLE to the first ``failures`` calls, then a real answer."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def GetStats(
        self, request: directory_pb2.GetStatsRequest, context: grpc.ServicerContext
    ) -> directory_pb2.Stats:
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable; retry shortly")
        return directory_pb2.Stats(certificates_total=7)


@pytest.mark.parametrize(("failures", "answered"), [(2, True), (RETRY_MAX_ATTEMPTS, False)])
@pytest.mark.slow
def test_unavailable_is_retried_within_the_documented_limit(failures: int, answered: bool) -> None:
    servicer = _FlakyDirectory(failures)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    directory_pb2_grpc.add_DirectoryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with HubClient.insecure(f"127.0.0.1:{port}", "gulou-service-centre") as client:
            if answered:
                assert client.stats().certificates_total == 7
            else:
                with pytest.raises(UnavailableError):
                    client.stats()
    finally:
        server.stop(grace=None)
    assert servicer.calls == min(failures + 1, RETRY_MAX_ATTEMPTS)
