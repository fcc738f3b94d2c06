"""The ``aisuper`` command: run the local platform (``up``, ``status``, ``down``, ``seed``) and
use it (``catalog``, ``programs``)."""

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
from aisuper_cli.program_seeding import ProgramSeedReport, seed_programs_running
from aisuper_cli.programs_cmd import programs_app
from aisuper_cli.render import (
    RichUpView,
    print_down,
    print_error,
    print_status,
    print_status_json,
)
from aisuper_cli.seed_files import SeedError
from aisuper_cli.seeding import ShelfSeedReport, seed_running
from aisuper_cli.services import DEFAULT_GRPC_PORT_BASE, DEFAULT_METRICS_PORT_BASE
from aisuper_cli.state import Layout, StateError, load_state
from aisuper_cli.status import collect_status, exit_code

app = typer.Typer(
    name="aisuper",
    help="aisuper: run the local platform (a Kafka-protocol broker and the services).",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(catalog_app, name="catalog")
app.add_typer(programs_app, name="programs")


class SeedOnly(StrEnum):
    catalog = "catalog"
    programs = "programs"


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
            help="identity's gRPC port; the other services take the next ports "
            "(catalog: the base + 1, policy: the base + 4).",
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
            "catalog and the seed support programs into policy.",
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
    policy_target: Annotated[
        str | None,
        typer.Option(
            help="host:port of a policy service elsewhere; default: the platform running "
            "from --data-dir. Naming either target seeds only what is named.",
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
    programs_file: Annotated[
        Path | None,
        typer.Option(
            "--programs-file",
            dir_okay=False,
            help="A support programs YAML file (default: the one shipped with aisuper).",
            show_default=False,
        ),
    ] = None,
    only: Annotated[
        SeedOnly | None,
        typer.Option(help="Seed only the catalog's shelf, or only the support programs."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Put the seed shelf into a running catalog and the seed support programs into policy,
    as the operator. Idempotent: what is already there is left alone, so running it again
    changes nothing."""
    console = Console(stderr=as_json)
    view = RichUpView(console, data_dir)
    try:
        catalog_report, programs_report = asyncio.run(
            _seed(
                Layout.of(data_dir),
                view,
                catalog_target=catalog_target,
                policy_target=policy_target,
                operator_key_file=operator_key_file,
                shelf_file=shelf_file,
                programs_file=programs_file,
                only=only,
            )
        )
    except (PlatformError, StateError) as exc:
        view.finish()
        raise _fail(exc) from None
    view.finish()
    reports = [r for r in (catalog_report, programs_report) if r is not None]
    if as_json:
        print(
            json.dumps(
                {
                    "catalog": catalog_report.to_json() if catalog_report else None,
                    "programs": programs_report.to_json() if programs_report else None,
                },
                indent=2,
            )
        )
    else:
        for report in reports:
            for slug, why in report.failed:
                console.print(f"[red]✗[/] {escape(slug)}: {escape(why)}", soft_wrap=True)
    raise typer.Exit(0 if all(report.complete for report in reports) else 1)


async def _seed(
    layout: Layout,
    view: RichUpView,
    *,
    catalog_target: str | None,
    policy_target: str | None,
    operator_key_file: Path | None,
    shelf_file: Path | None,
    programs_file: Path | None,
    only: SeedOnly | None,
) -> tuple[ShelfSeedReport | None, ProgramSeedReport | None]:
    """`aisuper seed`: the shelf and the programs, each where it is named (or runs locally)."""
    want_catalog = only in (None, SeedOnly.catalog)
    want_programs = only in (None, SeedOnly.programs)
    state = load_state(layout)
    local_catalog = state.service("catalog") if state is not None else None
    local_policy = state.service("policy") if state is not None else None
    named = bool((want_catalog and catalog_target) or (want_programs and policy_target))
    do_catalog = want_catalog and bool(catalog_target or (not named and local_catalog is not None))
    do_programs = want_programs and bool(policy_target or (not named and local_policy is not None))
    if not do_catalog and not do_programs:
        what = {None: "a catalog or policy", SeedOnly.catalog: "a catalog"}.get(
            only, "a policy service"
        )
        raise SeedError(
            f"no platform with {what} runs from {layout.data_dir}: start one with "
            "`aisuper up`, or name one with --catalog-target / --policy-target and "
            "--operator-key-file"
        )
    catalog_report = None
    if do_catalog:
        catalog_report = await seed_running(
            layout,
            view,
            catalog_target=catalog_target,
            operator_key_file=operator_key_file,
            shelf_file=shelf_file,
        )
    programs_report = None
    if do_programs:
        key_file = operator_key_file
        if key_file is None and state is not None and state.operator_key_file:
            key_file = Path(state.operator_key_file)
        if key_file is None:
            raise SeedError("no operator API key to seed with: pass --operator-key-file")
        target = policy_target or (local_policy.grpc_target if local_policy else "")
        programs_report = await seed_programs_running(
            layout,
            view,
            target=target,
            operator_key_file=key_file,
            programs_file=programs_file,
            local=local_policy is not None and target == local_policy.grpc_target,
        )
    return catalog_report, programs_report


if __name__ == "__main__":
    app(prog_name="aisuper")
