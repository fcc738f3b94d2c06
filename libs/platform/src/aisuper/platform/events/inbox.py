"""The consumer side of exactly-once-in-effect: one inbox row per handled event,
inserted in the same transaction as the handler's effect."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.platform.tables import InboxRecord


async def claim(session: AsyncSession, *, consumer: str, ce_id: str, topic: str) -> bool:
    """Records the event as handled; False if this consumer handled it before."""
    values = {
        "consumer": consumer,
        "ce_id": ce_id,
        "topic": topic,
        "handled_at": datetime.now(UTC),
    }
    table = InboxRecord.__table__  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "postgresql":
        statement = postgresql.insert(table).values(values).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(table).values(values).on_conflict_do_nothing()  # type: ignore[assignment]
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]
