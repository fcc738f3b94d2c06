"""End to end: ``aisuper up / status / down`` as a user runs them, each a real subprocess.

Every platform runs from its own tmp data dir, on Tansu (starts in milliseconds, needs no Java)
and on free ports, so these tests neither need nor disturb a platform on the default ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc
from aisuper.platform.grpc_client import bearer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 180.0
#: The console script declared by cli/pyproject.toml, beside this interpreter.
AISUPER_SCRIPT = Path(sys.executable).parent / "aisuper"


def run_cli(*args: str, script: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m aisuper_cli ARGS`` (or the ``aisuper`` console script), output captured."""
    argv = [str(AISUPER_SCRIPT)] if script else [sys.executable, "-m", "aisuper_cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISUPER_")}
    env["COLUMNS"] = "240"  # rich wraps at the terminal width; keep messages on one line
    return subprocess.run(
        [*argv, *args],
        cwd=ROOT,
        env=env,
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


@dataclass
class Platform:
    data_dir: Path
    grpc_port: int
    metrics_port: int
    broker_port: int

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
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def operator_key_file(self) -> Path:
        return self.data_dir / "operator.key"

    def state(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.data_dir / "state.json").read_text())
        return loaded

    def up(self) -> subprocess.CompletedProcess[str]:
        return run_cli(*self.up_args)

    def down(self) -> subprocess.CompletedProcess[str]:
        return run_cli("down", "--data-dir", str(self.data_dir))

    def status(self) -> tuple[int, dict[str, Any]]:
        result = run_cli("status", "--data-dir", str(self.data_dir), "--json")
        return result.returncode, json.loads(result.stdout)

    @contextlib.contextmanager
    def identity(self) -> Iterator[identity_pb2_grpc.IdentityServiceStub]:
        with grpc.insecure_channel(self.target) as channel:
            yield identity_pb2_grpc.IdentityServiceStub(channel)


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


def _force_stop(data_dir: Path) -> None:
    """Last resort after a failed test: kill whatever the state file still names."""
    try:
        state = json.loads((data_dir / "state.json").read_text())
    except (OSError, ValueError):
        return
    for pid in state_pids(state):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """A platform (broker + identity) started with ``aisuper up --detach``; stopped after."""
    grpc_port, metrics_port, broker_port = free_ports(3)
    started = Platform(tmp_path / "data", grpc_port, metrics_port, broker_port)
    result = started.up()
    assert result.returncode == 0, f"aisuper up failed:\n{result.stdout}\n{result.stderr}"
    try:
        yield started
    finally:
        started.down()
        _force_stop(started.data_dir)


def test_up_serves_identity_with_an_operator_key(platform: Platform) -> None:
    key = platform.operator_key_file.read_text().strip()
    assert key.startswith("ais_")
    with platform.identity() as identity:
        principal = identity.Authenticate(
            identity_pb2.AuthenticateRequest(), metadata=bearer(key), timeout=30
        ).principal
        assert identity_pb2.ROLE_OPERATOR in principal.roles

        org_id = register(identity, "Acme")  # a public method: no credential
        assert org_id.startswith("org_")

    code, status = platform.status()
    assert code == 0
    assert status["running"] is True
    assert status["healthy"] is True
    assert status["phase"] == "running"
    assert status["processes"]["identity"]["health"] == "SERVING"
    assert status["processes"]["identity"]["endpoints"]["grpc"] == platform.target
    assert status["processes"]["broker"]["alive"] is True
    assert status["broker"]["kind"] == "tansu"
    assert any("memory" in limit for limit in status["broker"]["limits"])
    assert status["operator_key_file"] == str(platform.operator_key_file)


def test_up_prints_endpoints_and_writes_state(tmp_path: Path) -> None:
    grpc_port, metrics_port, broker_port = free_ports(3)
    platform = Platform(tmp_path / "data", grpc_port, metrics_port, broker_port)
    result = platform.up()
    try:
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert platform.target in out
        assert f"http://127.0.0.1:{metrics_port}/metrics" in out
        assert f"127.0.0.1:{broker_port}" in out
        assert str(platform.operator_key_file) in out
        assert f"{platform.target} aisuper.identity.v1.IdentityService/RegisterOrganization" in out
        assert "memory only" in out  # Tansu's warning
        state = platform.state()
        assert state["broker"]["kind"] == "tansu"
        assert state["broker"]["bootstrap"] == f"127.0.0.1:{broker_port}"
        assert state["services"][0]["grpc_target"] == platform.target
        assert (platform.data_dir / "logs" / "identity.log").is_file()
        assert (platform.data_dir / "logs" / "broker.log").is_file()
        assert (platform.data_dir / "identity.db").is_file()
    finally:
        platform.down()
        _force_stop(platform.data_dir)


def test_second_up_on_the_same_data_dir_refuses(platform: Platform) -> None:
    pids = state_pids(platform.state())

    again = platform.up()

    assert again.returncode == 1
    assert "already running" in again.stderr
    assert "aisuper down" in again.stderr
    assert state_pids(platform.state()) == pids  # the running platform is left alone
    code, status = platform.status()
    assert code == 0
    assert status["processes"]["identity"]["health"] == "SERVING"


def test_down_stops_every_process(platform: Platform) -> None:
    pids = state_pids(platform.state())

    result = platform.down()

    assert result.returncode == 0, result.stderr
    assert "Stopped identity" in result.stdout
    assert poll_until(lambda: all(pid_gone(pid) for pid in pids)), "a process still runs"
    assert not (platform.data_dir / "state.json").exists()
    code, status = platform.status()
    assert code == 3
    assert status["running"] is False
    again = platform.down()
    assert again.returncode == 0
    assert "Nothing runs" in again.stdout


def test_status_and_down_after_a_process_died(platform: Platform) -> None:
    state = platform.state()
    identity_pid = state["services"][0]["process"]["pid"]
    os.killpg(identity_pid, signal.SIGKILL)
    assert poll_until(lambda: pid_gone(identity_pid))

    code, status = platform.status()
    assert code == 1  # degraded
    assert status["processes"]["identity"]["alive"] is False
    assert status["processes"]["identity"]["health"] == "DOWN"
    assert status["processes"]["broker"]["alive"] is True

    result = platform.down()
    assert result.returncode == 0
    assert "broker" in result.stdout
    assert "identity" not in result.stdout  # it was not running any more
    assert poll_until(lambda: all(pid_gone(pid) for pid in state_pids(state)))


def test_up_after_a_crash_replaces_the_stale_state(platform: Platform) -> None:
    old = platform.state()
    for pid in state_pids(old):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    assert poll_until(lambda: all(pid_gone(pid) for pid in state_pids(old)))

    result = platform.up()

    assert result.returncode == 0, result.stderr
    assert "earlier run" in result.stdout
    assert platform.state()["services"][0]["process"]["pid"] != old["services"][0]["process"]["pid"]
    code, _ = platform.status()
    assert code == 0


def test_foreground_up_stops_everything_on_sigterm(tmp_path: Path) -> None:
    grpc_port, metrics_port, broker_port = free_ports(3)
    platform = Platform(tmp_path / "data", grpc_port, metrics_port, broker_port)
    args = [arg for arg in platform.up_args if arg != "--detach"]
    env = {**os.environ, "COLUMNS": "240"}
    with subprocess.Popen(
        [sys.executable, "-m", "aisuper_cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as up:
        try:
            assert poll_until(lambda: platform.status()[0] == 0 or up.poll() is not None, 120)
            assert up.poll() is None, "aisuper up exited"
            state = platform.state()
            assert state["supervisor"]["pid"] == up.pid
            up.send_signal(signal.SIGTERM)
            output, _ = up.communicate(timeout=CLI_TIMEOUT_S)
        finally:
            if up.poll() is None:
                up.kill()
            _force_stop(platform.data_dir)
    assert up.returncode == 0, output
    assert "Stopped identity" in output
    assert all(pid_gone(pid) for pid in state_pids(state))
    assert not (platform.data_dir / "state.json").exists()


def test_restart_keeps_organizations_and_the_operator_key(platform: Platform) -> None:
    with platform.identity() as identity:
        org_id = register(identity, "Keep Me GmbH")
    key_file = platform.operator_key_file
    key, key_stat = key_file.read_text(), key_file.stat()
    assert platform.down().returncode == 0

    restarted = platform.up()

    assert restarted.returncode == 0, restarted.stderr
    assert key_file.read_text() == key
    assert key_file.stat().st_mtime_ns == key_stat.st_mtime_ns
    with platform.identity() as identity:
        org = identity.GetOrganization(
            identity_pb2.GetOrganizationRequest(org_id=org_id),
            metadata=bearer(key.strip()),
            timeout=30,
        ).organization
    assert org.id == org_id
    assert org.name == "Keep Me GmbH"


def test_up_refuses_a_port_in_use(tmp_path: Path) -> None:
    grpc_port, metrics_port, broker_port = free_ports(3)
    platform = Platform(tmp_path / "data", grpc_port, metrics_port, broker_port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", grpc_port))
        taken.listen()
        result = platform.up()
    assert result.returncode == 1
    assert f"port {grpc_port}" in result.stderr
    assert "in use" in result.stderr
    assert "--grpc-port-base" in result.stderr
    assert not (platform.data_dir / "state.json").exists()


def test_up_rejects_an_unknown_broker(tmp_path: Path) -> None:
    result = run_cli("up", "--data-dir", str(tmp_path / "data"), "--broker", "nonsense")
    assert result.returncode == 2
    assert "--broker" in result.stderr
    assert "nonsense" in result.stderr
    assert not (tmp_path / "data" / "state.json").exists()


def test_down_without_a_platform_says_nothing_runs(tmp_path: Path) -> None:
    result = run_cli("down", "--data-dir", str(tmp_path / "data"), script=True)
    assert result.returncode == 0
    assert "Nothing runs" in result.stdout
