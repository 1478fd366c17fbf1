"""The hub's error answers as one typed hierarchy, mapped in one place (``error_from_rpc``).

The hub sends every refusal as a status code with rich details (``certhub/hub/grpc/errors.py``):
``ErrorInfo`` (its reason, and ``audit_index`` with other metadata), ``BadRequest`` (field
violations) and ``RetryInfo`` (when to try again). The typed client raises what
``error_from_rpc`` makes of a failed call, and the adapters' pusher decides its retries on
the same object, so both read one failure alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

__all__ = [
    "AUDIT_INDEX_KEY",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "HubClientError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "UnauthenticatedError",
    "UnavailableError",
    "Violation",
    "error_from_rpc",
    "raise_typed",
]


# The ErrorInfo metadata key under which the hub gives an audited refusal's index in its log
# (certhub/hub/grpc/errors.py writes it); the rest of the metadata is the refusal's own facts.
AUDIT_INDEX_KEY = "audit_index"


@dataclass(frozen=True, slots=True)
class Violation:
    field: str
    description: str


class HubClientError(Exception):
    """An error answer from the hub, with the details it sent."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode,
        reason: str = "",
        violations: tuple[Violation, ...] = (),
        retry_after: float | None = None,
        audit_index: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.message = message
        self.code = code
        self.reason = reason
        self.violations = violations
        self.retry_after = retry_after
        self.audit_index = audit_index
        # ErrorInfo.metadata besides audit_index (e.g. consent_request_id, expires_at).
        self.metadata = dict(metadata or {})


class InvalidArgumentError(HubClientError): ...


class NotFoundError(HubClientError): ...


class AlreadyExistsError(HubClientError): ...


class PermissionDeniedError(HubClientError): ...


class UnauthenticatedError(HubClientError): ...


class FailedPreconditionError(HubClientError): ...


class RateLimitedError(HubClientError): ...


class UnavailableError(HubClientError): ...


class OutOfRangeError(HubClientError): ...


_ERROR_CLASSES: dict[grpc.StatusCode, type[HubClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimitedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
}


def error_from_rpc(error: grpc.RpcError) -> HubClientError:
    """The typed error for a failed call: its class by status code, with the details the
    hub sent."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    reason, violations, retry_after, audit_index = "", [], None, None
    metadata: dict[str, str] = {}
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        # The details disagree with the code: the status was made by the transport (e.g. a
        # refused oversized message), not by the hub. The code and text are still the answer.
        status = None
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            metadata = {k: v for k, v in info.metadata.items() if k != AUDIT_INDEX_KEY}
            if AUDIT_INDEX_KEY in info.metadata:
                audit_index = int(info.metadata[AUDIT_INDEX_KEY])
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [Violation(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    cls = _ERROR_CLASSES.get(code, HubClientError)
    return cls(
        message,
        code=code,
        reason=reason,
        violations=tuple(violations),
        retry_after=retry_after,
        audit_index=audit_index,
        metadata=metadata,
    )


def raise_typed(error: grpc.RpcError) -> NoReturn:
    """Raise ``error_from_rpc(error)``, chained to the gRPC error."""
    raise error_from_rpc(error) from error
