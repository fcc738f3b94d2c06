"""The ``aisuper`` command: run the local platform (``up``, ``status``, ``down``, ``seed``) and
use it (``catalog``)."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from aisuper_cli import platform_runner, supervisor
from aisuper_cli.catalog_cmd import catalog_app
from aisuper_cli.platform_runner import PlatformError, UpOptions
from aisuper_cli.render import (
    RichUpView,
    print_down,
    print_error,
    print_status,
    print_status_json,
)
from aisuper_cli.seeding import seed_running
from aisuper_cli.services import DEFAULT_GRPC_PORT_BASE, DEFAULT_METRICS_PORT_BASE
from aisuper_cli.state import Layout, StateError
from aisuper_cli.status import collect_status, exit_code

app = typer.Typer(
    name="aisuper",
    help="aisuper: run the local platform (a Kafka-protocol broker and the services).",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(catalog_app, name="catalog")


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
            min=1,
            max=65535,
            help="identity's gRPC port; the next services take the next ports "
            "(catalog: the base + 1).",
        ),
    ] = DEFAULT_GRPC_PORT_BASE,
    metrics_port_base: Annotated[
        int,
        typer.Option(
            min=1, max=65535, help="identity's Prometheus port (the next services: the next)."
        ),
    ] = DEFAULT_METRICS_PORT_BASE,
    broker_port: Annotated[
        int, typer.Option(min=0, max=65535, help="The broker's port (0: a free one).")
    ] = 9092,
    startup_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for everything to serve.")
    ] = platform_runner.DEFAULT_STARTUP_TIMEOUT_S,
    seed: Annotated[
        bool,
        typer.Option(
            "--seed/--no-seed",
            help="On the first start, put the seed shelf (models, data sets, GPUs) into the "
            "catalog.",
        ),
    ] = True,
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
        seed=seed,
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


@app.command("seed")
def seed_shelf(
    data_dir: DataDir = Path(".aisuper"),
    catalog_target: Annotated[
        str | None,
        typer.Option(
            help="host:port of a catalog elsewhere (e.g. under docker compose); "
            "default: the platform running from --data-dir.",
            show_default=False,
        ),
    ] = None,
    operator_key_file: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="The operator's API key (default: the platform's, from --data-dir).",
            show_default=False,
        ),
    ] = None,
    shelf_file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            dir_okay=False,
            help="A shelf YAML file (default: the one shipped with aisuper).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Put the seed shelf into a running catalog, as the operator. Idempotent: listings
    already there are left alone, so running it again changes nothing."""
    console = Console(stderr=as_json)
    view = RichUpView(console, data_dir)
    try:
        report = asyncio.run(
            seed_running(
                Layout.of(data_dir),
                view,
                catalog_target=catalog_target,
                operator_key_file=operator_key_file,
                shelf_file=shelf_file,
            )
        )
    except (PlatformError, StateError) as exc:
        view.finish()
        raise _fail(exc) from None
    view.finish()
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for slug, why in report.failed:
            console.print(f"[red]✗[/] {escape(slug)}: {escape(why)}", soft_wrap=True)
    raise typer.Exit(0 if report.complete else 1)


if __name__ == "__main__":
    app(prog_name="aisuper")
