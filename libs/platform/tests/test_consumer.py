"""Consumers against a real broker: exactly-once effects, retries, dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from events_harness import Harness, harness, platform_database
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.identity.v1 import events_pb2
from aisuper.platform.broker import kafka_broker
from aisuper.platform.events.consumer import EventConsumers, Subscription
from aisuper.platform.events.envelope import Event, encode_headers, headers_to_kafka
from aisuper.platform.settings import ServiceSettings
from aisuper.platform.tables import InboxRecord
from aisuper.platform.testing import BrokerUnderTest, eventually, header, read_topic, unique


async def produce(
    broker: BrokerUnderTest, topic: str, value: bytes, headers: dict[str, str], key: bytes = b"k"
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers_to_kafka(headers))
    finally:
        await producer.stop()


def member_added(
    h: Harness, member_id: str, event_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    message = events_pb2.MemberAdded(org_id="org_x", member_id=member_id)
    headers = encode_headers(h.event, source="/aisuper/test", subject="org_x", event_id=event_id)
    return message.SerializeToString(), headers


@pytest.fixture
async def running(broker: BrokerUnderTest) -> AsyncIterator[list[KafkaBroker]]:
    started: list[KafkaBroker] = []
    yield started
    for faststream in started:
        await faststream.stop()


async def start(
    broker: BrokerUnderTest, running: list[KafkaBroker], subscription: Subscription, **kw: Any
) -> None:
    settings = ServiceSettings(
        service_name="test", kafka_bootstrap=broker.bootstrap, kafka_idempotence=broker.idempotence
    )
    faststream = kafka_broker(settings)
    EventConsumers(faststream, fetch_max_wait_ms=50, session_timeout_ms=2000, **kw).subscribe(
        subscription
    )
    await faststream.start()
    running.append(faststream)


async def test_redelivered_event_has_one_effect(
    broker: BrokerUnderTest, database_url: str, running: list[KafkaBroker]
) -> None:
    h = harness()
    db = await platform_database(database_url)
    effects: list[str] = []

    async def handle(event: Event[Any], session: AsyncSession | None) -> None:
        assert session is not None
        effects.append(event.data.member_id)

    await start(
        broker,
        running,
        Subscription("test.members", h.topic, (h.event,), handle, group=unique("g"), db=db),
    )
    value, headers = member_added(h, "mem_1", event_id="same-id")
    await produce(broker, h.topic, value, headers)
    await produce(broker, h.topic, value, headers)  # a redelivery: same ce_id
    value2, headers2 = member_added(h, "mem_2")
    await produce(broker, h.topic, value2, headers2)
    await eventually(lambda: effects == ["mem_1", "mem_2"])
    async with db.read() as session:
        count = (
            await session.execute(sa.select(sa.func.count()).select_from(InboxRecord))
        ).scalar()
    assert count == 2


@pytest.mark.parametrize(
    ("poison", "reason"),
    [
        ((b"\xff\xfe garbage", {}), "missing CloudEvents header"),
        ((b"\xff\xff\xff\xff", None), "payload is not"),
        ((b"", {"ce_specversion": "0.3"}), "unsupported ce_specversion"),
    ],
    ids=["no-headers", "undecodable-payload", "wrong-specversion"],
)
async def test_poison_message_goes_to_dlq_and_the_next_one_is_handled(
    broker: BrokerUnderTest,
    running: list[KafkaBroker],
    poison: tuple[bytes, dict[str, str] | None],
    reason: str,
) -> None:
    h = harness()
    handled: list[str] = []

    async def handle(event: Event[Any], session: AsyncSession | None) -> None:
        handled.append(event.data.member_id)

    await start(
        broker, running, Subscription("test.poison", h.topic, (h.event,), handle, group=unique("g"))
    )
    value, headers = poison
    if headers is None:  # well-formed envelope, broken protobuf
        _, headers = member_added(h, "x")
    elif headers:
        headers = {**member_added(h, "x")[1], **headers}
    await produce(broker, h.topic, value, headers, key=b"poison")
    good_value, good_headers = member_added(h, "mem_ok")
    await produce(broker, h.topic, good_value, good_headers)
    await eventually(lambda: handled == ["mem_ok"])
    dead = await read_topic(broker, f"{h.topic}.dlq", until=lambda r: len(r) >= 1)
    assert dead[0].value == value
    assert dead[0].key == b"poison"
    assert reason in (header(dead[0], "aisuper_dlq_error") or "")
    assert header(dead[0], "aisuper_dlq_topic") == h.topic
    assert header(dead[0], "aisuper_dlq_consumer") == "test.poison"


async def test_failing_handler_is_retried_then_dead_lettered(
    broker: BrokerUnderTest, running: list[KafkaBroker]
) -> None:
    h = harness()
    attempts: dict[str, int] = {}

    async def handle(event: Event[Any], session: AsyncSession | None) -> None:
        member = event.data.member_id
        attempts[member] = attempts.get(member, 0) + 1
        if member == "always" or (member == "once" and attempts[member] == 1):
            raise RuntimeError(f"cannot handle {member}")

    await start(
        broker,
        running,
        Subscription("test.retry", h.topic, (h.event,), handle, group=unique("g")),
        max_attempts=3,
        retry_base_s=0.01,
    )
    for member in ("always", "once"):
        value, headers = member_added(h, member)
        await produce(broker, h.topic, value, headers)
    await eventually(lambda: attempts.get("once") == 2)
    assert attempts["always"] == 3  # bounded
    dead = await read_topic(broker, f"{h.topic}.dlq", until=lambda r: len(r) >= 1)
    assert header(dead[0], "aisuper_dlq_attempts") == "3"
    assert "cannot handle always" in (header(dead[0], "aisuper_dlq_error") or "")


async def test_failed_effect_rolls_back_its_inbox_row(
    broker: BrokerUnderTest, database_url: str, running: list[KafkaBroker]
) -> None:
    h = harness()
    db = await platform_database(database_url)
    calls: list[int] = []

    async def handle(event: Event[Any], session: AsyncSession | None) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")

    await start(
        broker,
        running,
        Subscription("test.rollback", h.topic, (h.event,), handle, group=unique("g"), db=db),
        retry_base_s=0.01,
    )
    value, headers = member_added(h, "mem_r")
    await produce(broker, h.topic, value, headers)
    # Had the first attempt's inbox row survived its rollback, the retry
    # would have been skipped as a duplicate.
    await eventually(lambda: len(calls) == 2)
