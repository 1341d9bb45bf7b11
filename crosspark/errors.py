"""Domain errors every service raises; the gRPC layer maps them to status codes in one place
(``crosspark.rpc``). Nothing here imports gRPC."""

from __future__ import annotations

from collections.abc import Iterable


class CrossparkError(Exception):
    """Base of the errors a caller can act on. ``code`` names the gRPC status it becomes."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(CrossparkError):
    """A request field is wrong. ``violations`` are ``(field, description)`` pairs that become
    ``google.rpc.BadRequest`` field violations."""

    code = "INVALID_ARGUMENT"

    def __init__(self, message: str, violations: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.violations = list(violations)

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls(f"{field}: {description}", [(field, description)])


class NotFound(CrossparkError):
    code = "NOT_FOUND"


class AlreadyExists(CrossparkError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(CrossparkError):
    code = "FAILED_PRECONDITION"


class PermissionDenied(CrossparkError):
    code = "PERMISSION_DENIED"


class Unauthenticated(CrossparkError):
    code = "UNAUTHENTICATED"


class ResourceExhausted(CrossparkError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(CrossparkError):
    code = "UNAVAILABLE"
