"""What the commands that call one running service (``aisuper catalog``, ``aisuper programs``)
share: their options, where to call and with what credential, and how a failure is printed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import grpc
import typer
from rich.console import Console
from rich.markup import escape

from aisuper_cli.rpc import Credential, CredentialError, describe_rpc_error
from aisuper_cli.services import default_target
from aisuper_cli.state import Layout, StateError, load_state


def target_option(service: str, *, envvar: str, called: str) -> Any:
    """--target of a command calling `service` (named `called` in the help)."""
    return typer.Option(
        "--target",
        envvar=envvar,
        help=f"host:port of {called} (default: the platform running from --data-dir, "
        f"else {default_target(service)}).",
        show_default=False,
    )


def key_file_option(*, anonymous_sees: str | None = None) -> Any:
    """--key-file; `anonymous_sees` says what a caller without a key sees, for a service that
    answers anonymous callers (None: it does not)."""
    anonymous = (
        f"; without either: anonymous, which sees {anonymous_sees}" if anonymous_sees else ""
    )
    return typer.Option(
        "--key-file",
        dir_okay=False,
        help=f"A file holding the API key to call with (default: $AISUPER_API_KEY{anonymous}).",
        show_default=False,
    )


def data_dir_option(*, called: str) -> Any:
    return typer.Option(
        "--data-dir", file_okay=False, help=f"The local platform whose {called} to ask by default."
    )


AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output (protobuf JSON).")]


@dataclass(frozen=True)
class Connection:
    target: str
    credential: Credential
    #: The operator key file of the local platform (for hints), if there is one.
    operator_key_file: str = ""


def fail(message: str) -> NoReturn:
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def connect(
    data_dir: Path, target: str | None, key_file: Path | None, *, service: str
) -> Connection:
    """Where to call `service` (--target, else the local platform's, else the default) and
    with what credential."""
    try:
        credential = Credential.resolve(key_file)
    except CredentialError as exc:
        fail(str(exc))
    operator_key_file = ""
    try:
        state = load_state(Layout.of(data_dir))
    except StateError:
        state = None
    if state is not None:
        operator_key_file = state.operator_key_file
    if target is None:
        running = state.service(service) if state is not None else None
        target = running.grpc_target if running is not None else default_target(service)
    return Connection(target, credential, operator_key_file)


def rpc_failed(error: grpc.RpcError, connection: Connection, *, service: str) -> NoReturn:
    """Print why a call to `service` (as named in messages) failed, and exit 1."""
    message = describe_rpc_error(error, service=service, target=connection.target)
    if (
        isinstance(error, grpc.Call)
        and error.code() == grpc.StatusCode.UNAUTHENTICATED
        and connection.credential.key is None
    ):
        message += " (you called anonymously: pass --key-file or set $AISUPER_API_KEY)"
    fail(message)
