"""Domain errors every service raises, mapped to gRPC status codes in one place.

Handlers never call `context.abort`; they raise one of these and the error
interceptor turns it into a status with `google.rpc` details.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """Base of the errors a caller can act on. The message is shown to callers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []

    @classmethod
    def of(cls, violations: list[FieldViolation]) -> InvalidArgument:
        return cls("; ".join(f"{v.field}: {v.description}" for v in violations), violations)

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls(f"{field}: {description}", [FieldViolation(field, description)])


class NotFound(DomainError):
    """Also what another organisation's resource answers: tenancy never leaks."""


class AlreadyExists(DomainError):
    pass


@dataclass(frozen=True)
class PreconditionViolation:
    """One unmet precondition: `type` names the rule, `subject` what it is about."""

    type: str
    subject: str
    description: str


class FailedPrecondition(DomainError):
    def __init__(self, message: str, violations: list[PreconditionViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []

    @classmethod
    def of(cls, violations: list[PreconditionViolation]) -> FailedPrecondition:
        return cls("; ".join(f"{v.subject}: {v.description}" for v in violations), violations)


class PermissionDenied(DomainError):
    pass


class Unauthenticated(DomainError):
    pass


class ResourceExhausted(DomainError):
    pass


class Aborted(DomainError):
    """A conflict the caller may retry, e.g. an idempotency key reused with other parameters."""
