"""The one place where domain errors become gRPC statuses (with google.rpc rich details)."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from hub.errors import HubError, InvalidArgument, ResourceExhausted

log = logging.getLogger("certhub.grpc")

# google.rpc.ErrorInfo.domain: names the service that defines the reasons.
ERROR_DOMAIN = "certhub.gov.cn"


def status_code(error: HubError) -> grpc.StatusCode:
    return grpc.StatusCode[error.status_name]


def to_status(error: HubError) -> grpc.Status:
    """A grpc.Status carrying BadRequest / ErrorInfo / RetryInfo details for ``error``."""
    code = status_code(error)
    details: list[any_pb2.Any] = []
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    if error.audit_index is not None:
        info.metadata["audit_index"] = str(error.audit_index)
    details.append(_pack(info))
    if isinstance(error, InvalidArgument) and error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    if isinstance(error, ResourceExhausted) and error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    result: grpc.Status = rpc_status.to_status(status)
    return result


def internal_status() -> grpc.Status:
    """For bugs only: the client learns nothing but that it was ours."""
    result: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message="internal error; it has been logged")
    )
    return result


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed
