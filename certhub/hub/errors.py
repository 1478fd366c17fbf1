"""The hub's domain errors: one hierarchy, mapped to gRPC status codes in one place.

Domain code raises these and never touches gRPC; ``certhub.hub.grpc.errors`` turns each class
into its status code and rich details (field violations, ErrorInfo, RetryInfo).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request, as in ``google.rpc.BadRequest.FieldViolation``."""

    field: str
    description: str


class HubError(Exception):
    """Base of every error the hub answers a client with.

    ``reason`` is a stable UPPER_SNAKE string (``google.rpc.ErrorInfo.reason``) that clients
    may switch on; ``message`` is for people.
    """

    #: Name of the ``grpc.StatusCode`` member this class maps to.
    status_name: str = "UNKNOWN"
    default_reason: str = "ERROR"

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        # Index of the audit entry recording this refusal, once it is in the log.
        self.audit_index: int | None = None
        # Machine-readable facts of the refusal for ErrorInfo.metadata (e.g. the consent
        # request a window's fetch is waiting for), so clients need not parse the message.
        self.metadata: dict[str, str] = dict(metadata or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class InvalidArgument(HubError):
    """The request is malformed; ``violations`` name the fields."""

    status_name = "INVALID_ARGUMENT"
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message, reason=reason)
        self.violations = violations

    @classmethod
    def field(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgument:
        """A single-field violation whose message names the field."""
        return cls(
            f"{field}: {description}",
            reason=reason,
            violations=(FieldViolation(field, description),),
        )


class OutOfRange(HubError):
    """An index or size past the end of what exists (e.g. a tree size larger than the log)."""

    status_name = "OUT_OF_RANGE"
    default_reason = "OUT_OF_RANGE"


class NotFound(HubError):
    status_name = "NOT_FOUND"
    default_reason = "NOT_FOUND"


class AlreadyExists(HubError):
    status_name = "ALREADY_EXISTS"
    default_reason = "ALREADY_EXISTS"


class PermissionDenied(HubError):
    status_name = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(HubError):
    status_name = "UNAUTHENTICATED"
    default_reason = "UNAUTHENTICATED"


class FailedPrecondition(HubError):
    status_name = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"


class ResourceExhausted(HubError):
    """A rate or size limit; ``retry_after`` seconds feeds ``google.rpc.RetryInfo``."""

    status_name = "RESOURCE_EXHAUSTED"
    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self, message: str, *, reason: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class Unavailable(HubError):
    """The database (or another dependency) is down; the client may retry."""

    status_name = "UNAVAILABLE"
    default_reason = "UNAVAILABLE"
