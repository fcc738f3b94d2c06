"""Starting, supervising and stopping the local platform: a broker plus the services.

Every process runs in its own session (process group), writes to ``<data-dir>/logs/<name>.log``
and is recorded in ``<data-dir>/state.json`` (see `aisuper_cli.state`). The broker is the
platform library's ``python -m aisuper.platform.embedded``; the services are their own
``python -m`` entry points, configured by environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aisuper.platform.embedded import APACHE_KAFKA_LIMITS, TANSU_LIMITS, select_broker_kind
from aisuper.platform.embedded.broker import (
    BrokerKind,
    BrokerPreference,
    free_port,
    log_tail,
    port_in_use,
    spawn,
    stop_pid,
)
from aisuper_cli.health import SERVING, grpc_health
from aisuper_cli.services import (
    DEFAULT_GRPC_PORT_BASE,
    DEFAULT_METRICS_PORT_BASE,
    HOST,
    SERVICES,
    ServiceSpec,
    start_waves,
)
from aisuper_cli.state import (
    BrokerState,
    Layout,
    PlatformState,
    ProcessRecord,
    ServiceState,
    load_state,
    remove_state,
    save_state,
)

BROKER_MODULE = "aisuper.platform.embedded"
DEFAULT_STARTUP_TIMEOUT_S = 120.0
#: Per process. Above the broker runner's own grace for its broker (20 s).
DEFAULT_STOP_TIMEOUT_S = 30.0
_POLL_S = 0.1


class PlatformError(RuntimeError):
    """A failure explained to the user (the CLI exits 1)."""


class AlreadyRunning(PlatformError):
    pass


class PortInUse(PlatformError):
    pass


class StartupFailed(PlatformError):
    """A process did not start; `log_file` has the details (its tail is in `tail`)."""

    def __init__(self, message: str, *, process: str, log_file: Path) -> None:
        super().__init__(message)
        self.process = process
        self.log_file = log_file
        self.tail = log_tail(log_file, 40)


def broker_limits(kind: str) -> tuple[str, ...]:
    """What to know about the broker kind (the platform library's constants)."""
    return TANSU_LIMITS if kind == "tansu" else APACHE_KAFKA_LIMITS


@dataclass(frozen=True)
class UpOptions:
    data_dir: Path
    broker: BrokerPreference = "auto"
    grpc_port_base: int = DEFAULT_GRPC_PORT_BASE
    metrics_port_base: int = DEFAULT_METRICS_PORT_BASE
    #: 0 = a free port.
    broker_port: int = 9092
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S
    detach: bool = False
    #: Put the seed shelf into an empty catalog (see `aisuper_cli.seeding`).
    seed: bool = True


@dataclass(frozen=True)
class PlannedService:
    """A service `up` is about to start, with its ports."""

    spec: ServiceSpec
    grpc_port: int
    metrics_port: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def grpc_target(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"


@dataclass(frozen=True)
class Plan:
    """What `up` is about to start, after every check passed."""

    layout: Layout
    options: UpOptions
    broker_kind: BrokerKind
    broker_reason: str
    broker_port: int
    #: In starting order.
    services: tuple[PlannedService, ...]
    topics_file: Path
    #: A state file whose processes had all exited (removed).
    stale: PlatformState | None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.broker_port}"

    def service(self, name: str) -> PlannedService | None:
        return next((s for s in self.services if s.name == name), None)


class UpView(Protocol):
    """How `up` reports progress (implemented with rich by `aisuper_cli.render`)."""

    def planned(self, plan: Plan) -> None: ...
    def step(self, key: str, text: str) -> None: ...
    def done(self, key: str, text: str) -> None: ...
    def finish(self) -> None: ...
    def update(self, key: str, text: str) -> None: ...
    def failed(self, key: str, text: str) -> None: ...
    def ready(self, plan: Plan, state: PlatformState, seconds: float) -> None: ...
    def stopping(self, reason: str) -> None: ...
    def stopped(self, stopped: list[tuple[str, int]]) -> None: ...


@dataclass
class Running:
    plan: Plan
    state: PlatformState
    processes: dict[str, subprocess.Popen[bytes]]


# --- checks ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def startup_lock(layout: Layout) -> Iterator[None]:
    """Held while `up` starts, so two `up` on one data dir cannot race."""
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    with layout.lock_file.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(
                f"another `aisuper up` is starting the platform from {layout.data_dir}"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def running_state(layout: Layout) -> tuple[PlatformState | None, list[tuple[str, ProcessRecord]]]:
    """The state file and those of its processes that still run."""
    state = load_state(layout)
    return state, (state.alive() if state is not None else [])


def plan_up(options: UpOptions) -> Plan:
    """Check that `up` can start (nothing runs from the data dir, ports free) and decide what."""
    layout = Layout.of(options.data_dir)
    state, alive = running_state(layout)
    if alive:
        pids = ", ".join(f"{name} pid {record.pid}" for name, record in alive)
        raise AlreadyRunning(
            f"the platform from {layout.data_dir} is already running ({pids}); "
            f"see `aisuper status --data-dir {options.data_dir}`, "
            f"stop it with `aisuper down --data-dir {options.data_dir}`"
        )
    for spec in SERVICES:
        if importlib.util.find_spec(spec.module) is None:
            raise PlatformError(
                f"the {spec.name} service ({spec.module}) is not installed in {sys.executable}"
            )
    from aisuper.platform.topics import find_topics_file  # slow to import: only for `up`

    try:
        topics_file = find_topics_file()
    except FileNotFoundError as exc:
        raise PlatformError(str(exc)) from None

    broker_kind: BrokerKind
    if options.broker == "auto":
        broker_kind, reason = select_broker_kind()
    else:
        broker_kind, reason = options.broker, "chosen with --broker"
    broker_port = options.broker_port or free_port()
    services = plan_services(options)
    ports = {"broker": (broker_port, "--broker-port")}
    for planned in services:
        offset = planned.spec.port_offset
        for what, port, flag in (
            ("gRPC", planned.grpc_port, "--grpc-port-base"),
            ("metrics", planned.metrics_port, "--metrics-port-base"),
        ):
            hint = f"{flag} ({planned.name} takes the base + {offset})" if offset else flag
            ports[f"{planned.name} {what}"] = (port, hint)
    if len({port for port, _ in ports.values()}) != len(ports):
        raise PortInUse(
            "the broker, gRPC and metrics ports must differ: "
            + ", ".join(f"{what} {port}" for what, (port, _) in ports.items())
        )
    for what, (port, flag) in ports.items():
        if port_in_use(port):
            raise PortInUse(
                f"port {port} ({what}) is already in use on {HOST}: stop what listens there "
                f"or pick another port with {flag}"
            )
    if state is not None:
        remove_state(layout)  # every process in it has exited
    return Plan(
        layout=layout,
        options=options,
        broker_kind=broker_kind,
        broker_reason=reason,
        broker_port=broker_port,
        services=services,
        topics_file=topics_file,
        stale=state,
    )


def plan_services(options: UpOptions) -> tuple[PlannedService, ...]:
    """Every service of `SERVICES` with its ports (the bases plus its offset)."""
    planned: list[PlannedService] = []
    for spec in SERVICES:
        for base, flag in (
            (options.grpc_port_base, "--grpc-port-base"),
            (options.metrics_port_base, "--metrics-port-base"),
        ):
            if base + spec.port_offset > 65535:
                raise PortInUse(
                    f"{flag} {base} leaves no port for {spec.name} "
                    f"(it takes the base + {spec.port_offset}); pick a lower base"
                )
        planned.append(
            PlannedService(
                spec=spec,
                grpc_port=options.grpc_port_base + spec.port_offset,
                metrics_port=options.metrics_port_base + spec.port_offset,
            )
        )
    return tuple(planned)


# --- starting -------------------------------------------------------------------------------------


def service_env(plan: Plan, service: PlannedService, bootstrap: str, kind: str) -> dict[str, str]:
    """A service's configuration (on top of this process's environment)."""
    from aisuper.platform.topics import TOPICS_FILE_ENV

    layout = plan.layout
    values = {
        "data_dir": str(layout.data_dir),
        "operator_key_file": str(layout.operator_key_file),
        **{f"{s.name}_target": s.grpc_target for s in plan.services},
    }
    identity = plan.service("identity")
    env = {
        **os.environ,
        "AISUPER_KAFKA_BOOTSTRAP": bootstrap,
        # Tansu answers the idempotent producer with UnknownError.
        "AISUPER_KAFKA_IDEMPOTENCE": "false" if kind == "tansu" else "true",
        service.spec.database_env: layout.sqlite_url(service.name),
        "AISUPER_GRPC_HOST": HOST,
        "AISUPER_GRPC_PORT": str(service.grpc_port),
        "AISUPER_METRICS_PORT": str(service.metrics_port),
        "AISUPER_LOG_JSON": "true",
        TOPICS_FILE_ENV: str(plan.topics_file),
    }
    if identity is not None:  # where every service authenticates its callers
        env["AISUPER_IDENTITY_TARGET"] = identity.grpc_target
    env.update((name, template.format_map(values)) for name, template in service.spec.extra_env)
    return env


def _broker_announcement(log_file: Path) -> dict[str, Any] | None:
    """The JSON line the broker runner prints once its broker is ready (None: not yet)."""
    try:
        text = log_file.read_text(errors="replace")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                info = json.loads(line)
                if isinstance(info, dict) and "bootstrap" in info and "pid" in info:
                    return info
    return None


async def _wait_broker(
    process: subprocess.Popen[bytes], log_file: Path, deadline: float
) -> dict[str, Any]:
    while True:
        info = _broker_announcement(log_file)
        if info is not None:
            return info
        code = process.poll()
        if code is not None:
            raise StartupFailed(
                f"the broker exited with code {code} before it was ready",
                process="broker",
                log_file=log_file,
            )
        if time.monotonic() >= deadline:
            raise StartupFailed(
                "the broker was not ready in time (raise --startup-timeout?)",
                process="broker",
                log_file=log_file,
            )
        await asyncio.sleep(_POLL_S)


async def _wait_serving(
    running: Running, name: str, target: str, service: str, deadline: float
) -> None:
    status = "not probed yet"
    while True:
        for other, process in running.processes.items():
            code = process.poll()
            if code is not None:
                when = "before it was SERVING" if other == name else f"while {name} was starting"
                raise StartupFailed(
                    f"{other} exited with code {code} {when}",
                    process=other,
                    log_file=running.plan.layout.log_file(other),
                )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StartupFailed(
                f"{name} was not SERVING on {target} in time (last health: {status}; "
                "raise --startup-timeout?)",
                process=name,
                log_file=running.plan.layout.log_file(name),
            )
        status = await grpc_health(target, service, within=min(2.0, max(remaining, 0.1)))
        if status == SERVING:
            return
        await asyncio.sleep(_POLL_S)


async def _start_service(
    running: Running,
    service: PlannedService,
    bootstrap: str,
    kind: str,
    deadline: float,
    view: UpView,
) -> PlatformState:
    """Start one service and wait until it says SERVING; the state with it recorded."""
    plan = running.plan
    layout = plan.layout
    name = service.name
    view.step(name, f"starting {name} on {service.grpc_target}")
    process = _spawn(
        layout,
        name,
        [sys.executable, "-m", service.spec.module],
        service_env(plan, service, bootstrap, kind),
    )
    running.processes[name] = process
    record = ServiceState(
        name=name,
        process=ProcessRecord.of(process.pid),
        grpc_target=service.grpc_target,
        metrics_url=service.metrics_url,
        log_file=str(layout.log_file(name)),
        database_url=layout.sqlite_url(name),
    )
    state = replace(running.state, services=(*running.state.services, record))
    running.state = state
    save_state(layout, state)
    await _wait_serving(running, name, service.grpc_target, service.spec.grpc_service, deadline)
    view.done(name, f"{name} SERVING on {service.grpc_target}")
    return state


async def _start_wave(
    running: Running,
    services: list[PlannedService],
    bootstrap: str,
    kind: str,
    deadline: float,
    view: UpView,
) -> None:
    """Start `services` together; return once every one says SERVING.

    The first failure cancels the others' waiting and is raised as it is.
    """
    if len(services) == 1:
        await _start_service(running, services[0], bootstrap, kind, deadline, view)
        return
    try:
        async with asyncio.TaskGroup() as group:
            for service in services:
                group.create_task(_start_service(running, service, bootstrap, kind, deadline, view))
    except BaseExceptionGroup as errors:
        first = errors.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


def _spawn(
    layout: Layout, name: str, argv: list[str], env: Mapping[str, str] | None
) -> subprocess.Popen[bytes]:
    """Start `name` with a fresh ``logs/<name>.log`` (the previous run's becomes ``.log.1``)."""
    log_file = layout.log_file(name)
    with contextlib.suppress(FileNotFoundError):
        log_file.replace(log_file.with_name(f"{log_file.name}.1"))
    return spawn(argv, output=log_file, cwd=layout.data_dir, env=env)


async def start(plan: Plan, view: UpView) -> Running:
    """Start the broker, then the services (each once those it needs say SERVING, those with
    the same needs together); return once every service's gRPC health says SERVING and, on a
    first start, the shelf and the support programs are seeded.

    On any failure (or cancellation) everything started so far is stopped and the state file
    removed before the error propagates.
    """
    layout = plan.layout
    options = plan.options
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + options.startup_timeout
    broker_argv = [
        sys.executable,
        "-m",
        BROKER_MODULE,
        "--data-dir",
        str(layout.broker_dir),
        "--port",
        str(plan.broker_port),
        "--kind",
        plan.broker_kind,
        "--startup-timeout",
        str(options.startup_timeout),
    ]
    view.step("broker", f"starting the broker ({plan.broker_kind}) on {plan.bootstrap}")
    broker_process = _spawn(layout, "broker", broker_argv, None)
    state = PlatformState(
        data_dir=str(layout.data_dir),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        detached=options.detach,
        broker=BrokerState(
            kind=plan.broker_kind,
            bootstrap=plan.bootstrap,
            process=ProcessRecord.of(broker_process.pid),
            log_file=str(layout.log_file("broker")),
        ),
        operator_key_file=str(layout.operator_key_file),
        supervisor=None if options.detach else ProcessRecord.of(os.getpid()),
    )
    running = Running(plan=plan, state=state, processes={"broker": broker_process})
    try:
        save_state(layout, state)
        info = await _wait_broker(broker_process, layout.log_file("broker"), deadline)
        kind, bootstrap = str(info.get("kind", plan.broker_kind)), str(info["bootstrap"])
        broker = replace(
            state.broker, kind=kind, bootstrap=bootstrap, server=ProcessRecord.of(int(info["pid"]))
        )
        running.state = state = replace(state, broker=broker)
        save_state(layout, state)
        view.done("broker", f"broker ({kind}) ready on {bootstrap}")

        if not layout.database_file("catalog").exists():
            # A new catalog database: whatever the marker says was seeded is gone.
            layout.seed_marker.unlink(missing_ok=True)
        if not layout.database_file("policy").exists():
            layout.programs_seed_marker.unlink(missing_ok=True)
        for wave in start_waves(tuple(service.spec for service in plan.services)):
            await _start_wave(
                running,
                [s for s in plan.services if s.spec in wave],
                bootstrap,
                kind,
                deadline,
                view,
            )
        state = running.state
        if options.seed and plan.service("catalog") is not None:
            from aisuper_cli.seeding import seed_on_first_start  # imports YAML and protos

            await seed_on_first_start(layout, state, view)
        if options.seed and plan.service("policy") is not None:
            from aisuper_cli.program_seeding import seed_programs_on_first_start

            await seed_programs_on_first_start(layout, state, view)
        running.state = state = replace(state, phase="running")
        save_state(layout, state)
        view.finish()
    except BaseException:
        try:
            stop_running(running, timeout=10.0)
        finally:
            view.finish()
        raise
    return running


# --- stopping -------------------------------------------------------------------------------------


def stop_processes(state: PlatformState, *, timeout: float) -> list[tuple[str, int]]:
    """SIGTERM each live process of `state` (services first, then the broker), SIGKILL the ones
    still running after `timeout` seconds. Returns the (name, pid) of those it stopped."""
    stopped: list[tuple[str, int]] = []
    for name, record in state.processes():
        if record.alive():
            stop_pid(record.pid, grace=timeout)
            stopped.append((name, record.pid))
    return stopped


def stop_running(running: Running, *, timeout: float) -> list[tuple[str, int]]:
    """Stop what this process started, reap the children and drop the state file."""
    stopped = stop_processes(running.state, timeout=timeout)
    for process in running.processes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5.0)
    remove_state(running.plan.layout, only_if=running.state)
    return stopped


def _wait_gone(record: ProcessRecord, within: float) -> bool:
    deadline = time.monotonic() + within
    while record.alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)  # polling a condition
    return True


@dataclass(frozen=True)
class DownResult:
    state: PlatformState | None
    stopped: list[tuple[str, int]]


def down(layout: Layout, *, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> DownResult:
    """Stop the platform running from `layout` (nothing to do is fine).

    A foreground `aisuper up` is asked to stop its platform itself (SIGTERM); whatever still
    runs afterwards (or runs detached) is stopped here.
    """
    state, alive = running_state(layout)
    if state is None:
        return DownResult(None, [])
    stopped: list[tuple[str, int]] = []
    supervisor = state.supervisor
    if supervisor is not None and supervisor.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor.pid, signal.SIGTERM)
        _wait_gone(supervisor, timeout * (len(state.processes()) + 1))
        runner_alive = any(rec == state.broker.process for _, rec in alive)
        stopped = [
            (name, rec.pid)
            for name, rec in alive
            if rec != supervisor and not (runner_alive and rec == state.broker.server)
        ]
    stopped_here = stop_processes(state, timeout=timeout)
    stopped.extend(item for item in stopped_here if item not in stopped)
    remove_state(layout)
    return DownResult(state, stopped)
