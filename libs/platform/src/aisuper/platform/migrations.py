"""Alembic migrations, one history per service, applied at start-up.

A service's `migrations/env.py` is just `run_env()`; `migrate()` runs the
upgrade on the service's own engine. On PostgreSQL an advisory lock makes
replicas that start together take turns; on SQLite the write lock does.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, text

from aisuper.platform.db import Database


def _config(script_location: Path, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, script_location: Path) -> None:
    if connection.dialect.name == "postgresql":
        lock = zlib.crc32(str(script_location.name).encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
    command.upgrade(_config(script_location, connection), "head")


async def migrate(db: Database, script_location: Path) -> None:
    async with db.engine.begin() as connection:
        await connection.run_sync(_upgrade, script_location)


def run_env() -> None:
    """The body of every service's `migrations/env.py` (online mode only)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through aisuper.platform.migrations.migrate()")
    context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
