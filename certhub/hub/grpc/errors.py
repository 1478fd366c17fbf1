"""The one place where domain errors become gRPC statuses (with google.rpc rich details)."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from certhub.core.rpc.errors import AUDIT_INDEX_KEY
from certhub.hub.errors import HubError, InvalidArgument, ResourceExhausted

log = logging.getLogger("certhub.grpc")

# google.rpc.ErrorInfo.domain: names the service that defines the reasons.
ERROR_DOMAIN = "certhub.gov.cn"

# A status travels in trailers. gRPC clients start refusing trailers above 8 KiB (the soft
# limit of grpc.max_metadata_size: refusals become likelier up to the 16 KiB hard limit), and
# then the caller sees RESOURCE_EXHAUSTED "Stream removed" instead of the real answer. The
# message is sent twice: percent-encoded in grpc-message (3 bytes per UTF-8 byte) and inside
# grpc-status-details-bin (base64, 4 bytes per 3). Messages echo request values, which can be
# huge: with these bounds a whole status stays under 6.5 KiB.
MAX_STATUS_MESSAGE_BYTES = 1024
MAX_VIOLATION_TEXT_CHARS = 128
MAX_STATUS_DETAILS_BYTES = 1536


def status_code(error: HubError) -> grpc.StatusCode:
    return grpc.StatusCode[error.status_name]


def to_status(error: HubError) -> grpc.Status:
    """A grpc.Status carrying BadRequest / ErrorInfo / RetryInfo details for ``error``."""
    code = status_code(error)
    details: list[any_pb2.Any] = []
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    for key, value in error.metadata.items():
        info.metadata[key] = _clip_chars(value, MAX_VIOLATION_TEXT_CHARS)
    if error.audit_index is not None:
        info.metadata[AUDIT_INDEX_KEY] = str(error.audit_index)
    details.append(_pack(info))
    if isinstance(error, InvalidArgument) and error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_clip_chars(v.field, MAX_VIOLATION_TEXT_CHARS),
                    description=_clip_chars(v.description, MAX_VIOLATION_TEXT_CHARS),
                )
                for v in error.violations
            ]
        )
        # The first violations are kept: they are the ones the message names.
        while len(bad.field_violations) > 1 and bad.ByteSize() > MAX_STATUS_DETAILS_BYTES:
            del bad.field_violations[-1]
        details.append(_pack(bad))
    if isinstance(error, ResourceExhausted) and error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    message = _clip_utf8(error.message, MAX_STATUS_MESSAGE_BYTES)
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    result: grpc.Status = rpc_status.to_status(status)
    return result


def internal_status() -> grpc.Status:
    """For bugs only: the client learns nothing but that it was ours."""
    result: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message="internal error; it has been logged")
    )
    return result


def _clip_chars(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _clip_utf8(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    # Room for the ellipsis (3 bytes); a character cut in half is dropped.
    return data[: limit - 3].decode(errors="ignore") + "\u2026"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed
