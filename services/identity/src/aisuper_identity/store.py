"""Identity's tables and the queries on them.

Every query that reads an organisation's rows takes the `org_id` to scope
by; callers pass the caller's own org unless the caller is an operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel, col

from aisuper.platform.db import utc_column


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    kind: int
    country: str = Field(max_length=2)
    incubator_member: bool = False
    employee_count: int = 0
    verified: bool = False
    suspended: bool = False
    is_platform: bool = False
    suspend_reason: str = Field(default="", max_length=1000)
    created_at: datetime = Field(sa_column=utc_column())
    verified_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    suspended_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class Member(SQLModel, table=True):
    __tablename__ = "members"
    __table_args__ = (sa.UniqueConstraint("org_id", "email", name="uq_members_org_email"),)

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organizations.id", index=True, max_length=40)
    email: str = Field(max_length=254)
    display_name: str = Field(default="", max_length=200)
    role: int
    created_at: datetime = Field(sa_column=utc_column())


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=16)
    org_id: str = Field(foreign_key="organizations.id", index=True, max_length=40)
    member_id: str | None = Field(
        default=None, foreign_key="members.id", ondelete="SET NULL", max_length=40
    )
    name: str = Field(max_length=200)
    role: int
    scopes: str = Field(default="", max_length=4096)  # space-separated
    #: SHA-256 of the secret; the secret itself is never stored.
    secret_hash: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class SigningKey(SQLModel, table=True):
    """An Ed25519 key that signs tokens; public halves are served as the JWKS."""

    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    private_pem: str
    public_x: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=utc_column())
    #: Kept in the JWKS until tokens it signed have all expired.
    retire_at: datetime = Field(sa_column=utc_column())


async def get_organization(
    *, session: AsyncSession, org_id: str, for_update: bool = False
) -> Organization | None:
    return await session.get(Organization, org_id, with_for_update=for_update)


async def list_organizations(
    *, session: AsyncSession, org_id: str | None, after: str | None, limit: int
) -> Sequence[Organization]:
    query = sa.select(Organization).order_by(col(Organization.id)).limit(limit)
    if org_id is not None:
        query = query.where(col(Organization.id) == org_id)
    if after is not None:
        query = query.where(col(Organization.id) > after)
    return (await session.execute(query)).scalars().all()


async def platform_organization(*, session: AsyncSession) -> Organization | None:
    query = sa.select(Organization).where(col(Organization.is_platform).is_(True))
    return (await session.execute(query)).scalars().first()


async def get_member(*, session: AsyncSession, org_id: str, member_id: str) -> Member | None:
    member = await session.get(Member, member_id)
    return member if member is not None and member.org_id == org_id else None


async def find_member_by_email(*, session: AsyncSession, org_id: str, email: str) -> Member | None:
    query = sa.select(Member).where(col(Member.org_id) == org_id, col(Member.email) == email)
    return (await session.execute(query)).scalars().first()


async def list_members(
    *, session: AsyncSession, org_id: str, after: str | None, limit: int
) -> Sequence[Member]:
    query = (
        sa.select(Member).where(col(Member.org_id) == org_id).order_by(col(Member.id)).limit(limit)
    )
    if after is not None:
        query = query.where(col(Member.id) > after)
    return (await session.execute(query)).scalars().all()


async def count_admins(*, session: AsyncSession, org_id: str, admin_role: int) -> int:
    query = sa.select(sa.func.count()).where(
        col(Member.org_id) == org_id, col(Member.role) == admin_role
    )
    return int((await session.execute(query)).scalar_one())


async def get_api_key(*, session: AsyncSession, org_id: str, key_id: str) -> ApiKey | None:
    key = await session.get(ApiKey, key_id)
    return key if key is not None and key.org_id == org_id else None


async def get_api_key_with_org(
    *, session: AsyncSession, key_id: str
) -> tuple[ApiKey, Organization] | None:
    query = (
        sa.select(ApiKey, Organization)
        .join(Organization, col(Organization.id) == col(ApiKey.org_id))
        .where(col(ApiKey.id) == key_id)
    )
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row is not None else None


async def list_api_keys(
    *,
    session: AsyncSession,
    org_id: str,
    after: str | None,
    limit: int,
    include_revoked: bool,
) -> Sequence[ApiKey]:
    query = (
        sa.select(ApiKey).where(col(ApiKey.org_id) == org_id).order_by(col(ApiKey.id)).limit(limit)
    )
    if not include_revoked:
        query = query.where(col(ApiKey.revoked_at).is_(None))
    if after is not None:
        query = query.where(col(ApiKey.id) > after)
    return (await session.execute(query)).scalars().all()


async def live_keys_of_member(
    *, session: AsyncSession, org_id: str, member_id: str
) -> Sequence[ApiKey]:
    query = sa.select(ApiKey).where(
        col(ApiKey.org_id) == org_id,
        col(ApiKey.member_id) == member_id,
        col(ApiKey.revoked_at).is_(None),
    )
    return (await session.execute(query)).scalars().all()


async def signing_keys(*, session: AsyncSession, now: datetime) -> Sequence[SigningKey]:
    """Keys still in the JWKS, newest first."""
    query = (
        sa.select(SigningKey)
        .where(col(SigningKey.retire_at) > now)
        .order_by(col(SigningKey.created_at).desc())
    )
    return (await session.execute(query)).scalars().all()
