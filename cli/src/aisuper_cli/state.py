"""Where a platform keeps its files, and ``<data-dir>/state.json``: what `aisuper up` started.

The state file names each process by PID *and* its start time (from ``/proc``), so a PID that
the kernel has handed to an unrelated process since is never mistaken for ours (nor signalled).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aisuper.platform.embedded.broker import absolute_path, pid_alive

STATE_VERSION = 1


class StateError(RuntimeError):
    """The state file exists but cannot be read."""


@dataclass(frozen=True)
class Layout:
    """The files of one platform, all under its data dir."""

    data_dir: Path

    @classmethod
    def of(cls, data_dir: Path | str) -> Layout:
        return cls(absolute_path(data_dir))

    @property
    def state_file(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / ".up.lock"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def operator_key_file(self) -> Path:
        return self.data_dir / "operator.key"

    def database_file(self, service: str) -> Path:
        return self.data_dir / f"{service}.db"

    def sqlite_url(self, service: str) -> str:
        return f"sqlite+aiosqlite:///{self.database_file(service)}"

    @property
    def seed_marker(self) -> Path:
        """Written once the catalog's shelf was seeded (see `aisuper_cli.seeding`)."""
        return self.data_dir / "catalog.seeded.json"

    @property
    def programs_seed_marker(self) -> Path:
        """Written once the support programs were seeded (see `aisuper_cli.program_seeding`)."""
        return self.data_dir / "policy.seeded.json"


def process_start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, ``/proc/<pid>/stat`` field 22); None when
    unknown (no such process, or no ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3 (the state)
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessRecord:
    """A process we started: its PID and when it started."""

    pid: int
    start_ticks: int | None = None

    @classmethod
    def of(cls, pid: int) -> ProcessRecord:
        return cls(pid, process_start_ticks(pid))

    def alive(self) -> bool:
        """True while this very process runs (not a zombie, not a reused PID)."""
        if not pid_alive(self.pid):
            return False
        if self.start_ticks is None:
            return True
        ticks = process_start_ticks(self.pid)
        return ticks is None or ticks == self.start_ticks


@dataclass(frozen=True)
class BrokerState:
    kind: str
    bootstrap: str
    #: ``python -m aisuper.platform.embedded``, which runs the broker below.
    process: ProcessRecord
    log_file: str
    #: The broker process itself (a JVM or Tansu, in its own process group).
    server: ProcessRecord | None = None


@dataclass(frozen=True)
class ServiceState:
    name: str
    process: ProcessRecord
    grpc_target: str
    metrics_url: str
    log_file: str
    database_url: str


@dataclass(frozen=True)
class PlatformState:
    data_dir: str
    started_at: str
    detached: bool
    broker: BrokerState
    services: tuple[ServiceState, ...] = ()
    operator_key_file: str = ""
    #: The foreground `aisuper up` that supervises the processes (None when detached).
    supervisor: ProcessRecord | None = None
    #: "starting" until every service says SERVING (and the seeds are in), then "running".
    phase: str = "starting"
    version: int = STATE_VERSION

    def service(self, name: str) -> ServiceState | None:
        return next((s for s in self.services if s.name == name), None)

    def processes(self) -> list[tuple[str, ProcessRecord]]:
        """Every process to stop, in stopping order: services (last started first), the
        broker runner, then the broker itself."""
        found = [(s.name, s.process) for s in reversed(self.services)]
        found.append(("broker", self.broker.process))
        if self.broker.server is not None:
            found.append((f"{self.broker.kind} server", self.broker.server))
        return found

    def alive(self) -> list[tuple[str, ProcessRecord]]:
        found = [(name, record) for name, record in self.processes() if record.alive()]
        if self.supervisor is not None and self.supervisor.alive():
            found.insert(0, ("aisuper up", self.supervisor))
        return found

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PlatformState:
        raw = json.loads(text)
        return cls(
            data_dir=str(raw["data_dir"]),
            started_at=str(raw["started_at"]),
            detached=bool(raw["detached"]),
            broker=BrokerState(
                kind=str(raw["broker"]["kind"]),
                bootstrap=str(raw["broker"]["bootstrap"]),
                process=_record(raw["broker"]["process"]),
                log_file=str(raw["broker"]["log_file"]),
                server=_optional_record(raw["broker"].get("server")),
            ),
            services=tuple(
                ServiceState(
                    name=str(s["name"]),
                    process=_record(s["process"]),
                    grpc_target=str(s["grpc_target"]),
                    metrics_url=str(s["metrics_url"]),
                    log_file=str(s["log_file"]),
                    database_url=str(s["database_url"]),
                )
                for s in raw.get("services", [])
            ),
            operator_key_file=str(raw.get("operator_key_file", "")),
            supervisor=_optional_record(raw.get("supervisor")),
            phase=str(raw.get("phase", "starting")),
            version=int(raw.get("version", STATE_VERSION)),
        )


def _record(raw: Any) -> ProcessRecord:
    ticks = raw.get("start_ticks")
    return ProcessRecord(pid=int(raw["pid"]), start_ticks=None if ticks is None else int(ticks))


def _optional_record(raw: Any) -> ProcessRecord | None:
    return None if raw is None else _record(raw)


def load_state(layout: Layout) -> PlatformState | None:
    """The state file of this data dir (None when there is none)."""
    try:
        text = layout.state_file.read_text()
    except FileNotFoundError:
        return None
    try:
        return PlatformState.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(
            f"{layout.state_file} is unreadable ({exc!r}); check that no aisuper process runs "
            "from this data dir, then delete it"
        ) from exc


def save_state(layout: Layout, state: PlatformState) -> None:
    """Write the state file atomically."""
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = layout.state_file.with_name(f".{layout.state_file.name}.{os.getpid()}.tmp")
    tmp.write_text(state.to_json())
    tmp.replace(layout.state_file)


def remove_state(layout: Layout, *, only_if: PlatformState | None = None) -> None:
    """Delete the state file; with `only_if`, only when it still describes that platform."""
    if only_if is not None:
        try:
            current = load_state(layout)
        except StateError:
            return
        if current is None or current.broker.process != only_if.broker.process:
            return
    with contextlib.suppress(FileNotFoundError):
        layout.state_file.unlink()
