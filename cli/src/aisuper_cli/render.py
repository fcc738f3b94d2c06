"""Everything the CLI prints (rich), kept apart from what it does."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from aisuper_cli.health import IDENTITY_SERVICE, SERVING
from aisuper_cli.platform_runner import (
    DownResult,
    Plan,
    PlatformError,
    StartupFailed,
    broker_limits,
)
from aisuper_cli.services import HEALTH_SERVICES
from aisuper_cli.state import PlatformState

REGISTER_BODY = (
    '{"name":"Acme","kind":"ORGANIZATION_KIND_STARTUP","country":"DE","admin_email":"a@acme.test"}'
)
SEARCH_BODY = '{"query":"deepseek"}'


def data_dir_flag(data_dir: Path | str) -> str:
    """`--data-dir X` to repeat in suggested commands ("" for the default)."""
    return "" if str(data_dir) == ".aisuper" else f" --data-dir {shlex.quote(str(data_dir))}"


def describe_stopped(stopped: list[tuple[str, int]]) -> str:
    return "Stopped " + ", ".join(f"{name} (pid {pid})" for name, pid in stopped) + "."


class RichUpView:
    """`aisuper up`'s progress and summary."""

    def __init__(self, console: Console, data_dir: Path) -> None:
        self.console = console
        self.data_dir = data_dir
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def planned(self, plan: Plan) -> None:
        if plan.stale is not None:
            self.console.print(
                f"[dim]removed the state file of an earlier run whose processes had all exited "
                f"({plan.layout.state_file})[/]"
            )
        self.console.print(
            f"Starting aisuper from [bold]{escape(str(plan.layout.data_dir))}[/] "
            f"(broker: [bold]{plan.broker_kind}[/], {escape(plan.broker_reason)})"
        )

    def step(self, key: str, text: str) -> None:
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(finished_text=""),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        self._tasks[key] = self._progress.add_task(escape(text), total=1)

    def done(self, key: str, text: str) -> None:
        if self._progress is not None and key in self._tasks:
            self._progress.update(
                self._tasks[key], description=f"[green]✓[/] {escape(text)}", completed=1
            )

    def update(self, key: str, text: str) -> None:
        if self._progress is not None and key in self._tasks:
            self._progress.update(self._tasks[key], description=escape(text))

    def failed(self, key: str, text: str) -> None:
        """A step that went wrong without stopping the platform (shown in yellow)."""
        if self._progress is not None and key in self._tasks:
            self._progress.update(
                self._tasks[key], description=f"[yellow]![/] {escape(text)}", completed=1
            )

    def finish(self) -> None:
        if self._progress is None:
            return
        for task in self._progress.tasks:
            if not task.finished:  # failed or interrupted
                self._progress.update(
                    task.id, description=f"[red]✗[/] {task.description}", completed=1
                )
        self._progress.stop()
        self._progress = None
        self._tasks.clear()

    def ready(self, plan: Plan, state: PlatformState, seconds: float) -> None:
        print_endpoints(self.console, state)
        limits_note(self.console, state.broker.kind, state.data_dir)
        print_next_steps(self.console, plan, state)
        mode = "running in the background" if plan.options.detach else "running"
        self.console.print(f"[green]aisuper is {mode}[/] (ready in {seconds:.1f}s).")
        if not plan.options.detach:
            self.console.print("Press Ctrl-C to stop it.")

    def stopping(self, reason: str) -> None:
        self.console.print(f"Stopping aisuper: {escape(reason)}")

    def stopped(self, stopped: list[tuple[str, int]]) -> None:
        self.console.print(
            describe_stopped(stopped) if stopped else "Stopped everything this run had started."
        )


def print_endpoints(console: Console, state: PlatformState) -> None:
    table = Table(title="aisuper endpoints", title_justify="left")
    table.add_column("what")
    table.add_column("where")
    table.add_column("pid", justify="right")
    broker = state.broker
    table.add_row(
        f"Kafka broker ({broker.kind})",
        broker.bootstrap,
        str(broker.server.pid if broker.server else broker.process.pid),
    )
    for service in state.services:
        table.add_row(f"{service.name} gRPC", service.grpc_target, str(service.process.pid))
        table.add_row(f"{service.name} metrics", service.metrics_url, "")
    table.add_row("operator API key", state.operator_key_file, "")
    table.add_row("logs", str(Path(state.data_dir) / "logs"), "")
    console.print(table)


def limits_note(console: Console, kind: str, data_dir: str) -> None:
    if kind == "tansu":
        console.print(
            Panel(
                "Tansu keeps events in memory only: stopping the platform loses every topic, "
                f"event and committed offset (the SQLite databases in {escape(data_dir)} are "
                "kept).\n" + "\n".join(f"• {escape(limit)}" for limit in broker_limits(kind)),
                title="broker: Tansu (the fallback, not Apache Kafka)",
                border_style="yellow",
            )
        )
    else:
        console.print(
            "[dim]broker: Apache Kafka; "
            + "; ".join(escape(limit) for limit in broker_limits(kind))
            + "[/]"
        )


def print_next_steps(console: Console, plan: Plan, state: PlatformState) -> None:
    identity = state.service("identity")
    flag = data_dir_flag(plan.options.data_dir)
    lines: list[str] = []
    if identity is not None:
        target = identity.grpc_target
        key_file = shlex.quote(state.operator_key_file)
        lines += [
            "# register an organisation (no credential needed):",
            f"grpcurl -plaintext -d '{REGISTER_BODY}' {target} "
            f"{IDENTITY_SERVICE}/RegisterOrganization",
            "# who am I, with the operator key:",
            f'grpcurl -plaintext -H "authorization: Bearer $(cat {key_file})" {target} '
            f"{IDENTITY_SERVICE}/Authenticate",
            "# health and the API (reflection):",
            f"grpcurl -plaintext {target} grpc.health.v1.Health/Check",
            f"grpcurl -plaintext {target} describe {IDENTITY_SERVICE}",
            f"curl -s {identity.metrics_url} | head",
        ]
    catalog = state.service("catalog")
    if catalog is not None:
        service = HEALTH_SERVICES["catalog"]
        lines += [
            "# search the shelf (open listings need no credential):",
            f"aisuper catalog search deepseek{flag}",
            f"grpcurl -plaintext -d '{SEARCH_BODY}' {catalog.grpc_target} {service}/SearchListings",
            "# every listing, as the operator; then one listing's card (a slug from the search):",
            f"aisuper catalog search{flag} --key-file {shlex.quote(state.operator_key_file)}",
            f"aisuper catalog show SLUG{flag}",
        ]
    policy = state.service("policy")
    if policy is not None:
        lines += [
            "# the support programs, and those your organisation is eligible for (any API key):",
            f"aisuper programs list{flag} --key-file {shlex.quote(state.operator_key_file)}",
            f"aisuper programs eligibility{flag} --key-file YOUR_KEY_FILE",
        ]
    for other in state.services:  # services without hints of their own
        if other.name not in ("identity", "catalog", "policy"):
            lines.append(
                f"grpcurl -plaintext {other.grpc_target} describe "
                f"{HEALTH_SERVICES.get(other.name, '')}"
            )
    lines += [f"aisuper status{flag}", f"aisuper down{flag}"]
    console.print("[bold]Try next:[/]")
    for line in lines:  # unwrapped, so they can be copied
        style = "dim" if line.startswith("#") else None
        console.print(line, soft_wrap=True, markup=False, highlight=False, style=style)


def print_error(console: Console, error: PlatformError) -> None:
    console.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
    if isinstance(error, StartupFailed):
        console.print(f"[bold]last lines of {escape(str(error.log_file))}:[/]", soft_wrap=True)
        console.print(error.tail or "(empty)", soft_wrap=True, markup=False, highlight=False)
        console.print("Everything this run had started was stopped.")


def print_down(console: Console, result: DownResult, data_dir: Path) -> None:
    if result.state is None:
        console.print(
            f"Nothing runs from {escape(str(data_dir))} (no state file): nothing to stop."
        )
    elif not result.stopped:
        console.print(
            f"Nothing runs from {escape(str(data_dir))}: its processes had already exited "
            "(removed the stale state file)."
        )
    else:
        console.print(describe_stopped(result.stopped))


def print_status_json(report: dict[str, Any]) -> None:
    print(json.dumps(report, indent=2))


def print_status(console: Console, report: dict[str, Any], data_dir: Path) -> None:
    if not report["running"]:
        console.print(f"Nothing runs from {escape(str(report['data_dir']))}.")
        return
    table = Table(title=f"aisuper in {escape(report['data_dir'])}", title_justify="left")
    for column in ("process", "pid", "alive", "health", "endpoints"):
        table.add_column(column)
    for name, proc in report["processes"].items():
        health = proc["health"]
        style = "green" if health in (SERVING, "ACCEPTING") else "red"
        endpoints = "\n".join(f"{k}: {v}" for k, v in proc["endpoints"].items())
        pid = str(proc["pid"])
        if proc.get("server_pid") not in (None, proc["pid"]):
            pid += f"\n{report['broker']['kind']}: {proc['server_pid']}"
        table.add_row(
            name,
            pid,
            "yes" if proc["alive"] else "[red]no[/]",
            f"[{style}]{escape(health)}[/]",
            escape(endpoints),
        )
    console.print(table)
    broker = report["broker"]
    console.print(f"broker: [bold]{broker['kind']}[/] at {broker['bootstrap']}; limits:")
    for limit in broker["limits"]:
        console.print(f"  • {escape(limit)}")
    console.print(f"operator API key: {escape(report['operator_key_file'])}")
    seeded = report.get("shelf_seeded")
    if seeded:
        listings, when = seeded.get("listings", "?"), seeded.get("seeded_at", "?")
        console.print(f"shelf: {listings} listings seeded at {when}")
    programs = report.get("programs_seeded")
    if programs:
        count, when = programs.get("programs", "?"), programs.get("seeded_at", "?")
        console.print(f"support programs: {count} seeded at {when}")
    mode = (
        "detached"
        if report["detached"]
        else f"supervised by aisuper up (pid {report['supervisor_pid']})"
    )
    console.print(f"{report['phase']} since {report['started_at']}, {mode}")
    if not report["healthy"]:
        console.print(
            f"[red]degraded[/]: see the logs in {escape(str(data_dir))}/logs, "
            f"or restart with `aisuper down{data_dir_flag(data_dir)}` then `aisuper up`"
        )
