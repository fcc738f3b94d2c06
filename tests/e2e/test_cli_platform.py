"""End to end: ``aisuper up / status / down`` as a user runs them, each a real subprocess.

Every platform runs from its own tmp data dir, on Tansu (starts in milliseconds, needs no Java)
and on free ports, so these tests neither need nor disturb a platform on the default ports.
The platform is the broker and the services (identity, then catalog and policy together, each
on its ports: the bases plus its offset).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisuper.identity.v1 import identity_pb2
from aisuper.platform.grpc_client import bearer

from .cli_platform import (
    CLI_TIMEOUT_S,
    ROOT,
    Platform,
    force_stop,
    pid_gone,
    poll_until,
    register,
    run_cli,
    service_pid,
    started_platform,
    state_pids,
)

pytestmark = pytest.mark.slow

SERVICE_NAMES = ["identity", "catalog", "policy"]


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """A platform (broker, identity, catalog, policy) started with ``aisuper up --detach``; stopped
    after."""
    with started_platform(tmp_path / "data") as (started, _):
        yield started


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


def test_up_serves_the_catalog_on_the_next_ports(platform: Platform) -> None:
    code, status = platform.status()

    assert code == 0
    assert list(status["processes"]) == ["broker", *SERVICE_NAMES]
    catalog = status["processes"]["catalog"]
    assert catalog["alive"] is True
    assert catalog["health"] == "SERVING"
    assert catalog["health_checks"] == {
        "": "SERVING",
        "aisuper.catalog.v1.CatalogService": "SERVING",
    }
    assert catalog["endpoints"] == {
        "grpc": f"127.0.0.1:{platform.grpc_port + 1}",
        "metrics": f"http://127.0.0.1:{platform.metrics_port + 1}/metrics",
    }
    assert catalog["database_url"].endswith("/catalog.db")
    policy = status["processes"]["policy"]
    assert policy["health"] == "SERVING"
    assert policy["health_checks"] == {"": "SERVING", "aisuper.policy.v1.PolicyService": "SERVING"}
    assert policy["endpoints"] == {
        "grpc": platform.policy_target,
        "metrics": platform.metrics_url("policy"),
    }
    assert platform.policy_target == f"127.0.0.1:{platform.grpc_port + 4}"
    assert policy["database_url"].endswith("/policy.db")
    # The catalog authenticates callers through this platform's identity (not the default
    # port): the operator key works there.
    shown = platform.cli(
        "catalog", "search", "--json", "--limit", "1", "--key-file", str(platform.operator_key_file)
    )
    assert shown.returncode == 0, shown.stderr


def test_up_prints_endpoints_and_writes_state(tmp_path: Path) -> None:
    platform = Platform.on_free_ports(tmp_path / "data")
    result = platform.up()
    try:
        assert result.returncode == 0, result.stderr
        out = result.stdout
        grpc_port, metrics_port = platform.grpc_port, platform.metrics_port
        assert platform.target in out
        assert platform.catalog_target in out
        assert platform.policy_target in out
        assert platform.metrics_url("policy") in out
        assert f"http://127.0.0.1:{metrics_port}/metrics" in out
        assert f"http://127.0.0.1:{metrics_port + 1}/metrics" in out
        assert f"127.0.0.1:{platform.broker_port}" in out
        assert str(platform.operator_key_file) in out
        assert f"{platform.target} aisuper.identity.v1.IdentityService/RegisterOrganization" in out
        assert (
            f"""grpcurl -plaintext -d '{{"query":"deepseek"}}' 127.0.0.1:{grpc_port + 1} """
            "aisuper.catalog.v1.CatalogService/SearchListings" in out
        )
        assert "aisuper catalog search deepseek --data-dir" in out
        assert "catalog SERVING" in out
        assert "policy SERVING" in out
        assert "aisuper programs list --data-dir" in out
        assert "memory only" in out  # Tansu's warning
        state = platform.state()
        assert state["broker"]["kind"] == "tansu"
        assert state["broker"]["bootstrap"] == f"127.0.0.1:{platform.broker_port}"
        assert [s["name"] for s in state["services"]] == SERVICE_NAMES
        assert [s["grpc_target"] for s in state["services"]] == [
            platform.target,
            platform.catalog_target,
            platform.policy_target,
        ]
        assert state["phase"] == "running"
        for name in ("broker", *SERVICE_NAMES):
            assert (platform.data_dir / "logs" / f"{name}.log").is_file()
        for name in SERVICE_NAMES:
            assert (platform.data_dir / f"{name}.db").is_file()
    finally:
        platform.down()
        force_stop(platform.data_dir)


def test_status_prints_every_process(platform: Platform) -> None:
    result = run_cli("status", "--data-dir", str(platform.data_dir))

    assert result.returncode == 0, result.stderr
    for name in ("broker", *SERVICE_NAMES):
        assert name in result.stdout
    assert platform.catalog_target in result.stdout
    assert platform.policy_target in result.stdout
    assert "shelf:" in result.stdout
    assert "support programs: 18 seeded" in result.stdout


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
    assert status["processes"]["catalog"]["health"] == "SERVING"
    assert status["processes"]["policy"]["health"] == "SERVING"


def test_down_stops_every_process(platform: Platform) -> None:
    pids = state_pids(platform.state())
    assert len(pids) == 2 + len(SERVICE_NAMES)  # broker runner, Tansu, the services

    result = platform.down()

    assert result.returncode == 0, result.stderr
    assert "Stopped policy" in result.stdout  # the last started stops first
    assert "catalog (pid" in result.stdout
    assert "identity (pid" in result.stdout
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
    identity_pid = service_pid(state, "identity")
    os.killpg(identity_pid, signal.SIGKILL)
    assert poll_until(lambda: pid_gone(identity_pid))

    code, status = platform.status()
    assert code == 1  # degraded
    assert status["processes"]["identity"]["alive"] is False
    assert status["processes"]["identity"]["health"] == "DOWN"
    assert status["processes"]["catalog"]["alive"] is True
    assert status["processes"]["policy"]["alive"] is True
    assert status["processes"]["broker"]["alive"] is True

    result = platform.down()
    assert result.returncode == 0
    assert "broker" in result.stdout
    assert "catalog" in result.stdout
    assert "policy" in result.stdout
    assert "identity" not in result.stdout  # it was not running any more
    assert poll_until(lambda: all(pid_gone(pid) for pid in state_pids(state)))


def test_status_when_the_catalog_died(platform: Platform) -> None:
    catalog_pid = service_pid(platform.state(), "catalog")
    os.killpg(catalog_pid, signal.SIGKILL)
    assert poll_until(lambda: pid_gone(catalog_pid))

    code, status = platform.status()

    assert code == 1  # degraded
    assert status["healthy"] is False
    assert status["processes"]["catalog"]["health"] == "DOWN"
    assert status["processes"]["identity"]["health"] == "SERVING"


def test_up_after_a_crash_replaces_the_stale_state(platform: Platform) -> None:
    old = platform.state()
    for pid in state_pids(old):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    assert poll_until(lambda: all(pid_gone(pid) for pid in state_pids(old)))

    result = platform.up()

    assert result.returncode == 0, result.stderr
    assert "earlier run" in result.stdout
    new = platform.state()
    for name in SERVICE_NAMES:
        assert service_pid(new, name) != service_pid(old, name)
    code, _ = platform.status()
    assert code == 0


def _foreground_up(platform: Platform) -> subprocess.Popen[str]:
    args = [arg for arg in platform.up_args if arg != "--detach"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISUPER_")}
    env["COLUMNS"] = "240"
    return subprocess.Popen(
        [sys.executable, "-m", "aisuper_cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_foreground_up_stops_everything_on_sigterm(tmp_path: Path) -> None:
    platform = Platform.on_free_ports(tmp_path / "data")
    with _foreground_up(platform) as up:
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
            force_stop(platform.data_dir)
    assert up.returncode == 0, output
    assert "Stopped policy" in output
    assert "catalog (pid" in output
    assert "identity (pid" in output
    assert all(pid_gone(pid) for pid in state_pids(state))
    assert not (platform.data_dir / "state.json").exists()


def test_foreground_up_stops_everything_when_a_service_dies(tmp_path: Path) -> None:
    platform = Platform.on_free_ports(tmp_path / "data")
    with _foreground_up(platform) as up:
        try:
            assert poll_until(lambda: platform.status()[0] == 0 or up.poll() is not None, 120)
            assert up.poll() is None, "aisuper up exited"
            state = platform.state()
            os.killpg(service_pid(state, "catalog"), signal.SIGKILL)
            output, _ = up.communicate(timeout=CLI_TIMEOUT_S)
        finally:
            if up.poll() is None:
                up.kill()
            force_stop(platform.data_dir)
    assert up.returncode == 1, output
    assert "catalog exited with code" in output
    assert "identity (pid" in output
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
    platform = Platform.on_free_ports(tmp_path / "data")
    grpc_port = platform.grpc_port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", grpc_port))
        taken.listen()
        result = platform.up()
    assert result.returncode == 1
    assert f"port {grpc_port} (identity gRPC)" in result.stderr
    assert "in use" in result.stderr
    assert "--grpc-port-base" in result.stderr
    assert not (platform.data_dir / "state.json").exists()


def test_up_refuses_a_port_in_use_by_the_catalog(tmp_path: Path) -> None:
    platform = Platform.on_free_ports(tmp_path / "data")
    port = platform.grpc_port + 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = platform.up()
    assert result.returncode == 1
    assert f"port {port} (catalog gRPC) is already in use" in result.stderr
    assert "--grpc-port-base (catalog takes the base + 1)" in result.stderr
    assert not (platform.data_dir / "state.json").exists()


def test_up_refuses_a_metrics_port_in_use_by_the_catalog(tmp_path: Path) -> None:
    platform = Platform.on_free_ports(tmp_path / "data")
    port = platform.metrics_port + 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = platform.up()
    assert result.returncode == 1
    assert f"port {port} (catalog metrics) is already in use" in result.stderr
    assert "--metrics-port-base" in result.stderr


def test_up_refuses_a_port_in_use_by_policy(tmp_path: Path) -> None:
    platform = Platform.on_free_ports(tmp_path / "data")
    port = platform.grpc_port + 4
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = platform.up()
    assert result.returncode == 1
    assert f"port {port} (policy gRPC) is already in use" in result.stderr
    assert "--grpc-port-base (policy takes the base + 4)" in result.stderr
    assert not (platform.data_dir / "state.json").exists()


def test_up_refuses_a_port_base_without_room_for_every_service(tmp_path: Path) -> None:
    result = run_cli(
        "up", "--data-dir", str(tmp_path / "data"), "--broker", "tansu", "--grpc-port-base", "65535"
    )
    assert result.returncode == 1
    assert "--grpc-port-base 65535 leaves no port for catalog" in result.stderr
    assert not (tmp_path / "data" / "state.json").exists()
    result = run_cli(
        "up", "--data-dir", str(tmp_path / "data"), "--broker", "tansu", "--grpc-port-base", "65532"
    )
    assert result.returncode == 1
    assert "--grpc-port-base 65532 leaves no port for policy" in result.stderr


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
