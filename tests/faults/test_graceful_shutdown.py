"""SIGTERM: health turns NOT_SERVING, in-flight calls finish, new calls are refused."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from identity_harness import IdentityProcess, Spawner
from sqlalchemy.ext.asyncio import create_async_engine

from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc
from aisuper.platform.grpc_client import channel
from aisuper.platform.testing import BrokerUnderTest, eventually

pytestmark = pytest.mark.slow


def register_request(n: int) -> identity_pb2.RegisterOrganizationRequest:
    return identity_pb2.RegisterOrganizationRequest(
        name=f"Drain {n}",
        kind=identity_pb2.ORGANIZATION_KIND_STARTUP,
        country="IN",
        admin_email=f"a{n}@drain.test",
    )


async def test_sigterm_drains_in_flight_calls_and_exits_cleanly(
    broker: BrokerUnderTest,
    database_url: str,
    tmp_path: Path,
    spawn: Spawner,
) -> None:
    proc = spawn(metrics=True)
    await proc.wait_serving()

    async with channel(proc.address, tracing=False) as chan:
        stub = identity_pb2_grpc.IdentityServiceStub(chan)
        # Hold the database's write lock so that sign-ups stay in flight.
        release = await _hold_write_lock(database_url)
        try:
            in_flight = [
                asyncio.ensure_future(stub.RegisterOrganization(register_request(n), timeout=30))
                for n in range(5)
            ]
            await eventually(lambda: _active_calls(proc) == 5, within_s=10)
            proc.process.terminate()

            async def refusing_new_calls() -> bool:
                try:
                    await stub.GetJwks(identity_pb2.GetJwksRequest(), timeout=2)
                except grpc.aio.AioRpcError as error:
                    return error.code() == grpc.StatusCode.UNAVAILABLE
                return False

            await eventually(refusing_new_calls, within_s=10, every_s=0.05)
            assert not any(call.done() for call in in_flight)
        finally:
            await release()
        done = await asyncio.gather(*in_flight)
        assert all(r.organization.id.startswith("org_") for r in done)
    assert await asyncio.to_thread(proc.process.wait, 30) == 0


def _active_calls(proc: IdentityProcess) -> float:
    """What the service's Prometheus endpoint says is in flight."""
    assert proc.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("aisuper_rpc_server_active_requests")
    )


async def _hold_write_lock(database_url: str):  # type: ignore[no-untyped-def]
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[1]
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN IMMEDIATE")

        async def release_sqlite() -> None:
            connection.execute("ROLLBACK")
            connection.close()

        return release_sqlite
    engine = create_async_engine(database_url)
    connection = await engine.connect()
    await connection.execute(sa.text("LOCK TABLE organizations IN ACCESS EXCLUSIVE MODE"))

    async def release_postgres() -> None:
        await connection.rollback()
        await connection.close()
        await engine.dispose()

    return release_postgres
