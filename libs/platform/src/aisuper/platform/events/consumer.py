"""Topic consumers: decode, de-duplicate, handle, retry, dead-letter.

Each subscriber stays thin: it decodes the CloudEvent and calls one handler.
A record that cannot be decoded goes straight to `<topic>.dlq`; a handler
that keeps failing goes there after bounded, jittered retries. Either way
the consumer moves on to the next record. Offsets are committed after the
record is handled (or dead-lettered), never before.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.platform.db import Database
from aisuper.platform.events import inbox
from aisuper.platform.events.envelope import (
    EnvelopeError,
    Event,
    EventType,
    decode,
    headers_from_kafka,
)

log = logging.getLogger(__name__)

Handler = Callable[[Event[Any], AsyncSession | None], Awaitable[None]]

DLQ_PREFIX = "aisuper_dlq_"


@dataclass(frozen=True)
class Subscription:
    """One handler for some event types of one topic.

    `group` is the consumer group (the service's name, so replicas share the
    work). `group=None` makes every process see every record, from the
    latest offset on: for cache invalidation, where each replica must react.
    With `db`, each event's effect commits with an inbox row, exactly once.
    """

    name: str
    topic: str
    types: tuple[EventType, ...]
    handler: Handler
    group: str | None
    db: Database | None = None


class EventConsumers:
    """Registers subscriptions on a FastStream Kafka broker."""

    def __init__(
        self,
        broker: KafkaBroker,
        *,
        max_attempts: int = 5,
        retry_base_s: float = 0.05,
        fetch_max_wait_ms: int = 100,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self._broker = broker
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._session_timeout_ms = session_timeout_ms
        self._broadcast: list[Any] = []

    def subscribe(self, subscription: Subscription) -> None:
        known = {t.ce_type: t for t in subscription.types}

        async def consume(body: bytes, message: KafkaMessage) -> None:
            await self._consume(subscription, known, message.raw_message)

        consume.__name__ = subscription.name
        if subscription.group is None:
            subscriber = self._broker.subscriber(
                subscription.topic,
                auto_offset_reset="latest",
                fetch_max_wait_ms=self._fetch_max_wait_ms,
                ack_policy=AckPolicy.ACK_FIRST,
                title=subscription.name,
            )
            subscriber(consume)
            self._broadcast.append(subscriber)
            return
        decorator = self._broker.subscriber(
            subscription.topic,
            group_id=subscription.group,
            auto_offset_reset="earliest",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(100, self._session_timeout_ms // 5),
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title=subscription.name,
        )
        decorator(consume)

    async def ready(self, within_s: float = 30.0) -> None:
        """Waits until every broadcast subscription has its partitions and offsets.

        They start from the latest offset, so an event published before that
        offset is known would be missed: a service reports healthy only after
        this, so a revocation is never lost in the gap.
        """
        async with asyncio.timeout(within_s):
            for subscriber in self._broadcast:
                consumer = subscriber.consumer
                while consumer is None or not consumer.assignment():
                    await asyncio.sleep(0.01)
                    consumer = subscriber.consumer
                for partition in consumer.assignment():
                    await consumer.position(partition)

    def subscribe_all(self, subscriptions: Iterable[Subscription]) -> None:
        for subscription in subscriptions:
            self.subscribe(subscription)

    async def _consume(
        self,
        subscription: Subscription,
        known: dict[str, EventType],
        record: ConsumerRecord[bytes, bytes],
    ) -> None:
        try:
            event = decode(headers_from_kafka(record.headers), record.value or b"", known)
        except EnvelopeError as error:
            await self._dead_letter(subscription, record, error, attempts=0)
            return
        if event is None:
            return  # a type this subscription does not handle
        for attempt in range(1, self._max_attempts + 1):
            try:
                await self._handle_once(subscription, event)
                return
            except Exception as error:
                if attempt == self._max_attempts:
                    await self._dead_letter(subscription, record, error, attempts=attempt)
                    return
                delay = self._retry_base_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                log.warning(
                    "%s: handling %s failed (attempt %d/%d): %s",
                    subscription.name,
                    event.id,
                    attempt,
                    self._max_attempts,
                    error,
                )
                await asyncio.sleep(delay)

    async def _handle_once(self, subscription: Subscription, event: Event[Message]) -> None:
        if subscription.db is None:
            await subscription.handler(event, None)
            return
        async with subscription.db.write() as session:
            if await inbox.claim(
                session, consumer=subscription.name, ce_id=event.id, topic=subscription.topic
            ):
                await subscription.handler(event, session)

    async def _dead_letter(
        self,
        subscription: Subscription,
        record: ConsumerRecord[bytes, bytes],
        error: BaseException,
        *,
        attempts: int,
    ) -> None:
        headers = {
            key: (value or b"").decode("utf-8", errors="replace")
            for key, value in record.headers or ()
        }
        headers.update(
            {
                f"{DLQ_PREFIX}error": str(error)[:2000] or type(error).__name__,
                f"{DLQ_PREFIX}error_type": type(error).__name__,
                f"{DLQ_PREFIX}topic": record.topic,
                f"{DLQ_PREFIX}partition": str(record.partition),
                f"{DLQ_PREFIX}offset": str(record.offset),
                f"{DLQ_PREFIX}consumer": subscription.name,
                f"{DLQ_PREFIX}attempts": str(attempts),
            }
        )
        log.error(
            "%s: %s[%d]@%d goes to %s.dlq: %s",
            subscription.name,
            record.topic,
            record.partition,
            record.offset,
            record.topic,
            error,
        )
        await self._broker.publish(
            record.value or b"",
            topic=f"{record.topic}.dlq",
            key=record.key,
            headers=headers,
        )
