"""Identity on loopback for tests (a pytest plugin): a real gRPC server, a real
database, a real broker; plus helpers to call it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc
from aisuper.platform.embedded.broker import free_port
from aisuper.platform.grpc_client import bearer, channel
from aisuper.platform.host import ServiceHost
from aisuper.platform.testing import BrokerUnderTest, eventually
from aisuper_identity.__main__ import serve
from aisuper_identity.settings import IdentitySettings


@dataclass
class Identity:
    settings: IdentitySettings
    host: ServiceHost
    address: str
    stub: identity_pb2_grpc.IdentityServiceStub
    operator_key: str

    async def register(
        self, name: str = "Acme Robotics", **fields: object
    ) -> identity_pb2.RegisterOrganizationResponse:
        request = identity_pb2.RegisterOrganizationRequest(
            name=name,
            kind=fields.pop("kind", identity_pb2.ORGANIZATION_KIND_STARTUP),  # type: ignore[arg-type]
            country=fields.pop("country", "DE"),  # type: ignore[arg-type]
            admin_email=fields.pop("admin_email", "admin@acme.test"),  # type: ignore[arg-type]
            **fields,  # type: ignore[arg-type]
        )
        return await self.stub.RegisterOrganization(request)

    def as_(self, credential: str) -> tuple[tuple[str, str], ...]:
        return bearer(credential)


def identity_settings(
    broker: BrokerUnderTest, database_url: str, tmp_path: Path, **overrides: object
) -> IdentitySettings:
    return IdentitySettings(
        database_url=database_url,
        operator_key_file=tmp_path / "operator.key",
        kafka_bootstrap=broker.bootstrap,
        kafka_idempotence=broker.idempotence,
        kafka_fetch_max_wait_ms=50,
        grpc_port=0,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
async def identity(
    broker: BrokerUnderTest, database_url: str, tmp_path: Path
) -> AsyncIterator[Identity]:
    settings = identity_settings(broker, database_url, tmp_path)
    host = ServiceHost(settings)
    task = asyncio.create_task(serve(settings, host))
    started = asyncio.create_task(host.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # surfaces the start-up error
    assert started in done, "identity did not start within 60s"
    assert host.server is not None
    async with channel(host.server.address) as chan:
        yield Identity(
            settings=settings,
            host=host,
            address=host.server.address,
            stub=identity_pb2_grpc.IdentityServiceStub(chan),
            operator_key=(tmp_path / "operator.key").read_text().strip(),
        )
    host.stop()
    await asyncio.wait_for(task, 30)


def code_of(error: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> grpc.StatusCode:
    return error.value.code()


@dataclass
class IdentityProcess:
    """Identity as its own OS process (for crashes, signals and replicas)."""

    process: subprocess.Popen[bytes]
    address: str
    log: Path
    metrics_port: int = 0

    async def wait_serving(self, within_s: float = 60.0) -> None:
        async with channel(self.address, tracing=False) as chan:
            stub = health_pb2_grpc.HealthStub(chan)

            async def serving() -> bool:
                if self.process.poll() is not None:
                    pytest.fail(f"identity exited with {self.process.returncode}:\n{self.tail()}")
                try:
                    response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.aio.AioRpcError:
                    return False
                return response.status == health_pb2.HealthCheckResponse.SERVING

            await eventually(serving, within_s=within_s, every_s=0.1)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, within_s: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(within_s)


def spawn_identity(
    *,
    bootstrap: str,
    idempotence: bool,
    database_url: str,
    workdir: Path,
    name: str = "identity",
    metrics: bool = False,
) -> IdentityProcess:
    port = free_port()
    metrics_port = free_port() if metrics else 0
    log = workdir / f"{name}.log"
    env = {
        **os.environ,
        "AISUPER_KAFKA_BOOTSTRAP": bootstrap,
        "AISUPER_KAFKA_IDEMPOTENCE": str(idempotence).lower(),
        "AISUPER_KAFKA_FETCH_MAX_WAIT_MS": "50",
        "AISUPER_IDENTITY_DATABASE_URL": database_url,
        "AISUPER_IDENTITY_OPERATOR_KEY_FILE": str(workdir / "operator.key"),
        "AISUPER_GRPC_PORT": str(port),
        "AISUPER_METRICS_PORT": str(metrics_port),
        "AISUPER_LOG_LEVEL": "DEBUG",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "aisuper_identity"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return IdentityProcess(process, f"127.0.0.1:{port}", log, metrics_port)


class Spawner(Protocol):
    def __call__(
        self, *, name: str = ..., metrics: bool = ..., bootstrap: str | None = ...
    ) -> IdentityProcess: ...


@pytest.fixture
def spawn(broker: BrokerUnderTest, database_url: str, tmp_path: Path) -> Iterator[Spawner]:
    """Starts identity processes on this test's database; kills what the test leaves running."""
    spawned: list[IdentityProcess] = []

    def start(
        *, name: str = "identity", metrics: bool = False, bootstrap: str | None = None
    ) -> IdentityProcess:
        proc = spawn_identity(
            bootstrap=bootstrap or broker.bootstrap,
            idempotence=broker.idempotence,
            database_url=database_url,
            workdir=tmp_path,
            name=name,
            metrics=metrics,
        )
        spawned.append(proc)
        return proc

    yield start
    for proc in spawned:
        if proc.process.poll() is None:
            proc.kill()
