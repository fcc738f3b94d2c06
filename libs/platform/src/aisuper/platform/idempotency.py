"""Idempotent creation: the same `request_id` returns the first answer.

The first answer is stored in the same transaction as what it created, so
a crash either keeps both or neither. Replaying the key with different
parameters is an error rather than a silent second answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from aisuper.platform.db import Database
from aisuper.platform.errors import InvalidArgument
from aisuper.platform.tables import IdempotencyRecord

R = TypeVar("R", bound=Message)


def _fingerprint(request: Message) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


async def idempotent(
    db: Database,
    *,
    scope: str,
    request_id: str,
    request: Message,
    response_type: type[R],
    create: Callable[[AsyncSession], Awaitable[R]],
    stored: Callable[[R], R] = lambda response: response,
) -> R:
    """Runs `create` once per (scope, request_id); replays return the stored answer.

    `stored` turns the answer into what may be kept (e.g. without a secret
    that must only ever be shown once).
    """
    if not request_id:
        async with db.write() as session:
            return await create(session)
    method = request.DESCRIPTOR.full_name
    fingerprint = _fingerprint(request)
    for attempt in range(3):
        try:
            async with db.write() as session:
                if session.get_bind().dialect.name == "postgresql":
                    # Same-key calls queue here until the first commits, so they
                    # replay its answer instead of racing its checks (SQLite's
                    # single writer already serialises them).
                    await session.execute(
                        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                        {"key": f"idempotency:{scope}:{request_id}"},
                    )
                record = await session.get(IdempotencyRecord, (scope, request_id))
                if record is not None:
                    if record.method != method or record.fingerprint != fingerprint:
                        raise InvalidArgument.field(
                            "request_id", "already used for a different request"
                        )
                    return response_type.FromString(record.response)
                response = await create(session)
                session.add(
                    IdempotencyRecord(
                        scope=scope,
                        request_id=request_id,
                        method=method,
                        fingerprint=fingerprint,
                        response=stored(response).SerializeToString(),
                        created_at=datetime.now(UTC),
                    )
                )
                await session.flush()
                return response
        except IntegrityError:
            # A concurrent call with the same key won the race: replay its answer.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def purge_before(session: AsyncSession, cutoff: datetime) -> None:
    await session.execute(
        sa.delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) < cutoff)
    )
