"""The outbox relay against a real broker and a real database."""

from __future__ import annotations

import asyncio

import pytest
from events_harness import harness, platform_database

from aisuper.identity.v1 import events_pb2
from aisuper.platform.db import Database
from aisuper.platform.events.outbox import Outbox, OutboxRelay, kafka_producer
from aisuper.platform.tables import OutboxRecord
from aisuper.platform.testing import BrokerUnderTest, header, read_topic


@pytest.fixture
async def db(database_url: str) -> Database:
    return await platform_database(database_url)


async def test_relay_publishes_committed_events_in_order_with_cloudevents_headers(
    broker: BrokerUnderTest, db: Database
) -> None:
    h = harness()
    outbox = Outbox(h.catalog)
    ids = []
    for n in range(5):
        async with db.write() as session:
            ids.append(
                outbox.add(
                    session,
                    events_pb2.MemberAdded(org_id="org_a", member_id=f"mem_{n}"),
                    subject="org_a",
                    org_id="org_a",
                )
            )
    producer = kafka_producer(broker.bootstrap, idempotence=broker.idempotence)
    await producer.start()
    try:
        relay = OutboxRelay(db, outbox, producer)
        assert await relay.publish_batch() == 5
        assert await relay.publish_batch() == 0  # marked published: never sent twice
    finally:
        await producer.stop()
    records = await read_topic(broker, h.topic, until=lambda r: len(r) >= 5)
    assert [header(r, "ce_id") for r in records] == ids  # one key: commit order kept
    first = records[0]
    assert header(first, "ce_specversion") == "1.0"
    assert header(first, "ce_type") == "aisuper.test.member.added.v1"
    assert header(first, "ce_source") == "/aisuper/test"
    assert header(first, "ce_subject") == "org_a"
    assert header(first, "aisuper_org") == "org_a"
    assert header(first, "content-type") == "application/protobuf"
    assert header(first, "ce_dataschema") == "aisuper.identity.v1.MemberAdded"
    assert first.key == b"org_a"
    assert events_pb2.MemberAdded.FromString(first.value).member_id == "mem_0"


async def test_rolled_back_change_publishes_nothing(broker: BrokerUnderTest, db: Database) -> None:
    h = harness()
    outbox = Outbox(h.catalog)

    async def change_then_fail() -> None:
        async with db.write() as session:
            outbox.add(session, events_pb2.MemberAdded(org_id="org_a"), subject="org_a")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await change_then_fail()
    async with db.read() as session:
        assert (await session.get(OutboxRecord, 1)) is None


async def test_relay_keeps_rows_while_the_broker_is_unreachable_and_publishes_later(
    broker: BrokerUnderTest, db: Database
) -> None:
    h = harness()
    outbox = Outbox(h.catalog)
    async with db.write() as session:
        ce_id = outbox.add(session, events_pb2.MemberAdded(org_id="org_b"), subject="org_b")
    dead = kafka_producer("127.0.0.1:1", idempotence=False)
    relay = OutboxRelay(db, outbox, dead)
    with pytest.raises(Exception):  # noqa: B017, PT011 - any client error will do
        await asyncio.wait_for(relay.publish_batch(), 5)
    async with db.read() as session:
        row = await session.get(OutboxRecord, 1)
        assert row is not None
        assert row.published_at is None  # never lost
    producer = kafka_producer(broker.bootstrap, idempotence=broker.idempotence)
    await producer.start()
    try:
        assert await OutboxRelay(db, outbox, producer).publish_batch() == 1
    finally:
        await producer.stop()
    records = await read_topic(broker, h.topic, until=lambda r: len(r) >= 1)
    assert [header(r, "ce_id") for r in records] == [ce_id]


async def test_running_relay_publishes_soon_after_commit(
    broker: BrokerUnderTest, db: Database
) -> None:
    h = harness()
    outbox = Outbox(h.catalog)
    producer = kafka_producer(broker.bootstrap, idempotence=broker.idempotence)
    await producer.start()
    relay = asyncio.create_task(OutboxRelay(db, outbox, producer, poll_interval_s=30).run())
    try:
        async with db.write() as session:
            ce_id = outbox.add(session, events_pb2.MemberAdded(org_id="org_c"), subject="org_c")
        # The poll interval is 30 s: only the after-commit wake-up can be this quick.
        records = await read_topic(broker, h.topic, until=lambda r: len(r) >= 1, within_s=10)
        assert header(records[0], "ce_id") == ce_id
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
        await producer.stop()
