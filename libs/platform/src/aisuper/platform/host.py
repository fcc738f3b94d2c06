"""The life of one service process: database, events, gRPC, shutdown.

`__main__` builds the pieces and hands them to `ServiceHost.run`, which
starts them in order (migrations, topics, broker, relay, gRPC), waits for
SIGTERM/SIGINT or `stop()`, then drains in-flight calls and stops them in
reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker

from aisuper.platform.broker import kafka_broker
from aisuper.platform.db import Database
from aisuper.platform.events.consumer import EventConsumers, Subscription
from aisuper.platform.events.envelope import EventCatalog
from aisuper.platform.events.outbox import Outbox, OutboxRelay, kafka_producer
from aisuper.platform.grpc_server import CallInterceptor, GrpcServer, Service
from aisuper.platform.logging import configure_logging
from aisuper.platform.migrations import migrate
from aisuper.platform.settings import ServiceSettings
from aisuper.platform.telemetry import configure_telemetry, instrument_sqlalchemy
from aisuper.platform.topics import apply_topics, find_topics_file, load_topics

log = logging.getLogger(__name__)


class ServiceHost:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._databases: list[Database] = []
        self._outboxes: list[tuple[Database, Outbox]] = []
        self._subscriptions: list[Subscription] = []
        self._background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._stop = asyncio.Event()
        self.server: GrpcServer | None = None
        self.started = asyncio.Event()

    async def database(self, url: str, *, migrations: Path) -> Database:
        instrument_sqlalchemy()
        db = Database(url)
        await migrate(db, migrations)
        self._databases.append(db)
        return db

    def outbox(self, db: Database, catalog: EventCatalog) -> Outbox:
        outbox = Outbox(catalog)
        self._outboxes.append((db, outbox))
        return outbox

    def subscribe(self, subscriptions: Iterable[Subscription]) -> None:
        self._subscriptions.extend(subscriptions)

    def background(self, task: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A coroutine that runs as long as the service (e.g. a sweeper)."""
        self._background.append(task)

    def stop(self) -> None:
        self._stop.set()

    def _topics_used(self) -> set[str]:
        used = {s.topic for s in self._subscriptions}
        for _, outbox in self._outboxes:
            used |= outbox.catalog.topics
        return used | {f"{topic}.dlq" for topic in used}

    async def _apply_topics(self) -> None:
        """Creates the topics this service produces or consumes (and their DLQs)."""
        if not self.settings.apply_topics:
            return
        path = self.settings.topics_file or find_topics_file()
        used = self._topics_used()
        await apply_topics(
            self.settings.kafka_bootstrap, [t for t in load_topics(path) if t.name in used]
        )

    async def run(self, services: Iterable[Service], interceptor: CallInterceptor) -> None:
        settings = self.settings
        await self._apply_topics()
        broker: KafkaBroker | None = None
        if self._subscriptions:
            broker = kafka_broker(settings)
            consumers = EventConsumers(
                broker,
                max_attempts=settings.consumer_max_attempts,
                retry_base_s=settings.consumer_retry_base_s,
                fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
                session_timeout_ms=settings.kafka_session_timeout_ms,
            )
            consumers.subscribe_all(self._subscriptions)
            await broker.start()
            await consumers.ready()
        producer = None
        tasks: list[asyncio.Task[None]] = []
        if self._outboxes:
            producer = kafka_producer(
                settings.kafka_bootstrap, idempotence=settings.kafka_idempotence
            )
            await producer.start()
            for db, outbox in self._outboxes:
                relay = OutboxRelay(
                    db,
                    outbox,
                    producer,
                    batch_size=settings.outbox_batch_size,
                    poll_interval_s=settings.outbox_poll_interval_s,
                )
                tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
        tasks.extend(asyncio.create_task(task(), name=task.__name__) for task in self._background)
        self.server = GrpcServer(
            services, interceptor=interceptor, host=settings.grpc_host, port=settings.grpc_port
        )
        await self.server.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Not possible off the main thread (in-process tests): they call stop().
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        log.info("%s serving gRPC on %s", settings.service_name, self.server.address)
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            log.info("%s stopping: draining in-flight calls", settings.service_name)
            await self.server.stop(settings.shutdown_grace_s)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if broker is not None:
                await broker.stop()
            if producer is not None:
                await producer.stop()
            for db in self._databases:
                await db.dispose()


def run_service(
    settings: ServiceSettings, serve: Callable[[Any], Coroutine[Any, Any, None]]
) -> None:
    """A service's `main`: logging and telemetry from its settings, then `serve` until stopped."""
    configure_logging(settings.service_name, level=settings.log_level, json=settings.log_json)
    telemetry = configure_telemetry(
        settings.service_name, metrics_port=settings.metrics_port, metrics_host=settings.grpc_host
    )
    try:
        asyncio.run(serve(settings))
    finally:
        telemetry.shutdown()
