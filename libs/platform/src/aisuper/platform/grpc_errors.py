"""Domain errors and validation failures -> gRPC status with `google.rpc` details."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import protovalidate
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from aisuper.platform import errors

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


def to_status(error: errors.DomainError) -> grpc.Status:
    code = next(
        (c for cls, c in _CODES.items() if isinstance(error, cls)), code_pb2.FAILED_PRECONDITION
    )
    status = status_pb2.Status(code=code, message=error.message)
    if isinstance(error, errors.InvalidArgument) and error.violations:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
        status.details.append(detail)
    if isinstance(error, errors.FailedPrecondition) and error.violations:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=v.type, subject=v.subject, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
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
