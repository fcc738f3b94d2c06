"""Calling the platform's services from the CLI: credentials and one-line error messages."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc

#: The API key the CLI's commands present, when no --key-file is given.
API_KEY_ENV = "AISUPER_API_KEY"
#: Seconds a command waits for one call.
CALL_TIMEOUT_S = 30.0


class CredentialError(RuntimeError):
    """A credential named by the user cannot be read."""


def read_key_file(path: Path) -> str:
    """The API key in `path` (surrounding whitespace dropped)."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CredentialError(
            f"cannot read the API key file {path}: {exc.strerror or exc}"
        ) from None
    if not key:
        raise CredentialError(f"the API key file {path} is empty")
    return key


@dataclass(frozen=True)
class Credential:
    """What a command presents: an API key (with where it came from), or nothing."""

    key: str | None
    source: str

    @classmethod
    def resolve(cls, key_file: Path | None) -> Credential:
        """--key-file, else $AISUPER_API_KEY, else anonymous."""
        if key_file is not None:
            return cls(read_key_file(key_file), str(key_file))
        key = os.environ.get(API_KEY_ENV, "").strip()
        if key:
            return cls(key, f"${API_KEY_ENV}")
        return cls(None, "anonymous")

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),) if self.key else ()


def _violations(error: grpc.RpcError) -> dict[str, str]:
    from aisuper.platform.grpc_errors import bad_request_of  # imports protovalidate: when used

    try:
        return bad_request_of(error)
    except Exception:  # a status without (parsable) details
        return {}


def describe_rpc_error(error: grpc.RpcError, *, service: str, target: str) -> str:
    """One line: the status code and what went wrong (the field violations when there are)."""
    if not isinstance(error, grpc.Call):
        return f"the call to {service} at {target} failed: {error}"
    code = error.code()
    details = " ".join((error.details() or "").split())
    if code == grpc.StatusCode.UNAVAILABLE and (
        "connect" in details.lower() or "dns" in details.lower() or not details
    ):
        return (
            f"cannot reach {service} at {target} (UNAVAILABLE: {details or 'no connection'}); "
            "is the platform running? see `aisuper status`, or pass --target"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{service} at {target} did not answer in time (DEADLINE_EXCEEDED)"
    violations = _violations(error)
    if violations:
        fields = "; ".join(f"{field}: {why}" for field, why in violations.items())
        return f"{code.name}: {fields}"
    return f"{code.name}: {details or 'no details'}"
