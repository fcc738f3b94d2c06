"""Async database access shared by every service: SQLite (embedded) or PostgreSQL.

SQLite allows one writer at a time, so writes go through a single connection
that takes the write lock up front (`BEGIN IMMEDIATE`): two processes on one
file then queue instead of failing half-way with SQLITE_BUSY. Reads use a
separate pool and see a consistent WAL snapshot. PostgreSQL uses one pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Dialect, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.types import TypeDecorator

AFTER_COMMIT = "aisuper.after_commit"


def _sqlite_engine(url: str, *, begin: str, pool_size: int) -> AsyncEngine:
    # Looked up at call time, so that tracing (which wraps it) sees every engine.
    engine = sa_asyncio.create_async_engine(
        url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=60,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=10000",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


class Database:
    """One service's database: `write()` for changes, `read()` for queries."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, begin="BEGIN IMMEDIATE", pool_size=1)
            self._read_engine = _sqlite_engine(url, begin="BEGIN", pool_size=pool_size)
        else:
            self.engine = sa_asyncio.create_async_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
            self._read_engine = self.engine

    @property
    def engines(self) -> list[AsyncEngine]:
        return (
            [self.engine]
            if self._read_engine is self.engine
            else [
                self.engine,
                self._read_engine,
            ]
        )

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in a write transaction, committed when the block ends.

        Callbacks registered with `after_commit` run once the commit succeeded.
        """
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            callbacks: list[Callable[[], None]] = []
            session.info[AFTER_COMMIT] = callbacks
            async with session.begin():
                yield session
            for callback in callbacks:
                callback()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with (
            AsyncSession(self._read_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    async def dispose(self) -> None:
        for engine in self.engines:
            await engine.dispose()


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Runs `callback` after the session's transaction commits (never on rollback)."""
    callbacks: list[Callable[[], None]] | None = session.info.get(AFTER_COMMIT)
    if callbacks is None:
        raise RuntimeError("after_commit needs a session from Database.write()")
    if callback not in callbacks:
        callbacks.append(callback)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so values are
    stored as naive UTC and made aware again when loaded.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_column(*, nullable: bool = False, index: bool = False) -> Any:
    """A `sa_column` for SQLModel fields holding UTC timestamps."""
    return Column(UtcDateTime(), nullable=nullable, index=index)
