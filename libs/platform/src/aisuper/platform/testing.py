"""Pytest fixtures shared by every service's tests (a pytest plugin).

One setting switches engines: with `AISUPER_TEST_KAFKA_BOOTSTRAP` the tests use
that broker (CI: real Apache Kafka), otherwise they start an embedded one
(`AISUPER_TEST_BROKER` = auto | apache-kafka | tansu). With
`AISUPER_TEST_POSTGRES_URL` (a server's admin URL) every test gets its own
PostgreSQL database, otherwise its own SQLite file.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import create_async_engine

from aisuper.platform.embedded.broker import BrokerPreference, start_embedded_broker_sync

T = TypeVar("T")


@dataclass(frozen=True)
class BrokerUnderTest:
    bootstrap: str
    kind: str  # apache-kafka | tansu

    @property
    def idempotence(self) -> bool:
        return self.kind != "tansu"

    @property
    def is_apache_kafka(self) -> bool:
        return self.kind == "apache-kafka"


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    """The broker of the whole test session: external, or started here."""
    external = os.environ.get("AISUPER_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield BrokerUnderTest(external, os.environ.get("AISUPER_TEST_BROKER_KIND", "apache-kafka"))
        return
    prefer = cast(BrokerPreference, os.environ.get("AISUPER_TEST_BROKER", "auto"))
    embedded = start_embedded_broker_sync(tmp_path_factory.mktemp("broker"), prefer=prefer)
    try:
        yield BrokerUnderTest(embedded.bootstrap, embedded.kind)
    finally:
        embedded.stop_sync()


@pytest.fixture(scope="module")
def broker(
    session_broker: BrokerUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerUnderTest]:
    """The broker a test module runs against.

    Apache Kafka serves the whole session. Tansu's fetches slow down as its
    partitions fill (time grows with the number of record batches, until a
    consumer reading from the start gets nothing within 30 s), and the suite
    writes tens of thousands of events: so under an embedded Tansu every test
    module gets a fresh, empty one.
    """
    if session_broker.kind != "tansu" or os.environ.get("AISUPER_TEST_KAFKA_BOOTSTRAP"):
        yield session_broker
        return
    embedded = start_embedded_broker_sync(tmp_path_factory.mktemp("broker"), prefer="tansu")
    try:
        yield BrokerUnderTest(embedded.bootstrap, embedded.kind)
    finally:
        embedded.stop_sync()


DatabaseFactory = Callable[[str], Awaitable[str]]


@pytest.fixture
async def make_database(tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    """Makes fresh, empty databases for one test (one per service it runs)."""
    admin_url = os.environ.get("AISUPER_TEST_POSTGRES_URL")
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT") if admin_url else None
    created: list[str] = []

    async def make(label: str) -> str:
        if admin is None:
            return f"sqlite+aiosqlite:///{tmp_path / f'{label}.db'}"
        name = f"t_{uuid.uuid4().hex[:16]}"
        async with admin.connect() as connection:
            await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return str(admin.url.set(database=name).render_as_string(hide_password=False))

    try:
        yield make
    finally:
        if admin is not None:
            async with admin.connect() as connection:
                for name in created:
                    await connection.execute(
                        sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    )
            await admin.dispose()


@pytest.fixture
async def database_url(make_database: DatabaseFactory) -> str:
    """A fresh, empty database for one test."""
    return await make_database("test")


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def eventually(
    probe: Callable[[], Awaitable[T | None] | T | None],
    *,
    within_s: float = 10.0,
    every_s: float = 0.02,
) -> T:
    """Polls `probe` (sync or async) until it returns something truthy; fails after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        outcome = probe()
        result = await outcome if inspect.isawaitable(outcome) else outcome
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within_s}s")
        await asyncio.sleep(every_s)


async def read_topic(
    broker: BrokerUnderTest,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    within_s: float = 20.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Reads `topic` from the beginning until `until(records)` holds."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + within_s
        while not until(records):
            if time.monotonic() > deadline:
                pytest.fail(f"{topic}: expected records not seen within {within_s}s")
            batches: dict[Any, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(
                timeout_ms=200
            )
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return str(value.decode())
    return None


@pytest.fixture(scope="session")
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this test process finishes from now on (a global provider)."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        pytest.skip("another tracer provider was installed first in this process")
    yield exporter
    provider.shutdown()
