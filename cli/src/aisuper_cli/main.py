"""The ``aisuper`` command: run the local platform (``up``, ``status``, ``down``)."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from aisuper_cli import platform_runner, supervisor
from aisuper_cli.platform_runner import PlatformError, UpOptions
from aisuper_cli.render import (
    RichUpView,
    print_down,
    print_error,
    print_status,
    print_status_json,
)
from aisuper_cli.state import Layout, StateError
from aisuper_cli.status import collect_status, exit_code

app = typer.Typer(
    name="aisuper",
    help="aisuper: run the local platform (a Kafka-protocol broker and the services).",
    no_args_is_help=True,
    add_completion=False,
)


class Broker(StrEnum):
    auto = "auto"
    apache_kafka = "apache-kafka"
    tansu = "tansu"


DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        file_okay=False,
        help="Where the platform keeps its databases, logs, operator key and state.json.",
    ),
]
Port = Annotated[int, typer.Option(min=1, max=65535)]


def _fail(error: PlatformError | StateError) -> typer.Exit:
    if isinstance(error, PlatformError):
        print_error(Console(stderr=True), error)
    else:
        Console(stderr=True).print(f"[bold red]error:[/] {error}")
    return typer.Exit(1)


@app.command()
def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once the platform serves.")
    ] = False,
    data_dir: DataDir = Path(".aisuper"),
    broker: Annotated[
        Broker,
        typer.Option(
            help="auto = Apache Kafka when Java 17+ and infra/kafka/fetch.sh's jars are there, "
            "else Tansu (memory only)."
        ),
    ] = Broker.auto,
    grpc_port_base: Annotated[
        int,
        typer.Option(
            min=1, max=65535, help="identity's gRPC port (later services take the next ports)."
        ),
    ] = 50051,
    metrics_port_base: Annotated[
        int,
        typer.Option(min=1, max=65535, help="identity's Prometheus port (later services: next)."),
    ] = 9451,
    broker_port: Annotated[
        int, typer.Option(min=0, max=65535, help="The broker's port (0: a free one).")
    ] = 9092,
    startup_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for everything to serve.")
    ] = platform_runner.DEFAULT_STARTUP_TIMEOUT_S,
) -> None:
    """Start the broker and the services; stay in the foreground unless --detach."""
    options = UpOptions(
        data_dir=data_dir,
        broker=broker.value,
        grpc_port_base=grpc_port_base,
        metrics_port_base=metrics_port_base,
        broker_port=broker_port,
        startup_timeout=startup_timeout,
        detach=detach,
    )
    view = RichUpView(Console(), data_dir)
    try:
        code = asyncio.run(supervisor.up(options, view))
    except (PlatformError, StateError) as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


@app.command()
def down(
    data_dir: DataDir = Path(".aisuper"),
    timeout: Annotated[
        float, typer.Option(min=0, help="Seconds per process between SIGTERM and SIGKILL.")
    ] = platform_runner.DEFAULT_STOP_TIMEOUT_S,
) -> None:
    """Stop the platform running from the data dir (its data stays)."""
    try:
        result = platform_runner.down(Layout.of(data_dir), timeout=timeout)
    except (PlatformError, StateError) as exc:
        raise _fail(exc) from None
    print_down(Console(), result, data_dir)


@app.command()
def status(
    data_dir: DataDir = Path(".aisuper"),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each process (pid, alive, health, endpoints) and the broker's limits.

    Exit code: 0 everything serves, 1 degraded, 3 nothing runs.
    """
    try:
        report = asyncio.run(collect_status(Layout.of(data_dir)))
    except (PlatformError, StateError) as exc:
        raise _fail(exc) from None
    if as_json:
        print_status_json(report)
    else:
        print_status(Console(), report, data_dir)
    raise typer.Exit(exit_code(report))


if __name__ == "__main__":
    app(prog_name="aisuper")
