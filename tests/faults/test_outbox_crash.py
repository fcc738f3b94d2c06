"""SIGKILL between commit and publish: the event still arrives, with one effect."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from identity_harness import Spawner
from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc
from aisuper.platform.broker import kafka_broker
from aisuper.platform.db import Database
from aisuper.platform.embedded.broker import start_embedded_broker
from aisuper.platform.events.consumer import EventConsumers, Subscription
from aisuper.platform.events.envelope import Event
from aisuper.platform.grpc_client import bearer, channel
from aisuper.platform.settings import ServiceSettings
from aisuper.platform.tables import OutboxRecord
from aisuper.platform.testing import BrokerUnderTest, eventually, unique
from aisuper_identity.events import MEMBER_ADDED, ORGANIZATION_REGISTERED

pytestmark = pytest.mark.slow


async def test_sigkill_between_commit_and_publish_loses_nothing_and_duplicates_nothing(
    broker: BrokerUnderTest,
    database_url: str,
    tmp_path: Path,
    spawn: Spawner,
) -> None:
    # A broker of our own, so that freezing it disturbs no other test.
    own = await start_embedded_broker(
        tmp_path / "broker", prefer="apache-kafka" if broker.is_apache_kafka else "tansu"
    )
    try:
        await _crash_and_recover(own.bootstrap, own.pid, database_url, tmp_path, spawn)
    finally:
        os.killpg(own.pid, signal.SIGCONT)
        await own.stop()


async def _crash_and_recover(
    bootstrap: str,
    broker_pid: int,
    database_url: str,
    tmp_path: Path,
    spawn: Spawner,
) -> None:
    first = spawn(bootstrap=bootstrap)
    await first.wait_serving()

    # Freeze the broker: the commit succeeds, the relay cannot publish.
    os.killpg(broker_pid, signal.SIGSTOP)
    async with channel(first.address, tracing=False) as chan:
        registered = await identity_pb2_grpc.IdentityServiceStub(chan).RegisterOrganization(
            identity_pb2.RegisterOrganizationRequest(
                name="Crash Test Ltd",
                kind=identity_pb2.ORGANIZATION_KIND_STARTUP,
                country="KE",
                admin_email="ops@crash.test",
            ),
            timeout=10,
        )
    org_id = registered.organization.id
    first.kill()
    os.killpg(broker_pid, signal.SIGCONT)

    db = Database(database_url)
    async with db.read() as session:
        pending = (
            await session.execute(
                sa.select(sa.func.count()).where(
                    OutboxRecord.key == org_id,
                    OutboxRecord.published_at.is_(None),  # type: ignore[union-attr]
                )
            )
        ).scalar_one()
    assert pending >= 1, "the event should have been committed but not yet published"

    # A consumer with an inbox, as every aisuper consumer has.
    effects: list[str] = []

    async def handle(event: Event[Any], session: AsyncSession | None) -> None:
        if event.data.org_id == org_id:
            effects.append(event.type)

    consumer_db = Database(f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}")
    async with consumer_db.engine.begin() as connection:
        from sqlmodel import SQLModel

        from aisuper.platform.tables import PLATFORM_TABLES

        await connection.run_sync(
            lambda c: SQLModel.metadata.create_all(c, tables=list(PLATFORM_TABLES))
        )
    faststream = kafka_broker(
        ServiceSettings(service_name="test", kafka_bootstrap=bootstrap, kafka_idempotence=False)
    )
    EventConsumers(faststream, fetch_max_wait_ms=50, session_timeout_ms=2000).subscribe(
        Subscription(
            "test.crash",
            ORGANIZATION_REGISTERED.topic,
            (ORGANIZATION_REGISTERED, MEMBER_ADDED),
            handle,
            group=unique("g"),
            db=consumer_db,
        )
    )
    await faststream.start()
    try:
        second = spawn(bootstrap=bootstrap)
        await second.wait_serving()
        await eventually(lambda: ORGANIZATION_REGISTERED.ce_type in effects, within_s=30)
        # A later event on the same key (same partition, so ordered after any
        # redelivered copy) tells us the consumer has seen everything before it.
        async with channel(second.address, tracing=False) as chan:
            await identity_pb2_grpc.IdentityServiceStub(chan).AddMember(
                identity_pb2.AddMemberRequest(
                    org_id=org_id, email="late@crash.test", role=identity_pb2.ROLE_DEVELOPER
                ),
                metadata=bearer((tmp_path / "operator.key").read_text().strip()),
                timeout=10,
            )
        await eventually(lambda: effects.count(MEMBER_ADDED.ce_type) == 2, within_s=30)
        assert effects.count(ORGANIZATION_REGISTERED.ce_type) == 1
        async with db.read() as session:
            unpublished = (
                await session.execute(
                    sa.select(sa.func.count()).where(
                        OutboxRecord.key == org_id,
                        OutboxRecord.published_at.is_(None),  # type: ignore[union-attr]
                    )
                )
            ).scalar_one()
        assert unpublished == 0
        assert second.terminate() == 0
    finally:
        await faststream.stop()
        await db.dispose()
        await consumer_db.dispose()
