"""A throwaway event catalog and database for testing the event plumbing."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import SQLModel

from aisuper.identity.v1 import events_pb2
from aisuper.platform.db import Database
from aisuper.platform.events.envelope import EventCatalog, EventType
from aisuper.platform.tables import PLATFORM_TABLES
from aisuper.platform.testing import unique


@dataclass(frozen=True)
class Harness:
    topic: str
    event: EventType
    catalog: EventCatalog


def harness() -> Harness:
    topic = f"{unique('test')}.events"
    event = EventType(events_pb2.MemberAdded, topic, "aisuper.test.member.added.v1")
    return Harness(topic, event, EventCatalog("/aisuper/test", [event]))


async def platform_database(url: str) -> Database:
    db = Database(url)
    async with db.engine.begin() as connection:
        await connection.run_sync(
            lambda c: SQLModel.metadata.create_all(c, tables=list(PLATFORM_TABLES))
        )
    return db
