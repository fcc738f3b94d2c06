"""Helpers of the end-to-end tests of the ``aisuper`` command: run it as a user does (each
call a real subprocess) and drive a platform it started.

Every platform runs from its own tmp data dir, on Tansu (starts in milliseconds, needs no Java)
and on free ports, so the tests neither need nor disturb a platform on the default ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from aisuper.catalog.v1 import catalog_pb2_grpc
from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc
from aisuper.policy.v1 import policy_pb2_grpc
from aisuper_cli.services import SERVICES

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 180.0
#: The console script declared by cli/pyproject.toml, beside this interpreter.
AISUPER_SCRIPT = Path(sys.executable).parent / "aisuper"
#: How many consecutive ports each port base covers (the base plus the largest offset; the
#: offsets of services not built yet stay free).
SERVICE_COUNT = max(spec.port_offset for spec in SERVICES) + 1
#: Each service's port: the base plus this.
OFFSETS = {spec.name: spec.port_offset for spec in SERVICES}


def run_cli(
    *args: str, script: bool = False, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m aisuper_cli ARGS`` (or the ``aisuper`` console script), output captured.

    The caller's ``AISUPER_*`` variables are dropped; `env` adds variables.
    """
    argv = [str(AISUPER_SCRIPT)] if script else [sys.executable, "-m", "aisuper_cli"]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AISUPER_")}
    full_env["COLUMNS"] = "240"  # rich wraps at the terminal width; keep messages on one line
    full_env.update(env or {})
    return subprocess.run(
        [*argv, *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that are free right now."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _ports_outside_the_ephemeral_range() -> range:
    """Ports the kernel does not hand out as the local ports of outgoing connections: one
    free now stays free until a service binds it seconds later (an ephemeral port may not)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low - 10000 >= 4000:
        return range(10000, low)
    return range(high + 1, 65536)


def free_port_runs(*lengths: int) -> list[int]:
    """The first port of each of ``len(lengths)`` runs of consecutive loopback ports, free right
    now, not overlapping and outside the ephemeral range (a run of length n: base .. base+n-1)."""
    candidates = _ports_outside_the_ephemeral_range()
    chooser = random.Random()
    bases: list[int] = []
    with contextlib.ExitStack() as stack:  # hold every port until all are chosen

        def bind(port: int) -> bool:
            sock = stack.enter_context(socket.socket())
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

        for length in lengths:
            for _ in range(200):
                base = chooser.randrange(candidates.start, candidates.stop - length + 1)
                if all(bind(port) for port in range(base, base + length)):
                    bases.append(base)
                    break
            else:
                raise RuntimeError(f"found no {length} consecutive free ports")
    return bases


def poll_until(condition: Callable[[], bool], within: float = 30.0) -> bool:
    """Poll `condition` until it holds (True) or `within` seconds pass (False)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)  # the poll interval, not a wait for something to happen
    return True


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # an exited child of init that nobody reaped yet counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def state_pids(state: dict[str, Any]) -> list[int]:
    pids = [state["broker"]["process"]["pid"]]
    if state["broker"].get("server"):
        pids.append(state["broker"]["server"]["pid"])
    pids += [service["process"]["pid"] for service in state["services"]]
    return pids


def service_pid(state: dict[str, Any], name: str) -> int:
    pid: int = next(s["process"]["pid"] for s in state["services"] if s["name"] == name)
    return pid


@dataclass
class Platform:
    data_dir: Path
    #: identity's gRPC port; the other services' are at their offsets from it.
    grpc_port: int
    #: identity's metrics port; the other services' are at their offsets from it.
    metrics_port: int
    broker_port: int

    @classmethod
    def on_free_ports(cls, data_dir: Path) -> Platform:
        grpc_base, metrics_base, broker_port = free_port_runs(SERVICE_COUNT, SERVICE_COUNT, 1)
        return cls(data_dir, grpc_base, metrics_base, broker_port)

    @property
    def up_args(self) -> list[str]:
        return [
            "up",
            "--detach",
            "--data-dir",
            str(self.data_dir),
            "--broker",
            "tansu",
            "--grpc-port-base",
            str(self.grpc_port),
            "--metrics-port-base",
            str(self.metrics_port),
            "--broker-port",
            str(self.broker_port),
        ]

    @property
    def target(self) -> str:
        """identity's gRPC address."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def catalog_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port + OFFSETS['catalog']}"

    @property
    def policy_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port + OFFSETS['policy']}"

    def metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port + OFFSETS[service]}/metrics"

    @property
    def operator_key_file(self) -> Path:
        return self.data_dir / "operator.key"

    @property
    def operator_key(self) -> str:
        return self.operator_key_file.read_text().strip()

    @property
    def seed_marker(self) -> Path:
        return self.data_dir / "catalog.seeded.json"

    @property
    def programs_seed_marker(self) -> Path:
        return self.data_dir / "policy.seeded.json"

    def state(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.data_dir / "state.json").read_text())
        return loaded

    def up(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*self.up_args, *extra)

    def down(self) -> subprocess.CompletedProcess[str]:
        return run_cli("down", "--data-dir", str(self.data_dir))

    def status(self) -> tuple[int, dict[str, Any]]:
        result = run_cli("status", "--data-dir", str(self.data_dir), "--json")
        return result.returncode, json.loads(result.stdout)

    def cli(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """An ``aisuper`` command against this platform (``--data-dir`` appended)."""
        return run_cli(*args, "--data-dir", str(self.data_dir), env=env)

    @contextlib.contextmanager
    def identity(self) -> Iterator[identity_pb2_grpc.IdentityServiceStub]:
        with grpc.insecure_channel(self.target) as channel:
            yield identity_pb2_grpc.IdentityServiceStub(channel)

    @contextlib.contextmanager
    def catalog(self) -> Iterator[catalog_pb2_grpc.CatalogServiceStub]:
        with grpc.insecure_channel(self.catalog_target) as channel:
            yield catalog_pb2_grpc.CatalogServiceStub(channel)

    @contextlib.contextmanager
    def policy(self) -> Iterator[policy_pb2_grpc.PolicyServiceStub]:
        with grpc.insecure_channel(self.policy_target) as channel:
            yield policy_pb2_grpc.PolicyServiceStub(channel)


def register(stub: identity_pb2_grpc.IdentityServiceStub, name: str) -> str:
    reply = stub.RegisterOrganization(
        identity_pb2.RegisterOrganizationRequest(
            name=name,
            kind=identity_pb2.ORGANIZATION_KIND_STARTUP,
            country="DE",
            admin_email="a@acme.test",
        ),
        timeout=30,
    )
    org_id: str = reply.organization.id
    return org_id


def force_stop(data_dir: Path) -> None:
    """Last resort after a failed test: kill whatever the state file still names."""
    try:
        state = json.loads((data_dir / "state.json").read_text())
    except (OSError, ValueError):
        return
    for pid in state_pids(state):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@contextlib.contextmanager
def started_platform(data_dir: Path) -> Iterator[tuple[Platform, subprocess.CompletedProcess[str]]]:
    """A platform started with ``aisuper up --detach`` (and its output); stopped after."""
    platform = Platform.on_free_ports(data_dir)
    result = platform.up()
    try:
        assert result.returncode == 0, f"aisuper up failed:\n{result.stdout}\n{result.stderr}"
        yield platform, result
    finally:
        platform.down()
        force_stop(platform.data_dir)
