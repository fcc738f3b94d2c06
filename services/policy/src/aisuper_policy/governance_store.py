"""Governance's tables: access policies and the policy set's revision, what
catalog's events told of listings (tier, owner, grants), and the decision
log with its chain head.

The policy set's revision and the decision chain's head are single rows that
every writer locks (SELECT ... FOR UPDATE on PostgreSQL; SQLite has one
writer at a time), so revisions and the hash chain stay linear however many
replicas write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel, col

from aisuper.platform.db import utc_column

GENESIS_HASH = "0" * 64
HEAD_ID = 1


class AccessPolicyRow(SQLModel, table=True):
    __tablename__ = "access_policies"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(unique=True, max_length=100)
    description: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    text: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    revision: int
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class PolicySetHead(SQLModel, table=True):
    """One row: the policy set's revision, one more on every change."""

    __tablename__ = "policy_set_head"

    id: int = Field(primary_key=True)
    revision: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))


class ListingFactsRow(SQLModel, table=True):
    """A listing as catalog's events told it."""

    __tablename__ = "listing_facts"

    listing_id: str = Field(primary_key=True, max_length=40)
    kind: int
    tier: int
    org_id: str = Field(max_length=40)
    state: int
    revision: int
    updated_at: datetime = Field(sa_column=utc_column())


class ListingGrantRow(SQLModel, table=True):
    """An organisation's access grant to a listing (an accepted access request)."""

    __tablename__ = "listing_grants"

    listing_id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(primary_key=True, max_length=40)
    access_request_id: str = Field(max_length=40)
    granted_at: datetime = Field(sa_column=utc_column())


class DecisionRow(SQLModel, table=True):
    """One record of the decision log; `hash` covers every column and `prev_hash`."""

    __tablename__ = "decision_log"

    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True, autoincrement=False))
    id: str = Field(unique=True, max_length=40)
    decided_at: datetime = Field(sa_column=utc_column())
    #: The request, secrets masked, as canonical JSON.
    input: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    allowed: bool
    #: JSON lists.
    policy_ids: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    errors: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    policy_revision: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class DecisionChainHead(SQLModel, table=True):
    """One row: the last record of the decision log (sequence 0 and 64 zeros when empty)."""

    __tablename__ = "decision_chain_head"

    id: int = Field(primary_key=True)
    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    hash: str = Field(max_length=64)


# -- access policies -------------------------------------------------------------


async def policy_revision(*, session: AsyncSession, lock: bool = False) -> int:
    query = sa.select(col(PolicySetHead.revision)).where(col(PolicySetHead.id) == HEAD_ID)
    if lock:
        query = query.with_for_update()
    return int((await session.execute(query)).scalar_one())


async def bump_policy_revision(*, session: AsyncSession) -> int:
    """Locks the policy set and moves its revision on; returns the new one."""
    revision = await policy_revision(session=session, lock=True) + 1
    table = PolicySetHead.__table__  # type: ignore[attr-defined]
    await session.execute(sa.update(table).where(table.c.id == HEAD_ID).values(revision=revision))
    return revision


async def list_access_policies(*, session: AsyncSession) -> Sequence[AccessPolicyRow]:
    query = sa.select(AccessPolicyRow).order_by(col(AccessPolicyRow.id))
    return (await session.execute(query)).scalars().all()


async def get_access_policy(*, session: AsyncSession, policy_id: str) -> AccessPolicyRow | None:
    return await session.get(AccessPolicyRow, policy_id)


async def get_access_policy_by_name(*, session: AsyncSession, name: str) -> AccessPolicyRow | None:
    query = sa.select(AccessPolicyRow).where(col(AccessPolicyRow.name) == name)
    return (await session.execute(query)).scalars().first()


# -- listings -------------------------------------------------------------------


async def get_listing(*, session: AsyncSession, listing_id: str) -> ListingFactsRow | None:
    return await session.get(ListingFactsRow, listing_id)


async def granted_orgs(*, session: AsyncSession, listing_id: str) -> frozenset[str]:
    query = sa.select(col(ListingGrantRow.org_id)).where(
        col(ListingGrantRow.listing_id) == listing_id
    )
    return frozenset((await session.execute(query)).scalars().all())


async def is_granted(*, session: AsyncSession, listing_id: str, org_id: str) -> bool:
    return await session.get(ListingGrantRow, (listing_id, org_id)) is not None


async def grant(
    *,
    session: AsyncSession,
    listing_id: str,
    org_id: str,
    access_request_id: str,
    now: datetime,
) -> None:
    insert = (
        postgresql.insert(ListingGrantRow)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(ListingGrantRow)
    )
    await session.execute(
        insert.values(
            listing_id=listing_id,
            org_id=org_id,
            access_request_id=access_request_id,
            granted_at=now,
        ).on_conflict_do_nothing()
    )


async def revoke(*, session: AsyncSession, listing_id: str, org_id: str) -> None:
    table = ListingGrantRow.__table__  # type: ignore[attr-defined]
    await session.execute(
        sa.delete(table).where(table.c.listing_id == listing_id, table.c.org_id == org_id)
    )


# -- the decision log -------------------------------------------------------------


async def chain_head(*, session: AsyncSession, lock: bool = False) -> DecisionChainHead:
    query = sa.select(DecisionChainHead).where(col(DecisionChainHead.id) == HEAD_ID)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalars().one()


async def decisions(
    *, session: AsyncSession, after_seq: int = 0, limit: int = 1000
) -> Sequence[DecisionRow]:
    query = (
        sa.select(DecisionRow)
        .where(col(DecisionRow.seq) > after_seq)
        .order_by(col(DecisionRow.seq))
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()
