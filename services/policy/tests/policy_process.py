"""Policy as its own OS process (for crashes and restarts), like identity's `spawn_identity`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aisuper.platform.embedded.broker import free_port
from aisuper.platform.grpc_client import channel
from aisuper.platform.testing import eventually


@dataclass
class PolicyProcess:
    process: subprocess.Popen[bytes]
    address: str
    log: Path

    async def wait_serving(self, within_s: float = 60.0) -> None:
        async with channel(self.address, tracing=False) as chan:
            stub = health_pb2_grpc.HealthStub(chan)

            async def serving() -> bool:
                if self.process.poll() is not None:
                    pytest.fail(f"policy exited with {self.process.returncode}:\n{self.tail()}")
                try:
                    response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.aio.AioRpcError:
                    return False
                return response.status == health_pb2.HealthCheckResponse.SERVING

            await eventually(serving, within_s=within_s, every_s=0.1)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, within_s: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(within_s)


def spawn_policy(
    *,
    bootstrap: str,
    idempotence: bool,
    database_url: str,
    identity_target: str,
    workdir: Path,
    name: str = "policy",
) -> PolicyProcess:
    port = free_port()
    log = workdir / f"{name}.log"
    env = {
        **os.environ,
        "AISUPER_KAFKA_BOOTSTRAP": bootstrap,
        "AISUPER_KAFKA_IDEMPOTENCE": str(idempotence).lower(),
        "AISUPER_KAFKA_FETCH_MAX_WAIT_MS": "50",
        "AISUPER_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "AISUPER_POLICY_DATABASE_URL": database_url,
        "AISUPER_IDENTITY_TARGET": identity_target,
        "AISUPER_GRPC_PORT": str(port),
        "AISUPER_METRICS_PORT": "0",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "aisuper_policy"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return PolicyProcess(process, f"127.0.0.1:{port}", log)
