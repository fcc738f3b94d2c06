"""Shared plumbing of the benchmarks: CPU pinning, disturbance detection, the broker, the machine.

Not a test module (pytest collects only ``test_*.py``); imported by ``tests/bench/run.py``.

Disturbance: the machine has 2 cores and CI may run on it at the same time. Every timed run
snapshots the CPU time the whole machine spent (``/proc/stat``) and the CPU time of the
processes the benchmark started (server, broker, load generator, this process); whatever is
left over was spent by someone else. A run where others used more than `FOREIGN_LIMIT_CORES`
on average counts as disturbed and is repeated.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_CACHE = REPO_ROOT / ".build" / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")

#: Others may use this much CPU (in cores, averaged over the run) before a run is discarded.
FOREIGN_LIMIT_CORES = 0.15
#: Runs tried before a disturbed result is reported as such.
MAX_ATTEMPTS = 3

SERVER_CORE = 1
CLIENT_CORE = 0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- pinning --------------------------------------------------------------------------------


def can_pin() -> bool:
    """`taskset` exists and both cores we pin to are ours to use."""
    if shutil.which("taskset") is None:
        return False
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return False
    return {SERVER_CORE, CLIENT_CORE} <= allowed


def pinned(command: list[str], core: int | None) -> list[str]:
    """`command` prefixed with ``taskset -c core`` (unchanged when pinning is off)."""
    if core is None:
        return command
    return ["taskset", "-c", str(core), *command]


def pin_all_threads(pid: int, core: int | None) -> None:
    """Moves every thread of a running process (e.g. the broker's JVM) onto `core`."""
    if core is None:
        return
    subprocess.run(
        ["taskset", "-a", "-c", "-p", str(core), str(pid)],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --- CPU accounting ---------------------------------------------------------------------------


def _machine_busy_s() -> float:
    """CPU seconds every core spent outside idle/iowait, since boot (interrupts excluded:
    loopback traffic of the benchmark itself lands there without an owner)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + steal) / CLK_TCK


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def process_cpu_s(pid: int) -> float:
    """CPU seconds of a live process tree: every thread of `pid` and of its descendants, plus
    the children they reaped (e.g. PostgreSQL backends that exited); 0 once it is gone."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        # fields[1] is ppid; [11:15] utime, stime, cutime, cstime
        children.setdefault(int(fields[1]), []).append(int(entry))
        cpu[int(entry)] = sum(int(v) for v in fields[11:15]) / CLK_TCK
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu.get(current, 0.0)
        todo.extend(children.get(current, ()))
    return total


def _own_cpu_s() -> float:
    """This process and its reaped children (e.g. a finished load generator)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class CpuReport:
    wall_s: float
    machine_s: float
    ours_s: float
    per_pid_s: dict[int, float]

    @property
    def foreign_cores(self) -> float:
        return max(0.0, self.machine_s - self.ours_s) / self.wall_s if self.wall_s else 0.0

    @property
    def disturbed(self) -> bool:
        return self.foreign_cores > FOREIGN_LIMIT_CORES

    def cores_of(self, pid: int) -> float:
        return self.per_pid_s.get(pid, 0.0) / self.wall_s if self.wall_s else 0.0


class CpuWatch:
    """Measures, over a block, the CPU spent by the machine and by the processes we run.

    `pids` are live processes that are not reaped during the block (server, broker); children
    that are started and reaped inside the block are counted through ``os.times()``.
    """

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self.report: CpuReport | None = None

    @contextlib.contextmanager
    def measure(self) -> Iterator[CpuWatch]:
        wall0, machine0, own0 = time.monotonic(), _machine_busy_s(), _own_cpu_s()
        pid0 = {pid: process_cpu_s(pid) for pid in self.pids}
        yield self
        wall1, machine1, own1 = time.monotonic(), _machine_busy_s(), _own_cpu_s()
        per_pid = {pid: process_cpu_s(pid) - pid0[pid] for pid in self.pids}
        self.report = CpuReport(
            wall_s=wall1 - wall0,
            machine_s=machine1 - machine0,
            ours_s=(own1 - own0) + sum(per_pid.values()),
            per_pid_s=per_pid,
        )


def load_average() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_wait_s: float = 120.0, limit_cores: float = 0.3) -> float:
    """Waits (up to `max_wait_s`) until others use less than `limit_cores` over 2 s; returns
    what they used last. Call it with nothing of ours running."""
    deadline = time.monotonic() + max_wait_s
    while True:
        watch = CpuWatch([])
        with watch.measure():
            time.sleep(2.0)  # the sampling window itself, not a wait for a condition
        assert watch.report is not None
        busy = watch.report.foreign_cores
        if busy < limit_cores or time.monotonic() > deadline:
            return busy
        log(f"machine busy ({busy:.2f} cores used by others, load {load_average():.2f}): waiting")


# --- the broker -------------------------------------------------------------------------------


def broker_preference() -> str:
    """apache-kafka when its jars were fetched (infra/kafka/fetch.sh), else tansu."""
    from aisuper.platform.embedded import find_java, find_kafka_classpath

    if find_java() is not None and find_kafka_classpath() is not None:
        return "apache-kafka"
    return "tansu"


# --- the machine ------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def source_revision() -> str:
    """The commit benchmarked, and whether the work tree differed from it (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (work tree modified)" if dirty else head


def machine_info() -> dict[str, str]:
    return {
        "revision": source_revision(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": package_version("grpcio"),
        "aiokafka": package_version("aiokafka"),
        "sqlalchemy": package_version("sqlalchemy"),
        "opentelemetry-sdk": package_version("opentelemetry-sdk"),
        "pinning": "taskset" if can_pin() else "none (taskset missing or cores not allowed)",
    }


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a benchmarked process: ours without any OTEL_* or AISUPER_*
    variable (so an exporter or a setting from the shell cannot skew it), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AISUPER_", "GRPC_"))}
    env.update(extra)
    return env


# --- rounds -----------------------------------------------------------------------------------

#: Measured rounds per configuration (the median is reported): the host's speed drifts by tens
#: of percent between minutes even when no process of this machine competes (a shared VM).
DEFAULT_ROUNDS = 3


def median_run(runs: list[T], value: Callable[[T], float], disturbed: Callable[[T], bool]) -> T:
    """The run with the median `value` among the undisturbed runs (all runs when none is);
    the lower one of the two middle runs for an even count."""
    pool = [r for r in runs if not disturbed(r)] or list(runs)
    ordered = sorted(pool, key=value)
    return ordered[(len(ordered) - 1) // 2]


def pick_calm(results: list[T], foreign: Callable[[T], float]) -> T:
    """Of several attempts of one run, the least disturbed."""
    return min(results, key=foreign)
