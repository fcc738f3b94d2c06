"""Identity on loopback: a real gRPC server, a real database, a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from identity_harness import Identity, identity_settings

from aisuper.identity.v1 import identity_pb2_grpc
from aisuper.platform.grpc_client import channel
from aisuper.platform.host import ServiceHost
from aisuper.platform.testing import TestBroker
from aisuper_identity.__main__ import serve


@pytest.fixture
async def identity(
    broker: TestBroker, database_url: str, tmp_path: Path
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
