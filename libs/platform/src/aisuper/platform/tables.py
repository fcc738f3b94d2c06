"""The platform's own tables, present in every service's database.

Each service's first migration creates them with `create_platform_tables`.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from aisuper.platform.db import utc_column


class OutboxRecord(SQLModel, table=True):
    """An event committed with the state change that caused it, not yet published."""

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index(
            "ix_outbox_unpublished",
            "id",
            sqlite_where=sa.text("published_at IS NULL"),
            postgresql_where=sa.text("published_at IS NULL"),
        ),
    )

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    )
    ce_id: str = Field(max_length=64, unique=True)
    topic: str = Field(max_length=249)
    key: str = Field(max_length=255)
    headers: str  # JSON object of CloudEvents and trace headers
    payload: bytes
    created_at: datetime = Field(sa_column=utc_column())
    published_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class InboxRecord(SQLModel, table=True):
    """One handled event per consumer: its effect committed in the same transaction."""

    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=128)
    ce_id: str = Field(primary_key=True, max_length=64)
    topic: str = Field(max_length=249)
    handled_at: datetime = Field(sa_column=utc_column())


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a mutating call, replayed for the same `request_id`."""

    __tablename__ = "idempotency"

    scope: str = Field(primary_key=True, max_length=128)
    request_id: str = Field(primary_key=True, max_length=128)
    method: str = Field(max_length=128)
    fingerprint: str = Field(max_length=64)
    response: bytes
    created_at: datetime = Field(sa_column=utc_column())


PLATFORM_TABLES: tuple[sa.Table, ...] = tuple(
    SQLModel.metadata.tables[str(model.__tablename__)]
    for model in (OutboxRecord, InboxRecord, IdempotencyRecord)
)


def create_platform_tables() -> None:
    """Creates the platform tables inside an Alembic migration."""
    from alembic import op

    bind = op.get_bind()
    for table in PLATFORM_TABLES:
        table.create(bind)
