"""Domain errors and validation failures -> gRPC status with `google.rpc` details."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import grpc
import protovalidate
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from aisuper.platform import errors

T = TypeVar("T")

_CODES: dict[type[errors.DomainError], int] = {
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.PermissionDenied: code_pb2.PERMISSION_DENIED,
    errors.Unauthenticated: code_pb2.UNAUTHENTICATED,
    errors.ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    errors.Aborted: code_pb2.ABORTED,
}


#: gRPC refuses trailing metadata above 16 KiB (message and details travel there), and
#: drops some above 8 KiB: a refusal echoing hostile input must stay well below that.
MAX_MESSAGE_CHARS = 1024
MAX_DETAILS = 20
MAX_DETAIL_CHARS = 200


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clipped(items: Sequence[T], what: str) -> tuple[Sequence[T], str]:
    if len(items) <= MAX_DETAILS:
        return items, ""
    return items[:MAX_DETAILS], f" (and {len(items) - MAX_DETAILS} more {what})"


def to_status(error: errors.DomainError) -> grpc.Status:
    code = next(
        (c for cls, c in _CODES.items() if isinstance(error, cls)), code_pb2.FAILED_PRECONDITION
    )
    message = error.message
    detail = any_pb2.Any()
    if isinstance(error, errors.InvalidArgument) and error.violations:
        shown, more = _clipped(error.violations, "violations")
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_clip(v.field, MAX_DETAIL_CHARS),
                        description=_clip(v.description, MAX_DETAIL_CHARS),
                    )
                    for v in shown
                ]
            )
        )
        message = _clip(message, MAX_MESSAGE_CHARS - len(more)) + more
    elif isinstance(error, errors.FailedPrecondition) and error.violations:
        unmet, more = _clipped(error.violations, "unmet preconditions")
        detail.Pack(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=_clip(v.type, MAX_DETAIL_CHARS),
                        subject=_clip(v.subject, MAX_DETAIL_CHARS),
                        description=_clip(v.description, MAX_DETAIL_CHARS),
                    )
                    for v in unmet
                ]
            )
        )
        message = _clip(message, MAX_MESSAGE_CHARS - len(more)) + more
    status = status_pb2.Status(code=code, message=_clip(message, MAX_MESSAGE_CHARS + 64))
    if detail.type_url:
        status.details.append(detail)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def _field_path(violation: protovalidate.Violation) -> str:
    parts: list[str] = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():
        part = element.field_name
        subscript = element.subscript
        if subscript is not None:
            part += (
                f"[{subscript.value!r}]" if subscript.field != "index" else f"[{subscript.value}]"
            )
        parts.append(part)
    return ".".join(parts) or "(message)"


def violations_error(violations: Sequence[protovalidate.Violation]) -> errors.InvalidArgument:
    found = [
        errors.FieldViolation(_field_path(v), str(v.proto.message or v.proto.rule_id))
        for v in violations
    ]
    summary = "; ".join(f"{v.field}: {v.description}" for v in found)
    return errors.InvalidArgument(summary, found)


def bad_request_of(error: grpc.aio.AioRpcError | grpc.RpcError) -> dict[str, str]:
    """The field violations a status carries (for clients and tests)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type, unused-ignore]
    found: dict[str, str] = {}
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            for violation in bad_request.field_violations:
                found[violation.field] = violation.description
    return found


def precondition_failures_of(error: grpc.aio.AioRpcError | grpc.RpcError) -> dict[str, str]:
    """The unmet preconditions a status carries, subject -> description."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type, unused-ignore]
    found: dict[str, str] = {}
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            for violation in failure.violations:
                found[violation.subject] = violation.description
    return found
